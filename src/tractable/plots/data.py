"""Pictures of a maximum-likelihood fit: the data's density beside the flow's, samples beside data, curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib import colors as mcolors
from torch import Tensor

from ..flow import Flow
from ..targets.toy import ToyDataset
from ._common import (
    _SAMPLE_COLOR,
    CMAP,
    Box,
    Metrics,
    PathLike,
    _check_flow,
    _chunked,
    _default_box,
    _evaluating,
    _grid,
    _new_figure,
    _reference,
    _save,
    _style,
)
from .samples import scatter_alpha
from .training import plot_training

_DATA_COLOR = "#444444"


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def plot_data_densities(
    flow: Flow, data: Tensor, path: PathLike, *, dataset: ToyDataset | None = None, box: Box | None = None,
    resolution: int = 200, title: str = "data",
) -> Path:
    """The data's density (exact when ``dataset.log_prob`` is known, else a histogram of ``data``) beside the flow's.

    Both panels share one colour scale, so a good fit looks the same on both sides.

    Args:
        flow: an unconditional flow of 2D vectors.
        data: data points ``(N, 2)`` (the histogram, and the box when none is given).
        path: the image file to write.
        dataset: the toy data set, for its exact density and its box.
        box: ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``.
        resolution: grid points along each axis.
        title: the name shown in the title.
    """
    _check_flow(flow)
    points = _numpy(data)
    box = _default_box(box if box is not None else getattr(dataset, "box", None), None, points)
    dtype, device = _reference(flow)
    with _evaluating(flow):
        pts, xs, ys = _grid(box, resolution, dtype, device)
        q = np.nan_to_num(np.exp(_chunked(flow.log_prob, pts).reshape(resolution, resolution)), nan=0.0, posinf=0.0)
        exact = dataset is not None and dataset.log_prob is not None
        if exact:
            p = np.nan_to_num(np.exp(_chunked(dataset.log_prob, pts.double()).reshape(q.shape)), nan=0.0)
        else:
            (x0, x1), (y0, y1) = box
            p, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=resolution // 2, range=[[x0, x1], [y0, y1]],
                                     density=True)
            p = p.T
    fig = _new_figure(10.0, 4.8, layout="compressed")
    axes = fig.subplots(1, 2)
    norm = mcolors.Normalize(0.0, max(float(p.max()), float(q.max())) or 1.0)
    extent = (box[0][0], box[0][1], box[1][0], box[1][1])
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    labels = ["data $p(x)$ (exact)" if exact else f"data (histogram of {len(points):,} points)",
              rf"flow $q(x)$  (mass in box {q.sum() * cell:.3f})"]
    image = None
    for ax, img, label in zip(axes, (p, q), labels):
        image = ax.imshow(img, origin="lower", extent=extent, cmap=CMAP, norm=norm, interpolation="bilinear",
                          aspect="equal")
        ax.set_title(label, fontsize=11)
        _style(ax, box)
    axes[1].set_ylabel("")
    axes[1].tick_params(labelleft=False)
    fig.colorbar(image, ax=axes, shrink=0.85, pad=0.02, label="density")
    fig.suptitle(f"{title}: data and learned density", fontsize=13)
    return _save(fig, path)


def plot_data_samples(
    flow: Flow, data: Tensor, path: PathLike, *, context: Tensor | None = None, n: int = 5000,
    box: Box | None = None, title: str = "data",
) -> Path:
    """Data beside flow samples; for a conditional flow, samples for each distinct context of ``context`` (≤ 8).

    Args:
        flow: a flow of 2D vectors.
        data: data points ``(N, 2)``.
        path: the image file to write.
        context: the data's contexts ``(N, C)`` for a conditional flow (samples are drawn per distinct row).
        n: number of points shown on each side.
        box: the square shown; default around the data.
        title: the name shown in the title.
    """
    _check_flow(flow)
    if n < 1:
        raise ValueError(f"expected n >= 1 samples, got {n}")
    points = _numpy(data[:n])
    box = _default_box(box, None, points)
    with _evaluating(flow):
        if context is None:
            groups = [(_numpy(flow.sample(n)), _SAMPLE_COLOR, None)]
        else:
            distinct = torch.unique(context, dim=0)[:8]
            per = max(1, n // len(distinct))
            colors = [mcolors.to_hex(c) for c in colormaps["tab10"].colors]
            groups = [(_numpy(flow.sample(per, c)), colors[i % 10], "c = " + np.array2string(_numpy(c), precision=2))
                      for i, c in enumerate(distinct)]
    fig = _new_figure(10.0, 5.0)
    axes = fig.subplots(1, 2)
    alpha = scatter_alpha(n)
    axes[0].scatter(points[:, 0], points[:, 1], s=3, color=_DATA_COLOR, alpha=alpha, linewidths=0, rasterized=True)
    axes[0].set_title(f"{len(points):,} data points", fontsize=11)
    for x, color, label in groups:
        axes[1].scatter(x[:, 0], x[:, 1], s=3, color=color, alpha=alpha, linewidths=0, rasterized=True, label=label)
    axes[1].set_title(f"{sum(len(g[0]) for g in groups):,} flow samples", fontsize=11)
    if context is not None:
        axes[1].legend(markerscale=4, frameon=False, fontsize=8, loc="upper right")
    for ax in axes:
        _style(ax, box)
    fig.suptitle(f"{title}: data and samples", fontsize=13)
    return _save(fig, path)


def plot_data_fit(
    flow: Flow, out_dir: PathLike, *, data: Tensor, dataset: ToyDataset | None = None, metrics: Metrics | None = None,
    context: Tensor | None = None,
) -> dict[str, Path]:
    """Every picture of a maximum-likelihood fit, into ``out_dir`` under stable names.

    ``training.png`` (when ``metrics``) for any data; for 2D data also ``samples.png`` and, for an unconditional
    flow, ``densities.png``.

    Returns:
        ``{name: path}`` for each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    title = getattr(dataset, "name", "data")
    if tuple(flow.event_shape) == (2,):
        if context is None:
            paths["densities"] = plot_data_densities(flow, data, out / "densities.png", dataset=dataset, title=title)
        paths["samples"] = plot_data_samples(flow, data, out / "samples.png", context=context, title=title)
    if metrics is not None:
        paths["training"] = plot_training(metrics, out / "training.png")
    return paths
