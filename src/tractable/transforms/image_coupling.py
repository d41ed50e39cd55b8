"""Coupling layers for images: a checkerboard, column or channel mask and a gated convolutional conditioner.

:class:`ImageCoupling` holds what every image coupling shares: the mask (which entries pass unchanged and condition
the others), the conditioner (a :class:`~tractable.nn.convnets.GatedResNet`, optionally with attention, reading an
optional image-shaped context) and the bookkeeping of the ``ladj``. Subclasses give the elementwise map:
:class:`ImageAffineCoupling` (RealNVP, Glow) here, and the Flow++ mixture-of-logistics CDF coupling in
:mod:`tractable.transforms.logistic_mixture`.

References:
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §3.4-3.5.
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..nn.convnets import GatedResNet
from .base import Transform
from .reshape import check_image, checkerboard_mask

MASKS = ("checkerboard", "channel", "columns")


class ImageCoupling(Transform):
    """A coupling layer on images ``(B, C, H, W)``: ``y_B = g(x_B; θ(x_A, c))``, ``y_A = x_A``.

    Masks: ``"checkerboard"`` (entries with ``(i + j) % 2 == parity`` pass; the conditioner reads the masked input
    ``x · mask`` at full resolution) or ``"channel"`` (the first ``C // 2`` channels pass for ``parity=0``, the others
    for ``parity=1``; needs ``C >= 2``) or ``"columns"`` (the even columns pass for ``parity=0``, the odd ones for
    ``parity=1``; the conditioner reads the passing half as a ``(C, H, W/2)`` image and writes the other half's
    parameters at that size: Flow++'s "checkerboard split", half the convolutions and a quarter of the attention of
    a full-resolution checkerboard; needs an even width). The conditioner's last convolution is zero-initialised and an all-zero
    parameter vector is the identity map for every subclass, so the layer starts as the exact identity.

    Subclasses set :attr:`params` (numbers per transformed entry) and implement :meth:`_map` and :meth:`_unmap`.

    Args:
        channels: number of input channels ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        parity: which half of the mask passes (0 or 1); alternate it between consecutive layers.
        hidden: channels of the conditioner's hidden layers.
        blocks: gated residual blocks in the conditioner.
        context_channels: channels of an image-shaped context ``(B, C_c, H, W)`` the conditioner reads (0: none).
        attention: add multi-head self-attention to the conditioner's blocks (Flow++).
        heads: attention heads.
        dropout: dropout probability in the conditioner (use ``eval()`` to sample or evaluate).
        output_activation: concat-ELU before the conditioner's last convolution (``False``: Flow++'s released
            code, a plain convolution of the hidden features).
        positions: ``(H, W)`` of the images for a learned position embedding in the conditioner's attention
            (Flow++'s code); ``None``: sinusoidal.
    """

    params: int = 2

    def __init__(
        self,
        channels: int,
        *,
        mask: str = "checkerboard",
        parity: int = 0,
        hidden: int = 64,
        blocks: int = 2,
        context_channels: int = 0,
        attention: bool = False,
        heads: int = 4,
        dropout: float = 0.0,
        output_activation: bool = True,
        positions: tuple[int, int] | None = None,
    ):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"unknown mask {mask!r}; expected one of {', '.join(MASKS)}")
        if parity not in (0, 1):
            raise ValueError(f"expected parity 0 or 1, got {parity}")
        if channels < 1 or (mask == "channel" and channels < 2):
            raise ValueError(f"a {mask} coupling needs channels >= {2 if mask == 'channel' else 1}, got {channels}")
        self.channels, self.mask, self.parity, self.context_channels = channels, mask, parity, context_channels
        half = channels // 2
        if mask == "channel":
            self.n_pass = half if parity == 0 else channels - half
            self.n_transformed = channels - self.n_pass
        else:  # checkerboard and columns: every channel passes at some pixels
            self.n_pass = self.n_transformed = channels
        self.conditioner = GatedResNet(
            self.n_pass, self.n_transformed * self.params, hidden=hidden, blocks=blocks,
            context_channels=context_channels * (2 if mask == "columns" else 1), attention=attention, heads=heads,
            dropout=dropout,
            output_activation=output_activation, positions=positions,
        )

    # --- the elementwise map: subclasses -------------------------------------------------------------------------
    def _map(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log dy/dx)`` elementwise; ``x`` is ``(B, C_t, H, W)``, ``params`` ``(B, C_t, params, H, W)``."""
        raise NotImplementedError

    def _unmap(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log dx/dy)`` elementwise, the inverse of :meth:`_map`."""
        raise NotImplementedError

    # --- the coupling -------------------------------------------------------------------------------------------
    def _check_context(self, x: Tensor, context: Tensor | None) -> Tensor | None:
        if not self.context_channels:
            return None
        if context is None:
            raise ValueError(
                f"this coupling is conditional: expected a context of shape (batch, {self.context_channels}, "
                f"{x.shape[-2]}, {x.shape[-1]}), got None"
            )
        return context

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(passing, transformed)`` channels of a channel-masked input."""
        half = self.channels // 2
        first, second = x[:, :half], x[:, half:]
        return (first, second) if self.parity == 0 else (second, first)

    def _join(self, passing: Tensor, transformed: Tensor) -> Tensor:
        return torch.cat([passing, transformed] if self.parity == 0 else [transformed, passing], 1)

    def _params(self, x_pass: Tensor, context: Tensor | None) -> Tensor:
        b, _, h, w = x_pass.shape
        return self.conditioner(x_pass, context).view(b, self.n_transformed, self.params, h, w)

    def _couple(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels)
        context = self._check_context(x, context)
        fn = self._unmap if inverse else self._map
        if self.mask == "channel":
            x_pass, x_t = self._split(x)
            y_t, log_d = fn(x_t, self._params(x_pass, context))
            return self._join(x_pass, y_t), log_d.flatten(1).sum(1)
        if self.mask == "columns":
            if x.shape[-1] % 2:
                raise ValueError(f"a columns coupling needs an even width, got images of shape {tuple(x.shape)}")
            x_pass, x_t = x[..., self.parity :: 2], x[..., 1 - self.parity :: 2]
            if context is not None:  # both column halves of the context, side by side in the channels
                context = torch.cat([context[..., 0::2], context[..., 1::2]], 1)
            y_t, log_d = fn(x_t, self._params(x_pass, context))
            pair = (x_pass, y_t) if self.parity == 0 else (y_t, x_pass)
            return torch.stack(pair, -1).flatten(-2), log_d.flatten(1).sum(1)
        keep = checkerboard_mask(x.shape[-2], x.shape[-1], self.parity, device=x.device)
        y_t, log_d = fn(x, self._params(x * keep, context))
        return torch.where(keep, x, y_t), torch.where(keep, 0.0, log_d).flatten(1).sum(1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, inverse=False)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(y, context, inverse=True)

    def extra_repr(self) -> str:
        extra = f", context_channels={self.context_channels}" if self.context_channels else ""
        return f"channels={self.channels}, mask={self.mask!r}, parity={self.parity}{extra}"


class ImageAffineCoupling(ImageCoupling):
    """Affine image coupling ``y = x · exp(s) + t`` with ``s = bound · tanh(ŝ / bound)`` (RealNVP, Glow).

    ``(t, ŝ)`` come from a gated convolutional ResNet of the passing entries; the tanh bound keeps deep stacks stable.
    Both directions are analytic; ``ladj = Σ s`` over the transformed entries. See :class:`ImageCoupling` for the
    masks and the conditioner's arguments.

    Args:
        channels: number of input channels.
        bound: the largest ``|log scale|`` per layer (default 2); with ``learn_bound`` its initial value.
        learn_bound: learn the bound per transformed channel (the UvA tutorial's ``scaling_factor``,
            ``s = b · tanh(ŝ / b)`` with ``b = exp(f)`` learned, ``f = 0`` at the start for ``bound=1``).
        **kwargs: the mask and conditioner arguments of :class:`ImageCoupling`.

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

    params = 2

    def __init__(self, channels: int, *, bound: float = 2.0, learn_bound: bool = False, **kwargs):
        if not bound > 0:
            raise ValueError(f"expected a positive log-scale bound, got {bound}")
        super().__init__(channels, **kwargs)
        self.bound = float(bound)
        self.log_bound = nn.Parameter(torch.full((self.n_transformed,), math.log(bound))) if learn_bound else None

    def _shift_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.unbind(2)
        if self.log_bound is None:
            return shift, self.bound * torch.tanh(raw / self.bound)
        bound = torch.exp(self.log_bound).view(1, -1, 1, 1)
        return shift, bound * torch.tanh(raw / bound)

    def _map(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(params)
        return torch.addcmul(shift, x, torch.exp(log_scale)), log_scale

    def _unmap(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(params)
        return (y - shift) * torch.exp(-log_scale), -log_scale


__all__ = ["MASKS", "ImageAffineCoupling", "ImageCoupling"]
