"""Pictures of image models: grids of images (data or samples drawn at a temperature) and the training curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..models.image_flow import ImageFlow
from ..utils import evaluating
from ._common import Metrics, PathLike, _new_figure, _save
from .training import plot_training


def image_grid(images: Tensor | np.ndarray, levels: int, *, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` of levels ``0..k-1`` into one array in ``[0, 1]``: ``(rows·(H+pad)+pad, ...)``
    for one channel (drawn with an inverted gray map: level 0 white), with a trailing RGB axis for three.

    Raises:
        ValueError: for a shape other than ``(N, 1 or 3, H, W)`` with ``N >= 1``, or ``levels < 2``.
    """
    x = images.detach().to("cpu", torch.float64).numpy() if isinstance(images, Tensor) else np.asarray(images, float)
    if x.ndim != 4 or x.shape[0] < 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W) with N >= 1, got shape {tuple(x.shape)}")
    if levels < 2:
        raise ValueError(f"expected levels >= 2, got {levels}")
    n, c, h, w = x.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    # white gaps: 0 in the inverted gray map of one channel, 1 in RGB
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 0.0 if c == 1 else 1.0)
    for i in range(n):
        r, k = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top : top + h, left : left + w] = np.clip(x[i].transpose(1, 2, 0) / (levels - 1), 0, 1)
    return grid[..., 0] if c == 1 else grid


def plot_image_grid(images: Tensor | np.ndarray, path: PathLike, *, levels: int, title: str = "images",
                    columns: int | None = None) -> Path:
    """A figure of images ``(N, C, H, W)`` (levels ``0..k-1``) as a grid, written to ``path``.

    Returns:
        The path written.
    """
    grid = image_grid(images, levels, columns=columns)
    size = min(8.0, max(3.0, grid.shape[1] / 12))
    fig = _new_figure(size, size * grid.shape[0] / grid.shape[1] + 0.5)
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def plot_image_fit(model: ImageFlow, out_dir: PathLike, *, data: Tensor, metrics: Metrics | None = None,
                   n: int = 64, temperature: float = 1.0, title: str = "images", seed: int = 0) -> dict[str, Path]:
    """Every picture of an image fit, into ``out_dir``: ``samples.png`` (``n`` samples at ``temperature``, drawn from
    ``seed``), ``data.png`` (the first ``n`` images of ``data``) and ``training.png`` (when ``metrics``).

    Returns:
        ``{name: path}`` for each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with evaluating(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = model.sample(n, temperature=temperature)
    paths = {
        "samples": plot_image_grid(samples, out / "samples.png", levels=model.levels,
                                   title=f"{title}: {n} samples, T = {temperature:g}"),
        "data": plot_image_grid(data[:n], out / "data.png", levels=model.levels, title=f"{title}: {min(n, len(data))} "
                                "test images"),
    }
    if metrics is not None:
        paths["training"] = plot_training(metrics, out / "training.png")
    return paths


__all__ = ["image_grid", "plot_image_fit", "plot_image_grid"]
