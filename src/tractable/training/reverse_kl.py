"""Fit a flow to an unnormalized density by minimising the reverse KL: the convenience over the one loop.

Each step draws a reparameterized batch ``x ~ q``, forms ``E[log q(x) - β_t log p̃(x)]`` and takes an Adam step.
The inverse temperature ``β_t = min(1, 0.01 + t/T)`` rises over the first ``anneal`` fraction of the steps (Rezende &
Mohamed 2015, §6.1), which lets the flow spread over all modes before the energy takes full effect; the learning rate
follows a cosine (default), exponential or constant schedule.

References:
    Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..flow import Flow
from ..targets.energies import Energy
from .hygiene import NonFiniteError
from .loop import FitHistory, fit
from .losses import ReverseKLLoss
from .options import TrainOptions, check_positive_int

# cli.py imports NonFiniteError from here; it stays until the CLI imports it from tractable.training (issue 10)
__all__ = ["NonFiniteError", "fit_reverse_kl"]


def fit_reverse_kl(
    flow: Flow,
    target: Energy,
    *,
    steps: int = 10_000,
    batch_size: int = 512,
    lr: float = 2e-3,
    anneal: float = 0.5,
    schedule: str = "cosine",
    warmup: int = 0,
    lr_final: float = 0.01,
    clip: float = 0.0,
    ema: float = 0.0,
    max_bad_steps: int = 5,
    detect_anomaly: bool = False,
    progress: bool = True,
    metrics_csv: str | Path | None = None,
    metrics_jsonl: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1000,
    keep_last: int = 3,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> FitHistory:
    """Train ``flow`` in place to minimise ``KL(q‖p)`` for ``p ∝ exp(-U)`` given by ``target``.

    ``fit(flow, ReverseKLLoss(target, batch_size=..., anneal=...), steps=steps, options=TrainOptions(...))``. Under
    ``torchrun`` (an initialised process group) every rank draws its own ``batch_size`` samples and DDP averages the
    gradients, so a step uses ``world_size × batch_size`` samples; rank 0 logs and writes checkpoints.

    Args:
        flow: the flow to train (its ``sample_and_log_prob`` must be reparameterized).
        target: the unnormalized target density.
        steps: number of Adam steps.
        batch_size: samples per step (per process).
        lr: peak learning rate.
        anneal: fraction of ``steps`` over which ``β`` rises from 0.01 to 1 (0: no annealing).
        schedule, warmup, lr_final, clip, ema, max_bad_steps, detect_anomaly, progress, metrics_csv, metrics_jsonl,
            tensorboard_dir, checkpoint_dir, checkpoint_every, keep_last, resume, meta, callback: as in
            :class:`~tractable.training.options.TrainOptions`; the rows have the columns ``COLUMNS``.

    Returns:
        The history (``rows``, ``seconds``, ``skipped``, ``final(key)``). The flow holds the EMA weights when
        ``ema`` is on, and is left in eval mode.

    Raises:
        NonFiniteError: after ``max_bad_steps`` non-finite steps in a row, naming the step, the quantity and the first
            layer whose output was not finite.
    """
    check_positive_int("steps", steps)
    loss = ReverseKLLoss(target, batch_size=batch_size, anneal=anneal)
    options = TrainOptions(
        lr=lr, schedule=schedule, warmup=warmup, lr_final=lr_final, clip=clip, ema=ema, max_bad_steps=max_bad_steps,
        detect_anomaly=detect_anomaly, progress=progress, metrics_csv=metrics_csv, metrics_jsonl=metrics_jsonl,
        tensorboard_dir=tensorboard_dir, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        keep_last=keep_last, resume=resume, meta=meta, callback=callback,
    )
    return fit(flow, loss, steps=steps, options=options)
