# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 6. Running it for real: configurations, resume, torchrun
#
# The earlier tutorials called the library from Python. Long fits are better run by the command line,
# `tractable fit`, which adds what a real run needs: a configuration file that says everything the run did, a run
# directory with metrics, weights and pictures, checkpoints that survive a crash, and several processes under
# `torchrun`. This notebook drives the command line through `subprocess` (in a terminal, type the same
# commands); every command is `python -m tractable ...`, the same program as `tractable ...`.

# %%
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

SMOKE = os.environ.get("SMOKE", "0") not in ("", "0")
STEPS, EVERY = (400, 40) if SMOKE else (1500, 300)
DDP_STEPS = 20 if SMOKE else 200
plt.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72})


def tractable(*args, check=True):
    """Run `python -m tractable ARGS`, print what it printed, and return the completed process."""
    run = subprocess.run([sys.executable, "-m", "tractable", *map(str, args)], capture_output=True, text=True,
                         check=False)
    print(f"$ tractable {' '.join(map(str, args))}\n{run.stdout}{run.stderr}".rstrip())
    if check and run.returncode != 0:
        raise RuntimeError(f"tractable exited with status {run.returncode}")
    return run


print("smoke budget" if SMOKE else "full budget")

# %% [markdown]
# ## A configuration file
#
# A run is described by a TOML file: the `target` and tables that map onto keyword arguments — `[model]` of the
# model's constructor, `[train]` of the training loop, `[eval]`, `[output]`. A key that is absent takes the
# default; a key the model or task does not read is refused in one line before anything is written. Options on
# the command line override the file, and `--set KEY=VALUE` overrides anything.

# %%
Path("ring.toml").write_text(f"""\
target = "ring"

[model]
name = "planar"
layers = 16

[train]
steps = {STEPS}
batch_size = 512
lr = 2e-3
seed = 0
checkpoint_every = {EVERY}

[eval]
samples = 20000

[output]
plots = false
""")
tractable("fit", "--config", "ring.toml", "--out", "runs/ring")

# %% [markdown]
# The run directory holds the resolved configuration (every default filled in: `tractable fit --config
# runs/ring/config.toml` repeats the run), the per-step metrics, the final metrics, the weights (`checkpoint.pt`,
# and `model.safetensors` for any framework) and the training checkpoints.

# %%
run = Path("runs/ring")
print(sorted(p.name for p in run.iterdir()))
print(sorted(p.name for p in (run / "checkpoints").iterdir()))
metrics = json.loads((run / "metrics.json").read_text())
print({k: metrics[k] for k in ("kl", "ess", "pareto_k", "steps", "seconds", "parameters")})
print((run / "config.toml").read_text().split("[data]")[0])

# %% [markdown]
# ## Kill it, resume it
#
# Every `checkpoint_every` steps the fit writes a training checkpoint: weights, optimizer and schedule state, the
# step, and every random-number generator. Writes are atomic, so a crash never leaves a half-written newest
# checkpoint. (A run shorter than ten checkpoint intervals also writes one at a tenth of its steps.) Here we start
# the same configuration, kill the process with `SIGKILL` (no chance to clean up) as soon as its checkpoint at step
# `2 × checkpoint_every` exists, and resume it. On the same machine the resumed run ends **bit-identical** to the
# uninterrupted one.

# %%
cmd = [sys.executable, "-m", "tractable", "fit", "--config", "ring.toml", "--out", "runs/killed", "--quiet"]
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
checkpoint = Path(f"runs/killed/checkpoints/step-{2 * EVERY:09d}.pt")
while not checkpoint.exists() and proc.poll() is None:
    time.sleep(0.02)
proc.send_signal(signal.SIGKILL)
proc.wait()
print("killed; the run directory has", sorted(p.name for p in Path("runs/killed").iterdir()))
print("checkpoints:", sorted(p.name for p in Path("runs/killed/checkpoints").iterdir()))

# %%
tractable("fit", "--resume", "runs/killed", "--quiet")
resumed = json.loads(Path("runs/killed/metrics.json").read_text())
same = Path("runs/killed/model.safetensors").read_bytes() == Path("runs/ring/model.safetensors").read_bytes()
print(f"KL uninterrupted {metrics['kl']:.6f}, killed and resumed {resumed['kl']:.6f}; identical weights: {same}")

# %% [markdown]
# `metrics.csv` is cut back to the checkpoint's step and the repeated steps logged again, so the two training
# curves coincide:

# %%
def curve(path):
    rows = np.genfromtxt(path / "metrics.csv", delimiter=",", names=True)
    return rows["step"], rows["kl"]


fig, ax = plt.subplots(figsize=(6, 3))
for name, style in (("ring", "-"), ("killed", ":")):
    step, kl = curve(Path("runs") / name)
    w = max(1, len(kl) // 60)
    ax.plot(step[w - 1:], np.convolve(kl, np.ones(w) / w, mode="valid"), style, lw=2,
            label="uninterrupted" if name == "ring" else "killed at a checkpoint, resumed")
ax.set(yscale="log", xlabel="step", ylabel="batch KL estimate (smoothed)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Using a finished run
#
# `eval` recomputes the metrics from the checkpoint (with fresh samples from `--seed`), `sample` writes draws to
# `samples.npy`, and `plot` redraws the figures. Each checks the run's configuration and data against what the
# checkpoint was trained with, and refuses a mismatch in one line.

# %%
tractable("eval", "runs/ring", "--samples", 20000, "--seed", 1)
tractable("sample", "runs/ring", "-n", 5000, "--no-figure")
samples = np.load("runs/ring/samples.npy")
fig, ax = plt.subplots(figsize=(3.6, 3.4))
ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
ax.set(title=f"tractable sample: {samples.shape}", xlim=(-6, 6), ylim=(-6, 6), aspect="equal")
plt.show()

# %% [markdown]
# ## Several processes: `torchrun`
#
# `torchrun` starts one process per device; tractable then trains with DistributedDataParallel (NCCL on GPUs,
# gloo on CPUs). The batch size is per process, so two processes train like one with twice the batch; only rank 0
# writes files. On a GPU machine add `--device cuda`; across machines, see `torchrun --nnodes`. Here, two CPU
# processes:

# %%
torchrun = Path(sys.executable).with_name("torchrun")
ddp = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "tractable", "fit", "ring",
                      "--layers", "8", "--steps", str(DDP_STEPS), "--batch-size", "256", "--eval-samples", "20000",
                      "--checkpoint-every", "100", "--no-plots", "--quiet", "--out", "runs/ddp"],
                     capture_output=True, text=True, check=False)
print(ddp.stdout.strip(), ddp.stderr[-1500:] if ddp.returncode else "")
assert ddp.returncode == 0, f"torchrun exited with status {ddp.returncode}"
print(json.loads(Path("runs/ddp/metrics.json").read_text())["steps"], "steps on 2 processes of 256 samples each")

# %% [markdown]
# ## Presets
#
# Shipped configurations hold only what differs from the defaults; `--preset NAME` reads one in place of
# `--config`, and options and `--set` still apply on top (`tractable fit --preset checkerboard-nsf --set
# train.steps=2000`).

# %%
tractable("list")

# %% [markdown]
# **Where to go from here.** The README's "Training for real" section lists every safeguard: gradient clipping,
# warmup, EMA weights, non-finite step handling, run-directory locks, fingerprints of the data, TensorBoard logs.
# `tractable fit --help` lists every option.
