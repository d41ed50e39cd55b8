"""tractable: normalizing flows with exact, tractable densities, in PyTorch.

The public API is re-exported here; see the README for a tour.
"""

from .distributions import DiagonalGaussian, Distribution, GaussianMixture, StandardNormal, make_base
from .flow import Flow, FlowDistribution
from .models import PlanarFlow
from .objectives import (
    annealing,
    ess_fraction,
    evaluate_reverse,
    forward_kl,
    log_z_estimate,
    reverse_kl,
)
from .targets import TARGETS, U1, U2, U3, U4, Energy, GaussianMixtureEnergy, Ring, get_target
from .transforms import Compose, Inverse, Planar, Radial, Sylvester, Transform

__version__ = "0.1.0"

__all__ = [
    "Compose", "DiagonalGaussian", "Distribution", "Energy", "Flow", "FlowDistribution", "GaussianMixture",
    "GaussianMixtureEnergy", "Inverse", "Planar", "PlanarFlow", "Radial", "Ring", "StandardNormal", "Sylvester",
    "TARGETS", "Transform", "U1", "U2", "U3", "U4", "__version__", "annealing", "ess_fraction", "evaluate_reverse",
    "forward_kl", "get_target", "log_z_estimate", "make_base", "reverse_kl",
]
