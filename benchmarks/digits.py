"""Digits bits/dim after a fixed CPU budget: tractable's image flows, normflows' Glow and flow-free baselines.

scikit-learn's digits (8x8, 17 levels; 1,500 train / 297 test images from ``tractable.targets.images.load_digits``):

* tractable rows run the command line with its defaults, ``tractable fit digits --model M [--dequantization D]
  --threads 1 --no-plots --quiet``, in a subprocess, and read the run's ``metrics.json`` (the CLI holds out a tenth of
  the training images for validation and keeps the best state).
* normflows' Glow is built the way normflows' own Glow example builds it (``nf.MultiscaleFlow`` of
  ``nf.flows.GlowBlock``, ``Squeeze`` and ``Merge``, a diagonal Gaussian per level), sized near tractable's
  ``digits-glow`` preset, and trained with Adam for ``--peer-budget`` seconds of wall time (default: the training
  seconds of tractable's default Flow++ run in the same invocation, else 300) on the CLI's own split (1,350 training
  images; every 100 steps the 150 validation images are scored and the best state is kept, as the CLI does). Its data
  are uniformly dequantized and scaled, ``y = (x + u) / 17`` (no logit, as in normflows' example), so its bits/dim
  are ``(-log p(y) + D log 17) / (D log 2)``; the importance-weighted bound uses 16 noise draws per image.
* The baselines need no flow: an independent per-pixel histogram (exact discrete likelihood, add-one smoothing), and
  a full-covariance Gaussian and a 10-component Gaussian mixture fitted to the logits of the uniformly dequantized
  images (their bits/dim include the logit and scaling log-determinants).

Every row is a bound on the discrete negative log-likelihood in bits per dimension (lower is better). Everything
runs on one CPU thread, one training at a time. Writes benchmarks/results/digits.md and digits.json.

Run:   PYTHONPATH=/tmp/peerlibs .venv/bin/python benchmarks/digits.py
Quick: PYTHONPATH=/tmp/peerlibs .venv/bin/python benchmarks/digits.py --steps 20 --peer-budget 5 --out /tmp/digits
(normflows is optional: without it on the path its row is skipped with the reason.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from tractable.app import resolve
from tractable.app.presets import build_preset, count_parameters
from tractable.app.tasks.image import load_image_data
from tractable.dequantization import bits_per_dim, unit_bits_per_dim
from tractable.targets.images import load_digits
from tractable.transforms.elementwise import Logit

ALPHA = 0.05
REGULARISERS = (1e-3, 1e-2, 1e-1, 0.3)
DEFAULT_DEQ = {"flowpp": "variational", "realnvp": "uniform", "glow": "uniform"}
RESULTS = Path(__file__).resolve().parent / "results"


def row(model: str, library: str, deq: str, params: int | None, bpd: float, bpd_iw: float | None = None,
        seconds: float | None = None, steps: int | None = None, **extra: object) -> dict[str, object]:
    return {"model": model, "library": library, "dequantization": deq, "parameters": params, "test_bpd": bpd,
            "test_bpd_iw": bpd_iw, "seconds": seconds, "steps": steps, **extra}


def dequantized_logits(x: torch.Tensor, levels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of uniformly dequantized images, and the log-determinant (per image) of ``x -> logit``."""
    g = torch.Generator().manual_seed(seed)
    y = (x.double() + torch.rand(x.shape, generator=g, dtype=torch.float64)) / levels
    t, ladj = Logit(ALPHA)(y.flatten(1))
    dims = t.shape[1]
    return t.numpy(), (ladj - dims * math.log(levels)).numpy()


def baselines(train: torch.Tensor, test: torch.Tensor, levels: int) -> list[dict[str, object]]:
    """The per-pixel histogram, the full-covariance Gaussian and the 10-component mixture (test bits/dim)."""
    from sklearn.mixture import GaussianMixture

    start = time.perf_counter()
    dims = train[0].numel()
    counts = torch.stack([(train.flatten(1) == v).sum(0) for v in range(levels)]).double() + 1  # (levels, D)
    log_p = torch.log(counts / counts.sum(0))
    hist = -log_p.gather(0, test.flatten(1).long()).sum(1).mean().item() / (dims * math.log(2))
    out = [row("per-pixel histogram", "baseline", "none (discrete)", dims * (levels - 1), hist,
               seconds=time.perf_counter() - start)]
    t_train, _ = dequantized_logits(train, levels, 0)
    t_test, ladj_test = dequantized_logits(test, levels, 1)
    n_fit = int(0.8 * len(t_train))
    for name, k in (("Gaussian (full covariance)", 1), ("Gaussian mixture (10 components)", 10)):
        start = time.perf_counter()

        def fit(reg: float, data: np.ndarray, k: int = k) -> GaussianMixture:
            return GaussianMixture(k, covariance_type="full", reg_covar=reg, random_state=0, max_iter=200).fit(data)

        # The covariance regulariser is chosen on a held-out fifth of the training images, then refitted on all.
        reg = max(REGULARISERS, key=lambda r: fit(r, t_train[:n_fit]).score(t_train[n_fit:]))
        log_q = torch.from_numpy(fit(reg, t_train).score_samples(t_test) + ladj_test)
        params = k * (dims + dims * (dims + 1) // 2) + k - 1
        out.append(row(f"{name}, reg {reg:g}", "baseline", "uniform, logit", params,
                       bits_per_dim(log_q, dims).mean().item(), seconds=time.perf_counter() - start))
    return out


def run_tractable(model: str, deq: str, steps: int | None, workdir: Path) -> dict[str, object]:
    """``tractable fit digits`` with the CLI defaults in a subprocess; the row from its ``metrics.json``."""
    out = workdir / f"{model}-{deq}"
    cmd = [sys.executable, "-m", "tractable", "fit", "digits", "--model", model, "--threads", "1", "--no-plots",
           "--quiet", "--out", str(out)]
    cmd += [] if deq == "default" else ["--dequantization", deq]
    if steps is not None:  # a short test run; the default warm-up (100 steps) must be shorter than the run
        cmd += ["--steps", str(steps)] + (["--warmup", str(steps // 10)] if steps <= 100 else [])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # tractable alone, without the peer libraries
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed:\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return row(model, "tractable", m["dequantization"], m["parameters"], m["test_bpd"], m["test_bpd_iw"],
               m["seconds"], m["steps"], dequantizer_parameters=m["dequantizer_parameters"],
               iw_samples=m["iw_samples"], command=" ".join(["tractable", *cmd[3:-2]]),
               default_dequantization=m["dequantization"] == DEFAULT_DEQ[model])


def build_normflows_glow(nf, levels: int, steps: int, hidden: int, shape=(1, 8, 8)) -> torch.nn.Module:
    """normflows' multi-scale Glow, laid out as in normflows' Glow example, with unconditional Gaussian bases."""
    c, h, w = shape
    q0, merges, flows = [], [], []
    for i in range(levels):
        flows.append([nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True)
                      for _ in range(steps)] + [nf.flows.Squeeze()])
        if i == 0:
            latent = (c * 2 ** (levels + 1), h // 2 ** levels, w // 2 ** levels)
        else:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        q0.append(nf.distributions.DiagGaussian(latent))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


@torch.no_grad()
def normflows_bpd(model: torch.nn.Module, x: torch.Tensor, levels: int, iw: int, seed: int = 0) -> tuple[float, float]:
    """Bits/dim of ``x`` in the model's dtype: one uniform noise draw per image, and the IW bound with ``iw`` draws
    (``iw=0``: the single-draw figure only)."""
    g = torch.Generator().manual_seed(seed)
    x = x.to(next(model.parameters()).dtype)
    dims = x[0].numel()

    def log_p(batch: torch.Tensor) -> torch.Tensor:
        return model.log_prob((batch + torch.rand(batch.shape, generator=g, dtype=batch.dtype)) / levels, None)

    single = torch.cat([log_p(x[i : i + 100]) for i in range(0, len(x), 100)])
    if iw == 0:
        return unit_bits_per_dim(single, dims, levels).mean().item(), math.nan
    draws = torch.stack([torch.cat([log_p(x[i : i + 100]) for i in range(0, len(x), 100)]) for _ in range(iw)])
    bound = torch.logsumexp(draws, 0) - math.log(iw)
    return (unit_bits_per_dim(single, dims, levels).mean().item(), unit_bits_per_dim(bound, dims, levels).mean().item())


def run_normflows(nf, train: torch.Tensor, val: torch.Tensor, test: torch.Tensor, levels: int, *,
                  arch: tuple[int, int, int], budget: float, lr: float, batch: int, warmup: int, eval_every: int,
                  iw: int, seed: int) -> dict[str, object]:
    """Train normflows' Glow with Adam for ``budget`` seconds on uniformly dequantized images, validating every
    ``eval_every`` steps as the CLI does; the test row of the best validation state (and the final state's bpd)."""
    torch.manual_seed(seed)
    model = build_normflows_glow(nf, *arch)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = train.float()
    start, steps, bad, note, validating = time.perf_counter(), 0, 0, "", 0.0
    best: tuple[float, int, dict[str, torch.Tensor]] = (math.inf, 0, {})
    while time.perf_counter() - start - validating < budget:
        idx = torch.randint(0, len(x), (batch,))
        y = (x[idx] + torch.rand(x[idx].shape)) / levels  # the first batch also initialises every ActNorm
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps + 1) / warmup)
        loss = -model.log_prob(y, None).mean()
        if not torch.isfinite(loss):  # normflows' example skips non-finite losses; stop after 20 in a row
            bad += 1
            if bad >= 20:
                note = f"diverged: 20 non-finite losses in a row after {steps} steps"
                break
            continue
        bad = 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if steps % eval_every == 0:  # validation time is not charged to the training budget
            t0 = time.perf_counter()
            model.eval()
            val_bpd, _ = normflows_bpd(model, val, levels, iw=0)
            model.train()
            if val_bpd < best[0]:
                best = (val_bpd, steps, {k: v.detach().clone() for k, v in model.state_dict().items()})
            validating += time.perf_counter() - t0
    seconds = time.perf_counter() - start - validating
    final_bpd, _ = normflows_bpd(model.eval(), test, levels, iw=0)
    if best[2]:
        model.load_state_dict(best[2])
    bpd, bpd_iw = normflows_bpd(model.double().eval(), test, levels, iw)
    if not note and not (math.isfinite(bpd) and math.isfinite(bpd_iw)):
        note = "diverged: non-finite test log-density"
    return row("glow", f"normflows {nf.__version__}", "uniform", params, bpd, bpd_iw, seconds, steps, lr=lr,
               architecture={"L": arch[0], "K": arch[1], "hidden": arch[2]}, iw_samples=iw, note=note,
               best_step=best[1], best_val_bpd=best[0], final_state_test_bpd=final_bpd)


def fmt(v: object, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| model | library | dequantization | parameters | test bpd | IW-16 bpd | training s | steps |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        bpd = fmt(r["test_bpd"], ".3f") + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {r['model']} | {r['library']} | {r['dequantization']} | {fmt(r['parameters'], ',')} | {bpd} "
                     f"| {fmt(r['test_bpd_iw'], '.3f')} | {fmt(r['seconds'], '.0f')} | {fmt(r['steps'], 'd')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["flowpp", "realnvp", "glow"], help="none: no tractable rows")
    parser.add_argument("--dequantization", nargs="+", default=["default"], help="default, uniform, variational")
    parser.add_argument("--steps", type=int, default=None, help="passed to tractable fit (default: the CLI's); tests")
    parser.add_argument("--peer-budget", type=float, default=None, help="normflows training seconds")
    parser.add_argument("--peer-lr", type=float, default=1e-3)
    parser.add_argument("--peer-arch", type=int, nargs=3, default=[2, 4, 186], metavar=("L", "K", "HIDDEN"))
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-normflows", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of digits.md and digits.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    data = load_digits()
    dims, levels = data.train[0].numel(), data.levels
    check = unit_bits_per_dim(torch.zeros(1, dtype=torch.float64), dims, levels).item()
    assert abs(check - math.log2(levels)) < 1e-12, check
    print(f"digits: {len(data.train)} train / {len(data.test)} test images, {levels} levels; a constant density "
          f"on [0,1)^{dims} scores {check:.3f} bits/dim = log2({levels})", flush=True)
    rows: list[dict[str, object]] = []
    if not args.no_baselines:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            rows += baselines(data.train, data.test, levels)
        for r in rows:
            print(f"{r['model']:<45} test bpd {r['test_bpd']:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for deq in args.dequantization:
                r = run_tractable(model, deq, args.steps, Path(tmp))
                rows.append(r)
                print(f"tractable {model:<8} {r['dequantization']:<12} test bpd {r['test_bpd']:.3f} "
                      f"(IW {r['test_bpd_iw']:.3f}), {r['steps']} steps in {r['seconds']:.0f} s", flush=True)
    budget = args.peer_budget or next((r["seconds"] for r in rows if r["library"] == "tractable"
                                       and r["model"] == "flowpp" and r["default_dequantization"]), 300.0)
    glow = count_parameters(build_preset("digits-glow"))["total"]
    arch = tuple(args.peer_arch)
    skipped = None
    try:
        warnings.filterwarnings("ignore", message=".*torch.lu is deprecated.*")
        import normflows as nf
    except ImportError as e:
        skipped = f"normflows skipped: not importable ({e}); put it on PYTHONPATH (e.g. PYTHONPATH=/tmp/peerlibs)"
    if args.no_normflows:
        skipped = "normflows skipped: --no-normflows"
    if skipped:
        print(skipped)
    else:
        config = resolve({"target": "digits"})
        split = load_image_data(config)  # the CLI's train / validation split (same seed), and the test images
        params = sum(p.numel() for p in build_normflows_glow(nf, *arch).parameters() if p.requires_grad)
        print(f"normflows Glow L={arch[0]} K={arch[1]} hidden={arch[2]}: {params:,} parameters "
              f"(tractable digits-glow preset: {glow:,}); training {budget:.0f} s", flush=True)
        for lr in (args.peer_lr, args.peer_lr / 10):  # a lower learning rate once, if the first run diverges
            r = run_normflows(nf, split.train, split.val, split.test, levels, arch=arch, budget=budget, lr=lr,
                              batch=config.train.batch_size, warmup=config.train.warmup,
                              eval_every=config.train.eval_every, iw=16, seed=0)
            rows.append(r)
            print(f"normflows glow lr {lr:g}: test bpd {r['test_bpd']:.3f} (IW {r['test_bpd_iw']:.3f}) at the best "
                  f"validation step {r['best_step']} of {r['steps']} in {r['seconds']:.0f} s; final state "
                  f"{r['final_state_test_bpd']:.3f} {r['note']}", flush=True)
            if not r["note"]:
                break
    load1 = os.getloadavg()
    meta = {
        "command": " ".join([f"PYTHONPATH={os.environ['PYTHONPATH']}"] * ("PYTHONPATH" in os.environ)
                            + [Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, 1 torch thread",
        "load": f"1/5/15-min load average {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at the start, "
                f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at the end",
        "normflows": skipped or f"Glow L={arch[0]} K={arch[1]} hidden={arch[2]}, Adam lr {args.peer_lr:g} "
                                f"(100 warm-up steps), batch 64, {budget:.0f} s, best of validations every 100 steps; "
                                f"tractable digits-glow: {glow:,} parameters",
    }
    text = table(rows)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    notes = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    (args.out / "digits.md").write_text(
        f"# Digits bits/dim after a fixed CPU budget\n\n{text}\n\n{notes}\n\nbpd: bits per dimension of the test "
        "images, a bound on the discrete negative log-likelihood (lower is better); IW-16: importance-weighted bound "
        "with 16 dequantization draws. tractable rows: `tractable fit digits` defaults (best validation state); "
        "normflows: trained on the CLI's 1,350 training images, validated on its 150 every 100 steps (validation time "
        "not charged), best validation state (its final state's test bpd is in digits.json).\n")
    (args.out / "digits.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
