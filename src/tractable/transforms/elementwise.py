"""Elementwise bijections: a learnable affine map, a fixed standardization, the sigmoid and the logit (RealNVP's
pre-processing).

All act on each entry independently, on inputs of any shape ``(batch, ...)``; the ``ladj`` sums the elementwise
log-derivatives over the event dimensions.

References:
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Transform, check_features


def _sum_event(t: Tensor, event_dims: int | None) -> Tensor:
    """Sum ``t`` over its event dimensions: the last ``event_dims``, or all but the first when ``None``."""
    if event_dims is None:
        return t.flatten(1).sum(1) if t.dim() > 1 else t
    return t.flatten(-event_dims).sum(-1) if event_dims else t


def _check_event_dims(x: Tensor, event_dims: int | None) -> None:
    needed = 1 if event_dims is None else event_dims + 1
    if x.dim() < needed:
        raise ValueError(
            f"expected an input with a batch dimension and {event_dims if event_dims is not None else 'any'} event "
            f"dimension(s), got input of shape {tuple(x.shape)}"
        )


def _log_sigmoid_both(x: Tensor) -> Tensor:
    """``log σ(x) + log σ(-x) = log σ'(x)``, stable for large ``|x|``."""
    a = x.abs()
    return -(a + 2 * F.softplus(-a))


class ElementwiseAffine(Transform):
    """A learnable elementwise affine map ``y = x · exp(s) + t`` (identity at initialisation).

    Both directions are analytic; ``ladj = Σ s`` is the same for every input.

    Args:
        features: the event shape: an int for vectors ``(..., features)``, or a tuple such as ``(C, H, W)`` for one
            shift and log-scale per entry of an image.

    Example:
        >>> import torch
        >>> from tractable.transforms.elementwise import ElementwiseAffine
        >>> t = ElementwiseAffine(3)
        >>> with torch.no_grad():
        ...     y, ladj = t(torch.randn(4, 3))
        >>> tuple(ladj.shape), float(ladj.abs().max())
        ((4,), 0.0)
    """

    def __init__(self, features: int | Sequence[int]):
        super().__init__()
        shape = (features,) if isinstance(features, int) else tuple(int(f) for f in features)
        if not shape or any(f < 1 for f in shape):
            raise ValueError(f"expected a positive number of features (or event shape), got {features}")
        self.features = features if isinstance(features, int) else shape
        self.event_shape = shape
        self.shift = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def _batch(self, x: Tensor) -> torch.Size:
        k = len(self.event_shape)
        if x.dim() <= k or tuple(x.shape[-k:]) != self.event_shape:
            expected = ", ".join(map(str, self.event_shape))
            raise ValueError(f"expected input of shape (batch, {expected}), got input of shape {tuple(x.shape)}")
        return x.shape[:-k]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch = self._batch(x)
        return torch.addcmul(self.shift, x, self.log_scale.exp()), self.log_scale.sum().expand(batch)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch = self._batch(y)
        return (y - self.shift) * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(batch)

    def extra_repr(self) -> str:
        return f"features={self.features}"


class StandardizeTransform(Transform):
    """The fixed elementwise map ``x ↦ (x − μ)/σ`` (forward) with ``ladj = −Σ log σ``; analytic both ways.

    ``Flow(Compose(StandardizeTransform(μ, σ), flow.transform), flow.base)`` is the density, in the original units, of
    a flow trained on standardized data. ``μ`` and ``σ`` are float64 buffers (saved in ``state_dict``, moved by
    ``.to()``), not parameters, cast to the input's dtype in each call.

    Args:
        mean: ``μ``, one per feature.
        std: ``σ``, one per feature (positive).

    Example:
        >>> import torch
        >>> from tractable.transforms.elementwise import StandardizeTransform
        >>> y, ladj = StandardizeTransform([1.0, 2.0], [2.0, 4.0])(torch.tensor([[3.0, 6.0]]))
        >>> y.tolist(), round(float(ladj[0]), 4)
        ([[1.0, 1.0]], -2.0794)
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        # float64 buffers, cast to the input's dtype per call: no precision is lost to a float32 round trip.
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float64))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float64))
        if self.mean.dim() != 1 or self.mean.shape != self.std.shape:
            raise ValueError(f"expected one mean and one std per feature, got {self.mean.numel()} means and "
                             f"{self.std.numel()} stds")
        self.features = self.mean.numel()

    def _ladj(self, x: Tensor) -> Tensor:
        return (-torch.log(self.std).sum()).to(x).expand(x.shape[:-1])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        return (x - self.mean.to(x)) / self.std.to(x), self._ladj(x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(y, self.features)
        return y * self.std.to(y) + self.mean.to(y), -self._ladj(y)


class Sigmoid(Transform):
    """The logistic sigmoid ``y = σ(x) = 1 / (1 + e^{-x})``, mapping ``R`` onto ``(0, 1)`` elementwise.

    Both directions are analytic: ``forward`` maps ``R -> (0, 1)`` with ``log σ'(x) = log σ(x) + log σ(-x)`` computed
    stably (finite for any finite ``x``), ``inverse`` is the logit on ``(0, 1)`` (``±inf`` at the boundaries, NaN
    outside). Use it to move a flow onto the unit cube (e.g. ``Compose(..., Sigmoid())`` in the generative direction
    is a :class:`Logit` in the normalizing one).

    Args:
        event_dims: how many trailing dimensions form one event (their log-derivatives are summed); ``None`` (the
            default) takes every dimension after the first as event, as for inputs ``(B, ...)``.

    Example:
        >>> import torch
        >>> from tractable.transforms.elementwise import Sigmoid
        >>> y, ladj = Sigmoid()(torch.zeros(2, 3, 4, 4))
        >>> float(y[0, 0, 0, 0]), tuple(ladj.shape)
        (0.5, (2,))
    """

    def __init__(self, *, event_dims: int | None = None):
        super().__init__()
        if event_dims is not None and event_dims < 0:
            raise ValueError(f"expected event_dims >= 0 or None, got {event_dims}")
        self.event_dims = event_dims

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_event_dims(x, self.event_dims)
        return torch.sigmoid(x), _sum_event(_log_sigmoid_both(x), self.event_dims)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_event_dims(y, self.event_dims)
        log_y, log_1my = torch.log(y), torch.log1p(-y)
        return log_y - log_1my, -_sum_event(log_y + log_1my, self.event_dims)

    def extra_repr(self) -> str:
        return "" if self.event_dims is None else f"event_dims={self.event_dims}"


class Logit(Transform):
    """The logit ``y = log(u / (1 - u))`` of ``u = α + (1 - 2α) x``, the RealNVP pre-processing of data in ``[0, 1]``.

    The squeeze ``x -> α + (1 - 2α) x`` keeps the logit away from ``±inf`` at the boundaries of ``[0, 1]`` (RealNVP
    used ``α = 0.05`` on images); it contributes ``log(1 - 2α)`` per entry to the ``ladj``, so likelihoods stay exact.

    Domains: ``forward`` maps ``(0, 1)`` (``α = 0``) or the closed ``[0, 1]`` (``α > 0``; in fact
    ``(-α/(1-2α), (1-α)/(1-2α))``) onto ``R``; ``inverse`` maps ``R`` back onto that interval. Both directions are
    analytic. Outside the domain the forward returns NaN.

    Args:
        alpha: the squeeze, ``0 <= α < 1/2``.
        event_dims: trailing event dimensions summed in the ``ladj``; ``None`` (default): all but the first.

    Example:
        >>> import torch
        >>> from tractable.transforms.elementwise import Logit
        >>> t = Logit(alpha=0.05)
        >>> x = torch.rand(8, 1, 28, 28)
        >>> y, ladj = t(x)
        >>> bool(torch.allclose(t.inverse(y)[0], x, atol=1e-5)), tuple(ladj.shape)
        (True, (8,))

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §4.1.
    """

    def __init__(self, alpha: float = 0.0, *, event_dims: int | None = None):
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"expected 0 <= alpha < 0.5, got alpha={alpha}")
        if event_dims is not None and event_dims < 0:
            raise ValueError(f"expected event_dims >= 0 or None, got {event_dims}")
        self.alpha, self.event_dims = float(alpha), event_dims
        self._log_squeeze = math.log1p(-2 * self.alpha)

    def _count(self, x: Tensor) -> int:
        if self.event_dims is None:
            return x[0].numel() if x.dim() > 1 else 1
        return math.prod(x.shape[x.dim() - self.event_dims :])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_event_dims(x, self.event_dims)
        u = x * (1 - 2 * self.alpha) + self.alpha if self.alpha else x
        log_u, log_1mu = torch.log(u), torch.log1p(-u)
        ladj = self._count(x) * self._log_squeeze - _sum_event(log_u + log_1mu, self.event_dims)
        return log_u - log_1mu, ladj

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_event_dims(y, self.event_dims)
        u = torch.sigmoid(y)
        x = (u - self.alpha) / (1 - 2 * self.alpha) if self.alpha else u
        return x, _sum_event(_log_sigmoid_both(y), self.event_dims) - self._count(y) * self._log_squeeze

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + ("" if self.event_dims is None else f", event_dims={self.event_dims}")


__all__ = ["ElementwiseAffine", "Logit", "Sigmoid", "StandardizeTransform"]
