"""A toy data set on the torus ``[-π, π)²``: a mixture of products of von Mises densities, exact density and entropy.

Angles are data on a compact domain: the data task fits them as they are (``circular = True``: no standardisation),
and circular flows (:class:`~tractable.models.ncsf.NCSF`) model them on the uniform torus.

References:
    Normalizing Flows on Tori and Spheres (Rezende et al., 2020), arXiv:2002.02428 — mixtures of von Mises-like
        densities on the torus as the test densities.
    Efficient simulation of the von Mises distribution (Best & Fisher, 1979), Applied Statistics 28(2) — the sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .quadrature import grid_entropy
from .toy_base import ToyDataset, check_points, uniform


def von_mises(mu: Tensor, kappa: Tensor, generator: torch.Generator | None) -> Tensor:
    """Von Mises draws (float64) around ``mu`` with concentrations ``kappa > 0`` (same shape), wrapped to
    ``[-π, π)``, by Best & Fisher's rejection sampler (a wrapped-Cauchy envelope; acceptance above 65%)."""
    tau = 1 + torch.sqrt(1 + 4 * kappa**2)
    rho = (tau - torch.sqrt(2 * tau)) / (2 * kappa)
    r = (1 + rho**2) / (2 * rho)
    out = torch.empty_like(mu)
    todo = torch.arange(len(mu))
    while len(todo):
        n = len(todo)
        u1, u2, u3 = uniform(n, generator), uniform(n, generator), uniform(n, generator)
        rk, kk = r[todo], kappa[todo]
        z = torch.cos(math.pi * u1)
        f = (1 + rk * z) / (rk + z)
        c = kk * (rk - f)
        ok = (c * (2 - c) - u2 > 0) | (torch.log(c / u2) + 1 - c >= 0)
        angle = mu[todo] + torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1, 1))
        out[todo[ok]] = angle[ok]
        todo = todo[~ok]
    return torch.remainder(out + math.pi, 2 * math.pi) - math.pi


class TorusMixture(ToyDataset):
    """A mixture of products of von Mises densities on the torus ``[-π, π)²``, exact log-density and entropy.

    ``p(θ) = Σ_k w_k Π_i exp(κ_ki cos(θ_i − μ_ki)) / (2π I₀(κ_ki))``, normalized in closed form; the defaults put four
    bumps of different shapes, two of them across the seam at ``±π``, so a model must treat the angles as periodic.
    The entropy is the midpoint rule on the torus (spectrally accurate for a smooth periodic density), converged to
    1e-7 nats.

    Args:
        locs: the component means ``μ_k``, ``(K, 2)``.
        concentrations: the concentrations ``κ_k > 0``, ``(K, 2)``.
        weights: the mixture weights (normalized here).
    """

    name = "torus"
    box = (-math.pi, math.pi)
    #: Angles: the data task does not standardize them.
    circular = True

    def __init__(
        self,
        locs: Sequence[Sequence[float]] = ((-1.5, -1.5), (1.2, 0.8), (3.0, 2.0), (0.0, -3.0)),
        concentrations: Sequence[Sequence[float]] = ((4.0, 4.0), (2.0, 8.0), (6.0, 3.0), (3.0, 5.0)),
        weights: Sequence[float] = (0.3, 0.3, 0.2, 0.2),
    ):
        self.locs = torch.as_tensor(locs, dtype=torch.float64)
        self.kappa = torch.as_tensor(concentrations, dtype=torch.float64)
        w = torch.as_tensor(weights, dtype=torch.float64)
        k = self.locs.shape[0] if self.locs.dim() == 2 else -1
        if self.locs.shape != (k, 2) or self.kappa.shape != (k, 2) or w.shape != (k,) or k < 1:
            raise ValueError(f"expected locs (K, 2), concentrations (K, 2) and weights (K,), got "
                             f"{tuple(self.locs.shape)}, {tuple(self.kappa.shape)} and {tuple(w.shape)}")
        if not (self.kappa > 0).all() or not (w > 0).all():
            raise ValueError("expected positive concentrations and weights")
        self.weights = w / w.sum()
        # log of each component's normalizer 1/(2π I₀(κ)), with I₀(κ) = i0e(κ)·e^κ
        self._log_norm = -(math.log(2 * math.pi) + torch.log(torch.special.i0e(self.kappa)) + self.kappa).sum(-1)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        mu, kappa = self.locs[k], self.kappa[k]
        return von_mises(mu.reshape(-1), kappa.reshape(-1), generator).reshape(n, 2)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The exact log-density on ``[-π, π]²`` (``-inf`` outside)."""
        check_points(x, self.name)
        locs, kappa = self.locs.to(x), self.kappa.to(x)
        comp = (kappa * torch.cos(x.unsqueeze(-2) - locs)).sum(-1) + self._log_norm.to(x)
        out = torch.logsumexp(comp + torch.log(self.weights.to(x)), -1)
        inside = ((x >= -math.pi) & (x <= math.pi)).all(-1)
        return torch.where(inside, out, -math.inf)

    @property
    def entropy(self) -> float:
        return grid_entropy(repr(self), self.log_prob, self.box)

    def __repr__(self) -> str:
        return (f"TorusMixture(locs={self.locs.tolist()}, concentrations={self.kappa.tolist()}, "
                f"weights={self.weights.tolist()})")


__all__ = ["TorusMixture", "von_mises"]
