"""The shipped run configurations: complete ``config.toml`` files, used with ``tractable fit --preset NAME``.

Each preset is a TOML file in this folder, written exactly as a run's ``config.toml`` (every section and key), with
a first comment line that says what it fits; ``tractable list`` shows that line. ``--preset NAME`` reads the file
in place of ``--config FILE.toml`` (the two are exclusive), so the usual options and ``--set key=value`` overrides
apply on top of it.

Example:
    >>> from tractable.presets import preset_names, read_preset
    >>> "ring-planar" in preset_names()
    True
    >>> read_preset("ring-planar").model.layers
    16
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, FitConfig

PRESETS_DIR = Path(__file__).resolve().parent
"""The folder holding the preset TOML files."""


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


def preset_description(name: str) -> str:
    """The preset's first comment line (without ``#``), or ``""`` when it has none."""
    for line in preset_path(name).read_text().splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip() if line.lstrip().startswith("#") else ""
    return ""


def read_preset(name: str) -> FitConfig:
    """The configuration of the preset ``name`` (unknown keys or wrong types raise :class:`ConfigError`)."""
    return FitConfig.from_toml(preset_path(name))


def write_preset(name: str, config: FitConfig, description: str) -> Path:
    """Write ``config`` as the complete preset ``name`` (every key, as a run's ``config.toml``) with its description.

    Raises:
        ConfigError: for a name that is not a plain file name.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"expected a preset name without path separators, got {name!r}")
    path = PRESETS_DIR / f"{name}.toml"
    header = f"# {description}\n# tractable fit --preset {name} [--out DIR] [--set key=value ...]\n\n"
    path.write_text(header + config.to_toml())
    return path


def refresh_presets() -> list[Path]:
    """Rewrite every preset complete: keys added to :class:`FitConfig` since it was written get their defaults.

    Run it after adding a configuration key: ``python -c "from tractable.presets import refresh_presets;
    refresh_presets()"``.
    """
    return [write_preset(name, read_preset(name), preset_description(name)) for name in preset_names()]


__all__ = [
    "PRESETS_DIR", "preset_description", "preset_names", "preset_path", "read_preset", "refresh_presets",
    "write_preset",
]
