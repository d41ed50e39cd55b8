"""Issue 11, item 14: the smaller input and command faults, each reproducing a failure of main b0dc4fe (named in
its test): CSV headers, byte-order marks, float32 overflow, misnamed files, tiny tables, paths in TOML, console
encodings, unsafe advice, a default warmup longer than the run."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from run_safety_helpers import TINY, Payload, child_env, one_line

from tractable.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ---------------------------------------------------------------------------------------- 14: smaller ones


def _fit_table(path, capsys, *extra):
    capsys.readouterr()
    code = main(["fit", "--data", str(path), *TINY, "--layers", "1", "--hidden", "8", *extra,
                 "--out", str(Path(path).parent / "run")])
    return code, capsys.readouterr().err


def _rows(n, columns=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, columns))


def _csv(path, header, rows, prefix=""):
    path.write_text(prefix + ",".join(header) + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def test_duplicate_header_names_are_refused(tmp_path, capsys):
    """On main the second 'a' was silently ignored by --context a (the first was taken)."""
    code, err = _fit_table(_csv(tmp_path / "d.csv", ["a", "b", "a"], _rows(60)), capsys, "--context", "a")
    assert code == 2 and "['a'] more than once" in one_line(err)


def test_a_byte_order_mark_is_dropped(tmp_path, capsys):
    """On main the first header name was '\\ufeffa' and --context a was 'not found'."""
    code, err = _fit_table(_csv(tmp_path / "bom.csv", ["a", "b", "c"], _rows(60), prefix="\ufeff"), capsys,
                           "--context", "a")
    assert code == 0, err


@pytest.mark.parametrize("standardize", [[], ["--no-standardize"]])
def test_float32_overflow_names_the_file_line_and_column(tmp_path, capsys, standardize):
    """On main: 'expected finite means and positive finite stds' (no file, row or column), and with
    --no-standardize a row number of the shuffled training split."""
    rows = _rows(60, 2)
    path = _csv(tmp_path / "big.csv", ["x", "y"], rows)
    lines = path.read_text().splitlines()
    lines[41] = "0.5,1e39"  # the file's line 42
    path.write_text("\n".join(lines) + "\n")
    code, err = _fit_table(path, capsys, *standardize)
    line = one_line(err)
    assert code == 2 and "big.csv" in line and "line 42 column 1" in line and "overflows float32" in line, line


def test_a_csv_named_npy_is_not_called_a_pickle(tmp_path, capsys):
    """On main: '... contains pickled data ... allow_pickle=' advice, for a text file."""
    code, err = _fit_table(_csv(tmp_path / "t.npy", ["x", "y"], _rows(60, 2)), capsys)
    line = one_line(err)
    assert code == 2 and "is not a .npy file" in line and "pickle" not in line.lower(), line


def test_a_two_row_table_says_how_many_rows_are_needed(tmp_path, capsys):
    """On main: 'expected validation data of shape (rows, 2), got (0, 2)'."""
    code, err = _fit_table(_csv(tmp_path / "two.csv", ["x", "y"], _rows(2, 2)), capsys)
    line = one_line(err)
    assert code == 2 and "2 rows are too few" in line and "at least 6 rows" in line, line


def test_a_newline_in_the_data_path_writes_valid_toml(tmp_path, capsys):
    """On main config.toml held a raw newline inside a string, which no TOML reader (nor eval) accepts."""
    path = _csv(tmp_path / "odd\nname.csv", ["x", "y"], _rows(60, 2))
    code, err = _fit_table(path, capsys)
    assert code == 0, err
    config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert config["data"]["path"] == str(path)
    assert main(["eval", str(tmp_path / "run")]) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="file names of arbitrary bytes")
def test_a_data_path_of_undecodable_bytes_is_one_clear_line(tmp_path, capsys):
    """Found probing odd file names: on main ``'utf-8' codec can't encode character '\\udcff' ...: surrogates not
    allowed`` (writing config.toml); now the key and the name are named."""
    name = os.fsdecode(bytes(tmp_path / "x") + b"\xff.csv")
    _csv(Path(name), ["x", "y"], _rows(60, 2))
    code, err = _fit_table(name, capsys)
    assert code == 2 and "config key 'data.path' expects UTF-8 text" in one_line(err)


def test_checkpoint_errors_never_advise_loading_unsafely(ring_run, tmp_path, capsys):
    """On main the message relayed torch's 'Re-running `torch.load` with `weights_only` set to `False` will likely
    succeed'."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "metrics.csv"):
        (run / name).write_bytes((ring_run / name).read_bytes())
    torch.save({"model": Payload(tmp_path / "marker")}, run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "10"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "GLOBAL posix.system" in line or "GLOBAL nt.system" in line, line
    assert "False" not in line and "trust" not in line and not (tmp_path / "marker").exists()


def test_an_ascii_console_gets_the_summary_after_eval_json(ring_run, tmp_path):
    """On main 'KL(q‖p)' raised UnicodeEncodeError after eval.json was written: exit 2."""
    out = tmp_path / "e.json"
    done = subprocess.run([sys.executable, "-m", "tractable", "eval", str(ring_run), "--samples", "100", "--out",
                           str(out)], env=child_env(PYTHONIOENCODING="ascii"), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "KL(q\\u2016p)" in done.stdout, done.stderr
    assert json.loads(out.read_text())["eval_samples"] == 100


def test_eval_samples_below_two_isone_line(ring_run, capsys):
    """On main '--samples 1' wrote a NaN standard error and printed torch's degrees-of-freedom warning."""
    assert main(["eval", str(ring_run), "--samples", "1", "--out", str(ring_run / "one.json")]) == 2
    assert "expected --samples >= 2" in one_line(capsys.readouterr().err)
    assert not (ring_run / "one.json").exists()


def test_a_default_warmup_fits_a_short_run(tmp_path, capsys):
    """On main 'fit digits --steps 3' failed on the image task's default warmup of 100 the user never set; a warmup
    the user gives is still checked."""
    pytest.importorskip("sklearn")
    small = ["--hidden", "4", "--blocks", "1", "--set", "model.architecture=2c", "--iw-samples", "1", "--no-plots",
             "--quiet", "--threads", "1"]
    assert main(["fit", "digits", "--steps", "3", *small, "--out", str(tmp_path / "a")]) == 0
    assert tomllib.loads((tmp_path / "a" / "config.toml").read_text())["train"]["warmup"] == 2
    capsys.readouterr()
    assert main(["fit", "digits", "--steps", "3", "--warmup", "100", *small, "--out", str(tmp_path / "b")]) == 2
    assert "warmup to be an integer in [0, steps=3), got 100" in one_line(capsys.readouterr().err)


def test_skipped_steps_is_documented():
    """``skipped_steps`` is in every metrics.json but was in no table of the documentation (the guides' tables of
    metrics.json keys: energies and data in the command-line guide, images in the images guide)."""
    guides = sorted((Path(__file__).resolve().parents[1] / "docs" / "guide").glob("*.md"))
    assert sum(page.read_text(encoding="utf-8").count("| `skipped_steps` |") for page in guides) >= 3


@pytest.mark.parametrize("standardize", [[], ["--no-standardize"]])
def test_a_table_far_from_unit_scale_without_standardization_is_warned_in_the_clis_words(tmp_path, capsys,
                                                                                        standardize):
    """--no-standardize on columns in the hundreds: one warning line naming the option, not the Python advice."""
    path = _csv(tmp_path / "wide.csv", ["x", "y"], 300 * _rows(60, 2) + 600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library's own warning would raise here
        code, err = _fit_table(path, capsys, *standardize)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "far from unit scale" in line]
    if standardize:
        assert len(lines) == 1 and "drop --no-standardize" in lines[0] and "standardize_flow" not in err, err
    else:
        assert not lines, err


def test_raw_data_beyond_the_splines_interval_are_warned_in_the_clis_words(tmp_path, capsys):
    """--no-standardize on checkerboard (uniform on [-4, 4]): a quarter of each column in the splines' identity tails
    (1,000 steps: KL gap 2.17 nats against 0.085 standardized); the library's Python advice is not shown."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["fit", "checkerboard", "--no-standardize", "--layers", "1", "--hidden", "8", "--steps", "2",
                     "--set", "data.train_size=500", "--set", "data.val_size=100", "--set", "data.test_size=100",
                     "--no-plots", "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "outside the splines' interval [-3, 3]" in line]
    assert code == 0 and len(lines) == 1 and "drop --no-standardize" in lines[0], err


def test_a_large_flow_on_a_small_table_is_warned_with_the_sizes_the_table_gets(tmp_path, capsys):
    """--model maf keeps its own size (5 layers of 64 units: 33,730 parameters on wine's 142 × 13); the warning names
    the size the default model gets for that many rows instead of pointing at defaults the named model does not get."""
    path = _csv(tmp_path / "small.csv", ["a", "b", "c"], _rows(60))
    capsys.readouterr()
    code = main(["fit", "--data", str(path), "--model", "maf", "--steps", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "expect it to overfit" in line]
    assert code == 0 and len(lines) == 1, err
    assert "for 48 training rows × 3 features" in lines[0] and "--layers 2 --hidden 16 for this many rows" in lines[0]
    code = main(["fit", "--data", str(path), "--steps", "2", "--out", str(tmp_path / "run2")])  # sized: no warning
    assert code == 0 and "overfit" not in capsys.readouterr().err
    code = main(["fit", "--data", str(path), "--steps", "2", "--hidden", "128", "--out", str(tmp_path / "run3")])
    assert code == 0 and "expect it to overfit" in capsys.readouterr().err
