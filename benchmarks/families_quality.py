"""Density quality of the residual and neural autoregressive families beside the peers that have them.

    .venv/bin/python benchmarks/families_quality.py [--families resflow naf unaf bnaf] [--libs unaf/zuko ...]
        [--datasets eight_gaussians checkerboard rings] [--seeds 0 1 2] [--jobs 2] [--peer-path /tmp/peerlibs] [--list]
        [--ours KEY=JSON ...] [--out NAME]

Pairs (tractable beside its peer), parameter counts matched within 5% (``--list`` prints them):

* ``resflow``: :class:`~tractable.models.resflow.ResidualFlow` beside normflows' ``Residual`` with a ``LipschitzMLP``
  (the i-ResNet / Residual Flows code normflows ships), both ``layers`` × (ActNorm, residual block of two hidden
  LipSwish layers of ``hidden`` units, Lipschitz coefficient 0.97), both with the Russian-roulette log-determinant
  (2 exact terms, geometric p = 0.5) in training and a zero-initialised last layer. normflows evaluates with the same
  estimator (its exact trace is off: normflows' default); tractable with the exact 2-D log-determinant.
* ``naf``: :class:`~tractable.models.naf.NAF` (MADE + deep sigmoidal maps, 8 components × depth 2) beside
  ``zuko.flows.NAF`` (MADE signal + zuko's monotonic MLP, with soft clips between layers), ``layers`` transforms each.
  tractable's MADE width is chosen so the effective parameter counts (less the weights the MADE masks keep at zero)
  agree within 5%.
* ``unaf``: :class:`~tractable.models.naf.UNAF` (Clenshaw–Curtis, 16 nodes) beside ``zuko.flows.UNAF`` (Gauss–Legendre,
  32 nodes), the same signal size and integrand widths.
* ``bnaf``: :class:`~tractable.models.naf.BNAF` (its default ``bias_range=2``) beside pyro's ``BlockAutoregressive``
  (``residual="gated"``), the same layers, hidden factors and reversals between layers (pyro's layer is evaluated in
  its forward direction, which is the normalizing one here: it has no inverse).

The protocol is benchmarks/density_quality.py's, imported from it: data ``sample_splits(get_dataset(name),
(100,000, 10,000, 100,000), seed)``, a Standardizer fitted on the training split as a fixed first layer,
``fit_max_likelihood`` (Adam, peak lr ``--lr``, cosine decay over ``--steps`` steps of batch 512, validation every
250 steps, the best state restored), ``evaluate_toy`` on the test split (gap = test NLL − entropy). Runs are cached one
JSON line each in ``benchmarks/results/families_quality.runs.jsonl``; the table goes to
``benchmarks/results/families_quality.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import density_quality as dq  # the shared protocol: loop, data, evaluation, tables

FAMILIES = ("resflow", "naf", "unaf", "bnaf")
PEERS = {"resflow": "normflows", "naf": "zuko", "unaf": "zuko", "bnaf": "pyro"}
#: The architecture of each pair (the peers' sizes; tractable's MADE width is then matched to the count).
ARCH = {
    "resflow": {"layers": 5, "hidden": 64, "coefficient": 0.97},
    "naf": {"layers": 5, "signal": 16, "peer_network": [32, 32], "peer_hidden": [64, 64]},
    "unaf": {"layers": 5, "signal": 8, "integrand": [32, 32], "peer_hidden": [64, 64], "nodes": 16},
    "bnaf": {"layers": 5, "hidden": 16},
}
#: Settings only tractable's side reads (kept out of the peer's configuration, hence out of its cache key).
OURS = {"naf": {"components": 8, "depth": 2},
        "unaf": {"integrand_clip": "algebraic", "integrand_slope": 4.0, "integrand_spread": 2.5, "eval_nodes": 32},
        "bnaf": {"bias_range": 2.0, "hidden_bias_range": 1.0}}


# ----------------------------------------------------------------------------------------------------------------------
# Builders: (cfg, features) -> a module with log_prob(x) of standardised data.


def tractable_resflow(cfg: dict, features: int) -> nn.Module:
    from tractable.models.resflow import ResidualFlow

    return ResidualFlow(features, layers=cfg["layers"], hidden=cfg["hidden"], coefficient=cfg["coefficient"])


def normflows_resflow(cfg: dict, features: int) -> nn.Module:
    import normflows as nf

    layers: list[nn.Module] = []
    for _ in range(cfg["layers"]):
        layers.append(nf.flows.ActNorm(features))
        net = nf.nets.LipschitzMLP([features, cfg["hidden"], cfg["hidden"], features], init_zeros=True,
                                   lipschitz_const=cfg["coefficient"])
        layers.append(nf.flows.Residual(net, reduce_memory=True))
    # normflows lists flows in the generative direction: the last one meets the data first
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(features, trainable=False), layers[::-1]).float()
    return dq.PeerFlow(flow, flow.log_prob)


def tractable_naf(cfg: dict, features: int) -> nn.Module:
    from tractable.models.naf import NAF

    return NAF(features, layers=cfg["layers"], hidden=cfg["hidden"], components=cfg["components"],
               depth=cfg["depth"])


def zuko_naf(cfg: dict, features: int) -> nn.Module:
    import zuko

    flow = zuko.flows.NAF(features, transforms=cfg["layers"], signal=cfg["signal"],
                          network={"hidden_features": cfg["peer_network"]}, hidden_features=cfg["peer_hidden"])
    return dq.PeerFlow(flow, lambda x: flow().log_prob(x))


def tractable_unaf(cfg: dict, features: int) -> nn.Module:
    from tractable.models.naf import UNAF

    if cfg.get("integrand_clip", "algebraic") != "algebraic":  # the library's clip of log g, in the cache key
        raise ValueError(f"expected integrand_clip 'algebraic', got {cfg['integrand_clip']!r}")
    return UNAF(features, layers=cfg["layers"], hidden=cfg["hidden"], signal=cfg["signal"],
                integrand_hidden=cfg["integrand"][0], integrand_blocks=len(cfg["integrand"]), nodes=cfg["nodes"],
                integrand_slope=cfg.get("integrand_slope", 0.0), integrand_spread=cfg.get("integrand_spread", 2.5),
                eval_nodes=cfg.get("eval_nodes", cfg["nodes"]))


def zuko_unaf(cfg: dict, features: int) -> nn.Module:
    import zuko

    flow = zuko.flows.UNAF(features, transforms=cfg["layers"], signal=cfg["signal"],
                           network={"hidden_features": cfg["integrand"]}, hidden_features=cfg["peer_hidden"])
    return dq.PeerFlow(flow, lambda x: flow().log_prob(x))


def tractable_bnaf(cfg: dict, features: int) -> nn.Module:
    from tractable.models.naf import BNAF
    from tractable.transforms.bnaf import HIDDEN_BIAS_RANGE

    if cfg.get("hidden_bias_range", HIDDEN_BIAS_RANGE) != HIDDEN_BIAS_RANGE:  # a library constant, in the cache key
        raise ValueError(f"expected hidden_bias_range {HIDDEN_BIAS_RANGE}, got {cfg['hidden_bias_range']}")
    return BNAF(features, layers=cfg["layers"], hidden=cfg["hidden"], bias_range=cfg["bias_range"])


class PyroChain(nn.Module):
    """pyro transforms applied in their forward direction as the normalizing map, on a standard normal base."""

    def __init__(self, transforms: list, features: int):
        super().__init__()
        self.transforms = nn.ModuleList(t for t in transforms if isinstance(t, nn.Module))
        self.chain, self.features = transforms, features

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        ladj = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for t in self.chain:
            y = t(x)
            ladj = ladj + t.log_abs_det_jacobian(x, y)
            x = y
        return ladj - 0.5 * (x * x).sum(-1) - 0.5 * self.features * torch.log(torch.tensor(2 * torch.pi))


def pyro_bnaf(cfg: dict, features: int) -> nn.Module:
    from pyro.distributions.transforms import BlockAutoregressive, Permute

    chain: list = []
    for k in range(cfg["layers"]):
        if k > 0:
            chain.append(Permute(torch.arange(features - 1, -1, -1)))
        chain.append(BlockAutoregressive(features, hidden_factors=[cfg["hidden"]] * 2, residual="gated"))
    return PyroChain(chain, features)


BUILDERS = {
    "resflow/tractable": tractable_resflow, "resflow/normflows": normflows_resflow,
    "naf/tractable": tractable_naf, "naf/zuko": zuko_naf,
    "unaf/tractable": tractable_unaf, "unaf/zuko": zuko_unaf,
    "bnaf/tractable": tractable_bnaf, "bnaf/pyro": pyro_bnaf,
}


def matched(family: str, features: int = 2) -> tuple[dict, dict]:
    """The configurations of the pair: the peer's as in :data:`ARCH`; tractable's MADE width (naf, unaf) chosen so
    its effective parameter count (less the entries the MADE masks keep at zero) is the closest to the peer's."""
    peer_cfg = dict(ARCH[family])
    ours = {**peer_cfg, **OURS.get(family, {})}
    if family in ("naf", "unaf"):
        target = dq.count_parameters(BUILDERS[f"{family}/{PEERS[family]}"](peer_cfg, features))[1]
        ours["hidden"] = min(range(8, 257), key=lambda h: abs(
            dq.count_parameters(BUILDERS[f"{family}/tractable"]({**ours, "hidden": h}, features))[1] - target))
    return ours, peer_cfg


def run_job(job: dict) -> dict:
    """dq.run_one with this script's builders (a spawned worker imports density_quality afresh)."""
    if job.get("peer_path") and job["peer_path"] not in sys.path:
        sys.path.append(job["peer_path"])
    dq.BUILDERS.update(BUILDERS)
    return dq.run_one(job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--libs", nargs="+", choices=sorted(BUILDERS),
                        help="run only these sides (e.g. unaf/zuko); the table still shows every cached run")
    parser.add_argument("--datasets", nargs="+", default=list(dq.DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--peer-path", default="/tmp/peerlibs")
    parser.add_argument("--steps", type=int, default=dq.DEFAULTS["steps"])
    parser.add_argument("--lr", type=float, default=dq.DEFAULTS["lr"])
    parser.add_argument("--out", default="families_quality")
    parser.add_argument("--list", action="store_true", help="print the matched parameter counts and exit")
    parser.add_argument("--cached-only", action="store_true",
                        help="run nothing: write the table of the runs already in the cache")
    parser.add_argument("--ours", nargs="+", default=[], metavar="KEY=JSON",
                        help="override an option of tractable's side of each family (e.g. signal=16); the peer's "
                             "configuration and parameter count stay, tractable's MADE width is matched again")
    args = parser.parse_args()
    for item in args.ours:
        key, sep, value = item.partition("=")
        try:
            parsed = json.loads(value) if sep and key else None
        except json.JSONDecodeError:
            parsed = None
        if parsed is None:
            parser.error(f"expected --ours KEY=JSON (e.g. signal=16), got {item!r}")
        for family in args.families:
            known = {**ARCH[family], **OURS.get(family, {})}
            if key not in known:  # a key no builder reads would only change the cache key
                parser.error(f"expected --ours KEY among {sorted(known)} for {family}, got {key!r}")
            OURS.setdefault(family, {})[key] = parsed
    torch.set_num_threads(1)
    if args.peer_path not in sys.path:
        sys.path.append(args.peer_path)
    base = {"steps": args.steps, "lr": args.lr, "batch_size": dq.DEFAULTS["batch_size"],
            "eval_every": dq.DEFAULTS["eval_every"]}
    configs = {}
    for family in args.families:
        ours, peer = matched(family)
        configs[f"{family}/tractable"] = {**base, **ours}
        configs[f"{family}/{PEERS[family]}"] = {**base, **peer}
    if args.list:
        for lib, cfg in configs.items():
            print(f"{lib:20s} {dq.count_parameters(BUILDERS[lib](cfg, 2))[0]:>8,}  {cfg}")
        return
    dq.RESULTS.mkdir(parents=True, exist_ok=True)
    cache = dq.RESULTS / f"{args.out}.runs.jsonl"
    done = dq.load_runs(cache)
    jobs, wanted = [], []
    for seed in args.seeds:  # seed 0 on every set first
        for name in args.datasets:
            for lib, cfg in configs.items():
                key = dq.job_key(lib, name, seed, cfg)
                wanted.append(key)
                if key not in done and (not args.libs or lib in args.libs):
                    jobs.append({"key": key, "lib": lib, "dataset": name, "seed": seed, "cfg": cfg,
                                 "peer_path": args.peer_path})
    print(f"{len(wanted) - len(jobs)} runs cached, {len(jobs)} to run with {args.jobs} process(es)", flush=True)
    if jobs and not args.cached_only:
        dq.execute(jobs, cache, done, args.jobs, worker=run_job, describe=lambda row: (
            f"{row['dataset']:16s} {row['lib']:18s} seed {row['seed']}: gap {row['gap']:.4f} "
            f"params {row['params']} fit {row['fit_seconds']:.0f}s"))
    rows = [done[k] for k in wanted if k in done]
    summary = sorted(dq.summarise(rows), key=lambda s: (s["lib"].split("/")[0], s["dataset"], s["lib"]))
    header = (f"Residual and neural autoregressive families beside their peers: {args.steps} steps × batch "
              f"{base['batch_size']}, Adam lr {args.lr:g} cosine, validation every {base['eval_every']} (best "
              f"restored), train/val/test 100,000/10,000/100,000, standardised, one thread per fit; torch "
              f"{torch.__version__}. Configurations: {json.dumps(configs)}\n")
    text = dq.markdown(summary, base, header)
    (dq.RESULTS / f"{args.out}.md").write_text(text)
    (dq.RESULTS / f"{args.out}.json").write_text(json.dumps({"configs": configs, "summary": summary, "runs": rows},
                                                            indent=1))
    print(text)


if __name__ == "__main__":
    main()
