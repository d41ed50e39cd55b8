"""`RealNVP`: a base distribution and a stack of coupling layers, for density estimation by maximum likelihood."""

from __future__ import annotations

from ..distributions import make_base
from ..flow import Flow
from ..transforms.base import Compose, Transform
from ..transforms.coupling import AdditiveCoupling, AffineCoupling
from ..transforms.linear import RandomPermutation
from ..transforms.normalization import ActNorm, BatchNorm
from .permutations import check_permutation

COUPLINGS = ("affine", "additive")


class RealNVP(Flow):
    """RealNVP (affine couplings) or NICE (additive couplings) on vectors, as a :class:`~tractable.Flow`.

    Each of the ``layers`` steps is ``[ActNorm] → [permutation] → coupling → [BatchNorm]``:

    * ``permutation="alternate"`` (alias ``"reverse"``): no permutation layer; the couplings' masks alternate between
      the two halves of the features (for 2-D data: the two coordinates), so every feature is transformed every other
      layer.
    * ``"random"``: every coupling transforms the second half, and a fixed random permutation (drawn at
      construction, saved in ``state_dict``) precedes every coupling but the first.
    * ``actnorm=True`` puts a data-initialised :class:`~tractable.transforms.normalization.ActNorm` before each
      coupling: the first ``log_prob`` call in training mode initialises them from its batch, so make that call on
      (a large batch of) training data before anything else. ``batchnorm=True`` puts a
      :class:`~tractable.transforms.normalization.BatchNorm` between consecutive couplings (switch the flow to
      ``eval()`` to sample and to evaluate densities then).

    Every coupling starts as the identity, so the untrained flow is its base distribution (up to the normalization
    layers). ``forward`` of the transform is the normalizing direction; both directions are analytic.

    Args:
        features: dimension of the data (at least 2: a coupling needs a part to condition on).
        layers: number of coupling layers.
        hidden: width of the conditioners' hidden layers.
        blocks: number of hidden layers of each conditioner.
        context_features: width of the context the conditioners read (0: unconditional).
        base: ``normal`` (default), ``diagonal`` (learnable Gaussian) or ``mixture``.
        coupling: ``affine`` (RealNVP) or ``additive`` (NICE, volume preserving).
        permutation: ``alternate`` (default; alias ``reverse``) or ``random`` (see
            :mod:`~tractable.models.permutations`).
        actnorm: add ActNorm layers.
        batchnorm: add BatchNorm layers.
        bound: the soft bound on the affine couplings' ``|log scale|``.
        activation: the conditioners' activation.
        validate: check inputs in ``log_prob`` (see :class:`~tractable.Flow`).

    Example:
        >>> import torch
        >>> from tractable.models.realnvp import RealNVP
        >>> flow = RealNVP(2, layers=8, hidden=64)
        >>> x, log_q = flow.sample_and_log_prob(256)
        >>> bool(torch.allclose(flow.log_prob(x), log_q, atol=1e-4))
        True

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
        NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014), arXiv:1410.8516.
    """

    def __init__(
        self,
        features: int,
        *,
        layers: int = 8,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        base: str = "normal",
        coupling: str = "affine",
        permutation: str = "alternate",
        actnorm: bool = False,
        batchnorm: bool = False,
        bound: float = 3.0,
        activation: str = "relu",
        validate: bool = True,
    ):
        if features < 2:
            raise ValueError(
                "RealNVP needs at least 2 features (a coupling conditions one part on another), "
                f"got features={features}"
            )
        if layers < 1:
            raise ValueError(f"expected layers >= 1, got {layers}")
        if coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {coupling!r}; expected one of {', '.join(COUPLINGS)}")
        alternate = check_permutation(permutation) == "alternate"
        net = {"hidden": hidden, "blocks": blocks, "context_features": context_features, "activation": activation}
        steps: list[Transform] = []
        for k in range(layers):
            if actnorm:
                steps.append(ActNorm(features))
            if not alternate and k > 0:
                steps.append(RandomPermutation(features))
            parity = k % 2 if alternate else 0
            if coupling == "affine":
                steps.append(AffineCoupling(features, parity=parity, bound=bound, **net))
            else:
                steps.append(AdditiveCoupling(features, parity=parity, **net))
            if batchnorm and k < layers - 1:
                steps.append(BatchNorm(features))
        super().__init__(Compose(*steps), make_base(base, features), validate=validate)
        self.features, self.layers, self.context_features = features, layers, context_features


__all__ = ["COUPLINGS", "RealNVP"]
