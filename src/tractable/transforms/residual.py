"""Invertible residual blocks (i-ResNet, Residual Flows): ``z = x + g(x)`` with ``Lip(g) < 1``.

``g`` is an MLP whose linear layers are spectrally normalised to a Lipschitz coefficient ``c < 1`` and whose
activations are LipSwish (1-Lipschitz), so ``Lip(g) ≤ c`` and ``x ↦ x + g(x)`` is a bijection of ``R^d`` whose inverse
is the fixed point of the contraction ``x ← z − g(x)``.

The log-determinant ``log det(I + J_g) = Σ_{k≥1} (−1)^{k+1} tr(J_g^k)/k`` has two forms here:

* **exact** (evaluation, and training with ``logdet="exact"``): the ``d × d`` Jacobian per row, built by the chain
  rule through the block's layers (equal to autograd's, checked in the tests), and ``slogdet``. Used while
  ``features ≤ exact_limit`` (default 16: a ``(batch, d, d)`` Jacobian and an ``O(d³)`` determinant per row).
* **stochastic** (training): the Russian-roulette estimator of Chen et al. (2019): ``n = exact_terms + M`` terms of the
  power series, ``M ~ Geometric(p)``, each term reweighted by ``1/P(n ≥ k)`` and its trace estimated by Hutchinson's
  ``vᵀ J^k v`` (``v ~ N(0, I)``): unbiased for any ``n`` distribution with full support. Its gradient is the
  Neumann-series estimator ``[Σ_{k<n} (−1)^k vᵀ J^k / P(n ≥ k+1)] ∂J v``, unbiased for ``∂ log det``, which needs one
  graph through ``g`` and ``n`` vector-Jacobian products without one (the memory-saving form of the paper).
  Above ``exact_limit`` the evaluation mode uses this estimator too: the density is then an unbiased estimate.

References:
    Invertible Residual Networks (Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen, 2019), arXiv:1811.00995.
    Residual Flows for Invertible Generative Modeling (Chen, Behrmann, Duvenaud & Jacobsen, 2019),
    arXiv:1906.02735.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.functional import linear
from .base import Transform, check_features
from .numerics import default_tolerance

#: The largest ``features`` for which the log-determinant is computed exactly in evaluation mode.
EXACT_LIMIT = 16
LOGDET_METHODS = ("stochastic", "exact")


def _unit(v: Tensor, previous: Tensor) -> Tensor:
    """``v / |v|``, or ``previous`` where ``v`` vanishes (a zero weight, as at initialisation, must not collapse the
    power iteration's vectors to zero for good)."""
    n = torch.linalg.vector_norm(v)
    return torch.where(n > 1e-30, v / n.clamp(min=1e-30), previous)


class SpectralLinear(nn.Module):
    """A linear layer whose weight is used as ``W / max(1, σ(W)/c)``: spectral norm at most ``c``.

    In training mode ``σ`` is the power-iteration estimate ``uᵀWv`` (``iterations`` steps per call from the stored
    ``u, v``, which are updated: warm starts make one or two steps enough). In evaluation mode ``σ`` is the exact
    largest singular value, so the bound holds exactly and the layer is a pure function of its weights.

    Args:
        inputs: input width.
        outputs: output width.
        coefficient: the bound ``c`` on the spectral norm.
        iterations: power iterations per training call.
        zero: start with a zero weight and bias (a block whose last layer is zero is the identity).
    """

    def __init__(self, inputs: int, outputs: int, *, coefficient: float, iterations: int = 1, zero: bool = False):
        super().__init__()
        linear = nn.Linear(inputs, outputs)
        self.weight, self.bias = linear.weight, linear.bias
        if zero:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)
        self.coefficient, self.iterations = float(coefficient), int(iterations)
        self.register_buffer("u", F.normalize(torch.randn(outputs), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(inputs), dim=0))

    def normalised_weight(self) -> Tensor:
        w = self.weight
        if self.training:
            with torch.no_grad():
                u, v = self.u.to(w.dtype), self.v.to(w.dtype)
                for _ in range(self.iterations):
                    v = _unit(w.T @ u, v)
                    u = _unit(w @ v, u)
                self.u.copy_(u)
                self.v.copy_(v)
            sigma = torch.dot(u, w @ v)
        else:
            sigma = torch.linalg.matrix_norm(w, ord=2)
        return w / torch.clamp(sigma / self.coefficient, min=1.0)

    def extra_repr(self) -> str:
        return f"inputs={self.weight.shape[1]}, outputs={self.weight.shape[0]}, coefficient={self.coefficient}"


class LipSwish(nn.Module):
    """``x · σ(βx) / 1.1`` with a learned ``β = softplus(b) > 0``: 1-Lipschitz for every ``β`` (Chen et al. 2019)."""

    def __init__(self):
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5))  # as Residual Flows' code: β = softplus(0.5) ≈ 0.97

    def value_and_derivative(self, a: Tensor) -> tuple[Tensor, Tensor]:
        beta = F.softplus(self.raw_beta)
        s = torch.sigmoid(beta * a)
        return a * s / 1.1, (s + beta * a * s * (1 - s)) / 1.1

    def forward(self, a: Tensor) -> Tensor:
        return a * torch.sigmoid(F.softplus(self.raw_beta) * a) / 1.1


class ResidualBlock(Transform):
    """One invertible residual block ``z = x + g(x)``, ``g`` a spectrally normalised LipSwish MLP with ``Lip(g) ≤ c``.

    Directions: ``forward`` (normalizing, ``x → z``) is one pass of ``g`` plus the log-determinant: exact in
    evaluation mode (``features ≤ exact_limit``), the unbiased Russian-roulette estimate with the Neumann-series
    gradient in training mode (or exact with ``logdet="exact"``); see the module's notes. ``inverse`` (generative)
    is numerical: the fixed-point iteration ``x ← z − g(x)``, a contraction of rate at most ``c``, until every step is
    below ``tol · max(1, |x|)`` (default by dtype: ``1e-12`` in float64, ``1e-6`` in float32; at most ``max_iter``
    steps), then, for ``features ≤ exact_limit``, one Newton step with the exact Jacobian, which both polishes the
    solution to rounding and gives exact implicit-function gradients through the inverse (above the limit the
    gradients are those of one fixed-point step). The last layer of ``g`` starts at zero, so a new block is the
    identity. The block ignores a context.

    Args:
        features: dimension ``d`` of the input.
        hidden: width of ``g``'s hidden layers.
        blocks: number of hidden layers of ``g``.
        coefficient: the Lipschitz coefficient ``c`` of each linear layer (``0 < c < 1``; Residual Flows: 0.98).
        power_iterations: power iterations per training step for the spectral norms.
        logdet: the training-mode log-determinant, ``stochastic`` (Russian roulette) or ``exact``.
        exact_terms: power-series terms the Russian-roulette estimator always computes.
        roulette_p: success probability ``p`` of the geometric number of further terms (mean ``(1 − p)/p``).
        exact_limit: the largest ``features`` with an exact log-determinant in evaluation mode.
        tol: the fixed-point tolerance (``None``: by dtype).
        max_iter: the fixed-point iteration cap.

    Example:
        >>> import torch
        >>> from tractable.transforms.residual import ResidualBlock
        >>> block = ResidualBlock(2, hidden=16).eval()
        >>> x = torch.randn(5, 2)
        >>> z, ladj = block(x)  # exact log-determinant in evaluation mode
        >>> bool(torch.allclose(block.inverse(z)[0], x, atol=1e-5)), tuple(ladj.shape)
        (True, (5,))

    References:
        Invertible Residual Networks (Behrmann et al., 2019), arXiv:1811.00995.
        Residual Flows for Invertible Generative Modeling (Chen et al., 2019), arXiv:1906.02735.
    """

    def __init__(
        self,
        features: int,
        *,
        hidden: int = 64,
        blocks: int = 2,
        coefficient: float = 0.97,
        power_iterations: int = 1,
        logdet: str = "stochastic",
        exact_terms: int = 2,
        roulette_p: float = 0.5,
        exact_limit: int = EXACT_LIMIT,
        tol: float | None = None,
        max_iter: int = 2000,
    ):
        super().__init__()
        if features < 1 or hidden < 1 or blocks < 1:
            raise ValueError(f"expected features, hidden, blocks >= 1, got features={features}, hidden={hidden}, "
                             f"blocks={blocks}")
        if not 0 < coefficient < 1:
            raise ValueError(f"expected a Lipschitz coefficient in (0, 1), got {coefficient}")
        if logdet not in LOGDET_METHODS:
            raise ValueError(f"expected logdet in {LOGDET_METHODS}, got {logdet!r}")
        if not 0 < roulette_p < 1 or exact_terms < 1 or power_iterations < 1:
            raise ValueError(f"expected 0 < roulette_p < 1, exact_terms >= 1 and power_iterations >= 1, got "
                             f"roulette_p={roulette_p}, exact_terms={exact_terms}, power_iterations={power_iterations}")
        if logdet == "exact" and features > exact_limit:
            raise ValueError(f"expected features <= exact_limit ({exact_limit}) for logdet='exact', got features="
                             f"{features}; use logdet='stochastic' or raise exact_limit")
        self.features, self.logdet = features, logdet
        self.exact_terms, self.roulette_p, self.exact_limit = exact_terms, float(roulette_p), exact_limit
        self.tol, self.max_iter = tol, max_iter
        sizes = [features] + [hidden] * blocks + [features]
        self.linears = nn.ModuleList(
            SpectralLinear(sizes[k], sizes[k + 1], coefficient=coefficient, iterations=power_iterations,
                           zero=k == blocks)
            for k in range(blocks + 1)
        )
        self.activations = nn.ModuleList(LipSwish() for _ in range(blocks))

    # -- g and its Jacobian --------------------------------------------------------------------------------------

    def weights(self) -> list[Tensor]:
        """The normalised weights for the current mode (in training mode, one call advances the power iteration)."""
        return [lin.normalised_weight() for lin in self.linears]

    def g(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        for w, lin, act in zip(weights, self.linears, self.activations):
            x = act(linear(x, w, lin.bias))
        return linear(x, weights[-1], self.linears[-1].bias)

    def g_and_jacobian(self, x: Tensor, weights: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``g(x)`` and its per-row Jacobian ``(..., d, d)`` by the chain rule, ``W_L D_{L−1} W_{L−1} ⋯ D_1 W_1``."""
        # Built transposed, (..., d, width): each step is one (rows·d, width) @ (width, width') product.
        jac_t: Tensor | None = None
        h = x
        for w, lin, act in zip(weights, self.linears, self.activations):
            h, dh = act.value_and_derivative(linear(h, w, lin.bias))
            jac_t = dh.unsqueeze(-2) * (w.T if jac_t is None else jac_t @ w.T)
        out = linear(h, weights[-1], self.linears[-1].bias)
        return out, (jac_t @ weights[-1].T).transpose(-1, -2)  # type: ignore[operator]

    # -- the log-determinant -------------------------------------------------------------------------------------

    def _exact(self, x: Tensor, weights: list[Tensor]) -> tuple[Tensor, Tensor]:
        gx, jac = self.g_and_jacobian(x, weights)
        eye = torch.eye(self.features, dtype=x.dtype, device=x.device)
        return x + gx, torch.linalg.slogdet(eye + jac)[1]

    def _tail(self, k: int) -> float:
        """``P(n ≥ k)`` for ``n = exact_terms + M``, ``M ~ Geometric(p)`` on ``{0, 1, ...}``."""
        return 1.0 if k <= self.exact_terms else (1 - self.roulette_p) ** (k - self.exact_terms)

    # Outside torch.compile's graph: the estimator draws its number of terms on the host and differentiates its
    # vector-Jacobian products again (create_graph), a double backward that compiled autograd does not support.
    @torch.compiler.disable
    def _stochastic(self, x: Tensor, weights: list[Tensor]) -> tuple[Tensor, Tensor]:
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():  # the vector-Jacobian products need a graph even under no_grad
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            gx = self.g(xg, weights)
            extra = int(torch.empty((), dtype=torch.float64).geometric_(self.roulette_p).item()) - 1
            n = self.exact_terms + extra
            v = torch.randn_like(x)
            vjp, neumann = v, v.clone()  # vᵀJ^k and Σ_{k<n} (−1)^k vᵀJ^k / P(n ≥ k+1)
            value = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
            for k in range(1, n + 1):
                vjp = torch.autograd.grad(gx, xg, vjp, retain_graph=True)[0].detach()
                value = value + (-1) ** (k + 1) / k * (vjp * v).sum(-1) / self._tail(k)
                if k < n:
                    neumann = neumann + (-1) ** k * vjp / self._tail(k + 1)
            if not differentiable:
                return (x + gx).detach(), value
            # neumannᵀ J v: its gradient is the Neumann-series estimate of ∂ log det; its value is replaced by the
            # power-series estimate, so the returned ladj is unbiased in value and in gradient.
            surrogate = (torch.autograd.grad(gx, xg, neumann, create_graph=True)[0] * v).sum(-1)
        return x + gx, value + surrogate - surrogate.detach()

    def exact_available(self) -> bool:
        return self.features <= self.exact_limit

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        weights = self.weights()
        exact = self.exact_available() and (not self.training or self.logdet == "exact")
        return self._exact(x, weights) if exact else self._stochastic(x, weights)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(y, self.features)
        weights = self.weights()
        tol = default_tolerance(y.dtype) if self.tol is None else self.tol
        with torch.no_grad():
            target, x = y.detach(), y.detach()
            wd = [w.detach() for w in weights]
            for _ in range(self.max_iter):
                new = target - self.g(x, wd)
                step = (new - x).abs()
                x = new
                if bool((step <= tol * x.abs().clamp(min=1.0)).all()):
                    break
        if not self.exact_available():
            x = y - self.g(x, weights)  # one differentiable fixed-point step
            return x, -self._stochastic(x, weights)[1]
        # One Newton step on x + g(x) − y with the exact Jacobian: the residual is ~0, so the value is the solution
        # polished to rounding, and autograd sees dx = (I + J)⁻¹ (dy − ∂g/∂θ dθ), the implicit-function derivative.
        gx, jac = self.g_and_jacobian(x, weights)
        eye = torch.eye(self.features, dtype=y.dtype, device=y.device)
        x = x - torch.linalg.solve(eye + jac, (x + gx - y).unsqueeze(-1)).squeeze(-1)
        return x, -self._exact(x, weights)[1]

    def extra_repr(self) -> str:
        return f"features={self.features}, logdet={self.logdet!r}"


__all__ = ["EXACT_LIMIT", "LipSwish", "ResidualBlock", "SpectralLinear"]
