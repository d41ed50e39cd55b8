"""The settings of a fit that do not depend on its loss: optimisation hygiene, logging and checkpoints, as one value.

Every loss is trained by the same loop (:func:`~tractable.training.loop.fit`) with the same :class:`TrainOptions`,
so a new objective needs no new arguments here, and an application fills one dataclass instead of forwarding a
dozen keywords.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def check_positive_int(name: str, value: object) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is a positive ``int`` (``bool`` is not one)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"expected {name} to be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainOptions:
    """How a fit optimises, logs and checkpoints, whatever its loss.

    Attributes:
        lr: the peak learning rate of Adam.
        schedule: ``cosine``, ``exponential`` or ``constant`` after the warmup.
        warmup: linear learning-rate warmup steps.
        lr_final: the ``exponential`` schedule's learning-rate factor at the last step.
        clip: clip the gradient norm to this value (0: no clipping; the norm is always logged).
        ema: decay of an exponential moving average of the weights (0: none); the model holds the average at the
            end unless a validation restores its best state.
        max_bad_steps: a step with a non-finite loss or gradient norm is skipped (no update); this many in a row
            stop the fit.
        detect_anomaly: run with ``torch.autograd`` anomaly detection (slow; names the backward op of a NaN).
        compile: compile what computes the loss with ``torch.compile`` (its forward and backward); the first step,
            which compiles, is timed apart (``FitHistory.compile_seconds``) from the steady-state steps.
        progress: show a progress bar (terminal) or periodic lines (rank 0 only).
        log_every: steps between host reads of the loss and gradient norm. Above 1 the non-finite guard decides
            every step on the device and every step still gets its row, but skipped steps are reported (and a run
            stopped) and the rows written, at the reads; so an accelerator is never kept waiting by the host. At 1
            the host decides, with the same result. ``None``: every step on CPU (a read costs nothing there),
            every 50 steps on an accelerator.
        metrics_csv: one row per step to this CSV file (rank 0 only; ``None``: none).
        metrics_jsonl: the same rows as JSON lines.
        tensorboard_dir: TensorBoard events here, when TensorBoard is installed.
        checkpoint_dir: training checkpoints here every ``checkpoint_every`` steps and at the end, keeping the
            ``keep_last`` newest (and ``best.pt``, the best validated weights, under a validation).
        checkpoint_every: steps between checkpoints.
        checkpoint_at: steps that get a checkpoint besides (e.g. an early one in a run shorter than
            ``checkpoint_every``, so that it can be resumed once killed).
        keep_last: training checkpoints kept.
        resume: continue from a training checkpoint (bit-identical on the same machine): ``True`` for the newest
            intact one in ``checkpoint_dir`` (a newer unreadable one is skipped with a warning), or its path.
        meta: plain values stored in every checkpoint (e.g. the run's configuration).
        callback: called as ``callback(step, row)`` after every step (``step`` counts finished steps, from 1).
        on_start: called once, with no arguments, after every argument has been checked and before the first file is
            read or written (an application takes its run directory there, so a rejected fit writes nothing).

    Raises:
        ValueError: for a non-positive count, ``lr <= 0``, ``clip < 0`` or an EMA decay outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> from tractable import NSF, TrainOptions, fit, get_dataset, standardize_flow
        >>> from tractable.training import LikelihoodLoss
        >>> data = get_dataset("eight_gaussians").sample(2048, generator=torch.Generator().manual_seed(0))
        >>> flow = standardize_flow(NSF(2, layers=2, hidden=16), data)
        >>> options = TrainOptions(lr=3e-3, warmup=10, clip=5.0, ema=0.99, progress=False)
        >>> history = fit(flow, LikelihoodLoss(data, batch_size=256), steps=50, options=options)
        >>> len(history.rows), sorted(history.rows[-1])[:3]
        (50, ['grad_norm', 'loss', 'lr'])
    """

    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int = 0
    lr_final: float = 0.01
    clip: float = 0.0
    ema: float = 0.0
    max_bad_steps: int = 5
    detect_anomaly: bool = False
    compile: bool = False
    progress: bool = True
    log_every: int | None = None
    metrics_csv: str | Path | None = None
    metrics_jsonl: str | Path | None = None
    tensorboard_dir: str | Path | None = None
    checkpoint_dir: str | Path | None = None
    checkpoint_every: int = 1000
    checkpoint_at: tuple[int, ...] = ()
    keep_last: int = 3
    resume: bool | str | Path = False
    meta: dict[str, Any] | None = None
    callback: Callable[[int, dict[str, float]], None] | None = None
    on_start: Callable[[], None] | None = None

    @classmethod
    def from_keywords(cls, **options: Any) -> TrainOptions:
        """``TrainOptions(**options)``, an unknown keyword a ``TypeError`` naming it and the known ones (the loops'
        keyword conveniences pass their ``**options`` through here)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown training option {unknown[0]!r}; expected one of {', '.join(known)}")
        return cls(**options)

    def __post_init__(self) -> None:
        for name in ("max_bad_steps", "checkpoint_every", "keep_last"):
            check_positive_int(name, getattr(self, name))
        if self.log_every is not None:
            check_positive_int("log_every", self.log_every)
        if not self.lr > 0 or not self.clip >= 0 or not 0 <= self.ema < 1:
            raise ValueError(f"expected lr > 0, clip >= 0 and 0 <= ema < 1, got lr={self.lr}, clip={self.clip}, "
                             f"ema={self.ema}")
