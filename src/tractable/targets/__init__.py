"""What a flow is fitted to: unnormalized energies for reverse KL (and, later, data sets)."""

from .energies import TARGETS, U1, U2, U3, U4, Energy, GaussianMixtureEnergy, Ring, get_target
from .quadrature import grid_log_z, log_integral_2d

__all__ = [
    "TARGETS", "Energy", "GaussianMixtureEnergy", "Ring", "U1", "U2", "U3", "U4",
    "get_target", "grid_log_z", "log_integral_2d",
]
