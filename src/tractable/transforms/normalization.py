"""Normalization layers as bijections: ActNorm (Glow) and the batch-normalization bijector (RealNVP, MAF).

Both are per-feature affine maps whose statistics come from data, written in the normalizing direction
``y = (x - μ) / σ · γ + β`` form, so their ``ladj`` is the same for every row of a batch.

References:
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017), arXiv:1705.07057.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .base import Transform, check_features


def feature_moments(x: Tensor, axis: int, reduce: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The mean and (biased) variance of ``x`` along every dimension but ``axis``, one pair per index of ``axis``.

    Args:
        x: the batch.
        axis: the feature dimension (the others are averaged over).
        reduce: maps a tensor of per-process sums to the sums over every process (e.g. an all-reduce sum): the
            moments are then those of the batches of every process together. Two passes (the global mean, then the
            squared deviations from it), so the variance keeps its precision where the mean is large.
    """
    axis = axis % x.dim()
    dims = tuple(d for d in range(x.dim()) if d != axis)
    if reduce is None:
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        return mean, var
    shape = [-1 if d == axis else 1 for d in range(x.dim())]
    count = torch.tensor([float(x.numel() // x.shape[axis])], dtype=x.dtype, device=x.device)
    total = reduce(torch.cat([x.sum(dims), count]))
    mean = total[:-1] / total[-1]
    var = reduce(((x - mean.view(shape)) ** 2).sum(dims)) / total[-1]
    return mean, var


class ActNorm(Transform):
    """Per-feature (per-channel) affine normalization ``y = (x - loc) · exp(-log_scale)`` with data-dependent init.

    On the first ``forward`` call in training mode, ``loc`` and ``log_scale`` are set from that batch by
    :meth:`data_statistics` (per-feature mean and ``log std``), so the layer's output on that batch has zero mean and
    unit variance; afterwards they are ordinary trainable parameters. :meth:`initialize` does the same explicitly (e.g.
    on a larger batch), and :meth:`reducing` makes the statistics those of a batch spread over several processes. The
    ``initialized`` flag is a buffer, so it survives ``state_dict`` save/load and DDP's buffer broadcast (a loaded
    layer is not re-initialised).

    Before initialisation, ``forward`` in eval mode and ``inverse`` in any mode use the current parameters, i.e. the
    identity for a fresh layer (so sampling from an untrained flow works); they never initialise.

    Both directions are analytic; ``ladj = -Σ log_scale`` per vector, times ``H·W`` for images.

    Args:
        features: number of features (channels for images).
        event_dims: 1 for vectors ``(..., features)``; 3 for images ``(..., features, H, W)``, with one ``loc`` and
            ``log_scale`` per channel, statistics over batch and spatial positions.
        eps: added to the variance before the square root (keeps a constant feature finite).

    Example:
        >>> import torch
        >>> from tractable.transforms.normalization import ActNorm
        >>> t = ActNorm(3)
        >>> y, ladj = t(5 + 2 * torch.randn(1000, 3))  # first training call: data-dependent initialisation
        >>> bool(y.mean(0).abs().max() < 1e-5), bool(t.initialized)
        (True, True)

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039, §3.1.
    """

    def __init__(self, features: int, *, event_dims: int = 1, eps: float = 1e-6):
        super().__init__()
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        if event_dims < 1:
            raise ValueError(f"expected event_dims >= 1 (1: vectors, 3: images), got {event_dims}")
        self.features, self.event_dims, self.eps = features, event_dims, eps
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # a host-side mirror of `initialized`, so a warm layer never synchronises to read it
        self._reduce: Callable[[Tensor], Tensor] | None = None

    def _check(self, x: Tensor) -> int:
        """Validate the shape; return the number of positions per feature in one event (``H·W``, or 1)."""
        k = self.event_dims
        if x.dim() <= k or x.shape[-k] != self.features:
            trailing = ", ".join(["features=" + str(self.features)] + ["..."] * (k - 1))
            raise ValueError(f"expected input of shape (batch, {trailing}), got input of shape {tuple(x.shape)}")
        return math.prod(x.shape[x.dim() - k + 1 :])

    def _view(self, p: Tensor) -> Tensor:
        return p.view(self.features, *([1] * (self.event_dims - 1)))

    def data_statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-feature ``(mean, std)`` of ``x`` over every dimension but the feature one (``std = √(var + eps)``);
        within :meth:`reducing`, over the batches of every process."""
        mean, var = feature_moments(x, x.dim() - self.event_dims, self._reduce)
        return mean, torch.sqrt(var + self.eps)

    @contextmanager
    def reducing(self, reduce: Callable[[Tensor], Tensor]) -> Iterator[None]:
        """Within the block, the initialisation statistics are computed from sums that ``reduce`` combines across
        processes (e.g. an all-reduce sum), so every process sets the values one process would set from the whole
        global batch.

        Args:
            reduce: maps a tensor of per-process sums to the sums over every process (same shape).
        """
        self._reduce = reduce
        try:
            yield
        finally:
            self._reduce = None

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``loc`` and ``log_scale`` from the batch ``x`` so that it maps to zero mean and unit variance."""
        self._check(x)
        mean, std = self.data_statistics(x.detach())
        self.loc.copy_(mean)
        self.log_scale.copy_(torch.log(std))
        self.initialized.fill_(True)
        self._ready = True

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = False  # re-read the loaded flag on the next call

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        positions = self._check(x)
        if not self._ready:
            if bool(self.initialized):
                self._ready = True
            elif self.training:
                self.initialize(x)
        inv = torch.exp(-self.log_scale)
        y = torch.addcmul(self._view(-self.loc * inv), x, self._view(inv))
        return y, (-positions * self.log_scale.sum()).expand(x.shape[: x.dim() - self.event_dims])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        positions = self._check(y)
        x = torch.addcmul(self._view(self.loc), y, self._view(torch.exp(self.log_scale)))
        return x, (positions * self.log_scale.sum()).expand(y.shape[: y.dim() - self.event_dims])

    def extra_repr(self) -> str:
        return f"features={self.features}" + (f", event_dims={self.event_dims}" if self.event_dims != 1 else "")


class BatchNorm(Transform):
    """The batch-normalization bijector ``y = (x - μ) / √(σ² + eps) · exp(log_gamma) + beta`` (RealNVP, MAF).

    In training mode ``μ, σ²`` are the batch's per-feature mean and (biased) variance, and the running buffers are
    updated as ``running ← (1 - momentum) · running + momentum · batch``; in eval mode the running statistics are
    used. The ``ladj`` is computed from the statistics used, ``Σ (log_gamma - ½ log(σ² + eps))``, i.e. the batch is
    treated as fixed (the standard convention of RealNVP and MAF; gradients still flow through the batch statistics).

    Directions: ``forward`` as above. ``inverse`` always uses the *running* statistics (the batch statistics of the
    data are unknown when sampling), so it inverts the eval-mode forward; in training mode the round trip holds only
    once the running statistics have converged. Use the flow in ``eval()`` mode to sample and evaluate densities.

    Args:
        features: number of features; inputs are ``(..., features)`` with statistics over all batch dimensions.
        momentum: weight of the current batch in the running statistics.
        eps: added to the variance.

    Example:
        >>> import torch
        >>> from tractable.transforms.normalization import BatchNorm
        >>> t = BatchNorm(2)
        >>> y, ladj = t(3 + 2 * torch.randn(500, 2))  # training mode: batch statistics
        >>> bool(y.mean(0).abs().max() < 1e-5)
        True
        >>> t = t.eval()
        >>> x = torch.randn(4, 2)
        >>> bool(torch.allclose(t.inverse(t(x)[0])[0], x, atol=1e-5))
        True

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803, §3.7.
        Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017), arXiv:1705.07057.
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        if not 0.0 <= momentum <= 1.0 or not eps > 0:
            raise ValueError(f"expected 0 <= momentum <= 1 and eps > 0, got momentum={momentum}, eps={eps}")
        self.features, self.momentum, self.eps = features, momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(x, self.features)
        if self.training:
            var, mean = torch.var_mean(x.reshape(-1, self.features), 0, correction=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            var, mean = self.running_var, self.running_mean
        log_scale = self.log_gamma - 0.5 * torch.log(var + self.eps)
        scale = torch.exp(log_scale)
        y = torch.addcmul(self.beta - mean * scale, x, scale)
        return y, log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_features(y, self.features)
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        inv = torch.exp(-log_scale)
        x = torch.addcmul(self.running_mean - self.beta * inv, y, inv)
        return x, (-log_scale.sum()).expand(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"features={self.features}, momentum={self.momentum}, eps={self.eps}"


__all__ = ["ActNorm", "BatchNorm", "feature_moments"]
