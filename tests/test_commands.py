"""The run commands (sample, eval, plot, list) on tiny finished runs, the presets, and their one-line errors."""

import json
import math
import shutil

import numpy as np
import pytest
from pictures import check_picture

from tractable.app import load_config, resolve
from tractable.app.config import ConfigError, merge, read_toml
from tractable.app.presets import PRESETS_DIR, preset_description, preset_names, preset_path, preset_tables, read_preset
from tractable.cli import main

TINY = ["--steps", "20", "--batch-size", "64", "--no-plots", "--quiet"]
SMALL_DATA = ["--set", "data.train_size=2000", "--set", "data.val_size=500", "--set", "data.test_size=2000",
              "--layers", "2", "--hidden", "16"]


def _json(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def energy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ring"
    assert main(["fit", "ring", "--layers", "2", "--eval-samples", "2000", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def data_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "checker"
    assert main(["fit", "checkerboard", *SMALL_DATA, "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mixture"
    assert main(["fit", "gaussian_mixture", "--conditional", *SMALL_DATA, "--out", str(out), *TINY]) == 0
    return out


# ------------------------------------------------------------------------------------------------------ sample


def test_sample_writes_npy_and_figure(energy_run, tmp_path):
    assert main(["sample", str(energy_run), "-n", "300"]) == 0
    x = np.load(energy_run / "samples.npy")
    assert x.shape == (300, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    check_picture(energy_run / "samples-scatter.png", min_size=(600, 300))
    out = tmp_path / "again.npy"
    assert main(["sample", str(energy_run), "-n", "300", "--out", str(out), "--no-figure"]) == 0
    np.testing.assert_array_equal(np.load(out), x)  # the same seed draws the same samples
    assert not (tmp_path / "again-scatter.png").exists()
    assert main(["sample", str(energy_run), "-n", "300", "--out", str(out), "--seed", "1", "--no-figure"]) == 0
    assert not np.array_equal(np.load(out), x)


def test_sample_conditional_needs_a_context_of_the_right_width(conditional_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert main(["sample", str(conditional_run), "-n", "200", "--context", "0,1,0", "--out", str(out)]) == 0
    assert np.load(out).shape == (200, 2) and out.with_name("s-scatter.png").is_file()
    per_row = tmp_path / "c.npy"
    np.save(per_row, np.eye(3)[np.arange(200) % 3])
    assert main(["sample", str(conditional_run), "-n", "200", "--context", str(per_row), "--out", str(out)]) == 0
    for context, message in ((None, "is conditional on 3 context features"),
                             ("1,0", "expected a context of shape (1, 3) or (200, 3)"),
                             ("a,b,c", "comma-separated numbers")):
        args = ["sample", str(conditional_run), "-n", "200", "--out", str(out)]
        capsys.readouterr()
        assert main(args + (["--context", context] if context else [])) == 2
        err = capsys.readouterr().err
        assert err.startswith("tractable sample: error: ") and message in err and len(err.strip().splitlines()) == 1


# -------------------------------------------------------------------------------------------------------- eval


def test_eval_data_reproduces_the_fit(data_run, capsys):
    assert main(["eval", str(data_run)]) == 0
    fit, ev = _json(data_run / "metrics.json"), _json(data_run / "eval.json")
    assert ev["test_nll"] == pytest.approx(fit["test_nll"], rel=1e-6, abs=1e-7)
    assert ev["test_nll_stderr"] == pytest.approx(fit["test_nll_stderr"], rel=1e-5)
    assert ev["entropy"] == pytest.approx(math.log(32), abs=1e-3) and ev["entropy"] == fit["entropy"]
    assert ev["kl_gap"] == pytest.approx(fit["kl_gap"], rel=1e-5)
    assert ev["test_rows"] == fit["test_rows"] == 2000 and ev["split"] == "test"
    assert "test NLL" in capsys.readouterr().out
    out = data_run / "val.json"
    assert main(["eval", str(data_run), "--split", "val", "--samples", "100", "--out", str(out)]) == 0
    val = _json(out)
    assert val["val_rows"] == 100 and math.isfinite(val["val_nll"]) and val["val_nll"] != ev["test_nll"]


def test_eval_conditional_reports_per_label_gaps(conditional_run):
    assert main(["eval", str(conditional_run)]) == 0
    fit, ev = _json(conditional_run / "metrics.json"), _json(conditional_run / "eval.json")
    assert ev["test_nll"] == pytest.approx(fit["test_nll"], rel=1e-6, abs=1e-7)
    assert len(ev["label_kl_gap"]) == 3
    np.testing.assert_allclose(ev["label_kl_gap"], fit["label_kl_gap"], rtol=1e-5)


def test_eval_and_sample_a_table_with_context(tmp_path, capsys):
    rng = np.random.default_rng(0)
    c = rng.normal(size=(1000, 1))
    table = tmp_path / "table.npy"
    np.save(table, np.hstack([rng.normal(size=(1000, 2)) + c, c]).astype(np.float32))
    run = tmp_path / "run"
    assert main(["fit", "--data", str(table), "--context", "2", "--model", "maf", "--layers", "2", "--hidden", "16",
                 "--out", str(run), *TINY]) == 0
    assert main(["eval", str(run)]) == 0  # the file is re-read and re-split with the run's seed
    ev, fit = _json(run / "eval.json"), _json(run / "metrics.json")
    assert ev["test_nll"] == pytest.approx(fit["test_nll"], rel=1e-6) and ev["test_rows"] == fit["test_rows"] == 100
    assert ev["kl_gap"] is None  # the table's density is unknown
    assert main(["sample", str(run), "-n", "50", "--context", "0.5", "--no-figure"]) == 0
    assert np.load(run / "samples.npy").shape == (50, 2)
    table.unlink()
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    assert "was fitted to the data file" in capsys.readouterr().err


def test_eval_energy_exact_kl(energy_run):
    out1, out2 = energy_run / "e1.json", energy_run / "e2.json"
    assert main(["eval", str(energy_run), "--samples", "3000", "--out", str(out1)]) == 0
    assert main(["eval", str(energy_run), "--samples", "3000", "--out", str(out2)]) == 0
    fit, ev = _json(energy_run / "metrics.json"), _json(out1)
    assert ev == _json(out2)  # seeded: the same numbers again
    assert ev["eval_samples"] == 3000 and ev["log_z"] == pytest.approx(2.3133, abs=1e-4)
    assert 0 < ev["ess"] <= 1 and ev["kl"] > 0
    assert abs(ev["kl"] - fit["kl"]) < 5 * math.hypot(ev["kl_stderr"], fit["kl_stderr"])


# -------------------------------------------------------------------------------------------------------- plot


def test_plot_energy_and_data(energy_run, data_run, tmp_path):
    assert main(["plot", str(energy_run), "--out", str(tmp_path / "e"), "--no-gif"]) == 0
    for name in ("densities.png", "samples.png", "layers.png", "training.png"):
        check_picture(tmp_path / "e" / name)
    assert not (tmp_path / "e" / "layers.gif").exists()
    assert main(["plot", str(data_run), "--out", str(tmp_path / "d")]) == 0
    assert {p.name for p in (tmp_path / "d").iterdir()} == {"densities.png", "samples.png", "training.png"}


# ------------------------------------------------------------------------------------------------ list, presets


def test_list_shows_presets(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "presets (tractable fit --preset NAME):" in printed
    for name in preset_names():
        assert name in printed and preset_description(name) in printed


@pytest.mark.parametrize("name", preset_names())
def test_preset_holds_only_what_differs_from_the_defaults(name):
    """Each key of a preset changes the resolved configuration: without it the run would differ."""
    tables, info = preset_tables(name)
    config = read_preset(name)
    assert info.description and config.target.replace("_", "-") in name and config.model["name"] in name
    assert "preset" in read_toml(preset_path(name)) and "preset" not in tables

    def keys(table, prefix=""):
        return [k for key, v in table.items() for k in (keys(v, f"{prefix}{key}.") if isinstance(v, dict)
                                                       else [prefix + key])]

    for key in keys(tables):
        if key == "target":
            continue
        *path, last = key.split(".")
        without = merge(tables, {})
        node = without
        for p in path:
            node = node[p]
        del node[last]
        try:
            assert resolve(without).to_dict() != config.to_dict(), f"preset {name}: {key} repeats a default"
        except ConfigError:  # other keys of the preset need this one (e.g. the model's name)
            pass


def test_presets_are_package_data_only():
    assert not (PRESETS_DIR / "__init__.py").exists() and all(p.suffix == ".toml" for p in PRESETS_DIR.iterdir()
                                                                 if p.is_file())


def test_fit_with_a_preset_and_overrides(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "--preset", "ring-planar", "--set", "train.steps=5", "--eval-samples", "500", "--no-plots",
                 "--quiet", "--out", str(out)]) == 0
    m = _json(out / "metrics.json")
    assert (m["target"], m["flow"], m["layers"], m["steps"], m["eval_samples"]) == ("ring", "planar", 16, 5, 500)
    written = load_config(out / "config.toml")
    preset = read_preset("ring-planar")
    preset.train.steps, preset.eval.samples, preset.output.plots = 5, 500, False
    assert written.to_dict() == preset.to_dict()


# ------------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{missing}", "-n", "3"], "tractable sample: error: run directory '{missing}' does not exist"),
        (["sample", "{empty}", "-n", "3"], "is not a run directory: it has no config.toml"),
        (["sample", "{no_ckpt}", "-n", "3"], "checkpoint.pt' does not exist"),
        (["sample", "{run}", "-n", "0"], "expected -n (the number of samples) to be a positive integer, got 0"),
        (["sample", "{run}", "-n", "3", "--context", "1"], "run 'ring' is unconditional; expected no --context"),
        (["sample", "{run}", "-n", "3", "--out", "{empty}/x.txt"], "expected --out to be a .npy file"),
        (["sample", "{run}", "-n", "3", "--temperature", "-1"], "expected a temperature > 0, got -1.0"),
        (["eval", "{run}", "--split", "val"], "an energy run is evaluated on fresh samples; --split applies to data"),
        (["eval", "{run}", "--samples", "0"], "expected --samples to be a positive integer, got 0"),
        (["plot", "{missing}"], "tractable plot: error: run directory"),
        (["fit", "--preset", "nope"], "unknown preset 'nope'; expected one of checkerboard-nsf"),
        (["fit", "--preset", "ring-planar", "--config", "x.toml"], "--preset and --config are exclusive"),
    ],
)
def test_errors_are_one_line(energy_run, tmp_path, capsys, args, message):
    paths = {"missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty"), "no_ckpt": str(tmp_path / "nc"),
             "run": str(energy_run)}
    (tmp_path / "empty").mkdir()
    (tmp_path / "nc").mkdir()
    shutil.copy(energy_run / "config.toml", tmp_path / "nc" / "config.toml")
    capsys.readouterr()
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tractable {args[0]}: error: ") and message.format(**paths) in err, err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_are_one_line(energy_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(energy_run), "-n", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("tractable sample: error: argument -n: invalid int value: 'many'")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command, option", [("sample", "--temperature"), ("eval", "--split"), ("plot", "--gif")])
def test_help_texts(capsys, command, option):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert option in capsys.readouterr().out
