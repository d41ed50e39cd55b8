"""Training hygiene shared by every loop: seeding, Adam, learning-rate schedules with warmup, an exponential moving
average (EMA) of the weights, and the search for the first layer whose output is not finite.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# Defined at the bottom layer (evaluations in the mathematics raise it too) and provided here as always.
from ..utils import NonFiniteError  # noqa: F401


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators so a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, steps: int, *, warmup: int = 0, final: float = 0.01
) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning-rate schedule over ``steps`` steps, after an optional linear warmup.

    The factor rises linearly over the first ``warmup`` steps (``(t + 1) / warmup``), then follows ``cosine`` (to zero
    at the last step), ``exponential`` (to the factor ``final`` at the last step, 1% by default; the UvA tutorial's
    ``StepLR(γ=0.99)`` per epoch over 200 epochs is ``final=0.99**200``) or ``constant`` over the remaining steps.

    Raises:
        ValueError: for an unknown schedule, a warmup outside ``[0, steps)`` or ``final`` outside ``(0, 1]``.
    """
    if not isinstance(warmup, int) or isinstance(warmup, bool) or not 0 <= warmup < max(steps, 1):
        raise ValueError(f"expected warmup to be an integer in [0, steps={steps}), got {warmup!r}")
    if not 0 < final <= 1:
        raise ValueError(f"expected the final learning-rate factor in (0, 1], got {final!r}")
    span = max(steps - warmup, 1)

    def progress(t: int) -> float:
        return min(t - warmup, span) / span

    if schedule == "cosine":
        decay: Callable[[int], float] = lambda t: 0.5 * (1 + math.cos(math.pi * progress(t)))
    elif schedule == "exponential":
        decay = lambda t: final ** progress(t)
    elif schedule == "constant":
        decay = lambda t: 1.0
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected cosine, exponential or constant")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: (t + 1) / warmup if t < warmup else decay(t))


def make_adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch and device support it (3x less overhead on small models)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def clip_grad_norm(params: list[nn.Parameter], clip: float) -> Tensor:
    """The gradients' total 2-norm (all of ``params``' gradients as one vector, before clipping), rescaling them to
    norm ``clip`` when ``clip > 0`` and the norm is larger (:func:`torch.nn.utils.clip_grad_norm_`).

    Without clipping (``clip = 0``) it only computes the norm, the value ``clip_grad_norm_`` returns: torch's
    function with an infinite bound would still multiply every gradient by 1 and group them by device first. On CPU,
    for the 30 gradients of a 5-layer MAF or RealNVP, that took 135-250 µs a step against 50-65 µs for the norm alone.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if clip > 0 or not grads or len({(g.device, g.dtype) for g in grads}) > 1:
        return torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class EMA:
    """An exponential moving average of parameters, ``θ̄ ← d·θ̄ + (1 − d)·θ`` after every optimizer step.

    The decay warms up as ``d_t = min(decay, (1 + t) / (10 + t))`` (t = updates so far), so the average does not
    drag the initial weights along in short runs. :meth:`applied` swaps the average into the parameters (for
    evaluation) and restores them bit for bit afterwards.

    Args:
        params: the parameters to average.
        decay: the target decay in ``(0, 1)``.
    """

    def __init__(self, params: list[nn.Parameter], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"expected an EMA decay in (0, 1), got {decay!r}")
        self.params, self.decay = list(params), float(decay)
        self._updates, self._count = 0, None  # a host count, or a device one once updates are decided there
        self.shadow = [p.detach().clone() for p in self.params]

    @property
    def updates(self) -> int:
        """The number of updates so far (skipped steps not counted)."""
        return int(self._count) if self._count is not None else self._updates

    @updates.setter
    def updates(self, value: int) -> None:
        self._updates, self._count = int(value), None

    @torch.no_grad()
    def update(self, keep: Tensor | None = None) -> None:
        """Move the average towards the current parameters.

        ``keep`` (a 0-dim tensor, 1 or 0) decides on the device whether the step counts: the trainer passes it so
        that a skipped step leaves the average, and its update count, as they were without a host synchronisation.
        ``None`` counts the step; it takes the same arithmetic, so a run is the same bit for bit whichever the
        caller decides on.
        """
        params = [p.detach() for p in self.params]
        if keep is None:
            keep = torch.ones((), device=self.shadow[0].device)
        if self._count is None:
            self._count = torch.tensor(float(self._updates), device=keep.device)
        c = self._count
        weight = (1.0 - ((1.0 + c) / (10.0 + c)).clamp(max=self.decay)) * keep
        diffs = torch._foreach_sub(params, self.shadow)
        torch._foreach_mul_(diffs, weight)
        torch._foreach_add_(self.shadow, diffs)
        c.add_(keep)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the parameters hold the average; afterwards their own values again."""
        with torch.no_grad():
            saved = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the parameters with the average (at the end of training)."""
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow"]
        if len(shadow) != len(self.shadow):
            raise ValueError(f"expected an EMA of {len(self.shadow)} tensors, got {len(shadow)}")
        self.updates = int(state["updates"])
        with torch.no_grad():
            for s, t in zip(self.shadow, shadow):
                s.copy_(t)


def first_nonfinite_grad(module: nn.Module) -> str:
    """The name of the first parameter of ``module`` whose gradient holds a NaN or infinity (``<none>``)."""
    for name, p in module.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return name
    return "<none>"


def _nonfinite(out: Any) -> bool:
    if isinstance(out, Tensor):
        return out.is_floating_point() and not bool(torch.isfinite(out).all())
    if isinstance(out, (tuple, list)):
        return any(_nonfinite(o) for o in out)
    return False


_WATCHED = ("forward", "inverse", "log_prob", "sample_and_log_prob")


def first_nonfinite_layer(model: nn.Module, rerun: Callable[[], object]) -> str | None:
    """Re-run a computation and name the first sub-module whose output held a NaN or infinity.

    Every sub-module's ``forward``, ``inverse``, ``log_prob`` and ``sample_and_log_prob`` is wrapped for the duration
    of ``rerun()`` (without gradients); the first call, in order of completion, that returns a non-finite tensor is
    reported as ``"'name' (Class.method)"``. Nested layers complete before their containers, so this is the innermost
    layer where the values went bad. Returns ``None`` when every output was finite (the problem lies outside the
    model, e.g. in the target density, or only in the backward pass).
    """
    found: list[str] = []
    patched: list[tuple[nn.Module, str]] = []

    def watch(name: str, module: nn.Module, method: str) -> None:
        original = getattr(module, method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            if not found and _nonfinite(out):
                found.append(f"{name!r} ({type(module).__name__}.{method})")
            return out

        object.__setattr__(module, method, wrapper)
        patched.append((module, method))

    for name, module in model.named_modules():
        if module is model:
            continue
        for method in _WATCHED:
            if callable(getattr(type(module), method, None)):
                watch(name, module, method)
    try:
        # a diagnosis must not replace the error it diagnoses
        with torch.no_grad(), contextlib.suppress(Exception):
            rerun()
    finally:
        for module, method in patched:
            object.__delattr__(module, method)
    return found[0] if found else None
