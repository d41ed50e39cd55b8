"""Convolutional conditioner networks for image couplings: gated convolutions and gated residual networks.

A conditioner maps the passing part of an image (and an optional image-shaped context) to the parameters of the
elementwise maps of a coupling layer. Its last convolution is zero-initialised so that every coupling starts as the
identity (as in nflows, Glow and the UvA tutorial).

References:
    PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other Modifications
    (Salimans, Karpathy, Chen & Kingma, 2017), arXiv:1701.05517 (concat-ELU, gated residual blocks).
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import GatedAttention


def concat_elu(x: Tensor) -> Tensor:
    """``ELU([x, -x])`` along the channels: a non-linearity that keeps both signs' information (doubles channels)."""
    return F.elu(torch.cat([x, -x], 1))


class LayerNormChannels(nn.Module):
    """Layer normalization over the channels of each pixel of a ``(B, C, H, W)`` tensor."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedConv(nn.Module):
    """A gated residual convolution ``x + a · σ(b)``, ``[a, b] = conv1x1(concat_elu(conv3x3(concat_elu(x)) + aux))``.

    Args:
        channels: input and output channels.
        context_channels: channels of an image-shaped auxiliary input (``0``: none), added after the first conv.
        dropout: dropout probability on the hidden activations (Flow++ uses 0.2 on CIFAR-10).
    """

    def __init__(self, channels: int, *, context_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.aux = nn.Conv2d(2 * context_channels, channels, 1) if context_channels else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.gate = nn.Conv2d(2 * channels, 2 * channels, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.conv(concat_elu(x))
        if self.aux is not None and context is not None:
            h = h + self.aux(concat_elu(context))
        a, b = self.gate(self.drop(concat_elu(h))).chunk(2, 1)
        return x + a * torch.sigmoid(b)


class GatedResNet(nn.Module):
    """A conditioner ``(B, C_in, H, W) [+ context (B, C_c, H, W)] -> (B, C_out, H, W)`` of gated residual blocks.

    ``conv3x3(C_in [+ C_c] -> hidden)``, then ``blocks`` times ``GatedConv -> LayerNorm`` (each followed by a gated
    multi-head self-attention and another LayerNorm when ``attention=True``: Flow++'s conv-attention block), then
    ``concat_elu -> conv3x3(2·hidden -> C_out)`` (the UvA tutorial's and PixelCNN++'s output), or with
    ``output_activation=False`` a plain ``conv3x3(hidden -> C_out)`` (Flow++'s released code), zero-initialised.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        hidden: channels of the hidden layers.
        blocks: number of gated (conv-attention) blocks.
        context_channels: channels of an image-shaped context of the input's resolution (0: none); it is
            concatenated to the input and added inside every gated convolution.
        attention: add a gated multi-head self-attention after each gated convolution (Flow++).
        heads: number of attention heads.
        dropout: dropout probability inside the blocks.
        zero_last: zero-initialise the last convolution (the coupling starts as the identity).
        output_activation: apply concat-ELU before the last convolution (doubling its input channels).
        positions: ``(H, W)`` of the inputs for a learned position embedding shared by the attention blocks (Flow++'s
            code; ``H·W·hidden`` parameters, initialised ``N(0, 0.01²)``); ``None``: sinusoidal, no parameters, any
            size.

    Example:
        >>> import torch
        >>> from tractable.nn.convnets import GatedResNet
        >>> net = GatedResNet(2, 6, hidden=16, blocks=2)
        >>> tuple(net(torch.randn(3, 2, 8, 8)).shape), float(net(torch.randn(1, 2, 8, 8)).abs().max())
        ((3, 6, 8, 8), 0.0)

    References:
        Flow++ (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275, §3.3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden: int = 64,
        blocks: int = 2,
        context_channels: int = 0,
        attention: bool = False,
        heads: int = 4,
        dropout: float = 0.0,
        zero_last: bool = True,
        output_activation: bool = True,
        positions: tuple[int, int] | None = None,
    ):
        super().__init__()
        if min(in_channels, out_channels, hidden) < 1 or blocks < 0 or context_channels < 0:
            raise ValueError(
                f"expected positive channel counts and blocks >= 0, got in_channels={in_channels}, "
                f"out_channels={out_channels}, hidden={hidden}, blocks={blocks}, context_channels={context_channels}"
            )
        self.in_channels, self.out_channels, self.context_channels = in_channels, out_channels, context_channels
        self.input = nn.Conv2d(in_channels + context_channels, hidden, 3, padding=1)
        self.convs = nn.ModuleList(
            GatedConv(hidden, context_channels=context_channels, dropout=dropout) for _ in range(blocks)
        )
        self.norms = nn.ModuleList(LayerNormChannels(hidden) for _ in range(blocks))
        self.attentions = nn.ModuleList(
            GatedAttention(hidden, heads=heads, dropout=dropout) for _ in range(blocks if attention else 0)
        )
        self.attention_norms = nn.ModuleList(LayerNormChannels(hidden) for _ in range(blocks if attention else 0))
        self.output_activation = output_activation
        self.output = nn.Conv2d((2 if output_activation else 1) * hidden, out_channels, 3, padding=1)
        if zero_last:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        self.positions_shape = tuple(int(s) for s in positions) if positions is not None and attention else None
        self.positions = None
        if self.positions_shape is not None:
            if len(self.positions_shape) != 2 or min(self.positions_shape) < 1:
                raise ValueError(f"expected positions as a positive (H, W), got {positions!r}")
            self.positions = nn.Parameter(0.01 * torch.randn(self.positions_shape[0] * self.positions_shape[1], hidden))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_channels:
            if context is None or context.dim() != 4 or context.shape[1] != self.context_channels \
                    or context.shape[-2:] != x.shape[-2:]:
                got = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"expected a context of shape (batch, {self.context_channels}, {x.shape[-2]}, {x.shape[-1]}), "
                    f"got {got}"
                )
            h = self.input(torch.cat([x, context], 1))
        else:
            h = self.input(x)
            context = None
        if self.positions_shape is not None and tuple(x.shape[-2:]) != self.positions_shape:
            raise ValueError(f"this network learned positions for {self.positions_shape[0]}x{self.positions_shape[1]} "
                             f"inputs, got {x.shape[-2]}x{x.shape[-1]}")
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(conv(h, context))
            if self.attentions:
                h = self.attention_norms[i](h + self.attentions[i](h, self.positions))
        return self.output(concat_elu(h) if self.output_activation else h)


__all__ = ["GatedConv", "GatedResNet", "LayerNormChannels", "concat_elu"]
