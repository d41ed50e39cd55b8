"""Image reshaping bijections and the multi-scale architecture: squeeze, factor-out, and masks.

The multi-scale architecture of RealNVP and Glow alternates coupling layers with a *squeeze* (space-to-depth,
``(C, H, W) -> (4C, H/2, W/2)``) and *factors out* half of the channels, which then go straight to the latent while
the other half is processed further at the next, coarser scale. Glow gives the factored-out half a learned
conditional prior ``N(z2; μ(z1), σ(z1))``. Here every piece is written as a shape-preserving bijection, so a
multi-scale model is still ``Flow = base + transform`` with a standard-normal base of the data's shape:

* :class:`Squeeze` is the space-to-depth permutation (``ladj = 0``); :class:`Squeezed` runs an inner transform on the
  squeezed tensor and unsqueezes its output, so the chain keeps the data's shape.
* :class:`FactorOut` keeps ``z1`` (the first channels) and maps ``z2 -> (z2 - μ(z1)) · exp(-log σ(z1))``: against a
  standard-normal base this is exactly the conditional prior ``N(z2; μ(z1), σ(z1))``. With ``inner`` it also applies
  a transform to the kept channels only (the next scale).

References:
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §3.6.
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Transform

SQUEEZE_ORDERS = ("glow", "checkerboard")
#: The 2x2 sub-positions (dy, dx) in the channel order of the "checkerboard" squeeze: one checkerboard colour first.
#: The soft bound on the factor-out prior's ``|log σ|``: a scale between ``e^-5`` and ``e^5`` keeps deep stacks
#: stable while covering any data scale a logit-preprocessed image reaches.
PRIOR_LOG_SCALE_BOUND = 5.0
_CHECKER_POSITIONS = ((0, 0), (1, 1), (0, 1), (1, 0))


def check_image(x: Tensor, channels: int | None = None, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` is a batch of images ``(B, C, H, W)`` (with ``C == channels`` if given)."""
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        expected = f"(batch, {channels if channels is not None else 'C'}, H, W)"
        raise ValueError(f"expected {name} of shape {expected}, got {name} of shape {tuple(x.shape)}")


def checkerboard_mask(height: int, width: int, parity: int = 0, *, device: torch.device | None = None) -> Tensor:
    """A ``(1, 1, H, W)`` boolean checkerboard, ``True`` where ``(i + j) % 2 == parity`` (those entries pass
    unchanged)."""
    if parity not in (0, 1):
        raise ValueError(f"expected parity 0 or 1, got {parity}")
    i = torch.arange(height, device=device)
    j = torch.arange(width, device=device)
    return (((i[:, None] + j[None, :]) % 2) == parity).view(1, 1, height, width)


def channel_mask(channels: int, parity: int = 0, *, device: torch.device | None = None) -> Tensor:
    """A ``(1, C, 1, 1)`` boolean channel mask: the first ``C // 2`` channels pass (``parity=0``) or the others do."""
    if channels < 2:
        raise ValueError(f"a channel mask needs at least 2 channels, got channels={channels}")
    if parity not in (0, 1):
        raise ValueError(f"expected parity 0 or 1, got {parity}")
    return ((torch.arange(channels, device=device) < channels // 2) ^ bool(parity)).view(1, channels, 1, 1)


def squeeze(x: Tensor, order: str = "glow") -> Tensor:
    """Space-to-depth: ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` (see :class:`Squeeze` for the channel orders)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)
    if order == "glow":  # channel index c·4 + dy·2 + dx
        return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
    parts = [x[:, :, :, dy, :, dx] for dy, dx in _CHECKER_POSITIONS]  # channel index p·C + c
    return torch.cat(parts, 1)


def unsqueeze(x: Tensor, order: str = "glow") -> Tensor:
    """Depth-to-space, the inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    b, c4, h, w = x.shape
    c = c4 // 4
    if order == "glow":
        return x.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)
    out = x.new_empty(b, c, h, 2, w, 2)
    for p, (dy, dx) in enumerate(_CHECKER_POSITIONS):
        out[:, :, :, dy, :, dx] = x[:, p * c : (p + 1) * c]
    return out.reshape(b, c, 2 * h, 2 * w)


def _check_squeezable(x: Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"expected {name} of shape (batch, C, H, W) with even H and W, got shape {tuple(x.shape)}")


class Squeeze(Transform):
    """Space-to-depth ``(B, C, H, W) -> (B, 4C, H/2, W/2)``, a permutation of the entries (``ladj = 0``).

    Both directions are exact rearrangements. The channel order of the output:

    * ``"glow"`` (default; Glow's and the UvA tutorial's): channel ``4c + 2dy + dx`` holds pixel ``(2i + dy, 2j + dx)``
      of input channel ``c``.
    * ``"checkerboard"`` (RealNVP's ordered squeeze): the four sub-positions in the order ``(0,0), (1,1), (0,1),
      (1,0)``, each a block of ``C`` channels, so the first half of the output channels is one colour of the input's
      checkerboard: a channel mask after this squeeze continues a checkerboard coupling before it.

    Args:
        order: ``"glow"`` or ``"checkerboard"``.

    Example:
        >>> import torch
        >>> from tractable.transforms.reshape import Squeeze
        >>> y, ladj = Squeeze()(torch.randn(2, 3, 8, 8))
        >>> tuple(y.shape), tuple(ladj.shape)
        ((2, 12, 4, 4), (2,))

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §3.6.
    """

    def __init__(self, order: str = "glow"):
        super().__init__()
        if order not in SQUEEZE_ORDERS:
            raise ValueError(f"unknown squeeze order {order!r}; expected one of {', '.join(SQUEEZE_ORDERS)}")
        self.order = order

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_squeezable(x, "input")
        return squeeze(x, self.order), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if y.dim() != 4 or y.shape[1] % 4:
            raise ValueError(f"expected input of shape (batch, 4C, H, W), got input of shape {tuple(y.shape)}")
        return unsqueeze(y, self.order), y.new_zeros(y.shape[0])

    def extra_repr(self) -> str:
        return f"order={self.order!r}"


class Squeezed(Transform):
    """Run ``inner`` on the squeezed input and unsqueeze its output: a shape-preserving transform at half resolution.

    ``forward(x) = unsqueeze(inner(squeeze(x)))``; the ``ladj`` is ``inner``'s (the squeezes are permutations). An
    image-shaped context ``(B, C_c, H, W)`` is squeezed too, so conditional layers inside see it at their resolution;
    any other context is passed unchanged.

    Args:
        inner: the transform applied at the coarser scale (on ``(B, 4C, H/2, W/2)``).
        order: the squeeze's channel order (see :class:`Squeeze`).

    Example:
        >>> import torch
        >>> from tractable import InvertibleConv1x1, Squeezed
        >>> t = Squeezed(InvertibleConv1x1(4))  # a 1x1 convolution of the (4, 2, 2) squeezed image
        >>> y, ladj = t(torch.randn(3, 1, 4, 4))
        >>> tuple(y.shape), tuple(ladj.shape)
        ((3, 1, 4, 4), (3,))
    """

    def __init__(self, inner: Transform, order: str = "glow"):
        super().__init__()
        if not isinstance(inner, Transform):
            raise TypeError(f"expected a Transform, got {type(inner).__name__}")
        self.squeeze = Squeeze(order)
        self.inner = inner

    def _context(self, context: Tensor | None, x: Tensor) -> Tensor | None:
        if context is not None and context.dim() == 4 and context.shape[-2:] == x.shape[-2:]:
            return squeeze(context, self.squeeze.order)
        return context

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_squeezable(x, "input")
        y, ladj = self.inner(squeeze(x, self.squeeze.order), self._context(context, x))
        return unsqueeze(y, self.squeeze.order), ladj

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_squeezable(y, "input")
        x, ladj = self.inner.inverse(squeeze(y, self.squeeze.order), self._context(context, y))
        return unsqueeze(x, self.squeeze.order), ladj


class FactorOut(Transform):
    """Factor out channels with a learned conditional prior, as a bijection; optionally process the kept channels.

    The input's first ``keep`` channels ``z1`` are kept; the others ``z2`` are mapped to
    ``(z2 - μ(z1)) · exp(-log σ(z1))``, with ``μ, log σ`` from a zero-initialised 3x3 convolution of ``z1`` (Glow's
    ``split`` prior). Against a standard-normal base, ``N(ε) · |∂ε/∂z2|`` is exactly ``N(z2; μ(z1), σ(z1))``, so this
    layer *is* the learned conditional prior of the factored-out half. With ``inner``, the transform then applies
    ``inner`` to the kept channels only (the next scale of a multi-scale flow); the prior is computed from the
    *input* ``z1``, so the inverse first recovers ``z1 = inner⁻¹(y1)`` and then ``z2 = y2 · σ(z1) + μ(z1)``.

    Both directions are analytic (up to ``inner``). ``ladj = -Σ log σ(z1)`` over the factored-out entries, plus
    ``inner``'s. At initialisation the prior is ``N(0, I)`` (the map is the identity on ``z2``).

    Args:
        channels: number of input channels ``C``.
        keep: number of channels kept (default ``C // 2``).
        inner: a transform of the kept channels ``(B, keep, H, W)`` (``None``: identity).
        learn_prior: ``False`` gives the plain RealNVP factor-out (the identity on ``z2``, a fixed ``N(0, I)`` prior).

    Example:
        >>> import torch
        >>> from tractable.transforms.reshape import FactorOut
        >>> t = FactorOut(4)
        >>> x = torch.randn(3, 4, 2, 2)
        >>> y, ladj = t(x)
        >>> bool(torch.equal(y, x)), ladj.abs().max().item()  # identity at initialisation
        (True, 0.0)

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039 (split
        with a learned prior; openai/glow ``split2d``).
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §3.6.
    """

    def __init__(self, channels: int, keep: int | None = None, *, inner: Transform | None = None,
                 learn_prior: bool = True):
        super().__init__()
        keep = channels // 2 if keep is None else keep
        if channels < 2 or not 1 <= keep < channels:
            raise ValueError(f"expected channels >= 2 and 1 <= keep < channels, got channels={channels}, keep={keep}")
        if inner is not None and not isinstance(inner, Transform):
            raise TypeError(f"expected a Transform as inner, got {type(inner).__name__}")
        self.channels, self.keep, self.inner = channels, keep, inner
        self.prior: nn.Conv2d | None = None
        if learn_prior:
            self.prior = nn.Conv2d(keep, 2 * (channels - keep), 3, padding=1)
            nn.init.zeros_(self.prior.weight)
            nn.init.zeros_(self.prior.bias)

    def _prior(self, z1: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ)`` of the factored-out channels given the kept ones (``|log σ|`` softly bounded)."""
        if self.prior is None:
            zero = z1.new_zeros(z1.shape[0], self.channels - self.keep, *z1.shape[2:])
            return zero, zero
        loc, raw = F.conv2d(z1, self.prior.weight, self.prior.bias, padding=1).chunk(2, 1)
        return loc, PRIOR_LOG_SCALE_BOUND * torch.tanh(raw / PRIOR_LOG_SCALE_BOUND)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels)
        z1, z2 = x[:, : self.keep], x[:, self.keep :]
        loc, log_scale = self._prior(z1)
        e2 = (z2 - loc) * torch.exp(-log_scale)
        ladj = -log_scale.flatten(1).sum(1)
        if self.inner is not None:
            z1, inner_ladj = self.inner(z1, context)
            ladj = ladj + inner_ladj
        return torch.cat([z1, e2], 1), ladj

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(y, self.channels)
        y1, e2 = y[:, : self.keep], y[:, self.keep :]
        ladj = y.new_zeros(y.shape[0])
        if self.inner is not None:
            y1, ladj = self.inner.inverse(y1, context)
        loc, log_scale = self._prior(y1)
        z2 = torch.addcmul(loc, e2, torch.exp(log_scale))
        return torch.cat([y1, z2], 1), ladj + log_scale.flatten(1).sum(1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, keep={self.keep}, learn_prior={self.prior is not None}"


__all__ = [
    "PRIOR_LOG_SCALE_BOUND",
    "SQUEEZE_ORDERS",
    "FactorOut",
    "Squeeze",
    "Squeezed",
    "channel_mask",
    "check_image",
    "checkerboard_mask",
    "squeeze",
    "unsqueeze",
]
