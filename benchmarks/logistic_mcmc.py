"""A long MCMC reference for the logistic-regression posterior of benchmarks/logistic_posterior.py.

Hamiltonian Monte Carlo (Neal 2011) written with torch autograd, in float64: ``--chains`` chains run in one batch
from overdispersed starts (N(0, 2²I)); each warmup adapts the step size by dual averaging to an acceptance rate of
0.8 (Hoffman & Gelman 2014, §3.2) and a diagonal mass matrix from the second half of the warmup draws; then the
step size and the mass matrix stay fixed and ``--draws`` draws per chain are kept, each after a trajectory of a
jittered number of leapfrog steps (uniform in [L/2, L]; jitter avoids periodic trajectories). Convergence is
checked with ArviZ: the rank-normalized split R-hat of every coordinate (Vehtari et al. 2021; < 1.01 wanted), its
bulk effective sample size and the Monte Carlo standard error of every posterior mean.

Writes ``benchmarks/results/logistic_mcmc.json``: the settings, the posterior means and standard deviations, the
MCSE of each mean, R-hat and ESS per coordinate, and their worst cases. ``benchmarks/logistic_check.py`` compares a
flow's posterior with it.

    python benchmarks/logistic_mcmc.py                 # 8 chains × 10,000 draws after 2,000 warmup (minutes)
    python benchmarks/logistic_mcmc.py --draws 2000    # a quick look

References:
    MCMC using Hamiltonian dynamics (Neal, 2011), arXiv:1206.1901.
    The No-U-Turn Sampler (Hoffman & Gelman, 2014), JMLR 15 — dual averaging of the step size (§3.2).
    Rank-normalization, folding, and localization: an improved R-hat (Vehtari, Gelman, Simpson, Carpenter & Bürkner,
        2021), Bayesian Analysis 16(2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logistic_posterior import FEATURES, PRIOR_SD, log_prob

RESULTS = Path(__file__).resolve().parent / "results" / "logistic_mcmc.json"


def _grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    theta = theta.detach().requires_grad_(True)
    lp = log_prob(theta)
    (g,) = torch.autograd.grad(lp.sum(), theta)
    return lp.detach(), g


def _leapfrog(theta, p, grad, eps, steps, inv_mass):
    """``steps`` leapfrog steps of size ``eps`` (one per chain) with the diagonal inverse mass ``inv_mass``."""
    p = p + 0.5 * eps * grad
    for i in range(steps):
        theta = theta + eps * inv_mass * p
        lp, grad = _grad(theta)
        if i < steps - 1:
            p = p + eps * grad
    p = p + 0.5 * eps * grad
    return theta, p, lp, grad


def hmc(chains: int, warmup: int, draws: int, *, length: int, seed: int) -> tuple[np.ndarray, dict]:
    """Draws ``(chains, draws, FEATURES)`` and the run's statistics."""
    torch.manual_seed(seed)
    dtype = torch.float64
    theta = 2.0 * torch.randn(chains, FEATURES, dtype=dtype)
    lp, grad = _grad(theta)
    inv_mass = torch.ones(FEATURES, dtype=dtype)
    log_eps = torch.full((chains, 1), math.log(0.05), dtype=dtype)
    # dual averaging (Hoffman & Gelman 2014, Algorithm 5), one state per chain
    mu, h_bar, log_eps_bar, target, gamma, t0, kappa = log_eps + math.log(10), torch.zeros_like(log_eps), \
        torch.zeros_like(log_eps), 0.8, 0.05, 10.0, 0.75
    kept, accepted, window = [], torch.zeros(chains, dtype=dtype), []
    eps_fixed = torch.exp(log_eps)  # replaced at the end of warmup
    for it in range(warmup + draws):
        adapting = it < warmup
        eps = torch.exp(log_eps) if adapting else eps_fixed
        steps = int(torch.randint(length // 2, length + 1, ()).item())
        p0 = torch.randn(chains, FEATURES, dtype=dtype) / torch.sqrt(inv_mass)
        new, p, new_lp, new_grad = _leapfrog(theta, p0, grad, eps, steps, inv_mass)
        h0 = -lp + 0.5 * (inv_mass * p0 * p0).sum(-1)
        h1 = -new_lp + 0.5 * (inv_mass * p * p).sum(-1)
        log_alpha = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0.0)
        accept = torch.log(torch.rand(chains, dtype=dtype)) < log_alpha
        theta = torch.where(accept[:, None], new, theta)
        lp = torch.where(accept, new_lp, lp)
        grad = torch.where(accept[:, None], new_grad, grad)
        if adapting:
            m = it + 1
            h_bar = (1 - 1 / (m + t0)) * h_bar + (target - torch.exp(log_alpha)[:, None]) / (m + t0)
            log_eps = mu - math.sqrt(m) / gamma * h_bar
            w = m ** (-kappa)
            log_eps_bar = w * log_eps + (1 - w) * log_eps_bar
            if it >= warmup // 2:
                window.append(theta.clone())
            if it == warmup - 1:  # the mass matrix from the second half of warmup; restart the step-size search
                inv_mass = torch.cat(window).var(0)
                eps_fixed = _retune(theta, lp, grad, inv_mass, length)
        else:
            kept.append(theta.clone())
            accepted += accept.to(dtype)
    stats = {"acceptance": float(accepted.mean() / draws), "step_size": eps_fixed.flatten().tolist()}
    return torch.stack(kept, 1).numpy(), stats


def _retune(theta, lp, grad, inv_mass, length, rounds: int = 300):
    """The step size for the new mass matrix: a short dual-averaging run from the current state (acceptance 0.8);
    preconditioned, the posterior has unit scales, so a step of 0.3 is the starting guess."""
    log_eps = torch.full((theta.shape[0], 1), math.log(0.3), dtype=theta.dtype)
    mu, h_bar, bar = log_eps + math.log(10), torch.zeros_like(log_eps), torch.zeros_like(log_eps)
    for m in range(1, rounds + 1):
        eps_m = torch.exp(log_eps)
        p0 = torch.randn_like(theta) / torch.sqrt(inv_mass)
        new, p, new_lp, new_grad = _leapfrog(theta, p0, grad, eps_m, length, inv_mass)
        h0 = -lp + 0.5 * (inv_mass * p0 * p0).sum(-1)
        h1 = -new_lp + 0.5 * (inv_mass * p * p).sum(-1)
        log_alpha = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0.0)
        accept = torch.log(torch.rand_like(lp)) < log_alpha
        theta = torch.where(accept[:, None], new, theta)
        lp, grad = torch.where(accept, new_lp, lp), torch.where(accept[:, None], new_grad, grad)
        h_bar = (1 - 1 / (m + 10)) * h_bar + (0.8 - torch.exp(log_alpha)[:, None]) / (m + 10)
        log_eps = mu - math.sqrt(m) / 0.05 * h_bar
        w = m ** -0.75
        bar = w * log_eps + (1 - w) * bar
    return torch.exp(bar)


def summarize(samples: np.ndarray) -> dict:
    """Posterior means, sds, MCSE of the means, split R-hat and bulk ESS per coordinate (ArviZ)."""
    import arviz as az

    data = az.convert_to_dataset(samples[None] if samples.ndim == 2 else samples)
    var = next(iter(data.data_vars))
    rhat = az.rhat(data)[var].values
    ess = az.ess(data, method="bulk")[var].values
    mcse = az.mcse(data, method="mean")[var].values
    flat = samples.reshape(-1, samples.shape[-1])
    mean, sd = flat.mean(0), flat.std(0, ddof=1)
    return {"mean": mean.tolist(), "sd": sd.tolist(), "mcse_mean": mcse.tolist(), "rhat": rhat.tolist(),
            "ess_bulk": ess.tolist(), "max_rhat": float(rhat.max()), "min_ess_bulk": float(ess.min()),
            "max_mcse_over_sd": float((mcse / sd).max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--length", type=int, default=16, help="the most leapfrog steps of a trajectory (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    samples, stats = hmc(args.chains, args.warmup, args.draws, length=args.length, seed=args.seed)
    seconds = time.perf_counter() - start
    summary = summarize(samples)
    result = {
        "model": "Bayesian logistic regression on scikit-learn's breast_cancer (30 standardized features + "
                 f"intercept), prior N(0, {PRIOR_SD:g}² I)",
        "sampler": "HMC, diagonal mass matrix and step size adapted in warmup (dual averaging, acceptance 0.8), "
                   "jittered trajectory length",
        "chains": args.chains, "warmup": args.warmup, "draws_per_chain": args.draws,
        "total_draws": args.chains * args.draws, "max_leapfrog_steps": args.length, "seed": args.seed,
        "seconds": round(seconds, 1), **stats, **summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.chains} chains × {args.draws:,} draws ({args.warmup:,} warmup) in {seconds:.0f}s: acceptance "
          f"{stats['acceptance']:.2f}, max R-hat {summary['max_rhat']:.4f}, "
          f"min bulk ESS {summary['min_ess_bulk']:.0f}, "
          f"max MCSE/sd {summary['max_mcse_over_sd']:.4f}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
