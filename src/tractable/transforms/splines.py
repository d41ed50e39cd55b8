"""Monotone rational-quadratic splines (Durkan et al., 2019) with identity tails, and their elementwise-map family.

On ``[-B, B]`` the spline passes through ``K + 1`` increasing knots ``(x_k, y_k)`` with positive derivatives
``δ_k`` there; in bin ``k``, with ``s = h/w`` (``w``, ``h`` the bin's width and height) and ``ξ = (x - x_k)/w``,

    y = y_k + h (s ξ² + δ_k ξ(1-ξ)) / (s + (δ_k + δ_{k+1} - 2s) ξ(1-ξ)),
    dy/dx = s² (δ_{k+1} ξ² + 2s ξ(1-ξ) + δ_k (1-ξ)²) / (s + (δ_k + δ_{k+1} - 2s) ξ(1-ξ))².

Outside ``[-B, B]`` the map is the identity; the end knots are ``(±B, ±B)`` with derivative 1, so the whole map is
continuously differentiable. The inverse is analytic: in the bin found from the ``y`` knots, ``ξ`` is the root in
``[0, 1]`` of ``a ξ² + b ξ + c = 0`` (``c ≤ 0``, ``a + b = h s > 0``), computed without cancellation whatever the sign
of ``b``: ``ξ = -2c / (|b| + √D)`` when ``b ≥ 0`` and ``(|b| + √D) / 2a`` when ``b < 0``. (The single form
``2c / (-b - √D)`` of nflows loses all digits when ``b < 0`` and ``4ac ≪ b²``: flat bins near their upper end.)

Every evaluation runs on inputs clamped to ``[-B, B]``, and ``torch.where`` then picks the identity in the tails, so
the discarded branch is always finite and inputs like ``±1e3`` give finite values *and* finite gradients.

Speed: on CPU, reductions and gathers along a short last axis (the ``K`` bins) cost many times more per element than
elementwise arithmetic, so the work along the bins is kept to one softmax (widths and heights together), one matrix
product that turns it into all knots (cumulative sum, first knot and rescaling folded into a constant matrix), one
compare-and-count for the bin, and one gather of the bin's four knot coordinates. Only the two knot derivatives of each
element's bin are gathered and passed through the softplus; the rest is elementwise on the input's shape, in a form
with few operations (``ξ(1-ξ)`` and the derivative's numerator rewritten, ``log`` of quotients fused).

References:
    Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios, 2019), arXiv:1906.04032.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from .maps import ElementwiseMap
from .numerics import softmax

#: Default minimum bin width and height (fractions of the interval) and minimum knot derivative, as in nflows.
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
_LOG2 = math.log(2.0)


def _check(bins: int, bound: float, min_bin_width: float, min_bin_height: float, min_derivative: float) -> None:
    if bins < 1:
        raise ValueError(f"expected bins >= 1, got {bins}")
    if not bound > 0:
        raise ValueError(f"expected a positive bound, got {bound}")
    if not (0 <= min_bin_width < 1 / bins and 0 <= min_bin_height < 1 / bins):
        raise ValueError(
            f"expected minimum bin width and height in [0, 1/bins) = [0, {1 / bins:g}), "
            f"got {min_bin_width} and {min_bin_height}"
        )
    if not 0 <= min_derivative < 1:
        raise ValueError(f"expected a minimum derivative in [0, 1), got {min_derivative}")


def _constants(
    bins: int, bound: float, min_bin_width: float, min_bin_height: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """:func:`_cached_constants`; a compiled graph traces the computation instead (it folds it to constants)."""
    build = _cached_constants.__wrapped__ if torch.compiler.is_compiling() else _cached_constants
    return build(bins, bound, min_bin_width, min_bin_height, dtype, device)


@lru_cache(maxsize=64)
def _cached_constants(
    bins: int, bound: float, min_bin_width: float, min_bin_height: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The matrix taking bin-size softmaxes to knots, and ``[0, 1]`` (the offsets of a bin's two knots).

    With ``p = softmax(logits)`` over the ``K`` bins and ``m`` the minimum size, knot ``j`` (``0..K``) is
    ``-B + 2B (m j + (1 - mK) Σ_{i<j} p_i)``; as ``Σ_i p_i = 1`` it equals
    ``Σ_i p_i (-B + 2B (m j + (1 - mK)[i < j]))``, a linear map of ``p`` without offset. One matrix product so replaces
    the cumulative sum, the padding with the first knot and the affine rescaling (three passes over the knot tensor and
    five in the backward pass).
    """
    i = torch.arange(bins, dtype=torch.float64)[:, None]
    j = torch.arange(bins + 1, dtype=torch.float64)[None, :]
    weight = torch.zeros(2 * (bins + 1), 2 * bins, dtype=torch.float64)
    for axis, minimum in enumerate((min_bin_width, min_bin_height)):
        block = -bound + 2 * bound * (minimum * j + (1 - bins * minimum) * (i < j).double())  # (K, K + 1)
        weight[axis * (bins + 1) : (axis + 1) * (bins + 1), axis * bins : (axis + 1) * bins] = block.T
    return weight.to(dtype=dtype, device=device), torch.arange(2, device=device)


def _derivative(u: Tensor, minimum: float) -> Tensor:
    """Knot derivatives ``δ = m + (1 - m) softplus(u) / log 2``: above ``m``, and 1 at ``u = 0`` in every dtype."""
    return F.softplus(u).mul((1 - minimum) / _LOG2).add_(minimum)


def _knots(theta: Tensor, bins: int, bound: float, min_bin_width: float, min_bin_height: float) -> Tensor:
    """The knots ``S + (2, K + 1)`` (x knots, then y knots) from parameters ``S + (3K - 1,)``."""
    weight, _ = _constants(bins, bound, min_bin_width, min_bin_height, theta.dtype, theta.device)
    probs = softmax(theta[..., : 2 * bins].unflatten(-1, (2, bins)))
    return F.linear(probs.flatten(-2), weight).unflatten(-1, (2, bins + 1))


def _spline(
    x: Tensor,
    theta: Tensor,
    *,
    bins: int,
    inverse: bool,
    bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
    circular: bool = False,
) -> tuple[Tensor, Tensor]:
    """The spline (or its inverse) on ``x`` (shape ``S``) with parameters ``θ`` (``S + (3K - 1,)``: width logits,
    height logits, inner derivatives; ``circular``: ``S + (3K,)``, the last the derivative shared by both ends).
    Returns the output and the elementwise log-derivative.

    A ``θ`` expanded along some axes (stride 0: parameters shared by every sample, as a coupling's passing half) has
    its knots computed once per distinct parameter set, then expanded: the softmax and the knot product are the
    costly part of an evaluation."""
    shared = [d for d in range(theta.dim() - 1) if theta.stride(d) == 0 and theta.shape[d] > 1]
    if shared:
        compact = theta[tuple(slice(0, 1) if d in shared else slice(None) for d in range(theta.dim()))]
        knots = _knots(compact, bins, bound, min_bin_width, min_bin_height).expand(*theta.shape[:-1], 2, bins + 1)
    else:
        knots = _knots(theta, bins, bound, min_bin_width, min_bin_height)
    pair = _constants(bins, bound, min_bin_width, min_bin_height, theta.dtype, theta.device)[1]
    clamped = x.clamp(-bound, bound)
    inside = clamped == x
    # The bin k: the number of inner knots at or below the (clamped) input, in 0..K-1; its knots are k and k + 1.
    k = (clamped.unsqueeze(-1) >= knots[..., 1 if inverse else 0, 1:bins]).sum(-1, keepdim=True)
    j = k + pair
    lo_hi = knots.gather(-1, j.unsqueeze(-2).expand(*j.shape[:-1], 2, 2))  # [[x_k, x_k+1], [y_k, y_k+1]]
    start = lo_hi[..., 0]
    xk, yk = start.unbind(-1)
    w, h = (lo_hi[..., 1] - start).unbind(-1)
    # Knot derivatives, only the two of the bin: δ(u) at inner knots, exactly 1 at the two ends (circular: the
    # shared parameter θ[3K - 1] at both ends, so the map's derivative is continuous around the circle).
    if shared and not circular:  # all K + 1 derivatives once per parameter set, then the bin's two gathered
        ends = F.pad(_derivative(compact[..., 2 * bins :], min_derivative), (1, 1), value=1.0)
        delta = ends.expand(*theta.shape[:-1], bins + 1).gather(-1, j)
    elif circular:
        raw = theta.gather(-1, torch.where(j % bins == 0, 3 * bins - 1, j + (2 * bins - 1)))
        delta = _derivative(raw, min_derivative)
    else:
        raw = theta.gather(-1, (j + (2 * bins - 1)).clamp(2 * bins, 3 * bins - 2))
        delta = torch.where(j % bins == 0, 1.0, _derivative(raw, min_derivative))
    d0, d1 = delta.unbind(-1)
    s = h / w
    dsum = torch.add(delta.sum(-1), s, alpha=-2.0)  # δ_k + δ_k+1 - 2s

    if inverse:
        dy = clamped - yk
        a = torch.addcmul(h * (s - d0), dy, dsum)
        b = torch.addcmul(h * d0, dy, dsum, value=-1.0)
        c = -s * dy
        # The root in [0, 1] is 2c / (-b - √D) = (-b + √D) / (2a); with r = |b| + √D (no cancellation) it is
        # -2c / r when b ≥ 0 and r / (2a) when b < 0 (then a > -b > 0, as a + b = h s > 0). Both selected
        # denominators are positive, so neither branch of the `where` is ever infinite.
        half_r = 0.5 * (b.abs() + torch.sqrt(b * b - 4 * a * c))
        positive = b >= 0
        xi = torch.where(positive, c, half_r) / torch.where(positive, -half_r, a)
        out = torch.addcmul(xk, xi, w)
    else:
        xi = (clamped - xk) / w
    t = torch.addcmul(xi, xi, xi, value=-1.0)  # ξ(1 - ξ)
    denom = torch.addcmul(s, dsum, t)  # s + (δ_k + δ_k+1 - 2s) ξ(1 - ξ)
    if not inverse:
        numer = torch.addcmul(s * xi, d0 - s, t)  # s ξ² + δ_k ξ(1 - ξ)
        out = torch.addcmul(yk, h, numer / denom)
    # dy/dx = s² (δ_k+1 ξ² + 2s ξ(1-ξ) + δ_k (1-ξ)²) / denom², and the bracket equals
    # δ_k + (δ_k+1 - δ_k) ξ - dsum ξ(1-ξ) (a sum of positive terms rewritten: at most a factor 2 of cancellation).
    bracket = torch.addcmul(torch.addcmul(d0, d1 - d0, xi), dsum, t, value=-1.0)
    log_d = torch.add(torch.log(bracket), torch.log(s / denom), alpha=2.0)
    if inverse:
        log_d = -log_d
    return torch.where(inside, out, x), torch.where(inside, log_d, 0.0)


def spline_knots(
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    *,
    bound: float = 3.0,
    min_bin_width: float = MIN_BIN_WIDTH,
    min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor, Tensor]:
    """The knots of the spline that :func:`rational_quadratic` evaluates (for plots and checks).

    Args:
        widths: unnormalized bin widths, shape ``S + (K,)``.
        heights: unnormalized bin heights, shape ``S + (K,)``.
        derivatives: unconstrained inner knot derivatives, shape ``S + (K - 1,)``.
        bound: half-width of the spline interval.
        min_bin_width: smallest bin width (fraction of the interval).
        min_bin_height: smallest bin height (fraction of the interval).
        min_derivative: smallest inner knot derivative.

    Returns:
        ``(x_knots, y_knots, knot_derivatives)``, each of shape ``S + (K + 1,)``, from ``-bound`` to ``bound``.

    Example:
        >>> import torch
        >>> from tractable.transforms.splines import spline_knots
        >>> xk, yk, dk = spline_knots(torch.zeros(4), torch.zeros(4), torch.zeros(3), bound=2.0)
        >>> xk.tolist(), dk[[0, -1]].tolist()
        ([-2.0, -1.0, 0.0, 1.0, 2.0], [1.0, 1.0])
    """
    bins = widths.shape[-1]
    _check(bins, bound, min_bin_width, min_bin_height, min_derivative)
    knots = _knots(torch.cat([widths, heights], dim=-1), bins, bound, min_bin_width, min_bin_height)
    deriv = F.pad(_derivative(derivatives, min_derivative), (1, 1), value=1.0)
    return knots[..., 0, :], knots[..., 1, :], deriv


def rational_quadratic(
    x: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    *,
    inverse: bool = False,
    bound: float = 3.0,
    min_bin_width: float = MIN_BIN_WIDTH,
    min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor]:
    """A monotone rational-quadratic spline on ``[-bound, bound]``, identity outside, applied elementwise.

    The parameters are unconstrained: bin widths are ``m + (1 - mK) softmax(widths)`` of the interval (``m`` the
    minimum bin width), heights likewise, inner knot derivatives ``m' + (1 - m') softplus(u) / log 2`` (``m'`` the
    minimum derivative; 1 at ``u = 0``, so all-zero parameters give the identity in every dtype); the two end knots
    have derivative 1, matching the identity tails.

    Args:
        x: inputs, any shape ``S`` (outputs ``y`` when ``inverse``).
        widths: unnormalized bin widths, shape ``S + (K,)``.
        heights: unnormalized bin heights, shape ``S + (K,)``.
        derivatives: unconstrained inner knot derivatives, shape ``S + (K - 1,)``.
        inverse: evaluate the inverse map (analytic: the root of a quadratic).
        bound: half-width ``B`` of the interval covered by the spline.
        min_bin_width: smallest bin width, as a fraction of the interval.
        min_bin_height: smallest bin height, as a fraction of the interval.
        min_derivative: smallest inner knot derivative.

    Returns:
        ``(y, log|dy/dx|)``, both of shape ``S``: the log-derivative is elementwise (callers sum over the event).
        With ``inverse=True``, ``(x, log|dx/dy|)``.

    Example:
        >>> import torch
        >>> from tractable.transforms.splines import rational_quadratic
        >>> x = torch.linspace(-4, 4, 9)
        >>> w, h, d = torch.randn(9, 8), torch.randn(9, 8), torch.randn(9, 7)
        >>> y, ladj = rational_quadratic(x, w, h, d)
        >>> x2, ladj_inv = rational_quadratic(y, w, h, d, inverse=True)
        >>> bool(torch.allclose(x, x2, atol=1e-5)), bool(torch.allclose(ladj, -ladj_inv, atol=1e-5))
        (True, True)

    References:
        Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032.
    """
    bins = widths.shape[-1]
    _check(bins, bound, min_bin_width, min_bin_height, min_derivative)
    expected = (tuple(x.shape) + (bins,), tuple(x.shape) + (bins,), tuple(x.shape) + (bins - 1,))
    actual = (tuple(widths.shape), tuple(heights.shape), tuple(derivatives.shape))
    if actual != expected:
        raise ValueError(f"expected widths, heights, derivatives of shapes {expected}, got {actual}")
    return _spline(
        x,
        torch.cat([widths, heights, derivatives], dim=-1),
        bins=bins,
        inverse=inverse,
        bound=bound,
        min_bin_width=min_bin_width,
        min_bin_height=min_bin_height,
        min_derivative=min_derivative,
    )


class RQSplineMap(ElementwiseMap):
    """The rational-quadratic spline as an elementwise map family, ``θ = (widths, heights, inner derivatives)``.

    ``params = 3 · bins - 1`` per element: ``bins`` width logits, ``bins`` height logits, ``bins - 1`` inner knot
    derivatives (see :func:`rational_quadratic`). Both directions are analytic and exact to rounding; the map is the
    identity outside ``[-bound, bound]``. :meth:`identity` (all zeros) gives equal bins and unit inner derivatives, at
    which the spline is the identity to rounding in every dtype.

    With ``circular=True`` the interval is a circle (angles in ``[-bound, bound)``, ``bound = π``): the end knots stay
    at ``(±B, ±B)`` but their common derivative is a free parameter (``params = 3 · bins``, the last one), so the map
    is a diffeomorphism of the circle with a continuous derivative (Rezende et al. 2020). Any density on the circle
    is reachable this way (it is the derivative of such a map pushing the uniform density), though every layer keeps
    ``-B`` fixed.

    Args:
        bins: number of bins ``K``.
        bound: half-width of the interval covered by the spline.
        min_bin_width: smallest bin width (fraction of the interval).
        min_bin_height: smallest bin height (fraction of the interval).
        min_derivative: smallest inner knot derivative.
        circular: a circular spline on ``[-bound, bound)``, matching derivatives at the ends.

    Example:
        >>> import torch
        >>> from tractable.transforms.splines import RQSplineMap
        >>> spline = RQSplineMap(bins=8, bound=3.0)
        >>> x = torch.randn(4, 2)
        >>> y, log_d = spline.forward(x, spline.identity().expand(4, 2, spline.params))
        >>> bool(torch.allclose(y, x, atol=1e-6)), bool(log_d.abs().max() < 1e-6)
        (True, True)

    References:
        Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032.
        Normalizing Flows on Tori and Spheres (Rezende, Papamakarios, Racanière, Albergo, Kanwar, Shanahan &
            Cranmer, 2020), arXiv:2002.02428.
    """

    def __init__(
        self,
        bins: int = 8,
        bound: float = 3.0,
        *,
        min_bin_width: float = MIN_BIN_WIDTH,
        min_bin_height: float = MIN_BIN_HEIGHT,
        min_derivative: float = MIN_DERIVATIVE,
        circular: bool = False,
    ):
        super().__init__()
        _check(bins, bound, min_bin_width, min_bin_height, min_derivative)
        self.bins, self.bound, self.circular = bins, bound, circular
        self.min_bin_width, self.min_bin_height, self.min_derivative = min_bin_width, min_bin_height, min_derivative
        self.params = 3 * bins if circular else 3 * bins - 1

    def _run(self, x: Tensor, theta: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if theta.shape[-1] != self.params or theta.shape[:-1] != x.shape:
            raise ValueError(
                f"expected parameters of shape {tuple(x.shape) + (self.params,)}, got shape {tuple(theta.shape)}"
            )
        return _spline(
            x,
            theta,
            bins=self.bins,
            inverse=inverse,
            bound=self.bound,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
            circular=self.circular,
        )

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, theta, False)

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(y, theta, True)

    def identity(self) -> Tensor:
        return torch.zeros(self.params)  # equal bins; δ(0) = 1 (see the derivative parameterization)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}" + (", circular=True" if self.circular else "")


__all__ = ["MIN_BIN_HEIGHT", "MIN_BIN_WIDTH", "MIN_DERIVATIVE", "RQSplineMap", "rational_quadratic", "spline_knots"]
