"""The training core of the loop: optimisation step with hygiene, logging, checkpoints and exact resume.

A :class:`Trainer` owns the optimizer (Adam), the learning-rate schedule (warmup, then cosine/exponential/constant),
the EMA of the weights, the non-finite guard, the metric files, the progress display and the periodic checkpoints;
the loop (:func:`~tractable.training.loop.fit`) asks the loss how to compute a step and what its own state is (the
sampler position, the best validated weights, ...). The model is anything with parameters whose loss is computed,
e.g. ``flow.log_prob(x, context)`` for data of any shape (vectors or images) or ``flow.sample_and_log_prob(n)`` for
reverse KL. Steps are counted from 1, in the rows and in every message alike.

A training checkpoint holds the model, the optimizer (fused Adam included), the scheduler, the EMA, the step, the
skipped-step streak, every rank's random-number generator states and the loop's state, all as tensors and plain
values. Resuming from it on the same machine continues bit for bit as if the run had never stopped.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    newest_intact_checkpoint,
    save_step_checkpoint,
)
from .data_init import initialize_from_data
from .distributed import DistContext
from .hygiene import (
    EMA,
    NonFiniteError,
    clip_grad_norm,
    first_nonfinite_grad,
    first_nonfinite_layer,
    make_adam,
    make_scheduler,
)
from .metrics_log import MetricsLog
from .options import TrainOptions, check_positive_int
from .progress import Progress
from .rng import SEED_STRIDE, get_rng_state, set_rng_state

#: Skipped steps reported one line each, then every ``_SKIP_REPORT_EVERY``-th.
_SHOWN_SKIPS = 5
_SKIP_REPORT_EVERY = 100


@dataclass
class StepResult:
    """One optimisation step: the (global-batch) ``loss``, the gradient norm before clipping, the learning rate used,
    whether the step was ``skipped`` as non-finite, and what the loss's ``compute`` returned besides the loss.

    Between host reads (``TrainOptions.log_every > 1``) ``loss`` and ``grad_norm`` are 0-dim tensors on the model's
    device and ``skipped`` is ``None``: the step is judged, and the row written, at the next read."""

    loss: float | Tensor
    grad_norm: float | Tensor
    lr: float
    skipped: bool | None
    aux: Any


@dataclass
class _Pending:
    """A step not yet read on the host: its values on the device and what describes it, then its row."""

    label: int
    values: Tensor | None = None  # (loss, grad norm, local loss finite); None: nothing to judge (a row alone)
    loss: Tensor | None = None
    aux: Any = None
    describe: Callable[[Tensor, Any], str] | None = None
    rerun: Callable[[], object] | None = None
    row: dict[str, Any] | None = None
    shown: dict[str, Any] | None = None
    read: bool = False  # the values below hold the host copy
    judged: bool = False
    loss_value: float = math.nan
    norm_value: float = math.nan
    local_ok: bool = True


class Trainer:
    """Runs optimisation steps of ``model``'s trainable parameters with the hygiene a long run needs.

    Args:
        model: the module being trained (its ``state_dict`` is what checkpoints hold).
        steps: the number of steps of the run (sets the schedule).
        columns: the metric columns of every row.
        desc: the progress label.
        options: the optimisation, logging and checkpoint settings.

    Example:
        >>> import torch
        >>> from tractable import ElementwiseAffine, Flow, StandardNormal
        >>> from tractable.training import TrainOptions, Trainer
        >>> flow = Flow(ElementwiseAffine(2), StandardNormal(2))
        >>> x = 2 * torch.randn(512, 2) + 1
        >>> trainer = Trainer(flow, steps=200, columns=("step", "loss"), desc="demo",
        ...                   options=TrainOptions(lr=0.05, progress=False))
        >>> while trainer.step < trainer.steps:
        ...     r = trainer.train_step(lambda: (-flow.log_prob(x).mean(), None), lambda loss, aux: "", lambda: None)
        ...     trainer.end_step({"step": trainer.step, "loss": r.loss}, {}, dict)
        >>> trainer.finish({})
        >>> bool((flow.sample(10_000).mean(0) - 1).abs().max() < 0.2)  # the flow learned the data's mean
        True
    """

    def __init__(self, model: nn.Module, *, steps: int, columns: tuple[str, ...], desc: str,
                 options: TrainOptions | None = None):
        options = options if options is not None else TrainOptions()
        check_positive_int("steps", steps)
        self.model, self.steps, self.options = model, steps, options
        self.lr, self.clip = options.lr, options.clip
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.device = self.params[0].device
        self.ctx = DistContext.current()
        self.optimizer = make_adam(self.params, options.lr)
        every = options.log_every if options.log_every is not None else (1 if self.device.type == "cpu" else 50)
        # Between host reads fused Adam skips a non-finite step on the device (its found_inf input). Reading every
        # step (CPU's default) the host decides: found_inf would only add a per-parameter pass to every step.
        self.on_device = every > 1 and bool(self.optimizer.defaults.get("fused")) and not options.detect_anomaly
        self.log_every = every if self.on_device else 1
        self.pending: list[_Pending] = []
        self.scheduler = make_scheduler(self.optimizer, options.schedule, steps, warmup=options.warmup,
                                        final=options.lr_final)
        self.ema = EMA(self.params, options.ema) if options.ema > 0 else None
        self.max_bad_steps, self.callback, self.meta = options.max_bad_steps, options.callback, options.meta or {}
        self.checkpoint_dir = Path(options.checkpoint_dir) if options.checkpoint_dir is not None else None
        self.checkpoint_every, self.keep_last = options.checkpoint_every, options.keep_last
        self.checkpoint_at = frozenset(options.checkpoint_at)
        self.step, self.bad_streak, self.skipped, self.first_bad = 0, 0, 0, ""
        self.compile_seconds = 0.0  # the first step's wall-clock seconds under options.compile
        self.saved_step, self.seconds_before = -1, 0.0
        self.loop_state: dict[str, Any] = {}
        self.resumed_from: Path | None = None
        if options.on_start is not None:  # every argument is checked: the caller may now write
            options.on_start()
        if options.resume is not False:
            self._resume(None if options.resume is True else Path(options.resume))
        main = self.ctx.is_main
        self.log = MetricsLog(columns, csv_path=options.metrics_csv if main else None,
                              jsonl_path=options.metrics_jsonl if main else None,
                              tensorboard_dir=options.tensorboard_dir if main else None,
                              resume_step=self.step if options.resume else None)
        self.previous_rows = self.log.previous
        self.bar = Progress(steps, desc=desc, enabled=options.progress and main)
        self.anomaly_before = torch.is_anomaly_enabled()
        if options.detect_anomaly:
            torch.autograd.set_detect_anomaly(True)
        self.detect_anomaly = options.detect_anomaly
        self.start = time.perf_counter()

    # -- set-up -------------------------------------------------------------------------------------------------------

    def _resume(self, path: Path | None) -> None:
        if path is not None:
            state = load_checkpoint(path, map_location=self.device)
        else:
            if self.checkpoint_dir is None:
                raise CheckpointError("cannot resume without a checkpoint directory")
            found = newest_intact_checkpoint(self.checkpoint_dir, map_location=self.device, warn=self.ctx.is_main)
            if found is None:
                raise CheckpointError(f"no checkpoint to resume from in {str(self.checkpoint_dir)!r} "
                                      "(expected step-*.pt files)")
            path, state = found
        if "model" not in state:
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this run: it holds no 'model'")
        load_model_state(self.model, state["model"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            self.step, self.bad_streak = int(state["step"]), int(state["bad_streak"])
            self.skipped, self.first_bad = int(state["skipped"]), str(state["first_bad"])
            self.seconds_before, self.loop_state = float(state["seconds"]), dict(state["loop"])
            rngs = state["rng"]
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this run: {first}") from None
        if len(rngs) == self.ctx.world_size:
            set_rng_state(rngs[self.ctx.rank])
        elif self.ctx.is_main:
            print(f"tractable: the checkpoint was written by {len(rngs)} processes, this run has "
                  f"{self.ctx.world_size}: random streams restart (the run is not bit-identical)", file=sys.stderr)
        self.saved_step, self.resumed_from = self.step, path

    def initialize_from_data(self, run: Callable[[], object], *, conditioners: bool = True) -> int:
        """Initialise the model's data-dependent layers from the global first batch (``run()`` computes it; see
        :func:`~tractable.training.data_init.initialize_from_data`); a fresh run only (a resumed one has them
        loaded). Call before :meth:`wrap`. Returns the number of layers set."""
        if self.step > 0:
            return 0
        n = initialize_from_data(self.model, run, self.ctx, conditioners=conditioners)
        if n and self.ema is not None:
            self.ema = EMA(self.params, self.ema.decay)
        return n

    def decorrelate_ranks(self) -> None:
        """Give every rank its own random stream for a fresh run (after the identical initialisation), so sampling,
        dequantization noise or dropout differ between ranks; a resumed run restores each rank's saved stream."""
        if self.ctx.distributed and self.step == 0:
            torch.manual_seed((torch.initial_seed() + SEED_STRIDE * self.ctx.rank) % 2**63)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` (which computes the loss's model output) in DDP when distributed, compiled with
        ``torch.compile`` under ``options.compile``, else itself."""
        module = self.ctx.wrap(module, self.device)
        return torch.compile(module) if self.options.compile else module

    # -- the step -----------------------------------------------------------------------------------------------------

    def train_step(self, compute: Callable[[], tuple[Tensor, Any]], describe: Callable[[Tensor, Any], str],
                   rerun: Callable[[], object]) -> StepResult:
        """One step: ``compute()`` returns ``(loss, aux)``; backward, clip, and an optimizer step unless non-finite.

        ``describe(loss, aux)`` says why a non-finite local loss is bad (without the step); ``rerun()`` recomputes the
        batch without DDP, to find the first non-finite layer when the run stops. Between reads the non-finite guard
        decides on the device (fused Adam's ``found_inf``; the EMA masked alike), so nothing waits for the host; the
        values are read, skipped steps reported and the rows written every ``log_every`` steps (every step by default
        on CPU, where the host decides).

        Raises:
            NonFiniteError: after ``max_bad_steps`` non-finite steps in a row, naming the step and the layer (at the
                read that finds them).
        """
        label = self.step + 1  # the step being taken, counted from 1
        first = self.options.compile and self.compile_seconds == 0.0
        if first:
            start = time.perf_counter()
        try:
            loss, aux = compute()
            local_ok = torch.isfinite(loss.detach())
            total = loss.detach()
            if self.ctx.distributed:
                total = self.ctx.all_reduce_sum(total.clone()) / self.ctx.world_size
            self.optimizer.zero_grad(set_to_none=True)
            # Every rank joins DDP's gradient all-reduce; a local non-finite loss gives non-finite gradients, so the
            # step is skipped below (only anomaly detection, a debugging mode, needs the host to know first).
            if self.on_device or self.ctx.distributed or bool(local_ok):
                loss.backward()
                grad_norm = clip_grad_norm(self.params, self.clip)
            else:
                grad_norm = torch.tensor(math.nan, device=total.device)
        except RuntimeError as e:
            if not self.detect_anomaly:
                raise
            first = str(e).strip().splitlines()[0]
            raise NonFiniteError(f"step {label}: anomaly detection stopped the backward pass: {first}") from None
        if first:  # the first step compiles the forward and backward graphs: its time is not the steady state's
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - start
            if self.ctx.is_main and self.options.progress:
                print(f"tractable: compiled the training step in {self.compile_seconds:.1f}s (the first step; the "
                      "speed of the others is the steady state's)", file=sys.stderr, flush=True)
        lr = self.optimizer.param_groups[0]["lr"]
        # total and the norm agree across ranks (all-reduced), so every rank takes the same decision
        dtype = torch.float64 if total.dtype == torch.float64 else torch.float32
        values = torch.stack([total.to(dtype), grad_norm.to(total.device, dtype), local_ok.to(dtype)])
        pending = _Pending(label, values, loss.detach(), aux, describe, rerun)
        self.pending.append(pending)
        if self.on_device:
            bad = (~torch.isfinite(values[:2]).all()).float()
            self.optimizer.found_inf = bad
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(1.0 - bad)
        if self.log_every == 1:
            skipped = self._judge(pending)
            if not self.on_device and not skipped:
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update()
        else:
            skipped = None
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": the schedule follows steps
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.step += 1
        if skipped is None:
            return StepResult(values[0], values[1], lr, None, aux)
        return StepResult(pending.loss_value, pending.norm_value, lr, skipped, aux)

    def _judge(self, p: _Pending) -> bool:
        """Read step ``p``'s values on the host (already read with :meth:`_read` when many are pending): whether it
        was skipped; reports it, and stops the run after ``max_bad_steps`` in a row."""
        if not p.read:
            p.loss_value, p.norm_value, local = p.values.tolist()
            p.local_ok, p.read = local > 0, True
        p.judged = True
        if math.isfinite(p.loss_value) and math.isfinite(p.norm_value):
            self.bad_streak = 0
            return False
        if not p.local_ok:
            reason = p.describe(p.loss, p.aux)
        elif not math.isfinite(p.loss_value):
            reason = f"the loss is {p.loss_value} on another rank"
        else:
            reason = (f"the gradient norm is {p.norm_value} (first non-finite gradient in parameter "
                      f"{first_nonfinite_grad(self.model)!r})")
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        self.bad_streak += 1
        if self.bad_streak == 1:
            self.first_bad = f"step {p.label}: {reason}"
        if self.ctx.is_main and (self.skipped <= _SHOWN_SKIPS or self.skipped % _SKIP_REPORT_EVERY == 0):
            print(f"tractable: skipped step {p.label} (no update): {reason}", file=sys.stderr, flush=True)
        if self.bad_streak >= self.max_bad_steps:
            layer = first_nonfinite_layer(self.model, p.rerun)
            where = (f"first non-finite output: layer {layer}" if layer is not None else
                     "every layer's output was finite (the non-finite values came from outside the layers, e.g. "
                     "the target density, or from the backward pass: rerun with --detect-anomaly)")
            raise NonFiniteError(
                f"stopped at step {p.label} after {self.bad_streak} non-finite steps in a row (the first, "
                f"{self.first_bad}); {where}; try a smaller learning rate (lr={self.lr}), --clip or --warmup"
            )
        return True

    def _read(self) -> None:
        """Read every pending step's values, and the tensors of their rows, in one host synchronisation; judge the
        steps in order and write their rows (log, callback, progress)."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        unread = [p for p in pending if not p.read and p.values is not None]
        cells = [(d, k) for p in pending for d in (p.row, p.shown) if d is not None
                 for k, v in d.items() if isinstance(v, Tensor)]
        flat = [p.values.double() for p in unread] + [d[k].detach().reshape(1).double() for d, k in cells]
        if flat:
            read = torch.cat(flat).tolist()
            for i, p in enumerate(unread):
                p.loss_value, p.norm_value, local = read[3 * i : 3 * i + 3]
                p.local_ok, p.read = local > 0, True
            for (d, k), v in zip(cells, read[3 * len(unread) :]):
                d[k] = v
        for p in pending:
            if not p.judged and p.values is not None:
                self._judge(p)
            if p.row is not None:
                self._write(p.row, p.shown or {})

    def _write(self, row: dict[str, float], shown: dict[str, float]) -> None:
        self.log.write(row)
        if self.callback is not None:
            self.callback(int(row.get("step", self.step)), row)
        self.bar.update(int(row.get("step", self.step)), shown)

    def end_step(self, row: dict[str, float], shown: dict[str, float],
                 loop_state: Callable[[], dict[str, Any]]) -> None:
        """Log ``row``, show progress, call the callback and write a checkpoint when one is due.

        Tensor values of ``row`` and ``shown`` (e.g. a deferred :class:`StepResult`'s loss) are read on the host with
        the step's own values, every ``log_every`` steps; the row dicts then hold floats."""
        if self.pending and self.pending[-1].row is None:
            self.pending[-1].row, self.pending[-1].shown = row, shown
        else:  # a row of no pending step (e.g. written by hand): in order, after the pending ones
            self.pending.append(_Pending(self.step, row=row, shown=shown))
        due = self.checkpoint_dir is not None and (self.step % self.checkpoint_every == 0
                                                   or self.step in self.checkpoint_at)
        if due or self.step % self.log_every == 0 or self.step >= self.steps:
            self._read()
        if due:
            self.save(loop_state())

    @property
    def seconds(self) -> float:
        """Training wall-clock seconds, over every session of a resumed run."""
        return self.seconds_before + time.perf_counter() - self.start

    # -- checkpoints --------------------------------------------------------------------------------------------------

    def save(self, loop_state: dict[str, Any]) -> None:
        """Write the training checkpoint of the current step (rank 0; every rank contributes its RNG states)."""
        self._read()
        rngs = self.ctx.gather_objects(get_rng_state())
        if self.ctx.is_main and self.checkpoint_dir is not None:
            self.log.flush()  # the metric files must hold every row up to the checkpoint's step
            state = {
                "kind": "training", "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None, "rng": rngs,
                "world_size": self.ctx.world_size, "bad_streak": self.bad_streak, "skipped": self.skipped,
                "first_bad": self.first_bad, "seconds": self.seconds, "loop": loop_state, "meta": self.meta,
            }
            save_step_checkpoint(state, self.checkpoint_dir, self.step, keep_last=self.keep_last)
        self.saved_step = self.step

    def finish(self, loop_state: dict[str, Any]) -> None:
        """Write the final training checkpoint (if the last one is older) and close the files."""
        self._read()
        if self.checkpoint_dir is not None and self.saved_step != self.step:
            self.save(loop_state)
        self.close()

    def close(self) -> None:
        """Close the files and the progress display; restore the anomaly-detection setting (idempotent)."""
        self.bar.close()
        self.log.close()
        torch.autograd.set_detect_anomaly(self.anomaly_before)
