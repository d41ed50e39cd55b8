"""Issue 12, item 2 (library): a user's own log-density is a target of reverse_kl, fit_reverse_kl and
evaluate_reverse — a plain function, a torch.distributions.Distribution, an object with log_prob, an Energy — and a
log_prob of the wrong shape is refused on the first batch in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Independent, Normal, kl_divergence

from tractable import (
    CallableTarget,
    DistributionTarget,
    ElementwiseAffine,
    Energy,
    Flow,
    StandardNormal,
    as_target,
    evaluate_reverse,
    fit_reverse_kl,
    get_target,
    reverse_kl,
)

LOG_2PI = math.log(2 * math.pi)


def affine_flow(features: int = 2) -> Flow:
    """N(μ, diag σ²) as a flow, N(0, I) at initialisation."""
    torch.manual_seed(0)
    return Flow(ElementwiseAffine(features), StandardNormal(features))


def shifted(x: Tensor) -> Tensor:
    """The log-density of N((1, -1), 0.5² I) up to its normalizer."""
    return -0.5 * (((x - torch.tensor([1.0, -1.0], dtype=x.dtype)) / 0.5) ** 2).sum(-1)


SHIFTED_LOG_Z = math.log(2 * math.pi * 0.25)  # ∫ exp(shifted) over R²


def test_a_plain_function_is_a_target() -> None:
    flow = affine_flow()
    out = reverse_kl(flow, shifted, 8)  # the call: AttributeError 'function' object has no attribute 'log_prob'
    assert out.loss.shape == () and out.log_p.shape == (8,)
    history = fit_reverse_kl(flow, shifted, steps=300, lr=0.05, anneal=0.0, progress=False)
    assert history.rows[-1]["step"] == 300
    metrics = evaluate_reverse(flow, as_target(shifted, features=2, log_z=SHIFTED_LOG_Z), 20_000)
    assert metrics["kl"] < 0.01 and metrics["ess"] > 0.98, metrics
    assert metrics["pareto_k"] < 0.7


def test_an_unknown_log_z_gives_no_kl() -> None:
    """Without log Z, ``kl`` and its standard error are both None (not NaN beside a number); the ELBO carries it."""
    metrics = evaluate_reverse(affine_flow(), shifted, 2000)
    assert metrics["kl"] is None and metrics["kl_stderr"] is None and metrics["log_z"] is None
    assert math.isfinite(metrics["elbo"]) and metrics["elbo_stderr"] > 0
    assert math.isfinite(metrics["log_z_estimate"]) and 0 < metrics["ess"] <= 1


def test_a_torch_distribution_is_a_normalized_target() -> None:
    """KL(q‖p) reported for a torch Normal target (log Z = 0) agrees with the closed form."""
    flow = affine_flow()
    p = Independent(Normal(torch.tensor([0.5, -0.5]), torch.tensor([1.5, 0.8])), 1)
    q = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)  # the flow at initialisation
    torch.manual_seed(1)
    metrics = evaluate_reverse(flow, p, 50_000)
    exact = float(kl_divergence(q, p))
    assert metrics["log_z"] == 0.0
    assert abs(metrics["kl"] - exact) < 4 * metrics["kl_stderr"] + 1e-3, (metrics["kl"], exact)
    assert isinstance(as_target(p), DistributionTarget) and as_target(p).features == 2


def test_a_float64_distribution_target_of_a_float32_flow() -> None:
    p = Independent(Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1)
    out = reverse_kl(affine_flow(), p, 4)
    assert out.log_p.dtype == torch.float32


def test_an_object_with_log_prob_is_a_target() -> None:
    class Posterior:
        features = 2

        def log_prob(self, x: Tensor) -> Tensor:
            return shifted(x)

    target = as_target(Posterior())
    assert isinstance(target, CallableTarget) and target.name == "Posterior" and target.features == 2
    assert reverse_kl(affine_flow(), Posterior(), 4).log_p.shape == (4,)


class _Column(Energy):
    """An energy returning shape (batch, 1): the issue's example, which used to train silently."""

    name, features = "column", 2

    def energy(self, z: Tensor) -> Tensor:
        return 0.5 * (z * z).sum(-1, keepdim=True)


def test_a_batch_by_one_log_prob_is_refused_before_the_first_step() -> None:
    rows: list[int] = []
    message = r"target 'column': expected log_prob of shape \(2,\), one value per sample, got shape \(2, 1\); " \
              r"return a 1-D tensor \(e.g. .squeeze\(-1\)\)"
    with pytest.raises(ValueError, match=message):
        fit_reverse_kl(affine_flow(), _Column(), steps=5, progress=False, callback=lambda step, row: rows.append(step))
    assert rows == []
    with pytest.raises(ValueError, match=r"expected log_prob of shape \(7,\).*got shape \(7, 1\)"):
        reverse_kl(affine_flow(), _Column(), 7)
    with pytest.raises(ValueError, match=r"got shape \(100, 1\)"):
        evaluate_reverse(affine_flow(), _Column(), 100)


@pytest.mark.parametrize(("fn", "message"), [
    (lambda x: -0.5 * x * x, r"got shape \(4, 2\); sum the per-feature terms \(e.g. .sum\(-1\)\)"),
    (lambda x: np.zeros(len(x)), r"got a ndarray; return a torch tensor"),
    (lambda x: (-0.5 * x * x).sum(), r"got shape \(\)"),
])
def test_other_wrong_log_probs(fn: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reverse_kl(affine_flow(), fn, 4)


def test_a_wrong_feature_count_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"target 'shifted' has 3 features, but the flow's events have shape \(2,\); "
                                         r"build the flow with 3 features"):
        reverse_kl(affine_flow(), as_target(shifted, features=3), 4)
    with pytest.raises(ValueError, match=r"target 'mixture' has 3 features, but the flow's events have shape \(2,\)"):
        fit_reverse_kl(affine_flow(), get_target("mixture").__class__(locs=[[0, 0, 0]], scales=[1], weights=[1]),
                       steps=3, progress=False)
    with pytest.raises(ValueError, match=r"expected a target of 2 features, got 'ring' of 2|expected a target of 3"):
        as_target(get_target("ring"), features=3)


def test_not_a_target() -> None:
    with pytest.raises(TypeError, match="expected a target with a log-density: .* got int"):
        reverse_kl(affine_flow(), 3, 4)
    with pytest.raises(ValueError, match="expected features to be a positive integer, got 0"):
        CallableTarget(shifted, features=0)


def test_zero_target_density_counts_as_weight_zero() -> None:
    """A target with bounded support (zero density for x₁ < −1): KL is honestly infinite, the rest is computed."""

    def half_plane(x: Tensor) -> Tensor:
        return torch.where(x[:, 0] > -1, -0.5 * (x * x).sum(-1), -math.inf)

    metrics = evaluate_reverse(affine_flow(), as_target(half_plane, log_z=0.0), 5000)
    assert metrics["kl"] == math.inf and metrics["elbo"] == -math.inf
    assert 0.5 < metrics["ess"] < 1 and math.isfinite(metrics["log_z_estimate"])
    assert math.isfinite(metrics["pareto_k"])
