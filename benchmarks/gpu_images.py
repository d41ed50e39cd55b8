"""Image models on a GPU: training throughput of the MNIST and CIFAR-10 presets, and digits after a GPU budget.

The prepared device check of issue 4, one short script for a machine lent with a GPU (no data set can be fetched
there, so the presets train on random images of the right shape and levels; throughput does not depend on the
pixels):

1. For each preset (``mnist-realnvp``, ``cifar10-flowpp``): the model on the device, one data-dependent
   initialisation pass, ``--warmup`` untimed Adam steps, then ``--steps`` timed steps at the preset's batch size
   (CUDA-synchronised): training images per second, seconds per step and peak GPU memory.
2. ``tractable fit digits --model flowpp --device DEVICE`` with its defaults (1,000 steps of 64): test bits/dim and
   the wall time, i.e. the digits bits/dim after that GPU budget.

Run on the device: ``python benchmarks/gpu_images.py --out $OUT`` (about 3 minutes on one H200); on a CPU the same
script runs as a smoke test: ``python benchmarks/gpu_images.py --device cpu --steps 1 --warmup 0 --batch 2
--digits-steps 5``. Writes ``gpu_images.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tractable.app.presets import build_preset, count_parameters, image_format, read_preset


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(name: str, device: torch.device, *, steps: int, warmup: int, batch: int | None) -> dict:
    """Images per second of Adam training steps of preset ``name`` on random images."""
    config = read_preset(name)
    shape, levels = image_format(config.target)
    batch = batch or config.train.batch_size
    torch.manual_seed(0)
    model = build_preset(name).to(device).train()
    images = torch.randint(0, levels, (batch, *shape), device=device).float()
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    dims = math.prod(shape)
    with torch.no_grad():
        model.log_prob(images)  # the data-dependent ActNorm initialisation

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = -model.log_prob(images).mean() / (dims * math.log(2))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip or 1e9)
        opt.step()
        return loss.detach()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "preset": name, "batch": batch, "steps": steps, "seconds": round(seconds, 4),
        "images_per_s": round(batch * steps / seconds, 1), "s_per_step": round(seconds / steps, 4),
        "bpd_random_images": round(loss.item(), 4), "parameters": count_parameters(model)["total"],
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }


def digits_run(device: str, steps: int | None) -> dict:
    """``tractable fit digits --model flowpp`` with its defaults on ``device``; its metrics and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tractable", "fit", "digits", "--model", "flowpp", "--device", device,
               "--out", tmp, "--no-plots", "--quiet"]
        if steps:
            cmd += ["--steps", str(steps)] + (["--warmup", "0"] if steps <= 100 else [])  # default warmup: 100
        start = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if run.returncode:
            return {"command": " ".join(cmd[1:]), "error": run.stderr.strip()[-2000:]}
        m = json.loads((Path(tmp) / "metrics.json").read_text())
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "training_s": m["seconds"],
            **{k: m[k] for k in ("test_bpd", "test_bpd_iw", "iw_samples", "steps", "parameters")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="*", default=["mnist-realnvp", "cifar10-flowpp"])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per preset")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernels, allocator)")
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's batch size")
    parser.add_argument("--digits-steps", type=int, default=None, help="default: the CLI's (1,000)")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--out", default=".", help="directory for gpu_images.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print(json.dumps(info), flush=True)
    results: dict = {"machine": info, "presets": [], "digits": None}
    for name in args.presets:
        r = throughput(name, device, steps=args.steps, warmup=args.warmup, batch=args.batch)
        results["presets"].append(r)
        print(json.dumps(r), flush=True)
    if not args.no_digits:
        results["digits"] = digits_run(args.device, args.digits_steps)
        print(json.dumps(results["digits"]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_images.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
