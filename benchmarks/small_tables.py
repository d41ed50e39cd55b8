"""Small tables from the shell with no options: scikit-learn's wine and diabetes against two classical baselines.

Writes each table to CSV and runs ``tractable fit --data TABLE.csv --out DIR`` with no other option (``--seed S``
for the other seeds), timing each fit with its wall clock; the flow's ``test_nll`` is read from ``metrics.json``
beside ``baseline_gaussian_nll`` (a full-covariance Gaussian fitted on the same training split) and
``baseline_gmm_nll`` (a Gaussian mixture whose components and covariance type were chosen by 5-fold cross-validation on
the training and validation rows, then refitted on the training split), all in nats on the same 10% test split, in
the data's raw units (README "Your own data").

* wine: ``load_wine()``'s 13 feature columns, 178 rows (142 train, 18 validation, 18 test);
* diabetes: ``load_diabetes(scaled=False)``'s 10 feature columns (age, sex, bmi, bp, s1-s6; not the target), 442
  rows (354/44/44). Its ``sex`` column takes two values, so any continuous density can gain without bound by
  concentrating on them; the numbers are comparable across models on the same split only.

Issue 12's acceptance: the flow's test NLL below the Gaussian's and within 0.5 nats of the mixture's (or better), in
under 2 minutes per fit on 2 cores.

    python benchmarks/small_tables.py                 # seed 0, results in benchmarks/results/small_tables.{json,md}
    python benchmarks/small_tables.py --seeds 0 1 2   # three splits and initialisations
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def write_tables(directory: Path) -> dict[str, Path]:
    """wine.csv and diabetes.csv (with header rows) in ``directory``."""
    from sklearn.datasets import load_diabetes, load_wine

    paths = {}
    for name, data in (("wine", load_wine()), ("diabetes", load_diabetes(scaled=False))):
        path = directory / f"{name}.csv"
        np.savetxt(path, data.data, delimiter=",", header=",".join(data.feature_names), comments="")
        paths[name] = path
    return paths


def fit(path: Path, out: Path, seed: int) -> dict:
    """``tractable fit --data PATH --out OUT`` (``--seed`` only when not 0); its metrics and wall-clock seconds."""
    command = [sys.executable, "-m", "tractable", "fit", "--data", str(path), "--out", str(out), "--quiet"]
    if seed:
        command += ["--seed", str(seed)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    keys = ("test_nll", "test_nll_stderr", "baseline_gaussian_nll", "baseline_gmm_nll", "baseline_gmm", "steps",
            "best_step", "parameters", "layers", "train_rows", "val_rows", "test_rows")
    return {"table": path.stem, "seed": seed, "wall_seconds": round(seconds, 1), "load": os.getloadavg()[0],
            **{k: metrics[k] for k in keys}}


def markdown(rows: list[dict]) -> str:
    header = ("| table | seed | flow test NLL | Gaussian | GMM (chosen by 5-fold CV) | below Gaussian | within 0.5 of "
              "GMM | steps (best) | wall s (load) |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gmm = r["baseline_gmm_nll"]
        info = r["baseline_gmm"]
        chosen = f"{gmm:.2f} ({info['components']} {info['covariance']})" if gmm is not None else "n/a"
        within = "n/a" if gmm is None else "yes" if r["test_nll"] <= gmm + 0.5 else "no"
        lines.append(f"| {r['table']} | {r['seed']} | {r['test_nll']:.2f} ± {r['test_nll_stderr']:.2f} | "
                     f"{r['baseline_gaussian_nll']:.2f} | {chosen} | "
                     f"{'yes' if r['test_nll'] < r['baseline_gaussian_nll'] else 'no'} | {within} | "
                     f"{r['steps']} ({r['best_step']}) | {r['wall_seconds']:.0f} ({r['load']:.1f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "small_tables")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tables = write_tables(Path(tmp))
        for seed in args.seeds:
            for name, path in tables.items():
                row = fit(path, Path(tmp) / f"{name}-{seed}", seed)
                rows.append(row)
                print(markdown([row]).splitlines()[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(f"written to {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
