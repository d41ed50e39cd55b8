"""Neural elementwise maps for autoregressive layers: NAF's deep sigmoidal flow and UNAF's integrated positive network.

Both are :class:`~tractable.transforms.maps.ElementwiseMap` families, so a
:class:`~tractable.transforms.autoregressive.MaskedAutoregressive` layer (a MADE conditioner) or a
:class:`~tractable.transforms.coupling.Coupling` applies them; their inverses are scalar monotone solves by the
bracketed Newton–bisection of :mod:`~tractable.transforms.numerics`, with one differentiable Newton step at the
solution for exact gradients.

References:
    Neural Autoregressive Flows (Huang, Krueger, Lacoste & Courville, 2018), arXiv:1804.00779.
    Unconstrained Monotonic Neural Networks (Wehenkel & Louppe, 2019), arXiv:1908.05164.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.activations import activation_fn
from .logistic_mixture import mixture_logit_cdf
from .maps import ElementwiseMap
from .numerics import default_tolerance, newton_refine, solve_increasing

#: ``softplus(SOFTPLUS_ONE) = 1``: the slope parameter at which a sigmoidal unit is the plain logistic.
SOFTPLUS_ONE = math.log(math.e - 1)
#: The range of a sigmoidal unit's slope ``a`` (as the logistic mixture's scales: ``log a ≤ 7``).
SLOPE_RANGE = (1e-3, math.exp(7.0))


class DeepSigmoidalMap(ElementwiseMap):
    """NAF's deep sigmoidal flow: ``depth`` stacked units ``x ↦ σ⁻¹(Σ_k w_k σ(a_k x + b_k))``, ``K`` components each.

    Per unit, ``θ = (â, b, ŵ)`` (``3K`` numbers): slopes ``a = softplus(â + log(e − 1))`` in ``[1e-3, e^7]``, shifts
    ``b`` and weights ``w = softmax(ŵ)``; ``params = 3·K·depth``. All zeros is the identity (``a = 1``, ``b = 0``:
    ``σ⁻¹(σ(x)) = x``). A unit is a strictly increasing bijection of ``R`` (its output lies between ``min_k`` and
    ``max_k`` of ``a_k x + b_k``), evaluated in log space (``log F``, ``log(1 − F)`` as log-sum-exps of
    log-sigmoids; :func:`~tractable.transforms.logistic_mixture.mixture_logit_cdf`), so it is finite for
    ``|x| = 1e3``. The composition is Huang et al.'s DSF for ``depth = 1`` and a deep (DDSF-like) stack of DSF units
    otherwise.

    Directions: ``forward`` is analytic with the exact log-derivative. ``inverse`` solves one unit at a time, last
    first, each root bracketed by ``[min_k, max_k] (v − b_k)/a_k``, by Newton–bisection to ``tol · max(1, |x|)``
    (default ``1e-12`` in float64, ``1e-6`` in float32), then one differentiable Newton step.

    Args:
        components: sigmoidal components ``K`` per unit.
        depth: stacked units.
        tol: the inverse's relative tolerance (``None``: by dtype).

    Example:
        >>> import torch
        >>> from tractable.transforms.neural import DeepSigmoidalMap
        >>> m = DeepSigmoidalMap(components=4, depth=2)
        >>> x = torch.randn(3, 2)
        >>> y, log_d = m(x, m.identity().expand(3, 2, m.params))
        >>> bool(torch.allclose(y, x, atol=1e-6)), bool(log_d.abs().max() < 1e-6)
        (True, True)

    References:
        Neural Autoregressive Flows (Huang, Krueger, Lacoste & Courville, 2018), arXiv:1804.00779, §3.1.
    """

    def __init__(self, components: int = 8, *, depth: int = 1, tol: float | None = None):
        super().__init__()
        if components < 1 or depth < 1:
            raise ValueError(f"expected components >= 1 and depth >= 1, got components={components}, depth={depth}")
        self.components, self.depth, self.tol = components, depth, tol
        self.params = 3 * components * depth

    def _units(self, theta: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per unit, the mixture form of its parameters: ``(logits, loc = −b/a, log_scale = −log a)``."""
        k, out = self.components, []
        for u in range(self.depth):
            raw_a, b, logits = theta[..., 3 * k * u : 3 * k * (u + 1)].split(k, -1)
            a = F.softplus(raw_a + SOFTPLUS_ONE).clamp(*SLOPE_RANGE)
            out.append((logits, -b / a, -torch.log(a)))
        return out

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        log_d = torch.zeros_like(x)
        for logits, loc, log_scale in self._units(theta):
            x, log_du = mixture_logit_cdf(x, logits, loc, log_scale)
            log_d = log_d + log_du
        return x, log_d

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        tol = default_tolerance(y.dtype) if self.tol is None else self.tol
        log_d = torch.zeros_like(y)
        for logits, loc, log_scale in reversed(self._units(theta)):
            lg, lc, ls = logits.detach(), loc.detach(), log_scale.detach()
            with torch.no_grad():
                ends = lc + torch.exp(ls) * y.detach().unsqueeze(-1)  # where each a_k x + b_k equals y
                lo, hi = ends.min(-1).values, ends.max(-1).values

                def fn(v: Tensor, lg: Tensor = lg, lc: Tensor = lc, ls: Tensor = ls) -> tuple[Tensor, Tensor]:
                    g, log_dg = mixture_logit_cdf(v, lg, lc, ls)
                    return g, torch.exp(log_dg)

                x = solve_increasing(fn, y.detach(), lo, hi, tol=tol)
            g, log_dg = mixture_logit_cdf(x, logits, loc, log_scale)
            x = newton_refine(g - y, torch.exp(log_dg), x)
            _, log_dg = mixture_logit_cdf(x, logits, loc, log_scale)
            log_d, y = log_d - log_dg, x
        return y, log_d

    def extra_repr(self) -> str:
        return f"components={self.components}, depth={self.depth}"


def clenshaw_curtis(nodes: int) -> tuple[Tensor, Tensor]:
    """Clenshaw–Curtis nodes ``cos(jπ/N)``, ``j = 0..N`` (``N = nodes``), and weights on ``[−1, 1]`` (float64).

    Exact for polynomials of degree ``N``, and as accurate as Gauss–Legendre on analytic integrands in practice
    (Trefethen 2008, "Is Gauss quadrature better than Clenshaw–Curtis?"); the nodes include both ends, so the
    integrand at the upper limit (the map's derivative) comes with the integral.
    """
    n = nodes
    theta = math.pi * torch.arange(n + 1, dtype=torch.float64) / n
    t = torch.cos(theta)
    w = torch.zeros(n + 1, dtype=torch.float64)
    inner = theta[1:-1]
    v = torch.ones(n - 1, dtype=torch.float64)
    if n % 2 == 0:
        w[0] = w[n] = 1.0 / (n * n - 1)
        for k in range(1, n // 2):
            v = v - 2 * torch.cos(2 * k * inner) / (4 * k * k - 1)
        v = v - torch.cos(n * inner) / (n * n - 1)
    else:
        w[0] = w[n] = 1.0 / (n * n)
        for k in range(1, (n - 1) // 2 + 1):
            v = v - 2 * torch.cos(2 * k * inner) / (4 * k * k - 1)
    w[1:-1] = 2 * v / n
    return t, w


class IntegralMap(ElementwiseMap):
    """UNAF's map ``y = β + ∫_0^x g(u; h) du``: a positive integrand network ``g`` integrated by Clenshaw–Curtis.

    ``θ = (h, β)``: a ``signal`` vector ``h`` (from the conditioner) and an offset ``β``; ``params = signal + 1``. The
    integrand ``g(u; h) = exp(s / √(1 + (s/7)²))``, ``s`` an MLP of ``(u, h)`` whose weights belong to the map
    (shared by every feature and layer position that uses it), lies in ``(e^{-7}, e^7)``; its last layer starts at
    zero, so ``g = 1`` and the map is the identity at ``θ = 0``. The clip is analytic, so the quadrature keeps its fast
    convergence, and it nears its bound algebraically (slope ``~(7/|s|)³``), not exponentially as ``7 tanh(s/7)``
    does, so a steep integrand keeps a gradient (on rings, seeds 0–2, the tanh clip let one test point in 100,000
    land at a log-density of −2.7e5).

    Directions: ``forward`` is the quadrature (``nodes + 1`` evaluations of ``g`` per element; ``x/2 Σ_j w_j
    g(x(1 + t_j)/2)``) with the log-derivative ``log g(x; h)`` — exact for the integral, so the density is exact up
    to the quadrature error (below ``1e-6`` relative at 32 nodes on random integrands with ``nn.Linear``'s first
    layer, for ``|x| ≲ 10``; a randomly perturbed steep start, ``slope=4``, reaches ``1e-3`` in rare draws at 32 and
    64 nodes; a badly resolved integrand over a long interval can make the quadrature non-monotone: standardise data).
    ``inverse`` solves ``f(x) = y`` by Newton–bisection in a bracket found by doubling from ``|x| = |y − β|`` within
    ``[e^{-7}, e^7]·(y − β)``, to ``tol · max(1, |x|)`` (default ``1e-12`` in float64, ``1e-6`` in float32), then one
    differentiable Newton step.

    Args:
        signal: size of the conditioning signal ``h``.
        hidden: width of the integrand network's hidden layers.
        blocks: hidden layers of the integrand network.
        nodes: Clenshaw–Curtis order ``N`` (``N + 1`` nodes).
        activation: the integrand network's activation (smooth ones make the quadrature converge fastest).
        features: ``None`` for one integrand network shared by every element; ``D`` for a network per feature (as
            Wehenkel & Louppe's UMNN-MAF): the elements' last axis is then the feature axis, of size ``D``.
        slope: the first layer's weights on the point start uniform in ``[−slope, slope]`` (0: ``nn.Linear``'s
            initialisation, whose small weights make an integrand smooth in ``u``: it takes thousands of steps to
            grow the several bumps a multimodal conditional needs).
        spread: the first layer's units start bending at points uniform in ``[−spread, spread]`` (standardised
            data's range).
        eval_nodes: the Clenshaw–Curtis order in eval mode (``None``: ``nodes``). Training with few nodes and
            evaluating with more keeps training fast and the density normalised: the quadrature error is what
            separates the map's derivative from ``g``, hence the density's mass from 1.
        tol: the inverse's relative tolerance (``None``: by dtype).

    Example:
        >>> import torch
        >>> from tractable.transforms.neural import IntegralMap
        >>> m = IntegralMap(signal=4, hidden=16)
        >>> x = torch.randn(3, 2)
        >>> y, log_d = m(x, m.identity().expand(3, 2, m.params))
        >>> bool(torch.allclose(y, x, atol=1e-6)), bool(log_d.abs().max() < 1e-6)
        (True, True)

    References:
        Unconstrained Monotonic Neural Networks (Wehenkel & Louppe, 2019), arXiv:1908.05164.
        Is Gauss Quadrature Better than Clenshaw–Curtis? (Trefethen, 2008), SIAM Review 50(1).
    """

    #: The integrand's log-range: ``g ∈ [e^{-CLIP}, e^{CLIP}]``.
    CLIP = 7.0

    def __init__(self, signal: int = 16, *, hidden: int = 64, blocks: int = 2, nodes: int = 32,
                 activation: str = "silu", features: int | None = None, slope: float = 4.0, spread: float = 2.5,
                 eval_nodes: int | None = None, tol: float | None = None):
        super().__init__()
        if signal < 0 or hidden < 1 or blocks < 1 or nodes < 2 or (features is not None and features < 1):
            raise ValueError(f"expected signal >= 0, hidden >= 1, blocks >= 1, nodes >= 2 and features None or "
                             f">= 1, got signal={signal}, hidden={hidden}, blocks={blocks}, nodes={nodes}, "
                             f"features={features}")
        if not (slope >= 0 and spread >= 0) or (eval_nodes is not None and eval_nodes < 2):
            raise ValueError(f"expected slope >= 0, spread >= 0 and eval_nodes None or >= 2, got slope={slope}, "
                             f"spread={spread}, eval_nodes={eval_nodes}")
        self.signal, self.nodes, self.tol, self.activation = signal, nodes, tol, activation
        self.eval_nodes = nodes if eval_nodes is None else eval_nodes
        self.features = features
        self.params = signal + 1
        self._act = activation_fn(activation)
        sizes = [1 + signal] + [hidden] * blocks + [1]
        self.layers = nn.ModuleList(_StackedLinear(sizes[i], sizes[i + 1], features) if features else
                                    nn.Linear(sizes[i], sizes[i + 1]) for i in range(blocks + 1))
        self._spread_point_units(slope, spread)
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self._rules: dict[tuple[int, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    @torch.no_grad()
    def _spread_point_units(self, slope: float, spread: float) -> None:
        """The first layer's weights on the point ``u`` start uniform in ``[−slope, slope]`` and its biases put each
        unit's bend (the zero of its input at ``h = 0``) uniform in ``[−spread, spread]``: the integrand can grow
        bumps across the standardised data from the first steps, instead of bending near ``u = 0`` only."""
        if slope == 0:
            return
        first = self.layers[0]
        w = first.weight[..., 0]
        w.uniform_(-slope, slope)
        first.bias.copy_(-w * torch.empty_like(w).uniform_(-spread, spread))

    def _check(self, x: Tensor, feature: int | None) -> None:
        if self.features and feature is None and (x.dim() < 1 or x.shape[-1] != self.features):
            raise ValueError(f"expected elements of shape (..., {self.features}) for an integrand per feature, got "
                             f"shape {tuple(x.shape)}")

    def select(self, feature: int) -> ElementwiseMap:
        """The map of feature ``feature`` alone: itself when the integrand is shared, else a view of that feature's
        integrand network (the sequential inverse of an autoregressive layer takes one feature at a time)."""
        return self if not self.features else _OneFeature(self, feature)

    def log_integrand(self, u: Tensor, h: Tensor, feature: int | None = None) -> Tensor:
        """``log g(u; h)`` for points ``u`` of shape ``S + (n,)`` and signals ``h`` of shape ``S + (signal,)``; with
        an integrand per feature, ``S`` ends with the feature axis, or ``feature`` names the one feature of ``S``."""
        params = [(layer.weight, layer.bias) if feature is None else (layer.weight[feature], layer.bias[feature])
                  for layer in self.layers]
        w, b = params[0]
        if w.dim() == 2:  # shared (or one feature's): the signal's part once per element, the point's part per node
            a = F.linear(h, w[:, 1:], b).unsqueeze(-2) + u.unsqueeze(-1) * w[:, 0]
            for w, b in params[1:]:
                a = F.linear(self._act(a), w, b)
        else:  # per feature: w (D, out, in) against S = (..., D)
            a = (torch.einsum("...ds,dos->...do", h, w[..., 1:]) + b).unsqueeze(-2) \
                + u.unsqueeze(-1) * w[:, None, :, 0]
            for w, b in params[1:]:
                a = torch.einsum("...dni,doi->...dno", self._act(a), w) + b[:, None, :]
        s = a.squeeze(-1)
        # analytic (a kink in any derivative of log g would slow the quadrature's convergence); bounded by ±CLIP
        return s * torch.rsqrt(1 + (s / self.CLIP) ** 2)

    def _rule(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The nodes on ``[0, 1]`` (from ``u = 0`` to the upper limit, last) and the weights, in ``x``'s dtype and on
        its device (``nodes`` in train mode, ``eval_nodes`` in eval mode): computed in float64 once per order, dtype
        and device (not buffers, so a float32 copy never loses the float64 rule)."""
        nodes = self.nodes if self.training else self.eval_nodes
        key = (nodes, x.dtype, x.device)
        if key not in self._rules:
            t, w = clenshaw_curtis(nodes)
            self._rules[key] = (((1 + t.flip(0)) / 2).to(x), (w.flip(0) / 2).to(x))
        return self._rules[key]

    def _integral(self, x: Tensor, h: Tensor, feature: int | None = None) -> tuple[Tensor, Tensor]:
        """``∫_0^x g`` and ``log g(x)`` (the last node)."""
        ht, hw = self._rule(x)
        log_g = self.log_integrand(x.unsqueeze(-1) * ht, h, feature)
        return x * (torch.exp(log_g) * hw).sum(-1), log_g[..., -1]

    def forward(self, x: Tensor, theta: Tensor, feature: int | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, feature)
        h, beta = theta[..., : self.signal], theta[..., self.signal]
        value, log_g = self._integral(x, h, feature)
        return beta + value, log_g

    def inverse(self, y: Tensor, theta: Tensor, feature: int | None = None) -> tuple[Tensor, Tensor]:
        self._check(y, feature)
        h, beta = theta[..., : self.signal], theta[..., self.signal]
        v = y - beta
        hd = h.detach()
        with torch.no_grad():
            vd = v.detach()

            def fn(x: Tensor) -> tuple[Tensor, Tensor]:
                value, log_g = self._integral(x, hd, feature)
                return value, torch.exp(log_g)

            lo, hi = self._bracket(fn, vd)
            tol = default_tolerance(y.dtype) if self.tol is None else self.tol
            x = solve_increasing(fn, vd, lo, hi, tol=tol)
        value, log_g = self._integral(x, h, feature)
        x = newton_refine(value - v, torch.exp(log_g), x)
        return x, -self._integral(x, h, feature)[1]

    def _bracket(self, fn, v: Tensor) -> tuple[Tensor, Tensor]:
        """A bracket of ``f(x) = v`` within a factor 2: ``g ∈ (e^{-7}, e^7)`` puts the root in ``v·[e^{-7}, e^7]``,
        but the quadrature over an interval far longer than the data's misses an integrand's bumps near 0 and can put
        ``f(v e^7)`` below ``v``; so the bracket is found by doubling or halving from ``|x| = |v|`` (11 steps:
        ``2^11 > e^7``), evaluating ``f`` only within a factor 2 of the root."""
        sign, target = torch.where(v < 0, -1.0, 1.0).to(v), v.abs()
        lo, hi = target * math.exp(-self.CLIP), target * math.exp(self.CLIP)
        x = target
        for _ in range(math.ceil(self.CLIP / math.log(2))):
            below = sign * fn(sign * x)[0] < target
            lo, hi = torch.where(below, torch.maximum(lo, x), lo), torch.where(below, hi, torch.minimum(hi, x))
            x = torch.where(below, 2 * x, x / 2).clamp(lo, hi)
        lo, hi = sign * lo, sign * hi
        return torch.minimum(lo, hi), torch.maximum(lo, hi)

    def extra_repr(self) -> str:
        per = f", features={self.features}" if self.features else ""
        return (f"signal={self.signal}, nodes={self.nodes}, eval_nodes={self.eval_nodes}, "
                f"activation={self.activation!r}{per}")


class _StackedLinear(nn.Module):
    """``stack`` independent linear layers ``in → out`` (weights ``(stack, out, in)``), initialised as ``nn.Linear``."""

    def __init__(self, inputs: int, outputs: int, stack: int):
        super().__init__()
        bound = 1 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(stack, outputs, inputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(stack, outputs).uniform_(-bound, bound))


class _OneFeature(ElementwiseMap):
    """One feature's map of an :class:`IntegralMap` with an integrand per feature (not a module of its own: it calls
    the parent's, whose parameters it uses)."""

    def __init__(self, parent: IntegralMap, feature: int):
        super().__init__()
        self.params = parent.params
        self._call = (parent, feature)  # a tuple: not registered as a submodule

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        parent, feature = self._call
        return parent.forward(x, theta, feature)

    def inverse(self, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        parent, feature = self._call
        return parent.inverse(y, theta, feature)


__all__ = ["DeepSigmoidalMap", "IntegralMap", "clenshaw_curtis"]
