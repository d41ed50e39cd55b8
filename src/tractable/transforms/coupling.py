"""Coupling layers (NICE, RealNVP, and the skeleton of NSF's coupling splines).

A coupling layer splits the features with a binary mask: the *identity* part passes unchanged and, through a
conditioner network, gives the parameters of elementwise monotone maps applied to the *transformed* part. The
Jacobian is triangular, so ``ladj`` is the sum of the elementwise log-derivatives, and both directions cost one
conditioner evaluation.

References:
    NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014), arXiv:1410.8516.
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios, 2019), arXiv:1906.04032.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..nn.mlp import MLP
from .base import Transform, check_features
from .univariate import AdditiveMap, AffineMap, ElementwiseMap


def coupling_mask(features: int, kind: str = "half", parity: int = 0) -> Tensor:
    """A boolean mask (``True`` = passes unchanged) of ``kind`` ``"half"`` or ``"alternate"``.

    ``"half"``: the first ``features // 2`` features pass (``parity=0``) or the others do (``parity=1``).
    ``"alternate"``: even-indexed features pass (``parity=0``) or odd-indexed ones (``parity=1``).
    """
    if features < 2:
        raise ValueError(f"a coupling layer needs at least 2 features, got features={features}")
    if parity not in (0, 1):
        raise ValueError(f"expected parity 0 or 1, got {parity}")
    i = torch.arange(features)
    if kind == "half":
        mask = i < features // 2
    elif kind == "alternate":
        mask = i % 2 == 0
    else:
        raise ValueError(f"unknown mask kind {kind!r}; expected 'half' or 'alternate'")
    return mask ^ bool(parity)


def _contiguous(index: Tensor) -> bool:
    return bool((index == torch.arange(int(index[0]), int(index[0]) + index.numel())).all())


class Coupling(Transform):
    """A coupling layer ``y_B = g(x_B; θ(x_A, c))``, ``y_A = x_A``, with ``A = mask``, ``B = ~mask``.

    The conditioner is an :class:`~tractable.nn.mlp.MLP` from the ``A`` features (and the context) to
    ``|B| · map.params`` numbers; its last layer has zero weights and the bias ``map.identity()`` tiled, so the layer
    starts as the exact identity. Both directions are analytic when ``map`` is (affine, additive; splines are exact
    too): the inverse evaluates the same conditioner on ``y_A = x_A``.

    Features are gathered with precomputed index buffers; a mask that splits the features into two contiguous blocks
    (the default of :class:`AffineCoupling`) takes a faster path: one ``split`` and one ``cat`` (measured 1.4-2.7x
    faster, forward and backward, than ``index_select`` and ``index_copy``, and up to 9x faster than boolean-mask
    indexing).

    Args:
        mask: a boolean tensor of shape ``(features,)``; ``True`` marks the features that pass unchanged and condition
            the others. Needs at least one ``True`` and one ``False``. Stored as a buffer.
        elementwise_map: the family of monotone maps (``AffineMap``, ``AdditiveMap``, a spline map, ...).
        hidden: width (or widths) of the conditioner's hidden layers.
        layers: number of hidden layers of the conditioner.
        context_features: width of the context the conditioner reads (0: unconditional).
        activation: the conditioner's activation.

    Example:
        >>> import torch
        >>> from tractable.transforms.coupling import Coupling
        >>> from tractable.transforms.univariate import AffineMap
        >>> t = Coupling(torch.tensor([True, False, True, False]), AffineMap(), hidden=32)
        >>> x = torch.randn(5, 4)
        >>> y, ladj = t(x)
        >>> bool(torch.equal(y, x)), float(ladj.abs().max())  # identity at initialisation
        (True, 0.0)
    """

    def __init__(
        self,
        mask: Tensor,
        elementwise_map: ElementwiseMap,
        *,
        hidden: int | Sequence[int] = 64,
        layers: int = 2,
        context_features: int = 0,
        activation: str = "relu",
    ):
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() != 1:
            raise ValueError(f"expected a 1-d boolean mask, got dtype {mask.dtype} and shape {tuple(mask.shape)}")
        n_id = int(mask.sum())
        if n_id == 0 or n_id == mask.numel():
            raise ValueError(
                f"expected a mask with at least one True (passing) and one False (transformed) entry, got {mask.tolist()}"
            )
        if not isinstance(elementwise_map, ElementwiseMap):
            raise TypeError(f"expected an ElementwiseMap, got {type(elementwise_map).__name__}")
        self.features = int(mask.numel())
        self.context_features = context_features
        self.map = elementwise_map
        self.n_transformed = self.features - n_id
        self.register_buffer("mask", mask.clone())
        self._index(self.mask)
        self.conditioner = MLP(
            n_id,
            self.n_transformed * elementwise_map.params,
            hidden=hidden,
            layers=layers,
            context_features=context_features,
            activation=activation,
            zero_last=True,
        )
        with torch.no_grad():
            self.conditioner.last.bias.copy_(elementwise_map.identity().repeat(self.n_transformed))

    def _index(self, mask: Tensor) -> None:
        """Precompute the gather indices (and whether the fast block path applies) from ``mask``."""
        identity_index, transform_index = torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()
        self.register_buffer("identity_index", identity_index, persistent=False)
        self.register_buffer("transform_index", transform_index, persistent=False)
        # Fast path: the two parts are contiguous blocks, the identity block first when mask[0].
        self._blocks = _contiguous(identity_index.cpu()) and _contiguous(transform_index.cpu())
        self._identity_first = bool(mask[0])

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        mask = state_dict.get(prefix + "mask")
        if mask is not None and mask.shape == self.mask.shape and int(mask.sum()) != self.features - self.n_transformed:
            raise ValueError(
                f"expected a mask with {self.features - self.n_transformed} passing features, got {mask.tolist()}"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._index(self.mask)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        if self._blocks:  # split's backward is one concatenation (slices would each zero-fill a full-size gradient)
            n_id = self.features - self.n_transformed
            if self._identity_first:
                x_id, x_tr = x.split((n_id, self.n_transformed), -1)
            else:
                x_tr, x_id = x.split((self.n_transformed, n_id), -1)
            return x_id, x_tr
        return x.index_select(-1, self.identity_index), x.index_select(-1, self.transform_index)

    def _merge(self, x: Tensor, x_id: Tensor, out: Tensor) -> Tensor:
        if self._blocks:
            return torch.cat((x_id, out) if self._identity_first else (out, x_id), -1)
        return x.index_copy(-1, self.transform_index, out)

    def _theta(self, x_id: Tensor, context: Tensor | None) -> Tensor:
        theta = self.conditioner(x_id, context)
        return theta.view(*theta.shape[:-1], self.n_transformed, self.map.params)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_id, x_tr = self._split(x)
        y_tr, log_d = self.map.forward(x_tr, self._theta(x_id, context))
        return self._merge(x, x_id, y_tr), log_d.sum(-1)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y_id, y_tr = self._split(y)
        x_tr, log_d = self.map.inverse(y_tr, self._theta(y_id, context))
        return self._merge(y, y_id, x_tr), log_d.sum(-1)

    def extra_repr(self) -> str:
        return f"features={self.features}, transformed={self.n_transformed}, map={type(self.map).__name__}"


class AffineCoupling(Coupling):
    """The RealNVP affine coupling: ``y_B = x_B · exp(s) + t`` with ``(t, s) = NN(x_A, c)``, ``|s| <= bound``.

    Args:
        features: number of features (at least 2).
        mask: a boolean mask, ``"half"`` (default: contiguous halves) or ``"alternate"`` (even/odd features).
        parity: 0 or 1; flips a named mask, so consecutive layers with parities 0, 1 transform every feature.
        bound: the largest ``|log scale|`` (soft, via ``tanh``); see :class:`~tractable.transforms.univariate.AffineMap`.
        hidden, layers, context_features, activation: the conditioner, as in :class:`Coupling`.

    Example:
        >>> import torch
        >>> from tractable.transforms.coupling import AffineCoupling
        >>> t = AffineCoupling(4, parity=1, context_features=2)
        >>> y, ladj = t(torch.randn(8, 4), torch.randn(8, 2))
        >>> tuple(y.shape), tuple(ladj.shape)
        ((8, 4), (8,))

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    """

    def __init__(
        self,
        features: int,
        *,
        mask: Tensor | str = "half",
        parity: int = 0,
        bound: float = 3.0,
        hidden: int | Sequence[int] = 64,
        layers: int = 2,
        context_features: int = 0,
        activation: str = "relu",
    ):
        super().__init__(
            _resolve_mask(features, mask, parity),
            AffineMap(bound),
            hidden=hidden,
            layers=layers,
            context_features=context_features,
            activation=activation,
        )


class AdditiveCoupling(Coupling):
    """The NICE additive coupling ``y_B = x_B + t(x_A, c)``: volume preserving (``ladj = 0``).

    Args:
        features: number of features (at least 2).
        mask: a boolean mask, ``"half"`` (default) or ``"alternate"``.
        parity: 0 or 1; flips a named mask.
        hidden, layers, context_features, activation: the conditioner, as in :class:`Coupling`.

    Example:
        >>> import torch
        >>> from tractable.transforms.coupling import AdditiveCoupling
        >>> t = AdditiveCoupling(3, mask="alternate")
        >>> float(t(torch.randn(8, 3))[1].abs().max())
        0.0

    References:
        NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014), arXiv:1410.8516.
    """

    def __init__(
        self,
        features: int,
        *,
        mask: Tensor | str = "half",
        parity: int = 0,
        hidden: int | Sequence[int] = 64,
        layers: int = 2,
        context_features: int = 0,
        activation: str = "relu",
    ):
        super().__init__(
            _resolve_mask(features, mask, parity),
            AdditiveMap(),
            hidden=hidden,
            layers=layers,
            context_features=context_features,
            activation=activation,
        )


def _resolve_mask(features: int, mask: Tensor | str | None, parity: int) -> Tensor:
    if mask is None or isinstance(mask, str):
        return coupling_mask(features, mask or "half", parity)
    mask = torch.as_tensor(mask)
    if mask.shape != (features,):
        raise ValueError(f"expected a mask of shape ({features},), got shape {tuple(mask.shape)}")
    return mask


__all__ = ["AdditiveCoupling", "AffineCoupling", "Coupling", "coupling_mask"]
