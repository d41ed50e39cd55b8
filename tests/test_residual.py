"""Residual flows: the Russian-roulette log-determinant and its Neumann-series gradient are unbiased, the spectral
normalisation keeps every layer within its Lipschitz coefficient, a trained 2-D model integrates to 1, and
``tractable fit checkerboard --model resflow`` runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tractable.cli import main
from tractable.models.resflow import ResidualFlow
from tractable.targets.quadrature import log_integral_2d
from tractable.targets.tabular import Standardizer
from tractable.targets.toy import get_dataset, sample_splits
from tractable.testing import randomised
from tractable.training import fit_max_likelihood
from tractable.transforms import Compose
from tractable.transforms.residual import ResidualBlock


def converged_block(seed: int = 0) -> ResidualBlock:
    """A float64 block in training mode whose power iterations have converged (so its weights stay put)."""
    torch.manual_seed(seed)
    block = randomised(ResidualBlock(2, hidden=16, blocks=1, coefficient=0.9), 3.0).train()
    for _ in range(300):
        block.weights()
    return block


def test_russian_roulette_log_det_is_unbiased():
    """10,000 draws (100 calls × 100 rows; one roulette length per call): the mean is within 3 standard errors of
    the exact log-determinant at the same weights."""
    block = converged_block()
    x = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        weights = block.weights()
        exact = block._exact(x, weights)[1]
        calls = torch.stack([block._stochastic(x.repeat(100, 1), weights)[1].view(100, 3).mean(0)
                             for _ in range(100)])
    mean, se = calls.mean(0), calls.std(0) / 10
    assert bool((exact.abs() > 20 * se).all()), (exact, se)  # the test can tell an estimator from zero
    assert bool(((mean - exact).abs() < 3 * se).all()), (mean, exact, se)


def test_neumann_gradient_is_unbiased():
    """The gradient of the training-mode ladj with respect to the first weight matrix, over 10,000 draws (200 calls ×
    50 rows), is within 3 standard errors of the gradient of the exact log-determinant."""
    block = converged_block(1)
    x = torch.randn(1, 2, dtype=torch.float64)
    weight = block.linears[0].weight

    def grad(fn) -> torch.Tensor:
        return torch.autograd.grad(fn(x.repeat(50, 1), block.weights())[1].mean(), weight)[0].flatten()

    exact = grad(block._exact)
    draws = torch.stack([grad(block._stochastic) for _ in range(200)])
    mean, se = draws.mean(0), draws.std(0) / 200**0.5
    big = exact.abs() > 10 * se
    assert int(big.sum()) >= 3, (exact, se)
    assert bool(((mean - exact).abs() < 3 * se + 1e-12).all()), (mean, exact, se)


def test_spectral_norms_within_coefficient():
    torch.manual_seed(0)
    block = randomised(ResidualBlock(3, hidden=16, coefficient=0.8), 3.0)
    for mode in ("eval", "train"):
        getattr(block, mode)()
        for _ in range(100):
            weights = block.weights()
        for w in weights:
            assert float(torch.linalg.matrix_norm(w.detach(), ord=2)) <= 0.8 * (1 + 1e-6), mode


def test_training_modes_agree_on_the_map():
    """``stochastic`` and ``exact`` training give the same output; their ladj agree in expectation (above)."""
    block = converged_block(2)
    x = torch.randn(6, 2, dtype=torch.float64)
    y1, _ = block(x)
    block.logdet = "exact"
    y2, ladj = block(x)
    torch.testing.assert_close(y1, y2)
    assert ladj.requires_grad


def test_above_the_exact_limit_uses_the_estimator():
    torch.manual_seed(0)
    block = randomised(ResidualBlock(3, hidden=8, exact_limit=2), 1.0).eval()
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        a, b = block(x)[1], block(x)[1]
        back = block.inverse(block(x)[0])[0]
    assert not torch.equal(a, b)  # stochastic
    torch.testing.assert_close(back, x, rtol=0, atol=1e-9)


def test_trained_resflow_integrates_to_one():
    torch.manual_seed(0)
    dataset = get_dataset("eight_gaussians")
    train, val = sample_splits(dataset, (4000, 500), seed=0)
    flow = ResidualFlow(2, layers=3, hidden=32)
    flow.transform = Compose(Standardizer.fit(train).as_transform(), flow.transform)
    history = fit_max_likelihood(flow, train, val=val, steps=300, batch_size=256, lr=1e-2, eval_every=100,
                                 progress=False)
    assert history.best_val_nll < 3.9  # it learned something (the base alone scores about 4.3 nats)
    flow = flow.double().eval()
    with torch.no_grad():
        mass = math.exp(log_integral_2d(flow.log_prob, (-7.0, 7.0), 300))
    assert abs(mass - 1) < 1e-2, mass


def test_cli_fit_checkerboard_resflow(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "checkerboard", "--model", "resflow", "--layers", "2", "--hidden", "16", "--steps", "20",
                 "--batch-size", "64", "--eval-every", "10", "--set", "data.train_size=2000", "--set",
                 "data.val_size=500", "--set", "data.test_size=1000", "--no-plots", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["flow"] == "resflow" and metrics["test_nll"] < 10


def test_exact_training_above_the_limit_is_refused():
    with pytest.raises(ValueError, match="exact_limit"):
        ResidualBlock(20, logdet="exact")
