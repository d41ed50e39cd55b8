"""Does the variational posterior of the logistic regression (benchmarks/logistic_posterior.py) match the MCMC
reference (benchmarks/logistic_mcmc.py)? Issue 12's acceptance: ESS ≥ 0.8, Pareto k̂ < 0.7, every posterior mean
within 0.05 posterior standard deviations of the reference's.

Two routes to the same flow, checked the same way:

* the shell: a run of ``tractable fit --energy benchmarks/logistic_posterior.py:log_prob --features 31 --out RUN``
  (the CLI's default flow above 2D) — ``--run RUN``;
* Python: ``fit_reverse_kl`` on :func:`logistic_posterior.energy` with the same flow and settings, fitted here —
  ``--python``.

For each: ``--samples`` fresh draws ``x ~ q`` with their exact ``log q``; the importance log-weights
``log p̃(x) − log q(x)`` give the ESS fraction and PSIS's Pareto k̂ (Yao et al. 2018; ``tractable.diagnostics`` where
the library has it, else ArviZ's ``psislw``); the flow's means and standard deviations (plain, and PSIS-weighted) are
compared with the reference's: ``max_j |mean_q,j − mean_mcmc,j| / sd_mcmc,j`` and ``max_j |sd_q,j / sd_mcmc,j − 1|``.
Writes ``benchmarks/results/logistic_check.json``.

    python benchmarks/logistic_check.py --run runs/logistic --python

References:
    Yes, but Did It Work?: Evaluating Variational Inference (Yao, Vehtari, Simpson & Gelman, 2018), arXiv:1802.02538.
    Pareto Smoothed Importance Sampling (Vehtari, Simpson, Gelman, Yao & Gabry, 2024), JMLR 25, arXiv:1507.02646.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import logistic_posterior as lp

RESULTS = HERE / "results"


def pareto_k(log_w: np.ndarray) -> tuple[float, np.ndarray]:
    """PSIS: the Pareto k̂ of the importance weights and the smoothed normalized log-weights."""
    try:
        from tractable.diagnostics import psis  # the library's, where it exists (issue 12)

        out = psis(torch.as_tensor(log_w))
        return float(out.k), np.asarray(out.log_weights)
    except (ImportError, AttributeError, TypeError):
        import arviz as az

        smoothed, k = az.psislw(log_w.copy())
        return float(k), smoothed


@torch.no_grad()
def check(flow, reference: dict, samples: int, seed: int = 0) -> dict:
    """The diagnostics of ``flow`` against the MCMC ``reference`` (see the module docstring)."""
    torch.manual_seed(seed)
    xs, log_ws = [], []
    for n in [50_000] * (samples // 50_000) + [samples % 50_000] * bool(samples % 50_000):
        x, log_q = flow.sample_and_log_prob(n)
        x = x.double()
        xs.append(x)
        log_ws.append(lp.log_prob(x) - log_q.double())
    x, log_w = torch.cat(xs).numpy(), torch.cat(log_ws).numpy()
    w = np.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / (w**2).sum() / len(w))
    k, smoothed = pareto_k(log_w)
    weights = np.exp(smoothed - smoothed.max())
    weights /= weights.sum()
    mean_ref, sd_ref = np.asarray(reference["mean"]), np.asarray(reference["sd"])
    mean_q, sd_q = x.mean(0), x.std(0, ddof=1)
    mean_psis = weights @ x
    sd_psis = np.sqrt(weights @ (x - mean_psis) ** 2)
    return {
        "samples": samples, "ess": ess, "pareto_k": k, "elbo": float(log_w.mean()),
        "max_mean_error_over_sd": float(np.max(np.abs(mean_q - mean_ref) / sd_ref)),
        "max_sd_ratio_error": float(np.max(np.abs(sd_q / sd_ref - 1))),
        "psis_max_mean_error_over_sd": float(np.max(np.abs(mean_psis - mean_ref) / sd_ref)),
        "psis_max_sd_ratio_error": float(np.max(np.abs(sd_psis / sd_ref - 1))),
        # the reference's own Monte Carlo error, in the same units: the comparison cannot be finer than this
        "reference_max_mcse_over_sd": float(reference["max_mcse_over_sd"]),
    }


def python_fit(steps: int, seed: int) -> tuple[torch.nn.Module, float]:
    """The CLI's default flow above 2D, fitted with the library's ``fit_reverse_kl`` and the CLI's settings."""
    from tractable.app.config import TrainConfig
    from tractable.app.tasks.energy import HIGH_DIMENSIONAL_MODEL, HIGH_DIMENSIONAL_TRAIN
    from tractable.models.registry import MODELS
    from tractable.training import fit_reverse_kl

    options = {k: v for k, v in HIGH_DIMENSIONAL_MODEL.items() if k != "name"}
    t = TrainConfig(**HIGH_DIMENSIONAL_TRAIN)  # the CLI's settings for an energy above 2D (no annealing)
    torch.manual_seed(seed)
    flow = MODELS[HIGH_DIMENSIONAL_MODEL["name"]](lp.FEATURES, **options)
    start = time.perf_counter()
    fit_reverse_kl(flow, lp.energy(), steps=steps, batch_size=t.batch_size, lr=t.lr, anneal=t.anneal,
                   progress=False)
    return flow.eval(), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a run directory of tractable fit --energy ...:log_prob --features 31")
    ap.add_argument("--python", action="store_true", help="also fit the same flow with fit_reverse_kl here")
    ap.add_argument("--steps", type=int, default=10_000, help="steps of the Python fit (default 10000, the CLI's)")
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", type=Path, default=RESULTS / "logistic_mcmc.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "logistic_check.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reference = json.loads(args.reference.read_text())
    rows = {}
    if args.run is not None:
        from tractable.app import load_run

        flow, _, config = load_run(args.run)
        metrics = json.loads((args.run / "metrics.json").read_text())
        rows["shell"] = {"run": str(args.run), "flow": config.model, "steps": config.train.steps,
                         "fit_seconds": metrics["seconds"], **check(flow.double(), reference, args.samples)}
    if args.python:
        flow, seconds = python_fit(args.steps, args.seed)
        rows["python"] = {"steps": args.steps, "fit_seconds": round(seconds, 1),
                          **check(flow.double(), reference, args.samples)}
    if not rows:
        ap.error("expected --run RUN and/or --python")
    result = {"reference": {k: reference[k] for k in ("chains", "draws_per_chain", "max_rhat",
                                                     "max_mcse_over_sd")}, **rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in rows.items():
        print(f"{name}: ESS {row['ess']:.3f}, Pareto k̂ {row['pareto_k']:.2f}, max |Δmean|/sd "
              f"{row['max_mean_error_over_sd']:.3f} (PSIS {row['psis_max_mean_error_over_sd']:.3f}), "
              f"max |sd ratio − 1| {row['max_sd_ratio_error']:.3f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
