"""Suite cases for the continuous normalizing flow (an ODE solved by torchdiffeq; exact trace in eval mode).

The fields are small and smooth in time (``freqs=0``, ``tanh``), solved by ``dopri5`` to 1e-10, so the solve's error
(~1e-9) stays below the suite's tolerances (1e-6; 1e-8 for the cancellation of the two directions' log-determinants)
within about 60 field evaluations. The cases are in eval mode, where the trace is exact (train mode's Hutchinson
estimate is checked for unbiasedness in tests/test_continuous.py).
"""

from __future__ import annotations

from collections.abc import Callable

from cases import randomised

from tractable import Transform
from tractable.transforms.continuous import ContinuousFlow


def cnf(features: int = 2, **options: object) -> ContinuousFlow:
    options = {"rtol": 1e-10, "atol": 1e-10, **options}
    return ContinuousFlow(features, hidden=8, blocks=1, freqs=0, activation="tanh", **options)  # type: ignore[arg-type]


TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "cnf": lambda: randomised(cnf(), 0.2).eval(),
    # Fourier features make the field rougher: a 1e-10 solve left up to 1.3e-8 in the cancellation (1 seed in ~1000)
    "cnf-fourier": lambda: randomised(cnf(space_freqs=4, rtol=1e-11, atol=1e-11), 0.2).eval(),
}

AT_INIT: dict[str, Callable[[], Transform]] = {
    "cnf": lambda: ContinuousFlow(2).eval(),
    "cnf-conditional": lambda: ContinuousFlow(3, context_features=2).eval(),
}

CONDITIONAL: dict[str, tuple[Callable[[], Transform], int]] = {
    "cnf-conditional": (lambda: randomised(cnf(2, context_features=2), 0.2).eval(), 2),
}
