"""Base distributions as modules: they move with ``.to()``, convert with ``.double()`` and save in ``state_dict``.

Every distribution has an ``event_shape`` and the methods ``log_prob(x, context=None)`` (event dimensions summed),
``sample(shape, context=None, *, temperature=1.0)`` and ``sample_and_log_prob(n, context=None)``; both draws are
reparameterized (the pathwise gradient flows to the parameters), as reverse-KL fitting needs. They accept ``context``
and ignore it. The ``temperature`` ``T`` scales the spread of the draw around the mean (``μ + T·σ·ε``; Glow §5), so
``T < 1`` gives the "typical" samples of the papers' figures.

Any ``torch.distributions.Distribution`` with ``rsample`` and ``log_prob`` serves as a base too: :func:`as_base` wraps
it in :class:`TorchBase` (``Flow`` does so itself).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)


def _batch(shape: int | Sequence[int], temperature: float) -> tuple[int, ...]:
    """The batch shape of a draw (``n`` or a shape), with the temperature checked."""
    if not temperature >= 0:
        raise ValueError(f"expected temperature >= 0, got {temperature}")
    return (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"expected a positive event shape, got {shape}")
    return shape


class Distribution(nn.Module):
    """A base distribution over events of shape ``event_shape``.

    Example:
        >>> import torch
        >>> from tractable import Distribution, GaussianMixture
        >>> base = GaussianMixture(2, components=3)  # every base is a Distribution, an nn.Module
        >>> isinstance(base, Distribution), base.event_shape
        (True, (2,))
        >>> x = base.sample(4, temperature=0.5)
        >>> tuple(base.log_prob(x).shape)
        (4,)
    """

    event_shape: tuple[int, ...]

    def _reference(self) -> Tensor:
        """A tensor whose dtype and device the samples take."""
        raise NotImplementedError(f"{type(self).__name__} must implement _reference(), a tensor of the samples' dtype "
                                  "and device (e.g. a zero buffer)")

    def _check(self, x: Tensor) -> None:
        k = len(self.event_shape)
        if x.dim() <= k or tuple(x.shape[-k:]) != self.event_shape:
            raise ValueError(
                f"expected input of shape (batch, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )

    def _sum_event(self, t: Tensor) -> Tensor:
        return t.flatten(-len(self.event_shape)).sum(-1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-density of each event in ``x``; shape ``x.shape[:-len(event_shape)]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement log_prob(x, context=None)")

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        """Samples of batch shape ``shape`` (an int ``n`` or a shape), reparameterized, at temperature ``T``.

        The latent's spread around its mean is scaled by ``T`` (``T = 1``: the distribution itself).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement sample(shape, context=None, *, "
                                  "temperature=1.0)")

    def sample_and_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized samples and their log-densities."""
        x = self.sample(n)
        return x, self.log_prob(x)


class _Standard(Distribution):
    """A parameter-free distribution over events of shape ``shape`` (a zero buffer carries its dtype and device)."""

    def __init__(self, shape: int | Sequence[int]):
        super().__init__()
        self.event_shape = _shape(shape)
        self.register_buffer("_zero", torch.zeros(()))

    def _reference(self) -> Tensor:
        return self._zero

    def extra_repr(self) -> str:
        return f"shape={self.event_shape}"


class StandardNormal(_Standard):
    """The standard normal ``N(0, I)`` over events of shape ``shape``.

    Args:
        shape: the event shape, e.g. ``2`` or ``(3, 32, 32)``.

    Example:
        >>> import torch
        >>> from tractable import StandardNormal
        >>> base = StandardNormal(2)
        >>> round(base.log_prob(torch.zeros(1, 2)).item(), 4)  # -log(2π)
        -1.8379
        >>> tuple(StandardNormal((3, 8, 8)).sample(4).shape)
        (4, 3, 8, 8)
    """

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        return -0.5 * self._sum_event(x * x) - 0.5 * math.prod(self.event_shape) * _LOG_2PI

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        batch = _batch(shape, temperature)
        z = torch.randn((*batch, *self.event_shape), dtype=self._zero.dtype, device=self._zero.device)
        return z if temperature == 1 else temperature * z


class StandardLogistic(_Standard):
    """The standard logistic distribution over events of shape ``shape``, ``log p(x) = Σ -x - 2 softplus(-x)``.

    Its sigmoid pushforward is exactly uniform on the unit cube, so a variational dequantizer that starts from
    logistic noise starts as uniform dequantization (the UvA tutorial's choice).

    Args:
        shape: the event shape.

    Example:
        >>> import torch
        >>> from tractable import StandardLogistic
        >>> base = StandardLogistic(2)
        >>> round(base.log_prob(torch.zeros(1, 2)).item(), 4)  # 2 log(1/4)
        -2.7726
        >>> u = torch.sigmoid(base.sample(10_000))  # uniform on the unit square
        >>> bool(((u > 0) & (u < 1)).all())
        True
    """

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        return self._sum_event(-x - 2 * torch.nn.functional.softplus(-x))

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        batch = _batch(shape, temperature)
        u = torch.rand((*batch, *self.event_shape), dtype=self._zero.dtype, device=self._zero.device)
        u = u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps / 2)
        z = torch.log(u) - torch.log1p(-u)
        return z if temperature == 1 else temperature * z


class DiagonalGaussian(Distribution):
    """A Gaussian ``N(μ, diag(σ²))`` with learnable mean and log-scale (initialised at ``N(0, I)``).

    Args:
        shape: the event shape.
        trainable: learn ``μ`` and ``log σ`` (default) or keep them fixed as buffers.

    Example:
        >>> import torch
        >>> from tractable import DiagonalGaussian
        >>> base = DiagonalGaussian(2)
        >>> x, log_p = base.sample_and_log_prob(4)
        >>> tuple(x.shape), bool(torch.allclose(base.log_prob(x), log_p))
        ((4, 2), True)
        >>> sum(p.numel() for p in base.parameters())  # a mean and a log-scale per feature
        4
    """

    def __init__(self, shape: int | Sequence[int], *, trainable: bool = True):
        super().__init__()
        self.event_shape = _shape(shape)
        loc, log_scale = torch.zeros(self.event_shape), torch.zeros(self.event_shape)
        if trainable:
            self.loc, self.log_scale = nn.Parameter(loc), nn.Parameter(log_scale)
        else:
            self.register_buffer("loc", loc)
            self.register_buffer("log_scale", log_scale)

    def _reference(self) -> Tensor:
        return self.loc

    def _log_prob_eps(self, eps: Tensor) -> Tensor:
        const = 0.5 * math.prod(self.event_shape) * _LOG_2PI
        return -0.5 * self._sum_event(eps * eps) - self.log_scale.sum() - const

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        return self._log_prob_eps((x - self.loc) * torch.exp(-self.log_scale))

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        batch = _batch(shape, temperature)
        eps = torch.randn((*batch, *self.event_shape), dtype=self.loc.dtype, device=self.loc.device)
        return torch.addcmul(self.loc, eps if temperature == 1 else temperature * eps, torch.exp(self.log_scale))

    def sample_and_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        eps = torch.randn((n, *self.event_shape), dtype=self.loc.dtype, device=self.loc.device)
        return torch.addcmul(self.loc, eps, torch.exp(self.log_scale)), self._log_prob_eps(eps)

    def extra_repr(self) -> str:
        return f"shape={self.event_shape}"


class GaussianMixture(Distribution):
    """A mixture of ``components`` diagonal Gaussians over vectors, with learnable means, scales and weights.

    Samples are reparameterized within their component (means and scales receive pathwise gradients); the discrete
    choice of component is not, so in reverse-KL fitting the weights learn only through the ``log_prob`` term.
    Fix them with ``trainable_weights=False`` there.

    Args:
        features: dimension of the vectors.
        components: number of mixture components.
        spread: standard deviation of the initial means around the origin.
        trainable_weights: learn the mixture weights (initialised uniform).

    Example:
        >>> import torch
        >>> from tractable import GaussianMixture
        >>> base = GaussianMixture(2, components=3)
        >>> x, log_p = base.sample_and_log_prob(5)
        >>> tuple(x.shape), bool(torch.allclose(base.log_prob(x), log_p, atol=1e-5))
        ((5, 2), True)
    """

    def __init__(self, features: int, components: int = 4, *, spread: float = 1.0, trainable_weights: bool = True):
        super().__init__()
        if components < 1:
            raise ValueError(f"expected components >= 1, got {components}")
        self.event_shape = _shape(features)
        self.loc = nn.Parameter(spread * torch.randn(components, features))
        self.log_scale = nn.Parameter(torch.zeros(components, features))
        logits = torch.zeros(components)
        if trainable_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def _reference(self) -> Tensor:
        return self.loc

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        eps = (x.unsqueeze(-2) - self.loc) * torch.exp(-self.log_scale)
        comp = -0.5 * (eps * eps).sum(-1) - self.log_scale.sum(-1) - 0.5 * self.event_shape[0] * _LOG_2PI
        return torch.logsumexp(comp + torch.log_softmax(self.logits, -1), -1)

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        batch = _batch(shape, temperature)
        n = math.prod(batch)
        k = torch.multinomial(torch.softmax(self.logits.detach(), -1), n, replacement=True)
        eps = torch.randn((n, *self.event_shape), dtype=self.loc.dtype, device=self.loc.device)
        x = torch.addcmul(self.loc[k], eps if temperature == 1 else temperature * eps, torch.exp(self.log_scale[k]))
        return x.view(*batch, *self.event_shape)

    @torch.no_grad()
    def fit_em(self, x: Tensor, *, folds: int = 5, restarts: int = 10, iterations: int = 200, floor: float = 1e-6,
               max_rows: int = 2_000, seed: int = 0) -> float:
        """Set the means, scales and weights by EM on the rows ``x``: maximum likelihood for a diagonal mixture, each
        variance at least ``floor``, the best of ``restarts`` runs whose means start at distinct random rows. With
        ``folds >= 2`` the number of distinct components ``k`` (1 to ``components``) is the one with the lowest mean
        held-out NLL in ``folds``-fold cross-validation on ``x``, and the ``components`` slots repeat the ``k``
        fitted ones with their weights shared (the same density; ``k = 1`` is the Gaussian of ``x``). Beyond
        ``max_rows`` rows a random subset of them is used. Returns the mean NLL of the rows used under the result.

        A flow whose base is this mixture then starts as the mixture fitted to the rows as the flow maps them.
        """
        slots, n = self.loc.shape[0], x.shape[0]
        if n < slots:
            raise ValueError(f"expected at least {slots} rows for {slots} components, got {n}")
        x = x.detach().to(torch.float64)
        g = torch.Generator().manual_seed(seed)
        if n > max_rows:
            x, n = x[torch.randperm(n, generator=g)[:max_rows]], max_rows
        k = slots
        if folds >= 2:
            held = torch.randperm(n, generator=g).chunk(folds)
            scores = []
            for j in range(1, slots + 1):
                total = 0.0
                for h in held:
                    keep = torch.ones(n, dtype=torch.bool)
                    keep[h] = False
                    try:
                        fit = _em(x[keep], j, restarts, iterations, floor, g) if n - len(h) >= j else None
                    except ValueError:
                        fit = None
                    total += math.inf if fit is None else -float(_mixture_log_prob(x[h], *fit[1:]).sum())
                scores.append(total if math.isfinite(total) else math.inf)
            k = 1 + min(range(slots), key=scores.__getitem__)
        nll, loc, var, log_w = _em(x, k, restarts, iterations, floor, g)
        repeat = torch.arange(slots) % k
        counts = torch.bincount(repeat, minlength=k).to(x.dtype)
        self.loc.copy_(loc[repeat])
        self.log_scale.copy_(0.5 * var[repeat].log())
        self.logits.copy_((log_w - counts.log())[repeat])
        return nll

    def extra_repr(self) -> str:
        return f"features={self.event_shape[0]}, components={self.loc.shape[0]}"


def _mixture_log_prob(x: Tensor, loc: Tensor, var: Tensor, log_w: Tensor) -> Tensor:
    """The log-density of each row of ``x`` under a diagonal mixture (variances ``var``, log-weights ``log_w``)."""
    comp = (-0.5 * ((x.unsqueeze(1) - loc) ** 2 / var).sum(-1) - 0.5 * var.log().sum(-1)
            - 0.5 * x.shape[1] * _LOG_2PI + log_w)
    return torch.logsumexp(comp, -1)


def _em(x: Tensor, k: int, restarts: int, iterations: int, floor: float,
        g: torch.Generator) -> tuple[float, Tensor, Tensor, Tensor]:
    """EM for a ``k``-component diagonal mixture on ``x``: ``(mean NLL, means, variances, log-weights)``, the best
    of ``restarts`` runs (a run whose means start at ``k`` distinct random rows; variances at least ``floor``)."""
    n = x.shape[0]
    best: tuple[float, Tensor, Tensor, Tensor] | None = None
    for _ in range(restarts if k > 1 else 1):
        loc = x[torch.randperm(n, generator=g)[:k]].clone()
        var = x.var(0, unbiased=False).clamp_min(floor).expand(k, -1).clone()
        log_w = torch.full((k,), -math.log(k), dtype=x.dtype)
        previous = math.inf
        for _ in range(iterations):
            comp = (-0.5 * ((x.unsqueeze(1) - loc) ** 2 / var).sum(-1) - 0.5 * var.log().sum(-1)
                    - 0.5 * x.shape[1] * _LOG_2PI + log_w)
            total = torch.logsumexp(comp, -1)
            nll = -float(total.mean())
            if previous - nll < 1e-6:
                break
            previous = nll
            r = torch.exp(comp - total.unsqueeze(-1))  # responsibilities, (n, k)
            nk = r.sum(0).clamp_min(1e-10)
            loc = (r.T @ x) / nk.unsqueeze(-1)
            var = ((r.T @ (x * x)) / nk.unsqueeze(-1) - loc * loc).clamp_min(floor)
            log_w = (nk / n).log()
        nll = -float(_mixture_log_prob(x, loc, var, log_w).mean())
        if math.isfinite(nll) and (best is None or nll < best[0]):
            best = (nll, loc, var, log_w)
    if best is None:
        raise ValueError(f"EM found no finite {k}-component mixture for these rows")
    return best


def map_tensors(dist: torch.distributions.Distribution,
                fn: Callable[[Tensor], Tensor]) -> torch.distributions.Distribution:
    """A copy of a ``torch.distributions`` object with ``fn`` applied to every tensor it holds (its parameters, cached
    values and those of the distributions it wraps): ``fn = lambda t: t.to(device)`` moves it."""
    out = copy.copy(dist)
    for key, value in vars(dist).items():
        if isinstance(value, Tensor):
            setattr(out, key, fn(value))
        elif isinstance(value, torch.distributions.Distribution):
            setattr(out, key, map_tensors(value, fn))
    return out


class TorchBase(Distribution):
    """A ``torch.distributions.Distribution`` as a base: e.g. ``MultivariateNormal(loc, cov)`` or
    ``Independent(Normal(loc, scale), 1)``.

    Its parameters are fixed (not trained; use :class:`DiagonalGaussian` for a learnable base) and not in the
    ``state_dict``; ``.to()``, ``.double()`` and ``.float()`` move and convert them with the flow. A temperature
    ``T ≠ 1`` needs the distribution's ``mean``: ``μ + T·(z − μ)``.

    Args:
        dist: the distribution; reparameterized (``has_rsample``), with a batch shape ``()`` and an event shape of
            at least one dimension.

    Example:
        >>> import torch
        >>> from torch.distributions import MultivariateNormal
        >>> from tractable import Flow, Planar, Inverse
        >>> flow = Flow(Inverse(Planar(2)), MultivariateNormal(torch.zeros(2), torch.eye(2)))
        >>> tuple(flow.sample((3,)).shape), type(flow.base).__name__
        ((3, 2), 'TorchBase')
    """

    def __init__(self, dist: torch.distributions.Distribution):
        super().__init__()
        name = type(dist).__name__
        if not dist.has_rsample:
            raise ValueError(f"expected a reparameterized base (has_rsample), got {name}, which has none")
        if dist.batch_shape != torch.Size() or not dist.event_shape:
            hint = (f"; wrap it as Independent({name}(...), {len(dist.batch_shape)})"
                    if dist.batch_shape and not dist.event_shape else "")
            raise ValueError(f"expected a base of batch shape () and a non-empty event shape, got {name} of batch "
                             f"shape {tuple(dist.batch_shape)} and event shape {tuple(dist.event_shape)}{hint}")
        self.dist = dist
        self.event_shape = tuple(dist.event_shape)
        try:  # a tensor of the samples' dtype and device, without drawing from the run's random stream
            ref = dist.mean
        except NotImplementedError:
            with torch.random.fork_rng(devices=[]):
                ref = dist.sample()
        # a buffer, so the flow's dtype and device checks read it in O(1) and it follows .to() like the rest
        self.register_buffer("_zero", torch.zeros((), dtype=ref.dtype, device=ref.device))

    def _apply(self, fn, recurse=True):
        # .to()/.double()/.cuda() reach the distribution's tensors (cached ones included), so the base follows the flow
        self.dist = map_tensors(self.dist, fn)
        return super()._apply(fn, recurse)

    def _reference(self) -> Tensor:
        return self._zero

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        return self.dist.log_prob(x)

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        batch = _batch(shape, temperature)
        z = self.dist.rsample(torch.Size(batch))
        if temperature == 1:
            return z
        try:
            mean = self.dist.mean
        except NotImplementedError:
            raise ValueError(f"a temperature needs the base's mean; {type(self.dist).__name__} has none") from None
        return mean + temperature * (z - mean)

    def sample_and_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self.dist.rsample(torch.Size((n,)))
        return z, self.dist.log_prob(z)

    def extra_repr(self) -> str:
        return repr(self.dist)


def as_base(base: Distribution | torch.distributions.Distribution) -> Distribution:
    """``base`` as a tractable :class:`Distribution`: itself, or a ``torch.distributions`` one wrapped in
    :class:`TorchBase`.

    Example:
        >>> import torch
        >>> from tractable import as_base
        >>> laplace = torch.distributions.Laplace(torch.zeros(2), torch.ones(2))
        >>> base = as_base(torch.distributions.Independent(laplace, 1))
        >>> type(base).__name__, tuple(base.sample(3).shape)
        ('TorchBase', (3, 2))
    """
    if isinstance(base, Distribution):
        return base
    if isinstance(base, torch.distributions.Distribution):
        return TorchBase(base)
    raise TypeError(f"expected a tractable Distribution or a torch.distributions.Distribution as base, got "
                    f"{type(base).__name__}")


class UniformTorus(_Standard):
    """The uniform distribution on the torus ``[-π, π)^d`` (the base of circular flows): ``log p = -d log 2π`` inside,
    ``-inf`` outside.

    Args:
        shape: the event shape (the number of angles).

    Example:
        >>> from tractable.distributions import UniformTorus
        >>> base = UniformTorus(2)
        >>> x = base.sample(4)
        >>> bool(((x >= -3.1416) & (x < 3.1416)).all()), round(float(base.log_prob(x)[0]), 4)
        (True, -3.6758)
    """

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(x)
        inside = ((x >= -math.pi) & (x <= math.pi)).flatten(-len(self.event_shape)).all(-1)
        value = -math.prod(self.event_shape) * math.log(2 * math.pi)
        return torch.where(inside, value, -math.inf).to(x.dtype)

    def sample(self, shape: int | Sequence[int], context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        batch = _batch(shape, temperature)  # the temperature has no meaning on the torus; it is checked only
        u = torch.rand((*batch, *self.event_shape), dtype=self._zero.dtype, device=self._zero.device)
        return (2 * u - 1) * math.pi


BASES = {"normal": StandardNormal, "diagonal": DiagonalGaussian, "mixture": GaussianMixture}


def make_base(name: str, features: int) -> Distribution:
    """Build a base distribution by name: ``normal``, ``diagonal`` (learnable) or ``mixture``.

    Example:
        >>> from tractable import make_base
        >>> [type(make_base(name, 2)).__name__ for name in ("normal", "diagonal", "mixture")]
        ['StandardNormal', 'DiagonalGaussian', 'GaussianMixture']
    """
    if name not in BASES:
        raise ValueError(f"unknown base distribution {name!r}; expected one of {sorted(BASES)}")
    return BASES[name](features)
