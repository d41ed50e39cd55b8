"""The shared suite (docs/architecture.md, the transform contract): every transform in ``cases.TRANSFORMS`` (and
``cases.CONDITIONAL``, each given a context in every check) passes every check here; ``cases.IMAGES`` are checked on
image-shaped inputs too."""

from __future__ import annotations

import io
import math

import pytest
import torch
from cases import AT_INIT, CONDITIONAL, DOMAINS, IMAGES, NUMERICAL, QUADRATURE, SIGNED, TRANSFORMS, features_of
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from tractable import Inverse, Transform
from tractable.testing import (
    check_contract,
    check_log_det,
    check_log_det_cancels,
    check_round_trip,
    context_width,
    jacobians,
)
from tractable.transforms.numerics import solve_tanh_shift

aten = torch.ops.aten

UNCONDITIONAL = sorted(TRANSFORMS)
NAMES = UNCONDITIONAL + sorted(CONDITIONAL)
SETTINGS = settings(deadline=None, max_examples=10, database=None)
batches = st.integers(1, 16)
seeds = st.integers(0, 2**31 - 1)
REAL = (-math.inf, math.inf)


def make(name: str, seed: int) -> tuple[Transform, int]:
    torch.manual_seed(seed)
    t = TRANSFORMS[name]() if name in TRANSFORMS else CONDITIONAL[name][0]()
    return t, features_of(t)


def inputs(batch: int, features: int, scale: float = 3.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return scale * (2 * torch.rand(batch, features, dtype=dtype) - 1)


def domain(name: str, direction: str) -> tuple[float, float]:
    """The per-entry input interval of case ``name`` in ``direction`` (``forward`` or ``inverse``)."""
    return DOMAINS.get(name, (REAL, REAL))[0 if direction == "forward" else 1]


def draw(
    name: str, direction: str, *shape: int, scale: float = 3.0, normal: bool = False, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Inputs for ``direction`` of case ``name``: uniform on ``[-scale, scale]`` (standard normal if ``normal``), or
    uniform well inside the case's bounded domain."""
    lo, hi = domain(name, direction)
    if (lo, hi) == REAL:
        return torch.randn(shape, dtype=dtype) if normal else scale * (2 * torch.rand(shape, dtype=dtype) - 1)
    u = torch.rand(shape, dtype=dtype)
    return lo + (hi - lo) * (0.005 + 0.99 * u)


def ctx(name: str, *batch: int, dtype: torch.dtype = torch.float64) -> torch.Tensor | None:
    """A random context of batch shape ``batch`` for a conditional case; ``None`` for the others."""
    return torch.randn(*batch, CONDITIONAL[name][1], dtype=dtype) if name in CONDITIONAL else None


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
@example(batch=8, seed=1664)  # nsf-2d: the inverse of two steep layers magnifies the last one's rounding to 1.0e-6
def test_round_trip(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    x, c = draw(name, "forward", batch, d), ctx(name, batch)
    check_round_trip(t, x, c, direction="forward", atol=1e-6)
    check_round_trip(t, draw(name, "inverse", batch, d), c, direction="inverse", atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_ladj_matches_jacobian(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    c = ctx(name, batch)
    for direction in ("forward", "inverse"):
        check_log_det(t, draw(name, direction, batch, d), c, direction=direction, signed=name in SIGNED, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
@example(batch=5, seed=43822085)  # nsf-2d: a layer with log g' = -12.3, its inverse off by rounding (4.6e-11)
def test_ladj_cancels(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    check_log_det_cancels(t, draw(name, "forward", batch, d), ctx(name, batch), atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_shapes_and_dtype(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    for shape in [(batch, d), (2, batch, d)]:
        c = ctx(name, *shape[:-1])
        c_flat = None if c is None else c.reshape(-1, c.shape[-1])
        for fn, direction in ((t.forward, "forward"), (t.inverse, "inverse")):
            x = draw(name, direction, *shape, normal=True)
            y, ladj = fn(x, c)
            assert y.shape == x.shape and ladj.shape == x.shape[:-1]
            assert y.dtype == ladj.dtype == torch.float64
            # The batch dimensions are independent: a flattened batch gives the flattened result.
            y_flat, ladj_flat = fn(x.reshape(-1, d), c_flat)
            torch.testing.assert_close(y_flat, y.reshape(-1, d))
            torch.testing.assert_close(ladj_flat, ladj.reshape(-1))
    t32 = t.float()
    c32 = ctx(name, batch, dtype=torch.float32)
    for fn, direction in ((t32.forward, "forward"), (t32.inverse, "inverse")):
        x32 = draw(name, direction, batch, d, normal=True, dtype=torch.float32)
        y, ladj = fn(x32, c32)
        assert y.dtype == ladj.dtype == torch.float32
        assert y.shape == x32.shape and ladj.shape == (batch,)
    if domain(name, "inverse") != REAL and domain(name, "forward") == REAL:
        # Round trip from the bounded side (a float32 sigmoid saturates to 1 beyond x ≈ 17, and logit(1) = inf).
        z32 = draw(name, "inverse", batch, d, normal=True, dtype=torch.float32)
        torch.testing.assert_close(t32(t32.inverse(z32, c32)[0], c32)[0], z32, rtol=0, atol=5e-4)
    else:
        x32 = draw(name, "forward", batch, d, normal=True, dtype=torch.float32)
        y32 = t32(x32, c32)[0].detach()
        errors = (t32.inverse(y32, c32)[0].detach() - x32).abs().amax(-1)
        if float(errors.max()) > 5e-4:  # a badly conditioned row, or a wrong inverse: the float64 Jacobian tells
            scale = _conditioning(t32.double(), y32.double(), None if c32 is None else c32.double())
            bar = 5e-4 * (scale / 100).clamp(min=1.0)
            assert bool((errors <= bar).all()), f"float32 round trip errors {errors.tolist()} > bars {bar.tolist()}"


def _conditioning(t: Transform, y: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Per row, ``max |y| · ‖∂x/∂y‖∞``: float32 keeps ~7 digits of ``y``, which pin ``x = inverse(y)`` down only to
    ~1e-7 of this (a randomised 1-D planar layer shifts by ~900 with a slope of 0.13; a circular spline's flattest
    bin has a slope ~1e-4), so the float32 round trip's bar widens with it beyond 100."""
    jac = jacobians(lambda v: t.inverse(v, c)[0], y)
    return (jac.abs().sum(-1).amax(-1) * y.abs().amax(-1)).detach().float()


@pytest.mark.parametrize("name", UNCONDITIONAL)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_context_is_ignored(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    context = torch.randn(batch, 5, dtype=torch.float64)
    for fn, direction in ((t.forward, "forward"), (t.inverse, "inverse")):
        x = draw(name, direction, batch, d)
        y, ladj = fn(x)
        yc, ladjc = fn(x, context)
        torch.testing.assert_close(yc, y, rtol=0, atol=0)
        torch.testing.assert_close(ladjc, ladj, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(CONDITIONAL))
@SETTINGS
@given(seed=seeds)
def test_context_changes_output(name: str, seed: int) -> None:
    """Two contexts give different outputs (on most rows: a spline's identity tails or a dead ReLU may ignore it)."""
    t, d = make(name, seed)
    batch = 32
    c1, c2 = ctx(name, batch), ctx(name, batch)
    for fn, direction in ((t.forward, "forward"), (t.inverse, "inverse")):
        x = draw(name, direction, batch, d, scale=1.0)
        y1, _ = fn(x, c1)
        y2, _ = fn(x, c2)
        changed = ((y1 - y2).abs() > 1e-8).any(-1).double().mean().item()
        assert changed > 0.5, f"{name}: the context changes only {changed:.0%} of the {direction} outputs"
    with pytest.raises(ValueError, match="context"):
        t(draw(name, "forward", batch, d))


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None, max_examples=5, database=None)
@given(seed=seeds)
def test_state_dict_round_trip(name: str, seed: int) -> None:
    t, d = make(name, seed)
    other, _ = make(name, seed + 1)
    x, c = draw(name, "forward", 7, d), ctx(name, 7)
    z = draw(name, "inverse", 7, d)
    differ = any(not torch.equal(a, b) for a, b in zip(t.state_dict().values(), other.state_dict().values()))
    if differ:  # parameter-free cases (a fixed permutation) are the same map either way
        # 64 probes: a few can all fall where two maps agree (a spline's identity tails beyond its bound)
        probe, probe_c = draw(name, "forward", 64, d), ctx(name, 64)
        assert not torch.allclose(other(probe, probe_c)[0], t(probe, probe_c)[0]), "constructions should differ"
    other.load_state_dict(t.state_dict())
    for fn, fn2, v in ((t.forward, other.forward, x), (t.inverse, other.inverse, z)):
        torch.testing.assert_close(fn2(v, c), fn(v, c), rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.save(t.state_dict(), buffer)
    buffer.seek(0)
    third, _ = make(name, seed + 2)
    third.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(third.inverse(z, c), t.inverse(z, c), rtol=0, atol=0)
    torch.testing.assert_close(third(x, c), t(x, c), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_extreme_inputs_are_finite(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (batch, d), generator=g).double() * 2 - 1
    large = torch.rand(batch, d, generator=g) < 0.5
    for fn, direction in ((t.forward, "forward"), (t.inverse, "inverse")):
        lo, hi = domain(name, direction)
        if (lo, hi) == REAL:
            mixed = signs * torch.where(large, 1e3, 1.0).double()
            cases = (1e3 * signs, mixed, torch.full((1, d), 1e3).double(), torch.full((1, d), -1e3).double())
        else:  # a bounded domain: its extremes are the points next to its ends
            ends = torch.where(signs > 0, signs.new_tensor(hi - (hi - lo) * 1e-9), lo + (hi - lo) * 1e-9)
            mixed = torch.where(large, ends, (lo + hi) / 2)
            cases = (ends, mixed, ends[:1].clamp(min=hi - (hi - lo) * 1e-9), ends[:1].clamp(max=lo + (hi - lo) * 1e-9))
        for x in cases:
            t.zero_grad()
            xi = x.clone().requires_grad_(True)
            y, ladj = fn(xi, ctx(name, x.shape[0]))
            assert bool(torch.isfinite(y).all() & torch.isfinite(ladj).all()), f"{name}: non-finite output"
            (y.sum() + ladj.sum()).backward()
            assert bool(torch.isfinite(xi.grad).all()), f"{name}: non-finite input gradient"
            for pname, p in t.named_parameters():
                assert p.grad is None or bool(torch.isfinite(p.grad).all()), f"{name}: non-finite grad of {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_wrong_features_raise(name: str) -> None:
    t, d = make(name, 0)
    for bad in (torch.randn(4, d + 1, dtype=torch.float64), torch.randn(d, dtype=torch.float64)):
        for fn in (t.forward, t.inverse):
            with pytest.raises(ValueError) as info:
                fn(bad, ctx(name, *bad.shape[:-1]))
            message = str(info.value)
            assert str(d) in message and str(tuple(bad.shape)) in message, message


class KinkDistance(TorchDispatchMode):
    """The smallest ``|input|`` of every rectifier (ReLU, leaky ReLU) run inside the block: how far the point is from
    a kink of the network, where a function has no derivative and finite differences straddle two slopes."""

    RECTIFIERS = (aten.relu, aten.relu_, aten.leaky_relu, aten.leaky_relu_)

    def __init__(self) -> None:
        super().__init__()
        self.distance = math.inf

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in self.RECTIFIERS:
            self.distance = min(self.distance, float(args[0].detach().abs().min()))
        return func(*args, **(kwargs or {}))


#: gradcheck's finite differences step by 1e-6 in the input and every parameter; a conditioner's pre-activation
#: that near a ReLU's kink moves across it (a change of slope, not a wrong gradient)
KINK_MARGIN = 1e-4


def kink_distance(t: Transform, y: torch.Tensor, c: torch.Tensor | None) -> float:
    with torch.no_grad(), KinkDistance() as mode:
        t.inverse(y, c)
    return mode.distance


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None, max_examples=3, database=None)
@given(seed=seeds)
def test_inverse_gradients(name: str, seed: int) -> None:
    """Gradients through the (numerical) inverse, w.r.t. input and parameters, match finite differences (at points
    away from the conditioners' ReLU kinks: :data:`KINK_MARGIN`)."""
    t, d = make(name, seed)
    y, c = draw(name, "inverse", 2, d), ctx(name, 2)
    if name in QUADRATURE:  # images of the test range: the quadrature is accurate there
        with torch.no_grad():
            y = t(draw(name, "forward", 2, d), c)[0]
    assume(kink_distance(t, y, c) > KINK_MARGIN)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: t.inverse(v, c), (y,))
    # w.r.t. the parameters too (implicit function theorem through the solver): Inverse(t).forward is t.inverse.
    inv = Inverse(t)
    names = [n for n, _ in inv.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in inv.named_parameters())
    call = lambda v, *ps: functional_call(inv, dict(zip(names, ps)), (v, c))
    assert torch.autograd.gradcheck(call, (y, *params), fast_mode=True)


@pytest.mark.parametrize("seed", [1484949622, 1952440079])
def test_inverse_gradients_skips_points_at_a_kink(seed: int) -> None:
    """The two draws (of 24,000) on which gradcheck failed for circular-coupling-conditional: a pre-activation of its
    conditioner within 1.2e-6 and 1.3e-7 of ReLU's kink (one-sided differences of 1e-8 agree with autograd). The
    guard recognises them."""
    name = "circular-coupling-conditional"
    t, d = make(name, seed)
    y, c = draw(name, "inverse", 2, d), ctx(name, 2)
    y.requires_grad_(True)
    assert not torch.autograd.gradcheck(lambda v: t.inverse(v, c), (y,), raise_exception=False)
    assert kink_distance(t, y.detach(), c) < KINK_MARGIN


@pytest.mark.parametrize("name", NUMERICAL)
def test_numerical_inverse_accuracy(name: str) -> None:
    """Numerically inverted layers meet their stated tolerance far inside the ≤1e-6 bar, also on large inputs."""
    for seed in range(5):
        t, d = make(name, seed)
        x = inputs(4000, d, scale=10.0)
        with torch.no_grad():
            err = (t.inverse(t(x)[0])[0] - x).abs().max().item()
            err_y = (t(t.inverse(x)[0])[0] - x).abs().max().item()
        assert err < 1e-10 and err_y < 1e-10, (seed, err, err_y)


@pytest.mark.parametrize("name", sorted(AT_INIT))
def test_near_identity_at_init(name: str) -> None:
    torch.manual_seed(0)
    t = AT_INIT[name]().double()
    x = torch.randn(256, features_of(t), dtype=torch.float64)
    k = context_width(t)
    c = torch.randn(256, k, dtype=torch.float64) if k else None
    y, ladj = t(x, c)
    assert (y - x).abs().max().item() < 0.1, "initial map should be close to the identity"
    assert ladj.abs().max().item() < 0.1, "initial log-determinant should be close to zero"
    torch.testing.assert_close(t.inverse(y, c)[0], x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(IMAGES))
@settings(deadline=None, max_examples=5, database=None)
@given(batch=st.integers(1, 4), seed=seeds)
@example(batch=2, seed=9883)  # sigmoid-logit-image: log-determinants off by 2.4e-8 where the sigmoid nears 1
def test_images(name: str, batch: int, seed: int) -> None:
    """Image-shaped inputs ``(B, C, H, W)``: round trip, ``ladj`` of shape ``(B,)`` matching the Jacobian."""
    torch.manual_seed(seed)
    constructor, shape = IMAGES[name]
    t = constructor()
    x = torch.randn(batch, *shape, dtype=torch.float64)
    with torch.no_grad():
        ladj = check_contract(t, x)[1]
    check_round_trip(t, x, atol=1e-6)
    check_log_det_cancels(t, x, atol=1e-8)
    n = math.prod(shape)
    flat = lambda v: t(v.reshape(batch, *shape))[0].reshape(batch, n)
    j = torch.autograd.functional.jacobian(flat, x.reshape(batch, n), vectorize=True)
    idx = torch.arange(batch)
    sign, logdet = torch.linalg.slogdet(j[idx, :, idx, :])
    assert bool((sign > 0).all())
    torch.testing.assert_close(ladj, logdet, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_solve_tanh_shift_converges(dtype: torch.dtype) -> None:
    """The shared scalar solver finds the root of ``x + a tanh(c x + d) = s`` for hard coefficients (``a c`` near -1,
    strong non-linearity) where plain bracketed Newton bounces between the bracket ends (a regression case first)."""
    g = torch.Generator().manual_seed(0)
    n = 100_000
    c = torch.randn(n, generator=g, dtype=dtype) * 3
    a = torch.randn(n, generator=g, dtype=dtype) * 5
    a = torch.where(a * c <= -1, -(1 - 0.999 * torch.rand(n, generator=g, dtype=dtype)) / c, a)
    d = torch.randn(n, generator=g, dtype=dtype) * 3
    s = torch.randn(n, generator=g, dtype=dtype) * 10
    a[0], c[0], d[0], s[0] = 5.8228, 1.0, 0.8781, 3.4
    x = solve_tanh_shift(s, a, c, d)
    t = torch.tanh(c * x + d)
    error = ((x + a * t - s) / (1 + a * c * (1 - t * t))).abs() / x.abs().clamp(min=1)  # Newton estimate of x's error
    assert error.max().item() < (1e-10 if dtype == torch.float64 else 1e-5)
