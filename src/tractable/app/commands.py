"""The run commands: ``tractable sample``, ``tractable eval`` and ``tractable plot`` on a finished run directory.

Each opens the run (:func:`~tractable.app.run.open_run`: its configuration and trained model) and goes through the
run's :class:`~tractable.app.tasks.base.Task` for what differs by kind: the evaluation, the figures, the picture of
samples.

Example:
    >>> from tractable.app.commands import evaluate_run, sample_run  # doctest: +SKIP
    >>> sample_run("runs/demo", 1000, temperature=0.8)               # doctest: +SKIP
    >>> evaluate_run("runs/demo", samples=20_000)["kl"]              # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..models.image_flow import ImageFlow
from ..utils import atomic_write, write_json
from .run import METRICS_CSV, Echo, Run, open_run
from .tasks.base import TEST, check_split

#: Samples of images with at most this many levels are saved as ``uint8``.
UINT8_LEVELS = 256
#: ``tractable sample`` draws this many vectors (images) per pass: multiples of 16, see :func:`sample_chunks`.
SAMPLE_CHUNK, IMAGE_CHUNK, MIN_CHUNK = 65_536, 256, 16
#: ``tractable eval --samples`` of an energy or data run: the standard errors need two draws (rows).
MIN_EVAL_SAMPLES = 2
#: The figure of ``tractable sample`` pictures at most this many points (images): the first ones drawn.
FIGURE_POINTS, FIGURE_IMAGES = 100_000, 100


def _check_count(n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected {what} to be a positive integer, got {n!r}")


# ----------------------------------------------------------------------------------------------------- sample


def parse_context(spec: str | None, run: Run, n: int) -> Tensor | None:
    """The context for ``n`` samples of ``run``: ``None`` for an unconditional run, else a ``(1, C)`` or ``(n, C)``
    tensor in the flow's dtype and device.

    ``spec`` is ``C`` comma-separated numbers (one context for every sample, e.g. a one-hot label ``0,1,0``) or a
    ``.npy`` file holding one context ``(C,)``/``(1, C)`` or one per sample ``(n, C)``.

    Raises:
        ValueError: if a conditional run gets no context, an unconditional one gets one, or the shape is wrong.
    """
    c = run.context_features
    if spec is None or not spec.strip():
        if c:
            raise ValueError(f"run {run.name!r} is conditional on {c} context features; expected --context with {c} "
                             f"comma-separated numbers or a .npy file of shape (1, {c}) or ({n}, {c})")
        return None
    if not c:
        raise ValueError(f"run {run.name!r} is unconditional; expected no --context, got {spec!r}")
    if spec.endswith(".npy"):
        if not Path(spec).is_file():
            raise ValueError(f"context file {spec!r} does not exist")
        values = np.load(spec, allow_pickle=False)
    else:
        try:
            values = np.array([float(v) for v in spec.split(",")])
        except ValueError:
            raise ValueError(f"expected --context as comma-separated numbers or a .npy file, got {spec!r}") from None
    values = np.atleast_2d(values)
    if values.ndim != 2 or values.shape[1] != c or values.shape[0] not in (1, n):
        raise ValueError(f"expected a context of shape (1, {c}) or ({n}, {c}) for run {run.name!r}, "
                         f"got shape {tuple(values.shape)}")
    if not np.all(np.isfinite(values)):
        raise ValueError("expected finite context values, got NaN or infinity")
    ref = next(run.flow.parameters())
    return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)


def sample_chunks(n: int, rows: int) -> list[int]:
    """The sizes of the passes that draw ``n`` samples at most ``rows`` at a time.

    A last pass under :data:`MIN_CHUNK` rows joins the one before: PyTorch's CPU normal generator fills blocks of 16
    values and draws a short tensor another way, so with ``rows`` a multiple of 16 the chunks draw exactly the values
    of one call of ``n`` rows (``tractable sample`` gives the same samples however they are chunked).
    """
    sizes = [rows] * (n // rows) + ([n % rows] if n % rows else [])
    if len(sizes) > 1 and sizes[-1] < MIN_CHUNK:
        sizes[-2:] = [sizes[-2] + sizes[-1]]
    return sizes


def draw_samples(flow: Any, n: int, path: Path, *, context: Tensor | None, temperature: float,
                 keep: int) -> Tensor:
    """Draw ``n`` samples into the ``.npy`` file ``path`` chunk by chunk and return the first ``keep`` of them.

    Memory stays bounded by a chunk (:data:`SAMPLE_CHUNK` vectors, :data:`IMAGE_CHUNK` images), not ``n``: the
    ``.npy`` header is written first and each chunk appended after it (no memory map, whose pages would count as the
    process's memory), into a temporary file renamed over ``path`` when complete (:func:`atomic_write`), so a failed
    or interrupted draw leaves no partial file.
    """
    images = isinstance(flow, ImageFlow)
    dtype = np.dtype(np.uint8) if images and flow.levels <= UINT8_LEVELS else None
    rows = IMAGE_CHUNK if images else SAMPLE_CHUNK
    kept: list[Tensor] = []

    def write(f: Any) -> None:
        start = 0
        for size in sample_chunks(n, rows):
            c = context if context is None or context.shape[0] == 1 else context[start : start + size]
            x = flow.sample(size, c, temperature=temperature).cpu()
            array = np.ascontiguousarray(x.numpy(), dtype=dtype)
            if start == 0:
                header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                          "shape": (n, *array.shape[1:])}
                np.lib.format.write_array_header_1_0(f, header)  # as np.save writes it
            f.write(array.data)
            if start < keep:
                kept.append(x[: keep - start].clone())
            start += size

    atomic_write(path, write)
    return torch.cat(kept) if kept else torch.empty(0)


def sample_run(run_dir: str | Path, n: int, *, out: str | Path | None = None, seed: int = 0,
               temperature: float = 1.0, context: str | None = None, figure: bool = True,
               echo: Echo = print, force: bool = False) -> dict[str, Path]:
    """Draw ``n`` samples from a run's flow into a ``.npy`` file (and a figure where the task draws one).

    The samples are drawn and written in chunks, so memory does not grow with ``n``; the figure pictures the first
    :data:`FIGURE_POINTS` points (:data:`FIGURE_IMAGES` images), an unbiased subsample of independent draws.

    Args:
        run_dir: the run directory.
        n: the number of samples.
        out: the ``.npy`` file (default ``RUN_DIR/samples.npy``); the figure goes beside it as ``STEM-scatter.png``
            (``STEM-grid.png`` for images, saved as ``uint8`` levels ``(n, C, H, W)``).
        seed: seeds the draws (the same seed gives the same samples, whatever ``n``'s chunking).
        temperature: scales the spread of the base's latent draws around their mean (:meth:`Flow.sample`).
        context: for a conditional run, as :func:`parse_context` reads it.
        figure: also write the figure.
        echo: where the summary lines go.
        force: use the run although its config.toml or data differ from its checkpoint's (:func:`open_run`).

    Returns:
        ``{"samples": path}`` and, when written, ``{"figure": path}``.
    """
    _check_count(n, "-n (the number of samples)")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"expected a temperature > 0, got {temperature}")
    if out is not None and Path(out).suffix != ".npy":
        raise ValueError(f"expected --out to be a .npy file, got {str(out)!r}")
    run = open_run(run_dir, force=force)
    out = Path(out) if out is not None else run.path / "samples.npy"
    c = parse_context(context, run, n)
    images = isinstance(run.flow, ImageFlow)
    keep = min(n, FIGURE_IMAGES if images else FIGURE_POINTS) if figure else 0
    torch.manual_seed(seed)
    shown = draw_samples(run.flow, n, out, context=c, temperature=temperature, keep=keep)
    paths = {"samples": out}
    echo(f"{n} samples of shape {tuple(run.flow.event_shape)} from {run.name!r} (temperature {temperature:g}, "
         f"seed {seed}) written to {out}")
    if figure:
        label = f"{run.name}: {n:,} samples" if keep == n else f"{run.name}: first {keep:,} of {n:,} samples"
        label += f", T = {temperature:g}"
        if c is not None and c.shape[0] == 1:
            label += ", c = " + ",".join(f"{v:g}" for v in c[0].tolist())
        path = out.with_name(f"{out.stem}-{run.task.figure_suffix}.png")
        written = run.task.sample_figure(run.flow, run.target, shown, path, label)
        if written is not None:
            paths["figure"] = written
            echo(f"figure: {written}")
    return paths


# ------------------------------------------------------------------------------------------------------- plot


def plot_run(run_dir: str | Path, *, out_dir: str | Path | None = None, gif: bool | None = None,
             echo: Echo = print, force: bool = False) -> dict[str, Path]:
    """Draw a run's figures again from its checkpoint and ``metrics.csv``, as ``tractable fit`` drew them.

    Args:
        run_dir: the run directory.
        out_dir: where to write (default the run directory).
        gif: write the layer animation (energies; default what the run's config says).
        echo: where the summary line goes.
        force: as for :func:`sample_run`.

    Returns:
        ``{name: path}`` for each file written.
    """
    run = open_run(run_dir, force=force)
    out = Path(out_dir) if out_dir is not None else run.path
    csv = run.path / METRICS_CSV
    metrics = csv if csv.is_file() else None
    if metrics is None:
        echo(f"note: {csv} is missing; no training curves")
    problem = run.task.load(run.config)
    paths = run.task.plot(run.flow, problem, run.config, out, metrics=metrics,
                          gif=run.config.output.gif if gif is None else gif)
    if not paths:
        raise ValueError(f"nothing to draw for run {run.name!r}: no 2D flow and no metrics.csv")
    echo("figures: " + ", ".join(str(p) for p in paths.values()))
    return paths


# ------------------------------------------------------------------------------------------------------- eval


def evaluate_run(run_dir: str | Path, *, samples: int | None = None, split: str = TEST, seed: int = 0,
                 out: str | Path | None = None, echo: Echo = print, force: bool = False) -> dict[str, Any]:
    """Recompute a run's metrics from its checkpoint, print a summary and write them as JSON.

    Energies: exact ``KL(q‖p)`` (log Z by quadrature), ``ess``, ``log_z_estimate`` from ``samples`` fresh draws
    (default the run's ``eval.samples``), seeded by ``seed``. Data: the NLL of the ``split`` (``test``, ``val`` or
    ``train``), regenerated exactly as the fit drew it, so ``eval.json``'s ``test_nll`` equals ``metrics.json``'s;
    ``samples`` keeps only its first rows. Images: bits/dim of the split with ``samples`` importance samples
    (default the run's ``eval.iw_samples``), the noise drawn from ``seed``.

    Args:
        run_dir: the run directory.
        samples: see above.
        split: the data split to score.
        seed: seeds the fresh samples.
        out: the JSON file (default ``RUN_DIR/eval.json``); NaN is written as ``null``.
        echo: where the summary line goes.
        force: as for :func:`sample_run`.

    Returns:
        The metrics, with ``split``, ``seed`` and the run's ``target``, ``flow``, ``layers``.
    """
    if samples is not None:
        _check_count(samples, "--samples")
    check_split(split)
    if out is not None and Path(out).is_dir():
        raise ValueError(f"expected --out to be a JSON file, got the directory {str(out)!r}")
    run = open_run(run_dir, force=force)
    if samples is not None and samples < MIN_EVAL_SAMPLES and run.kind != "image":
        raise ValueError(f"expected --samples >= {MIN_EVAL_SAMPLES} for the {run.kind} run {run.name!r} (a standard "
                         f"error needs two draws), got {samples}")
    problem = run.task.load(run.config)
    metrics = run.task.evaluate(run.flow, problem, run.config, split=split, samples=samples, seed=seed)
    metrics.update(split=split, seed=seed, target=run.name, flow=run.config.model_name,
                   layers=run.task.layers(run.flow, run.config))
    path = Path(out) if out is not None else run.path / "eval.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(metrics, path)
    echo(f"{run.name}: {run.task.summary(metrics, split)}")
    echo(f"written to {path}")
    return metrics
