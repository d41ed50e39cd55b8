"""Configurations written before the nested ``[model]`` tables: read them, and name the new key for an old one.

In its earlier flat layout a run's ``config.toml`` named the model ``model.flow``, held every model key for every model,
and kept image settings in a flat ``[image]`` table whose ``deq_*`` keys used ``0``/``""`` for "the model's default".
:func:`translate` rewrites such a file into today's tables, resolving those fallbacks exactly as the old code did,
so ``tractable eval``/``sample``/``plot`` and ``fit --resume`` of an old run rebuild the same model.
"""

from __future__ import annotations

from typing import Any

from .config import MODEL_NAME, ConfigError
from .models import CONTEXT_BLOCKS, CONTEXT_NET, DEQUANTIZATION, DEQUANTIZER_TABLE, accepted

#: Old dotted keys -> today's.
RENAMED = {
    "model.flow": f"model.{MODEL_NAME}",
    "image.data_dir": "data.data_dir",
    "image.iw_samples": "eval.iw_samples",
    "image.grid": "output.grid",
    "image.temperature": "output.temperature",
    "image.widths": "model.hidden",
    **{f"image.{k}": f"model.{k}" for k in (
        "architecture", DEQUANTIZATION, "alpha", "components", "attention", "heads", "dropout", "output_activation",
        "positions", "learn_bound", "learn_prior")},
    **{f"image.deq_{k}": f"model.{DEQUANTIZER_TABLE}.{k}" for k in (
        "layers", "hidden", "blocks", "coupling", "components", "attention", "mask", "noise")},
    "image.deq_features": f"model.{DEQUANTIZER_TABLE}.{CONTEXT_NET}",
    "image.deq_context": f"model.{DEQUANTIZER_TABLE}.context_channels",
    "image.deq_feature_blocks": f"model.{DEQUANTIZER_TABLE}.{CONTEXT_BLOCKS}",
}
#: The old flat image keys' defaults (``0``/``""``: the fallbacks resolved in :func:`_image_model`).
_IMAGE_DEFAULTS: dict[str, Any] = {
    "data_dir": "", "architecture": "", "widths": "", "dequantization": "", "alpha": 0.05, "components": 8,
    "attention": True, "heads": 1, "dropout": 0.0, "output_activation": True, "positions": "sinusoidal",
    "learn_bound": False, "learn_prior": True, "deq_layers": 2, "deq_hidden": 16, "deq_blocks": 1,
    "deq_coupling": "affine", "deq_components": 0, "deq_attention": False, "deq_features": True, "deq_context": 0,
    "deq_feature_blocks": 0, "deq_mask": "checkerboard", "deq_noise": "gaussian", "iw_samples": 16, "grid": 64,
    "temperature": 0.8,
}
#: The old ``[model]`` defaults of image runs (those of energies and data are today's task defaults).
_IMAGE_MODEL_DEFAULTS: dict[str, Any] = {"hidden": 32, "blocks": 2, "bound": 2.0}
#: The old dequantizer's log-scale bound when it did not learn it.
_OLD_DEQ_BOUND = 2.0


def renamed(key: str) -> ConfigError | None:
    """The error for an old dotted key (``image.architecture``) naming today's, or ``None`` for any other key."""
    if key in RENAMED:
        return ConfigError(f"config key {key!r} is now {RENAMED[key]!r}")
    if key.split(".")[0] == "image":
        return ConfigError(f"config key {key!r} is gone: image settings are [model] keys (the model's constructor "
                           f"arguments), [model.{DEQUANTIZER_TABLE}], data.data_dir, eval.iw_samples and [output]")
    return None


def is_legacy(data: dict[str, Any]) -> bool:
    """Whether ``data`` is a configuration in the old layout (``model.flow`` or an ``[image]`` table)."""
    model = data.get("model")
    return "image" in data or (isinstance(model, dict) and "flow" in model)


def translate(data: dict[str, Any], *, images: bool, default_name: str) -> dict[str, Any]:
    """An old configuration in today's tables; ``images`` says whether it describes an image run.

    ``default_name`` is the model of the old defaults of the run's kind, for a file that did not name one.
    """
    out = {k: v for k, v in data.items() if k not in ("model", "image")}
    old_model = dict(data.get("model", {}))
    name = old_model.pop("flow", default_name)
    image = {**_IMAGE_DEFAULTS, **data.get("image", {})}
    unknown = sorted(set(image) - set(_IMAGE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key 'image.{unknown[0]}' in an old configuration")
    out["data"] = {**data.get("data", {}), **({"data_dir": image["data_dir"]} if image["data_dir"] else {})}
    out["eval"] = {**data.get("eval", {}), "iw_samples": image["iw_samples"]}
    out["output"] = {**data.get("output", {}), "grid": image["grid"], "temperature": image["temperature"]}
    if images:
        out["model"] = _image_model(name, {**_IMAGE_MODEL_DEFAULTS, **old_model}, image)
    else:
        out["model"] = accepted({MODEL_NAME: name, **old_model}, name, images=False)
    return out


def _image_model(name: str, m: dict[str, Any], im: dict[str, Any]) -> dict[str, Any]:
    """The old ``run_images.image_model_options``: the image keys and their ``0``/``""`` fallbacks."""
    try:
        widths = tuple(int(w) for w in str(im["widths"]).split(",") if w.strip())
    except ValueError:
        raise ConfigError(
            f"config key 'image.widths' expects widths such as '32,48,64', got {im['widths']!r}"
        ) from None
    deq = im["dequantization"] or ("variational" if name == "flowpp" else "uniform")
    model: dict[str, Any] = {
        MODEL_NAME: name, "hidden": widths or m["hidden"], "blocks": m["blocks"], "bound": m["bound"],
        "alpha": im["alpha"], DEQUANTIZATION: deq, "output_activation": im["output_activation"],
        "learn_prior": im["learn_prior"],
    }
    if im["architecture"]:
        model["architecture"] = im["architecture"]
    if name == "flowpp":
        model.update({k: im[k] for k in ("components", "attention", "heads", "dropout", "positions")})
    else:
        model["learn_bound"] = im["learn_bound"]
    if deq == "variational":
        table = {
            "layers": im["deq_layers"], "hidden": im["deq_hidden"] or (widths[0] if widths else m["hidden"]),
            "blocks": im["deq_blocks"] or max(1, m["blocks"] // 2), "coupling": im["deq_coupling"],
            "components": im["deq_components"] or im["components"], "attention": im["deq_attention"],
            "dropout": im["dropout"] if name == "flowpp" else 0.0, CONTEXT_NET: im["deq_features"],
            "output_activation": im["output_activation"], "positions": im["positions"], "mask": im["deq_mask"],
            "noise": im["deq_noise"], "learn_bound": im["learn_bound"],
            "bound": m["bound"] if im["learn_bound"] else _OLD_DEQ_BOUND,
        }
        if im["deq_context"]:
            table["context_channels"] = im["deq_context"]
        if im["deq_feature_blocks"]:
            table[CONTEXT_BLOCKS] = im["deq_feature_blocks"]
        model[DEQUANTIZER_TABLE] = table
    return model
