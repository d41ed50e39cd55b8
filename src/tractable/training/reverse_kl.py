"""Fit a flow to an unnormalized density by minimising the reverse KL: the convenience over the one loop.

Each step draws a reparameterized batch ``x ~ q``, forms ``E[log q(x) - β_t log p̃(x)]`` and takes an Adam step.
The inverse temperature ``β_t = min(1, 0.01 + t/T)`` rises over the first ``anneal`` fraction of the steps (Rezende &
Mohamed 2015, §6.1), which lets the flow spread over all modes before the energy takes full effect; the learning rate
follows a cosine (default), exponential or constant schedule.

References:
    Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770.
"""

from __future__ import annotations

from typing import Any

from ..flow import Flow
from .loop import FitHistory, fit
from .losses import ReverseKLLoss
from .options import TrainOptions, check_positive_int

__all__ = ["fit_reverse_kl"]


def fit_reverse_kl(
    flow: Flow,
    target: Any,
    *,
    steps: int = 10_000,
    batch_size: int = 512,
    lr: float = 2e-3,
    anneal: float = 0.5,
    **options: Any,
) -> FitHistory:
    """Train ``flow`` in place to minimise ``KL(q‖p)`` for ``p ∝ exp(-U)`` given by ``target``.

    ``fit(flow, ReverseKLLoss(target, batch_size=..., anneal=...), steps=steps, options=TrainOptions(...))``. Under
    ``torchrun`` (an initialised process group) every rank draws its own ``batch_size`` samples and DDP averages the
    gradients, so a step uses ``world_size × batch_size`` samples; rank 0 logs and writes checkpoints.

    Args:
        flow: the flow to train (its ``sample_and_log_prob`` must be reparameterized).
        target: the unnormalized target density: an :class:`~tractable.targets.energies.Energy`, a
            ``torch.distributions.Distribution``, an object with ``log_prob`` or a function ``x -> log p̃(x)`` of
            points ``(batch, features)`` returning ``(batch,)`` (its shape is checked before the first step).
        steps: number of Adam steps.
        batch_size: samples per step (per process).
        lr: peak learning rate.
        anneal: fraction of ``steps`` over which ``β`` rises from 0.01 to 1 (0: no annealing).
        **options: any other field of :class:`~tractable.training.options.TrainOptions` (``schedule``, ``warmup``,
            ``clip``, ``ema``, ``checkpoint_dir``, ``resume``, ...); the rows have the columns ``COLUMNS``.

    Returns:
        The history (``rows``, ``seconds``, ``skipped``, ``final(key)``). The flow holds the EMA weights when
        ``ema`` is on, and is left in eval mode.

    Raises:
        ValueError: when the target does not fit the flow (its dimension, or ``log_prob`` not of shape ``(batch,)``).
        NonFiniteError: after ``max_bad_steps`` non-finite steps in a row, naming the step, the quantity and the first
            layer whose output was not finite.

    Example:
        >>> import torch
        >>> from tractable import PlanarFlow, evaluate_reverse, fit_reverse_kl, get_target
        >>> flow, target = PlanarFlow(2, layers=4), get_target("mixture")
        >>> before = evaluate_reverse(flow, target, n=2000)["kl"]
        >>> _ = fit_reverse_kl(flow, target, steps=200, batch_size=128, progress=False)
        >>> evaluate_reverse(flow, target, n=2000)["kl"] < before
        True
    """
    check_positive_int("steps", steps)
    loss = ReverseKLLoss(target, batch_size=batch_size, anneal=anneal)
    return fit(flow, loss, steps=steps, options=TrainOptions.from_keywords(lr=lr, **options))
