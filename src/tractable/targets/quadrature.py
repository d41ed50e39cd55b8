"""Converged grid quadrature of ``log ∫ exp(-U)`` over a 2D box, in float64, cached per process."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

#: The largest grid size per axis a refinement tries (here and in :mod:`tractable.targets.entropy`).
MAX_GRID = 6400
#: Grid points evaluated per block (bounds the memory of one evaluation of the integrand).
BLOCK_POINTS = 2_000_000

_CACHE: dict[tuple[str, tuple[float, float]], float] = {}


def log_integral_2d(log_f: Callable[[Tensor], Tensor], box: tuple[float, float], n: int) -> float:
    """``log ∫∫ exp(log_f)`` over ``box²`` by the midpoint rule on an ``n × n`` grid, in float64.

    For smooth integrands that vanish at the box edges the midpoint rule converges faster than any power of the
    spacing, so a few refinements reach float64 accuracy.
    """
    lo, hi = box
    h = (hi - lo) / n
    g = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    total = []
    for rows in torch.split(g, max(1, BLOCK_POINTS // n)):  # bounded memory
        x, y = torch.meshgrid(rows, g, indexing="ij")
        total.append(torch.logsumexp(log_f(torch.stack([x.reshape(-1), y.reshape(-1)], -1)), 0))
    return float(torch.logsumexp(torch.stack(total), 0)) + 2 * math.log(h)


def grid_log_z(
    name: str, energy: Callable[[Tensor], Tensor], box: tuple[float, float], *, tol: float = 1e-7, start: int = 400
) -> float:
    """``log Z = log ∫ exp(-U)`` over ``box²``, refining the grid until two successive values agree to ``tol``.

    Cached under ``(name, box)`` for the life of the process.
    """
    key = (name, tuple(box))
    if key not in _CACHE:
        n, previous = start, log_integral_2d(lambda z: -energy(z), box, start)
        while True:
            n *= 2
            value = log_integral_2d(lambda z: -energy(z), box, n)
            if abs(value - previous) < tol or n >= MAX_GRID:
                break
            previous = value
        _CACHE[key] = value
    return _CACHE[key]
