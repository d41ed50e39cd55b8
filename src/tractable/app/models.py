"""``[model]`` tables onto model constructors: which keyword arguments a model takes, checked and coerced.

A ``[model]`` table names the model (``name``) and passes any keyword argument of its constructor; the allowed keys
are read from the constructor's signature (:func:`inspect.signature`), less the arguments the task supplies from
the data (``features``, ``context_features``, ``shape``, ``levels``). Values are checked against the annotation
where it is simple (``int``, ``float``, ``bool``, ``str``, ``int | Sequence[int]``; a TOML list becomes a tuple).
Image models also take ``[model.dequantizer]``: keyword arguments of
:class:`~tractable.dequantization.VariationalDequantization`, used when ``dequantization = "variational"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..dequantization import VariationalDequantization
from ..distributions import GaussianMixture
from ..flow import Flow
from ..models.image_flow import ImageFlow
from ..models.image_registry import IMAGE_MODELS, build_image_model
from ..models.multiscale import parse_architecture
from ..models.registry import MODELS
from .config import MODEL_NAME, ConfigError

#: The table of ``[model]`` that holds the variational dequantizer's keyword arguments.
DEQUANTIZER_TABLE = "dequantizer"
#: The image models' constructor argument that takes the dequantizer's keyword arguments (the models' name for
#: ``[model.dequantizer]``).
DEQUANTIZER_ARGUMENT = "dequantizer"
#: The image models' constructor argument that chooses the dequantization (``"uniform"`` or ``"variational"``).
DEQUANTIZATION = "dequantization"
#: ``VariationalDequantization``'s switch of its context network and that network's depth.
CONTEXT_NET, CONTEXT_BLOCKS = "context_net", "context_blocks"

def _vector(name: str) -> tuple[Callable[..., Flow], dict[str, Any]]:
    """A vector model's constructor and the keyword arguments its registry entry fixes (``nsf-ar``: autoregressive)."""
    fn = MODELS[name]
    return fn, dict(fn.keywords) if isinstance(fn, partial) else {}


#: Arguments the task supplies (from the data) or that are not configuration: of the models, of the dequantizer.
_SUPPLIED = {"features", "context_features", "shape", "levels", "validate", DEQUANTIZER_ARGUMENT}
_DEQUANTIZER_SUPPLIED = {"shape", "levels"}


def _parameters(fn: Callable[..., Any], fixed: dict[str, Any],
                supplied: set[str] = _SUPPLIED) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(fn).parameters.items()
            if n not in supplied and n not in fixed and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def model_parameters(name: str, *, images: bool) -> dict[str, inspect.Parameter]:
    """The configurable keyword arguments of model ``name`` (vector or image models)."""
    if images:
        return _parameters(IMAGE_MODELS[name], {})
    fn, fixed = _vector(name)
    return _parameters(fn, fixed)


def dequantizer_parameters() -> dict[str, inspect.Parameter]:
    """The configurable keyword arguments of :class:`VariationalDequantization`."""
    return _parameters(VariationalDequantization, {}, _DEQUANTIZER_SUPPLIED)


_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}


def coerce(value: Any, parameter: inspect.Parameter, key: str) -> Any:
    """``value`` checked against the parameter's annotation where it is simple; a list becomes a tuple."""
    annotation = parameter.annotation if isinstance(parameter.annotation, str) else getattr(
        parameter.annotation, "__name__", "")
    kinds = [a.strip() for a in annotation.split("|")]
    if isinstance(value, list):
        if "Sequence[int]" in kinds and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"config key {key!r} expects {annotation}, got list {value!r}")
    simple = [_SIMPLE[k] for k in kinds if k in _SIMPLE]
    if not simple:  # an annotation too rich to check here: the constructor checks the value
        return value
    for kind in simple:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
    raise ConfigError(f"config key {key!r} expects {annotation}, got {type(value).__name__} {value!r}")


def _checked(options: dict[str, Any], parameters: dict[str, inspect.Parameter], prefix: str, what: str,
             tables: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        if key in tables:
            out[key] = value
            continue
        if key not in parameters:
            raise ConfigError(f"unknown config key {prefix + key!r} for {what}; expected one of "
                              f"{', '.join(sorted([*parameters, *tables]))}")
        out[key] = coerce(value, parameters[key], prefix + key)
    return out


def check_model(model: dict[str, Any], *, images: bool, target: str) -> dict[str, Any]:
    """The ``[model]`` table checked: a known ``name``, keys its constructor takes, values of the right type.

    Raises:
        ConfigError: naming the bad key and the allowed ones, or the allowed model names.
    """
    table = IMAGE_MODELS if images else MODELS
    name = model.get(MODEL_NAME)
    if name not in table:
        kind = f"an image model for {target!r}" if images else "one of"
        raise ConfigError(f"config key 'model.{MODEL_NAME}' must be {kind} ({', '.join(table)}), got {name!r}")
    options = {k: v for k, v in model.items() if k != MODEL_NAME}
    checked = _checked(options, model_parameters(name, images=images), "model.", f"model {name!r}",
                       (DEQUANTIZER_TABLE,) if images else ())
    if images:
        if "architecture" in checked:
            try:
                parse_architecture(checked["architecture"])
            except ValueError as e:
                raise ConfigError(f"config key 'model.architecture': {e}") from None
        kind = dequantization(checked, name)
        deq = checked.get(DEQUANTIZER_TABLE, {})
        if not isinstance(deq, dict):
            raise ConfigError(f"config key 'model.{DEQUANTIZER_TABLE}' expects a table, got {deq!r}")
        if deq and kind != "variational":
            raise ConfigError(f"config table 'model.{DEQUANTIZER_TABLE}' applies to variational dequantization; "
                              f"model {name!r} has {DEQUANTIZATION} = {kind!r}")
        if deq:
            checked[DEQUANTIZER_TABLE] = _checked(deq, dequantizer_parameters(), f"model.{DEQUANTIZER_TABLE}.",
                                                  "the variational dequantizer")
    return {MODEL_NAME: name, **checked}


def accepted(model: dict[str, Any], name: str, *, images: bool) -> dict[str, Any]:
    """The keys of ``model`` (a task's defaults) that model ``name`` takes; the others do not apply to it."""
    if name not in (IMAGE_MODELS if images else MODELS):
        return {k: v for k, v in model.items() if k == MODEL_NAME}
    parameters = model_parameters(name, images=images)
    keep = {k: v for k, v in model.items() if k in parameters or k == MODEL_NAME}
    if images and DEQUANTIZER_TABLE in model:
        keep[DEQUANTIZER_TABLE] = model[DEQUANTIZER_TABLE]
    return keep


def dequantization(model: dict[str, Any], name: str) -> str:
    """The dequantization of an image model's table: its ``dequantization`` key, else the constructor's default."""
    value = model.get(DEQUANTIZATION, model_parameters(name, images=True)[DEQUANTIZATION].default)
    if value not in ("uniform", "variational"):
        raise ConfigError(f"config key 'model.{DEQUANTIZATION}' must be 'uniform' or 'variational', got {value!r}")
    return value


#: Models whose every layer is affine in a lone variable: with one feature and no context a MADE has no input to
#: condition on, so each layer is a constant affine map and the flow is its base moved and scaled.
AFFINE_IN_ONE_FEATURE = ("maf", "iaf")


def one_feature_warning(model: dict[str, Any], flow: Flow, context_features: int = 0) -> str | None:
    """A one-line warning when ``flow`` (built from ``model``) can only be its Gaussian base moved and scaled: an
    affine autoregressive model on one feature without a context; ``None`` otherwise."""
    name = model[MODEL_NAME]
    if name not in AFFINE_IN_ONE_FEATURE or tuple(flow.event_shape) != (1,) or context_features:
        return None
    if isinstance(flow.base, GaussianMixture):  # a mixture moved and scaled is still a mixture
        return None
    return (f"warning: {name} on one feature is an affine map of its Gaussian base (a MADE has no earlier feature "
            "to condition on), so it fits only a Gaussian; nsf (splines) fits a density of one variable")


def build_vector(model: dict[str, Any], features: int, context_features: int = 0) -> Flow:
    """The vector model a checked ``[model]`` table describes, for ``features``-dimensional data."""
    fn = MODELS[model[MODEL_NAME]]
    options = {k: v for k, v in model.items() if k != MODEL_NAME}
    if "context_features" in inspect.signature(fn).parameters:
        options["context_features"] = context_features
    elif context_features:
        raise ConfigError(f"model {model[MODEL_NAME]!r} is unconditional; got context_features={context_features}")
    try:
        return fn(features, **options)
    except ValueError as e:
        raise ConfigError(f"cannot build model {model[MODEL_NAME]!r}: {e}") from None


def build_image(model: dict[str, Any], shape: Sequence[int], levels: int) -> ImageFlow:
    """The image model a checked ``[model]`` table describes, for images of ``shape`` with ``levels`` levels."""
    name = model[MODEL_NAME]
    options = {k: v for k, v in model.items() if k not in (MODEL_NAME, DEQUANTIZER_TABLE)}
    if DEQUANTIZER_TABLE in model and dequantization(model, name) == "variational":
        options[DEQUANTIZER_ARGUMENT] = dict(model[DEQUANTIZER_TABLE])
    try:
        return build_image_model(name, shape, levels=levels, **options)
    except ValueError as e:
        raise ConfigError(f"cannot build {name!r} for images of shape {tuple(shape)}: {e}") from None
