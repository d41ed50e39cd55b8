"""Trained density models stay normalized: exp(log_prob) of a fitted NSF and RealNVP integrates to 1 in 2D."""

import pytest
import torch

from tractable import NSF, RealNVP, get_dataset
from tractable.targets.tabular import Standardizer
from tractable.targets.toy import sample_splits
from tractable.training import fit_max_likelihood
from tractable.transforms import Compose


@pytest.mark.parametrize("model", [NSF, RealNVP])
def test_trained_flow_integrates_to_one(model):
    torch.manual_seed(0)
    dataset = get_dataset("eight_gaussians")
    train, val = sample_splits(dataset, (4000, 500), seed=0)
    flow = model(2, layers=4, hidden=32)
    flow.transform = Compose(Standardizer.fit(train).as_transform(), flow.transform)
    history = fit_max_likelihood(flow, train, val=val, steps=300, batch_size=256, lr=2e-3, eval_every=100,
                                 progress=False)
    assert history.best_val_nll < 3.6  # it learned something (the base alone scores about 4.3 nats)
    flow = flow.double()
    lo, hi, n = -7.0, 7.0, 400  # the data lie within radius 2√2 + 4σ ≈ 4.2; the tails decay fast beyond
    h = (hi - lo) / n
    g = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    x, y = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        log_q = flow.log_prob(torch.stack([x.reshape(-1), y.reshape(-1)], -1))
    z = float(torch.exp(log_q).sum() * h * h)
    assert abs(z - 1) < 1e-2
