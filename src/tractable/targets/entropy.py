"""Converged grid quadrature of the differential entropy ``H = -∫ p log p`` of a normalized 2D density, in float64.

The companion of :mod:`tractable.targets.quadrature` (which integrates ``exp(-U)`` for ``log Z``): a toy data set
with an exact log-density but no closed-form entropy gets its reference entropy here, computed once per process and
cached, so that a density-estimation fit can report ``test NLL − H``, an estimate of ``KL(p‖q) ≥ 0``.

References:
    Elements of Information Theory (Cover & Thomas, 2006), ch. 8 — differential entropy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .quadrature import BLOCK_POINTS, MAX_GRID

_CACHE: dict[tuple[str, tuple[float, float]], float] = {}


def entropy_integral_2d(log_p: Callable[[Tensor], Tensor], box: tuple[float, float], n: int) -> tuple[float, float]:
    """The mass ``∫ p`` and the entropy ``-∫ p log p`` over ``box²`` by the midpoint rule on an ``n × n`` grid.

    Computed in float64 and in row blocks of bounded memory. Points where ``log p = -inf`` (outside a bounded
    support) contribute zero, the limit of ``p log p`` as ``p → 0``.

    Args:
        log_p: the normalized log-density, mapping ``(batch, 2)`` float64 points to ``(batch,)``.
        box: the square ``[lo, hi]²`` to integrate over; it must hold all but a negligible part of the mass.
        n: grid points per axis.

    Returns:
        ``(mass, entropy)``; ``mass`` should be 1 to the accuracy wanted, which is the caller's check that the box
        is large enough and the grid fine enough.
    """
    lo, hi = box
    if not hi > lo or n < 1:
        raise ValueError(f"expected a box (lo, hi) with hi > lo and n >= 1, got box={box}, n={n}")
    h = (hi - lo) / n
    g = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    mass, plogp = 0.0, 0.0
    for rows in torch.split(g, max(1, BLOCK_POINTS // n)):  # bounded memory
        x, y = torch.meshgrid(rows, g, indexing="ij")
        lp = log_p(torch.stack([x.reshape(-1), y.reshape(-1)], -1)).double()
        if bool(torch.isnan(lp).any()) or bool((lp == math.inf).any()):
            raise ValueError("expected a log-density that is finite or -inf on the grid, got NaN or +inf values")
        p = torch.exp(lp)
        mass += float(p.sum())
        plogp += float(torch.where(p > 0, p * lp, torch.zeros_like(p)).sum())
    return mass * h * h, -plogp * h * h


def grid_entropy(
    key: str,
    log_p: Callable[[Tensor], Tensor],
    box: tuple[float, float],
    *,
    tol: float = 1e-7,
    start: int = 400,
    max_n: int = MAX_GRID,
    mass_tol: float = 1e-6,
) -> float:
    """The entropy ``-∫ p log p`` over ``box²``, refining the grid until two successive values agree to ``tol``.

    Cached under ``(key, box)`` for the life of the process; ``key`` must identify the density and its parameters
    (the toy data sets use their ``repr``).

    Args:
        key: a cache key naming the density.
        log_p: the normalized log-density (float64 in, float64 out).
        box: the integration square ``[lo, hi]²``.
        tol: convergence tolerance between successive grid doublings, in nats.
        start: the first grid size per axis.
        max_n: the largest grid size per axis tried (a warning is issued if not converged by then).
        mass_tol: the largest acceptable ``|∫ p − 1|`` at the converged grid.

    Raises:
        ValueError: when the density does not integrate to 1 over the box (a box too small or an unnormalized
            density), naming the mass found.

    Example:
        >>> import math, torch
        >>> gauss = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
        >>> round(grid_entropy("standard-normal", gauss, (-10.0, 10.0)), 6) == round(1 + math.log(2 * math.pi), 6)
        True
    """
    box = (float(box[0]), float(box[1]))
    cache_key = (key, box)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    n = start
    mass, previous = entropy_integral_2d(log_p, box, n)
    value, converged = previous, False
    while n < max_n:
        n *= 2
        mass, value = entropy_integral_2d(log_p, box, n)
        if abs(value - previous) < tol:
            converged = True
            break
        previous = value
    if not converged:  # keep the finest grid's value, and say so
        warnings.warn(
            f"entropy of {key!r} did not converge to {tol:g} nats by a {n}x{n} grid; using {value:.8f}", stacklevel=2
        )
    if abs(mass - 1.0) > mass_tol:
        raise ValueError(
            f"expected a normalized density over the box {box}, but it integrates to {mass:.8f} "
            f"(|mass - 1| > {mass_tol:g}); enlarge the quadrature box or check the normalization"
        )
    _CACHE[cache_key] = value
    return value
