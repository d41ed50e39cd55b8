"""Fitting images (digits, MNIST, CIFAR-10) by maximum likelihood on the dequantization bound; bits/dim.

The model is an :class:`~tractable.models.image_flow.ImageFlow` (dequantization, logit pre-processing, multi-scale
flow) built from ``[model]`` and ``[model.dequantizer]``. It trains with the maximum-likelihood loop on the
single-sample dequantization bound, keeping the state with the best validation bound (``data.val_fraction`` of the
training images, drawn from the seed). The test figures are bits per dimension: ``test_bpd``, the single-sample
bound, and ``test_bpd_iw``, the importance-weighted bound with ``eval.iw_samples`` draws
(:func:`~tractable.training.evaluation.evaluate_bpd`), both from a fixed evaluation seed so that ``tractable eval``
recomputes them exactly.

References:
    A note on the evaluation of generative models (Theis, van den Oord & Bethge, 2016), arXiv:1511.01844.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...models.image_flow import ImageFlow
from ...models.multiscale import parse_architecture
from ...plots.images import plot_image_fit, plot_image_grid
from ...targets.images import CIFAR10_FILES, IMAGE_DATASETS, MNIST_FILES, load_images
from ...training import evaluate_bpd, fit_max_likelihood
from ...training.evaluation import BPD_BATCH_SIZE  # evaluation batches hold at least this many images
from ..config import MODEL_NAME, ConfigError, FitConfig
from ..models import DEQUANTIZER_TABLE, build_image, dequantization
from ..preflight import check_device as check_device_name
from .base import TEST, device_of, dtype, parameter_count, place, rename_split

#: The image data set that ships with scikit-learn (the others are read from ``data.data_dir``).
BUNDLED = "digits"
#: Flow++'s budget on the bundled digits (2 CPU cores, about 13 minutes): a variational dequantizer of 4
#: logistic-mixture couplings of width 32 with 2 blocks per network (Flow++'s own dequantizer), dropout 0.2 in the
#: couplings' networks, an EMA of the weights (0.999) for evaluation, 2,600 steps. Against the plain 1,000-step
#: default (test 1.933 bits/dim, seed 0, one thread): 2,000 steps with the EMA 1.900, plus dropout 1.893, plus a
#: 4 x 48 x 2 affine dequantizer 1.848; mixture couplings at width 32 cost 30% less a step than affine ones at 48,
#: which buys 2,600 steps in less time: 1.834 (docs/results.md, "Digits").
DIGITS_FLOWPP: Mapping[str, Mapping[str, Any]] = {
    "model": {"dropout": 0.2, DEQUANTIZER_TABLE: {"layers": 4, "hidden": 32, "blocks": 2, "coupling": "mixture"}},
    "train": {"steps": 2600, "ema": 0.999},
}
#: The data sets whose files live in ``data.data_dir``, with the files they need.
_FILES = {"mnist": MNIST_FILES, "cifar10": CIFAR10_FILES}


@dataclass
class ImageSplits:
    """Train/validation/test images as float tensors of levels ``0..k-1``, ``(N, C, H, W)``."""

    train: Tensor
    val: Tensor
    test: Tensor
    levels: int
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.train.shape[1:])  # type: ignore[return-value]


def check_device(config: FitConfig) -> None:
    """Raise :class:`ConfigError` when the configuration's device is not one this machine has
    (:func:`~tractable.app.preflight.check_device`)."""
    check_device_name(config.train.device)


def load_image_data(config: FitConfig) -> ImageSplits:
    """The image splits of a configuration: its data set's train images cut into train and validation
    (``data.val_fraction``, seeded by ``train.seed``), and its test images.

    Raises:
        ConfigError: for an unknown data set, a missing ``data.data_dir`` for MNIST/CIFAR-10, missing files (the
            message lists the expected file names) or a bad ``train.dtype``/``data.val_fraction``.
    """
    name, directory = config.target, config.data.data_dir
    if name not in IMAGE_DATASETS:
        raise ConfigError(f"unknown image data set {name!r}; expected one of {', '.join(IMAGE_DATASETS)}")
    if name != BUNDLED and not directory:
        expected = ", ".join(n for names in _FILES[name].values() for n in names)
        raise ConfigError(f"the {name} data set is read from local files (nothing is downloaded): give --data-dir "
                          f"DIR (config key 'data.data_dir') holding {expected}")
    kind = dtype(config)
    fraction = config.data.val_fraction
    if not 0 < fraction < 1:
        raise ConfigError(f"config key 'data.val_fraction' must be in (0, 1) for image data, got {fraction}")
    try:
        data = load_images(name, directory or None)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    n = len(data.train)
    n_val = max(1, round(fraction * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.train.seed))
    train, val = data.train[order[n_val:]], data.train[order[:n_val]]
    return ImageSplits(train.to(kind), val.to(kind), data.test.to(kind), data.levels, data.name)


def flow_steps(model: ImageFlow) -> int:
    """The number of flow steps (couplings) in the model's architecture."""
    return sum(int(t[:-1]) for t in parse_architecture(model.architecture) if t not in ("S", "F"))


class ImageTask:
    """Images: Flow++ with one attention head and a 2-layer affine variational dequantizer of width 16, 1,000 steps
    of 64 images at lr 2e-3 after 100 warmup steps, gradient clip 100, validation every 100 steps. Flow++ on the
    bundled digits gets :data:`DIGITS_FLOWPP` laid over these (a larger dequantizer, dropout and a weight EMA, which
    keep 1,350 training images from being overfitted over 2,000 steps; docs/results.md, "Digits"). MNIST and
    CIFAR-10 runs start from their presets."""

    kind = "image"
    images = True
    defaults: Mapping[str, Any] = {
        "model": {MODEL_NAME: "flowpp", "heads": 1, DEQUANTIZER_TABLE: {"layers": 2, "hidden": 16, "blocks": 1}},
        "train": {"steps": 1000, "batch_size": 64, "lr": 2e-3, "anneal": 0.0, "warmup": 100, "clip": 100.0,
                  "eval_every": 100},
        "output": {"gif": False},
    }
    metrics_keys = (
        "test_bpd", "test_bpd_stderr", "test_bpd_iw", "iw_samples", "test_nll", "best_val_bpd", "best_step",
        "stopped_early", "steps", "seconds", "parameters", "dequantizer_parameters", "target", "flow", "architecture",
        "layers", "dequantization", "seed", "shape", "levels", "train_rows", "val_rows", "test_rows",
        "skipped_steps",
    )
    figure_suffix = "grid"
    label = "image data sets (dequantized maximum likelihood)"

    def sized_defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """:data:`DIGITS_FLOWPP` for Flow++ (the default model) on the bundled digits; ``{}`` otherwise."""
        model = given.get("model", {})
        name = model.get(MODEL_NAME, self.defaults["model"][MODEL_NAME]) if isinstance(model, Mapping) else None
        if given.get("target") == BUNDLED and name == "flowpp":
            return {section: dict(table) for section, table in DIGITS_FLOWPP.items()}
        return {}

    def inapplicable(self, config: FitConfig) -> dict[str, str]:
        return {
            "train.anneal": "annealing tempers an energy; images are fitted by maximum likelihood",
            "eval.samples": "it is the fresh samples of a reverse-KL evaluation (images use --iw-samples)",
            "output.gif": "the layer animation is drawn for energies",
            **{f"data.{key}": "it applies to tables and toy data sets" for key in (
                "path", "context_columns", "conditional", "standardize", "whiten", "train_size", "val_size",
                "test_size", "test_fraction")},
            **{f"energy.{key}": "it applies to --energy" for key in ("source", "features")},
        }

    def load(self, config: FitConfig) -> ImageSplits:
        check_device(config)
        return load_image_data(config)

    def spec(self, problem: ImageSplits) -> dict[str, Any]:
        return {"shape": list(problem.shape), "levels": problem.levels}

    def build(self, config: FitConfig, spec: Mapping[str, Any], problem: ImageSplits | None = None) -> ImageFlow:
        check_device(config)
        shape = tuple(int(s) for s in spec["shape"])
        return place(build_image(config.model, shape, int(spec["levels"])), config)

    def fit(self, flow: ImageFlow, problem: ImageSplits, config: FitConfig, **options: Any) -> Any:
        t, device = config.train, config.train.device
        return fit_max_likelihood(
            flow, problem.train.to(device), val=problem.val.to(device), steps=t.steps, batch_size=t.batch_size,
            lr=t.lr, schedule=t.schedule, clip=t.clip, eval_every=t.eval_every,
            eval_batch_size=max(t.batch_size, BPD_BATCH_SIZE), patience=t.patience or None, seed=t.seed, **options,
        )

    def evaluate(self, flow: ImageFlow, problem: ImageSplits, config: FitConfig, *, split: str = TEST,
                 samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """Bits/dim of a split: the single-sample bound ``{split}_bpd`` (± ``{split}_bpd_stderr``) and the
        importance-weighted one ``{split}_bpd_iw`` with ``samples`` draws (default ``eval.iw_samples``), the noise
        drawn from ``seed`` (default the fit's evaluation seed)."""
        x = {"train": problem.train, "val": problem.val, "test": problem.test}[split].to(device_of(flow))
        iw = samples if samples is not None else config.eval.iw_samples
        seeded = {} if seed is None else {"seed": seed}
        r = evaluate_bpd(flow, x, iw_samples=iw, batch_size=max(config.train.batch_size, BPD_BATCH_SIZE), **seeded)
        return rename_split({"test_bpd": r["bpd"], "test_bpd_stderr": r["bpd_stderr"], "test_bpd_iw": r["bpd_iw"],
                             "iw_samples": iw, "test_nll": r["nll"], "test_rows": len(x)}, split)

    def run_metrics(self, flow: ImageFlow, problem: ImageSplits, config: FitConfig, history: Any) -> dict[str, Any]:
        ln2d = flow.dims * math.log(2)
        return {
            "best_val_bpd": history.best_val_nll / ln2d, "best_step": history.best_step,
            "stopped_early": history.stopped_early, "steps": len(history.rows), "seconds": round(history.seconds, 3),
            "parameters": parameter_count(flow), "dequantizer_parameters": parameter_count(flow.dequantizer),
            "target": problem.name, "flow": config.model_name, "architecture": flow.architecture,
            "layers": self.layers(flow, config), "dequantization": dequantization(config.model, config.model_name),
            "seed": config.train.seed, "shape": list(problem.shape), "levels": problem.levels,
            "train_rows": len(problem.train), "val_rows": len(problem.val), "test_rows": len(problem.test),
            "skipped_steps": history.skipped,
        }

    def layers(self, flow: ImageFlow, config: FitConfig) -> int | None:
        return flow_steps(flow)

    def describe(self, config: FitConfig, metrics: Mapping[str, Any]) -> str:
        return (f"{config.name} × {config.model_name} ({metrics['dequantization']} dequantization, "
                f"{metrics['parameters']:,} parameters)")

    def summary(self, metrics: Mapping[str, Any], split: str = TEST) -> str:
        m = metrics
        return (f"{split} {m[f'{split}_bpd']:.4f} ± {m[f'{split}_bpd_stderr']:.4f} bits/dim, importance-weighted "
                f"({m['iw_samples']} samples) {m[f'{split}_bpd_iw']:.4f} ({m[f'{split}_rows']:,} images)")

    def target(self, config: FitConfig) -> None:
        return None

    def plot(self, flow: ImageFlow, problem: ImageSplits, config: FitConfig, out: Path, *, metrics: Path | None,
             gif: bool) -> dict[str, Path]:
        return plot_image_fit(flow, out, data=problem.test.to(device_of(flow)), metrics=metrics, n=config.output.grid,
                              temperature=config.output.temperature, title=problem.name, seed=config.train.seed)

    def sample_figure(self, flow: ImageFlow, target: None, x: Tensor, path: Path, title: str) -> Path | None:
        return plot_image_grid(x, path, levels=flow.levels, title=title)
