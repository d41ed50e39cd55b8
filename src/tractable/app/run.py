"""Run directories: fit (or resume) any task into one, and open a finished one again.

A run directory holds ``config.toml`` (the resolved settings, enough to repeat the run), ``metrics.csv`` and
``metrics.jsonl`` (one row per step), ``metrics.json`` (the final figures under stable keys), ``checkpoint.pt``,
``model.safetensors``, the training checkpoints in ``checkpoints/`` and the figures. :func:`run_fit` runs every kind
of fit the same way through its :class:`~tractable.app.tasks.base.Task`; :func:`open_run` rebuilds the trained model
for ``tractable eval``, ``sample`` and ``plot`` and for :func:`load_run`.

A fit writes nothing until everything it was given has been checked, then holds the directory's lock until it exits
(:mod:`~tractable.app.rundir`); every checkpoint records the configuration and the data's fingerprint, which
:func:`open_run` and ``--resume`` compare with ``config.toml`` and the data (:mod:`~tractable.app.fingerprint`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..flow import Flow
from ..training import (
    CheckpointError,
    DistContext,
    collective_failure,
    init_distributed,
    load_checkpoint,
    load_model_state,
    newest_intact_checkpoint,
    save_checkpoint,
    save_safetensors,
    seed_everything,
    shutdown_distributed,
)
from ..training.checkpoint import list_step_checkpoints
from ..utils import atomic_write_text, write_json
from .config import FitConfig
from .fingerprint import check_run, data_source
from .preflight import check_settings
from .resolve import load_config
from .rundir import RunDirError, RunLock, check_out, claim, clear_outputs, lock_holder, take
from .tasks import Task, task_for

Echo = Callable[[str], None]
CONFIG, CHECKPOINT, METRICS, METRICS_CSV = "config.toml", "checkpoint.pt", "metrics.json", "metrics.csv"
CHECKPOINTS, BEST = "checkpoints", "best.pt"

__all__ = ["Run", "RunDirError", "load_run", "open_run", "run_config", "run_fit"]


def fit_options(config: FitConfig, out: Path, *, resume: bool | Path, progress: bool, meta: dict[str, Any],
                on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """The hygiene, logging and checkpoint arguments of the training loop, from ``config.train`` and the run
    directory."""
    t = config.train
    return {
        "warmup": t.warmup, "lr_final": t.lr_final, "ema": t.ema, "max_bad_steps": t.max_bad_steps,
        "detect_anomaly": t.detect_anomaly, "compile": t.compile, "metrics_csv": out / METRICS_CSV,
        "metrics_jsonl": out / "metrics.jsonl",
        "tensorboard_dir": out / "tensorboard", "checkpoint_dir": out / CHECKPOINTS,
        "checkpoint_every": t.checkpoint_every, "checkpoint_at": early_checkpoint(t.steps, t.checkpoint_every),
        "keep_last": t.keep_last, "resume": resume, "progress": progress, "meta": meta, "on_start": on_start,
    }


def early_checkpoint(steps: int, every: int) -> tuple[int, ...]:
    """The extra checkpoint of a run whose ``checkpoint_every`` exceeds a tenth of its steps: at step
    ``ceil(steps / 10)``, so that any run killed after a tenth of its steps can be resumed (none when a regular
    checkpoint comes first)."""
    tenth = -(-steps // 10) if isinstance(steps, int) and steps > 0 else 0
    return (tenth,) if tenth and every > tenth else ()


def export_weights(flow: Flow, config: FitConfig, path: Path) -> Path:
    """The trained weights as safetensors (``model.safetensors``), with the configuration in its metadata."""
    return save_safetensors(flow.state_dict(), path, {"config": config.to_toml(), "library_version": __version__})


def run_fit(config: FitConfig, out: str | Path, *, progress: bool = True, echo: Echo = print,
            resume: bool = False, overwrite: bool = False, eval_threads: int | None = None) -> dict[str, Any]:
    """Run the fit ``config`` describes, writing the run directory ``out``; return what ``metrics.json`` holds.

    Nothing is written before everything is checked: the settings, the data (loaded), the model (built) and the
    training options (by the training loop, which then calls back to take the directory). A new run needs ``out``
    absent or empty, or ``overwrite`` (which clears the old run's checkpoints and results). The directory is locked
    for the whole run (:mod:`~tractable.app.rundir`): a second fit into it is refused naming this one.

    With ``resume``, continue the run in ``out`` from its newest intact training checkpoint (``out/checkpoints``),
    after checking that its ``config.toml`` and data still match the checkpoint's; the result equals the
    uninterrupted run's. A run with no training checkpoint at all starts again from its configuration (with a note).
    ``eval_threads`` (when given) is the torch thread count of the evaluation and figures after training.
    Launched by ``torchrun`` (``WORLD_SIZE > 1``), the process joins the process group and trains with DDP; only rank
    0 locks and writes files and reports (the others return ``{}``).

    Raises:
        RunDirError: for a directory in use, or a new run's ``out`` that holds something without ``overwrite``.
        FingerprintError: when resuming a run whose config.toml or data no longer match its checkpoint.
        ConfigError, CheckpointError, ValueError: for bad settings, data or checkpoints (before anything is written).
    """
    task = task_for(config)
    check_settings(config)
    out = Path(out)
    started = init_distributed(config.train.device, timeout=config.train.timeout)
    lock: RunLock | None = None
    try:
        ctx = DistContext.current()
        if ctx.is_main and not resume:
            check_out(out, overwrite=overwrite)
        if ctx.is_main and resume:  # before reading its checkpoints, which a fit running there may be replacing
            lock = take(out)
        restart = resume and not list_step_checkpoints(out / CHECKPOINTS)
        if restart and ctx.is_main:
            print(f"tractable: note: {str(out)!r} has no training checkpoint (the run stopped before its first); "
                  "starting it again from its config.toml", file=sys.stderr, flush=True)
        if not ctx.is_main:
            echo, progress = (lambda _: None), False

        def take_directory() -> None:  # called by the training loop once every argument is checked
            nonlocal lock
            if not ctx.is_main:
                return
            if lock is None:
                lock = claim(out, overwrite=overwrite)
                atomic_write_text(out / CONFIG, config.to_toml())
            elif restart:  # a run resumed without a checkpoint starts again: nothing of its earlier attempt remains
                clear_outputs(out)

        seed_everything(config.train.seed)
        metrics = _fit(task, config, out, progress=progress, echo=echo, resume=resume and not restart,
                       main=ctx.is_main, on_start=take_directory, eval_threads=eval_threads)
        if ctx.is_main:
            echo(f"run directory: {out}")
    except BaseException as e:
        lost = collective_failure(e, config.train.timeout) if started else None  # another rank stopped or left
        if lock is not None:
            lock.release()
        if started:
            shutdown_distributed(wait=False)
        if lost is not None:
            raise lost from None  # one line, not the backend's traceback
        raise
    if lock is not None:
        lock.release()
    if started:
        shutdown_distributed()
    return metrics


def _resume_from(config: FitConfig, out: Path, problem: Any, main: bool) -> Path:
    """The training checkpoint a resumed run continues from (the newest intact one), checked against the run's
    ``config.toml`` and data."""
    checkpoints = out / CHECKPOINTS
    found = newest_intact_checkpoint(checkpoints, map_location=config.train.device, warn=main)
    if found is None:
        raise CheckpointError(f"no checkpoint to resume from in {str(checkpoints)!r} (expected step-*.pt files)")
    path, state = found
    meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    check_run(config, meta, repr(str(path)), problem=problem,
              hint="put it back as it was, or start a new run (--resume continues a run unchanged)")
    return path


def _fit(task: Task, config: FitConfig, out: Path, *, progress: bool, echo: Echo, resume: bool, main: bool,
         on_start: Callable[[], None], eval_threads: int | None = None) -> dict[str, Any]:
    """Load, build, train; then on rank 0 evaluate, checkpoint, export, write the metrics, report and draw (on
    ``eval_threads`` torch threads when given)."""
    problem = task.load(config)
    spec = task.spec(problem)
    flow = task.build(config, spec, problem)
    data = data_source(config, problem)
    meta = {"config": config.to_dict(), **spec, "data": data}
    start = _resume_from(config, out, problem, main) if resume else False
    history = task.fit(flow, problem, config, **fit_options(config, out, resume=start, progress=progress, meta=meta,
                                                            on_start=on_start))
    if not main:
        return {}
    flow.eval()
    if eval_threads is not None:
        torch.set_num_threads(eval_threads)
    metrics = task.evaluate(flow, problem, config)
    metrics.update(task.run_metrics(flow, problem, config, history))
    if history.compile_seconds:  # the first step's time, apart from the steady state's
        metrics["compile_seconds"] = round(history.compile_seconds, 3)
    save_checkpoint({"model": flow.state_dict(), "config": config.to_dict(), "step": metrics["steps"], **spec,
                     "data": data}, out / CHECKPOINT)
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
        raise RunDirError(f"run directory {str(path)!r} does not exist (expected a directory with the {CONFIG} that "
                          "'tractable fit' writes)")
    if not (path / CONFIG).is_file():
        raise RunDirError(f"{str(path)!r} is not a run directory: it has no {CONFIG} (written by 'tractable fit')")
    return load_config(path / CONFIG)


def open_run(run_dir: str | Path, *, force: bool = False) -> Run:
    """Load the run in ``run_dir``: its configuration and the trained model from ``checkpoint.pt``.

    The checkpoint's configuration and data fingerprint must match ``config.toml`` and the data as it is now
    (:mod:`~tractable.app.fingerprint`); with ``force`` a mismatch is a warning on stderr and ``config.toml`` is
    used as it is. Weights that do not fit the model are refused either way.

    Raises:
        RunDirError: if the directory or its ``config.toml`` is missing, or a fit is writing the run.
        CheckpointError: if ``checkpoint.pt`` is missing or unreadable, or its weights do not fit the model.
        FingerprintError: if ``config.toml`` or the data differ from the checkpoint's (without ``force``).
    """
    path = Path(run_dir)
    config = run_config(path)
    holder = lock_holder(path)
    if holder is not None:
        raise RunDirError(f"run {str(path)!r} is being written by {holder}; wait for it to finish")
    check_settings(config)
    task = task_for(config)
    where = path / CHECKPOINT
    state = load_checkpoint(where, map_location=config.train.device)
    for problem in check_run(config, state, repr(str(where)), force=force,
                             hint="put it back as it was, or pass --force to use it as it is now"):
        print(f"tractable: warning: --force: {problem}", file=sys.stderr, flush=True)
    try:
        flow = task.build(config, state)
    except KeyError as e:
        raise CheckpointError(f"checkpoint {str(where)!r} does not fit this run: it has no {e}") from None
    if "model" not in state:
        raise CheckpointError(f"checkpoint {str(where)!r} holds no 'model'")
    load_model_state(flow, state["model"], where)
    return Run(path, flow.eval(), task, task.target(config), config)


def load_run(run_dir: str | Path, *, force: bool = False) -> tuple[Flow, Any, FitConfig]:
    """Rebuild the trained flow, its target (an energy or a toy data set, ``None`` for a file or images) and its
    configuration (checked as :func:`open_run` does)."""
    run = open_run(run_dir, force=force)
    return run.flow, run.target, run.config
