"""Did the variational fit work? Pareto-smoothed importance sampling (PSIS) and its k̂ diagnostic.

A flow ``q`` fitted by reverse KL to ``p ∝ p̃`` gives importance weights ``w = p̃(x)/q(x)``, ``x ~ q``. Their effective
sample size can look fine while a few huge weights are still to come: reverse KL is mode seeking, so ``q`` may miss
mass of ``p``. PSIS fits a generalized Pareto distribution to the largest weights; its shape ``k̂`` says how heavy
the tail of the weights is, hence how far importance sampling from ``q`` (and ``q`` itself) can be trusted:

- ``k̂ < 0.7`` (and below ``1 − 1/log₁₀ S`` for ``S`` samples): reliable; PSIS estimates converge at the usual
  Monte Carlo rate and ``q`` is close to ``p`` in the directions that matter;
- ``0.7 ≤ k̂ < 1``: unreliable; the estimates converge too slowly to be used, ``q`` misses part of ``p``;
- ``k̂ ≥ 1``: the weights' variance (and mean) do not exist; importance sampling is not usable.

:func:`psis` implements the algorithm of Vehtari et al. (2024) — tail of ``min(S/5, 3√S)`` weights, the generalized
Pareto fit of Zhang & Stephens (2009) with Vehtari's weakly informative prior on ``k``, the tail replaced by the fitted
quantiles and truncated at the largest raw weight — in NumPy, so it needs no extra package; it matches ArviZ's
``psislw`` (the test suite compares them). ``psis(..., backend="arviz")`` uses ArviZ itself (``pip install
tractable[psis]``). :func:`psis_expectation` gives PSIS-corrected expectations ``E_p[f]`` from a fitted flow.

References:
    Yes, but Did It Work?: Evaluating Variational Inference (Yao, Vehtari, Simpson & Gelman, 2018), ICML,
        arXiv:1802.02538.
    Pareto Smoothed Importance Sampling (Vehtari, Simpson, Gelman, Yao & Gabry, 2024), JMLR 25(72),
        arXiv:1507.02646.
    A New and Efficient Estimation Method for the Generalized Pareto Distribution (Zhang & Stephens, 2009),
        Technometrics 51(3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .flow import Flow
from .targets.custom import as_target, check_log_prob

#: The usual threshold of k̂ below which importance weights (and the variational fit) are considered reliable.
K_RELIABLE = 0.7


def _gpd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape ``k`` and scale ``σ`` of a generalized Pareto fit to the sorted positive exceedances ``x`` (Zhang &
    Stephens 2009, empirical Bayes over a grid of ``b = −k/σ``; the prior of Vehtari et al. 2024 shrinks ``k``
    towards 0.5 with the weight of 10 observations)."""
    n = len(x)
    m = 30 + int(n**0.5)
    b = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    b /= 3 * x[int(n / 4 + 0.5) - 1]
    b += 1 / x[-1]
    k = np.log1p(-b[:, None] * x).mean(axis=1)
    profile = n * (np.log(-(b / k)) - k - 1)
    with np.errstate(over="ignore"):  # exp overflows to inf for grid points far below the best: weight 0, as meant
        weights = 1 / np.exp(profile - profile[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(float).eps  # negligible weights only add rounding
    b, weights = b[keep], weights[keep] / weights[keep].sum()
    b_post = np.sum(b * weights)
    k_post = np.log1p(-b_post * x).mean()
    sigma = float(-k_post / b_post)
    return float((n * k_post + 10 * 0.5) / (n + 10)), sigma


def _gpd_quantiles(p: np.ndarray, k: float, sigma: float) -> np.ndarray:
    if abs(k) < np.finfo(float).eps:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-k * np.log1p(-p)) / k


def _psis_numpy(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Smoothed, normalized log-weights and ``k̂`` (arviz.stats.stats._psislw with ``reff = 1``)."""
    s = len(log_w)
    x = log_w - log_w.max()
    order = np.argsort(x)
    m = math.ceil(min(s / 5, 3 * math.sqrt(s)))
    cutoff = max(x[order[-m - 1]], math.log(np.finfo(float).tiny))
    tail = np.flatnonzero(x > cutoff)
    # Fewer than 5 weights above the cutoff: too few samples (k = inf, as ArviZ). Otherwise, the largest weights may
    # be tied: equal up to the rounding of the log-densities (spread < 1e-6 nats; constant weights, q = p), a bounded
    # tail. ArviZ then says inf (or fits the rounding noise into NaN weights), which would read as "unusable" for a
    # perfect fit; 0 is reported and nothing smoothed.
    k = math.inf if m <= 4 else 0.0
    if len(tail) > 4 and x[tail].max() - cutoff > 1e-6:
        tail = tail[np.argsort(x[tail])]
        exceed = np.exp(x[tail]) - math.exp(cutoff)
        with np.errstate(divide="ignore", invalid="ignore"):
            k, sigma = _gpd_fit(exceed)
        if math.isfinite(k) and math.isfinite(sigma) and sigma > 0:
            probs = np.arange(0.5, len(tail)) / len(tail)
            x[tail] = np.log(_gpd_quantiles(probs, k, sigma) + math.exp(cutoff))
            x[x > 0] = 0  # truncate at the largest raw weight
        elif not math.isfinite(k):
            k = math.inf
    x -= np.logaddexp.reduce(x)
    return x, float(k)


@dataclass
class PSIS:
    """The result of :func:`psis`: normalized smoothed log-weights (they log-sum-exp to 0) and the shape ``k``."""

    log_weights: Tensor
    k: float

    @property
    def reliable(self) -> bool:
        """``k̂ < 0.7``: the usual reading."""
        return self.k < K_RELIABLE

    @property
    def reading(self) -> str:
        """The reading of ``k̂`` as a sentence."""
        return pareto_k_reading(self.k, len(self.log_weights))


def psis(log_w: Tensor, *, backend: str = "tractable") -> PSIS:
    """Pareto-smoothed importance sampling of the log-weights ``log w`` (1-D; ``reff = 1``, independent draws).

    Args:
        log_w: log importance weights ``log p̃ − log q`` of independent samples from ``q`` (finite; ``−inf`` allowed
            for points of zero target density).
        backend: ``"tractable"`` (this module's NumPy implementation) or ``"arviz"`` (``arviz.psislw``).

    Returns:
        The smoothed normalized log-weights (float64, on ``log_w``'s device) and ``k̂`` (``inf`` when the tail holds
        fewer than 5 weights, i.e. for fewer than 25 samples; 0 when the largest weights are tied, as for ``q = p``).

    Example:
        >>> import torch
        >>> from tractable import psis
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> log_w = torch.randn(4000, dtype=torch.float64)  # log-normal weights
        >>> result = psis(log_w)
        >>> round(float(result.log_weights.exp().sum()), 6), result.k < 0.7  # normalized weights, reliable
        (1.0, True)
    """
    if log_w.dim() != 1 or log_w.numel() < 2:
        raise ValueError(f"expected at least two log-weights in a 1-D tensor, got shape {tuple(log_w.shape)}")
    if bool(torch.isnan(log_w).any() | (log_w == math.inf).any()):
        raise ValueError("expected log-weights without NaN or +inf")
    x = log_w.detach().double().cpu().numpy().copy()
    if backend == "tractable":
        smoothed, k = _psis_numpy(x)
    elif backend == "arviz":
        try:
            import arviz
        except ImportError:
            raise ImportError("backend='arviz' needs ArviZ: pip install 'tractable[psis]' (or arviz)") from None
        smoothed, k = arviz.psislw(x, reff=1.0)
        k = float(k)
    else:
        raise ValueError(f"unknown PSIS backend {backend!r}; expected 'tractable' or 'arviz'")
    return PSIS(torch.as_tensor(smoothed, device=log_w.device), k)


def pareto_k(log_w: Tensor) -> float:
    """The Pareto ``k̂`` of the importance weights (see :func:`psis`).

    Example:
        >>> import torch
        >>> from tractable import pareto_k
        >>> gen = torch.Generator().manual_seed(0)
        >>> light = torch.randn(10_000, generator=gen, dtype=torch.float64) * 0.1  # q close to p
        >>> heavy = torch.distributions.Cauchy(0.0, 1.0).sample((10_000,)).abs().log().double()  # very heavy tails
        >>> pareto_k(light) < 0.5, pareto_k(heavy) > 0.7
        (True, True)
    """
    return psis(log_w).k


def pareto_k_reading(k: float | None, samples: int | None = None) -> str:
    """The usual reading of ``k̂`` as one sentence (Vehtari et al. 2024, §3): reliable below 0.7 (and below
    ``1 − 1/log₁₀ S`` for ``S`` samples), unreliable up to 1, unusable from 1.

    Example:
        >>> from tractable import pareto_k_reading
        >>> pareto_k_reading(0.3)
        'Pareto k̂ = 0.30 < 0.70: importance weights reliable'
    """
    if k is None or math.isnan(k):
        return "Pareto k̂ unavailable"
    limit = min(K_RELIABLE, 1 - 1 / math.log10(samples)) if samples and samples > 10 else K_RELIABLE
    if k < limit:
        return f"Pareto k̂ = {k:.2f} < {limit:.2f}: importance weights reliable"
    if k < 1:
        return (f"Pareto k̂ = {k:.2f} ≥ {limit:.2f}: importance weights unreliable, q misses part of p (fit longer, "
                "or a more flexible flow)")
    return f"Pareto k̂ = {k:.2f} ≥ 1: importance weights not usable, q misses much of p"


def reverse_summary(metrics: Mapping[str, Any]) -> str:
    """One line of :func:`~tractable.objectives.evaluate_reverse`'s figures for a person: the exact KL where ``log Z``
    is known (else the ELBO), ESS, the Pareto k̂ with its reading, and ``log Ẑ``.

    Example:
        >>> line = reverse_summary({"kl": None, "kl_stderr": None, "elbo": -3.2, "elbo_stderr": 0.01, "ess": 0.9,
        ...                         "pareto_k": 0.31, "log_z_estimate": -3.1, "log_z": None, "samples": 1000})
        >>> line.split(";")[0]
        'ELBO = -3.2000 ± 0.0100 nats, ESS = 0.900, Pareto k̂ = 0.31 < 0.67: importance weights reliable'
    """
    m = metrics
    if m.get("kl") is not None:
        head = f"KL(q‖p) = {m['kl']:.4f} ± {m['kl_stderr']:.4f} nats"
    else:
        head = f"ELBO = {m['elbo']:.4f} ± {m['elbo_stderr']:.4f} nats"
    samples = m.get("samples", m.get("eval_samples"))
    log_z = f" (log Z = {m['log_z']:.4f})" if m.get("log_z") is not None else " (log Z unknown)"
    return (f"{head}, ESS = {m['ess']:.3f}, {pareto_k_reading(m.get('pareto_k'), samples)}; "
            f"log Ẑ = {m['log_z_estimate']:.4f}{log_z}" + (f", {samples:,} samples" if samples else ""))


@dataclass
class PSISExpectation:
    """A PSIS-corrected expectation: ``value`` (``E_p[f]``, of ``f``'s value shape), ``k`` (k̂ of the weights),
    ``ess`` (the smoothed weights' effective sample size as a fraction) and ``samples``."""

    value: Tensor
    k: float
    ess: float
    samples: int

    @property
    def reliable(self) -> bool:
        return self.k < K_RELIABLE


@torch.no_grad()
def psis_expectation(flow: Flow, target: Any, fn: Callable[[Tensor], Tensor] | None = None, n: int = 10_000, *,
                     batch_size: int = 50_000) -> PSISExpectation:
    """``E_p[f(x)]`` under the target ``p ∝ p̃``, from ``n`` samples of the fitted flow ``q`` reweighted by PSIS.

    The plain average of ``f`` over ``q``'s samples is biased wherever ``q ≠ p``; the self-normalized, Pareto-smoothed
    weights correct it, and ``k̂`` says whether the correction can be trusted (``< 0.7``). Posterior means with
    ``fn=None`` (the identity).

    Args:
        flow: the fitted flow (unconditional).
        target: anything :func:`~tractable.targets.custom.as_target` accepts.
        fn: maps points ``(batch, features)`` to values ``(batch, ...)``; default the identity.
        n: the number of samples.
        batch_size: samples per forward pass.

    Example:
        >>> import torch
        >>> from tractable import ElementwiseAffine, Flow, StandardNormal
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> flow = Flow(ElementwiseAffine(2), StandardNormal(2))  # q = N(0, I)
        >>> target = lambda x: -0.5 * ((x - 0.5) ** 2).sum(-1)  # p = N(0.5, I)
        >>> result = psis_expectation(flow, target, n=20_000)
        >>> [round(v, 1) for v in result.value.tolist()], result.reliable
        ([0.5, 0.5], True)
    """
    target = as_target(target, features=flow.event_shape[-1] if len(flow.event_shape) == 1 else None)
    xs, log_ws = [], []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        x, log_q = flow.sample_and_log_prob(m)
        log_p = target.log_prob(x)
        check_log_prob(target, log_p, m)
        xs.append(x)
        log_ws.append((log_p - log_q).double())
    x, log_w = torch.cat(xs), torch.cat(log_ws)
    result = psis(log_w)
    w = torch.exp(result.log_weights)
    values = x if fn is None else fn(x)
    if not isinstance(values, Tensor) or values.shape[:1] != (n,):
        raise ValueError(f"expected fn to return one value per sample, shape ({n}, ...), got "
                         f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}")
    value = torch.tensordot(w.to(values.device), values.double(), dims=([0], [0]))
    return PSISExpectation(value, result.k, float(1 / (w * w).sum() / n), n)


__all__ = [
    "K_RELIABLE", "PSIS", "PSISExpectation", "pareto_k", "pareto_k_reading", "psis", "psis_expectation",
    "reverse_summary",
]
