"""Objectives and diagnostics: reverse and forward KL, exact KL, effective sample size, log Z estimates.

Formulas (docs/architecture.md, "Reference formulas"): for an unnormalized target ``p̃ = exp(-U)`` with normalizer ``Z``,
``KL(q‖p) = E_q[log q(x) + U(x)] + log Z ≥ 0``; with importance weights ``w = p̃/q``,
``ESS = (Σw)² / Σw²`` and ``log Ẑ = logsumexp(log p̃ - log q) - log N``.

The target of every reverse-KL function is anything :func:`~tractable.targets.custom.as_target` accepts: an
:class:`~tractable.targets.energies.Energy`, a ``torch.distributions.Distribution``, an object with ``log_prob`` or a
plain function ``x -> log p̃(x)``; its ``log_prob`` must return shape ``(batch,)`` (checked on every batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .diagnostics import psis
from .flow import Flow
from .targets.custom import as_target, check_log_prob
from .targets.energies import Energy
from .utils import NonFiniteError


def annealing(step: int, steps: int) -> float:
    """The inverse temperature ``β_t = min(1, 0.01 + t/T)`` for ``T = steps`` annealing steps (1 when ``T = 0``).

    Example:
        >>> from tractable import annealing
        >>> [annealing(t, 100) for t in (0, 49, 100, 500)]
        [0.01, 0.5, 1.0, 1.0]
    """
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


def target_for(flow: Flow, target: Any) -> Energy:
    """``target`` as an :class:`Energy` for ``flow``: a plain function takes the flow's number of features; a target
    of another dimension is refused in one line."""
    features = flow.event_shape[0] if len(flow.event_shape) == 1 else None
    energy = as_target(target)
    if energy.features is not None and (energy.features,) != tuple(flow.event_shape):
        raise ValueError(f"target {energy.name!r} has {energy.features} features, but the flow's events have shape "
                         f"{tuple(flow.event_shape)}; build the flow with {energy.features} features")
    if energy.features is None and features is not None:
        energy.features = features  # a plain function: its dimension is the flow's
    return energy


def reverse_kl(flow: Flow, target: Any, n: int, *, beta: float = 1.0, context: Tensor | None = None) -> ReverseKL:
    """The reparameterized reverse-KL loss ``E_q[log q(x) - β log p̃(x)]`` estimated with ``n`` samples.

    With ``β = 1`` its value plus ``log Z`` estimates ``KL(q‖p)``; ``β < 1`` anneals the target (Rezende & Mohamed
    2015, §6.1) so the flow spreads over all modes before the energy takes full effect. ``target`` is an ``Energy``,
    a ``torch.distributions.Distribution``, an object with ``log_prob`` or a function ``x -> log p̃(x)``.

    Raises:
        ValueError: when the target's dimension is not the flow's, or its ``log_prob`` is not of shape ``(n,)``.

    Example:
        >>> import torch
        >>> from tractable import PlanarFlow, get_target, reverse_kl
        >>> flow, target = PlanarFlow(2, layers=4), get_target("ring")
        >>> result = reverse_kl(flow, target, 256, beta=0.5)  # annealed: E_q[log q - 0.5 log p̃]
        >>> result.loss.backward()
        >>> result.loss.shape, all(p.grad is not None for p in flow.parameters())
        (torch.Size([]), True)
    """
    target = target_for(flow, target)
    x, log_q = flow.sample_and_log_prob(n, context)
    log_p = target.log_prob(x)
    check_log_prob(target, log_p, n)  # a (n, 1) result would broadcast into an (n, n) loss without a word
    return ReverseKL((log_q - beta * log_p).mean(), log_q, log_p)


def forward_kl(flow: Flow, x: Tensor, context: Tensor | None = None) -> Tensor:
    """The maximum-likelihood loss: mean negative log-likelihood of the data ``x`` (forward KL up to a constant).

    Example:
        >>> import torch
        >>> from tractable import ElementwiseAffine, Flow, StandardNormal, forward_kl
        >>> flow = Flow(ElementwiseAffine(2), StandardNormal(2))
        >>> loss = forward_kl(flow, torch.zeros(8, 2))  # -mean log q(x)
        >>> round(loss.item(), 4), loss.requires_grad
        (1.8379, True)
    """
    return -flow.log_prob(x, context).mean()


def ess_fraction(log_w: Tensor) -> float:
    """Effective sample size as a fraction of ``N``: ``(Σw)² / (N Σw²)`` computed stably from log-weights.

    Example:
        >>> import torch
        >>> from tractable import ess_fraction
        >>> round(ess_fraction(torch.zeros(1000)), 3), round(ess_fraction(torch.tensor([0.0, 0.0, 0.0, 10.0])), 3)
        (1.0, 0.25)
    """
    log_w = log_w.detach().double()
    return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / log_w.numel())


def log_z_estimate(log_w: Tensor) -> float:
    """The importance-sampling estimate ``log Ẑ = logsumexp(log w) - log N`` (a stochastic lower bound in
    expectation).

    Example:
        >>> import math
        >>> import torch
        >>> from tractable import log_z_estimate
        >>> round(log_z_estimate(torch.full((100,), math.log(3.0))), 4)  # every weight 3: Z = 3
        1.0986
    """
    log_w = log_w.detach().double()
    return float(torch.logsumexp(log_w, 0) - math.log(log_w.numel()))


def _diverged(log_q: Tensor, log_p: Tensor, n: int) -> str:
    bad_q, bad_p = int((~torch.isfinite(log_q)).sum()), int(torch.isnan(log_p).sum() + (log_p == math.inf).sum())
    return (f"the fit diverged: non-finite log q in {bad_q} and NaN or +inf target log-density in {bad_p} of {n} "
            "samples of the flow; train again with a smaller learning rate (--lr), --clip or --warmup")


@torch.no_grad()
def evaluate_reverse(flow: Flow, target: Any, n: int = 100_000, *, batch_size: int = 50_000) -> dict[str, Any]:
    """Diagnostics of a variational fit from ``n`` fresh samples.

    Returns a dict with

    - ``kl``: the exact ``KL(q‖p)`` in nats and ``kl_stderr`` its Monte Carlo standard error, where the target's
      ``log Z`` is known; both ``None`` (and ``log_z`` too) where it is not — then ``elbo`` and ``elbo_stderr`` (the
      same standard error) are what there is;
    - ``ess``: the effective sample size of the importance weights as a fraction of ``n``;
    - ``pareto_k``: the Pareto k̂ of the importance weights (PSIS, :mod:`tractable.diagnostics`); below 0.7 the fit
      and importance sampling from it are reliable (``pareto_k_reading(k)`` says it in words);
    - ``log_z_estimate`` (``logsumexp(log w) − log n``), ``log_z``, ``elbo`` (``E_q[log p̃ − log q]``) and
      ``samples``.

    Samples where the target density is zero (``log p̃ = −inf``) count with weight 0; then ``kl`` is ``inf``.

    Raises:
        NonFiniteError: when a sample's log-weight is NaN or ``+inf`` (a diverged flow), or none is finite; the
            message says so and what to try.
        ValueError: when the target does not fit the flow (dimension, ``log_prob``'s shape).

    Example:
        >>> import torch
        >>> from tractable import ElementwiseAffine, Flow, StandardNormal, evaluate_reverse
        >>> flow = Flow(ElementwiseAffine(2), StandardNormal(2))  # q = N(0, I)
        >>> target = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))  # p = q: log Z = 0 is known
        >>> figures = evaluate_reverse(flow, target, n=1000)
        >>> abs(figures["kl"]) < 1e-5, round(figures["ess"], 6)
        (True, 1.0)
    """
    target = target_for(flow, target)
    log_qs, log_ps = [], []
    for i in range(0, n, batch_size):
        out = reverse_kl(flow, target, min(batch_size, n - i))
        log_qs.append(out.log_q.double())
        log_ps.append(out.log_p.double())
    log_q, log_p = torch.cat(log_qs), torch.cat(log_ps)
    log_w = log_p - log_q
    if bool(torch.isnan(log_w).any() | (log_w == math.inf).any() | ~torch.isfinite(log_q).any()):
        raise NonFiniteError(f"evaluation of the fit to {target.name!r}: {_diverged(log_q, log_p, n)}")
    if not bool(torch.isfinite(log_w).any()):
        raise NonFiniteError(f"evaluation of the fit to {target.name!r}: none of the {n} samples has a positive "
                             "target density; the flow's mass lies outside the target's support")
    log_z = target.log_z
    elbo = float(log_w.mean())
    stderr = float(log_w.std() / math.sqrt(n)) if n > 1 and math.isfinite(elbo) else math.nan
    k = psis(log_w).k if n >= 2 else math.nan
    return {
        "kl": (log_z - elbo) if log_z is not None else None,
        "kl_stderr": stderr if log_z is not None else None,
        "ess": ess_fraction(log_w),
        "pareto_k": k,
        "log_z_estimate": log_z_estimate(log_w),
        "log_z": log_z,
        "elbo": elbo,
        "elbo_stderr": stderr,
        "samples": n,
    }
