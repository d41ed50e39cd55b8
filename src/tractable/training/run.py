"""Run directories: build the model and target from a :class:`FitConfig`, train, evaluate, write everything.

A run directory holds ``config.toml`` (the resolved settings, enough to repeat the run), ``metrics.csv`` (one row
per step), ``metrics.json`` (the final figures under stable keys), ``checkpoint.pt`` and the figures. An energy
target is fitted by reverse KL (:mod:`.run_energy`), data by maximum likelihood (:mod:`.run_data`), an image data
set (digits, mnist, cifar10) by maximum likelihood on the dequantization bound (:mod:`.run_images`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, FitConfig
from ..flow import Flow
from ..models.registry import MODELS, build_model
from ..targets.energies import TARGETS
from ..transforms.base import Compose
from .checkpoint import load_checkpoint

DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The keys of ``metrics.json`` for a reverse-KL run, documented in the README.
REVERSE_KL_KEYS = (
    "kl", "kl_stderr", "ess", "log_z", "log_z_estimate", "elbo", "loss", "steps", "seconds", "eval_samples",
    "parameters", "target", "flow", "layers", "seed",
)
#: The keys of ``metrics.json`` for a maximum-likelihood run (``entropy``, ``kl_gap`` and ``kl_paired`` are null
#: where the data's density is unknown), documented in the README.
DATA_KEYS = (
    "test_nll", "test_nll_stderr", "entropy", "kl_gap", "kl_paired", "kl_paired_stderr", "best_val_nll",
    "best_step", "stopped_early", "steps", "seconds", "parameters", "target", "flow", "layers", "seed", "features",
    "context_features", "train_rows", "val_rows", "test_rows",
)


def is_energy(config: FitConfig) -> bool:
    """Whether the run fits an energy by reverse KL (else data by maximum likelihood)."""
    return not config.data.path and config.target in TARGETS


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write JSON atomically (temporary file + ``os.replace``); NaN becomes ``null``."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({k: clean(v) for k, v in data.items()}, indent=2) + "\n")
    os.replace(tmp, path)


def build(config: FitConfig, features: int, context_features: int = 0) -> Flow:
    """The (freshly initialised) model a configuration describes, on its device and in its dtype."""
    m, t = config.model, config.train
    if m.flow not in MODELS:
        raise ConfigError(f"config key 'model.flow' must be one of {', '.join(MODELS)}, got {m.flow!r}")
    if t.dtype not in DTYPES:
        raise ConfigError(f"config key 'train.dtype' must be one of {', '.join(DTYPES)}, got {t.dtype!r}")
    flow = build_model(m.flow, features, layers=m.layers, base=m.base, hidden=m.hidden, blocks=m.blocks, bins=m.bins,
                       bound=m.bound, context_features=context_features)
    return flow.to(device=t.device, dtype=DTYPES[t.dtype])


def run_fit(config: FitConfig, out: str | Path, *, progress: bool = True,
            echo: Callable[[str], None] = print, resume: bool = False) -> dict[str, Any]:
    """Run the fit ``config`` describes, writing the run directory ``out``; return what ``metrics.json`` holds.

    With ``resume``, continue the run in ``out`` from its newest training checkpoint (``out/checkpoints``); the
    result equals the uninterrupted run's. Launched by ``torchrun`` (``WORLD_SIZE > 1``), the process joins the
    process group and trains with DDP; only rank 0 writes files and reports (the others return ``{}``).
    """
    from .checkpoint import list_step_checkpoints
    from .distributed import DistContext, init_distributed, shutdown_distributed
    from .hygiene import seed_everything

    started = init_distributed(config.train.device)
    try:
        ctx = DistContext.current()
        out = Path(out)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume:  # a fresh run in an old directory: old checkpoints must not be resumed later
                (out / "config.toml").write_text(config.to_toml())
                for _, old in list_step_checkpoints(out / "checkpoints"):
                    old.unlink()
                (out / "checkpoints" / "best.pt").unlink(missing_ok=True)
        else:
            echo, progress = (lambda _: None), False
        seed_everything(config.train.seed)
        from .run_images import is_image

        if is_image(config):
            from .run_images import run_images

            metrics = run_images(config, out, progress=progress, echo=echo, resume=resume)
        elif is_energy(config):
            from .run_energy import run_energy

            metrics = run_energy(config, out, progress=progress, echo=echo, resume=resume)
        else:
            from .run_data import run_data

            metrics = run_data(config, out, progress=progress, echo=echo, resume=resume)
        echo(f"run directory: {out}")
    except BaseException:
        if started:
            shutdown_distributed(wait=False)
        raise
    if started:
        shutdown_distributed()
    return metrics


def fit_options(config: FitConfig, out: Path, *, resume: bool) -> dict[str, Any]:
    """The hygiene, logging and checkpoint arguments both loops take, from ``config.train`` and the run directory."""
    t = config.train
    return {
        "warmup": t.warmup, "lr_final": t.lr_final, "ema": t.ema, "max_bad_steps": t.max_bad_steps, "detect_anomaly": t.detect_anomaly,
        "metrics_csv": out / "metrics.csv", "metrics_jsonl": out / "metrics.jsonl",
        "tensorboard_dir": out / "tensorboard", "checkpoint_dir": out / "checkpoints",
        "checkpoint_every": t.checkpoint_every, "keep_last": t.keep_last, "resume": resume,
    }


def export_weights(flow: Flow, config: FitConfig, path: Path) -> Path:
    """The trained weights as safetensors (``model.safetensors``), with the configuration in its metadata."""
    from .. import __version__
    from .export import save_safetensors

    return save_safetensors(flow.state_dict(), path, {"config": config.to_toml(), "library_version": __version__})


def load_run(run_dir: str | Path) -> tuple[Flow, Any, FitConfig]:
    """Rebuild the trained flow, its target (an energy or a toy data set, ``None`` for a file or images) and its
    configuration."""
    from ..targets.energies import get_target
    from ..targets.tabular import StandardizeTransform
    from ..targets.toy import get_dataset
    from .run_images import build_image, is_image

    run_dir = Path(run_dir)
    config = FitConfig.from_toml(run_dir / "config.toml")
    state = load_checkpoint(run_dir / "checkpoint.pt", map_location=config.train.device)
    if is_image(config):
        target = None
        shape = tuple(int(s) for s in state["shape"])
        flow = build_image(config, shape, int(state["levels"]))  # type: ignore[arg-type]
    elif is_energy(config):
        target = get_target(config.target)
        flow = build(config, target.features)
    else:
        target = None if config.data.path else get_dataset(config.target)
        features, context_features = int(state["features"]), int(state["context_features"])
        flow = build(config, features, context_features)
        if config.data.standardize:
            flow.transform = Compose(StandardizeTransform([0.0] * features, [1.0] * features), flow.transform)
    flow.load_state_dict(state["model"])
    return flow.eval(), target, config
