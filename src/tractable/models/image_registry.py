"""The image models by name, and presets matching published architectures (with their parameter counts).

Kept apart from :mod:`tractable.models.registry` (vector models, built from a feature count) because image models are
built from an image shape and a number of levels. ``build_image_model("flowpp", (1, 8, 8), levels=17)`` builds a
model; ``build_preset("cifar10-flowpp")`` a published configuration; ``python -m tractable.models``
prints every preset's parameter count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .image_flow import ImageFlow
from .multiscale import FlowPlusPlus, Glow, ImageRealNVP

#: name -> class; each is built as ``cls(shape, levels=..., **options)`` with explicit keyword options.
IMAGE_MODELS: dict[str, type[ImageFlow]] = {"realnvp": ImageRealNVP, "glow": Glow, "flowpp": FlowPlusPlus}

#: name -> one-line description.
IMAGE_DESCRIPTIONS: dict[str, str] = {
    "realnvp": "multi-scale affine couplings with gated conv ResNets (Dinh et al. 2017)",
    "glow": "ActNorm, invertible 1x1 convolutions and affine couplings (Kingma & Dhariwal 2018)",
    "flowpp": "logistic-mixture CDF couplings, attention, variational dequantization (Ho et al. 2019)",
}


def build_image_model(name: str, shape: Sequence[int], *, levels: int = 256, **options: Any) -> ImageFlow:
    """The image model ``name`` (see :data:`IMAGE_MODELS`) for images of ``shape = (C, H, W)`` with ``levels`` levels.

    ``options`` go to the model's constructor (``architecture``, ``hidden``, ``blocks``, ``dequantization``, ...).

    Raises:
        ValueError: for an unknown name.
    """
    if name not in IMAGE_MODELS:
        raise ValueError(f"unknown image model {name!r}; expected one of {', '.join(IMAGE_MODELS)}")
    return IMAGE_MODELS[name](tuple(shape), levels=levels, **options)


@dataclass(frozen=True)
class ImagePreset:
    """A named configuration: the model, the image shape and levels, the options, what it reproduces, and the
    parameter count of the published model (where there is one) with where that count comes from."""

    model: str
    shape: tuple[int, int, int]
    levels: int
    options: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    device: str = "cpu"
    published_parameters: int | None = None
    published_source: str = ""


IMAGE_PRESETS: dict[str, ImagePreset] = {
    "digits-realnvp": ImagePreset("realnvp", (1, 8, 8), 17, {"architecture": "2c S 2h F S 2h", "hidden": 32, "blocks": 2},
                                  "CPU default for scikit-learn's digits"),
    "digits-glow": ImagePreset("glow", (1, 8, 8), 17, {"architecture": "S 4h F S 4h", "hidden": 32, "blocks": 2},
                               "CPU default for scikit-learn's digits"),
    "digits-flowpp": ImagePreset(
        "flowpp", (1, 8, 8), 17,
        {"architecture": "2c S F 2c 2h", "hidden": 32, "blocks": 2, "components": 8, "heads": 1,
         "dequantization_options": {"layers": 2, "hidden": 16, "blocks": 1, "coupling": "affine", "components": 8,
                                    "attention": False, "dropout": 0.0}},
        "CPU default for scikit-learn's digits ('tractable fit digits'): one attention head, a small affine "
        "variational dequantizer"),
    "mnist-realnvp": ImagePreset(
        "realnvp", (1, 28, 28), 256,
        {"architecture": "2c S 2h F S 4h", "hidden": (32, 48, 64), "blocks": 3, "bound": 1.0, "learn_bound": True,
         "learn_prior": False, "alpha": 5e-6, "dequantization": "variational",
         "dequantization_options": {"layers": 4, "hidden": 16, "blocks": 3, "features": False, "bound": 1.0,
                                    "learn_bound": True, "noise": "logistic"}},
        "UvA DL tutorial 11, multi-scale flow with variational dequantization (MNIST test 1.020 bits/dim)",
        "gpu", 1_711_818,
        "UvA DL tutorial 11 (notebook of 2022-09-25), 'multiscale' row: 1,639,742 flow + 72,076 dequantizer",
    ),
    "cifar10-flowpp": ImagePreset(
        "flowpp", (3, 32, 32), 256,
        {"architecture": "4w S 2h 3w", "hidden": 96, "blocks": 10, "components": 32, "heads": 4, "dropout": 0.2,
         "output_activation": False, "positions": "learned", "dequantization": "variational",
         "dequantization_options": {"layers": 4, "hidden": 96, "blocks": 2, "coupling": "mixture", "components": 32,
                                    "attention": True, "dropout": 0.2, "context_channels": 32, "feature_blocks": 3,
                                    "output_activation": False, "positions": "learned", "mask": "columns"}},
        "Flow++ CIFAR-10 (Ho et al. 2019): 4 column-split couplings at 32x32, 2 channel and 3 column-split at "
        "16x16, 10 conv-attention blocks of 96 channels, 32 logistics (CIFAR-10 test 3.08 bits/dim)",
        "gpu", 31_443_440,
        "Flow++'s released code, flows/run_cifar.py ('Params: 31,443,440'): 27,976,464 flow + 3,466,976 dequantizer",
    ),
}


def build_preset(name: str, **overrides: Any) -> ImageFlow:
    """The model of preset ``name`` (see :data:`IMAGE_PRESETS`); ``overrides`` replace its options."""
    if name not in IMAGE_PRESETS:
        raise ValueError(f"unknown image preset {name!r}; expected one of {', '.join(IMAGE_PRESETS)}")
    p = IMAGE_PRESETS[name]
    return build_image_model(p.model, p.shape, levels=p.levels, **{**p.options, **overrides})


def count_parameters(model: ImageFlow) -> dict[str, int]:
    """``{"flow": ..., "dequantizer": ..., "total": ...}`` trainable parameter counts."""
    deq = sum(p.numel() for p in model.dequantizer.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"flow": total - deq, "dequantizer": deq, "total": total}


def preset_parameter_counts(names: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """The parameter counts of the presets ``names`` (default: all)."""
    return {n: count_parameters(build_preset(n)) for n in (names or list(IMAGE_PRESETS))}


def print_parameter_counts(names: Sequence[str] | None = None) -> None:
    """Print a table of the presets' parameter counts, the published counts beside them, and what each reproduces."""
    print(f"{'preset':<16} {'flow':>12} {'dequantizer':>12} {'total':>12} {'published':>12}  device  reference")
    for name, c in preset_parameter_counts(names).items():
        p = IMAGE_PRESETS[name]
        published = f"{p.published_parameters:,}" if p.published_parameters else "-"
        print(f"{name:<16} {c['flow']:>12,} {c['dequantizer']:>12,} {c['total']:>12,} {published:>12}  "
              f"{p.device:<6}  {p.reference}")
    for name in names or list(IMAGE_PRESETS):
        p = IMAGE_PRESETS[name]
        if p.published_parameters:
            print(f"  {name}: published count from {p.published_source}")


__all__ = [
    "IMAGE_DESCRIPTIONS", "IMAGE_MODELS", "IMAGE_PRESETS", "ImagePreset", "build_image_model", "build_preset", "count_parameters",
    "preset_parameter_counts", "print_parameter_counts",
]
