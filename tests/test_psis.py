"""Pareto-smoothed importance sampling (tractable.diagnostics): k̂ and the smoothed weights equal ArviZ's
``psislw``, k̂ separates a good variational fit from a bad one, and PSIS corrects expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tractable import ElementwiseAffine, Flow, StandardNormal, evaluate_reverse
from tractable.diagnostics import K_RELIABLE, pareto_k, pareto_k_reading, psis, psis_expectation


def _log_weight_sets() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, dtype=torch.float64, generator=g)
    t3 = torch.distributions.StudentT(3.0).sample((4000,)).double()
    with_zero = 0.3 * torch.randn(1000, dtype=torch.float64, generator=g)
    with_zero[::50] = -math.inf  # points of zero target density
    return {
        "light": 0.5 * x,  # log-normal weights of small variance: k̂ well below 0.5
        "heavy": 1.5 * x + 2.0,  # log-normal of larger variance
        "pareto": torch.log(t3.abs() + 1e-3) * 2.5,  # a power-law tail, k̂ near 1
        "tiny": 0.5 * x[:30],  # a short sample: a tail of 6 weights
        "zeros": with_zero,
    }


@pytest.mark.parametrize("name", sorted(_log_weight_sets()))
def test_psis_matches_arviz(name: str) -> None:
    arviz = pytest.importorskip("arviz")
    log_w = _log_weight_sets()[name]
    ours = psis(log_w)
    theirs, k = arviz.psislw(log_w.numpy().copy(), reff=1.0)
    assert ours.k == pytest.approx(float(k), abs=1e-10), (ours.k, float(k))
    np.testing.assert_allclose(ours.log_weights.numpy(), theirs, rtol=0, atol=1e-10)
    assert float(torch.logsumexp(ours.log_weights, 0)) == pytest.approx(0.0, abs=1e-12)
    via = psis(log_w, backend="arviz")
    assert via.k == pytest.approx(ours.k, abs=1e-10)


def test_psis_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        psis(torch.tensor([0.0, math.nan, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        psis(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="unknown PSIS backend 'x'"):
        psis(torch.zeros(10), backend="x")


def _gaussian_flow(scale: float, features: int = 2) -> Flow:
    """A flow of N(0, scale² I): an elementwise affine map of a standard normal."""
    t = ElementwiseAffine(features)
    with torch.no_grad():
        for name, p in t.named_parameters():
            if "scale" in name:
                p.fill_(-math.log(scale))  # forward (normalizing) divides by the scale
    return Flow(t, StandardNormal(features))


def test_pareto_k_tells_a_good_fit_from_a_bad_one() -> None:
    """q = N(0, I) against p = N(0, 1.1² I) (close: light-tailed weights) and p = N(0, 3² I) (q far too narrow: the
    weights grow like exp(|x|²·(1 − 1/9)/2), the textbook case of an overconfident variational fit); and p = q
    (constant weights, tied: k̂ = 0, not ArviZ's inf)."""
    torch.manual_seed(0)
    flow = _gaussian_flow(1.0)
    close = evaluate_reverse(flow, lambda x: -0.5 * (x**2).sum(-1) / 1.21, 20_000)
    wide = evaluate_reverse(flow, lambda x: -0.5 * (x**2).sum(-1) / 9, 20_000)
    assert close["pareto_k"] < K_RELIABLE < wide["pareto_k"], (close["pareto_k"], wide["pareto_k"])
    assert evaluate_reverse(flow, lambda x: -0.5 * (x**2).sum(-1), 20_000)["pareto_k"] < K_RELIABLE
    assert psis(torch.zeros(100, dtype=torch.float64)).k == 0.0 and psis(torch.zeros(20)).k == math.inf
    assert pareto_k_reading(close["pareto_k"], 20_000).endswith("< 0.70: importance weights reliable")
    assert "< 0.67" in pareto_k_reading(0.5, 1000)  # the sample-size threshold 1 − 1/log₁₀ S of Vehtari et al.
    assert "unreliable" in pareto_k_reading(0.8) and "not usable" in pareto_k_reading(1.3)
    assert pareto_k_reading(None) == "Pareto k̂ unavailable"


def test_evaluate_reverse_pareto_k_is_psis_of_its_samples() -> None:
    flow = _gaussian_flow(1.3)
    target = lambda x: -0.5 * (x**2).sum(-1)
    torch.manual_seed(1)
    metrics = evaluate_reverse(flow, target, 5000)
    torch.manual_seed(1)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(5000)
    assert metrics["pareto_k"] == pytest.approx(pareto_k(target(x).double() - log_q.double()), abs=1e-9)


def test_psis_expectation_corrects_the_mean() -> None:
    """q = N(0, 1.2² I) against p = N(0.5, I): q's own mean is 0, the PSIS estimate the target's 0.5."""
    torch.manual_seed(2)
    flow = _gaussian_flow(1.2)
    target = lambda x: -0.5 * ((x - 0.5) ** 2).sum(-1)
    result = psis_expectation(flow, target, n=40_000)
    assert result.reliable and 0 < result.ess <= 1
    torch.testing.assert_close(result.value, torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=0.03)
    second = psis_expectation(flow, target, lambda x: (x**2).sum(-1), n=40_000)  # E_p|x|² = 2 + 2·0.25
    assert second.value.shape == () and abs(float(second.value) - 2.5) < 0.1
    with pytest.raises(ValueError, match="one value per sample"):
        psis_expectation(flow, target, lambda x: x.sum(), n=100)
