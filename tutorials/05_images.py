# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 5. Images: dequantization, bits per dimension, Flow++ on digits
#
# Images are discrete: a pixel takes one of $k$ levels. A flow is a *density* on $\mathbb R^D$, and a density
# fitted to discrete points can grow without bound by piling up on them. **Dequantization** fixes this: add noise
# $u \in [0, 1)^D$ and model the continuous $y = (x + u)/k$ on the unit cube. For any noise distribution
# $q(u \mid x)$, Jensen's inequality gives a lower bound on the discrete likelihood (Theis et al. 2016; Ho et al.
# 2019):
#
# $$
# \log P(x) = \log \int_{[0,1)^D} p\big(\tfrac{x+u}{k}\big) k^{-D} du
# \;\ge\; \mathbb E_{u \sim q(\cdot\mid x)}\Big[\log p\big(\tfrac{x+u}{k}\big) - D\log k - \log q(u\mid x)\Big].
# $$
#
# - **Uniform** dequantization: $q = 1$, $u \sim U[0,1)^D$. The bound is loose wherever $p$ varies inside a
#   pixel's cell, and the model wastes capacity on modelling the noise.
# - **Variational** dequantization (Flow++): $q(u \mid x)$ is itself a conditional flow on the unit cube, trained
#   jointly to tighten the bound.
#
# The score is **bits per dimension**, the negative bound in bits, per pixel:
# $\mathrm{bpd} = -\log P(x) / (D \log 2)$. A model uniform over the $k$ levels scores $\log_2 k$; lower is better.
# With $M$ draws of $u$, the importance-weighted bound $\log \frac1M \sum_m w_m$ is tighter still.
#
# References: Theis, van den Oord & Bethge (2016), *A note on the evaluation of generative models*,
# arXiv:1511.01844; Ho, Chen, Srinivas, Duan & Abbeel (2019), *Flow++*, arXiv:1902.00275; Dinh et al. (2017),
# *Real NVP*, arXiv:1605.08803; Kingma & Dhariwal (2018), *Glow*, arXiv:1807.03039.

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import torch

from tractable import build_image_model, load_digits
from tractable.plots.images import image_grid
from tractable.training import fit_max_likelihood

SMOKE = os.environ.get("SMOKE", "0") not in ("", "0")
STEPS = 3 if SMOKE else 250
IW = 2 if SMOKE else 8
plt.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72})
torch.manual_seed(0)

data = load_digits()  # scikit-learn's 8×8 digits: 17 levels (0..16), 1,500 training and 297 test images
train, test = data.train.float(), data.test.float()
if SMOKE:
    train, test = train[:128], test[:32]
D, k = math.prod(train.shape[1:]), data.levels
print("smoke budget" if SMOKE else "full budget")
print(f"{len(train)} training and {len(test)} test images of shape {tuple(train.shape[1:])}, {k} levels;",
      f"uniform model: log2({k}) = {math.log2(k):.3f} bits/dim")

fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(image_grid(test[:64], k), cmap="gray_r")
ax.set(title="test images", xticks=[], yticks=[])
plt.show()

# %% [markdown]
# ## Dequantization in one dimension
#
# One pixel, a discrete distribution $P$ over 17 levels. Uniform noise spreads each level's mass evenly over its
# cell: the continuous density is a staircase whose integral over each cell is exactly $P(x)$, so for *that*
# density the bound is tight. A flow's density is smooth and cannot make sharp steps; below, a smoothed staircase
# stands in for it. Its mass leaks across cell edges, and under uniform noise the bound charges it
# $\mathbb E_u[\log p]$ inside each cell, which is below $\log \int_{\text{cell}} p$ (Jensen). The best
# $q(u \mid x)$ — proportional to $p$ inside the cell — closes exactly that gap; variational dequantization
# learns an approximation of it.

# %%
pixel = train[:, 0, 3, 3].long()  # one pixel near the centre of the 8×8 digits
P = torch.bincount(pixel, minlength=k).double() / len(pixel)
fine = 60  # grid points per cell
y = (torch.arange(k * fine, dtype=torch.float64) + 0.5) / (k * fine)
staircase = P.repeat_interleave(fine) * k  # the density of (x + u) / k under uniform u
kernel = torch.exp(-0.5 * (torch.arange(-3 * fine, 3 * fine + 1, dtype=torch.float64) / (0.6 * fine)) ** 2)
padded = torch.nn.functional.pad(staircase[None, None], (3 * fine, 3 * fine), mode="reflect")
smooth = torch.nn.functional.conv1d(padded, (kernel / kernel.sum())[None, None])[0, 0]  # mass-preserving blur

cells = smooth.reshape(k, fine)
uniform_bound = (P * (cells.log().mean(1) - math.log(k))).sum()  # E_x E_u[log p((x+u)/k) − log k]
best_bound = (P * (cells.mean(1) / k).log()).sum()  # log of the cell's mass: the tight value
exact = (P * P.clamp_min(1e-300).log()).sum()  # −H(P): what the staircase scores
bits = -1 / math.log(2)
print(f"discrete entropy of the pixel:                    {exact * bits:.3f} bits")
print(f"smooth density, uniform dequantization bound:     {uniform_bound * bits:.3f} bits")
print(f"smooth density, best q(u|x) (the cell's mass):    {best_bound * bits:.3f} bits")

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.bar((torch.arange(k) + 0.5) / k, P * k, width=1 / k, color="0.88", edgecolor="0.6", label="P(x)·k per cell")
ax.plot(y, staircase, color="C3", lw=1, label="uniformly dequantized: a staircase")
ax.plot(y, smooth, color="C0", lw=1.5, label="a smooth density, as a flow makes")
ax.set(xlabel="y = (x + u) / k", ylabel="density", title="one pixel's 17 levels on [0, 1)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Two gaps, then: from the smooth density's uniform bound down to its best-$q$ value (what variational
# dequantization can win), and from there down to the entropy (mass the smooth density puts in the wrong cells,
# which no $q$ can recover: only a sharper model can).
#
# ## A baseline without a flow
#
# Independent pixels, each with its own histogram over the 17 levels (add-one smoothing): an exact discrete
# likelihood, no dequantization needed. Anything worth its parameters must beat it.

# %%
counts = torch.stack([torch.bincount(v, minlength=k) for v in train.long().flatten(1).T]).double() + 1  # (D, k)
log_probs = (counts / counts.sum(1, keepdim=True)).log()
nll = -log_probs.gather(1, test.long().flatten(1).T).sum(0)  # per test image, nats
print(f"per-pixel histogram: {(nll / (D * math.log(2))).mean():.3f} bits/dim (exact), {D * (k - 1)} parameters")

# %% [markdown]
# ## Flow++ on digits, uniform against variational dequantization
#
# `build_image_model("flowpp", ...)` builds Flow++ (Ho et al. 2019): a logit pre-processing, then couplings whose
# elementwise maps are CDFs of logistic mixtures, with gated-convolution and self-attention conditioners, squeezes
# and a factor-out. We make it small (width 16, one block, four logistics, one attention head) so that it trains in
# about a minute on a CPU, and train it twice with the same seed: once with uniform noise, once with a variational
# dequantizer (two affine couplings of width 8). `log_prob` of an image flow is the single-sample bound, so
# `fit_max_likelihood` trains it like any flow. The full-size CLI default (`tractable fit digits`) reaches about
# 1.84 bits/dim in 2,600 steps; this one has a far smaller budget.

# %%
def make(dequantization):
    torch.manual_seed(0)
    options = {"dequantizer": {"layers": 2, "hidden": 8, "blocks": 1}} if dequantization == "variational" else {}
    return build_image_model("flowpp", (1, 8, 8), levels=k, hidden=16, blocks=1, components=4, heads=1,
                             dequantization=dequantization, **options)


models, rows = {}, []
for dequantization in ("uniform", "variational"):
    model = make(dequantization)
    start = time.perf_counter()
    fit_max_likelihood(model, train, steps=STEPS, batch_size=64, lr=2e-3, warmup=STEPS // 5, clip=100.0,
                       progress=False)
    seconds = time.perf_counter() - start
    model.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        bpd = model.bpd(test)
        bpd_iw = model.bpd(test, samples=IW)
    models[dequantization] = model
    rows.append((dequantization, sum(p.numel() for p in model.parameters()), bpd.mean().item(),
                 bpd.std().item() / len(bpd) ** 0.5, bpd_iw.mean().item(), seconds))

print(f"{'dequantization':15s} {'params':>7s} {'test bpd':>9s} {'± se':>6s} {'IW-' + str(IW):>7s} {'train s':>8s}")
for name, params, b, se, b_iw, s in rows:
    print(f"{name:15s} {params:7d} {b:9.3f} {se:6.3f} {b_iw:7.3f} {s:8.1f}")

# %% [markdown]
# Both models share the test images, so the difference between the rows is surer than each row's standard error
# suggests. The importance-weighted bound (`model.bpd(x, samples=M)`) is lower for both; the gap between the single
# and the weighted bound is what a better $q(u \mid x)$ closes.
#
# ## Samples at temperatures
#
# `model.sample(n, temperature=T)` draws the latent from $\mathcal N(0, T^2 I)$ (Glow §5) and maps it back, then
# rounds down to levels. $T < 1$ trades diversity for cleaner, more typical images.

# %%
model = models["variational"]
temperatures = (0.5, 0.8, 1.0)
fig, axes = plt.subplots(1, len(temperatures), figsize=(10, 3.6))
for ax, t in zip(axes, temperatures):
    torch.manual_seed(2)
    ax.imshow(image_grid(model.sample(36, temperature=t), k), cmap="gray_r")
    ax.set(title=f"T = {t}", xticks=[], yticks=[])
plt.show()

# %% [markdown]
# **From the shell**, the full-size version of this tutorial is `tractable fit digits --out runs/digits`
# (Flow++, variational dequantization, 2,000 steps), then `tractable eval runs/digits --samples 64` and
# `tractable sample runs/digits -n 64 --temperature 0.8`. At a smoke budget the numbers above mean nothing.
