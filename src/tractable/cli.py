"""The ``tractable`` command (also ``python -m tractable``).

    tractable fit ring --flow planar --layers 16 --steps 10000 --batch-size 512 --lr 2e-3 --seed 0 --out DIR
    tractable list

Settings resolve in this order: the defaults, then ``--config FILE.toml``, then the options given on the command
line, then each ``--set key=value``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError, FitConfig
from .models.planar import FLOW_TYPES
from .targets.energies import TARGETS
from .training.checkpoint import CheckpointError
from .training.reverse_kl import NonFiniteError

# option dest -> dotted config key
_OPTIONS = {
    "flow": "model.flow", "layers": "model.layers", "base": "model.base",
    "steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr", "seed": "train.seed",
    "anneal": "train.anneal", "schedule": "train.schedule", "clip": "train.clip", "device": "train.device",
    "dtype": "train.dtype", "eval_samples": "eval.samples",
}


def _parse_value(text: str) -> object:
    """A ``--set`` value: TOML-like literals (int, float, true/false), otherwise the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip('"')


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tractable",
        description="Normalizing flows with exact, tractable densities: fit, inspect and evaluate them.",
        epilog="Run 'tractable COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"tractable {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    fit = sub.add_parser(
        "fit", help="fit a flow to a target density (reverse KL) and write a run directory",
        description="Fit a flow by minimising KL(q‖p) to an unnormalized target density exp(-U), then report the "
        "exact KL (2D targets), the ESS fraction and a log Z estimate. Writes config.toml, metrics.csv, "
        "metrics.json, checkpoint.pt and figures into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fit.add_argument("target", nargs="?", help=f"target density: {', '.join(TARGETS)}")
    fit.add_argument("--flow", choices=list(FLOW_TYPES), default=None, help="layer family (default planar)")
    fit.add_argument("--layers", type=int, default=None, help="number of layers (default 16)")
    fit.add_argument("--base", choices=["diagonal", "normal", "mixture"], default=None,
                     help="base distribution (default diagonal: learnable mean and scale)")
    fit.add_argument("--steps", type=int, default=None, help="optimisation steps (default 10000)")
    fit.add_argument("--batch-size", type=int, default=None, help="samples per step (default 512)")
    fit.add_argument("--lr", type=float, default=None, help="peak Adam learning rate (default 2e-3)")
    fit.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    fit.add_argument("--anneal", type=float, default=None,
                     help="fraction of steps over which beta rises from 0.01 to 1 (default 0.5; 0 = off)")
    fit.add_argument("--schedule", choices=["cosine", "exponential", "constant"], default=None,
                     help="learning-rate schedule (default cosine)")
    fit.add_argument("--clip", type=float, default=None, help="gradient-norm clip, 0 = none (default 0)")
    fit.add_argument("--eval-samples", type=int, default=None, help="samples for the final diagnostics (default 1e5)")
    fit.add_argument("--device", default=None, help="torch device (default cpu)")
    fit.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default float32")
    fit.add_argument("--out", default=None, help="run directory (default runs/TARGET-FLOWLAYERS-seedSEED)")
    fit.add_argument("--config", default=None, help="TOML file with settings (see a run's config.toml)")
    fit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set model.layers=32 (repeatable)")
    fit.add_argument("--no-plots", action="store_true", help="skip the figures")
    fit.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    fit.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1: the 2D fits are too small to gain from more)")
    fit.add_argument("--quiet", action="store_true", help="no progress display")

    sub.add_parser("list", help="list the targets and flow types",
                   description="List the target densities and flow types that 'tractable fit' accepts.")
    return p


def _resolve(args: argparse.Namespace) -> FitConfig:
    config = FitConfig.from_toml(args.config) if args.config else FitConfig()
    if args.target is not None:
        config.target = args.target.lower()
    if config.target not in TARGETS:
        raise ConfigError(f"unknown target {config.target!r}; expected one of {', '.join(TARGETS)}")
    for dest, key in _OPTIONS.items():
        value = getattr(args, dest)
        if value is not None:
            config.set(key, value)
    if args.no_plots:
        config.output.plots = False
    if args.no_gif:
        config.output.gif = False
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        config.set(key.strip(), _parse_value(value.strip()))
    return config


def _fit(args: argparse.Namespace) -> int:
    import torch

    from .training.run import run_fit

    if args.target is None and args.config is None:
        raise ConfigError(f"fit needs a target ({', '.join(TARGETS)}) or --config FILE")
    config = _resolve(args)
    # The 2D variational fits run on tiny tensors, where extra threads only add synchronisation overhead.
    torch.set_num_threads(args.threads if args.threads is not None else 1)
    m = config.model
    out = args.out or f"runs/{config.target}-{m.flow}{m.layers}-seed{config.train.seed}"
    run_fit(config, out, progress=not args.quiet)
    return 0


def _list(args: argparse.Namespace) -> int:
    from .targets.energies import get_target

    print("targets (reverse KL, 2D, log Z known):")
    for name in TARGETS:
        t = get_target(name)
        doc = (type(t).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<10} {doc}")
    print("flow types: " + ", ".join(FLOW_TYPES))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the command; errors print one line and return 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"fit": _fit, "list": _list}[args.command](args)
    except (ConfigError, CheckpointError, NonFiniteError, ValueError) as e:
        print(f"tractable {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tractable {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
