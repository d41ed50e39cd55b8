"""Run directories you can trust (issue 11, items 1-13): a rejected command changes nothing, no run is silently
overwritten or mixed, a run that no longer matches its checkpoint is refused in one line, a diverged fit is one line,
sampling takes bounded memory, a data file cannot run code, a stopped DDP rank does not hang the others.

Each test states what main (b0dc4fe) did; each asserts the exit status and the one-line message, and that every file
of the earlier run is byte-identical afterwards (or, where the command legitimately rewrites the run, that the result
is bit-identical to the uninterrupted run's). The runs are tiny fits (:data:`FIT`, a few seconds)."""

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from run_safety_helpers import (
    FIT,
    TINY,
    Payload,
    assert_one_line,
    child_env,
    cli,
    one_line,
    peak_rss_mb,
    python2_batch,
    run,
    same_model,
    tree,
)

from tractable import Flow, Inverse, Planar, StandardNormal, evaluate_reverse, get_target
from tractable.app import commands, load_run
from tractable.app.run import open_run
from tractable.cli import main
from tractable.targets.images import CIFAR10_FILES, load_cifar10, read_cifar_batch
from tractable.training.checkpoint import list_step_checkpoints
from tractable.utils import NonFiniteError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run (training checkpoints at steps 20, 30, 40, best.pt, checkpoint.pt), copied by each test."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli(*FIT, "--out", out).returncode == 0
    return out


@pytest.fixture
def run_dir(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# -- 1: validate everything before touching the disk ---------------------------------------------------------------


def test_rejected_fit_writes_nothing(run_dir, tmp_path, capsys):
    """Main deleted R's step checkpoints and best.pt and rewrote config.toml before "expected steps to be a positive
    integer" (and before a bad --data file was read); a rejected fit with a new --out left a config.toml behind."""
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,oops\n")
    before = tree(run_dir)
    status, err = run(*FIT, "--steps", "0", "--out", run_dir, capsys=capsys)  # the issue's own reproduction
    assert status == 2 and tree(run_dir) == before, err
    for extra, message in [(["--steps", "0"], "steps"), (["--set", "train.warmup=40"], "warmup"),
                           (["--keep-last", "0"], "keep_last"), (["--batch-size", "0"], "batch_size")]:
        status, err = run(*FIT, *extra, "--out", tmp_path / "new" / "run", capsys=capsys)
        assert status == 2 and not (tmp_path / "new").exists(), err
        status, err = run(*FIT, *extra, "--out", run_dir, "--overwrite", capsys=capsys)
        assert status == 2, err
        assert_one_line(err, message)
        assert tree(run_dir) == before
    status, err = run("fit", "--data", bad, "--steps", "5", "--out", run_dir, "--overwrite", capsys=capsys)
    assert status == 2
    assert_one_line(err, "bad.csv")
    assert tree(run_dir) == before


# -- 2: one run directory, one process -----------------------------------------------------------------------------


def test_second_concurrent_fit_is_refused(tmp_path, capsys):
    """Main let two fits into one --out both exit 0, leaving the config and metrics of one with the step checkpoints
    of the other. Two processes started together now race for the lock: one fits, the other exits 2 naming it, and
    the run is intact and resumable."""
    out = tmp_path / "run"
    slow = [*FIT, "--steps", "1000", "--checkpoint-every", "250", "--out", out]
    procs = [cli(*slow, wait=False), cli(*slow, "--overwrite", wait=False)]
    try:
        status = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = [p.stderr.read() for p in procs]
    assert sorted(status) == [0, 2], errors
    winner, loser = (0, 1) if status[0] == 0 else (1, 0)
    assert_one_line(errors[loser], "is in use by process", str(procs[winner].pid))
    assert [s for s, _ in list_step_checkpoints(out / "checkpoints")] == [500, 750, 1000]
    assert "steps = 1000" in (out / "config.toml").read_text() and not (out / ".lock").exists()
    before = tree(out)
    shutil.copy(out / "checkpoint.pt", tmp_path / "final.pt")
    status, err = run("fit", "--resume", out, "--quiet", capsys=capsys)  # the finished run resumes unchanged
    assert status == 0, err
    after = tree(out)
    for name in ("config.toml", "metrics.csv", "model.safetensors", "checkpoints/step-000001000.pt"):
        assert after[name] == before[name], name
    assert same_model(out / "checkpoint.pt", tmp_path / "final.pt")


def test_lock_blocks_until_its_process_dies(run_dir, capsys):
    """While a process holds the run (here this one), --resume, eval and sample are refused naming it; a lock file
    left by a process that died (SIGKILL) does not block, since the operating system dropped its lock."""
    from tractable.app.rundir import RunLock  # new in this change: imported here so that main fails this test only

    before = tree(run_dir)
    lock = RunLock.acquire(run_dir, "tractable fit --out run")
    try:
        for command, message in [(["fit", "--resume", run_dir], "is in use by process"),
                                 (["eval", run_dir], "is being written by process"),
                                 (["sample", run_dir, "-n", "5"], "is being written by process")]:
            status, err = run(*command, capsys=capsys)
            assert status == 2
            assert_one_line(err, message, f"process {os.getpid()} on", "tractable fit --out run")
    finally:
        lock.release()
    assert tree(run_dir) == before
    (run_dir / ".lock").write_text("999999\thost\t2026-01-01 00:00:00 UTC\ttractable fit\n")
    status, err = run("eval", run_dir, "--out", run_dir.parent / "eval.json", capsys=capsys)
    assert status == 0, err
    status, err = run("fit", "--resume", run_dir, "--quiet", capsys=capsys)
    assert status == 0, err
    assert not (run_dir / ".lock").exists()


# -- 3: --out at a non-empty directory -----------------------------------------------------------------------------


def test_out_at_an_existing_run_or_a_users_directory(run_dir, tmp_path, capsys, monkeypatch):
    """Main silently overwrote both (and deleted the run's step checkpoints)."""
    before = tree(run_dir)
    status, err = run(*FIT, "--out", run_dir, capsys=capsys)
    assert status == 2
    assert_one_line(err, "already holds a run", "--overwrite", "--resume")
    assert tree(run_dir) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    status, err = run(*FIT, "--out", mine, capsys=capsys)
    assert status == 2
    assert_one_line(err, "not empty", "thesis.tex")
    assert (mine / "thesis.tex").read_text() == "years of work" and len(tree(mine)) == 1
    monkeypatch.chdir(tmp_path)  # the default out, runs/checkerboard-nsf2-seed0, follows the same rule
    assert run(*FIT, capsys=capsys)[0] == 0
    default = tmp_path / "runs" / "checkerboard-nsf2-seed0"
    first = tree(default)
    status, err = run(*FIT, capsys=capsys)
    assert status == 2
    assert_one_line(err, "runs/checkerboard-nsf2-seed0", "--overwrite", "--resume", "another --out")
    assert tree(default) == first
    (tmp_path / "empty").mkdir()
    assert run(*FIT, "--out", tmp_path / "empty", capsys=capsys)[0] == 0  # an empty directory is fine


def test_overwrite_replaces_the_old_run(run_dir, capsys):
    status, err = run(*FIT, "--steps", "30", "--out", run_dir, "--overwrite", capsys=capsys)
    assert status == 0, err
    assert [s for s, _ in list_step_checkpoints(run_dir / "checkpoints")] == [10, 20, 30]  # step-40 of the old run
    assert "steps = 30" in (run_dir / "config.toml").read_text()


# -- 4 and 5: config.toml, data and checkpoint must agree ----------------------------------------------------------


def test_edited_config_is_refused(run_dir, capsys):
    """Main evaluated a run whose config.toml said another spline bound with exit 0 (a wrong number), and a changed
    `layers` gave a raw traceback from `sample` and "…loading state_dict for NSF:" from --resume."""
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace("[model]\n", "[model]\nbound = 4.0\n"))
    before = tree(run_dir)
    commands = (["eval", run_dir], ["sample", run_dir, "-n", "10"], ["plot", run_dir], ["fit", "--resume", run_dir])
    for command in commands:
        status, err = run(*command, capsys=capsys)
        assert status == 2, command
        assert_one_line(err, "model.bound = 4.0 (checkpoint: not set)")
        assert tree(run_dir) == before
    with pytest.raises(ValueError, match="model.bound"):
        load_run(run_dir)
    status, err = run("eval", run_dir, "--force", capsys=capsys)  # --force: a warning, and config.toml as it is
    assert status == 0 and "warning: --force: config.toml differs" in err
    config.write_text(config.read_text().replace("layers = 2", "layers = 3"))
    before = tree(run_dir)
    status, err = run("sample", run_dir, "-n", "10", "--force", capsys=capsys)  # weights that do not fit: refused
    assert status == 2 and "Traceback" not in err
    assert "does not fit the NSF" in err.strip().splitlines()[-1] and len(err.strip().splitlines()) == 2
    assert tree(run_dir) == before


def test_another_runs_checkpoint_is_refused(run_dir, tmp_path, capsys):
    other = tmp_path / "other"
    assert run(*FIT, "--layers", "3", "--out", other, capsys=capsys)[0] == 0
    shutil.copy(other / "checkpoint.pt", run_dir / "checkpoint.pt")
    before = tree(run_dir)
    status, err = run("sample", run_dir, "-n", "10", capsys=capsys)
    assert status == 2
    assert_one_line(err, "model.layers = 2 (checkpoint: 3)")
    assert tree(run_dir) == before


def test_changed_data_is_refused(tmp_path, capsys):
    """Main evaluated a changed data file (16.16 nats instead of 4.36) with exit 0, and --resume of the finished run
    overwrote metrics.json with it."""
    data = tmp_path / "mut.csv"
    rows = np.random.default_rng(0).normal(size=(300, 2))
    np.savetxt(data, rows, delimiter=",", header="a,b", comments="")
    out = tmp_path / "run"
    assert run("fit", "--data", data, "--steps", "20", "--layers", "2", "--no-plots", "--quiet", "--out", out,
               capsys=capsys)[0] == 0
    with open(data, "a") as f:
        f.write("100.0,-100.0\n")
    before = tree(out)
    for command in (["eval", out], ["fit", "--resume", out], ["plot", out]):
        status, err = run(*command, capsys=capsys)
        assert status == 2, command
        assert_one_line(err, f"the data file {str(data)!r} has changed since the fit")
        assert tree(out) == before
    np.savetxt(data, rows[::-1], delimiter=",", header="a,b", comments="")  # same size, other bytes
    status, err = run("eval", out, capsys=capsys)
    assert status == 2
    assert_one_line(err, "the same size but other bytes")
    status, err = run("eval", out, "--force", "--out", tmp_path / "eval.json", capsys=capsys)
    assert status == 0 and "warning: --force" in err
    assert tree(out) == before


# -- 9: devices and threads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["--device", "foo"], "'train.device'"), (["--device", "cuda:99"], "'train.device'"),
    (["--threads", "0"], "--threads"), (["--threads", "-2"], "--threads"),
], ids=["device-foo", "device-cuda99", "threads-0", "threads-negative"])
def test_bad_device_or_threads(run_dir, tmp_path, capsys, extra, message):
    """Main: tracebacks (RuntimeError from torch), after config.toml was written."""
    before = tree(run_dir)
    status, err = run(*FIT, *extra, "--out", tmp_path / "new", capsys=capsys)
    assert status == 2 and not (tmp_path / "new").exists()
    assert_one_line(err, message)
    status, err = run(*FIT, *extra, "--out", run_dir, "--overwrite", capsys=capsys)
    assert status == 2
    assert_one_line(err, message)
    assert tree(run_dir) == before


# -- 10: temporary files of killed writes --------------------------------------------------------------------------


def test_stale_temporary_files_are_removed(run_dir, tmp_path, capsys):
    """A SIGKILL during the atomic write of best.pt, checkpoint.pt or metrics.json leaves `.NAME.<random>.tmp`
    (utils.atomic_write's naming) beside it; main never removed them. They are placed here as the kill leaves them."""
    stale = [run_dir / "checkpoints" / ".best.pt.k2j3x9.tmp", run_dir / ".checkpoint.pt.a8d7q1.tmp",
             run_dir / ".metrics.json.zz01ab.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    user = run_dir / ".notes.tmp"  # not of atomic_write's shape: kept
    user.write_text("mine")
    status, err = run("fit", "--resume", run_dir, "--quiet", capsys=capsys)
    assert status == 0, err
    assert not any(p.exists() for p in stale) and user.exists()
    folder = tmp_path / "results"
    folder.mkdir()
    status, err = run("eval", run_dir, "--out", folder, capsys=capsys)  # a directory as --out: one line, no .tmp
    assert status == 2
    assert_one_line(err, "expected --out to be a JSON file")
    assert tree(tmp_path) == {f"run/{k}": v for k, v in tree(run_dir).items()}


# -- 12: a truncated newest checkpoint -----------------------------------------------------------------------------


def test_truncated_newest_checkpoint_falls_back(run_dir, capsys):
    """Main: "cannot be loaded safely" (exit 2) although --keep-last kept step 30 intact. Now the resume continues
    from step 30 with one warning and ends bit-identical to the uninterrupted run."""
    before = tree(run_dir)
    newest = run_dir / "checkpoints" / "step-000000040.pt"
    newest.write_bytes(newest.read_bytes()[:300])
    (run_dir / "checkpoint.pt").rename(run_dir / "final.pt")  # as if killed before the end
    status, err = run("fit", "--resume", run_dir, "--quiet", capsys=capsys)
    assert status == 0, err
    assert_one_line(err, "warning: skipped step-000000040.pt", "resuming from", "step-000000030.pt")
    assert same_model(run_dir / "checkpoint.pt", run_dir / "final.pt")
    after = tree(run_dir)
    for name in ("metrics.csv", "metrics.jsonl", "config.toml", "checkpoints/step-000000030.pt", "model.safetensors"):
        assert after[name] == before[name], name
    assert same_model(newest, run_dir / "final.pt")  # step 40 written again, whole


# -- 13: a checkpoint before the end of any run, and --resume without one -------------------------------------------


def test_short_runs_checkpoint_early_and_resume_without_checkpoint_restarts(run_dir, tmp_path, capsys):
    """Main wrote the first checkpoint at checkpoint_every = 1000 steps, so a 40-step run killed before its end had
    none, and --resume said "no checkpoint to resume from" although config.toml was there."""
    out = tmp_path / "short"
    i = FIT.index("--checkpoint-every")
    short = FIT[:i] + FIT[i + 2:]
    assert run(*short, "--out", out, capsys=capsys)[0] == 0
    assert [s for s, _ in list_step_checkpoints(out / "checkpoints")] == [4, 40]  # ceil(40 / 10), and the end
    final = tmp_path / "final.pt"
    shutil.move(out / "checkpoint.pt", final)  # killed after step 4: resume from the early checkpoint
    (out / "checkpoints" / "step-000000040.pt").unlink()
    assert run("fit", "--resume", out, "--quiet", capsys=capsys)[0] == 0
    assert same_model(out / "checkpoint.pt", final)
    before = tree(run_dir)
    shutil.copy(run_dir / "checkpoint.pt", final)
    shutil.rmtree(run_dir / "checkpoints")  # killed before any checkpoint: config.toml and the logs remain
    for name in ("checkpoint.pt", "model.safetensors", "metrics.json"):
        (run_dir / name).unlink()
    status, err = run("fit", "--resume", run_dir, "--quiet", capsys=capsys)
    assert status == 0
    assert_one_line(err, "note:", "no training checkpoint", "starting it again")
    after = tree(run_dir)
    same = ["config.toml", "metrics.csv", "metrics.jsonl", "model.safetensors"]
    assert {k: after[k] for k in same} == {k: before[k] for k in same}  # the run again, bit for bit
    assert same_model(run_dir / "checkpoint.pt", final)  # (torch.save's bytes hold the temporary file's name)
    assert sorted(k for k in after if k.startswith("checkpoints/")) == \
        sorted(k for k in before if k.startswith("checkpoints/"))


# -- 6: a diverged reverse-KL fit ---------------------------------------------------------------------------------


def test_diverged_reverse_kl_fit_ends_inone_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "tractable", "fit", "ring", "--lr", "1e3", "--steps", "4", "--out", str(out),
         "--no-plots", "--quiet", "--eval-samples", "2000"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("tractable fit: error: ") and "diverged" in last and "--lr" in last, last
    assert not (out / "metrics.json").exists()
    # the step counts of the messages are those of metrics.csv (from 1): the skipped steps are the csv's empty rows
    skipped = {int(line.split()[3]) for line in run.stderr.splitlines() if line.startswith("tractable: skipped step")}
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    empty = {int(r.split(",")[0]) for r in rows if r.split(",")[1] == ""}
    assert skipped and skipped == empty, (skipped, empty)


def test_evaluate_reverse_names_a_diverged_flow() -> None:
    flow = Flow(Inverse(Planar(2, layers=2)), StandardNormal(2))
    with torch.no_grad():
        for p in flow.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"diverged: non-finite log q in 500 .* of 500 samples.*--lr"):
        evaluate_reverse(flow, get_target("ring"), 500)
    assert issubclass(NonFiniteError, FloatingPointError)  # callers catching the old exception still do


# ------------------------------------------------------------------------------------------ 7: chunked sampling


def test_sample_draws_in_chunks_and_gives_the_samples_of_one_pass(ring_run, tmp_path, monkeypatch):
    """On main ``flow.sample`` was called once with all ``n`` rows; now with at most ``SAMPLE_CHUNK`` rows, and the
    samples equal one pass's (a short last chunk joins the one before, as torch draws short tensors another way)."""
    monkeypatch.setattr(commands, "SAMPLE_CHUNK", 64)
    n = 64 * 3 + 5  # the last 5 rows (10 values < 16) join the third chunk
    run = open_run(ring_run)
    torch.manual_seed(0)
    whole = run.flow.sample(n).numpy()
    calls = []
    real = type(run.flow).sample

    def recording(self, k, *args, **kwargs):
        calls.append(k)
        return real(self, k, *args, **kwargs)

    monkeypatch.setattr(type(run.flow), "sample", recording)
    out = tmp_path / "s.npy"
    assert main(["sample", str(ring_run), "-n", str(n), "--out", str(out)]) == 0
    assert calls == [64, 64, 69]
    np.testing.assert_array_equal(np.load(out), whole)
    assert out.with_name("s-scatter.png").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_chunked_samples_take_their_rows_of_a_per_sample_context(tmp_path, monkeypatch):
    """A ``(n, C)`` context is cut with the chunks: each sample keeps its own context row, as in one pass."""
    run_dir = tmp_path / "mixture"
    assert main(["fit", "gaussian_mixture", "--conditional", "--layers", "1", "--hidden", "8", "--set",
                 "data.train_size=500", "--set", "data.val_size=100", "--set", "data.test_size=100", "--out",
                 str(run_dir), *TINY]) == 0
    n = 100
    contexts = np.eye(3)[np.arange(n) % 3]
    np.save(tmp_path / "c.npy", contexts)
    run = open_run(run_dir)
    torch.manual_seed(0)
    whole = run.flow.sample(n, torch.as_tensor(contexts, dtype=torch.float32)).numpy()
    monkeypatch.setattr(commands, "SAMPLE_CHUNK", 32)
    out = tmp_path / "s.npy"
    assert main(["sample", str(run_dir), "-n", str(n), "--context", str(tmp_path / "c.npy"), "--out", str(out),
                 "--no-figure"]) == 0
    np.testing.assert_array_equal(np.load(out), whole)
    assert commands.sample_chunks(n, 32) == [32, 32, 36] and commands.sample_chunks(5, 32) == [5]


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ by platform")
def test_sample_memory_does_not_grow_with_n(ring_run, tmp_path):
    """Three million 2D samples (24 MB of output): on main the one pass held every layer's intermediate tensors
    (about 350 MB more than a thousand samples); now chunks keep the growth to a few tens of MB (a 10-million-sample
    draw of a 5-layer NSF peaks at 0.4 GB with /usr/bin/time -v)."""
    small = peak_rss_mb(ring_run, 1000, tmp_path)
    large = peak_rss_mb(ring_run, 3_000_000, tmp_path)
    assert np.load(tmp_path / "m.npy", mmap_mode="r").shape == (3_000_000, 2)
    assert large - small < 120, (small, large)


# --------------------------------------------------------------------------------- 8: restricted unpickling


def test_python2_batch_helper_is_what_pickle_reads():
    data = np.arange(2 * 3072).reshape(2, 3072) % 256
    batch = pickle.loads(python2_batch(data, [3, 7]), encoding="bytes")
    np.testing.assert_array_equal(batch[b"data"], data)
    assert batch[b"labels"] == [3, 7]


def test_cifar_batches_load_in_both_pickle_dialects(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [n for group in CIFAR10_FILES.values() for n in group]
    for i, name in enumerate(names):
        data = rng.integers(0, 256, size=(4, 3072))
        labels = [int(v) for v in rng.integers(0, 10, size=4)]
        payload = python2_batch(data, labels) if i % 2 else pickle.dumps(
            {b"data": data.astype(np.uint8), b"labels": labels, b"batch_label": b"x"}, protocol=2)
        (folder / name).write_bytes(payload)
        x, y = read_cifar_batch(folder / name)
        np.testing.assert_array_equal(x.reshape(4, 3072), data)
        assert y.tolist() == labels
    images = load_cifar10(tmp_path)
    assert tuple(images.train.shape) == (20, 3, 32, 32) and tuple(images.test.shape) == (4, 3, 32, 32)


def test_a_cifar_batch_cannot_run_code(tmp_path, capsys):
    """On main ``pickle.load`` called ``os.system`` and the marker file appeared; now one line names the file and
    the refused global."""
    marker = tmp_path / "marker"
    names = [n for group in CIFAR10_FILES.values() for n in group]
    for name in names:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=2))
    assert main(["fit", "cifar10", "--data-dir", str(tmp_path), "--steps", "2", "--no-plots", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "data_batch_1" in err and "system" in err and "refused" in err, err
    assert not marker.exists()
    for payload in (b"not a pickle", pickle.dumps([1, 2]), pickle.dumps({b"data": np.zeros((2, 5))})):
        (tmp_path / "test_batch").write_bytes(payload)
        with pytest.raises(ValueError, match="test_batch"):
            read_cifar_batch(tmp_path / "test_batch")


# ------------------------------------------------------------------------------------------- 11: DDP timeout


def test_a_stopped_ddp_rank_ends_every_rank_withone_line(tmp_path):
    """Two gloo ranks train; rank 1 is stopped (SIGSTOP). On main rank 0 waited gloo's 30 minutes; now it ends
    within ``train.timeout`` (3 s here) and a margin with one line, and rank 1, continued, ends with one line too."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    args = [sys.executable, "-m", "tractable", "fit", "checkerboard", "--steps", "100000", "--batch-size", "16",
            "--layers", "1", "--hidden", "4", "--bins", "4", "--no-plots", "--quiet", "--set", "train.timeout=0.05",
            "--set", "data.train_size=200", "--set", "data.val_size=50", "--set", "data.test_size=50",
            "--set", "train.eval_every=100000", "--out", str(out)]
    ranks = [subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                              env=child_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                                       RANK=str(r), LOCAL_RANK=str(r)))
             for r in range(2)]
    try:
        csv = out / "metrics.csv"
        start = time.monotonic()
        while not (csv.is_file() and len(csv.read_text().splitlines()) > 3):
            assert time.monotonic() - start < 120 and ranks[0].poll() is None, "training did not start"
            time.sleep(0.1)
        os.kill(ranks[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        err0 = ranks[0].communicate(timeout=60)[1]
        waited = time.monotonic() - stopped
        os.kill(ranks[1].pid, signal.SIGCONT)
        err1 = ranks[1].communicate(timeout=60)[1]
    finally:
        for p in ranks:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait()
    assert ranks[0].returncode == 1 and waited < 40, (ranks[0].returncode, waited)
    assert "rank 0" in one_line(err0) and "train.timeout" in err0
    assert ranks[1].returncode == 1 and "train.timeout" in one_line(err1)


def test_train_timeout_must_be_positive(tmp_path, capsys):
    assert main(["fit", "ring", "--layers", "1", *TINY, "--set", "train.timeout=0", "--out", str(tmp_path / "r")]) == 2
    assert "train.timeout to be a positive number of minutes, got 0.0" in one_line(capsys.readouterr().err)
