"""The vector models by name: ``MODELS`` maps a name to its constructor, nothing else.

Every constructor takes the number of features first and explicit keyword arguments after it (read them with
``inspect.signature``); ``DESCRIPTIONS`` gives the one-line description ``tractable list`` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..flow import Flow
from .continuous import FFJORD, FlowMatching
from .maf import IAF, MAF
from .naf import BNAF, NAF, UNAF
from .ncsf import NCSF
from .nsf import NSF
from .planar import planar_flow, radial_flow, sylvester_flow
from .realnvp import RealNVP
from .resflow import ResidualFlow

#: name -> constructor ``(features, **options) -> Flow``, in the order ``tractable list`` shows them.
MODELS: dict[str, Callable[..., Flow]] = {
    "planar": planar_flow,
    "radial": radial_flow,
    "sylvester": sylvester_flow,
    "realnvp": RealNVP,
    "maf": MAF,
    "iaf": IAF,
    "nsf": NSF,
    "nsf-ar": partial(NSF, autoregressive=True),
    "ffjord": FFJORD,
    "fm": FlowMatching,
    "ncsf": NCSF,
    "ncsf-ar": partial(NCSF, autoregressive=True),
    "resflow": ResidualFlow,
    "naf": NAF,
    "unaf": UNAF,
    "bnaf": BNAF,
}

#: name -> one-line description.
DESCRIPTIONS: dict[str, str] = {
    "planar": "planar maps (Rezende & Mohamed 2015); analytic sampling, numerically inverted density",
    "radial": "radial maps (Rezende & Mohamed 2015); analytic both ways",
    "sylvester": "Sylvester maps (van den Berg et al. 2018); analytic sampling, numerically inverted density",
    "realnvp": "affine coupling layers (Dinh et al. 2017)",
    "maf": "masked autoregressive flow (Papamakarios et al. 2017); one-pass density",
    "iaf": "inverse autoregressive flow (Kingma et al. 2016); one-pass sampling",
    "nsf": "rational-quadratic spline couplings (Durkan et al. 2019)",
    "nsf-ar": "autoregressive rational-quadratic splines (Durkan et al. 2019)",
    "ffjord": "continuous flow, Hutchinson trace, RNODE (Grathwohl et al. 2019); needs tractable[ode]",
    "fm": "flow matching, OT paths, ODE likelihood (Lipman et al. 2023); needs tractable[ode]",
    "ncsf": "circular spline couplings on the torus, uniform base (Rezende et al. 2020)",
    "ncsf-ar": "autoregressive circular splines on the torus, uniform base (Rezende et al. 2020)",
    "resflow": "residual flow (Chen et al. 2019): Lipschitz residual blocks, Russian-roulette log-det in training",
    "naf": "neural autoregressive flow (Huang et al. 2018): MADE-conditioned deep sigmoidal maps",
    "unaf": "unconstrained NAF (Wehenkel & Louppe 2019): a positive network integrated by Clenshaw-Curtis",
    "bnaf": "block neural autoregressive flow (De Cao et al. 2019); numerically inverted sampling",
}


__all__ = ["DESCRIPTIONS", "MODELS"]
