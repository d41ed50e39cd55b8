"""A maximum-likelihood run: fit a flow to a toy data set or a user's table; report test NLL (and the exact KL gap)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import ConfigError, FitConfig
from ..targets.tabular import Standardizer, load_table, split
from ..targets.toy import GaussianMixtureData, ToyDataset, get_dataset, sample_splits
from ..transforms.base import Compose
from .checkpoint import save_checkpoint
from .distributed import DistContext
from .max_likelihood import evaluate_conditional_toy, evaluate_nll, evaluate_toy, fit_max_likelihood
from .run import DTYPES, build, export_weights, fit_options, write_json


@dataclass
class DataSplits:
    """Train/validation/test rows (and contexts), and the toy data set they came from (``None`` for a file)."""

    train: Tensor
    val: Tensor
    test: Tensor
    train_context: Tensor | None
    val_context: Tensor | None
    test_context: Tensor | None
    dataset: ToyDataset | None
    name: str

    @property
    def features(self) -> int:
        return int(self.train.shape[-1])

    @property
    def context_features(self) -> int:
        return 0 if self.train_context is None else int(self.train_context.shape[-1])


def _columns(spec: str) -> list[int | str] | None:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    return [int(s) if s.lstrip("-").isdigit() else s for s in items] or None


def load_data(config: FitConfig) -> DataSplits:
    """The splits a configuration names: a user's file (``data.path``) or a toy data set (``target``)."""
    d, dtype = config.data, DTYPES.get(config.train.dtype)
    if dtype is None:
        raise ConfigError(f"config key 'train.dtype' must be one of {', '.join(DTYPES)}, got {config.train.dtype!r}")
    if d.path:
        if d.conditional:
            raise ConfigError("data.conditional applies to labelled toy data sets; for a file use data.context_columns")
        fractions = (1.0 - d.val_fraction - d.test_fraction, d.val_fraction, d.test_fraction)
        if min(fractions) <= 0:
            raise ConfigError(f"expected positive train/val/test fractions, got {fractions}")
        table = load_table(d.path, context_columns=_columns(d.context_columns), dtype=dtype)
        (xtr, ctr), (xva, cva), (xte, cte) = split((table.features, table.context), fractions, seed=config.train.seed)
        return DataSplits(xtr, xva, xte, ctr, cva, cte, None, Path(d.path).name)
    if d.context_columns:
        raise ConfigError("data.context_columns applies to a data file (--data); use --conditional for toy labels")
    dataset = get_dataset(config.target)
    sizes = (d.train_size, d.val_size, d.test_size)
    if d.conditional:
        (xtr, ctr), (xva, cva), (xte, cte) = sample_splits(dataset, sizes, seed=config.train.seed, dtype=dtype,
                                                           labels=True)
        return DataSplits(xtr, xva, xte, ctr, cva, cte, dataset, dataset.name)
    xtr, xva, xte = sample_splits(dataset, sizes, seed=config.train.seed, dtype=dtype)
    return DataSplits(xtr, xva, xte, None, None, None, dataset, dataset.name)


def run_data(config: FitConfig, out: Path, *, progress: bool = True,
             echo: Callable[[str], None] = print, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and write the run directory ``out`` for data; return the metrics (``{}`` on ranks other than
    0 of a distributed run)."""
    data = load_data(config)
    device = config.train.device
    flow = build(config, data.features, data.context_features)
    if config.data.standardize:
        flow.transform = Compose(Standardizer.fit(data.train).as_transform().to(device), flow.transform)
    t = config.train

    def on(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(device)

    history = fit_max_likelihood(
        flow, on(data.train), context=on(data.train_context), val=on(data.val), val_context=on(data.val_context),
        steps=t.steps, batch_size=t.batch_size, lr=t.lr, schedule=t.schedule, clip=t.clip, eval_every=t.eval_every,
        patience=t.patience or None, seed=t.seed, progress=progress,
        meta={"config": config.to_dict(), "features": data.features, "context_features": data.context_features},
        **fit_options(config, out, resume=resume),
    )
    if not DistContext.current().is_main:
        return {}
    test, test_context = on(data.test), on(data.test_context)
    if data.dataset is not None and test_context is None:
        metrics: dict[str, Any] = evaluate_toy(flow, data.dataset, test=test)
        metrics.pop("test_samples", None)
    else:
        nll, se = evaluate_nll(flow, test, test_context)
        metrics = {"test_nll": nll, "test_nll_stderr": se, "entropy": math.nan, "kl_gap": math.nan,
                   "kl_paired": math.nan, "kl_paired_stderr": math.nan}
        if isinstance(data.dataset, GaussianMixtureData):
            per_label = evaluate_conditional_toy(flow, data.dataset)
            metrics.update({f"label_{k}": v for k, v in per_label.items()})
    metrics.update(
        best_val_nll=history.best_val_nll, best_step=history.best_step, stopped_early=history.stopped_early,
        steps=len(history.rows), seconds=round(history.seconds, 3),
        parameters=sum(p.numel() for p in flow.parameters()), target=data.name, flow=config.model.flow,
        layers=config.model.layers, seed=t.seed, features=data.features, context_features=data.context_features,
        train_rows=len(data.train), val_rows=len(data.val), test_rows=len(data.test), skipped_steps=history.skipped,
    )
    save_checkpoint({"model": flow.state_dict(), "config": config.to_dict(), "step": len(history.rows),
                     "features": data.features, "context_features": data.context_features}, out / "checkpoint.pt")
    export_weights(flow, config, out / "model.safetensors")
    write_json(metrics, out / "metrics.json")
    line = (f"{data.name} × {config.model.flow} ({config.model.layers} layers), {len(history.rows)} steps in "
            f"{history.seconds:.1f}s: test NLL = {metrics['test_nll']:.4f} ± {metrics['test_nll_stderr']:.4f} nats")
    echo(line + gap_summary(metrics))
    if config.output.plots:
        from ..plots.data import plot_data_fit  # plotting stays out of the import path of the mathematics

        paths = plot_data_fit(flow, out, data=data.test, dataset=data.dataset, metrics=out / "metrics.csv",
                              context=test_context)
        echo("figures: " + ", ".join(str(p) for p in paths.values()))
    return metrics


def gap_summary(metrics: dict[str, Any]) -> str:
    """The exact-gap part of a data run's summary line (empty where the data's density is unknown)."""
    text = ""
    if math.isfinite(metrics.get("kl_gap", math.nan)):
        text += f", entropy = {metrics['entropy']:.4f}, KL gap = {metrics['kl_gap']:.4f} nats"
    if "label_kl_gap" in metrics:
        text += ", per-label KL gap = " + ", ".join(f"{g:.4f}" for g in metrics["label_kl_gap"])
    return text
