"""`NSF`: neural spline flows, rational-quadratic spline layers in coupling (NSF-C) or autoregressive (NSF-AR) form.

References:
    Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios, 2019), arXiv:1906.04032.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..distributions import make_base
from ..flow import Flow
from ..transforms.autoregressive import MaskedSplineAutoregressive
from ..transforms.base import Compose, Transform
from ..transforms.coupling import Coupling, coupling_mask
from ..transforms.splines import RQSplineMap
from .maf import layer_orders

MASKS = ("alternate", "random")


def coupling_masks(features: int, layers: int, permutation: str) -> list[Tensor]:
    """The boolean masks (``True`` = passes unchanged) of ``layers`` stacked couplings.

    ``alternate``: the two contiguous halves take turns (no permutation layer, the fastest path). ``random``: each
    pair of layers draws a random half of the features and uses it, then its complement, which has the effect of a
    random permutation between every two layers at no cost (seed the global RNG for reproducibility).
    """
    if permutation not in MASKS:
        raise ValueError(f"unknown permutation {permutation!r} for a coupling NSF; expected one of {', '.join(MASKS)}")
    if permutation == "alternate":
        return [coupling_mask(features, "half", k % 2) for k in range(layers)]
    masks: list[Tensor] = []
    for k in range(layers):
        if k % 2 == 0:
            mask = torch.zeros(features, dtype=torch.bool)
            mask[torch.randperm(features)[: features // 2]] = True
        masks.append(mask if k % 2 == 0 else ~mask)
    return masks


class NSF(Flow):
    """Neural spline flow: ``layers`` monotone rational-quadratic spline layers on a base distribution.

    Two forms share one class:

    * coupling (default, NSF-C): half the features pass unchanged and give, through an MLP, the knots of the splines
      applied to the other half; the halves take turns. Both directions (``log_prob`` and sampling) cost one MLP pass
      per layer and are analytic. With one feature there is nothing to condition on, so ``features=1`` uses the
      autoregressive form (a spline whose knots are learned constants or depend on the context only).
    * autoregressive (``autoregressive=True``, NSF-AR): each layer is a
      :class:`~tractable.transforms.autoregressive.MaskedSplineAutoregressive`, with the order reversed between
      layers (or random with ``permutation="random"``). ``log_prob`` is one MADE pass per layer; sampling takes
      ``features`` passes per layer.

    The splines cover ``[-bound, bound]`` and are the identity outside; every layer starts as the identity.

    Args:
        features: dimension of the data.
        layers: number of spline layers.
        hidden: width of each conditioner hidden layer.
        blocks: number of hidden layers of each conditioner.
        bins: number of spline bins.
        bound: half-width of the spline interval.
        context_features: size of the context (0 for an unconditional flow).
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``).
        autoregressive: use the autoregressive form.
        permutation: coupling form: ``alternate`` (default) or ``random`` masks (see :func:`coupling_masks`);
            autoregressive form: ``alternate``/``reverse`` (alternating orders) or ``random``.
        activation: the conditioners' activation.

    Example:
        >>> import torch
        >>> from tractable.models.nsf import NSF
        >>> flow = NSF(2, layers=4, hidden=32, bins=8)
        >>> x, log_q = flow.sample_and_log_prob(16)
        >>> bool(torch.allclose(flow.log_prob(x), log_q, atol=1e-4))
        True

    References:
        Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032.
    """

    def __init__(
        self,
        features: int,
        *,
        layers: int = 5,
        hidden: int = 64,
        blocks: int = 2,
        bins: int = 8,
        bound: float = 3.0,
        context_features: int = 0,
        base: str = "normal",
        autoregressive: bool = False,
        permutation: str = "alternate",
        activation: str = "relu",
    ):
        if features < 1 or layers < 1:
            raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={layers}")
        net = {"hidden": hidden, "layers": blocks, "context_features": context_features, "activation": activation}
        chain: list[Transform] = []
        if autoregressive or features == 1:
            orders = layer_orders(features, layers, "reverse" if permutation == "alternate" else permutation)
            for order in orders:
                chain.append(MaskedSplineAutoregressive(features, bins=bins, bound=bound, order=order, **net))
        else:
            for mask in coupling_masks(features, layers, permutation):
                chain.append(Coupling(mask, RQSplineMap(bins, bound), **net))
        super().__init__(Compose(*chain), make_base(base, features))
        self.features, self.layers, self.context_features = features, layers, context_features
        self.autoregressive = autoregressive or features == 1


__all__ = ["MASKS", "NSF", "coupling_masks"]
