"""Dequantization of discrete images and bits per dimension.

A flow has a density over continuous values, while image pixels take ``k`` discrete levels ``0, ..., k - 1``. Adding
noise ``u ∈ [0, 1)^D`` to ``x`` turns a continuous density into a bound on the discrete likelihood (Theis et al.
2016; see the reference formulas in docs/architecture.md). With ``y = (x + u) / k ∈ [0, 1)^D`` modelled by a flow
density ``p(y)``,

    log P(x) ≥ E_{q(u|x)} [ log p((x + u) / k) - D log k - log q(u|x) ],

where ``-D log k`` is the log-determinant of the scaling ``x + u -> (x + u) / k`` and ``q = 1`` for uniform noise
(*uniform dequantization*); Flow++'s *variational dequantization* learns ``q(u|x)`` (a conditional flow on
``[0, 1)^D``). Bits per dimension are ``-log P(x) / (D log 2)``, i.e. ``(-log p(y) + D log k + log q) / (D log 2)``:
a model uniform on ``[0, 1)^D`` scores exactly ``log2 k`` (8 bits for 8-bit images). The importance-weighted bound
with ``M`` samples, ``log P(x) ≥ E[logsumexp_m (log p(y_m) - D log k - log q(u_m|x)) - log M]``, is tighter.

References:
    A note on the evaluation of generative models (Theis, van den Oord & Bethge, 2016), arXiv:1511.01844.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275, §3.1.
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803 (logit pre-processing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .distributions import StandardLogistic, StandardNormal
from .flow import Flow
from .nn.convnets import GatedResNet
from .transforms.base import Compose, Inverse, Transform
from .transforms.elementwise import Logit
from .transforms.image_coupling import ImageAffineCoupling, MixtureLogisticCoupling
from .utils import renamed

_LN2 = math.log(2.0)


def bits_per_dim(log_prob: Tensor, dims: int) -> Tensor:
    """``-log P(x) / (D log 2)``: bits per dimension of a discrete log-likelihood (or bound) ``log_prob`` in nats.

    Example:
        >>> import math
        >>> import torch
        >>> from tractable import bits_per_dim
        >>> bits_per_dim(torch.tensor([-64 * math.log(17)]), dims=64)  # uniform over 17 levels: log2(17)
        tensor([4.0875])
    """
    if dims < 1:
        raise ValueError(f"expected dims >= 1, got {dims}")
    return -log_prob / (dims * _LN2)


def unit_bits_per_dim(log_density: Tensor, dims: int, levels: int) -> Tensor:
    """Bits/dim from a density ``p(x̃)`` of ``k``-level data scaled to ``[0, 1)``: ``(-log p(x̃) + D log k) / (D log 2)``.

    Args:
        log_density: ``log p(x̃)`` (nats) of the dequantized data ``x̃ = (x + u) / k``, minus ``log q(u|x)`` for
            variational dequantization.
        dims: ``D``, the number of entries of one image.
        levels: ``k``, the number of discrete levels (256 for 8-bit data).

    Example:
        >>> import torch
        >>> from tractable import unit_bits_per_dim
        >>> unit_bits_per_dim(torch.zeros(1), dims=784, levels=256)  # the uniform density on [0, 1)^D: 8 bits
        tensor([8.])
    """
    if levels < 2:
        raise ValueError(f"expected levels >= 2, got {levels}")
    return bits_per_dim(log_density - dims * math.log(levels), dims)


def importance_weighted(log_weights: Tensor) -> Tensor:
    """``logsumexp_m(log w_m) - log M`` over the first dimension of ``(M, ...)`` log-weights: the IW bound."""
    if log_weights.dim() < 1 or log_weights.shape[0] < 1:
        raise ValueError(f"expected log-weights of shape (M, ...) with M >= 1, got {tuple(log_weights.shape)}")
    return torch.logsumexp(log_weights, 0) - math.log(log_weights.shape[0])


class Dequantizer(nn.Module):
    """Draws dequantization noise ``u ∈ [0, 1)^D`` for discrete images ``x`` and returns ``(u, log q(u|x))``."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class UniformDequantization(Dequantizer):
    """Uniform noise ``u ~ U[0, 1)^D``, ``log q(u|x) = 0`` (Theis et al. 2016; RealNVP, Glow).

    Example:
        >>> import torch
        >>> from tractable.dequantization import UniformDequantization
        >>> u, log_q = UniformDequantization()(torch.zeros(2, 1, 3, 3))
        >>> bool(((u >= 0) & (u < 1)).all()), log_q.tolist()
        (True, [0.0, 0.0])
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.rand_like(x), x.new_zeros(x.shape[0])


class VariationalDequantization(Dequantizer):
    """Learned noise ``u ~ q(u|x)``: a conditional flow on ``[0, 1)^D`` conditioned on ``x`` (Flow++, UvA tutorial 11).

    ``q(u|x)`` pushes ``ε ~ N(0, I)`` through ``layers`` checkerboard couplings (affine, or Flow++'s logistic-mixture
    couplings) whose conditioners read a context computed from ``x`` scaled to ``[-1, 1]``, then through a sigmoid
    onto ``(0, 1)``; ``log q(u|x)`` is exact (change of variables, sigmoid included). It is the
    :class:`~tractable.Flow` ``Flow(Compose(Logit(), *couplings), N(0, I))`` sampled with that context. At
    initialisation (zero-initialised couplings) ``u = σ(ε)``.

    Affine couplings run in their density direction (both directions are analytic); mixture couplings are placed as
    ``Inverse(coupling)``, so that drawing ``u`` (every training step) runs the analytic CDF direction and only
    ``q.log_prob`` of a given ``u`` needs the numerical inverse, as in Flow++'s code (twice as fast on CPU for the
    CIFAR-10 preset's dequantizer).

    The context is either computed from ``x`` by a context network (``context_net=True``: a
    :class:`~tractable.nn.convnets.GatedResNet` of ``context_channels`` channels and ``context_blocks`` gated blocks,
    like Flow++'s "shallow processor"), or the scaled image itself (``context_net=False``: the couplings read ``x``
    directly, as in the UvA tutorial).

    Args:
        shape: the image shape ``(C, H, W)``.
        levels: number of discrete levels ``k`` of the data (the input is scaled by ``1 / (k - 1)``).
        layers: number of coupling layers of ``q``.
        hidden: channels of the couplings' conditioners.
        blocks: gated blocks of each coupling's conditioner.
        context_channels: channels (width) of the context network (default: ``hidden``); must be left ``None`` (or
            equal ``C``) when ``context_net=False``.
        coupling: ``"affine"`` or ``"mixture"`` (Flow++'s logistic-mixture CDF couplings).
        components: mixture components for ``coupling="mixture"``.
        attention: self-attention in the couplings' conditioners.
        dropout: dropout in the networks.
        context_net: compute the context with a context network (``False``: the scaled image is the context).
        context_blocks: gated blocks of the context network (default: ``blocks``).
        context_attention: self-attention in the context network (Flow++'s has none).
        output_activation: concat-ELU before the conditioners' last convolution (``False``: Flow++'s released code).
        positions: ``"sinusoidal"`` or ``"learned"`` position embeddings in the couplings' attention (Flow++'s code).
        mask: the couplings' mask, ``"checkerboard"`` (default) or ``"columns"`` (Flow++'s code).
        bound: the affine couplings' log-scale bound (its initial value with ``learn_bound``).
        learn_bound: the affine couplings learn their bound per channel (the UvA tutorial's scaling factor).
        noise: the noise ``ε`` the couplings transform, ``"gaussian"`` (Flow++) or ``"logistic"`` (the UvA tutorial:
            then ``u = σ(ε)`` is exactly uniform at initialisation, so training starts from uniform dequantization).

    Example:
        >>> import torch
        >>> from tractable.dequantization import VariationalDequantization
        >>> deq = VariationalDequantization((1, 4, 4), levels=17, layers=2, hidden=8, blocks=1)
        >>> u, log_q = deq(torch.randint(0, 17, (3, 1, 4, 4)).float())
        >>> tuple(u.shape), tuple(log_q.shape), bool(((u > 0) & (u < 1)).all())
        ((3, 1, 4, 4), (3,), True)

    References:
        Flow++ (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275, §3.1.
    """

    @renamed(features="context_net", feature_blocks="context_blocks", feature_attention="context_attention")
    def __init__(
        self,
        shape: Sequence[int],
        levels: int = 256,
        *,
        layers: int = 4,
        hidden: int = 32,
        blocks: int = 2,
        context_channels: int | None = None,
        coupling: str = "affine",
        components: int = 4,
        attention: bool = False,
        dropout: float = 0.0,
        context_net: bool = True,
        context_blocks: int | None = None,
        context_attention: bool = False,
        output_activation: bool = True,
        positions: str = "sinusoidal",
        mask: str = "checkerboard",
        bound: float = 2.0,
        learn_bound: bool = False,
        noise: str = "gaussian",
    ):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"expected an image shape (C, H, W), got {shape}")
        if levels < 2 or layers < 1:
            raise ValueError(f"expected levels >= 2 and layers >= 1, got levels={levels}, layers={layers}")
        if coupling not in ("affine", "mixture"):
            raise ValueError(f"unknown coupling {coupling!r}; expected 'affine' or 'mixture'")
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"unknown positions {positions!r}; expected 'sinusoidal' or 'learned'")
        if noise not in ("gaussian", "logistic"):
            raise ValueError(f"unknown noise {noise!r}; expected 'gaussian' or 'logistic'")
        if mask not in ("checkerboard", "columns"):
            raise ValueError(f"unknown mask {mask!r} for the dequantizer; expected 'checkerboard' or 'columns'")
        channels = shape[0]
        if not context_net:
            if context_channels not in (None, channels):
                raise ValueError(f"without a context network the context is the image ({channels} channels), "
                                 f"got context_channels={context_channels}")
            context_channels = channels
        context_channels = hidden if context_channels is None else context_channels
        self.shape, self.levels = shape, levels
        self.context_net = GatedResNet(
            channels, context_channels, hidden=context_channels,
            blocks=blocks if context_blocks is None else context_blocks, attention=context_attention,
            dropout=dropout, zero_last=False,
        ) if context_net else None
        net = {"hidden": hidden, "blocks": blocks, "context_channels": context_channels, "attention": attention,
               "dropout": dropout, "output_activation": output_activation,
               "positions": None if positions == "sinusoidal" else
               (shape[1], shape[2] // 2 if mask == "columns" else shape[2])}
        steps: list[Transform] = [Logit()]
        for i in range(layers):
            if coupling == "affine":
                steps.append(ImageAffineCoupling(channels, mask=mask, parity=i % 2, bound=bound,
                                                 learn_bound=learn_bound, **net))
            else:  # sampled in its analytic direction: training never runs the numerical inverse (as Flow++)
                steps.append(Inverse(MixtureLogisticCoupling(channels, mask=mask, parity=i % 2,
                                                             components=components, **net)))
        base = StandardNormal(shape) if noise == "gaussian" else StandardLogistic(shape)
        self.flow = Flow(Compose(*steps), base, validate=False)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints written before the rename hold the context network under "features".
        for key in [k for k in state_dict if k.startswith(prefix + "features.")]:
            state_dict[prefix + "context_net." + key[len(prefix + "features."):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected images of shape (batch, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        scaled = 2 * x / (self.levels - 1) - 1
        context = scaled if self.context_net is None else self.context_net(scaled)
        return self.flow.sample_and_log_prob(x.shape[0], context)


def make_dequantizer(kind: str | Dequantizer, shape: Sequence[int], levels: int,
                     options: dict[str, Any] | None = None) -> Dequantizer:
    """``"uniform"``, ``"variational"`` (``options`` are keyword arguments of :class:`VariationalDequantization`) or a
    module."""
    if isinstance(kind, Dequantizer):
        return kind
    if kind == "uniform":
        if options:
            raise ValueError(f"uniform dequantization takes no options, got {sorted(options)}")
        return UniformDequantization()
    if kind == "variational":
        return VariationalDequantization(shape, levels, **(options or {}))
    raise ValueError(f"unknown dequantization {kind!r}; expected 'uniform' or 'variational'")


__all__ = [
    "Dequantizer", "UniformDequantization", "VariationalDequantization", "bits_per_dim", "importance_weighted",
    "make_dequantizer", "unit_bits_per_dim",
]
