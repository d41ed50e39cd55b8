"""Tabular data: .npy/.csv loading with context columns and clear errors, reproducible splits, and a standardizer
fitted on the training split whose log-determinant converts NLLs back to the original units."""

import json
import math
import re

import numpy as np
import pytest
import torch

from tractable import Flow, StandardNormal
from tractable.targets.tabular import Standardizer, StandardizeTransform, load_table, split

DATA = np.array([[1.0, 2.0, 3.0], [4.0, 5.5, 6.0], [-7.0, 8.0, 9.25], [0.5, -1.0, 1e-3]])


def test_npy_round_trip_and_context_columns(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, DATA.astype(np.float32))
    t = load_table(path)
    assert t.features.dtype == torch.float32 and t.context is None and t.feature_names is None
    assert np.allclose(t.features.numpy(), DATA)
    t = load_table(path, context_columns=[-1], dtype=torch.float64)
    assert np.allclose(t.features.numpy(), DATA[:, :2]) and np.allclose(t.context.numpy(), DATA[:, 2:])
    np.save(tmp_path / "i.npy", np.arange(6).reshape(3, 2))  # integers are accepted and converted
    assert load_table(tmp_path / "i.npy").features.tolist() == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", " "])
def test_csv_round_trip_without_header(tmp_path, delimiter):
    path = tmp_path / "x.csv"
    path.write_text("\n".join(delimiter.join(repr(v) for v in row) for row in DATA.tolist()) + "\n")
    t = load_table(path, dtype=torch.float64)
    assert np.array_equal(t.features.numpy(), DATA) and t.feature_names is None


def test_csv_with_header_and_named_context(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a, b ,c\n" + "\n".join(",".join(repr(v) for v in row) for row in DATA.tolist()) + "\n\n")
    t = load_table(path, context_columns=["c", "a"], dtype=torch.float64)
    assert t.feature_names == ["b"] and t.context_names == ["c", "a"]  # in the order asked for
    assert np.array_equal(t.features.numpy(), DATA[:, [1]]) and np.array_equal(t.context.numpy(), DATA[:, [2, 0]])
    tsv = tmp_path / "x.tsv"
    tsv.write_text("a\tb\n1\t2\n3\t4\n")
    assert load_table(tsv).features.tolist() == [[1, 2], [3, 4]]


def test_missing_file_and_extension_errors(tmp_path):
    with pytest.raises(ValueError, match=r"data file '.*nope\.csv' does not exist"):
        load_table(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="it is a directory"):
        load_table(tmp_path)
    (tmp_path / "x.parquet").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"unsupported data file extension '\.parquet'.*expected \.npy or \.csv"):
        load_table(tmp_path / "x.parquet")


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_wrong_rank(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape))
    with pytest.raises(
        ValueError, match=re.escape("expected a 2D array (rows, columns) in ") + f".*got shape {re.escape(str(shape))}"
    ):
        load_table(tmp_path / "x.npy")
    with pytest.raises(ValueError) as info:  # an array of images: the error says where images are fitted
        load_table(tmp_path / "x.npy")
    assert ("build_image_model" in str(info.value)) == (len(shape) in (3, 4))


def test_non_numeric_npy(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="expected a float or integer array"):
        load_table(tmp_path / "s.npy")
    np.save(tmp_path / "o.npy", np.array([[1, None]], dtype=object))
    with pytest.raises(ValueError, match="not a readable numeric .npy array"):
        load_table(tmp_path / "o.npy")


def test_non_finite_cells_are_located(tmp_path):
    bad = DATA.copy()
    bad[1, 2], bad[3, 0] = np.nan, np.inf
    np.save(tmp_path / "x.npy", bad)
    with pytest.raises(ValueError, match=r"2 non-finite or missing cells in 2 rows, columns \[0, 2\]: "
                                         r"row 1 column 2 \(nan\), row 3 column 0 \(inf\)"):
        load_table(tmp_path / "x.npy")
    (tmp_path / "m.csv").write_text("x,y\n1,2\n3,\n5,nan\n")
    # a CSV names the file's lines (the header is line 1), an array its rows
    with pytest.raises(ValueError, match=r"2 non-finite or missing cells .*line 3 column 1 \(nan\), line 4 column 1"):
        load_table(tmp_path / "m.csv")


def test_csv_parse_errors_name_the_line(tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"line 3 \(data row 1\) column 1 \('y'\): expected a number, got 'oops' "
                                         r"\(encode a text column"):
        load_table(tmp_path / "t.csv")
    (tmp_path / "n.csv").write_text("1,2\n3,oops\n")  # no header: the column by position only
    with pytest.raises(ValueError, match=r"line 2 \(data row 1\) column 1: expected a number, got 'oops'"):
        load_table(tmp_path / "n.csv")
    (tmp_path / "r.csv").write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="line 2: expected 2 columns, got 3"):
        load_table(tmp_path / "r.csv")
    (tmp_path / "e.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="is empty"):
        load_table(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="has a header but no data rows"):
        load_table(tmp_path / "h.csv")


def test_context_column_errors(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"context column 3 is out of range .*3 columns \(expected -3 <= column < 3\)"):
        load_table(path, context_columns=[3])
    with pytest.raises(ValueError, match=r"context column 'z' not found .*header has \['a', 'b', 'c'\]"):
        load_table(path, context_columns=["z"])
    with pytest.raises(ValueError, match="name the same column twice"):
        load_table(path, context_columns=[0, -3])
    with pytest.raises(ValueError, match="leave no feature columns"):
        load_table(path, context_columns=[0, 1, 2])
    np.save(tmp_path / "x.npy", DATA)
    with pytest.raises(ValueError, match="the file has no header"):
        load_table(tmp_path / "x.npy", context_columns=["a"])


def test_split_is_reproducible_disjoint_and_aligned():
    x = torch.arange(1000.0)[:, None].repeat(1, 2)
    c = torch.arange(1000.0)[:, None] * 10
    (xt, ct), (xv, _), (xs, cs) = split((x, c), seed=3)
    assert (len(xt), len(xv), len(xs)) == (800, 100, 100)
    assert torch.equal(ct[:, 0], xt[:, 0] * 10) and torch.equal(cs[:, 0], xs[:, 0] * 10)  # rows stay paired
    rows = torch.cat([xt[:, 0], xv[:, 0], xs[:, 0]]).sort().values
    assert torch.equal(rows, torch.arange(1000.0))
    again = split((x, c), seed=3)
    assert torch.equal(again[2][0], xs) and not torch.equal(split((x, c), seed=4)[2][0], xs)
    tr, te = split(x, (0.75, 0.25))
    assert isinstance(tr, torch.Tensor) and (len(tr), len(te)) == (750, 250)
    assert split((x, None), seed=0)[0][1] is None
    with pytest.raises(ValueError, match=r"non-negative fractions summing to 1, got \(0.8, 0.3\)"):
        split(x, (0.8, 0.3))
    with pytest.raises(ValueError, match="same number of rows"):
        split((x, c[:10]))
    with pytest.raises(ValueError, match=r"1 row is too few to split as \(0.2, 0.8\): expected at least 3 rows"):
        split(x[:1], (0.2, 0.8))
    with pytest.raises(ValueError, match=r"2 rows are too few .* at least 6 rows, so that each split gets 1 or more"):
        split(x[:2])
    with pytest.raises(ValueError, match=r"at least 15 rows, so that each split gets 2 or more"):
        split(x[:14], min_rows=2)
    assert [len(part) for part in split(x[:6])] == [4, 1, 1] and len(split(x[:3], (0.5, 0.5, 0.0))[2]) == 0


def test_standardizer_uses_the_training_split_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1]) + 5
    train, val = x[:1000], x[1000:] + 1.0  # a shifted validation set
    s = Standardizer.fit(train)
    assert s.transform(train).mean(0).abs().max() < 1e-12 and torch.allclose(s.transform(train).std(0, correction=0),
                                                                               torch.ones(3, dtype=torch.float64))
    shifted = s.transform(val).mean(0)
    assert bool((shifted > 0.05).all())  # validation statistics were not used
    assert torch.allclose(s.inverse(s.transform(val)), val)
    state = json.loads(json.dumps(s.state_dict()))  # plain lists
    assert Standardizer.from_state_dict(state).mean == s.mean
    assert s.ladj == pytest.approx(-sum(math.log(v) for v in s.std))
    with pytest.raises(ValueError, match=r"columns \[1\] are constant"):
        Standardizer.fit(torch.tensor([[1.0, 2.0], [3.0, 2.0]]))
    with pytest.raises(ValueError, match="expected 3 columns"):
        s.transform(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="missing"):
        Standardizer.from_state_dict({"mean": [0.0]})


def test_nll_in_original_units():
    g = torch.Generator().manual_seed(1)
    mean, std = torch.tensor([3.0, -2.0], dtype=torch.float64), torch.tensor([0.2, 7.0], dtype=torch.float64)
    x = torch.randn(5000, 2, generator=g, dtype=torch.float64) * std + mean
    s = Standardizer.fit(x)
    normal = torch.distributions.Normal(torch.tensor(s.mean, dtype=torch.float64),
                                        torch.tensor(s.std, dtype=torch.float64))
    nll_original = -normal.log_prob(x).sum(-1).mean()  # the Gaussian with the fitted statistics, original units
    nll_standardized = -StandardNormal(2).double().log_prob(s.transform(x)).mean()
    assert float(s.nll_original(nll_standardized)) == pytest.approx(float(nll_original), abs=1e-10)
    # the same correction as a transform in front of a flow on standardized data
    flow = Flow(s.as_transform(), StandardNormal(2)).double()
    assert isinstance(flow.transform, StandardizeTransform)
    assert torch.allclose(flow.log_prob(x), normal.log_prob(x).sum(-1))
    back, ladj = flow.transform.inverse(s.transform(x))
    assert torch.allclose(back, x) and float(ladj[0]) == pytest.approx(-s.ladj)
