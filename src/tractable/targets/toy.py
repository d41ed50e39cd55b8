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
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .quadrature import grid_entropy

_LOG_2PI = math.log(2 * math.pi)


def _check_points(x: Tensor, name: str) -> None:
    if x.dim() != 2 or x.shape[-1] != 2:
        raise ValueError(f"data set {name!r} expects points of shape (batch, 2), got {tuple(x.shape)}")


class ToyDataset:
    """A 2D data distribution: ``sample`` always; ``log_prob`` and ``entropy`` where known exactly (else ``None``).

    Subclasses implement :meth:`_sample` (float64, CPU) and, where exact, ``log_prob`` and ``entropy``.
    """

    name: str = "toy"
    features: int = 2
    box: tuple[float, float] = (-4.0, 4.0)
    #: The normalized log-density of each row, or ``None`` for the visual-only sets.
    log_prob: Callable[[Tensor], Tensor] | None = None

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> Tensor:
        """``n`` points of shape ``(n, 2)``; the same seeded CPU ``generator`` state gives the same points."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"expected a positive integer number of samples, got {n!r}")
        return self._sample(n, generator).to(dtype=dtype, device=device)

    @property
    def entropy(self) -> float | None:
        """The differential entropy ``-E[log p(x)]`` in nats, or ``None`` when the density is not known exactly."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _uniform(n: int, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, dtype=torch.float64, generator=g)


def _normal(*shape: int, g: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=g)


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
        return self.centers[k] + self.std * _normal(n, 2, g=generator)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The exact log-density (an equal mixture of eight ``N(c_k, std² I)``)."""
        _check_points(x, self.name)
        sq = ((x.unsqueeze(-2) - self.centers.to(x)) ** 2).sum(-1) / self.std**2
        return torch.logsumexp(-0.5 * sq, -1) - math.log(8) - 2 * math.log(self.std) - _LOG_2PI

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
        x1 = 4 * _uniform(n, generator) - 2
        x2 = _uniform(n, generator) - 2 * torch.randint(0, 2, (n,), generator=generator).double()
        x2 = x2 + torch.remainder(torch.floor(x1), 2)
        return 2 * torch.stack([x1, x2], -1)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``log(1/32)`` on the black squares, ``-inf`` elsewhere."""
        _check_points(x, self.name)
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
        theta = 2 * math.pi * _uniform(n, generator)
        ring = self.radii[k, None] * torch.stack([torch.cos(theta), torch.sin(theta)], -1)
        return ring + self.noise * _normal(n, 2, g=generator)

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The exact log-density ``log Σ_k w_k N_ring(x; R_k, σ)``."""
        _check_points(x, self.name)
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        radii, s2 = self.radii.to(x), self.noise**2
        comp = -((r - radii) ** 2) / (2 * s2) + torch.log(torch.special.i0e(r * radii / s2))
        return torch.logsumexp(comp + torch.log(self.weights.to(x)), -1) - math.log(2 * math.pi * s2)

    @property
    def entropy(self) -> float:
        return grid_entropy(repr(self), self.log_prob, self.quadrature_box)

    def __repr__(self) -> str:
        return f"Rings(radii={self.radii.tolist()}, weights={self.weights.tolist()}, noise={self.noise!r})"


class GaussianMixtureData(ToyDataset):
    """A mixture of full-covariance Gaussians with unequal weights, with labels for conditional density estimation.

    Besides ``sample``/``log_prob``/``entropy`` of the mixture, it gives labelled samples, the exact conditional
    log-densities ``log p(x | k)`` and the per-component entropies ``½ log det(2πe Σ_k)``, so a flow conditioned on
    the one-hot label can be checked against the exact conditional entropies.

    Args:
        locs: component means, ``(K, 2)``.
        covariances: component covariance matrices, ``(K, 2, 2)``, symmetric positive definite.
        weights: mixture weights (normalized here).
    """

    name = "gaussian_mixture"

    def __init__(
        self,
        locs: Sequence[Sequence[float]] = ((-2.0, -1.5), (2.0, -1.0), (0.0, 2.0)),
        covariances: Sequence[Sequence[Sequence[float]]] = (
            ((0.6, 0.35), (0.35, 0.5)),
            ((0.3, -0.2), (-0.2, 0.7)),
            ((0.8, 0.0), (0.0, 0.15)),
        ),
        weights: Sequence[float] = (0.5, 0.3, 0.2),
    ):
        self.locs = torch.as_tensor(locs, dtype=torch.float64)
        self.covariances = torch.as_tensor(covariances, dtype=torch.float64)
        w = torch.as_tensor(weights, dtype=torch.float64)
        k = self.locs.shape[0] if self.locs.dim() == 2 else -1
        if self.locs.shape != (k, 2) or self.covariances.shape != (k, 2, 2) or w.shape != (k,) or k < 1:
            raise ValueError(
                f"expected locs (K, 2), covariances (K, 2, 2) and weights (K,), got {tuple(self.locs.shape)}, "
                f"{tuple(self.covariances.shape)} and {tuple(w.shape)}"
            )
        if not (w > 0).all() or not torch.allclose(self.covariances, self.covariances.mT):
            raise ValueError("expected positive weights and symmetric covariance matrices")
        chol, info = torch.linalg.cholesky_ex(self.covariances)
        if (info != 0).any():
            raise ValueError(f"covariance matrices {torch.nonzero(info).flatten().tolist()} are not positive definite")
        self.weights, self.chol = w / w.sum(), chol
        self.components = k
        self.context_features = k  # one-hot labels
        self._chol_inv = torch.linalg.inv(chol)
        self._half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        spread = float(torch.linalg.eigvalsh(self.covariances).max().sqrt())
        reach = float(self.locs.abs().max())
        self.box = (-math.ceil(reach + 4 * spread), math.ceil(reach + 4 * spread))
        self.quadrature_box = (-math.ceil(reach + 12 * spread), math.ceil(reach + 12 * spread))

    def sample_with_labels(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``n`` points ``(n, 2)`` and their component labels ``(n,)`` (int64)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"expected a positive integer number of samples, got {n!r}")
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = _normal(n, 2, g=generator)
        x = self.locs[labels] + torch.einsum("bij,bj->bi", self.chol[labels], eps)
        return x.to(dtype=dtype, device=device), labels.to(device)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self.sample_with_labels(n, generator=generator, dtype=torch.float64)[0]

    def one_hot(self, labels: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """The context vectors ``(n, K)`` of the labels, as a conditional flow reads them."""
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or (labels.numel() and (labels.min() < 0 or labels.max() >= self.components)):
            raise ValueError(f"expected integer labels in [0, {self.components}), got {labels}")
        return torch.nn.functional.one_hot(labels.long(), self.components).to(dtype)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log N(x; μ_k, Σ_k)`` for every row and component, shape ``(batch, K)``."""
        _check_points(x, self.name)
        diff = x.unsqueeze(-2) - self.locs.to(x)
        white = torch.einsum("kij,bkj->bki", self._chol_inv.to(x), diff)
        return -0.5 * (white**2).sum(-1) - self._half_logdet.to(x) - _LOG_2PI

    def log_prob(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The exact mixture log-density ``log Σ_k w_k N(x; μ_k, Σ_k)``."""
        return torch.logsumexp(self.component_log_prob(x) + torch.log(self.weights.to(x)), -1)

    def conditional_log_prob(self, x: Tensor, label: int | Tensor) -> Tensor:
        """``log p(x | k)`` for one label ``k`` (an int) or one label per row (an integer tensor ``(batch,)``)."""
        comp = self.component_log_prob(x)
        label = torch.as_tensor(label, device=x.device)
        if label.dtype.is_floating_point or (label.numel() and (label.min() < 0 or label.max() >= self.components)):
            raise ValueError(f"expected integer labels in [0, {self.components}), got {label}")
        if label.dim() == 0:
            return comp[:, int(label)]
        if label.shape != comp.shape[:1]:
            raise ValueError(f"expected one label or {comp.shape[0]} labels (one per row), got {tuple(label.shape)}")
        return comp.gather(-1, label.long().unsqueeze(-1)).squeeze(-1)

    @property
    def component_entropies(self) -> list[float]:
        """The exact entropy of each component, ``½ log det(2πe Σ_k) = log(2πe) + ½ log det Σ_k`` (nats)."""
        return [math.log(2 * math.pi * math.e) + float(h) for h in self._half_logdet]

    @property
    def conditional_entropy(self) -> float:
        """``H(x | label) = Σ_k w_k H_k``."""
        return float(sum(float(w) * h for w, h in zip(self.weights, self.component_entropies)))

    @property
    def entropy(self) -> float:
        """The mixture's entropy: closed form for one component, else converged grid quadrature (cached)."""
        if self.components == 1:
            return self.component_entropies[0]
        return grid_entropy(repr(self), self.log_prob, self.quadrature_box)

    def __repr__(self) -> str:
        return (f"GaussianMixtureData(locs={self.locs.tolist()}, covariances={self.covariances.tolist()}, "
                f"weights={self.weights.tolist()})")


class TwoMoons(ToyDataset):
    """FFJORD's ``moons`` (scikit-learn's ``make_moons(noise=0.1)``, then ``2x + (-1, -0.2)``); visual only.

    The arc parameter is drawn uniformly at random (scikit-learn spaces it evenly) and each point picks a moon with
    probability ½.
    """

    name = "two_moons"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        t = math.pi * _uniform(n, generator)
        inner = torch.randint(0, 2, (n,), generator=generator).bool()
        outer_pts = torch.stack([torch.cos(t), torch.sin(t)], -1)
        inner_pts = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], -1)
        x = torch.where(inner[:, None], inner_pts, outer_pts) + 0.1 * _normal(n, 2, g=generator)
        return 2 * x + torch.tensor([-1.0, -0.2], dtype=torch.float64)


class Pinwheel(ToyDataset):
    """FFJORD's ``pinwheel``: five arms, each a Gaussian ``N((1, 0), diag(0.3², 0.1²))`` twisted by its radius;
    visual only.

    The arm of each point is drawn uniformly at random (FFJORD uses ``n // 5`` per arm).
    """

    name = "pinwheel"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        arms = torch.randint(0, 5, (n,), generator=generator).double()
        f = _normal(n, 2, g=generator) * torch.tensor([0.3, 0.1], dtype=torch.float64)
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
        t = torch.sqrt(_uniform(n, generator)) * (540 * 2 * math.pi / 360)
        x = -torch.cos(t) * t + 0.5 * _uniform(n, generator)
        y = torch.sin(t) * t + 0.5 * _uniform(n, generator)
        sign = 1 - 2 * torch.randint(0, 2, (n,), generator=generator).double()
        return sign[:, None] * torch.stack([x, y], -1) / 3 + 0.1 * _normal(n, 2, g=generator)


class SwissRoll(ToyDataset):
    """FFJORD's ``swissroll``: scikit-learn's ``make_swiss_roll(noise=1.0)`` seen from the side (x, z), divided by 5.

    ``t ~ U[1.5π, 4.5π]``, ``(t cos t, t sin t) + N(0, I)``, divided by 5; visual only.
    """

    name = "swiss_roll"

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        t = 1.5 * math.pi * (1 + 2 * _uniform(n, generator))
        roll = torch.stack([t * torch.cos(t), t * torch.sin(t)], -1)
        return (roll + _normal(n, 2, g=generator)) / 5


DATASETS: dict[str, type[ToyDataset]] = {
    "eight_gaussians": EightGaussians,
    "checkerboard": Checkerboard,
    "rings": Rings,
    "gaussian_mixture": GaussianMixtureData,
    "two_moons": TwoMoons,
    "pinwheel": Pinwheel,
    "two_spirals": TwoSpirals,
    "swiss_roll": SwissRoll,
}

#: FFJORD's names for the same data sets.
ALIASES = {"8gaussians": "eight_gaussians", "moons": "two_moons", "2spirals": "two_spirals", "swissroll": "swiss_roll"}


def get_dataset(name: str, **kwargs: object) -> ToyDataset:
    """The toy data set called ``name`` (FFJORD's names are accepted too), built with ``kwargs``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
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
