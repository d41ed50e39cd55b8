"""Run configurations: typed sections that read from and write to TOML, with errors that name the bad key.

A run's resolved configuration is written into its directory as ``config.toml`` and is enough to repeat the run.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration that is malformed: unknown key, wrong type, bad value or unreadable file."""


@dataclass
class ModelConfig:
    """The flow: its ``flow`` type (``tractable list`` names them), ``layers`` and ``base`` distribution.

    ``hidden`` (width), ``blocks`` (hidden layers per conditioner), ``bins`` (spline bins) and ``bound`` (spline
    interval / log-scale bound) apply to the conditioner-based models (realnvp, maf, iaf, nsf, nsf-ar).
    """

    flow: str = "planar"
    layers: int = 16
    base: str = "diagonal"
    hidden: int = 64
    blocks: int = 2
    bins: int = 8
    bound: float = 3.0


@dataclass
class TrainConfig:
    """Optimisation: Adam with ``lr``, a learning-rate ``schedule`` (cosine, constant, exponential) and annealing.

    ``anneal`` is the fraction of the steps over which the target's inverse temperature rises as
    ``β_t = min(1, 0.01 + t/T)`` (0 turns annealing off). ``clip`` is the gradient-norm clip (0: none).

    ``lr_final`` is the ``exponential`` schedule's learning-rate factor at the last step.

    Hygiene: ``warmup`` linear learning-rate warmup steps before the schedule; ``ema`` the decay of an exponential
    moving average of the weights used for evaluation and saved (0: off); a step whose loss or gradient norm is not
    finite is skipped, and ``max_bad_steps`` of them in a row stop the run; ``detect_anomaly`` turns on autograd's
    anomaly detection (slow). Checkpoints: a training checkpoint every ``checkpoint_every`` steps (and at the end)
    in the run's ``checkpoints/`` directory, the ``keep_last`` newest kept (plus ``best.pt`` for validated fits).
    """

    steps: int = 10_000
    batch_size: int = 512
    lr: float = 2e-3
    seed: int = 0
    anneal: float = 0.5
    schedule: str = "cosine"
    lr_final: float = 0.01
    clip: float = 0.0
    device: str = "cpu"
    dtype: str = "float32"
    eval_every: int = 250
    patience: int = 0
    warmup: int = 0
    ema: float = 0.0
    max_bad_steps: int = 5
    detect_anomaly: bool = False
    checkpoint_every: int = 1000
    keep_last: int = 3


@dataclass
class DataConfig:
    """Data for maximum-likelihood fits (ignored when the target is an energy).

    A toy data set is sampled reproducibly: ``train_size``/``val_size``/``test_size`` rows. A user's file (``path``:
    ``.npy`` or ``.csv``) is split with ``val_fraction``/``test_fraction``; ``context_columns`` (comma-separated
    indices or header names) become the context of a conditional flow. ``conditional`` conditions a labelled toy data
    set (gaussian_mixture) on its one-hot label. ``standardize`` prepends the exact affine map fitted on the training
    split to the flow, so every density is reported in the data's own units.
    """

    path: str = ""
    context_columns: str = ""
    conditional: bool = False
    standardize: bool = True
    train_size: int = 100_000
    val_size: int = 10_000
    test_size: int = 100_000
    val_fraction: float = 0.1
    test_fraction: float = 0.1


#: The image data sets (``tractable fit digits|mnist|cifar10``), fitted by maximum likelihood on the dequantization
#: bound and reported in bits per dimension; ``tractable.targets.images.IMAGE_DATASETS`` reads them.
IMAGE_TARGETS = ("digits", "mnist", "cifar10")


@dataclass
class ImageConfig:
    """Image models (targets ``digits``, ``mnist``, ``cifar10``; ``model.flow`` is ``realnvp``, ``glow`` or ``flowpp``).

    ``data_dir`` holds the MNIST IDX files or CIFAR-10 python batches (the digits ship with scikit-learn).
    ``architecture`` is the multi-scale layout (``"2c S F 2c 2h"``; empty: the model's default); ``widths`` the
    conditioner width per scale (``"32,48,64"``; empty: ``model.hidden`` everywhere); ``model.blocks`` and
    ``model.bound`` apply as for vectors, ``model.layers``/``base``/``bins`` do not. ``dequantization`` is
    ``uniform`` or ``variational`` (empty: the model's own, variational for flowpp); ``alpha`` the logit squeeze.
    Flow++ only: ``components`` (logistics per mixture), ``attention``, ``heads``, ``dropout``.
    ``output_activation``: concat-ELU before each conditioner's last convolution (false: Flow++'s released code);
    ``positions``: ``sinusoidal`` or ``learned`` position embeddings in Flow++'s attention (and its dequantizer's).
    ``learn_bound``: RealNVP/Glow couplings learn their log-scale bound per channel (``model.bound`` at the start);
    ``learn_prior``: factor-outs learn a conditional prior (false: a fixed standard normal).
    The variational dequantizer: ``deq_layers`` couplings (``deq_coupling`` ``affine`` or ``mixture``) of width
    ``deq_hidden`` with ``deq_blocks`` blocks (0: ``model.hidden`` / half of ``model.blocks``), ``deq_components``
    (0: ``components``) and ``deq_attention``; they read a context computed from the image by a feature network of
    width ``deq_context`` (0: ``deq_hidden``) with ``deq_feature_blocks`` blocks (0: ``deq_blocks``), or with
    ``deq_features = false`` the image itself (the UvA tutorial's dequantizer); ``deq_mask`` is ``checkerboard`` or
    ``columns`` (Flow++'s); ``deq_noise`` is ``gaussian`` (Flow++) or ``logistic`` (the tutorial: starts uniform). Evaluation: ``iw_samples`` importance samples for ``test_bpd_iw``; figures: ``grid``
    samples drawn at ``temperature``.
    """

    data_dir: str = ""
    architecture: str = ""
    widths: str = ""
    dequantization: str = ""
    alpha: float = 0.05
    components: int = 8
    attention: bool = True
    heads: int = 1
    dropout: float = 0.0
    output_activation: bool = True
    positions: str = "sinusoidal"
    learn_bound: bool = False
    learn_prior: bool = True
    deq_layers: int = 2
    deq_hidden: int = 16
    deq_blocks: int = 1
    deq_coupling: str = "affine"
    deq_components: int = 0
    deq_attention: bool = False
    deq_features: bool = True
    deq_context: int = 0
    deq_feature_blocks: int = 0
    deq_mask: str = "checkerboard"
    deq_noise: str = "gaussian"
    iw_samples: int = 16
    grid: int = 64
    temperature: float = 0.8


@dataclass
class EvalConfig:
    """Final diagnostics: the number of fresh ``samples`` for exact KL, ESS and log Ẑ."""

    samples: int = 100_000


@dataclass
class OutputConfig:
    """What a run writes besides metrics: ``plots`` (PNG figures) and ``gif`` (the layer animation)."""

    plots: bool = True
    gif: bool = True


@dataclass
class FitConfig:
    """Everything that defines a ``tractable fit`` run."""

    target: str = "ring"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    image: ImageConfig = field(default_factory=ImageConfig)

    @classmethod
    def for_target(cls, target: str, *, energy: bool) -> FitConfig:
        """The defaults for ``target``: reverse-KL settings for an energy, maximum-likelihood ones for data.

        Energies: 16 planar layers, 10,000 steps at lr 2e-3 with annealing. Data: NSF (5 layers, 64 hidden, 16 bins),
        5,000 steps at lr 1e-3, standard-normal base (16 bins measured better than 8 on the exact toy sets at the
        same step budget: benchmarks/results/density_quality.md). Images (digits, mnist, cifar10): Flow++ (width 32,
        2 blocks, :class:`ImageConfig`'s defaults), 1,000 steps of 64 images at lr 2e-3 after 100 warmup steps,
        gradient clip 100, validation every 100 steps: the digits CPU budget (on 1,350 training images Flow++ starts
        to overfit after about 750 steps of a 2,000-step run, so a shorter cosine schedule loses nothing).
        """
        config = cls(target=target)
        if target in IMAGE_TARGETS:
            # the digits CPU budget (README "Images"); MNIST and CIFAR-10 runs start from their presets
            config.model = ModelConfig(flow="flowpp", layers=0, base="normal", hidden=32, blocks=2, bins=0, bound=2.0)
            t = config.train
            t.steps, t.batch_size, t.lr, t.anneal, t.warmup, t.clip, t.eval_every = 1000, 64, 2e-3, 0.0, 100, 100.0, 100
            config.output.gif = False
        elif not energy:
            config.model = ModelConfig(flow="nsf", layers=5, base="normal", bins=16)
            config.train.steps, config.train.lr, config.train.anneal = 5000, 1e-3, 0.0
        return config

    def apply(self, data: dict[str, Any], prefix: str = "") -> None:
        """Set every (nested) key of ``data`` on this config, checking keys and types (see :meth:`set`)."""
        if not isinstance(data, dict):
            raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} expects a table, got {data!r}")
        for key, value in data.items():
            if isinstance(value, dict):
                self.apply(value, f"{prefix}{key}.")
            else:
                self.set(prefix + key, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        """Build from nested dicts; an unknown key or a value of the wrong type raises :class:`ConfigError`."""
        return _build(cls, data, "")

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())

    @classmethod
    def from_toml(cls, path: str | Path) -> FitConfig:
        """Read a TOML file; a missing or malformed file raises :class:`ConfigError` naming the file."""
        return cls.from_dict(read_toml(path))

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key (``model.layers``) to ``value``, checking that the key exists and the type fits."""
        *sections, name = key.split(".")
        node: Any = self
        for s in sections:
            if not dataclasses.is_dataclass(node) or s not in {f.name for f in dataclasses.fields(node)}:
                raise ConfigError(f"unknown config key {key!r}")
            node = getattr(node, s)
        if not dataclasses.is_dataclass(node) or name not in {f.name for f in dataclasses.fields(node)}:
            raise ConfigError(f"unknown config key {key!r}")
        kind = get_type_hints(type(node))[name]
        if dataclasses.is_dataclass(kind):
            raise ConfigError(f"config key {key!r} is a section, not a value")
        setattr(node, name, _coerce(value, kind, key))


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


def _coerce(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"config key {key!r} expects {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"config key {key!r} expects a finite number, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} expects a table, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix + key!r}; expected one of {', '.join(sorted(names))}")
    values = {}
    for key, value in data.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, prefix + key + ".")
        else:
            values[key] = _coerce(value, kind, prefix + key)
    return cls(**values)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
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
        sub = dump_toml(v)
        out.append("")
        out.append(f"[{k}]")
        # nested tables get dotted headers
        out.extend(line.replace("[", f"[{k}.", 1) if line.startswith("[") else line for line in sub.splitlines())
    return "\n".join(out).strip() + "\n"
