"""Evaluating a density model on data: per-row NLL, its mean and standard error, and the exact gap to toy data.

Everything runs batched, without gradients and in eval mode; results are in float64.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..dequantization import bits_per_dim
from ..flow import Flow
from ..models.image_flow import ImageFlow
from ..targets.toy import GaussianMixtureData, ToyDataset
from ..utils import evaluating
from .hygiene import NonFiniteError

#: The seed of the fresh test samples drawn from a toy data set (``evaluate_toy``, ``evaluate_conditional_toy``), so
#: every evaluation of a model scores the same samples.
TOY_TEST_SEED = 12345
#: Rows per batch when evaluating (no gradients are kept, so batches can be large).
EVAL_BATCH_SIZE = 8192


def nll_per_row(flow: Flow, x: Tensor, context: Tensor | None = None, *, batch_size: int = EVAL_BATCH_SIZE) -> Tensor:
    """``-log q(x | c)`` of every row, in float64, batched, without gradients and in eval mode (every submodule's
    mode restored after)."""
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"expected at least one row to evaluate, got shape {tuple(x.shape)}")
    if context is not None and context.shape[0] != x.shape[0]:
        raise ValueError(f"expected a context with {x.shape[0]} rows (one per row), got shape {tuple(context.shape)}")
    with evaluating(flow), torch.no_grad():
        parts = [
            -flow.log_prob(x[i : i + batch_size], None if context is None else context[i : i + batch_size])
            for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(parts).double()


def evaluate_nll(
    flow: Flow, x: Tensor, context: Tensor | None = None, *, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """The mean negative log-likelihood of ``x`` (nats per row) and its standard error, batched, without gradients.

    Raises:
        NonFiniteError: when some rows have a non-finite log-likelihood, naming how many and the first ones.

    Example:
        >>> import torch
        >>> from tractable import ElementwiseAffine, Flow, StandardNormal, evaluate_nll
        >>> flow = Flow(ElementwiseAffine(2), StandardNormal(2))  # the standard normal
        >>> nll, stderr = evaluate_nll(flow, torch.zeros(10, 2))
        >>> round(nll, 4), stderr  # log(2π) at the origin, no spread
        (1.8379, 0.0)
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


@torch.no_grad()
def evaluate_toy(
    flow: Flow,
    dataset: ToyDataset,
    *,
    n: int = 100_000,
    seed: int = TOY_TEST_SEED,
    batch_size: int = EVAL_BATCH_SIZE,
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
    flow: Flow, dataset: GaussianMixtureData, *, n_per_label: int = 20_000, seed: int = TOY_TEST_SEED,
    batch_size: int = EVAL_BATCH_SIZE,
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
    keys = ("test_nll", "test_nll_stderr", "entropy", "kl_gap", "kl_paired", "kl_paired_stderr")
    out: dict[str, list[float]] = {k: [] for k in keys}
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


#: Image evaluation draws its dequantization noise from this seed (``tractable eval``'s default ``--seed``).
BPD_EVAL_SEED = 0
#: Images per batch of :func:`evaluate_bpd`.
BPD_BATCH_SIZE = 256


@torch.no_grad()
def evaluate_bpd(model: ImageFlow, x: Tensor, *, iw_samples: int, batch_size: int = BPD_BATCH_SIZE,
                 seed: int = BPD_EVAL_SEED) -> dict[str, float]:
    """Bits/dim of the images ``x``: the single-sample bound, its standard error, and the importance-weighted bound.

    The dequantization noise is drawn from ``seed`` (the global generator is restored afterwards), so the same model
    and images give the same figures. ``iw_samples = 1`` reports the single-sample figure for both. Bits/dim is
    ``(NLL + D·log k) / (D·log 2)``, the importance-weighted estimate ``logsumexp_m log w_m − log M``.

    Returns:
        ``{"bpd", "bpd_stderr", "bpd_iw", "nll", "iw_samples"}`` (``nll`` in nats per image, single-sample bound).

    Example:
        >>> import torch
        >>> from tractable import build_image_model, evaluate_bpd
        >>> model = build_image_model("realnvp", (1, 4, 4), levels=17, hidden=8, blocks=1)
        >>> figures = evaluate_bpd(model, torch.randint(0, 17, (32, 1, 4, 4)).float(), iw_samples=4)
        >>> sorted(figures), figures["bpd_iw"] <= figures["bpd"] + 0.01
        (['bpd', 'bpd_iw', 'bpd_stderr', 'iw_samples', 'nll'], True)

    References:
        A note on the evaluation of generative models (Theis, van den Oord & Bethge, 2016), arXiv:1511.01844.
    """
    if iw_samples < 1:
        raise ValueError(f"expected iw_samples >= 1, got {iw_samples}")
    devices = [x.device] if x.device.type == "cuda" else []
    with evaluating(model), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        single = torch.cat([model.log_prob(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        iw = single if iw_samples == 1 else torch.cat(
            [model.log_prob_iw(x[i : i + batch_size], iw_samples) for i in range(0, len(x), batch_size)])
    bpd = bits_per_dim(single.double(), model.dims)
    stderr = float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else math.nan
    return {"bpd": float(bpd.mean()), "bpd_stderr": stderr,
            "bpd_iw": float(bits_per_dim(iw.double(), model.dims).mean()), "nll": float(-single.double().mean()),
            "iw_samples": iw_samples}
