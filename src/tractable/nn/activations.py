"""The activations of the conditioner networks, by name, defined once for every network.

Functional forms, so a network applies them without a module call per layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: Activations by name.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "leaky_relu": F.leaky_relu,
    "softplus": F.softplus,
}


#: In-place forms, for a linear layer's fresh output: its backward does not save that output, so overwriting it loses
#: nothing and spares a new buffer per layer.
IN_PLACE: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu_, "tanh": torch.tanh_}


def activation_fn(name: str, *, in_place: bool = False) -> Callable[[Tensor], Tensor]:
    """The activation called ``name`` (with ``in_place``, its in-place form where there is one, for an output no one
    else holds); a ``ValueError`` naming the known ones otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return IN_PLACE.get(name, ACTIVATIONS[name]) if in_place else ACTIVATIONS[name]


__all__ = ["ACTIVATIONS", "IN_PLACE", "activation_fn"]
