"""`Flow`: a base distribution pushed through a transform, with an exact log-density.

The transform's ``forward`` is the normalizing direction (data ``x`` -> latent ``z``), so
``log p(x) = log p_z(z) + log|det ∂z/∂x|`` and sampling runs the transform's ``inverse``.

A flow follows ``torch.distributions``' conventions where they apply: ``sample(sample_shape)`` and ``rsample`` take an
int, a tuple or a ``torch.Size``; any reparameterized ``torch.distributions`` base is accepted; ``flow(context)``
returns the (conditional) distribution as a :class:`FlowDistribution`, as in zuko. What has no closed form (entropy,
KL divergence, mean) is estimated by Monte Carlo on request: :meth:`Flow.entropy`, :meth:`Flow.kl`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution as TorchDistribution
from torch.distributions import constraints, register_kl

from .distributions import Distribution, as_base
from .transforms.base import Compose, Transform, checked_result

SampleShape = int | Sequence[int] | torch.Size

#: The conversion method of a module and a tensor to each floating dtype, for the messages.
_CONVERT = {torch.float64: "double()", torch.float32: "float()", torch.float16: "half()", torch.bfloat16: "bfloat16()"}


def sample_shape_of(shape: SampleShape) -> tuple[int, ...]:
    """A sample shape as a tuple: ``n`` -> ``(n,)``; a tuple, list or ``torch.Size`` as it is (``()``: one draw)."""
    try:
        dims = (operator.index(shape),) if not isinstance(shape, Sequence) else tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"expected a sample shape (an int, a tuple or a torch.Size), got {shape!r}") from None
    if isinstance(shape, bool) or any(s < 0 for s in dims):
        raise ValueError(f"expected a sample shape of non-negative ints, got {shape!r}")
    return dims


def _convert(dtype: torch.dtype, what: str) -> str:
    return f"{what}.{_CONVERT[dtype]}" if dtype in _CONVERT else f"{what}.to({dtype})"


def check_tensor(t: object, name: str = "input", what: str = "x", dtype: torch.dtype | None = None) -> None:
    """Raise a one-line ``TypeError`` naming the type and the conversion unless ``t`` is a tensor (a NumPy array or
    a list is not converted silently: its dtype, float64 for NumPy, would rarely be the flow's)."""
    if not isinstance(t, Tensor):
        module, kind = type(t).__module__.split(".")[0], type(t).__qualname__
        kind = kind if module == "builtins" else f"{module}.{kind}"
        target = "" if dtype is None else f", dtype={dtype}"
        raise TypeError(f"expected {name} as a torch.Tensor, got a {kind}; convert it with "
                         f"torch.as_tensor({what}{target})")


def check_like(t: Tensor, ref: Tensor, name: str = "input", what: str = "x") -> None:
    """Raise a one-line ``ValueError`` naming both sides and the fix unless ``t`` is a tensor of ``ref``'s dtype and
    device."""
    check_tensor(t, name, what, ref.dtype)
    if t.dtype != ref.dtype:
        fix = f"convert the flow with {_convert(t.dtype, 'flow')} or " if t.is_floating_point() else "convert "
        raise ValueError(f"expected {name} of dtype {ref.dtype} (the flow's), got {t.dtype}; {fix}the {name} with "
                         f"{_convert(ref.dtype, what)}")
    if t.device != ref.device:
        raise ValueError(f"expected {name} on {ref.device} (the flow's device), got {name} on {t.device}; move the "
                         f"flow with flow.to('{t.device}') or the {name} with {what}.to('{ref.device}')")


_VALUES_CHECKED: ContextVar[bool] = ContextVar("tractable_values_checked", default=False)


@contextmanager
def values_checked() -> Iterator[None]:
    """Within the block, ``log_prob`` of every flow leaves out the checks that read the input's values on the host
    (NaN; an image flow's integer levels), which a training loop made once for all its rows before the first step:
    a step on an accelerator then does not wait for the device. Shapes, dtypes and devices are still checked.

    Example:
        >>> import torch
        >>> from tractable import MAF, values_checked
        >>> flow, x = MAF(2, layers=2, hidden=8), torch.randn(4, 2)
        >>> with values_checked():  # x has been checked by the caller
        ...     flow.log_prob(x).shape
        torch.Size([4])
    """
    token = _VALUES_CHECKED.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def read_values() -> bool:
    """Whether a flow's input checks may read the input's values on the host: not while compiling (a graph has no
    host values) and not inside :func:`values_checked`."""
    return not torch.compiler.is_compiling() and not _VALUES_CHECKED.get()


def _has_nan(x: Tensor) -> bool:
    """Whether ``x`` holds a NaN: its sum is NaN when it does, and is read first because a sum runs on vectorized
    kernels (5 µs for 1024×64 floats on one CPU thread, against 84 µs for ``isnan(x).any()``); a NaN sum without a
    NaN entry (``+inf`` and ``-inf`` both present, or partial sums overflowing both ways) is settled exactly."""
    return bool(torch.isnan(x.sum())) and bool(torch.isnan(x).any())


class Flow(nn.Module):
    """A normalizing flow: ``x = T⁻¹(z)``, ``z ~ base``, with ``T`` the transform's forward (normalizing) map.

    Args:
        transform: the transform, or a list of transforms (composed in order, first applied first to data); its
            ``forward`` maps data to latent.
        base: the base distribution of the latent: a tractable :class:`~tractable.distributions.Distribution` or any
            ``torch.distributions.Distribution`` with ``rsample`` and ``log_prob`` (e.g. ``MultivariateNormal``,
            ``Independent(Normal(loc, scale), 1)``), which is wrapped in
            :class:`~tractable.distributions.TorchBase` (fixed parameters).
        validate: check the input's shape, dtype and device and reject NaN with a clear ``ValueError`` (one host
            synchronisation per call on an accelerator: inside :func:`values_checked`, as in tractable's training
            loops for rows they checked up front, the NaN check is left out). The transform's return contract is
            checked always (it costs a few attribute reads).

    Example:
        >>> import torch
        >>> from tractable import Flow, Inverse, Planar, StandardNormal
        >>> flow = Flow(Inverse(Planar(2, layers=8)), StandardNormal(2))
        >>> x, log_q = flow.sample_and_log_prob(4)
        >>> bool(torch.allclose(flow.log_prob(x), log_q, atol=1e-4))
        True
        >>> tuple(flow.sample((2, 3)).shape), tuple(flow().sample((5,)).shape)
        ((2, 3, 2), (5, 2))

    References:
        Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021), arXiv:1912.02762.
    """

    def __init__(self, transform: Transform | Sequence[Transform], base: Distribution | TorchDistribution, *,
                 validate: bool = True):
        super().__init__()
        if isinstance(transform, (list, tuple)):
            transform = Compose(*transform)
        if not isinstance(transform, Transform):
            raise TypeError(f"expected a Transform (or a list of them), got {type(transform).__name__}")
        self.transform, self.base, self.validate = transform, as_base(base), validate

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one event (one data point)."""
        return self.base.event_shape

    def _reference(self) -> Tensor | None:
        """A tensor of the flow's dtype and device (the base's; else the first floating parameter or buffer)."""
        try:
            return self.base._reference()
        except NotImplementedError:
            tensors = (*self.parameters(), *self.buffers())
            return next((t for t in tensors if t.is_floating_point()), None)

    def _check_input(self, x: Tensor, context: Tensor | None = None) -> None:
        if not self.validate:
            return
        ref = self._reference()
        check_tensor(x, dtype=None if ref is None else ref.dtype)
        k = len(self.event_shape)
        if x.dim() <= k or tuple(x.shape[-k:]) != self.event_shape:
            raise ValueError(
                f"expected input of shape (batch, {', '.join(map(str, self.event_shape))}), "
                f"got input of shape {tuple(x.shape)}"
            )
        if ref is not None:
            check_like(x, ref)
            if context is not None:
                check_like(context, ref, "context", "context")
        # the NaN check reads the values on the host: not in a compiled graph, nor for rows checked up front
        if read_values() and _has_nan(x):
            bad = int(torch.isnan(x).flatten(1).any(1).sum()) if x.dim() > 1 else 1
            raise ValueError(f"input contains NaN ({bad} of {x.shape[0]} rows); expected finite values")

    def _context_for(self, n: int, context: Tensor | None) -> Tensor | None:
        if context is None:
            return None
        if self.validate and (ref := self._reference()) is not None:
            check_like(context, ref, "context", "context")
        given = tuple(context.shape)
        # a vector model knows its context width (a plain Flow or an image model leaves it to its layers)
        width = getattr(self, "context_features", None) if len(self.event_shape) == 1 else None
        if isinstance(width, int) and width > 0 and (context.dim() not in (1, 2) or context.shape[-1] != width):
            raise ValueError(f"expected a context of shape ({width},) for every sample, or (1 or {n}, {width}), got "
                             f"shape {given}")
        if context.dim() == 1:
            context = context.unsqueeze(0)
        if context.shape[0] == 1 and n != 1:
            return context.expand(n, *context.shape[1:])
        if context.shape[0] != n:
            raise ValueError(
                f"expected a context of batch size 1 or {n} (the number of samples), got shape {tuple(context.shape)}"
            )
        return context

    def forward(self, context: Tensor | None = None) -> FlowDistribution:
        """The flow as a ``torch.distributions.Distribution``, conditioned on ``context`` when given (zuko's
        ``flow(c)``): ``flow().sample((n,))``, ``flow(c).log_prob(x)``, ``flow().rsample()``.

        For log-densities of data call :meth:`log_prob` (``flow(x)`` does not evaluate ``x``).
        """
        return FlowDistribution(self, context)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of each row of ``x`` (shape ``(batch,)``)."""
        self._check_input(x, context)
        z, ladj = checked_result(self.transform(x, context), self.transform, "forward",
                                 batch_shape=x.shape[: x.dim() - len(self.event_shape)])
        return self.base.log_prob(z, context) + ladj

    def sample_and_log_prob(self, sample_shape: SampleShape, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterized samples of batch shape ``sample_shape`` (an int ``n`` or a shape) and their exact
        log-densities, from one pass (for reverse KL).

        ``context`` is one context (broadcast to all samples) or one per sample.
        """
        shape = sample_shape_of(sample_shape)
        n = math.prod(shape)
        context = self._context_for(n, context)
        z, log_pz = self.base.sample_and_log_prob(n, context)
        x, ladj = checked_result(self.transform.inverse(z, context), self.transform, "inverse", batch_shape=(n,))
        if shape == (n,):
            return x, log_pz - ladj
        return x.reshape(*shape, *self.event_shape), (log_pz - ladj).reshape(shape)

    def rsample(self, sample_shape: SampleShape = (), context: Tensor | None = None) -> Tensor:
        """Reparameterized samples of batch shape ``sample_shape`` (gradients flow to the parameters); ``()``: one
        event."""
        return self.sample_and_log_prob(sample_shape, context)[0]

    @torch.no_grad()
    def sample(self, sample_shape: SampleShape = (), context: Tensor | None = None, *,
               temperature: float = 1.0) -> Tensor:
        """Samples of batch shape ``sample_shape`` (``n``, ``(n,)``, ``(a, b)`` or a ``torch.Size``; ``()``: one
        event) without gradient tracking, the latent drawn at ``temperature`` ``T``.

        ``T`` scales the latent's spread around the base's mean (``z = T·ε`` for a standard normal; Glow §5):
        ``T = 1`` samples the flow itself, ``T < 1`` its more typical regions.
        """
        shape = sample_shape_of(sample_shape)
        n = math.prod(shape)
        context = self._context_for(n, context)
        z = self.base.sample(n, context, temperature=temperature)
        x, _ = checked_result(self.transform.inverse(z, context), self.transform, "inverse", batch_shape=(n,))
        return x if shape == (n,) else x.reshape(*shape, *self.event_shape)

    def distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """A ``torch.distributions.Distribution`` view of this flow (the same as ``flow(context)``)."""
        return FlowDistribution(self, context)

    def entropy(self, n: int = 10_000, context: Tensor | None = None) -> Tensor:
        """A Monte Carlo estimate of the entropy ``H(q) = −E_q[log q(x)]`` from ``n`` reparameterized samples
        (differentiable; its standard error is ``std(log q)/√n``)."""
        return -self.sample_and_log_prob(n, context)[1].mean()

    def kl(self, other: Any, n: int = 10_000, context: Tensor | None = None) -> Tensor:
        """A Monte Carlo estimate of ``KL(q‖p) = E_q[log q(x) − log p(x)]`` from ``n`` reparameterized samples of
        this flow ``q``.

        ``other`` is anything with ``log_prob(x)``: another flow (given the same ``context``), a
        ``torch.distributions.Distribution`` or a :class:`FlowDistribution`, or an unnormalized target (then the
        estimate is ``KL − log Z``).
        """
        x, log_q = self.sample_and_log_prob(n, context)
        log_p = other.log_prob(x, context) if isinstance(other, Flow) else other.log_prob(x)
        if not isinstance(log_p, Tensor) or log_p.shape != log_q.shape:
            shape = tuple(log_p.shape) if isinstance(log_p, Tensor) else type(log_p).__name__
            raise ValueError(f"expected other.log_prob of shape {tuple(log_q.shape)} (one value per sample), got "
                             f"{shape}")
        return (log_q - log_p).mean()


def _no_closed_form(what: str, instead: str) -> NotImplementedError:
    return NotImplementedError(f"a flow's {what} has no closed form; {instead}")


class FlowDistribution(TorchDistribution):
    """A ``torch.distributions.Distribution`` backed by a :class:`Flow` (event shape = the flow's event shape, batch
    shape ``()``); ``flow(context)`` returns one.

    ``context`` is one context (broadcast to every sample) or one per row. ``sample``, ``rsample`` and
    ``rsample_and_log_prob`` take ``torch.distributions``' ``sample_shape`` (or an int). What has no closed form —
    ``entropy()``, ``mean``, ``variance``, ``cdf``, ``kl_divergence`` — raises ``NotImplementedError`` naming the Monte
    Carlo estimate to use instead (:meth:`Flow.entropy`, :meth:`Flow.kl`, sample moments).

    Example:
        >>> import torch
        >>> from tractable import NSF
        >>> flow = NSF(2, layers=2, hidden=16)
        >>> dist = flow.distribution()  # a torch.distributions.Distribution
        >>> x = dist.rsample((3, 4))
        >>> tuple(x.shape), tuple(dist.log_prob(x).shape)
        ((3, 4, 2), (3, 4))
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, flow: Flow, context: Tensor | None = None):
        self.flow, self.context = flow, context
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size(flow.event_shape), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        k = len(self.event_shape)
        if value.dim() < k or tuple(value.shape[value.dim() - k :]) != tuple(self.event_shape):
            raise ValueError(f"expected a value of shape (..., {', '.join(map(str, self.event_shape))}), got a value "
                             f"of shape {tuple(value.shape)}")
        batch = value.shape[: value.dim() - k]
        flat = value.reshape(-1, *self.event_shape)
        return self.flow.log_prob(flat, self.context).reshape(batch)

    def rsample(self, sample_shape: SampleShape = torch.Size()) -> Tensor:  # noqa: B008
        return self.flow.rsample(sample_shape, self.context)

    def sample(self, sample_shape: SampleShape = torch.Size()) -> Tensor:  # noqa: B008
        with torch.no_grad():
            return self.rsample(sample_shape)

    def rsample_and_log_prob(self, sample_shape: SampleShape = torch.Size()) -> tuple[Tensor, Tensor]:  # noqa: B008
        """Samples and their log-densities from one pass (as zuko's)."""
        return self.flow.sample_and_log_prob(sample_shape, self.context)

    def entropy(self) -> Tensor:
        raise _no_closed_form("entropy", "use flow.entropy(n), a Monte Carlo estimate from n samples")

    @property
    def mean(self) -> Tensor:
        raise _no_closed_form("mean", "estimate it from samples, e.g. flow.sample(n).mean(0)")

    @property
    def mode(self) -> Tensor:
        raise _no_closed_form("mode", "search it with gradient ascent on flow.log_prob, or take the best of "
                                      "flow.sample(n) by flow.log_prob")

    @property
    def variance(self) -> Tensor:
        raise _no_closed_form("variance", "estimate it from samples, e.g. flow.sample(n).var(0)")

    @property
    def stddev(self) -> Tensor:
        raise _no_closed_form("standard deviation", "estimate it from samples, e.g. flow.sample(n).std(0)")

    def cdf(self, value: Tensor) -> Tensor:
        raise _no_closed_form("CDF", "estimate it from samples, e.g. (flow.sample(n) <= value).all(-1).float().mean()")

    def icdf(self, value: Tensor) -> Tensor:
        raise _no_closed_form("inverse CDF", "use sample quantiles, e.g. flow.sample(n).quantile(q, dim=0)")

    def enumerate_support(self, expand: bool = True) -> Tensor:
        raise NotImplementedError("a flow is a continuous distribution; it has no support to enumerate")

    def expand(self, batch_shape: SampleShape, _instance: Any = None) -> FlowDistribution:
        raise NotImplementedError(
            "a FlowDistribution has batch shape () and cannot be expanded; draw a batch with sample((n,)), or give "
            "one context per row: flow(context).log_prob(x)"
        )


def _kl_flow(p: TorchDistribution, q: TorchDistribution) -> Tensor:
    raise NotImplementedError(
        "the KL divergence of a flow has no closed form; use flow.kl(other, n), a Monte Carlo estimate of "
        "KL(flow‖other) from n samples of the flow"
    )


# Registered for both argument orders and the pair, so torch's dispatch finds an unambiguous, explanatory match.
register_kl(FlowDistribution, TorchDistribution)(_kl_flow)
register_kl(TorchDistribution, FlowDistribution)(_kl_flow)
register_kl(FlowDistribution, FlowDistribution)(_kl_flow)
