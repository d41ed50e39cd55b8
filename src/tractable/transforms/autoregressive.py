"""Masked autoregressive layers (MAF, IAF, NSF-AR): ``z_i = g(x_i; θ_i(x_<i))`` with a MADE conditioner.

The density (normalizing) direction evaluates all ``θ_i`` in one pass of the masked network, so ``forward`` costs one
MLP pass whatever the dimension. The generative direction is sequential: ``x_i`` needs ``x_<i`` first. ``inverse``
starts from ``x = 0`` and runs ``D`` passes, one per position ``t`` of the order: pass ``t`` computes the parameters of
the feature at position ``t`` only (:class:`~tractable.nn.made.SequentialPasses`: the hidden units of degree below
``t``, then just that feature's rows of the output layer), which read only the features placed before it, exact by
then; it inverts that feature and adds its log-derivative. A MADE's dependency graph has depth ``D`` in
general, so fewer passes would not do.

For IAF, whose fast direction is sampling, wrap the layer: ``Inverse(MaskedAffineAutoregressive(...))`` samples in
one pass and evaluates densities of arbitrary points in ``D`` passes (:class:`tractable.models.maf.IAF` does this).

References:
    Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017), arXiv:1705.07057.
    Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016), arXiv:1606.04934.
    MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015), arXiv:1502.03509.
    Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..nn.made import MADE
from ..utils import renamed
from .base import Transform, check_features
from .maps import AffineMap, ElementwiseMap
from .splines import RQSplineMap


class MaskedAutoregressive(Transform):
    """A masked autoregressive layer: ``z_i = g(x_i; θ_i(x_<i, c))`` with ``θ`` from a :class:`~tractable.nn.made.MADE`.

    Directions: ``forward`` (normalizing, ``x → z``, the density direction) is one pass of the MADE and is fast.
    ``inverse`` (generative, ``z → x``, sampling) is sequential: ``D`` passes of the MADE's hidden layers, each
    completing the next feature in the autoregressive order (only its output rows are computed). Both are analytic
    (exact to rounding) for analytic map families; a numerically inverted map (the logistic mixture) runs its solver in
    the inverse. The layer starts as the identity: the MADE's last layer is zero and its bias is ``map.identity()``.

    Args:
        features: dimension ``D`` of the input.
        map: the elementwise map family ``g`` (:class:`~tractable.transforms.maps.AffineMap`,
            :class:`~tractable.transforms.splines.RQSplineMap`, ...).
        hidden: width of the MADE's hidden layers.
        blocks: number of hidden layers of the MADE.
        context_features: size of the context (0 for an unconditional layer).
        order: autoregressive order as a permutation of ``0..D-1`` (``order[j]`` is the position of feature
            ``j``); default ``0..D-1``. Alternating or random orders between stacked layers replace permutation layers
            at no cost.
        activation: the MADE's activation.

    Example:
        >>> import torch
        >>> from tractable.transforms.autoregressive import MaskedAutoregressive
        >>> from tractable.transforms.maps import AffineMap
        >>> layer = MaskedAutoregressive(3, AffineMap(), hidden=16)
        >>> x = torch.randn(8, 3)
        >>> z, ladj = layer(x)  # one pass
        >>> x2, _ = layer.inverse(z)  # three passes
        >>> bool(torch.allclose(x, x2, atol=1e-6)), tuple(ladj.shape)
        (True, (8,))

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017), arXiv:1705.07057.
    """

    @renamed(layers="blocks")
    def __init__(
        self,
        features: int,
        map: ElementwiseMap,
        *,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        activation: str = "relu",
    ):
        super().__init__()
        if not isinstance(map, ElementwiseMap):
            raise TypeError(f"expected an ElementwiseMap, got {type(map).__name__}")
        if getattr(map, "log_bound", None) is not None:  # the inverse maps one feature at a time
            raise ValueError("expected a map with a fixed bound in an autoregressive layer, got a learned bound "
                             "(learned_bound applies to coupling layers)")
        self.features, self.context_features = features, context_features
        self.map = map
        self.made = MADE(
            features,
            map.params,
            hidden=hidden,
            blocks=blocks,
            context_features=context_features,
            activation=activation,
            order=order,
            zero_last=True,
        )
        self.made.set_output_bias(map.identity())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        z, log_d = self.map.forward(x, self.made(x, context))
        return z, log_d.sum(-1)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(y, self.features)
        x = torch.zeros_like(y)
        ladj = None
        index = torch.arange(self.features, device=y.device)
        # Position t of the order: the feature's parameters read only features placed before it, exact by then.
        passes = self.made.sequential()
        for i in self.made.positions:
            x_i, log_d = self.map.select(i).inverse(y[..., i], passes(x, context, i))
            x = x.index_copy(-1, index[i : i + 1], x_i.unsqueeze(-1))
            ladj = log_d if ladj is None else ladj + log_d
        return x, ladj  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"features={self.features}"


class MaskedAffineAutoregressive(MaskedAutoregressive):
    """MAF's layer: ``z_i = x_i · exp(s_i) + t_i`` with ``(t_i, s_i) = MADE(x_<i)`` and ``|s_i| < bound``.

    ``forward`` (density) is one MADE pass; ``inverse`` (sampling) takes ``D`` passes. Wrapped as
    ``Inverse(MaskedAffineAutoregressive(...))`` it is an IAF layer: sampling in one pass, densities in ``D``.

    Args:
        features: dimension of the input.
        bound: the largest ``|log scale|`` (soft bound ``bound · tanh(ŝ / bound)``).
        hidden, blocks, context_features, order, activation: the MADE, as in :class:`MaskedAutoregressive`.

    Example:
        >>> import torch
        >>> from tractable.transforms.autoregressive import MaskedAffineAutoregressive
        >>> layer = MaskedAffineAutoregressive(4, context_features=2)
        >>> z, ladj = layer(torch.randn(5, 4), torch.randn(5, 2))
        >>> tuple(z.shape), tuple(ladj.shape)
        ((5, 4), (5,))

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017), arXiv:1705.07057.
        Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016), arXiv:1606.04934.
    """

    @renamed(layers="blocks")
    def __init__(
        self,
        features: int,
        *,
        bound: float = 3.0,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        activation: str = "relu",
    ):
        super().__init__(features, AffineMap(bound), hidden=hidden, blocks=blocks, context_features=context_features,
                         order=order, activation=activation)


class MaskedSplineAutoregressive(MaskedAutoregressive):
    """NSF-AR's layer: ``z_i`` a rational-quadratic spline of ``x_i`` with knots from ``MADE(x_<i)``.

    ``forward`` (density) is one MADE pass; ``inverse`` (sampling) takes ``D`` passes, each an analytic spline
    inverse. The map is the identity outside ``[-bound, bound]``.

    Args:
        features: dimension of the input.
        bins: number of spline bins.
        bound: half-width of the spline interval.
        hidden, blocks, context_features, order, activation: the MADE, as in :class:`MaskedAutoregressive`.

    Example:
        >>> import torch
        >>> from tractable.transforms.autoregressive import MaskedSplineAutoregressive
        >>> layer = MaskedSplineAutoregressive(3, bins=8)
        >>> x = torch.randn(5, 3)
        >>> z, ladj = layer(x)
        >>> bool(torch.allclose(z, x, atol=1e-5))  # the identity at initialisation
        True

    References:
        Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032.
    """

    @renamed(layers="blocks")
    def __init__(
        self,
        features: int,
        *,
        bins: int = 8,
        bound: float = 3.0,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        activation: str = "relu",
    ):
        super().__init__(features, RQSplineMap(bins, bound), hidden=hidden, blocks=blocks,
                         context_features=context_features, order=order, activation=activation)


__all__ = ["MaskedAffineAutoregressive", "MaskedAutoregressive", "MaskedSplineAutoregressive"]
