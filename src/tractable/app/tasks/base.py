"""The :class:`Task` protocol: what differs between fitting an energy, data and images, and nothing else.

A task knows its defaults (a nested table laid under the user's configuration), how to load its target or data
(the *problem*), build the model, call the training loop, evaluate, draw, and what the checkpoint records about the
problem (its *spec*: the plain values the model's shape depends on). :mod:`tractable.app.run` runs any task the same
way, and the run commands (:mod:`tractable.app.commands`) go through the same methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ...flow import Flow
from ..config import ConfigError, FitConfig

#: ``train.dtype`` -> torch dtype.
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The split a fit reports on (``tractable eval --split`` scores another).
TEST = "test"
#: The splits ``tractable eval`` scores.
SPLITS = ("test", "val", "train")
#: The figures of densities and scatters draw 2D flows only.
PLOT_FEATURES = 2


class Task(Protocol):
    """One kind of run: ``energy`` (reverse KL), ``data`` (maximum likelihood) or ``image`` (dequantized maximum
    likelihood, bits/dim)."""

    #: ``"energy"``, ``"data"`` or ``"image"``.
    kind: str
    #: Whether ``[model]`` names an image model (else a vector model).
    images: bool
    #: The task's defaults: nested tables under the user's configuration (model keys a model does not take drop).
    defaults: Mapping[str, Any]
    #: The keys every ``metrics.json`` of this task holds (documented in docs/guide/command-line.md, "The run
    #: directory").
    metrics_keys: tuple[str, ...]
    #: The figure ``tractable sample`` writes beside the samples: ``STEM-{figure_suffix}.png``.
    figure_suffix: str
    #: The kind of target in messages: ``"energy targets (reverse KL)"``, ...
    label: str

    def sized_defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on the problem (the dimension of a user's energy, a table's row count), laid over
        :attr:`defaults` for a new fit; ``given`` is the user's settings (nested tables). ``{}`` where none."""

    def inapplicable(self, config: FitConfig) -> dict[str, str]:
        """The dotted keys of the typed sections that this task does not read for ``config``, each with the reason
        (a value given for one is refused: :func:`tractable.app.resolve.resolve`)."""

    def load(self, config: FitConfig) -> Any:
        """The problem: the energy, the data splits or the image splits the configuration names."""

    def spec(self, problem: Any) -> dict[str, Any]:
        """The plain values the model's shape depends on, stored in checkpoints (``features``, ``shape``, ...)."""

    def build(self, config: FitConfig, spec: Mapping[str, Any], problem: Any = None) -> Flow:
        """The freshly initialised model, on the configuration's device and dtype; with the ``problem`` where the
        model holds something fitted to the data (the standardization), else a placeholder a checkpoint fills."""

    def fit(self, flow: Flow, problem: Any, config: FitConfig, **options: Any) -> Any:
        """Train with the library's loop; ``options`` are the hygiene, logging and checkpoint arguments."""

    def evaluate(self, flow: Flow, problem: Any, config: FitConfig, *, split: str = TEST, samples: int | None = None,
                 seed: int | None = None) -> dict[str, Any]:
        """The metrics of a split (keys as in ``metrics.json``, ``test_`` read as ``{split}_``); ``seed`` reseeds
        the fresh draws (``None``: the generator's current state, as at the end of a fit)."""

    def run_metrics(self, flow: Flow, problem: Any, config: FitConfig, history: Any) -> dict[str, Any]:
        """The rest of ``metrics.json``: what was run and what it cost."""

    def layers(self, flow: Flow, config: FitConfig) -> int | None:
        """The flow's depth as ``metrics.json`` reports it."""

    def describe(self, config: FitConfig, metrics: Mapping[str, Any]) -> str:
        """What was fitted, for the summary line of ``tractable fit``."""

    def summary(self, metrics: Mapping[str, Any], split: str = TEST) -> str:
        """The figures of a split, for the summary lines of ``tractable fit`` and ``tractable eval``."""

    def target(self, config: FitConfig) -> Any:
        """What ``load_run`` returns beside the model: the energy, the toy data set, or ``None``."""

    def plot(self, flow: Flow, problem: Any, config: FitConfig, out: Path, *, metrics: Path | None,
             gif: bool) -> dict[str, Path]:
        """Draw the run's figures into ``out`` (``{}`` where there is nothing to draw)."""

    def sample_figure(self, flow: Flow, target: Any, x: Tensor, path: Path, title: str) -> Path | None:
        """The picture of samples ``x``, or ``None`` where there is none for the flow's shape."""


def dtype(config: FitConfig) -> torch.dtype:
    """The configuration's ``train.dtype``.

    Raises:
        ConfigError: for a dtype other than float32 and float64.
    """
    if config.train.dtype not in DTYPES:
        raise ConfigError(f"config key 'train.dtype' must be one of {', '.join(DTYPES)}, got {config.train.dtype!r}")
    return DTYPES[config.train.dtype]


def place(flow: Flow, config: FitConfig) -> Flow:
    """The model on the configuration's device and in its dtype."""
    return flow.to(device=config.train.device, dtype=dtype(config))


def parameter_count(module: torch.nn.Module) -> int:
    """The number of parameters (``metrics.json``'s ``parameters``)."""
    return sum(p.numel() for p in module.parameters())


def device_of(flow: Flow) -> torch.device:
    """Where the flow's parameters live."""
    return next(flow.parameters()).device


def rename_split(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    """``test_*`` keys read as ``{split}_*``."""
    return {(f"{split}_" + k[len(TEST) + 1:] if k.startswith(f"{TEST}_") else k): v for k, v in metrics.items()}


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"expected --split to be one of {', '.join(SPLITS)}, got {split!r}")
