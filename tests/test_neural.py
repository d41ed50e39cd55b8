"""Neural autoregressive flows (NAF, UNAF, BNAF): Clenshaw–Curtis quadrature is exact where it should be, trained 2-D
models integrate to 1, and ``tractable fit checkerboard --model naf|unaf|bnaf`` runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tractable.cli import main
from tractable.models.naf import BNAF, NAF, UNAF
from tractable.targets.quadrature import log_integral_2d
from tractable.targets.tabular import Standardizer
from tractable.targets.toy import get_dataset, sample_splits
from tractable.testing import randomised
from tractable.training import fit_max_likelihood
from tractable.transforms import Compose
from tractable.transforms.autoregressive import MaskedAutoregressive
from tractable.transforms.neural import IntegralMap, clenshaw_curtis


@pytest.mark.parametrize("nodes", [4, 7, 16])
def test_clenshaw_curtis_integrates_polynomials_exactly(nodes):
    t, w = clenshaw_curtis(nodes)
    for degree in range(nodes + 1):
        exact = (1 - (-1) ** (degree + 1)) / (degree + 1)
        assert float((w * t**degree).sum()) == pytest.approx(exact, abs=1e-13), degree


def test_integral_map_matches_a_known_integral():
    """With the integrand network replaced by g(u) = exp(7 tanh(sin u / 7)), the map matches scipy's quad."""
    scipy_integrate = pytest.importorskip("scipy.integrate")
    import math

    m = IntegralMap(0, nodes=32).double()
    m.log_integrand = lambda u, h, feature=None: 7 * torch.tanh(torch.sin(u) / 7)
    x = torch.tensor([[-3.0], [0.5], [2.0]], dtype=torch.float64)
    y, log_d = m(x, torch.zeros(3, 1, 1, dtype=torch.float64))
    for xi, yi in zip(x.flatten().tolist(), y.flatten().tolist()):
        ref = scipy_integrate.quad(lambda u: math.exp(7 * math.tanh(math.sin(u) / 7)), 0, xi, epsabs=1e-13)[0]
        assert yi == pytest.approx(ref, abs=1e-10)
    torch.testing.assert_close(log_d, 7 * torch.tanh(torch.sin(x) / 7))


@pytest.mark.parametrize("s", [-28.0, -7.0, 0.0, 3.0, 28.0, 1e4])
def test_integrand_clip_is_bounded_and_keeps_a_gradient_far_out(s):
    """log g = s/√(1 + (s/7)²): within ±7, the identity's slope at 0, and at |s| = 28 still a slope of
    (1 + 16)^(-3/2) = 0.014 (7 tanh(s/7) would give 1.3e-3 there: a saturated integrand stops learning)."""
    m = IntegralMap(0, hidden=4).double()
    bias = m.layers[-1].bias
    with torch.no_grad():
        bias.fill_(s)  # the last layer's weights are zero: s is the bias, for every point
    log_g = m.log_integrand(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64))
    (grad,) = torch.autograd.grad(log_g[0, 0], bias)
    log_g = log_g.detach()
    assert float(log_g.abs().max()) < m.CLIP
    assert float(log_g[0, 0]) == pytest.approx(s / math.sqrt(1 + (s / 7) ** 2), rel=1e-12)
    assert float(grad) == pytest.approx((1 + (s / 7) ** 2) ** -1.5, rel=1e-9)


def test_integrand_per_feature_is_each_features_own_network():
    """With an integrand network per feature, the map of all features at once is, feature by feature, the selected
    map of that feature (what the sequential inverse uses), and feature i's output moves with network i alone."""
    torch.manual_seed(0)
    m = IntegralMap(3, hidden=8, features=4).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    x, theta = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, 4, dtype=torch.float64)
    y, log_d = m(x, theta)
    for i in range(4):
        yi, log_di = m.select(i)(x[:, i], theta[:, i])
        torch.testing.assert_close(yi, y[:, i])
        torch.testing.assert_close(log_di, log_d[:, i])
        xi, _ = m.select(i).inverse(yi, theta[:, i])
        torch.testing.assert_close(xi, x[:, i])
    with torch.no_grad():
        m.layers[1].weight[2] += 1.0  # feature 2's network only
    y2, _ = m(x, theta)
    changed = (y2 - y).abs().amax(0) > 0
    assert changed.tolist() == [False, False, True, False]
    assert m.select(1) is not m and IntegralMap(3).select(1) is not None


def test_integrand_per_feature_checks_the_feature_axis():
    m = IntegralMap(2, hidden=4, features=3)
    with pytest.raises(ValueError, match=r"expected elements of shape \(\.\.\., 3\).*got shape \(5, 2\)"):
        m(torch.randn(5, 2), torch.zeros(5, 2, 3))
    with pytest.raises(ValueError, match="features=0"):
        IntegralMap(2, features=0)


@pytest.mark.parametrize("features", [None, 3])
def test_integrand_units_start_bending_across_the_data(features):
    """The first layer's point weights lie in [-slope, slope] and each unit's bend -b/w in [-spread, spread], spread
    out (not all near 0, as nn.Linear's small biases over its weights put them); the map is still the identity."""
    torch.manual_seed(0)
    m = IntegralMap(4, hidden=64, slope=1.5, spread=2.5, features=features)
    w, b = m.layers[0].weight[..., 0].detach(), m.layers[0].bias.detach()
    bends = -b / w
    assert float(w.abs().max()) <= 1.5 and float(w.abs().max()) > 1.2
    assert float(bends.abs().max()) <= 2.5 + 1e-6 and float((bends.abs() > 1.25).float().mean()) > 0.3
    x = torch.randn(5, 3)
    y, log_d = m(x, m.identity().expand(5, 3, m.params))
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)
    assert float(log_d.detach().abs().max()) == 0.0
    torch.manual_seed(0)
    plain = IntegralMap(4, hidden=64, slope=0.0)
    assert float(plain.layers[0].weight.detach().abs().max()) <= 1 / math.sqrt(5)  # nn.Linear's bound
    with pytest.raises(ValueError, match="expected slope >= 0, spread >= 0 and eval_nodes None or >= 2, got "
                                         "slope=-1.0, spread=2.5, eval_nodes=None"):
        IntegralMap(4, slope=-1.0)
    with pytest.raises(ValueError, match="eval_nodes=1"):
        IntegralMap(4, eval_nodes=1)


@pytest.mark.parametrize("seed", [0, 21])
def test_inverse_brackets_the_root_where_the_quadrature_resolves_the_integrand(seed):
    """Steep random integrands (slope 4, weights perturbed by 0.3) whose root bracket v·[e^-7, e^7] reached
    |x| ≈ 2,000, where 33 nodes miss the integrand's bumps near 0: the inverse returned the bracket's end (round-trip
    errors of 2,289 and 2,386 for these seeds). Doubling from |v| keeps every evaluation near the root."""
    torch.manual_seed(seed)
    t = randomised(MaskedAutoregressive(3, IntegralMap(4, hidden=8, features=3), hidden=8, activation="tanh",
                                        order=[2, 0, 1]), 0.3)
    x = 3 * (2 * torch.rand(64, 3, dtype=torch.float64) - 1)
    with torch.no_grad():
        back, _ = t.inverse(t(x)[0])
    torch.testing.assert_close(back, x, atol=1e-9, rtol=0)


def test_eval_nodes_are_the_quadrature_of_eval_mode():
    """Train mode integrates with ``nodes``, eval mode with ``eval_nodes``: with a steep integrand the two differ by
    the coarse rule's error, and the eval-mode value is the finer rule's."""
    torch.manual_seed(0)
    coarse = IntegralMap(2, hidden=16, nodes=4, eval_nodes=64).double()
    with torch.no_grad():
        coarse.layers[-1].weight.normal_(0, 1.0)
    fine = IntegralMap(2, hidden=16, nodes=64).double()
    fine.load_state_dict(coarse.state_dict())
    x, theta = 3 * torch.randn(8, 1, dtype=torch.float64), torch.randn(8, 1, 3, dtype=torch.float64)
    with torch.no_grad():
        y_train, _ = coarse.train()(x, theta)
        y_eval, _ = coarse.eval()(x, theta)
        torch.testing.assert_close(y_eval, fine(x, theta)[0])
    assert float((y_train - y_eval).abs().max()) > 1e-4


def test_bnaf_biases_span_the_range_of_each_layers_input():
    torch.manual_seed(0)
    first, hidden, last = BNAF(2, layers=1, hidden=16, bias_range=2.0).transform.transforms[0].layers
    assert first.bias.abs().max() <= 2.0 and first.bias.abs().max() > 1.0  # 32 draws of U(-2, 2)
    assert 0.5 < hidden.bias.abs().max() <= 1.0  # U(-1, 1): the tanh units' range (default: ±1/√32 = ±0.18)
    assert last.bias.abs().max() <= 1 / 2**0.5
    with pytest.raises(ValueError, match="expected a positive bias_range, got 0"):
        BNAF(2, bias_range=0)


def _fit(model, lr, **options):
    torch.manual_seed(0)
    dataset = get_dataset("eight_gaussians")
    train, val = sample_splits(dataset, (4000, 500), seed=0)
    flow = model(2, **options)
    flow.transform = Compose(Standardizer.fit(train).as_transform(), flow.transform)
    history = fit_max_likelihood(flow, train, val=val, steps=200, batch_size=256, lr=lr, eval_every=100,
                                 progress=False)
    return flow, history


@pytest.mark.parametrize(("model", "lr", "options"), [
    (NAF, 1e-2, {"layers": 3, "hidden": 32}),
    (UNAF, 1e-2, {"layers": 2, "hidden": 32, "integrand_hidden": 16}),
    (UNAF, 1e-2, {"layers": 2, "hidden": 32, "integrand_hidden": 16, "integrand_per_feature": True}),
    (BNAF, 2e-2, {"layers": 3, "hidden": 8}),
])
def test_trained_flow_integrates_to_one(model, lr, options):
    flow, history = _fit(model, lr, **options)
    assert history.best_val_nll < 3.7, history.best_val_nll  # learned something (the base alone: about 4.3 nats)
    flow = flow.double().eval()
    with torch.no_grad():
        mass = math.exp(log_integral_2d(flow.log_prob, (-7.0, 7.0), 300))
    assert abs(mass - 1) < 1e-2, mass


@pytest.mark.parametrize("model", ["naf", "unaf", "bnaf"])
def test_cli_fit_checkerboard(tmp_path, model):
    out = tmp_path / "run"
    assert main(["fit", "checkerboard", "--model", model, "--layers", "2", "--hidden", "8", "--steps", "20",
                 "--batch-size", "64", "--eval-every", "10", "--set", "data.train_size=2000", "--set",
                 "data.val_size=500", "--set", "data.test_size=1000", "--no-plots", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["flow"] == model and metrics["test_nll"] < 10


@pytest.mark.parametrize("module", ["tractable.transforms.residual", "tractable.transforms.neural",
                                    "tractable.transforms.bnaf", "tractable.models.resflow", "tractable.models.naf"])
def test_the_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
