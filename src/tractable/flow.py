"""`Flow`: a base distribution pushed through a transform, with an exact log-density.

The transform's ``forward`` is the normalizing direction (data ``x`` -> latent ``z``), so
``log p(x) = log p_z(z) + log|det ∂z/∂x|`` and sampling runs the transform's ``inverse``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution as TorchDistribution
from torch.distributions import constraints

from .distributions import Distribution
from .transforms.base import Transform


class Flow(nn.Module):
    """A normalizing flow: ``x = T⁻¹(z)``, ``z ~ base``, with ``T`` the transform's forward (normalizing) map.

    Args:
        transform: the transform; its ``forward`` maps data to latent.
        base: the base distribution of the latent.
        validate: check input shapes and reject NaN inputs with a clear ``ValueError`` (one host synchronisation per
            call on an accelerator; turn off in tight loops once the pipeline is trusted).

    Example:
        >>> import torch
        >>> from tractable import Flow, Inverse, Planar, StandardNormal
        >>> flow = Flow(Inverse(Planar(2, layers=8)), StandardNormal(2))
        >>> x, log_q = flow.sample_and_log_prob(4)
        >>> bool(torch.allclose(flow.log_prob(x), log_q, atol=1e-4))
        True

    References:
        Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021), arXiv:1912.02762.
    """

    def __init__(self, transform: Transform, base: Distribution, *, validate: bool = True):
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"expected a Transform, got {type(transform).__name__}")
        if not isinstance(base, Distribution):
            raise TypeError(f"expected a tractable Distribution as base, got {type(base).__name__}")
        self.transform, self.base, self.validate = transform, base, validate

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one event (one data point)."""
        return self.base.event_shape

    def _check_input(self, x: Tensor) -> None:
        if not self.validate:
            return
        k = len(self.event_shape)
        if x.dim() <= k or tuple(x.shape[-k:]) != self.event_shape:
            raise ValueError(
                f"expected input of shape (batch, {', '.join(map(str, self.event_shape))}), "
                f"got input of shape {tuple(x.shape)}"
            )
        if torch.isnan(x).any():
            bad = int(torch.isnan(x).flatten(1).any(1).sum()) if x.dim() > 1 else 1
            raise ValueError(f"input contains NaN ({bad} of {x.shape[0]} rows); expected finite values")

    def _context_for(self, n: int, context: Tensor | None) -> Tensor | None:
        if context is None:
            return None
        if context.dim() == 1:
            context = context.unsqueeze(0)
        if context.shape[0] == 1 and n != 1:
            return context.expand(n, *context.shape[1:])
        if context.shape[0] != n:
            raise ValueError(
                f"expected a context of batch size 1 or {n} (the number of samples), got shape {tuple(context.shape)}"
            )
        return context

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of each row of ``x`` (shape ``(batch,)``)."""
        self._check_input(x)
        z, ladj = self.transform(x, context)
        return self.base.log_prob(z, context) + ladj

    def sample_and_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized samples and their exact log-densities from one pass (for reverse KL).

        ``context`` is one context (broadcast to all samples) or ``n`` contexts, one per sample.
        """
        context = self._context_for(n, context)
        z, log_pz = self.base.sample_and_log_prob(n, context)
        x, ladj = self.transform.inverse(z, context)
        return x, log_pz - ladj

    def rsample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` reparameterized samples (gradients flow to the parameters)."""
        return self.sample_and_log_prob(n, context)[0]

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, *, temperature: float = 1.0) -> Tensor:
        """``n`` samples without gradient tracking, the latent drawn at ``temperature`` ``T``.

        ``T`` scales the latent's spread around the base's mean (``z = T·ε`` for a standard normal; Glow §5):
        ``T = 1`` samples the flow itself, ``T < 1`` its more typical regions.
        """
        context = self._context_for(n, context)
        z = self.base.sample(n, context, temperature=temperature)
        return self.transform.inverse(z, context)[0]

    def distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """A ``torch.distributions.Distribution`` view of this flow (for code that expects one)."""
        return FlowDistribution(self, context)


class FlowDistribution(TorchDistribution):
    """A ``torch.distributions.Distribution`` backed by a :class:`Flow` (event shape = the flow's event shape)."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, flow: Flow, context: Tensor | None = None):
        self.flow, self.context = flow, context
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size(flow.event_shape), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        k = len(self.event_shape)
        batch = value.shape[: value.dim() - k]
        flat = value.reshape(-1, *self.event_shape)
        return self.flow.log_prob(flat, self.context).reshape(batch)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        n = math.prod(sample_shape)
        return self.flow.rsample(n, self.context).reshape(*sample_shape, *self.event_shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        with torch.no_grad():
            return self.rsample(sample_shape)
