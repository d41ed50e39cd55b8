"""The ``tractable`` command (also ``python -m tractable``).

    tractable fit ring --flow planar --layers 16 --steps 10000 --batch-size 512 --lr 2e-3 --seed 0 --out DIR
    tractable fit checkerboard --model nsf --steps 5000 --batch-size 512 --seed 0 --out DIR
    tractable fit --data table.csv --context 0,1 --model maf --out DIR
    tractable fit --preset checkerboard-nsf --set train.steps=2000 --out DIR
    tractable fit digits --model flowpp --dequantization variational --out DIR
    tractable fit mnist --data-dir DIR --preset mnist-realnvp --device cuda --out DIR
    tractable sample DIR -n 10000 [--temperature 0.8] [--context 0,1,0]
    tractable eval DIR [--samples N] [--split test]
    tractable plot DIR
    tractable list

Settings resolve in this order: the defaults, then ``--config FILE.toml``, then the options given on the command
line, then each ``--set key=value``. ``--preset NAME`` reads a shipped preset (``tractable list`` names them) in place
of ``--config FILE.toml``. The run commands (sample, eval, plot) live in :mod:`tractable.commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .config import IMAGE_TARGETS, ConfigError, FitConfig
from .models.image_registry import IMAGE_MODELS
from .models.registry import MODELS
from .targets.energies import TARGETS
from .targets.toy import ALIASES, DATASETS
from .training.checkpoint import CheckpointError
from .training.reverse_kl import NonFiniteError

# option dest -> dotted config key
_OPTIONS = {
    "flow": "model.flow", "layers": "model.layers", "base": "model.base", "hidden": "model.hidden",
    "blocks": "model.blocks", "bins": "model.bins", "bound": "model.bound",
    "steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr", "seed": "train.seed",
    "anneal": "train.anneal", "schedule": "train.schedule", "clip": "train.clip", "device": "train.device",
    "dtype": "train.dtype", "eval_every": "train.eval_every", "patience": "train.patience",
    "eval_samples": "eval.samples", "data": "data.path", "context": "data.context_columns",
    "warmup": "train.warmup", "ema": "train.ema", "max_bad_steps": "train.max_bad_steps",
    "checkpoint_every": "train.checkpoint_every", "keep_last": "train.keep_last",
    "data_dir": "image.data_dir", "dequantization": "image.dequantization", "iw_samples": "image.iw_samples",
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


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``tractable CMD: error: ...`` (exit status 2), like the commands' own errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tractable",
        description="Normalizing flows with exact, tractable densities: fit, inspect and evaluate them.",
        epilog="Run 'tractable COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"tractable {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    fit = sub.add_parser(
        "fit", help="fit a flow to a target density (reverse KL) or to data (maximum likelihood)",
        description="Fit a flow and write a run directory (config.toml, metrics.csv, metrics.json, checkpoint.pt, "
        "figures). An energy target (ring, u1..u4, mixture) is fitted by minimising KL(q‖p) and reports the exact "
        "KL, the ESS fraction and a log Z estimate; a data set (eight_gaussians, checkerboard, ...) or a --data "
        "file is fitted by maximum likelihood and reports the test NLL (and, where the data's entropy is known, "
        "the exact gap KL(p‖q) = test NLL − entropy). Defaults depend on the kind of target: shown as energy / data.",
    )
    fit.add_argument("target", nargs="?",
                     help=f"energy: {', '.join(TARGETS)}; data set: {', '.join(DATASETS)}; images: "
                     f"{', '.join(IMAGE_TARGETS)}")
    model = fit.add_argument_group("model")
    model.add_argument("--flow", "--model", dest="flow", default=None,
                       choices=[*MODELS, *(m for m in IMAGE_MODELS if m not in MODELS)],
                       help="the model (default planar / nsf / flowpp for images; images take realnvp, glow, flowpp)")
    model.add_argument("--layers", type=int, default=None, help="number of layers (default 16 / 5)")
    model.add_argument("--base", choices=["diagonal", "normal", "mixture"], default=None,
                       help="base distribution (default diagonal, learnable / normal)")
    model.add_argument("--hidden", type=int, default=None, help="conditioner width (default 64)")
    model.add_argument("--blocks", type=int, default=None, help="hidden layers per conditioner (default 2)")
    model.add_argument("--bins", type=int, default=None, help="spline bins (default 8)")
    model.add_argument("--bound", type=float, default=None,
                       help="spline interval [-B, B] and log-scale bound, in standardized units (default 3)")
    train = fit.add_argument_group("training")
    train.add_argument("--steps", type=int, default=None, help="optimisation steps (default 10000 / 5000)")
    train.add_argument("--batch-size", type=int, default=None, help="samples per step (default 512)")
    train.add_argument("--lr", type=float, default=None, help="peak Adam learning rate (default 2e-3 / 1e-3)")
    train.add_argument("--seed", type=int, default=None, help="random seed: initialisation, data, batches (default 0)")
    train.add_argument("--anneal", type=float, default=None,
                       help="energies: fraction of steps over which beta rises from 0.01 to 1 (default 0.5; 0 = off)")
    train.add_argument("--schedule", choices=["cosine", "exponential", "constant"], default=None,
                       help="learning-rate schedule (default cosine)")
    train.add_argument("--clip", type=float, default=None, help="gradient-norm clip, 0 = none (default 0)")
    train.add_argument("--eval-every", type=int, default=None, help="data: validate every N steps (default 250)")
    train.add_argument("--patience", type=int, default=None,
                       help="data: stop after N validations without improvement, 0 = never (default 0)")
    train.add_argument("--eval-samples", type=int, default=None,
                       help="energies: samples for the final diagnostics (default 100000)")
    train.add_argument("--device", default=None, help="torch device (default cpu)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default float32")
    train.add_argument("--warmup", type=int, default=None, help="linear learning-rate warmup steps (default 0)")
    train.add_argument("--ema", type=float, default=None,
                       help="decay of an EMA of the weights, used for evaluation and saved (e.g. 0.999; default 0 = off)")
    train.add_argument("--max-bad-steps", type=int, default=None,
                       help="non-finite steps are skipped; stop after N in a row, naming the layer (default 5)")
    train.add_argument("--detect-anomaly", action="store_true",
                       help="debug: autograd anomaly detection names the backward op that made a NaN (slow)")
    data = fit.add_argument_group("data")
    data.add_argument("--data", default=None, metavar="FILE", help="fit your own data: a .npy or .csv table")
    data.add_argument("--context", default=None, metavar="COLS",
                      help="with --data: comma-separated columns (indices or header names) to condition on")
    data.add_argument("--conditional", action="store_true",
                      help="condition a labelled data set (gaussian_mixture) on its one-hot label")
    data.add_argument("--no-standardize", action="store_true",
                      help="do not prepend the standardization fitted on the training split")
    data.add_argument("--data-dir", default=None, metavar="DIR",
                      help="mnist: the IDX files (plain or .gz); cifar10: the python batches (nothing is downloaded)")
    data.add_argument("--dequantization", choices=["uniform", "variational"], default=None,
                      help="images: dequantization noise (default the model's: variational for flowpp, else uniform)")
    data.add_argument("--iw-samples", type=int, default=None,
                      help="images: importance samples of test_bpd_iw (default 16)")
    run = fit.add_argument_group("run")
    run.add_argument("--out", default=None, help="run directory (default runs/TARGET-FLOWLAYERS-seedSEED)")
    run.add_argument("--config", default=None, help="TOML file with settings (see a run's config.toml)")
    run.add_argument("--preset", default=None, metavar="NAME",
                     help="a shipped configuration in place of --config (e.g. ring-planar; 'tractable list' names "
                     "them); options and --set apply on top")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set model.layers=32 (repeatable)")
    run.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its config.toml and newest checkpoint (bit-identical "
                     "on the same machine); no other settings apply")
    run.add_argument("--checkpoint-every", type=int, default=None,
                     help="steps between training checkpoints in OUT/checkpoints (default 1000)")
    run.add_argument("--keep-last", type=int, default=None, help="training checkpoints kept (default 3)")
    run.add_argument("--no-plots", action="store_true", help="skip the figures")
    run.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1: small models gain "
                     "nothing from more; raise it for wide models on large tables or MNIST/CIFAR-10 on CPU)")
    run.add_argument("--quiet", action="store_true", help="no progress display")

    sub.add_parser("list", help="list the targets, data sets, models and presets",
                   description="List the energies, data sets, models and presets that 'tractable fit' accepts.")
    _add_run_commands(sub)
    return p


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """The commands that read a finished run directory: sample, eval, plot (implemented in :mod:`.commands`)."""
    sample = sub.add_parser(
        "sample", help="draw samples from a trained flow (.npy, and a figure for 2D flows)",
        description="Draw N samples from the flow of a run directory and save them as a .npy array of shape "
        "(N, features); for 2D flows also a scatter/histogram figure beside it (STEM-scatter.png).",
    )
    sample.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'tractable fit'")
    sample.add_argument("-n", type=int, required=True, help="number of samples")
    sample.add_argument("--out", default=None, metavar="FILE.npy", help="where to save (default RUN_DIR/samples.npy)")
    sample.add_argument("--seed", type=int, default=0, help="random seed of the draws (default 0)")
    sample.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="scale the spread of the base's latent draws by T around its mean (Gaussian bases; "
                        "for a mixture, each component's standard deviation); default 1 = exact samples")
    sample.add_argument("--context", default=None, metavar="C1,C2,...|FILE.npy",
                        help="conditional runs (required there): one context as comma-separated numbers (e.g. a "
                        "one-hot label 0,1,0) or a .npy file of one or N rows")
    sample.add_argument("--no-figure", action="store_true", help="only the .npy file")

    ev = sub.add_parser(
        "eval", help="recompute a run's test metrics (exact KL, ESS, log Z; test NLL, KL gap)",
        description="Recompute a run's metrics from its checkpoint, print them and write RUN_DIR/eval.json. "
        "Energies: exact KL(q||p), ESS and the log Z estimate from fresh samples. Data: the NLL of the split, "
        "regenerated exactly as the fit drew it (so test_nll matches metrics.json), and the exact KL gap where "
        "the data's entropy is known.",
    )
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'tractable fit'")
    ev.add_argument("--samples", type=int, default=None, metavar="N",
                    help="energies: fresh samples (default the run's eval.samples); data: score only the split's "
                    "first N rows (default all); images: importance samples of the bits/dim bound (default the "
                    "run's image.iw_samples)")
    ev.add_argument("--split", default="test", choices=["test", "val", "train"], help="data split (default test)")
    ev.add_argument("--seed", type=int, default=0, help="random seed of the fresh samples (default 0)")
    ev.add_argument("--out", default=None, metavar="FILE.json", help="where to write (default RUN_DIR/eval.json)")

    plot = sub.add_parser(
        "plot", help="draw a run's figures again (densities, samples, layers, training curves)",
        description="Draw the figures of a run again from its checkpoint and metrics.csv, under the names "
        "'tractable fit' uses: densities.png, samples.png, layers.png and layers.gif (energies), training.png.",
    )
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'tractable fit'")
    plot.add_argument("--out", default=None, metavar="DIR", help="where to write (default RUN_DIR)")
    plot.add_argument("--gif", action=argparse.BooleanOptionalAction, default=None,
                      help="the layer animation of energy runs (default as the run was configured)")


def _sample(args: argparse.Namespace) -> int:
    from .commands import sample_run

    sample_run(args.run_dir, args.n, out=args.out, seed=args.seed, temperature=args.temperature,
               context=args.context, figure=not args.no_figure)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .commands import evaluate_run

    evaluate_run(args.run_dir, samples=args.samples, split=args.split, seed=args.seed, out=args.out)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .commands import plot_run

    plot_run(args.run_dir, out_dir=args.out, gif=args.gif)
    return 0


def _resolve(args: argparse.Namespace) -> FitConfig:
    from .config import read_toml

    file = read_toml(args.config) if args.config else {}
    target = (args.target or file.get("target") or "").lower()
    target = ALIASES.get(target, target)
    path = args.data if args.data is not None else file.get("data", {}).get("path", "")
    if not path and target not in TARGETS and target not in DATASETS and target not in IMAGE_TARGETS:
        raise ConfigError(
            f"unknown target {target!r}; expected an energy ({', '.join(TARGETS)}), a data set "
            f"({', '.join(DATASETS)}), images ({', '.join(IMAGE_TARGETS)}) or --data FILE"
        )
    config = FitConfig.for_target(target, energy=not path and target in TARGETS)
    config.apply(file)
    config.target = target
    for dest, key in _OPTIONS.items():
        value = getattr(args, dest)
        if value is not None:
            config.set(key, value)
    if args.conditional:
        config.data.conditional = True
    if args.no_standardize:
        config.data.standardize = False
    if args.no_plots:
        config.output.plots = False
    if args.no_gif:
        config.output.gif = False
    if args.detect_anomaly:
        config.train.detect_anomaly = True
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        config.set(key.strip(), _parse_value(value.strip()))
    return config


def _resume_config(args: argparse.Namespace) -> FitConfig:
    """The configuration of the run ``--resume`` continues; settings given beside it are refused."""
    given = [f"--{dest.replace('_', '-')}" for dest in (*_OPTIONS, "config", "preset") if getattr(args, dest, None)
             is not None]
    given += [f"--{flag.replace('_', '-')}" for flag in ("conditional", "no_standardize", "no_plots", "no_gif",
                                                        "detect_anomaly") if getattr(args, flag, False)]
    given += ["TARGET"] * (args.target is not None) + ["--set"] * bool(args.set) + ["--out"] * (args.out is not None)
    if given:
        raise ConfigError(f"--resume continues the run exactly as its config.toml says; got {', '.join(given)} "
                          "besides it (start a new run to change settings)")
    return FitConfig.from_toml(Path(args.resume) / "config.toml")


def _fit(args: argparse.Namespace) -> int:
    import torch

    from .training.run import run_fit

    if args.resume is not None:
        config = _resume_config(args)
        torch.set_num_threads(args.threads if args.threads is not None else 1)
        run_fit(config, args.resume, progress=not args.quiet, resume=True)
        return 0
    if args.preset is not None:
        from .presets import preset_path

        if args.config is not None:
            raise ConfigError(f"--preset and --config are exclusive; got --preset {args.preset} --config {args.config}")
        args.config = str(preset_path(args.preset))
    if args.target is None and args.config is None and args.data is None:
        raise ConfigError(f"fit needs a target ({', '.join(TARGETS)}; {', '.join(DATASETS)}), --data FILE or --config FILE")
    config = _resolve(args)
    # One thread: the 2D fits run on small tensors, where extra threads only add synchronisation overhead; the
    # digits models too lose from a second thread whenever the machine is shared (measured: README "Images").
    torch.set_num_threads(args.threads if args.threads is not None else 1)
    m = config.model
    name = config.target or Path(config.data.path).stem
    out = args.out or f"runs/{name}-{m.flow}{m.layers or ''}-seed{config.train.seed}"
    run_fit(config, out, progress=not args.quiet)
    return 0


def _list(args: argparse.Namespace) -> int:
    from .targets.energies import get_target
    from .targets.toy import get_dataset

    print("energies (fitted by reverse KL; 2D, log Z known):")
    for name in TARGETS:
        doc = (type(get_target(name)).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<17} {doc}")
    print("data sets (fitted by maximum likelihood; 2D; * = exact density and entropy known):")
    for name in DATASETS:
        d = get_dataset(name)
        doc = (type(d).__doc__ or "").strip().splitlines()[0]
        print(f"  {name + (' *' if d.entropy is not None else ''):<17} {doc}")
    print("  (or --data FILE.npy|FILE.csv for your own table)")
    print("image data sets (fitted by maximum likelihood on the dequantization bound; bits/dim):")
    print("  digits            scikit-learn's 8x8 digits, 17 levels (shipped with scikit-learn)")
    print("  mnist             MNIST 28x28, 256 levels (--data-dir DIR with the IDX files)")
    print("  cifar10           CIFAR-10 32x32x3, 256 levels (--data-dir DIR with the python batches)")
    print("models:")
    for name, doc in MODELS.items():
        print(f"  {name:<17} {doc}")
    print("image models (--model, for digits, mnist, cifar10):")
    for name, (_, doc) in IMAGE_MODELS.items():
        print(f"  {name:<17} {doc}")
    from .presets import preset_description, preset_names

    print("presets (tractable fit --preset NAME):")
    for name in preset_names():
        print(f"  {name:<20} {preset_description(name)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the command; errors print one line and return 2 (1 for an operating-system
    error such as a full disk or a run directory that cannot be written)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"fit": _fit, "list": _list, "sample": _sample, "eval": _eval, "plot": _plot}[args.command](args)
    except (ConfigError, CheckpointError, NonFiniteError, ValueError) as e:
        print(f"tractable {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the run directory or a checkpoint cannot be written (disk full, permissions, ...)
        print(f"tractable {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tractable {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
