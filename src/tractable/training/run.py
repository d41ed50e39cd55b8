"""Run directories: build the model and target from a :class:`FitConfig`, train, evaluate, write everything.

A run directory holds ``config.toml`` (the resolved settings, enough to repeat the run), ``metrics.csv`` (one row
per step), ``metrics.json`` (the final figures under stable keys), ``checkpoint.pt`` and the figures. An energy
target is fitted by reverse KL (:mod:`.run_energy`), data by maximum likelihood (:mod:`.run_data`).
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
            echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the fit ``config`` describes, writing the run directory ``out``; return what ``metrics.json`` holds."""
    from .reverse_kl import seed_everything

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(config.to_toml())
    seed_everything(config.train.seed)
    if is_energy(config):
        from .run_energy import run_energy

        metrics = run_energy(config, out, progress=progress, echo=echo)
    else:
        from .run_data import run_data

        metrics = run_data(config, out, progress=progress, echo=echo)
    echo(f"run directory: {out}")
    return metrics


def load_run(run_dir: str | Path) -> tuple[Flow, Any, FitConfig]:
    """Rebuild the trained flow, its target (an energy or a toy data set, ``None`` for a file) and its configuration."""
    from ..targets.energies import get_target
    from ..targets.tabular import StandardizeTransform
    from ..targets.toy import get_dataset

    run_dir = Path(run_dir)
    config = FitConfig.from_toml(run_dir / "config.toml")
    state = load_checkpoint(run_dir / "checkpoint.pt", map_location=config.train.device)
    if is_energy(config):
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
