"""Issue 11, inputs and commands (items 7, 8, 11 and 14): each test reproduces a failure of main b0dc4fe.

- 7: ``tractable sample -n N`` drew all ``N`` samples in one pass (8 GB of memory for 10 million 2D samples);
  now chunks of ``SAMPLE_CHUNK`` rows, the same samples for a seed, memory that does not grow with ``N``.
- 8: ``fit cifar10 --data-dir D`` unpickled ``D/data_batch_*`` with ``pickle.load``: a ``__reduce__`` payload ran;
  now a restricted unpickler refuses it in one line and the marker file is never created.
- 11: a stopped DDP rank held the others for gloo's 30 minutes; now ``train.timeout`` ends every rank with one line.
- 14: the smaller ones, each named in its test.
"""

import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tractable.app import commands
from tractable.app.run import open_run
from tractable.cli import main
from tractable.targets.images import CIFAR10_FILES, load_cifar10, read_cifar_batch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TINY = ["--steps", "5", "--batch-size", "32", "--no-plots", "--quiet"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra):
    """The environment of a child ``python -m tractable``: this checkout's sources first."""
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ring"
    assert main(["fit", "ring", "--layers", "2", "--eval-samples", "500", "--out", str(out), *TINY]) == 0
    return out


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


def _peak_rss_mb(run, n, tmp_path):
    """The peak resident memory (MB) of a child process that runs ``tractable sample RUN -n N``."""
    code = ("import resource, sys; from tractable.cli import main; "
            f"rc = main(['sample', {str(run)!r}, '-n', '{n}', '--out', {str(tmp_path / 'm.npy')!r}]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ by platform")
def test_sample_memory_does_not_grow_with_n(ring_run, tmp_path):
    """Three million 2D samples (24 MB of output): on main the one pass held every layer's intermediate tensors
    (about 350 MB more than a thousand samples); now chunks keep the growth to a few tens of MB (a 10-million-sample
    draw of a 5-layer NSF peaks at 0.4 GB with /usr/bin/time -v)."""
    small = _peak_rss_mb(ring_run, 1000, tmp_path)
    large = _peak_rss_mb(ring_run, 3_000_000, tmp_path)
    assert np.load(tmp_path / "m.npy", mmap_mode="r").shape == (3_000_000, 2)
    assert large - small < 120, (small, large)


# --------------------------------------------------------------------------------- 8: restricted unpickling


def python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR-10 batch as Python 2's cPickle wrote it (protocol 2, ``str`` as BINSTRING, the array through
    ``numpy.core.multiarray._reconstruct``), built opcode by opcode as the real files are laid out."""
    def s(text: bytes) -> bytes:
        return b"U" + bytes([len(text)]) + text if len(text) < 256 else b"T" + struct.pack("<i", len(text)) + text

    raw = np.ascontiguousarray(data, dtype=np.uint8)
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
             + b"(K\x01" + b"M" + struct.pack("<H", raw.shape[0]) + b"M" + struct.pack("<H", raw.shape[1]) + b"\x86"
             + b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R(K\x03" + s(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
             + b"\x89" + s(raw.tobytes()) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (b"\x80\x02}(" + s(b"batch_label") + s(b"training batch 1 of 5") + s(b"data") + array
            + s(b"labels") + label_list + b"u.")


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


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_cifar_batch_cannot_run_code(tmp_path, capsys):
    """On main ``pickle.load`` called ``os.system`` and the marker file appeared; now one line names the file and
    the refused global."""
    marker = tmp_path / "marker"
    names = [n for group in CIFAR10_FILES.values() for n in group]
    for name in names:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=2))
    assert main(["fit", "cifar10", "--data-dir", str(tmp_path), "--steps", "2", "--no-plots", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "data_batch_1" in err and "system" in err and "refused" in err, err
    assert not marker.exists()
    for payload in (b"not a pickle", pickle.dumps([1, 2]), pickle.dumps({b"data": np.zeros((2, 5))})):
        (tmp_path / "test_batch").write_bytes(payload)
        with pytest.raises(ValueError, match="test_batch"):
            read_cifar_batch(tmp_path / "test_batch")


# ------------------------------------------------------------------------------------------- 11: DDP timeout


def test_a_stopped_ddp_rank_ends_every_rank_with_one_line(tmp_path):
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
                              env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
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
    assert "rank 0" in _one_line(err0) and "train.timeout" in err0
    assert ranks[1].returncode == 1 and "train.timeout" in _one_line(err1)


def test_train_timeout_must_be_positive(tmp_path, capsys):
    assert main(["fit", "ring", "--layers", "1", *TINY, "--set", "train.timeout=0", "--out", str(tmp_path / "r")]) == 2
    assert "train.timeout to be a positive number of minutes, got 0.0" in _one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------- 14: smaller ones


def _fit_table(path, capsys, *extra):
    capsys.readouterr()
    code = main(["fit", "--data", str(path), *TINY, "--layers", "1", "--hidden", "8", *extra,
                 "--out", str(Path(path).parent / "run")])
    return code, capsys.readouterr().err


def _rows(n, columns=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, columns))


def _csv(path, header, rows, prefix=""):
    path.write_text(prefix + ",".join(header) + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def test_duplicate_header_names_are_refused(tmp_path, capsys):
    """On main the second 'a' was silently ignored by --context a (the first was taken)."""
    code, err = _fit_table(_csv(tmp_path / "d.csv", ["a", "b", "a"], _rows(60)), capsys, "--context", "a")
    assert code == 2 and "['a'] more than once" in _one_line(err)


def test_a_byte_order_mark_is_dropped(tmp_path, capsys):
    """On main the first header name was '\\ufeffa' and --context a was 'not found'."""
    code, err = _fit_table(_csv(tmp_path / "bom.csv", ["a", "b", "c"], _rows(60), prefix="\ufeff"), capsys,
                           "--context", "a")
    assert code == 0, err


@pytest.mark.parametrize("standardize", [[], ["--no-standardize"]])
def test_float32_overflow_names_the_file_line_and_column(tmp_path, capsys, standardize):
    """On main: 'expected finite means and positive finite stds' (no file, row or column), and with
    --no-standardize a row number of the shuffled training split."""
    rows = _rows(60, 2)
    path = _csv(tmp_path / "big.csv", ["x", "y"], rows)
    lines = path.read_text().splitlines()
    lines[41] = "0.5,1e39"  # the file's line 42
    path.write_text("\n".join(lines) + "\n")
    code, err = _fit_table(path, capsys, *standardize)
    line = _one_line(err)
    assert code == 2 and "big.csv" in line and "line 42 column 1" in line and "overflows float32" in line, line


def test_a_csv_named_npy_is_not_called_a_pickle(tmp_path, capsys):
    """On main: '... contains pickled data ... allow_pickle=' advice, for a text file."""
    code, err = _fit_table(_csv(tmp_path / "t.npy", ["x", "y"], _rows(60, 2)), capsys)
    line = _one_line(err)
    assert code == 2 and "is not a .npy file" in line and "pickle" not in line.lower(), line


def test_a_two_row_table_says_how_many_rows_are_needed(tmp_path, capsys):
    """On main: 'expected validation data of shape (rows, 2), got (0, 2)'."""
    code, err = _fit_table(_csv(tmp_path / "two.csv", ["x", "y"], _rows(2, 2)), capsys)
    line = _one_line(err)
    assert code == 2 and "2 rows are too few" in line and "at least 6 rows" in line, line


def test_a_newline_in_the_data_path_writes_valid_toml(tmp_path, capsys):
    """On main config.toml held a raw newline inside a string, which no TOML reader (nor eval) accepts."""
    path = _csv(tmp_path / "odd\nname.csv", ["x", "y"], _rows(60, 2))
    code, err = _fit_table(path, capsys)
    assert code == 0, err
    config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert config["data"]["path"] == str(path)
    assert main(["eval", str(tmp_path / "run")]) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="file names of arbitrary bytes")
def test_a_data_path_of_undecodable_bytes_is_one_clear_line(tmp_path, capsys):
    """Found probing odd file names: on main ``'utf-8' codec can't encode character '\\udcff' ...: surrogates not
    allowed`` (writing config.toml); now the key and the name are named."""
    name = os.fsdecode(bytes(tmp_path / "x") + b"\xff.csv")
    _csv(Path(name), ["x", "y"], _rows(60, 2))
    code, err = _fit_table(name, capsys)
    assert code == 2 and "config key 'data.path' expects UTF-8 text" in _one_line(err)


def test_checkpoint_errors_never_advise_loading_unsafely(ring_run, tmp_path, capsys):
    """On main the message relayed torch's 'Re-running `torch.load` with `weights_only` set to `False` will likely
    succeed'."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "metrics.csv"):
        (run / name).write_bytes((ring_run / name).read_bytes())
    torch.save({"model": _Payload(tmp_path / "marker")}, run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "10"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "GLOBAL posix.system" in line or "GLOBAL nt.system" in line, line
    assert "False" not in line and "trust" not in line and not (tmp_path / "marker").exists()


def test_an_ascii_console_gets_the_summary_after_eval_json(ring_run, tmp_path):
    """On main 'KL(q‖p)' raised UnicodeEncodeError after eval.json was written: exit 2."""
    out = tmp_path / "e.json"
    done = subprocess.run([sys.executable, "-m", "tractable", "eval", str(ring_run), "--samples", "100", "--out",
                           str(out)], env=_env(PYTHONIOENCODING="ascii"), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "KL(q\\u2016p)" in done.stdout, done.stderr
    assert json.loads(out.read_text())["eval_samples"] == 100


def test_eval_samples_below_two_is_one_line(ring_run, capsys):
    """On main '--samples 1' wrote a NaN standard error and printed torch's degrees-of-freedom warning."""
    assert main(["eval", str(ring_run), "--samples", "1", "--out", str(ring_run / "one.json")]) == 2
    assert "expected --samples >= 2" in _one_line(capsys.readouterr().err)
    assert not (ring_run / "one.json").exists()


def test_a_default_warmup_fits_a_short_run(tmp_path, capsys):
    """On main 'fit digits --steps 3' failed on the image task's default warmup of 100 the user never set; a warmup
    the user gives is still checked."""
    pytest.importorskip("sklearn")
    small = ["--hidden", "4", "--blocks", "1", "--set", "model.architecture=2c", "--iw-samples", "1", "--no-plots",
             "--quiet", "--threads", "1"]
    assert main(["fit", "digits", "--steps", "3", *small, "--out", str(tmp_path / "a")]) == 0
    assert tomllib.loads((tmp_path / "a" / "config.toml").read_text())["train"]["warmup"] == 2
    capsys.readouterr()
    assert main(["fit", "digits", "--steps", "3", "--warmup", "100", *small, "--out", str(tmp_path / "b")]) == 2
    assert "warmup to be an integer in [0, steps=3), got 100" in _one_line(capsys.readouterr().err)


def test_skipped_steps_is_documented():
    """``skipped_steps`` is in every metrics.json but was in no table of the README."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert readme.count("| `skipped_steps` |") >= 3
