"""The maximum-likelihood loop: it reaches the data's entropy on a model that contains the truth, restores the best
validated state, stops early, names the step of a NaN, writes its CSV, repeats exactly for a seed, and handles
contexts (the per-label acceptance check on the labelled Gaussian mixture)."""

import csv
import math

import pytest
import torch
from torch import nn

from tractable import Flow, PlanarFlow, StandardNormal, Transform
from tractable.targets.toy import GaussianMixtureData, get_dataset, sample_splits
from tractable.training import (
    ML_COLUMNS,
    NonFiniteError,
    evaluate_conditional_toy,
    evaluate_nll,
    evaluate_toy,
    fit_max_likelihood,
)


class _Affine(Transform):
    """Test model: ``z = L⁻¹(x − μ)`` with a lower-triangular ``L`` (full-covariance Gaussian flows).

    With ``context_features = K`` every parameter is ``context @ table`` (one row per one-hot label), so a
    conditional flow can hold each mixture component exactly.
    """

    def __init__(self, context_features=0):
        super().__init__()
        rows = max(context_features, 1)
        self.shift = nn.Parameter(torch.zeros(rows, 2))
        self.log_diag = nn.Parameter(torch.zeros(rows, 2))
        self.off = nn.Parameter(torch.zeros(rows, 1))
        self.calls, self.nan_from, self.nan_in_eval = 0, None, False

    def _params(self, x, context):
        pick = (lambda t: context @ t) if context is not None else (lambda t: t.expand(x.shape[0], -1))
        return pick(self.shift), pick(self.log_diag), pick(self.off)[:, 0]

    def forward(self, x, context=None):
        self.calls += 1
        mu, ld, off = self._params(x, context)
        d = x - mu
        z0 = d[:, 0] * torch.exp(-ld[:, 0])
        z1 = (d[:, 1] - off * z0) * torch.exp(-ld[:, 1])
        ladj = -ld.sum(-1)
        if (self.nan_from is not None and self.calls >= self.nan_from) or (self.nan_in_eval and not self.training):
            ladj = ladj.clone()
            ladj[0] = math.nan
        return torch.stack([z0, z1], -1), ladj

    def inverse(self, z, context=None):
        mu, ld, off = self._params(z, context)
        x0 = z[:, 0] * torch.exp(ld[:, 0])
        x1 = z[:, 1] * torch.exp(ld[:, 1]) + off * z[:, 0] * torch.exp(ld[:, 0])
        return torch.stack([x0, x1], -1) + mu, ld.sum(-1)


def _gaussian_data(n=4000, seed=0):
    d = GaussianMixtureData(locs=((1.0, -2.0),), covariances=(((0.5, 0.3), (0.3, 1.2)),), weights=(1.0,))
    return d, sample_splits(d, (n, 1000, 20_000), seed=seed)


def _flow(context_features=0):
    return Flow(_Affine(context_features), StandardNormal(2))


def test_reaches_the_entropy_of_a_gaussian(tmp_path):
    d, (train, val, test) = _gaussian_data()
    flow = _flow()
    history = fit_max_likelihood(flow, train, val=val, steps=400, batch_size=256, lr=0.05, eval_every=50,
                                 progress=False)
    first, last = history.rows[0]["loss"], history.final("loss", 50)
    assert last < first - 1.0
    report = evaluate_toy(flow, d, test=test)
    assert abs(report["kl_gap"]) < 4 * report["test_nll_stderr"] + 0.01
    assert 0 <= report["kl_paired"] < 0.01  # the fitted Gaussian is within 0.01 nats of the truth
    assert report["entropy"] == pytest.approx(d.component_entropies[0], abs=1e-6)


def test_evaluate_nll_batches_and_stderr():
    _, (train, _, _) = _gaussian_data(n=1000)
    flow = _flow()
    nll = -flow.log_prob(train).detach().double()
    mean, se = evaluate_nll(flow, train, batch_size=7)
    assert mean == pytest.approx(float(nll.mean()), rel=1e-6)
    assert se == pytest.approx(float(nll.std()) / math.sqrt(1000))
    flow.train()
    evaluate_nll(flow, train)
    assert flow.training  # the mode is restored


def _perturb_after(step0):
    """A callback that wrecks the shift after ``step0`` (so later validations get worse)."""

    def callback(flow):
        def inner(step, row):
            if step >= step0:
                with torch.no_grad():
                    flow.transform.shift.add_(0.5)
        return inner

    return callback


def test_best_state_is_restored_and_early_stopping():
    _, (train, val, _) = _gaussian_data()
    flow = _flow()
    history = fit_max_likelihood(flow, train, val=val, steps=200, batch_size=256, lr=0.05, schedule="constant",
                                 eval_every=5, patience=3, progress=False, callback=_perturb_after(30)(flow))
    assert history.stopped_early and len(history.rows) == 45  # best at 30, then 35, 40, 45 without improvement
    assert history.best_step == 30 and [s for s, _ in history.evaluations] == list(range(5, 50, 5))
    best = min(v for _, v in history.evaluations)
    assert history.best_val_nll == best
    assert evaluate_nll(flow, val)[0] == pytest.approx(best, abs=1e-6)  # the flow holds the best state
    assert not flow.training


def test_restore_without_early_stopping():
    _, (train, val, _) = _gaussian_data()
    flow = _flow()
    history = fit_max_likelihood(flow, train, val=val, steps=60, batch_size=256, lr=0.05, eval_every=10,
                                 progress=False, callback=_perturb_after(40)(flow))
    assert not history.stopped_early and len(history.rows) == 60 and history.best_step == 40
    assert evaluate_nll(flow, val)[0] == pytest.approx(history.best_val_nll, abs=1e-6)


def test_nan_loss_names_step_and_quantity():
    _, (train, val, _) = _gaussian_data(n=500)
    flow = _flow()
    flow.transform.nan_from = 6
    with pytest.raises(NonFiniteError, match=r"step 6: the training loss \(NLL\) is nan \(non-finite log-likelihood "
                                             r"in 1 of 64 batch rows\)"):
        fit_max_likelihood(flow, train, steps=20, batch_size=64, progress=False)
    flow = _flow()
    flow.transform.nan_in_eval = True
    with pytest.raises(NonFiniteError, match=r"step 5: the validation NLL is not finite: 1 of 1000 rows"):
        fit_max_likelihood(flow, train, val=val, steps=20, batch_size=64, eval_every=5, progress=False)


def test_bad_arguments_and_data():
    _, (train, val, _) = _gaussian_data(n=100)
    flow = _flow()
    bad = train.clone()
    bad[[3, 7], 1] = math.inf
    with pytest.raises(ValueError, match=r"training data has 2 rows with NaN or infinite values "
                                         r"\(first: rows \[3, 7\]\)"):
        fit_max_likelihood(flow, bad, progress=False)
    with pytest.raises(ValueError, match=r"expected training data of shape \(rows, 2\), got \(100, 3\)"):
        fit_max_likelihood(flow, torch.zeros(100, 3), progress=False)
    with pytest.raises(ValueError, match="dtype torch.float32 .*got torch.float64"):
        fit_max_likelihood(flow, train.double(), progress=False)
    with pytest.raises(ValueError, match="patience needs validation data"):
        fit_max_likelihood(flow, train, patience=3, progress=False)
    with pytest.raises(ValueError, match=r"context as \(rows, features\) with 100 rows .*got shape \(99, 3\)"):
        fit_max_likelihood(_flow(3), train, context=torch.zeros(99, 3), progress=False)
    with pytest.raises(ValueError, match="steps to be a positive integer"):
        fit_max_likelihood(flow, train, steps=0, progress=False)
    with pytest.raises(ValueError, match="for both the training and the validation data"):
        fit_max_likelihood(_flow(3), train, context=torch.zeros(100, 3), val=val, progress=False)
    # data as NumPy arrays or lists: a one-line TypeError with the conversion, not an AttributeError from inside
    with pytest.raises(TypeError, match=r"training data as a torch.Tensor, got a numpy.ndarray; convert it with "
                                        r"torch.as_tensor\(train, dtype=torch.float32\)"):
        fit_max_likelihood(flow, train.numpy(), progress=False)
    with pytest.raises(TypeError, match=r"validation data as a torch.Tensor, got a list; .*as_tensor\(val, "):
        fit_max_likelihood(flow, train, val=val.tolist(), progress=False)
    with pytest.raises(TypeError, match=r"training data's context as a torch.Tensor, got a numpy.ndarray"):
        fit_max_likelihood(_flow(3), train, context=torch.zeros(100, 3).numpy(), progress=False)


def test_csv_rows(tmp_path):
    _, (train, val, _) = _gaussian_data(n=500)
    path = tmp_path / "metrics.csv"
    fit_max_likelihood(_flow(), train, val=val, steps=12, batch_size=64, eval_every=5, metrics_csv=path,
                       progress=False)
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == ML_COLUMNS and [int(r["step"]) for r in rows] == list(range(1, 13))
    assert [i + 1 for i, r in enumerate(rows) if r["val_nll"] != ""] == [5, 10, 12]
    assert all(float(r["loss"]) > 0 and float(r["grad_norm"]) >= 0 and float(r["lr"]) > 0 for r in rows)


def test_same_seed_same_run():
    _, (train, _, _) = _gaussian_data(n=1000)

    def run(seed):
        flow = _flow()
        h = fit_max_likelihood(flow, train, steps=30, batch_size=128, seed=seed, progress=False)
        return flow, [r["loss"] for r in h.rows]

    (a, la), (b, lb), (_, lc) = run(0), run(0), run(1)
    assert la == lb and la != lc
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_conditional_fit_reaches_per_label_entropies():
    """The conditional acceptance check, on a model that contains the truth: per-label gap < 0.05 nats."""
    d = get_dataset("gaussian_mixture")
    (x, c), (xv, cv) = sample_splits(d, (6000, 1000), labels=True, seed=0)
    flow = _flow(d.components)
    fit_max_likelihood(flow, x, context=c, val=xv, val_context=cv, steps=600, batch_size=256, lr=0.05,
                       eval_every=100, progress=False)
    report = evaluate_conditional_toy(flow, d, n_per_label=20_000)
    assert report["entropy"] == pytest.approx(d.component_entropies)
    for gap, paired in zip(report["kl_gap"], report["kl_paired"]):
        assert abs(gap) < 0.05 and 0 <= paired < 0.02


def test_planar_flow_trains_through_its_numerical_inverse():
    torch.manual_seed(0)
    d = get_dataset("eight_gaussians")
    train, val = sample_splits(d, (2000, 500))
    flow = PlanarFlow(2, 4)
    before = evaluate_nll(flow, val)[0]
    history = fit_max_likelihood(flow, train, val=val, steps=40, batch_size=128, lr=1e-2, eval_every=20,
                                 progress=False)
    assert history.best_val_nll < before - 0.3


def _count_calls(monkeypatch, module, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(self_or_x, *args):
        calls.append(1)
        return real(self_or_x, *args)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_the_steps_read_no_input_values_on_the_host(monkeypatch):
    """The rows are checked once, before the first step; log_prob's NaN check (a host read: a wait for the device on
    an accelerator) is left out of every step and validation batch, and runs again outside the fit."""
    import tractable.flow as flow_module
    from tractable import MAF

    calls = _count_calls(monkeypatch, flow_module, "_has_nan")
    x = torch.randn(600, 2)
    counts = []
    for steps in (10, 40):
        calls.clear()
        fit_max_likelihood(MAF(2, layers=2, hidden=8), x[:500], val=x[500:], steps=steps, batch_size=50,
                           eval_every=5, progress=False)
        counts.append(len(calls))
    assert counts[0] == counts[1] <= 1, counts  # at most the data-dependent initialisation's call, not per step
    flow = MAF(2, layers=2, hidden=8)
    calls.clear()
    flow.log_prob(x[:3])
    assert len(calls) == 1
    bad = x[:3].clone()
    bad[1, 0] = math.nan
    with pytest.raises(ValueError, match=r"NaN \(1 of 3 rows\)"):
        flow.log_prob(bad)


def test_image_levels_are_checked_once_before_the_first_step(monkeypatch):
    from tractable import build_image_model
    from tractable.models.image_flow import ImageFlow

    torch.manual_seed(0)
    model = build_image_model("realnvp", (1, 4, 4), levels=17, hidden=8, blocks=1)
    x = torch.randint(0, 17, (64, 1, 4, 4)).float()
    bad = x.clone()
    bad[3, 0, 1, 1] = 2.5
    with pytest.raises(ValueError, match=r"^training data: expected integer levels 0..16, got values in"):
        fit_max_likelihood(model, bad, steps=2, batch_size=16, progress=False)
    calls = _count_calls(monkeypatch, ImageFlow, "check_levels")
    fit_max_likelihood(model, x, steps=6, batch_size=16, progress=False)
    assert len(calls) == 1  # the training rows, once (64 rows: one chunk), and no step's batch
    with pytest.raises(ValueError, match=r"expected integer levels 0..16"):
        model.log_prob(bad[:4])  # outside a fit, log_prob checks its input
