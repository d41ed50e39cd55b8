"""Rational-quadratic splines and the MAF / IAF / NSF models built on them (the MADE conditioner: test_networks.py).

The shared suite (tests/test_transforms.py with tests/cases_autoregressive.py) checks the layers as transforms; this
file checks what is particular to them: spline shape properties, the fast and slow directions, and the models'
densities.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tractable.models.maf import IAF, MAF
from tractable.models.nsf import NSF
from tractable.models.permutations import coupling_masks, layer_orders
from tractable.nn.made import MADE, SequentialPasses
from tractable.testing import randomised
from tractable.transforms import splines
from tractable.transforms.autoregressive import MaskedAffineAutoregressive, MaskedSplineAutoregressive
from tractable.transforms.numerics import softmax
from tractable.transforms.splines import RQSplineMap, rational_quadratic, spline_knots

SETTINGS = settings(deadline=None, max_examples=8, database=None)
seeds = st.integers(0, 2**31 - 1)
F64 = torch.float64


def params(n: int, bins: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(n, k, generator=g, dtype=F64) for k in (bins, bins, bins - 1))  # type: ignore


def shared(n: int, bins: int, scale: float, seed: int) -> tuple[torch.Tensor, ...]:
    """One spline's parameters, repeated for ``n`` inputs."""
    return tuple(p[:1].expand(n, -1) for p in params(1, bins, scale, seed))


# ---------------------------------------------------------------------------------------------------------- splines


@SETTINGS
@given(seed=seeds, bins=st.integers(1, 10), bound=st.floats(0.5, 5.0))
def test_spline_monotone_and_identity_tails(seed: int, bins: int, bound: float) -> None:
    x = torch.linspace(-bound - 2, bound + 2, 2001, dtype=F64)
    y, ladj = rational_quadratic(x, *shared(len(x), bins, 2.0, seed), bound=bound)
    assert bool((y.diff() > 0).all())
    tails = x.abs() > bound
    assert torch.equal(y[tails], x[tails]) and bool((ladj[tails] == 0).all())


@SETTINGS
@given(seed=seeds, bins=st.integers(2, 10))
def test_spline_continuous_at_knots_and_interpolates_them(seed: int, bins: int) -> None:
    w, h, d = params(1, bins, 2.0, seed)
    xk, yk, dk = spline_knots(w[0], h[0], d[0], bound=3.0)
    eps = 1e-12
    for side in (-eps, eps):  # just below each knot (the bin to its left) and just above (the bin to its right)
        x = xk + side
        y, ladj = rational_quadratic(x, *(p.expand(len(x), -1) for p in (w, h, d)), bound=3.0)
        torch.testing.assert_close(y, yk, rtol=0, atol=1e-7)  # value continuous across every knot
        torch.testing.assert_close(ladj.exp(), dk, rtol=1e-6, atol=1e-7)  # derivative too (C¹), equal to δ_k
    assert bool((dk[[0, -1]] == 1).all())


def test_spline_identity_parameters() -> None:
    for bins, bound in ((1, 1.0), (8, 3.0), (5, 0.5)):
        spline = RQSplineMap(bins, bound)
        x = torch.cat([torch.linspace(-2 * bound, 2 * bound, 401, dtype=F64), torch.tensor([-1e3, 1e3], dtype=F64)])
        theta = spline.identity().to(F64).expand(len(x), spline.params)
        for fn in (spline.forward, spline.inverse):
            y, ladj = fn(x, theta)
            torch.testing.assert_close(y, x, rtol=0, atol=1e-12)
            assert ladj.abs().max().item() < 1e-12


@SETTINGS
@given(seed=seeds, bins=st.integers(1, 12), scale=st.floats(0.1, 3.0))
def test_spline_inverse_round_trip(seed: int, bins: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(512, generator=g, dtype=F64) - 2
    p = params(512, bins, scale, seed)
    y, ladj = rational_quadratic(x, *p, bound=1.5)
    x2, ladj_inv = rational_quadratic(y, *p, bound=1.5, inverse=True)
    # Conditioning: an output error of one rounding unit moves the input by that over the slope.
    tol = 1e-6 + 1e-13 / ladj.exp()
    assert bool(((x2 - x).abs() <= tol).all()), (x2 - x).abs().max().item()
    torch.testing.assert_close(ladj + ladj_inv, torch.zeros_like(ladj), rtol=0, atol=1e-8)


@settings(deadline=None, max_examples=4, database=None)
@given(seed=seeds)
def test_spline_gradients_match_finite_differences(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = 5 * torch.rand(6, generator=g, dtype=F64) - 2.5  # inside and outside the bound 2
    p = [t.requires_grad_(True) for t in params(6, 4, 1.0, seed)]
    # d(ladj)/dx jumps at a knot: keep x away from the knots of both directions, or the central difference
    # straddles one (seed 22101012 put x within 1e-6 of a knot)
    xk, yk, _ = spline_knots(*[t.detach() for t in p], bound=2.0)
    near = ((x[:, None] - torch.cat([xk, yk], -1)).abs() < 1e-4).any(-1)
    x = torch.where(near, x + 1e-3, x)
    for inverse in (False, True):
        fn = lambda v, w, h, d: rational_quadratic(v, w, h, d, bound=2.0, inverse=inverse)  # noqa: B023
        assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(True), *p))
    # ladj is the log of the derivative that autograd computes from the output
    xs = x.clone().requires_grad_(True)
    y, ladj = rational_quadratic(xs, *[t.detach() for t in p], bound=2.0)
    (dy,) = torch.autograd.grad(y.sum(), xs)
    torch.testing.assert_close(ladj, dy.log(), rtol=0, atol=1e-10)


def test_spline_extreme_inputs_and_parameters_are_finite() -> None:
    spline = RQSplineMap(6, 2.0)
    x = torch.tensor([-1e3, -3.0, -2.0, 0.0, 2.0, 3.0, 1e3], dtype=F64)
    for scale in (1.0, 1e3):  # ordinary and saturated (one-hot softmax, zero softplus) parameters
        theta = (scale * torch.randn(len(x), spline.params, dtype=F64)).requires_grad_(True)
        for fn in (spline.forward, spline.inverse):
            xi = x.clone().requires_grad_(True)
            y, ladj = fn(xi, theta)
            assert bool(torch.isfinite(y).all() & torch.isfinite(ladj).all())
            (y.sum() + ladj.sum()).backward()
            assert bool(torch.isfinite(xi.grad).all() & torch.isfinite(theta.grad).all())
            theta.grad = None


def test_spline_minimum_bin_sizes_and_derivatives() -> None:
    bins, bound, m = 6, 2.0, 1e-2
    w = torch.tensor([[60.0, -60, -60, -60, -60, -60]], dtype=F64)  # softmax puts everything in one bin
    d = torch.full((1, bins - 1), -80.0, dtype=F64)  # softplus underflows to ~0
    xk, yk, dk = spline_knots(w, -w, d, bound=bound, min_bin_width=m, min_bin_height=m, min_derivative=m)
    for knots in (xk, yk):
        assert knots.diff().min().item() >= 2 * bound * m * (1 - 1e-9)
        torch.testing.assert_close(knots[..., [0, -1]], torch.tensor([[-bound, bound]], dtype=F64))
    assert dk.min().item() >= m
    y, _ = rational_quadratic(xk[0], w.expand(bins + 1, -1), -w.expand(bins + 1, -1), d.expand(bins + 1, -1),
                              bound=bound, min_bin_width=m, min_bin_height=m, min_derivative=m)
    torch.testing.assert_close(y, yk[0], rtol=0, atol=1e-12)


def test_spline_float32_inverse_is_accurate_in_flat_bins() -> None:
    """Regression: nflows' single root formula 2c / (-b - √D) cancels in flat bins near their upper end (b < 0); the
    float32 round trip must stay within a small multiple of the conditioning everywhere."""
    torch.manual_seed(0)
    spline = RQSplineMap(6, 2.0)
    theta = 2 * torch.randn(50_000, spline.params)
    x = 4 * torch.rand(50_000) - 2
    y, ladj = spline.forward(x, theta)
    x2, _ = spline.inverse(y, theta)
    conditioning = 6e-8 * y.abs().clamp(min=1) / ladj.exp()
    assert ((x2 - x).abs() / conditioning).max().item() < 200


@given(seed=seeds, circular=st.booleans(), inverse=st.booleans())
@SETTINGS
def test_spline_parameters_shared_by_the_batch_are_the_per_sample_ones(seed: int, circular: bool,
                                                                       inverse: bool) -> None:
    """Parameters expanded over the batch (a coupling's passing half) take the once-per-parameter-set path; values,
    log-derivatives and gradients must equal those of the same parameters materialised for every sample."""
    g = torch.Generator().manual_seed(seed)
    spline = RQSplineMap(5, 2.0, circular=circular)
    theta = torch.randn(3, spline.params, generator=g, dtype=F64)
    x = 3 * torch.randn(64, 3, generator=g, dtype=F64)  # inside and outside [-2, 2]
    results, knot_shapes, knots = [], [], splines._knots

    def spy(theta, *args):
        knot_shapes.append(tuple(theta.shape[:-1]))
        return knots(theta, *args)

    for materialise in (False, True):
        t = theta.clone().requires_grad_(True)
        shared = t.expand(64, 3, spline.params)
        assert shared.stride(0) == 0
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(splines, "_knots", spy)
            y, log_d = (spline.inverse if inverse else spline.forward)(x, shared.contiguous() if materialise
                                                                       else shared)
        grad, = torch.autograd.grad((y.sin() + log_d).sum(), t)
        results.append((y, log_d, grad))
    assert knot_shapes == [(1, 3), (64, 3)]  # the knots of the shared parameters computed once
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_spline_errors_name_expected_and_actual() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        rational_quadratic(x, torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="bins >= 1"):
        RQSplineMap(0)
    with pytest.raises(ValueError, match="bound"):
        RQSplineMap(4, -1.0)
    with pytest.raises(ValueError, match=r"\[0, 0.25\)"):
        RQSplineMap(4, min_bin_width=0.3)
    with pytest.raises(ValueError, match=r"\(3, 23\)"):
        RQSplineMap().forward(x, torch.zeros(3, 22))


# ---------------------------------------------------------------------------------------------------------- models


MODELS = {
    "maf": lambda: MAF(3, layers=3, hidden=16),
    "maf-random-context": lambda: MAF(3, layers=2, hidden=16, permutation="random", context_features=2),
    "iaf": lambda: IAF(3, layers=3, hidden=16, context_features=2),
    "nsf": lambda: NSF(4, layers=3, hidden=16, bins=6),
    "nsf-random-context": lambda: NSF(4, layers=2, hidden=16, permutation="random", context_features=2),
    "nsf-ar": lambda: NSF(3, layers=2, hidden=16, autoregressive=True, context_features=2),
    "nsf-1d": lambda: NSF(1, layers=2, hidden=8),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_log_prob_matches_sample_and_log_prob(name: str) -> None:
    torch.manual_seed(0)
    flow = randomised(MODELS[name](), 0.1)
    c = torch.randn(1, flow.context_features, dtype=F64) if flow.context_features else None
    x, log_q = flow.sample_and_log_prob(200, c)
    assert x.shape == (200, flow.features) and log_q.shape == (200,)
    cc = None if c is None else c.expand(200, -1)
    torch.testing.assert_close(flow.log_prob(x, cc), log_q, rtol=0, atol=1e-5)
    if c is not None:  # the context changes the density
        assert not torch.allclose(flow.log_prob(x, torch.randn(200, flow.context_features, dtype=F64)), log_q)


@pytest.mark.parametrize("name", ["maf", "nsf", "nsf-ar"])
def test_models_start_at_the_base_distribution(name: str) -> None:
    flow = {"maf": MAF(3), "nsf": NSF(4), "nsf-ar": NSF(3, autoregressive=True)}[name].double()
    x = torch.randn(64, flow.features, dtype=F64)
    torch.testing.assert_close(flow.log_prob(x), flow.base.log_prob(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["nsf", "maf"])
def test_random_2d_flow_is_normalised(kind: str) -> None:
    torch.manual_seed(1)
    # perturbations whose spikes the grid resolves (the NSF's He-initialised conditioners amplify them: at 0.15 its
    # log-density varies by 26 nats and a 600² grid sums 0.85, a 2400² one 1.53)
    model, scale = (NSF(2, layers=4, hidden=16), 0.08) if kind == "nsf" else (MAF(2, layers=4, hidden=16), 0.15)
    flow = randomised(model, scale)
    n, half = 600, 9.0
    g = torch.linspace(-half, half, n, dtype=F64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    z = density.sum().item() * (g[1] - g[0]).item() ** 2
    assert abs(z - 1) < 1e-2, z
    with torch.no_grad():  # and the flow is not its base distribution
        assert (flow.log_prob(grid[::97]) - flow.base.log_prob(grid[::97])).abs().max().item() > 0.1


@pytest.mark.parametrize("model", ["maf", "iaf"])
def test_fast_and_slow_directions(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAF: density in one MADE pass per layer, sampling in D passes; IAF the other way round."""
    d, layers = 4, 3
    flow = MAF(d, layers=layers, hidden=8) if model == "maf" else IAF(d, layers=layers, hidden=8)
    calls = [0]

    def counted(fn):  # one call: one pass of a MADE (the density direction's or a sequential one)
        def wrapper(*args: object) -> object:
            calls[0] += 1
            return fn(*args)

        return wrapper

    monkeypatch.setattr(MADE, "forward", counted(MADE.forward))
    monkeypatch.setattr(SequentialPasses, "__call__", counted(SequentialPasses.__call__))
    x = flow.sample(5)
    sampled, calls[0] = calls[0], 0
    flow.log_prob(x)
    density = calls[0]
    fast, slow = layers, layers * d
    assert (density, sampled) == ((fast, slow) if model == "maf" else (slow, fast))


def test_layer_orders_and_masks() -> None:
    for name in ("alternate", "reverse"):  # "reverse" is an alias of "alternate"
        orders = layer_orders(3, 3, name)
        assert [o.tolist() for o in orders] == [[0, 1, 2], [2, 1, 0], [0, 1, 2]]
        assert [m.tolist() for m in coupling_masks(3, 2, name)] == [[True, False, False], [False, True, True]]
    masks = coupling_masks(5, 4, "random")
    assert torch.equal(masks[1], ~masks[0]) and int(masks[0].sum()) == 2
    with pytest.raises(ValueError, match="unknown permutation 'shuffle'; expected one of alternate, random, reverse"):
        MAF(3, permutation="shuffle")
    with pytest.raises(ValueError, match="permutation"):
        NSF(3, permutation="halves")
    with pytest.raises(ValueError, match="features >= 1"):
        NSF(0)


def test_maf_with_batchnorm() -> None:
    torch.manual_seed(0)
    flow = MAF(3, layers=3, hidden=8, batchnorm=True).double()
    flow.log_prob(2 + 3 * torch.randn(256, 3, dtype=F64))  # training mode: batch statistics, running averages move
    flow.eval()
    x, log_q = flow.sample_and_log_prob(64)
    torch.testing.assert_close(flow.log_prob(x), log_q, rtol=0, atol=1e-8)


def test_spline_autoregressive_layers_accept_contexts_of_any_batch_shape() -> None:
    layer = MaskedSplineAutoregressive(3, hidden=8, context_features=2).double()
    affine = MaskedAffineAutoregressive(3, hidden=8, context_features=2).double()
    x = torch.randn(2, 5, 3, dtype=F64)
    c = torch.randn(2, 5, 2, dtype=F64)
    for t in (layer, affine):
        y, ladj = t(x, c)
        assert y.shape == x.shape and ladj.shape == (2, 5)
        torch.testing.assert_close(t.inverse(y, c)[0], x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("length", [1, 2, 8, 15, 16, 33])
def test_softmax_is_torchs_softmax_with_its_gradient(length: int, log: bool) -> None:
    """The short-axis form (an outer axis of a view, below 16 entries) and the plain one give torch's (log-)softmax
    over the last axis and its gradient."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, length, dtype=F64, requires_grad=True)
    g = torch.randn(5, 3, length, dtype=F64)
    ours, ref = softmax(x, log=log), (torch.log_softmax if log else torch.softmax)(x, -1)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-14)
    (grad,) = torch.autograd.grad(ours, x, g)
    (grad_ref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-14)
