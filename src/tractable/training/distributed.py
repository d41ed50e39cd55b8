"""Data-parallel training with PyTorch's own engine: ``torchrun`` starts the processes, DDP averages the gradients.

``torchrun --standalone --nproc-per-node=N -m tractable fit ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`init_distributed` then joins the process group (NCCL on GPUs, gloo on CPU). The loops read the group through
:class:`DistContext`: each rank trains on its own slice of every global batch, DDP all-reduces the gradients,
data-dependent initialisations (:mod:`~tractable.training.data_init`) use statistics of the *global* batch,
evaluation metrics are all-reduced as sums and counts, and only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

#: Minutes a collective waits for the other ranks before it fails (``train.timeout``); PyTorch's own default is 30
#: (10 for NCCL), half an hour of a stopped run holding every other process.
COLLECTIVE_TIMEOUT = 5.0

_joined = False  # whether this process joined a group through init_distributed (see end_process)


class CollectiveError(TimeoutError):
    """A collective operation failed because another rank stopped, hangs past the timeout, or has left the group."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed run (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> DistContext:
        """The context of the initialised default process group, or the single-process one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return cls()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    def all_reduce_sum(self, t: Tensor) -> Tensor:
        """Sum ``t`` over all ranks, in place (a no-op without a group); returns ``t``."""
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` when distributed, else itself."""
        if not self.distributed:
            return module
        ids = [device.index if device.index is not None else self.local_rank] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def init_distributed(device: str = "cpu", *, timeout: float = COLLECTIVE_TIMEOUT) -> bool:
    """Join the process group that ``torchrun`` describes in the environment; ``False`` when not launched so.

    The backend is NCCL for a CUDA ``device`` (each process then uses ``cuda:LOCAL_RANK``) and gloo otherwise. A
    collective that waits more than ``timeout`` minutes for another rank fails (:func:`collective_failure` turns the
    backend's error into one line). Returns whether this call initialised the group (and
    :func:`shutdown_distributed` should end it).

    Raises:
        ValueError: for a ``timeout`` that is not a positive finite number of minutes.
    """
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not (number and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"expected train.timeout to be a positive number of minutes, got {timeout!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout))
    global _joined
    _joined = True
    return True


#: Fragments of the backends' messages for a collective that timed out or lost a peer (gloo's and NCCL's wording).
_LOST_PEER = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "connection refused",
              "nccl communicator was aborted", "by peer")


def collective_failure(error: BaseException, timeout: float) -> CollectiveError | None:
    """The one-line :class:`CollectiveError` for a backend's error about a stopped or departed rank, else ``None``.

    Example:
        >>> collective_failure(RuntimeError("[gloo] Timed out waiting 3000ms for recv operation"), 0.05).args[0][:40]
        'a collective operation failed after wait'
        >>> collective_failure(ValueError("bad value"), 5) is None
        True
    """
    if not isinstance(error, RuntimeError) or isinstance(error, NotImplementedError):
        return None
    text = str(error).lower()
    if not any(fragment in text for fragment in _LOST_PEER):
        return None
    rank = f"rank {dist.get_rank()}: " if dist.is_available() and dist.is_initialized() else ""
    return CollectiveError(f"{rank}a collective operation failed after waiting up to {timeout:g} minutes "
                           "(train.timeout) for another rank, which stopped, hangs or has exited")


def shutdown_distributed(*, wait: bool = True) -> None:
    """Leave the process group, after a barrier (``wait``) so that no rank leaves while another still communicates;
    after an error pass ``wait=False``, since the other ranks may never reach the barrier. A script's last step is
    then :func:`end_process`, which keeps the backend's threads from aborting the exit."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def end_process(code: int) -> int:
    """Return ``code``; in a process that joined a group through :func:`init_distributed`, exit with it instead.

    Gloo's worker threads can still hold work (and the tensors of a collective that timed out) when the interpreter
    finalizes; releasing them then needs the GIL of an interpreter being torn down, and the process ends with SIGABRT
    instead of its status (pytorch/pytorch#179291, seen here about once in ten runs on a loaded machine). A torchrun
    worker has closed its files and left its group by now, so it flushes its streams and ends with ``os._exit``,
    which skips that finalization.
    """
    if not _joined:
        return code
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
