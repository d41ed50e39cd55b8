"""The losses the training loop takes: reverse KL to an unnormalized density, and maximum likelihood of data.

A loss is bound to a run by ``prepare`` (its state restored on resume, its module wrapped in DDP), then computes one
step at a time; see :class:`~tractable.training.loop.Loss` for the protocol.

- :class:`ReverseKLLoss`: ``E_q[log q(x) − β_t log p̃(x)]`` over reparameterized samples ``x ~ q`` (the
  :func:`~tractable.objectives.reverse_kl` objective), with the inverse temperature ``β_t`` annealed from 0.01 to 1
  (Rezende & Mohamed 2015, §6.1).
- :class:`LikelihoodLoss`: ``−mean log q(x | c)`` over seeded, shuffled mini-batches. Minimising it minimises
  ``KL(p‖q) = NLL − H(p)`` (Papamakarios et al. 2021, §2.3.1). On an image flow whose ``log_prob`` dequantizes
  (uniform or variational noise), it is the dequantized likelihood bound (Theis et al. 2016; Ho et al. 2019).

References:
    Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770.
    Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021), arXiv:1912.02762.
    A note on the evaluation of generative models (Theis, van den Oord & Bethge, 2016), arXiv:1511.01844.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
        (Ho et al., 2019), arXiv:1902.00275.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..flow import Flow, check_like, check_tensor, values_checked
from ..objectives import ReverseKL, annealing, reverse_kl, target_for
from ..preprocessing import warn_unscaled
from ..targets.custom import as_target
from ..targets.energies import Energy
from ..utils import evaluating
from .metrics_log import row_columns
from .options import check_positive_int
from .rng import SEED_STRIDE
from .trainer import Trainer


class _ReverseKLModule(nn.Module):
    """The reverse-KL loss of ``flow`` as a module's forward, so DDP can wrap it."""

    def __init__(self, flow: Flow, target: Energy):
        super().__init__()
        self.flow, self.target = flow, target

    def forward(self, n: int, beta: float | Tensor) -> ReverseKL:
        return reverse_kl(self.flow, self.target, n, beta=beta)


class ReverseKLLoss:
    """Reverse KL ``KL(q‖p)`` to ``p ∝ exp(−U)`` given by ``target``, from ``batch_size`` samples per step.

    The inverse temperature of step ``t`` (from 1) is ``β = min(1, 0.01 + (t − 1)/T)`` with ``T = round(anneal ·
    steps)``, so it rises over the first ``anneal`` fraction of the steps (0: no annealing). Under ``torchrun`` every
    rank draws its own samples, so a step uses ``world_size × batch_size`` of them.

    Args:
        target: the unnormalized target density: an :class:`~tractable.targets.energies.Energy`, a
            ``torch.distributions.Distribution``, an object with ``log_prob`` or a function ``x -> log p̃(x)``
            (:func:`~tractable.targets.custom.as_target`).
        batch_size: samples per step (per process).
        anneal: fraction of the steps over which ``β`` rises from 0.01 to 1.

    References:
        Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770, §6.1.
    """

    #: The exact ``KL(q‖p)`` estimate (NaN where the target's ``log Z`` is unknown), the effective sample size as a
    #: fraction of the batch, and the inverse temperature ``β``.
    columns: tuple[str, ...] = ("kl", "ess", "beta")

    def __init__(self, target: Any, *, batch_size: int = 512, anneal: float = 0.5):
        check_positive_int("batch_size", batch_size)
        if not 0 <= anneal <= 1:
            raise ValueError(f"expected 0 <= anneal <= 1, got anneal={anneal}")
        self.target, self.batch_size, self.anneal = as_target(target), batch_size, anneal
        self.desc = f"fit {self.target.name}"
        self.flow: Flow | None = None
        self.anneal_steps = 0
        self.module: nn.Module | None = None
        self.beta_as_tensor = False

    def check(self, model: nn.Module) -> None:
        """The target fits the model: its dimension, and ``log_prob`` of shape ``(batch,)`` on two probe samples
        (drawn in eval mode, without gradients and outside the run's random stream), before any step or file."""
        self.target = target_for(model, self.target)
        ref = next((p for p in model.parameters()), None)
        devices = [ref.device] if ref is not None and ref.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), evaluating(model):
            reverse_kl(model, self.target, 2)

    def prepare(self, model: nn.Module, trainer: Trainer) -> None:
        self.flow, self.anneal_steps = model, round(self.anneal * trainer.steps)
        trainer.decorrelate_ranks()  # identical initial weights, but each rank its own samples
        self.module = trainer.wrap(_ReverseKLModule(model, self.target))
        # a compiled module takes β as a tensor: as a Python float it would be a constant of the first graph
        self.beta_as_tensor = trainer.options.compile

    def compute(self, step: int) -> tuple[Tensor, ReverseKL]:
        beta = annealing(step - 1, self.anneal_steps)
        out = self.module(self.batch_size, torch.tensor(beta) if self.beta_as_tensor else beta)
        return out.loss, out

    def metrics(self, step: int, aux: ReverseKL) -> dict[str, float]:
        # tensors: the trainer reads them on the host with the step's loss (no synchronisation per step)
        log_z, log_w = self.target.log_z, aux.log_w.detach().double()
        ess = torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / log_w.numel()
        return {"kl": (log_z - log_w.mean()) if log_z is not None else math.nan, "ess": ess,
                "beta": annealing(step - 1, self.anneal_steps)}

    def shown(self, row: dict[str, float]) -> dict[str, float]:
        keys = ("loss", "kl", "ess") if self.target.log_z is not None else ("loss", "ess")
        return {k: row[k] for k in keys}

    def describe(self, loss: Tensor, aux: ReverseKL) -> str:
        q_bad, p_bad = int((~torch.isfinite(aux.log_q)).sum()), int((~torch.isfinite(aux.log_p)).sum())
        return (f"the loss is {loss.item()} (non-finite log q in {q_bad} and non-finite target log-density in "
                f"{p_bad} of {self.batch_size} samples)")

    def rerun(self) -> None:
        with torch.random.fork_rng(devices=[]):  # a fresh batch, without moving the run's random stream
            reverse_kl(self.flow, self.target, self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {}


#: Rows checked at a time for an image flow's levels (bounds the boolean temporaries of a large image set).
_CHECK_ROWS = 4096


def check_data(flow: nn.Module, x: Tensor, context: Tensor | None, name: str,
               variables: tuple[str, str] = ("x", "context")) -> None:
    """Raise a one-line ``ValueError`` unless ``x`` (with its ``context``) is data ``flow`` can be trained on: rows of
    the flow's event shape, in its dtype and on its device, finite (for an image flow, integer levels), with one
    context row per row (a ``TypeError`` unless both are tensors, naming ``variables`` in the conversion it shows).
    The training steps then leave these value checks out of ``log_prob`` (:func:`~tractable.flow.values_checked`)."""
    ref = next((p for p in flow.parameters() if p.is_floating_point()), None)
    dtype = None if ref is None else ref.dtype
    check_tensor(x, name, variables[0], dtype)
    if context is not None:
        check_tensor(context, f"the {name}'s context", variables[1], dtype)
    shape = tuple(flow.event_shape)
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
        raise ValueError(f"expected {name} of shape (rows, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    if ref is not None:
        check_like(x, ref, name, variables[0])
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(-1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{name} has {len(rows)} rows with NaN or infinite values (first: rows {rows[:5].tolist()})")
    if context is not None and (context.dim() < 2 or context.shape[0] != x.shape[0]):
        raise ValueError(
            f"expected the {name} context as (rows, features) with {x.shape[0]} rows (one per {name} row), "
            f"got shape {tuple(context.shape)}"
        )
    check_levels = getattr(flow, "check_levels", None)  # an image flow's integer levels
    if check_levels is not None:
        try:
            for rows in x.split(_CHECK_ROWS):
                check_levels(rows)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


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
        generator = torch.Generator().manual_seed((self.seed * SEED_STRIDE + epoch) % 2**63)
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
    """``flow.log_prob(x, context)`` as a module's forward, so DDP can wrap it; ``-flow.training_loss(x, context)``
    for a flow that defines its own per-row training loss (flow matching's regression loss, FFJORD's regularised
    NLL)."""

    def __init__(self, flow: Flow):
        super().__init__()
        self.flow = flow

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        own = getattr(self.flow, "training_loss", None)
        return -own(x, context) if own is not None else self.flow.log_prob(x, context)


class LikelihoodLoss:
    """Maximum likelihood: the negative log-likelihood ``−mean log q(x | c)`` of mini-batches of ``data``.

    Rows may be vectors or images ``(rows, C, H, W)``; a flow whose ``log_prob`` includes dequantization (an
    :class:`~tractable.models.image_flow.ImageFlow`) is trained on the dequantized likelihood bound this way. A flow
    with a method ``training_loss(x, context)`` (per-row losses, shape ``(batch,)``) is trained on its mean instead
    (:class:`~tractable.models.continuous.FlowMatching`, :class:`~tractable.models.continuous.FFJORD`); validation
    still measures the NLL. Every
    epoch is a fresh permutation seeded by ``(seed, epoch)``. Under ``torchrun`` each rank takes its slice of every
    global batch of ``world_size × batch_size`` rows and the data-dependent initialisation reads the global first
    batch, so the result equals one process with the larger batch.

    Before the first step of a fresh run, ActNorm layers are set from the first batch, and (``data_init``) each
    coupling's MLP conditioner reads its input standardized by that batch's statistics
    (:func:`~tractable.training.data_init.initialize_from_data`): the density is unchanged, but what the first steps
    learn no longer depends on the data's units.

    Args:
        data: training rows, ``(rows, *event_shape)``, on the flow's device and in its dtype.
        context: the rows' contexts, ``(rows, C)``, for a conditional flow.
        batch_size: rows per step (per process).
        seed: seeds the mini-batch order (the flow's initialisation is the caller's business).
        data_init: standardize the coupling conditioners' inputs on the first batch (``False``: only ActNorm layers
            are initialised from data).

    References:
        Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021), arXiv:1912.02762.
        A note on the evaluation of generative models (Theis, van den Oord & Bethge, 2016), arXiv:1511.01844.
    """

    #: The validation NLL, filled in by a :class:`~tractable.training.validation.Validation` on the steps it
    #: evaluates (NaN elsewhere, and on every step without one).
    columns: tuple[str, ...] = ("val_nll",)
    desc = "fit (max likelihood)"

    def __init__(self, data: Tensor, context: Tensor | None = None, *, batch_size: int = 512, seed: int = 0,
                 data_init: bool = True):
        check_positive_int("batch_size", batch_size)
        self.data, self.context, self.batch_size, self.seed = data, context, batch_size, seed
        self.data_init = bool(data_init)
        self.flow: nn.Module | None = None
        self.module: nn.Module | None = None
        self.batches: _Batches | None = None
        self.last: tuple[Tensor, Tensor | None] | None = None

    def check(self, model: nn.Module) -> None:
        check_data(model, self.data, self.context, "training data", ("train", "context"))
        warn_unscaled(model, self.data)

    def _rows(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.data[idx], None if self.context is None else self.context[idx]

    def prepare(self, model: nn.Module, trainer: Trainer) -> None:
        ctx = trainer.ctx
        self.flow = model
        self.batches = _Batches(self.data.shape[0], self.batch_size, self.seed, self.data.device, ctx.rank,
                                ctx.world_size)
        if trainer.step > 0:
            self.batches.load_state_dict(trainer.loop_state["sampler"])
        trainer.initialize_from_data(lambda: model.log_prob(*self._rows(self.batches.peek())),
                                     conditioners=self.data_init)
        trainer.decorrelate_ranks()  # e.g. dequantization noise: each rank its own
        self.module = trainer.wrap(_LogProb(model))

    def compute(self, step: int) -> tuple[Tensor, Tensor]:
        self.last = x, c = self._rows(self.batches.next())
        with values_checked():  # every row was checked before the first step (check): no host read per step
            log_q = self.module(x, c)
        return -log_q.mean(), log_q

    def metrics(self, step: int, aux: Tensor) -> dict[str, float]:
        return {"val_nll": math.nan}

    def shown(self, row: dict[str, float]) -> dict[str, float]:
        return {"loss" if hasattr(self.flow, "training_loss") else "nll": row["loss"]}

    def describe(self, loss: Tensor, aux: Tensor) -> str:
        bad = int((~torch.isfinite(aux)).sum())
        if hasattr(self.flow, "training_loss"):
            return f"the training loss is {loss.item()} (non-finite in {bad} of {len(aux)} batch rows)"
        return (f"the training loss (NLL) is {loss.item()} (non-finite log-likelihood in {bad} of {len(aux)} batch "
                "rows)")

    def rerun(self) -> None:
        _LogProb(self.flow)(*self.last)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.batches.state_dict()}


#: The metric columns of a reverse-KL fit (``metrics.csv``).
COLUMNS = row_columns(ReverseKLLoss.columns)
#: The metric columns of a maximum-likelihood fit (``metrics.csv``; ``val_nll`` empty where not evaluated).
ML_COLUMNS = row_columns(LikelihoodLoss.columns)
