"""An image run: fit RealNVP, Glow or Flow++ to digits, MNIST or CIFAR-10 by maximum likelihood; report bits/dim.

The model is an :class:`~tractable.models.image_flow.ImageFlow` (dequantization, logit pre-processing, multi-scale
flow) built from the configuration's ``[model]`` and ``[image]`` sections. It trains with the shared maximum-
likelihood loop on the single-sample dequantization bound, keeping the state with the best validation bound
(``data.val_fraction`` of the training images, drawn from the seed). The test figures are bits per dimension
(DESIGN.md §5): ``test_bpd`` is the single-sample bound ``E_q[-log p(x + u) + log q(u|x)] / (D log 2)``, and
``test_bpd_iw`` the importance-weighted bound with ``iw_samples`` draws, ``-(logsumexp_m log w_m - log M) / (D log 2)``,
which is tighter (lower) for a variational dequantizer. Both use a fixed evaluation seed, so ``tractable eval``
recomputes them exactly.

References:
    A note on the evaluation of generative models (Theis, van den Oord & Bethge, 2016), arXiv:1511.01844.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import IMAGE_TARGETS, ConfigError, FitConfig
from ..dequantization import bits_per_dim
from ..models.image_flow import ImageFlow
from ..models.image_registry import IMAGE_MODELS, build_image_model
from ..models.multiscale import parse_architecture
from .checkpoint import save_checkpoint
from .distributed import DistContext
from .max_likelihood import fit_max_likelihood
from .run import DTYPES, export_weights, fit_options, write_json

#: The keys of ``metrics.json`` for an image run, documented in the README.
IMAGE_KEYS = (
    "test_bpd", "test_bpd_stderr", "test_bpd_iw", "iw_samples", "test_nll", "best_val_bpd", "best_step",
    "stopped_early", "steps", "seconds", "parameters", "dequantizer_parameters", "target", "flow", "architecture",
    "layers", "dequantization", "seed", "shape", "levels", "train_rows", "val_rows", "test_rows",
)

#: Evaluation draws its dequantization noise from this seed (``tractable eval``'s default ``--seed``).
EVAL_SEED = 0


def is_image(config: FitConfig) -> bool:
    """Whether the run fits an image data set (digits, mnist, cifar10)."""
    return not config.data.path and config.target in IMAGE_TARGETS


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


def load_image_data(config: FitConfig) -> ImageSplits:
    """The image splits of a configuration: its data set's train images cut into train and validation
    (``data.val_fraction``, seeded by ``train.seed``), and its test images.

    Raises:
        ConfigError: for an unknown data set, a missing ``image.data_dir`` for MNIST/CIFAR-10, missing files (the
            message lists the expected file names) or a bad ``train.dtype``/``data.val_fraction``.
    """
    from ..targets.images import IMAGE_DATASETS, load_images

    name, directory = config.target, config.image.data_dir
    if name not in IMAGE_DATASETS:
        raise ConfigError(f"unknown image data set {name!r}; expected one of {', '.join(IMAGE_DATASETS)}")
    if name != "digits" and not directory:
        from ..targets.images import CIFAR10_FILES, MNIST_FILES

        files = MNIST_FILES if name == "mnist" else CIFAR10_FILES
        expected = ", ".join(n for names in files.values() for n in names)
        raise ConfigError(f"the {name} data set is read from local files (nothing is downloaded): give --data-dir "
                          f"DIR (config key 'image.data_dir') holding {expected}")
    if config.train.dtype not in DTYPES:
        raise ConfigError(f"config key 'train.dtype' must be one of {', '.join(DTYPES)}, got {config.train.dtype!r}")
    fraction = config.data.val_fraction
    if not 0 < fraction < 1:
        raise ConfigError(f"config key 'data.val_fraction' must be in (0, 1) for image data, got {fraction}")
    try:
        data = load_images(name, directory or None)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    dtype = DTYPES[config.train.dtype]
    n = len(data.train)
    n_val = max(1, round(fraction * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.train.seed))
    train, val = data.train[order[n_val:]], data.train[order[:n_val]]
    return ImageSplits(train.to(dtype), val.to(dtype), data.test.to(dtype), data.levels, data.name)


def default_dequantization(flow: str) -> str:
    """The model's own dequantization: variational for Flow++, uniform for RealNVP and Glow."""
    return "variational" if flow == "flowpp" else "uniform"


def image_model_options(config: FitConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`~tractable.models.image_registry.build_image_model` a configuration gives.

    Raises:
        ConfigError: for a model that is not an image model, a bad architecture, width list or dequantization.
    """
    m, im = config.model, config.image
    if m.flow not in IMAGE_MODELS:
        raise ConfigError(f"config key 'model.flow' must be an image model for {config.target!r} "
                          f"({', '.join(IMAGE_MODELS)}), got {m.flow!r}")
    try:
        widths = [int(w) for w in im.widths.split(",") if w.strip()]
    except ValueError:
        widths = [0]
    if im.architecture:
        try:
            parse_architecture(im.architecture)
        except ValueError as e:
            raise ConfigError(f"config key 'image.architecture': {e}") from None
    if any(w < 1 for w in widths):
        raise ConfigError(f"config key 'image.widths' expects positive widths such as '32,48,64', got {im.widths!r}")
    deq = im.dequantization or default_dequantization(m.flow)
    if deq not in ("uniform", "variational"):
        raise ConfigError(f"config key 'image.dequantization' must be 'uniform' or 'variational', got {deq!r}")
    options: dict[str, Any] = {
        "architecture": im.architecture or None, "hidden": tuple(widths) if widths else m.hidden, "blocks": m.blocks,
        "bound": m.bound, "alpha": im.alpha, "dequantization": deq,
    }
    for key, allowed in (("deq_noise", ("gaussian", "logistic")), ("deq_mask", ("checkerboard", "columns")),
                         ("positions", ("sinusoidal", "learned"))):
        if getattr(im, key) not in allowed:
            raise ConfigError(f"config key 'image.{key}' must be {' or '.join(map(repr, allowed))}, "
                              f"got {getattr(im, key)!r}")
    if im.positions == "learned" and m.flow != "flowpp":
        raise ConfigError(f"config key 'image.positions' = 'learned' applies to flowpp (attention), not {m.flow!r}")
    if im.learn_bound and m.flow == "flowpp":
        raise ConfigError("config key 'image.learn_bound' applies to the affine couplings of realnvp and glow, "
                          "not flowpp")
    options.update(output_activation=im.output_activation, learn_prior=im.learn_prior)
    if m.flow == "flowpp":
        options.update(components=im.components, attention=im.attention, heads=im.heads, dropout=im.dropout,
                       positions=im.positions)
    else:
        options["learn_bound"] = im.learn_bound
    if deq == "variational":
        options["dequantization_options"] = {
            "layers": im.deq_layers, "hidden": im.deq_hidden or (widths[0] if widths else m.hidden),
            "blocks": im.deq_blocks or max(1, m.blocks // 2), "coupling": im.deq_coupling,
            "components": im.deq_components or im.components, "attention": im.deq_attention,
            "dropout": im.dropout if m.flow == "flowpp" else 0.0, "features": im.deq_features,
            "context_channels": im.deq_context or None, "feature_blocks": im.deq_feature_blocks or None,
            "output_activation": im.output_activation, "positions": im.positions, "mask": im.deq_mask,
            "noise": im.deq_noise, "learn_bound": im.learn_bound,
            "bound": m.bound if im.learn_bound else 2.0,  # learned bounds start where the flow's do (the UvA style)
        }
    return options


def check_device(config: FitConfig) -> None:
    """Raise :class:`ConfigError` when the configuration asks for CUDA on a machine without it."""
    device = config.train.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'train.device' is {device!r} but no CUDA device is available; "
                          "use --device cpu (the MNIST and CIFAR-10 presets are sized for a GPU)")


def build_image(config: FitConfig, shape: tuple[int, int, int], levels: int) -> ImageFlow:
    """The (freshly initialised) image model a configuration describes, on its device and in its dtype."""
    check_device(config)
    device = config.train.device
    try:
        model = build_image_model(config.model.flow, shape, levels=levels, **image_model_options(config))
    except ValueError as e:
        raise ConfigError(f"cannot build {config.model.flow!r} for images of shape {shape}: {e}") from None
    return model.to(device=device, dtype=DTYPES[config.train.dtype])


def flow_steps(model: ImageFlow) -> int:
    """The number of flow steps (couplings) in the model's architecture."""
    return sum(int(t[:-1]) for t in parse_architecture(model.architecture) if t not in ("S", "F"))


@torch.no_grad()
def evaluate_bpd(model: ImageFlow, x: Tensor, *, iw_samples: int, batch_size: int = 256,
                 seed: int = EVAL_SEED) -> dict[str, float]:
    """Bits/dim of the images ``x``: the single-sample bound, its standard error, and the importance-weighted bound.

    The dequantization noise is drawn from ``seed`` (the global generator is restored afterwards), so the same model
    and images give the same figures. ``iw_samples = 1`` reports the single-sample figure for both.

    Returns:
        ``{"bpd", "bpd_stderr", "bpd_iw", "nll", "iw_samples"}`` (``nll`` in nats per image, single-sample bound).
    """
    if iw_samples < 1:
        raise ValueError(f"expected iw_samples >= 1, got {iw_samples}")
    was_training = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            single = torch.cat([model.log_prob(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
            iw = single if iw_samples == 1 else torch.cat(
                [model.log_prob_iw(x[i : i + batch_size], iw_samples) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    bpd = bits_per_dim(single.double(), model.dims)
    stderr = float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else math.nan
    return {"bpd": float(bpd.mean()), "bpd_stderr": stderr,
            "bpd_iw": float(bits_per_dim(iw.double(), model.dims).mean()), "nll": float(-single.double().mean()),
            "iw_samples": iw_samples}


def run_images(config: FitConfig, out: Path, *, progress: bool = True,
               echo: Callable[[str], None] = print, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and write the run directory ``out`` for an image data set; return the metrics (``{}`` on
    ranks other than 0 of a distributed run)."""
    check_device(config)
    image_model_options(config)  # configuration errors before the data are read
    data = load_image_data(config)
    model = build_image(config, data.shape, data.levels)
    t, device = config.train, config.train.device
    history = fit_max_likelihood(
        model, data.train.to(device), val=data.val.to(device), steps=t.steps, batch_size=t.batch_size, lr=t.lr,
        schedule=t.schedule, clip=t.clip, eval_every=t.eval_every, eval_batch_size=max(t.batch_size, 256),
        patience=t.patience or None, seed=t.seed, progress=progress,
        meta={"config": config.to_dict(), "shape": list(data.shape), "levels": data.levels},
        **fit_options(config, out, resume=resume),
    )
    if not DistContext.current().is_main:
        return {}
    iw = config.image.iw_samples
    r = evaluate_bpd(model, data.test.to(device), iw_samples=iw, batch_size=max(t.batch_size, 256))
    deq = sum(p.numel() for p in model.dequantizer.parameters())
    ln2d = model.dims * math.log(2)
    metrics: dict[str, Any] = {
        "test_bpd": r["bpd"], "test_bpd_stderr": r["bpd_stderr"], "test_bpd_iw": r["bpd_iw"], "iw_samples": iw,
        "test_nll": r["nll"], "best_val_bpd": history.best_val_nll / ln2d, "best_step": history.best_step,
        "stopped_early": history.stopped_early, "steps": len(history.rows), "seconds": round(history.seconds, 3),
        "parameters": sum(p.numel() for p in model.parameters()), "dequantizer_parameters": deq,
        "target": data.name, "flow": config.model.flow, "architecture": model.architecture,
        "layers": flow_steps(model), "dequantization": config.image.dequantization or
        default_dequantization(config.model.flow), "seed": t.seed, "shape": list(data.shape), "levels": data.levels,
        "train_rows": len(data.train), "val_rows": len(data.val), "test_rows": len(data.test),
        "skipped_steps": history.skipped,
    }
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict(), "step": len(history.rows),
                     "shape": list(data.shape), "levels": data.levels}, out / "checkpoint.pt")
    export_weights(model, config, out / "model.safetensors")
    write_json(metrics, out / "metrics.json")
    echo(f"{data.name} × {config.model.flow} ({metrics['dequantization']} dequantization, "
         f"{metrics['parameters']:,} parameters), {len(history.rows)} steps in {history.seconds:.1f}s: "
         f"test {metrics['test_bpd']:.4f} ± {metrics['test_bpd_stderr']:.4f} bits/dim "
         f"(importance-weighted, {iw} samples: {metrics['test_bpd_iw']:.4f})")
    if config.output.plots:
        from ..plots.images import plot_image_fit  # plotting stays out of the import path of the mathematics

        paths = plot_image_fit(model, out, data=data.test, metrics=out / "metrics.csv", n=config.image.grid,
                               temperature=config.image.temperature, title=data.name, seed=t.seed)
        echo("figures: " + ", ".join(str(p) for p in paths.values()))
    return metrics


__all__ = [
    "EVAL_SEED", "IMAGE_KEYS", "ImageSplits", "build_image", "check_device", "default_dequantization", "evaluate_bpd", "flow_steps",
    "image_model_options", "is_image", "load_image_data", "run_images",
]
