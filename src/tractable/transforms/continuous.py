"""Continuous normalizing flows: an invertible map defined by an ordinary differential equation, solved by torchdiffeq.

A time-dependent vector field ``v(t, x, c)`` moves points along ``dx/dt = v``; its flow from ``t = 1`` to ``t = 0`` is
the normalizing map (data at ``t = 1``, latent at ``t = 0``, the convention of flow matching), and the log-density
changes by the instantaneous change of variables ``d log p(x(t))/dt = -tr(∂v/∂x)`` (Chen et al. 2018). The
log-determinant is integrated beside the state: ``a(1) = 0``, ``da/dt = tr(∂v/∂x)``, so ``a(0)`` is the forward
``ladj`` (and the same equation integrated from 0 to 1 gives the inverse's).

The trace is exact in eval mode (``d`` autograd passes: the exact log-density of a low-dimensional flow, which is what
evaluation and the shared suite see) and, in train mode, Hutchinson's unbiased estimate ``εᵀ(∂v/∂x)ε`` with one
Rademacher or Gaussian ``ε`` per row and solve (FFJORD; one vector-Jacobian product). RNODE's regularisers — the
kinetic energy ``∫‖v‖²dt`` and the Jacobian's Frobenius norm ``∫‖εᵀ∂v/∂x‖²dt`` — are integrated beside them when
:attr:`ContinuousFlow.regularize` is on, and left per row in :attr:`ContinuousFlow.regularization` after a forward
pass in train mode.

Both directions are numerical: an adaptive Runge–Kutta solve (``dopri5`` by default) to the relative and absolute
tolerances ``rtol``/``atol`` (raised to ``10·eps`` of the input's dtype where set below it), so the round trip and the
log-determinant are exact to about those tolerances, not to rounding. An adaptive solver takes one step size for the
whole batch, so a row's result depends on its batch at the level of the tolerance; a fixed-step method (``rk4`` with
``step_size``) keeps rows exactly independent.

torchdiffeq is an optional dependency (``pip install 'tractable[ode]'``), imported only when a continuous flow is built.

References:
    Neural Ordinary Differential Equations (Chen, Rubanova, Bettencourt & Duvenaud, 2018), arXiv:1806.07366.
    FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models (Grathwohl, Chen, Bettencourt,
        Sutskever & Duvenaud, 2019), arXiv:1810.01367.
    Fourier Features Let Networks Learn High Frequency Functions in Low Dimensional Domains (Tancik et al., 2020),
        arXiv:2006.10739.
    How to train your neural ODE: the world of Jacobian and kinetic regularization (Finlay, Jacobsen, Nurbekyan &
        Oberman, 2020), arXiv:2002.02798.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP
from .base import Transform, check_features

#: The one line a missing torchdiffeq gives.
INSTALL = "continuous flows need torchdiffeq, which is not installed: pip install 'tractable[ode]'"
ESTIMATORS = ("hutchinson", "exact")
NOISES = ("rademacher", "gaussian")


def torchdiffeq() -> ModuleType:
    """The torchdiffeq module, or an ``ImportError`` of one line naming the install command."""
    try:
        import torchdiffeq as module
    except ImportError:
        raise ImportError(INSTALL) from None
    return module


class VectorField(nn.Module):
    """``v(t, x, c)``: an MLP on ``x``, a Fourier embedding of ``t`` (``cos kπt, sin kπt``, ``k = 1..freqs``; ``t``
    itself when ``freqs = 0``) and the context. Its last layer starts at zero, so the flow starts as the identity.

    With ``space_freqs > 0`` the MLP also reads random Fourier features of ``x``: ``cos xB, sin xB`` for a fixed
    ``(features, space_freqs)`` matrix ``B`` of ``N(0, space_scale²)`` entries, drawn once at construction and saved
    with the module (Tancik et al., 2020). An MLP on ``x`` alone is biased towards smooth functions; the features let
    the field turn sharply, which a density with edges (checkerboard, thin rings) needs near the data end of the flow.
    ``space_scale`` is in the units of ``x`` (standardised data: about the inverse of the sharpest length scale).

    Args:
        features: dimension of ``x``.
        hidden: width of each hidden layer.
        blocks: number of hidden layers.
        context_features: width of the context (0: none).
        freqs: number of time frequencies.
        activation: a smooth activation name (``tanh``, ``softplus``, ``silu``): the trace's gradient involves the
            activation's second derivative, and ELU's jump there costs adaptive solvers steps and accuracy.
        space_freqs: number of random Fourier features of ``x`` (0: none).
        space_scale: standard deviation of their frequencies.

    Example:
        >>> import torch
        >>> from tractable.transforms.continuous import VectorField
        >>> VectorField(2, hidden=16)(torch.tensor(0.5), torch.randn(3, 2)).shape
        torch.Size([3, 2])
    """

    def __init__(self, features: int, *, hidden: int = 64, blocks: int = 2, context_features: int = 0,
                 freqs: int = 3, activation: str = "tanh", space_freqs: int = 0, space_scale: float = 1.0):
        super().__init__()
        if freqs < 0 or space_freqs < 0:
            raise ValueError(f"expected freqs >= 0 and space_freqs >= 0, got {freqs}, {space_freqs}")
        if not (math.isfinite(space_scale) and space_scale > 0):
            raise ValueError(f"expected a positive finite space_scale, got {space_scale}")
        self.features, self.context_features = features, context_features
        dtype = torch.get_default_dtype()
        self.register_buffer("freqs", torch.arange(1, freqs + 1, dtype=dtype) * math.pi)
        # None when unused: nothing drawn from the RNG, nothing in the state dict (fields saved without it load)
        self.register_buffer("space", torch.randn(features, space_freqs, dtype=dtype) * space_scale
                             if space_freqs else None)
        width = features + 2 * space_freqs + (2 * freqs if freqs else 1)
        self.net = MLP(width, features, hidden=hidden, blocks=blocks, context_features=context_features,
                       activation=activation)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        t = t.to(x).expand(x.shape[:-1]).unsqueeze(-1)
        emb = torch.cat([torch.cos(self.freqs * t), torch.sin(self.freqs * t)], -1) if len(self.freqs) else t
        parts = [x, emb]
        if self.space is not None:
            proj = x @ self.space
            parts[1:1] = [torch.cos(proj), torch.sin(proj)]
        return self.net(torch.cat(parts, -1), context)


class _Dynamics(nn.Module):
    """The augmented right-hand side ``(x, a[, kinetic, frobenius]) -> (v, tr ∂v/∂x[, ‖v‖², ‖εᵀ∂v/∂x‖²])``."""

    def __init__(self, field: nn.Module, context: Tensor | None, noise: Tensor | None, graph: bool, sign: float):
        super().__init__()
        self.field, self.context, self.noise, self.graph, self.sign = field, context, noise, graph, sign
        self.nfe = 0

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        self.nfe += 1
        x = state[0]
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            v = self.field(t, x, self.context)
            if self.noise is None:  # the exact trace: one autograd pass per feature
                div = sum(torch.autograd.grad(v[:, i].sum(), x, create_graph=self.graph, retain_graph=True)[0][:, i]
                          for i in range(x.shape[-1]))
                vjp = None
            else:  # Hutchinson: εᵀ(∂v/∂x)ε from one vector-Jacobian product
                vjp = torch.autograd.grad(v, x, self.noise, create_graph=self.graph,
                                          retain_graph=self.graph or len(state) > 2)[0]
                div = (vjp * self.noise).sum(-1)
        out = [v, div]
        if len(state) > 2:  # RNODE's integrands, signed so that the accumulators end positive in either direction
            out += [self.sign * (v * v).sum(-1), self.sign * (vjp * vjp).sum(-1)]
        if not self.graph:
            out = [o.detach() for o in out]
        return tuple(out)


class ContinuousFlow(Transform):
    """A continuous normalizing flow ``dx/dt = v(t, x, c)``: forward integrates data (``t = 1``) to latent (``t = 0``).

    Numerical both ways (an ODE solve to ``rtol``/``atol``); the log-determinant is the integrated trace of
    ``∂v/∂x``, exact in eval mode and Hutchinson's estimate in train mode with ``estimator="hutchinson"`` (the
    default). Identity at initialisation (the field's last layer is zero).

    Args:
        features: dimension of the data.
        field: the vector field, a module ``(t, x, context) -> v``; ``None``: a :class:`VectorField` of the
            ``hidden``, ``blocks``, ``freqs``, ``activation`` and ``context_features`` given.
        hidden: width of the default field's hidden layers.
        blocks: number of hidden layers of the default field.
        context_features: width of the context.
        freqs: time frequencies of the default field.
        activation: activation of the default field.
        method: a torchdiffeq method (``dopri5``, ``rk4``, ``euler``, ...).
        rtol: relative tolerance of an adaptive method.
        atol: absolute tolerance of an adaptive method.
        step_size: the step of a fixed-step method (``rk4``, ``euler``, ``midpoint``).
        adjoint: backpropagate by the adjoint ODE (memory constant in the number of steps; gradients flow to the
            field's parameters, not to the context).
        estimator: the trace in train mode: ``hutchinson`` (stochastic, one pass) or ``exact`` (``features`` passes).
        noise: Hutchinson's probe: ``rademacher`` or ``gaussian``.
        space_freqs: random Fourier features of ``x`` in the default field (:class:`VectorField`).
        space_scale: the standard deviation of their frequencies.

    Attributes:
        regularize: integrate RNODE's kinetic energy and Jacobian Frobenius norm in train-mode forward passes.
        regularization: after such a pass, ``(kinetic, frobenius)``, each of shape ``(batch,)``; else ``None``.
        nfe: the number of field evaluations of the last solve.

    Example:
        >>> import torch
        >>> from tractable.transforms.continuous import ContinuousFlow
        >>> cnf = ContinuousFlow(2, hidden=16).eval()
        >>> z, ladj = cnf(torch.randn(5, 2))
        >>> z.shape, ladj.shape
        (torch.Size([5, 2]), torch.Size([5]))

    References:
        FFJORD (Grathwohl et al., 2019), arXiv:1810.01367; Neural ODEs (Chen et al., 2018), arXiv:1806.07366;
        RNODE (Finlay et al., 2020), arXiv:2002.02798.
    """

    def __init__(self, features: int, field: nn.Module | None = None, *, hidden: int = 64, blocks: int = 2,
                 context_features: int = 0, freqs: int = 3, activation: str = "tanh", method: str = "dopri5",
                 rtol: float = 1e-5, atol: float = 1e-5, step_size: float | None = None, adjoint: bool = False,
                 estimator: str = "hutchinson", noise: str = "rademacher", space_freqs: int = 0,
                 space_scale: float = 1.0):
        super().__init__()
        torchdiffeq()  # fail at construction, in one line, when it is missing
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        if estimator not in ESTIMATORS or noise not in NOISES:
            raise ValueError(f"expected estimator in {ESTIMATORS} and noise in {NOISES}, got {estimator!r}, {noise!r}")
        if not (rtol > 0 and atol > 0) or (step_size is not None and not step_size > 0):
            raise ValueError(f"expected positive rtol, atol and step_size, got {rtol}, {atol}, {step_size}")
        self.features, self.context_features = features, context_features
        self.field = field if field is not None else VectorField(
            features, hidden=hidden, blocks=blocks, context_features=context_features, freqs=freqs,
            activation=activation, space_freqs=space_freqs, space_scale=space_scale)
        self.method, self.rtol, self.atol, self.step_size = method, rtol, atol, step_size
        self.adjoint, self.estimator, self.noise = adjoint, estimator, noise
        self.regularize = False
        self.regularization: tuple[Tensor, Tensor] | None = None
        self.nfe = 0

    def _probe(self, x: Tensor) -> Tensor:
        if self.noise == "gaussian":
            return torch.randn_like(x)
        return torch.randint(0, 2, x.shape, device=x.device).to(x.dtype).mul_(2).sub_(1)

    # Outside torch.compile's graph: an adaptive solver takes as many steps as the values ask for, and FFJORD's
    # trace estimate differentiates its vector-Jacobian products again (create_graph), which compiled autograd
    # does not support.
    @torch.compiler.disable
    def _solve(self, x: Tensor, context: Tensor | None, start: float, end: float) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        if self.context_features and context is None:
            raise ValueError(f"expected a context of shape (batch, {self.context_features}), got None")
        shape = x.shape
        x = x.reshape(-1, self.features)
        if context is not None and self.context_features:
            context = context.reshape(-1, context.shape[-1])
        else:
            context = None
        stochastic = self.training and self.estimator == "hutchinson"
        regularize = self.training and self.regularize and start > end
        noise = self._probe(x) if stochastic or regularize else None
        dynamics = _Dynamics(self.field, context, noise, torch.is_grad_enabled(), 1.0 if end > start else -1.0)
        if regularize and noise is not None and not stochastic:  # the exact trace, but a probe for the Frobenius term
            dynamics.noise, exact = noise, True
        else:
            exact = False
        if exact:
            dynamics = _ExactWithProbe(dynamics)
        zero = x.new_zeros(x.shape[0])
        state = (x, zero, zero, zero) if regularize else (x, zero)
        eps = 10 * torch.finfo(x.dtype).eps
        times = torch.tensor([start, end], dtype=x.dtype, device=x.device)
        options = {"step_size": self.step_size} if self.step_size is not None else None
        kwargs = {"rtol": max(self.rtol, eps), "atol": max(self.atol, eps), "method": self.method, "options": options}
        ode = torchdiffeq()
        if self.adjoint and torch.is_grad_enabled():
            out = ode.odeint_adjoint(dynamics, state, times, adjoint_params=tuple(self.field.parameters()),
                                           **kwargs)
        else:
            out = ode.odeint(dynamics, state, times, **kwargs)
        self.nfe = dynamics.nfe if not exact else dynamics.inner.nfe
        final = [o[-1] for o in out]
        if regularize:
            self.regularization = (final[2].reshape(shape[:-1]), final[3].reshape(shape[:-1]))
        elif start > end:
            self.regularization = None
        return final[0].reshape(shape), final[1].reshape(shape[:-1])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._solve(x, context, 1.0, 0.0)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._solve(y, context, 0.0, 1.0)

    def extra_repr(self) -> str:
        step = f", step_size={self.step_size}" if self.step_size is not None else ""
        return (f"features={self.features}, method={self.method!r}, rtol={self.rtol}, atol={self.atol}{step}, "
                f"estimator={self.estimator!r}, adjoint={self.adjoint}")


class _ExactWithProbe(nn.Module):
    """The exact trace, with a probe kept only for RNODE's Frobenius integrand (``estimator="exact"``)."""

    def __init__(self, inner: _Dynamics):
        super().__init__()
        self.inner = inner

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        v, _, kinetic, frobenius = self.inner(t, state)
        noise, self.inner.noise = self.inner.noise, None
        try:
            _, div = self.inner(t, state[:2])
        finally:
            self.inner.noise = noise
        return v, div, kinetic, frobenius


__all__ = ["ContinuousFlow", "VectorField", "torchdiffeq"]
