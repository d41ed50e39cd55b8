"""`NCSF`: neural circular spline flows on the torus ``[-π, π)^d``, coupling or autoregressive, on a uniform base.

References:
    Normalizing Flows on Tori and Spheres (Rezende, Papamakarios, Racanière, Albergo, Kanwar, Shanahan & Cranmer,
        2020), arXiv:2002.02428.
"""

from __future__ import annotations

from ..distributions import UniformTorus
from ..flow import Flow
from ..transforms.base import Compose, Transform
from ..transforms.circular import CircularSplineCoupling, MaskedCircularSplineAutoregressive
from .permutations import coupling_masks, layer_orders


class NCSF(Flow):
    """Neural circular spline flow: ``layers`` circular rational-quadratic spline layers on the uniform torus.

    The data are angles in ``[-π, π)`` (not standardized: the data task leaves the torus data sets as they are).
    Coupling form (default): half the angles pass unchanged and give, through an MLP on their cosines and sines, the
    circular splines of the others; the halves take turns. Autoregressive form (``autoregressive=True``, and always
    for one angle): a MADE on the raw angles, orders reversed between layers. Every layer starts as the identity, so
    the flow starts as the uniform distribution. Points outside ``[-π, π]`` have density 0.

    Args:
        features: number of angles.
        layers: number of spline layers.
        hidden: width of the conditioners' hidden layers.
        blocks: number of hidden layers of each conditioner.
        bins: number of spline bins.
        context_features: width of the context.
        autoregressive: the autoregressive form.
        permutation: ``alternate`` or ``random`` halves or orders (see :mod:`~tractable.models.permutations`).
        activation: the conditioners' activation.

    Example:
        >>> import torch
        >>> from tractable.models.ncsf import NCSF
        >>> flow = NCSF(2, layers=2, hidden=16)
        >>> x, log_q = flow.sample_and_log_prob(8)
        >>> bool(torch.allclose(flow.log_prob(x), log_q, atol=1e-4))
        True

    References:
        Normalizing Flows on Tori and Spheres (Rezende et al., 2020), arXiv:2002.02428.
    """

    def __init__(self, features: int, *, layers: int = 4, hidden: int = 64, blocks: int = 2, bins: int = 8,
                 context_features: int = 0, autoregressive: bool = False, permutation: str = "alternate",
                 activation: str = "relu"):
        if features < 1 or layers < 1:
            raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={layers}")
        net = {"hidden": hidden, "blocks": blocks, "context_features": context_features, "activation": activation}
        chain: list[Transform] = []
        if autoregressive or features == 1:
            for order in layer_orders(features, layers, permutation):
                chain.append(MaskedCircularSplineAutoregressive(features, bins=bins, order=order, **net))
        else:
            for mask in coupling_masks(features, layers, permutation):
                chain.append(CircularSplineCoupling(mask, bins=bins, **net))
        super().__init__(Compose(*chain), UniformTorus(features))
        self.features, self.layers, self.context_features = features, layers, context_features
        self.autoregressive = autoregressive or features == 1


__all__ = ["NCSF"]
