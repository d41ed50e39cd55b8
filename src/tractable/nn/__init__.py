"""Conditioner networks: the learnable parts that map features (and context) to the parameters of a transform."""

from .made import MADE, hidden_degrees
from .mlp import ACTIVATIONS, MLP

__all__ = ["ACTIVATIONS", "MADE", "MLP", "hidden_degrees"]
