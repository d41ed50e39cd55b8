"""Training-step and sampling speed of MAF, NSF and RealNVP against nflows, normflows and zuko at matched architectures.

    .venv/bin/python benchmarks/density_speed.py [--models maf nsf realnvp] [--dims 2 16 64] [--threads 1 2]
        [--batches 256 1024] [--compile] [--libs tractable zuko ...] [--baseline OTHER_CHECKOUT/src]

One training step is ``log_prob`` on a batch + ``backward`` + ``Adam.step`` (lr 1e-3; torch's default Adam for every
library; ``--tractable-adam fused`` gives tractable the fused Adam its own training loop uses, and
``--tractable-adam trainer`` runs tractable's rows through that loop itself, as ``tractable fit`` does:
``Trainer.train_step`` and ``end_step``, with their non-finite guard, logged gradient norm and learning-rate schedule,
the peers keeping a plain loop with torch's default Adam, as their documentation trains them); sampling draws a batch
of points without gradients. Architectures: 5 layers, conditioners with 2 hidden layers of 64 units (ReLU), affine
maps for MAF, 8-bin rational-quadratic splines on [-3, 3] with linear tails for NSF (coupling form, MLP conditioners;
``nsf-ar`` the autoregressive form), affine couplings for RealNVP. Peer libraries are looked up on ``--peer-path``
(appended to ``sys.path``; default /tmp/peerlibs) and skipped when missing.
``--compile`` adds the rows ``tractable+compile``: the same model with ``log_prob`` and ``sample`` compiled by
``torch.compile`` (inductor), timed after the compiling calls (their time is reported apart, ``compile_s``).
Each row also gives its fraction of the matmul-bound limit: ``torch.mm`` GFLOP/s is measured in the same run at each
thread count (the best of a few conditioner-sized and square products), and a training step cannot take less than
``6 × weights × batch`` flops at that rate (``weights``: the entries of the model's weight matrices).
Libraries are timed interleaved, in ``--repeats`` rounds; the table gives each library's best round in wall-clock and
in process CPU time, and the ratios the median over rounds of two libraries' times in the same round (CPU time on one
thread, the steadier measure on a machine shared with other jobs; wall clock on more).
``--from-json FILE`` rewrites the tables of a saved run (its .json) without timing anything.
``--baseline DIR`` also times the tractable found in ``DIR`` (the ``src`` folder of a checkout of another commit,
loaded as the package ``tractable_baseline``) as the library ``baseline``, interleaved with the rest, and reports each
row's speed relative to it: a change is measured against the code before it in the same run.
Results go to benchmarks/results/density_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS, HIDDEN, BINS, BOUND = 5, 64, 8, 3.0
COMPILED = "tractable+compile"
#: Models whose sampling direction is sequential in tractable (D passes): compiling it unrolls D x layers passes.
SEQUENTIAL_SAMPLING = {"maf", "nsf-ar"}

# Each builder returns (module with parameters, log_prob(x), sample(n)) or None if the library lacks the model.
Builder = Callable[[str, int], "tuple[nn.Module, Callable, Callable] | None"]


def tractable_model(kind: str, d: int, package: str = "tractable"):
    models = importlib.import_module(f"{package}.models")
    if kind == "maf":
        flow = models.MAF(d, layers=LAYERS, hidden=HIDDEN)
    elif kind == "realnvp":
        flow = models.RealNVP(d, layers=LAYERS, hidden=HIDDEN)
    else:
        flow = models.NSF(d, layers=LAYERS, hidden=HIDDEN, bins=BINS, bound=BOUND, autoregressive=kind == "nsf-ar")
    # flow.validate stays True (the default a user gets): the NaN check costs one reduction per call
    return flow, flow.log_prob, flow.sample


def zuko_model(kind: str, d: int):
    import zuko

    if kind == "maf":
        flow = zuko.flows.MAF(d, transforms=LAYERS, hidden_features=(HIDDEN, HIDDEN))
    elif kind == "realnvp":
        flow = zuko.flows.RealNVP(d, transforms=LAYERS, hidden_features=(HIDDEN, HIDDEN))
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
    from nflows.transforms.coupling import AffineCouplingTransform, PiecewiseRationalQuadraticCouplingTransform

    class Net(MLP):  # nflows' MLP takes no context argument; its couplings pass one
        def forward(self, inputs, context=None):
            return super().forward(inputs)

    steps = []
    for k in range(LAYERS):
        mask = torch.ones(d)
        mask[: d // 2] = -1
        mask = mask if k % 2 == 0 else -mask
        if k and kind in ("maf", "nsf-ar"):
            steps.append(ReversePermutation(d))
        if kind == "maf":  # num_blocks=1: initial layer + one block = 2 hidden layers
            steps.append(MaskedAffineAutoregressiveTransform(d, HIDDEN, num_blocks=1, use_residual_blocks=False))
        elif kind == "nsf-ar":
            steps.append(
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    d, HIDDEN, num_bins=BINS, tails="linear", tail_bound=BOUND, num_blocks=1, use_residual_blocks=False
                )
            )
        elif kind == "realnvp":
            steps.append(AffineCouplingTransform(mask, lambda i, o: Net((i,), (o,), [HIDDEN, HIDDEN])))
        else:
            steps.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, lambda i, o: Net((i,), (o,), [HIDDEN, HIDDEN]), num_bins=BINS, tails="linear",
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
        elif kind == "realnvp":
            net = nf.nets.MLP([d // 2, HIDDEN, HIDDEN, 2 * (d - d // 2)], init_zeros=True)
            flows.append(nf.flows.AffineCouplingBlock(net))
        else:
            flows.append(
                nf.flows.AutoregressiveRationalQuadraticSpline(d, 1, HIDDEN, num_bins=BINS, tail_bound=BOUND)
            )
        if k < LAYERS - 1:
            flows.append(nf.flows.Permute(d, mode="swap" if kind == "realnvp" else "shuffle"))
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False), flows)
    return flow, flow.log_prob, lambda n: flow.sample(n)[0]


LIBS: dict[str, Callable] = {
    "tractable": tractable_model,
    "zuko": zuko_model,
    "nflows": nflows_model,
    "normflows": normflows_model,
}
OURS = ("tractable", COMPILED, "baseline")


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


def mm_gflops(repeats: int = 5) -> float:
    """The best ``torch.mm`` rate (GFLOP/s, wall clock) at the current thread count, over conditioner-sized and square
    products: the matmul-bound limit's rate."""
    best = 0.0
    for m, k, n in ((1024, 64, 64), (1024, 128, 128), (256, 256, 256), (512, 512, 512)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        calls = max(1, int(2e8 // (2 * m * k * n)))
        for _ in range(repeats):
            ms = time_ms(lambda a=a, b=b: torch.mm(a, b), calls)[0]
            best = max(best, 2 * m * k * n / (ms * 1e-3) / 1e9)
    return best


def weight_entries(module: nn.Module) -> int:
    """The entries of a model's weight matrices (its parameters of two or more dimensions): a training step
    multiplies each by every row of the batch three times (forward, and two products in the backward)."""
    return sum(p.numel() for p in module.parameters() if p.dim() >= 2)


def package_of(lib: str) -> str:
    return BASELINE if lib == "baseline" else "tractable"


def plain_step(module: nn.Module, log_prob: Callable, x: torch.Tensor, adam: str, lib: str) -> Callable[[], None]:
    """One step of a hand-written loop: ``log_prob``, ``backward`` and Adam (tractable's fused one for tractable's
    rows under ``adam == "fused"``, else torch's default)."""
    if adam == "fused" and lib in OURS:
        hygiene = importlib.import_module(f"{package_of(lib)}.training.hygiene")
        opt = hygiene.make_adam(list(module.parameters()), 1e-3)
    else:
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        loss = -log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def trainer_step(module: nn.Module, log_prob: Callable, x: torch.Tensor, lib: str) -> Callable[[], None]:
    """One step of tractable's own training loop, as ``tractable fit`` runs it: ``Trainer.train_step`` (backward, the
    gradient norm, the non-finite guard, fused Adam, the schedule) and ``end_step`` (the step's row logged, read on
    the host every step on CPU), with the default options and a schedule long enough never to end."""
    training = importlib.import_module(f"{package_of(lib)}.training")
    trainer = training.Trainer(module, steps=10**9, columns=("step", "loss", "grad_norm", "lr"), desc="bench",
                               options=training.TrainOptions(lr=1e-3, progress=False))
    # tractable fit checks its rows once and runs the steps' log_prob without its value checks (a checkout from
    # before values_checked existed runs them)
    checked = getattr(importlib.import_module(f"{package_of(lib)}.flow"), "values_checked", contextlib.nullcontext)

    def compute() -> tuple[torch.Tensor, None]:
        with checked():
            return -log_prob(x).mean(), None

    def step() -> None:
        r = trainer.train_step(compute, lambda loss, aux: "", lambda: None)
        trainer.end_step({"step": trainer.step, "loss": r.loss, "grad_norm": r.grad_norm, "lr": r.lr}, {}, dict)

    return step


def bench(kind: str, d: int, libs: list[str], *, batch: int, calls: int, repeats: int, sample_calls: int,
          adam: str, compile_sample_dims: int) -> list[dict]:
    prepared, extra = {}, {}
    for lib in libs:
        torch.manual_seed(0)
        built = LIBS["tractable" if lib == COMPILED else lib](kind, d)
        if built is None:
            continue
        module, log_prob, sample = built
        info: dict = {"weights": weight_entries(module)}
        if lib == COMPILED:
            log_prob = torch.compile(log_prob)
            info["sample_compiled"] = kind not in SEQUENTIAL_SAMPLING or d <= compile_sample_dims
            if info["sample_compiled"]:
                sample = torch.compile(sample)
        x = torch.randn(batch, d)
        if adam == "trainer" and lib in OURS:
            step = trainer_step(module, log_prob, x, lib)
        else:
            step = plain_step(module, log_prob, x, adam, lib)

        def draw(sample=sample) -> None:
            with torch.no_grad():
                sample(batch)

        start = time.perf_counter()
        step()
        draw()
        if lib == COMPILED:  # the compiling calls, apart from the steady state
            info["compile_s"] = round(time.perf_counter() - start, 1)
        for _ in range(4):
            step()
        draw()
        prepared[lib], extra[lib] = (step, draw), info
    best = {lib: [float("inf")] * 4 for lib in prepared}
    # each round's ms: process CPU time on one thread, the wall clock on more (see ratios)
    rounds: dict[str, list[tuple[float, float]]] = {lib: [] for lib in prepared}
    measure = 1 if torch.get_num_threads() == 1 else 0
    for _ in range(repeats):
        for lib, (step, draw) in prepared.items():
            b = best[lib]
            train, sample = time_ms(step, calls), time_ms(draw, sample_calls)
            b[:2] = [min(u, v) for u, v in zip(b[:2], train)]
            b[2:] = [min(u, v) for u, v in zip(b[2:], sample)]
            rounds[lib].append((train[measure], sample[measure]))
    keys = ("train_ms", "train_cpu_ms", "sample_ms", "sample_cpu_ms")
    return [{"model": kind, "dims": d, "batch": batch, "lib": lib, **dict(zip(keys, b)), **extra[lib],
             "rounds": rounds[lib]} for lib, b in best.items()]


def limit_fraction(row: dict, gflops: float) -> float:
    """The matmul-bound time of a training step over the measured one: the wall clock, or the CPU time when less
    (one thread on a loaded machine, where the wall clock counts the time the scheduler gave others)."""
    return 6 * row["weights"] * row["batch"] / (gflops * 1e9) * 1e3 / min(row["train_ms"], row["train_cpu_ms"])


def table(rows: list[dict]) -> str:
    lines = [
        ("| model | dims | threads | batch | library | train step ms (wall) | (CPU) | of matmul limit "
         "| sample ms (wall) | (CPU) | compile s |"),
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sample_note = "" if r.get("sample_compiled", True) else " (eager)"
        lines.append(
            f"| {r['model']} | {r['dims']} | {r['threads']} | {r['batch']} | {r['lib']} | {r['train_ms']:.2f} | "
            f"{r['train_cpu_ms']:.2f} | {r['limit_fraction']:.0%} | {r['sample_ms']:.2f}{sample_note} | "
            f"{r['sample_cpu_ms']:.2f} | {r.get('compile_s', '')} |"
        )
    return "\n".join(lines)


#: Peers whose MAF is oriented for one-pass *sampling* (density needs D passes): left out of MAF sampling ratios.
SAMPLING_ORIENTED_MAF = {"normflows"}


def _groups(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dims"], r["threads"], r["batch"]), {})[r["lib"]] = r
    return groups


def _median(row: dict, k: int) -> float:
    """A row's median time over the rounds: ``k`` 0 for a training step, 1 for sampling."""
    return statistics.median(r[k] for r in row["rounds"])


def _paired(slow: dict, fast: dict, k: int) -> float:
    """The median over rounds of ``slow``'s time / ``fast``'s in the same round (timed back to back), so a machine that
    speeds up or slows down during the run moves both sides of a ratio alike; best-of times compare the fastest
    moments of each, which on a shared machine drift apart by ±10%."""
    return statistics.median(a[k] / b[k] for a, b in zip(slow["rounds"], fast["rounds"]))


def ratios(rows: list[dict]) -> str:
    """Speed ratios ``fastest peer time / tractable time`` (> 1: tractable is faster), for the eager rows and (with
    ``--compile``) the compiled ones against the same (eager) peers: the median over rounds of the two times in the
    same round (:func:`_paired`), in process CPU time on one thread and wall-clock time on more (where the CPU time
    counts the threads' spin-waits and measures no user's wait); the fastest peer is the one of least median time.

    Training compares against every peer; MAF sampling only against the peers whose MAF evaluates the density in one
    pass (as tractable's does), since a sampling-oriented MAF is a different trade-off (an IAF in tractable's terms).
    """
    lines = [
        ("| model | dims | threads | batch | train: fastest peer | eager | compiled | sampling: fastest peer "
         "| eager | compiled |"),
        "|---|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for (model, dims, threads, batch), by_lib in _groups(rows).items():
        ours, compiled = by_lib.get("tractable"), by_lib.get(COMPILED)
        peers = {lib: r for lib, r in by_lib.items() if lib not in OURS}
        if ours is None or not peers:
            continue
        train = peers[min(peers, key=lambda lib: _median(peers[lib], 0))]
        sample_peers = {lib: r for lib, r in peers.items() if not (model == "maf" and lib in SAMPLING_ORIENTED_MAF)}
        sample = sample_peers[min(sample_peers, key=lambda lib: _median(sample_peers[lib], 1))]
        ct = f"{_paired(train, compiled, 0):.2f}" if compiled else "-"
        cs = f"{_paired(sample, compiled, 1):.2f}" if compiled else "-"
        et, es = _paired(train, ours, 0), _paired(sample, ours, 1)
        lines.append(f"| {model} | {dims} | {threads} | {batch} | {train['lib']} | {et:.2f} | {ct} "
                     f"| {sample['lib']} | {es:.2f} | {cs} |")
    return "\n".join(lines)


def against_baseline(rows: list[dict]) -> str:
    """Each row's speed relative to the baseline checkout: baseline time / tractable's (> 1: faster now), paired by
    round as in :func:`ratios`."""
    lines = ["| model | dims | threads | batch | train: baseline / now | sampling: baseline / now |",
             "|---|---:|---:|---:|---:|---:|"]
    for (model, dims, threads, batch), by_lib in _groups(rows).items():
        if "tractable" in by_lib and "baseline" in by_lib:
            base, now = by_lib["baseline"], by_lib["tractable"]
            lines.append(f"| {model} | {dims} | {threads} | {batch} | {_paired(base, now, 0):.3f} "
                         f"| {_paired(base, now, 1):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = ["maf", "nsf", "realnvp", "nsf-ar"]
    parser.add_argument("--models", nargs="+", default=["maf", "nsf", "realnvp"], choices=kinds)
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 16, 64])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    parser.add_argument("--compile", action="store_true", help=f"add the rows {COMPILED!r} (torch.compile)")
    parser.add_argument("--compile-sample-dims", type=int, default=16,
                        help="compile the sequential sampling of maf / nsf-ar only up to this many dimensions")
    parser.add_argument("--tractable-adam", choices=["plain", "fused", "trainer"], default="plain",
                        help="tractable's step: a plain loop with torch's default Adam as the peers' (plain) or with "
                        "the fused Adam of tractable's training loop (fused), or that loop itself (trainer)")
    parser.add_argument("--calls", type=int, default=10, help="training steps per timing round")
    parser.add_argument("--sample-calls", type=int, default=2, help="sampling calls per timing round")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (the best is kept)")
    parser.add_argument("--peer-path", default="/tmp/peerlibs", help="appended to sys.path to find the peers")
    parser.add_argument("--out", default="density_speed", help="results file stem under benchmarks/results")
    parser.add_argument("--baseline", default=None, metavar="SRC",
                        help="also time the tractable of another checkout's src folder, as library 'baseline'")
    parser.add_argument("--from-json", default=None, metavar="FILE", help="only rewrite the .md of a saved run")
    args = parser.parse_args()
    if args.from_json:
        path = Path(args.from_json)
        rows = json.loads(path.read_text())
        peaks = {r["threads"]: r["mm_gflops"] for r in rows}
        adam, baseline = rows[0].get("adam", args.tractable_adam), any(r["lib"] == "baseline" for r in rows)
        path.with_suffix(".md").write_text(report(rows, peaks, adam, baseline))
        return
    if args.peer_path and os.path.isdir(args.peer_path):
        sys.path.append(args.peer_path)
    libs = [lib for lib in args.libs if available(lib)]
    if args.compile:
        libs.insert(libs.index("tractable") + 1 if "tractable" in libs else 0, COMPILED)
    if args.baseline:
        load_baseline(args.baseline)
        libs.append("baseline")
    rows, peaks = [], {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peaks[threads] = mm_gflops()
        print(f"threads {threads}: torch.mm peak {peaks[threads]:.1f} GFLOP/s", flush=True)
        for batch in args.batches:
            for kind in args.models:
                for d in args.dims:
                    for row in bench(kind, d, libs, batch=batch, calls=args.calls, repeats=args.repeats,
                                     sample_calls=args.sample_calls, adam=args.tractable_adam,
                                     compile_sample_dims=args.compile_sample_dims):
                        row["threads"], row["mm_gflops"], row["adam"] = threads, peaks[threads], args.tractable_adam
                        row["limit_fraction"] = limit_fraction(row, peaks[threads])
                        rows.append(row)
                        print(table([row]).splitlines()[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=1))
    text = report(rows, peaks, args.tractable_adam, bool(args.baseline))
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


def report(rows: list[dict], peaks: dict[int, float], adam: str, baseline: bool) -> str:
    """The .md of a run: its setup, the table of times, the ratios, and (with a baseline) the change against it."""
    step = {"plain": "a plain loop, torch's default Adam (as the peers')", "fused": "a plain loop, its fused Adam",
            "trainer": "its training loop (Trainer.train_step + end_step, fused Adam)"}.get(adam, adam)
    setup = (f"torch {torch.__version__}; tractable's step: {step}; peers: a plain loop, torch's default Adam; "
             "torch.mm peak GFLOP/s by threads: "
             + ", ".join(f"{t}: {g:.1f}" for t, g in peaks.items()))
    text = (setup + "\n\n" + table(rows) + "\n\nRatios (fastest peer's time / tractable's, the median over rounds "
            "timed back to back; CPU time on one thread, wall clock on more; > 1 means tractable is faster):\n\n"
            + ratios(rows))
    if baseline:
        text += "\n\nAgainst the baseline checkout (its time / now):\n\n" + against_baseline(rows)
    return text + "\n"

if __name__ == "__main__":
    main()
