"""The variational training loop: fit a flow to an unnormalized density by minimising the reverse KL.

Each step draws a reparameterized batch ``x ~ q``, forms ``E[log q(x) - β_t log p̃(x)]`` and takes an Adam step.
The inverse temperature ``β_t = min(1, 0.01 + t/T)`` rises over the first ``anneal`` fraction of the steps (Rezende &
Mohamed 2015, §6.1), which lets the flow spread over all modes before the energy takes full effect; the learning rate
follows a cosine (default), exponential or constant schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..flow import Flow
from ..objectives import ReverseKL, annealing, ess_fraction, reverse_kl
from ..targets.energies import Energy
from .hygiene import NonFiniteError, make_adam, make_scheduler, seed_everything
from .trainer import Trainer, first_nonfinite_grad

__all__ = ["COLUMNS", "FitHistory", "NonFiniteError", "fit_reverse_kl", "make_adam", "make_scheduler",
           "seed_everything"]

COLUMNS = ("step", "loss", "kl", "ess", "beta", "lr", "grad_norm")

_first_nonfinite_grad = first_nonfinite_grad  # the name other modules used


class _Sampler(nn.Module):
    """``flow.sample_and_log_prob(n)`` as a module's forward, so DDP can wrap it."""

    def __init__(self, flow: Flow):
        super().__init__()
        self.flow = flow

    def forward(self, n: int) -> tuple[Tensor, Tensor]:
        return self.flow.sample_and_log_prob(n)


@dataclass
class FitHistory:
    """What a fit produced: the per-step rows (``COLUMNS``), the wall-clock ``seconds`` of training and the number of
    ``skipped`` (non-finite) steps."""

    rows: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0

    def final(self, key: str, last: int = 100) -> float:
        """The mean of ``key`` over the last ``last`` steps (NaN if never recorded)."""
        values = [r[key] for r in self.rows[-last:] if not math.isnan(r[key])]
        return float(np.mean(values)) if values else math.nan


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

    Under ``torchrun`` (an initialised process group) every rank draws its own ``batch_size`` samples and DDP averages
    the gradients, so a step uses ``world_size × batch_size`` samples; rank 0 logs and writes checkpoints.

    Args:
        flow: the flow to train (its ``sample_and_log_prob`` must be reparameterized).
        target: the unnormalized target density.
        steps: number of Adam steps.
        batch_size: samples per step (per process).
        lr: peak learning rate.
        anneal: fraction of ``steps`` over which ``β`` rises from 0.01 to 1 (0: no annealing).
        schedule: learning-rate schedule (``cosine``, ``exponential``, ``constant``) after the warmup.
        warmup: linear learning-rate warmup steps.
        lr_final: the ``exponential`` schedule's learning-rate factor at the last step.
        clip: clip the gradient norm to this value (0: no clipping; the norm is always recorded).
        ema: decay of an exponential moving average of the weights (0: none); the flow holds the average at the end.
        max_bad_steps: a step with a non-finite loss or gradient norm is skipped; this many in a row stop the fit.
        detect_anomaly: run with autograd anomaly detection (slow; for debugging NaNs in the backward pass).
        progress: show a progress bar (terminal) or periodic lines.
        metrics_csv: write one row per step (``COLUMNS``) to this CSV file.
        metrics_jsonl: the same rows as JSON lines.
        tensorboard_dir: TensorBoard events here, when TensorBoard is installed.
        checkpoint_dir: write a training checkpoint here every ``checkpoint_every`` steps (and at the end), keeping
            the ``keep_last`` newest.
        checkpoint_every: steps between checkpoints.
        keep_last: checkpoints kept.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` (bit-identical on the same machine).
        meta: plain values stored in every checkpoint.
        callback: called as ``callback(step, row)`` after every step.

    Raises:
        NonFiniteError: after ``max_bad_steps`` non-finite steps in a row, naming the step, the quantity and the first
            layer whose output was not finite.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    if not lr > 0 or not 0 <= anneal <= 1:
        raise ValueError(f"expected lr > 0 and 0 <= anneal <= 1, got lr={lr}, anneal={anneal}")
    trainer = Trainer(
        flow, steps=steps, lr=lr, columns=COLUMNS, desc=f"fit {target.name}", schedule=schedule, warmup=warmup, lr_final=lr_final,
        clip=clip, ema=ema, max_bad_steps=max_bad_steps, detect_anomaly=detect_anomaly, progress=progress,
        metrics_csv=metrics_csv, metrics_jsonl=metrics_jsonl, tensorboard_dir=tensorboard_dir,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, keep_last=keep_last, resume=resume,
        callback=callback, meta=meta, step_base=0,
    )
    try:
        trainer.decorrelate_ranks()  # identical initial weights, but each rank its own samples
        sampler = trainer.wrap(_Sampler(flow))
    except BaseException:
        trainer.close()
        raise
    log_z = target.log_z
    anneal_steps = round(anneal * steps)
    history = FitHistory(rows=list(trainer.previous_rows))

    def describe(loss: Tensor, out: ReverseKL) -> str:
        q_bad, p_bad = int((~torch.isfinite(out.log_q)).sum()), int((~torch.isfinite(out.log_p)).sum())
        return (f"the loss is {loss.item()} (non-finite log q in {q_bad} and non-finite target log-density in "
                f"{p_bad} of {batch_size} samples)")

    def rerun() -> None:
        with torch.random.fork_rng(devices=[]):
            reverse_kl(flow, target, batch_size)

    flow.train()
    try:
        while trainer.step < steps:
            beta = annealing(trainer.step, anneal_steps)

            def compute(beta: float = beta) -> tuple[Tensor, ReverseKL]:
                x, log_q = sampler(batch_size)
                log_p = target.log_prob(x)
                out = ReverseKL((log_q - beta * log_p).mean(), log_q, log_p)
                return out.loss, out

            result = trainer.train_step(compute, describe, rerun)
            log_w = result.aux.log_w
            row = {
                "step": trainer.step,
                "loss": result.loss,
                "kl": (log_z - log_w.mean().item()) if log_z is not None else math.nan,
                "ess": ess_fraction(log_w),
                "beta": beta,
                "lr": result.lr,
                "grad_norm": result.grad_norm,
            }
            history.rows.append(row)
            shown = {"loss": row["loss"], "kl": row["kl"], "ess": row["ess"]} if log_z is not None else \
                {"loss": row["loss"], "ess": row["ess"]}
            trainer.end_step(row, shown, dict)
        trainer.finish({})
    finally:
        trainer.close()
        history.seconds, history.skipped = trainer.seconds, trainer.skipped
    if trainer.ema is not None:
        trainer.ema.copy_to_params()
    return history
