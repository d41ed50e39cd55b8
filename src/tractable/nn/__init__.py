"""Conditioner networks: the learnable parts that map features (and context) to the parameters of a transform."""

from .attention import GatedAttention
from .convnets import GatedConv, GatedResNet, LayerNormChannels, concat_elu
from .made import MADE, hidden_degrees
from .mlp import ACTIVATIONS, MLP

__all__ = [
    "ACTIVATIONS", "MADE", "MLP", "GatedAttention", "GatedConv", "GatedResNet", "LayerNormChannels", "concat_elu",
    "hidden_degrees",
]
