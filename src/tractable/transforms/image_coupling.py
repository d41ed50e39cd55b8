"""Image couplings: :class:`~tractable.transforms.coupling.Coupling` with an image split and a gated ResNet.

:func:`resnet_conditioner` builds the conditioner of an image coupling (a :class:`~tractable.nn.convnets.GatedResNet`,
optionally with attention, reading an optional image-shaped context); :class:`ImageAffineCoupling` (RealNVP, Glow)
and :class:`MixtureLogisticCoupling` (Flow++) only choose the three parts of a ``Coupling``.

References:
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §3.4-3.5.
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275, §3.2-3.3.
"""

from __future__ import annotations

from ..nn.convnets import GatedResNet
from .coupling import Coupling
from .logistic_mixture import LogisticMixtureMap
from .maps import AffineMap, ElementwiseMap
from .splits import ImageSplit


def resnet_conditioner(
    split: ImageSplit,
    map: ElementwiseMap,
    *,
    hidden: int = 64,
    blocks: int = 2,
    context_channels: int = 0,
    attention: bool = False,
    heads: int = 4,
    dropout: float = 0.0,
    output_activation: bool = True,
    positions: tuple[int, int] | None = None,
) -> GatedResNet:
    """A :class:`~tractable.nn.convnets.GatedResNet` conditioner for an image coupling, zero-initialised last layer.

    Every map's :meth:`~tractable.transforms.maps.ElementwiseMap.identity` is all zeros for images, so the zero last
    convolution starts the coupling as the exact identity.

    Args:
        split: the coupling's split (sets the channels read and written).
        map: the coupling's map (sets the parameters per entry).
        hidden: channels of the hidden layers.
        blocks: gated residual blocks.
        context_channels: channels of an image-shaped context ``(B, C_c, H, W)`` the conditioner reads (0: none).
        attention: add multi-head self-attention to the blocks (Flow++).
        heads: attention heads.
        dropout: dropout probability (use ``eval()`` to sample or evaluate).
        output_activation: concat-ELU before the last convolution (``False``: Flow++'s released code).
        positions: ``(H, W)`` of the conditioner's inputs for a learned position embedding in the attention
            (Flow++'s code); ``None``: sinusoidal.

    Example:
        >>> import torch
        >>> from tractable import AffineMap, Coupling, ImageSplit, resnet_conditioner
        >>> split, map = ImageSplit("channel", channels=2), AffineMap()
        >>> layer = Coupling(split, map, resnet_conditioner(split, map, hidden=8, blocks=1, attention=True, heads=2))
        >>> x = torch.randn(2, 2, 4, 4)
        >>> y, ladj = layer(x)
        >>> bool(torch.equal(y, x)), ladj.abs().max().item()  # the exact identity at initialisation
        (True, 0.0)
    """
    if bool(map.identity().any()):
        raise ValueError(f"an image conditioner starts at zero parameters, but {type(map).__name__} is the identity "
                         f"at {map.identity().tolist()}")
    return GatedResNet(
        split.n_pass, split.n_transformed * map.params, hidden=hidden, blocks=blocks,
        context_channels=context_channels * split.context_factor, attention=attention, heads=heads, dropout=dropout,
        output_activation=output_activation, positions=positions,
    )


class ImageAffineCoupling(Coupling):
    """Affine image coupling ``y = x · exp(s) + t`` with ``s = bound · tanh(ŝ / bound)`` (RealNVP, Glow).

    ``(t, ŝ)`` come from a gated convolutional ResNet of the passing entries; the tanh bound keeps deep stacks stable.
    Both directions are analytic; ``ladj = Σ s`` over the transformed entries.

    Args:
        channels: number of input channels.
        mask: the split, ``"checkerboard"``, ``"channel"`` or ``"columns"`` (see
            :class:`~tractable.transforms.splits.ImageSplit`).
        parity: which half passes (0 or 1).
        bound: the largest ``|log scale|`` per layer (default 2); with ``learn_bound`` its initial value.
        learn_bound: learn the bound per transformed channel (the UvA tutorial's ``scaling_factor``,
            ``s = b · tanh(ŝ / b)`` with ``b = exp(f)`` learned, ``f = 0`` at the start for ``bound=1``).
        hidden, blocks, context_channels, attention, heads, dropout, output_activation, positions: the conditioner,
            as in :func:`resnet_conditioner`.

    Example:
        >>> import torch
        >>> from tractable.transforms.image_coupling import ImageAffineCoupling
        >>> t = ImageAffineCoupling(1, mask="checkerboard", hidden=16)
        >>> x = torch.randn(2, 1, 4, 4)
        >>> y, ladj = t(x)
        >>> bool(torch.equal(y, x)), tuple(ladj.shape)  # identity at initialisation
        (True, (2,))

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    """

    def __init__(
        self,
        channels: int,
        *,
        mask: str = "checkerboard",
        parity: int = 0,
        bound: float = 2.0,
        learn_bound: bool = False,
        hidden: int = 64,
        blocks: int = 2,
        context_channels: int = 0,
        attention: bool = False,
        heads: int = 4,
        dropout: float = 0.0,
        output_activation: bool = True,
        positions: tuple[int, int] | None = None,
    ):
        split = ImageSplit(mask, channels, parity)
        affine = AffineMap(bound, learned_bound=(split.n_transformed, 1, 1) if learn_bound else None)
        net = resnet_conditioner(split, affine, hidden=hidden, blocks=blocks, context_channels=context_channels,
                                 attention=attention, heads=heads, dropout=dropout,
                                 output_activation=output_activation, positions=positions)
        super().__init__(split, affine, net)


class MixtureLogisticCoupling(Coupling):
    """Flow++'s coupling ``y = σ⁻¹(Σ_k π_k σ((x - μ_k)/s_k)) · exp(a) + b`` with a gated conv-attention conditioner.

    The map is a :class:`~tractable.transforms.logistic_mixture.LogisticMixtureMap` (its docstring gives the
    directions: the forward is analytic, the inverse a bracketed Newton-bisection to ``tol``); the conditioner a
    :class:`~tractable.nn.convnets.GatedResNet` with multi-head self-attention by default.

    Args:
        channels: number of input channels.
        components: mixture components ``K`` (Flow++: 32 on CIFAR-10).
        bound: the largest ``|a|`` (log-scale of the final affine map).
        tol: the inverse's relative tolerance (``None``: by dtype).
        mask: the split, ``"checkerboard"``, ``"channel"`` or ``"columns"``.
        parity: which half passes (0 or 1).
        hidden, blocks, context_channels, attention, heads, dropout, output_activation, positions: the conditioner,
            as in :func:`resnet_conditioner` (``attention`` defaults to ``True``, as Flow++).

    Example:
        >>> import torch
        >>> from tractable.transforms.image_coupling import MixtureLogisticCoupling
        >>> t = MixtureLogisticCoupling(2, mask="channel", components=4, hidden=16, blocks=1)
        >>> x = torch.randn(3, 2, 4, 4)
        >>> y, ladj = t(x)
        >>> bool(torch.allclose(y, x, atol=1e-6)), bool(ladj.abs().max() < 1e-5)  # identity at initialisation
        (True, True)

    References:
        Flow++ (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275, §3.2-3.3.
    """

    def __init__(
        self,
        channels: int,
        *,
        components: int = 4,
        bound: float = 2.0,
        tol: float | None = None,
        mask: str = "checkerboard",
        parity: int = 0,
        hidden: int = 64,
        blocks: int = 2,
        context_channels: int = 0,
        attention: bool = True,
        heads: int = 4,
        dropout: float = 0.0,
        output_activation: bool = True,
        positions: tuple[int, int] | None = None,
    ):
        split = ImageSplit(mask, channels, parity)
        mixture = LogisticMixtureMap(components, bound=bound, tol=tol)
        net = resnet_conditioner(split, mixture, hidden=hidden, blocks=blocks, context_channels=context_channels,
                                 attention=attention, heads=heads, dropout=dropout,
                                 output_activation=output_activation, positions=positions)
        super().__init__(split, mixture, net)


__all__ = ["ImageAffineCoupling", "MixtureLogisticCoupling", "resnet_conditioner"]
