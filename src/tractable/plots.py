"""Pictures of a 2D fit: densities, samples, the layer-by-layer warp (as a panel and as an animated GIF), and
training curves.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas, so nothing here touches the
global pyplot state or the interactive backend; each writes one file, creates its parent folders, and returns the
:class:`~pathlib.Path` it wrote. Flows are evaluated under ``torch.no_grad()`` in evaluation mode (their training
mode is restored afterwards), in the flow's own dtype and device, and moved to NumPy only for drawing.

Example:
    >>> import tempfile
    >>> from tractable import PlanarFlow, get_target
    >>> from tractable.plots import plot_fit
    >>> flow, target = PlanarFlow(2, layers=4), get_target("ring")
    >>> paths = plot_fit(flow, target, tempfile.mkdtemp(), gif=False)
    >>> sorted(paths)
    ['densities', 'layers', 'samples']
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from io import BytesIO
from itertools import chain
from pathlib import Path
from typing import Union

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from .flow import Flow
from .targets.energies import Energy

__all__ = ["animate_layers", "plot_densities", "plot_fit", "plot_layers", "plot_samples", "plot_training"]

PathLike = Union[str, "os.PathLike[str]"]
Box = Union[tuple[float, float], tuple[tuple[float, float], tuple[float, float]]]
Metrics = Union[PathLike, Sequence[Mapping[str, object]]]

CMAP = "magma"
"""The colormap of every density picture."""
_SAMPLE_COLOR = "#2c7fb8"  # a blue that stands apart from the magma contours of the target
_GRID_COLOR = "white"
_CYCLIC = mcolors.LinearSegmentedColormap.from_list(  # bright on dark, cyclic, from magma's upper half
    "magma_cycle", ["#fcfdbf", "#feb078", "#f1605d", "#b73779", "#8c6bd6", "#7fb2e5", "#fcfdbf"]
)
_HUES = 24
_CHUNK = 20_000
_DPI = 150


# --------------------------------------------------------------------------------------------------- helpers


def _check_flow(flow: Flow) -> None:
    if not isinstance(flow, Flow):
        raise TypeError(f"expected a tractable Flow, got {type(flow).__name__}")
    shape = tuple(flow.event_shape)
    if shape != (2,):
        raise ValueError(f"expected a flow of 2 features (event shape (2,)), got a flow with event shape {shape}")


def _check_target(target: Energy | None) -> None:
    if target is None:
        return
    if not isinstance(target, Energy):
        raise TypeError(f"expected a tractable Energy as target, got {type(target).__name__}")
    if getattr(target, "features", 2) != 2:
        raise ValueError(f"expected a target of 2 features, got target {target.name!r} with {target.features}")


def _reference(flow: Flow) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the flow's first floating-point parameter or buffer (float32 on CPU if none)."""
    for t in chain(flow.parameters(), flow.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


@contextlib.contextmanager
def _evaluating(flow: Flow) -> Iterator[None]:
    """Evaluation mode (no batch-norm updates) and no gradients, restoring the training mode afterwards."""
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        flow.train(was_training)


def _as_box(box: Box) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(lo, hi)`` (a square) or ``((x_lo, x_hi), (y_lo, y_hi))`` as the latter, validated."""
    arr = np.asarray(box, dtype=float)
    if arr.shape == (2,):
        arr = np.stack([arr, arr])
    if arr.shape != (2, 2) or not np.all(np.isfinite(arr)) or np.any(arr[:, 1] <= arr[:, 0]):
        raise ValueError(f"expected box as (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)) with lo < hi, got {box!r}")
    return (float(arr[0, 0]), float(arr[0, 1])), (float(arr[1, 0]), float(arr[1, 1]))


def _default_box(box: Box | None, target: Energy | None, *points: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """The given box, else the target's, else a square around the 0.5–99.5 percentiles of ``points`` (+10 %)."""
    if box is not None:
        return _as_box(box)
    if target is not None:
        return _as_box(target.box)
    pts = np.concatenate([p[np.all(np.isfinite(p), axis=1)] for p in points])
    if pts.size == 0:
        return _as_box((-4.0, 4.0))
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    center, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2 * 1.1, 1e-3)
    return _as_box(((center[0] - half, center[0] + half), (center[1] - half, center[1] + half)))


def _grid(box, resolution: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """A ``resolution²`` grid over ``box`` as ``(points (R², 2), xs, ys)``; row ``i`` of the image is ``ys[i]``."""
    if resolution < 2:
        raise ValueError(f"expected resolution >= 2, got {resolution}")
    (x0, x1), (y0, y1) = box
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    xx, yy = np.meshgrid(xs, ys, indexing="xy")
    pts = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], -1), dtype=dtype, device=device)
    return pts, xs, ys


def _chunked(fn, pts: Tensor, chunk: int = _CHUNK) -> np.ndarray:
    """``fn`` over ``pts`` in chunks (bounds the memory of numerically inverted flows), as float64 NumPy."""
    out = torch.cat([fn(c) for c in pts.split(chunk)]) if pts.shape[0] else pts.new_zeros(0)
    return out.detach().to("cpu", torch.float64).numpy()


def _target_density(target: Energy, pts: Tensor, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """``exp(-U - log Z)`` on the grid (or ``exp(-U)`` when ``log Z`` is unknown) and whether it is normalized."""
    log_p = _chunked(target.log_prob, pts).reshape(shape)
    log_z = target.log_z
    normalized = log_z is not None and math.isfinite(log_z)
    density = np.exp(log_p - (log_z if normalized else 0.0))
    return np.nan_to_num(density, nan=0.0, posinf=0.0), normalized


def _new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike, *, dpi: int = _DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=dpi, facecolor=fig.get_facecolor())
    finally:
        fig.clear()
    return path


def _style(ax, box, *, labels: bool = True) -> None:
    (x0, x1), (y0, y1) = box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    if labels:
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")


def _name(target: Energy | None) -> str:
    return getattr(target, "name", type(target).__name__) if target is not None else "flow"


def _select_panels(steps: int, panels: int) -> list[int]:
    """At most ``panels`` indices of ``range(steps)`` spread evenly, always with the first and the last."""
    if panels < 2:
        raise ValueError(f"expected panels >= 2 (the base and the last layer), got {panels}")
    k = min(panels, steps)
    return sorted({int(round(i)) for i in np.linspace(0, steps - 1, k)})


def _base_grid(z0: np.ndarray, lines: int, points: int = 400, spread: float = 3.0) -> tuple[np.ndarray, int]:
    """``lines`` horizontal and ``lines`` vertical lines over mean ± ``spread`` std of the base samples.

    Returns the points ``(2·lines·points, 2)`` (line after line) and ``points`` per line.
    """
    if lines < 2:
        raise ValueError(f"expected lines >= 2, got {lines}")
    mean, std = z0.mean(0), z0.std(0)
    std = np.where(std > 0, std, 1.0)
    lo, hi = mean - spread * std, mean + spread * std
    ticks_x, ticks_y = np.linspace(lo[0], hi[0], lines), np.linspace(lo[1], hi[1], lines)
    along_x, along_y = np.linspace(lo[0], hi[0], points), np.linspace(lo[1], hi[1], points)
    horizontal = [np.stack([along_x, np.full(points, y)], -1) for y in ticks_y]
    vertical = [np.stack([np.full(points, x), along_y], -1) for x in ticks_x]
    return np.concatenate(horizontal + vertical), points


def _segments(pts: np.ndarray, points: int) -> np.ndarray:
    return pts.reshape(-1, points, 2)


def _steps(flow: Flow, n: int, lines: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """The flow's samples and a warped base grid after each layer, as NumPy: ``(samples, grids, points per line)``."""
    if n < 1:
        raise ValueError(f"expected n >= 1 samples, got {n}")
    dtype, device = _reference(flow)
    samples = [s.detach().to("cpu", torch.float64).numpy() for s in flow.sample_steps(n)]
    grid, per_line = _base_grid(samples[0], lines)
    z = torch.as_tensor(grid, dtype=dtype, device=device)
    grids = [g.detach().to("cpu", torch.float64).numpy() for g in flow.sample_steps(z=z)]
    return samples, grids, per_line


def _hist_image(pts: np.ndarray, box, bins: int) -> np.ndarray:
    (x0, x1), (y0, y1) = box
    counts, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=bins, range=[[x0, x1], [y0, y1]])
    img = np.log1p(counts.T)
    return img / img.max() if img.max() > 0 else img


# ------------------------------------------------------------------------------------------------ pictures


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


def plot_layers(
    flow: Flow,
    path: PathLike,
    *,
    target: Energy | None = None,
    box: Box | None = None,
    n: int = 20_000,
    lines: int = 15,
    panels: int = 9,
    columns: int | None = None,
    bins: int = 100,
) -> Path:
    """How the flow warps its base, layer by layer.

    Each panel shows the points after one layer of the generative pass (``flow.sample_steps``) as a log-scaled 2D
    histogram, under a grid of ``lines`` horizontal and ``lines`` vertical lines drawn over mean ± 3 std of the base
    and pushed through the same layers. At most ``panels`` panels are shown: the base (layer 0), an even spread of
    intermediate layers, and the last layer. All panels share one box.

    Args:
        flow: a flow of 2D vectors.
        path: the image file to write; parent folders are created.
        target: optional target; its ``box`` and name are used when given.
        box: the axis limits, ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``; defaults to the target's box, else a
            square around the base and final samples.
        n: number of points pushed through the layers.
        lines: grid lines in each direction.
        panels: the most panels to show (at least 2).
        columns: panels per row; defaults to a near-square layout.
        bins: histogram bins along each axis.

    Returns:
        The path written.

    Raises:
        ValueError: if the flow is not 2D, or an option is out of range.
    """
    _check_flow(flow)
    _check_target(target)
    with _evaluating(flow):
        samples, grids, per_line = _steps(flow, n, lines)
    box = _default_box(box, target, samples[0], samples[-1])
    chosen = _select_panels(len(samples), panels)
    count = len(chosen)
    if columns is None:
        columns = count if count <= 4 else 3 if count <= 9 else math.ceil(math.sqrt(count))
    if columns < 1:
        raise ValueError(f"expected columns >= 1, got {columns}")
    rows = math.ceil(count / columns)
    fig = _new_figure(3.0 * columns, 3.0 * rows + 0.5, layout="compressed")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    extent = (box[0][0], box[0][1], box[1][0], box[1][1])
    last = len(samples) - 1
    for ax, k in zip(axes, chosen):
        ax.imshow(_hist_image(samples[k], box, bins), origin="lower", extent=extent, cmap=CMAP,
                  vmin=0, vmax=1, interpolation="bilinear", aspect="equal")
        ax.add_collection(LineCollection(_segments(grids[k], per_line), colors=_GRID_COLOR, linewidths=0.5,
                                         alpha=0.35))
        _style(ax, box, labels=False)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("layer 0 (base)" if k == 0 else f"layer {k}" + (" (output)" if k == last else ""), fontsize=10)
    for ax in axes[count:]:
        ax.set_axis_off()
    fig.suptitle(f"{_name(target)}: the base pushed through {last} layers", fontsize=13)
    return _save(fig, path, dpi=120)


def animate_layers(
    flow: Flow,
    path: PathLike,
    *,
    target: Energy | None = None,
    box: Box | None = None,
    n: int = 5000,
    lines: int = 15,
    frames_per_layer: int = 4,
    fps: int = 12,
    dpi: int = 80,
    hold: float = 1.0,
) -> Path:
    """An animated GIF of the layer-by-layer warp: samples and a warped grid moving smoothly from layer to layer.

    Consecutive layer outputs are interpolated linearly (``frames_per_layer`` frames per layer). Points are coloured
    by their angle in base space, so the picture shows where each part of the base ends up; the target's density
    contours, when a target is given, stay fixed in the background.

    Args:
        flow: a flow of 2D vectors.
        path: the GIF file to write; parent folders are created.
        target: optional target: its box, name and contours are used when given.
        box: the axis limits; defaults as in :func:`plot_layers`.
        n: number of points.
        lines: grid lines in each direction.
        frames_per_layer: frames per layer (at least 1).
        fps: frames per second.
        dpi: resolution of the 4×4-inch frames.
        hold: extra seconds the first and last frames are shown.

    Returns:
        The path written.

    Raises:
        ValueError: if the flow is not 2D, or an option is out of range.
    """
    _check_flow(flow)
    _check_target(target)
    if frames_per_layer < 1 or fps < 1:
        raise ValueError(f"expected frames_per_layer >= 1 and fps >= 1, got {frames_per_layer} and {fps}")
    with _evaluating(flow):
        samples, grids, per_line = _steps(flow, n, lines)
        contour = None
        if target is not None:
            dtype, device = _reference(flow)
            box = _default_box(box, target)
            pts, xs, ys = _grid(box, 120, dtype, device)
            contour = (xs, ys, _target_density(target, pts, (120, 120))[0])
    box = _default_box(box, target, samples[0], samples[-1])
    layers = len(samples) - 1
    z0 = samples[0] - samples[0].mean(0)
    hue = (np.arctan2(z0[:, 1], z0[:, 0]) / (2 * np.pi)) % 1.0

    fig = _new_figure(4, 4, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.91)
    ax = fig.add_subplot()
    fig.set_facecolor("#0b0b12")
    ax.set_facecolor("#0b0b12")
    _style(ax, box, labels=False)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#444455")
    if contour is not None and contour[2].max() > 0:
        ax.contour(*contour, levels=np.linspace(0, contour[2].max(), 6)[1:], colors="#8f8fa8", linewidths=0.6,
                   alpha=0.6)
    grid = LineCollection(_segments(grids[0], per_line), colors=_GRID_COLOR, linewidths=0.5, alpha=0.3)
    ax.add_collection(grid)
    # One marker line per hue bin: Agg stamps markers of a Line2D far faster than it draws a scatter.
    bin_of = np.minimum((hue * _HUES).astype(int), _HUES - 1)
    groups = [np.flatnonzero(bin_of == i) for i in range(_HUES)]
    dots = [
        ax.plot([], [], ls="none", marker="o", ms=1.3, mew=0, alpha=0.75, color=_CYCLIC((i + 0.5) / _HUES))[0]
        for i in range(_HUES)
    ]
    title = ax.set_title("", color="white", fontsize=11)
    name = _name(target)

    def draw(t: float) -> None:
        k = min(int(math.floor(t)), layers - 1) if layers else 0
        a = t - k
        s = samples[k] if not layers else (1 - a) * samples[k] + a * samples[k + 1]
        g = grids[k] if not layers else (1 - a) * grids[k] + a * grids[k + 1]
        for line, idx in zip(dots, groups):
            line.set_data(s[idx, 0], s[idx, 1])
        grid.set_segments(_segments(g, per_line))
        title.set_text(f"{name} · layer {int(round(t)) if a in (0.0, 1.0) else k + 1} of {layers}")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _GifWriter(fps=fps)
    try:
        with writer.saving(fig, path, dpi=dpi):
            draw(0.0)
            writer.grab_frame(facecolor=fig.get_facecolor())
            writer.hold(hold)
            for i in range(1, layers * frames_per_layer + 1):
                draw(i / frames_per_layer)
                writer.grab_frame(facecolor=fig.get_facecolor())
            writer.hold(hold)
    finally:
        fig.clear()
    return path


class _GifWriter(PillowWriter):
    """A :class:`~matplotlib.animation.PillowWriter` that maps every frame onto the palette of the first one.

    Per-frame adaptive quantization is most of the cost of a GIF; the first frame (the base, where every colour of
    the animation already appears) fixes the palette and the others are mapped onto it without dithering. Frames can
    also be held longer (:meth:`hold`) without being rendered again.
    """

    def setup(self, fig, outfile, dpi=None):
        super().setup(fig, outfile, dpi=dpi)
        self._palette: Image.Image | None = None
        self._images: list[Image.Image] = []
        self._durations: list[float] = []

    def grab_frame(self, **savefig_kwargs) -> None:
        buf = BytesIO()
        self.fig.savefig(buf, **{**savefig_kwargs, "format": "rgba", "dpi": self.dpi})
        frame = Image.frombuffer("RGBA", self.frame_size, buf.getbuffer(), "raw", "RGBA", 0, 1).convert("RGB")
        if self._palette is None:
            self._palette = frame.quantize(colors=255)
        self._images.append(frame.quantize(palette=self._palette, dither=Image.Dither.NONE))
        self._durations.append(1000.0 / self.fps)

    def hold(self, seconds: float) -> None:
        """Show the last frame ``seconds`` longer."""
        if self._durations and seconds > 0:
            self._durations[-1] += 1000.0 * seconds

    def finish(self) -> None:
        if not self._images:  # nothing was grabbed (an error while drawing): write nothing
            return
        durations = [max(20, int(round(d))) for d in self._durations]
        self._images[0].save(
            self.outfile, save_all=True, append_images=self._images[1:], duration=durations, loop=0
        )


# ------------------------------------------------------------------------------------------------ training


def _read_metrics(metrics: Metrics) -> dict[str, np.ndarray]:
    """Columns of per-step metrics (a CSV path or a list of dicts) as float arrays; empty values become NaN."""
    if isinstance(metrics, (str, os.PathLike)):
        with open(metrics, newline="") as f:
            rows: list[Mapping[str, object]] = list(csv.DictReader(f))
    elif isinstance(metrics, Sequence):
        rows = list(metrics)
        if not all(isinstance(r, Mapping) for r in rows):
            raise ValueError("expected metrics as a CSV path or a list of dicts, got a sequence of other objects")
    else:
        raise ValueError(f"expected metrics as a CSV path or a list of dicts, got {type(metrics).__name__}")

    def value(v: object) -> float:
        if v is None or (isinstance(v, str) and not v.strip()):
            return math.nan
        try:
            return float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan

    keys = list(dict.fromkeys(k for r in rows for k in r if k is not None))
    if "loss" not in keys:
        raise ValueError(f"expected metrics with a 'loss' column, got columns {keys}")
    columns = {k: np.array([value(r.get(k)) for r in rows], dtype=float) for k in keys}
    if "step" not in columns or np.isnan(columns["step"]).all():
        columns["step"] = np.arange(len(rows), dtype=float)
    return columns


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """A centred moving average that ignores NaN (NaN where the window holds no value)."""
    if window <= 1:
        return y
    ok = np.isfinite(y)
    kernel = np.ones(window)
    num = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def plot_training(metrics: Metrics, path: PathLike) -> Path:
    """Training curves from per-step metrics.

    Panels, left to right: ``loss`` against ``step``; ``kl`` where present (its own panel, because the reverse-KL
    loss is ``KL - log Z`` and the two would otherwise share one uninformative scale); ``ess`` where present. A
    panel is log-scaled when all its values are positive (the ESS panel stays linear on [0, 1]). Noisy curves are
    drawn faintly with a moving average on top, and the steps where ``beta < 1`` (annealing) are shaded.

    Args:
        metrics: a CSV file with a header (``step``, ``loss``, and optionally ``kl``, ``ess``, ``beta``, ``lr``,
            ``grad_norm``; empty strings for missing values), or a list of dicts with those keys.
        path: the image file to write; parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: if the metrics have no ``loss`` column or are of the wrong type.
    """
    cols = _read_metrics(metrics)
    step = cols["step"]
    panels = [
        (key, title)
        for key, title in (
            ("loss", "loss"),
            ("kl", r"KL$(q\|p)$ (nats)"),
            ("ess", "effective sample size (fraction)"),
        )
        if key in cols and np.isfinite(cols[key]).any()
    ]
    if not panels:
        panels = [("loss", "loss")]
    fig = _new_figure(4.6 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    colors = {"loss": "#3b0f70", "kl": "#de4968", "ess": "#f8765c"}
    window = max(1, int(np.sum(np.isfinite(cols["loss"]))) // 50)
    beta = cols.get("beta")
    annealing = beta is not None and bool(np.any(np.isfinite(beta) & (beta < 1)))
    for ax, (key, title) in zip(axes, panels):
        y, color = cols[key], colors[key]
        ok = np.isfinite(y)
        if window > 1:
            ax.plot(step[ok], y[ok], color=color, alpha=0.2, linewidth=0.7)
        ax.plot(step, _smooth(y, window), color=color, linewidth=1.6, label=key)
        if key == "ess":
            ax.set_ylim(0, max(1.0, float(np.nanmax(y))) * 1.02)
        elif ok.any() and np.all(y[ok] > 0):
            ax.set_yscale("log")
        if annealing:
            during = np.isfinite(beta) & (beta < 1)
            ax.axvspan(np.nanmin(step[during]), np.nanmax(step[during]), color="0.5", alpha=0.12, linewidth=0,
                       label=r"annealing ($\beta<1$)")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.25, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    if annealing:
        axes[0].legend(frameon=False, fontsize=9)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ all of it


def plot_fit(
    flow: Flow,
    target: Energy,
    out_dir: PathLike,
    *,
    metrics: Metrics | None = None,
    gif: bool = True,
    resolution: int = 200,
    n: int = 5000,
    layer_n: int = 20_000,
) -> dict[str, Path]:
    """Every picture of a 2D variational fit, written into ``out_dir`` under stable names.

    Writes ``densities.png``, ``samples.png``, ``layers.png``, ``layers.gif`` (when ``gif``) and ``training.png``
    (when ``metrics`` is given).

    Args:
        flow: a flow of 2D vectors.
        target: the target energy.
        out_dir: the folder to write into (created if needed).
        metrics: per-step training metrics, as accepted by :func:`plot_training`.
        gif: also write the animation.
        resolution: grid points per axis of the density pictures.
        n: samples in the scatter and the animation.
        layer_n: samples in the layer-by-layer panel.

    Returns:
        ``{name: path}`` for each file written, keyed ``densities``, ``samples``, ``layers``, ``gif``, ``training``.

    Raises:
        ValueError: if the flow or target is not 2D.
    """
    _check_flow(flow)
    _check_target(target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "densities": plot_densities(flow, target, out / "densities.png", resolution=resolution),
        "samples": plot_samples(flow, target, out / "samples.png", n=n),
        "layers": plot_layers(flow, out / "layers.png", target=target, n=layer_n),
    }
    if gif:
        paths["gif"] = animate_layers(flow, out / "layers.gif", target=target, n=n)
    if metrics is not None:
        paths["training"] = plot_training(metrics, out / "training.png")
    return paths
