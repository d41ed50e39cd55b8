"""Suite cases for the invertible residual blocks (i-ResNet, Residual Flows), in evaluation mode: the exact
log-determinant and the fixed-point inverse with its Newton step are what the suite checks. The training-mode
Russian-roulette estimator is tested for unbiasedness in tests/test_residual.py."""

from __future__ import annotations

from collections.abc import Callable

from cases import randomised

from tractable import Transform
from tractable.models.resflow import ResidualFlow
from tractable.transforms.residual import ResidualBlock

TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "residual-2d": lambda: randomised(ResidualBlock(2, hidden=8), 0.5).eval(),
    # large noise: every linear layer then sits at its Lipschitz bound
    "residual-3d-deep": lambda: randomised(ResidualBlock(3, hidden=8, blocks=3, coefficient=0.9), 2.0).eval(),
    "residual-1d": lambda: randomised(ResidualBlock(1, hidden=4, blocks=1), 1.0).eval(),
    "resflow-stack": lambda: randomised(ResidualFlow(2, layers=2, hidden=8).transform, 0.5).eval(),
}

NUMERICAL = list(TRANSFORMS)

AT_INIT: dict[str, Callable[[], Transform]] = {
    "residual": lambda: ResidualBlock(3, hidden=16),
    "residual-exact": lambda: ResidualBlock(2, hidden=16, logdet="exact").eval(),
}
