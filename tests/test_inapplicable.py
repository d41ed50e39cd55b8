"""Options that do not apply to the kind of target are refused in one line naming the option and the kind (issue 11,
item 14), before anything is written.

On main b0dc4fe these were silently ignored: ``fit ring --patience 3`` and ``--eval-every``, ``--anneal`` and
``--eval-samples`` on data, ``--iw-samples``/``--data-dir``/``--context`` on an energy all exited 0, and ``fit ring
--data FILE`` fitted the file; ``--context`` on a toy data set and ``--conditional`` on a file failed only after
``config.toml`` was written. Each case below asserts exit 2, one line on stderr and no run directory.
"""

from __future__ import annotations

import numpy as np
import pytest

from tractable.cli import main

ENERGY, DATA, IMAGE = "energy targets (reverse KL)", "data (maximum likelihood)", "image data sets"


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.csv"
    np.savetxt(path, np.random.default_rng(0).normal(size=(60, 3)), delimiter=",")
    return str(path)


CASES = [
    (["ring", "--patience", "3"], ["--patience does not apply to", ENERGY]),
    (["ring", "--eval-every", "5"], ["--eval-every does not apply to", ENERGY]),
    (["ring", "--set", "train.patience=2"], ["--set train.patience does not apply to", ENERGY]),
    (["ring", "--iw-samples", "3"], ["--iw-samples does not apply to", ENERGY]),
    (["ring", "--context", "0"], ["--context does not apply to", ENERGY]),
    (["ring", "--data-dir", "somewhere"], ["--data-dir does not apply to", ENERGY]),
    (["ring", "--no-standardize"], ["--no-standardize does not apply to", ENERGY]),
    (["ring", "--features", "3"], ["--features does not apply to", ENERGY]),
    (["ring", "--bins", "99"], ["'model.bins' for model 'planar'", "--bins does not apply to planar on", ENERGY]),
    (["checkerboard", "--anneal", "0.3"], ["--anneal does not apply to", DATA]),
    (["checkerboard", "--eval-samples", "10"], ["--eval-samples does not apply to", DATA]),
    (["checkerboard", "--data-dir", "somewhere"], ["--data-dir does not apply to", DATA]),
    (["checkerboard", "--no-gif"], ["--no-gif does not apply to", DATA]),
    (["checkerboard", "--context", "0"], ["--context does not apply to", DATA, "--conditional"]),
    (["checkerboard", "--set", "data.val_fraction=0.2"], ["data.val_fraction does not apply to", DATA]),
    (["checkerboard", "--dequantization", "variational"],
     ["'model.dequantization' for model 'nsf'", "--dequantization does not apply to nsf on", DATA]),
    (["digits", "--anneal", "0.5"], ["--anneal does not apply to", IMAGE]),
    (["digits", "--eval-samples", "10"], ["--eval-samples does not apply to", IMAGE]),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_inapplicable_option_is_one_line_and_writes_nothing(tmp_path, capsys, args, expected):
    out = tmp_path / "run"
    assert main(["fit", *args, "--steps", "2", "--no-plots", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tractable fit: error: "), err
    for text in expected:
        assert text in err, err
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--conditional"], ["--set", "data.train_size=50"]])
def test_toy_options_are_refused_for_a_file(tmp_path, capsys, table, extra):
    out = tmp_path / "run"
    assert main(["fit", "--data", table, *extra, "--steps", "2", "--no-plots", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not apply to data (maximum likelihood)" in err, err
    assert not out.exists()


def test_a_target_and_a_data_file_are_exclusive(tmp_path, capsys, table):
    """``fit ring --data FILE`` fitted the file on main."""
    out = tmp_path / "run"
    assert main(["fit", "ring", "--data", table, "--steps", "2", "--no-plots", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "target 'ring' and --data" in err, err
    assert not out.exists()


def test_a_config_file_key_that_does_not_apply_is_refused(tmp_path, capsys):
    config = tmp_path / "ring.toml"
    config.write_text('target = "ring"\n[train]\npatience = 4\n')
    assert main(["fit", "--config", str(config), "--steps", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "config key 'train.patience' = 4 does not apply to energy targets" in err, err


@pytest.mark.parametrize("target", ["ring", "checkerboard", "table"])
def test_a_runs_own_config_is_accepted_again(tmp_path, capsys, table, target):
    """A run's ``config.toml`` holds every key of every section (at its default where it does not apply), so
    ``fit --config RUN/config.toml`` must not be refused."""
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--data", table] if target == "table" else [target]
    small = [] if target == "ring" else ["--set", "data.train_size=200", "--set", "data.val_size=50",
                                          "--set", "data.test_size=50"] * (target == "checkerboard")
    common = ["--steps", "2", "--batch-size", "16", "--no-plots", "--quiet"]
    evals = ["--eval-samples", "200"] if target == "ring" else []
    assert main(["fit", *args, *small, *common, *evals, "--out", str(first)]) == 0
    assert main(["fit", "--config", str(first / "config.toml"), "--out", str(second), "--quiet"]) == 0
    assert (second / "metrics.json").is_file()
