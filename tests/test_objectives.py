"""Objectives and diagnostics against cases whose answers are known exactly."""

import math

import pytest
import torch

from tractable import (
    DiagonalGaussian,
    Flow,
    GaussianMixtureEnergy,
    Inverse,
    Planar,
    annealing,
    ess_fraction,
    evaluate_reverse,
    forward_kl,
    log_z_estimate,
    reverse_kl,
)


def _gaussian_flow(loc, log_scale):
    base = DiagonalGaussian(2).double()
    with torch.no_grad():
        base.loc.copy_(torch.tensor(loc))
        base.log_scale.copy_(torch.tensor(log_scale))
    t = Planar(2).double()
    with torch.no_grad():  # u = log(e - 1) w/‖w‖² gives û = 0: the identity map
        t.u.copy_(math.log(math.e - 1) * t.w / (t.w * t.w).sum(-1, keepdim=True))
    return Flow(Inverse(t), base)


def test_ess_and_log_z_estimate_formulas():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert ess_fraction(w.log()) == pytest.approx(float(w.sum() ** 2 / (w**2).sum()) / 4)
    assert log_z_estimate(w.log()) == pytest.approx(math.log(w.mean()))
    assert ess_fraction(torch.zeros(10)) == pytest.approx(1.0)
    assert ess_fraction(torch.tensor([0.0, -1e4, -1e4])) == pytest.approx(1 / 3, rel=1e-6)


def test_exact_kl_is_zero_when_flow_equals_target():
    torch.manual_seed(0)
    target = GaussianMixtureEnergy(locs=[[0.5, -1.0]], scales=[0.7], weights=[1.0])
    flow = _gaussian_flow([0.5, -1.0], [math.log(0.7)] * 2)
    m = evaluate_reverse(flow, target, 20_000)
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)
    assert m["ess"] == pytest.approx(1.0, abs=1e-6)
    assert m["log_z_estimate"] == pytest.approx(0.0, abs=1e-6)


def test_exact_kl_between_gaussians_matches_closed_form():
    torch.manual_seed(1)
    target = GaussianMixtureEnergy(locs=[[0.0, 0.0]], scales=[1.0], weights=[1.0])
    flow = _gaussian_flow([1.0, 0.0], [math.log(2.0), 0.0])
    # KL(N(m, diag(s²)) ‖ N(0, I)) = ½ Σ (s² + m² - 1 - 2 log s)
    expect = 0.5 * ((4 + 1 - 1 - 2 * math.log(2)) + 0.0)
    m = evaluate_reverse(flow, target, 200_000)
    assert m["kl"] == pytest.approx(expect, abs=4 * m["kl_stderr"] + 1e-3)


def test_reverse_kl_loss_and_annealing():
    torch.manual_seed(2)
    target = GaussianMixtureEnergy(locs=[[0.0, 0.0]], scales=[1.0], weights=[1.0])
    flow = _gaussian_flow([0.0, 0.0], [0.0, 0.0])
    out = reverse_kl(flow, target, 64, beta=0.5)
    torch.testing.assert_close(out.loss, (out.log_q - 0.5 * out.log_p).mean())
    assert out.loss.requires_grad
    assert annealing(0, 100) == pytest.approx(0.01)
    assert annealing(50, 100) == pytest.approx(0.51)
    assert annealing(200, 100) == 1.0
    assert annealing(3, 0) == 1.0


def test_forward_kl_is_mean_nll():
    flow = _gaussian_flow([0.0, 0.0], [0.0, 0.0])
    x = torch.randn(10, 2, dtype=torch.float64)
    expect = -torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1).mean()
    torch.testing.assert_close(forward_kl(flow, x), expect)
