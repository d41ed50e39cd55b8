"""`PlanarFlow`: a base distribution and a chain of planar, radial or Sylvester maps, for variational fitting."""

from __future__ import annotations

from ..distributions import make_base
from ..flow import Flow
from ..transforms.base import Inverse
from ..transforms.planar import Planar, Radial
from ..transforms.sylvester import Sylvester

FLOW_TYPES = {"planar": Planar, "radial": Radial, "sylvester": Sylvester}


class PlanarFlow(Flow):
    """A flow whose generative pass is a chain of ``layers`` planar-family maps applied to a base sample.

    The chain is analytic when sampling (``sample_and_log_prob``, the reverse-KL path) and numerically inverted in
    ``log_prob``, so the same model also evaluates densities on data.

    Args:
        features: dimension of the data.
        layers: number of maps in the chain.
        flow: ``planar``, ``radial`` or ``sylvester``.
        base: ``diagonal`` (learnable mean and scale, the default), ``normal`` or ``mixture``.
        hidden: Sylvester only: the number of hidden units ``M`` of each map (``None``: ``features``).
        variant: Sylvester only: ``orthogonal`` or ``householder``.
        reflections: Sylvester only: Householder reflections per map (``None``: the layer's default).
        init: planar only: the maps' starting values, ``"shear"`` or ``"identity"`` (``None``: :class:`Planar`'s
            default); see :class:`~tractable.transforms.planar.Planar`.

    Example:
        >>> from tractable import PlanarFlow
        >>> flow = PlanarFlow(2, layers=16)
        >>> x, log_q = flow.sample_and_log_prob(512)
        >>> tuple(x.shape), tuple(log_q.shape)
        ((512, 2), (512,))
    """

    def __init__(
        self,
        features: int = 2,
        layers: int = 16,
        *,
        flow: str = "planar",
        base: str = "diagonal",
        hidden: int | None = None,
        variant: str = "orthogonal",
        reflections: int | None = None,
        init: str | None = None,
    ):
        if flow not in FLOW_TYPES:
            raise ValueError(f"unknown flow type {flow!r}; expected one of {', '.join(FLOW_TYPES)}")
        if flow == "sylvester":
            if init is not None:
                raise ValueError(f"init is an option of the planar flow, not of 'sylvester'; got init={init!r}")
            layer = Sylvester(features, layers, hidden=hidden, variant=variant, reflections=reflections)
        else:
            if hidden is not None or variant != "orthogonal" or reflections is not None:
                raise ValueError(f"hidden, variant and reflections are options of the sylvester flow, not of {flow!r}; "
                                 f"got hidden={hidden}, variant={variant!r}, reflections={reflections}")
            if init is not None and flow != "planar":
                raise ValueError(f"init is an option of the planar flow, not of {flow!r}; got init={init!r}")
            layer = FLOW_TYPES[flow](features, layers=layers, **({} if init is None else {"init": init}))
        super().__init__(Inverse(layer), make_base(base, features))
        self.flow_type, self.layers = flow, layers


def planar_flow(features: int = 2, layers: int = 16, *, base: str = "diagonal", init: str = "shear") -> PlanarFlow:
    """``layers`` planar maps on a ``base`` (the registry's ``planar``: exactly the arguments it takes); ``init``:
    the maps' starting values, ``"shear"`` or ``"identity"`` (see :class:`~tractable.transforms.planar.Planar`).

    References:
        Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770.
    """
    return PlanarFlow(features, layers, flow="planar", base=base, init=init)


def radial_flow(features: int = 2, layers: int = 16, *, base: str = "diagonal") -> PlanarFlow:
    """``layers`` radial maps on a ``base`` (the registry's ``radial``).

    References:
        Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), arXiv:1505.05770.
    """
    return PlanarFlow(features, layers, flow="radial", base=base)


def sylvester_flow(features: int = 2, layers: int = 16, *, base: str = "diagonal", hidden: int | None = None,
                   variant: str = "orthogonal", reflections: int | None = None) -> PlanarFlow:
    """``layers`` Sylvester maps on a ``base`` (the registry's ``sylvester``); see :class:`PlanarFlow` for
    ``hidden``, ``variant`` and ``reflections``.

    References:
        Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018), arXiv:1803.05649.
    """
    return PlanarFlow(features, layers, flow="sylvester", base=base, hidden=hidden, variant=variant,
                      reflections=reflections)
