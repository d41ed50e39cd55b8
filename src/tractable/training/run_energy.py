"""A reverse-KL run: fit a flow to an unnormalized 2D energy, report exact KL, ESS and log Ẑ, draw the pictures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import FitConfig
from ..objectives import evaluate_reverse
from ..targets.energies import get_target
from .checkpoint import save_checkpoint
from .distributed import DistContext
from .reverse_kl import fit_reverse_kl
from .run import build, export_weights, fit_options, write_json


def run_energy(config: FitConfig, out: Path, *, progress: bool = True,
               echo: Callable[[str], None] = print, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and write the run directory ``out`` for an energy target; return the metrics (``{}`` on
    ranks other than 0 of a distributed run)."""
    target = get_target(config.target)
    flow = build(config, target.features)
    t = config.train
    history = fit_reverse_kl(
        flow, target, steps=t.steps, batch_size=t.batch_size, lr=t.lr, anneal=t.anneal, schedule=t.schedule,
        clip=t.clip, progress=progress, meta={"config": config.to_dict()}, **fit_options(config, out, resume=resume),
    )
    if not DistContext.current().is_main:
        return {}
    flow.eval()
    metrics = evaluate_reverse(flow, target, config.eval.samples)
    metrics["eval_samples"] = metrics.pop("samples")
    metrics.update(
        loss=history.final("loss"), steps=t.steps, seconds=round(history.seconds, 3),
        parameters=sum(p.numel() for p in flow.parameters()), target=target.name, flow=config.model.flow,
        layers=config.model.layers, seed=t.seed, skipped_steps=history.skipped,
    )
    save_checkpoint({"model": flow.state_dict(), "config": config.to_dict(), "step": t.steps}, out / "checkpoint.pt")
    export_weights(flow, config, out / "model.safetensors")
    write_json(metrics, out / "metrics.json")
    echo(f"{target.name} × {config.model.layers} {config.model.flow} layers, {t.steps} steps in {history.seconds:.1f}s: "
         f"KL(q‖p) = {metrics['kl']:.4f} ± {metrics['kl_stderr']:.4f} nats, ESS = {metrics['ess']:.3f}, "
         f"log Ẑ = {metrics['log_z_estimate']:.4f} (log Z = {metrics['log_z']:.4f})")
    if config.output.plots and target.features == 2:
        from ..plots import plot_fit  # plotting stays out of the import path of the mathematics

        paths = plot_fit(flow, target, out, metrics=out / "metrics.csv", gif=config.output.gif)
        echo("figures: " + ", ".join(str(p) for p in paths.values()))
    return metrics
