"""Gated multi-head self-attention over the pixels of a feature map (Flow++'s attention conditioner block).

References:
    Attention Is All You Need (Vaswani et al., 2017), arXiv:1706.03762.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275, §3.3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal_positions(length: int, channels: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The ``(length, channels)`` sinusoidal position encoding of Vaswani et al. (2017)."""
    position = torch.arange(length, dtype=dtype, device=device)[:, None]
    half = channels // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=dtype, device=device) / max(half, 1))
    angles = position * freq[None, :]
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], 1)
    return F.pad(enc, (0, channels - 2 * half))


class GatedAttention(nn.Module):
    """Multi-head self-attention across the ``H·W`` positions of ``(B, C, H, W)``, output gated ``a · σ(b)``.

    The pixels, with a position encoding added (sinusoidal, or a learned one passed in), attend to each other
    (``heads`` heads of ``C / heads`` channels, scaled dot products); the result goes through a linear map to ``2C``
    channels and the gate. The block returns the gated update only; the caller adds it to its input (a residual)
    and normalizes, as Flow++ does.

    Args:
        channels: feature channels ``C`` (divisible by ``heads``).
        heads: number of attention heads.
        dropout: dropout probability on the attended features before the gate (as Flow++'s code; dropping attention
            weights instead would cost a ``(B, heads, HW, HW)`` mask per block and rule out fused kernels).
    """

    def __init__(self, channels: int, *, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"expected channels divisible by heads >= 1, got channels={channels}, heads={heads}")
        self.channels, self.heads, self.dropout = channels, heads, dropout
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.gate = nn.Linear(channels, 2 * channels)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """The gated update for ``x``; ``positions`` ``(H·W, C)`` is a learned position embedding (``None``: the
        sinusoidal encoding)."""
        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"expected input of shape (batch, {self.channels}, H, W), got {tuple(x.shape)}")
        seq = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        if positions is None:
            positions = sinusoidal_positions(h * w, c, dtype=x.dtype, device=x.device)
        seq = seq + positions
        q, k, v = self.qkv(seq).view(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, h * w, c)
        if self.dropout > 0:
            out = F.dropout(out, self.dropout, self.training)
        a, g = self.gate(out).chunk(2, -1)
        return (a * torch.sigmoid(g)).transpose(1, 2).reshape(b, c, h, w)


__all__ = ["GatedAttention", "sinusoidal_positions"]
