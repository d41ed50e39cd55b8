"""The mathematics: invertible transforms returning ``(output, log|det J|)``, one family a file."""

from .autoregressive import MaskedAffineAutoregressive, MaskedAutoregressive, MaskedSplineAutoregressive
from .base import Compose, Inverse, LayerStack, Transform, check_features
from .bnaf import BlockNeuralAutoregressive
from .conv import InvertibleConv1x1
from .coupling import AdditiveCoupling, AffineCoupling, Coupling, mlp_conditioner
from .elementwise import ElementwiseAffine, Logit, Sigmoid, StandardizeTransform
from .image_coupling import ImageAffineCoupling, MixtureLogisticCoupling, resnet_conditioner
from .linear import (
    LU_INITS,
    LULinear,
    LUTransform,
    Permutation,
    RandomPermutation,
    ReversePermutation,
    WhitenTransform,
)
from .logistic_mixture import LogisticMixtureMap, mixture_logit_cdf
from .maps import AdditiveMap, AffineMap, ElementwiseMap
from .neural import DeepSigmoidalMap, IntegralMap
from .normalization import ActNorm, BatchNorm
from .numerics import newton_refine, solve_increasing, solve_tanh_shift
from .planar import Planar, Radial
from .reshape import FactorOut, Squeeze, Squeezed, channel_mask, checkerboard_mask
from .residual import ResidualBlock
from .splines import RQSplineMap, rational_quadratic, spline_knots
from .splits import IMAGE_SPLITS, ImageSplit, Split, VectorSplit, coupling_mask
from .sylvester import Sylvester

__all__ = [
    "IMAGE_SPLITS",
    "LU_INITS",
    "ActNorm",
    "AdditiveCoupling",
    "AdditiveMap",
    "AffineCoupling",
    "AffineMap",
    "BatchNorm",
    "BlockNeuralAutoregressive",
    "Compose",
    "Coupling",
    "DeepSigmoidalMap",
    "ElementwiseAffine",
    "ElementwiseMap",
    "FactorOut",
    "ImageAffineCoupling",
    "ImageSplit",
    "IntegralMap",
    "Inverse",
    "InvertibleConv1x1",
    "LULinear",
    "LUTransform",
    "LayerStack",
    "LogisticMixtureMap",
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
    "ResidualBlock",
    "ReversePermutation",
    "Sigmoid",
    "Split",
    "Squeeze",
    "Squeezed",
    "StandardizeTransform",
    "Sylvester",
    "Transform",
    "VectorSplit",
    "WhitenTransform",
    "channel_mask",
    "check_features",
    "checkerboard_mask",
    "coupling_mask",
    "mixture_logit_cdf",
    "mlp_conditioner",
    "newton_refine",
    "rational_quadratic",
    "resnet_conditioner",
    "solve_increasing",
    "solve_tanh_shift",
    "spline_knots",
]
