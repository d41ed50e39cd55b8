"""Continuous flows and circular splines on the toy sets with exact entropies, beside the peers that have them.

    .venv/bin/python benchmarks/continuous_quality.py --models fm ffjord zuko-cnf [--datasets eight_gaussians ...]
        [--seeds 0 1 2] [--steps 5000] [--jobs 2] [--peer-path /tmp/peerlibs]
    .venv/bin/python benchmarks/continuous_quality.py --models ncsf ncsf-ar zuko-ncsf normflows-ncsf --datasets torus

The protocol is density_quality's (its functions are imported): ``sample_splits(get_dataset(name), (100,000,
10,000, 100,000), seed=S)``; a ``Standardizer`` fitted on the training split as a fixed first layer (not for the torus:
angles stay angles); ``torch.manual_seed(S)`` before building; ``fit_max_likelihood`` (Adam, cosine decay over
``--steps`` of batch ``--batch-size``, validation NLL every ``--eval-every`` steps, best state restored); then
``evaluate_toy`` on the test split (``gap = test NLL − entropy``). ``fm`` trains on its own loss (flow matching,
through ``training_loss``) and ``ffjord`` on the Hutchinson NLL with RNODE's penalties (``ffjord-exact``: the exact
trace and no penalties, as zuko's CNF trains); both are validated and tested
by the exact ODE log-density. Peers:

* ``zuko-cnf``: ``zuko.flows.CNF(2, hidden_features=(H,) * blocks)`` (ELU, 3 time frequencies, exact trace in
  training) against ``ffjord`` with ``freqs=3`` (the same parameter count). Both solve to ``rtol = atol = 1e-3`` in
  training and ``1e-5`` in evaluation (``--zuko-train-tol``, ``--zuko-eval-tol``; zuko's own default, 1e-5 / 1e-6
  throughout, made a 500-step fit take 2,000 s of one core).
* ``zuko-ncsf``: ``zuko.flows.NCSF(2, bins=K, transforms=L, hidden_features=(H,) * blocks)`` (autoregressive, on
  ``BoxUniform(-π, π)``) against ``ncsf-ar``.
* ``normflows-ncsf``: ``L`` × ``CircularCoupledRationalQuadraticSpline(2, num_blocks=1, H', ind_circ=[0, 1],
  tail_bound=π)`` on ``Uniform(-π, π)`` against ``ncsf`` (coupling), ``H'`` matched to the parameter count.

Runs are cached in ``benchmarks/results/<out>.runs.jsonl``; the table goes to ``<out>.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from density_quality import (
    SIZES,
    PeerFlow,
    Standardized,
    count_parameters,
    execute,
    job_key,
    load_runs,
    markdown,
    summarise,
)
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
NOTES = "\n## Notes"
PLANAR = ("eight_gaussians", "checkerboard", "rings")
MODELS = ("fm", "ffjord", "ffjord-exact", "zuko-cnf", "ncsf", "ncsf-ar", "zuko-ncsf", "normflows-ncsf")
DEFAULTS = {"steps": 5000, "batch_size": 512, "lr": 1e-3, "eval_every": 250, "hidden": 64, "blocks": 2,
            "layers": 4, "bins": 8, "fm_hidden": 128, "fm_blocks": 3, "fm_freqs": 8, "fm_time_power": 2.0,
            "fm_space_freqs": 32, "fm_space_scale": 3.0, "zuko_train_tol": 1e-3, "zuko_eval_tol": 1e-5}

#: Options one model alone reads, left out of the other models' configurations (and so of their cache keys).
OWN = {"fm": ("fm_freqs", "fm_time_power", "fm_space_freqs", "fm_space_scale"),
       "zuko-cnf": ("zuko_train_tol", "zuko_eval_tol")}


def own_config(model: str, cfg: dict) -> dict:
    """``cfg`` less the options that belong to other models."""
    others = {k for m, keys in OWN.items() if m != model for k in keys}
    return {k: v for k, v in cfg.items() if k not in others}


class ToleranceSwitch(PeerFlow):
    """zuko's CNF solving to ``train_tol`` in train mode and ``eval_tol`` in eval mode, as ``ffjord`` does (zuko's
    defaults, atol 1e-6 / rtol 1e-5 in training too, make one 5,000-step fit take hours on a CPU)."""

    def __init__(self, flow: nn.Module, train_tol: float, eval_tol: float):
        super().__init__(flow, lambda x: flow().log_prob(x))
        self.tols = (train_tol, eval_tol)

    def train(self, mode: bool = True) -> ToleranceSwitch:
        super().train(mode)
        self.module.transform.atol = self.module.transform.rtol = self.tols[0] if mode else self.tols[1]
        return self


def build(model: str, cfg: dict) -> nn.Module:
    """The flow ``model`` of ``cfg`` on standardised (planar) or raw (torus) data."""
    h, b = cfg["hidden"], cfg["blocks"]
    if model == "fm":
        from tractable.models.continuous import FlowMatching
        return FlowMatching(2, hidden=cfg["fm_hidden"], blocks=cfg["fm_blocks"], freqs=cfg["fm_freqs"],
                            time_power=cfg["fm_time_power"], space_freqs=cfg["fm_space_freqs"],
                            space_scale=cfg["fm_space_scale"])
    if model in ("ffjord", "ffjord-exact"):
        from tractable.models.continuous import FFJORD
        if model == "ffjord-exact":  # zuko's training: the exact trace, no RNODE penalties
            return FFJORD(2, hidden=h, blocks=b, freqs=3, estimator="exact", kinetic=0.0, jacobian=0.0)
        return FFJORD(2, hidden=h, blocks=b, freqs=3)
    if model in ("ncsf", "ncsf-ar"):
        from tractable.models.ncsf import NCSF
        return NCSF(2, layers=cfg["layers"], hidden=h, blocks=b, bins=cfg["bins"], autoregressive=model == "ncsf-ar")
    if model == "zuko-cnf":
        import zuko
        flow = zuko.flows.CNF(2, hidden_features=(h,) * b)
        if "zuko_train_tol" not in cfg:  # runs cached before the switch: zuko's own tolerances throughout
            return PeerFlow(flow, lambda x: flow().log_prob(x))
        return ToleranceSwitch(flow, cfg["zuko_train_tol"], cfg["zuko_eval_tol"]).train()
    if model == "zuko-ncsf":
        import zuko
        flow = zuko.flows.NCSF(2, bins=cfg["bins"], transforms=cfg["layers"], hidden_features=(h,) * b)
        return PeerFlow(flow, lambda x: flow().log_prob(x))
    if model == "normflows-ncsf":
        import normflows as nf
        width = cfg.get("normflows_hidden") or normflows_width(cfg)
        flows = [nf.flows.CircularCoupledRationalQuadraticSpline(2, 1, width, [0, 1], num_bins=cfg["bins"],
                                                                 tail_bound=math.pi) for _ in range(cfg["layers"])]
        flow = nf.NormalizingFlow(nf.distributions.base.Uniform(2, -math.pi, math.pi), flows)
        return PeerFlow(flow, flow.log_prob)
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")


def normflows_width(cfg: dict) -> int:
    """The residual-net width whose parameter count is closest to tractable's ``ncsf``."""
    target = count_parameters(build("ncsf", cfg))[0]
    return min(range(8, 257), key=lambda w: abs(count_parameters(build("normflows-ncsf",
                                                                        {**cfg, "normflows_hidden": w}))[0] - target))


def run_one(job: dict) -> dict:
    torch.set_num_threads(1)
    if job.get("peer_path") and job["peer_path"] not in sys.path:
        sys.path.append(job["peer_path"])
    warnings.filterwarnings("ignore")
    from tractable.targets.tabular import Standardizer
    from tractable.targets.toy import get_dataset, sample_splits
    from tractable.training import evaluate_toy, fit_max_likelihood
    from tractable.transforms.base import Compose

    cfg, model, name, seed = job["cfg"], job["lib"], job["dataset"], job["seed"]
    data = get_dataset(name)
    train, val, test = sample_splits(data, sizes=SIZES, seed=seed)
    torch.manual_seed(seed)
    inner = build(model, cfg)
    stored, effective = count_parameters(inner)
    if getattr(data, "circular", False):  # angles are not standardised
        flow = inner
        if not hasattr(flow, "event_shape"):
            flow.event_shape = (2,)
    elif hasattr(inner, "transform"):
        flow = inner
        flow.transform = Compose(Standardizer.fit(train).as_transform(), flow.transform)
    else:
        flow = Standardized(inner, Standardizer.fit(train).as_transform(), 2)
    cpu = time.process_time()
    history = fit_max_likelihood(flow, train, val=val, steps=cfg["steps"], batch_size=cfg["batch_size"],
                                 lr=cfg["lr"], schedule="cosine", eval_every=cfg["eval_every"], seed=seed,
                                 progress=False)
    fit_cpu = time.process_time() - cpu
    start = time.perf_counter()
    metrics = evaluate_toy(flow, data, test=test)
    return {
        "key": job["key"], "lib": model, "dataset": name, "seed": seed, "cfg": cfg, "params": stored,
        "params_effective": effective, "test_nll": metrics["test_nll"], "test_nll_stderr": metrics["test_nll_stderr"],
        "entropy": metrics["entropy"], "gap": metrics["kl_gap"], "kl_paired": metrics["kl_paired"],
        "kl_paired_stderr": metrics["kl_paired_stderr"], "best_step": history.best_step,
        "best_val_nll": history.best_val_nll, "val_curve": history.evaluations, "fit_seconds": history.seconds,
        "fit_cpu_seconds": fit_cpu, "eval_seconds": time.perf_counter() - start, "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fm"], choices=list(MODELS))
    parser.add_argument("--datasets", nargs="+", default=list(PLANAR))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="processes at once (one thread each)")
    parser.add_argument("--peer-path", default="/tmp/peerlibs")
    parser.add_argument("--out", default="continuous_quality")
    parser.add_argument("--list", action="store_true", help="print the parameter counts and exit")
    for key, value in DEFAULTS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.peer_path not in sys.path:
        sys.path.append(args.peer_path)
    cfg = {key: getattr(args, key) for key in DEFAULTS}
    if args.list:
        for model in args.models:
            print(model, count_parameters(build(model, cfg)))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache = RESULTS / f"{args.out}.runs.jsonl"
    done = load_runs(cache)
    jobs = []
    for seed in args.seeds:  # seed 0 on every set first
        for name in args.datasets:
            for model in args.models:
                own = own_config(model, cfg)
                key = job_key(model, name, seed, own)
                if key not in done:
                    jobs.append({"key": key, "lib": model, "dataset": name, "seed": seed, "cfg": own,
                                 "peer_path": args.peer_path})
    print(f"{len(jobs)} runs to do with {args.jobs} process(es)", flush=True)
    if jobs:
        execute(jobs, cache, done, args.jobs, worker=run_one, describe=lambda row: (
            f"{row['dataset']:16s} {row['lib']:15s} seed {row['seed']}: gap {row['gap']:.4f} "
            f"params {row['params']} fit {row['fit_cpu_seconds']:.0f} CPU s"))
    # a run whose options differ from the defaults (beyond steps) is its own row of the table
    rows = [{**r, "lib": r["lib"] + "".join(f" {k}={v}" for k, v in sorted(r["cfg"].items())
                                            if k not in ("steps", "eval_every") and v != DEFAULTS.get(k, v))}
            for r in done.values()]
    text = "\n".join(f"### steps {steps}\n\n" + markdown(summarise([r for r in rows if r["cfg"]["steps"] == steps]),
                                                         cfg)
                     for steps in sorted({r["cfg"]["steps"] for r in rows}))
    md = RESULTS / f"{args.out}.md"
    notes = md.read_text().partition(NOTES)[2] if md.exists() else ""  # hand-written notes survive a rerun
    md.write_text("# Continuous flows and circular splines (benchmarks/continuous_quality.py)\n\n" + text
                  + (NOTES + notes if notes else ""))
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"runs": rows}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
