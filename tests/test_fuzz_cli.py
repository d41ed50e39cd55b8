"""Fuzzing the command line with malformed inputs (issue 11's acceptance): hypothesis draws broken CSV, NPY and TOML
files and combinations of options, and every outcome must be exit 0, or exactly one line on stderr with exit 2 —
never a traceback — and no file outside the run directory may change.

The commands run in-process (``tractable.cli.main`` with ``capsys``) for speed: an exception that escapes ``main``
fails the test as a traceback would. A few examples also run as a subprocess, where a traceback is what the user
would see. Each fit is tiny (2 steps, no figures), so the whole file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tractable.cli import main

TINY = ["--steps", "2", "--batch-size", "16", "--layers", "1", "--hidden", "4", "--no-plots", "--quiet",
        "--eval-samples", "50"]
#: ``FUZZ_EXAMPLES=500`` explores further (random seeds); by default a fixed, fast set of examples.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=EXAMPLES or 15, deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SRC = str(Path(__file__).resolve().parents[1] / "src")

# ------------------------------------------------------------------------------------------------ the inputs

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-10**40, 10**40).map(str),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e39", "-1e39", "1e-320", "abc", '"1,5"', '"', "0x10", "1_0",
                     "٣", "1.5.2", "\ufeff1", "a\tb", "NaN", "True", "\x00", "é"]),
)
HEADERS = st.lists(st.sampled_from(["a", "b", "c", "x", "\ufeffa", "", "1", "a b", '"a"', "é"]), min_size=1,
                   max_size=4)


@st.composite
def csv_texts(draw) -> bytes:
    """A CSV as bytes: maybe a BOM, maybe a header, rows of drawn cells (ragged or not), a drawn delimiter."""
    delimiter = draw(st.sampled_from([",", ";", "\t", " ", "|"]))
    width = draw(st.integers(1, 4))
    lines = []
    if draw(st.booleans()):
        lines.append(delimiter.join(draw(HEADERS)))
    regular = draw(st.booleans())
    numbers = st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.3f}")
    for _ in range(draw(st.integers(0, 40))):
        cells = draw(st.lists(numbers if regular else st.one_of(numbers, CELLS), min_size=width,
                              max_size=width if regular else width + 1))
        lines.append(delimiter.join(cells))
    text = ("\ufeff" if draw(st.booleans()) else "") + "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@st.composite
def npy_bytes(draw) -> bytes:
    """An ``.npy`` file as bytes: well-formed arrays of odd shapes and dtypes, pickled objects, truncations, noise."""
    kind = draw(st.sampled_from(["array", "object", "truncated", "noise", "text"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return b"x,y\n1,2\n3,4\n"
    buffer = io.BytesIO()
    if kind == "object":
        np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    else:
        shape = draw(st.sampled_from([(0,), (5,), (0, 2), (1, 2), (3, 2), (40, 2), (40, 3), (2, 3, 4), (40, 1)]))
        dtype = draw(st.sampled_from(["float32", "float64", "int64", "bool", "complex64", "U3", "float16"]))
        values = np.random.default_rng(draw(st.integers(0, 9))).normal(size=shape) * draw(
            st.sampled_from([1.0, 1e39, 0.0, np.nan]))
        with np.errstate(all="ignore"):
            np.save(buffer, values.astype(dtype))
    data = buffer.getvalue()
    return data[: draw(st.integers(0, len(data)))] if kind == "truncated" else data


TOML_LINES = st.sampled_from([
    'target = "ring"', 'target = "checkerboard"', 'target = 3', 'target = "nope"', "[train]", "[model]", "[data]",
    "[eval]", "[output]", "[bogus]", "steps = 2", "steps = 0", "steps = -1", 'steps = "2"', "steps = 2.5",
    "lr = 1e-3", "lr = nan", "lr = inf", "lr = -1", "batch_size = 16", "batch_size = 0", "layers = 1",
    "layers = 0", 'name = "planar"', 'name = "nsf"', 'name = "nope"', "hidden = 4", "bins = 1", "plots = false",
    "samples = 50", "samples = 1", "warmup = 5", "timeout = 0", "checkpoint_every = 0", "x = [1, 2", "= 3",
    "steps = 2\nsteps = 3", 'path = "missing.csv"', "anneal = 2.0", "ema = 1.0", 'dtype = "float16"',
    'device = "foo"', "train = 3", "[train.inner]", "keep_last = 0", "\x00", '"unterminated',
])


@st.composite
def toml_texts(draw) -> str:
    lines = draw(st.lists(TOML_LINES, max_size=8))
    # keep most files fittable and fast: a small target and two steps, unless the drawn lines say otherwise
    return 'target = "ring"\n' + "\n".join(lines) + "\n" if draw(st.booleans()) else "\n".join(lines)


#: Bad devices and thread counts, rejected in one line before anything is written.
DEVICE_AND_THREADS = [["--device", "foo"], ["--threads", "0"]]
OPTIONS = st.lists(st.sampled_from([
    ["--steps", "0"], ["--steps", "-3"], ["--steps", "1"], ["--lr", "0"], ["--lr", "nan"], ["--lr", "-1"],
    ["--batch-size", "0"], ["--batch-size", "1"], ["--layers", "0"], ["--hidden", "0"], ["--bins", "1"],
    ["--bound", "-1"], ["--seed", "-1"], ["--anneal", "-0.5"], ["--clip", "-1"], ["--eval-every", "0"],
    ["--patience", "-1"], ["--eval-samples", "1"], ["--eval-samples", "0"], ["--warmup", "5"], ["--warmup", "-1"],
    ["--ema", "1"], ["--ema", "0.5"], ["--max-bad-steps", "0"], ["--checkpoint-every", "0"], ["--keep-last", "0"],
    ["--dtype", "float64"], *DEVICE_AND_THREADS, ["--threads", "1"], ["--context", "a"],
    ["--context", "0"], ["--context", "99"], ["--conditional"], ["--no-standardize"], ["--flow", "maf"],
    ["--flow", "planar"], ["--base", "diagonal"], ["--schedule", "constant"], ["--set", "train.timeout=-1"],
    ["--set", "nope=1"], ["--set", "model.nope=1"], ["--set", "data.val_fraction=0.9"], ["--detect-anomaly"],
    ["--set", "data.test_fraction=0"], ["--iw-samples", "0"], ["--dequantization", "uniform"],
]), max_size=3).map(lambda groups: [arg for group in groups for arg in group])


# --------------------------------------------------------------------------------------------- the sandbox


def _hashes(root: Path, skip: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``root`` but those in ``skip`` (the run directory)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _run(argv: list[str], sandbox: Path, capsys) -> tuple[int, str]:
    """``main(argv)`` with the working directory in the sandbox; asserts that nothing outside ``sandbox/run``
    changed and returns the exit status and stderr."""
    (sandbox / "precious.txt").write_text("a user's file beside the data\n")
    before = _hashes(sandbox, sandbox / "run")
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(sandbox)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (one line, see cli._Parser.error)
        code = e.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert _hashes(sandbox, sandbox / "run") == before, f"files outside the run directory changed: {argv}"
    return code, err


def _check(code: int, err: str, argv: list[str]) -> None:
    OUTCOMES.append(code)
    assert "Traceback" not in err, err
    if code != 0:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("tractable"), (argv, code, err)


OUTCOMES: list[int] = []  # every exit status seen (for a look at what the examples reach)


@contextlib.contextmanager
def _sandbox():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ------------------------------------------------------------------------------------------------ the tests


@SETTINGS
@given(content=csv_texts(), stem=st.sampled_from(["data", "odd\nname", "a\tb", "é ü", 'q"uote', "back\\slash",
                                                        "\udcffbytes"]),
       suffix=st.sampled_from([".csv", ".tsv", ".txt", ".npy"]), options=OPTIONS)
def test_fuzz_csv_files(content, stem, suffix, options, capsys):
    with _sandbox() as sandbox:
        path = sandbox / f"{stem}{suffix}"
        path.write_bytes(content)
        argv = ["fit", "--data", str(path), *TINY, *options, "--out", str(sandbox / "run")]
        _check(*_run(argv, sandbox, capsys), argv)


@SETTINGS
@given(content=npy_bytes(), options=OPTIONS)
def test_fuzz_npy_files(content, options, capsys):
    with _sandbox() as sandbox:
        path = sandbox / "data.npy"
        path.write_bytes(content)
        argv = ["fit", "--data", "data.npy", *TINY, *options, "--out", "run"]
        _check(*_run(argv, sandbox, capsys), argv)


@SETTINGS
@given(content=toml_texts(), options=OPTIONS)
def test_fuzz_config_files(content, options, capsys):
    with _sandbox() as sandbox:
        (sandbox / "config.toml").write_text(content)
        argv = ["fit", "--config", "config.toml", "--steps", "2", "--no-plots", "--quiet", "--eval-samples", "50",
                *options, "--out", "run"]
        _check(*_run(argv, sandbox, capsys), argv)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["fit", "ring", "--steps", "2", "--layers", "1", "--no-plots", "--quiet", "--eval-samples", "50",
                 "--out", str(out)]) == 0
    return out


@settings(max_examples=EXAMPLES or 12, deadline=None, derandomize=not EXAMPLES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["sample", "eval", "plot"]), options=st.lists(st.sampled_from([
    ["-n", "0"], ["-n", "3"], ["-n", "-1"], ["--seed", "-5"], ["--temperature", "0"], ["--temperature", "nan"],
    ["--context", "1,2"], ["--context", "c.npy"], ["--samples", "1"], ["--samples", "20"], ["--split", "val"],
    ["--split", "nope"], ["--no-figure"], ["--out", "out.txt"], ["--out", "out.npy"], ["--no-gif"],
]), max_size=3), broken=st.sampled_from([None, "config.toml", "checkpoint.pt", "metrics.csv"]))
def test_fuzz_run_commands(finished_run, command, options, broken, capsys):
    """``sample``, ``eval`` and ``plot`` on a copy of a finished run, some of its files truncated."""
    with _sandbox() as sandbox:
        run = sandbox / "run"
        run.mkdir()
        for name in ("config.toml", "checkpoint.pt", "metrics.csv"):
            data = (finished_run / name).read_bytes()
            (run / name).write_bytes(data[: len(data) // 3] if name == broken else data)
        argv = [command, str(run), *[a if a not in ("out.txt", "out.npy") else str(run / a) for a in
                                    [arg for group in options for arg in group]]]
        if command == "sample" and "-n" not in argv:
            argv += ["-n", "5"]
        _check(*_run(argv, sandbox, capsys), argv)


@pytest.mark.parametrize("content, suffix", [(b"\x93NUMPY\x01\x00garbage", ".npy"), (b"a,a\n1,2\n", ".csv"),
                                             (b"x\n1e39\n2\n3\n4\n5\n6\n", ".csv")])
def test_no_traceback_in_a_real_process(tmp_path, content, suffix):
    """The console a user sees: one line on stderr, exit 2, no traceback."""
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run([sys.executable, "-m", "tractable", "fit", "--data", str(path), *TINY, "--out",
                           str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
