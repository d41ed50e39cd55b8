"""Checkpoints that resume exactly: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one
(reverse KL and maximum likelihood); the checkpoint files, their retention, failed writes, corrupt or unsafe files,
the metric logs cut back on resume, and the safetensors export."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tractable import ActNorm, Compose, ElementwiseAffine, Flow, PlanarFlow, StandardNormal, Transform, get_target
from tractable.cli import main
from tractable.training import (
    CheckpointError,
    MetricsLog,
    fit_max_likelihood,
    fit_reverse_kl,
    load_checkpoint,
    load_safetensors,
    read_metrics_csv,
    save_checkpoint,
    save_safetensors,
    seed_everything,
)
from tractable.training.checkpoint import list_step_checkpoints

ENERGY = ["fit", "ring", "--layers", "3", "--steps", "300", "--batch-size", "32", "--eval-samples", "1000",
          "--warmup", "30", "--clip", "50", "--ema", "0.99", "--checkpoint-every", "25", "--keep-last", "2",
          "--no-plots", "--quiet"]
DATA = ["fit", "eight_gaussians", "--model", "nsf", "--layers", "2", "--hidden", "8", "--steps", "240",
        "--batch-size", "64", "--eval-every", "40", "--warmup", "20", "--ema", "0.95", "--checkpoint-every", "30",
        "--set", "data.train_size=1000", "--set", "data.val_size=300", "--set", "data.test_size=500",
        "--no-plots", "--quiet"]


def _rows(path):
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def _kill_after_checkpoint(args, out, min_step):
    """Start ``tractable`` in a subprocess; SIGKILL it once a checkpoint of at least ``min_step`` exists and
    metrics.csv holds rows past it (so the resumed run must cut them back)."""
    proc = subprocess.Popen([sys.executable, "-m", "tractable", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120

    def ready() -> bool:
        rows = _rows(out / "metrics.csv")
        steps = [s for s, _ in list_step_checkpoints(out / "checkpoints")]
        return bool(steps) and steps[-1] >= min_step and rows > steps[-1]

    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                # frozen first, then checked again: a run that wrote its next checkpoint between the check and the
                # kill (seen once on a loaded machine: checkpoint 75 with 75 rows) would leave no rows to cut back
                proc.send_signal(signal.SIGSTOP)
                if ready():
                    proc.send_signal(signal.SIGKILL)
                    break
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.002)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way: {proc.stderr.read().decode()[-500:]}"
    assert not (out / "checkpoint.pt").exists()  # it did not finish
    last = list_step_checkpoints(out / "checkpoints")[-1][0]
    assert _rows(out / "metrics.csv") > last  # rows logged after the checkpoint, which the resumed run repeats
    return last


def _assert_same_run(a, b):
    sa, sb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k  # bit for bit
    (ta, _), (tb, _) = load_safetensors(a / "model.safetensors"), load_safetensors(b / "model.safetensors")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()  # rows after the checkpoint rewritten
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    last_a = list_step_checkpoints(a / "checkpoints")[-1][1]
    last_b = list_step_checkpoints(b / "checkpoints")[-1][1]
    oa, ob = load_checkpoint(last_a)["optimizer"], load_checkpoint(last_b)["optimizer"]
    for key, state in oa["state"].items():
        assert all(torch.equal(state[n], ob["state"][key][n]) for n in state)


@pytest.mark.parametrize("args, min_step", [(ENERGY, 50), (DATA, 60)], ids=["reverse-kl", "max-likelihood"])
def test_sigkill_and_resume_is_bit_identical(tmp_path, args, min_step, capsys):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    _kill_after_checkpoint(args, killed, min_step)
    assert main(["fit", "--resume", str(killed), "--quiet"]) == 0
    assert main([*args, "--out", str(reference)]) == 0
    _assert_same_run(killed, reference)
    kept = [s for s, _ in list_step_checkpoints(killed / "checkpoints")]
    assert len(kept) == (2 if args is ENERGY else 3) and kept[-1] == (300 if args is ENERGY else 240)
    if args is DATA:
        best = load_checkpoint(killed / "checkpoints" / "best.pt")
        assert best["step"] % 40 == 0 and best["val_nll"] > 0 and "model" in best


class _Opaque:
    """A pickled object: what a weights-only load must refuse."""


def test_resume_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "ring", "--layers", "2", "--steps", "30", "--batch-size", "32", "--checkpoint-every", "10",
                 "--keep-last", "1", "--eval-samples", "500", "--no-plots", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    latest = out / "checkpoints" / "step-000000030.pt"
    for message, prepare in [
        ("cannot be loaded safely", lambda: latest.write_bytes(latest.read_bytes()[:200])),
        ("cannot be loaded safely", lambda: torch.save({"format_version": 1, "obj": _Opaque()}, latest)),
        ("--resume continues the run exactly", None),
    ]:
        if prepare is not None:
            prepare()
        extra = ["--steps", "5"] if prepare is None else []
        assert main(["fit", "--resume", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["fit", "--resume", str(tmp_path / "nothing")]) == 2
    assert "config.toml" in capsys.readouterr().err


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    seed_everything(0)
    flow = PlanarFlow(2, 2)
    real_save = torch.save
    calls = []

    def half_then_fail(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        fit_reverse_kl(flow, get_target("ring"), steps=30, batch_size=16, checkpoint_dir=tmp_path, checkpoint_every=10,
                       progress=False)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["step-000000010.pt"]  # no temporary file left behind
    assert load_checkpoint(tmp_path / "step-000000010.pt")["step"] == 10


def test_metrics_log_cuts_back_to_the_checkpoint(tmp_path):
    csv_path, jsonl = tmp_path / "m.csv", tmp_path / "m.jsonl"
    log = MetricsLog(["step", "loss"], csv_path=csv_path, jsonl_path=jsonl)
    for step in range(1, 8):
        log.write({"step": step, "loss": step / 3 if step != 2 else float("nan")})
    log.close()
    with open(csv_path, "a") as f:
        f.write("8,0.12")  # a row cut short by a kill
    log = MetricsLog(["step", "loss"], csv_path=csv_path, jsonl_path=jsonl, resume_step=5)
    assert [r["step"] for r in log.previous] == [1, 2, 3, 4, 5] and log.previous[2]["loss"] == 1.0
    log.write({"step": 6, "loss": 9.0})
    log.close()
    rows = read_metrics_csv(csv_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[-1]["loss"] == 9.0 and rows[1]["loss"] != 1
    assert [line.count('"step"') for line in jsonl.read_text().splitlines()] == [1] * 6


def test_checkpoint_metadata_is_plain(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "ring", "--layers", "2", "--steps", "20", "--batch-size", "16", "--checkpoint-every", "10",
                 "--ema", "0.9", "--eval-samples", "500", "--no-plots", "--quiet", "--out", str(out)]) == 0
    state = load_checkpoint(out / "checkpoints" / "step-000000020.pt")
    from tractable import __version__

    assert state["format_version"] == 1 and state["library_version"] == __version__ and state["step"] == 20
    assert {"model", "optimizer", "scheduler", "ema", "rng", "loop", "meta"} <= set(state)
    assert {"torch", "numpy", "python"} <= set(state["rng"][0]) and state["ema"]["updates"] == 20
    assert state["meta"]["config"]["train"]["ema"] == 0.9

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, (str, int)) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str, torch.Tensor))

    assert plain(state)
    save_checkpoint(state, tmp_path / "again.pt")  # and it round-trips through weights_only
    assert load_checkpoint(tmp_path / "again.pt")["step"] == 20


def test_safetensors_round_trip(tmp_path):
    tensors = {
        "w": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(5), "h": torch.randn(2, 2).half(),
        "bf": torch.randn(3).bfloat16(), "i": torch.arange(6).reshape(2, 3), "flag": torch.tensor(True),
        "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5), "strided": torch.randn(4, 4).t(),
    }
    path = save_safetensors(tensors, tmp_path / "w.safetensors", {"config": "x = 1"})
    back, meta = load_safetensors(path)
    assert meta == {"config": "x = 1"} and back.keys() == tensors.keys()
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape and torch.equal(back[k], t), k
    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    assert (8 + header) % 8 == 0 and raw[8:9] == b"{"
    path.write_bytes(raw[:20])
    with pytest.raises(ValueError, match="truncated"):
        load_safetensors(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        return
    save_safetensors(tensors, path)
    other = load_file(str(path))
    assert all(torch.equal(other[k], t) for k, t in tensors.items())


def test_resume_requires_a_checkpoint_directory():
    with pytest.raises(CheckpointError, match="without a checkpoint directory"):
        fit_reverse_kl(PlanarFlow(2, 1), get_target("ring"), steps=2, resume=True, progress=False)


@pytest.mark.parametrize(
    "content, message",
    [
        ('target = "ring"\n[train]\nstepz = 3\n', "unknown config key 'train.stepz'"),
        ('target = "ring"\n[train]\nsteps = "many"\n', "config key 'train.steps' expects int, got str 'many'"),
        ('target = "ring"\n[train]\nema = true\n', "config key 'train.ema' expects float, got bool"),
        ('target = "ring"\n[train\nsteps = 3\n', "is not valid TOML"),
        (None, "does not exist"),
    ],
)
def test_malformed_config_files_are_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "c.toml"
    if content is not None:
        path.write_text(content)
    assert main(["fit", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_bad_hygiene_values_are_one_line(tmp_path, capsys):
    for option, value, message in [("--keep-last", "0", "keep_last to be a positive integer, got 0"),
                                   ("--ema", "1.5", "0 <= ema < 1"),
                                   ("--warmup", "50", "warmup to be an integer in [0, steps=20), got 50")]:
        assert main(["fit", "ring", "--layers", "1", "--steps", "20", option, value, "--no-plots", "--quiet",
                     "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    fit_reverse_kl(PlanarFlow(2, 1), get_target("ring"), steps=5, batch_size=8, tensorboard_dir=tmp_path / "tb",
                   progress=False)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


class _Noisy(Transform):
    """Adds fresh uniform noise in training mode (as dequantization does), so resuming depends on the RNG state."""

    def forward(self, x, context=None):
        if self.training:
            x = x + 0.01 * torch.rand_like(x)
        return x, torch.zeros(x.shape[0], dtype=x.dtype)

    def inverse(self, y, context=None):
        return y, torch.zeros(y.shape[0], dtype=y.dtype)


def _image_fit(checkpoint_dir, *, resume=False, crash_at=None, steps=24):
    torch.manual_seed(0)
    flow = Flow(Compose(_Noisy(), ActNorm(2, event_dims=3), ElementwiseAffine((2, 3, 3))), StandardNormal((2, 3, 3)))
    images = torch.randn(200, 2, 3, 3) * 3 + 1

    def crash(step, row):
        if step == crash_at:
            raise KeyboardInterrupt

    history = fit_max_likelihood(flow, images, val=images[:50], steps=steps, batch_size=16, lr=0.05, eval_every=6,
                                 ema=0.9, warmup=3, checkpoint_dir=checkpoint_dir, checkpoint_every=5, resume=resume,
                                 metrics_csv=checkpoint_dir / "m.csv", callback=crash, progress=False)
    return flow, history


def test_image_tensors_resume_exactly_in_process(tmp_path):
    """Images (rows, C, H, W), ActNorm per channel, a layer drawing noise, EMA and validation, resumed."""
    reference, history = _image_fit(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _image_fit(tmp_path / "b", crash_at=13)
    assert [s for s, _ in list_step_checkpoints(tmp_path / "b")] == [5, 10]
    resumed, resumed_history = _image_fit(tmp_path / "b", resume=True)
    for (k, p), q in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), k
    assert resumed_history.evaluations == history.evaluations and resumed_history.best_step == history.best_step
    assert [r["loss"] for r in resumed_history.rows] == [r["loss"] for r in history.rows]
    assert (tmp_path / "a" / "m.csv").read_text() == (tmp_path / "b" / "m.csv").read_text()
    assert load_checkpoint(tmp_path / "b" / "best.pt")["step"] == history.best_step


def test_resume_with_a_validation_the_checkpoint_lacks(tmp_path):
    """A checkpoint of a fit without validation data, resumed with some: one clear CheckpointError."""
    train = torch.randn(300, 2)
    flow = Flow(ElementwiseAffine(2), StandardNormal(2))
    fit_max_likelihood(flow, train, steps=4, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"does not fit this run: its loop state has no 'best_state'"):
        fit_max_likelihood(flow, train, val=train[:50], steps=8, batch_size=32, checkpoint_dir=tmp_path, resume=True,
                           progress=False)
