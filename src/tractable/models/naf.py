"""Neural autoregressive flows: `NAF` (deep sigmoidal maps), `UNAF` (integrated positive networks) and `BNAF`.

NAF and UNAF are masked autoregressive layers (:class:`~tractable.transforms.autoregressive.MaskedAutoregressive`, a
MADE conditioner) with a neural elementwise map, the order reversed between layers; BNAF is a stack of block neural
autoregressive transforms (:class:`~tractable.transforms.bnaf.BlockNeuralAutoregressive`) with reversals between them.
Densities take one pass per layer; sampling is a numerical inverse (bisection with Newton steps).

References:
    Neural Autoregressive Flows (Huang, Krueger, Lacoste & Courville, 2018), arXiv:1804.00779.
    Unconstrained Monotonic Neural Networks (Wehenkel & Louppe, 2019), arXiv:1908.05164.
    Block Neural Autoregressive Flow (De Cao, Titov & Aziz, 2019), arXiv:1904.04676.
"""

from __future__ import annotations

from ..distributions import make_base
from ..flow import Flow
from ..transforms.autoregressive import MaskedAutoregressive
from ..transforms.base import Compose, Transform
from ..transforms.bnaf import BlockNeuralAutoregressive
from ..transforms.linear import ReversePermutation
from ..transforms.maps import ElementwiseMap
from ..transforms.neural import DeepSigmoidalMap, IntegralMap
from .permutations import layer_orders


def _autoregressive(features: int, maps: list[ElementwiseMap], *, hidden: int, blocks: int, context_features: int,
                    permutation: str, activation: str) -> Compose:
    if features < 1 or not maps:
        raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={len(maps)}")
    chain: list[Transform] = [
        MaskedAutoregressive(features, m, hidden=hidden, blocks=blocks, context_features=context_features,
                             order=order, activation=activation)
        for m, order in zip(maps, layer_orders(features, len(maps), permutation))
    ]
    return Compose(*chain)


class NAF(Flow):
    """Neural autoregressive flow with deep sigmoidal maps (NAF-DSF): ``layers`` masked autoregressive layers whose
    elementwise map is a :class:`~tractable.transforms.neural.DeepSigmoidalMap` with MADE-given parameters.

    Directions: ``log_prob`` is one MADE pass per layer, analytic; sampling takes ``features`` MADE passes per layer,
    each a bracketed Newton–bisection solve (tolerance ``1e-12`` relative in float64, ``1e-6`` in float32). Every
    layer starts as the identity.

    Args:
        features: dimension of the data.
        layers: number of autoregressive layers.
        hidden: width of each MADE hidden layer.
        blocks: number of hidden layers of each MADE.
        components: sigmoidal components per unit of the map.
        depth: stacked sigmoidal units per map.
        context_features: size of the context (0 for an unconditional flow).
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``).
        permutation: ``alternate`` (reverse the order every other layer) or ``random``.
        activation: the MADE activation.

    Example:
        >>> import torch
        >>> from tractable.models.naf import NAF
        >>> flow = NAF(2, layers=2, hidden=16)
        >>> tuple(flow.log_prob(torch.randn(5, 2)).shape)
        (5,)

    References:
        Neural Autoregressive Flows (Huang et al., 2018), arXiv:1804.00779.
    """

    def __init__(self, features: int, *, layers: int = 5, hidden: int = 64, blocks: int = 2, components: int = 8,
                 depth: int = 1, context_features: int = 0, base: str = "normal", permutation: str = "alternate",
                 activation: str = "relu"):
        maps: list[ElementwiseMap] = [DeepSigmoidalMap(components, depth=depth) for _ in range(layers)]
        chain = _autoregressive(features, maps, hidden=hidden, blocks=blocks, context_features=context_features,
                                permutation=permutation, activation=activation)
        super().__init__(chain, make_base(base, features))
        self.features, self.layers, self.context_features = features, layers, context_features


class UNAF(Flow):
    """Unconstrained neural autoregressive flow (UMNN-MAF): ``layers`` masked autoregressive layers whose map
    integrates a positive network by Clenshaw–Curtis quadrature (:class:`~tractable.transforms.neural.IntegralMap`).

    The MADE gives every feature a ``signal`` vector and an offset; the integrand network (one per layer, shared by the
    features, or one per feature with ``integrand_per_feature``) reads the point and the signal. Directions:
    ``log_prob`` is one MADE pass and ``nodes + 1`` integrand evaluations per feature and layer, exact up to the
    quadrature error; sampling is a bracketed Newton–bisection solve per feature and layer. Every layer starts as the
    identity.

    Args:
        features: dimension of the data.
        layers: number of autoregressive layers.
        hidden: width of each MADE hidden layer.
        blocks: number of hidden layers of each MADE.
        signal: size of the signal each feature's integrand reads.
        integrand_hidden: width of the integrand networks' hidden layers (24 keeps the default
            ``tractable fit checkerboard --model unaf`` run under 5 minutes on 2 cores).
        integrand_blocks: hidden layers of the integrand networks.
        nodes: Clenshaw–Curtis order in training (``nodes + 1`` integrand evaluations; 16 halves the time of 32).
        eval_nodes: Clenshaw–Curtis order in eval mode (densities, sampling): 32 keeps trained 2-D models
            normalised to 1e-3 where 16 leaves up to 1.5e-2 of excess mass on rings (the quadrature error).
        integrand_per_feature: an integrand network per feature in each layer (as Wehenkel & Louppe's UMNN-MAF and
            zuko's UNAF) instead of one shared by the features.
        integrand_activation: the integrand networks' activation (a smooth one: the quadrature converges fastest).
        integrand_slope: the integrand networks' first-layer weights on the point start uniform in
            ``[−slope, slope]`` (:class:`~tractable.transforms.neural.IntegralMap`): steep enough for an integrand
            with several bumps, the conditionals of multimodal data, from the start.
        integrand_spread: their units start bending at points uniform in ``[−spread, spread]``.
        context_features: size of the context (0 for an unconditional flow).
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``).
        permutation: ``alternate`` (reverse the order every other layer) or ``random``.
        activation: the MADE activation.

    Example:
        >>> import torch
        >>> from tractable.models.naf import UNAF
        >>> flow = UNAF(2, layers=2, hidden=16, integrand_hidden=16)
        >>> tuple(flow.log_prob(torch.randn(5, 2)).shape)
        (5,)

    References:
        Unconstrained Monotonic Neural Networks (Wehenkel & Louppe, 2019), arXiv:1908.05164.
    """

    def __init__(self, features: int, *, layers: int = 5, hidden: int = 64, blocks: int = 2, signal: int = 8,
                 integrand_hidden: int = 24, integrand_blocks: int = 2, nodes: int = 16, eval_nodes: int = 32,
                 integrand_per_feature: bool = False, integrand_activation: str = "silu", integrand_slope: float = 4.0,
                 integrand_spread: float = 2.5, context_features: int = 0,
                 base: str = "normal", permutation: str = "alternate", activation: str = "relu"):
        maps: list[ElementwiseMap] = [
            IntegralMap(signal, hidden=integrand_hidden, blocks=integrand_blocks, nodes=nodes,
                        activation=integrand_activation, features=features if integrand_per_feature else None,
                        slope=integrand_slope, spread=integrand_spread, eval_nodes=eval_nodes)
            for _ in range(layers)
        ]
        chain = _autoregressive(features, maps, hidden=hidden, blocks=blocks, context_features=context_features,
                                permutation=permutation, activation=activation)
        super().__init__(chain, make_base(base, features))
        self.features, self.layers, self.context_features = features, layers, context_features


class BNAF(Flow):
    """Block neural autoregressive flow: ``layers`` BNAF transforms
    (:class:`~tractable.transforms.bnaf.BlockNeuralAutoregressive`), the features reversed between them.

    Directions: ``log_prob`` is one pass per layer with the exact log-determinant; sampling is a Newton–bisection
    solve per feature and layer (tolerance ``1e-12`` relative in float64, ``1e-6`` in float32). The layers do not
    start as the identity (Xavier-initialised, as in the paper).

    Args:
        features: dimension of the data.
        layers: number of BNAF transforms.
        hidden: hidden units per feature of each transform.
        blocks: hidden layers of each transform.
        residual: ``gated`` (``σ(α) f(x) + (1 − σ(α)) x``) or ``normal`` (``f(x) + x``).
        bias_range: the first layer's biases start uniform in ``[−bias_range, bias_range]`` (the data's range once
            standardised, so the tanh units bend across the data from the start).
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``).

    Example:
        >>> import torch
        >>> from tractable.models.naf import BNAF
        >>> flow = BNAF(2, layers=2, hidden=8)
        >>> tuple(flow.log_prob(torch.randn(5, 2)).shape)
        (5,)

    References:
        Block Neural Autoregressive Flow (De Cao, Titov & Aziz, 2019), arXiv:1904.04676.
    """

    def __init__(self, features: int, *, layers: int = 5, hidden: int = 16, blocks: int = 2, residual: str = "gated",
                 bias_range: float = 2.0, base: str = "normal"):
        if features < 1 or layers < 1:
            raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={layers}")
        chain: list[Transform] = []
        for k in range(layers):
            if k > 0 and features > 1:
                chain.append(ReversePermutation(features))
            chain.append(BlockNeuralAutoregressive(features, hidden=hidden, blocks=blocks, residual=residual,
                                                   bias_range=bias_range))
        super().__init__(Compose(*chain), make_base(base, features))
        self.features, self.layers = features, layers


__all__ = ["BNAF", "NAF", "UNAF"]
