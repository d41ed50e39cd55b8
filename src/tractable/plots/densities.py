"""The target density beside the learned one, and samples over the target's contours."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib import colors as mcolors

from ..flow import Flow
from ..targets.energies import Energy
from ._common import (
    _SAMPLE_COLOR,
    CMAP,
    Box,
    PathLike,
    _check_flow,
    _check_target,
    _chunked,
    _default_box,
    _evaluating,
    _grid,
    _name,
    _new_figure,
    _reference,
    _save,
    _style,
    _target_density,
)


def plot_densities(
    flow: Flow, target: Energy, path: PathLike, *, box: Box | None = None, resolution: int = 200
) -> Path:
    """The target density and the flow's density side by side, on the same grid and colour scale.

    The target is drawn normalized, ``exp(-U - log Z)``, when ``target.log_z`` is known, and both panels then share
    one colour scale and colour bar; otherwise the target is unnormalized, ``exp(-U)``, titled so, and each panel
    has its own scale. The flow is drawn as ``exp(flow.log_prob)``, evaluated in chunks of 20,000 points (a
    numerically inverted 16-layer planar flow takes about a second on a 200×200 grid).

    Args:
        flow: a flow of 2D vectors.
        target: the target energy.
        path: the image file to write (PNG unless the suffix says otherwise); parent folders are created.
        box: ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``; defaults to ``target.box``.
        resolution: grid points along each axis.

    Returns:
        The path written.

    Raises:
        ValueError: if the flow or target is not 2D, or the box or resolution is invalid.
    """
    _check_flow(flow)
    _check_target(target)
    box = _default_box(box, target)
    dtype, device = _reference(flow)
    with _evaluating(flow):
        pts, xs, ys = _grid(box, resolution, dtype, device)
        p, normalized = _target_density(target, pts, (resolution, resolution))
        q = np.nan_to_num(np.exp(_chunked(flow.log_prob, pts).reshape(resolution, resolution)), nan=0.0, posinf=0.0)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    vmax = max(float(p.max()), float(q.max())) or 1.0
    norm = mcolors.Normalize(0.0, vmax) if normalized else None
    fig = _new_figure(10.0, 4.8, layout="compressed")
    fig.get_layout_engine().set(wspace=0.05)
    axes = fig.subplots(1, 2)
    extent = (box[0][0], box[0][1], box[1][0], box[1][1])
    panels = [
        (p, "target $p(x)$" if normalized else r"target $\tilde p(x) = e^{-U(x)}$ (unnormalized)"),
        (q, rf"flow $q(x)$  (mass in box {q.sum() * cell:.3f})"),
    ]
    image = None
    for ax, (img, title) in zip(axes, panels):
        image = ax.imshow(
            img, origin="lower", extent=extent, cmap=CMAP, norm=norm, interpolation="bilinear", aspect="equal"
        )
        ax.set_title(title, fontsize=11)
        _style(ax, box)
    axes[1].set_ylabel("")
    axes[1].tick_params(labelleft=False)
    if normalized:
        fig.colorbar(image, ax=axes, shrink=0.85, pad=0.02, label="density")
    fig.suptitle(f"{_name(target)}: target and learned density", fontsize=13)
    return _save(fig, path)


def plot_samples(flow: Flow, target: Energy, path: PathLike, *, n: int = 5000, box: Box | None = None) -> Path:
    """Samples of the flow as a scatter over the contours of the target density.

    The subtitle reports, from the same samples, the exact ``KL(q‖p)`` (when ``target.log_z`` is known) and the
    effective sample size of the importance weights ``p̃/q``.

    Args:
        flow: a flow of 2D vectors.
        target: the target energy.
        path: the image file to write; parent folders are created.
        n: number of samples.
        box: ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``; defaults to ``target.box``.

    Returns:
        The path written.

    Raises:
        ValueError: if the flow or target is not 2D, or ``n < 1``.
    """
    _check_flow(flow)
    _check_target(target)
    if n < 1:
        raise ValueError(f"expected n >= 1 samples, got {n}")
    box = _default_box(box, target)
    dtype, device = _reference(flow)
    with _evaluating(flow):
        x, log_q = flow.sample_and_log_prob(n)
        log_p = target.log_prob(x)
        pts, xs, ys = _grid(box, 160, dtype, device)
        p, normalized = _target_density(target, pts, (160, 160))
    log_w = (log_p - log_q).double()
    log_w = log_w[torch.isfinite(log_w)]
    stats = []
    if normalized and log_w.numel():
        stats.append(rf"KL$(q\|p)$ ≈ {float(-log_w.mean()) + target.log_z:.3f} nats")
    if log_w.numel():
        ess = float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / log_w.numel())
        stats.append(f"ESS {100 * ess:.1f}%")
    x = x.detach().to("cpu", torch.float64).numpy()
    fig = _new_figure(5.4, 5.4)
    ax = fig.add_subplot()
    alpha = float(np.clip(40 / math.sqrt(n), 0.04, 0.6))
    ax.scatter(x[:, 0], x[:, 1], s=3, color=_SAMPLE_COLOR, alpha=alpha, linewidths=0, rasterized=True, zorder=1)
    if p.max() > 0:
        levels = np.linspace(0, p.max(), 8)[1:]
        ax.contour(xs, ys, p, levels=levels, cmap=CMAP, linewidths=1.2, vmin=-0.35 * p.max(), vmax=1.05 * p.max(),
                   zorder=2)
    _style(ax, box)
    ax.set_title(f"{_name(target)}: {n:,} flow samples over target contours\n" + " · ".join(stats), fontsize=11)
    return _save(fig, path)
