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

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..flow import Flow
from .checkpoint import save_checkpoint
from .distributed import DistContext
from .evaluation import evaluate_conditional_toy, evaluate_nll, evaluate_toy, nll_per_row
from .hygiene import NonFiniteError
from .reverse_kl import FitHistory
from .trainer import Trainer

__all__ = ["ML_COLUMNS", "MaxLikelihoodHistory", "evaluate_conditional_toy", "evaluate_nll", "evaluate_toy",
           "fit_max_likelihood", "nll_per_row"]

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


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class _Batches:
    """Mini-batch indices from a fresh permutation per epoch, seeded by ``(seed, epoch)`` like ``DistributedSampler``
    with ``set_epoch``; each global batch is cut into one slice per rank (the whole batch for one process).

    With ``world`` ranks and ``size`` rows per rank, rank ``r`` takes rows ``[r·size, (r+1)·size)`` of every global
    batch of ``world·size`` rows, so ``world`` processes see exactly the rows one process with a ``world`` times
    larger batch sees. The position is ``(epoch, pos)``: plain values for a checkpoint.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1):
        if n < world:
            raise ValueError(f"expected at least one training row per process ({world}), got {n} rows")
        self.n, self.seed, self.device, self.rank = n, seed, device, rank
        self.size = min(batch_size, n // world)
        self.global_size = self.size * world
        self.epoch, self.pos = -1, n
        self.perm = torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> Tensor:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.n, generator=generator).to(self.device)

    def next(self) -> Tensor:
        if self.pos + self.global_size > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self.perm = self._permutation(self.epoch)
        start = self.pos + self.rank * self.size
        self.pos += self.global_size
        return self.perm[start : start + self.size]

    def peek(self) -> Tensor:
        """The indices :meth:`next` will return, without moving."""
        saved = (self.epoch, self.pos, self.perm)
        idx = self.next()
        self.epoch, self.pos, self.perm = saved
        return idx

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        if self.epoch >= 0:
            self.perm = self._permutation(self.epoch)


class _LogProb(nn.Module):
    """``flow.log_prob(x, context)`` as a module's forward, so DDP can wrap it."""

    def __init__(self, flow: Flow):
        super().__init__()
        self.flow = flow

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.log_prob(x, context)


def _validate(flow: Flow, val: Tensor, context: Tensor | None, batch_size: int, ctx: DistContext, step: int) -> float:
    """The validation NLL: each rank evaluates its shard, the sums and counts are all-reduced."""
    n = val.shape[0]
    lo, hi = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    if hi > lo:
        nll = nll_per_row(flow, val[lo:hi], None if context is None else context[lo:hi], batch_size=batch_size)
        ok = torch.isfinite(nll)
        sums = torch.stack([torch.where(ok, nll, 0.0).sum(), ok.sum().double(), (~ok).sum().double()])
    else:
        sums = torch.zeros(3, dtype=torch.float64, device=val.device)
    total, count, bad = ctx.all_reduce_sum(sums).tolist()
    if bad:
        raise NonFiniteError(f"step {step}: the validation NLL is not finite: {int(bad)} of {n} rows have a "
                             "non-finite log-likelihood")
    return total / count


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
    warmup: int = 0,
    lr_final: float = 0.01,
    clip: float = 0.0,
    ema: float = 0.0,
    max_bad_steps: int = 5,
    detect_anomaly: bool = False,
    eval_every: int = 250,
    eval_batch_size: int = 8192,
    patience: int | None = None,
    seed: int = 0,
    progress: bool = True,
    metrics_csv: str | Path | None = None,
    metrics_jsonl: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1000,
    keep_last: int = 3,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> MaxLikelihoodHistory:
    """Train ``flow`` in place by maximum likelihood on the rows of ``train`` (optionally conditioned on ``context``).

    Rows may be vectors or images (``(rows, C, H, W)``); the loss is ``-mean flow.log_prob(x, c)``, so a flow whose
    ``log_prob`` includes dequantization trains the same way. Under ``torchrun`` (an initialised process group)
    each rank takes its slice of every global batch of ``world_size × batch_size`` rows, DDP averages the gradients,
    ActNorm layers are initialised from the global first batch, the validation NLL is all-reduced as sums and counts,
    and only rank 0 writes files: the result equals one process with the larger batch.

    Args:
        flow: the flow to train (its ``log_prob`` must be differentiable).
        train: training data, ``(rows, *event_shape)``, on the flow's device and in its dtype.
        context: the training rows' contexts, ``(rows, C)``, for a conditional flow.
        val: validation data; enables best-state restore and early stopping.
        val_context: the validation rows' contexts.
        steps: the number of Adam steps (the most; ``patience`` may stop sooner).
        batch_size: rows per step (per process).
        lr: peak learning rate.
        schedule: learning-rate schedule (``cosine``, ``exponential``, ``constant``) after the warmup.
        warmup: linear learning-rate warmup steps.
        lr_final: the ``exponential`` schedule's learning-rate factor at the last step.
        clip: clip the gradient norm to this value (0: no clipping; the norm is always recorded).
        ema: decay of an exponential moving average of the weights (0: none), which validation then evaluates.
        max_bad_steps: a step with a non-finite loss or gradient norm is skipped; this many in a row stop the fit.
        detect_anomaly: run with autograd anomaly detection (slow; for debugging NaNs in the backward pass).
        eval_every: validate every this many steps (and after the last step).
        eval_batch_size: rows per batch when validating.
        patience: stop after this many validations in a row without a new best (``None``: never stop early).
        seed: seeds the mini-batch order (the flow's initialisation is the caller's business).
        progress: show a progress bar (terminal) or periodic lines.
        metrics_csv: write one row per step (``ML_COLUMNS``; ``val_nll`` empty where not evaluated).
        metrics_jsonl: the same rows as JSON lines.
        tensorboard_dir: TensorBoard events here, when TensorBoard is installed.
        checkpoint_dir: write a training checkpoint here every ``checkpoint_every`` steps (and at the end), keeping
            the ``keep_last`` newest, and ``best.pt`` with the best validated weights.
        checkpoint_every: steps between checkpoints.
        keep_last: checkpoints kept.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` (bit-identical on the same machine).
        meta: plain values stored in every checkpoint.
        callback: called as ``callback(step, row)`` after every step.

    Returns:
        The history. With ``val``, the flow holds the best validated state when this returns (else the EMA weights,
        when ``ema`` is on); the flow is left in eval mode.

    Raises:
        ValueError: for malformed arguments or data (wrong shape, dtype, non-finite rows, misaligned contexts).
        NonFiniteError: after ``max_bad_steps`` non-finite steps in a row (naming the step, the quantity and the
            first non-finite layer), or when the validation NLL is not finite.
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
    if not any(p.requires_grad for p in flow.parameters()):
        raise ValueError("the flow has no trainable parameters")
    trainer = Trainer(
        flow, steps=steps, lr=lr, columns=ML_COLUMNS, desc="fit (max likelihood)", schedule=schedule, warmup=warmup, lr_final=lr_final,
        clip=clip, ema=ema, max_bad_steps=max_bad_steps, detect_anomaly=detect_anomaly, progress=progress,
        metrics_csv=metrics_csv, metrics_jsonl=metrics_jsonl, tensorboard_dir=tensorboard_dir,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, keep_last=keep_last, resume=resume,
        callback=callback, meta=meta, step_base=1,
    )
    ctx = trainer.ctx
    try:
        batches = _Batches(train.shape[0], batch_size, seed, train.device, ctx.rank, ctx.world_size)
    except ValueError:
        trainer.close()
        raise
    history = MaxLikelihoodHistory(rows=list(trainer.previous_rows))
    best_state: dict[str, Tensor] | None = None
    since_best, best_saved = 0, None
    if trainer.step > 0:  # resumed
        state = trainer.loop_state
        batches.load_state_dict(state["sampler"])
        best_state, since_best = state["best_state"], int(state["since_best"])
        history.evaluations = [(int(s), float(v)) for s, v in state["evaluations"]]
        history.best_step, history.best_val_nll = state["best_step"], float(state["best_val_nll"])
        history.stopped_early, best_saved = bool(state["stopped_early"]), history.best_step

    def rows(idx: Tensor) -> tuple[Tensor, Tensor | None]:
        return train[idx], None if context is None else context[idx]

    def loop_state() -> dict[str, Any]:
        nonlocal best_saved
        if best_state is not None and best_saved != history.best_step and ctx.is_main and checkpoint_dir is not None:
            save_checkpoint({"kind": "best", "model": best_state, "step": history.best_step,
                             "val_nll": history.best_val_nll, "meta": meta or {}}, Path(checkpoint_dir) / "best.pt")
            best_saved = history.best_step
        return {"sampler": batches.state_dict(), "best_state": best_state, "since_best": since_best,
                "evaluations": [[s, v] for s, v in history.evaluations], "best_step": history.best_step,
                "best_val_nll": history.best_val_nll, "stopped_early": history.stopped_early}

    def describe(loss: Tensor, log_q: Tensor) -> str:
        bad = int((~torch.isfinite(log_q)).sum())
        return f"the training loss (NLL) is {loss.item()} (non-finite log-likelihood in {bad} of {len(log_q)} batch rows)"

    try:
        trainer.initialize_actnorm(lambda: flow.log_prob(*rows(batches.peek())))
        trainer.decorrelate_ranks()  # e.g. dequantization noise: each rank its own
        model = trainer.wrap(_LogProb(flow))
    except BaseException:
        trainer.close()
        raise
    flow.train()
    try:
        while trainer.step < steps and not history.stopped_early:
            step = trainer.step + 1
            x, c = rows(batches.next())

            def compute(x: Tensor = x, c: Tensor | None = c) -> tuple[Tensor, Tensor]:
                log_q = model(x, c)
                return -log_q.mean(), log_q

            result = trainer.train_step(compute, describe, lambda x=x, c=c: flow.log_prob(x, c))
            row = {"step": step, "loss": result.loss, "val_nll": math.nan, "lr": result.lr,
                   "grad_norm": result.grad_norm}
            if val is not None and (step % eval_every == 0 or step == steps):
                with trainer.ema.applied() if trainer.ema is not None else _nothing():
                    val_nll = _validate(flow, val, val_context, eval_batch_size, ctx, step)
                    if best_state is None or val_nll < history.best_val_nll:
                        best_state = {k: v.detach().clone() for k, v in flow.state_dict().items()}
                        history.best_step, history.best_val_nll, since_best = step, val_nll, 0
                    else:
                        since_best += 1
                flow.train()
                row["val_nll"] = val_nll
                history.evaluations.append((step, val_nll))
            history.rows.append(row)
            shown = {"nll": row["loss"]}
            if history.evaluations:
                shown["val"] = history.evaluations[-1][1]
            if patience is not None and since_best >= patience:
                history.stopped_early = True
            trainer.end_step(row, shown, loop_state)
        trainer.finish(loop_state())
    finally:
        trainer.close()
        history.seconds, history.skipped = trainer.seconds, trainer.skipped
    if best_state is not None:
        flow.load_state_dict(best_state)
    elif trainer.ema is not None:
        trainer.ema.copy_to_params()
    flow.eval()
    return history
