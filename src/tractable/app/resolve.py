"""From what the user gave to the resolved configuration of a run.

Settings resolve as: the task's defaults (decided by the target), then a configuration file (``--config`` or a
preset), then the command line's options, then each ``--set key=value``. The ``[model]`` table is then checked
against the model's constructor. A file in the earlier flat layout (``model.flow``, ``[image]``) is
translated (:mod:`tractable.app.legacy`); an old key given to ``--set`` is an error naming the new one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..targets.toy import ALIASES
from .config import MODEL_NAME, ConfigError, FitConfig, merge, read_toml, set_key
from .legacy import is_legacy, renamed, translate
from .models import DEQUANTIZER_TABLE, accepted, check_model, dequantization
from .tasks import Task, task_of

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


def _defaults(task: Task, user_model: Mapping[str, Any]) -> dict[str, Any]:
    """The task's defaults, less the model keys that the chosen model does not take."""
    defaults = merge(task.defaults, {})
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


def resolve(user: Mapping[str, Any], *, options: Mapping[str, Any] | None = None,
            sets: Iterable[tuple[str, Any]] = ()) -> FitConfig:
    """The resolved configuration: the task's defaults under ``user`` (a file's tables), ``options`` (dotted keys of
    the command line's options) and ``sets`` (``--set`` pairs), the ``[model]`` table checked.

    Raises:
        ConfigError: for an unknown target, key or model, or a value of the wrong type (one line, naming the key).
    """
    options, sets = dict(options or {}), list(sets)
    for key, _ in sets:
        error = renamed(key)
        if error is not None:
            raise error
    given = merge(user, {})
    for key, value in [*options.items(), *sets]:
        if key in ("target", "data.path"):
            set_key(given, key, value)
    target = str(given.get("target", "") or "").lower()
    target = ALIASES.get(target, target)
    path = given.get("data", {}).get("path", "") if isinstance(given.get("data"), dict) else ""
    task = task_of(target, path)
    data = merge(user, {})
    if is_legacy(data):
        data = translate(data, images=task.images, default_name=task.defaults["model"][MODEL_NAME])
    for key, value in [*options.items(), *sets]:
        set_key(data, key, value)
    data["target"] = target
    model = data.get("model", {})
    if not isinstance(model, dict):
        raise ConfigError(f"config section 'model' expects a table, got {model!r}")
    defaults = _defaults(task, model)
    _fit_warmup(defaults, data.get("train"))
    config = FitConfig.from_dict(merge(defaults, data))
    config.model = check_model(config.model, images=task.images, target=config.target)
    return config


def load_config(path: str | Path) -> FitConfig:
    """The configuration in a file (a run's ``config.toml``, a preset), resolved as :func:`resolve` does."""
    return resolve(read_toml(path))
