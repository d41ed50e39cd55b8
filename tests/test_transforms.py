"""The shared suite (DESIGN.md §4): every transform in ``cases.TRANSFORMS`` passes every check here."""

from __future__ import annotations

import io

import pytest
import torch
from cases import AT_INIT, NUMERICAL, TRANSFORMS, features_of
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from tractable import Inverse, Transform
from tractable.transforms.numerics import solve_tanh_shift

NAMES = sorted(TRANSFORMS)
SETTINGS = settings(deadline=None, max_examples=10, database=None)
batches = st.integers(1, 16)
seeds = st.integers(0, 2**31 - 1)


def make(name: str, seed: int) -> tuple[Transform, int]:
    torch.manual_seed(seed)
    t = TRANSFORMS[name]()
    return t, features_of(t)


def inputs(batch: int, features: int, scale: float = 3.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return scale * (2 * torch.rand(batch, features, dtype=dtype) - 1)


def jacobians(fn, x: torch.Tensor) -> torch.Tensor:
    """The ``(B, D, D)`` per-row Jacobians of a row-wise map ``fn`` at ``x`` of shape ``(B, D)``."""
    j = torch.autograd.functional.jacobian(fn, x)  # (B, D, B, D)
    idx = torch.arange(x.shape[0])
    return j[idx, :, idx, :]


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_round_trip(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    x = inputs(batch, d)
    y, _ = t(x)
    x2, _ = t.inverse(y)
    torch.testing.assert_close(x2, x, rtol=0, atol=1e-6)
    y2, _ = t(t.inverse(x)[0])
    torch.testing.assert_close(y2, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_ladj_matches_jacobian(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    x = inputs(batch, d)
    for fn in (t.forward, t.inverse):
        _, ladj = fn(x)
        sign, logdet = torch.linalg.slogdet(jacobians(lambda v, fn=fn: fn(v)[0], x))
        assert bool((sign > 0).all()), f"{name}: Jacobian determinant not positive, signs {sign.tolist()}"
        torch.testing.assert_close(ladj, logdet, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_ladj_cancels(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    x = inputs(batch, d)
    y, ladj = t(x)
    _, ladj_inv = t.inverse(y)
    torch.testing.assert_close(ladj + ladj_inv, torch.zeros_like(ladj), rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_shapes_and_dtype(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    for shape in [(batch, d), (2, batch, d)]:
        x = torch.randn(shape, dtype=torch.float64)
        for fn, steps_fn in ((t.forward, t.forward_steps), (t.inverse, t.inverse_steps)):
            y, ladj = fn(x)
            assert y.shape == x.shape and ladj.shape == x.shape[:-1]
            assert y.dtype == ladj.dtype == torch.float64
            # The batch dimensions are independent: a flattened batch gives the flattened result.
            y_flat, ladj_flat = fn(x.reshape(-1, d))
            torch.testing.assert_close(y_flat, y.reshape(-1, d))
            torch.testing.assert_close(ladj_flat, ladj.reshape(-1))
            steps = steps_fn(x)
            assert steps and all(s.shape == x.shape for s in steps)
            torch.testing.assert_close(steps[-1], y)
    t32 = t.float()
    x32 = torch.randn(batch, d)
    for fn in (t32.forward, t32.inverse):
        y, ladj = fn(x32)
        assert y.dtype == ladj.dtype == torch.float32
        assert y.shape == x32.shape and ladj.shape == (batch,)
    torch.testing.assert_close(t32.inverse(t32(x32)[0])[0], x32, rtol=0, atol=5e-4)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_context_is_ignored(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    x = inputs(batch, d)
    context = torch.randn(batch, 5, dtype=torch.float64)
    for fn in (t.forward, t.inverse):
        y, ladj = fn(x)
        yc, ladjc = fn(x, context)
        torch.testing.assert_close(yc, y, rtol=0, atol=0)
        torch.testing.assert_close(ladjc, ladj, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None, max_examples=5, database=None)
@given(seed=seeds)
def test_state_dict_round_trip(name: str, seed: int) -> None:
    t, d = make(name, seed)
    other, _ = make(name, seed + 1)
    x = inputs(7, d)
    assert not torch.allclose(other(x)[0], t(x)[0]), "two constructions should differ before loading"
    other.load_state_dict(t.state_dict())
    for fn, fn2 in ((t.forward, other.forward), (t.inverse, other.inverse)):
        torch.testing.assert_close(fn2(x), fn(x), rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.save(t.state_dict(), buffer)
    buffer.seek(0)
    third, _ = make(name, seed + 2)
    third.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(third.inverse(x), t.inverse(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(batch=batches, seed=seeds)
def test_extreme_inputs_are_finite(name: str, batch: int, seed: int) -> None:
    t, d = make(name, seed)
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (batch, d), generator=g).double() * 2 - 1
    mixed = signs * torch.where(torch.rand(batch, d, generator=g) < 0.5, 1e3, 1.0).double()
    for x in (1e3 * signs, mixed, torch.full((1, d), 1e3, dtype=torch.float64), torch.full((1, d), -1e3).double()):
        for fn in (t.forward, t.inverse):
            t.zero_grad()
            xi = x.clone().requires_grad_(True)
            y, ladj = fn(xi)
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
                fn(bad)
            message = str(info.value)
            assert str(d) in message and str(tuple(bad.shape)) in message, message


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None, max_examples=3, database=None)
@given(seed=seeds)
def test_inverse_gradients(name: str, seed: int) -> None:
    """Gradients through the (numerical) inverse, w.r.t. input and parameters, match finite differences."""
    t, d = make(name, seed)
    y = inputs(2, d).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: t.inverse(v), (y,))
    # w.r.t. the parameters too (implicit function theorem through the solver): Inverse(t).forward is t.inverse.
    inv = Inverse(t)
    names = [n for n, _ in inv.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in inv.named_parameters())
    call = lambda v, *ps: functional_call(inv, dict(zip(names, ps)), (v,))
    assert torch.autograd.gradcheck(call, (y, *params), fast_mode=True)


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
    y, ladj = t(x)
    assert (y - x).abs().max().item() < 0.1, "initial map should be close to the identity"
    assert ladj.abs().max().item() < 0.1, "initial log-determinant should be close to zero"
    torch.testing.assert_close(t.inverse(y)[0], x, rtol=0, atol=1e-10)


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
