"""Ready architectures built from keyword arguments."""

from .planar import FLOW_TYPES, PlanarFlow

__all__ = ["FLOW_TYPES", "PlanarFlow"]
