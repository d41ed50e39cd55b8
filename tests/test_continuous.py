"""Continuous normalizing flows: the exact ODE log-determinant against autograd at d = 2, 3, Hutchinson's estimator
unbiased, RNODE's regularisers, the adjoint, flow matching's loss, the optional dependency, trained 2D densities
integrating to 1."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from tractable.models.continuous import FFJORD, FlowMatching
from tractable.targets.quadrature import log_integral_2d
from tractable.targets.toy import get_dataset
from tractable.testing import jacobians, randomised
from tractable.training import fit_max_likelihood
from tractable.transforms.continuous import INSTALL, ContinuousFlow


def field(d: int, **options: object) -> ContinuousFlow:
    """A randomised float64 field with time frequencies (a harder, time-varying field than the suite's cases)."""
    torch.manual_seed(d)
    return randomised(ContinuousFlow(d, hidden=8, blocks=1, freqs=2, activation="tanh", **options), 0.3).double()


@pytest.mark.parametrize("space_freqs", [0, 3])
@pytest.mark.parametrize("d", [2, 3])
def test_exact_ladj_matches_autograd(d: int, space_freqs: int) -> None:
    t = field(d, rtol=1e-9, atol=1e-9, space_freqs=space_freqs).eval()
    x = torch.randn(3, d, dtype=torch.float64)
    for fn in (t.forward, t.inverse):
        _, ladj = fn(x)
        logdet = torch.linalg.slogdet(jacobians(lambda v, fn=fn: fn(v)[0], x))[1]
        torch.testing.assert_close(ladj, logdet, rtol=0, atol=1e-5)
        assert ladj.abs().min() > 1e-2  # a real check, not the identity's zero
    torch.testing.assert_close(t.inverse(t(x)[0])[0], x, rtol=0, atol=1e-6)


def test_space_features_are_saved_and_optional() -> None:
    """The Fourier features' frequencies are part of the saved state; a field without them has none to load, so a
    state saved before they existed still loads; bad sizes fail in one line."""
    torch.manual_seed(0)
    a, b = ContinuousFlow(2, space_freqs=5, space_scale=2.0), ContinuousFlow(2, space_freqs=5, space_scale=2.0)
    assert a.field.space.shape == (2, 5) and not torch.equal(a.field.space, b.field.space)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2)
    torch.testing.assert_close(b.field(torch.tensor(0.3), x), a.field(torch.tensor(0.3), x))
    plain = ContinuousFlow(2).state_dict()
    assert not any(k.endswith("space") for k in plain)
    ContinuousFlow(2).load_state_dict(plain)
    for bad in ({"space_freqs": -1}, {"space_scale": 0.0}, {"space_scale": float("nan")}):
        with pytest.raises(ValueError, match="space_"):
            ContinuousFlow(2, **bad)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise: str) -> None:
    """10,000 probes (one per row of one point repeated): their mean ladj is the exact one within 3 standard errors."""
    t = field(3, noise=noise)
    x = torch.randn(1, 3, dtype=torch.float64)
    with torch.no_grad():
        exact = t.eval()(x)[1]
        estimates = t.train()(x.expand(10_000, 3))[1]
    se = estimates.std() / math.sqrt(len(estimates))
    assert estimates.std() > 1e-3  # the estimator is stochastic
    assert (estimates.mean() - exact).abs() < 3 * se, (estimates.mean().item(), exact.item(), se.item())


def test_rnode_regularisers_and_adjoint() -> None:
    """The kinetic integral of a constant field is ‖v‖² (one unit of time); the adjoint gives the same gradients."""
    t = ContinuousFlow(2, hidden=4, blocks=1, freqs=0).double()
    with torch.no_grad():
        t.field.net.last.bias.copy_(torch.tensor([0.3, -0.4]))  # v = (0.3, -0.4) everywhere (zero last weights)
    t.regularize = True
    x = torch.randn(5, 2, dtype=torch.float64)
    z, _ = t(x)
    kinetic, frobenius = t.regularization
    torch.testing.assert_close(z, x - torch.tensor([0.3, -0.4], dtype=torch.float64))
    torch.testing.assert_close(kinetic, torch.full((5,), 0.25, dtype=torch.float64))
    torch.testing.assert_close(frobenius, torch.zeros(5, dtype=torch.float64))  # ∂v/∂x = 0
    t.eval()
    randomised(t, 0.3)
    grads = []
    for adjoint in (False, True):
        t.adjoint, t.rtol, t.atol = adjoint, 1e-9, 1e-9
        t.zero_grad()
        t(x)[1].sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in t.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_flow_matching_loss_targets_the_ot_path() -> None:
    """With v = 0 the loss is E‖x₁ − (1 − σ)x₀‖²; the gradient reaches the field; the path's end is the data."""
    fm = FlowMatching(2, hidden=8, blocks=1, sigma_min=0.0).double()
    x = torch.full((20_000, 2), 2.0, dtype=torch.float64)
    loss = fm.training_loss(x)
    assert loss.shape == (20_000,)
    assert abs(loss.mean().item() - (2 * 4 + 2)) < 0.1  # E‖2 − x₀‖² = 8 + 2
    loss.mean().backward()
    assert fm.transform.field.net.last.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="path"):
        FlowMatching(2, path="curved")


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_flow_matching_training_times_have_the_stated_density(power: float) -> None:
    """t = u^(1/k) has CDF t^k: the empirical CDF of 20,000 draws is within 0.02 of it (Kolmogorov-Smirnov; the
    uniform CDF differs from t² by 0.25)."""
    torch.manual_seed(0)
    t = FlowMatching(2, hidden=8, blocks=1, time_power=power).sample_times(20_000, dtype=torch.float64).squeeze(-1)
    t = t.sort().values
    empirical = torch.arange(1, len(t) + 1, dtype=torch.float64) / len(t)
    assert t.min() >= 0 and t.max() <= 1
    assert (empirical - t.pow(power)).abs().max() < 0.02
    with pytest.raises(ValueError, match="time_power"):
        FlowMatching(2, time_power=0)


def test_torchdiffeq_is_optional() -> None:
    """`import tractable` (and its models) never imports torchdiffeq; without it, building a CNF is one line."""
    code = ("import sys, tractable, tractable.models.registry, tractable.transforms; "
            "assert 'torchdiffeq' not in sys.modules; sys.modules['torchdiffeq'] = None\n"
            "try:\n    tractable.models.registry.MODELS['fm'](2)\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == INSTALL and "pip install 'tractable[ode]'" in out and "\n" not in out


@pytest.mark.parametrize("model", ["fm", "ffjord"])
def test_trained_density_integrates_to_one(model: str) -> None:
    """A tiny model fitted briefly to eight_gaussians (its own loss) is a density: its grid integral is 1 (1e-2)."""
    torch.manual_seed(0)
    data = get_dataset("eight_gaussians").sample(2000, generator=torch.Generator().manual_seed(0)) / 2
    if model == "fm":
        flow = FlowMatching(2, hidden=16, blocks=2, tol=1e-4)
    else:
        flow = FFJORD(2, hidden=16, blocks=1, tol=1e-2, eval_tol=1e-4, kinetic=0.1, jacobian=0.1)
    fit_max_likelihood(flow, data, steps=30 if model == "fm" else 10, batch_size=256, lr=1e-2, progress=False)
    flow.eval()
    assert flow.transform.field.net.last.weight.abs().sum() > 0  # trained away from the identity
    with torch.no_grad():
        mass = math.exp(log_integral_2d(lambda g: flow.log_prob(g.float()).double(), (-6.0, 6.0), 60))
    assert abs(mass - 1) < 1e-2, mass


@pytest.mark.parametrize("module", ["tractable.transforms.continuous", "tractable.models.continuous",
                                    "tractable.models.ncsf", "tractable.transforms.circular"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0, result
