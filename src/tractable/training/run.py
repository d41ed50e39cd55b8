"""A run directory: build the model and target from a :class:`FitConfig`, train, evaluate, write everything.

A run directory holds ``config.toml`` (the resolved settings, enough to repeat the run), ``metrics.csv`` (one row
per step), ``metrics.json`` (the final figures under stable keys), ``checkpoint.pt`` and the figures.
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
from ..models.planar import FLOW_TYPES, PlanarFlow
from ..objectives import evaluate_reverse
from ..targets.energies import Energy, get_target
from .checkpoint import load_checkpoint, save_checkpoint
from .reverse_kl import fit_reverse_kl, seed_everything

DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The keys of ``metrics.json`` for a reverse-KL run, documented in the README.
REVERSE_KL_KEYS = (
    "kl", "kl_stderr", "ess", "log_z", "log_z_estimate", "elbo", "loss", "steps", "seconds", "eval_samples",
    "parameters", "target", "flow", "layers", "seed",
)


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write JSON atomically (temporary file + ``os.replace``); NaN becomes ``null``."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(clean, indent=2) + "\n")
    os.replace(tmp, path)


def build(config: FitConfig) -> tuple[Flow, Energy]:
    """The model and target a configuration describes (parameters freshly initialised from the current RNG)."""
    target = get_target(config.target)
    if config.model.flow not in FLOW_TYPES:
        raise ConfigError(f"config key 'model.flow' must be one of {', '.join(FLOW_TYPES)}, got {config.model.flow!r}")
    if config.train.dtype not in DTYPES:
        raise ConfigError(f"config key 'train.dtype' must be one of {', '.join(DTYPES)}, got {config.train.dtype!r}")
    flow = PlanarFlow(target.features, config.model.layers, flow=config.model.flow, base=config.model.base)
    return flow.to(device=config.train.device, dtype=DTYPES[config.train.dtype]), target


def run_fit(config: FitConfig, out: str | Path, *, progress: bool = True,
            echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a reverse-KL fit as ``config`` describes, writing the run directory ``out``; return ``metrics.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(config.to_toml())
    seed_everything(config.train.seed)
    flow, target = build(config)
    t = config.train
    history = fit_reverse_kl(
        flow, target, steps=t.steps, batch_size=t.batch_size, lr=t.lr, anneal=t.anneal, schedule=t.schedule,
        clip=t.clip, progress=progress, metrics_csv=out / "metrics.csv",
    )
    flow.eval()
    metrics = evaluate_reverse(flow, target, config.eval.samples)
    metrics["eval_samples"] = metrics.pop("samples")
    metrics.update(
        loss=history.final("loss"), steps=t.steps, seconds=round(history.seconds, 3),
        parameters=sum(p.numel() for p in flow.parameters()), target=target.name, flow=config.model.flow,
        layers=config.model.layers, seed=t.seed,
    )
    save_checkpoint({"model": flow.state_dict(), "config": config.to_dict(), "step": t.steps}, out / "checkpoint.pt")
    write_json(metrics, out / "metrics.json")
    echo(f"{target.name} × {config.model.layers} {config.model.flow} layers, {t.steps} steps in {history.seconds:.1f}s: "
         f"KL(q‖p) = {metrics['kl']:.4f} ± {metrics['kl_stderr']:.4f} nats, ESS = {metrics['ess']:.3f}, "
         f"log Ẑ = {metrics['log_z_estimate']:.4f} (log Z = {metrics['log_z']:.4f})")
    if config.output.plots:
        from ..plots import plot_fit  # plotting stays out of the import path of the mathematics

        paths = plot_fit(flow, target, out, metrics=out / "metrics.csv", gif=config.output.gif)
        echo("figures: " + ", ".join(str(p) for p in paths.values()))
    echo(f"run directory: {out}")
    return metrics


def load_run(run_dir: str | Path) -> tuple[Flow, Energy, FitConfig]:
    """Rebuild the trained flow, its target and its configuration from a run directory."""
    run_dir = Path(run_dir)
    config = FitConfig.from_toml(run_dir / "config.toml")
    flow, target = build(config)
    state = load_checkpoint(run_dir / "checkpoint.pt", map_location=config.train.device)
    flow.load_state_dict(state["model"])
    return flow.eval(), target, config
