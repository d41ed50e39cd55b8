"""The invertible 1x1 convolution of Glow, LU-parameterised: a learnable channel mixing with a cheap determinant.

References:
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039, §3.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Transform
from .reshape import check_image


class InvertibleConv1x1(Transform):
    """A 1x1 convolution ``y[:, :, i, j] = W x[:, :, i, j]`` with ``W = P L (U + diag(exp(s)))``, Glow's LU form.

    ``P`` is a fixed permutation (a buffer), ``L`` unit lower triangular, ``U`` strictly upper triangular and the
    diagonal ``exp(s)`` positive, so ``det W > 0`` and ``ladj = H · W · Σ s`` for every image, with no decomposition
    at run time. Directions: ``forward`` is one ``conv2d``; ``inverse`` is exact, with two triangular solves (never an
    explicit inverse). The map has no bias (Glow pairs it with an ActNorm, which has one).

    Args:
        channels: number of channels ``C``.
        init: ``"rotation"`` (default, Glow: ``W`` a random rotation, ``det W = 1``, factorised once; ``P`` is then
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

    def __init__(self, channels: int, *, init: str = "rotation"):
        super().__init__()
        if channels < 1:
            raise ValueError(f"expected channels >= 1, got {channels}")
        if init == "identity":
            order = torch.arange(channels)
            lower = upper = torch.zeros(channels, channels)
            log_diag = torch.zeros(channels)
        elif init == "rotation":
            # A random orthogonal matrix whose LU permutation is even (redrawn otherwise, half the draws), with the
            # columns' signs flipped so that U's diagonal is positive: then W is a rotation (det W = +1).
            for _ in range(100):
                q = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
                p, lower, upper = torch.linalg.lu(q)
                if torch.linalg.det(p) > 0:
                    break
            p, lower, upper = torch.linalg.lu(q * torch.sign(upper.diagonal()))
            order = p.argmax(1)
            log_diag = torch.log(upper.diagonal())
            lower, upper, log_diag = lower.float(), upper.float(), log_diag.float()
        else:
            raise ValueError(f"unknown init {init!r}; expected 'rotation' or 'identity'")
        self.channels, self.init = channels, init
        self.lower = nn.Parameter(lower.tril(-1).clone())
        self.upper = nn.Parameter(upper.triu(1).clone())
        self.log_diag = nn.Parameter(log_diag.clone())
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(L, U)``: the unit lower and the upper triangular factors (``W = P L U``)."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        return torch.tril(self.lower, -1) + eye, torch.triu(self.upper, 1) + torch.diag(torch.exp(self.log_diag))

    def weight(self) -> Tensor:
        """The ``(C, C)`` matrix ``W``."""
        lower, upper = self.factors()
        return (lower @ upper).index_select(0, self.order)

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
