"""Density-estimation quality on the 2D toy sets with exact entropies: tractable NSF against nflows, zuko, normflows.

    .venv/bin/python benchmarks/density_quality.py [--datasets eight_gaussians checkerboard rings] [--seeds 0 1 2]
        [--libs tractable nflows zuko normflows] [--jobs 2] [--peer-path /tmp/peerlibs]

The protocol is the one of ``tractable fit <dataset> --model nsf --steps 5000 --batch-size 512 --seed S``:

* data: ``sample_splits(get_dataset(name), sizes=(100_000, 10_000, 100_000), seed=S)`` (train, validation, test);
* a :class:`~tractable.targets.tabular.Standardizer` fitted on the training split, applied as a fixed first layer
  (``StandardizeTransform``) so every flow is trained on raw data and scored in the original units;
* the flow's initialisation seeded with ``torch.manual_seed(S)``;
* :func:`~tractable.training.max_likelihood.fit_max_likelihood`: Adam (peak lr ``--lr``), cosine decay to 0 over
  ``--steps`` steps of batch ``--batch-size`` (shuffled epochs seeded by ``S``), validation every 250 steps and the
  best validated state restored;
* :func:`~tractable.training.evaluation.evaluate_toy` on the test split: ``gap = test NLL − entropy`` (an
  estimate of ``KL(p‖q)``; its standard error is the NLL's, about 0.003 nats) and ``kl_paired = mean(log p − log q)``
  (the same quantity with a much smaller standard error where the data's log-density is finite everywhere);
  on the planar sets also ``log ∫q`` over a grid, and the table's "gap of q/∫q" (gap + log ∫q: the gap of the
  density a model implies when its ``log_prob`` does not integrate to 1).

Every library gets the same loop (peer flows are wrapped in a module exposing ``log_prob``), the same data, the same
standardisation and the same architecture: ``--layers`` coupling layers of rational-quadratic splines with ``--bins``
bins on ``[-bound, bound]`` (identity / linear tails), conditioners with ``--blocks`` hidden layers of ``--hidden``
ReLU units, alternating halves, a standard normal base; tractable's NSF as ``tractable fit`` builds it for a new fit,
so with ``passing_map=True`` (each coupling's passing half gets an unconditional spline of its own; ``--no-passing-map``
measures it without). Differences that the libraries build in are kept and listed:

* nflows: ``PiecewiseRationalQuadraticCouplingTransform`` with its ``MLP`` (exactly tractable's architecture and
  parameter count; nflows divides the width/height logits by ``sqrt(hidden)``, as it does for its own nets).
* zuko: ``MAF(passes=2, univariate=MonotonicRQSTransform(bound=B))``, zuko's coupling form. In 2D its masked
  conditioner also gives the first feature of each layer an unconditional spline (bias only), and the masked weight
  matrices are stored dense: both the stored and the effective (unmasked) parameter counts are reported.
* normflows: ``CoupledRationalQuadraticSpline``, normflows' own spline coupling: a residual conditioner
  (``num_blocks`` residual blocks of two layers, so its depth is ``2·blocks`` hidden layers for ``blocks`` here),
  plus an unconditional spline on the passive half. ``--normflows-blocks`` and ``--normflows-hidden`` set it;
  the defaults give one residual block (2 hidden layers + the input layer) at the width that matches tractable's
  parameter count as closely as possible.

Runs are cached one JSON line each in ``benchmarks/results/<out>.runs.jsonl`` (keyed by library, data set, seed and
configuration), so an interrupted benchmark resumes; ``--jobs`` processes run at once, each with one thread.
The table goes to ``benchmarks/results/<out>.{md,json}`` (default ``<out>`` = ``density_quality``).

The quality grid (``--grid``; results ``<out>`` = ``density_quality_grid``) crosses the budget and the setting:
``--steps`` 1,000 / 2,000 / 5,000 × ``--bins`` 8 / 16 × standardized (tail bound 3) or raw data (tail bound 5) ×
conditioners 2×64 / 2×128, on eight_gaussians, checkerboard, rings and two_moons, every library, 3 seeds; the rest
of the configuration (loop, schedule, lr, layers) comes from the options as usual. A cell is named
``s<steps>-b<bins>-<std|raw>-h<hidden>``; ``--cells`` selects cells by name or shell pattern (``'s2000-*'``), and
``--table`` only writes the table of what is cached. A run already recorded under the same key in any other
``*.runs.jsonl`` of the results folder is copied into the grid's cache instead of rerun. The table gives, per cell and
data set, each library's median over seeds of the gap (two_moons, whose entropy is unknown: the test NLL) and
``Δ = tractable − best peer`` (medians; the entropy cancels, so Δ is a test-NLL difference for every data set);
a cell is complete when every library has 3 seeds.

    .venv/bin/python benchmarks/density_quality.py --grid --cells s2000-b8-raw-h128 s5000-b16-std-h64 --jobs 1
    .venv/bin/python benchmarks/density_quality.py --grid --table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("eight_gaussians", "checkerboard", "rings")
LIBS = ("tractable", "nflows", "zuko", "normflows")
SIZES = (100_000, 10_000, 100_000)

#: The architecture and optimisation defaults measured for this benchmark (see the report in the results file).
DEFAULTS = {
    "layers": 5,
    "hidden": 64,
    "blocks": 2,
    "bins": 8,
    "bound": 3.0,
    "lr": 1e-3,
    "steps": 5000,
    "batch_size": 512,
    "eval_every": 250,
    "residual": False,
    "min_derivative": 1e-3,
    "permutation": "alternate",
    "activation": "relu",
}

#: Options added for other budgets and for the ablations of issue 13 (NSF at 8 bins, tail bound 5, 2×128, no
#: standardization, constant lr). A run whose value equals the default here keeps its old cache key.
EXTRA_DEFAULTS = {
    "standardize": True,  # the Standardizer as a fixed first layer (False: the flow sees the raw data)
    "schedule": "cosine",  # the learning-rate schedule: cosine (decay to 0) or constant
    # harness: fit_max_likelihood on the training split, best validated state restored; plain: a user's loop, a fresh
    # batch from the data set every step, plain Adam at constant lr, no validation, the last state evaluated
    "loop": "harness",
    # tractable-only ablations (the peers keep their own choices):
    "last_init": "zero",  # zero: the conditioner's last layer zero, bias = identity; torch: PyTorch default init
    "logit_scale": False,  # divide the width/height logits by sqrt(hidden), as nflows and normflows do
    "derivative": "tractable",  # tractable: m + (1-m) softplus(u)/log 2; nflows: m + softplus(u)
    # NSF(passing_map=True): an unconditional spline on the passing half of each coupling (the NSF paper, normflows),
    # as tractable fit builds a new NSF
    "passing_map": True,
    # he: the conditioners' hidden layers He-initialised, as the library builds them; torch: PyTorch's nn.Linear
    # default (the same draws scaled by 1/√6, a third of the variance)
    "hidden_init": "he",
    # the library's data-dependent initialisation of the conditioners' first layers (fit_max_likelihood's
    # data_init: each reads its input standardized by the first batch); --no-data-init measures a fit without it
    "data_init": True,
}
TRACTABLE_ONLY = ("last_init", "logit_scale", "derivative", "passing_map", "hidden_init", "data_init")

#: The quality grid's axes (``--grid``) and its data sets; the tail bound follows the standardization (3 in
#: standardised units, 5 on the raw toy sets, which all lie within ±4.3).
GRID_STEPS = (1000, 2000, 5000)
GRID_BINS = (8, 16)
GRID_STANDARDIZE = (True, False)
GRID_HIDDEN = (64, 128)
GRID_DATASETS = ("eight_gaussians", "checkerboard", "rings", "two_moons")
GRID_SEEDS = (0, 1, 2)
#: The issue's setting and the benchmark's default first, then the rest.
GRID_FIRST = ("s2000-b8-raw-h128", "s5000-b16-std-h64")


# ----------------------------------------------------------------------------------------------------------------------
# Model builders: each returns an nn.Module whose ``log_prob(z)`` is the density of *standardised* data.


class ResidualConditioner(nn.Module):
    """nflows' ``ResidualNet`` layout: input layer, ``blocks`` residual blocks of two linear layers, output layer.

    The output layer is zero-initialised with the bias set by the caller (so a coupling starts as the identity, like
    tractable's ``MLP(zero_last=True)``). Used only for the ``--residual`` variant of tractable's NSF, swapped in for
    each coupling's ``conditioner`` (tractable's ``Coupling`` calls ``conditioner(x_id, context)``).
    """

    def __init__(self, in_features: int, out_features: int, hidden: int, blocks: int, bias: Tensor):
        super().__init__()
        self.first = nn.Linear(in_features, hidden)
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)]) for _ in range(blocks)
        )
        for a, b in self.blocks:  # nflows: the second layer of each block starts near zero
            nn.init.uniform_(b.weight, -1e-3, 1e-3)
            nn.init.uniform_(b.bias, -1e-3, 1e-3)
        self.last = nn.Linear(hidden, out_features)
        nn.init.zeros_(self.last.weight)
        with torch.no_grad():
            self.last.bias.copy_(bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.first(x)
        for a, b in self.blocks:
            h = h + b(torch.relu(a(torch.relu(h))))
        return self.last(torch.relu(h))


class ScaledConditioner(nn.Module):
    """A conditioner whose outputs are multiplied by a fixed vector (the width/height logits by 1/sqrt(hidden))."""

    def __init__(self, inner: nn.Module, scale: Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("scale", scale)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.inner(x, context) * self.scale


def nflows_derivative(u: Tensor, minimum: float) -> Tensor:
    """nflows' knot derivative ``m + softplus(u)`` (1 at ``u = log(e^(1-m) - 1)``)."""
    return torch.nn.functional.softplus(u) + minimum


def build_tractable(cfg: dict, features: int = 2) -> nn.Module:
    from tractable.models.nsf import NSF
    from tractable.transforms import splines
    from tractable.transforms.coupling import Coupling
    from tractable.transforms.splines import RQSplineMap

    cfg = {**EXTRA_DEFAULTS, **cfg}
    if cfg["derivative"] == "nflows":
        splines._derivative = nflows_derivative  # this process only (each fit runs in its own)

    flow = NSF(
        features,
        layers=cfg["layers"],
        hidden=cfg["hidden"],
        blocks=cfg["blocks"],
        bins=cfg["bins"],
        bound=cfg["bound"],
        permutation=cfg["permutation"],
        activation=cfg["activation"],
        passing_map=cfg["passing_map"],
    )
    for t in flow.transform.transforms:
        if not isinstance(t, Coupling):
            continue
        if cfg["min_derivative"] != 1e-3:
            t.map = RQSplineMap(cfg["bins"], cfg["bound"], min_derivative=cfg["min_derivative"])
        if cfg["residual"]:
            old = t.conditioner
            t.conditioner = ResidualConditioner(
                old.in_features, old.out_features, cfg["hidden"], max(cfg["blocks"] - 1, 1), old.last.bias.detach()
            )
        if cfg["hidden_init"] == "torch" and not cfg["residual"]:
            with torch.no_grad():
                for lin in t.conditioner.linears[:-1]:
                    lin.weight.div_(math.sqrt(6.0))
        bins, per = cfg["bins"], t.map.params
        last = t.conditioner.last
        if cfg["last_init"] == "torch":
            last.reset_parameters()
        elif cfg["derivative"] == "nflows":  # zero init: keep the identity (δ = 1) under nflows' parametrisation
            with torch.no_grad():
                c = math.log(math.expm1(1 - cfg["min_derivative"]))
                last.bias.view(-1, per)[:, 2 * bins:] = c
        if cfg["logit_scale"]:
            scale = torch.ones(per)
            scale[: 2 * bins] = 1 / math.sqrt(cfg["hidden"])
            t.conditioner = ScaledConditioner(t.conditioner, scale.repeat(last.out_features // per))
    return flow


class PeerFlow(nn.Module):
    """A peer library's flow behind ``log_prob(x)``."""

    def __init__(self, module: nn.Module, log_prob):
        super().__init__()
        self.module = module
        self._log_prob = log_prob

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self._log_prob(x)


def build_nflows(cfg: dict, features: int = 2) -> nn.Module:
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.nn.nets import MLP
    from nflows.transforms import CompositeTransform
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform

    hidden, blocks = cfg["hidden"], cfg["blocks"]

    class Net(MLP):  # nflows' MLP takes no context argument (its couplings pass one)
        hidden_features = hidden  # so the coupling scales the width/height logits as for nflows' own nets

        def forward(self, inputs, context=None):
            return super().forward(inputs)

    steps = []
    for k in range(cfg["layers"]):
        mask = torch.ones(features)
        mask[: features // 2] = -1  # nflows: > 0 = transformed
        steps.append(
            PiecewiseRationalQuadraticCouplingTransform(
                mask if k % 2 == 0 else -mask,
                lambda i, o: Net((i,), (o,), [hidden] * blocks),
                num_bins=cfg["bins"],
                tails="linear",
                tail_bound=cfg["bound"],
                min_derivative=cfg["min_derivative"],
            )
        )
    flow = Flow(CompositeTransform(steps), StandardNormal([features]))
    return PeerFlow(flow, flow.log_prob)


def build_zuko(cfg: dict, features: int = 2) -> nn.Module:
    from functools import partial

    import zuko
    from zuko.transforms import MonotonicRQSTransform

    bins = cfg["bins"]
    flow = zuko.flows.MAF(
        features,
        transforms=cfg["layers"],
        passes=2,
        univariate=partial(MonotonicRQSTransform, bound=cfg["bound"], slope=cfg["min_derivative"]),
        shapes=[(bins,), (bins,), (bins - 1,)],
        hidden_features=[cfg["hidden"]] * cfg["blocks"],
    )
    return PeerFlow(flow, lambda x: flow().log_prob(x))


def normflows_width(cfg: dict, features: int = 2) -> int:
    """The residual-net width whose normflows NSF parameter count is closest to tractable's at ``cfg``."""
    target = count_parameters(build_tractable(cfg, features))[0]
    best = min(range(8, 4 * cfg["hidden"] + 1), key=lambda h: abs(
        count_parameters(build_normflows({**cfg, "normflows_hidden": h}, features))[0] - target))
    return best


def build_normflows(cfg: dict, features: int = 2) -> nn.Module:
    import normflows as nf

    hidden = cfg.get("normflows_hidden") or cfg["hidden"]
    blocks = cfg.get("normflows_blocks") or max(cfg["blocks"] // 2, 1)
    layers = [
        nf.flows.CoupledRationalQuadraticSpline(
            features, blocks, hidden, num_bins=cfg["bins"], tails="linear", tail_bound=cfg["bound"],
            reverse_mask=bool(k % 2),
        )
        for k in range(cfg["layers"])
    ]
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(features, trainable=False), layers)
    return PeerFlow(flow, flow.log_prob)


BUILDERS = {"tractable": build_tractable, "nflows": build_nflows, "zuko": build_zuko, "normflows": build_normflows}


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(stored, effective)`` trainable parameters; effective leaves out the entries zuko's masks zero."""
    stored = sum(p.numel() for p in module.parameters() if p.requires_grad)
    masked = 0
    for m in module.modules():
        mask = getattr(m, "mask", None)
        weight = getattr(m, "weight", None)
        if isinstance(mask, Tensor) and isinstance(weight, nn.Parameter) and mask.shape == weight.shape:
            masked += int((mask == 0).sum())
    return stored, stored - masked


# ----------------------------------------------------------------------------------------------------------------------
# One fit.


class Standardized(nn.Module):
    """A peer flow on standardised data, seen in the original units (``StandardizeTransform`` prepended)."""

    def __init__(self, inner: nn.Module, standardize: nn.Module, features: int):
        super().__init__()
        self.inner, self.standardize = inner, standardize
        self.event_shape = (features,)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z, ladj = self.standardize(x)
        return self.inner.log_prob(z) + ladj


def plain_loop(flow: nn.Module, data, cfg: dict, seed: int):
    """``--loop plain``: fresh batches from the data set, Adam at constant lr, the last state kept."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(10_000 + seed)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg["lr"])
    start, curve = time.perf_counter(), []
    for step in range(1, cfg["steps"] + 1):
        loss = -flow.log_prob(data.sample(cfg["batch_size"], generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg["eval_every"] == 0:
            curve.append((step, float(loss)))
    flow.eval()
    return SimpleNamespace(best_step=cfg["steps"], best_val_nll=float("nan"), evaluations=curve,
                           seconds=time.perf_counter() - start)


def run_one(job: dict) -> dict:
    """Fit one (library, data set, seed) and evaluate it; returns the result row."""
    torch.set_num_threads(1)
    if job.get("peer_path") and job["peer_path"] not in sys.path:
        sys.path.append(job["peer_path"])  # appended: never shadows the environment's torch
    warnings.filterwarnings("ignore")
    from tractable.targets.tabular import Standardizer
    from tractable.targets.toy import get_dataset, sample_splits
    from tractable.training import evaluate_toy, fit_max_likelihood
    from tractable.transforms.base import Compose

    cfg, lib, name, seed = job["cfg"], job["lib"], job["dataset"], job["seed"]
    extra = {**EXTRA_DEFAULTS, **cfg}
    data = get_dataset(name)
    train, val, test = sample_splits(data, sizes=SIZES, seed=seed)
    std = Standardizer.fit(train)
    torch.manual_seed(seed)
    inner = BUILDERS[lib](cfg, data.features)
    stored, effective = count_parameters(inner)
    if not extra["standardize"]:
        flow = inner
        if lib != "tractable":
            flow.event_shape = (data.features,)
    elif lib == "tractable":
        flow = inner
        flow.transform = Compose(std.as_transform(), flow.transform)
    else:
        flow = Standardized(inner, std.as_transform(), data.features)
    cpu = time.process_time()
    if extra["loop"] == "plain":
        history = plain_loop(flow, data, cfg, seed)
    else:
        history = fit_max_likelihood(
            flow, train, val=val, steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
            schedule=extra["schedule"], eval_every=cfg["eval_every"], seed=seed, progress=False,
            **({"data_init": extra["data_init"]} if lib == "tractable" else {}),
        )
    fit_cpu_seconds = time.process_time() - cpu
    start = time.perf_counter()
    metrics = evaluate_toy(flow, data, test=test)
    eval_seconds = time.perf_counter() - start
    return {
        "key": job["key"], "lib": lib, "dataset": name, "seed": seed, "cfg": cfg,
        "params": stored, "params_effective": effective,
        "test_nll": metrics["test_nll"], "test_nll_stderr": metrics["test_nll_stderr"], "entropy": metrics["entropy"],
        "gap": metrics["kl_gap"], "kl_paired": metrics["kl_paired"], "kl_paired_stderr": metrics["kl_paired_stderr"],
        "best_step": history.best_step, "best_val_nll": history.best_val_nll,
        "val_curve": history.evaluations, "fit_seconds": history.seconds, "fit_cpu_seconds": fit_cpu_seconds,
        "eval_seconds": eval_seconds, "log_mass": log_mass(flow, data),
        "torch": torch.__version__,
    }


#: The square ``[-MASS_BOX, MASS_BOX]²`` and grid of :func:`log_mass` (the toy sets lie within ±4.3).
MASS_BOX, MASS_GRID = 6.0, 480


def log_mass(flow: torch.nn.Module, data) -> float | None:
    """``log ∫ q`` over ``[-6, 6]²`` (midpoint rule, 480² points) for a planar data set, else ``None``.

    A normalised density gives a value at or just below 0; a clearly positive one means the evaluated "density"
    integrates to more than 1 (a map that is not invertible, or an estimated log-determinant), so its test NLL
    understates the true KL gap by that much.
    """
    from tractable.targets.quadrature import log_integral_2d

    if data.features != 2 or getattr(data, "circular", False):
        return None
    ref = next(flow.parameters())
    flow.eval()
    with torch.no_grad():
        return log_integral_2d(lambda x: flow.log_prob(x.to(ref.dtype)).double(), (-MASS_BOX, MASS_BOX), MASS_GRID)


def job_key(lib: str, name: str, seed: int, cfg: dict) -> str:
    # tractable's keys always name its conditioners' initialisation (hidden layers, data-dependent first layer): its
    # runs cached before the library did either are runs of other code, never reused for the current one
    # runs, and its passing-half splines when on (runs without them are the earlier code's: their keys stay valid)
    named = ("hidden_init", "data_init") + (("passing_map",) if cfg.get("passing_map") else ()) if lib == "tractable" \
        else ()
    cfg = {k: v for k, v in cfg.items() if k in named or not (k in EXTRA_DEFAULTS and v == EXTRA_DEFAULTS[k])}
    blob = json.dumps({"lib": lib, "dataset": name, "seed": seed, "cfg": cfg}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------------
# Tables.


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± standard error over seeds of each (data set, library)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["lib"]), []).append(r)
    out = []
    for (name, lib), rs in groups.items():
        n = len(rs)

        def mean_se(key: str, rs: list = rs, n: int = n) -> tuple[float, float]:
            v = torch.tensor([r[key] for r in rs], dtype=torch.float64)
            return float(v.mean()), float(v.std() / math.sqrt(n)) if n > 1 else float("nan")

        gap, gap_se = mean_se("gap")
        masses = [r.get("log_mass") for r in rs]
        out.append({
            "dataset": name, "lib": lib, "seeds": sorted(r["seed"] for r in rs), "n": n,
            "test_nll": mean_se("test_nll")[0], "entropy": rs[0]["entropy"], "gap": gap, "gap_se": gap_se,
            "gap_max": max(r["gap"] for r in rs), "gap_median": statistics.median(r["gap"] for r in rs),
            # the gap of q / ∫q: a model whose log_prob does not integrate to 1 is scored as the density it implies
            "gap_normalised_median": None if None in masses else statistics.median(
                r["gap"] + m for r, m in zip(rs, masses)),
            "gap_stderr_within": max(r["test_nll_stderr"] for r in rs),
            "kl_paired": mean_se("kl_paired")[0], "params": rs[0]["params"],
            "log_mass": max((r["log_mass"] for r in rs if r.get("log_mass") is not None), default=None),
            "params_effective": rs[0]["params_effective"],
            "fit_seconds": mean_se("fit_seconds")[0], "per_seed_gap": [round(r["gap"], 4) for r in
                                                                       sorted(rs, key=lambda r: r["seed"])],
        })
    order = {d: i for i, d in enumerate(DATASETS)}
    lib_order = {lib: i for i, lib in enumerate(LIBS)}
    return sorted(out, key=lambda s: (order.get(s["dataset"], 99), lib_order.get(s["lib"], 99)))


def markdown(summary: list[dict], cfg: dict, header: str = "") -> str:
    lines = [header] if header else []
    lines += [
        ("| data set | library | seeds | test NLL | entropy | gap (NLL − H) ± s.e. over seeds | median gap "
         "| worst seed | per-seed gaps | KL (paired) | log ∫q (largest) | median gap of q/∫q "
         "| parameters (effective) | fit s |"),
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        se = "" if math.isnan(s["gap_se"]) else f" ± {s['gap_se']:.4f}"
        eff = "" if s["params_effective"] == s["params"] else f" ({s['params_effective']:,})"
        seeds = ",".join(map(str, s["seeds"]))
        kl = "—" if math.isnan(s["kl_paired"]) else f"{s['kl_paired']:.4f}"
        lines.append(
            f"| {s['dataset']} | {s['lib']} | {seeds} | {s['test_nll']:.4f} | {s['entropy']:.4f} | "
            f"{s['gap']:.4f}{se} | {s['gap_median']:.4f} | "
            f"{s['gap_max']:.4f} | {', '.join(f'{g:.3f}' for g in s['per_seed_gap'])} | {kl} | "
            f"{'—' if s.get('log_mass') is None else format(s['log_mass'], '.4f')} | "
            f"{'—' if s.get('gap_normalised_median') is None else format(s['gap_normalised_median'], '.4f')} | "
            f"{s['params']:,}{eff} | {s['fit_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------------
# The quality grid.


def grid_cells() -> dict[str, dict]:
    """Every cell of the grid: name -> the configuration values it sets, the issue's and the default cell first."""
    cells = {}
    for steps in GRID_STEPS:
        for bins in GRID_BINS:
            for standardize in GRID_STANDARDIZE:
                for hidden in GRID_HIDDEN:
                    name = f"s{steps}-b{bins}-{'std' if standardize else 'raw'}-h{hidden}"
                    cells[name] = {"steps": steps, "bins": bins, "standardize": standardize, "hidden": hidden,
                                   "bound": 3.0 if standardize else 5.0}
    return {**{k: cells[k] for k in GRID_FIRST}, **{k: v for k, v in cells.items() if k not in GRID_FIRST}}


def select_cells(patterns: list[str] | None) -> dict[str, dict]:
    """The cells whose names match any of ``patterns`` (names or shell patterns), in the grid's order."""
    import fnmatch

    cells = grid_cells()
    if not patterns:
        return cells
    chosen = {k: v for k, v in cells.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in cells)]
    if unknown:
        raise SystemExit(f"--cells: no cell matches {', '.join(unknown)}; cells are e.g. {next(iter(cells))}")
    return chosen


def read_caches(results_dir: Path, own: Path) -> tuple[dict, dict]:
    """``(own rows, rows of the other *.runs.jsonl files)``, each keyed by run key."""
    done, other = {}, {}
    for path in sorted(results_dir.glob("*.runs.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if "key" in row and "gap" in row:
                    (done if path == own else other)[row["key"]] = row
    return done, other


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def grid_table(cells: dict[str, dict], datasets: list[str], libs: list[str], seeds: list[int],
               wanted: dict[tuple[str, str, str, int], str], done: dict) -> tuple[str, list[dict]]:
    """The grid's summary: per cell and data set, each library's median gap (two_moons: test NLL) over the seeds it
    has, Δ = tractable − best peer (medians of test NLL), and whether the cell is complete."""
    peers = [lib for lib in libs if lib != "tractable"]
    lines = [
        "| cell | data set | " + " | ".join(libs) + " | Δ tractable − best peer | complete |",
        "|---|---|" + "---:|" * len(libs) + "---:|---|",
    ]
    out = []
    for cell in cells:
        for name in datasets:
            per_lib = {}
            for lib in libs:
                rows = [done[wanted[(cell, name, lib, s)]] for s in seeds if wanted[(cell, name, lib, s)] in done]
                per_lib[lib] = rows
            nll = {lib: median([r["test_nll"] for r in rows]) for lib, rows in per_lib.items() if rows}
            shown = {lib: median([(r["gap"] if math.isfinite(r["gap"]) else r["test_nll"]) for r in rows])
                     for lib, rows in per_lib.items() if rows}
            complete = all(len(per_lib[lib]) == len(seeds) for lib in libs)
            delta = (nll["tractable"] - min(nll[p] for p in peers if p in nll)
                     if "tractable" in nll and any(p in nll for p in peers) else math.nan)
            cells_text = [
                f"{shown[lib]:.4f}" + ("" if len(per_lib[lib]) == len(seeds) else f" ({len(per_lib[lib])})")
                if lib in shown else "—" for lib in libs
            ]
            status = ("yes" if complete else "no") + (
                "" if math.isnan(delta) else (", ok" if delta <= 0.005 else ", **trails**"))
            lines.append(f"| {cell} | {name}{' (NLL)' if name == 'two_moons' else ''} | " + " | ".join(cells_text)
                         + f" | {'—' if math.isnan(delta) else f'{delta:+.4f}'} | {status} |")
            out.append({"cell": cell, "dataset": name, "complete": complete, "delta": delta,
                        "median": shown, "seeds": {lib: sorted(r["seed"] for r in rows)
                                                   for lib, rows in per_lib.items()}})
    return "\n".join(lines) + "\n", out


def run_grid(args: argparse.Namespace, cfg: dict) -> None:
    cells = select_cells(args.cells)
    datasets = args.datasets if args.datasets_given else list(GRID_DATASETS)
    seeds = args.seeds
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    out = args.out if args.out != "density_quality" else "density_quality_grid"
    cache = results_dir / f"{out}.runs.jsonl"
    done, other = read_caches(results_dir, cache)
    wanted: dict[tuple[str, str, str, int], str] = {}
    jobs, copied = [], []
    for cell, values in cells.items():
        c = {**cfg, **values}
        peer_cfg = {k: v for k, v in c.items() if k not in TRACTABLE_ONLY}
        if "normflows" in args.libs:
            peer_cfg["normflows_blocks"] = args.normflows_blocks or max(c["blocks"] // 2, 1)
            peer_cfg["normflows_hidden"] = args.normflows_hidden or normflows_width({**c, **peer_cfg})
        for name in datasets:
            for lib in args.libs:
                lc = c if lib == "tractable" else peer_cfg
                for seed in seeds:
                    key = job_key(lib, name, seed, lc)
                    wanted[(cell, name, lib, seed)] = key
                    if key in done:
                        continue
                    if key in other:
                        done[key] = other[key]
                        copied.append(other[key])
                        continue
                    jobs.append({"key": key, "lib": lib, "dataset": name, "seed": seed, "cfg": lc,
                                 "peer_path": args.peer_path, "cell": cell})
    if copied:
        with cache.open("a") as handle:
            for row in copied:
                handle.write(json.dumps(row) + "\n")
    print(f"{len(wanted) - len(jobs)} runs cached ({len(copied)} copied from other caches), {len(jobs)} to run",
          flush=True)
    if jobs and not args.table:
        execute(jobs, cache, done, args.jobs)
    text, summary = grid_table(cells, datasets, args.libs, seeds, wanted, done)
    header = (
        f"NSF quality grid: {cfg['layers']} coupling layers, ReLU conditioners of {cfg['blocks']} hidden layers, "
        f"Adam lr {cfg['lr']:g} {cfg['schedule']}, batch {cfg['batch_size']}, "
        + (f"validation every {cfg['eval_every']} (best restored); " if cfg["loop"] == "harness" else
           "plain loop (fresh batches, last state); ")
        + f"train/val/test {SIZES[0]:,}/{SIZES[1]:,}/{SIZES[2]:,}; one thread per fit; torch {torch.__version__}. "
        "Cells s<steps>-b<bins>-<std|raw>-h<hidden> (tail bound 3 standardised, 5 raw). Entries: median over seeds of "
        "the gap test NLL − entropy (two_moons: test NLL), (n) where fewer than "
        f"{len(seeds)} seeds are done; Δ: tractable's median test NLL minus the best peer's (ok: Δ ≤ 0.005).\n\n"
    )
    (results_dir / f"{out}.md").write_text(header + text)
    (results_dir / f"{out}.json").write_text(json.dumps({"config": cfg, "cells": cells, "summary": summary},
                                                        indent=1, default=str))
    print(header + text)


def load_runs(cache: Path) -> dict:
    """The cached rows of ``cache`` (one JSON line a run), keyed by run key; empty if there is no cache yet."""
    if not cache.exists():
        return {}
    rows = (json.loads(line) for line in cache.read_text().splitlines() if line.strip())
    return {row["key"]: row for row in rows}


def _describe(row: dict) -> str:
    return (f"{row['dataset']:16s} {row['lib']:10s} seed {row['seed']}: gap {row['gap']:.4f} "
            f"(NLL {row['test_nll']:.4f}) best step {row['best_step']} fit {row['fit_seconds']:.0f}s")


def execute(jobs: list[dict], cache: Path, done: dict, processes: int, *,
            worker: Callable[[dict], dict] | None = None, describe: Callable[[dict], str] = _describe) -> None:
    """Run ``jobs`` with ``worker`` (default :func:`run_one`) in ``processes`` fresh processes (one thread each),
    appending each row to ``cache`` and to ``done`` as it arrives."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes, maxtasksperchild=1) as pool, cache.open("a") as handle:
        for row in pool.imap(worker or run_one, jobs):
            done[row["key"]] = row
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            print(describe(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--peer-seeds", nargs="+", type=int, default=None,
                        help="seeds for the peer libraries (default: --seeds)")
    parser.add_argument("--jobs", type=int, default=2, help="processes at once (one thread each)")
    parser.add_argument("--peer-path", default="/tmp/peerlibs",
                        help="a directory holding nflows/zuko/normflows, appended to sys.path in the workers only")
    parser.add_argument("--out", default="density_quality", help="results file stem")
    parser.add_argument("--results-dir", default=str(RESULTS))
    for key, value in {**DEFAULTS, **EXTRA_DEFAULTS}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--normflows-blocks", type=int, default=None, help="residual blocks (default blocks // 2)")
    parser.add_argument("--normflows-hidden", type=int, default=None,
                        help="residual-net width (default: matched to tractable's parameter count)")
    parser.add_argument("--list", action="store_true", help="print the parameter counts and exit")
    parser.add_argument("--grid", action="store_true", help="the quality grid (steps × bins × standardize × hidden)")
    parser.add_argument("--cells", nargs="+", default=None, help="grid cells (names or shell patterns; default all)")
    parser.add_argument("--table", action="store_true", help="grid: write the table of the cached runs, run nothing")
    args = parser.parse_args()
    args.datasets_given = "--datasets" in sys.argv
    torch.set_num_threads(1)
    if args.peer_path and args.peer_path not in sys.path:
        sys.path.append(args.peer_path)
    cfg = {key: getattr(args, key) for key in {**DEFAULTS, **EXTRA_DEFAULTS}}
    if args.grid:
        run_grid(args, cfg)
        return
    peer_cfg = {k: v for k, v in cfg.items() if k not in TRACTABLE_ONLY}
    if "normflows" in args.libs:
        peer_cfg["normflows_blocks"] = args.normflows_blocks or max(cfg["blocks"] // 2, 1)
        peer_cfg["normflows_hidden"] = args.normflows_hidden or normflows_width({**cfg, **peer_cfg})
    if args.list:
        for lib in args.libs:
            print(lib, count_parameters(BUILDERS[lib](cfg if lib == "tractable" else peer_cfg)))
        return
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    cache = results_dir / f"{args.out}.runs.jsonl"
    done = load_runs(cache)
    jobs, wanted = [], []
    for name in args.datasets:
        for lib in args.libs:
            c = cfg if lib == "tractable" else peer_cfg
            seeds = args.seeds if lib == "tractable" or args.peer_seeds is None else args.peer_seeds
            for seed in seeds:
                key = job_key(lib, name, seed, c)
                wanted.append(key)
                if key not in done:
                    jobs.append({"key": key, "lib": lib, "dataset": name, "seed": seed, "cfg": c,
                                 "peer_path": args.peer_path})
    print(f"{len(wanted) - len(jobs)} runs cached, {len(jobs)} to run with {args.jobs} process(es)", flush=True)
    if jobs:
        execute(jobs, cache, done, args.jobs)
    rows = [done[k] for k in wanted]
    summary = summarise(rows)
    header = (
        f"NSF (coupling), {cfg['layers']} layers, conditioners {cfg['blocks']}×{cfg['hidden']} ReLU, "
        f"{cfg['bins']} bins "
        f"on [-{cfg['bound']:g}, {cfg['bound']:g}] ({'standardised' if cfg['standardize'] else 'raw'} units), "
        f"Adam lr {cfg['lr']:g} {cfg['schedule']}, "
        f"{cfg['steps']} steps × batch {cfg['batch_size']}, "
        + (f"validation every {cfg['eval_every']} (best restored); " if cfg["loop"] == "harness" else
           "plain loop (fresh batches, last state); ")
        + f"train/val/test {SIZES[0]:,}/{SIZES[1]:,}/{SIZES[2]:,}; one thread per fit; torch {torch.__version__}."
        + (f" normflows: {peer_cfg['normflows_blocks']} residual block(s) of width {peer_cfg['normflows_hidden']}."
           if "normflows" in args.libs else "")
        + "\n"
    )
    text = markdown(summary, cfg, header)
    (results_dir / f"{args.out}.md").write_text(text)
    (results_dir / f"{args.out}.json").write_text(json.dumps({"config": cfg, "peer_config": peer_cfg,
                                                              "summary": summary, "runs": rows}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
