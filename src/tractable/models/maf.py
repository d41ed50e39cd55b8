"""`MAF` and `IAF`: stacks of masked affine autoregressive layers, for density estimation and for fast sampling.

Between layers the autoregressive order is reversed (or drawn at random), which has the effect of a permutation layer
without its cost: a reversal of the MADE's order is a relabelling of its masks, fixed at construction.

References:
    Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017), arXiv:1705.07057.
    Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016), arXiv:1606.04934.
"""

from __future__ import annotations

from ..distributions import make_base
from ..flow import Flow
from ..transforms.autoregressive import MaskedAffineAutoregressive
from ..transforms.base import Compose, Inverse, Transform
from ..transforms.normalization import BatchNorm
from .permutations import layer_orders


def _check(features: int, layers: int) -> None:
    if features < 1 or layers < 1:
        raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={layers}")


def _maf_layers(
    features: int,
    *,
    layers: int,
    hidden: int,
    blocks: int,
    context_features: int,
    permutation: str,
    batchnorm: bool,
    bound: float,
    activation: str,
) -> list[Transform]:
    _check(features, layers)
    out: list[Transform] = []
    for k, order in enumerate(layer_orders(features, layers, permutation)):
        if batchnorm and k > 0:
            out.append(BatchNorm(features))
        out.append(
            MaskedAffineAutoregressive(
                features,
                bound=bound,
                hidden=hidden,
                blocks=blocks,
                context_features=context_features,
                order=order,
                activation=activation,
            )
        )
    return out


class MAF(Flow):
    """Masked autoregressive flow: ``layers`` masked affine autoregressive layers on a base distribution.

    Directions: ``log_prob`` is fast (one MADE pass per layer); sampling is sequential (``features`` MADE passes per
    layer). Both are exact. Each layer starts as the identity, so the initial flow is the base distribution. On one
    feature without a context a MADE has nothing to condition on: each layer is a constant affine map and the flow
    is its base moved and scaled (a Gaussian for a Gaussian base; NSF fits a density of one variable).

    Args:
        features: dimension of the data.
        layers: number of autoregressive layers.
        hidden: width of each MADE hidden layer.
        blocks: number of hidden layers of each MADE.
        context_features: size of the context (0 for an unconditional flow).
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``; see :func:`tractable.make_base`).
        permutation: ``alternate`` (reverse the order every other layer; ``reverse`` is an alias) or ``random`` (a
            random order per layer); see :mod:`~tractable.models.permutations`.
        batchnorm: put a batch-normalisation layer between consecutive layers (as in the MAF paper).
        bound: the largest ``|log scale|`` of each affine map.
        activation: the MADE activation.

    Example:
        >>> import torch
        >>> from tractable.models.maf import MAF
        >>> flow = MAF(3, layers=4, hidden=32)
        >>> x = torch.randn(10, 3)
        >>> flow.log_prob(x).shape
        torch.Size([10])
        >>> samples = flow.sample(5)
        >>> tuple(samples.shape)
        (5, 3)

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017), arXiv:1705.07057.
    """

    def __init__(
        self,
        features: int,
        *,
        layers: int = 5,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        base: str = "normal",
        permutation: str = "alternate",
        batchnorm: bool = False,
        bound: float = 3.0,
        activation: str = "relu",
    ):
        chain = _maf_layers(
            features,
            layers=layers,
            hidden=hidden,
            blocks=blocks,
            context_features=context_features,
            permutation=permutation,
            batchnorm=batchnorm,
            bound=bound,
            activation=activation,
        )
        super().__init__(Compose(*chain), make_base(base, features))
        self.features, self.layers, self.context_features = features, layers, context_features


class IAF(Flow):
    """Inverse autoregressive flow: MAF's layers with their directions swapped, for fast sampling.

    Directions: sampling (``sample``, ``sample_and_log_prob``, the reverse-KL path) is fast: one MADE pass per
    layer, and the samples' log-densities come free with them. ``log_prob`` of arbitrary points is sequential
    (``features`` MADE passes per layer). Both are exact. There is no batch-normalisation option: its statistics
    belong to the data (density) direction, which is the slow one here.

    Args:
        features: dimension of the data.
        layers: number of autoregressive layers.
        hidden: width of each MADE hidden layer.
        blocks: number of hidden layers of each MADE.
        context_features: size of the context (0 for an unconditional flow).
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``).
        permutation: ``alternate`` (alias ``reverse``) or ``random`` (see :class:`MAF`).
        bound: the largest ``|log scale|`` of each affine map.
        activation: the MADE activation.

    Example:
        >>> import torch
        >>> from tractable.models.maf import IAF
        >>> flow = IAF(3, layers=4, hidden=32)
        >>> x, log_q = flow.sample_and_log_prob(6)  # one pass per layer
        >>> bool(torch.allclose(flow.log_prob(x), log_q, atol=1e-4))
        True

    References:
        Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016), arXiv:1606.04934.
    """

    def __init__(
        self,
        features: int,
        *,
        layers: int = 5,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        base: str = "normal",
        permutation: str = "alternate",
        bound: float = 3.0,
        activation: str = "relu",
    ):
        chain = _maf_layers(
            features,
            layers=layers,
            hidden=hidden,
            blocks=blocks,
            context_features=context_features,
            permutation=permutation,
            batchnorm=False,
            bound=bound,
            activation=activation,
        )
        super().__init__(Compose(*(Inverse(t) for t in chain)), make_base(base, features))
        self.features, self.layers, self.context_features = features, layers, context_features


__all__ = ["IAF", "MAF"]
