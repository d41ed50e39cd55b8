"""Defaults sized by a table's rows, the whitening layer, and the classical baselines in ``metrics.json`` (issue 12,
item 1).

On main b0dc4fe a ``--data`` fit of 142 rows ran with batch 512, no patience and the 5-layer, 64-hidden, 16-bin NSF
made for 100,000 toy rows, and ``metrics.json`` held no baseline: ``test_the_sized_defaults_of_a_small_table`` and
``test_a_table_fit_reports_both_baselines`` fail there.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from tractable.app.resolve import load_config, resolve
from tractable.app.tasks.data import PATIENCE, WARMUP, sized_for_rows, training_rows
from tractable.baselines import folds_for_rows, gaussian_nll, gmm_nll, linear_gaussian_nll
from tractable.cli import main
from tractable.transforms.linear import WhitenTransform


def _table(path, rows=120, seed=0):
    """Correlated, non-Gaussian columns (a product and a square), so a mixture and a flow have something to find."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    columns = np.c_[a, a + 0.3 * b, a * b, 10 + 5 * rng.normal(size=rows)]
    np.savetxt(path, columns, delimiter=",", header="a,b,c,d", comments="")
    return str(path)


def test_the_rule():
    assert sized_for_rows(142) == {"train": {"batch_size": 142, "eval_every": 14, "patience": PATIENCE,
                                             "warmup": WARMUP},
                                   "model": {"layers": 2, "hidden": 16, "bins": 8, "base": "mixture"},
                                   "data": {"whiten": True}}
    assert "base" not in sized_for_rows(39)["model"] and "base" not in sized_for_rows(1_000)["model"]
    assert sized_for_rows(5_000)["model"] == {"layers": 3, "hidden": 32, "bins": 8}
    assert sized_for_rows(50_000)["model"] == {"layers": 4, "hidden": 64, "bins": 16}
    big = sized_for_rows(1_000_000)
    assert big["model"] == {} and big["train"] == {"batch_size": 512, "eval_every": 250, "patience": PATIENCE,
                                                   "warmup": WARMUP}
    assert sized_for_rows(3)["train"]["eval_every"] == 10
    assert training_rows(178, 0.1, 0.1) == 142  # wine, as tractable.targets.split cuts it


def test_the_sized_defaults_of_a_small_table(tmp_path):
    config = resolve({}, options={"data.path": _table(tmp_path / "t.csv")})
    train_rows = training_rows(120, 0.1, 0.1)
    assert config.train.batch_size <= train_rows and config.train.patience > 0
    assert config.train.eval_every == 10 and config.data.whiten
    assert (config.model["name"], config.model["layers"], config.model["hidden"]) == ("nsf", 2, 16)


def test_the_users_settings_win(tmp_path):
    path = _table(tmp_path / "t.csv")
    config = resolve({}, options={"data.path": path, "train.batch_size": 64, "model.layers": 4},
                     sets=[("data.whiten", False)])
    assert (config.train.batch_size, config.model["layers"], config.data.whiten) == (64, 4, False)
    assert config.model["hidden"] == 16  # the rest of the rule still applies
    named = resolve({}, options={"data.path": path, "model.name": "maf"})
    assert "hidden" not in named.model and named.train.patience == PATIENCE  # a named model keeps its defaults


def test_toy_data_and_old_runs_keep_the_fixed_defaults(tmp_path):
    toy = resolve({"target": "checkerboard"})
    assert (toy.train.batch_size, toy.train.patience, toy.model["layers"], toy.data.whiten) == (512, 0, 5, False)
    old = tmp_path / "config.toml"  # a run's config from before: no data.whiten key, the model as it was
    old.write_text(f'target = ""\n[model]\nname = "nsf"\nlayers = 5\n[data]\npath = "{_table(tmp_path / "t.csv")}"\n')
    assert not load_config(old).data.whiten and "hidden" not in load_config(old).model


def test_a_new_nsf_fit_maps_the_passing_halves_and_an_old_run_keeps_its_model(tmp_path):
    """A new NSF fit records ``passing_map = true`` (toy data, a table, NSF named or by default); other models and
    the user's own setting are left alone; a run written before the key reopens, and compares with the configuration
    its checkpoint recorded, as the model it trained."""
    from tractable.app.fingerprint import config_changes
    from tractable.app.models import build_vector

    path = _table(tmp_path / "t.csv")
    for config in (resolve({"target": "rings"}), resolve({}, options={"data.path": path}),
                   resolve({"target": "rings", "model": {"name": "nsf"}})):
        assert config.model["passing_map"] is True
    assert "passing_map" not in resolve({"target": "rings", "model": {"name": "maf"}}).model
    assert "passing_map" not in resolve({"target": "rings", "model": {"name": "nsf-ar"}}).model
    assert resolve({"target": "rings"}, sets=[("model.passing_map", False)]).model["passing_map"] is False
    old = {"target": "rings", "model": {"name": "nsf", "layers": 5, "base": "normal", "bins": 16}}
    (tmp_path / "config.toml").write_text('target = "rings"\n[model]\nname = "nsf"\nlayers = 5\nbase = "normal"\n'
                                          'bins = 16\n')
    reopened = load_config(tmp_path / "config.toml")
    assert "passing_map" not in reopened.model
    assert config_changes(reopened, old, "checkpoint.pt") is None
    flow = build_vector(reopened.model, 2)
    assert not any("passing_theta" in k for k in flow.state_dict())


def test_whitening_is_exact():
    x = torch.randn(300, 3, dtype=torch.float64) @ torch.tensor([[1.0, 0.5, 0], [0, 2, 0], [0, 1, 0.1]]).double()
    t = WhitenTransform.fit(x)
    z, ladj = t(x)
    assert torch.allclose(torch.cov(z.T, correction=0), torch.eye(3, dtype=torch.float64), atol=1e-10)
    back, ladj_inv = t.inverse(z)
    assert torch.allclose(back, x, atol=1e-12) and torch.allclose(ladj + ladj_inv, torch.zeros(300, dtype=x.dtype))
    jac = torch.autograd.functional.jacobian(lambda v: t(v[None])[0][0], x[0])
    assert float(torch.slogdet(jac)[1]) == pytest.approx(float(ladj[0]), abs=1e-12)
    with pytest.raises(ValueError, match="singular"):
        WhitenTransform.fit(torch.cat([x[:, :1], x[:, :1]], 1))


def test_whitening_keeps_a_discrete_column_whole():
    """Cholesky whitening leaves its first column only shifted and scaled: a 0/1 column goes there, its two atoms
    kept (else it would be replaced by its residual on the columns before it, smeared)."""
    x = torch.randn(400, 3, dtype=torch.float64)
    x[:, 2] = (x[:, 0] + torch.randn(400, dtype=torch.float64) > 0).double()
    t = WhitenTransform.fit(x)
    assert t.order.tolist() == [2, 0, 1]
    z, _ = t(x)
    assert len(torch.unique(z[:, 0].round(decimals=9))) == 2
    assert torch.allclose(t.inverse(z)[0], x, atol=1e-12)


def test_the_gaussian_baseline_is_the_exact_gaussian_nll():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(200, 3)) @ [[1, 0.4, 0], [0, 1, 0], [0.2, 0, 3]], rng.normal(size=(50, 3))
    expected = -multivariate_normal(train.mean(0), np.cov(train.T, bias=True)).logpdf(test).mean()
    assert gaussian_nll(train, test) == pytest.approx(expected, rel=1e-10)



def test_the_conditional_baseline_is_the_exact_linear_gaussian_nll():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    a, b, cov = np.array([[2.0, -1.0], [0.5, 0.0], [0.0, 3.0]]), np.array([1.0, -2.0]), [[1.0, 0.6], [0.6, 2.0]]

    def rows(n):
        c = rng.normal(size=(n, 3))
        return c @ a + b + rng.multivariate_normal([0, 0], cov, size=n), c

    (xtr, ctr), (xte, cte) = rows(300), rows(80)
    design = np.c_[ctr, np.ones(300)]
    coef = np.linalg.solve(design.T @ design, design.T @ xtr)  # the normal equations, not lstsq
    resid = xtr - design @ coef
    expected = -np.mean([multivariate_normal(np.r_[c, 1] @ coef, np.cov(resid.T, bias=True)).logpdf(x)
                         for x, c in zip(xte, cte)])
    assert linear_gaussian_nll(xtr, ctr, xte, cte) == pytest.approx(expected, rel=1e-10)
    # the regression explains what the context does: far below the unconditional Gaussian
    assert linear_gaussian_nll(xtr, ctr, xte, cte) < gaussian_nll(xtr, xte) - 1.0
    with pytest.raises(ValueError, match="expected more than 5 training rows for a regression on 3 context columns, "
                                         "got 5"):
        linear_gaussian_nll(xtr[:5], ctr[:5], xte, cte)
    with pytest.raises(ValueError, match="expected one context per row, got 300 training rows with 299 contexts"):
        linear_gaussian_nll(xtr, ctr[:-1], xte, cte)

def test_the_mixture_baseline_is_chosen_by_cross_validation(monkeypatch):
    rng = np.random.default_rng(2)

    def two_blobs(n):
        return np.r_[rng.normal(-4, 1, size=(n, 2)), rng.normal(4, 1, size=(n, 2))]

    nll, info = gmm_nll(two_blobs(200), two_blobs(100), two_blobs(100))
    assert info["components"] >= 2 and nll < gaussian_nll(two_blobs(200), two_blobs(100)) - 0.5
    assert set(info) == {"components", "covariance", "cv_nll", "folds"} and info["folds"] == 5
    assert [folds_for_rows(n) for n in (10, 40, 60, 99, 100, 10_000)] == [2, 2, 3, 4, 5, 5]
    monkeypatch.setitem(sys.modules, "sklearn.mixture", None)  # scikit-learn absent
    assert gmm_nll(two_blobs(50), two_blobs(20), two_blobs(20)) == (None, {"note": pytest.approx(
        "scikit-learn is not installed (pip install 'tractable[dev]'); no mixture baseline")})


def test_a_table_fit_reports_both_baselines(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--data", _table(tmp_path / "t.csv", rows=200), "--steps", "30", "--no-plots", "--quiet",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["baseline_gaussian_nll"]) and math.isfinite(m["baseline_gmm_nll"])
    assert m["baseline_gmm"]["covariance"] in ("full", "diag", "tied", "spherical")
    # the flow starts as the Gaussian and keeps its best validated state: it cannot be far above it
    assert m["test_nll"] < m["baseline_gaussian_nll"] + 0.5
    assert "baselines on the same split" in capsys.readouterr().out


def test_a_conditional_table_fit_reports_the_linear_gaussian_baseline(tmp_path, capsys):
    rng = np.random.default_rng(4)
    c = rng.normal(size=(300, 2))
    y = np.c_[2 * c[:, 0] - c[:, 1], np.sin(3 * c[:, 0])] + 0.3 * rng.normal(size=(300, 2))
    path = tmp_path / "cond.csv"
    np.savetxt(path, np.c_[c, y], delimiter=",", header="c0,c1,y0,y1", comments="")
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--context", "c0,c1", "--steps", "30", "--no-plots", "--quiet",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["baseline_linear_gaussian_nll"]) and "baseline_gaussian_nll" not in m
    assert "linear-Gaussian regression" in capsys.readouterr().out


def test_collinear_columns_are_standardized_with_a_warning(tmp_path, capsys):
    """Whitening needs an invertible covariance; a table with a column that is the sum of two others (one-hot
    groups are the common case) is standardized column by column instead, and the fit says so."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 150))
    path = tmp_path / "collinear.csv"
    np.savetxt(path, np.c_[a, b, a + b], delimiter=",")
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--steps", "5", "--no-plots", "--quiet", "--out", str(out)]) == 0
    assert "singular (collinear" in capsys.readouterr().err
    assert main(["eval", str(out)]) == 0  # the run reopens: the layer is the same class, diagonal


def test_a_model_much_larger_than_the_table_warns(tmp_path, capsys):
    assert main(["fit", "--data", _table(tmp_path / "t.csv"), "--hidden", "128", "--steps", "2", "--no-plots",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: the flow has") and "96 training rows × 4 features" in err


@pytest.mark.parametrize("model, base, warns", [("maf", "normal", True), ("iaf", "diagonal", True),
                                                ("maf", "mixture", False), ("nsf", "normal", False)])
def test_an_affine_autoregressive_model_of_one_feature_warns(tmp_path, capsys, model, base, warns):
    """With one feature a MADE has nothing to condition on: MAF and IAF are then their Gaussian base moved and
    scaled, which the fit says in one line (a mixture base, or splines, fit more)."""
    path = tmp_path / "one.csv"
    np.savetxt(path, np.random.default_rng(0).gamma(2.0, size=(200, 1)), delimiter=",")
    assert main(["fit", "--data", str(path), "--model", model, "--base", base, "--steps", "2", "--no-plots",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {model} on one feature is an affine map of its Gaussian base" in err) == warns
    assert err.count("on one feature") == int(warns)


def test_the_mixture_base_is_fitted_by_em_to_the_whitened_rows():
    from tractable.distributions import GaussianMixture

    g = torch.Generator().manual_seed(3)
    atom = torch.randint(0, 2, (300, 1), generator=g).double() * 2 - 1  # a two-valued column
    x = torch.cat([atom, torch.randn(300, 2, generator=g, dtype=torch.float64)], 1)
    base = GaussianMixture(3, 4).double()
    nll = base.fit_em(x, seed=0)
    assert nll == pytest.approx(-base.log_prob(x).mean().item(), abs=1e-6)
    assert base.log_scale[:, 0].min() < -5  # components sit on the atoms (the variance floor, 1e-6)
    gaussian = torch.randn(300, 3, generator=g, dtype=torch.float64)
    base.fit_em(gaussian, seed=0)  # one component chosen by cross-validation, repeated in the 4 slots
    assert len(torch.unique(base.loc, dim=0)) == 1
    assert torch.allclose(base.loc[0], gaussian.mean(0))
    assert torch.allclose(base.logits, torch.full((4,), -math.log(4), dtype=torch.float64))
    with pytest.raises(ValueError, match="expected at least 4 rows for 4 components, got 3"):
        base.fit_em(x[:3])


def test_a_table_with_a_discrete_column_ends_below_the_gaussian(tmp_path):
    """scikit-learn's diabetes (a two-valued column), seed 0: without warmup Adam's first steps threw the flow off its
    fitted start (training loss 20.8 → 29.2 in one step) and the fit ended above the Gaussian's test NLL."""
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_diabetes(scaled=False)
    path = tmp_path / "diabetes.csv"
    np.savetxt(path, data.data, delimiter=",", header=",".join(data.feature_names), comments="")
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--seed", "0", "--no-plots", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_nll"] < m["baseline_gaussian_nll"] - 5, (m["test_nll"], m["baseline_gaussian_nll"])
