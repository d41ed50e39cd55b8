"""Shared helpers of the plotting modules: input checks, grids, figures, boxes and the house style."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..flow import Flow
from ..targets.energies import Energy
from ..transforms.base import Compose, Inverse, LayerStack, Transform
from ..utils import evaluating

PathLike = str | os.PathLike[str]
Box = tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]
Metrics = PathLike | Sequence[Mapping[str, object]]

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
    with evaluating(flow), torch.no_grad():
        yield


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
    return sorted({round(i) for i in np.linspace(0, steps - 1, k)})


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


def layer_outputs(transform: Transform, x: Tensor, context: Tensor | None = None, *,
                  inverse: bool = False) -> list[Tensor]:
    """The outputs after each elementary layer of ``transform`` (its inverse with ``inverse=True``).

    Walks the chain: a :class:`~tractable.transforms.base.Compose` layer by layer (last layer first when inverted), an
    :class:`~tractable.transforms.base.Inverse` by its inner transform's other direction, and a
    :class:`~tractable.transforms.base.LayerStack` map by map; any other transform is one step.
    """
    if isinstance(transform, Compose):
        steps: list[Tensor] = []
        for t in (reversed(transform.transforms) if inverse else transform.transforms):
            steps += layer_outputs(t, x, context, inverse=inverse)
            x = steps[-1]
        return steps
    if isinstance(transform, Inverse):
        return layer_outputs(transform.transform, x, context, inverse=not inverse)
    if isinstance(transform, LayerStack):
        return (transform.run_inverse(x) if inverse else transform.run(x))[0]
    return [(transform.inverse(x, context) if inverse else transform(x, context))[0]]


@torch.no_grad()
def sample_steps(flow: Flow, z: Tensor) -> list[Tensor]:
    """The latent points ``z`` and their images after each elementary layer of the flow's generative pass."""
    return [z, *layer_outputs(flow.transform, z, inverse=True)]


def _steps(flow: Flow, n: int, lines: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """The flow's samples and a warped base grid after each layer, as NumPy: ``(samples, grids, points per line)``."""
    if n < 1:
        raise ValueError(f"expected n >= 1 samples, got {n}")
    dtype, device = _reference(flow)
    samples = [s.detach().to("cpu", torch.float64).numpy() for s in sample_steps(flow, flow.base.sample(n))]
    grid, per_line = _base_grid(samples[0], lines)
    z = torch.as_tensor(grid, dtype=dtype, device=device)
    grids = [g.detach().to("cpu", torch.float64).numpy() for g in sample_steps(flow, z)]
    return samples, grids, per_line


def _hist_image(pts: np.ndarray, box, bins: int) -> np.ndarray:
    (x0, x1), (y0, y1) = box
    counts, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=bins, range=[[x0, x1], [y0, y1]])
    img = np.log1p(counts.T)
    return img / img.max() if img.max() > 0 else img
