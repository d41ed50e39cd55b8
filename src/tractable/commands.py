"""The run commands: ``tractable sample``, ``tractable eval`` and ``tractable plot`` on a finished run directory.

Each reads a run directory written by ``tractable fit`` (``config.toml``, ``checkpoint.pt``, ``metrics.csv``) and
rebuilds the trained flow with :func:`tractable.training.run.load_run`. A run is of one *kind* (:func:`run_kind`):
``energy`` (fitted by reverse KL to an unnormalized density), ``data`` (fitted by maximum likelihood) or ``image``
(an image model fitted to digits, MNIST or CIFAR-10, evaluated in bits/dim with importance samples and drawn as image
grids). The per-kind behaviour sits in small tables (:data:`EVALUATORS` here, the figure choice in
:func:`sample_figure`), so a new kind plugs in by adding an entry.

Example:
    >>> from tractable.commands import evaluate_run, sample_run  # doctest: +SKIP
    >>> sample_run("runs/demo", 1000, temperature=0.8)           # doctest: +SKIP
    >>> evaluate_run("runs/demo", samples=20_000)["kl"]          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .config import FitConfig
from .distributions import DiagonalGaussian, GaussianMixture, StandardNormal
from .flow import Flow
from .models.image_flow import ImageFlow
from .training.run import is_energy, load_run, write_json

if TYPE_CHECKING:
    from .training.run_data import DataSplits

Echo = Callable[[str], None]


class RunDirError(ValueError):
    """A run directory that cannot be used: missing, or missing the files a command needs."""


@dataclass
class Run:
    """A finished run: its directory, the trained flow (in evaluation mode), its target and configuration.

    ``target`` is the energy for an energy run, the toy data set for a toy-data run and ``None`` for a file.
    """

    path: Path
    flow: Flow
    target: Any
    config: FitConfig

    @property
    def kind(self) -> str:
        """``"energy"``, ``"data"`` or ``"image"`` (see :func:`run_kind`)."""
        return run_kind(self.config)

    @property
    def context_features(self) -> int:
        """Width of the context the flow is conditioned on (0 for an unconditional flow)."""
        return int(getattr(self.flow, "context_features", 0) or 0)

    @property
    def name(self) -> str:
        """The target's name, or the data file's name."""
        return self.config.target or Path(self.config.data.path).name


def run_kind(config: FitConfig) -> str:
    """The kind of run a configuration describes: ``"energy"`` (reverse KL), ``"data"`` (maximum likelihood) or
    ``"image"`` (an image model, maximum likelihood on the dequantization bound)."""
    from .training.run_images import is_image

    return "image" if is_image(config) else "energy" if is_energy(config) else "data"


def open_run(run_dir: str | Path) -> Run:
    """Load the run in ``run_dir``.

    Raises:
        RunDirError: if the directory or its ``config.toml`` is missing.
        CheckpointError: if ``checkpoint.pt`` is missing or unreadable.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory {str(path)!r} does not exist")
    if not (path / "config.toml").is_file():
        raise RunDirError(f"{str(path)!r} is not a run directory: it has no config.toml (written by 'tractable fit')")
    flow, target, config = load_run(path)
    return Run(path, flow, target, config)


def load_splits(run: Run) -> DataSplits:
    """The run's train/validation/test data, regenerated exactly as the fit drew them (``run_data.load_data``).

    Raises:
        RunDirError: if the run was fitted to a data file that no longer exists.
    """
    from .training.run_data import load_data

    path = run.config.data.path
    if path and not Path(path).is_file():
        raise RunDirError(f"run {run.name!r} was fitted to the data file {path!r}, which does not exist (relative "
                          f"paths are read from the current directory); its splits are regenerated from that file")
    return load_data(run.config)


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


@torch.no_grad()
def sample_tempered(flow: Flow, n: int, *, temperature: float = 1.0, context: Tensor | None = None) -> Tensor:
    """``n`` samples of ``flow`` whose base draws are tempered: the latent's spread around its mean scaled by ``T``.

    For a standard-normal base ``z = T·ε``; for a diagonal Gaussian ``z = μ + T·σ·ε``; for a Gaussian mixture the
    component is drawn as usual and its standard deviation scaled, ``z = μ_k + T·σ_k·ε``. So ``T < 1`` concentrates
    the samples on the flow's typical set and ``T = 1`` is ordinary sampling (:meth:`Flow.sample`). The tempered
    samples follow the pushforward of the tempered base, not ``q(x)^(1/T²)``.

    Args:
        flow: the flow.
        n: the number of samples.
        temperature: ``T > 0``.
        context: one context ``(1, C)`` for all samples or one per sample ``(n, C)`` (conditional flows).

    Raises:
        ValueError: for ``T <= 0`` or not finite, or ``T != 1`` with a base for which it is not defined.
    """
    _check_count(n, "the number of samples")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"expected a temperature > 0, got {temperature}")
    if context is not None and context.shape[0] == 1 and n != 1:
        context = context.expand(n, *context.shape[1:])
    if isinstance(flow, ImageFlow):  # discrete images, the latent (factor-out priors included) tempered
        return flow.sample(n, context, temperature=temperature)
    if temperature == 1.0:
        return flow.sample(n, context)
    base = flow.base
    if isinstance(base, StandardNormal):
        z = temperature * base.sample(n)
    elif isinstance(base, DiagonalGaussian):
        z = base.loc + temperature * (base.sample(n) - base.loc)
    elif isinstance(base, GaussianMixture):
        k = torch.multinomial(torch.softmax(base.logits, -1), n, replacement=True)
        eps = torch.randn((n, *base.event_shape), dtype=base.loc.dtype, device=base.loc.device)
        z = base.loc[k] + temperature * eps * torch.exp(base.log_scale[k])
    else:
        raise ValueError(f"temperature is defined for Gaussian bases (StandardNormal, DiagonalGaussian, "  # noqa: TRY004
                         f"GaussianMixture); got temperature {temperature} with base {type(base).__name__}")
    return flow.transform.inverse(z, context)[0]


def sample_figure(run: Run, x: Tensor, path: Path, title: str) -> Path | None:
    """The picture of samples ``x`` for the run's kind of data, or ``None`` when there is none for its shape.

    2D flows: a scatter (over the target's contours for an energy) beside a histogram; image models: a grid of the
    images.
    """
    if run.kind == "image" and isinstance(run.flow, ImageFlow):
        from .plots.images import plot_image_grid

        return plot_image_grid(x, path, levels=run.flow.levels, title=title)
    if tuple(run.flow.event_shape) == (2,):
        from .plots.samples import plot_sample_set  # plotting stays out of the import path of the mathematics

        target = run.target if run.kind == "energy" else None
        box = None if target is not None else getattr(run.target, "box", None)
        return plot_sample_set(x, path, target=target, box=box, title=title)
    return None


def sample_run(run_dir: str | Path, n: int, *, out: str | Path | None = None, seed: int = 0,
               temperature: float = 1.0, context: str | None = None, figure: bool = True,
               echo: Echo = print) -> dict[str, Path]:
    """Draw ``n`` samples from a run's flow into a ``.npy`` file (and a figure for 2D flows).

    Args:
        run_dir: the run directory.
        n: the number of samples.
        out: the ``.npy`` file (default ``RUN_DIR/samples.npy``); the figure goes beside it as ``STEM-scatter.png``
            (``STEM-grid.png`` for images, saved as ``uint8`` levels ``(n, C, H, W)``).
        seed: seeds the draws (the same seed gives the same samples).
        temperature: scales the base's latent spread (see :func:`sample_tempered`).
        context: for a conditional run, as :func:`parse_context` reads it.
        figure: also write the figure.
        echo: where the summary lines go.

    Returns:
        ``{"samples": path}`` and, when written, ``{"figure": path}``.
    """
    _check_count(n, "-n (the number of samples)")
    run = open_run(run_dir)
    out = Path(out) if out is not None else run.path / "samples.npy"
    if out.suffix != ".npy":
        raise ValueError(f"expected --out to be a .npy file, got {str(out)!r}")
    c = parse_context(context, run, n)
    torch.manual_seed(seed)
    x = sample_tempered(run.flow, n, temperature=temperature, context=c)
    out.parent.mkdir(parents=True, exist_ok=True)
    array = x.detach().cpu().numpy()
    if isinstance(run.flow, ImageFlow) and run.flow.levels <= 256:
        array = array.astype(np.uint8)
    np.save(out, array)
    paths = {"samples": out}
    echo(f"{n} samples of shape {tuple(run.flow.event_shape)} from {run.name!r} (temperature {temperature:g}, "
         f"seed {seed}) written to {out}")
    if figure:
        label = f"{run.name}: {n:,} samples, T = {temperature:g}"
        if c is not None and c.shape[0] == 1:
            label += ", c = " + ",".join(f"{v:g}" for v in c[0].tolist())
        suffix = "grid" if run.kind == "image" else "scatter"
        written = sample_figure(run, x, out.with_name(f"{out.stem}-{suffix}.png"), label)
        if written is not None:
            paths["figure"] = written
            echo(f"figure: {written}")
    return paths


# ------------------------------------------------------------------------------------------------------- plot


def plot_run(run_dir: str | Path, *, out_dir: str | Path | None = None, gif: bool | None = None,
             echo: Echo = print) -> dict[str, Path]:
    """Draw a run's figures again from its checkpoint and ``metrics.csv``, as ``tractable fit`` drew them.

    Energies: densities, samples, layer panel (and GIF) and training curves. Data: the density and sample figures
    on the regenerated test split (2D) and the training curves.

    Args:
        run_dir: the run directory.
        out_dir: where to write (default the run directory).
        gif: write the layer animation (energies; default what the run's config says).
        echo: where the summary line goes.

    Returns:
        ``{name: path}`` for each file written.
    """
    run = open_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    csv = run.path / "metrics.csv"
    metrics = csv if csv.is_file() else None
    if metrics is None:
        echo(f"note: {csv} is missing; no training curves")
    if run.kind == "energy":
        from .plots import plot_fit

        paths = plot_fit(run.flow, run.target, out, metrics=metrics,
                         gif=run.config.output.gif if gif is None else gif)
    elif run.kind == "image" and isinstance(run.flow, ImageFlow):
        from .plots.images import plot_image_fit
        from .training.run_images import load_image_data

        im = run.config.image
        test = load_image_data(run.config).test.to(next(run.flow.parameters()).device)
        paths = plot_image_fit(run.flow, out, data=test, metrics=metrics, n=im.grid, temperature=im.temperature,
                               title=run.name, seed=run.config.train.seed)
    else:
        from .plots.data import plot_data_fit

        data = load_splits(run)
        device = next(run.flow.parameters()).device
        context = None if data.test_context is None else data.test_context.to(device)
        paths = plot_data_fit(run.flow, out, data=data.test.to(device), dataset=data.dataset, metrics=metrics,
                              context=context)
    if not paths:
        raise ValueError(f"nothing to draw for run {run.name!r}: no 2D flow and no metrics.csv")
    echo("figures: " + ", ".join(str(p) for p in paths.values()))
    return paths


# ------------------------------------------------------------------------------------------------------- eval

SPLITS = ("test", "val", "train")


def _evaluate_energy(run: Run, *, samples: int | None, split: str, seed: int) -> dict[str, Any]:
    """Exact KL(q‖p), its standard error, ESS and log Ẑ from fresh samples (the run's ``eval.samples`` by default)."""
    from .objectives import evaluate_reverse

    if split != "test":
        raise ValueError(f"an energy run is evaluated on fresh samples; --split applies to data runs, got {split!r}")
    torch.manual_seed(seed)
    metrics = evaluate_reverse(run.flow, run.target, samples or run.config.eval.samples)
    metrics["eval_samples"] = metrics.pop("samples")
    return metrics


def _evaluate_data(run: Run, *, samples: int | None, split: str, seed: int) -> dict[str, Any]:
    """NLL on a split regenerated from the config (toy data from its seed and sizes, a file re-read and re-split
    with its seed), with the exact KL gap where the data's entropy is known; keys as in ``metrics.json`` with
    ``test_`` replaced by the split's name. ``samples`` keeps only the split's first rows."""
    from .targets.toy import GaussianMixtureData
    from .training.max_likelihood import evaluate_conditional_toy, evaluate_nll, evaluate_toy

    data = load_splits(run)
    x, c = {"train": (data.train, data.train_context), "val": (data.val, data.val_context),
            "test": (data.test, data.test_context)}[split]
    if samples is not None:
        x, c = x[:samples], None if c is None else c[:samples]
    device = next(run.flow.parameters()).device
    x, c = x.to(device), None if c is None else c.to(device)
    if data.dataset is not None and c is None:
        metrics: dict[str, Any] = evaluate_toy(run.flow, data.dataset, test=x)
        metrics.pop("test_samples", None)
    else:
        nll, se = evaluate_nll(run.flow, x, c)
        metrics = {"test_nll": nll, "test_nll_stderr": se, "entropy": math.nan, "kl_gap": math.nan,
                   "kl_paired": math.nan, "kl_paired_stderr": math.nan}
        if isinstance(data.dataset, GaussianMixtureData) and c is not None:
            torch.manual_seed(seed)
            per_label = evaluate_conditional_toy(run.flow, data.dataset)
            metrics.update({f"label_{k}": v for k, v in per_label.items()})
    metrics = {(f"{split}_" + k[5:] if k.startswith("test_") else k): v for k, v in metrics.items()}
    metrics[f"{split}_rows"] = len(x)
    return metrics


def _evaluate_image(run: Run, *, samples: int | None, split: str, seed: int) -> dict[str, Any]:
    """Bits/dim of a split of the run's images (regenerated as the fit drew it): the single-sample dequantization
    bound ``{split}_bpd`` (± ``{split}_bpd_stderr``) and the importance-weighted one ``{split}_bpd_iw`` with
    ``samples`` draws (default the run's ``image.iw_samples``), the noise drawn from ``seed``; with the fit's seed
    (0) ``test_bpd`` and ``test_bpd_iw`` equal ``metrics.json``'s."""
    from .training.run_images import evaluate_bpd, load_image_data

    if not isinstance(run.flow, ImageFlow):
        raise TypeError(f"expected an image model in run {run.name!r}, got {type(run.flow).__name__}")
    data = load_image_data(run.config)
    x = {"train": data.train, "val": data.val, "test": data.test}[split].to(next(run.flow.parameters()).device)
    iw = samples if samples is not None else run.config.image.iw_samples
    r = evaluate_bpd(run.flow, x, iw_samples=iw, batch_size=max(run.config.train.batch_size, 256), seed=seed)
    return {f"{split}_bpd": r["bpd"], f"{split}_bpd_stderr": r["bpd_stderr"], f"{split}_bpd_iw": r["bpd_iw"],
            "iw_samples": iw, f"{split}_nll": r["nll"], f"{split}_rows": len(x)}


#: How each kind of run is evaluated: ``fn(run, samples=N | None, split=NAME, seed=S) -> metrics``. Image runs:
#: bits/dim, ``(NLL + D·log k) / (D·log 2)``, with the importance-weighted estimate over ``samples`` draws of the
#: dequantizer (DESIGN.md §5).
EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "energy": _evaluate_energy, "data": _evaluate_data, "image": _evaluate_image,
}


def _summary(run: Run, m: dict[str, Any], split: str) -> str:
    if run.kind == "energy":
        return (f"{run.name}: KL(q‖p) = {m['kl']:.4f} ± {m['kl_stderr']:.4f} nats, ESS = {m['ess']:.3f}, "
                f"log Ẑ = {m['log_z_estimate']:.4f} (log Z = {m['log_z']:.4f}), {m['eval_samples']:,} samples")
    if run.kind == "image":
        return (f"{run.name}: {split} {m[f'{split}_bpd']:.4f} ± {m[f'{split}_bpd_stderr']:.4f} bits/dim, "
                f"importance-weighted ({m['iw_samples']} samples) {m[f'{split}_bpd_iw']:.4f} "
                f"({m[f'{split}_rows']:,} images)")
    line = (f"{run.name}: {split} NLL = {m[f'{split}_nll']:.4f} ± {m[f'{split}_nll_stderr']:.4f} nats "
            f"({m[f'{split}_rows']:,} rows)")
    from .training.run_data import gap_summary

    return line + gap_summary(m)


def evaluate_run(run_dir: str | Path, *, samples: int | None = None, split: str = "test", seed: int = 0,
                 out: str | Path | None = None, echo: Echo = print) -> dict[str, Any]:
    """Recompute a run's test metrics from its checkpoint, print a summary and write them as JSON.

    Energies: exact ``KL(q‖p)`` (log Z by quadrature), ``ess``, ``log_z_estimate`` from ``samples`` fresh draws
    (default the run's ``eval.samples``), seeded by ``seed``. Data: the NLL of the ``split`` (``test``, ``val`` or
    ``train``), regenerated exactly as the fit drew it, so ``eval.json``'s ``test_nll`` equals ``metrics.json``'s;
    ``samples`` keeps only its first rows.

    Args:
        run_dir: the run directory.
        samples: energies: fresh samples; data: at most this many rows of the split (default all); images: the
            importance samples of ``{split}_bpd_iw`` (default the run's ``image.iw_samples``).
        split: the data split to score.
        seed: seeds the fresh samples.
        out: the JSON file (default ``RUN_DIR/eval.json``); NaN is written as ``null``.
        echo: where the summary line goes.

    Returns:
        The metrics, with ``split``, ``seed`` and the run's ``target``, ``flow``, ``layers``.
    """
    if samples is not None:
        _check_count(samples, "--samples")
    if split not in SPLITS:
        raise ValueError(f"expected --split to be one of {', '.join(SPLITS)}, got {split!r}")
    run = open_run(run_dir)
    evaluator = EVALUATORS.get(run.kind)
    if evaluator is None:
        raise ValueError(f"no evaluation for runs of kind {run.kind!r}; expected one of {', '.join(EVALUATORS)}")
    metrics = evaluator(run, samples=samples, split=split, seed=seed)
    m = run.config.model
    metrics.update(split=split, seed=seed, target=run.name, flow=m.flow, layers=m.layers)
    path = Path(out) if out is not None else run.path / "eval.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(metrics, path)
    echo(_summary(run, metrics, split))
    echo(f"written to {path}")
    return metrics


__all__ = [
    "EVALUATORS", "Run", "RunDirError", "evaluate_run", "load_splits", "open_run", "parse_context", "plot_run", "run_kind",
    "sample_figure", "sample_run", "sample_tempered",
]
