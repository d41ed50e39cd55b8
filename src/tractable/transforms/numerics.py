"""Numerics shared by the layers: the numerical inversion of monotone scalar equations (for the layers whose inverse
has no closed form) and a softmax fast over a short last axis (:func:`softmax`).

The solver is a safeguarded Newton iteration: each element keeps a bracket ``[lo, hi]`` that contains its root, takes
the Newton step when it stays inside the bracket and is at most half the step before last (as rtsafe does), and
bisects otherwise. It converges quadratically near the root and can never leave the bracket, so it is both fast and
robust. It runs without gradient tracking; layers then take one differentiable Newton step at the solution
(:func:`newton_refine`), which by the implicit function theorem gives exact first derivatives with respect to the
input and the parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: The last-axis length from which torch's CPU (log-)softmax kernel is vectorized along that axis (one AVX-512 vector
#: of float32); below it the kernel is 3-7x slower, forward and backward, than over an outer axis of the same data.
SHORT_AXIS = 16


def softmax(x: Tensor, dim: int = -1, *, log: bool = False) -> Tensor:
    """``torch.softmax(x, dim)`` (``log``: ``log_softmax``), the same numbers, fast on CPU over a short last axis.

    A last axis shorter than :data:`SHORT_AXIS` is made the outermost axis of a view and the softmax runs over it
    (1024×2×8 spline logits: 139 µs instead of 523 µs forward and backward). Any other axis, other devices and
    ``torch.compile`` (which generates its own kernel) get torch's softmax as it is.
    """
    fn = torch.log_softmax if log else torch.softmax
    short_last = dim in (-1, x.dim() - 1) and x.shape[-1] < SHORT_AXIS
    if not short_last or x.device.type != "cpu" or torch.compiler.is_compiling():
        return fn(x, dim)
    return fn(x.movedim(-1, 0), 0).movedim(0, -1)


#: Default tolerances on the solution, relative to ``max(1, |x|)``, by dtype.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def default_tolerance(dtype: torch.dtype) -> float:
    """The stopping tolerance used for ``dtype`` (1e-12 in float64, 1e-6 in float32)."""
    return TOLERANCE.get(dtype, 1e-6)


def solve_increasing(
    fn: Callable[[Tensor], tuple[Tensor, Tensor | None]],
    target: Tensor,
    lo: Tensor,
    hi: Tensor,
    *,
    tol: float | None = None,
    max_iter: int = 200,
) -> Tensor:
    """Solve ``f(x) = target`` elementwise for an increasing ``f`` whose root lies in ``[lo, hi]``.

    Args:
        fn: returns ``(f(x), f'(x))``; return ``None`` for the derivative to bisect only.
        target: the right-hand side, any shape.
        lo: lower bracket, broadcastable to ``target``, with ``f(lo) <= target``.
        hi: upper bracket, with ``f(hi) >= target``.
        tol: stop when every step is below ``tol * max(1, |x|)``; default by dtype (:data:`TOLERANCE`).
        max_iter: iteration cap (200 bisections shrink any float64 bracket to nothing).

    Returns:
        The solution, detached from the autograd graph.
    """
    tol = default_tolerance(target.dtype) if tol is None else tol
    with torch.no_grad():
        lo, hi = torch.broadcast_tensors(lo.detach(), hi.detach(), target.detach())[:2]
        target = target.detach()
        lo, hi = lo.clone(), hi.clone()
        x = 0.5 * (lo + hi)
        step = step_before = hi - lo
        for _ in range(max_iter):
            f, df = fn(x)
            r = f - target
            lo = torch.where(r < 0, x, lo)
            hi = torch.where(r > 0, x, hi)
            mid = 0.5 * (lo + hi)
            if df is None:
                new = mid
            else:
                newton = x - r / df
                # As rtsafe (Numerical Recipes §9.4): bisect unless the Newton step stays in the bracket *and* is at
                # most half the step before last; otherwise Newton can bounce between the two ends of the bracket,
                # shrinking it by a sliver per iteration, and exhaust max_iter far from the root. A step landing on a
                # bracket end up to rounding is accepted (a root at the end of the initial bracket, e.g. a saturated
                # tanh, is common), then clamped into the bracket.
                slack = tol * x.abs().clamp(min=1.0)
                ok = (newton >= lo - slack) & (newton <= hi + slack) & torch.isfinite(newton)
                ok = ok & ((newton - x).abs() <= 0.5 * step_before)
                new = torch.where(ok, torch.minimum(torch.maximum(newton, lo), hi), mid)
            step_before, step = step, (new - x).abs()
            x = new
            if bool((step <= tol * x.abs().clamp(min=1.0)).all()):
                break
    return x


def newton_refine(residual: Tensor, derivative: Tensor, x: Tensor) -> Tensor:
    """One differentiable Newton step ``x - residual / derivative`` at a (detached) solution ``x``.

    At the root the residual is zero, so the value is unchanged, but autograd now sees the implicit-function
    derivative ``dx/dθ = -(∂r/∂θ) / (∂r/∂x)``: gradients flow through a numerical inverse exactly.
    """
    return x - residual / derivative


def solve_tanh_shift(s: Tensor, a: Tensor, c: Tensor, d: Tensor, *, tol: float | None = None) -> Tensor:
    """Solve ``x + a * tanh(c * x + d) = s`` for ``x``, elementwise, given ``a * c > -1``.

    The left side is then strictly increasing (its derivative ``1 + a c (1 - tanh²) > 0``) and the root lies in
    ``[s - |a|, s + |a|]``. This is the scalar equation behind the inverse of planar and Sylvester layers.
    The result is detached; refine it with :func:`newton_refine` for gradients.
    """

    def fn(x: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.tanh(c * x + d)
        return x + a * t, 1 + a * c * (1 - t * t)

    reach = a.detach().abs()
    return solve_increasing(fn, s, s.detach() - reach, s.detach() + reach, tol=tol)
