"""The mathematics: invertible transforms returning ``(output, log|det J|)``, one family a file."""

from .autoregressive import MaskedAffineAutoregressive, MaskedAutoregressive, MaskedSplineAutoregressive
from .base import Compose, Inverse, LayerStack, Transform, check_features
from .conv import InvertibleConv1x1
from .coupling import AdditiveCoupling, AffineCoupling, Coupling, coupling_mask
from .elementwise import ElementwiseAffine, Logit, Sigmoid
from .image_coupling import ImageAffineCoupling, ImageCoupling
from .linear import LULinear, Permutation, RandomPermutation, ReversePermutation
from .logistic_mixture import MixtureLogisticCoupling, mixture_logit_cdf
from .normalization import ActNorm, BatchNorm
from .numerics import newton_refine, solve_increasing, solve_tanh_shift
from .planar import Planar, Radial
from .reshape import FactorOut, Squeeze, Squeezed, channel_mask, checkerboard_mask
from .splines import RQSplineMap, rational_quadratic, spline_knots
from .sylvester import Sylvester
from .univariate import AdditiveMap, AffineMap, ElementwiseMap

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AdditiveMap",
    "AffineCoupling",
    "AffineMap",
    "BatchNorm",
    "Compose",
    "Coupling",
    "ElementwiseAffine",
    "ElementwiseMap",
    # image layers
    "FactorOut",
    "ImageAffineCoupling",
    "ImageCoupling",
    "Inverse",
    "InvertibleConv1x1",
    "LULinear",
    "LayerStack",
    "Logit",
    "MaskedAffineAutoregressive",
    "MaskedAutoregressive",
    "MaskedSplineAutoregressive",
    "MixtureLogisticCoupling",
    "Permutation",
    "Planar",
    "RQSplineMap",
    "Radial",
    "RandomPermutation",
    "ReversePermutation",
    "Sigmoid",
    "Squeeze",
    "Squeezed",
    "Sylvester",
    "Transform",
    "channel_mask",
    "check_features",
    "checkerboard_mask",
    "coupling_mask",
    "mixture_logit_cdf",
    "newton_refine",
    "rational_quadratic",
    "solve_increasing",
    "solve_tanh_shift",
    "spline_knots",
]
