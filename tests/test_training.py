"""The reverse-KL loop: it learns, it repeats exactly for a seed, and it stops clearly on NaN/inf."""

import csv
import math

import pytest
import torch

from tractable import PlanarFlow, get_target
from tractable.targets.energies import Energy, Ring
from tractable.training import COLUMNS, NonFiniteError, fit_reverse_kl, make_scheduler, seed_everything


def _fit(steps=150, **kw):
    seed_everything(0)
    flow = PlanarFlow(2, 4)
    kw.setdefault("progress", False)
    history = fit_reverse_kl(flow, get_target("ring"), steps=steps, batch_size=128, **kw)
    return flow, history


def test_loss_decreases_and_rows_are_complete(tmp_path):
    path = tmp_path / "m.csv"
    _, history = _fit(300, metrics_csv=path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 300 and tuple(rows[0]) == COLUMNS
    first = sum(r["kl"] for r in history.rows[:20]) / 20
    assert history.final("kl", 20) < first - 1.0
    assert history.rows[0]["beta"] == pytest.approx(0.01) and history.rows[-1]["beta"] == 1.0
    assert history.rows[-1]["lr"] < 1e-5  # cosine schedule ends near zero


def test_same_seed_same_run():
    a, ha = _fit(60)
    b, hb = _fit(60)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert [r["loss"] for r in ha.rows] == [r["loss"] for r in hb.rows]


class _NaNAfter(Ring):
    """The ring, whose energy turns NaN on one sample from training step `k + 1` on (an injected fault).

    Only the training steps' calls count (their samples carry gradients): not the loss's probe of the target before the
    first step, nor the quadrature of log Z (which this test would otherwise run first when run alone)."""

    def __init__(self, k):
        self.calls, self.k = 0, k

    def energy(self, z):
        self.calls += z.requires_grad
        u = super().energy(z)
        if self.calls > self.k:
            u = u.clone()
            u[0] = math.nan
        return u


def test_nan_loss_names_step_and_quantity():
    with pytest.raises(NonFiniteError, match=r"step 6: the loss is nan .*target log-density in 1 of 64"):
        fit_reverse_kl(PlanarFlow(2, 2), _NaNAfter(5), steps=20, batch_size=64, progress=False)


class _BadGradient(Energy):
    name = "bad-gradient"

    def energy(self, z):
        if z.requires_grad:
            z.register_hook(lambda g: torch.full_like(g, math.nan))
        return 0.5 * (z * z).sum(-1)


def test_nan_gradient_names_step_and_parameter():
    with pytest.raises(NonFiniteError, match=r"step 1: the gradient norm is nan .*parameter 'transform"):
        fit_reverse_kl(PlanarFlow(2, 2), _BadGradient(), steps=5, batch_size=16, progress=False)


def test_bad_arguments():
    flow = PlanarFlow(2, 2)
    with pytest.raises(ValueError, match="steps.*positive integer.*0"):
        fit_reverse_kl(flow, get_target("ring"), steps=0, progress=False)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        make_scheduler(torch.optim.Adam(flow.parameters()), "linear", 10)


def test_progress_lines_when_not_a_terminal(capsys):
    _fit(20, progress=True)
    err = capsys.readouterr().err
    assert "fit ring step 20/20" in err and "kl=" in err


def test_one_loop_takes_the_loss():
    """fit(model, ReverseKLLoss(...)) is fit_reverse_kl: same rows, same weights; the rows count steps from 1."""
    from tractable.training import ReverseKLLoss, TrainOptions, fit

    a, ha = _fit(40)
    seed_everything(0)
    b = PlanarFlow(2, 4)
    hb = fit(b, ReverseKLLoss(get_target("ring"), batch_size=128), steps=40, options=TrainOptions(lr=2e-3,
                                                                                               progress=False))
    assert [r["loss"] for r in ha.rows] == [r["loss"] for r in hb.rows]
    assert [r["step"] for r in hb.rows] == list(range(1, 41)) and hb.best_step is None and hb.evaluations == []
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not b.training  # every fit ends in eval mode


def test_validation_needs_a_loss_with_its_column():
    from tractable.training import ReverseKLLoss, Validation, fit

    with pytest.raises(ValueError, match="expected a loss with a 'val_nll' column"):
        fit(PlanarFlow(2, 1), ReverseKLLoss(get_target("ring")), steps=2, validation=Validation(torch.zeros(4, 2)))
    with pytest.raises(ValueError, match=r"expected 0 <= anneal <= 1, got anneal=2"):
        ReverseKLLoss(get_target("ring"), anneal=2)
