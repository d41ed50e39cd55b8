"""Fitting an unnormalized 2D energy by reverse KL: exact KL, ESS and log Ẑ, the density and layer pictures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...flow import Flow
from ...objectives import evaluate_reverse
from ...plots import plot_fit
from ...plots.samples import plot_sample_set
from ...targets.energies import Energy, get_target
from ...training import fit_reverse_kl
from ..config import MODEL_NAME, FitConfig
from ..models import build_vector
from .base import PLOT_FEATURES, TEST, parameter_count, place


class EnergyTask:
    """Reverse KL to an energy (``ring``, ``u1`` … ``u4``, ``mixture``): 16 planar layers with a learnable diagonal
    Gaussian base, and :class:`~tractable.app.config.TrainConfig`'s defaults (10,000 steps at lr 2e-3, β annealed
    over the first half)."""

    kind = "energy"
    images = False
    defaults: Mapping[str, Any] = {"model": {MODEL_NAME: "planar", "layers": 16, "base": "diagonal"}}
    metrics_keys = (
        "kl", "kl_stderr", "ess", "log_z", "log_z_estimate", "elbo", "loss", "steps", "seconds", "eval_samples",
        "parameters", "target", "flow", "layers", "seed",
    )
    figure_suffix = "scatter"

    def load(self, config: FitConfig) -> Energy:
        return get_target(config.target)

    def spec(self, problem: Energy) -> dict[str, Any]:
        return {}

    def build(self, config: FitConfig, spec: Mapping[str, Any], problem: Energy | None = None) -> Flow:
        target = problem if problem is not None else self.load(config)
        return place(build_vector(config.model, target.features), config)

    def fit(self, flow: Flow, problem: Energy, config: FitConfig, **options: Any) -> Any:
        t = config.train
        return fit_reverse_kl(flow, problem, steps=t.steps, batch_size=t.batch_size, lr=t.lr, anneal=t.anneal,
                              schedule=t.schedule, clip=t.clip, **options)

    def evaluate(self, flow: Flow, problem: Energy, config: FitConfig, *, split: str = TEST, samples: int | None = None,
                 seed: int | None = None) -> dict[str, Any]:
        """Exact KL(q‖p), its standard error, ESS and log Ẑ from fresh samples (the run's ``eval.samples`` by
        default)."""
        if split != TEST:
            raise ValueError(
                f"an energy run is evaluated on fresh samples; --split applies to data runs, got {split!r}"
            )
        if seed is not None:
            torch.manual_seed(seed)
        metrics = evaluate_reverse(flow, problem, samples or config.eval.samples)
        metrics["eval_samples"] = metrics.pop("samples")
        return metrics

    def run_metrics(self, flow: Flow, problem: Energy, config: FitConfig, history: Any) -> dict[str, Any]:
        t = config.train
        return {"loss": history.final("loss"), "steps": t.steps, "seconds": round(history.seconds, 3),
                "parameters": parameter_count(flow), "target": problem.name, "flow": config.model_name,
                "layers": self.layers(flow, config), "seed": t.seed, "skipped_steps": history.skipped}

    def layers(self, flow: Flow, config: FitConfig) -> int | None:
        return config.model.get("layers")

    def describe(self, config: FitConfig, metrics: Mapping[str, Any]) -> str:
        return f"{config.name} × {metrics['layers']} {config.model_name} layers"

    def summary(self, metrics: Mapping[str, Any], split: str = TEST) -> str:
        m = metrics
        return (f"KL(q‖p) = {m['kl']:.4f} ± {m['kl_stderr']:.4f} nats, ESS = {m['ess']:.3f}, "
                f"log Ẑ = {m['log_z_estimate']:.4f} (log Z = {m['log_z']:.4f}), {m['eval_samples']:,} samples")

    def target(self, config: FitConfig) -> Energy:
        return self.load(config)

    def plot(self, flow: Flow, problem: Energy, config: FitConfig, out: Path, *, metrics: Path | None,
             gif: bool) -> dict[str, Path]:
        if problem.features != PLOT_FEATURES:
            return {}
        return plot_fit(flow, problem, out, metrics=metrics, gif=gif)

    def sample_figure(self, flow: Flow, target: Energy, x: Tensor, path: Path, title: str) -> Path | None:
        if tuple(flow.event_shape) != (PLOT_FEATURES,):
            return None
        return plot_sample_set(x, path, target=target, title=title)
