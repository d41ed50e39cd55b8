"""Distributed data parallel on CPU (gloo), started with torchrun in a subprocess: two processes train the same
parameters as one process with the doubled batch (float64, 1e-6), ActNorm is initialised identically from the global
batch, and only rank 0 writes files and shows progress."""

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tractable.training import load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")

#: Trains a RealNVP with ActNorm on eight_gaussians; every file this process opens for writing is recorded, and its
#: final parameters saved beside the run directory (as the test's own record, outside the run directory).
WORKER = '''
import builtins, json, os, sys, tempfile
from pathlib import Path

import torch

out, batch = Path(sys.argv[1]), int(sys.argv[2])
written = []
_open, _replace, _mkstemp = builtins.open, os.replace, tempfile.mkstemp


def _recording_open(file, mode="r", *args, **kwargs):
    if any(m in mode for m in "wax+"):
        written.append(str(file))
    return _open(file, mode, *args, **kwargs)


builtins.open = _recording_open
os.replace = lambda src, dst, *a, **k: (written.append(str(dst)), _replace(src, dst, *a, **k))[1]
tempfile.mkstemp = lambda *a, **k: (lambda r: (written.append(r[1]), r)[1])(_mkstemp(*a, **k))

from tractable import RealNVP
from tractable.targets.toy import get_dataset, sample_splits
from tractable.training import DistContext, end_process, fit_max_likelihood, init_distributed, shutdown_distributed

torch.set_num_threads(1)
started = init_distributed("cpu")
rank = DistContext.current().rank
torch.manual_seed(0)
flow = RealNVP(2, layers=2, hidden=8, actnorm=True).double()
train, val = sample_splits(get_dataset("eight_gaussians"), (1000, 301), seed=0, dtype=torch.float64)
history = fit_max_likelihood(flow, train, val=val, steps=24, batch_size=batch, lr=1e-2, eval_every=8, seed=3,
                             metrics_csv=out / "metrics.csv", metrics_jsonl=out / "metrics.jsonl",
                             checkpoint_dir=out / "checkpoints", checkpoint_every=10, progress=True)
builtins.open, os.replace, tempfile.mkstemp = _open, _replace, _mkstemp
record = out.parent / f"{out.name}-rank{rank}"
torch.save(flow.state_dict(), f"{record}.pt")
Path(f"{record}.json").write_text(json.dumps({"written": written, "evaluations": history.evaluations}))
if started:
    shutdown_distributed()
end_process(0)
'''


def _torchrun(args, tmp_path, timeout=240):
    if not TORCHRUN.exists() or not torch.distributed.is_available():
        pytest.skip("torchrun / torch.distributed not available")
    run = subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node=2", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_two_processes_equal_one_with_the_doubled_batch(tmp_path, monkeypatch):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    run = _torchrun([str(worker), str(tmp_path / "ddp"), "32"], tmp_path)
    assert run.stderr.count("fit (max likelihood) step 24/24") == 1  # progress from rank 0 only

    monkeypatch.setattr(sys, "argv", [str(worker), str(tmp_path / "single"), "64"])
    runpy.run_path(str(worker), run_name="__main__")

    ranks = [torch.load(tmp_path / f"ddp-rank{r}.pt", weights_only=True) for r in (0, 1)]
    single = torch.load(tmp_path / "single-rank0.pt", weights_only=True)
    actnorms = [k for k in single if k.endswith(("loc", "log_scale"))]
    assert actnorms and all(not torch.equal(single[k], torch.zeros_like(single[k])) for k in actnorms)
    for k in single:
        assert torch.equal(ranks[0][k], ranks[1][k]), k  # identical across ranks
        assert torch.allclose(ranks[0][k].double(), single[k].double(), rtol=0, atol=1e-6), k
    flags = [k for k in single if k.endswith("initialized")]
    assert len(flags) == 2 and all(bool(ranks[r][k]) for r in (0, 1) for k in flags)

    records = [json.loads((tmp_path / f"ddp-rank{r}.json").read_text()) for r in (0, 1)]
    assert records[1]["written"] == []  # only rank 0 wrote files
    assert any(p.endswith("metrics.csv") for p in records[0]["written"])
    # the validation NLL all-reduced as sums and counts (301 rows split 150/151) equals the single process's
    single_evals = json.loads((tmp_path / "single-rank0.json").read_text())["evaluations"]
    for (s, v), (s1, v1) in zip(records[0]["evaluations"], single_evals):
        assert s == s1 and v == pytest.approx(v1, abs=1e-6)
    assert records[0]["evaluations"] == records[1]["evaluations"]
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step-000000024.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert (tmp_path / "ddp" / "metrics.csv").read_text().count("\n") == 25


def test_torchrun_fit_command(tmp_path):
    out = tmp_path / "run"
    _torchrun(["-m", "tractable", "fit", "ring", "--layers", "2", "--steps", "30", "--batch-size", "32",
               "--eval-samples", "1000", "--checkpoint-every", "10", "--no-plots", "--out", str(out)], tmp_path)
    assert {"config.toml", "metrics.csv", "metrics.json", "checkpoint.pt", "model.safetensors"} <= \
        {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["kl"] > 0
    state = load_checkpoint(out / "checkpoints" / "step-000000030.pt")
    assert state["world_size"] == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    shutil.rmtree(out)


def test_actnorm_statistics_reduced_across_processes():
    """ActNorm.reducing: with a reduction over two processes holding the same batch, the statistics are the batch's
    own; outside the block the layer computes them locally again."""
    from tractable import ActNorm

    x = torch.randn(64, 3, 4, 4, dtype=torch.float64) * 2 + 1
    local, reduced = ActNorm(3, event_dims=3).double(), ActNorm(3, event_dims=3).double()
    calls = []

    def two_copies(t):
        calls.append(t.shape)
        return 2 * t

    local(x)
    with reduced.reducing(two_copies):
        reduced(x)
    reduced.data_statistics(x)  # outside the block: local statistics, no reduction
    assert len(calls) == 2
    assert torch.allclose(local.loc, reduced.loc) and torch.allclose(local.log_scale, reduced.log_scale)
