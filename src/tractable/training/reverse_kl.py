"""The variational training loop: fit a flow to an unnormalized density by minimising the reverse KL.

Each step draws a reparameterized batch ``x ~ q``, forms ``E[log q(x) - β_t log p̃(x)]`` and takes an Adam step.
The inverse temperature ``β_t = min(1, 0.01 + t/T)`` rises over the first ``anneal`` fraction of the steps (Rezende &
Mohamed 2015, §6.1), which lets the flow spread over all modes before the energy takes full effect; the learning rate
follows a cosine (default), exponential or constant schedule.
"""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..flow import Flow
from ..objectives import annealing, ess_fraction, reverse_kl
from ..targets.energies import Energy
from .progress import Progress

COLUMNS = ("step", "loss", "kl", "ess", "beta", "lr", "grad_norm")


class NonFiniteError(FloatingPointError):
    """Training met a NaN or infinity; the message names the step and the quantity."""


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators so a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``cosine`` (to zero at the last step), ``exponential`` (to 1% at the last step) or ``constant``."""
    if schedule == "cosine":
        fn: Callable[[int], float] = lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))  # noqa: E731
    elif schedule == "exponential":
        fn = lambda t: 0.01 ** (min(t, steps) / steps)  # noqa: E731
    elif schedule == "constant":
        fn = lambda t: 1.0  # noqa: E731
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected cosine, exponential or constant")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def make_adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch and device support it (3x less overhead on small models)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _first_nonfinite_grad(module: nn.Module) -> str:
    for name, p in module.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return name
    return "<none>"


@dataclass
class FitHistory:
    """What a fit produced: the per-step rows (``COLUMNS``) and the wall-clock ``seconds`` of training."""

    rows: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

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
    clip: float = 0.0,
    progress: bool = True,
    metrics_csv: str | Path | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> FitHistory:
    """Train ``flow`` in place to minimise ``KL(q‖p)`` for ``p ∝ exp(-U)`` given by ``target``.

    Args:
        flow: the flow to train (its ``sample_and_log_prob`` must be reparameterized).
        target: the unnormalized target density.
        steps: number of Adam steps.
        batch_size: samples per step.
        lr: peak learning rate.
        anneal: fraction of ``steps`` over which ``β`` rises from 0.01 to 1 (0: no annealing).
        schedule: learning-rate schedule (``cosine``, ``exponential``, ``constant``).
        clip: clip the gradient norm to this value (0: no clipping; the norm is always recorded).
        progress: show a progress bar (terminal) or periodic lines.
        metrics_csv: write one row per step (``COLUMNS``) to this CSV file.
        callback: called as ``callback(step, row)`` after every step.

    Raises:
        NonFiniteError: when the loss or the gradient becomes NaN or infinite, naming the step and the quantity.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    if not lr > 0 or not 0 <= anneal <= 1:
        raise ValueError(f"expected lr > 0 and 0 <= anneal <= 1, got lr={lr}, anneal={anneal}")
    params = [p for p in flow.parameters() if p.requires_grad]
    optimizer = make_adam(params, lr)
    scheduler = make_scheduler(optimizer, schedule, steps)
    log_z = target.log_z
    anneal_steps = round(anneal * steps)
    history = FitHistory()
    bar = Progress(steps, desc=f"fit {target.name}", enabled=progress)
    writer, handle = None, None
    if metrics_csv is not None:
        handle = open(metrics_csv, "w", newline="")  # noqa: SIM115 - closed in finally
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
    start = time.perf_counter()
    try:
        for step in range(steps):
            beta = annealing(step, anneal_steps)
            out = reverse_kl(flow, target, batch_size, beta=beta)
            loss = out.loss
            if not torch.isfinite(loss):
                q_bad = int((~torch.isfinite(out.log_q)).sum())
                p_bad = int((~torch.isfinite(out.log_p)).sum())
                raise NonFiniteError(
                    f"step {step}: the loss is {loss.item()} (non-finite log q in {q_bad} and non-finite target "
                    f"log-density in {p_bad} of {batch_size} samples); try a smaller learning rate (lr={lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
            if not torch.isfinite(grad_norm):
                raise NonFiniteError(
                    f"step {step}: the gradient norm is {grad_norm.item()} (first non-finite gradient in parameter "
                    f"{_first_nonfinite_grad(flow)!r}); try a smaller learning rate (lr={lr}) or clip"
                )
            current_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            log_w = out.log_w
            row = {
                "step": step + 1,
                "loss": loss.item(),
                "kl": (log_z - log_w.mean().item()) if log_z is not None else math.nan,
                "ess": ess_fraction(log_w),
                "beta": beta,
                "lr": current_lr,
                "grad_norm": grad_norm.item(),
            }
            history.rows.append(row)
            if writer is not None:
                writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
            if callback is not None:
                callback(step + 1, row)
            shown = {"loss": row["loss"], "ess": row["ess"]}
            if log_z is not None:
                shown = {"loss": row["loss"], "kl": row["kl"], "ess": row["ess"]}
            bar.update(step + 1, shown)
    finally:
        history.seconds = time.perf_counter() - start
        bar.close()
        if handle is not None:
            handle.close()
    return history
