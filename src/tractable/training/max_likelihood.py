"""Fit a flow to data by minimising the negative log-likelihood (forward KL): the convenience over the one loop.

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

from typing import Any

from torch import Tensor

from ..flow import Flow
from .evaluation import EVAL_BATCH_SIZE
from .loop import FitHistory, fit
from .losses import LikelihoodLoss
from .options import TrainOptions, check_positive_int
from .validation import Validation


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
    eval_every: int = 250,
    eval_batch_size: int = EVAL_BATCH_SIZE,
    patience: int | None = None,
    seed: int = 0,
    data_init: bool = True,
    **options: Any,
) -> FitHistory:
    """Train ``flow`` in place by maximum likelihood on the rows of ``train`` (optionally conditioned on ``context``).

    Rows may be vectors or images (``(rows, C, H, W)``); the loss is ``-mean flow.log_prob(x, c)``, so a flow whose
    ``log_prob`` includes dequantization trains the same way (the dequantized likelihood). This is
    ``fit(flow, LikelihoodLoss(train, context, ...), steps=steps, options=TrainOptions(...), validation=Validation(val,
    val_context, ...))``. Under ``torchrun`` (an initialised process group)
    each rank takes its slice of every global batch of ``world_size × batch_size`` rows, DDP averages the gradients,
    the data-dependent initialisation reads the global first batch, the validation NLL is all-reduced as sums and
    counts, and only rank 0 writes files: the result equals one process with the larger batch.

    Args:
        flow: the flow to train (its ``log_prob`` must be differentiable).
        train: training data, ``(rows, *event_shape)``, on the flow's device and in its dtype.
        context: the training rows' contexts, ``(rows, C)``, for a conditional flow.
        val: validation data; enables best-state restore and early stopping.
        val_context: the validation rows' contexts.
        steps: the number of Adam steps (the most; ``patience`` may stop sooner).
        batch_size: rows per step (per process).
        lr: peak learning rate.
        eval_every: validate every this many steps (and after the last step).
        eval_batch_size: rows per batch when validating.
        patience: stop after this many validations in a row without a new best (``None``: never stop early).
        seed: seeds the mini-batch order (the flow's initialisation is the caller's business).
        data_init: before the first step of a fresh run, each coupling's MLP conditioner reads its input
            standardized by the first batch's statistics (the density is unchanged; see
            :func:`~tractable.training.data_init.initialize_from_data`); ActNorm layers are set from the first batch
            either way.
        **options: any other field of :class:`~tractable.training.options.TrainOptions` (``schedule``, ``warmup``,
            ``clip``, ``ema``, ``checkpoint_dir``, ``resume``, ...); the rows have the columns ``ML_COLUMNS``
            (``val_nll`` empty where not evaluated), and ``checkpoint_dir`` also gets ``best.pt``, the best
            validated weights.

    Returns:
        The history. With ``val``, the flow holds the best validated state when this returns (else the EMA weights,
        when ``ema`` is on); the flow is left in eval mode.

    Raises:
        ValueError: for malformed arguments or data (wrong shape, dtype, non-finite rows, misaligned contexts).
        TypeError: for data or contexts that are not tensors (a NumPy array: ``torch.as_tensor(a, dtype=...)``).
        NonFiniteError: after ``max_bad_steps`` non-finite steps in a row (naming the step, the quantity and the
            first non-finite layer), or when the validation NLL is not finite.

    Example:
        >>> import torch
        >>> from tractable import NSF, fit_max_likelihood, get_dataset, standardize_flow
        >>> data = get_dataset("eight_gaussians")
        >>> x = data.sample(4096, generator=torch.Generator().manual_seed(0))
        >>> flow = standardize_flow(NSF(2, layers=2, hidden=16), x)  # the data's scale in front of the splines
        >>> before = -flow.log_prob(x).mean().item()
        >>> _ = fit_max_likelihood(flow, x, steps=100, batch_size=256, lr=3e-3, progress=False)
        >>> -flow.log_prob(x).mean().item() < before
        True
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        check_positive_int(name, value)
    if patience is not None and (val is None or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience needs validation data and a positive integer, got patience={patience!r}, "
                         f"val={'given' if val is not None else None}")
    if (context is None) != (val_context is None) and val is not None:
        raise ValueError("expected contexts for both the training and the validation data, or for neither")
    loss = LikelihoodLoss(train, context, batch_size=batch_size, seed=seed, data_init=data_init)
    validation = None
    if val is not None:
        validation = Validation(val, val_context, every=eval_every, batch_size=eval_batch_size, patience=patience)
    return fit(flow, loss, steps=steps, options=TrainOptions.from_keywords(lr=lr, **options), validation=validation)
