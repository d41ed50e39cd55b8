"""Run configurations: nested TOML tables that map onto keyword arguments, with errors that name the bad key.

A configuration has a ``target`` and six tables:

* ``[model]``: ``name`` (the model, ``tractable list`` names them) and any keyword argument of that model's
  constructor (``layers``, ``hidden``, ``bins``, ``architecture``, ...); image models also take a
  ``[model.dequantizer]`` table of keyword arguments of :class:`~tractable.dequantization.VariationalDequantization`.
  The task checks these against the constructor's signature (:mod:`tractable.app.models`), since which keys exist
  depends on the model.
* ``[train]``, ``[data]``, ``[energy]``, ``[eval]``, ``[output]``: the typed sections below.

A key that is absent means the constructor's or the task's default, defined once, where it is used. A run's resolved
configuration is written into its directory as ``config.toml`` and is enough to repeat the run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from ..training.distributed import COLLECTIVE_TIMEOUT
from ..training.options import TrainOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration that is malformed: unknown key, wrong type, bad value or unreadable file."""


#: The training library's defaults: the hygiene and checkpoint keys of ``[train]`` take theirs from here.
_LIBRARY = TrainOptions()


@dataclass
class TrainConfig:
    """Optimisation: Adam with ``lr``, a learning-rate ``schedule`` (cosine, constant, exponential) and annealing.

    ``anneal`` is the fraction of the steps over which the target's inverse temperature rises as
    ``β_t = min(1, 0.01 + t/T)`` (0 turns annealing off). ``clip`` is the gradient-norm clip (0: none).
    ``lr_final`` is the ``exponential`` schedule's learning-rate factor at the last step.

    Hygiene: ``warmup`` linear learning-rate warmup steps before the schedule; ``ema`` the decay of an exponential
    moving average of the weights used for evaluation and saved (0: off); a step whose loss or gradient norm is not
    finite is skipped, and ``max_bad_steps`` of them in a row stop the run; ``detect_anomaly`` turns on autograd's
    anomaly detection (slow); ``compile`` compiles the training step with ``torch.compile`` (``compile_seconds`` in
    ``metrics.json``). Checkpoints: a training checkpoint every ``checkpoint_every`` steps (and at the end) in the
    run's ``checkpoints/`` directory, the ``keep_last`` newest kept (plus ``best.pt`` for validated fits).
    Under ``torchrun``, a collective that waits ``timeout`` minutes for another rank ends every rank with one line.
    The defaults are the energies' (reverse KL); the data and image tasks override what differs.
    """

    steps: int = 10_000
    batch_size: int = 512
    lr: float = 2e-3
    seed: int = 0
    anneal: float = 0.5
    schedule: str = _LIBRARY.schedule
    lr_final: float = _LIBRARY.lr_final
    clip: float = _LIBRARY.clip
    device: str = "cpu"
    dtype: str = "float32"
    eval_every: int = 250
    patience: int = 0
    warmup: int = _LIBRARY.warmup
    ema: float = _LIBRARY.ema
    max_bad_steps: int = _LIBRARY.max_bad_steps
    detect_anomaly: bool = _LIBRARY.detect_anomaly
    compile: bool = _LIBRARY.compile
    checkpoint_every: int = _LIBRARY.checkpoint_every
    keep_last: int = _LIBRARY.keep_last
    timeout: float = COLLECTIVE_TIMEOUT


@dataclass
class DataConfig:
    """Data for maximum-likelihood fits (an energy takes none of these keys).

    A toy data set is sampled reproducibly: ``train_size``/``val_size``/``test_size`` rows. A user's file (``path``:
    ``.npy`` or ``.csv``) is split with ``val_fraction``/``test_fraction``; ``context_columns`` (comma-separated
    indices or header names) become the context of a conditional flow. ``conditional`` conditions a labelled toy data
    set (gaussian_mixture) on its one-hot label. ``standardize`` prepends the exact affine map fitted on the training
    split to the flow, so every density is reported in the data's own units; with ``whiten`` that map is the
    full-covariance one (mean and Cholesky factor of the training covariance: the flow starts as the fitted Gaussian),
    the default for a ``--data`` file. Images: ``data_dir`` holds the MNIST
    IDX files or CIFAR-10 python batches (the digits ship with scikit-learn), and ``val_fraction`` of the training
    images validate.
    """

    path: str = ""
    context_columns: str = ""
    conditional: bool = False
    standardize: bool = True
    whiten: bool = False
    train_size: int = 100_000
    val_size: int = 10_000
    test_size: int = 100_000
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    data_dir: str = ""


@dataclass
class EnergyConfig:
    """A user's own unnormalized log-density, fitted by reverse KL (``tractable fit --energy SOURCE --features D``).

    ``source`` is ``module:function`` (imported as Python imports it, the current directory first) or
    ``path/to/file.py:function``; the function maps a ``(batch, features)`` tensor to ``(batch,)`` unnormalized
    log-densities (:mod:`tractable.app.tasks.user_energy`). The module must be importable again wherever the run is
    evaluated, sampled, plotted or resumed.
    """

    source: str = ""
    features: int = 0


@dataclass
class EvalConfig:
    """Final diagnostics: ``samples`` fresh draws for exact KL, ESS and log Ẑ (energies); ``iw_samples`` importance
    samples of the bits/dim bound ``test_bpd_iw`` (images)."""

    samples: int = 100_000
    iw_samples: int = 16


@dataclass
class OutputConfig:
    """What a run writes besides metrics: ``plots`` (PNG figures), ``gif`` (the layer animation of energies), and
    for images a ``grid`` of samples drawn at ``temperature``."""

    plots: bool = True
    gif: bool = True
    grid: int = 64
    temperature: float = 0.8


#: The typed sections of a configuration (``[model]`` is free-form: its keys depend on the model).
SECTIONS: dict[str, type] = {"train": TrainConfig, "data": DataConfig, "energy": EnergyConfig, "eval": EvalConfig,
                             "output": OutputConfig}
#: The key of ``[model]`` that names the model.
MODEL_NAME = "name"


@dataclass
class FitConfig:
    """Everything that defines a ``tractable fit`` run (see the module docstring)."""

    target: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def model_name(self) -> str:
        """The model's name (``model.name``)."""
        return str(self.model.get(MODEL_NAME, ""))

    @property
    def name(self) -> str:
        """The target's name, the user's energy (``module:function``) or the data file's name."""
        return self.target or self.energy.source or Path(self.data.path).name

    @property
    def stem(self) -> str:
        """A short name for the default run directory: the target, the energy's function or the data file's stem."""
        if self.target:
            return self.target
        if self.energy.source:
            return self.energy.source.rsplit(":", 1)[-1]
        return Path(self.data.path).stem

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "model": copy.deepcopy(self.model),
                **{name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        """Build from nested dicts; an unknown key or a value of the wrong type raises :class:`ConfigError`."""
        _check_table(data, "")
        allowed = ("target", "model", *SECTIONS)
        for key in data:
            if key not in allowed:
                raise ConfigError(f"unknown config key {key!r}; expected one of {', '.join(allowed)}")
        config = cls(target=_coerce(data.get("target", ""), str, "target"))
        model = data.get("model", {})
        _check_table(model, "model")
        config.model = copy.deepcopy(model)
        for name, kind in SECTIONS.items():
            section = data.get(name, {})
            _check_table(section, name)
            setattr(config, name, _build(kind, section, name + "."))
        return config

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())


def _check_table(data: Any, name: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {name or '<root>'!r} expects a table, got {data!r}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file; a missing or malformed file raises :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None


def check_scalar(value: Any, kind: type, key: str) -> Any:
    """``value`` as ``kind`` (an int is accepted where a float is expected); otherwise :class:`ConfigError`."""
    return _coerce(value, kind, key)


def _coerce(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"config key {key!r} expects {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"config key {key!r} expects a finite number, got {value!r}")
    if kind is str and not _is_utf8(value):  # undecodable bytes of a file name: config.toml cannot record them
        raise ConfigError(f"config key {key!r} expects UTF-8 text, got {value!r} (rename the file)")
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix + key!r}; expected one of {', '.join(sorted(names))}")
    return cls(**{key: _coerce(value, hints[key], prefix + key) for key, value in data.items()})


def set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` (``train.steps``, ``model.dequantizer.hidden``) in the nested dicts ``data``.

    Keys of the typed sections are checked here (name and type); ``[model]`` keys by the task, which knows the
    model's constructor.
    """
    *sections, name = key.split(".")
    if sections and sections[0] in SECTIONS:
        kind = SECTIONS[sections[0]]
        hints = get_type_hints(kind)
        if len(sections) > 1 or name not in hints:
            raise ConfigError(f"unknown config key {key!r}; expected one of "
                              f"{', '.join(f'{sections[0]}.{n}' for n in sorted(hints))}")
        value = _coerce(value, hints[name], key)
    elif not sections and name == "target":
        value = _coerce(value, str, key)
    elif not sections and name not in ("model", *SECTIONS):
        raise ConfigError(f"unknown config key {key!r}")
    elif not sections:
        raise ConfigError(f"config key {key!r} is a section, not a value")
    elif sections[0] != "model":
        raise ConfigError(f"unknown config key {key!r}; expected a key of model, {', '.join(SECTIONS)}")
    node = data
    for s in sections:
        node = node.setdefault(s, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {key!r} is inside {s!r}, which is a value, not a section")
    node[name] = value


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``, table by table (a new dict; neither argument is changed)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):  # a basic string: control characters (a newline in a path) as escapes, as TOML requires
        return '"' + "".join(_TOML_ESCAPES.get(ch, f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
                             for ch in v) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """Write nested dicts of scalars and lists as TOML (scalars first, then one table per sub-dict)."""
    lines, tables = [], []
    for k, v in data.items():
        (tables if isinstance(v, dict) else lines).append((k, v))
    out = [f"{k} = {_toml_value(v)}" for k, v in lines]
    for k, v in tables:
        sub = dump_toml(v) if v else ""
        out.append("")
        out.append(f"[{k}]")
        # nested tables get dotted headers
        out.extend(line.replace("[", f"[{k}.", 1) if line.startswith("[") else line for line in sub.splitlines())
    return "\n".join(out).strip() + "\n"
