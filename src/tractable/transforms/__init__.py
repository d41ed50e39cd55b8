"""The mathematics: invertible transforms returning ``(output, log|det J|)``, one family a file."""

from .autoregressive import MaskedAffineAutoregressive, MaskedAutoregressive, MaskedSplineAutoregressive
from .base import Compose, Inverse, LayerStack, Transform, check_features
from .coupling import AdditiveCoupling, AffineCoupling, Coupling, coupling_mask
from .elementwise import ElementwiseAffine, Logit, Sigmoid
from .linear import LULinear, Permutation, RandomPermutation, ReversePermutation
from .normalization import ActNorm, BatchNorm
from .numerics import newton_refine, solve_increasing, solve_tanh_shift
from .planar import Planar, Radial
from .splines import RQSplineMap, rational_quadratic, spline_knots
from .sylvester import Sylvester
from .univariate import AdditiveMap, AffineMap, ElementwiseMap

__all__ = [
    "ActNorm", "AdditiveCoupling", "AdditiveMap", "AffineCoupling", "AffineMap", "BatchNorm", "Compose", "Coupling",
    "ElementwiseAffine", "ElementwiseMap", "Inverse", "LULinear", "LayerStack", "Logit",
    "MaskedAffineAutoregressive", "MaskedAutoregressive", "MaskedSplineAutoregressive", "Permutation", "Planar",
    "RQSplineMap", "Radial", "RandomPermutation", "ReversePermutation", "Sigmoid", "Sylvester", "Transform",
    "check_features", "coupling_mask", "newton_refine", "rational_quadratic", "solve_increasing",
    "solve_tanh_shift", "spline_knots",
]
