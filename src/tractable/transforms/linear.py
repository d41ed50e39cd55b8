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


#: The initialisations of the LU layers (:class:`LULinear`, :class:`~tractable.transforms.conv.InvertibleConv1x1`).
LU_INITS = ("orthogonal", "identity")
#: Draws of a random orthogonal matrix until its LU permutation is even (half the draws are).
_ROTATION_DRAWS = 100


def _rotation_factors(size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(order, L, U, log_diag)`` of a random rotation ``W = P L U`` (``det W = +1``, ``U``'s diagonal positive).

    A random orthogonal matrix whose LU permutation is even (redrawn otherwise), with the columns' signs flipped so
    that ``U``'s diagonal is positive: then ``W`` is a rotation.
    """
    for _ in range(_ROTATION_DRAWS):
        q = torch.linalg.qr(torch.randn(size, size, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(q)
        if torch.linalg.det(p) > 0:
            break
    p, lower, upper = torch.linalg.lu(q * torch.sign(upper.diagonal()))
    return p.argmax(1), lower.float(), upper.float(), torch.log(upper.diagonal()).float()


class LUTransform(Transform):
    """The LU core shared by :class:`LULinear` and :class:`~tractable.transforms.conv.InvertibleConv1x1`.

    ``W = P L U`` with ``P`` a fixed permutation (a buffer: ``W[i] = (L U)[order[i]]``), ``L`` unit lower triangular
    and ``U`` upper triangular with the positive diagonal ``exp(log_diag)``, so ``log|det W| = Σ log_diag`` without
    any decomposition at run time and ``det W > 0``.

    Args:
        size: the size ``D`` of the square matrix.
        init: ``"orthogonal"`` (Glow: ``W`` a random rotation, factorised once; ``P`` is then fixed) or
            ``"identity"`` (``P = L = U = I``).
    """

    def __init__(self, size: int, init: str):
        super().__init__()
        if size < 1:
            raise ValueError(f"expected a positive size, got {size}")
        if init == "identity":
            order, lower, upper, log_diag = torch.arange(size), torch.zeros(size, size), torch.zeros(size, size), \
                torch.zeros(size)
        elif init == "orthogonal":
            order, lower, upper, log_diag = _rotation_factors(size)
        else:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(LU_INITS)}")
        self.init = init
        self.lower = nn.Parameter(lower.tril(-1).clone())
        self.upper = nn.Parameter(upper.triu(1).clone())
        self.log_diag = nn.Parameter(log_diag.clone())
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))
        self.register_buffer("eye", torch.eye(size), persistent=False)

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(L, U)``: the unit lower and the upper triangular factors (``W = P L U``)."""
        return torch.tril(self.lower, -1) + self.eye, torch.triu(self.upper, 1) + torch.diag(torch.exp(self.log_diag))

    def weight(self) -> Tensor:
        """The matrix ``W = P L U``."""
        lower, upper = self.factors()
        return (lower @ upper).index_select(0, self.order)


class LULinear(LUTransform):
    """A learnable invertible linear map ``y = W x + b`` with ``W = P L U`` (Glow's LU-decomposed 1x1 convolution).

    The LU core is :class:`LUTransform`: ``log|det W| = Σ log_diag`` for every input. Directions: ``forward`` is one
    matrix product (``W`` is assembled from its factors on each call, an ``O(D³)`` product independent of the batch,
    cheaper than the ``O(B D²)`` map itself for batches above ``D``); ``inverse`` is exact, with two triangular
    solves (``torch.linalg.solve_triangular``), never an explicit inverse. Nothing is cached, so the layer is safe to
    train and to use in both directions.

    Args:
        features: number of features.
        init: ``"identity"`` (default: ``W = I``, ``b = 0``, the exact identity) or ``"orthogonal"`` (Glow: ``W`` a
            random rotation).

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
        super().__init__(features, init)
        self.features = features
        self.bias = nn.Parameter(torch.zeros(features))

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


__all__ = ["LU_INITS", "LULinear", "LUTransform", "Permutation", "RandomPermutation", "ReversePermutation"]


#: A column with at most this many distinct values counts as discrete for :meth:`WhitenTransform.fit`.
DISCRETE_VALUES = 10


class WhitenTransform(Transform):
    """The fixed affine map ``x ↦ L⁻¹(x_π − μ)`` (forward) with ``L`` lower triangular, ``ladj = −Σ log L_ii``.

    ``x_π`` is ``x`` with its columns in the order ``π`` (the identity by default). With ``μ`` the mean and
    ``L Lᵀ = Σ`` the Cholesky factor of the covariance of a table's training rows (:meth:`fit`), the output has zero
    mean and identity covariance on those rows: a flow on a standard-normal base behind it starts as the
    full-covariance Gaussian fitted by maximum likelihood, and its layers only need to learn what the Gaussian misses.
    Cholesky whitening keeps the first column of ``x_π`` as it is (only shifted and scaled) and replaces each later
    one by its residual on the columns before it; :meth:`fit` puts the columns of at most ``DISCRETE_VALUES`` distinct
    values first, so that a discrete column (a 0/1 flag) keeps its atoms instead of being smeared over the others.
    ``μ``, ``L`` and ``π`` are buffers (saved in ``state_dict``; ``μ`` and ``L`` in float64, cast to the input's dtype
    in each call).
    The inverse is one matrix product, the forward one triangular solve; analytic both ways.

    Args:
        mean: ``μ``, one per feature (in the order ``π``).
        cholesky: ``L``, ``(D, D)`` lower triangular with a positive diagonal (in the order ``π``).
        order: ``π``, a permutation of ``range(D)`` (default the identity).

    Example:
        >>> import torch
        >>> from tractable.transforms.linear import WhitenTransform
        >>> x = torch.randn(500, 3, dtype=torch.float64) @ torch.tensor([[2.0, 0, 0], [1, 1, 0], [0, 3, 1]]).double()
        >>> z, ladj = WhitenTransform.fit(x)(x)
        >>> bool(torch.allclose(torch.cov(z.T, correction=0), torch.eye(3, dtype=torch.float64), atol=1e-8))
        True
    """

    def __init__(self, mean: Sequence[float] | Tensor, cholesky: Sequence[Sequence[float]] | Tensor,
                 order: Sequence[int] | Tensor | None = None):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float64).clone()
        chol = torch.as_tensor(cholesky, dtype=torch.float64).clone()
        d = mean_t.numel()
        if mean_t.dim() != 1 or chol.shape != (d, d):
            raise ValueError(f"expected a mean of shape (D,) and a Cholesky factor of shape (D, D), got "
                             f"{tuple(mean_t.shape)} and {tuple(chol.shape)}")
        if not bool((torch.diagonal(chol) > 0).all()) or not bool(torch.equal(chol, chol.tril())):
            raise ValueError("expected a lower-triangular Cholesky factor with a positive diagonal")
        perm = torch.arange(d) if order is None else torch.as_tensor(order, dtype=torch.long).clone()
        if sorted(perm.tolist()) != list(range(d)):
            raise ValueError(f"expected the order to be a permutation of range({d}), got {perm.tolist()}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("cholesky", chol)
        self.register_buffer("order", perm)
        self.register_buffer("inverse_order", torch.argsort(perm))
        self.features = d

    @classmethod
    def fit(cls, train: Tensor) -> WhitenTransform:
        """The whitening of ``train`` ``(rows, D)``: its discrete columns (at most ``DISCRETE_VALUES`` distinct values)
        first, the others after them, each group in the table's order; their mean and the Cholesky factor of their
        (population) covariance, in float64.

        Raises:
            ValueError: for fewer rows than two, or a singular covariance (collinear or constant columns, or no more
                rows than columns), saying so.
        """
        if train.dim() != 2 or train.shape[0] < 2:
            raise ValueError(f"expected a training array of shape (rows >= 2, D), got {tuple(train.shape)}")
        x = train.detach().double()
        few = [len(torch.unique(x[:, j])) <= DISCRETE_VALUES for j in range(x.shape[1])]
        order = sorted(range(x.shape[1]), key=lambda j: not few[j])  # stable: discrete columns first, else as given
        x = x[:, order]
        cov = torch.atleast_2d(torch.cov(x.T, correction=0))
        chol, info = torch.linalg.cholesky_ex(cov)
        # a pivot that rounding kept positive is still singular: what a column adds beyond the ones before it must be
        # more than a negligible part of its variance
        if int(info) != 0 or bool((torch.diagonal(chol) ** 2 <= 1e-10 * torch.diagonal(cov)).any()):
            raise ValueError(f"the covariance of the {x.shape[0]} training rows × {x.shape[1]} columns is singular "
                             "(collinear or constant columns, or too few rows); whitening needs it invertible")
        return cls(x.mean(0), chol, order)

    def _ladj(self, x: Tensor) -> Tensor:
        return (-torch.log(torch.diagonal(self.cholesky)).sum()).to(x).expand(x.shape[:-1])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        centred = (x[..., self.order] - self.mean.to(x)).unsqueeze(-1)
        z = torch.linalg.solve_triangular(self.cholesky.to(x), centred, upper=False).squeeze(-1)
        return z, self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(z, self.features)
        x = z @ self.cholesky.to(z).T + self.mean.to(z)
        return x[..., self.inverse_order], -self._ladj(z)
