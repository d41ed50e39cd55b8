"""Linear bijections: fixed permutations of the features and the learnable LU-factorised linear map.

Permutations mix the features between coupling layers (so that every feature is transformed and conditions the
others); their ``ladj`` is zero. :class:`LULinear` is a learnable generalisation, ``W = P L U``, whose determinant is
the product of ``U``'s diagonal.

References:
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Transform, check_features


class Permutation(Transform):
    """Reorder the features: ``y[..., i] = x[..., order[i]]``.

    Both directions are exact gathers; ``ladj = 0`` (``|det| = 1``; the determinant itself is ``±1``). The order is a
    buffer, so it is saved in ``state_dict`` and moves with ``.to()``.

    Args:
        order: a permutation of ``0, ..., features - 1`` (tensor or sequence of ints).

    Example:
        >>> import torch
        >>> from tractable.transforms.linear import Permutation
        >>> t = Permutation([2, 0, 1])
        >>> t(torch.tensor([[10.0, 11.0, 12.0]]))[0]
        tensor([[12., 10., 11.]])
    """

    def __init__(self, order: Tensor | Sequence[int]):
        super().__init__()
        order = torch.as_tensor(order, dtype=torch.long).flatten()
        if order.numel() < 1 or not torch.equal(torch.sort(order).values, torch.arange(order.numel())):
            raise ValueError(f"expected a permutation of 0..{order.numel() - 1}, got {order.tolist()}")
        self.features = int(order.numel())
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        return x.index_select(-1, self.order), x.new_zeros(x.shape[:-1])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(y, self.features)
        return y.index_select(-1, self.inverse_order), y.new_zeros(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"features={self.features}"


class ReversePermutation(Permutation):
    """Reverse the order of the features (``order = features - 1, ..., 0``), as between RealNVP/MAF layers.

    Args:
        features: number of features.

    Example:
        >>> import torch
        >>> from tractable.transforms.linear import ReversePermutation
        >>> ReversePermutation(3)(torch.tensor([[1.0, 2.0, 3.0]]))[0]
        tensor([[3., 2., 1.]])
    """

    def __init__(self, features: int):
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        super().__init__(torch.arange(features - 1, -1, -1))


class RandomPermutation(Permutation):
    """A permutation drawn once at construction and stored as a buffer (so ``state_dict`` round trips restore it).

    Args:
        features: number of features.
        seed: seed of the draw; ``None`` draws from torch's global generator.

    Example:
        >>> from tractable.transforms.linear import RandomPermutation
        >>> RandomPermutation(5, seed=0).order.tolist() == RandomPermutation(5, seed=0).order.tolist()
        True
    """

    def __init__(self, features: int, seed: int | None = None):
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        super().__init__(torch.randperm(features, generator=generator))


class LULinear(Transform):
    """A learnable invertible linear map ``y = W x + b`` with ``W = P L U`` (Glow's LU-decomposed 1x1 convolution).

    ``P`` is a fixed permutation (a buffer), ``L`` unit lower triangular and ``U`` upper triangular with diagonal
    ``sign · exp(log_diag)`` (``sign`` a fixed ±1 buffer), so ``log|det W| = Σ log_diag`` for every input, computed
    without any decomposition. Directions: ``forward`` is one matrix product (``W`` is assembled from its factors on
    each call, an ``O(D³)`` product independent of the batch, cheaper than the ``O(B D²)`` map itself for batches above
    ``D``); ``inverse`` is exact, with two triangular solves (``torch.linalg.solve_triangular``), never an explicit
    inverse. Nothing is cached, so the layer is safe to train and to use in both directions.

    Args:
        features: number of features.
        init: ``"identity"`` (default: ``P = L = U = I``, ``b = 0``, the exact identity) or ``"orthogonal"`` (Glow:
            ``W`` a random rotation, factorised once; ``P`` and the signs of ``U``'s diagonal are then fixed).

    Example:
        >>> import torch
        >>> from tractable.transforms.linear import LULinear
        >>> t = LULinear(4, init="orthogonal")
        >>> x = torch.randn(3, 4)
        >>> y, ladj = t(x)
        >>> bool(torch.allclose(t.inverse(y)[0], x, atol=1e-5)), bool(ladj.abs().max() < 1e-5)
        (True, True)

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039, §3.2.
        Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios, 2019), arXiv:1906.04032 (LU linear layers).
    """

    def __init__(self, features: int, *, init: str = "identity"):
        super().__init__()
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        if init == "identity":
            order, lower, upper = (
                torch.arange(features),
                torch.zeros(features, features),
                torch.zeros(features, features),
            )
            sign, log_diag = torch.ones(features), torch.zeros(features)
        elif init == "orthogonal":
            q = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))[0]
            p, lower, upper = torch.linalg.lu(q)
            order = p.argmax(1)  # W = P M  <=>  W[i] = M[order[i]]
            diag = upper.diagonal()
            sign, log_diag = torch.sign(diag), torch.log(diag.abs())
            lower, upper, sign, log_diag = lower.float(), upper.float(), sign.float(), log_diag.float()
        else:
            raise ValueError(f"unknown init {init!r}; expected 'identity' or 'orthogonal'")
        self.features, self.init = features, init
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_diag = nn.Parameter(log_diag)
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))
        self.register_buffer("sign", sign)
        self.register_buffer("eye", torch.eye(features), persistent=False)

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(L, U)``: the unit lower and the upper triangular factors."""
        lower = torch.tril(self.lower, -1) + self.eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W = P L U``."""
        lower, upper = self.factors()
        return (lower @ upper).index_select(0, self.order)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        return F.linear(x, self.weight(), self.bias), self.log_diag.sum().expand(x.shape[:-1])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(y, self.features)
        lower, upper = self.factors()
        # Rows r = y - b satisfy r = x Wᵀ, i.e. (LU x)[order] = r: solve X Uᵀ Lᵀ = R[:, order⁻¹] from the right.
        r = (y - self.bias).reshape(-1, self.features)
        r = r.index_select(-1, self.inverse_order)
        v = torch.linalg.solve_triangular(lower.mT, r, upper=True, left=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper.mT, v, upper=False, left=False)
        return x.reshape(y.shape), (-self.log_diag.sum()).expand(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"features={self.features}, init={self.init!r}"


__all__ = ["LULinear", "Permutation", "RandomPermutation", "ReversePermutation"]
