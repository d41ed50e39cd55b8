"""The one training loop: any loss, the same hygiene, logging, checkpoints, exact resume and DDP.

:func:`fit` takes a model, a :class:`Loss` (reverse KL to an energy, maximum likelihood of data, which on an
:class:`~tractable.models.image_flow.ImageFlow` is the dequantized likelihood), :class:`TrainOptions` and optionally
a :class:`~tractable.training.validation.Validation`; :func:`~tractable.training.reverse_kl.fit_reverse_kl` and
:func:`~tractable.training.max_likelihood.fit_max_likelihood` are conveniences that build these from keywords.
Steps are counted from 1 (``metrics.csv``'s ``step`` column, the callback, progress and error messages alike).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
from torch import Tensor, nn

from .checkpoint import CheckpointError
from .metrics_log import row_columns
from .options import TrainOptions, check_positive_int
from .trainer import Trainer
from .validation import Validation


class Loss(Protocol):
    """What :func:`fit` needs from an objective.

    Attributes:
        columns: the loss's own metric columns; a row is ``step, loss, *columns, lr, grad_norm``.
        desc: the progress label.
    """

    columns: tuple[str, ...]
    desc: str

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` for data that does not fit ``model`` (before any file is written)."""

    def prepare(self, model: nn.Module, trainer: Trainer) -> None:
        """Bind to the run before the first step: restore the loss's state from ``trainer.loop_state`` when resumed,
        initialise data-dependent layers, decorrelate the ranks and wrap what computes the loss (``trainer.wrap``)."""

    def compute(self, step: int) -> tuple[Tensor, Any]:
        """The loss of step ``step`` (counted from 1) and what :meth:`metrics` and :meth:`describe` read."""

    def metrics(self, step: int, aux: Any) -> dict[str, float]:
        """The row's values of :attr:`columns` for step ``step``: floats, or 0-dim tensors, which the trainer reads
        on the host with the step's loss (every ``log_every`` steps: no synchronisation per step)."""

    def shown(self, row: dict[str, float]) -> dict[str, float]:
        """What the progress display shows of ``row``."""

    def describe(self, loss: Tensor, aux: Any) -> str:
        """Why a non-finite local ``loss`` is bad (the quantity and how many rows)."""

    def rerun(self) -> None:
        """Recompute the loss of the last step outside DDP (to find the first non-finite layer)."""

    def state_dict(self) -> dict[str, Any]:
        """The loss's resumable state (plain values and tensors), stored in every training checkpoint."""


@dataclass(repr=False)
class FitHistory:
    """What a fit produced.

    Attributes:
        rows: one dict per step (the fit's columns; NaN where a value was not computed).
        seconds: wall-clock seconds of training (validation included), over every session of a resumed run.
        skipped: the number of non-finite steps skipped.
        evaluations: ``(step, val_nll)`` for every validation (empty without one).
        best_step: the step whose state was restored (``None`` without validation).
        best_val_nll: its validation NLL (NaN without validation).
        stopped_early: whether the validation's ``patience`` ended the fit before ``steps``.
        compile_seconds: under ``TrainOptions.compile``, the wall-clock seconds of the first step of this session,
            which compiles the graphs (0 without compiling); ``seconds`` includes it.
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_val_nll: float = math.nan
    stopped_early: bool = False
    compile_seconds: float = 0.0

    def __repr__(self) -> str:  # a summary: the dataclass's repr would print every row of a long fit
        last = self.rows[-1] if self.rows else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step" and isinstance(v, float))
        best = f", best_step={self.best_step}, best_val_nll={self.best_val_nll:.4g}" if self.best_step else ""
        return (f"FitHistory({len(self.rows)} rows, last step {last.get('step', '-')}: {shown or '-'}; "
                f"seconds={self.seconds:.1f}, skipped={self.skipped}{best})")

    def final(self, key: str, last: int = 100) -> float:
        """The mean of ``key`` over the last ``last`` steps (NaN if never recorded)."""
        values = [r[key] for r in self.rows[-last:] if not math.isnan(r[key])]
        return float(np.mean(values)) if values else math.nan


def fit(model: nn.Module, loss: Loss, *, steps: int, options: TrainOptions | None = None,
        validation: Validation | None = None) -> FitHistory:
    """Train ``model`` in place for ``steps`` Adam steps of ``loss``.

    Under ``torchrun`` (an initialised process group) the loss's module is wrapped in DDP, which averages the
    gradients; only rank 0 writes files and shows progress.

    Args:
        model: the model (e.g. a :class:`~tractable.flow.Flow`) whose trainable parameters are optimised.
        loss: the objective, e.g. :class:`~tractable.training.losses.ReverseKLLoss` or
            :class:`~tractable.training.losses.LikelihoodLoss`.
        steps: the number of steps (the most; a validation's ``patience`` may stop sooner).
        options: optimisation, logging and checkpoint settings (default :class:`TrainOptions()`).
        validation: validate held-out data during the fit, restore the best state at the end, stop early.

    Returns:
        The history. The model holds the best validated state (with a validation), else the EMA weights (when
        ``options.ema``), else its last weights, and is left in eval mode.

    Raises:
        ValueError: for malformed arguments or data.
        NonFiniteError: after ``options.max_bad_steps`` non-finite steps in a row (naming the step, the quantity and
            the first non-finite layer), or when the validation NLL is not finite.
        CheckpointError: when resuming from a checkpoint that is missing, unreadable or of another run.

    Example:
        >>> import torch
        >>> from tractable import ElementwiseAffine, Flow, StandardNormal
        >>> from tractable.training import LikelihoodLoss, TrainOptions, Validation, fit
        >>> flow = Flow(ElementwiseAffine(2), StandardNormal(2))
        >>> x = 2 * torch.randn(1200, 2) + 1
        >>> history = fit(flow, LikelihoodLoss(x[:1000], batch_size=100), steps=150,
        ...               options=TrainOptions(lr=0.05, progress=False), validation=Validation(x[1000:], every=50))
        >>> [step for step, _ in history.evaluations], history.rows[0]["step"]
        ([50, 100, 150], 1)
    """
    check_positive_int("steps", steps)
    if validation is not None and validation.column not in loss.columns:
        raise ValueError(f"expected a loss with a {validation.column!r} column for the validation, got columns "
                         f"{loss.columns}")
    loss.check(model)
    if validation is not None:
        validation.check(model)
    trainer = Trainer(model, steps=steps, columns=row_columns(loss.columns), desc=loss.desc, options=options)
    try:
        try:
            loss.prepare(model, trainer)
            if validation is not None:
                validation.prepare(model, trainer)
        except KeyError as e:  # a resumed checkpoint of a run without this loss's (or validation's) state
            raise CheckpointError(f"checkpoint {str(trainer.resumed_from)!r} does not fit this run: its loop state "
                                  f"has no {e}") from None
    except BaseException:
        trainer.close()
        raise
    history = FitHistory(rows=list(trainer.previous_rows))
    checkpoint_dir = trainer.checkpoint_dir

    def loop_state() -> dict[str, Any]:
        if validation is None:
            return loss.state_dict()
        if trainer.ctx.is_main and checkpoint_dir is not None:
            validation.save_best(checkpoint_dir / "best.pt", trainer.meta)
        return {**loss.state_dict(), **validation.state_dict()}

    model.train()
    try:
        while trainer.step < steps and not (validation is not None and validation.stopped_early):
            step = trainer.step + 1
            result = trainer.train_step(partial(loss.compute, step), loss.describe, loss.rerun)
            row = {"step": step, "loss": result.loss, **loss.metrics(step, result.aux), "lr": result.lr,
                   "grad_norm": result.grad_norm}
            shown = loss.shown(row)
            if validation is not None:
                validation.after_step(model, trainer, row)
                shown.update(validation.shown())
            history.rows.append(row)
            trainer.end_step(row, shown, loop_state)
        trainer.finish(loop_state())
    finally:
        trainer.close()
        history.seconds, history.skipped = trainer.seconds, trainer.skipped
        history.compile_seconds = trainer.compile_seconds
    if validation is not None and validation.best_state is not None:
        model.load_state_dict(validation.best_state)
    elif trainer.ema is not None:
        trainer.ema.copy_to_params()
    if validation is not None:
        history.evaluations = list(validation.evaluations)
        history.best_step, history.best_val_nll = validation.best_step, validation.best_val_nll
        history.stopped_early = validation.stopped_early
    model.eval()
    return history
