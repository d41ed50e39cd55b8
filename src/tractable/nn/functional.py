"""Functional forms of the networks' layers that pick torch's fast CPU kernels.

:func:`linear` is ``F.linear`` with the weight handed to the matrix product in the layout whose backward runs on
fast kernels. torch differentiates ``y = x Wᵀ + b`` with two products whose layout follows the weight's: the
weight's gradient ``gᵀ x`` and the input's gradient ``g W``. For a thin input (a handful of features into a wide
layer: the first layer of a conditioner on a 2-d problem, of a MADE) both products have 2–8 output columns, a shape
on which the CPU's BLAS kernels are 4–6× slower than on the same product transposed (a batch of 1024, 64 units,
2 inputs: 70 µs for ``g W`` against 21 µs with ``W`` column-major, 77 µs for ``gᵀ x`` against 12 µs for ``xᵀ g``).
Passing ``Wᵀ`` contiguous (one copy of the small weight) makes autograd compute the transposed products: the same
values up to rounding (the kernels sum in their own order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The input widths (inclusive) and the smallest output width for which :func:`linear` transposes the weight. Measured
#: on CPU, forward and backward, batches 256 / 1024 / 4096: 2–8 inputs into 32–256 outputs gain 1.0–4.3× (more with
#: the batch and the output width); one input gains nothing (a product with one column is a scaled copy) and 12 or
#: more lose up to 20%.
THIN_INPUTS = (2, 8)
WIDE_OUTPUTS = 32
#: The fewest rows for which :func:`linear` without gradients takes a product with 2–8 outputs transposed. Measured on
#: CPU, 64 inputs, 1–2 threads: 2 outputs 23 → 10 µs at 1024 rows and 86 → 24 µs at 4096, 8 outputs 22 → 18 and
#: 84 → 59 µs; a tie at 256 rows; 1 or 12 and more outputs lose. With gradients the transposed backward gains nothing.
THIN_OUTPUT_ROWS = 512


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` (``x`` of shape ``(..., in)``, ``weight`` ``(out, in)``), up to rounding.

    When the weight's gradient is wanted on CPU and the layer maps 2–8 inputs to 32 or more outputs
    (:data:`THIN_INPUTS`, :data:`WIDE_OUTPUTS`), the product is taken with ``weightᵀ`` made contiguous, so that
    torch's backward runs on its fast kernels (see the module's description): a MAF layer's first MADE layer on a
    2-d problem takes 86 µs forward and backward instead of 206 µs. Under ``torch.compile`` too: inductor calls the
    same kernels in the layout it is given (a compiled MAF step at ``d = 2``: 1.13× faster).

    Without gradients on CPU, a layer of 2–8 outputs on at least :data:`THIN_OUTPUT_ROWS` rows of a batch is the
    same product transposed, ``(W xᵀ + b)ᵀ`` (returned as a transposed view), whose output has the batch's many
    columns: a 5-layer MAF samples 1.3–5.5% faster (``d`` = 2, 16, 64) and evaluates 2.6–6% faster at ``d = 2``
    (RealNVP: 1.6–7%; 1 and 2 threads, interleaved).
    Elsewhere (on other devices; with gradients and other shapes, where neither form gains) it is ``F.linear``.
    """
    out_features, in_features = weight.shape
    if (
        THIN_INPUTS[0] <= out_features <= THIN_INPUTS[1]
        and x.dim() == 2
        and x.shape[0] >= THIN_OUTPUT_ROWS
        and x.device.type == "cpu"
        and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
    ):
        # a thin output without gradients: the product transposed, whose output has the batch's many columns
        out = torch.mm(weight, x.t()) if bias is None else torch.addmm(bias.unsqueeze(-1), weight, x.t())
        return out.t()
    if (
        THIN_INPUTS[0] <= in_features <= THIN_INPUTS[1]
        and out_features >= WIDE_OUTPUTS
        and weight.requires_grad
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
    ):
        w_t = weight.t().contiguous()
        if x.dim() == 2:
            return x.mm(w_t) if bias is None else torch.addmm(bias, x, w_t)
        # not addmm on a flattened view: the caller's in-place activation on a view would cost a scatter in backward
        y = torch.matmul(x, w_t)
        return y if bias is None else y + bias
    return F.linear(x, weight, bias)


__all__ = ["THIN_INPUTS", "THIN_OUTPUT_ROWS", "WIDE_OUTPUTS", "linear"]
