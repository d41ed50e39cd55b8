"""The compiled path: every model family's log_prob, sample and sample_and_log_prob trace into one graph with
``torch.compile(fullgraph=True)`` (the "eager" backend checks the tracing without inductor's C++ build) and give the
eager values; ``TrainOptions.compile`` compiles the training step and times its first step apart."""

import inspect
import math

import pytest
import torch
import torch._dynamo

from tractable.models import MODELS, build_image_model
from tractable.models.maf import MAF
from tractable.models.nsf import NSF
from tractable.training import fit_max_likelihood

#: What does not trace into one graph, and why (the pattern of the error): a direction computed by a solver that stops
#: once every element has converged (a loop whose length depends on the values) — the density of planar and Sylvester
#: maps, the sampling of residual flows (fixed point) and of NAF, UNAF and BNAF (bisection); and both directions of the
#: continuous flows, whose adaptive ODE solve is kept out of the graph (torch.compiler.disable).
_SOLVED_SAMPLING = [(name, method) for name in ("resflow", "naf", "unaf", "bnaf")
                    for method in ("sample", "sample_and_log_prob")]
_DATA_DEPENDENT = {("planar", "log_prob"), ("sylvester", "log_prob")} | set(_SOLVED_SAMPLING)
_OUTSIDE = {(name, method) for name in ("ffjord", "fm") for method in ("log_prob", "sample", "sample_and_log_prob")}
NOT_FULLGRAPH = dict.fromkeys(_DATA_DEPENDENT, "(?i)data-dependent") | dict.fromkeys(_OUTSIDE, "compiler.disable")


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="eager")


def _same(eager, compiled, seed=0):
    """Run both with the same random stream (for the sampling directions) and compare."""
    torch.manual_seed(seed)
    a = eager()
    torch.manual_seed(seed)
    b = compiled()
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        torch.testing.assert_close(v, u, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_vector_models_compile_without_graph_breaks(name):
    torch.manual_seed(0)
    fn = MODELS[name]
    flow = fn(3, **({"layers": 2} if "layers" in inspect.signature(fn).parameters else {}))
    x = torch.randn(8, 3)
    flow.log_prob(x)  # a trained model's state: data-initialised layers (ActNorm) are initialised
    flow.eval()  # stochastic log-determinants (residual flows, FFJORD) are estimated in training mode only
    calls = {"log_prob": (flow.log_prob, x), "sample": (flow.sample, 8), "sample_and_log_prob":
             (flow.sample_and_log_prob, 8)}
    for method, (fn, arg) in calls.items():
        if (name, method) in NOT_FULLGRAPH:
            with pytest.raises(Exception, match=NOT_FULLGRAPH[name, method]):
                _compiled(fn)(arg)
            continue
        _same(lambda fn=fn, arg=arg: fn(arg), lambda fn=fn, arg=arg: _compiled(fn)(arg))


@pytest.mark.parametrize("flow", [MAF(3, layers=2, hidden=16, context_features=2),
                                  NSF(3, layers=2, hidden=16, context_features=2),
                                  NSF(3, layers=2, hidden=16, context_features=2, autoregressive=True),
                                  NSF(3, layers=2, hidden=16, context_features=2, passing_map=True)],
                         ids=["maf", "nsf", "nsf-ar", "nsf-passing"])
def test_conditional_models_compile(flow):
    x, c = torch.randn(8, 3), torch.randn(8, 2)
    _same(lambda: flow.log_prob(x, c), lambda: _compiled(flow.log_prob)(x, c))
    _same(lambda: flow.sample_and_log_prob(8, c), lambda: _compiled(flow.sample_and_log_prob)(8, c))


@pytest.mark.parametrize("name", ["realnvp", "glow", "flowpp"])
@pytest.mark.filterwarnings("error::UserWarning")  # dynamo warned of tracing through the checkerboard's lru_cache
def test_image_models_compile(name):
    torch.manual_seed(0)
    options = {"hidden": 8, "blocks": 1} | ({"components": 2, "heads": 1} if name == "flowpp" else {})
    model = build_image_model(name, (1, 4, 4), **options)
    x = torch.randint(0, 256, (4, 1, 4, 4)).float()
    _same(lambda: model.log_prob(x), lambda: _compiled(model.log_prob)(x))
    if name == "realnvp":  # Glow samples alike; Flow++ inverts its mixture CDFs numerically, as in NOT_FULLGRAPH
        _same(lambda: model.sample(4), lambda: _compiled(model.sample)(4))


def test_compiled_training_times_its_first_step(monkeypatch):
    """--compile / train.compile: the loss's module runs compiled (aot_eager traces forward and backward as inductor
    would, without its build time); the run matches the eager one and the first step is timed apart."""
    x = torch.randn(512, 2) * 2 + 1
    histories, flows, real = [], [], torch.compile
    for compiled in (False, True):
        torch.manual_seed(0)
        flow = MAF(2, layers=2, hidden=16)
        if compiled:
            torch._dynamo.reset()
            monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="aot_eager", fullgraph=True))
        histories.append(fit_max_likelihood(flow, x, steps=20, batch_size=64, lr=1e-2, progress=False,
                                            compile=compiled))
        flows.append(flow)
    eager, compiled = histories
    assert eager.compile_seconds == 0.0 and compiled.compile_seconds > 0.0
    assert compiled.seconds >= compiled.compile_seconds
    assert all(math.isfinite(r["loss"]) for r in compiled.rows)
    assert [r["loss"] for r in compiled.rows] == pytest.approx([r["loss"] for r in eager.rows], rel=1e-4)


def test_compiled_reverse_kl_compiles_once(monkeypatch):
    """The annealed β changes every step: it reaches the compiled module as a tensor, so one graph serves them all."""
    from torch._dynamo.utils import counters

    from tractable import PlanarFlow, get_target
    from tractable.training import fit_reverse_kl

    torch._dynamo.reset()
    counters.clear()
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="eager", fullgraph=True))
    torch.manual_seed(0)
    history = fit_reverse_kl(PlanarFlow(2, 2), get_target("ring"), steps=6, batch_size=32, progress=False,
                             compile=True)
    assert counters["stats"]["unique_graphs"] == 1 and history.rows[-1]["beta"] > history.rows[0]["beta"]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_vector_model_trains_compiled(name, monkeypatch):
    """--compile trains every family and matches the eager run: what cannot be traced (solvers, estimators that
    differentiate twice) runs outside the graph instead of failing after the compile (aot_eager traces forward and
    backward as inductor would, without its build time)."""
    x = torch.rand(64, 2) * 4 - 2  # inside every family's support (the circular flows': angles in [-pi, pi))
    real, losses = torch.compile, []
    for compiled in (False, True):
        torch.manual_seed(0)
        fn = MODELS[name]
        flow = fn(2, **({"layers": 2} if "layers" in inspect.signature(fn).parameters else {}))
        if compiled:
            torch._dynamo.reset()
            monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="aot_eager"))
        history = fit_max_likelihood(flow, x, steps=3, batch_size=32, lr=1e-3, progress=False, compile=compiled)
        losses.append([r["loss"] for r in history.rows])
    assert all(math.isfinite(v) for v in losses[1])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
