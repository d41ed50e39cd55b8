"""Ready architectures built from keyword arguments, each a :class:`~tractable.Flow`."""

from .maf import IAF, MAF, layer_orders
from .nsf import NSF, coupling_masks
from .planar import FLOW_TYPES, PlanarFlow
from .realnvp import COUPLINGS, PERMUTATIONS, RealNVP

__all__ = [
    "COUPLINGS", "FLOW_TYPES", "IAF", "MAF", "NSF", "PERMUTATIONS", "PlanarFlow", "RealNVP", "coupling_masks",
    "layer_orders",
]
