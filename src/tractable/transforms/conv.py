"""The invertible 1x1 convolution of Glow, LU-parameterised: a learnable channel mixing with a cheap determinant.

References:
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039, §3.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .linear import LUTransform
from .reshape import check_image


class InvertibleConv1x1(LUTransform):
    """A 1x1 convolution ``y[:, :, i, j] = W x[:, :, i, j]`` with ``W = P L (U + diag(exp(s)))``, Glow's LU form.

    The LU core is :class:`~tractable.transforms.linear.LUTransform`: ``det W > 0`` and ``ladj = H · W · Σ s`` for
    every image, with no decomposition at run time. Directions: ``forward`` is one ``conv2d``; ``inverse`` is exact,
    with two triangular solves (never an explicit inverse). The map has no bias (Glow pairs it with an ActNorm, which
    has one).

    Args:
        channels: number of channels ``C``.
        init: ``"orthogonal"`` (default, Glow: ``W`` a random rotation, ``det W = 1``, factorised once; ``P`` is then
            fixed) or ``"identity"``.

    Example:
        >>> import torch
        >>> from tractable.transforms.conv import InvertibleConv1x1
        >>> t = InvertibleConv1x1(4)
        >>> x = torch.randn(2, 4, 5, 5)
        >>> y, ladj = t(x)
        >>> bool(torch.allclose(t.inverse(y)[0], x, atol=1e-5)), bool(ladj.abs().max() < 1e-4)
        (True, True)

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039, §3.2.
    """

    def __init__(self, channels: int, *, init: str = "orthogonal"):
        super().__init__(channels, init)
        self.channels = channels

    def _ladj(self, x: Tensor) -> Tensor:
        return (x.shape[-2] * x.shape[-1] * self.log_diag.sum()).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels)
        return F.conv2d(x, self.weight()[:, :, None, None]), self._ladj(x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(y, self.channels)
        lower, upper = self.factors()
        b, c, h, w = y.shape
        # Columns r of the (C, B·H·W) matrix satisfy (L U x)[order] = r: undo P, then solve L v = r, U x = v.
        r = y.permute(1, 0, 2, 3).reshape(c, -1).index_select(0, self.inverse_order)
        v = torch.linalg.solve_triangular(lower, r, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, v, upper=True)
        return x.reshape(c, b, h, w).permute(1, 0, 2, 3), -self._ladj(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, init={self.init!r}"


__all__ = ["InvertibleConv1x1"]
