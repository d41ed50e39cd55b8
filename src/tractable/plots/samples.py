"""A figure of samples already drawn (``tractable sample``): a scatter and a histogram density of 2D points.

Unlike :func:`~tractable.plots.plot_samples`, which draws its own samples from a flow, this pictures a given array
of points, so what is drawn is exactly what was saved (with its temperature and context).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..targets.energies import Energy
from ._common import (
    _SAMPLE_COLOR,
    CMAP,
    Box,
    PathLike,
    _check_target,
    _default_box,
    _grid,
    _hist_image,
    _new_figure,
    _save,
    _style,
    _target_density,
)

#: A scatter of ``n`` points is drawn with opacity ``SCATTER_OPACITY / sqrt(n)``, kept within these bounds, so that
#: dense regions stay distinguishable from sparse ones whatever ``n``.
SCATTER_OPACITY, SCATTER_ALPHA_RANGE = 40.0, (0.04, 0.6)


def scatter_alpha(n: int) -> float:
    """The opacity of each point in a scatter of ``n`` points."""
    return float(np.clip(SCATTER_OPACITY / math.sqrt(n), *SCATTER_ALPHA_RANGE))


def plot_sample_set(
    x: Tensor | np.ndarray,
    path: PathLike,
    *,
    target: Energy | None = None,
    box: Box | None = None,
    title: str = "samples",
    bins: int = 120,
) -> Path:
    """Given 2D points as a scatter (over the target's contours when a target is given) beside their histogram.

    Args:
        x: the points, shape ``(N, 2)``.
        path: the image file to write; parent folders are created.
        target: an energy whose normalized density is drawn as contours under the scatter.
        box: ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``; default the target's box, else around the points.
        title: the figure's title.
        bins: histogram bins along each axis.

    Returns:
        The path written.

    Raises:
        ValueError: if ``x`` is not of shape ``(N, 2)`` with ``N >= 1``, or ``bins < 2``.
    """
    points = x.detach().to("cpu", torch.float64).numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 1:
        raise ValueError(f"expected points of shape (N, 2) with N >= 1, got shape {tuple(points.shape)}")
    if bins < 2:
        raise ValueError(f"expected bins >= 2, got {bins}")
    _check_target(target)
    box = _default_box(box, target, points)
    n = len(points)
    fig = _new_figure(10.0, 5.0)
    axes = fig.subplots(1, 2)
    alpha = scatter_alpha(n)
    axes[0].scatter(points[:, 0], points[:, 1], s=3, color=_SAMPLE_COLOR, alpha=alpha, linewidths=0,
                    rasterized=True, zorder=1)
    if target is not None:
        pts, xs, ys = _grid(box, 160, torch.float64, torch.device("cpu"))
        with torch.no_grad():
            p, _ = _target_density(target, pts, (160, 160))
        if p.max() > 0:
            axes[0].contour(xs, ys, p, levels=np.linspace(0, p.max(), 8)[1:], cmap=CMAP, linewidths=1.2,
                            vmin=-0.35 * p.max(), vmax=1.05 * p.max(), zorder=2)
    inside = np.all(np.isfinite(points), axis=1)
    (x0, x1), (y0, y1) = box
    shown = int(np.sum(inside & (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0)
                       & (points[:, 1] <= y1)))
    axes[0].set_title(f"{n:,} samples" + (" over target contours" if target is not None else ""), fontsize=11)
    axes[1].imshow(_hist_image(points[inside], box, bins), origin="lower", extent=(x0, x1, y0, y1), cmap=CMAP,
                   interpolation="nearest", aspect="equal")
    axes[1].set_title(f"histogram, log(1 + count) ({shown:,} of {n:,} in view)", fontsize=11)
    for ax in axes:
        _style(ax, box)
    fig.suptitle(title, fontsize=13)
    return _save(fig, path)
