"""Training curves from the per-step metrics of a run (loss, exact KL, ESS)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..training.metrics_log import read_metrics_csv
from ._common import Metrics, PathLike, _new_figure, _save


def _read_metrics(metrics: Metrics) -> dict[str, np.ndarray]:
    """Columns of per-step metrics (a CSV path or a list of dicts) as float arrays; empty values become NaN."""
    if isinstance(metrics, (str, os.PathLike)):
        rows: list[Mapping[str, object]] = list(read_metrics_csv(metrics))
    elif isinstance(metrics, Sequence):
        rows = list(metrics)
        if not all(isinstance(r, Mapping) for r in rows):
            raise TypeError("expected metrics as a CSV path or a list of dicts, got a sequence of other objects")
    else:
        raise TypeError(f"expected metrics as a CSV path or a list of dicts, got {type(metrics).__name__}")

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
            ``grad_norm``, ``val_nll`` — drawn as points on the loss panel; empty strings for missing values), or a
            list of dicts with those keys.
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
        val = cols.get("val_nll")
        if key == "loss" and val is not None and np.isfinite(val).any():
            seen = np.isfinite(val)
            ax.plot(step[seen], val[seen], "o-", color="#f8765c", markersize=3, linewidth=1.0, label="validation NLL")
            ax.legend(frameon=False, fontsize=9)
            ok = ok | seen
            y = np.where(seen, val, y)
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
