"""The base of the 2D toy data sets (:mod:`tractable.targets.toy`): the :class:`ToyDataset` interface and the float64
CPU sampling helpers every set uses, so the same seed gives the same points in every dtype."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def check_points(x: Tensor, name: str) -> None:
    if x.dim() != 2 or x.shape[-1] != 2:
        raise ValueError(f"data set {name!r} expects points of shape (batch, 2), got {tuple(x.shape)}")


class ToyDataset:
    """A 2D data distribution: ``sample`` always; ``log_prob`` and ``entropy`` where known exactly (else ``None``).

    Subclasses implement :meth:`_sample` (float64, CPU) and, where exact, ``log_prob`` and ``entropy``.
    """

    name: str = "toy"
    features: int = 2
    box: tuple[float, float] = (-4.0, 4.0)
    #: The normalized log-density of each row, or ``None`` for the visual-only sets.
    log_prob: Callable[[Tensor], Tensor] | None = None

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> Tensor:
        """``n`` points of shape ``(n, 2)``; the same seeded CPU ``generator`` state gives the same points."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"expected a positive integer number of samples, got {n!r}")
        return self._sample(n, generator).to(dtype=dtype, device=device)

    @property
    def entropy(self) -> float | None:
        """The differential entropy ``-E[log p(x)]`` in nats, or ``None`` when the density is not known exactly."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def uniform(n: int, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, dtype=torch.float64, generator=g)


def normal(*shape: int, g: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=g)
