"""Suite cases for the circular splines (angles in ``[-π, π)``): couplings, autoregressive layers, NCSF stacks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from cases import randomised

from tractable import Transform
from tractable.models.ncsf import NCSF
from tractable.transforms.circular import CircularSplineCoupling, MaskedCircularSplineAutoregressive

_TORUS = (-math.pi, math.pi)
_MASK = torch.tensor([True, False, True])

TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "circular-coupling": lambda: randomised(CircularSplineCoupling(_MASK, bins=5, hidden=16), 0.3),
    "circular-ar": lambda: randomised(MaskedCircularSplineAutoregressive(3, bins=5, hidden=16), 0.3),
    "ncsf-2d": lambda: randomised(NCSF(2, layers=3, hidden=8, bins=6).transform, 0.3),
    "ncsf-ar": lambda: randomised(NCSF(3, layers=2, hidden=8, bins=4, autoregressive=True).transform, 0.3),
}

CONDITIONAL: dict[str, tuple[Callable[[], Transform], int]] = {
    "circular-coupling-conditional": (
        lambda: randomised(CircularSplineCoupling(_MASK, bins=4, hidden=8, context_features=2), 0.3), 2),
    "ncsf-ar-conditional": (lambda: randomised(NCSF(2, layers=2, hidden=8, context_features=1,
                                                    autoregressive=True).transform, 0.3), 1),
}

AT_INIT: dict[str, Callable[[], Transform]] = {
    "circular-coupling": lambda: CircularSplineCoupling(_MASK),
    "circular-ar": lambda: MaskedCircularSplineAutoregressive(3),
    "ncsf": lambda: NCSF(2).transform,
    "ncsf-ar": lambda: NCSF(3, autoregressive=True).transform,
}

DOMAINS = {name: (_TORUS, _TORUS) for name in [*TRANSFORMS, *CONDITIONAL]}
