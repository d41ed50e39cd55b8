"""Check a transform against the transform contract, as the library's own test suite checks every built-in one.

:func:`check_transform` runs the shared suite's checks on any :class:`~tractable.transforms.base.Transform` — yours
included — and fails with an ``AssertionError`` that says which check, in which direction, by how much and what the
contract asks (docs/architecture.md, "The transform contract"):

- **return contract**: ``forward`` and ``inverse`` return a pair ``(y, ladj)``, ``y`` of the input's shape and dtype,
  ``ladj`` of the batch shape ``(batch,)`` (event dimensions summed);
- **round trip**: ``inverse(forward(x)) = x`` and ``forward(inverse(z)) = z``;
- **log-determinant**: ``ladj`` equals ``log|det J|`` of the Jacobian computed by autograd
  (``torch.autograd.functional.jacobian`` and ``slogdet``, in float64), in both directions, with a positive
  determinant unless ``signed``; and the two directions' ``ladj`` cancel;
- **batch independence**: rows do not interact (a batch gives the rows' results one by one);
- **context**: a conditional transform's output changes with its context; an unconditional one ignores a context.

The individual checks (:func:`check_contract`, :func:`check_round_trip`, :func:`check_log_det`, ...) are public too;
``tests/test_transforms.py`` runs them on every case of the shared suite.

Example:
    >>> import torch
    >>> from tractable import Planar, Inverse
    >>> from tractable.testing import check_transform
    >>> check_transform(Inverse(Planar(2, layers=3)))  # silent when the transform keeps the contract
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .transforms.base import Compose, Transform

Interval = tuple[float, float]
REAL: Interval = (-math.inf, math.inf)


def randomised(t: Transform, scale: float = 0.7) -> Transform:
    """``t`` in float64 with Gaussian noise of standard deviation ``scale`` added to every parameter (so a check is
    not passed trivially by a layer initialised at the identity)."""
    t = t.double()
    with torch.no_grad():
        for p in t.parameters():
            p.add_(scale * torch.randn_like(p))
    return t


def features_of(t: nn.Module) -> int:
    """The input dimension of a vector transform (of a chain: of its first layer that declares one)."""
    if isinstance(getattr(t, "features", None), int):
        return int(t.features)  # type: ignore[arg-type]
    if isinstance(getattr(getattr(t, "split", None), "features", None), int):  # a vector coupling: its split's
        return int(t.split.features)  # type: ignore[union-attr]
    children = list(t.transforms) if isinstance(t, Compose) else [getattr(t, "transform", None)]
    for child in children:
        if isinstance(child, Transform):
            try:
                return features_of(child)
            except ValueError:
                continue
    raise ValueError(f"cannot tell the number of features of {type(t).__name__}: no layer has a `features` int; "
                     "pass features=")


def context_width(t: nn.Module) -> int:
    """The context width a transform's conditioners read (0 if none)."""
    return max((int(getattr(m, "context_features", 0) or 0) for m in t.modules()), default=0)


def jacobians(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The ``(B, N, N)`` per-row Jacobians of a row-wise map ``fn`` at ``x`` of shape ``(B, *event)``, ``N`` the
    event's size."""
    batch, event = x.shape[0], x.shape[1:]
    n = math.prod(event)
    flat = lambda v: fn(v.reshape(batch, *event)).reshape(batch, n)
    j = torch.autograd.functional.jacobian(flat, x.reshape(batch, n))  # (B, N, B, N)
    idx = torch.arange(batch)
    return j[idx, :, idx, :]


def draw(shape: Sequence[int], interval: Interval = REAL, *, scale: float = 3.0, dtype: torch.dtype = torch.float64,
         generator: torch.Generator | None = None) -> Tensor:
    """Inputs of ``shape``: uniform on ``[-scale, scale]`` for the whole real line, else uniform well inside
    ``interval`` (half a percent away from each end)."""
    u = torch.rand(tuple(shape), dtype=dtype, generator=generator)
    lo, hi = interval
    if (lo, hi) == REAL:
        return scale * (2 * u - 1)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"expected a bounded interval or the whole real line, got {interval}")
    return lo + (hi - lo) * (0.005 + 0.99 * u)


def _name(t: nn.Module, direction: str) -> str:
    return f"{type(t).__name__}.{direction}"


def _call(t: Transform, direction: str, x: Tensor, context: Tensor | None) -> object:
    try:
        return (t.forward if direction == "forward" else t.inverse)(x, context)
    except TypeError as e:
        if "positional argument" not in str(e):
            raise
        raise AssertionError(f"{_name(t, direction)} must accept a context argument, (x, context=None), and may "
                             f"ignore it: {e}") from e


def check_contract(t: Transform, x: Tensor, context: Tensor | None = None, *,
                   direction: str = "forward") -> tuple[Tensor, Tensor]:
    """``(y, ladj)`` of ``t`` in ``direction`` at ``x`` after checking the return contract: a pair of tensors, ``y`` of
    ``x``'s shape and dtype, ``ladj`` of ``x``'s batch shape (its first dimension) and dtype, both finite."""
    name = _name(t, direction)
    out = _call(t, direction, x, context)
    assert type(out) is tuple and len(out) == 2 and all(isinstance(o, Tensor) for o in out), (
        f"{name} must return (y, ladj), a pair of tensors; got "
        f"{'a tensor of shape ' + str(tuple(out.shape)) if isinstance(out, Tensor) else type(out).__name__}"
    )
    y, ladj = out
    assert y.shape == x.shape, f"{name}: expected an output of the input's shape {tuple(x.shape)}, got {tuple(y.shape)}"
    assert ladj.shape == x.shape[:1], (
        f"{name}: expected a log-determinant of shape {tuple(x.shape[:1])} (one value per row, the event dimensions "
        f"summed, e.g. ladj.sum(-1)), got shape {tuple(ladj.shape)}"
    )
    assert y.dtype == ladj.dtype == x.dtype, (
        f"{name}: expected outputs of the input's dtype {x.dtype}, got y {y.dtype} and ladj {ladj.dtype}"
    )
    assert bool(torch.isfinite(y).all() & torch.isfinite(ladj).all()), f"{name}: non-finite output at finite inputs"
    return y, ladj


def _row_max(error: Tensor) -> Tensor:
    """The largest entry of each batch element (row) of ``error``."""
    return error.detach().reshape(error.shape[0], -1).amax(-1)


def _worst(error: Tensor) -> tuple[float, int]:
    flat = _row_max(error)
    row = int(flat.argmax())
    return float(flat[row]), row


#: The relative change of ``y`` by which :func:`check_round_trip` measures how much the way back magnifies a change
#: of its input (small enough for a linear response, large enough above rounding to be measured).
NUDGE = 2.0**-30
#: How many units of rounding (machine epsilons, relative to ``y``) the way back may magnify into the round-trip error
#: (:func:`check_round_trip`): a composition of steep layers (spline bins of slope ``1e-3``) magnifies the rounding of
#: the later layers by the earlier ones' inverse slopes, ``1e5`` and more, which is conditioning, not a wrong inverse.
ROUND_TRIP_RATE = 100.0


def _magnification(t: Transform, y: Tensor, context: Tensor | None, direction: str, back: Tensor) -> Tensor:
    """Per row, how far ``direction`` moves its output when ``y`` changes by :data:`NUDGE` relative (random signs,
    from a fixed seed so the global generator is untouched), per unit of that relative change."""
    g = torch.Generator(device=y.device).manual_seed(0)
    signs = torch.randint(0, 2, y.shape, generator=g, device=y.device).to(y.dtype) * 2 - 1
    nudged = _call(t, direction, y + NUDGE * signs * (y.abs() + 1), context)[0]
    return _row_max((nudged - back).abs()) / NUDGE


@torch.no_grad()
def check_round_trip(t: Transform, x: Tensor, context: Tensor | None = None, *, direction: str = "forward",
                     atol: float = 1e-6) -> None:
    """``inverse(forward(x)) = x`` (``direction="forward"``) or ``forward(inverse(x)) = x`` to ``atol``.

    Where the way back is ill-conditioned a correct inverse still misses ``x`` by its input's rounding magnified: a
    row off by more than ``atol`` passes if it is within ``atol`` plus :data:`ROUND_TRIP_RATE` machine epsilons times
    the way back's measured magnification at ``y`` (see :func:`_magnification`; a wrong inverse is off by far more)."""
    other = "inverse" if direction == "forward" else "forward"
    y = check_contract(t, x, context, direction=direction)[0]
    back = check_contract(t, y, context, direction=other)[0]
    rows = _row_max((back - x).abs())
    if rows.max() <= atol:
        return
    magnified = ROUND_TRIP_RATE * torch.finfo(x.dtype).eps * _magnification(t, y, context, other, back)
    row = int((rows - atol - magnified).argmax())
    assert rows[row] <= atol + magnified[row], (
        f"{type(t).__name__}: {other}({direction}(x)) differs from x by up to {float(rows[row]):.3g} at row {row} "
        f"(tolerance {atol:g} + {ROUND_TRIP_RATE:g} × eps × the way back's magnification, "
        f"{float(magnified[row]):.3g}): {other} is not the inverse of {direction}"
    )


def check_log_det(t: Transform, x: Tensor, context: Tensor | None = None, *, direction: str = "forward",
                  signed: bool = False, atol: float = 1e-6) -> None:
    """``ladj`` of ``direction`` at ``x`` equals ``log|det J|`` by autograd; the determinant is positive unless
    ``signed`` (``ladj`` is ``log|det|``; permutations may flip the sign)."""
    name = _name(t, direction)
    ladj = check_contract(t, x, context, direction=direction)[1]
    sign, logdet = torch.linalg.slogdet(jacobians(lambda v: _call(t, direction, v, context)[0], x))
    assert bool((sign != 0).all()), f"{name}: singular Jacobian at rows {torch.nonzero(sign == 0).flatten().tolist()}"
    if not signed:
        assert bool((sign > 0).all()), (
            f"{name}: Jacobian determinant not positive at rows {torch.nonzero(sign < 0).flatten().tolist()} (an "
            "orientation-reversing map: pass signed=True if that is meant)"
        )
    error, row = _worst((ladj - logdet).abs())
    assert error <= atol, (
        f"{name}: the log-determinant differs from log|det J| by autograd by up to {error:.3g} (tolerance {atol:g}) "
        f"at row {row}: ladj = {float(ladj[row].detach()):.6g}, autograd = {float(logdet[row].detach()):.6g}"
    )


#: How fast a log-determinant may change with its input, per unit (the largest ``|d ladj / dx|`` that
#: :func:`check_log_det_cancels` allows for): the inverse evaluates its log-determinant at the point it reconstructs,
#: off ``x`` by its round-trip error, so a strongly contracting layer (a spline bin of slope ``1e-3`` between steep
#: knots, ``log g' ≈ -12``) leaves a mismatch of this rate times that error, not a wrong formula.
LADJ_RATE = 1e4


@torch.no_grad()
def check_log_det_cancels(t: Transform, x: Tensor, context: Tensor | None = None, *, atol: float = 1e-8) -> None:
    """The forward ``ladj`` at ``x`` and the inverse ``ladj`` at ``y = forward(x)`` sum to zero: to ``atol`` plus
    :data:`LADJ_RATE` times the row's round-trip error ``|inverse(y) − x|`` (what the inverse's rounding explains;
    a wrong log-determinant is off by far more)."""
    y, ladj = check_contract(t, x, context, direction="forward")
    x_back, ladj_inv = check_contract(t, y, context, direction="inverse")
    mismatch = (ladj + ladj_inv).abs().reshape(-1)
    drift = _row_max((x_back - x).abs())  # each batch element's round-trip error
    allowed = atol + LADJ_RATE * drift
    row = int((mismatch - allowed).argmax())
    assert mismatch[row] <= allowed[row], (
        f"{type(t).__name__}: forward and inverse log-determinants do not cancel: their sum is "
        f"{float(mismatch[row]):.3g} at batch element {row} (tolerance {atol:g} + {LADJ_RATE:g} × its round-trip "
        f"error {float(drift[row]):.3g})"
    )


@torch.no_grad()
def check_batch_independence(t: Transform, x: Tensor, context: Tensor | None = None, *,
                             direction: str = "forward", atol: float = 1e-10) -> None:
    """Rows do not interact: each row alone gives the row's result in the batch, to ``atol`` relative to
    ``max(1, |value|)`` (a batch of one runs other matrix kernels, whose rounding scales with the values)."""
    y, ladj = check_contract(t, x, context, direction=direction)
    for i in range(x.shape[0]):
        c = None if context is None else context[i : i + 1]
        yi, ladj_i = _call(t, direction, x[i : i + 1], c)
        error = max(float(((yi - y[i : i + 1]).abs() / y[i : i + 1].abs().clamp(min=1)).max()),
                    float(((ladj_i - ladj[i : i + 1]).abs() / ladj[i : i + 1].abs().clamp(min=1)).max()))
        assert error <= atol, (
            f"{_name(t, direction)}: row {i} alone gives a result {error:.3g} (relative to max(1, |value|)) away "
            "from the same row in the batch: "
            "the rows of a batch must not interact (a batch statistic in training mode? call t.eval())"
        )


@torch.no_grad()
def check_context(t: Transform, x: Tensor, context: Tensor, other: Tensor, *, direction: str = "forward") -> None:
    """A conditional transform: two contexts change the output on most rows (a spline's identity tails or a dead
    ReLU may ignore it on some)."""
    y1 = check_contract(t, x, context, direction=direction)[0]
    y2 = check_contract(t, x, other, direction=direction)[0]
    changed = float(((y1 - y2).abs() > 1e-8).reshape(x.shape[0], -1).any(-1).double().mean())
    assert changed > 0.5, (
        f"{_name(t, direction)}: the context changes only {changed:.0%} of the outputs; a conditional transform's "
        "conditioner must read it"
    )


@torch.no_grad()
def check_context_ignored(t: Transform, x: Tensor, *, direction: str = "forward", width: int = 5) -> None:
    """An unconditional transform accepts a ``context`` and ignores it (the contract: every transform takes one)."""
    y, ladj = check_contract(t, x, None, direction=direction)
    yc, ladjc = _call(t, direction, x, torch.randn(x.shape[0], width, dtype=x.dtype))
    assert torch.equal(yc, y) and torch.equal(ladjc, ladj), (
        f"{_name(t, direction)}: an unconditional transform changed its output when given a context; pass "
        "context_features= if it is conditional"
    )


def check_transform(t: Transform, features: int | Sequence[int] | None = None, *, context_features: int | None = None,
                    dtype: torch.dtype = torch.float64, batch: int = 8, seed: int = 0, atol: float = 1e-6,
                    signed: bool = False, domain: Interval = REAL, inverse_domain: Interval = REAL) -> None:
    """Run every check of the shared suite on ``t`` (a copy, in ``dtype``); raise ``AssertionError`` naming the
    first that fails.

    Args:
        t: the transform (left unchanged: a deep copy is converted to ``dtype`` and checked in eval mode).
        features: the input's event shape: an int for vectors, ``(C, H, W)`` for images (default: ``t.features``).
        context_features: the context width of a conditional transform (``None``: unconditional, so a context must be
            accepted and ignored).
        dtype: the dtype of the checks; float64 (the default) makes the autograd Jacobian exact to ~1e-12.
        batch: rows per check.
        seed: seeds the inputs and contexts.
        atol: the tolerance of the round trip and the log-determinant.
        signed: whether the Jacobian determinant may be negative (permutations, LU layers).
        domain: the per-entry interval of the forward direction's inputs (default: the real line, drawn on [−3, 3]).
        inverse_domain: the same for the inverse direction's inputs.

    Raises:
        AssertionError: naming the check, the direction and the size of the error.
    """
    if not isinstance(t, Transform):
        raise TypeError(f"expected a tractable Transform, got {type(t).__name__}")
    t = copy.deepcopy(t).to(dtype).eval()
    if features is None:
        features = features_of(t)
    event = (features,) if isinstance(features, int) else tuple(int(s) for s in features)
    g = torch.Generator().manual_seed(seed)
    x = draw((batch, *event), domain, dtype=dtype, generator=g)
    z = draw((batch, *event), inverse_domain, dtype=dtype, generator=g)
    c = torch.randn(batch, context_features, generator=g, dtype=dtype) if context_features else None
    for direction, v in (("forward", x), ("inverse", z)):
        check_contract(t, v, c, direction=direction)
        check_round_trip(t, v, c, direction=direction, atol=atol)
        check_log_det(t, v, c, direction=direction, signed=signed, atol=atol)
        check_batch_independence(t, v, c, direction=direction, atol=max(atol * 1e-2, 1e-10))
        if context_features:
            check_context(t, v, c, torch.randn(batch, context_features, generator=g, dtype=dtype),
                          direction=direction)
        else:
            check_context_ignored(t, v, direction=direction)
    check_log_det_cancels(t, x, c, atol=max(atol * 1e-2, 1e-8))


__all__ = [
    "check_batch_independence", "check_context", "check_context_ignored", "check_contract", "check_log_det",
    "check_log_det_cancels", "check_round_trip", "check_transform", "context_width", "draw", "features_of",
    "jacobians", "randomised",
]
