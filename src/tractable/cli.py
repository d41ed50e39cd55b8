"""The ``tractable`` command (also ``python -m tractable``).

    tractable fit ring --flow planar --layers 16 --steps 10000 --batch-size 512 --lr 2e-3 --seed 0 --out DIR
    tractable fit checkerboard --model nsf --steps 5000 --batch-size 512 --seed 0 --out DIR
    tractable fit --data table.csv --context 0,1 --model maf --out DIR
    tractable fit --energy my_model.py:log_prob --features 31 --out DIR
    tractable fit --preset checkerboard-nsf --set train.steps=2000 --out DIR
    tractable fit digits --model flowpp --dequantization variational --out DIR
    tractable fit mnist --data-dir DIR --preset mnist-realnvp --device cuda --out DIR
    tractable sample DIR -n 10000 [--temperature 0.8] [--context 0,1,0]
    tractable eval DIR [--samples N] [--split test]
    tractable plot DIR
    tractable list

This module only parses arguments: each option is a dotted configuration key (:data:`OPTIONS`), and the commands
are the application's (:mod:`tractable.app`). Settings resolve in this order: the task's defaults, then
``--config FILE.toml`` (or a shipped ``--preset NAME``), then the options given on the command line, then each
``--set key=value``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .app.commands import evaluate_run, plot_run, sample_run
from .app.config import ConfigError
from .app.fit import fit, print_listing, resume
from .app.resolve import parse_value
from .models.image_registry import IMAGE_MODELS
from .models.registry import MODELS
from .targets.energies import TARGETS
from .targets.images import IMAGE_DATASETS
from .targets.toy import DATASETS
from .training import CheckpointError, NonFiniteError
from .training.distributed import end_process

#: option dest -> the dotted configuration key it sets.
OPTIONS = {
    "flow": "model.name", "layers": "model.layers", "base": "model.base", "hidden": "model.hidden",
    "blocks": "model.blocks", "bins": "model.bins", "bound": "model.bound", "dequantization": "model.dequantization",
    "steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr", "seed": "train.seed",
    "anneal": "train.anneal", "schedule": "train.schedule", "clip": "train.clip", "device": "train.device",
    "dtype": "train.dtype", "eval_every": "train.eval_every", "patience": "train.patience",
    "warmup": "train.warmup", "ema": "train.ema", "max_bad_steps": "train.max_bad_steps",
    "checkpoint_every": "train.checkpoint_every", "keep_last": "train.keep_last",
    "eval_samples": "eval.samples", "iw_samples": "eval.iw_samples",
    "data": "data.path", "context": "data.context_columns", "data_dir": "data.data_dir",
    "energy": "energy.source", "features": "energy.features",
}
#: switch dest -> (the dotted configuration key it sets, the value it sets).
SWITCHES = {
    "conditional": ("data.conditional", True), "no_standardize": ("data.standardize", False),
    "no_plots": ("output.plots", False), "no_gif": ("output.gif", False),
    "detect_anomaly": ("train.detect_anomaly", True), "compile": ("train.compile", True),
}


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
        "the exact gap KL(p‖q) = test NLL − entropy). --energy MODULE:FUNCTION fits your own log-density by reverse "
        "KL. Defaults depend on the kind of target: shown as energy / data; a --data file's are sized by its rows "
        "(documentation: user guide, 'Your own data'), and an energy above 2D gets an IAF. An option that does not "
        "apply to the kind of target is an error.",
    )
    fit.add_argument("target", nargs="?",
                     help=f"energy: {', '.join(TARGETS)}; data set: {', '.join(DATASETS)}; images: "
                     f"{', '.join(IMAGE_DATASETS)}")
    fit.add_argument("--energy", default=None, metavar="MODULE:FUNCTION",
                     help="fit your own log-density by reverse KL: a function in MODULE (imported from the current "
                     "directory first) or in FILE.py:FUNCTION mapping a (batch, D) tensor to (batch,) unnormalized "
                     "log-densities; needs --features D")
    fit.add_argument("--features", type=int, default=None, metavar="D",
                     help="with --energy: the dimension of the function's input")
    model = fit.add_argument_group("model")
    model.add_argument("--flow", "--model", dest="flow", default=None,
                       choices=[*MODELS, *(m for m in IMAGE_MODELS if m not in MODELS)],
                       help="the model (default planar, iaf above 2D / nsf / flowpp for images; images take "
                       "realnvp, glow, flowpp)")
    model.add_argument("--layers", type=int, default=None,
                       help="flow depth, model.layers (default 16, 5 above 2D / 5, or by rows for a --data file)")
    model.add_argument("--base", choices=["diagonal", "normal", "mixture"], default=None,
                       help="base distribution (default diagonal, learnable / normal)")
    model.add_argument("--hidden", type=int, default=None,
                       help="conditioner width (default 64, or by rows for a --data file; images 32)")
    model.add_argument("--blocks", type=int, default=None,
                       help="conditioner depth: hidden layers of an MLP, residual blocks of an image conditioner "
                            "(default 2)")
    model.add_argument("--bins", type=int, default=None,
                       help="spline bins of nsf and nsf-ar (default 16 for data, 8 for a --data file of under "
                       "10,000 training rows; the models' own default, 8, elsewhere)")
    model.add_argument("--bound", type=float, default=None,
                       help="spline interval [-B, B] and log-scale bound (default 3): in standardized units for data, "
                            "in the density's own units for an energy (cover its support)")
    train = fit.add_argument_group("training")
    train.add_argument("--steps", type=int, default=None, help="optimisation steps (default 10000 / 5000)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="samples per step (default 512; a --data file: min(512, training rows))")
    train.add_argument("--lr", type=float, default=None, help="peak Adam learning rate (default 2e-3 / 1e-3)")
    train.add_argument("--seed", type=int, default=None, help="random seed: initialisation, data, batches (default 0)")
    train.add_argument("--anneal", type=float, default=None,
                       help="energies: fraction of steps over which beta rises from 0.01 to 1, 0 = off (default "
                       "0.5 in 2D, 0 above)")
    train.add_argument("--schedule", choices=["cosine", "exponential", "constant"], default=None,
                       help="learning-rate schedule (default cosine)")
    train.add_argument("--clip", type=float, default=None, help="gradient-norm clip, 0 = none (default 0)")
    train.add_argument("--eval-every", type=int, default=None,
                       help="data: validate every N steps (default 250; a --data file: training rows / 10, "
                       "between 10 and 250)")
    train.add_argument("--patience", type=int, default=None,
                       help="data: stop after N validations without improvement, 0 = never (default 0; a --data "
                       "file: 10)")
    train.add_argument("--eval-samples", type=int, default=None,
                       help="energies: samples for the final diagnostics (default 100000)")
    train.add_argument("--device", default=None, help="torch device (default cpu)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default float32")
    train.add_argument("--warmup", type=int, default=None, help="linear learning-rate warmup steps (default 0)")
    train.add_argument("--ema", type=float, default=None,
                       help="decay of an EMA of the weights, used for evaluation and saved "
                            "(e.g. 0.999; default 0 = off)")
    train.add_argument("--max-bad-steps", type=int, default=None,
                       help="non-finite steps are skipped; stop after N in a row, naming the layer (default 5)")
    train.add_argument("--detect-anomaly", action="store_true",
                       help="debug: autograd anomaly detection names the backward op that made a NaN (slow)")
    train.add_argument("--compile", action="store_true",
                       help="compile the training step with torch.compile (the first step compiles; its time is "
                       "reported apart as compile_seconds)")
    data = fit.add_argument_group("data")
    data.add_argument("--data", default=None, metavar="FILE", help="fit your own data: a .npy or .csv table")
    data.add_argument("--context", default=None, metavar="COLS",
                      help="with --data: comma-separated columns (indices or header names) to condition on; "
                      "contexts and samples are in the data's raw units")
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
    run.add_argument("--out", default=None, help="run directory (default runs/TARGET-FLOWLAYERS-seedSEED); it must be "
                     "absent or empty unless --overwrite")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run in --out (its checkpoints and results are deleted once the new settings "
                     "are checked) or write into a non-empty directory")
    run.add_argument("--config", default=None, help="TOML file with settings (see a run's config.toml)")
    run.add_argument("--preset", default=None, metavar="NAME",
                     help="a shipped configuration in place of --config (e.g. ring-planar; 'tractable list' names "
                     "them); options and --set apply on top")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set model.layers=32 or --set 'model.hidden=[32, 48]' "
                     "(a TOML value; repeatable)")
    run.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its config.toml and newest intact checkpoint "
                     "(bit-identical on the same machine; a run without one starts again); refused if config.toml or "
                     "the data no longer match the checkpoint; no other settings apply")
    run.add_argument("--checkpoint-every", type=int, default=None,
                     help="steps between training checkpoints in OUT/checkpoints (default 1000)")
    run.add_argument("--keep-last", type=int, default=None, help="training checkpoints kept (default 3)")
    run.add_argument("--no-plots", action="store_true", help="skip the figures")
    run.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads of the whole run (default: 1 "
                     "for training on vectors: small models gain nothing from more; 2 for training on images and for "
                     "the evaluation and figures after any training; use 1 on a shared machine; raise it for wide "
                     "models on large tables or MNIST/CIFAR-10 on CPU)")
    run.add_argument("--quiet", action="store_true", help="no progress display")

    listing = sub.add_parser("list", help="list the targets, data sets, models and presets",
                             description="List the energies, data sets, models and presets that 'tractable fit' "
                             "accepts.")
    listing.add_argument("--counts", action="store_true",
                         help="also the image presets' parameter counts beside the published ones")
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
    _add_force(sample)

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
                    "run's eval.iw_samples)")
    ev.add_argument("--split", default="test", choices=["test", "val", "train"], help="data split (default test)")
    ev.add_argument("--seed", type=int, default=0, help="random seed of the fresh samples (default 0)")
    ev.add_argument("--out", default=None, metavar="FILE.json", help="where to write (default RUN_DIR/eval.json)")
    _add_force(ev)

    plot = sub.add_parser(
        "plot", help="draw a run's figures again (densities, samples, layers, training curves)",
        description="Draw the figures of a run again from its checkpoint and metrics.csv, under the names "
        "'tractable fit' uses: densities.png, samples.png, layers.png and layers.gif (energies), training.png.",
    )
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'tractable fit'")
    plot.add_argument("--out", default=None, metavar="DIR", help="where to write (default RUN_DIR)")
    plot.add_argument("--gif", action=argparse.BooleanOptionalAction, default=None,
                      help="the layer animation of energy runs (default as the run was configured)")
    _add_force(plot)


def _add_force(command: argparse.ArgumentParser) -> None:
    command.add_argument("--force", action="store_true",
                         help="use the run although its config.toml or data differ from what its checkpoint was "
                         "trained with (a warning instead of the refusal; weights that do not fit are refused anyway)")


def _sample(args: argparse.Namespace) -> int:
    sample_run(args.run_dir, args.n, out=args.out, seed=args.seed, temperature=args.temperature,
               context=args.context, figure=not args.no_figure, force=args.force)
    return 0


def _eval(args: argparse.Namespace) -> int:
    evaluate_run(args.run_dir, samples=args.samples, split=args.split, seed=args.seed, out=args.out, force=args.force)
    return 0


def _plot(args: argparse.Namespace) -> int:
    plot_run(args.run_dir, out_dir=args.out, gif=args.gif, force=args.force)
    return 0


def _sets(items: list[str]) -> list[tuple[str, object]]:
    pairs = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), parse_value(value.strip())))
    return pairs


def _fit(args: argparse.Namespace) -> int:
    if args.resume is not None:
        given = [f"--{dest.replace('_', '-')}" for dest in (*OPTIONS, "config", "preset", "out")
                 if getattr(args, dest) is not None]
        given += [f"--{dest.replace('_', '-')}" for dest in SWITCHES if getattr(args, dest)]
        given += ["TARGET"] * (args.target is not None) + ["--set"] * bool(args.set)
        given += ["--overwrite"] * args.overwrite
        if given:
            raise ConfigError(f"--resume continues the run exactly as its config.toml says; got {', '.join(given)} "
                              "besides it (start a new run to change settings)")
        resume(args.resume, threads=args.threads, progress=not args.quiet)
        return 0
    options = {key: getattr(args, dest) for dest, key in OPTIONS.items() if getattr(args, dest) is not None}
    options.update(value for dest, value in SWITCHES.items() if getattr(args, dest))
    fit(target=args.target, config_file=args.config, preset=args.preset, options=options, sets=_sets(args.set),
        out=args.out, threads=args.threads, progress=not args.quiet, overwrite=args.overwrite)
    return 0


def _list(args: argparse.Namespace) -> int:
    print_listing(counts=args.counts)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the command; errors print one line and return 2 (1 for an operating-system
    error such as a full disk or a run directory that cannot be written)."""
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show "‖" or "±" gets escapes, not an error
        getattr(stream, "reconfigure", lambda **_: None)(errors="backslashreplace")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return end_process(_run(args))


def _run(args: argparse.Namespace) -> int:
    """The command's exit status, its error (if any) printed as one line."""
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
