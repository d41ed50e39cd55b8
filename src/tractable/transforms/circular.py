"""Circular spline layers for angles in ``[-π, π)``: the rational-quadratic spline with matching end derivatives
(:class:`~tractable.transforms.splines.RQSplineMap` with ``circular=True``) in coupling and autoregressive form.

A coupling layer's conditioner reads the unchanged angles through ``(cos θ, sin θ)``, so the spline parameters are
continuous functions on the torus (no seam at ``±π``). The autoregressive form's MADE reads the raw angles (an
embedding would mix the autoregressive degrees); its conditionals are still exact circle maps, only their dependence
on the earlier angles has a seam at ``±π``.

References:
    Normalizing Flows on Tori and Spheres (Rezende, Papamakarios, Racanière, Albergo, Kanwar, Shanahan & Cranmer,
        2020), arXiv:2002.02428.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP
from .autoregressive import MaskedAutoregressive
from .coupling import Coupling
from .splines import RQSplineMap
from .splits import VectorSplit


class CircularConditioner(nn.Module):
    """An MLP on ``(cos θ, sin θ)`` of the unchanged angles (and the context), starting at ``map.identity()``.

    Args:
        split: the coupling's split.
        map: the coupling's map.
        hidden: width of the hidden layers.
        blocks: number of hidden layers.
        context_features: width of the context.
        activation: the activation.
    """

    def __init__(self, split: VectorSplit, map: RQSplineMap, *, hidden: int | Sequence[int] = 64, blocks: int = 2,
                 context_features: int = 0, activation: str = "relu"):
        super().__init__()
        self.net = MLP(2 * split.n_pass, split.n_transformed * map.params, hidden=hidden, blocks=blocks,
                       context_features=context_features, activation=activation, zero_last=True)
        with torch.no_grad():
            self.net.last.bias.copy_(map.identity().repeat(split.n_transformed))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(torch.cat([torch.cos(x), torch.sin(x)], -1), context)


class CircularSplineCoupling(Coupling):
    """A circular rational-quadratic spline coupling on angles in ``[-π, π)``: analytic both ways, identity at init.

    Args:
        mask: which features pass unchanged (``True``) and condition the others (a boolean tensor ``(features,)``).
        bins: number of spline bins.
        hidden: width of the conditioner's hidden layers.
        blocks: number of hidden layers.
        context_features: width of the context.
        activation: the conditioner's activation.

    Example:
        >>> import math, torch
        >>> from tractable.transforms.circular import CircularSplineCoupling
        >>> layer = CircularSplineCoupling(torch.tensor([True, False]), bins=4, hidden=8)
        >>> y, ladj = layer(math.pi * (2 * torch.rand(3, 2) - 1))
        >>> bool(ladj.abs().max() < 1e-6)
        True
    """

    def __init__(self, mask: Tensor, *, bins: int = 8, hidden: int | Sequence[int] = 64, blocks: int = 2,
                 context_features: int = 0, activation: str = "relu"):
        split, spline = VectorSplit(torch.as_tensor(mask)), RQSplineMap(bins, math.pi, circular=True)
        super().__init__(split, spline, CircularConditioner(split, spline, hidden=hidden, blocks=blocks,
                                                            context_features=context_features, activation=activation))


class MaskedCircularSplineAutoregressive(MaskedAutoregressive):
    """Autoregressive circular splines on angles in ``[-π, π)``: one MADE pass for the density, ``features`` passes
    to invert (each analytic).

    Args:
        features: number of angles.
        bins: number of spline bins.
        hidden: width of the MADE's hidden layers.
        blocks: number of hidden layers.
        context_features: width of the context.
        order: the autoregressive order (default ``0, 1, ...``).
        activation: the MADE's activation.
    """

    def __init__(self, features: int, *, bins: int = 8, hidden: int = 64, blocks: int = 2, context_features: int = 0,
                 order: Sequence[int] | Tensor | None = None, activation: str = "relu"):
        super().__init__(features, RQSplineMap(bins, math.pi, circular=True), hidden=hidden, blocks=blocks,
                         context_features=context_features, order=order, activation=activation)


__all__ = ["CircularConditioner", "CircularSplineCoupling", "MaskedCircularSplineAutoregressive"]
