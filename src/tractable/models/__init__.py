"""Ready architectures built from keyword arguments, each a :class:`~tractable.Flow`."""

from .image_flow import ImageFlow
from .image_registry import IMAGE_DESCRIPTIONS, IMAGE_MODELS, build_image_model
from .maf import IAF, MAF
from .multiscale import FlowPlusPlus, Glow, ImageRealNVP, build_multiscale
from .naf import BNAF, NAF, UNAF
from .nsf import NSF
from .permutations import PERMUTATION_ALIASES, PERMUTATIONS, check_permutation, coupling_masks, layer_orders
from .planar import FLOW_TYPES, PlanarFlow
from .realnvp import COUPLINGS, RealNVP
from .registry import DESCRIPTIONS, MODELS
from .resflow import ResidualFlow

__all__ = [
    "BNAF",
    "COUPLINGS",
    "DESCRIPTIONS",
    "FLOW_TYPES",
    "IAF",
    "IMAGE_DESCRIPTIONS",
    "IMAGE_MODELS",
    "MAF",
    "MODELS",
    "NAF",
    "NSF",
    "PERMUTATIONS",
    "PERMUTATION_ALIASES",
    "UNAF",
    "FlowPlusPlus",
    "Glow",
    "ImageFlow",
    "ImageRealNVP",
    "PlanarFlow",
    "RealNVP",
    "ResidualFlow",
    "build_image_model",
    "build_multiscale",
    "check_permutation",
    "coupling_masks",
    "layer_orders",
]
