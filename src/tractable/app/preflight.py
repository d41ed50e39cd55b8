"""Checks of what a command asks for that no later step would make before writing: the device, the thread count,
and the evaluation and output settings a fit uses only after training.

They run before a run directory is created or changed, so a rejected ``tractable fit`` writes nothing (the data, the
model and the training options are checked by loading, building and the training loop's own checks, before the loop
takes its run directory: :mod:`tractable.app.run`).
"""

from __future__ import annotations

import math

import torch

from .config import ConfigError, FitConfig


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` (one line) unless ``device`` names a device this machine has: ``cpu``, an
    available ``cuda``/``cuda:N`` or ``mps``, or another type PyTorch can allocate on."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"config key 'train.device' must be a torch device such as cpu, cuda or cuda:1, got "
                          f"{device!r}") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config key 'train.device' is {device!r} but no CUDA device is available; use "
                              "--device cpu (the MNIST and CIFAR-10 presets are sized for a GPU)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"config key 'train.device' is {device!r} but this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
        return
    if parsed.type == "meta":
        raise ConfigError("config key 'train.device' is 'meta', which holds no data; use cpu or cuda")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"config key 'train.device' is {device!r} but MPS is not available; use --device cpu")
    if parsed.type != "mps":
        try:
            torch.empty(0, device=parsed)
        except Exception as e:  # noqa: BLE001 - each backend raises its own kind
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"config key 'train.device' is {device!r}, which cannot be used here: {first}") from None


def check_threads(threads: int | None) -> None:
    """Raise :class:`ConfigError` unless ``threads`` is ``None`` (the default) or a positive integer."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"expected --threads to be a positive integer, got {threads!r}")


def check_settings(config: FitConfig) -> None:
    """The device, and the settings used only after training (``eval.samples``, ``eval.iw_samples``,
    ``output.grid``, ``output.temperature``), which would otherwise fail after the run was written."""
    check_device(config.train.device)
    for key, value in (("eval.samples", config.eval.samples), ("eval.iw_samples", config.eval.iw_samples),
                       ("output.grid", config.output.grid)):
        if value < 1:
            raise ConfigError(f"config key {key!r} must be a positive integer, got {value!r}")
    t = config.output.temperature
    if not (math.isfinite(t) and t > 0):
        raise ConfigError(f"config key 'output.temperature' must be a positive number, got {t!r}")
