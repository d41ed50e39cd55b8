"""Circular splines and the torus: matching end derivatives, the uniform torus base, the torus data set (exact
density, no standardisation in the data task), a trained NCSF integrating to 1, and the new models on the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats

from tractable.app import load_run
from tractable.cli import main
from tractable.distributions import UniformTorus
from tractable.models.ncsf import NCSF
from tractable.targets.quadrature import log_integral_2d
from tractable.targets.toy import get_dataset
from tractable.training import fit_max_likelihood
from tractable.transforms.splines import RQSplineMap

SMALL = ["--set", "data.train_size=2000", "--set", "data.val_size=300", "--set", "data.test_size=1000",
         "--batch-size", "128", "--quiet", "--no-plots"]


def test_circular_spline_is_a_circle_map() -> None:
    """Fixed ends ±π, one derivative shared by both ends (a free parameter), identity at zero parameters."""
    spline = RQSplineMap(5, math.pi, circular=True)
    assert spline.params == 15
    torch.manual_seed(0)
    theta = torch.randn(4, 15, dtype=torch.float64)
    ends = torch.tensor([-math.pi, math.pi], dtype=torch.float64).expand(4, 2)
    y, log_d = spline(ends.contiguous(), theta[:, None].expand(4, 2, 15))
    torch.testing.assert_close(y, ends)
    torch.testing.assert_close(log_d[:, 0], log_d[:, 1])  # continuous derivative around the circle
    assert log_d[:, 0].abs().min() > 1e-3  # not pinned to 1 as the non-circular spline's ends are
    x = torch.linspace(-math.pi, math.pi, 7, dtype=torch.float64)
    y0, log0 = spline(x, spline.identity().double().expand(7, 15))
    torch.testing.assert_close(y0, x)
    assert log0.abs().max() < 1e-12
    assert RQSplineMap(5, math.pi).params == 14


def test_uniform_torus() -> None:
    base = UniformTorus(2)
    x = base.sample(1000)
    assert x.shape == (1000, 2) and bool(((x >= -math.pi) & (x < math.pi)).all())
    lp = base.log_prob(torch.tensor([[0.0, 3.0], [0.0, 3.2]]))
    assert lp[0].item() == pytest.approx(-2 * math.log(2 * math.pi)) and lp[1].item() == -math.inf


def test_torus_density_is_the_von_mises_product() -> None:
    d = get_dataset("torus", locs=[[0.5, -2.0]], concentrations=[[3.0, 0.7]], weights=[1.0])
    x = d.sample(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = stats.vonmises.logpdf(x[:, 0].numpy(), 3.0, loc=0.5) + stats.vonmises.logpdf(x[:, 1].numpy(), 0.7,
                                                                                            loc=-2.0)
    torch.testing.assert_close(d.log_prob(x), torch.as_tensor(expected), rtol=0, atol=1e-10)
    assert d.circular and d.box == (-math.pi, math.pi)


@pytest.mark.parametrize("autoregressive", [False, True])
def test_trained_ncsf_integrates_to_one_on_the_torus(autoregressive: bool) -> None:
    torch.manual_seed(0)
    data = get_dataset("torus").sample(2000, generator=torch.Generator().manual_seed(0))
    flow = NCSF(2, layers=2, hidden=16, bins=6, autoregressive=autoregressive)
    fit_max_likelihood(flow, data, steps=40, batch_size=256, lr=1e-2, progress=False)
    with torch.no_grad():
        mass = math.exp(log_integral_2d(lambda g: flow.log_prob(g.float()).double(), (-math.pi, math.pi), 200))
        nll = -flow.log_prob(data).mean().item()
    assert abs(mass - 1) < 1e-2, mass
    assert nll < 2 * math.log(2 * math.pi) - 0.05  # it learned something beyond the uniform base


def test_fit_torus_with_ncsf_keeps_angles(tmp_path) -> None:
    """The data task does not standardise angles: the flow is the NCSF itself, and its densities are the torus's."""
    out = tmp_path / "run"
    assert main(["fit", "torus", "--model", "ncsf", "--layers", "2", "--hidden", "16", "--steps", "30",
                 "--eval-every", "15", "--out", str(out), *SMALL]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["flow"] == "ncsf" and math.isfinite(m["kl_gap"]) and m["kl_gap"] > -0.05
    flow, _, _ = load_run(out)
    assert isinstance(flow, NCSF) and type(flow.transform).__name__ == "Compose"
    assert not any("Standardize" in type(t).__name__ or "Whiten" in type(t).__name__ for t in flow.transform.modules())


@pytest.mark.parametrize("model", ["ffjord", "fm"])
def test_fit_checkerboard_with_a_continuous_flow(tmp_path, model: str, capsys) -> None:
    out = tmp_path / "run"
    assert main(["fit", "checkerboard", "--model", model, "--hidden", "16", "--blocks", "1", "--steps", "4",
                 "--eval-every", "2", "--out", str(out), *SMALL]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["flow"] == model and m["steps"] == 4 and math.isfinite(m["kl_gap"]) and m["kl_gap"] > -0.05
    assert "KL gap" in capsys.readouterr().out
    flow, dataset, config = load_run(out)
    assert config.model["name"] == model and torch.isfinite(flow.log_prob(dataset.sample(64))).all()


def test_models_declare_their_training_defaults() -> None:
    from tractable.app.tasks import DATA
    from tractable.app.tasks.data import NEW_NSF

    assert DATA.sized_defaults({"model": {"name": "ffjord"}})["train"]["steps"] == 1000
    assert DATA.sized_defaults({"model": {"name": "fm"}})["train"] == {"steps": 16000, "batch_size": 1024,
                                                                        "lr": 2e-3, "eval_every": 4000}
    assert DATA.sized_defaults({"model": {"name": "nsf"}}) == {"model": NEW_NSF}  # no training defaults of its own
