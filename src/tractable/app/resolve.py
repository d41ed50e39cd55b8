"""From what the user gave to the resolved configuration of a run.

Settings resolve as: the task's defaults (decided by the target), then a configuration file (``--config`` or a
preset), then the command line's options, then each ``--set key=value``. The ``[model]`` table is then checked
against the model's constructor.

For a new fit (``new=True``, :func:`~tractable.app.fit.fit`) two more things happen. The defaults that depend on the
problem are laid over the task's fixed ones (:meth:`Task.sized_defaults`: the model above 2D for a user's energy, the
batch, validation, patience and model size from a data file's row count); a run's ``config.toml`` holds every such
value explicitly, so reopening a run (``new=False``) needs only the fixed defaults. And a setting the task never
reads is an error naming the option and the kind of target (``--patience`` on an energy, ``--anneal`` on data):
one given on the command line always, one in a configuration file when it differs from the task's default.

A file in the earlier flat layout (``model.flow``, ``[image]``) is translated (:mod:`tractable.app.legacy`); an old
key given to ``--set`` is an error naming the new one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..models.image_registry import IMAGE_MODELS
from ..models.registry import MODELS
from ..targets.toy import ALIASES
from .config import MODEL_NAME, ConfigError, FitConfig, merge, read_toml, set_key
from .legacy import is_legacy, renamed, translate
from .models import DEQUANTIZER_TABLE, accepted, check_model, dequantization, model_parameters
from .tasks import Task, task_of
from .tasks.base import dtype
from .tasks.user_energy import load_energy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value (``32``, ``2e-3``, ``true``, ``[32, 48, 64]``, ``"text"``), else a Python
    number (``.5``), otherwise the text itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        pass
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip('"')


def _defaults(task: Task, defaults: Mapping[str, Any], user_model: Mapping[str, Any]) -> dict[str, Any]:
    """The task's ``defaults``, less the model keys that the chosen model does not take."""
    defaults = merge(defaults, {})
    model = defaults.get("model", {})
    name = user_model.get(MODEL_NAME, model.get(MODEL_NAME))
    kept = accepted(model, name, images=task.images)
    if task.images and DEQUANTIZER_TABLE in kept and DEQUANTIZER_TABLE not in user_model:
        try:
            variational = dequantization({**kept, **user_model}, name) == "variational"
        except (ConfigError, KeyError):  # an unknown model or dequantization: check_model names it
            variational = False
        if not variational:
            del kept[DEQUANTIZER_TABLE]
    defaults["model"] = {**kept, MODEL_NAME: name}
    return defaults


def _fit_warmup(defaults: dict[str, Any], train: Any) -> None:
    """A task's default warmup, which the user never set, is cut to fit the user's ``train.steps`` (a warmup the user
    gives is checked as given)."""
    table, steps = defaults.get("train", {}), train.get("steps") if isinstance(train, dict) else None
    if isinstance(steps, int) and not isinstance(steps, bool) and "warmup" in table and "warmup" not in train:
        table["warmup"] = max(0, min(table["warmup"], steps - 1))


#: Options whose flag is not ``--`` + the key's last part (``data.path`` is ``--data``).
_FLAGS = {"model.name": "--model", "data.path": "--data", "data.context_columns": "--context",
          "data.standardize": "--no-standardize", "eval.samples": "--eval-samples", "eval.iw_samples": "--iw-samples",
          "energy.source": "--energy", "output.plots": "--no-plots", "output.gif": "--no-gif"}


def _flag(key: str) -> str:
    return _FLAGS.get(key, "--" + key.rsplit(".", 1)[-1].replace("_", "-"))


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _check_applicable(task: Task, config: FitConfig, user: Mapping[str, Any], options: Mapping[str, Any],
                      sets: list[tuple[str, Any]]) -> None:
    """A setting the task never reads is an error: on the command line always, in a file when it is not the task's
    default (a run's ``config.toml`` holds every key of every section at its default)."""
    reasons = task.inapplicable(config)
    if not reasons:
        return
    for key in options:
        if key in reasons:
            raise ConfigError(f"{_flag(key)} does not apply to {task.label}: {reasons[key]}")
    for key, _ in sets:
        if key in reasons:
            raise ConfigError(f"--set {key} does not apply to {task.label}: {reasons[key]}")
    plain = FitConfig.from_dict(merge(task.defaults, {}))
    for key, value in _leaves(user):
        section, _, name = key.partition(".")
        if key in reasons and value != getattr(getattr(plain, section), name):
            raise ConfigError(f"config key {key!r} = {value!r} does not apply to {task.label}: {reasons[key]}")


def _check_model_options(task: Task, config: FitConfig, options: Mapping[str, Any]) -> None:
    """A model option of the command line that the chosen model does not take, named with the model and the kind of
    target (``--bins`` on the planar flow of an energy); ``check_model`` names any other unknown ``[model]`` key."""
    name = config.model_name
    if name not in (IMAGE_MODELS if task.images else MODELS):
        return  # check_model names the allowed models
    taken = [*model_parameters(name, images=task.images), *([DEQUANTIZER_TABLE] if task.images else [])]
    for key in options:
        section, _, rest = key.partition(".")
        if section == "model" and rest != MODEL_NAME and "." not in rest and rest not in taken:
            raise ConfigError(f"unknown config key {key!r} for model {name!r}; expected one of "
                              f"{', '.join(sorted(taken))} ({_flag(key)} does not apply to {name} on {task.label})")


def resolve(user: Mapping[str, Any], *, options: Mapping[str, Any] | None = None,
            sets: Iterable[tuple[str, Any]] = (), new: bool = True) -> FitConfig:
    """The resolved configuration: the task's defaults under ``user`` (a file's tables), ``options`` (dotted keys of
    the command line's options) and ``sets`` (``--set`` pairs), the ``[model]`` table checked; with ``new`` (a new
    fit), the problem's sized defaults applied and inapplicable settings refused (see the module docstring).

    Raises:
        ConfigError: for an unknown target, key or model, a value of the wrong type, or (``new``) a setting the
            task does not read (one line, naming the key).
    """
    options, sets = dict(options or {}), list(sets)
    for key, _ in sets:
        error = renamed(key)
        if error is not None:
            raise error
    given = merge(user, {})
    for key, value in [*options.items(), *sets]:
        if key in ("target", "data.path", "energy.source"):
            set_key(given, key, value)
    target = str(given.get("target", "") or "").lower()
    target = ALIASES.get(target, target)
    path = given.get("data", {}).get("path", "") if isinstance(given.get("data"), dict) else ""
    energy = given.get("energy", {}).get("source", "") if isinstance(given.get("energy"), dict) else ""
    task = task_of(target, path, energy)
    data = merge(user, {})
    if is_legacy(data):
        data = translate(data, images=task.images, default_name=task.defaults["model"][MODEL_NAME])
    for key, value in [*options.items(), *sets]:
        set_key(data, key, value)
    data["target"] = target
    model = data.get("model", {})
    if not isinstance(model, dict):
        raise ConfigError(f"config section 'model' expects a table, got {model!r}")
    defaults = merge(task.defaults, task.sized_defaults(data)) if new else task.defaults
    defaults = _defaults(task, defaults, model)
    _fit_warmup(defaults, data.get("train"))
    config = FitConfig.from_dict(merge(defaults, data))
    if new:
        _check_model_options(task, config, options)
    config.model = check_model(config.model, images=task.images, target=config.target)
    if new:
        _check_applicable(task, config, user, options, sets)
        if config.energy.source:  # a user's function is checked on a first batch before anything is written
            load_energy(config.energy.source, config.energy.features, dtype=dtype(config), device=config.train.device)
    return config


def load_config(path: str | Path) -> FitConfig:
    """The configuration in a file (a run's ``config.toml``, a preset), resolved as :func:`resolve` does."""
    return resolve(read_toml(path), new=False)
