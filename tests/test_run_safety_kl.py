"""Issue 11, item 6: a reverse-KL run that diverged in a short non-finite streak ends in one line, not a traceback.

On main b0dc4fe, ``tractable fit ring --lr 1e3 --steps 4`` trained through three skipped steps (fewer than
``max_bad_steps``), then ``evaluate_reverse`` raised a bare ``FloatingPointError`` ("100000 of 100000 samples have a
non-finite log-weight"), which the command line does not catch: a traceback, exit status 1, no ``metrics.json``. The
evaluation now raises :class:`~tractable.utils.NonFiniteError` saying the fit diverged and what to try; the command
line prints it as one line and exits 2. No ``metrics.json`` is written: its figures would all be non-finite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tractable import Flow, Inverse, Planar, StandardNormal, evaluate_reverse, get_target
from tractable.training.hygiene import NonFiniteError


def test_diverged_reverse_kl_fit_ends_in_one_line(tmp_path: Path) -> None:
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
