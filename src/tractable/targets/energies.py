"""Unnormalized 2D target densities ``p̃(z) = exp(-U(z))`` for variational (reverse-KL) fitting.

Each target knows its energy ``U``, a plotting/integration box, and its log-normalizer ``log Z``: analytic where it
is, otherwise by converged float64 grid quadrature (computed once per process and cached), so that the exact
``KL(q‖p) = E_q[log q + U] + log Z`` can be reported, not just the loss.

References:
    Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770 — energies U1–U4.
    acids-ircam/pytorch_flows, flows_01.ipynb — the ``ring`` density.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .quadrature import grid_log_z


def _check(z: Tensor, features: int, name: str) -> None:
    if z.dim() < 2 or z.shape[-1] != features:
        raise ValueError(f"target {name!r} expects points of shape (batch, {features}), got {tuple(z.shape)}")


def _gauss(x: Tensor, mu: float, s: float) -> Tensor:
    """The log of an unnormalized Gaussian bump, ``-½((x - μ)/s)²``."""
    return -0.5 * ((x - mu) / s) ** 2


def _wall(z1: Tensor) -> Tensor:
    """The soft wall ``½(max(|z₁| - 4, 0)/0.2)²`` that makes U2–U4 integrable (docs/architecture.md, reference
    formulas)."""
    return 0.5 * (torch.clamp(z1.abs() - 4.0, min=0.0) / 0.2) ** 2


class Energy:
    """An unnormalized density ``exp(-U(z))`` on ``R^features``.

    Subclasses implement :meth:`energy` (shape ``(batch,)``) and set ``features``; ``box`` is the square ``[lo, hi]²``
    used for pictures and ``quadrature_box`` the one of the quadrature of ``log Z`` in 2D; together they must hold all
    but a negligible part of the mass. A target need not be an ``Energy``: a plain function ``x -> log p̃(x)`` or a
    ``torch.distributions.Distribution`` works wherever one is expected (:func:`~tractable.targets.custom.as_target`).

    Example:
        >>> import torch
        >>> from tractable import Energy
        >>> class Banana(Energy):  # an energy of your own: U(z) and its dimension
        ...     features = 2
        ...     def energy(self, z):
        ...         return 0.5 * z[:, 0] ** 2 + 0.5 * (z[:, 1] - z[:, 0] ** 2) ** 2
        >>> Banana().log_prob(torch.zeros(1, 2)).tolist()  # log p̃ = -U
        [-0.0]
    """

    name: str = "energy"
    features: int = 2
    box: tuple[float, float] = (-4.0, 4.0)
    quadrature_box: tuple[float, float] = (-8.0, 8.0)

    def energy(self, z: Tensor) -> Tensor:
        """The energy ``U(z)`` of each row (shape ``(batch,)``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement energy(z) -> U(z) of shape (batch,); or pass "
                                  "a plain function x -> log p(x) as the target (tractable.targets.as_target)")

    def log_prob(self, z: Tensor) -> Tensor:
        """The unnormalized log-density ``-U(z)``."""
        _check(z, self.features, self.name)
        return -self.energy(z)

    def __call__(self, z: Tensor) -> Tensor:
        return self.log_prob(z)

    @property
    def log_z(self) -> float | None:
        """``log ∫ exp(-U)``: analytic, or by grid quadrature in 2D (cached), or ``None`` when unknown."""
        if self.features != 2:
            return None
        # the cache is keyed by name; a user's energy that kept the default name is keyed by its identity too, so two
        # of them do not share one log Z
        key = self.name if self.name != Energy.name else f"{type(self).__qualname__}:{id(self)}"
        return grid_log_z(key, self.energy, self.quadrature_box)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Ring(Energy):
    """The ``ring`` of acids-ircam/pytorch_flows (flows_01): a ring of radius 4 with four bumps; ``log Z ≈ 2.3133``.

    ``U(z) = ½((‖z‖ - 4)/0.4)² - log(exp(-½((z₁ - 2)/0.8)²) + exp(-½((z₁ + 2)/0.8)²))``.

    Example:
        >>> import torch
        >>> from tractable import Ring
        >>> ring = Ring()
        >>> ring.features, round(ring.log_z, 4)
        (2, 2.3133)
        >>> on, inside = ring.log_prob(torch.tensor([[4.0, 0.0], [0.0, 0.0]]))
        >>> bool(on > inside)  # the mass is on the ring
        True
    """

    name, box = "ring", (-6.0, 6.0)

    def energy(self, z: Tensor) -> Tensor:
        r = torch.linalg.vector_norm(z, dim=-1)
        return 0.5 * ((r - 4) / 0.4) ** 2 - torch.logaddexp(_gauss(z[..., 0], 2, 0.8), _gauss(z[..., 0], -2, 0.8))


class U1(Energy):
    """Rezende & Mohamed's U1: two crescents on a ring of radius 2; ``log Z ≈ 1.8775``.

    Example:
        >>> import torch
        >>> from tractable import U1
        >>> target = U1()
        >>> target.features, tuple(target.log_prob(torch.randn(5, 2)).shape)
        (2, (5,))
    """

    name = "u1"

    def energy(self, z: Tensor) -> Tensor:
        r = torch.linalg.vector_norm(z, dim=-1)
        return 0.5 * ((r - 2) / 0.4) ** 2 - torch.logaddexp(_gauss(z[..., 0], 2, 0.6), _gauss(z[..., 0], -2, 0.6))


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z1 / 4)


class U2(Energy):
    """Rezende & Mohamed's U2, a sine band, with the soft wall at ``|z₁| = 4``; ``log Z ≈ 2.143``.

    Example:
        >>> import torch
        >>> from tractable import U2
        >>> target = U2()
        >>> target.features, tuple(target.log_prob(torch.randn(5, 2)).shape)
        (2, (5,))
    """

    name = "u2"

    def energy(self, z: Tensor) -> Tensor:
        z1, z2 = z[..., 0], z[..., 1]
        return 0.5 * ((z2 - _w1(z1)) / 0.4) ** 2 + _wall(z1)


class U3(Energy):
    """Rezende & Mohamed's U3, two sine bands splitting at ``z₁ = 1``, with the soft wall; ``log Z ≈ 2.702``.

    Example:
        >>> import torch
        >>> from tractable import U3
        >>> target = U3()
        >>> target.features, tuple(target.log_prob(torch.randn(5, 2)).shape)
        (2, (5,))
    """

    name = "u3"

    def energy(self, z: Tensor) -> Tensor:
        z1, z2 = z[..., 0], z[..., 1]
        w1, w2 = _w1(z1), 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
        return -torch.logaddexp(_gauss(z2 - w1, 0, 0.35), _gauss(z2 - w1 + w2, 0, 0.35)) + _wall(z1)


class U4(Energy):
    """Rezende & Mohamed's U4, a sine band and a sigmoid-shifted copy, with the soft wall; ``log Z ≈ 2.771``.

    Example:
        >>> import torch
        >>> from tractable import U4
        >>> target = U4()
        >>> target.features, tuple(target.log_prob(torch.randn(5, 2)).shape)
        (2, (5,))
    """

    name = "u4"

    def energy(self, z: Tensor) -> Tensor:
        z1, z2 = z[..., 0], z[..., 1]
        w1, w3 = _w1(z1), 3 * torch.sigmoid((z1 - 1) / 0.3)
        return -torch.logaddexp(_gauss(z2 - w1, 0, 0.4), _gauss(z2 - w1 + w3, 0, 0.35)) + _wall(z1)


class GaussianMixtureEnergy(Energy):
    """A normalized mixture of isotropic Gaussians (``log Z = 0`` exactly), in any dimension.

    The default is a 2D mixture of three well-separated components with unequal weights, a test of whether a
    mode-seeking fit covers every mode with the right mass.

    Args:
        locs: component means, ``(components, features)``.
        scales: component standard deviations, ``(components,)``.
        weights: mixture weights (normalized here).

    Example:
        >>> import torch
        >>> from tractable import GaussianMixtureEnergy
        >>> target = GaussianMixtureEnergy(locs=[[0.0], [3.0]], scales=[1.0, 1.0], weights=[0.5, 0.5])  # 1D, two modes
        >>> target.features, target.log_z, tuple(target.log_prob(torch.randn(4, 1)).shape)
        (1, 0.0, (4,))
    """

    name = "mixture"

    def __init__(
        self,
        locs: Sequence[Sequence[float]] = ((-2.0, -1.5), (2.0, -1.5), (0.0, 2.0)),
        scales: Sequence[float] = (0.6, 0.6, 0.6),
        weights: Sequence[float] = (0.5, 0.3, 0.2),
    ):
        self.locs = torch.as_tensor(locs, dtype=torch.float64)
        self.scales = torch.as_tensor(scales, dtype=torch.float64)
        w = torch.as_tensor(weights, dtype=torch.float64)
        if self.locs.dim() != 2 or self.scales.shape != self.locs.shape[:1] or w.shape != self.scales.shape:
            raise ValueError(
                f"expected locs (K, D), scales (K,) and weights (K,), got {tuple(self.locs.shape)}, "
                f"{tuple(self.scales.shape)} and {tuple(w.shape)}"
            )
        if (self.scales <= 0).any() or (w <= 0).any():
            raise ValueError("expected positive scales and weights")
        self.log_weights = torch.log(w / w.sum())
        self.features = self.locs.shape[1]
        reach = float((self.locs.abs().max() + 4 * self.scales.max()).ceil())
        self.box = (-reach, reach)

    def energy(self, z: Tensor) -> Tensor:
        locs, scales, logw = (t.to(z) for t in (self.locs, self.scales, self.log_weights))
        d = self.features
        sq = ((z.unsqueeze(-2) - locs) ** 2).sum(-1) / scales**2
        comp = -0.5 * sq - d * torch.log(scales) - 0.5 * d * math.log(2 * math.pi)
        return -torch.logsumexp(comp + logw, -1)

    @property
    def log_z(self) -> float:
        return 0.0


TARGETS: dict[str, type[Energy]] = {
    "ring": Ring,
    "u1": U1,
    "u2": U2,
    "u3": U3,
    "u4": U4,
    "mixture": GaussianMixtureEnergy,
}
"""The target energies by name -> their class, each with ``log Z`` known by quadrature; see :func:`get_target`.

Example:
    >>> from tractable import TARGETS
    >>> sorted(TARGETS)
    ['mixture', 'ring', 'u1', 'u2', 'u3', 'u4']
"""


def get_target(name: str) -> Energy:
    """The target energy called ``name`` (``ring``, ``u1`` … ``u4``, ``mixture``).

    Example:
        >>> from tractable import get_target
        >>> target = get_target("u1")
        >>> type(target).__name__, target.features, round(target.log_z, 4)
        ('U1', 2, 1.8775)
    """
    key = name.lower()
    if key not in TARGETS:
        raise ValueError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}")
    return TARGETS[key]()
