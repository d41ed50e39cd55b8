"""The mathematics: invertible transforms returning ``(output, log|det J|)``, one family a file."""

from .base import Compose, Inverse, Transform, check_features
from .numerics import newton_refine, solve_increasing, solve_tanh_shift
from .planar import Planar, Radial
from .sylvester import Sylvester

__all__ = [
    "Compose", "Inverse", "Planar", "Radial", "Sylvester", "Transform",
    "check_features", "newton_refine", "solve_increasing", "solve_tanh_shift",
]
