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


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` (``x`` of shape ``(..., in)``, ``weight`` ``(out, in)``), up to rounding.

    When the weight's gradient is wanted on CPU and the layer maps 2–8 inputs to 32 or more outputs
    (:data:`THIN_INPUTS`, :data:`WIDE_OUTPUTS`), the product is taken with ``weightᵀ`` made contiguous, so that
    torch's backward runs on its fast kernels (see the module's description): a MAF layer's first MADE layer on a
    2-d problem takes 86 µs forward and backward instead of 206 µs. Under ``torch.compile`` too: inductor calls the
    same kernels in the layout it is given (a compiled MAF step at ``d = 2``: 1.13× faster). Elsewhere (without
    gradients, where the copy would only cost; on other devices) it is ``F.linear``.
    """
    out_features, in_features = weight.shape
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


__all__ = ["THIN_INPUTS", "WIDE_OUTPUTS", "linear"]
