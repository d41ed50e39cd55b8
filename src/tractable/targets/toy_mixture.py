"""A labelled 2D Gaussian mixture with exact joint and conditional densities, for conditional density estimation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .quadrature import grid_entropy
from .toy_base import LOG_2PI, ToyDataset, check_points, normal


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
        eps = normal(n, 2, g=generator)
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
        check_points(x, self.name)
        diff = x.unsqueeze(-2) - self.locs.to(x)
        white = torch.einsum("kij,bkj->bki", self._chol_inv.to(x), diff)
        return -0.5 * (white**2).sum(-1) - self._half_logdet.to(x) - LOG_2PI

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
