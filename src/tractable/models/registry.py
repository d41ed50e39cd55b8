"""The vector models by name: ``MODELS`` maps a name to its constructor, nothing else.

Every constructor takes the number of features first and explicit keyword arguments after it (read them with
``inspect.signature``); ``DESCRIPTIONS`` gives the one-line description ``tractable list`` shows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from ..flow import Flow
from .maf import IAF, MAF
from .nsf import NSF
from .planar import FLOW_TYPES, PlanarFlow
from .realnvp import RealNVP

#: name -> constructor ``(features, **options) -> Flow``, in the order ``tractable list`` shows them.
MODELS: dict[str, Callable[..., Flow]] = {
    "planar": partial(PlanarFlow, flow="planar"),
    "radial": partial(PlanarFlow, flow="radial"),
    "sylvester": partial(PlanarFlow, flow="sylvester"),
    "realnvp": RealNVP,
    "maf": MAF,
    "iaf": IAF,
    "nsf": NSF,
    "nsf-ar": partial(NSF, autoregressive=True),
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
    """The model ``name`` for ``features``-dimensional data from the options the command line shares.

    Each model takes the options that apply to it: the planar family ``layers`` and ``base``; the conditioner-based
    models also ``hidden``, ``blocks``, ``bound``, ``context_features`` (and ``bins`` for splines). For any other
    keyword call the constructor ``MODELS[name]`` itself.

    Raises:
        ValueError: for an unknown name, or a context for an unconditional family.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    constructor = MODELS[name]
    if name in FLOW_TYPES:
        if context_features:
            raise ValueError(f"model {name!r} is unconditional; got context_features={context_features}")
        return constructor(features, layers, base=base)
    options = {"layers": layers, "hidden": hidden, "blocks": blocks, "bound": bound,
               "context_features": context_features, "base": base}
    if "bins" in inspect.signature(constructor).parameters:
        options["bins"] = bins
    return constructor(features, **options)


__all__ = ["DESCRIPTIONS", "MODELS", "build_model"]
