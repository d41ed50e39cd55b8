"""Test-wide settings: one torch thread per process (tests run two processes in parallel on two cores)."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A finished ring run of a few steps (tests/test_run_safety.py, tests/test_input_checks.py)."""
    from run_safety_helpers import TINY

    from tractable.cli import main

    out = tmp_path_factory.mktemp("runs") / "ring"
    assert main(["fit", "ring", "--layers", "2", "--eval-samples", "500", "--out", str(out), *TINY]) == 0
    return out
