"""Training hygiene: warmup then decay, gradient clipping with the norm logged, the EMA of the weights, the
non-finite guard (skip, then stop naming the step and the layer) and anomaly detection."""

import csv
import itertools
import math

import pytest
import torch
from torch import nn

from tractable import Compose, ElementwiseAffine, Flow, PlanarFlow, StandardNormal, Transform, get_target
from tractable.cli import main
from tractable.targets.energies import Energy
from tractable.targets.toy import get_dataset, sample_splits
from tractable.training import (
    EMA,
    NonFiniteError,
    Trainer,
    TrainOptions,
    evaluate_nll,
    first_nonfinite_layer,
    fit_max_likelihood,
    fit_reverse_kl,
    make_scheduler,
    seed_everything,
)
from tractable.training.hygiene import clip_grad_norm


def _lrs(schedule, steps=100, warmup=10, **kwargs):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make_scheduler(opt, schedule, steps, warmup=warmup, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_decay():
    cos, exp, const = _lrs("cosine"), _lrs("exponential"), _lrs("constant")
    for lrs in (cos, exp, const):
        assert lrs[:10] == pytest.approx([2.0 * (t + 1) / 10 for t in range(10)])
        assert lrs[10] == pytest.approx(2.0)
    assert cos[55] == pytest.approx(1.0) and cos[-1] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert exp[-1] == pytest.approx(2.0 * 0.01 ** (89 / 90)) and const[-1] == 2.0
    assert all(a >= b for a, b in itertools.pairwise(cos[10:]))
    with pytest.raises(ValueError, match=r"warmup to be an integer in \[0, steps=100\), got 100"):
        _lrs("cosine", warmup=100)


def test_exponential_schedule_reaches_its_final_factor():
    """``final`` sets the exponential decay (the UvA tutorial's StepLR(0.99) over 200 epochs is 0.99**200)."""
    lrs = _lrs("exponential", steps=200, warmup=0, final=0.99**200)
    assert lrs[0] == 2.0 and lrs[100] == pytest.approx(2.0 * 0.99**100)
    assert lrs[-1] == pytest.approx(2.0 * 0.99**199)  # the factor reaches ``final`` as the run ends
    with pytest.raises(ValueError, match=r"final learning-rate factor in \(0, 1\], got 0"):
        _lrs("exponential", final=0)


def test_clipping_logs_the_norm_before_clipping():
    w = nn.Parameter(torch.zeros(3))
    trainer = Trainer(nn.ParameterList([w]), steps=2, columns=("step",), desc="t",
                      options=TrainOptions(lr=0.1, clip=0.5, progress=False))
    result = trainer.train_step(lambda: ((100 * (w - 1) ** 2).sum(), None), lambda *a: "", lambda: None)
    assert result.grad_norm == pytest.approx(200 * math.sqrt(3)) and not result.skipped
    assert float(w.grad.norm()) == pytest.approx(0.5, rel=1e-5)  # the step used the clipped gradient
    trainer.close()


def test_grad_norm_without_clipping_is_torchs_and_leaves_the_gradients():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(*shape)) for shape in ((64, 2), (64,), (64, 64), (4, 64), (4,))]
    for p in params:
        p.grad = torch.randn_like(p) * 10
    before = [p.grad.clone() for p in params]
    norm = clip_grad_norm(params, 0.0)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))  # the gradients as they were
    assert torch.equal(norm, torch.nn.utils.clip_grad_norm_(params, math.inf))
    params[1].grad = None  # a parameter without a gradient counts as none
    assert float(clip_grad_norm(params, 0.0)) == pytest.approx(math.sqrt(sum(float(b.square().sum())
                                                                             for b in before[:1] + before[2:])))
    assert float(clip_grad_norm(params, 1.0)) > 1 and float(clip_grad_norm(params, 0.0)) == pytest.approx(1.0)


def test_ema_is_the_average_of_the_trajectory():
    """EMA on does not change the training trajectory; the flow ends holding its average."""
    target = get_target("ring")
    seed_everything(0)
    plain = PlanarFlow(2, 2)
    params = list(plain.parameters())
    shadow = [p.detach().clone() for p in params]

    def average(step, row):
        d = min(0.9, step / (9 + step))  # (1 + t) / (10 + t) with t = step - 1 updates before this one
        for s, p in zip(shadow, params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    fit_reverse_kl(plain, target, steps=40, batch_size=32, progress=False, callback=average)
    seed_everything(0)
    averaged = PlanarFlow(2, 2)
    fit_reverse_kl(averaged, target, steps=40, batch_size=32, ema=0.9, progress=False)
    for s, p in zip(shadow, averaged.parameters()):
        assert torch.allclose(s, p, atol=1e-6)
    assert not all(torch.allclose(s, p) for s, p in zip(shadow, plain.parameters()))

    ema = EMA(params, 0.5)
    before = [p.detach().clone() for p in params]
    with ema.applied():
        assert all(torch.equal(p, s) for p, s in zip(params, ema.shadow))
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # restored bit for bit


def test_ema_weights_are_validated():
    d = get_dataset("eight_gaussians")
    torch.manual_seed(0)
    train, val = sample_splits(d, (1000, 300))
    flow = Flow(ElementwiseAffine(2), StandardNormal(2))
    history = fit_max_likelihood(flow, train, val=val, steps=30, batch_size=64, lr=0.05, eval_every=10, ema=0.8,
                                 progress=False)
    assert evaluate_nll(flow, val)[0] == pytest.approx(history.best_val_nll, abs=1e-6)


class _Faulty(Transform):
    """Identity with a learnable shift whose forward output turns NaN on the calls listed in ``bad``."""

    def __init__(self, bad=()):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(2))
        self.calls, self.bad = 0, set(bad)

    def forward(self, x, context=None):
        self.calls += 1
        y = x + self.shift
        if self.calls in self.bad:
            y = y.clone()
            y[0, 0] = math.nan
        return y, torch.zeros(x.shape[0])

    def inverse(self, y, context=None):
        return y - self.shift, torch.zeros(y.shape[0])


def _faulty_flow(bad):
    torch.manual_seed(0)
    return Flow(Compose(ElementwiseAffine(2), _Faulty(bad), ElementwiseAffine(2)), StandardNormal(2), validate=False)


def test_bad_steps_are_skipped_and_logged(tmp_path):
    train = torch.randn(2000, 2) * 2 + 1
    flow = _faulty_flow({11, 12})
    snapshots = {}
    history = fit_max_likelihood(flow, train, steps=30, batch_size=64, lr=0.01, metrics_csv=tmp_path / "m.csv",
                                 progress=False,
                                 callback=lambda s, r: snapshots.update({s: [p.detach().clone() for p in
                                                                              flow.parameters()]}))
    assert history.skipped == 2
    assert [r["step"] for r in history.rows if math.isnan(r["loss"])] == [11, 12]
    for p, q in zip(snapshots[10], snapshots[12]):
        assert torch.equal(p, q)  # skipped steps changed nothing
    assert any(not torch.equal(p, q) for p, q in zip(snapshots[12], snapshots[13]))  # training went on
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert len(rows) == 30 and rows[10]["loss"] == "" and rows[9]["loss"] != ""


def test_stops_after_k_in_a_row_naming_step_and_layer():
    train = torch.randn(2000, 2)
    flow = _faulty_flow(range(11, 100))
    with pytest.raises(NonFiniteError) as info:
        fit_max_likelihood(flow, train, steps=50, batch_size=64, max_bad_steps=4, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("stopped at step 14 after 4 non-finite steps in a row (the first, step 11: the training "
                              "loss (NLL) is nan (non-finite log-likelihood in 1 of 64 batch rows))")
    assert "first non-finite output: layer 'transform.transforms.1' (_Faulty.forward)" in message


def test_first_nonfinite_layer_in_the_sampling_direction():
    flow = _faulty_flow(())
    with torch.no_grad():
        flow.transform.transforms[2].shift.fill_(math.inf)  # the first layer of the sampling pass
    assert first_nonfinite_layer(flow, lambda: flow.sample_and_log_prob(8)) == \
        "'transform.transforms.2' (ElementwiseAffine.inverse)"
    assert first_nonfinite_layer(_faulty_flow(()), lambda: _faulty_flow(()).log_prob(torch.zeros(3, 2))) is None


class _NaNGradient(Energy):
    """A Gaussian energy whose backward pass makes NaN (the masked branch of a `where`), its forward finite."""

    name = "nan-gradient"

    def energy(self, z):
        hidden = torch.where(z[:, 0] > 1e6, torch.sqrt(-(z[:, 0] ** 2) - 1), torch.zeros_like(z[:, 0]))
        return 0.5 * (z * z).sum(-1) + hidden


def test_backward_nan_and_anomaly_detection():
    with pytest.raises(NonFiniteError, match=r"stopped at step 3 .*step 1: the gradient norm is nan .*every layer's "
                                             r"output was finite.*--detect-anomaly"):
        fit_reverse_kl(PlanarFlow(2, 1), _NaNGradient(), steps=10, batch_size=8, max_bad_steps=3, progress=False)
    with pytest.raises(NonFiniteError, match=r"step 1: anomaly detection stopped the backward pass: Function "
                                             r"'SqrtBackward0' returned nan"), pytest.warns(UserWarning):
        fit_reverse_kl(PlanarFlow(2, 1), _NaNGradient(), steps=10, batch_size=8, detect_anomaly=True,
                       progress=False)
    assert not torch.is_anomaly_enabled()  # restored


def test_cli_extreme_learning_rate_stops_with_one_clear_line(tmp_path, capsys):
    code = main(["fit", "ring", "--layers", "2", "--steps", "60", "--batch-size", "64", "--lr", "1e6",
                 "--max-bad-steps", "3", "--no-plots", "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("tractable fit: error: stopped at step ") and "3 non-finite steps in a row" in lines[-1]
    assert "first non-finite output: layer '" in lines[-1]
    assert all(line.startswith("tractable: skipped step ") for line in lines[:-1]) and len(lines) == 4


def test_deferred_reads_give_the_same_run(tmp_path, capsys):
    """log_every > 1 reads the values every few steps: the same rows, skips, EMA and files as reading every step."""
    train = torch.randn(2000, 2) * 2 + 1
    runs = []
    for every in (1, 7):
        flow = _faulty_flow({11, 12})
        seen = []
        history = fit_max_likelihood(flow, train, steps=30, batch_size=64, lr=0.01, ema=0.9, progress=False,
                                     log_every=every, metrics_csv=tmp_path / f"m{every}.csv",
                                     callback=lambda s, r, seen=seen: seen.append((s, r["loss"])))
        runs.append((history, [p.detach().clone() for p in flow.parameters()], seen,
                     (tmp_path / f"m{every}.csv").read_text(), capsys.readouterr().err))
    (h1, p1, s1, csv1, err1), (h7, p7, s7, csv7, err7) = runs
    assert h7.skipped == h1.skipped == 2 and csv7 == csv1 and err7 == err1 and "skipped step 11" in err7
    assert all(isinstance(r["loss"], float) for r in h7.rows) and [s for s, _ in s7] == list(range(1, 31))
    assert str(s7) == str(s1)  # the same losses (NaN for the skipped steps), in order
    assert all(torch.equal(a, b) for a, b in zip(p1, p7))  # skipped on the device exactly as on the host


def test_deferred_reads_stop_naming_the_step():
    flow = _faulty_flow(range(11, 100))
    with pytest.raises(NonFiniteError, match=r"^stopped at step 14 after 4 non-finite steps in a row \(the first, "
                                             r"step 11: the training loss \(NLL\) is nan"):
        fit_max_likelihood(flow, torch.randn(2000, 2), steps=50, batch_size=64, max_bad_steps=4, progress=False,
                           log_every=10)
