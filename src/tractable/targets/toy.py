"""2D toy data sets for density estimation (maximum likelihood), several with an exact log-density and entropy.

Every data set has a ``name``, ``features = 2``, a plotting square ``box`` and ``sample(n, generator=...)``, which is
reproducible given a seeded ``torch.Generator`` (sampling runs in float64 on the CPU, then casts, so the same seed
gives the same points in every dtype). Where the density is known exactly, ``log_prob(x)`` is normalized and
``entropy`` is the differential entropy in nats (analytic, else converged float64 grid quadrature, cached), so a fit
can report ``test NLL − entropy``, an estimate of ``KL(p‖q) ≥ 0``. The visual-only sets (``two_moons``,
``pinwheel``, ``two_spirals``, ``swiss_roll``) have ``log_prob = None`` and ``entropy = None``.

References:
    FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models (Grathwohl et al., 2019),
        arXiv:1810.01367 — ``8gaussians``, ``checkerboard``, ``rings``, ``moons``, ``pinwheel``, ``2spirals``,
        ``swissroll`` (rtqichen/ffjord, ``lib/toy_data.py``).
    Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032 — the same 2D benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .quadrature import grid_entropy
from .toy_base import LOG_2PI, ToyDataset, check_points, normal, uniform
from .toy_mixture import GaussianMixtureData
from .toy_torus import TorusMixture


class EightGaussians(ToyDataset):
    """FFJORD's ``8gaussians``: eight equally weighted isotropic Gaussians on a circle.

    FFJORD draws ``4·c + 0.5·ε`` for the eight unit compass directions ``c`` and divides by 1.414, so the centres lie
    at radius ``4/1.414 ≈ 2√2`` with standard deviation ``0.5/1.414 ≈ 0.5/√2``; here the divisor is exactly ``√2``
    (a relative difference of 1.5e-4, i.e. 3e-4 nats of entropy). The entropy has no closed form (the components
    overlap slightly) and comes from converged grid quadrature.

    Args:
        radius: distance of the centres from the origin.
        std: standard deviation of each component.
    """

    name = "eight_gaussians"

    def __init__(self, radius: float = 2 * math.sqrt(2), std: float = 0.5 / math.sqrt(2)):
        if not radius >= 0 or not std > 0:
            raise ValueError(f"expected radius >= 0 and std > 0, got radius={radius}, std={std}")
        self.radius, self.std = float(radius), float(std)
        angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
        self.centers = self.radius * torch.stack([torch.cos(angles), torch.sin(angles)], -1)
        reach = self.radius + 12 * self.std
        self.quadrature_box = (-math.ceil(reach), math.ceil(reach))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        k = torch.randint(0, 8, (n,), generator=generator)
        return self.centers[k] + self.std * normal(n, 2, g=generator)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The exact log-density (an equal mixture of eight ``N(c_k, std² I)``)."""
        check_points(x, self.name)
        sq = ((x.unsqueeze(-2) - self.centers.to(x)) ** 2).sum(-1) / self.std**2
        return torch.logsumexp(-0.5 * sq, -1) - math.log(8) - 2 * math.log(self.std) - LOG_2PI

    @property
    def entropy(self) -> float:
        return grid_entropy(repr(self), self.log_prob, self.quadrature_box)

    def __repr__(self) -> str:
        return f"EightGaussians(radius={self.radius!r}, std={self.std!r})"


class Checkerboard(ToyDataset):
    """FFJORD's ``checkerboard``: uniform on the 8 squares of side 2 in ``[-4, 4]²`` whose cell indices sum to even.

    The density is ``1/32`` on the squares and 0 elsewhere (``log_prob = -inf`` there); the entropy is ``log 32``.
    """

    name = "checkerboard"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        # FFJORD: x1 ~ U[-2, 2), x2 ~ U[0, 1) - 2·Bernoulli(½) + (floor(x1) mod 2), all times 2.
        x1 = 4 * uniform(n, generator) - 2
        x2 = uniform(n, generator) - 2 * torch.randint(0, 2, (n,), generator=generator).double()
        x2 = x2 + torch.remainder(torch.floor(x1), 2)
        return 2 * torch.stack([x1, x2], -1)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``log(1/32)`` on the black squares, ``-inf`` elsewhere."""
        check_points(x, self.name)
        cells = torch.floor(x / 2)
        inside = ((x >= -4) & (x < 4)).all(-1) & (torch.remainder(cells.sum(-1), 2) == 0)
        inside_value = torch.full_like(x[..., 0], -math.log(32.0))
        return torch.where(inside, inside_value, torch.full_like(inside_value, -math.inf))

    @property
    def entropy(self) -> float:
        return math.log(32.0)


class Rings(ToyDataset):
    """FFJORD-style concentric rings: a point uniform on a circle of radius ``R_k``, plus isotropic noise ``N(0, σ²I)``.

    The density is exact, a mixture of ring–Gaussian convolutions
    ``p(x) = Σ_k w_k exp(-(r² + R_k²)/(2σ²)) I₀(r R_k/σ²) / (2πσ²)``, ``r = ‖x‖``, evaluated stably with the
    exponentially scaled Bessel function ``i0e``. FFJORD's generator puts a quarter of the points on each of the radii
    0.75, 1.5, 2.25, 3 with noise 0.08 (the defaults here; note the equal weights, not proportional to the
    circumference, so the inner rings are denser). The entropy comes from converged grid quadrature.

    Args:
        radii: the ring radii.
        weights: the ring probabilities (normalized here); ``None`` for equal weights.
        noise: the noise standard deviation ``σ``.
    """

    name = "rings"

    def __init__(
        self,
        radii: Sequence[float] = (0.75, 1.5, 2.25, 3.0),
        weights: Sequence[float] | None = None,
        noise: float = 0.08,
    ):
        self.radii = torch.as_tensor(radii, dtype=torch.float64)
        w = torch.ones_like(self.radii) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.radii.dim() != 1 or w.shape != self.radii.shape or len(self.radii) == 0:
            raise ValueError(f"expected K radii and K weights, got {tuple(self.radii.shape)} and {tuple(w.shape)}")
        if (self.radii < 0).any() or not (w > 0).all() or not noise > 0:
            raise ValueError(f"expected radii >= 0, weights > 0 and noise > 0, got {radii}, {weights}, {noise}")
        self.weights, self.noise = w / w.sum(), float(noise)
        reach = float(self.radii.max()) + 12 * self.noise
        self.quadrature_box = (-math.ceil(reach), math.ceil(reach))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        theta = 2 * math.pi * uniform(n, generator)
        ring = self.radii[k, None] * torch.stack([torch.cos(theta), torch.sin(theta)], -1)
        return ring + self.noise * normal(n, 2, g=generator)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The exact log-density ``log Σ_k w_k N_ring(x; R_k, σ)``."""
        check_points(x, self.name)
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        radii, s2 = self.radii.to(x), self.noise**2
        comp = -((r - radii) ** 2) / (2 * s2) + torch.log(torch.special.i0e(r * radii / s2))
        return torch.logsumexp(comp + torch.log(self.weights.to(x)), -1) - math.log(2 * math.pi * s2)

    @property
    def entropy(self) -> float:
        return grid_entropy(repr(self), self.log_prob, self.quadrature_box)

    def __repr__(self) -> str:
        return f"Rings(radii={self.radii.tolist()}, weights={self.weights.tolist()}, noise={self.noise!r})"


class TwoMoons(ToyDataset):
    """FFJORD's ``moons`` (scikit-learn's ``make_moons(noise=0.1)``, then ``2x + (-1, -0.2)``); visual only.

    The arc parameter is drawn uniformly at random (scikit-learn spaces it evenly) and each point picks a moon with
    probability ½.
    """

    name = "two_moons"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        t = math.pi * uniform(n, generator)
        inner = torch.randint(0, 2, (n,), generator=generator).bool()
        outer_pts = torch.stack([torch.cos(t), torch.sin(t)], -1)
        inner_pts = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], -1)
        x = torch.where(inner[:, None], inner_pts, outer_pts) + 0.1 * normal(n, 2, g=generator)
        return 2 * x + torch.tensor([-1.0, -0.2], dtype=torch.float64)


class Pinwheel(ToyDataset):
    """FFJORD's ``pinwheel``: five arms, each a Gaussian ``N((1, 0), diag(0.3², 0.1²))`` twisted by its radius;
    visual only.

    The arm of each point is drawn uniformly at random (FFJORD uses ``n // 5`` per arm).
    """

    name = "pinwheel"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        arms = torch.randint(0, 5, (n,), generator=generator).double()
        f = normal(n, 2, g=generator) * torch.tensor([0.3, 0.1], dtype=torch.float64)
        f[:, 0] += 1.0
        a = arms * (2 * math.pi / 5) + 0.25 * torch.exp(f[:, 0])
        c, s = torch.cos(a), torch.sin(a)
        return 2 * torch.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], -1)


class TwoSpirals(ToyDataset):
    """FFJORD's ``2spirals``: two interleaved spirals over 540°, with uniform jitter and Gaussian noise 0.1;
    visual only.

    Each point picks a spiral with probability ½ (FFJORD splits the batch in halves).
    """

    name = "two_spirals"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        t = torch.sqrt(uniform(n, generator)) * (540 * 2 * math.pi / 360)
        x = -torch.cos(t) * t + 0.5 * uniform(n, generator)
        y = torch.sin(t) * t + 0.5 * uniform(n, generator)
        sign = 1 - 2 * torch.randint(0, 2, (n,), generator=generator).double()
        return sign[:, None] * torch.stack([x, y], -1) / 3 + 0.1 * normal(n, 2, g=generator)


class SwissRoll(ToyDataset):
    """FFJORD's ``swissroll``: scikit-learn's ``make_swiss_roll(noise=1.0)`` seen from the side (x, z), divided by 5.

    ``t ~ U[1.5π, 4.5π]``, ``(t cos t, t sin t) + N(0, I)``, divided by 5; visual only.
    """

    name = "swiss_roll"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        t = 1.5 * math.pi * (1 + 2 * uniform(n, generator))
        roll = torch.stack([t * torch.cos(t), t * torch.sin(t)], -1)
        return (roll + normal(n, 2, g=generator)) / 5


DATASETS: dict[str, type[ToyDataset]] = {
    "eight_gaussians": EightGaussians,
    "checkerboard": Checkerboard,
    "rings": Rings,
    "gaussian_mixture": GaussianMixtureData,
    "two_moons": TwoMoons,
    "pinwheel": Pinwheel,
    "two_spirals": TwoSpirals,
    "swiss_roll": SwissRoll,
    "torus": TorusMixture,
}
"""The toy data sets by name -> their class; :func:`get_dataset` builds one (and accepts FFJORD's names too).

The first four have an exact density (``log_prob``) and entropy, so a fit's KL gap is exact; the others give samples.

Example:
    >>> from tractable import DATASETS
    >>> list(DATASETS)[:4]
    ['eight_gaussians', 'checkerboard', 'rings', 'gaussian_mixture']
"""

#: FFJORD's names for the same data sets.
ALIASES = {"8gaussians": "eight_gaussians", "moons": "two_moons", "2spirals": "two_spirals", "swissroll": "swiss_roll"}


def get_dataset(name: str, **kwargs: object) -> ToyDataset:
    """The toy data set called ``name`` (FFJORD's names are accepted too), built with ``kwargs``.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:
        >>> import torch
        >>> from tractable import get_dataset
        >>> data = get_dataset("checkerboard")
        >>> x = data.sample(1000, generator=torch.Generator().manual_seed(0))
        >>> tuple(x.shape), tuple(data.log_prob(x).shape), round(data.entropy, 4)
        ((1000, 2), (1000,), 3.4657)
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[key](**kwargs)  # type: ignore[arg-type]


def sample_splits(
    dataset: ToyDataset,
    sizes: Sequence[int] = (50_000, 10_000, 100_000),
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    labels: bool = False,
) -> list[Tensor] | list[tuple[Tensor, Tensor]]:
    """Independent train/validation/test samples (any number of splits), reproducible from ``seed``.

    Each split has its own generator, seeded from ``seed``, so the test set does not change with the training size.
    With ``labels=True`` (a :class:`GaussianMixtureData` only) each split is ``(x, one_hot_labels)``.
    """
    if labels and not isinstance(dataset, GaussianMixtureData):
        raise ValueError(f"labels=True needs a labelled data set (gaussian_mixture), got {dataset.name!r}")
    seeds = torch.randint(0, 2**62, (len(sizes),), generator=torch.Generator().manual_seed(seed)).tolist()
    out: list = []
    for n, s in zip(sizes, seeds):
        g = torch.Generator().manual_seed(int(s))
        if labels:
            x, y = dataset.sample_with_labels(n, generator=g, dtype=dtype)  # type: ignore[union-attr]
            out.append((x, dataset.one_hot(y, dtype=dtype)))  # type: ignore[union-attr]
        else:
            out.append(dataset.sample(n, generator=g, dtype=dtype))
    return out
