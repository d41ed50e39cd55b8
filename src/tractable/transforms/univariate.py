"""Families of monotone scalar maps ``y = g(x; θ)`` applied elementwise, with per-element parameters ``θ``.

Coupling and autoregressive layers share this piece: a conditioner network produces ``θ`` (``params`` numbers per
transformed element), and the map family turns ``x`` into ``y`` with its elementwise ``log g'(x)``. Each family
also says which parameters make it the identity, so a conditioner whose last layer has zero weights and that bias
starts every layer as the identity (as in nflows).
"""

from __future__ import annotations

import torch
from torch import Tensor


class ElementwiseMap:
    """A family of increasing scalar maps, parameterized by ``params`` unconstrained numbers per element.

    ``forward(x, theta)`` and ``inverse(y, theta)`` take ``x`` of shape ``S`` and ``theta`` of shape ``S + (params,)``
    and return the output and the *elementwise* log-derivative (shape ``S``), which callers sum over the event.
    """

    params: int = 0

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def identity(self) -> Tensor:
        """Unconstrained parameters (shape ``(params,)``) for which the map is the identity."""
        return torch.zeros(self.params)


class AffineMap(ElementwiseMap):
    """``y = x · exp(s) + t`` with a softly bounded log-scale ``s = bound · tanh(ŝ / bound)``.

    Bounding the log-scale keeps deep RealNVP/MAF stacks stable (the unbounded ``exp`` is the classic source of NaN);
    ``θ = (t, ŝ)``, identity at ``θ = 0``.

    Args:
        bound: the largest ``|log scale|`` (default 3, i.e. a factor of about 20 per layer).
    """

    params = 2

    def __init__(self, bound: float = 3.0):
        if not bound > 0:
            raise ValueError(f"expected a positive log-scale bound, got {bound}")
        self.bound = bound

    def _shift_log_scale(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        # One backward op (a stack) instead of two zero-filled slices. The stack is laid out like theta's storage:
        # for parameter-major storage (MADE's output, where the last dim is strided) unbinding the transposed view
        # makes the gradient land contiguous in that layout, which saves a copy per layer in backward.
        if theta.dim() >= 2 and theta.stride(-1) != 1:
            shift, raw = theta.transpose(-1, -2).unbind(-2)
        else:
            shift, raw = theta.unbind(-1)
        return shift, self.bound * torch.tanh(raw / self.bound)

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(theta)
        return torch.addcmul(shift, x, torch.exp(log_scale)), log_scale

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(theta)
        return (y - shift) * torch.exp(-log_scale), -log_scale


class AdditiveMap(ElementwiseMap):
    """``y = x + t`` (NICE): volume preserving, ``θ = (t,)``, identity at ``θ = 0``."""

    params = 1

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return x + theta[..., 0], torch.zeros_like(x)

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return y - theta[..., 0], torch.zeros_like(y)


def softplus_inverse(y: float) -> float:
    """``x`` with ``softplus(x) = y`` (for identity initialisations of softplus-constrained parameters)."""
    return float(torch.log(torch.expm1(torch.tensor(y, dtype=torch.float64))))


__all__ = ["AdditiveMap", "AffineMap", "ElementwiseMap", "softplus_inverse"]
