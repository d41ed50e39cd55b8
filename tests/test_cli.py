"""The `tractable` command: smoke runs with few steps, the run directory's contract, and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from pictures import check_picture

from tractable.app import load_config, load_run
from tractable.app.tasks import DATA, ENERGY
from tractable.cli import main

REVERSE_KL_KEYS, DATA_KEYS = ENERGY.metrics_keys, DATA.metrics_keys

FAST = ["--steps", "40", "--batch-size", "64", "--eval-samples", "2000", "--quiet"]


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("flow", ["planar", "radial", "sylvester"])
def test_fit_writes_run_directory(tmp_path, flow, capsys):
    out = tmp_path / "run"
    code = main(["fit", "ring", "--flow", flow, "--layers", "3", "--seed", "1", "--lr", "1e-3", "--out", str(out),
                 "--no-plots", *FAST])
    assert code == 0
    assert {"config.toml", "metrics.csv", "metrics.json", "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    m = _metrics(out)
    assert set(REVERSE_KL_KEYS) <= set(m)
    assert m["steps"] == 40 and m["flow"] == flow and m["layers"] == 3 and m["seed"] == 1
    assert m["kl"] > 0 and 0 < m["ess"] <= 1 and m["log_z"] == pytest.approx(2.3133, abs=1e-4)
    printed = capsys.readouterr().out
    assert "KL(q‖p)" in printed and "ESS" in printed
    config = load_config(out / "config.toml")
    assert config.model["name"] == flow and config.train.lr == 1e-3 and config.train.batch_size == 64
    flow_model, target, _ = load_run(out)  # the checkpoint rebuilds the trained model
    assert target.name == "ring" and sum(p.numel() for p in flow_model.parameters()) == m["parameters"]


def test_fit_with_figures(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "u1", "--layers", "2", "--out", str(out), *FAST]) == 0
    for name in ("densities.png", "samples.png", "layers.png", "layers.gif", "training.png"):
        check_picture(out / name)


def test_config_file_and_set_override(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('target = "u2"\n[model]\nlayers = 2\n[train]\nsteps = 30\n')
    out = tmp_path / "run"
    assert main(["fit", "--config", str(config), "--set", "model.name=radial", "--set", "train.steps=25",
                 "--out", str(out), "--no-plots", "--eval-samples", "1000", "--quiet"]) == 0
    m = _metrics(out)
    assert (m["target"], m["flow"], m["layers"], m["steps"]) == ("u2", "radial", 2, 25)


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "moon"], "unknown target 'moon'; expected an energy (ring"),
        (["fit", "checkerboard", "--context", "0"], "--context does not apply to data (maximum likelihood)"),
        (["fit", "--data", "/nonexistent.npy"], "does not exist"),
        (["fit", "ring", "--model", "planar", "--set", "model.name=glow"], "model.name' must be one of"),
        (["fit", "ring", "--set", "model.flow=radial"], "config key 'model.flow' is now 'model.name'"),
        (["fit", "ring", "--set", "image.architecture=2c"],
         "config key 'image.architecture' is now 'model.architecture'"),
        (["fit", "ring", "--hidden", "8"],
         "unknown config key 'model.hidden' for model 'planar'; expected one of base"),
        (["fit", "ring", "--set", "model.depth=3"], "unknown config key 'model.depth'"),
        (["fit", "ring", "--set", "train.stepz=3"], "unknown config key 'train.stepz'"),
        (["fit", "ring", "--set", "layers"], "--set expects KEY=VALUE"),
        (["fit", "ring", "--steps", "0"], "steps to be a positive integer"),
        (["fit", "ring", "--config", "/nonexistent.toml"], "does not exist"),
        (["fit"], "fit needs a target"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, capsys, args, message):
    code = main([*args, "--out", str(tmp_path / "run"), "--no-plots", "--quiet"] if len(args) > 1 else args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_run_directory_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = main(["fit", "ring", "--steps", "2", "--out", str(blocker / "run"), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and str(blocker) in err
    assert len(err.strip().splitlines()) == 1


def test_module_entry_point_help_and_list():
    run = subprocess.run([sys.executable, "-m", "tractable", "--help"], check=False, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "fit" in run.stdout and "list" in run.stdout
    run = subprocess.run([sys.executable, "-m", "tractable", "fit", "--help"], check=False, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and "--batch-size" in run.stdout and "--out" in run.stdout
    run = subprocess.run([sys.executable, "-m", "tractable", "list"], check=False, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and all(n in run.stdout for n in ("ring", "u1", "u4", "planar", "sylvester"))


SMALL_DATA = ["--set", "data.train_size=3000", "--set", "data.val_size=500", "--set", "data.test_size=2000",
              "--eval-every", "20", "--steps", "40", "--batch-size", "128", "--quiet"]


@pytest.mark.parametrize("model", ["nsf", "realnvp", "maf"])
def test_fit_toy_data_writes_run_directory(tmp_path, model, capsys):
    out = tmp_path / "run"
    assert main(["fit", "eight_gaussians", "--model", model, "--layers", "2", "--hidden", "16", "--out", str(out),
                 *SMALL_DATA]) == 0
    m = _metrics(out)
    assert set(DATA_KEYS) <= set(m)
    assert m["flow"] == model and m["train_rows"] == 3000 and m["test_rows"] == 2000 and m["features"] == 2
    assert m["entropy"] == pytest.approx(2.8316, abs=1e-3)
    assert m["kl_gap"] == pytest.approx(m["test_nll"] - m["entropy"]) and m["kl_gap"] > -0.05
    for name in ("densities.png", "samples.png", "training.png"):
        check_picture(out / name)
    for name in ("checkpoint.pt", "config.toml"):
        assert (out / name).stat().st_size > 500, name
    assert "KL gap" in capsys.readouterr().out
    flow, dataset, config = load_run(out)  # standardization and weights come back from the checkpoint
    test = dataset.sample(256, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(flow.log_prob(test)).all() and config.model["name"] == model


def test_fit_user_table_with_context_columns(tmp_path):
    rng = np.random.default_rng(0)
    c = rng.normal(size=(2000, 1))
    x = np.concatenate([c + 0.1 * rng.normal(size=(2000, 1)), rng.normal(size=(2000, 2)), c], axis=1)
    path = tmp_path / "table.csv"
    np.savetxt(path, x, delimiter=",", header="a,b,c,cond", comments="")
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--context", "cond", "--model", "maf", "--layers", "2",
                 "--hidden", "16", "--steps", "60", "--eval-every", "30", "--out", str(out), "--quiet"]) == 0
    m = _metrics(out)
    assert (m["features"], m["context_features"], m["train_rows"]) == (3, 1, 1600)
    assert m["entropy"] is None and m["kl_gap"] is None and np.isfinite(m["test_nll"])
    assert (out / "training.png").exists() and not (out / "densities.png").exists()
    flow, target, _ = load_run(out)
    assert target is None
    lp = flow.log_prob(torch.zeros(4, 3), torch.zeros(4, 1))
    assert lp.shape == (4,) and torch.isfinite(lp).all()


def test_fit_conditional_mixture_reports_per_label_gaps(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "gaussian_mixture", "--conditional", "--layers", "2", "--hidden", "16", "--out", str(out),
                 *SMALL_DATA]) == 0
    m = _metrics(out)
    assert m["context_features"] == 3 and len(m["label_kl_gap"]) == 3 and len(m["label_entropy"]) == 3
    assert (out / "samples.png").exists()


def test_energy_with_a_coupling_model(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "u1", "--model", "realnvp", "--layers", "2", "--hidden", "16", "--out", str(out), "--no-plots",
                 *FAST]) == 0
    assert _metrics(out)["flow"] == "realnvp"
