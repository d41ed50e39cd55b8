"""Elementwise maps: families of increasing scalar maps ``y = g(x; θ)`` with per-element parameters ``θ``.

Coupling and autoregressive layers share this piece, on vectors and images alike: a conditioner network produces
``θ`` (``params`` numbers per transformed element), and the map turns ``x`` into ``y`` with its elementwise
``log g'(x)``. Each family also says which parameters make it the identity, so a conditioner whose last layer has zero
weights and that bias starts every layer as the identity (as in nflows). The families: :class:`AffineMap`,
:class:`AdditiveMap` here, :class:`~tractable.transforms.splines.RQSplineMap` and
:class:`~tractable.transforms.logistic_mixture.LogisticMixtureMap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def params_axis(theta: Tensor) -> int:
    """The axis the maps move the parameters of ``theta`` (``S + (params,)``) to before taking them apart.

    Right after the first event axis: the last axis for vectors ``(B, D)``, axis 2 for images ``(B, C, H, W)`` (the
    layout of an image conditioner's output ``(B, C · params, H, W)``, so the maps' operations and their gradients
    keep that layout and need no copies).
    """
    return min(2, theta.dim() - 1)


def soft_bound(raw: Tensor, bound: float | Tensor) -> Tensor:
    """``bound · tanh(raw / bound)``, computed as ``2 bound · σ(2 raw / bound) − bound``: the same function, and
    two to three times faster on CPU with its gradient (torch's ``tanh`` kernel is several times slower than its
    ``sigmoid``). The sigmoid and the shift run in place on the fresh products (neither product is saved for the
    backward pass): two batch-sized allocations fewer, whose first writes would go to memory out of the cache."""
    u = raw * (2 / bound)
    u.sigmoid_()
    return (u * (2 * bound)).sub_(bound)


class ElementwiseMap(nn.Module):
    """A family of increasing scalar maps, parameterized by ``params`` unconstrained numbers per element: the piece a
    :class:`~tractable.transforms.coupling.Coupling` or a
    :class:`~tractable.transforms.autoregressive.MaskedAutoregressive` layer applies to the entries it transforms.

    The contract of a subclass:

    - ``params``: a class attribute, the number of parameters per element; the conditioner outputs that many numbers
      for every transformed entry.
    - :meth:`forward` ``(x, theta) -> (y, log dy/dx)`` and :meth:`inverse` ``(y, theta) -> (x, log dx/dy)``, both
      elementwise: ``x`` has any shape ``S`` (``(B, D)`` for vectors, ``(B, C, H, W)`` for images), ``theta`` the shape
      ``S + (params,)`` (each element's parameters on the last axis, in any memory layout: a view of a conditioner's
      output) and the log-derivatives have the shape ``S`` — *not* summed; the layer sums them.
    - Any real ``theta`` must give an increasing (so invertible) map: constrain inside (``exp``, ``softplus``,
      ``tanh`` bounds), never expect the conditioner to.
    - :meth:`identity`: the ``theta`` of the identity map, shape ``(params,)``; the conditioners start with a zero last
      layer and this bias, so a new layer is the identity.
    - :meth:`select` ``(i)``: the map of feature ``i`` alone, for a map whose own parameters differ by feature (whose
      elements' last axis is then the feature axis); the default returns the map itself.

    A map is an ``nn.Module`` so that it may hold parameters of its own (a learned bound).

    Example:
        A map of your own — the sinh-arcsinh of Jones & Pewsey (2009), ``y = sinh(e^a·asinh(x) − b)``, two parameters
        — in a coupling layer, checked against the contract by :func:`tractable.testing.check_transform`:

        >>> import torch
        >>> from tractable import Coupling, ElementwiseMap, VectorSplit, mlp_conditioner
        >>> from tractable.testing import check_transform, randomised
        >>> class SinhArcsinhMap(ElementwiseMap):
        ...     params = 2  # theta = (a, b); a = log tail weight, b = skew; identity at 0
        ...     def forward(self, x, theta):
        ...         a, b = theta.unbind(-1)
        ...         u = torch.exp(a) * torch.asinh(x) - b
        ...         return torch.sinh(u), torch.log(torch.cosh(u)) + a - 0.5 * torch.log1p(x * x)
        ...     def inverse(self, y, theta):
        ...         a, b = theta.unbind(-1)
        ...         v = (torch.asinh(y) + b) * torch.exp(-a)
        ...         return torch.sinh(v), torch.log(torch.cosh(v)) - a - 0.5 * torch.log1p(y * y)
        >>> split = VectorSplit(torch.tensor([True, False, True, False]))
        >>> layer = Coupling(split, SinhArcsinhMap(), mlp_conditioner(split, SinhArcsinhMap(), hidden=8))
        >>> _ = torch.manual_seed(0)  # randomised draws from the global generator
        >>> check_transform(randomised(layer, 0.3), features=4)
    """

    params: int = 0

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log dy/dx)``: the map of each element of ``x`` under its parameters ``theta[..., :]`` and its
        elementwise log-derivative, both of ``x``'s shape ``S`` (``theta``: ``S + (params,)``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, theta) -> (y, log dy/dx)")

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log dx/dy)``: the inverse of :meth:`forward` at the same ``theta``, elementwise (so ``log dx/dy`` is
        minus the forward log-derivative at ``x``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement inverse(y, theta) -> (x, log dx/dy)")

    def identity(self) -> Tensor:
        """Unconstrained parameters (shape ``(params,)``) for which the map is the identity (zeros by default;
        override when zero is not the identity, as for a spline's widths)."""
        return torch.zeros(self.params)

    def select(self, feature: int) -> ElementwiseMap:
        """The map that feature ``feature`` alone is given to (the sequential inverse of an autoregressive layer
        passes one feature at a time): the map itself, unless its own parameters differ by feature."""
        return self


class AffineMap(ElementwiseMap):
    """``y = x · exp(s) + t`` with a softly bounded log-scale ``s = b · tanh(ŝ / b)``; ``θ = (t, ŝ)``, identity at 0.

    Bounding the log-scale keeps deep RealNVP/MAF/Glow stacks stable (the unbounded ``exp`` is the classic source of
    NaN). Both directions are analytic.

    Args:
        bound: the largest ``|log scale|`` ``b`` (default 3, a factor of about 20 per layer); with ``learned_bound``
            its initial value.
        learned_bound: learn ``b = exp(f)``, a tensor of this shape broadcast against the transformed entries
            (``(C, 1, 1)``: one per channel of an image, ``(D,)``: one per feature of a vector); ``None``: a fixed
            bound. The UvA tutorial's ``scaling_factor``; for coupling layers, which map the whole transformed part
            at once.

    Example:
        >>> import torch
        >>> from tractable.transforms.maps import AffineMap
        >>> y, log_d = AffineMap()(torch.ones(2, 3), torch.zeros(2, 3, 2))
        >>> y.tolist(), float(log_d.abs().max())
        ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], 0.0)

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    """

    params = 2

    def __init__(self, bound: float = 3.0, *, learned_bound: Sequence[int] | None = None):
        super().__init__()
        if not bound > 0:
            raise ValueError(f"expected a positive log-scale bound, got {bound}")
        self.bound = float(bound)
        self.log_bound: nn.Parameter | None = None
        if learned_bound is not None:
            self.bound_shape = tuple(int(s) for s in learned_bound)
            if not self.bound_shape or min(self.bound_shape) < 1:
                raise ValueError(f"expected a positive shape for the learned bound, got {learned_bound}")
            # Stored flat (one number per channel or feature), viewed in bound_shape where it is used.
            self.log_bound = nn.Parameter(torch.full((math.prod(self.bound_shape),), math.log(bound)))

    def _shift_log_scale(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        # One backward op (a stack) instead of two zero-filled slices. The stack is laid out like theta's storage:
        # for parameter-major vectors (MADE's output, where the last dim is strided) unbinding the transposed view
        # makes the gradient land contiguous in that layout, which saves a copy per layer in backward.
        d = params_axis(theta)
        if d != theta.dim() - 1:
            shift, raw = theta.movedim(-1, d).unbind(d)
        elif theta.dim() >= 2 and theta.stride(-1) != 1:
            shift, raw = theta.transpose(-1, -2).unbind(-2)
        else:
            shift, raw = theta.unbind(-1)
        if self.log_bound is None:
            return shift, soft_bound(raw, self.bound)
        return shift, soft_bound(raw, torch.exp(self.log_bound).view(self.bound_shape))

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(theta)
        return torch.addcmul(shift, x, torch.exp(log_scale)), log_scale

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(theta)
        return (y - shift) * torch.exp(-log_scale), -log_scale

    def extra_repr(self) -> str:
        learned = f", learned_bound={self.bound_shape}" if self.log_bound is not None else ""
        return f"bound={self.bound}{learned}"


class AdditiveMap(ElementwiseMap):
    """``y = x + t`` (NICE): volume preserving, ``θ = (t,)``, identity at ``θ = 0``.

    Example:
        >>> import torch
        >>> from tractable import AdditiveMap
        >>> m = AdditiveMap()
        >>> y, ladj = m(torch.tensor([[0.5, -1.0]]), torch.tensor([[[1.0], [2.0]]]))  # x and θ = (t,) per feature
        >>> y.tolist(), ladj.tolist()  # the log-derivative of each entry
        ([[1.5, 1.0]], [[0.0, 0.0]])

    References:
        NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014), arXiv:1410.8516.
    """

    params = 1

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return x + theta[..., 0], torch.zeros_like(x)

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return y - theta[..., 0], torch.zeros_like(y)


__all__ = ["AdditiveMap", "AffineMap", "ElementwiseMap", "params_axis", "soft_bound"]
