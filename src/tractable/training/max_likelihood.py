"""The maximum-likelihood loop: fit a flow to data by minimising the negative log-likelihood (forward KL).

Each step draws a mini-batch from the training tensor (shuffled epochs from a seeded ``torch.Generator``), takes an
Adam step on ``-mean log q(x | c)``, and every ``eval_every`` steps measures the validation NLL; the best state by
validation NLL is kept in memory and restored at the end, and ``patience`` evaluations without improvement stop the
fit early. Minimising the NLL minimises ``KL(p‖q) = E_p[log p − log q] = NLL − H(p)``, so on toy data with a known
entropy ``test NLL − H`` is the exact (Monte Carlo) distance from the truth.

References:
    Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021), arXiv:1912.02762, §2.3.1.
    Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017), arXiv:1705.07057 — validation-
        based early stopping for density estimation.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..flow import Flow
from ..targets.toy import GaussianMixtureData, ToyDataset
from .progress import Progress
from .reverse_kl import FitHistory, NonFiniteError, _first_nonfinite_grad, make_adam, make_scheduler

ML_COLUMNS = ("step", "loss", "val_nll", "lr", "grad_norm")


@dataclass
class MaxLikelihoodHistory(FitHistory):
    """What a maximum-likelihood fit produced.

    Attributes:
        rows: one dict per step (``ML_COLUMNS``; ``val_nll`` is NaN where not evaluated).
        seconds: wall-clock seconds of training (validation included).
        evaluations: ``(step, val_nll)`` for every validation.
        best_step: the step whose state was restored (``None`` without validation data).
        best_val_nll: its validation NLL (NaN without validation data).
        stopped_early: whether ``patience`` ended the fit before ``steps``.
    """

    evaluations: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_val_nll: float = math.nan
    stopped_early: bool = False


def _check_data(flow: Flow, x: Tensor, context: Tensor | None, name: str) -> None:
    shape = tuple(flow.event_shape)
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
        raise ValueError(f"expected {name} of shape (rows, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    ref = next((p for p in flow.parameters() if p.is_floating_point()), None)
    if ref is not None and x.dtype != ref.dtype:
        raise ValueError(f"expected {name} of dtype {ref.dtype} (the flow's), got {x.dtype}; convert one of them")
    if ref is not None and x.device != ref.device:
        raise ValueError(f"expected {name} on device {ref.device} (the flow's), got {x.device}; move one of them")
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(-1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{name} has {len(rows)} rows with NaN or infinite values (first: rows {rows[:5].tolist()})")
    if context is not None and (context.dim() < 2 or context.shape[0] != x.shape[0]):
        raise ValueError(
            f"expected the {name} context as (rows, features) with {x.shape[0]} rows (one per {name} row), "
            f"got shape {tuple(context.shape)}"
        )


def nll_per_row(flow: Flow, x: Tensor, context: Tensor | None = None, *, batch_size: int = 8192) -> Tensor:
    """``-log q(x | c)`` of every row, in float64, batched, without gradients and in eval mode (restored after)."""
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"expected at least one row to evaluate, got shape {tuple(x.shape)}")
    if context is not None and context.shape[0] != x.shape[0]:
        raise ValueError(f"expected a context with {x.shape[0]} rows (one per row), got shape {tuple(context.shape)}")
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            parts = [
                -flow.log_prob(x[i : i + batch_size], None if context is None else context[i : i + batch_size])
                for i in range(0, x.shape[0], batch_size)
            ]
    finally:
        flow.train(was_training)
    return torch.cat(parts).double()


def evaluate_nll(
    flow: Flow, x: Tensor, context: Tensor | None = None, *, batch_size: int = 8192
) -> tuple[float, float]:
    """The mean negative log-likelihood of ``x`` (nats per row) and its standard error, batched, without gradients.

    Raises:
        NonFiniteError: when some rows have a non-finite log-likelihood, naming how many and the first ones.
    """
    nll = nll_per_row(flow, x, context, batch_size=batch_size)
    bad = ~torch.isfinite(nll)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise NonFiniteError(
            f"{len(rows)} of {len(nll)} rows have a non-finite log-likelihood (first: rows {rows[:5].tolist()})"
        )
    stderr = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else math.nan
    return float(nll.mean()), stderr


class _Batches:
    """Mini-batch indices: a fresh seeded permutation per epoch, cut into full batches (all rows if fewer)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.size, self.device = n, min(batch_size, n), device
        self.generator = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.empty(0, dtype=torch.long), n

    def next(self) -> Tensor:
        if self.pos + self.size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator).to(self.device), 0
        idx = self.perm[self.pos : self.pos + self.size]
        self.pos += self.size
        return idx


def fit_max_likelihood(
    flow: Flow,
    train: Tensor,
    *,
    context: Tensor | None = None,
    val: Tensor | None = None,
    val_context: Tensor | None = None,
    steps: int = 5000,
    batch_size: int = 512,
    lr: float = 1e-3,
    schedule: str = "cosine",
    clip: float = 0.0,
    eval_every: int = 250,
    eval_batch_size: int = 8192,
    patience: int | None = None,
    seed: int = 0,
    progress: bool = True,
    metrics_csv: str | Path | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> MaxLikelihoodHistory:
    """Train ``flow`` in place by maximum likelihood on the rows of ``train`` (optionally conditioned on ``context``).

    Args:
        flow: the flow to train (its ``log_prob`` must be differentiable).
        train: training data, ``(rows, *event_shape)``, on the flow's device and in its dtype.
        context: the training rows' contexts, ``(rows, C)``, for a conditional flow.
        val: validation data; enables best-state restore and early stopping.
        val_context: the validation rows' contexts.
        steps: the number of Adam steps (the most; ``patience`` may stop sooner).
        batch_size: rows per step.
        lr: peak learning rate.
        schedule: learning-rate schedule (``cosine``, ``exponential``, ``constant``) over ``steps``.
        clip: clip the gradient norm to this value (0: no clipping; the norm is always recorded).
        eval_every: validate every this many steps (and after the last step).
        eval_batch_size: rows per batch when validating.
        patience: stop after this many validations in a row without a new best (``None``: never stop early).
        seed: seeds the mini-batch order (the flow's initialisation is the caller's business).
        progress: show a progress bar (terminal) or periodic lines.
        metrics_csv: write one row per step (``ML_COLUMNS``; ``val_nll`` empty where not evaluated).
        callback: called as ``callback(step, row)`` after every step.

    Returns:
        The history. With ``val``, the flow holds the best validated state when this returns; the flow is left in
        eval mode.

    Raises:
        ValueError: for malformed arguments or data (wrong shape, dtype, non-finite rows, misaligned contexts).
        NonFiniteError: when the loss, the gradient or the validation NLL becomes NaN or infinite, naming the step
            and the quantity.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    if not lr > 0 or not clip >= 0:
        raise ValueError(f"expected lr > 0 and clip >= 0, got lr={lr}, clip={clip}")
    if patience is not None and (val is None or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience needs validation data and a positive integer, got patience={patience!r}, "
                         f"val={'given' if val is not None else None}")
    if (context is None) != (val_context is None) and val is not None:
        raise ValueError("expected contexts for both the training and the validation data, or for neither")
    _check_data(flow, train, context, "training data")
    if val is not None:
        _check_data(flow, val, val_context, "validation data")
    params = [p for p in flow.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the flow has no trainable parameters")
    optimizer = make_adam(params, lr)
    scheduler = make_scheduler(optimizer, schedule, steps)
    batches = _Batches(train.shape[0], batch_size, seed, train.device)
    history = MaxLikelihoodHistory()
    best_state: dict[str, Tensor] | None = None
    since_best = 0
    bar = Progress(steps, desc="fit (max likelihood)", enabled=progress)
    handle = open(metrics_csv, "w", newline="") if metrics_csv is not None else None  # noqa: SIM115 - closed below
    writer = csv.DictWriter(handle, fieldnames=ML_COLUMNS) if handle is not None else None
    if writer is not None:
        writer.writeheader()
    flow.train()
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            idx = batches.next()
            log_q = flow.log_prob(train[idx], None if context is None else context[idx])
            loss = -log_q.mean()
            if not torch.isfinite(loss):
                bad = int((~torch.isfinite(log_q)).sum())
                raise NonFiniteError(
                    f"step {step}: the training loss (NLL) is {loss.item()} (non-finite log-likelihood in {bad} of "
                    f"{len(log_q)} batch rows); try a smaller learning rate (lr={lr}) or clip"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
            if not torch.isfinite(grad_norm):
                raise NonFiniteError(
                    f"step {step}: the gradient norm is {grad_norm.item()} (first non-finite gradient in parameter "
                    f"{_first_nonfinite_grad(flow)!r}); try a smaller learning rate (lr={lr}) or clip"
                )
            current_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            row = {"step": step, "loss": loss.item(), "val_nll": math.nan, "lr": current_lr,
                   "grad_norm": grad_norm.item()}
            if val is not None and (step % eval_every == 0 or step == steps):
                try:
                    val_nll, _ = evaluate_nll(flow, val, val_context, batch_size=eval_batch_size)
                except NonFiniteError as e:
                    raise NonFiniteError(f"step {step}: the validation NLL is not finite: {e}") from None
                row["val_nll"] = val_nll
                history.evaluations.append((step, val_nll))
                if best_state is None or val_nll < history.best_val_nll:
                    best_state = {k: v.detach().clone() for k, v in flow.state_dict().items()}
                    history.best_step, history.best_val_nll, since_best = step, val_nll, 0
                else:
                    since_best += 1
            history.rows.append(row)
            if writer is not None:
                writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
            if callback is not None:
                callback(step, row)
            shown = {"nll": row["loss"]}
            if history.evaluations:
                shown["val"] = history.evaluations[-1][1]
            bar.update(step, shown)
            if patience is not None and since_best >= patience:
                history.stopped_early = True
                break
    finally:
        history.seconds = time.perf_counter() - start
        bar.close()
        if handle is not None:
            handle.close()
    if best_state is not None:
        flow.load_state_dict(best_state)
    flow.eval()
    return history


@torch.no_grad()
def evaluate_toy(
    flow: Flow,
    dataset: ToyDataset,
    *,
    n: int = 100_000,
    seed: int = 12345,
    batch_size: int = 8192,
    test: Tensor | None = None,
) -> dict[str, Any]:
    """Test NLL of a flow fitted to a toy data set, and its gap to the data's entropy.

    ``kl_gap = test_nll − entropy`` estimates ``KL(p‖q)`` (0 for a perfect fit; its standard error is the NLL's).
    Where the data set's ``log_prob`` is exact, ``kl_paired = mean(log p − log q)`` over the same samples estimates
    the same quantity with a much smaller standard error (``kl_paired_stderr``).

    Args:
        flow: the fitted flow (unconditional).
        dataset: the toy data set it was fitted to.
        n: the number of fresh test samples (ignored when ``test`` is given).
        seed: seeds the test samples.
        batch_size: rows per evaluation batch.
        test: a held-out test set to use instead of fresh samples.

    Returns:
        A dict with ``test_nll``, ``test_nll_stderr``, ``entropy``, ``kl_gap``, ``kl_paired``, ``kl_paired_stderr``
        (NaN where the entropy or log-density is unknown) and ``test_samples``.
    """
    ref = next(flow.parameters(), None)
    dtype, device = (ref.dtype, ref.device) if ref is not None else (torch.float32, None)
    if test is None:
        test = dataset.sample(n, generator=torch.Generator().manual_seed(seed), dtype=dtype, device=device)
    nll = nll_per_row(flow, test, batch_size=batch_size)
    if not bool(torch.isfinite(nll).all()):
        raise NonFiniteError(f"{int((~torch.isfinite(nll)).sum())} of {len(nll)} test rows have a non-finite NLL")
    m = len(nll)
    out: dict[str, Any] = {"test_nll": float(nll.mean()), "test_nll_stderr": float(nll.std() / math.sqrt(m))}
    entropy = dataset.entropy
    out["entropy"] = entropy if entropy is not None else math.nan
    out["kl_gap"] = out["test_nll"] - entropy if entropy is not None else math.nan
    out["kl_paired"] = out["kl_paired_stderr"] = math.nan
    if dataset.log_prob is not None:
        diff = dataset.log_prob(test.double()) + nll  # log p − log q
        if bool(torch.isfinite(diff).all()):
            out["kl_paired"], out["kl_paired_stderr"] = float(diff.mean()), float(diff.std() / math.sqrt(m))
    out["test_samples"] = m
    return out


@torch.no_grad()
def evaluate_conditional_toy(
    flow: Flow, dataset: GaussianMixtureData, *, n_per_label: int = 20_000, seed: int = 12345, batch_size: int = 8192
) -> dict[str, list[float]]:
    """Per-label test NLL of a flow conditioned on the one-hot label, against the exact conditional entropies.

    For each label ``k``, ``n_per_label`` fresh samples of component ``k`` are scored with context ``one_hot(k)``.

    Returns:
        A dict of per-label lists: ``test_nll``, ``test_nll_stderr``, ``entropy`` (exact), ``kl_gap``
        (``test_nll − entropy``), ``kl_paired`` and ``kl_paired_stderr`` (``mean(log p(x|k) − log q(x|k))``).
    """
    ref = next(flow.parameters(), None)
    dtype, device = (ref.dtype, ref.device) if ref is not None else (torch.float32, None)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {k: [] for k in
                                   ("test_nll", "test_nll_stderr", "entropy", "kl_gap", "kl_paired", "kl_paired_stderr")}
    for k, h in enumerate(dataset.component_entropies):
        eps = torch.randn(n_per_label, 2, dtype=torch.float64, generator=g)
        x64 = dataset.locs[k] + eps @ dataset.chol[k].T
        x = x64.to(dtype=dtype, device=device)
        c = dataset.one_hot(torch.full((n_per_label,), k, device=device), dtype=dtype)
        nll = nll_per_row(flow, x, c, batch_size=batch_size)
        diff = dataset.conditional_log_prob(x.double(), k) + nll
        root = math.sqrt(n_per_label)
        for key, value in (("test_nll", float(nll.mean())), ("test_nll_stderr", float(nll.std() / root)),
                           ("entropy", h), ("kl_gap", float(nll.mean()) - h), ("kl_paired", float(diff.mean())),
                           ("kl_paired_stderr", float(diff.std() / root))):
            out[key].append(value)
    return out

