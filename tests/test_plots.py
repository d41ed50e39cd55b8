"""Smoke tests of `tractable.plots`: every picture is written, is of the right type, and bad inputs are rejected."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from pictures import check_picture

from tractable import PlanarFlow, get_target, plots
from tractable.plots._common import _select_panels

PNG, GIF = "PNG", "GIF"


def _is(path: Path, kind: str) -> bool:
    """The picture is a ``kind`` file with content (:func:`pictures.check_picture` asserts what it checks)."""
    return check_picture(path, kind=kind) == Path(path)


@pytest.fixture(scope="module")
def flow() -> PlanarFlow:
    torch.manual_seed(0)
    f = PlanarFlow(2, layers=3)
    with torch.no_grad():  # move away from the identity so the pictures have something to show
        f.transform.transform.u.normal_(0, 1.0)
    return f


@pytest.fixture(scope="module")
def target():
    return get_target("ring")


METRICS = [
    {"step": 0, "loss": 3.0, "kl": "", "ess": 0.01, "beta": 0.1, "lr": 1e-3, "grad_norm": ""},
    {"step": 1, "loss": 2.0, "kl": "", "ess": 0.05, "beta": 0.5, "lr": 1e-3, "grad_norm": 2.0},
    {"step": 2, "loss": 1.0, "kl": 0.9, "ess": 0.20, "beta": 1.0, "lr": 1e-3, "grad_norm": 1.0},
    {"step": 3, "loss": 0.5, "kl": 0.4, "ess": 0.40, "beta": 1.0, "lr": 1e-3, "grad_norm": 0.5},
]


def test_plot_densities(flow, target, tmp_path):
    path = plots.plot_densities(flow, target, str(tmp_path / "a" / "b" / "densities.png"), resolution=40)
    assert isinstance(path, Path) and _is(path, PNG)


def test_plot_densities_custom_box(flow, target, tmp_path):
    path = plots.plot_densities(flow, target, tmp_path / "d.png", box=((-3, 3), (-2, 5)), resolution=30)
    assert _is(path, PNG)


def test_plot_samples(flow, target, tmp_path):
    assert _is(plots.plot_samples(flow, target, tmp_path / "samples.png", n=500), PNG)


def test_plot_layers(flow, target, tmp_path):
    assert _is(plots.plot_layers(flow, tmp_path / "layers.png", n=1000, lines=5), PNG)
    assert _is(plots.plot_layers(flow, tmp_path / "layers_t.png", target=target, n=1000, lines=5, columns=2), PNG)


def test_plot_layers_panel_selection():
    assert _select_panels(17, 9) == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert _select_panels(4, 9) == [0, 1, 2, 3]
    chosen = _select_panels(33, 9)
    assert len(chosen) == 9 and chosen[0] == 0 and chosen[-1] == 32


def test_animate_layers(flow, target, tmp_path):
    path = plots.animate_layers(flow, tmp_path / "layers.gif", target=target, n=300, lines=4, frames_per_layer=2)
    assert _is(path, GIF)
    from PIL import Image

    with Image.open(path) as im:
        assert im.n_frames == 3 * 2 + 1


def test_plot_training_list_of_dicts(tmp_path):
    assert _is(plots.plot_training(METRICS, tmp_path / "training.png"), PNG)


def test_plot_training_csv(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(METRICS[0]))
        writer.writeheader()
        writer.writerows(METRICS)
    assert _is(plots.plot_training(csv_path, tmp_path / "training.png"), PNG)
    assert _is(plots.plot_training(str(csv_path), tmp_path / "training2.png"), PNG)


def test_plot_training_loss_only(tmp_path):
    rows = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(20)]
    assert _is(plots.plot_training(rows, tmp_path / "loss.png"), PNG)


def test_plot_training_rejects_missing_loss(tmp_path):
    with pytest.raises(ValueError, match="loss"):
        plots.plot_training([{"step": 0, "kl": 1.0}], tmp_path / "x.png")


def test_plot_fit(flow, target, tmp_path):
    out = tmp_path / "fit"
    paths = plots.plot_fit(flow, target, out, metrics=METRICS, resolution=30, n=300, layer_n=1000)
    assert set(paths) == {"densities", "samples", "layers", "gif", "training"}
    expected = {"densities.png", "samples.png", "layers.png", "layers.gif", "training.png"}
    assert {p.name for p in paths.values()} == expected
    for p in paths.values():
        assert p.parent == out and _is(p, GIF if p.suffix == ".gif" else PNG)


def test_plot_fit_without_gif_or_metrics(flow, target, tmp_path):
    paths = plots.plot_fit(flow, target, tmp_path, gif=False, resolution=30, n=300, layer_n=1000)
    assert set(paths) == {"densities", "samples", "layers"}


@pytest.mark.parametrize(
    "call",
    [
        lambda f, t, p: plots.plot_densities(f, t, p / "x.png", resolution=10),
        lambda f, t, p: plots.plot_samples(f, t, p / "x.png", n=10),
        lambda f, t, p: plots.plot_layers(f, p / "x.png", n=10),
        lambda f, t, p: plots.animate_layers(f, p / "x.gif", n=10),
        lambda f, t, p: plots.plot_fit(f, t, p),
    ],
    ids=["densities", "samples", "layers", "animate", "fit"],
)
def test_rejects_3d_flow(call, target, tmp_path):
    with pytest.raises(ValueError, match=r"expected a flow of 2 features.*\(3,\)"):
        call(PlanarFlow(3, layers=2), target, tmp_path)
    assert not any(tmp_path.iterdir())


def test_rejects_bad_box(flow, target, tmp_path):
    with pytest.raises(ValueError, match="expected box"):
        plots.plot_densities(flow, target, tmp_path / "x.png", box=(2, -2))


def test_keeps_training_mode_and_dtype(target, tmp_path):
    flow = PlanarFlow(2, layers=2).double().train()
    plots.plot_densities(flow, target, tmp_path / "x.png", resolution=20)
    assert flow.training
    flow.eval()
    plots.plot_layers(flow, tmp_path / "l.png", n=200, lines=3)
    assert not flow.training


def test_rejects_3d_target(flow, tmp_path):
    from tractable import GaussianMixtureEnergy

    target3 = GaussianMixtureEnergy(locs=((0.0, 0.0, 0.0),), scales=(1.0,), weights=(1.0,))
    with pytest.raises(ValueError, match="expected a target of 2 features.*3"):
        plots.plot_samples(flow, target3, tmp_path / "x.png", n=10)


def test_check_picture_rejects_a_blank_or_small_figure(tmp_path):
    """The figure checks above look at pixels: an empty canvas or a thumbnail fails them (a size check did not)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 3))
    fig.savefig(tmp_path / "blank.png")
    plt.close(fig)
    assert (tmp_path / "blank.png").stat().st_size > 100
    with pytest.raises(AssertionError, match="blank"):
        check_picture(tmp_path / "blank.png")
    path = plots.plot_training(METRICS, tmp_path / "training.png")
    with pytest.raises(AssertionError):
        check_picture(path, min_size=(5000, 5000))
