"""Planar flows under a plain training loop: tractable beside normflows and pyro, matched protocol.

    PYTHONPATH=src .venv/bin/python benchmarks/planar_plain_loop.py --targets ring u1 u2 u3 u4 --seeds 0 1 2 \\
        [--libs tractable normflows pyro] [--variants default] [--steps 3000] [--peers /tmp/peerlibs]
    PYTHONPATH=src .venv/bin/python benchmarks/planar_plain_loop.py --table   # medians of the runs recorded so far

The loop is the one of acids-ircam/pytorch_flows' flows_01 notebook, written once for both libraries: ``layers``
planar maps (32) on a fixed ``N(0, I)`` base, Adam (lr 2e-3), ``ExponentialLR(0.9999)`` stepped every step, batch
512, 3,000 steps, reverse KL ``mean(log q(x) + U(x))`` with no annealing, one torch thread, ``torch.manual_seed(seed)``
before building the model. Every flow is scored by tractable's :func:`~tractable.evaluate_reverse` (the exact
``KL(q‖p)`` from the target's quadrature ``log Z``, 100,000 fresh samples); the peers' models are wrapped to provide
``sample_and_log_prob``: normflows' ``Planar`` layers on ``DiagGaussian(trainable=False)``, pyro's
``pyro.distributions.transforms.Planar`` in a ``TransformedDistribution`` over a fixed ``Normal(0, I)`` (pyro's
planar layer has no inverse; its log-density of its own samples comes from the transform's cache).

``--variants`` ablates tractable's planar layer one difference at a time (see ``VARIANTS``): the initialisation of
``u``, ``w`` and ``b`` (tractable's near-identity one, normflows' uniform one, or parts of it), the activation and the
arithmetic (float64); ``init:NAME`` builds ``PlanarFlow(..., init=NAME)`` (``default`` is whatever ``PlanarFlow``
does by default). The peers are imported from ``--peers`` (appended at the end of ``sys.path``; install them there
with ``pip install --target DIR --no-deps normflows pyro-ppl pyro-api opt-einsum``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from tractable import Flow, Inverse, Planar, PlanarFlow, evaluate_reverse
from tractable.distributions import make_base
from tractable.targets.energies import get_target

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def _uniform_(t: torch.Tensor, lim: float) -> None:
    with torch.no_grad():
        t.uniform_(-lim, lim)


def init_normflows(planar, which: str = "uwb") -> None:
    """Re-initialise a tractable ``Planar`` stack as normflows does (per map: ``u ~ U(±√2)``,
    ``w ~ U(±√(2/D))``, ``b = 0``), for the parameters named in ``which``; the draw order per map is u, then w, as in
    normflows."""
    d = planar.features
    lim_u, lim_w = math.sqrt(2.0), math.sqrt(2.0 / d)
    with torch.no_grad():
        for k in range(planar.layers):
            u, w = torch.empty(d), torch.empty(d)
            _uniform_(u, lim_u)
            _uniform_(w, lim_w)
            if "u" in which:
                planar.u[k] = u
            if "w" in which:
                planar.w[k] = w
            if "b" in which:
                planar.b[k] = 0.0


def build_tractable(layers: int, variant: str):
    if variant.startswith("mixed:"):
        # mixed:LO:HI: the shear start with û across w scaled per map, log-uniformly between LO and HI (m = 0 kept)
        lo, hi = (float(v) for v in variant.split(":")[1:])
        layer = Planar(2, layers, init="shear", scale=1.0)
        with torch.no_grad():
            w, u = layer.w, layer.u
            along = (w * u).sum(-1, keepdim=True) / (w * w).sum(-1, keepdim=True) * w
            f = torch.exp(torch.empty(layers, 1).uniform_(math.log(lo), math.log(hi)))
            u.copy_(along + f * (u - along))
        return Flow(Inverse(layer), make_base("normal", 2))
    if variant.startswith("init:"):  # the library's own option: init:NAME[:SCALE[:B]] (B: b ~ U(±B) after u, w)
        name, *rest = variant.split(":")[1:]
        if not rest:
            return PlanarFlow(2, layers, base="normal", init=name)
        layer = Planar(2, layers, init=name, scale=float(rest[0]))  # the same draws as PlanarFlow's
        if len(rest) > 1:
            _uniform_(layer.b, float(rest[1]))
        return Flow(Inverse(layer), make_base("normal", 2))
    flow = PlanarFlow(2, layers, base="diagonal" if variant == "base-diagonal" else "normal")
    planar = flow.transform.transform  # Inverse(Planar)
    if variant == "init-nf-m0" or variant.startswith("shear:"):
        # normflows' draws, then u moved along w so that wᵀu = log(e - 1): m = 0 in every map, no contraction at the
        # start, while the part of û across w stays of order 1 (shear:s scales u's draws by s first)
        init_normflows(planar)
        with torch.no_grad():
            if variant.startswith("shear:"):
                planar.u.mul_(float(variant.split(":", 1)[1]))
            w, u = planar.w, planar.u
            shift = (math.log(math.e - 1) - (w * u).sum(-1, keepdim=True)) / (w * w).sum(-1, keepdim=True)
            u.add_(shift * w)
    elif variant.startswith("init-nf"):
        which = variant.split(":", 1)[1] if ":" in variant else "uwb"
        init_normflows(planar, which)
    elif variant.startswith("u-scale:"):
        # tractable's init with the noise on u (0.01) replaced by a larger scale
        s = float(variant.split(":", 1)[1])
        with torch.no_grad():
            w = planar.w
            planar.u.copy_(torch.randn_like(w) * s + (math.log(math.e - 1) / 2.0) * w)
    elif variant.startswith("w-norm:"):
        # tractable's init (û ≈ 0.01 noise, m = 0) with ‖w‖ = s instead of √2
        s = float(variant.split(":", 1)[1])
        with torch.no_grad():
            w = planar.w * (s / torch.linalg.vector_norm(planar.w, dim=-1, keepdim=True))
            planar.w.copy_(w)
            planar.u.copy_(torch.randn_like(w) * 0.01 + math.log(math.e - 1) * w / (s * s))
    elif variant == "u-zero":
        # u ≈ 0 (N(0, 0.01²)), w ours: m = log 2 - 1 ≈ -0.31 in every map, so the initial q is N(0, I) contracted
        # along 32 random directions (a near point mass, as normflows' init gives), but with û small and symmetric
        with torch.no_grad():
            planar.u.copy_(torch.randn_like(planar.u) * 0.01)
    elif variant in ("default", "base-diagonal"):
        pass
    elif variant == "float64":
        flow = flow.double()
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return flow


class PyroFlow:
    """pyro's planar flow seen through tractable's sampling interface."""

    def __init__(self, layers: int):
        import pyro.distributions as dist
        from pyro.distributions.transforms import Planar as PyroPlanar

        self.transforms = torch.nn.ModuleList(PyroPlanar(2) for _ in range(layers))
        base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
        self.dist = dist.TransformedDistribution(base, list(self.transforms))
        self.event_shape = torch.Size([2])

    def sample_and_log_prob(self, n, context=None):
        x = self.dist.rsample((n,))
        return x, self.dist.log_prob(x)  # the transforms' caches hold x's preimages

    def parameters(self):
        return self.transforms.parameters()


class NormflowsFlow:
    """normflows' model seen through tractable's sampling interface (for ``evaluate_reverse``)."""

    def __init__(self, model):
        self.model = model
        self.event_shape = torch.Size([2])

    def sample_and_log_prob(self, n, context=None):
        return self.model.sample(n)

    def parameters(self):
        return self.model.parameters()


def build_normflows(layers: int, variant: str):
    import normflows as nf

    if variant != "default":
        raise ValueError("normflows runs as it ships (variant 'default')")
    q0 = nf.distributions.DiagGaussian(2, trainable=False)
    flows = [nf.flows.Planar((2,)) for _ in range(layers)]
    return NormflowsFlow(nf.NormalizingFlow(q0=q0, flows=flows))


def fit(lib: str, target_name: str, seed: int, variant: str, *, layers: int, steps: int, batch: int, lr: float,
        gamma: float, trace: int = 0) -> dict:
    torch.manual_seed(seed)
    if lib != "tractable" and variant != "default":
        raise ValueError(f"{lib} runs as it ships (variant 'default'); got {variant!r}")
    builders = {"tractable": lambda: build_tractable(layers, variant),
                "normflows": lambda: build_normflows(layers, variant), "pyro": lambda: PyroFlow(layers)}
    flow = builders[lib]()
    target = get_target(target_name)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    t0 = time.perf_counter()
    bad, curve = 0, []
    for step in range(steps):
        if trace and step % trace == 0:
            state = torch.get_rng_state()  # the trace leaves the training draws as they were
            with torch.no_grad():
                curve.append((step, round(evaluate_reverse(flow, target, 20_000)["kl"], 4)))
            torch.set_rng_state(state)
        x, log_q = flow.sample_and_log_prob(batch)
        loss = (log_q - target.log_prob(x)).mean()
        opt.zero_grad()
        if not torch.isfinite(loss):
            bad += 1
            sched.step()
            continue
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        ev = evaluate_reverse(flow, target)
    return {"lib": lib, "target": target_name, "seed": seed, "variant": variant, "layers": layers, "steps": steps,
            "kl": ev["kl"], "kl_stderr": ev["kl_stderr"], "ess": ev["ess"], "skipped_steps": bad,
            "seconds": seconds, **({"trace": curve} if trace else {})}


def table(path: Path, variants: list[str], since: str | None = None) -> str:
    """Median KL over seeds per (target, library/variant) from the recorded runs (the last run of each seed wins;
    ``since``: only tractable rows tagged with that ``src`` label, so that a change of default is not mixed with
    runs of the old one)."""
    runs: dict[tuple[str, str, int], float] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["steps"] != 3000 or r["layers"] != 32:
            continue
        name = r["lib"] if r["lib"] != "tractable" else f"tractable {r['variant']}"
        if r["lib"] == "tractable" and (r["variant"] not in variants or (since and r.get("src") != since)):
            continue
        runs[(r["target"], name, r["seed"])] = r["kl"]
    names = sorted({k[1] for k in runs}, key=lambda n: (not n.startswith("tractable"), n))
    lines = ["| target | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for target in ("ring", "u1", "u2", "u3", "u4"):
        cells = []
        for n in names:
            v = sorted((s, kl) for (t, m, s), kl in runs.items() if t == target and m == n)
            if not v:
                cells.append("")
                continue
            kls = sorted(kl for _, kl in v)
            med = kls[len(kls) // 2] if len(kls) % 2 else 0.5 * (kls[len(kls) // 2 - 1] + kls[len(kls) // 2])
            cells.append(f"{med:.4f} ({', '.join(f'{kl:.3f}' for _, kl in v)})")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=["ring", "u1", "u2", "u3", "u4"])
    p.add_argument("--libs", nargs="+", default=["tractable", "normflows"])
    p.add_argument("--variants", nargs="+", default=["default"], help="tractable variants (normflows: default)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--gamma", type=float, default=0.9999)
    p.add_argument("--trace", type=int, default=0, help="also record the KL (20,000 samples) every N steps")
    p.add_argument("--peers", default="/tmp/peerlibs", help="directory holding the peers (appended to sys.path)")
    p.add_argument("--jsonl", default=str(RESULTS / "planar_plain_loop.runs.jsonl"), help="append each run here")
    p.add_argument("--src", default=None, help="a label stored with each run (the library state it measured)")
    p.add_argument("--table", action="store_true", help="print the median-of-seeds table of --variants and exit")
    a = p.parse_args()
    if a.table:
        print(table(Path(a.jsonl), a.variants, a.src), end="")
        return
    sys.path.append(a.peers)
    torch.set_num_threads(1)
    for target in a.targets:
        for seed in a.seeds:
            for lib in a.libs:
                for variant in (a.variants if lib == "tractable" else ["default"]):
                    r = fit(lib, target, seed, variant, layers=a.layers, steps=a.steps, batch=a.batch, lr=a.lr,
                            gamma=a.gamma, trace=a.trace)
                    print(f"{r['target']:5s} seed {seed} {lib:10s} {variant:16s} KL {r['kl']:.4f} ± "
                          f"{r['kl_stderr']:.4f}  ESS {r['ess']:.3f}  skipped {r['skipped_steps']}  "
                          f"{r['seconds']:.0f}s", flush=True)
                    if a.trace:
                        print("   trace", r["trace"], flush=True)
                    if a.src:
                        r["src"] = a.src
                    if a.jsonl:
                        Path(a.jsonl).parent.mkdir(parents=True, exist_ok=True)
                        with open(a.jsonl, "a") as f:
                            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
