"""What a checkpoint records about the run that wrote it, and the checks that the run still matches it.

Every checkpoint of a run (``checkpoint.pt``, the training checkpoints and ``best.pt``) holds, besides the format and
library versions that :func:`~tractable.training.checkpoint.save_checkpoint` adds, the resolved configuration
(``config``) and a fingerprint of the data source (``data``, :func:`data_source`): for a data file its path, size in
bytes, row count and the SHA-256 of its bytes; for MNIST and CIFAR-10 the same for each file read from
``data.data_dir``; for an energy, a toy data set or the digits (generated or bundled, fully described by the
configuration) their name and row count.

``tractable eval``, ``sample``, ``plot``, ``--resume`` and :func:`~tractable.app.run.load_run` compare them with the
run's ``config.toml`` and with the data as it is now, and refuse a mismatch in one line naming the differing keys or
the file and what changed (:class:`FingerprintError`); ``--force`` turns the refusal into a warning for ``eval``,
``sample`` and ``plot``. Keys that say where a run computes or how it draws, not what it fits (:data:`IGNORED`), are
not compared, so a run trained on a GPU can be evaluated on a CPU by editing ``train.device``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..targets.images import CIFAR10_FILES, MNIST_FILES
from .config import ConfigError, FitConfig
from .resolve import resolve
from .tasks import task_for

#: Configuration keys (or key prefixes ending in ".") that do not change what a run fits: not compared.
IGNORED = ("train.device", "train.timeout", "train.detect_anomaly", "train.compile", "output.")
#: Differing keys named in full before "and N more".
_SHOWN = 4
_CHUNK = 1 << 20


class FingerprintError(ValueError):
    """A run's ``config.toml`` or data no longer match what its checkpoint was trained with."""


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex, read in chunks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _image_files(name: str, directory: Path) -> list[Path]:
    """The files the MNIST or CIFAR-10 reader takes from ``directory`` (as :mod:`tractable.targets.images` finds
    them: a plain or ``.gz`` IDX file; the batches in ``directory`` or its ``cifar-10-batches-py``)."""
    if name == "mnist":
        names = [n for pair in MNIST_FILES.values() for n in pair]
        return [next((c for c in (directory / n, directory / f"{n}.gz") if c.is_file()), directory / n)
                for n in names]
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    return [directory / n for names in CIFAR10_FILES.values() for n in names]


def _file(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _files(config: FitConfig) -> dict[str, Path]:
    """The files a run reads its data from, by the name its fingerprint gives them (empty for generated data)."""
    if config.data.path:
        return {config.data.path: Path(config.data.path)}
    if task_for(config).kind == "image" and config.data.data_dir:
        return {str(p): p for p in _image_files(config.target, Path(config.data.data_dir))}
    return {}


def _rows(problem: Any) -> int | None:
    splits = [getattr(problem, name, None) for name in ("train", "val", "test")]
    return sum(len(s) for s in splits) if all(s is not None for s in splits) else None


def data_source(config: FitConfig, problem: Any) -> dict[str, Any]:
    """The fingerprint of the data a run was fitted to (``problem`` is what its task loaded): plain values only, so
    a checkpoint stays loadable with ``weights_only``."""
    kind = task_for(config).kind
    rows = _rows(problem)
    files = _files(config)
    if config.data.path:
        source: dict[str, Any] = {"kind": "file", "path": config.data.path}
    elif files:
        source = {"kind": "files", "path": config.data.data_dir}
    else:
        source = {"kind": {"energy": "energy", "data": "generated", "image": "bundled"}[kind], "name": config.name}
    source["files"] = {name: _file(p) for name, p in files.items()}
    if rows is not None:
        source["rows"] = rows
    return source


def data_changes(config: FitConfig, recorded: Mapping[str, Any] | None, problem: Any = None) -> str | None:
    """What changed in the data since ``recorded`` was taken (one phrase naming the file), or ``None``.

    Files that are missing now are not compared: the commands that need the data say so when they load it. With the
    ``problem`` loaded, the row count is compared too.
    """
    if not isinstance(recorded, Mapping):  # a checkpoint of an earlier version: nothing to compare with
        return None
    then_files = recorded.get("files") or {}
    now_files = _files(config)
    if sorted(then_files) != sorted(now_files):
        return (f"the run was fitted to {', '.join(sorted(then_files)) or 'generated data'}, its config.toml now names "
                f"{', '.join(sorted(now_files)) or 'generated data'}")
    for key, path in now_files.items():
        if not path.is_file():
            continue
        then = then_files[key]
        name = repr(key) + ("" if path.is_absolute() else " (relative to the current directory)")
        size = path.stat().st_size
        if size != then.get("bytes"):
            return f"the data file {name} has changed since the fit: {size} bytes now, {then.get('bytes')} then"
        digest = sha256_file(path)
        if digest != then.get("sha256"):
            return (f"the data file {name} has changed since the fit: the same size but other bytes (SHA-256 "
                    f"{digest[:12]}... now, {str(then.get('sha256'))[:12]}... then)")
    rows = _rows(problem) if problem is not None else None
    if rows is not None and recorded.get("rows") is not None and rows != recorded["rows"]:
        return f"the data of the run has {rows} rows now, {recorded['rows']} at the fit"
    return None


def _flat(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _value(table: Mapping[str, Any], key: str) -> str:
    return repr(table[key]) if key in table else "not set"


def config_changes(config: FitConfig, recorded: Mapping[str, Any] | None, where: str) -> str | None:
    """How ``config`` (a run's ``config.toml``) differs from the configuration ``recorded`` in the checkpoint
    ``where``: one phrase naming the differing keys with both values, or ``None`` (also for an old checkpoint without
    one). Both sides are resolved the same way (as a run being reopened), so an earlier layout or a key added since
    compare equal.

    Raises:
        FingerprintError: if the recorded configuration is not a valid one.
    """
    if not isinstance(recorded, Mapping):
        return None
    try:
        then = _flat(resolve(dict(recorded), new=False).to_dict())
    except ConfigError as e:
        raise FingerprintError(f"the configuration stored in {where} is not valid: {e}") from None
    now = _flat(config.to_dict())
    keys = [k for k in sorted(set(now) | set(then))
            if now.get(k) != then.get(k) and not any(k == i or (i.endswith(".") and k.startswith(i)) for i in IGNORED)]
    if not keys:
        return None
    shown = ", ".join(f"{k} = {_value(now, k)} (checkpoint: {_value(then, k)})" for k in keys[:_SHOWN])
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f"config.toml differs from the configuration {where} was trained with: {shown}{more}"


def check_run(config: FitConfig, state: Mapping[str, Any], where: str, *, problem: Any = None,
              force: bool = False, hint: str) -> list[str]:
    """Compare ``config`` and the data with the checkpoint ``state`` (read from ``where``).

    Returns the mismatches when ``force`` (for the caller to warn about), else ``[]``.

    Raises:
        FingerprintError: for a mismatch without ``force``; ``hint`` ends the line (how to proceed).
    """
    found = [m for m in (config_changes(config, state.get("config"), where),
                         data_changes(config, state.get("data"), problem)) if m is not None]
    if found and not force:
        raise FingerprintError(f"{found[0]}; {hint}")
    return found
