"""Objectives and diagnostics: reverse and forward KL, exact KL, effective sample size, log Z estimates.

Formulas (docs/architecture.md, "Reference formulas"): for an unnormalized target ``p̃ = exp(-U)`` with normalizer ``Z``,
``KL(q‖p) = E_q[log q(x) + U(x)] + log Z ≥ 0``; with importance weights ``w = p̃/q``,
``ESS = (Σw)² / Σw²`` and ``log Ẑ = logsumexp(log p̃ - log q) - log N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .flow import Flow
from .targets.energies import Energy


def annealing(step: int, steps: int) -> float:
    """The inverse temperature ``β_t = min(1, 0.01 + t/T)`` for ``T = steps`` annealing steps (1 when ``T = 0``)."""
    return 1.0 if steps <= 0 else min(1.0, 0.01 + step / steps)


@dataclass
class ReverseKL:
    """One reverse-KL evaluation: ``loss`` (to minimise), and the samples' ``log_q`` and ``log_p`` (= ``-U``)."""

    loss: Tensor
    log_q: Tensor
    log_p: Tensor

    @property
    def log_w(self) -> Tensor:
        """Log importance weights ``log p̃ - log q`` (detached)."""
        return (self.log_p - self.log_q).detach()


def reverse_kl(flow: Flow, target: Energy, n: int, *, beta: float = 1.0, context: Tensor | None = None) -> ReverseKL:
    """The reparameterized reverse-KL loss ``E_q[log q(x) - β log p̃(x)]`` estimated with ``n`` samples.

    With ``β = 1`` its value plus ``log Z`` estimates ``KL(q‖p)``; ``β < 1`` anneals the target (Rezende & Mohamed
    2015, §6.1) so the flow spreads over all modes before the energy takes full effect.
    """
    x, log_q = flow.sample_and_log_prob(n, context)
    log_p = target.log_prob(x)
    return ReverseKL((log_q - beta * log_p).mean(), log_q, log_p)


def forward_kl(flow: Flow, x: Tensor, context: Tensor | None = None) -> Tensor:
    """The maximum-likelihood loss: mean negative log-likelihood of the data ``x`` (forward KL up to a constant)."""
    return -flow.log_prob(x, context).mean()


def ess_fraction(log_w: Tensor) -> float:
    """Effective sample size as a fraction of ``N``: ``(Σw)² / (N Σw²)`` computed stably from log-weights."""
    log_w = log_w.detach().double()
    return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / log_w.numel())


def log_z_estimate(log_w: Tensor) -> float:
    """The importance-sampling estimate ``log Ẑ = logsumexp(log w) - log N`` (a stochastic lower bound in
    expectation)."""
    log_w = log_w.detach().double()
    return float(torch.logsumexp(log_w, 0) - math.log(log_w.numel()))


@torch.no_grad()
def evaluate_reverse(flow: Flow, target: Energy, n: int = 100_000, *, batch_size: int = 50_000) -> dict[str, float]:
    """Diagnostics of a variational fit from ``n`` fresh samples.

    Returns a dict with ``kl`` (exact ``KL(q‖p)`` in nats when ``target.log_z`` is known, else NaN) and its Monte
    Carlo standard error ``kl_stderr``, ``ess`` (fraction), ``log_z_estimate``, ``log_z`` (reference or NaN),
    ``elbo`` (``E_q[log p̃ - log q]``) and ``samples``.
    """
    log_w = torch.cat(
        [reverse_kl(flow, target, min(batch_size, n - i)).log_w for i in range(0, n, batch_size)]
    ).double()
    finite = torch.isfinite(log_w)
    if not bool(finite.all()):
        raise FloatingPointError(f"{int((~finite).sum())} of {n} samples have a non-finite log-weight")
    log_z = target.log_z
    elbo = float(log_w.mean())
    return {
        "kl": (log_z - elbo) if log_z is not None else math.nan,
        "kl_stderr": float(log_w.std() / math.sqrt(n)),
        "ess": ess_fraction(log_w),
        "log_z_estimate": log_z_estimate(log_w),
        "log_z": log_z if log_z is not None else math.nan,
        "elbo": elbo,
        "samples": n,
    }
