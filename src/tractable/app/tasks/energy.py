"""Fitting an unnormalized energy by reverse KL: a built-in 2D energy (exact KL, ESS and log Ẑ, the density and layer
pictures) or a user's own log-density (``--energy module:function --features D``: ESS, log Ẑ and the ELBO, since its
log Z is unknown; pictures in 2D only)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...diagnostics import reverse_summary
from ...flow import Flow
from ...objectives import evaluate_reverse
from ...plots import plot_fit
from ...plots.samples import plot_sample_set
from ...targets.energies import Energy, get_target
from ...training import fit_reverse_kl
from ..config import MODEL_NAME, FitConfig
from ..models import build_vector, one_feature_warning
from .base import PLOT_FEATURES, TEST, dtype, parameter_count, place
from .user_energy import FunctionEnergy, load_energy

#: Above this many dimensions the default flow is :data:`HIGH_DIMENSIONAL_MODEL`, not planar layers.
PLANAR_FEATURES = 2
#: The default model above 2D: an inverse autoregressive flow (one-pass sampling with exact log q, so reverse KL costs
#: one MADE pass per layer) with a learnable diagonal Gaussian base. On the 31-D logistic-regression posterior of
#: benchmarks/logistic_posterior.py it reaches the ESS docs/guide/variational-inference.md reports where 16 planar
#: layers stall near 0.5: a planar layer bends space along one direction only, so 16 of them cannot represent a 31-D
#: covariance.
HIGH_DIMENSIONAL_MODEL: Mapping[str, Any] = {MODEL_NAME: "iaf", "layers": 5, "hidden": 64, "base": "diagonal"}
#: Above 2D the target is not annealed (any model). Tempered, ``β log p̃`` with ``β`` from 0.01, a 10-D funnel
#: (v ~ N(0, 9), z | v ~ N(0, e^v I), log Z = 10.288) is nearly flat at first: the IAF followed it far out and ended
#: at an ELBO of 2.95 and -10.2 (seeds 0, 1; 10,000 steps), against 10.287 and 10.287 without annealing. Elsewhere
#: above 2D annealing bought little: on a 31-D logistic posterior -26.779 against -26.794 without (ESS 0.92 against
#: 0.87-0.89), on an 8-D two-mode mixture 8.043 either way (both modes kept). Annealing along the geometric path from
#: the standard normal instead (Neal 2001) fixed the funnel (10.283) but lost a mode of the mixture (7.21). In 2D
#: annealing is kept: with planar layers it did better on a banana (ELBO 1.807, ESS 0.88 against 1.791, 0.15).
#: The runs: benchmarks/results/anneal_user_energies.txt.
HIGH_DIMENSIONAL_TRAIN: Mapping[str, Any] = {"anneal": 0.0}


#: The spline flows, whose interval ``[-bound, bound]`` is in the density's own units for an energy: the CLI puts a
#: learnable affine map in front of their splines (``NSF(affine=True)``).
SPLINE_MODELS = ("nsf", "nsf-ar")


class EnergyTask:
    """Reverse KL to an energy (``ring``, ``u1`` … ``u4``, ``mixture``, or ``--energy module:function``): 16 planar
    layers with a learnable diagonal Gaussian base in 2D, :data:`HIGH_DIMENSIONAL_MODEL` above, and
    :class:`~tractable.app.config.TrainConfig`'s defaults (10,000 steps at lr 2e-3, β annealed over the first
    half in 2D; not annealed above, :data:`HIGH_DIMENSIONAL_TRAIN`)."""

    kind = "energy"
    images = False
    #: The recipe starts planar maps near the identity (``init="identity"``): with β annealed from 0.01, a cosine
    #: schedule and a learnable base it fits the ring reliably from there (KL 0.017–0.022 over six seeds), while the
    #: shear start of size 0.3 (``Planar``'s default is a shear start, made for a plain loop) gave 0.043 at one of
    #: two seeds (benchmarks/results/planar_plain_loop.md).
    defaults: Mapping[str, Any] = {
        "model": {MODEL_NAME: "planar", "layers": 16, "base": "diagonal", "init": "identity"},
    }
    metrics_keys = (
        "kl", "kl_stderr", "ess", "pareto_k", "log_z", "log_z_estimate", "elbo", "elbo_stderr", "loss", "steps",
        "seconds", "eval_samples", "parameters", "target", "flow", "layers", "seed", "skipped_steps",
    )
    figure_suffix = "scatter"
    label = "energy targets (reverse KL)"

    def sized_defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on the problem: for a user's energy above 2D :data:`HIGH_DIMENSIONAL_MODEL` and no
        annealing (:data:`HIGH_DIMENSIONAL_TRAIN`, whatever the model)."""
        energy, model = given.get("energy", {}), given.get("model", {})
        features = energy.get("features", 0) if isinstance(energy, Mapping) else 0
        named = isinstance(model, Mapping) and MODEL_NAME in model  # the user's model keeps its own defaults
        high = isinstance(features, int) and features > PLANAR_FEATURES
        sized: dict[str, Any] = {"train": dict(HIGH_DIMENSIONAL_TRAIN)} if high else {}
        if high and not named:
            sized["model"] = dict(HIGH_DIMENSIONAL_MODEL)
        if named and model[MODEL_NAME] in SPLINE_MODELS:  # a density's own units: the splines' interval learns them
            sized["model"] = {"affine": True}
        return sized

    def inapplicable(self, config: FitConfig) -> dict[str, str]:
        no_validation = "reverse KL draws fresh samples every step; there is no validation split"
        out = {
            "train.eval_every": no_validation, "train.patience": no_validation + " to stop on",
            **{f"data.{key}": "the target is a density, not data" for key in (
                "path", "context_columns", "conditional", "standardize", "whiten", "train_size", "val_size",
                "test_size", "val_fraction", "test_fraction", "data_dir")},
            "eval.iw_samples": "it is the importance samples of the image bits/dim bound",
            "output.grid": "it is the image sample grid", "output.temperature": "it is the image sample grid's",
        }
        if not config.energy.source:
            out["energy.features"] = "it is the dimension of an --energy MODULE:FUNCTION"
        return out

    def load(self, config: FitConfig) -> Energy:
        if config.energy.source:
            return load_energy(config.energy.source, config.energy.features, dtype=dtype(config),
                               device=config.train.device)
        return get_target(config.target)

    def spec(self, problem: Energy) -> dict[str, Any]:
        return {}

    def build(self, config: FitConfig, spec: Mapping[str, Any], problem: Energy | None = None) -> Flow:
        if problem is not None:
            features = problem.features
        else:  # reopening a run: the user's module is imported by ``target``, not here
            features = config.energy.features if config.energy.source else self.load(config).features
        return place(build_vector(config.model, features), config)

    def fit(self, flow: Flow, problem: Energy, config: FitConfig, **options: Any) -> Any:
        t = config.train
        if (warning := one_feature_warning(config.model, flow)) is not None:
            print(warning, file=sys.stderr)
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
        dims = f" ({config.energy.features}-D)" if config.energy.source else ""
        return f"{config.name}{dims} × {metrics['layers']} {config.model_name} layers"

    def summary(self, metrics: Mapping[str, Any], split: str = TEST) -> str:
        return reverse_summary(metrics)

    def target(self, config: FitConfig) -> Energy:
        return self.load(config)

    def plot(self, flow: Flow, problem: Energy, config: FitConfig, out: Path, *, metrics: Path | None,
             gif: bool) -> dict[str, Path]:
        if problem.features != PLOT_FEATURES:
            return {}
        if isinstance(problem, FunctionEnergy):  # a user's density has no box: frame the flow's samples
            problem.box = _sample_box(flow)
        return plot_fit(flow, problem, out, metrics=metrics, gif=gif)

    def sample_figure(self, flow: Flow, target: Energy, x: Tensor, path: Path, title: str) -> Path | None:
        if tuple(flow.event_shape) != (PLOT_FEATURES,):
            return None
        if isinstance(target, FunctionEnergy):
            target.box = _sample_box(flow)
        return plot_sample_set(x, path, target=target, title=title)


@torch.no_grad()
def _sample_box(flow: Flow, n: int = 10_000) -> tuple[tuple[float, float], tuple[float, float]]:
    """A square around the 0.5–99.5 percentiles of the flow's samples, 20% wider (a user's 2D energy's picture)."""
    x = flow.sample(n).double()
    x = x[torch.isfinite(x).all(-1)]
    lo, hi = torch.quantile(x, 0.005, dim=0), torch.quantile(x, 0.995, dim=0)
    center, half = (lo + hi) / 2, max(float((hi - lo).max()) * 0.6, 1e-3)
    return ((float(center[0]) - half, float(center[0]) + half), (float(center[1]) - half, float(center[1]) + half))
