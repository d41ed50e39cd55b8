"""Suite cases for the autoregressive and spline layers: MADE-based MAF/IAF/NSF-AR layers, spline couplings, stacks.

Spline cases use bounds below the suite's input range (``[-3, 3]``) so that inputs fall both inside the spline
interval and in the identity tails.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from cases import randomised

from tractable import Transform
from tractable.models.maf import IAF, MAF
from tractable.models.nsf import NSF
from tractable.transforms.autoregressive import (
    MaskedAffineAutoregressive,
    MaskedAutoregressive,
    MaskedSplineAutoregressive,
)
from tractable.transforms.coupling import Coupling, mlp_conditioner
from tractable.transforms.logistic_mixture import LogisticMixtureMap
from tractable.transforms.splines import RQSplineMap
from tractable.transforms.splits import VectorSplit

_MASK = torch.tensor([False, True, True, False])


def spline_coupling(**net: object) -> Coupling:
    split, spline = VectorSplit(_MASK), RQSplineMap(6, 2.0)
    return Coupling(split, spline, mlp_conditioner(split, spline, **net))


TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "maf-affine": lambda: randomised(MaskedAffineAutoregressive(3, hidden=16), 0.5),
    "maf-affine-order": lambda: randomised(
        MaskedAffineAutoregressive(4, hidden=8, blocks=1, order=[2, 0, 3, 1], activation="tanh"), 0.5
    ),
    "maf-spline": lambda: randomised(MaskedSplineAutoregressive(3, bins=5, bound=2.0, hidden=16), 0.2),
    "maf-spline-1d": lambda: randomised(MaskedSplineAutoregressive(1, bins=4, bound=1.5, hidden=8), 0.3),
    "spline-coupling": lambda: randomised(spline_coupling(hidden=16), 0.2),
    # tanh hidden units keep the parameters bounded for inputs of ±1e3 (the extreme-input check).
    "maf-mixture": lambda: randomised(
        MaskedAutoregressive(3, LogisticMixtureMap(3), hidden=8, activation="tanh"), 0.15
    ),
    "maf-stack": lambda: randomised(MAF(3, layers=3, hidden=8, permutation="random").transform, 0.2),
    "iaf-stack": lambda: randomised(IAF(3, layers=2, hidden=8).transform, 0.2),
    "nsf-2d": lambda: randomised(NSF(2, layers=3, hidden=8, bins=6, bound=2.5).transform, 0.2),
    "nsf-affine": lambda: randomised(NSF(2, layers=2, hidden=8, bins=6, affine=True).transform, 0.2),
    "nsf-random": lambda: randomised(NSF(4, layers=2, hidden=8, bound=2.0, permutation="random").transform, 0.2),
    "nsf-ar": lambda: randomised(NSF(3, layers=2, hidden=8, bound=2.0, autoregressive=True).transform, 0.2),
    # the passing halves' own splines: contiguous halves (one concatenation) and random masks (the gathered path)
    "nsf-passing-2d": lambda: randomised(NSF(2, layers=3, hidden=8, bins=6, bound=2.5, passing_map=True).transform,
                                         0.2),
    "nsf-passing-random": lambda: randomised(
        NSF(5, layers=2, hidden=8, bound=2.0, permutation="random", passing_map=True).transform, 0.2),
}

NUMERICAL = ["maf-mixture"]

AT_INIT: dict[str, Callable[[], Transform]] = {
    "maf-affine": lambda: MaskedAffineAutoregressive(4),
    "maf-spline": lambda: MaskedSplineAutoregressive(3),
    "maf-spline-conditional": lambda: MaskedSplineAutoregressive(3, context_features=2),
    "spline-coupling": lambda: spline_coupling(),
    "maf-mixture": lambda: MaskedAutoregressive(3, LogisticMixtureMap(4)),
    "maf": lambda: MAF(3).transform,
    "iaf": lambda: IAF(3).transform,
    "nsf": lambda: NSF(4).transform,
    "nsf-passing": lambda: NSF(5, permutation="random", passing_map=True).transform,
    "nsf-ar": lambda: NSF(3, autoregressive=True).transform,
}

CONDITIONAL: dict[str, tuple[Callable[[], Transform], int]] = {
    "maf-affine-conditional": (
        lambda: randomised(MaskedAffineAutoregressive(3, hidden=16, context_features=2), 0.5),
        2,
    ),
    "maf-affine-1d-conditional": (
        lambda: randomised(MaskedAffineAutoregressive(1, hidden=8, context_features=2), 0.5),
        2,
    ),
    "maf-spline-conditional": (
        lambda: randomised(MaskedSplineAutoregressive(2, hidden=16, bound=2.0, context_features=3), 0.2),
        3,
    ),
    "iaf-conditional": (lambda: randomised(IAF(2, layers=2, hidden=8, context_features=1).transform, 0.3), 1),
    "nsf-conditional": (lambda: randomised(NSF(3, layers=2, hidden=8, context_features=2).transform, 0.2), 2),
    "nsf-passing-conditional": (
        lambda: randomised(NSF(3, layers=2, hidden=8, context_features=2, passing_map=True).transform, 0.2), 2),
}
