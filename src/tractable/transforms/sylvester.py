"""Sylvester normalizing flows (van den Berg et al., 2018), as a stack of layers held in one module.

A Sylvester map ``f(z) = z + Q R tanh(R̃ Qᵀ z + b)`` generalises the planar map from one hidden unit to ``M``: ``Q``
has ``M`` orthonormal columns and ``R``, ``R̃`` are upper triangular, so Sylvester's determinant identity
``det(I_D + A B) = det(I_M + B A)`` reduces the Jacobian determinant to the product of a triangular matrix's diagonal.
Like :class:`~tractable.transforms.planar.Planar`, the map is analytic in its generative direction (this module's
``forward``); place it in a flow as ``Inverse(Sylvester(...))`` (as :class:`tractable.PlanarFlow` does).

References:
    Sylvester Normalizing Flows for Variational Inference (van den Berg, Hasenclever, Tomczak & Welling, 2018),
    arXiv:1803.05649.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import LayerStack
from .numerics import newton_refine, solve_tanh_shift

VARIANTS = ("orthogonal", "householder")



def _triangular(diag: Tensor, upper: Tensor, size: int) -> Tensor:
    """Upper-triangular ``(..., size, size)`` matrices with ``tanh(diag)`` on the diagonal and ``upper`` above it."""
    i, j = torch.triu_indices(size, size, 1, device=upper.device)
    m = torch.diag_embed(torch.tanh(diag))
    m[..., i, j] = upper
    return m


class Sylvester(LayerStack):
    """A stack of Sylvester maps ``f(z) = z + Q R tanh(R̃ Qᵀ z + b)``, applied in order.

    ``Q`` is a ``(features × M)`` matrix with orthonormal columns, ``R`` and ``R̃`` are ``M × M`` upper triangular and
    ``b ∈ R^M``. By Sylvester's determinant identity
    ``log|det ∂f/∂z| = Σ_i log(1 + (1 - tanh²(R̃ Qᵀ z + b)_i) r_ii r̃_ii)``.

    Invertibility (van den Berg et al. 2018, §3): the diagonals of ``R`` and ``R̃`` are ``tanh`` of free parameters, so
    ``r_ii r̃_ii ∈ (-1, 1)`` and every factor ``1 + (1 - tanh²) r_ii r̃_ii`` is positive; the entries above the diagonals
    are free.

    Variants of ``Q``:
        * ``"orthogonal"``: ``M = hidden`` (default ``features``); ``Q`` is the QR orthonormalisation of a free
          ``(features × M)`` matrix, with signs fixed so that the triangular factor has a positive diagonal, which makes
          ``Q`` a smooth function of the parameter.
        * ``"householder"``: ``M = features``; ``Q`` is the product of ``reflections`` (default ``features``)
          Householder reflections ``I - 2 v vᵀ / ‖v‖²``.

    Directions: ``forward`` is the analytic Sylvester map (the generative direction of the paper). ``inverse`` is
    numerical: the component of ``y`` orthogonal to ``Q``'s columns passes unchanged, and ``v = Qᵀz`` solves the
    triangular system ``v + R tanh(R̃ v + b) = Qᵀy``, by back-substitution from the last coordinate to the first; each
    coordinate is an increasing scalar equation solved by safeguarded Newton iteration to ``1e-12`` (float64) or
    ``1e-6`` (float32), relative. Gradients through the inverse are exact (implicit function theorem).

    Initialisation: ``R̃`` entries ``~ N(0, 2/M)`` (before ``tanh`` on its diagonal), ``R`` entries ``~ N(0, 0.01²)``,
    ``b = 0`` and a random ``Q``; each map starts close to the identity while ``tanh`` already works in its non-linear
    range.

    Args:
        features: dimension of the input.
        layers: number of Sylvester maps in the stack.
        hidden: ``M``, the number of orthonormal columns of ``Q`` (``"orthogonal"`` only; ``1 ≤ M ≤ features``).
        variant: ``"orthogonal"`` or ``"householder"``.
        reflections: number of Householder reflections per map (``"householder"`` only).

    Example:
        >>> import torch
        >>> from tractable import Sylvester
        >>> f = Sylvester(3, layers=4, hidden=2)
        >>> z = torch.randn(5, 3)
        >>> x, ladj = f(z)
        >>> z2, ladj_inv = f.inverse(x)
        >>> bool(torch.allclose(z, z2, atol=1e-5)), bool(torch.allclose(ladj, -ladj_inv, atol=1e-5))
        (True, True)
        >>> Sylvester(3, variant="householder", reflections=2)
        Sylvester(features=3, layers=1, hidden=3, variant=householder, reflections=2)

    References:
        Sylvester Normalizing Flows for Variational Inference (van den Berg, Hasenclever, Tomczak & Welling, 2018),
        arXiv:1803.05649.
    """

    def __init__(
        self,
        features: int,
        layers: int = 1,
        *,
        hidden: int | None = None,
        variant: str = "orthogonal",
        reflections: int | None = None,
    ):
        super().__init__(features, layers)
        if variant not in VARIANTS:
            raise ValueError(f"unknown Sylvester variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if variant == "orthogonal":
            if reflections is not None:
                raise ValueError(f"reflections applies to variant 'householder' only, got reflections={reflections}")
            hidden = features if hidden is None else hidden
            if not 1 <= hidden <= features:
                raise ValueError(f"expected 1 <= hidden <= features={features}, got hidden={hidden}")
        else:
            if hidden is not None and hidden != features:
                raise ValueError(
                    f"variant 'householder' has hidden = features = {features}, got hidden={hidden}; "
                    "use variant 'orthogonal' for fewer hidden units"
                )
            hidden = features
            reflections = features if reflections is None else reflections
            if reflections < 1:
                raise ValueError(f"expected reflections >= 1, got reflections={reflections}")
        self.hidden = hidden
        self.variant, self.reflections = variant, reflections
        m, n_upper = hidden, hidden * (hidden - 1) // 2
        if variant == "orthogonal":
            self.q = nn.Parameter(torch.randn(layers, features, m))
        else:
            self.v = nn.Parameter(torch.randn(layers, reflections, features))
        scale = math.sqrt(2.0 / m)
        self.r_diag = nn.Parameter(torch.randn(layers, m) * 0.01)
        self.r_upper = nn.Parameter(torch.randn(layers, n_upper) * 0.01)
        self.rt_diag = nn.Parameter(torch.randn(layers, m) * scale)
        self.rt_upper = nn.Parameter(torch.randn(layers, n_upper) * scale)
        self.b = nn.Parameter(torch.zeros(layers, m))

    def orthonormal(self) -> Tensor:
        """``Q`` of each map, shape ``(layers, features, hidden)``, with orthonormal columns."""
        if self.variant == "orthogonal":
            q, r = torch.linalg.qr(self.q)
            d = torch.diagonal(r, dim1=-2, dim2=-1)
            return q * torch.where(d < 0, -1.0, 1.0).to(q.dtype).unsqueeze(-2)
        v = self.v / torch.linalg.vector_norm(self.v, dim=-1, keepdim=True)
        q = torch.eye(self.features, dtype=v.dtype, device=v.device).expand(self.layers, -1, -1)
        for j in range(self.reflections):  # Q ← Q (I - 2 v vᵀ)
            vj = v[:, j]
            q = q - 2 * (q @ vj.unsqueeze(-1)) * vj.unsqueeze(-2)
        return q

    def matrices(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(Q, R, R̃)`` of each map: ``(layers, features, M)``, ``(layers, M, M)``, ``(layers, M, M)``."""
        r = _triangular(self.r_diag, self.r_upper, self.hidden)
        rt = _triangular(self.rt_diag, self.rt_upper, self.hidden)
        return self.orthonormal(), r, rt

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        z, batch = self._flat(x)
        q, r, rt = self.matrices()
        w = q @ rt.mT  # a = R̃ Qᵀ z + b  ->  z @ (Q R̃ᵀ) + b
        u = (q @ r).mT  # Q R h        ->  h @ (Q R)ᵀ
        steps, hs = [], []
        for k in range(self.layers):
            h = torch.tanh(torch.addmm(self.b[k], z, w[k]))
            z = torch.addmm(z, h, u[k])
            steps.append(z.reshape(x.shape))
            hs.append(h)
        h = torch.stack(hs)  # (layers, N, M)
        diag = (torch.diagonal(r, dim1=-2, dim2=-1) * torch.diagonal(rt, dim1=-2, dim2=-1)).unsqueeze(1)
        ladj = torch.log1p((1 - h * h) * diag).sum((0, 2))
        return steps, ladj.reshape(batch)

    def run_inverse(self, y: Tensor) -> tuple[list[Tensor], Tensor]:
        z, batch = self._flat(y)
        q, r, rt = self.matrices()
        u = (q @ r).mT
        r_off, rt_off = torch.triu(r, 1), torch.triu(rt, 1)
        r_d, rt_d = torch.diagonal(r, dim1=-2, dim2=-1), torch.diagonal(rt, dim1=-2, dim2=-1)
        grad = torch.is_grad_enabled()
        steps, ladj = [], z.new_zeros(z.shape[0])
        for k in reversed(range(self.layers)):
            # s_i = (Qᵀy)_i - Σ_{j>i} R_ij h_j  and  c_i = Σ_{j>i} R̃_ij v_j + b_i, updated as coordinates are solved.
            s = z @ q[k]
            c = self.b[k].expand_as(s)
            hs: list[Tensor] = []
            for i in reversed(range(self.hidden)):
                a, g = r_d[k, i], rt_d[k, i]
                vi = solve_tanh_shift(s[:, i], a, g, c[:, i])
                if grad:
                    t = torch.tanh(g * vi + c[:, i])
                    vi = newton_refine(vi + a * t - s[:, i], (1 + a * g * (1 - t * t)).detach(), vi)
                hi = torch.tanh(g * vi + c[:, i])
                hs.append(hi)
                if i > 0:
                    s = torch.addr(s, hi, r_off[k, :, i], alpha=-1)
                    c = torch.addr(c, vi, rt_off[k, :, i])
            h = torch.stack(hs[::-1], -1)  # (N, M)
            z = torch.addmm(z, h, u[k], alpha=-1)
            ladj = ladj - torch.log1p((1 - h * h) * (r_d[k] * rt_d[k])).sum(-1)
            steps.append(z.reshape(y.shape))
        return steps, ladj.reshape(batch)

    def extra_repr(self) -> str:
        s = f"features={self.features}, layers={self.layers}, hidden={self.hidden}, variant={self.variant}"
        return s + (f", reflections={self.reflections}" if self.variant == "householder" else "")
