"""Planar and radial flows (Rezende & Mohamed, 2015), each as a stack of layers held in one module.

Both are analytic in their generative direction, which is this module's ``forward``; place them in a flow as
``Inverse(Planar(...))`` (as :class:`tractable.PlanarFlow` does) so that sampling runs the analytic map and
``log_prob`` runs the inverse. A stack of ``layers`` maps keeps its parameters as ``(layers, features)`` tensors, so a
16-layer chain is one module with a handful of kernel launches per layer.

References:
    Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LayerStack
from .numerics import newton_refine, solve_tanh_shift

#: Planar's initialisations and the default size of ``û`` at the start of each.
INITS = {"shear": 1.0, "identity": 0.01}


class Planar(LayerStack):
    """A stack of planar maps ``f(z) = z + û tanh(wᵀz + b)``, applied in order.

    The invertibility constraint ``wᵀû ≥ -1`` holds by construction: ``û = u + (m(wᵀu) - wᵀu) w / ‖w‖²`` with
    ``m(a) = -1 + softplus(a)`` (Rezende & Mohamed 2015, App. A), so ``wᵀû = m(wᵀu) > -1`` and
    ``log|det ∂f/∂z| = log(1 + (1 - tanh²(wᵀz + b)) wᵀû)``.

    Directions: ``forward`` is the analytic planar map (the generative direction of the paper). ``inverse`` is
    numerical: projecting on ``w`` reduces it to the increasing scalar equation ``α + wᵀû tanh(α + b) = wᵀy`` in
    ``α = wᵀz``, solved by safeguarded Newton iteration to ``1e-12`` (float64) or ``1e-6`` (float32), relative, then
    ``z = y - û tanh(α + b)``. Gradients through the inverse are exact (implicit function theorem).

    Initialisation (``init``), both with ``m(wᵀu) ≈ 0`` in every map, so that no map contracts space at the start
    (with ``u`` and ``w`` drawn independently, as in other libraries, ``m < 0`` in most maps and the initial density is
    a near point mass, from which reverse KL tends to settle on one mode):

    * ``"shear"``: ``w ~ U(±√(2/features))`` per entry, ``u ~ U(±scale·√2)`` moved along ``w`` so that
      ``wᵀu = log(e - 1)`` (``m = 0``), then its part across ``w`` multiplied by a factor drawn per map
      log-uniformly on ``[0.1, 1]``: ``û`` across ``w`` is of order ``scale/10`` to ``scale``, and every map is a
      volume-preserving shear (``log|det| = 0``) that already bends space.
    * ``"identity"``: ``w`` of random direction and norm ``√2``, ``u = log(e - 1) w / ‖w‖² + N(0, scale²)``, so
      ``û`` is of order ``scale`` (0.01 by default): each map starts close to the identity.

    The shear start (the default) suits a plain reverse-KL loop (fixed base, no annealing): with 32 maps on the U2
    energy it reaches a lower KL in 3,000 steps than the identity start does in 10,000 (0.03–0.06 against 0.10). With
    β annealing and a learnable base (``tractable fit``'s energy recipe, which uses ``"identity"``) the identity start
    is the more reliable one.

    Args:
        features: dimension of the input.
        layers: number of planar maps in the stack.
        init: ``"shear"`` or ``"identity"`` (see above).
        scale: the size of ``û`` at the start (``None``: 1 for ``"shear"``, its largest, 0.01 for ``"identity"``).

    Example:
        >>> import torch
        >>> from tractable import Planar
        >>> f = Planar(2, layers=4)
        >>> z = torch.randn(3, 2)
        >>> x, ladj = f(z)
        >>> z2, _ = f.inverse(x)
        >>> bool(torch.allclose(z, z2, atol=1e-5))
        True
    """

    def __init__(self, features: int, layers: int = 1, *, init: str = "shear", scale: float | None = None):
        super().__init__(features, layers)
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
        scale = INITS[init] if scale is None else float(scale)
        if not scale >= 0:
            raise ValueError(f"scale must be >= 0; got {scale}")
        self.init = init
        c = math.log(math.e - 1)  # wᵀu = c puts m(wᵀu) = 0 (u ≈ 0 would give m = log 2 - 1 ≈ -0.31: a contraction)
        if init == "identity":
            w = torch.randn(layers, features)
            w = w * (math.sqrt(2.0) / torch.linalg.vector_norm(w, dim=-1, keepdim=True))
            u = torch.randn(layers, features) * scale + (c / 2.0) * w
        else:
            lim = math.sqrt(2.0 / features)
            w = torch.empty(layers, features).uniform_(-lim, lim)
            norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
            # a rare near-zero w would make the move along w below (and û's parametrisation) ill-conditioned
            w = torch.where(norm < 0.1 * lim, w * (0.1 * lim / norm.clamp_min(1e-12)), w)
            u = torch.empty(layers, features).uniform_(-1.0, 1.0) * (scale * math.sqrt(2.0))
            u = u + ((c - (w * u).sum(-1, keepdim=True)) / (w * w).sum(-1, keepdim=True)) * w
            # each map's shear shrunk by its own factor, log-uniform on [0.1, 1]: a few large shears bend the bands of
            # U2–U4 early, while the many small ones keep a ring-shaped target whole (one size for all maps gave one
            # or the other: ring KL 0.08 at 0.3 but 0.6–1.2 at 0.45–1; U4 0.33 at 0.3 but 0.22 at 0.6–1)
            along = (w * u).sum(-1, keepdim=True) / (w * w).sum(-1, keepdim=True) * w
            f = torch.exp(torch.empty(layers, 1).uniform_(math.log(0.1), math.log(1.0)))
            u = along + f * (u - along)
        self.w, self.u = nn.Parameter(w), nn.Parameter(u)
        self.b = nn.Parameter(torch.zeros(layers))

    def constrained(self) -> tuple[Tensor, Tensor]:
        """``(û, m)``: the constrained direction of each map and ``m = wᵀû > -1``."""
        wu = (self.w * self.u).sum(-1)
        m = F.softplus(wu) - 1
        uh = self.u + ((m - wu) / (self.w * self.w).sum(-1)).unsqueeze(-1) * self.w
        return uh, m

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        z, batch = self._flat(x)
        uh, m = self.constrained()
        steps, ts = [], []
        for k in range(self.layers):
            t = torch.tanh(torch.addmv(self.b[k], z, self.w[k]))
            z = torch.addr(z, t, uh[k])
            steps.append(z.reshape(x.shape))
            ts.append(t)
        t = torch.stack(ts)
        ladj = torch.log1p((1 - t * t) * m.unsqueeze(-1)).sum(0)
        return steps, ladj.reshape(batch)

    def run_inverse(self, y: Tensor) -> tuple[list[Tensor], Tensor]:
        z, batch = self._flat(y)
        uh, m = self.constrained()
        steps, ladj = [], z.new_zeros(z.shape[0])
        for k in reversed(range(self.layers)):
            s = z @ self.w[k]
            alpha = solve_tanh_shift(s, m[k], torch.ones_like(m[k]), self.b[k])
            if torch.is_grad_enabled():
                t = torch.tanh(alpha + self.b[k])
                alpha = newton_refine(alpha + m[k] * t - s, (1 + m[k] * (1 - t * t)).detach(), alpha)
            t = torch.tanh(alpha + self.b[k])
            z = torch.addr(z, t, uh[k], alpha=-1)
            ladj = ladj - torch.log1p((1 - t * t) * m[k])
            steps.append(z.reshape(y.shape))
        return steps, ladj.reshape(batch)


class Radial(LayerStack):
    """A stack of radial maps ``f(z) = z + β h(α, r) (z - z₀)``, ``h = 1/(α + r)``, ``r = ‖z - z₀‖``.

    ``α = softplus(α̂) > 0`` and ``β = -α + softplus(β̂) > -α`` keep each map invertible, and
    ``det ∂f/∂z = (1 + βh)^(d-1) (1 + βh + βh′r) = (1 + βh)^(d-1) (1 + αβh²)``.

    Directions: ``forward`` is the analytic radial map (the paper's generative direction). ``inverse`` is exact
    too: the norm of ``y - z₀ = (z - z₀)(1 + βh(r))`` gives the increasing scalar equation
    ``r (1 + β / (α + r)) = ‖y - z₀‖``, a quadratic in ``r`` whose positive root is taken in a cancellation-free form,
    so the inverse is accurate to rounding error.

    Initialisation: ``z₀ ~ N(0, I)``, ``α ≈ 1`` and ``β ≈ 0``, so each map starts near the identity.

    Args:
        features: dimension of the input.
        layers: number of radial maps in the stack.

    Example:
        >>> import torch
        >>> from tractable import Radial
        >>> t = Radial(2, layers=3)
        >>> y, ladj = t(torch.randn(6, 2))
        >>> x, ladj_inv = t.inverse(y)
        >>> tuple(x.shape), bool(torch.allclose(ladj + ladj_inv, torch.zeros(6), atol=1e-5))
        ((6, 2), True)
    """

    def __init__(self, features: int, layers: int = 1):
        super().__init__(features, layers)
        self.z0 = nn.Parameter(torch.randn(layers, features))
        self.alpha_raw = nn.Parameter(torch.full((layers,), math.log(math.e - 1)))  # softplus -> 1
        self.beta_raw = nn.Parameter(torch.full((layers,), math.log(math.e - 1)) + 0.01 * torch.randn(layers))

    def constrained(self) -> tuple[Tensor, Tensor]:
        """``(α, β)`` of each map, with ``α > 0`` and ``β > -α``."""
        alpha = F.softplus(self.alpha_raw)
        return alpha, F.softplus(self.beta_raw) - alpha

    def _ladj(self, r: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
        h = 1 / (alpha + r)
        bh = beta * h
        return bh, (self.features - 1) * torch.log1p(bh) + torch.log1p(alpha * beta * h * h)

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        z, batch = self._flat(x)
        alpha, beta = self.constrained()
        steps, ladj = [], z.new_zeros(z.shape[0])
        for k in range(self.layers):
            d = z - self.z0[k]
            r = torch.linalg.vector_norm(d, dim=-1)
            bh, la = self._ladj(r, alpha[k], beta[k])
            z = z + bh.unsqueeze(-1) * d
            ladj = ladj + la
            steps.append(z.reshape(x.shape))
        return steps, ladj.reshape(batch)

    def run_inverse(self, y: Tensor) -> tuple[list[Tensor], Tensor]:
        z, batch = self._flat(y)
        alpha, beta = self.constrained()
        steps, ladj = [], z.new_zeros(z.shape[0])
        for k in reversed(range(self.layers)):
            d = z - self.z0[k]
            rho = torch.linalg.vector_norm(d, dim=-1)
            a, b = alpha[k], beta[k]
            # r² + (α + β - ρ) r - αρ = 0; positive root without cancellation.
            q = a + b - rho
            root = torch.sqrt(q * q + 4 * a * rho)
            pos = q > 0
            r = torch.where(pos, 2 * a * rho / torch.where(pos, q + root, 1.0), 0.5 * (root - q))
            bh, la = self._ladj(r, a, b)
            z = self.z0[k] + d / (1 + bh).unsqueeze(-1)
            ladj = ladj - la
            steps.append(z.reshape(y.shape))
        return steps, ladj.reshape(batch)
