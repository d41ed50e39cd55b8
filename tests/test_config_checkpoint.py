"""Configurations (TOML round trip, clear errors) and checkpoints (atomic, weights-only)."""

import json
import os
import shutil

import pytest
import torch

from tractable.app import load_config, resolve
from tractable.app.config import ConfigError, FitConfig, dump_toml
from tractable.cli import main
from tractable.training import CheckpointError, load_checkpoint, save_checkpoint


def test_config_toml_round_trip(tmp_path):
    c = resolve({"target": "u1"}, options={"model.layers": 32, "train.lr": 1})  # an int is accepted as float
    path = tmp_path / "c.toml"
    path.write_text(c.to_toml())
    back = load_config(path)
    assert back == c and back.train.lr == 1.0 and isinstance(back.train.lr, float)
    assert back.model == {"name": "planar", "layers": 32, "base": "diagonal", "init": "identity"}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model.depth", 3, "unknown config key 'model.depth' for model 'planar'; expected one of base, init, layers"),
        ("model.layers", "many", "'model.layers' expects int, got str"),
        ("train.steps", "many", "'train.steps' expects int, got str"),
        ("train.steps", True, "'train.steps' expects int, got bool"),
        ("output.plots", 1, "'output.plots' expects bool, got int"),
        ("train.lr", float("nan"), "finite"),
        ("train", 3, "section"),
        ("image.deq_hidden", 3, "config key 'image.deq_hidden' is now 'model.dequantizer.hidden'"),
        ("model.flow", "nsf", "config key 'model.flow' is now 'model.name'"),
    ],
)
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"target": "ring"}, sets=[(key, value)])


def test_flowpp_on_digits_gets_its_cpu_budget_and_images_take_every_core():
    from tractable.app.fit import DEFAULT_THREADS, IMAGE_THREADS, default_threads
    from tractable.app.tasks.image import DIGITS_FLOWPP

    config = resolve({"target": "digits"})
    assert config.train.steps == DIGITS_FLOWPP["train"]["steps"] == 2600 and config.train.ema == 0.999
    assert config.model["dropout"] == 0.2 and config.model["dequantizer"] == {
        "layers": 4, "hidden": 32, "blocks": 2, "coupling": "mixture"}
    # Other models keep the plain image defaults; the user's values win over the budget, key by key.
    realnvp = resolve({"target": "digits", "model": {"name": "realnvp"}})
    assert realnvp.train.steps == 1000 and realnvp.train.ema == 0 and "dropout" not in realnvp.model
    mine = resolve({"target": "digits", "train": {"steps": 300}, "model": {"dequantizer": {"hidden": 8}}})
    assert mine.train.steps == 300
    assert mine.model["dequantizer"] == {"layers": 4, "hidden": 8, "blocks": 2, "coupling": "mixture"}
    assert resolve({"target": "digits", "model": {"dequantization": "uniform"}}).model.get("dequantizer") is None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads(config) == min(cores, IMAGE_THREADS)
    assert default_threads(resolve({"target": "ring"})) == DEFAULT_THREADS


@pytest.mark.parametrize("threads", [None, 1])
def test_evaluation_takes_two_threads_unless_told_and_the_callers_count_comes_back(tmp_path, monkeypatch, threads):
    from tractable.app.fit import DEFAULT_THREADS, EVAL_THREADS, fit, resume
    from tractable.app.tasks.data import DataTask

    seen = {}
    train, evaluate = DataTask.fit, DataTask.evaluate

    def spy_fit(self, *args, **kwargs):
        seen["train"] = torch.get_num_threads()
        return train(self, *args, **kwargs)

    def spy_evaluate(self, *args, **kwargs):
        seen["evaluate"] = torch.get_num_threads()
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(DataTask, "fit", spy_fit)
    monkeypatch.setattr(DataTask, "evaluate", spy_evaluate)
    before = torch.get_num_threads()
    caller = before + 2  # the calling program's own setting, which a fit must give back
    torch.set_num_threads(caller)
    try:
        fit(target="checkerboard", options={"train.steps": 3, "train.batch_size": 16, "data.train_size": 100,
                                            "data.val_size": 50, "data.test_size": 50, "output.plots": False},
            out=str(tmp_path / "run"), threads=threads, progress=False)
        after = torch.get_num_threads()
        resume(str(tmp_path / "run"), threads=threads, progress=False)
        after_resume = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if threads is None:
        assert seen == {"train": DEFAULT_THREADS, "evaluate": min(cores, EVAL_THREADS)}
    else:
        assert seen == {"train": threads, "evaluate": threads}
    # in a notebook or a test process the fit must not leave its thread count behind: two threads left set in one of
    # two parallel test processes slowed a later test of small operations twenty-fold (6 s to 106 s)
    assert (after, after_resume) == (caller, caller)


def test_model_keys_are_the_constructors_arguments():
    config = resolve({"target": "digits", "model": {"name": "realnvp", "hidden": [8, 16],
                                                    "dequantization": "variational", "dequantizer": {"hidden": 4}}})
    assert config.model == {"name": "realnvp", "hidden": (8, 16), "dequantization": "variational",
                            "dequantizer": {"layers": 2, "hidden": 4, "blocks": 1}}
    uniform = resolve({"target": "digits", "model": {"name": "glow"}})
    assert uniform.model == {"name": "glow"}  # the task's dequantizer applies to variational dequantization only
    with pytest.raises(ConfigError, match="'model.dequantizer' applies to variational dequantization"):
        resolve({"target": "digits", "model": {"name": "glow", "dequantizer": {"layers": 3}}})
    with pytest.raises(ConfigError, match="unknown config key 'model.dequantizer.depth' for the variational"):
        resolve({"target": "digits", "model": {"dequantizer": {"depth": 3}}})
    with pytest.raises(ConfigError, match="'model.hidden' expects int | Sequence"):
        resolve({"target": "digits", "model": {"hidden": "wide"}})


def test_old_configs_are_translated(tmp_path):
    """A config.toml written before the nested tables (model.flow, every model key, a flat [image] table) reads as
    the same settings."""
    image = {"data_dir": "", "architecture": "", "widths": "", "dequantization": "", "deq_hidden": 0, "heads": 1}
    old = {"target": "digits", "model": {"flow": "flowpp", "layers": 0, "base": "normal", "hidden": 32, "blocks": 2,
                                         "bins": 0, "bound": 2.0}, "image": image}
    model = resolve(old).model
    assert model["name"] == "flowpp" and model["heads"] == 1 and model["dequantization"] == "variational"
    assert {k: model["dequantizer"][k] for k in ("layers", "hidden", "blocks", "components")} == {
        "layers": 2, "hidden": 32, "blocks": 1, "components": 8}  # deq_hidden = 0 meant the model's width
    energy = resolve({"target": "ring", "model": {"flow": "radial", "layers": 4, "hidden": 64, "bins": 8}})
    assert energy.model == {"name": "radial", "layers": 4, "base": "diagonal"}  # keys radial never took are dropped


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlayers = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('target = "ring"\n[train]\nstepz = 3\n')
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        load_config(unknown)


def test_checkpoint_round_trip_and_versions(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"model": {"w": torch.arange(3.0)}, "step": 7}, path)
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.arange(3.0))
    assert state["format_version"] == 1 and "library_version" in state


def test_checkpoint_failed_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint({"step": 1}, path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temporary file left behind


def test_corrupt_and_unsafe_checkpoints_are_refused(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"step": 1, "model": {"w": torch.randn(100)}}, path)
    path.write_bytes(path.read_bytes()[:50])  # truncated
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format_version": 1, "obj": FitConfig()}, unsafe)  # a pickled object: not weights-only
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    other = tmp_path / "other.pt"
    torch.save({"format_version": 99}, other)
    with pytest.raises(CheckpointError, match="format 99, expected 1"):
        load_checkpoint(other)


def test_a_run_written_before_the_nested_tables_resumes(tmp_path):
    """An old run directory (config.toml with model.flow, every model key and a flat [image] table, as version 0.1
    wrote it) is evaluated and resumed as the same run."""
    full = tmp_path / "full"
    args = ["fit", "ring", "--layers", "2", "--steps", "20", "--batch-size", "32", "--checkpoint-every", "10",
            "--eval-samples", "500", "--no-plots", "--quiet"]
    assert main([*args, "--out", str(full)]) == 0
    old = load_config(full / "config.toml").to_dict()
    old["model"] = {"flow": "planar", "layers": 2, "base": "diagonal", "hidden": 64, "blocks": 2, "bins": 8,
                    "bound": 3.0}
    old["image"] = {"data_dir": "", "architecture": "", "deq_hidden": 16, "iw_samples": 16, "grid": 64}
    for section in ("data", "eval", "output"):
        for key in ("data_dir", "iw_samples", "grid", "temperature"):
            old[section].pop(key, None)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    (part / "config.toml").write_text(dump_toml(old))
    (part / "checkpoints" / "step-000000020.pt").unlink()
    (part / "metrics.json").unlink()
    assert main(["fit", "--resume", str(part), "--quiet"]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, part))
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert main(["eval", str(part), "--samples", "300"]) == 0
