"""Vector models on a GPU: training and sampling throughput eager, compiled and with CUDA graphs, and the fit loop.

The prepared device check for the vector models, one short script for a machine lent with a GPU:

1. For each model (``maf``, ``nsf``, ``realnvp``), dimension and mode: ``--warmup`` untimed steps (they compile, in
   the compiled modes: their time is reported apart as ``compile_s``), then ``--steps`` timed training steps
   (``log_prob`` of a batch, backward, fused Adam) and ``--draws`` timed sampling calls, CUDA-synchronised: steps
   per second, samples per second and peak GPU memory. Modes: ``eager``; ``compile`` (``torch.compile``, inductor);
   ``cudagraphs`` (``torch.compile(mode="reduce-overhead")``: inductor's kernels replayed as CUDA graphs).
2. ``fit``: tractable's own training loop (:func:`tractable.training.fit_max_likelihood`) on the same model, reading
   the loss on the host every step (``log_every=1``) and every 50 (the accelerator default): the cost of a host
   synchronisation per step.

Every row is written to ``gpu_vectors.json`` under ``--out`` as soon as it is measured, and the script stops starting
new rows after ``--budget`` seconds, so a run cut short still leaves its results.
Run on the device: ``python benchmarks/gpu_vectors.py --out $OUT`` (about 6 minutes on one H200); on a CPU the same
script runs as a smoke test: ``python benchmarks/gpu_vectors.py --device cpu --dims 2 --batch 64 --steps 2 --warmup 1
--draws 1 --modes eager --fit-steps 4``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from tractable.models import MAF, NSF, RealNVP
from tractable.training import fit_max_likelihood
from tractable.training.hygiene import make_adam

#: The sequential sampling of MAF is compiled only up to this dimension (the graph unrolls dims x layers passes).
COMPILE_SEQUENTIAL_DIMS = 16


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(kind: str, d: int, device: torch.device, *, layers: int, hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "maf":
        flow = MAF(d, layers=layers, hidden=hidden)
    elif kind == "nsf":
        flow = NSF(d, layers=layers, hidden=hidden, bins=8, bound=3.0)
    else:
        flow = RealNVP(d, layers=layers, hidden=hidden)
    flow.validate = False  # the NaN check reads a value on the host: measure the model, not the check
    return flow.to(device)


def compiled(fn, mode: str):
    if mode == "eager":
        return fn
    return torch.compile(fn, mode="reduce-overhead" if mode == "cudagraphs" else None)


def timed(fn, calls: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def throughput(kind: str, d: int, mode: str, device: torch.device, args: argparse.Namespace) -> dict:
    flow = build(kind, d, device, layers=args.layers, hidden=args.hidden)
    opt = make_adam([p for p in flow.parameters() if p.requires_grad], 1e-3)
    x = torch.randn(args.batch, d, device=device)
    log_prob = compiled(flow.log_prob, mode)
    sample_mode = mode if not (kind == "maf" and d > COMPILE_SEQUENTIAL_DIMS) else "eager"
    sample = compiled(flow.sample, sample_mode)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (-log_prob(x).mean()).backward()
        opt.step()

    def draw() -> None:
        with torch.no_grad():
            sample(args.batch)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
        draw()
    sync(device)
    warm = time.perf_counter() - start
    step_s, draw_s = timed(step, args.steps, device), timed(draw, args.draws, device)
    return {
        "model": kind, "dims": d, "mode": mode, "sample_mode": sample_mode, "batch": args.batch,
        "steps_per_s": round(1 / step_s, 1), "ms_per_step": round(step_s * 1e3, 3),
        "samples_per_s": round(args.batch / draw_s, 1), "ms_per_draw": round(draw_s * 1e3, 3),
        "compile_s": round(warm, 1) if mode != "eager" else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
    }


def fit_rows(kind: str, d: int, device: torch.device, args: argparse.Namespace) -> list[dict]:
    rows = []
    data = torch.randn(max(args.batch * 4, 4096), d, device=device)
    for every in (1, 50):
        flow = build(kind, d, device, layers=args.layers, hidden=args.hidden)
        history = fit_max_likelihood(flow, data, steps=args.fit_steps, batch_size=args.batch, progress=False,
                                     log_every=every)
        rows.append({"model": kind, "dims": d, "mode": f"fit log_every={every}", "batch": args.batch,
                     "steps_per_s": round(args.fit_steps / history.seconds, 1), "final_loss": history.final("loss")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["maf", "nsf", "realnvp"], choices=["maf", "nsf", "realnvp"])
    parser.add_argument("--dims", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--modes", nargs="+", default=["eager", "compile", "cudagraphs"],
                        choices=["eager", "compile", "cudagraphs"])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per row")
    parser.add_argument("--draws", type=int, default=10, help="timed sampling calls per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps and draws first (they compile)")
    parser.add_argument("--fit-steps", type=int, default=300, help="steps of each fit-loop row (0: none)")
    parser.add_argument("--budget", type=float, default=420, help="start no new row after this many seconds")
    parser.add_argument("--out", default=".", help="directory for gpu_vectors.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "batch": args.batch,
            "layers": args.layers, "hidden": args.hidden}
    print(json.dumps(info), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": info, "rows": [], "skipped": []}
    began = time.perf_counter()

    def record(row: dict) -> None:
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        (out / "gpu_vectors.json").write_text(json.dumps(results, indent=2) + "\n")

    # Cheapest and most telling rows first (eager, then the fit loop's host-synchronisation cost), compiled modes
    # last: a run cut short by --budget still holds every model's eager baseline.
    modes = [m for m in ("eager", "fit", "compile", "cudagraphs") if m in args.modes or (m == "fit" and args.fit_steps)]
    jobs = [(kind, d, mode) for mode in modes for kind in args.models for d in args.dims]
    for kind, d, mode in jobs:
        if time.perf_counter() - began > args.budget:
            results["skipped"].append(f"{kind} d={d} {mode}")
            continue
        try:
            for row in fit_rows(kind, d, device, args) if mode == "fit" else [throughput(kind, d, mode, device, args)]:
                record(row)
        except Exception as e:  # noqa: BLE001 - one failing row (e.g. a compile error) must not lose the others
            record({"model": kind, "dims": d, "mode": mode, "error": f"{type(e).__name__}: {str(e)[:500]}"})
        torch._dynamo.reset()
    (out / "gpu_vectors.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
