"""The shipped presets: TOML files in ``tractable/presets/`` holding only what differs from the task's defaults.

A preset is a configuration file (``target``, ``[model]``, ``[train]``, ...) with a ``[preset]`` table of metadata:
its ``description`` (``tractable list`` shows it) and, for a published model, ``published_parameters`` and
``published_source`` (where that count comes from). ``tractable fit --preset NAME`` reads it in place of
``--config FILE.toml`` (the two are exclusive), so the usual options and ``--set key=value`` apply on top.
``python -m tractable.app.presets`` (or ``tractable list --counts``) prints the image presets' parameter counts beside
the published ones. Nothing here writes into the installed package.

Example:
    >>> from tractable.app.presets import preset_names, read_preset
    >>> "ring-planar" in preset_names()
    True
    >>> read_preset("ring-planar").model["layers"]
    16
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.image_flow import ImageFlow
from ..targets.images import load_images
from .config import ConfigError, FitConfig, read_toml
from .models import build_image
from .resolve import resolve
from .tasks import task_for

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
"""The folder holding the preset TOML files (package data of ``tractable``)."""
#: The table of a preset file that holds its metadata, not configuration.
META = "preset"


@dataclass(frozen=True)
class PresetInfo:
    """What a preset says about itself: a description and, for a published model, its parameter count and source."""

    description: str = ""
    published_parameters: int | None = None
    published_source: str = ""


def preset_names() -> list[str]:
    """The names of the shipped presets (file names without ``.toml``), sorted."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """The TOML file of the preset ``name``.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    path = PRESETS_DIR / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(preset_names())}")
    return path


def preset_tables(name: str) -> tuple[dict[str, Any], PresetInfo]:
    """The configuration tables of preset ``name`` and its metadata.

    Raises:
        ConfigError: for an unknown preset, or metadata keys other than those of :class:`PresetInfo`.
    """
    tables = read_toml(preset_path(name))
    meta = tables.pop(META, {})
    allowed = PresetInfo.__dataclass_fields__
    unknown = sorted(set(meta) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {META}.{unknown[0]} in preset {name!r}; expected one of {', '.join(allowed)}")
    return tables, PresetInfo(**meta)


def preset_info(name: str) -> PresetInfo:
    """The metadata of preset ``name``."""
    return preset_tables(name)[1]


def preset_description(name: str) -> str:
    """The preset's one-line description."""
    return preset_info(name).description


def read_preset(name: str) -> FitConfig:
    """The resolved configuration of preset ``name`` (the task's defaults with the preset's keys on top)."""
    return resolve(preset_tables(name)[0])


def image_preset_names() -> list[str]:
    """The presets that fit images."""
    return [n for n in preset_names() if task_for(read_preset(n)).images]


def build_preset(name: str, **overrides: Any) -> ImageFlow:
    """The image model of preset ``name``, for its data set's image shape and levels, on the CPU; ``overrides``
    replace ``[model]`` keys.

    Raises:
        ConfigError: for a preset that is not an image model.
    """
    tables = preset_tables(name)[0]
    config = resolve(tables, sets=[(f"model.{k}", v) for k, v in overrides.items()])
    if not task_for(config).images:
        raise ConfigError(f"preset {name!r} is not an image model; expected one of {', '.join(image_preset_names())}")
    shape, levels = image_format(config.target)
    return build_image(config.model, shape, levels)


#: The image shape and number of levels of each image data set (the digits are read to confirm theirs).
_FORMATS: dict[str, tuple[tuple[int, int, int], int]] = {"mnist": ((1, 28, 28), 256), "cifar10": ((3, 32, 32), 256)}


def image_format(target: str) -> tuple[tuple[int, int, int], int]:
    """``(shape, levels)`` of the image data set ``target``, without its files (MNIST and CIFAR-10 need a
    ``--data-dir``; the digits ship with scikit-learn and are read)."""
    if target in _FORMATS:
        return _FORMATS[target]
    data = load_images(target)
    return tuple(int(s) for s in data.shape), int(data.levels)  # type: ignore[return-value]


def count_parameters(model: ImageFlow) -> dict[str, int]:
    """``{"flow": ..., "dequantizer": ..., "total": ...}`` trainable parameter counts."""
    deq = sum(p.numel() for p in model.dequantizer.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"flow": total - deq, "dequantizer": deq, "total": total}


def preset_parameter_counts(names: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """The parameter counts of the image presets ``names`` (default: all)."""
    return {n: count_parameters(build_preset(n)) for n in (names or image_preset_names())}


def print_parameter_counts(names: Sequence[str] | None = None) -> None:
    """Print the image presets' parameter counts, the published counts beside them, and what each reproduces."""
    print(f"{'preset':<16} {'flow':>12} {'dequantizer':>12} {'total':>12} {'published':>12}  device  description")
    infos = {}
    for name, c in preset_parameter_counts(names).items():
        infos[name] = info = preset_info(name)
        published = f"{info.published_parameters:,}" if info.published_parameters else "-"
        device = read_preset(name).train.device
        print(f"{name:<16} {c['flow']:>12,} {c['dequantizer']:>12,} {c['total']:>12,} {published:>12}  "
              f"{device:<6}  {info.description}")
    for name, info in infos.items():
        if info.published_parameters:
            print(f"  {name}: published count from {info.published_source}")


if __name__ == "__main__":  # pragma: no cover - ``python -m tractable.app.presets``
    print_parameter_counts()
