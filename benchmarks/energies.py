"""Variational fits of every 2D target × flow type × depth, through the real `tractable fit` command.

    .venv/bin/python benchmarks/energies.py [--targets ring u1 ...] [--flows planar ...] [--layers 8 16 32]
                                            [--seeds 0] [--steps 10000] [--jobs 2]

Runs each configuration as its own `tractable fit` process (one torch thread each, `--jobs` at a time), reads
each run's metrics.json and writes the table to benchmarks/results/energies.md (and .json). Seconds are the
training wall time of one process while `--jobs` processes share the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def run_one(target: str, flow: str, layers: int, seed: int, steps: int, runs: Path) -> dict:
    out = runs / f"{target}-{flow}{layers}-seed{seed}"
    cmd = [sys.executable, "-m", "tractable", "fit", target, "--flow", flow, "--layers", str(layers),
           "--steps", str(steps), "--seed", str(seed), "--out", str(out), "--no-plots", "--quiet", "--threads", "1"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        return {"target": target, "flow": flow, "layers": layers, "seed": seed, "error": done.stderr.strip()[-300:]}
    return json.loads((out / "metrics.json").read_text())


def table(rows: list[dict]) -> str:
    lines = ["| target | flow | layers | seed | KL(q‖p) nats | ESS | log Ẑ (log Z) | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['target']} | {r['flow']} | {r['layers']} | {r['seed']} | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['target']} | {r['flow']} | {r['layers']} | {r['seed']} | {r['kl']:.4f} ± {r['kl_stderr']:.4f} | "
            f"{r['ess']:.3f} | {r['log_z_estimate']:.4f} ({r['log_z']:.4f}) | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=["ring", "u1", "u2", "u3", "u4"])
    p.add_argument("--flows", nargs="+", default=["planar", "radial", "sylvester"])
    p.add_argument("--layers", nargs="+", type=int, default=[8, 16, 32])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--name", default="energies", help="results file stem")
    p.add_argument("--runs", default="runs/bench-energies", help="where the run directories go")
    a = p.parse_args()
    grid = list(itertools.product(a.targets, a.flows, a.layers, a.seeds))
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(lambda c: run_one(*c, a.steps, Path(a.runs)), grid))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = table(rows)
    (RESULTS / f"{a.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
