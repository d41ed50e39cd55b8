"""MAF's density direction as one autograd node: the MADE pass, the affine map and its log-determinant together.

A MAF layer at the sizes density estimation uses (a batch of 1024 rows, hidden layers of 64 units) is made of small
operations: under autograd each of the ~20 in a layer records a node and saves its inputs, and the time that costs is
of the order of the arithmetic itself. :class:`MaskedAffineFunction` computes the forward pass with no graph and
writes the backward by hand, so a layer is one node whose backward is the seven matrix products the gradient needs
and a few elementwise kernels, each product laid out the way the CPU's matrix kernels are fastest for its shape (a
product with an edge of 2 to 8 is several times faster in one orientation than in the other).

It is used by :class:`~tractable.transforms.autoregressive.MaskedAffineAutoregressive` whenever its MADE uses ReLU
units and the call is not being compiled (``torch.compile`` fuses the plain form itself). It is exact: the same
formulas as the plain path, checked against it and by ``gradcheck`` in the tests. It supports first derivatives
only; a second derivative through it raises, and :data:`FUSED` = ``False`` turns it off.

References:
    Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017), arXiv:1705.07057.
    MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015), arXiv:1502.03509.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..nn.made import MADE

#: Use the fused layer where it applies; ``False`` runs every MAF layer through plain autograd (for a second
#: derivative, or to compare).
FUSED = True


def fusable(made: MADE, x: Tensor) -> bool:
    """Whether :func:`masked_affine` applies: ReLU units, a floating input, not under ``torch.compile``."""
    return (
        FUSED
        and made.activation == "relu"
        and x.is_floating_point()
        and not torch.compiler.is_compiling()
    )


def _weight_grad(g: Tensor, h: Tensor, mask: Tensor) -> Tensor:
    """``(g.T @ h) * mask``, with the thin edge of the product (2 to 8 wide) as its row count: that orientation of a
    thin product is several times faster on CPU than the other."""
    if h.shape[1] < g.shape[1]:
        return h.t().mm(g).t().mul(mask)
    return g.t().mm(h).mul_(mask)


class MaskedAffineFunction(torch.autograd.Function):
    """``(z, log|det|)`` of a MAF layer with a ReLU MADE on 2-d inputs, forward and backward by hand.

    Inputs: ``x`` ``(N, D)``, ``context`` ``(N, C)`` or ``None``, the log-scale bound, the masks, then each linear
    layer's weight and bias. ``z = x · exp(s) + t`` with ``(t, ŝ)`` the MADE's parameter-major output and
    ``s = soft_bound(ŝ)``; ``log|det| = Σ s``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, context: Tensor | None, bound: float, masks: list[Tensor], *params: Tensor):
        features = x.shape[1]
        weights = [w * m for w, m in zip(params[0::2], masks)]
        h = x if context is None else torch.cat([x, context], dim=1)
        hidden = [h]
        for w, b in zip(weights[:-1], params[1:-2:2]):
            h = torch.addmm(b, h, w.t()).relu_()
            hidden.append(h)
        out = torch.addmm(params[-1], h, weights[-1].t())
        sig = torch.sigmoid(out[:, features:] * (2 / bound))
        s = sig * (2 * bound) - bound
        e = torch.exp(s)
        z = torch.addcmul(out[:, :features], x, e)
        ctx.save_for_backward(sig, e, *hidden, *weights)
        ctx.masks, ctx.bound, ctx.features, ctx.layers = masks, bound, features, len(weights)
        return z, s.sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, gz: Tensor, gl: Tensor):
        sig, e, *rest = ctx.saved_tensors
        layers, features = ctx.layers, ctx.features
        hidden, weights = rest[:layers], rest[layers:]
        x = hidden[0][:, :features]
        ge = gz * e  # ∂z/∂x through the direct path
        # z depends on the raw log-scale through s = 2b σ(2ŝ/b) − b, whose derivative is 4 σ (1 − σ)
        gs = torch.addcmul(gl.unsqueeze(1), ge, x)
        g = torch.empty(gz.shape[0], 2 * features, dtype=gz.dtype, device=gz.device)
        g[:, :features] = gz
        torch.mul(gs, (sig - sig * sig).mul_(4), out=g[:, features:])
        needs = ctx.needs_input_grad
        grads: list[Tensor | None] = [None] * (2 * layers)
        gin = None
        for k in range(layers - 1, -1, -1):
            h = hidden[k]
            if needs[4 + 2 * k]:
                grads[2 * k] = _weight_grad(g, h, ctx.masks[k])
            if needs[5 + 2 * k]:
                grads[2 * k + 1] = g.sum(0)
            if k > 0:
                # the weight in column-major layout: faster for a thin edge, no slower otherwise
                g = torch.ops.aten.threshold_backward(g.mm(weights[k].t().contiguous().t()), h, 0)
            elif needs[0] or needs[1]:
                gin = g.mm(weights[0].t().contiguous().t())
        gx = gctx = None
        if needs[0]:
            gx = ge if gin is None else ge + gin[:, :features]
        if needs[1] and gin is not None:
            gctx = gin[:, features:]
        return (gx, gctx, None, None, *grads)


def masked_affine(made: MADE, bound: float, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
    """A MAF layer's ``(z, log|det|)`` for inputs of shape ``(..., D)`` by :class:`MaskedAffineFunction`."""
    context = made.check_inputs(x, context)
    batch = x.shape[:-1]
    flat = x.reshape(-1, made.features)
    if context is not None:
        context = context.reshape(-1, made.context_features)
    params = [p for layer in made.layers for p in (layer.weight, layer.bias)]
    masks = [layer.mask for layer in made.layers]
    z, ladj = MaskedAffineFunction.apply(flat, context, bound, masks, *params)
    return z.view(x.shape), ladj.view(batch)


__all__ = ["FUSED", "MaskedAffineFunction", "fusable", "masked_affine"]
