"""Checkpoints written atomically and read back with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values (no pickled objects), with a format version and the
library version, so it can be loaded safely and checked for compatibility.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..utils import atomic_write, remove_stale_temporaries

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read: missing, truncated, not weights-only loadable, or of another format."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`~tractable.utils.atomic_write`), with the format and library
    versions; a crash mid-write leaves any previous file at ``path`` intact and no temporary file behind."""
    payload = {"format_version": FORMAT_VERSION, "library_version": __version__, **state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; any failure becomes one clear :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; all mean "unreadable"
        reason = _reason(e)
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be loaded safely (weights_only): {reason}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} has format {found!r}, expected {FORMAT_VERSION}")
    return state


#: Sentences of torch's errors that advise an unsafe step (loading with ``weights_only=False``): never relayed.
_UNSAFE_ADVICE = re.compile(r"weights_only|re-?running|trusted source|trust the source|can still be loaded|"
                            r"documentation|arbitrary code", re.IGNORECASE)


def _reason(error: Exception) -> str:
    """What went wrong, in at most two sentences of ``error``'s message, without its advice to load unsafely.

    Example:
        >>> _reason(RuntimeError("Weights only load failed. Re-running `torch.load` with `weights_only` set to "
        ...                      "`False` will likely succeed.\\n\\nTrying to load unsupported GLOBAL posix.system."))
        'Weights only load failed. Trying to load unsupported GLOBAL posix.system.'
    """
    sentences = (part.strip() for part in re.split(r"(?<=[.!?])\s+|\n+", str(error)))
    kept = [part for part in sentences if part and not _UNSAFE_ADVICE.search(part)][:2]
    text = " ".join(kept)
    return text if len(text) >= 20 else f"{type(error).__name__}: {text}".rstrip(": ")


_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def step_checkpoint_path(directory: str | Path, step: int) -> Path:
    """Where the training checkpoint after ``step`` steps lives: ``DIR/step-000001000.pt``."""
    return Path(directory) / f"step-{step:09d}.pt"


def list_step_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """The ``(step, path)`` of every training checkpoint in ``directory``, oldest first (empty if none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def latest_step_checkpoint(directory: str | Path) -> Path | None:
    """The newest training checkpoint in ``directory``, or ``None``."""
    found = list_step_checkpoints(directory)
    return found[-1][1] if found else None


def newest_intact_checkpoint(directory: str | Path, map_location: str | torch.device | None = "cpu",
                             *, warn: bool = True) -> tuple[Path, dict[str, Any]] | None:
    """The newest training checkpoint in ``directory`` that loads, as ``(path, state)``; ``None`` if there is none.

    A newer one that is truncated or unreadable (a disk that filled up, a copy cut short) is passed over for the
    newest intact one that ``keep_last`` kept, with one line on stderr (when ``warn``) naming what was skipped.

    Raises:
        CheckpointError: if there are training checkpoints but none of them loads (naming the newest's problem).
    """
    found = list_step_checkpoints(directory)
    skipped: list[tuple[Path, CheckpointError]] = []
    for _, path in reversed(found):
        try:
            state = load_checkpoint(path, map_location=map_location)
        except CheckpointError as e:
            skipped.append((path, e))
            continue
        if skipped and warn:
            names = ", ".join(p.name for p, _ in skipped)
            reason = str(skipped[0][1]).split(". ")[0]  # torch's reasons run on for sentences
            print(f"tractable: warning: skipped {names}, newer but unreadable ({reason}); resuming from the newest "
                  f"intact checkpoint, {path.name}", file=sys.stderr, flush=True)
        return path, state
    if skipped:
        others = f" (and {len(skipped) - 1} older ones)" if len(skipped) > 1 else ""
        raise CheckpointError(f"{skipped[0][1]}{others}; no intact training checkpoint is left to resume from")
    return None


def load_model_state(model: nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """``model.load_state_dict(state)``, a mismatch one :class:`CheckpointError` line naming the missing, unexpected
    and differently shaped entries (PyTorch's own message spans many lines and starts "Error(s) in loading...").
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no model weights (got {type(state).__name__})")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    problems = []
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} with another shape (first {k!r}: {tuple(state[k].shape)} in the checkpoint, "
                        f"{tuple(own[k].shape)} in the model)")
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            problems.append(f"{len(keys)} {what} (first {keys[0]!r})")
    if problems:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the {type(model).__name__} built from the "
                              f"configuration: of its weights, {'; '.join(problems)}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # e.g. a dtype that cannot be copied
        first = str(e).strip().splitlines()
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the model: {' '.join(first)[:300]}") from None


def save_step_checkpoint(state: dict[str, Any], directory: str | Path, step: int, *, keep_last: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``, then delete all but the ``keep_last`` newest."""
    if keep_last < 1:
        raise ValueError(f"expected keep_last >= 1, got {keep_last}")
    path = save_checkpoint(state, step_checkpoint_path(directory, step))
    for _, old in list_step_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    remove_stale_temporaries(directory)  # left by a process killed mid-write
    return path
