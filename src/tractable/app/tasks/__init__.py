"""The three kinds of run, one :class:`~tractable.app.tasks.base.Task` each, and the one place that decides which
kind a configuration describes (:func:`task_of`)."""

from __future__ import annotations

from ...targets.energies import TARGETS
from ...targets.images import IMAGE_DATASETS
from ...targets.toy import DATASETS
from ..config import ConfigError, FitConfig
from .base import Task
from .data import DataTask
from .energy import EnergyTask
from .image import ImageTask

ENERGY, DATA, IMAGE = EnergyTask(), DataTask(), ImageTask()
#: kind -> task.
TASKS: dict[str, Task] = {t.kind: t for t in (ENERGY, DATA, IMAGE)}


def task_of(target: str, data_path: str = "", energy: str = "") -> Task:
    """The task for a target: a data file (``data_path``) or a toy data set is fitted by maximum likelihood, an
    energy (a built-in one, or a user's ``energy`` function) by reverse KL, an image data set by maximum likelihood on
    the dequantization bound.

    Raises:
        ConfigError: for a target that is none of these, or for more than one of a target, a data file and an energy.
    """
    given = [f"{what} {value!r}" for what, value in (("target", target), ("--data", data_path),
                                                      ("--energy", energy)) if value]
    if len(given) > 1:
        raise ConfigError("expected one of a target, --data FILE or --energy MODULE:FUNCTION, got "
                          + " and ".join(given))
    if energy:
        return ENERGY
    if data_path:
        return DATA
    if target in TARGETS:
        return ENERGY
    if target in IMAGE_DATASETS:
        return IMAGE
    if target in DATASETS:
        return DATA
    raise ConfigError(f"unknown target {target!r}; expected an energy ({', '.join(TARGETS)}), a data set "
                      f"({', '.join(DATASETS)}), images ({', '.join(IMAGE_DATASETS)}) or --data FILE")


def task_for(config: FitConfig) -> Task:
    """The task of a configuration (see :func:`task_of`)."""
    return task_of(config.target, config.data.path, config.energy.source)


__all__ = ["DATA", "ENERGY", "IMAGE", "TASKS", "Task", "task_for", "task_of"]
