"""Helpers of tests/test_run_safety.py and tests/test_input_checks.py: tiny fits, the hashes of every file of a run
directory, one-line errors, child processes, a CIFAR-10 batch as Python 2 wrote it."""

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tractable.cli import main
from tractable.training import load_checkpoint

#: A data fit of a few seconds: 40 steps of a small NSF on small toy splits, a training checkpoint every 10 steps.
FIT = ["fit", "checkerboard", "--layers", "2", "--hidden", "16", "--batch-size", "64", "--steps", "40",
       "--checkpoint-every", "10", "--eval-every", "10", "--set", "data.train_size=1000", "--set", "data.val_size=200",
       "--set", "data.test_size=500", "--no-plots", "--quiet"]


#: The options of a fit of a few steps that writes no figures.
TINY = ["--steps", "5", "--batch-size", "32", "--no-plots", "--quiet"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def child_env(**extra):
    """The environment of a child ``python -m tractable``: this checkout's sources first."""
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def one_line(err: str) -> str:
    """The one line of ``err`` (asserting there is one and no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tree(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``path`` (hidden ones included; ``{}`` if it is absent)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def run(*args: str, capsys) -> tuple[int, str]:
    """``tractable ARGS`` in this process: the exit status and stderr."""
    capsys.readouterr()
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def assert_one_line(err: str, *fragments: str) -> None:
    """``err`` is one line (no traceback) holding every fragment."""
    one_line(err)
    for fragment in fragments:
        assert fragment in err, err


def cli(*args: str, cwd: Path | None = None, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """``python -m tractable ARGS`` in a child process (the same interpreter and PYTHONPATH)."""
    command = [sys.executable, "-m", "tractable", *map(str, args)]
    if wait:
        return subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def model_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same_model(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold bit-identical weights."""
    ma, mb = model_of(a), model_of(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


def peak_rss_mb(run, n, tmp_path):
    """The peak resident memory (MB) of a child process that runs ``tractable sample RUN -n N``."""
    code = ("import resource, sys; from tractable.cli import main; "
            f"rc = main(['sample', {str(run)!r}, '-n', '{n}', '--out', {str(tmp_path / 'm.npy')!r}]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


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


class Payload:
    """A pickle whose loading runs ``touch MARKER`` (what a malicious data file could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
