"""How the chain warps its base, layer by layer: a panel of snapshots and an animated GIF."""

from __future__ import annotations

import math
from io import BytesIO
from pathlib import Path

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.collections import LineCollection
from PIL import Image

from ..flow import Flow
from ..targets.energies import Energy
from ._common import (
    _CYCLIC,
    _GRID_COLOR,
    _HUES,
    CMAP,
    Box,
    PathLike,
    _check_flow,
    _check_target,
    _default_box,
    _evaluating,
    _grid,
    _hist_image,
    _name,
    _new_figure,
    _reference,
    _save,
    _segments,
    _select_panels,
    _steps,
    _style,
    _target_density,
)


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

    Each panel shows the points after one layer of the generative pass (``_common.sample_steps``) as a log-scaled 2D
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
        k = min(math.floor(t), layers - 1) if layers else 0
        a = t - k
        s = samples[k] if not layers else (1 - a) * samples[k] + a * samples[k + 1]
        g = grids[k] if not layers else (1 - a) * grids[k] + a * grids[k + 1]
        for line, idx in zip(dots, groups):
            line.set_data(s[idx, 0], s[idx, 1])
        grid.set_segments(_segments(g, per_line))
        title.set_text(f"{name} · layer {round(t) if a in (0.0, 1.0) else k + 1} of {layers}")

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
        durations = [max(20, round(d)) for d in self._durations]
        self._images[0].save(
            self.outfile, save_all=True, append_images=self._images[1:], duration=durations, loop=0
        )
