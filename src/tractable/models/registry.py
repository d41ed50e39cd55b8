"""Every ready model by name, built from one set of keyword arguments (what the command line and configs use)."""

from __future__ import annotations

from collections.abc import Callable

from ..flow import Flow
from .maf import IAF, MAF
from .nsf import NSF
from .planar import FLOW_TYPES, PlanarFlow
from .realnvp import RealNVP

#: name -> one-line description, in the order ``tractable list`` shows them.
MODELS: dict[str, str] = {
    "planar": "planar maps (Rezende & Mohamed 2015); analytic sampling, numerically inverted density",
    "radial": "radial maps (Rezende & Mohamed 2015); analytic both ways",
    "sylvester": "Sylvester maps (van den Berg et al. 2018); analytic sampling, numerically inverted density",
    "realnvp": "affine coupling layers (Dinh et al. 2017)",
    "maf": "masked autoregressive flow (Papamakarios et al. 2017); one-pass density",
    "iaf": "inverse autoregressive flow (Kingma et al. 2016); one-pass sampling",
    "nsf": "rational-quadratic spline couplings (Durkan et al. 2019)",
    "nsf-ar": "autoregressive rational-quadratic splines (Durkan et al. 2019)",
}


def build_model(
    name: str,
    features: int,
    *,
    layers: int,
    base: str = "normal",
    hidden: int = 64,
    blocks: int = 2,
    bins: int = 8,
    bound: float = 3.0,
    context_features: int = 0,
) -> Flow:
    """The model called ``name`` (see :data:`MODELS`) for ``features``-dimensional data.

    Each model takes the arguments that apply to it: the planar family ``layers`` and ``base``; the conditioner-based
    models also ``hidden``, ``blocks``, ``bound`` (and ``bins`` for splines) and ``context_features``.

    Raises:
        ValueError: for an unknown name, or a context for an unconditional family.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    if name in FLOW_TYPES:
        if context_features:
            raise ValueError(f"model {name!r} is unconditional; got context_features={context_features}")
        return PlanarFlow(features, layers, flow=name, base=base)
    common = {"layers": layers, "hidden": hidden, "blocks": blocks, "bound": bound,
              "context_features": context_features, "base": base}
    builders: dict[str, Callable[[], Flow]] = {
        "realnvp": lambda: RealNVP(features, **common),
        "maf": lambda: MAF(features, **common),
        "iaf": lambda: IAF(features, **common),
        "nsf": lambda: NSF(features, bins=bins, **common),
        "nsf-ar": lambda: NSF(features, bins=bins, autoregressive=True, **common),
    }
    return builders[name]()
