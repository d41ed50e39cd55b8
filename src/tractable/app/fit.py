"""``tractable fit`` and ``tractable list`` behind the argument parser: where the settings come from, the run
directory's default name, the thread count; and the listing of what can be fitted."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from ..models.image_registry import IMAGE_DESCRIPTIONS
from ..models.registry import DESCRIPTIONS
from ..targets.energies import TARGETS, get_target
from ..targets.toy import DATASETS, get_dataset
from .config import ConfigError, FitConfig, read_toml
from .preflight import check_threads
from .presets import preset_description, preset_names, preset_tables, print_parameter_counts
from .resolve import resolve
from .run import run_config, run_fit
from .tasks import task_for

#: Torch CPU threads of the vector tasks unless ``--threads`` says otherwise: the 2D fits run on small tensors, where
#: extra threads only add synchronisation overhead.
DEFAULT_THREADS = 1
#: Torch CPU threads of the image tasks (at most; fewer where fewer cores are available).
IMAGE_THREADS = 2
#: Torch CPU threads of the evaluation and figures after training, for every task (at most, as for images): they run
#: on batches of thousands of rows, where a second thread pays even for a 2D model (the exact ODE log-density of
#: flow matching's default on 20,000 checkerboard rows: 9.5 s on two threads, 17 s on one, quiet machine).
EVAL_THREADS = 2


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def threads_set(threads: int) -> Iterator[None]:
    """torch's CPU thread count at ``threads`` for the block, and the caller's count back after it, as the block ends
    or fails: a fit run from a notebook or a test process must not leave its setting to the code that follows (two
    threads left set in one of two parallel test processes slowed a later test of small operations twenty-fold)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_threads(config: FitConfig) -> int:
    """The CPU threads of a fit without ``--threads``: :data:`DEFAULT_THREADS` for vectors, two for images where this
    process may use two cores (a step of the digits default: medians of 0.25-0.35 s on two threads against 0.37-0.45 s
    on one, quiet machine; more threads were not measured to pay on models this small, and on a shared machine even
    the second can cost more than it gains: ``--threads 1`` there)."""
    if not task_for(config).images:
        return DEFAULT_THREADS
    return min(_cores(), IMAGE_THREADS)


def evaluation_threads(threads: int | None) -> int:
    """The CPU threads of the evaluation and figures after training: ``threads`` when given (``--threads`` holds for
    the whole run), else :data:`EVAL_THREADS` where this process may use that many cores."""
    return threads if threads is not None else min(_cores(), EVAL_THREADS)


def fit(*, target: str | None = None, config_file: str | None = None, preset: str | None = None,
        options: Mapping[str, Any] | None = None, sets: Iterable[tuple[str, Any]] = (), out: str | None = None,
        threads: int | None = None, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Resolve the settings (task defaults, then ``config_file`` or ``preset``, then ``options``, then ``sets``)
    and run the fit into ``out`` (default ``runs/TARGET-MODELLAYERS-seedSEED``), which must be absent or empty
    unless ``overwrite``; return its metrics. Nothing is written for a rejected fit. torch's CPU thread count is
    ``threads`` (else the task's default) for the run and the caller's again when it returns or fails.

    Raises:
        ConfigError: for ``preset`` with ``config_file``, no target at all, or a bad setting.
        RunDirError: for an ``out`` in use, or holding something without ``overwrite``.
    """
    check_threads(threads)
    if preset is not None and config_file is not None:
        raise ConfigError(f"--preset and --config are exclusive; got --preset {preset} --config {config_file}")
    options = dict(options or {})
    if target is None and config_file is None and preset is None and not {"data.path", "energy.source"} & set(options):
        raise ConfigError(f"fit needs a target ({', '.join(TARGETS)}; {', '.join(DATASETS)}), --data FILE, "
                          "--energy MODULE:FUNCTION or --config FILE")
    user = preset_tables(preset)[0] if preset is not None else read_toml(config_file) if config_file else {}
    if target is not None:
        options = {"target": target, **options}
    config = resolve(user, options=options, sets=sets)
    if out is None:
        layers = config.model.get("layers") or ""
        out = f"runs/{config.stem}-{config.model_name}{layers}-seed{config.train.seed}"
    with threads_set(threads if threads is not None else default_threads(config)):
        return run_fit(config, out, progress=progress, overwrite=overwrite, eval_threads=evaluation_threads(threads))


def resume(run_dir: str, *, threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``run_dir`` exactly as its ``config.toml`` says, from its newest intact checkpoint (or
    from the start when it has none).

    Raises:
        RunDirError: if ``run_dir`` is not a run directory or is in use.
        FingerprintError: if its ``config.toml`` or data no longer match its checkpoint.
    """
    check_threads(threads)
    config = run_config(run_dir)
    with threads_set(threads if threads is not None else default_threads(config)):
        return run_fit(config, run_dir, progress=progress, resume=True, eval_threads=evaluation_threads(threads))


def print_listing(*, counts: bool = False) -> None:
    """Print the energies, data sets, models and presets ``tractable fit`` accepts; with ``counts``, also the image
    presets' parameter counts beside the published ones."""
    print("energies (fitted by reverse KL; 2D, log Z known):")
    for name in TARGETS:
        doc = (type(get_target(name)).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<17} {doc}")
    print("data sets (fitted by maximum likelihood; 2D; * = exact density and entropy known):")
    for name in DATASETS:
        d = get_dataset(name)
        doc = (type(d).__doc__ or "").strip().splitlines()[0]
        print(f"  {name + (' *' if d.entropy is not None else ''):<17} {doc}")
    print("  (or --data FILE.npy|FILE.csv for your own table; --energy MODULE:FUNCTION --features D for your own "
          "log-density)")
    print("image data sets (fitted by maximum likelihood on the dequantization bound; bits/dim):")
    print("  digits            scikit-learn's 8x8 digits, 17 levels (shipped with scikit-learn)")
    print("  mnist             MNIST 28x28, 256 levels (--data-dir DIR with the IDX files)")
    print("  cifar10           CIFAR-10 32x32x3, 256 levels (--data-dir DIR with the python batches)")
    print("models:")
    for name, doc in DESCRIPTIONS.items():
        print(f"  {name:<17} {doc}")
    print("image models (--model, for digits, mnist, cifar10):")
    for name, doc in IMAGE_DESCRIPTIONS.items():
        print(f"  {name:<17} {doc}")
    print("presets (tractable fit --preset NAME):")
    for name in preset_names():
        print(f"  {name:<20} {preset_description(name)}")
    if counts:
        print()
        print_parameter_counts()
