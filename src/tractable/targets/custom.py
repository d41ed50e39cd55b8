"""Your own target for variational inference: anything with a log-density becomes an :class:`Energy`.

:func:`as_target` accepts an :class:`Energy` (returned as it is), a ``torch.distributions.Distribution`` (normalized:
``log Z = 0``, so the exact ``KL(q‖p)`` is reported), an object with ``log_prob(x)`` and ``features``, or a plain
function ``x -> log p̃(x)`` (the features then come from the argument or from the flow it is fitted with).
:func:`~tractable.objectives.reverse_kl`, :func:`~tractable.training.fit_reverse_kl` and
:func:`~tractable.objectives.evaluate_reverse` call it on their ``target``, so each of these works there directly::

    def log_posterior(beta):            # (batch, 31) -> (batch,)
        return log_likelihood(beta) - 0.5 * (beta**2).sum(-1)

    fit_reverse_kl(flow, log_posterior, steps=3000)
    evaluate_reverse(flow, as_target(log_posterior, features=31))

:func:`check_log_prob` is the shape check they run on every batch: ``log_prob`` must return one value per sample,
shape ``(batch,)``; ``(batch, 1)`` is refused at once with a one-line error, not broadcast into a wrong loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..distributions import map_tensors
from .energies import Energy


class CallableTarget(Energy):
    """An unnormalized log-density given as a function ``log_prob(x)`` of points ``x`` of shape ``(batch, features)``.

    Args:
        log_prob: the function; returns ``log p̃(x)`` of shape ``(batch,)``.
        features: the dimension of ``x`` (``None``: taken from the flow it is fitted with).
        log_z: ``log ∫ p̃`` when known (then the exact KL is reported), else ``None``.
        name: a name for messages and progress (default: the function's name).
        box: the square ``[lo, hi]²`` of the pictures of a 2D target.

    Example:
        >>> import math, torch
        >>> target = CallableTarget(lambda x: -0.5 * (x**2).sum(-1), features=3, log_z=1.5 * math.log(2 * math.pi))
        >>> target.log_prob(torch.zeros(4, 3)).shape, round(target.log_z, 4)
        (torch.Size([4]), 2.7568)
    """

    def __init__(self, log_prob: Callable[[Tensor], Tensor], features: int | None = None, *,
                 log_z: float | None = None, name: str | None = None, box: tuple[float, float] = (-4.0, 4.0)):
        if not callable(log_prob):
            raise TypeError(f"expected a callable log-density x -> log p(x), got {type(log_prob).__name__}")
        if features is not None and (isinstance(features, bool) or not isinstance(features, int) or features < 1):
            raise ValueError(f"expected features to be a positive integer, got {features!r}")
        self.fn, self.features, self._log_z = log_prob, features, log_z
        self.name = name or getattr(log_prob, "__name__", None) or type(log_prob).__name__
        self.box = self.quadrature_box = tuple(box)

    def log_prob(self, z: Tensor) -> Tensor:
        if self.features is not None and (z.dim() < 2 or z.shape[-1] != self.features):
            raise ValueError(f"target {self.name!r} expects points of shape (batch, {self.features}), got "
                             f"{tuple(z.shape)}")
        return self.fn(z)

    def energy(self, z: Tensor) -> Tensor:
        return -self.log_prob(z)

    @property
    def log_z(self) -> float | None:
        return self._log_z

    def __repr__(self) -> str:
        return f"CallableTarget({self.name}, features={self.features})"


def _reference_of(dist: torch.distributions.Distribution) -> Tensor | None:
    """A floating parameter of a distribution (of the wrapped one for ``Independent`` and the like)."""
    for value in vars(dist).values():
        if isinstance(value, Tensor) and value.is_floating_point():
            return value
        if isinstance(value, torch.distributions.Distribution) and (inner := _reference_of(value)) is not None:
            return inner
    return None


class DistributionTarget(Energy):
    """A ``torch.distributions.Distribution`` over vectors as a target; normalized, so ``log Z = 0``.

    Points are evaluated in the distribution's own dtype when they differ (a float32 distribution as the target of a
    float64 flow works; the result comes back in the points' dtype), and on the points' device (a copy of the
    distribution is moved there once).

    Args:
        dist: a distribution of batch shape ``()`` and event shape ``(features,)`` (wrap a batch of scalars as
            ``Independent(Normal(loc, scale), 1)``).
        name: a name for messages (default: the class name).

    Example:
        >>> import torch
        >>> from tractable import DistributionTarget
        >>> normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
        >>> target = DistributionTarget(normal)
        >>> target.features, target.log_z, round(target.log_prob(torch.zeros(1, 2)).item(), 4)
        (2, 0.0, -1.8379)
    """

    def __init__(self, dist: torch.distributions.Distribution, *, name: str | None = None):
        kind = type(dist).__name__
        if dist.batch_shape != torch.Size() or len(dist.event_shape) != 1:
            hint = (f"; wrap it as Independent({kind}(...), 1)" if len(dist.batch_shape) == 1 and not dist.event_shape
                    else "")
            raise ValueError(f"expected a target distribution of batch shape () and event shape (features,), got "
                             f"{kind} of batch shape {tuple(dist.batch_shape)} and event shape "
                             f"{tuple(dist.event_shape)}{hint}")
        self.dist, self.features, self.name = dist, int(dist.event_shape[0]), name or kind
        ref = _reference_of(dist)
        self._dtype, self._device = (ref.dtype, ref.device) if ref is not None else (None, None)
        self._moved: dict[torch.device, torch.distributions.Distribution] = {}

    def log_prob(self, z: Tensor) -> Tensor:
        if z.dim() < 2 or z.shape[-1] != self.features:
            raise ValueError(f"target {self.name!r} expects points of shape (batch, {self.features}), got "
                             f"{tuple(z.shape)}")
        dist = self.dist
        if self._device is not None and z.device != self._device:  # a copy on the points' device, made once
            if z.device not in self._moved:
                self._moved[z.device] = map_tensors(self.dist, lambda t: t.to(z.device))
            dist = self._moved[z.device]
        if self._dtype is not None and z.dtype != self._dtype:
            return dist.log_prob(z.to(self._dtype)).to(z.dtype)
        return dist.log_prob(z)

    def energy(self, z: Tensor) -> Tensor:
        return -self.log_prob(z)

    @property
    def log_z(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"DistributionTarget({self.dist!r})"


def as_target(target: Any, features: int | None = None, *, log_z: float | None = None,
              name: str | None = None) -> Energy:
    """``target`` as an :class:`Energy`, the form every reverse-KL function takes.

    Args:
        target: an :class:`Energy` (returned as it is); a ``torch.distributions.Distribution`` (``log Z = 0``); an
            object with a ``log_prob(x)`` method (and optionally ``features`` and ``log_z`` attributes); or a function
            ``x -> log p̃(x)`` mapping ``(batch, features)`` to ``(batch,)``.
        features: the dimension of ``x``; checked against the target's own where it has one.
        log_z: the log-normalizer of a function or object target when known.
        name: a name for messages.

    Raises:
        TypeError: for anything without a log-density.
        ValueError: when ``features`` disagrees with the target's.

    Example:
        >>> import torch
        >>> from tractable import as_target
        >>> target = as_target(lambda x: -0.5 * (x**2).sum(-1), features=2)  # a function x -> log p̃(x)
        >>> target.features, target.log_z, target.log_prob(torch.zeros(1, 2)).tolist()
        (2, None, [-0.0])
    """
    if isinstance(target, Energy):
        wrapped = target
    elif isinstance(target, torch.distributions.Distribution):
        wrapped = DistributionTarget(target, name=name)
    elif callable(getattr(target, "log_prob", None)):
        own = getattr(target, "features", None)
        wrapped = CallableTarget(target.log_prob, features if own is None else own,
                                 log_z=getattr(target, "log_z", log_z), name=name or type(target).__name__)
    elif callable(target):
        wrapped = CallableTarget(target, features, log_z=log_z, name=name)
    else:
        raise TypeError(f"expected a target with a log-density: an Energy, a torch.distributions.Distribution, an "
                        f"object with log_prob(x) or a function x -> log p(x); got {type(target).__name__}")
    if features is not None and wrapped.features is not None and wrapped.features != features:
        raise ValueError(f"expected a target of {features} features, got {wrapped.name!r} of {wrapped.features}")
    return wrapped


def check_log_prob(target: Energy, log_p: Any, n: int) -> None:
    """Raise a one-line ``ValueError`` unless ``log_p``, the target's ``log_prob`` of ``n`` points, has shape
    ``(n,)`` (one value per point), with a hint for the usual mistakes."""
    if isinstance(log_p, Tensor) and log_p.shape == (n,):
        return
    got = f"shape {tuple(log_p.shape)}" if isinstance(log_p, Tensor) else f"a {type(log_p).__name__}"
    hint = ""
    if isinstance(log_p, Tensor) and log_p.shape == (n, 1):
        hint = "; return a 1-D tensor (e.g. .squeeze(-1))"
    elif isinstance(log_p, Tensor) and log_p.dim() == 2 and log_p.shape[0] == n:
        hint = "; sum the per-feature terms (e.g. .sum(-1))"
    elif not isinstance(log_p, Tensor):
        hint = "; return a torch tensor (computed with torch, so gradients reach the samples)"
    raise ValueError(
        f"target {target.name!r}: expected log_prob of shape ({n},), one value per sample, got {got}{hint}"
    )


__all__ = ["CallableTarget", "DistributionTarget", "as_target", "check_log_prob"]
