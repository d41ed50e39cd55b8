"""Validation during a fit: the held-out NLL every few steps, the best state restored at the end, early stopping.

The best state by validation NLL is kept in memory (and written to ``best.pt`` beside the training checkpoints), and
``patience`` validations in a row without a new best stop the fit early: the validation-based early stopping of
density estimation (Papamakarios et al. 2017). With an EMA of the weights, the average is what is validated.

References:
    Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017), arXiv:1705.07057.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..flow import values_checked
from .checkpoint import save_checkpoint
from .distributed import DistContext
from .evaluation import EVAL_BATCH_SIZE, nll_per_row
from .hygiene import NonFiniteError
from .losses import check_data
from .options import check_positive_int
from .trainer import Trainer


def _validate(flow: nn.Module, val: Tensor, context: Tensor | None, batch_size: int, ctx: DistContext,
              step: int) -> float:
    """The validation NLL: each rank evaluates its shard, the sums and counts are all-reduced."""
    n = val.shape[0]
    lo, hi = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    if hi > lo:
        with values_checked():  # the rows were checked once (check_data): no host read per batch
            nll = nll_per_row(flow, val[lo:hi], None if context is None else context[lo:hi], batch_size=batch_size)
        ok = torch.isfinite(nll)
        sums = torch.stack([torch.where(ok, nll, 0.0).sum(), ok.sum().double(), (~ok).sum().double()])
    else:
        sums = torch.zeros(3, dtype=torch.float64, device=val.device)
    total, count, bad = ctx.all_reduce_sum(sums).tolist()
    if bad:
        raise NonFiniteError(f"step {step}: the validation NLL is not finite: {int(bad)} of {n} rows have a "
                             "non-finite log-likelihood")
    return total / count


class Validation:
    """Validates a model on held-out ``data`` every ``every`` steps (and after the last), keeps the best state.

    Args:
        data: validation rows, ``(rows, *event_shape)``, on the model's device and in its dtype.
        context: their contexts, for a conditional flow.
        every: validate every this many steps.
        batch_size: rows per batch when validating.
        patience: stop after this many validations in a row without a new best (``None``: never stop early).

    Attributes:
        evaluations: ``(step, val_nll)`` of every validation so far.
        best_state: a copy of the best validated ``state_dict`` (``None`` before the first validation).
        best_step, best_val_nll: its step and validation NLL.
        stopped_early: whether ``patience`` ran out.
    """

    #: The metric column this fills in (the loss must have it).
    column = "val_nll"

    def __init__(self, data: Tensor, context: Tensor | None = None, *, every: int = 250,
                 batch_size: int = EVAL_BATCH_SIZE, patience: int | None = None):
        check_positive_int("eval_every", every)
        if patience is not None:
            check_positive_int("patience", patience)
        self.data, self.context, self.every, self.batch_size, self.patience = data, context, every, batch_size, patience
        self.best_state: dict[str, Tensor] | None = None
        self.since_best, self.saved_step = 0, None
        self.evaluations: list[tuple[int, float]] = []
        self.best_step: int | None = None
        self.best_val_nll = math.nan
        self.stopped_early = False

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` for validation data that does not fit ``model``."""
        check_data(model, self.data, self.context, "validation data", ("val", "val_context"))

    def prepare(self, model: nn.Module, trainer: Trainer) -> None:
        """Restore the validation's state from a resumed run's checkpoint."""
        if trainer.step == 0:
            return
        state = trainer.loop_state
        self.best_state, self.since_best = state["best_state"], int(state["since_best"])
        self.evaluations = [(int(s), float(v)) for s, v in state["evaluations"]]
        self.best_step, self.best_val_nll = state["best_step"], float(state["best_val_nll"])
        self.stopped_early, self.saved_step = bool(state["stopped_early"]), self.best_step

    def after_step(self, model: nn.Module, trainer: Trainer, row: dict[str, float]) -> None:
        """Validate after ``row["step"]`` when one is due, writing the NLL into ``row``."""
        step = int(row["step"])
        if step % self.every != 0 and step != trainer.steps:
            return
        with trainer.ema.applied() if trainer.ema is not None else nullcontext():
            val_nll = _validate(model, self.data, self.context, self.batch_size, trainer.ctx, step)
            if self.best_state is None or val_nll < self.best_val_nll:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                self.best_step, self.best_val_nll, self.since_best = step, val_nll, 0
            else:
                self.since_best += 1
        row[self.column] = val_nll
        self.evaluations.append((step, val_nll))
        if self.patience is not None and self.since_best >= self.patience:
            self.stopped_early = True

    def shown(self) -> dict[str, float]:
        """The latest validation NLL for the progress display (nothing before the first)."""
        return {"val": self.evaluations[-1][1]} if self.evaluations else {}

    def save_best(self, path: Path, meta: dict[str, Any]) -> None:
        """Write the best validated weights to ``path`` when they changed since the last write."""
        if self.best_state is not None and self.saved_step != self.best_step:
            save_checkpoint({"kind": "best", "model": self.best_state, "step": self.best_step,
                             "val_nll": self.best_val_nll, "meta": meta}, path)
            self.saved_step = self.best_step

    def state_dict(self) -> dict[str, Any]:
        """The resumable state (plain values and tensors), stored in every training checkpoint."""
        return {"best_state": self.best_state, "since_best": self.since_best,
                "evaluations": [[s, v] for s, v in self.evaluations], "best_step": self.best_step,
                "best_val_nll": self.best_val_nll, "stopped_early": self.stopped_early}
