"""Ready architectures built from keyword arguments, each a :class:`~tractable.Flow`."""

from .image_flow import ImageFlow
from .image_registry import IMAGE_MODELS, build_image_model
from .maf import IAF, MAF, layer_orders
from .multiscale import FlowPlusPlus, Glow, ImageRealNVP, build_multiscale
from .nsf import NSF, coupling_masks
from .planar import FLOW_TYPES, PlanarFlow
from .realnvp import COUPLINGS, PERMUTATIONS, RealNVP

__all__ = [
    "COUPLINGS",
    "FLOW_TYPES",
    "IAF",
    "IMAGE_MODELS",
    "MAF",
    "NSF",
    "PERMUTATIONS",
    "FlowPlusPlus",
    "Glow",
    "ImageFlow",
    "ImageRealNVP",
    "PlanarFlow",
    "RealNVP",
    "build_image_model",
    "build_multiscale",
    "coupling_masks",
    "layer_orders",
]
