"""Bits per dimension on scikit-learn's digits (8x8, 17 levels) after a fixed CPU budget, beside flow-free baselines.

Each image model (``realnvp``, ``glow``, ``flowpp``, with uniform or variational dequantization) trains with Adam for
``--budget`` seconds of wall time on ``--threads`` threads, then reports the test bits/dim: the single-sample
dequantization bound and the importance-weighted bound. The baselines need no flow: an independent per-pixel
histogram (exact discrete likelihood, add-one smoothing), and a full-covariance Gaussian and a 10-component Gaussian
mixture fitted to the logits of the uniformly dequantized images (their bits/dim include the logit and scaling
log-determinants, so all rows are comparable lower bounds on the discrete log-likelihood).

Run: ``python benchmarks/digits.py --budget 120 --models realnvp glow flowpp`` (needs scikit-learn).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from tractable.dequantization import bits_per_dim
from tractable.models.image_registry import IMAGE_PRESETS, build_preset
from tractable.targets.images import load_digits
from tractable.transforms.elementwise import Logit

ALPHA = 0.05
REGULARISERS = (1e-3, 1e-2, 1e-1, 0.3)


def dequantized_logits(x: torch.Tensor, levels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of uniformly dequantized images, and the log-determinant (per image) of ``x -> logit``."""
    g = torch.Generator().manual_seed(seed)
    y = (x.double() + torch.rand(x.shape, generator=g, dtype=torch.float64)) / levels
    t, ladj = Logit(ALPHA)(y.flatten(1))
    dims = t.shape[1]
    return t.numpy(), (ladj - dims * math.log(levels)).numpy()


def baselines(train: torch.Tensor, test: torch.Tensor, levels: int) -> dict[str, float]:
    """Test bits/dim of the per-pixel histogram, the full-covariance Gaussian and the 10-component mixture."""
    from sklearn.mixture import GaussianMixture

    dims = train[0].numel()
    counts = torch.stack([(train.flatten(1) == v).sum(0) for v in range(levels)]).double() + 1  # (levels, D)
    log_p = torch.log(counts / counts.sum(0))
    hist = -log_p.gather(0, test.flatten(1).long()).sum(1).mean().item() / (dims * math.log(2))
    out = {"histogram (per pixel)": hist}
    t_train, _ = dequantized_logits(train, levels, 0)
    t_test, ladj_test = dequantized_logits(test, levels, 1)
    n_fit = int(0.8 * len(t_train))
    for name, k in (("Gaussian (full covariance)", 1), ("Gaussian mixture (10 components)", 10)):
        def fit(reg: float, data: np.ndarray, k: int = k) -> GaussianMixture:
            return GaussianMixture(k, covariance_type="full", reg_covar=reg, random_state=0, max_iter=200).fit(data)

        # The covariance regulariser is chosen on a held-out fifth of the training images, then refitted on all.
        reg = max(REGULARISERS, key=lambda r: fit(r, t_train[:n_fit]).score(t_train[n_fit:]))
        log_q = torch.from_numpy(fit(reg, t_train).score_samples(t_test) + ladj_test)
        out[f"{name} reg {reg:g}"] = bits_per_dim(log_q, dims).mean().item()
    return out


def train_model(preset: str, train: torch.Tensor, test: torch.Tensor, *, budget: float, batch: int, lr: float,
                dequantization: str | None, iw_samples: int, seed: int) -> dict[str, float]:
    """Train the preset for ``budget`` seconds; return its test bits/dim, steps and parameter count."""
    torch.manual_seed(seed)
    overrides = {} if dequantization is None else {"dequantization": dequantization}
    model = build_preset(preset, **overrides)
    x_train, x_test = train.float(), test.float()
    with torch.no_grad():
        model.log_prob(x_train[torch.randperm(len(x_train))[:512]])  # data-dependent ActNorm initialisation
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        idx = torch.randint(0, len(x_train), (batch,))
        warm = min(1.0, (steps + 1) / 200)
        for group in opt.param_groups:
            group["lr"] = lr * warm
        opt.zero_grad()
        loss = -model.log_prob(x_train[idx]).mean() / (model.dims * math.log(2))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()
        steps += 1
    elapsed = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        bpd = torch.cat([model.bpd(x_test[i : i + 100]) for i in range(0, len(x_test), 100)]).mean().item()
        bpd_iw = torch.cat([model.bpd(x_test[i : i + 100], samples=iw_samples)
                            for i in range(0, len(x_test), 100)]).mean().item()
    params = sum(p.numel() for p in model.parameters())
    return {"test_bpd": bpd, "test_bpd_iw": bpd_iw, "steps": steps, "seconds": elapsed, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["realnvp", "glow", "flowpp"], help="none: baselines only")
    parser.add_argument("--dequantization", nargs="+", default=["default"],
                        help="uniform, variational, or default (the model's own)")
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--iw-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits()
    print(f"digits: {len(data.train)} train / {len(data.test)} test images, {data.levels} levels; "
          f"uniform model: {math.log2(data.levels):.3f} bits/dim")
    if not args.no_baselines:
        for name, bpd in baselines(data.train, data.test, data.levels).items():
            print(f"{name:<42} test bpd {bpd:.3f}")
    for model in args.models:
        preset = f"digits-{model}"
        if preset not in IMAGE_PRESETS:
            raise SystemExit(f"no preset {preset!r}; expected one of {', '.join(IMAGE_PRESETS)}")
        for deq in args.dequantization:
            r = train_model(preset, data.train, data.test, budget=args.budget, batch=args.batch, lr=args.lr,
                            dequantization=None if deq == "default" else deq, iw_samples=args.iw_samples,
                            seed=args.seed)
            print(f"{model:<8} {deq:<12} test bpd {r['test_bpd']:.3f}  (IW-{args.iw_samples} {r['test_bpd_iw']:.3f})  "
                  f"{r['steps']} steps in {r['seconds']:.0f} s, {r['params']:,} parameters", flush=True)


if __name__ == "__main__":
    main()
