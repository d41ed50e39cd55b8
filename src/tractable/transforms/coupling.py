"""The coupling layer: ``Coupling(split, map, conditioner)``, one design for vectors and images.

A coupling layer splits its input: the *passing* part goes through unchanged and, through a conditioner network,
gives the parameters of an elementwise monotone map applied to the *transformed* part. The Jacobian is triangular,
so ``ladj`` is the sum of the elementwise log-derivatives, and both directions cost one conditioner evaluation. The
three parts are independent: the split (:mod:`~tractable.transforms.splits`: a vector mask, or a checkerboard,
channel or column split of images), the map (:mod:`~tractable.transforms.maps`: affine, additive, RQ spline,
logistic mixture) and the conditioner (any ``nn.Module`` ``(x_pass, context) -> parameters``: an
:class:`~tractable.nn.mlp.MLP`, a :class:`~tractable.nn.convnets.GatedResNet`, or a user's network).

References:
    NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014), arXiv:1410.8516.
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios, 2019), arXiv:1906.04032.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP
from ..utils import renamed
from .base import Transform
from .maps import AdditiveMap, AffineMap, ElementwiseMap
from .splits import Split, VectorSplit, coupling_mask

#: Keys of checkpoints written before the split and the map were parts of the layer, and where they live now.
_MOVED_KEYS = {"mask": "split.mask", "log_bound": "map.log_bound"}


class Coupling(Transform):
    """A coupling layer ``y_B = g(x_B; θ(x_A, c))``, ``y_A = x_A``, with ``A`` and ``B`` given by ``split``.

    The conditioner maps ``(x_pass, context)`` to ``n_transformed · map.params`` numbers per position (the last axis
    for vectors, the channels for images), which the split views as the map's parameters. The layer is the identity
    while the conditioner outputs ``map.identity()``: :func:`mlp_conditioner` (and the image conditioners of
    :mod:`~tractable.transforms.image_coupling`) zero their last layer and set its bias so, and so start every layer
    as the exact identity. Both directions are analytic when ``map`` is (affine, additive, splines); the inverse
    evaluates the same conditioner on ``y_A = x_A``.

    With ``passing_map=True`` (vector splits) the passing features are not left unchanged: each gets the map too,
    with parameters of its own that depend on nothing (``y_A = g(x_A; θ_A)``, ``θ_A`` learned, starting at
    ``map.identity()``), while the conditioner still reads the untransformed ``x_A``. The Jacobian stays triangular.
    This is the unconditional transform of the identity features of the neural-spline-flow paper (nflows'
    ``apply_unconditional_transform``): every feature is transformed in every layer, at the cost of ``params``
    numbers per passing feature. The passing parameters reach the map as an expanded view (stride 0 over the
    batch), so a map may treat them once rather than per sample (the spline computes their knots once).

    Args:
        split: a :class:`~tractable.transforms.splits.Split`, or a boolean mask tensor ``(D,)`` over vector features
            (``True`` = passes unchanged), which is wrapped in a :class:`~tractable.transforms.splits.VectorSplit`.
        map: the family of monotone maps (:class:`~tractable.transforms.maps.AffineMap`, ...).
        conditioner: an ``nn.Module`` called as ``conditioner(x_pass, context)``.
        passing_map: also map the passing features, with learned unconditional parameters (vector splits only).

    Example:
        >>> import torch
        >>> from tractable.transforms.coupling import Coupling, mlp_conditioner
        >>> from tractable.transforms.maps import AffineMap
        >>> from tractable.transforms.splits import VectorSplit
        >>> split, affine = VectorSplit(torch.tensor([True, False, True, False])), AffineMap()
        >>> t = Coupling(split, affine, mlp_conditioner(split, affine, hidden=32))
        >>> x = torch.randn(5, 4)
        >>> y, ladj = t(x)
        >>> bool(torch.equal(y, x)), ladj.abs().max().item()  # identity at initialisation
        (True, 0.0)
    """

    def __init__(self, split: Split | Tensor, map: ElementwiseMap, conditioner: nn.Module, *,
                 passing_map: bool = False):
        super().__init__()
        split = split if isinstance(split, Split) else VectorSplit(split)
        if not isinstance(map, ElementwiseMap):
            raise TypeError(f"expected an ElementwiseMap, got {type(map).__name__}")
        if not isinstance(conditioner, nn.Module):
            raise TypeError(f"expected an nn.Module as conditioner, got {type(conditioner).__name__}")
        if passing_map and not isinstance(split, VectorSplit):
            raise ValueError(f"passing_map=True needs a VectorSplit, got {type(split).__name__}")
        self.split, self.map, self.conditioner = split, map, conditioner
        # the passing features' own parameters, one row per feature (None: they pass unchanged)
        self.passing_theta = nn.Parameter(map.identity().repeat(split.n_pass, 1)) if passing_map else None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        for old, new in _MOVED_KEYS.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _theta(self, x_pass: Tensor, context: Tensor | None) -> Tensor:
        return self.split.params_view(self.conditioner(x_pass, self.split.context(context)), self.map.params)

    def _passing_theta(self, x_pass: Tensor) -> Tensor:
        return self.passing_theta.expand(*x_pass.shape, self.map.params)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_pass, x_t = self.split.split(x)
        y_t, log_d = self.map.forward(x_t, self._theta(x_pass, context))
        if self.passing_theta is not None:
            y_pass, log_d_pass = self.map.forward(x_pass, self._passing_theta(x_pass))
            return self.split.join(y_pass, y_t), log_d.sum(-1) + log_d_pass.sum(-1)
        return self.split.merge(x, x_pass, y_t), self.split.sum_ladj(log_d, x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y_pass, y_t = self.split.split(y)
        if self.passing_theta is not None:  # the conditioner reads the passing features as they came in
            x_pass, log_d_pass = self.map.inverse(y_pass, self._passing_theta(y_pass))
            x_t, log_d = self.map.inverse(y_t, self._theta(x_pass, context))
            return self.split.join(x_pass, x_t), log_d.sum(-1) + log_d_pass.sum(-1)
        x_t, log_d = self.map.inverse(y_t, self._theta(y_pass, context))
        return self.split.merge(y, y_pass, x_t), self.split.sum_ladj(log_d, y)


def mlp_conditioner(
    split: VectorSplit,
    map: ElementwiseMap,
    *,
    hidden: int | Sequence[int] = 64,
    blocks: int = 2,
    context_features: int = 0,
    activation: str = "relu",
) -> MLP:
    """An :class:`~tractable.nn.mlp.MLP` conditioner for a vector coupling, starting at ``map.identity()``.

    Its last layer has zero weights and the bias ``map.identity()`` tiled over the transformed features.

    Args:
        split: the coupling's split (sets the input and output widths).
        map: the coupling's map (sets the parameters per feature and the identity).
        hidden: width (or widths) of the hidden layers.
        blocks: number of hidden layers.
        context_features: width of the context the conditioner reads (0: unconditional).
        activation: the activation (see :data:`~tractable.nn.activations.ACTIVATIONS`).

    Example:
        >>> import torch
        >>> from tractable import Coupling, RQSplineMap, VectorSplit, mlp_conditioner
        >>> split, spline = VectorSplit(torch.tensor([True, True, False, False])), RQSplineMap(bins=8)
        >>> layer = Coupling(split, spline, mlp_conditioner(split, spline, hidden=32))
        >>> x = torch.randn(5, 4)
        >>> bool(torch.allclose(layer(x)[0], x, atol=1e-5))  # the identity at initialisation
        True
    """
    net = MLP(split.n_pass, split.n_transformed * map.params, hidden=hidden, blocks=blocks,
              context_features=context_features, activation=activation, zero_last=True)
    with torch.no_grad():
        net.last.bias.copy_(map.identity().repeat(split.n_transformed))
    return net


def _vector_coupling(features: int, mask: Tensor | str, parity: int, map: ElementwiseMap,
                     net: dict[str, Any]) -> tuple[VectorSplit, ElementwiseMap, MLP]:
    if isinstance(mask, str):
        mask = coupling_mask(features, mask, parity)
    mask = torch.as_tensor(mask)
    if mask.shape != (features,):
        raise ValueError(f"expected a mask of shape ({features},), got shape {tuple(mask.shape)}")
    split = VectorSplit(mask)
    return split, map, mlp_conditioner(split, map, **net)


class AffineCoupling(Coupling):
    """The RealNVP affine coupling on vectors: ``y_B = x_B · exp(s) + t``, ``(t, s) = MLP(x_A, c)``, ``|s| <= bound``.

    Args:
        features: number of features (at least 2).
        mask: a boolean mask, ``"half"`` (default: contiguous halves) or ``"alternate"`` (even/odd features).
        parity: 0 or 1; flips a named mask, so consecutive layers with parities 0, 1 transform every feature.
        bound: the largest ``|log scale|`` (soft, via ``tanh``); see :class:`~tractable.transforms.maps.AffineMap`.
        hidden, blocks, context_features, activation: the conditioner, as in :func:`mlp_conditioner`.

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

    @renamed(layers="blocks")
    def __init__(
        self,
        features: int,
        *,
        mask: Tensor | str = "half",
        parity: int = 0,
        bound: float = 3.0,
        hidden: int | Sequence[int] = 64,
        blocks: int = 2,
        context_features: int = 0,
        activation: str = "relu",
    ):
        net = {"hidden": hidden, "blocks": blocks, "context_features": context_features, "activation": activation}
        super().__init__(*_vector_coupling(features, mask, parity, AffineMap(bound), net))


class AdditiveCoupling(Coupling):
    """The NICE additive coupling on vectors ``y_B = x_B + t(x_A, c)``: volume preserving (``ladj = 0``).

    Args:
        features: number of features (at least 2).
        mask: a boolean mask, ``"half"`` (default) or ``"alternate"``.
        parity: 0 or 1; flips a named mask.
        hidden, blocks, context_features, activation: the conditioner, as in :func:`mlp_conditioner`.

    Example:
        >>> import torch
        >>> from tractable.transforms.coupling import AdditiveCoupling
        >>> t = AdditiveCoupling(3, mask="alternate")
        >>> float(t(torch.randn(8, 3))[1].abs().max())
        0.0

    References:
        NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014), arXiv:1410.8516.
    """

    @renamed(layers="blocks")
    def __init__(
        self,
        features: int,
        *,
        mask: Tensor | str = "half",
        parity: int = 0,
        hidden: int | Sequence[int] = 64,
        blocks: int = 2,
        context_features: int = 0,
        activation: str = "relu",
    ):
        net = {"hidden": hidden, "blocks": blocks, "context_features": context_features, "activation": activation}
        super().__init__(*_vector_coupling(features, mask, parity, AdditiveMap(), net))


__all__ = ["AdditiveCoupling", "AffineCoupling", "Coupling", "mlp_conditioner"]
