"""Data-dependent initialisation before the first step: ActNorm layers, and the first layer of coupling conditioners.

Both read one pass of the model over the first training batch (the *global* batch under ``torchrun``: the statistics
are all-reduced, so every rank sets what one process would set from the whole batch).

- :class:`~tractable.transforms.normalization.ActNorm` sets its location and scale so that the batch leaves it with
  zero mean and unit variance (Glow, §3.1).
- The :class:`~tractable.nn.mlp.MLP` conditioner of a :class:`~tractable.transforms.coupling.Coupling` folds the
  standardization of its input (the passing half and the context) into its first layer
  (:meth:`~tractable.nn.mlp.MLP.standardize_input_`), for each feature the batch shows to be off unit scale (see
  :data:`NOISE`). Its initialisation assumes inputs of unit scale; a flow that
  sees data in their own units (no standardization in front, or a context in its units) otherwise starts with first
  layers whose pre-activations are far too large or too small, and the gap a fixed budget reaches depends on the
  data's units. Every coupling starts as the identity, so each conditioner's input at initialisation is a slice of
  the data, and since its last layer is still zero the change leaves the flow's density exactly as it was. Only a
  conditioner whose last layer is all zeros is touched, and only once: a trained or resumed one never is.

References:
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
    Weight Normalization (Salimans & Kingma, 2016), arXiv:1602.07868, §3 (data-dependent initialisation).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn

from ..nn.mlp import MLP
from ..transforms.coupling import Coupling
from ..transforms.normalization import ActNorm, feature_moments
from ..utils import evaluating
from .distributed import DistContext

#: A feature whose standard deviation on the batch is at most this fraction of ``1 + |mean|`` is constant there: its
#: scale is unknown, so the conditioner's first layer only centres it.
CONSTANT = 1e-6

#: A feature is left as it is when the batch cannot tell it from a standardized one: its mean within this many
#: standard errors of 0 and the log of its standard deviation within as many of 0 (``σ/√n`` and ``1/√(2n)`` for ``n``
#: rows). Folding in statistics that differ from (0, 1) only by sampling noise cannot help, and measured, it cost:
#: on standardized checkerboard (16 bins, 5,000 steps) the gap went from 0.032 / 0.031 / 0.032 to 0.035 / 0.033 /
#: 0.034 (seeds 0-2).
NOISE = 4.0


def fresh_conditioners(model: nn.Module) -> list[MLP]:
    """The MLP conditioners of ``model``'s couplings not standardized yet whose last layer is all zeros (their output
    does not depend on their input yet, so rescaling their first layer leaves the model's function unchanged)."""
    nets = [m.conditioner for m in model.modules() if isinstance(m, Coupling) and isinstance(m.conditioner, MLP)]
    return [net for net in nets if not net.input_standardized and not bool(net.last.weight.detach().any())]


@torch.no_grad()
def initialize_from_data(model: nn.Module, run: Callable[[], object], ctx: DistContext, *,
                         conditioners: bool = True) -> int:
    """Initialise ``model``'s data-dependent layers from one pass of ``run()`` over the first (global) batch.

    Every uninitialised :class:`ActNorm` is set from the batch, and (``conditioners``) every coupling conditioner
    :func:`fresh_conditioners` finds reads its input standardized by the batch's statistics. Only the ActNorm layers
    are in training mode during the pass (the rest in eval mode, so batch-norm statistics and dropout are untouched);
    with several ranks the statistics are all-reduced, so every rank sets the same values. Call before wrapping the
    model in DDP.

    Args:
        model: the flow.
        run: computes the model's output on the first batch (e.g. its ``log_prob``).
        ctx: the process group (its all-reduce combines the ranks' statistics).
        conditioners: also standardize the conditioners' inputs (``False``: ActNorm only).

    Returns:
        The number of layers initialised (ActNorm layers and conditioners).

    Raises:
        RuntimeError: when the pass did not reach every uninitialised ActNorm layer.
    """
    layers = [m for m in model.modules() if isinstance(m, ActNorm) and not bool(m.initialized)]
    nets = fresh_conditioners(model) if conditioners else []
    if not layers and not nets:
        return 0
    reduce = ctx.all_reduce_sum if ctx.distributed else None
    done: set[int] = set()

    def standardize(net: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if id(net) in done:  # a conditioner called twice in the pass keeps its first batch's statistics
            return
        x = args[0] if args else kwargs["x"]
        context = args[1] if len(args) > 1 else kwargs.get("context")
        v = net._join(x, context).detach()
        v = v.reshape(-1, v.shape[-1])
        mean, var = feature_moments(v, -1, reduce)
        std = var.sqrt()
        rows = v.shape[0] * ctx.world_size  # every rank holds an equal slice of the global batch
        off = (mean.abs() > NOISE * std / rows**0.5) | (std.log().abs() > NOISE / (2 * rows) ** 0.5)
        scaled = off & (std > CONSTANT * (1 + mean.abs()))  # a constant feature is centred only
        net.standardize_input_(torch.where(off, mean, 0.0), torch.where(scaled, std, 1.0))
        done.add(id(net))

    with evaluating(model), ExitStack() as stack:
        for layer in layers:
            layer.train()
            if reduce is not None:
                stack.enter_context(layer.reducing(reduce))
        for net in nets:
            stack.callback(net.register_forward_pre_hook(standardize, with_kwargs=True).remove)
        run()
    missed = [layer for layer in layers if not bool(layer.initialized)]
    if missed:
        raise RuntimeError(f"{len(missed)} ActNorm layers were not reached by the initialisation pass; expected all "
                           f"{len(layers)} to run forward on the first batch")
    return len(layers) + len(done)


__all__ = ["CONSTANT", "NOISE", "fresh_conditioners", "initialize_from_data"]
