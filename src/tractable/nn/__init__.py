"""Conditioner networks: the learnable parts that map features (and context) to the parameters of a transform."""

from .activations import ACTIVATIONS, activation_fn, init_hidden_
from .attention import GatedAttention
from .convnets import GatedConv, GatedResNet, LayerNormChannels, concat_elu
from .made import MADE, hidden_degrees
from .mlp import MLP

__all__ = [
    "ACTIVATIONS", "MADE", "MLP", "GatedAttention", "GatedConv", "GatedResNet", "LayerNormChannels", "activation_fn",
    "concat_elu", "hidden_degrees", "init_hidden_",
]
