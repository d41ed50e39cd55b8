"""Small utilities every layer may use: atomic file writes and a temporary evaluation mode.

This module sits at the bottom of the package: it imports only the standard library and PyTorch, so the
mathematics, the training library and the application all share one implementation of each.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from torch import nn

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["atomic_write", "atomic_write_text", "evaluating", "json_safe", "remove_stale_temporaries", "renamed",
           "write_json"]

#: How :func:`atomic_write` names its temporary file beside ``NAME``: ``.NAME.<random>.tmp``.
_TMP_PREFIX, _TMP_SUFFIX = ".", ".tmp"


class NonFiniteError(FloatingPointError):
    """A NaN or infinity where a finite number was needed (a training step, an evaluation); the message names the
    step or the evaluation, the quantity and what to try. Training and evaluation raise this one class, so a caller
    (the command line) reports either in one line."""


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file in the same directory, which is flushed, synced
    and renamed over ``path``.

    A crash or an exception mid-write leaves any previous file at ``path`` intact, and the temporary file is removed
    (a ``SIGKILL`` may leave one behind, named ``.NAME.*.tmp``). The file gets the usual permissions of a new file
    (``0o666`` less the umask). Parent folders are created.

    Example:
        >>> import tempfile, pathlib
        >>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "a.bin", lambda f: f.write(b"abc"))
        >>> p.read_bytes()
        b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; these are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` calls killed mid-write left in ``directory`` (not
    recursive; nothing if it does not exist) and return them. Call it only where no other process is writing, e.g.
    under a run directory's lock."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(_TMP_PREFIX) and p.name.endswith(_TMP_SUFFIX)
             and "." in p.name[len(_TMP_PREFIX):-len(_TMP_SUFFIX)] and p.is_file()]  # .NAME.<random>.tmp
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by ``None``, recursively, so it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented JSON atomically; non-finite numbers become ``null``."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2) + "\n")


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in evaluation mode for the block, then restore every submodule's own mode.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Dropout(0.5))
        >>> with evaluating(net):
        ...     net.training
        False
        >>> net.training
        True
    """
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Decorate a function (or an ``__init__``) so that a keyword argument under its old name raises a ``TypeError``
    naming the new one, instead of Python's bare "unexpected keyword argument". The signature is unchanged
    (``inspect.signature`` follows ``__wrapped__``).

    Example:
        >>> @renamed(layers="blocks")
        ... def mlp(width, *, blocks=2):
        ...     return blocks
        >>> mlp(8, layers=3)
        Traceback (most recent call last):
        ...
        TypeError: mlp() argument 'layers' is now 'blocks' (the conditioner's depth)
    """

    def decorate(fn: F) -> F:
        name = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    raise TypeError(f"{name}() argument {old!r} is now {new!r}{RENAMED_WHY.get(old, '')}")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


#: Why a keyword changed its name, appended to :func:`renamed`'s message.
RENAMED_WHY = {
    "layers": " (the conditioner's depth)",
    "dequantization_options": " (the variational dequantizer's keyword arguments)",
}
