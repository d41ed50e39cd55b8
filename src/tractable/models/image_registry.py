"""The image models by name.

Kept apart from :mod:`tractable.models.registry` (vector models, built from a feature count) because image models are
built from an image shape and a number of levels: ``build_image_model("flowpp", (1, 8, 8), levels=17)``. The
presets matching published architectures are TOML files read by :mod:`tractable.app.presets`.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    Example:
        >>> from tractable import build_image_model
        >>> model = build_image_model("realnvp", (1, 8, 8), levels=17, hidden=8, blocks=1, dequantization="uniform")
        >>> type(model).__name__, model.levels
        ('ImageRealNVP', 17)
    """
    if name not in IMAGE_MODELS:
        raise ValueError(f"unknown image model {name!r}; expected one of {', '.join(IMAGE_MODELS)}")
    return IMAGE_MODELS[name](tuple(shape), levels=levels, **options)


__all__ = ["IMAGE_DESCRIPTIONS", "IMAGE_MODELS", "build_image_model"]
