"""`ImageFlow`: a flow over discrete images, with dequantization, logit pre-processing and bits per dimension.

The model holds three parts, in the normalizing direction:

1. a :class:`~tractable.dequantization.Dequantizer` that draws ``u ∈ [0, 1)^D`` (uniform or variational), and the
   scaling ``y = (x + u) / k`` onto the unit cube (log-determinant ``-D log k``);
2. the logit pre-processing ``Logit(α)`` (with its own log-determinant), the first layer of the transform;
3. the image transform (couplings, squeezes, factor-outs) and a standard-normal base of the image's shape.

``log_prob(x)`` of discrete images is the single-sample dequantization lower bound (stochastic), so an ``ImageFlow``
trains like any :class:`~tractable.Flow` by minimising ``-log_prob``; :meth:`ImageFlow.bpd` reports bits per dimension
as the papers do, optionally with the importance-weighted bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..dequantization import Dequantizer, bits_per_dim, importance_weighted, make_dequantizer
from ..distributions import StandardNormal
from ..flow import Flow, read_values
from ..transforms.base import Compose, Transform
from ..transforms.elementwise import Logit


class ImageFlow(Flow):
    """A flow over ``k``-level images ``(B, C, H, W)`` (values ``0, ..., k - 1``), trained on the dequantization bound.

    ``log_prob(x)`` returns ``log p_unit((x + u) / k) - D log k - log q(u|x)`` for one draw of ``u ~ q(u|x)``: a
    stochastic lower bound on ``log P(x)`` (exact in expectation for the bound), differentiable in every parameter,
    the dequantizer's included. :meth:`unit_log_prob` is the exact density of the continuous model on ``[0, 1)^D``.
    ``sample`` returns discrete images (as floats in the model's dtype); :meth:`sample_unit` the continuous samples.
    Both take a ``temperature`` ``T``: the latent is drawn from ``N(0, T² I)`` (Glow §5), which scales the learned
    conditional priors of factor-outs too.

    Args:
        transform: the image transform (normalizing direction), applied after the logit pre-processing.
        shape: the image shape ``(C, H, W)``.
        levels: the number of discrete levels ``k`` (256 for 8-bit images, 17 for scikit-learn's digits).
        dequantization: ``"uniform"``, ``"variational"`` or a :class:`~tractable.dequantization.Dequantizer`.
        alpha: the logit pre-processing's squeeze ``α`` (RealNVP: 0.05; the UvA tutorial's 1e-5 is ``α = 5e-6`` here).
        dequantizer: keyword arguments of :class:`~tractable.dequantization.VariationalDequantization` (for
            ``dequantization="variational"``).
        validate: check the input's shape and level range in ``log_prob``.

    Example:
        >>> import torch
        >>> from tractable.models.image_flow import ImageFlow
        >>> from tractable.transforms.image_coupling import ImageAffineCoupling
        >>> model = ImageFlow(ImageAffineCoupling(1, hidden=8), (1, 4, 4), levels=17)
        >>> x = torch.randint(0, 17, (5, 1, 4, 4)).float()
        >>> tuple(model.bpd(x).shape), tuple(model.sample(3, temperature=0.7).shape)
        ((5,), (3, 1, 4, 4))
    """

    def __init__(
        self,
        transform: Transform,
        shape: Sequence[int],
        *,
        levels: int = 256,
        dequantization: str | Dequantizer = "uniform",
        alpha: float = 0.05,
        dequantizer: dict | None = None,
        validate: bool = True,
    ):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"expected an image shape (C, H, W), got {shape}")
        if levels < 2:
            raise ValueError(f"expected levels >= 2, got {levels}")
        super().__init__(Compose(Logit(alpha), transform), StandardNormal(shape), validate=validate)
        self.levels, self.alpha = int(levels), float(alpha)
        self.dims = math.prod(shape)
        self.dequantizer = make_dequantizer(dequantization, shape, levels, dequantizer)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return self.base.event_shape  # type: ignore[return-value]

    def _levels_as_float(self, x: Tensor) -> Tensor:
        dtype = self.base._reference().dtype
        x = x.to(dtype) if x.dtype != dtype else x
        if self.validate:
            self._check_input(x)
            if read_values():  # not in a compiled graph, nor for rows checked up front
                self.check_levels(x)
        return x

    def check_levels(self, x: Tensor) -> None:
        """Raise a one-line ``ValueError`` unless every value of ``x`` is an integer level ``0..levels-1`` (a training
        loop checks all its rows once, then trains inside :func:`~tractable.flow.values_checked`)."""
        bad = (x < 0) | (x > self.levels - 1) | (x != torch.floor(x))
        if bool(bad.any()):
            raise ValueError(
                f"expected integer levels 0..{self.levels - 1}, got values in [{float(x.min())}, {float(x.max())}]"
            )

    def dequantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``((x + u) / k, log q(u|x))`` for one draw of the dequantization noise."""
        x = self._levels_as_float(x)
        u, log_q = self.dequantizer(x)
        return (x + u) / self.levels, log_q

    def unit_log_prob(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        """The exact log-density of the continuous model at ``y ∈ [0, 1)^D`` (logit pre-processing included)."""
        return super().log_prob(y, context)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The single-sample dequantization bound on ``log P(x)`` (nats) of discrete images ``x``; shape ``(B,)``."""
        y, log_q = self.dequantize(x)
        return super().log_prob(y, context) - self.dims * math.log(self.levels) - log_q

    def log_prob_iw(self, x: Tensor, samples: int = 16, context: Tensor | None = None) -> Tensor:
        """The importance-weighted bound with ``samples`` draws of ``u``: ``logsumexp_m(log w_m) - log M``."""
        if samples < 1:
            raise ValueError(f"expected samples >= 1, got {samples}")
        return importance_weighted(torch.stack([self.log_prob(x, context) for _ in range(samples)]))

    def bpd(self, x: Tensor, samples: int = 1, context: Tensor | None = None) -> Tensor:
        """Bits per dimension of each image: the single-sample bound (``samples=1``) or the importance-weighted one."""
        log_p = self.log_prob(x, context) if samples == 1 else self.log_prob_iw(x, samples, context)
        return bits_per_dim(log_p, self.dims)

    def sample_unit(self, n: int, context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        """``n`` continuous samples on the unit cube, the latent drawn from ``N(0, T² I)``."""
        return super().sample(n, context, temperature=temperature)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        """``n`` discrete images (levels ``0..k-1`` as floats), the latent drawn from ``N(0, T² I)``."""
        y = self.sample_unit(n, context, temperature=temperature)
        return torch.floor(y * self.levels).clamp(0, self.levels - 1)

    def extra_repr(self) -> str:
        return f"shape={self.image_shape}, levels={self.levels}, alpha={self.alpha}"


__all__ = ["ImageFlow"]
