"""`ResidualFlow`: invertible residual blocks with ActNorm between them (i-ResNet, Residual Flows).

References:
    Invertible Residual Networks (Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen, 2019), arXiv:1811.00995.
    Residual Flows for Invertible Generative Modeling (Chen, Behrmann, Duvenaud & Jacobsen, 2019),
    arXiv:1906.02735.
"""

from __future__ import annotations

from ..distributions import make_base
from ..flow import Flow
from ..transforms.base import Compose, Transform
from ..transforms.normalization import ActNorm
from ..transforms.residual import EXACT_LIMIT, ResidualBlock


class ResidualFlow(Flow):
    """A residual flow: ``layers`` times (ActNorm, then a residual block ``x + g(x)`` with ``Lip(g) ≤ coefficient``).

    Directions: ``log_prob`` runs each block forward with the unbiased Russian-roulette log-determinant in training
    mode (``logdet="exact"``: the exact one) and the exact log-determinant in evaluation mode while ``features ≤
    exact_limit``; sampling inverts each block by fixed-point iteration (see
    :class:`~tractable.transforms.residual.ResidualBlock`). ActNorm initialises itself from the first training batch;
    the blocks start as the identity.

    Args:
        features: dimension of the data.
        layers: number of residual blocks.
        hidden: width of each block's hidden layers.
        blocks: hidden layers per residual block.
        coefficient: the Lipschitz coefficient of every linear layer of ``g``.
        logdet: the training-mode log-determinant, ``stochastic`` (Russian roulette) or ``exact``.
        exact_terms: power-series terms the Russian-roulette estimator always computes.
        power_iterations: power iterations per training step for the spectral norms.
        actnorm: put an ActNorm layer before every block (Residual Flows' choice).
        exact_limit: the largest ``features`` with an exact log-determinant in evaluation mode.
        base: base distribution name (``normal``, ``diagonal`` or ``mixture``).

    Example:
        >>> import torch
        >>> from tractable.models.resflow import ResidualFlow
        >>> flow = ResidualFlow(2, layers=3, hidden=16).eval()
        >>> x = flow.sample(4)
        >>> tuple(flow.log_prob(x).shape)
        (4,)

    References:
        Residual Flows for Invertible Generative Modeling (Chen et al., 2019), arXiv:1906.02735.
    """

    def __init__(
        self,
        features: int,
        *,
        layers: int = 5,
        hidden: int = 64,
        blocks: int = 2,
        coefficient: float = 0.97,
        logdet: str = "stochastic",
        exact_terms: int = 2,
        power_iterations: int = 1,
        actnorm: bool = True,
        exact_limit: int = EXACT_LIMIT,
        base: str = "normal",
    ):
        if features < 1 or layers < 1:
            raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={layers}")
        chain: list[Transform] = []
        for _ in range(layers):
            if actnorm:
                chain.append(ActNorm(features))
            chain.append(ResidualBlock(features, hidden=hidden, blocks=blocks, coefficient=coefficient, logdet=logdet,
                                       exact_terms=exact_terms, power_iterations=power_iterations,
                                       exact_limit=exact_limit))
        super().__init__(Compose(*chain), make_base(base, features))
        self.features, self.layers = features, layers


__all__ = ["ResidualFlow"]
