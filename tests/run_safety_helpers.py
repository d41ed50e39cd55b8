"""Helpers of tests/test_run_safety.py: a tiny fit, the hashes of every file of a run directory, one-line errors."""

import hashlib
import subprocess
import sys
from pathlib import Path

import torch

from tractable.cli import main
from tractable.training import load_checkpoint

#: A data fit of a few seconds: 40 steps of a small NSF on small toy splits, a training checkpoint every 10 steps.
FIT = ["fit", "checkerboard", "--layers", "2", "--hidden", "16", "--batch-size", "64", "--steps", "40",
       "--checkpoint-every", "10", "--eval-every", "10", "--set", "data.train_size=1000", "--set", "data.val_size=200",
       "--set", "data.test_size=500", "--no-plots", "--quiet"]


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
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
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
