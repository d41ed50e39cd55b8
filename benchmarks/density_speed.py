"""Training-step and sampling speed of MAF and NSF against nflows, normflows and zuko at matched architectures.

    .venv/bin/python benchmarks/density_speed.py [--dims 2 16 64] [--threads 1 2] [--libs tractable zuko ...]
        [--baseline OTHER_CHECKOUT/src]

One training step is ``log_prob`` on a batch of 1024 + ``backward`` + ``Adam.step`` (foreach, lr 1e-3); sampling
draws 1024 points without gradients. Architectures: 5 layers, conditioners with 2 hidden layers of 64 units (ReLU),
affine maps for MAF, 8-bin rational-quadratic splines on [-3, 3] with linear tails for NSF (coupling form, MLP
conditioners; ``nsf-ar`` the autoregressive form). Peer libraries missing from the environment are skipped
(``pip install nflows normflows zuko`` into a separate target and put it on ``PYTHONPATH`` to include them).
Libraries are timed interleaved, each the best of ``--repeats`` rounds, in wall-clock and in process CPU time (the
steadier measure for one thread on a machine shared with other jobs).
``--baseline DIR`` also times the tractable found in ``DIR`` (the ``src`` folder of a checkout of another commit,
loaded as the package ``tractable_baseline``) as the library ``baseline``, interleaved with the rest, and reports each
row's speed relative to it: a change is measured against the code before it in the same run.
Results go to benchmarks/results/density_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS, HIDDEN, BINS, BOUND, BATCH = 5, 64, 8, 3.0, 1024

# Each builder returns (module with parameters, log_prob(x), sample(n)) or None if the library lacks the model.
Builder = Callable[[int], "tuple[nn.Module, Callable, Callable] | None"]


def tractable_model(kind: str, d: int, package: str = "tractable"):
    MAF = importlib.import_module(f"{package}.models.maf").MAF
    NSF = importlib.import_module(f"{package}.models.nsf").NSF
    if kind == "maf":
        flow = MAF(d, layers=LAYERS, hidden=HIDDEN)
    else:
        flow = NSF(d, layers=LAYERS, hidden=HIDDEN, bins=BINS, bound=BOUND, autoregressive=kind == "nsf-ar")
    # flow.validate stays True (the default a user gets): the NaN check costs one reduction per call
    return flow, flow.log_prob, flow.sample


def zuko_model(kind: str, d: int):
    import zuko

    if kind == "maf":
        flow = zuko.flows.MAF(d, transforms=LAYERS, hidden_features=(HIDDEN, HIDDEN))
    else:
        passes = 2 if kind == "nsf" else None
        flow = zuko.flows.NSF(d, transforms=LAYERS, bins=BINS, hidden_features=(HIDDEN, HIDDEN), passes=passes)
    return flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,))


def nflows_model(kind: str, d: int):
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.nn.nets import MLP
    from nflows.transforms import CompositeTransform, ReversePermutation
    from nflows.transforms.autoregressive import (
        MaskedAffineAutoregressiveTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    )
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform

    class Net(MLP):  # nflows' MLP takes no context argument; its couplings pass one
        def forward(self, inputs, context=None):
            return super().forward(inputs)

    steps = []
    for k in range(LAYERS):
        if k:
            steps.append(ReversePermutation(d))
        if kind == "maf":  # num_blocks=1: initial layer + one block = 2 hidden layers
            steps.append(MaskedAffineAutoregressiveTransform(d, HIDDEN, num_blocks=1, use_residual_blocks=False))
        elif kind == "nsf-ar":
            steps.append(
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    d, HIDDEN, num_bins=BINS, tails="linear", tail_bound=BOUND, num_blocks=1, use_residual_blocks=False
                )
            )
        else:
            mask = torch.ones(d)
            mask[: d // 2] = -1
            steps.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask if k % 2 == 0 else -mask,
                    lambda i, o: Net((i,), (o,), [HIDDEN, HIDDEN]),
                    num_bins=BINS,
                    tails="linear",
                    tail_bound=BOUND,
                )
            )
    flow = Flow(CompositeTransform(steps), StandardNormal([d]))
    return flow, flow.log_prob, flow.sample


def normflows_model(kind: str, d: int):
    import normflows as nf

    if kind == "nsf":  # normflows' spline couplings use a residual net (not the matched MLP): skipped
        return None
    flows = []
    for k in range(LAYERS):
        if kind == "maf":
            flows.append(nf.flows.MaskedAffineAutoregressive(d, HIDDEN, num_blocks=1, use_residual_blocks=False))
        else:
            flows.append(
                nf.flows.AutoregressiveRationalQuadraticSpline(d, 1, HIDDEN, num_bins=BINS, tail_bound=BOUND)
            )
        if k < LAYERS - 1:
            flows.append(nf.flows.Permute(d, mode="shuffle"))
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False), flows)
    return flow, flow.log_prob, lambda n: flow.sample(n)[0]


LIBS: dict[str, Callable] = {
    "tractable": tractable_model,
    "zuko": zuko_model,
    "nflows": nflows_model,
    "normflows": normflows_model,
}


BASELINE = "tractable_baseline"


def load_baseline(src: str) -> None:
    """Import the tractable of another checkout (``src/tractable``) as the package :data:`BASELINE`."""
    init = Path(src).resolve() / "tractable" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--baseline expects the src folder of a checkout, with tractable/__init__.py; got {src!r}")
    spec = importlib.util.spec_from_file_location(BASELINE, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[BASELINE] = module
    spec.loader.exec_module(module)
    LIBS["baseline"] = lambda kind, d: tractable_model(kind, d, BASELINE)


def available(lib: str) -> bool:
    return lib in ("tractable", "baseline") or importlib.util.find_spec(lib) is not None


def time_ms(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Milliseconds per call: (wall clock, CPU time of this process). On a machine shared with other jobs the CPU
    time of a one-thread run is the steadier measure (it does not count the time the scheduler gave others)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) / calls * 1e3, (time.process_time() - cpu) / calls * 1e3


def bench(kind: str, d: int, libs: list[str], *, calls: int, repeats: int, sample_calls: int) -> list[dict]:
    prepared = {}
    for lib in libs:
        torch.manual_seed(0)
        built = LIBS[lib](kind, d)
        if built is None:
            continue
        module, log_prob, sample = built
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        x = torch.randn(BATCH, d)

        def step(module=module, log_prob=log_prob, opt=opt, x=x) -> None:
            loss = -log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        def draw(sample=sample) -> None:
            with torch.no_grad():
                sample(BATCH)

        for _ in range(5):
            step()
        draw()
        prepared[lib] = (step, draw)
    best = {lib: [float("inf")] * 4 for lib in prepared}
    rounds: dict[str, list[tuple[float, float]]] = {lib: [] for lib in prepared}  # CPU ms of each round
    for _ in range(repeats):
        for lib, (step, draw) in prepared.items():
            b = best[lib]
            train, sample = time_ms(step, calls), time_ms(draw, sample_calls)
            b[:2] = [min(u, v) for u, v in zip(b[:2], train)]
            b[2:] = [min(u, v) for u, v in zip(b[2:], sample)]
            rounds[lib].append((train[1], sample[1]))
    keys = ("train_ms", "train_cpu_ms", "sample_ms", "sample_cpu_ms")
    return [{"model": kind, "dims": d, "lib": lib, **dict(zip(keys, b)), "rounds": rounds[lib]}
            for lib, b in best.items()]


def table(rows: list[dict]) -> str:
    lines = [
        "| model | dims | threads | library | train step ms (wall) | (CPU) | sample 1024 ms (wall) | (CPU) |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dims']} | {r['threads']} | {r['lib']} | {r['train_ms']:.2f} | "
            f"{r['train_cpu_ms']:.2f} | {r['sample_ms']:.2f} | {r['sample_cpu_ms']:.2f} |"
        )
    return "\n".join(lines)


#: Peers whose MAF is oriented for one-pass *sampling* (density needs D passes): left out of MAF sampling ratios.
SAMPLING_ORIENTED_MAF = {"normflows"}


def ratios(rows: list[dict]) -> str:
    """Speed ratios ``fastest peer time / tractable time`` (> 1: tractable is faster), in process CPU time.

    Training compares against every peer; MAF sampling only against the peers whose MAF evaluates the density in one
    pass (as tractable's does), since a sampling-oriented MAF is a different trade-off (an IAF in tractable's terms).
    """
    lines = [
        "| model | dims | threads | train: fastest peer | ratio | sampling: fastest peer | ratio |",
        "|---|---:|---:|---|---:|---|---:|",
    ]
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dims"], r["threads"]), {})[r["lib"]] = r
    for (model, dims, threads), by_lib in groups.items():
        ours = by_lib.get("tractable")
        peers = {lib: r for lib, r in by_lib.items() if lib not in ("tractable", "baseline")}
        if ours is None or not peers:
            continue
        train_lib = min(peers, key=lambda lib: peers[lib]["train_cpu_ms"])
        sample_peers = {lib: r for lib, r in peers.items() if not (model == "maf" and lib in SAMPLING_ORIENTED_MAF)}
        sample_lib = min(sample_peers, key=lambda lib: sample_peers[lib]["sample_cpu_ms"])
        lines.append(
            f"| {model} | {dims} | {threads} | {train_lib} | "
            f"{peers[train_lib]['train_cpu_ms'] / ours['train_cpu_ms']:.2f} "
            f"| {sample_lib} | {sample_peers[sample_lib]['sample_cpu_ms'] / ours['sample_cpu_ms']:.2f} |"
        )
    return "\n".join(lines)


def against_baseline(rows: list[dict]) -> str:
    """Each row's speed relative to the baseline checkout: baseline CPU time / tractable's (> 1: faster now).

    The ratio is the median over rounds of the two libraries' times in the same round (run back to back), so a
    machine that speeds up or slows down during the run moves both sides of a ratio alike; best-of times compare
    the fastest moments of each, which on a shared machine drift apart by ±10%.
    """
    lines = ["| model | dims | threads | train: baseline / now | sampling: baseline / now |",
             "|---|---:|---:|---:|---:|"]
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dims"], r["threads"]), {})[r["lib"]] = r
    for (model, dims, threads), by_lib in groups.items():
        if "tractable" in by_lib and "baseline" in by_lib:
            pairs = list(zip(by_lib["baseline"]["rounds"], by_lib["tractable"]["rounds"]))
            train = statistics.median(b[0] / n[0] for b, n in pairs)
            sample = statistics.median(b[1] / n[1] for b, n in pairs)
            lines.append(f"| {model} | {dims} | {threads} | {train:.3f} | {sample:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["maf", "nsf", "nsf-ar"], choices=["maf", "nsf", "nsf-ar"])
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 16, 64])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    parser.add_argument("--calls", type=int, default=10, help="training steps per timing round")
    parser.add_argument("--sample-calls", type=int, default=2, help="sampling calls per timing round")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (the best is kept)")
    parser.add_argument("--out", default="density_speed", help="results file stem under benchmarks/results")
    parser.add_argument("--baseline", default=None, metavar="SRC",
                        help="also time the tractable of another checkout's src folder, as library 'baseline'")
    args = parser.parse_args()
    libs = [lib for lib in args.libs if available(lib)]
    if args.baseline:
        load_baseline(args.baseline)
        libs.append("baseline")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for kind in args.models:
            for d in args.dims:
                for row in bench(kind, d, libs, calls=args.calls, repeats=args.repeats, sample_calls=args.sample_calls):
                    row["threads"] = threads
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=1))
    text = (table(rows) + "\n\nRatios (fastest peer's CPU time / tractable's; > 1 means tractable is faster):\n\n"
            + ratios(rows))
    if args.baseline:
        text += f"\n\nAgainst the baseline checkout {args.baseline} (its CPU time / now):\n\n" + against_baseline(rows)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
