"""Suite cases for the density-estimation layers: elementwise, linear, normalization, coupling, RealNVP stacks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from cases import randomised
from torch import Tensor, nn

from tractable import Compose, Transform
from tractable.models.realnvp import RealNVP
from tractable.transforms.coupling import AdditiveCoupling, AffineCoupling, Coupling, mlp_conditioner
from tractable.transforms.elementwise import ElementwiseAffine, Logit, Sigmoid, StandardizeTransform
from tractable.transforms.image_coupling import resnet_conditioner
from tractable.transforms.linear import LULinear, Permutation, RandomPermutation, ReversePermutation
from tractable.transforms.logistic_mixture import LogisticMixtureMap
from tractable.transforms.maps import AdditiveMap, AffineMap, ElementwiseMap
from tractable.transforms.normalization import ActNorm, BatchNorm
from tractable.transforms.splines import RQSplineMap
from tractable.transforms.splits import ImageSplit, VectorSplit

_UNIT = (0.0, 1.0)
_REAL = (float("-inf"), float("inf"))


def actnorm(features: int, *, event_dims: int = 1, shape: tuple[int, ...] = ()) -> Transform:
    """An ActNorm initialised on shifted, scaled random data, then moved away from that initialisation."""
    t = ActNorm(features, event_dims=event_dims)
    t.initialize(1.5 + 2 * torch.randn(64, features, *shape))
    return randomised(t, 0.3)


def batchnorm(features: int) -> Transform:
    """A BatchNorm whose running statistics saw a few batches, moved away from initialisation, in eval mode."""
    t = BatchNorm(features, momentum=0.5)
    for _ in range(3):
        t(0.5 + 3 * torch.rand(32, features))
    return randomised(t, 0.3).eval()


class UserConditioner(nn.Module):
    """A conditioner as a user would write one: any module ``(x_pass, context) -> parameters``."""

    def __init__(self, n_in: int, n_out: int, context_features: int = 0):
        super().__init__()
        self.context_features = context_features
        self.hidden = nn.Linear(n_in + context_features, 6)
        self.out = nn.Linear(6, n_out)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features and context is None:
            raise ValueError(f"expected a context of shape (batch, {self.context_features}), got None")
        h = torch.cat([x, context], -1) if self.context_features else x
        return self.out(torch.sin(self.hidden(h)))


class UserImageConditioner(nn.Module):
    """A one-convolution image conditioner a user might inject."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.conv(torch.tanh(x))


def user_coupling(mask: list[bool], elementwise: ElementwiseMap, context_features: int = 0) -> Coupling:
    split = VectorSplit(torch.tensor(mask))
    net = UserConditioner(split.n_pass, split.n_transformed * elementwise.params, context_features)
    return Coupling(split, elementwise, net)


def vector_coupling(mask: list[bool], elementwise: ElementwiseMap, **net: object) -> Coupling:
    split = VectorSplit(torch.tensor(mask))
    return Coupling(split, elementwise, mlp_conditioner(split, elementwise, **net))


def image_coupling(kind: str, channels: int, parity: int, elementwise: ElementwiseMap, user: bool = False) -> Coupling:
    split = ImageSplit(kind, channels, parity)
    net = UserImageConditioner(split.n_pass, split.n_transformed * elementwise.params) if user else \
        resnet_conditioner(split, elementwise, hidden=8, blocks=1)
    return Coupling(split, elementwise, net)


def realnvp(features: int, scale: float = 0.2, **kwargs) -> Transform:
    """The transform of a small RealNVP, its normalization layers initialised, its weights randomised, in eval mode."""
    flow = RealNVP(features, hidden=8, **kwargs)
    k = kwargs.get("context_features", 0)
    flow.transform(torch.randn(64, features), torch.randn(64, k) if k else None)  # initialise the normalization layers
    return randomised(flow.transform, scale).eval()


TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "elementwise-affine": lambda: randomised(ElementwiseAffine(3)),
    # Moderate affine maps: a float64 sigmoid keeps 1 - σ(y) to relative precision ~1e-16 / e^-|y|, so round trips
    # through it lose the 1e-6 bar beyond |y| ≈ 20.
    "sigmoid": lambda: randomised(Compose(ElementwiseAffine(3), Sigmoid(event_dims=1)), 0.3),
    "logit": lambda: randomised(Compose(Logit(event_dims=1), ElementwiseAffine(2)), 0.3),
    "logit-alpha": lambda: randomised(Compose(Logit(0.05, event_dims=1), ElementwiseAffine(3)), 0.3),
    "permutation": lambda: Permutation([2, 0, 3, 1]).double(),
    "permutation-reverse": lambda: ReversePermutation(3).double(),
    "permutation-random": lambda: randomised(Compose(RandomPermutation(5), ElementwiseAffine(5))),
    "lu-linear": lambda: randomised(LULinear(4), 0.5),
    "lu-linear-orthogonal": lambda: randomised(LULinear(5, init="orthogonal"), 0.3),
    "actnorm": lambda: actnorm(3),
    "batchnorm": lambda: batchnorm(3),
    "affine-coupling": lambda: randomised(AffineCoupling(4, hidden=16), 0.5),
    "affine-coupling-alternate": lambda: randomised(AffineCoupling(5, mask="alternate", parity=1, hidden=8), 0.5),
    "affine-coupling-2d": lambda: randomised(AffineCoupling(2, parity=1, hidden=16, blocks=1), 0.5),
    "additive-coupling": lambda: randomised(AdditiveCoupling(3, hidden=8), 0.5),
    "coupling-mask": lambda: randomised(vector_coupling([True, False, False, True, False], AffineMap(2.0),
                                                         hidden=[8, 12]), 0.5),
    "coupling-learned-bound": lambda: randomised(
        vector_coupling([True, False, False], AffineMap(1.0, learned_bound=(2,)), hidden=8), 0.5),
    "coupling-user-conditioner": lambda: randomised(user_coupling([True, False, True, False], AffineMap()), 0.5),
    "coupling-user-spline": lambda: randomised(user_coupling([False, True, True], RQSplineMap(4, 2.0)), 0.3),
    # tanh hidden units keep the mixture's parameters bounded for inputs of ±1e3 (the extreme-input check).
    "mixture-coupling": lambda: randomised(
        vector_coupling([True, False, True, False], LogisticMixtureMap(3), hidden=8, activation="tanh"), 0.15),
    "mixture-coupling-2d": lambda: randomised(
        vector_coupling([False, True], LogisticMixtureMap(4), hidden=8, activation="tanh"), 0.15),
    "standardize": lambda: StandardizeTransform([0.5, -1.0, 2.0], [0.3, 2.0, 1.5]).double(),
    "realnvp-2d": lambda: realnvp(2, layers=3),
    "realnvp-normalized": lambda: realnvp(4, layers=3, permutation="random", actnorm=True, batchnorm=True),
    "nice-reverse": lambda: realnvp(3, layers=2, coupling="additive", permutation="reverse"),
}

#: Cases whose Jacobian determinant may be negative (``ladj`` is ``log|det|``).
SIGNED = [
    "permutation",
    "permutation-reverse",
    "permutation-random",
    "lu-linear",
    "lu-linear-orthogonal",
    "realnvp-normalized",
    "nice-reverse",
]

#: Per-entry domains ``(forward input, inverse input)`` of the cases that are not bijections of the whole space.
DOMAINS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "sigmoid": (_REAL, _UNIT),
    "logit": (_UNIT, _REAL),
    "logit-alpha": (_UNIT, _REAL),
}

#: The logistic-mixture couplings invert by a bracketed Newton-bisection.
NUMERICAL = ["mixture-coupling", "mixture-coupling-2d"]

AT_INIT: dict[str, Callable[[], Transform]] = {
    "elementwise-affine": lambda: ElementwiseAffine(3),
    "lu-linear": lambda: LULinear(4),
    "batchnorm-eval": lambda: BatchNorm(3).eval(),
    "affine-coupling": lambda: AffineCoupling(4),
    "affine-coupling-conditional": lambda: AffineCoupling(4, mask="alternate", context_features=2),
    "additive-coupling": lambda: AdditiveCoupling(5, parity=1),
    "mixture-coupling": lambda: vector_coupling([True, False, True], LogisticMixtureMap(4)),
    "additive-map-coupling": lambda: vector_coupling([False, True], AdditiveMap(), hidden=8, blocks=1),
    "realnvp": lambda: RealNVP(4, layers=4).transform,
}

CONDITIONAL: dict[str, tuple[Callable[[], Transform], int]] = {
    "affine-coupling-conditional": (lambda: randomised(AffineCoupling(4, hidden=16, context_features=3), 0.5), 3),
    "additive-coupling-conditional": (
        lambda: randomised(AdditiveCoupling(3, mask="alternate", hidden=8, context_features=1), 0.5),
        1,
    ),
    "realnvp-conditional": (lambda: realnvp(3, layers=2, context_features=2, actnorm=True), 2),
    "coupling-user-conditioner-conditional": (
        lambda: randomised(user_coupling([True, False, False], AffineMap(), context_features=2), 0.5),
        2,
    ),
    "mixture-coupling-conditional": (
        lambda: randomised(vector_coupling([False, True, False], LogisticMixtureMap(3), hidden=8, context_features=2),
                           0.15),
        2,
    ),
}

#: Image-shaped cases: name -> (constructor, event shape); checked on ``(batch, *shape)`` inputs.
IMAGES: dict[str, tuple[Callable[[], Transform], tuple[int, ...]]] = {
    "actnorm-image": (lambda: actnorm(3, event_dims=3, shape=(4, 4)), (3, 4, 4)),
    "elementwise-affine-image": (lambda: randomised(ElementwiseAffine((2, 3, 3))), (2, 3, 3)),
    # Noise of 0.5, not the default 0.7: with log-scales up to ~2.5 the affine map sends inputs to -25, where
    # sigmoid(z) ~ 1e-11 and the inverse (logit of sigmoid of Logit's squeeze) cancels catastrophically (ladj
    # round trips off by up to 0.08 over 400 seeds at 0.7; at most 6e-11 at 0.5).
    "sigmoid-logit-image": (
        lambda: randomised(Compose(ElementwiseAffine((2, 2, 3)), Sigmoid(), Logit(0.01)), 0.5),
        (2, 2, 3),
    ),
    "image-coupling-user-conditioner": (
        lambda: randomised(image_coupling("channel", 3, 1, AffineMap(), user=True), 0.5),
        (3, 4, 4),
    ),
    "image-spline-coupling": (lambda: randomised(image_coupling("checkerboard", 2, 0, RQSplineMap(4, 2.0)), 0.2),
                              (2, 4, 4)),
    "image-additive-columns": (lambda: randomised(image_coupling("columns", 1, 1, AdditiveMap()), 0.5), (1, 3, 4)),
}
