"""The named transforms every check of the shared suite runs on (docs/architecture.md, the transform contract),
flowjax-style.

``TRANSFORMS`` maps a name to a constructor returning a float64 transform whose parameters were moved away from their
(near-identity) initialisation (``randomised``, from :mod:`tractable.testing`), so the checks are not passed trivially
by the identity. The checks themselves are :mod:`tractable.testing`'s, which users run on their own transforms with
``check_transform``. Constructors draw from the
global RNG: seed it first for a reproducible instance. To put a new transform under the suite, add an entry here.

``AT_INIT`` holds the transforms that are designed to start near the identity, constructed as a user would.
``CONDITIONAL`` maps names of conditional transforms to ``(constructor, context_features)``.

``SIGNED`` lists the cases whose Jacobian determinant may be negative (permutations, LU layers): ``ladj`` is
``log|det|`` and the suite checks its sign only for the others. ``DOMAINS`` maps the names of cases that are not
bijections of the whole space to ``(forward domain, inverse domain)``, each a per-entry interval ``(lo, hi)``.
``IMAGES`` maps names to ``(constructor, event shape)`` for transforms checked on image-shaped inputs too.
``QUADRATURE`` lists the cases whose forward is a quadrature, accurate on a bounded input range only (UNAF's
integral): the finite-difference check of their inverse's gradients takes points whose preimages lie in the test
range, since far outside it the quadrature's slope and the exact log-derivative part.

Each layer family may keep its cases in its own ``tests/cases_<family>.py`` with any of the dicts ``TRANSFORMS``,
``AT_INIT``, ``CONDITIONAL``, ``DOMAINS``, ``IMAGES`` and the lists ``NUMERICAL``, ``QUADRATURE``, ``SIGNED``; they
are merged into these at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from tractable import Compose, Inverse, Planar, Radial, Sylvester, Transform
from tractable.testing import features_of, randomised  # the suite's helpers live in the library, for users too

__all__ = ["AT_INIT", "CONDITIONAL", "DOMAINS", "IMAGES", "NUMERICAL", "QUADRATURE", "SIGNED", "TRANSFORMS",
           "features_of", "randomised"]


TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "planar": lambda: randomised(Planar(2)),
    "planar-4": lambda: randomised(Planar(3, layers=4)),
    "planar-1d": lambda: randomised(Planar(1, layers=2)),
    "radial": lambda: randomised(Radial(2)),
    "radial-3": lambda: randomised(Radial(3, layers=3)),
    "sylvester-orthogonal": lambda: randomised(Sylvester(3, layers=3, hidden=2)),
    "sylvester-householder": lambda: randomised(Sylvester(3, layers=2, variant="householder")),
    "compose-planar-radial": lambda: randomised(Compose(Planar(2, layers=2), Radial(2, layers=2))),
    "inverse-planar": lambda: randomised(Inverse(Planar(2, layers=3))),
}

#: The cases whose inverse (or, for ``Inverse``, whose forward) is a numerical solve.
NUMERICAL = ["planar", "planar-4", "planar-1d", "sylvester-orthogonal", "sylvester-householder", "inverse-planar"]

AT_INIT: dict[str, Callable[[], Transform]] = {
    "planar": lambda: Planar(2, layers=4, init="identity"),
    "planar-1d": lambda: Planar(1, layers=4),  # in 1D the shear start is the identity too
    "radial": lambda: Radial(3, layers=4),
    "sylvester-orthogonal": lambda: Sylvester(3, layers=4, hidden=2),
    "sylvester-householder": lambda: Sylvester(3, layers=4, variant="householder"),
}


CONDITIONAL: dict[str, tuple[Callable[[], Transform], int]] = {}
SIGNED: list[str] = []
QUADRATURE: list[str] = []
DOMAINS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {}
IMAGES: dict[str, tuple[Callable[[], Transform], tuple[int, ...]]] = {}

for _path in sorted(Path(__file__).parent.glob("cases_*.py")):
    _module = importlib.import_module(_path.stem)
    TRANSFORMS.update(getattr(_module, "TRANSFORMS", {}))
    AT_INIT.update(getattr(_module, "AT_INIT", {}))
    CONDITIONAL.update(getattr(_module, "CONDITIONAL", {}))
    NUMERICAL.extend(getattr(_module, "NUMERICAL", []))
    SIGNED.extend(getattr(_module, "SIGNED", []))
    QUADRATURE.extend(getattr(_module, "QUADRATURE", []))
    DOMAINS.update(getattr(_module, "DOMAINS", {}))
    IMAGES.update(getattr(_module, "IMAGES", {}))
