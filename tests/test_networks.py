"""The conditioner networks: MADE's masks and its sequential passes, the fast functional linear layer, and the MLP's
initialisation.

The layers built on them are checked as transforms by the shared suite (tests/test_transforms.py) and in
tests/test_splines.py (MAF, IAF, NSF).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from tractable.nn.functional import linear
from tractable.nn.made import MADE, hidden_degrees
from tractable.nn.mlp import MLP

SETTINGS = settings(deadline=None, max_examples=8, database=None)
seeds = st.integers(0, 2**31 - 1)
F64 = torch.float64


# ------------------------------------------------------------------------------------------------------------- MADE


def allowed(order: torch.Tensor) -> torch.Tensor:
    return order[None, :] < order[:, None]  # [i, j]: output i may depend on input j


@SETTINGS
@given(
    seed=seeds,
    features=st.integers(1, 7),
    hidden=st.integers(1, 24),
    blocks=st.integers(1, 3),
    context=st.integers(0, 2),
)
def test_made_is_autoregressive(seed: int, features: int, hidden: int, blocks: int, context: int) -> None:
    torch.manual_seed(seed)
    order = torch.randperm(features)
    made = MADE(
        features, 2, hidden=hidden, blocks=blocks, context_features=context, order=order, activation="tanh",
        zero_last=False
    )
    made = made.double()
    x = torch.randn(features, dtype=F64)
    c = torch.randn(1, context, dtype=F64) if context else None
    j = torch.autograd.functional.jacobian(lambda v: made(v[None], c)[0], x)  # (D, P, D)
    dependence = (j != 0).any(1)
    assert not bool((dependence & ~allowed(order)).any()), "an output depends on an input at or after it in order"
    # The masks connect every allowed pair when there are enough hidden units (degrees cycle over all values).
    path = made.layers[0].mask[:, :features]
    for layer in made.layers[1:]:
        path = layer.mask @ path
    reach = (path.reshape(2, features, features) > 0).all(0)  # output rows are parameter-major
    if hidden >= max(features - 1, 1) + (1 if context else 0):
        assert torch.equal(reach, allowed(order))
    if context:  # the context reaches every output, the first in the order too
        jc = torch.autograd.functional.jacobian(lambda v: made(x[None], v)[0], c)
        assert bool((jc != 0).flatten(2).any(-1).any(-1).all())


@pytest.mark.parametrize("make_opt", [lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9, weight_decay=1e-2),
                                      lambda ps: torch.optim.Adam(ps, lr=0.05),
                                      lambda ps: torch.optim.AdamW(ps, lr=0.05, fused=True)])
def test_made_stays_autoregressive_under_any_optimizer(make_opt) -> None:
    """The masks multiply the weights on every call: a user's own loop and optimizer (every entry of every weight
    updated, weight decay, state loaded) must keep the Jacobian strictly triangular, and the weight gradients must
    be those of the masked network (zero where masked)."""
    torch.manual_seed(0)
    made = MADE(4, 2, hidden=16, blocks=2, zero_last=False)
    opt = make_opt(made.parameters())
    x = torch.randn(64, 4)
    for _ in range(5):
        loss = made(x).square().mean() + made(x + 1).mean()  # two passes before one backward
        opt.zero_grad()
        loss.backward()
        for layer in made.layers:
            assert not bool((layer.weight.grad * (1 - layer.mask)).any())
        opt.step()
    made.load_state_dict({k: v + 0.1 for k, v in made.state_dict().items() if k.endswith("weight")}, strict=False)
    j = torch.autograd.functional.jacobian(lambda v: made(v[None])[0], x[0])  # (D, P, D)
    assert not bool(((j != 0).any(1) & ~allowed(torch.arange(4))).any())
    made = made.double()
    ws = [layer.weight for layer in made.layers]
    xd = torch.randn(3, 4, dtype=F64, requires_grad=True)

    def masked(*weights):  # the reference: the masked network, written with explicit masks
        h = xd
        for k, (w, layer) in enumerate(zip(weights, made.layers)):
            h = torch.nn.functional.linear(h, w * layer.mask, layer.bias)
            h = h.relu() if k < len(weights) - 1 else h
        return h

    out = made(xd).transpose(-1, -2).flatten(-2)
    torch.testing.assert_close(out, masked(*ws))
    g = torch.autograd.grad(out.square().sum(), [xd, *ws])
    torch.testing.assert_close(g, torch.autograd.grad(masked(*ws).square().sum(), [xd, *ws]))


def test_made_one_feature_depends_on_context_only() -> None:
    made = MADE(1, 3, hidden=8, context_features=2, zero_last=False).double()
    x = torch.randn(5, 1, dtype=F64)
    c = torch.randn(5, 2, dtype=F64)
    torch.testing.assert_close(made(x, c), made(torch.randn(5, 1, dtype=F64), c))
    assert not torch.allclose(made(x, c), made(x, torch.randn(5, 2, dtype=F64)))
    plain = MADE(1, 3, hidden=8)
    plain.set_output_bias(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(plain(torch.randn(4, 1)), torch.tensor([[[1.0, 2.0, 3.0]]]).expand(4, 1, 3))


def test_made_degrees_and_errors() -> None:
    assert hidden_degrees(5, 8, lowest=0).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert hidden_degrees(5, 6, lowest=-1).tolist() == [-1, 0, 1, 2, 3, -1]
    spread = hidden_degrees(64, 8, lowest=0)
    assert spread.min().item() == 0 and spread.max().item() == 62
    with pytest.raises(ValueError, match="permutation of 0..2"):
        MADE(3, 2, order=[0, 0, 1])
    with pytest.raises(ValueError, match="context"):
        MADE(3, 2, context_features=2)(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\).*\(4, 2\)"):
        MADE(3, 2)(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"\(2,\) or \(3, 2\)"):
        MADE(3, 2).set_output_bias(torch.zeros(4))
    with pytest.raises(ValueError, match="activation"):
        MADE(3, 2, activation="swish")


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("features", [1, 2, 5])
def test_made_sequential_passes_match_forward(features: int, context: int) -> None:
    torch.manual_seed(0)
    order = torch.randperm(features)
    made = MADE(features, 3, hidden=16, context_features=context, order=order, zero_last=False).double()
    x, c = torch.randn(7, features, dtype=F64), (torch.randn(7, context, dtype=F64) if context else None)
    full, passes = made(x, c), made.sequential()
    for i in range(features):
        torch.testing.assert_close(passes(x, c, i), full[..., i, :], rtol=0, atol=1e-12)
        torch.testing.assert_close(made.feature_params(x, c, i), full[..., i, :], rtol=0, atol=1e-12)


def test_made_stores_units_by_degree_and_loads_models_saved_in_another_order() -> None:
    """A new MADE keeps its hidden units sorted by degree and computes the network it drew (the same function as
    before the reordering); a state saved with the units in another order (models saved before the sorting) loads
    and samples the same: its passes sort the units per call."""
    torch.manual_seed(0)
    made = MADE(4, 2, hidden=12, blocks=2, context_features=1, zero_last=False).double()
    assert made.unit_order is None and bool((made.degrees.diff() >= 0).all())
    torch.manual_seed(0)
    drawn = [torch.nn.Linear(a, b).double() for a, b in [(5, 12), (12, 12), (12, 8)]]  # the draws MADE made
    x, c = torch.randn(6, 4, dtype=F64), torch.randn(6, 1, dtype=F64)
    deg = hidden_degrees(4, 12, lowest=-1)
    h = torch.cat([x, c], -1)
    for k, lin in enumerate(drawn):
        rows = deg[:, None] if k < 2 else torch.arange(4).repeat(2)[:, None]
        cols = torch.cat([torch.arange(4), torch.full((1,), -1)]) if k == 0 else deg
        mask = (cols[None, :] <= rows) if k < 2 else (cols[None, :] < rows)
        h = F.linear(h, lin.weight * mask, lin.bias)
        h = h.relu() if k < 2 else h
    torch.testing.assert_close(made(x, c).transpose(-1, -2).flatten(-2), h, rtol=0, atol=1e-12)

    perm = torch.randperm(12)
    state = dict(made.state_dict())
    for k in range(3):
        w, m = state[f"layers.{k}.weight"], state[f"layers.{k}.mask"]
        if k < 2:
            w, m = w[perm], m[perm]
            state[f"layers.{k}.bias"] = state[f"layers.{k}.bias"][perm]
        if k > 0:
            w, m = w[:, perm], m[:, perm]
        state[f"layers.{k}.weight"], state[f"layers.{k}.mask"] = w, m
    state["degrees"] = made.degrees[perm]
    old = MADE(4, 2, hidden=12, blocks=2, context_features=1).double()
    old.load_state_dict(state)
    assert old.unit_order is not None
    full = made(x, c)
    torch.testing.assert_close(old(x, c), full, rtol=0, atol=1e-12)
    passes = old.sequential()
    for i in range(4):
        torch.testing.assert_close(passes(x, c, i), full[..., i, :], rtol=0, atol=1e-12)


def test_made_sequential_passes_compute_only_the_units_a_feature_reads() -> None:
    """The pass of the feature at position t multiplies only the hidden units of degree < t: a NaN in a unit of the
    top degree reaches every output of the full pass (NaN · 0 is NaN) but none of the features placed before it."""
    torch.manual_seed(0)
    made = MADE(5, 2, hidden=12, order=[3, 1, 4, 0, 2], zero_last=False).double()
    top = made.degrees == made.degrees.max()
    with torch.no_grad():
        made.layers[0].bias[top] = float("nan")
    x = torch.randn(4, 5, dtype=F64)
    assert made(x).isnan().all()
    passes = made.sequential()
    for i in range(5):
        assert passes(x, None, i).isnan().any() == (made.order[i] > made.degrees.max())


# ----------------------------------------------------------------------------------------------------------- linear


class MatrixProducts(TorchDispatchMode):
    """Records the shapes of the matrix products computed under it."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
            a, b = args[-2:]
            self.shapes.append((tuple(a.shape), tuple(b.shape)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(9,), (2, 9), ()])
@pytest.mark.parametrize(("inputs", "outputs"), [(1, 40), (2, 40), (8, 32), (3, 7), (12, 64), (40, 4)])
def test_linear_is_f_linear_with_its_gradients(inputs: int, outputs: int, batch: tuple[int, ...], bias: bool) -> None:
    """Every shape (thin inputs into wide layers, where the weight goes transposed, and the rest) and batch shape:
    the values and the gradients of x, the weight and the bias are F.linear's; an in-place activation on the output
    is allowed."""
    torch.manual_seed(0)
    x = torch.randn(*batch, inputs, dtype=F64, requires_grad=True)
    w = torch.randn(outputs, inputs, dtype=F64, requires_grad=True)
    b = torch.randn(outputs, dtype=F64, requires_grad=True) if bias else None
    g = torch.randn(*batch, outputs, dtype=F64)
    wrt = [t for t in (x, w, b) if t is not None]
    ours, ref = linear(x, w, b).relu_(), F.linear(x, w, b).relu_()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, wrt, g), torch.autograd.grad(ref, wrt, g), rtol=0, atol=1e-12)


def test_linear_takes_the_transposed_products_for_thin_inputs() -> None:
    """A layer of 2 inputs and 64 outputs: the backward computes the weight's gradient as xᵀ g (2 rows) and the
    input's from a column-major weight, not gᵀ x with 2 columns (4-6x slower on CPU); without gradients, and for
    wide inputs, the products are F.linear's."""
    x = torch.randn(256, 2, requires_grad=True)
    w = torch.randn(64, 2, requires_grad=True)
    with MatrixProducts() as seen:
        linear(x, w).sum().backward()
    assert ((2, 256), (256, 64)) in seen.shapes  # xᵀ g
    assert ((64, 256), (256, 2)) not in seen.shapes  # gᵀ x
    with MatrixProducts() as seen:
        F.linear(x, w).sum().backward()
    assert ((64, 256), (256, 2)) in seen.shapes  # the reference does take the slow form: the test can tell them apart
    with torch.no_grad(), MatrixProducts() as seen:
        linear(x, w)
    assert seen.shapes == [((256, 2), (2, 64))]



@pytest.mark.parametrize("outputs", [1, 2, 8, 12])
def test_linear_takes_the_transposed_product_for_thin_outputs_without_gradients(outputs: int) -> None:
    """64 inputs into 2–8 outputs, 1024 rows, no gradients (sampling, evaluation): the product is W xᵀ, whose output
    has 1024 columns, equal to F.linear's to rounding; 1 or 12 outputs, fewer rows, or gradients: F.linear's."""
    x = torch.randn(1024, 64, dtype=F64)
    w, b = torch.randn(outputs, 64, dtype=F64), torch.randn(outputs, dtype=F64)
    with torch.no_grad(), MatrixProducts() as seen:
        y = linear(x, w, b)
    thin = 2 <= outputs <= 8
    assert seen.shapes == ([((outputs, 64), (64, 1024))] if thin else [((1024, 64), (64, outputs))])
    torch.testing.assert_close(y.relu_(), F.linear(x, w, b).relu_(), rtol=0, atol=1e-12)
    with torch.no_grad(), MatrixProducts() as seen:
        linear(x[:256], w, b)
    assert seen.shapes == [((256, 64), (64, outputs))]
    w.requires_grad_(True)
    with MatrixProducts() as seen:
        linear(x, w, b)
    assert seen.shapes == [((1024, 64), (64, outputs))]

def test_networks_train_the_same_with_the_fast_linear() -> None:
    """An MLP and a MADE on thin inputs: parameters after a few Adam steps equal those of the same networks run
    with F.linear (the products differ only by rounding)."""
    for make in (lambda: MLP(3, 40, hidden=48, zero_last=False), lambda: MADE(3, 4, hidden=48, zero_last=False)):
        nets = []
        for use_fast in (True, False):
            torch.manual_seed(0)
            net = make().double()
            opt = torch.optim.Adam(net.parameters(), lr=1e-2)
            x = torch.randn(64, 3, dtype=F64)
            with pytest.MonkeyPatch.context() as patch:
                if not use_fast:
                    patch.setattr(f"{type(net).__module__}.linear", F.linear)
                for _ in range(5):
                    opt.zero_grad()
                    net(x).square().mean().backward()
                    opt.step()
            nets.append(net)
        for p, q in zip(nets[0].parameters(), nets[1].parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------------ initialisation


@pytest.mark.parametrize(("activation", "slope"), [("relu", 0.0), ("leaky_relu", 0.01)])
def test_mlp_hidden_layers_are_he_initialised_before_rectifiers(activation: str, slope: float) -> None:
    torch.manual_seed(0)
    net = MLP(300, 3, hidden=400, blocks=3, activation=activation)
    for lin in net.linears[:-1]:
        fan_in = lin.in_features
        bound = (6 / ((1 + slope**2) * fan_in)) ** 0.5
        w = lin.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
        assert abs(float(w.var()) / (bound**2 / 3) - 1) < 0.02  # uniform on ±bound
    assert torch.equal(net.last.weight, torch.zeros_like(net.last.weight))  # the last layer stays zero


def test_mlp_keeps_the_signal_through_depth_under_relu() -> None:
    # He et al. (2015): with He weights the mean square of a ReLU layer's pre-activations stays that of the first; under
    # PyTorch's default (a third of the variance) it would shrink by about 6 per layer, 6⁻⁵ ≈ 1e-4 over six layers.
    torch.manual_seed(0)
    net = MLP(512, 1, hidden=512, blocks=6)
    with torch.no_grad():
        for lin in net.linears:
            lin.bias.zero_()
        h = torch.randn(4096, 512)
        second_moments = []
        for lin in net.linears[:-1]:
            pre = F.linear(h, lin.weight, lin.bias)
            second_moments.append(float(pre.pow(2).mean()))
            h = pre.relu()
    assert max(second_moments) / min(second_moments) < 1.5, second_moments


def test_mlp_keeps_pytorchs_default_for_smooth_activations() -> None:
    torch.manual_seed(0)
    net = MLP(300, 3, hidden=400, blocks=2, activation="tanh")
    for lin in net.linears[:-1]:
        bound = lin.in_features**-0.5
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.99 * bound
