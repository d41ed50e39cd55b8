"""The permutation vocabulary of every model: how consecutive layers take turns over the features.

``permutation`` takes one of :data:`PERMUTATIONS`:

* ``"alternate"`` (the default): couplings swap the two halves of the features from one layer to the next (no
  permutation layer); autoregressive layers reverse their order every other layer.
* ``"random"``: a random order per layer (autoregressive), a random half per pair of coupling layers (NSF), or a fixed
  random permutation before every coupling but the first (RealNVP); seed the global RNG for reproducibility.

``"reverse"`` is accepted everywhere as a documented alias of ``"alternate"`` (the orders of consecutive layers are
reversals of each other).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..transforms.splits import coupling_mask

#: The permutation names every model accepts.
PERMUTATIONS = ("alternate", "random")
#: Accepted aliases and the name they stand for.
PERMUTATION_ALIASES = {"reverse": "alternate"}


def check_permutation(permutation: str) -> str:
    """The canonical name of ``permutation`` (``"reverse"`` gives ``"alternate"``); a ``ValueError`` if unknown."""
    name = PERMUTATION_ALIASES.get(permutation, permutation)
    if name not in PERMUTATIONS:
        expected = ", ".join((*PERMUTATIONS, *PERMUTATION_ALIASES))
        raise ValueError(f"unknown permutation {permutation!r}; expected one of {expected}")
    return name


def layer_orders(features: int, layers: int, permutation: str) -> list[Tensor]:
    """The autoregressive order of each of ``layers`` stacked layers.

    ``alternate`` alternates ``0..D-1`` and ``D-1..0`` (so every feature is conditioned on every other within two
    layers); ``random`` draws each order with ``torch.randperm``.
    """
    if check_permutation(permutation) == "random":
        return [torch.randperm(features) for _ in range(layers)]
    forward = torch.arange(features)
    return [forward if k % 2 == 0 else forward.flip(0) for k in range(layers)]


def coupling_masks(features: int, layers: int, permutation: str) -> list[Tensor]:
    """The boolean masks (``True`` = passes unchanged) of ``layers`` stacked couplings.

    ``alternate``: the two contiguous halves take turns (no permutation layer, the fastest path). ``random``: each
    pair of layers draws a random half of the features and uses it, then its complement, which has the effect of a
    random permutation between every two layers at no cost.
    """
    if check_permutation(permutation) == "alternate":
        return [coupling_mask(features, "half", k % 2) for k in range(layers)]
    masks: list[Tensor] = []
    for k in range(layers):
        if k % 2 == 0:
            mask = torch.zeros(features, dtype=torch.bool)
            mask[torch.randperm(features)[: features // 2]] = True
        masks.append(mask if k % 2 == 0 else ~mask)
    return masks


__all__ = ["PERMUTATIONS", "PERMUTATION_ALIASES", "check_permutation", "coupling_masks", "layer_orders"]
