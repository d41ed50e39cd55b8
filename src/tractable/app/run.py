"""Run directories: fit (or resume) any task into one, and open a finished one again.

A run directory holds ``config.toml`` (the resolved settings, enough to repeat the run), ``metrics.csv`` and
``metrics.jsonl`` (one row per step), ``metrics.json`` (the final figures under stable keys), ``checkpoint.pt``,
``model.safetensors``, the training checkpoints in ``checkpoints/`` and the figures. :func:`run_fit` runs every kind
of fit the same way through its :class:`~tractable.app.tasks.base.Task`; :func:`open_run` rebuilds the trained model
for ``tractable eval``, ``sample`` and ``plot`` and for :func:`load_run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..flow import Flow
from ..training import (
    DistContext,
    collective_failure,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    save_safetensors,
    seed_everything,
    shutdown_distributed,
)
from ..training.checkpoint import list_step_checkpoints
from ..utils import atomic_write_text, write_json
from .config import FitConfig
from .resolve import load_config
from .tasks import Task, task_for

Echo = Callable[[str], None]
CONFIG, CHECKPOINT, METRICS, METRICS_CSV = "config.toml", "checkpoint.pt", "metrics.json", "metrics.csv"
CHECKPOINTS, BEST = "checkpoints", "best.pt"


class RunDirError(ValueError):
    """A run directory that cannot be used: missing, or missing the files a command needs."""


def fit_options(config: FitConfig, out: Path, *, resume: bool, progress: bool, meta: dict[str, Any]) -> dict[str, Any]:
    """The hygiene, logging and checkpoint arguments of the training loop, from ``config.train`` and the run
    directory."""
    t = config.train
    return {
        "warmup": t.warmup, "lr_final": t.lr_final, "ema": t.ema, "max_bad_steps": t.max_bad_steps,
        "detect_anomaly": t.detect_anomaly, "metrics_csv": out / METRICS_CSV, "metrics_jsonl": out / "metrics.jsonl",
        "tensorboard_dir": out / "tensorboard", "checkpoint_dir": out / CHECKPOINTS,
        "checkpoint_every": t.checkpoint_every, "keep_last": t.keep_last, "resume": resume, "progress": progress,
        "meta": meta,
    }


def export_weights(flow: Flow, config: FitConfig, path: Path) -> Path:
    """The trained weights as safetensors (``model.safetensors``), with the configuration in its metadata."""
    return save_safetensors(flow.state_dict(), path, {"config": config.to_toml(), "library_version": __version__})


def run_fit(config: FitConfig, out: str | Path, *, progress: bool = True, echo: Echo = print,
            resume: bool = False) -> dict[str, Any]:
    """Run the fit ``config`` describes, writing the run directory ``out``; return what ``metrics.json`` holds.

    With ``resume``, continue the run in ``out`` from its newest training checkpoint (``out/checkpoints``); the
    result equals the uninterrupted run's. Launched by ``torchrun`` (``WORLD_SIZE > 1``), the process joins the
    process group and trains with DDP; only rank 0 writes files and reports (the others return ``{}``).
    """
    task = task_for(config)
    started = init_distributed(config.train.device, timeout=config.train.timeout)
    try:
        ctx = DistContext.current()
        out = Path(out)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume:  # a fresh run in an old directory: old checkpoints must not be resumed later
                atomic_write_text(out / CONFIG, config.to_toml())
                for _, old in list_step_checkpoints(out / CHECKPOINTS):
                    old.unlink()
                (out / CHECKPOINTS / BEST).unlink(missing_ok=True)
        else:
            echo, progress = (lambda _: None), False
        seed_everything(config.train.seed)
        metrics = _fit(task, config, out, progress=progress, echo=echo, resume=resume, main=ctx.is_main)
        if ctx.is_main:
            echo(f"run directory: {out}")
    except BaseException as e:
        lost = collective_failure(e, config.train.timeout) if started else None  # another rank stopped or left
        if started:
            shutdown_distributed(wait=False)
        if lost is not None:
            raise lost from None  # one line, not the backend's traceback
        raise
    if started:
        shutdown_distributed()
    return metrics


def _fit(task: Task, config: FitConfig, out: Path, *, progress: bool, echo: Echo, resume: bool,
         main: bool) -> dict[str, Any]:
    """Load, build, train; then on rank 0 evaluate, checkpoint, export, write the metrics, report and draw."""
    problem = task.load(config)
    spec = task.spec(problem)
    flow = task.build(config, spec, problem)
    meta = {"config": config.to_dict(), **spec}
    history = task.fit(flow, problem, config, **fit_options(config, out, resume=resume, progress=progress, meta=meta))
    if not main:
        return {}
    flow.eval()
    metrics = task.evaluate(flow, problem, config)
    metrics.update(task.run_metrics(flow, problem, config, history))
    save_checkpoint({"model": flow.state_dict(), "config": config.to_dict(), "step": metrics["steps"], **spec},
                    out / CHECKPOINT)
    export_weights(flow, config, out / "model.safetensors")
    write_json(metrics, out / METRICS)
    echo(f"{task.describe(config, metrics)}, {metrics['steps']} steps in {history.seconds:.1f}s: "
         f"{task.summary(metrics)}")
    if config.output.plots:
        paths = task.plot(flow, problem, config, out, metrics=out / METRICS_CSV, gif=config.output.gif)
        if paths:
            echo("figures: " + ", ".join(str(p) for p in paths.values()))
    return metrics


@dataclass
class Run:
    """A finished run: its directory, the trained flow (in evaluation mode), its task, target and configuration.

    ``target`` is the energy for an energy run, the toy data set for a toy-data run and ``None`` otherwise.
    """

    path: Path
    flow: Flow
    task: Task
    target: Any
    config: FitConfig

    @property
    def kind(self) -> str:
        """``"energy"``, ``"data"`` or ``"image"``."""
        return self.task.kind

    @property
    def name(self) -> str:
        """The target's name, or the data file's name."""
        return self.config.name

    @property
    def context_features(self) -> int:
        """Width of the context the flow is conditioned on (0 for an unconditional flow)."""
        return int(getattr(self.flow, "context_features", 0) or 0)


def run_config(run_dir: str | Path) -> FitConfig:
    """The configuration of the run in ``run_dir`` (its ``config.toml``, translated from the earlier flat layout).

    Raises:
        RunDirError: if the directory or its ``config.toml`` is missing.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory {str(path)!r} does not exist")
    if not (path / CONFIG).is_file():
        raise RunDirError(f"{str(path)!r} is not a run directory: it has no {CONFIG} (written by 'tractable fit')")
    return load_config(path / CONFIG)


def open_run(run_dir: str | Path) -> Run:
    """Load the run in ``run_dir``: its configuration and the trained model from ``checkpoint.pt``.

    Raises:
        RunDirError: if the directory or its ``config.toml`` is missing.
        CheckpointError: if ``checkpoint.pt`` is missing or unreadable.
    """
    path = Path(run_dir)
    config = run_config(path)
    task = task_for(config)
    state = load_checkpoint(path / CHECKPOINT, map_location=config.train.device)
    flow = task.build(config, state)
    flow.load_state_dict(state["model"])
    return Run(path, flow.eval(), task, task.target(config), config)


def load_run(run_dir: str | Path) -> tuple[Flow, Any, FitConfig]:
    """Rebuild the trained flow, its target (an energy or a toy data set, ``None`` for a file or images) and its
    configuration."""
    run = open_run(run_dir)
    return run.flow, run.target, run.config
