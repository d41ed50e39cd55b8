"""Configurations (TOML round trip, clear errors) and checkpoints (atomic, weights-only)."""

import os

import pytest
import torch

from tractable.config import ConfigError, FitConfig
from tractable.training import CheckpointError, load_checkpoint, save_checkpoint


def test_config_toml_round_trip(tmp_path):
    c = FitConfig()
    c.set("model.layers", 32)
    c.set("train.lr", 1)  # an int where a float is expected is accepted as float
    c.target = "u1"
    path = tmp_path / "c.toml"
    path.write_text(c.to_toml())
    back = FitConfig.from_toml(path)
    assert back == c and back.train.lr == 1.0 and isinstance(back.train.lr, float)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model.depth", 3, "unknown config key 'model.depth'"),
        ("train.steps", "many", "'train.steps' expects int, got str"),
        ("train.steps", True, "'train.steps' expects int, got bool"),
        ("output.plots", 1, "'output.plots' expects bool, got int"),
        ("train.lr", float("nan"), "finite"),
        ("train", 3, "section"),
    ],
)
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        FitConfig().set(key, value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        FitConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlayers = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FitConfig.from_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nstepz = 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        FitConfig.from_toml(unknown)


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
