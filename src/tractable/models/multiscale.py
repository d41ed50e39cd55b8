"""Multi-scale image flows: RealNVP, Glow and Flow++ built from one architecture string.

An architecture is a string of whitespace-separated tokens read left to right at the current scale:

* ``"Nc"``: ``N`` flow steps whose couplings use checkerboard masks (parities alternating);
* ``"Nh"``: ``N`` flow steps whose couplings use channel masks ("halves"; needs at least 2 channels);
* ``"Nw"``: ``N`` flow steps whose couplings split the width into even and odd columns (Flow++'s "checkerboard
  split": the conditioner runs on half-width images; needs an even width);
* ``"S"``: squeeze (space-to-depth); everything after it runs at half the resolution on 4x the channels;
* ``"F"``: factor out half of the channels with a learned conditional prior; everything after runs on the rest.

For example RealNVP's CIFAR-10 model is ``"3c S 3h F 3c S 3h F 4c"``, Glow with ``L`` levels of ``K`` steps is
``"S Kh F S Kh F ... S Kh"`` and the UvA tutorial's multi-scale MNIST flow is ``"2c S 2h F S 4h"``. The whole
transform preserves the image's shape (see :mod:`tractable.transforms.reshape`), so each model is an
:class:`~tractable.models.image_flow.ImageFlow` with a standard-normal base of the image's shape.

References:
    Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization and Architecture Design
    (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ..dequantization import Dequantizer
from ..transforms.base import Compose, Transform
from ..transforms.conv import InvertibleConv1x1
from ..transforms.image_coupling import ImageAffineCoupling, MixtureLogisticCoupling
from ..transforms.normalization import ActNorm
from ..transforms.reshape import FactorOut, Squeezed
from ..utils import renamed
from .image_flow import ImageFlow

#: ``step(channels, mask, parity, level) -> Transform``: one flow step at scale ``level`` (number of squeezes so far).
StepFactory = Callable[[int, str, int, int], Transform]

_TOKEN = re.compile(r"^(\d+)([chw])$")


def parse_architecture(architecture: str) -> list[str]:
    """The tokens of an architecture string, validated (see the module docstring)."""
    tokens = architecture.split()
    if not tokens:
        raise ValueError("expected a non-empty architecture such as '2c S 2h F S 4h', got an empty string")
    for t in tokens:
        if t not in ("S", "F") and not _TOKEN.match(t):
            raise ValueError(f"unknown architecture token {t!r} in {architecture!r}; expected 'Nc', 'Nh', 'Nw', 'S' "
                             "or 'F'")
    return tokens


def build_multiscale(architecture: str, shape: Sequence[int], step: StepFactory, *,
                     learn_prior: bool = True) -> Transform:
    """The shape-preserving transform described by ``architecture`` for images of ``shape = (C, H, W)``.

    ``learn_prior``: the factor-outs' learned conditional prior (``False``: RealNVP's fixed ``N(0, I)``).

    Raises:
        ValueError: for a malformed architecture, a squeeze of an odd size, a channel mask on one channel, or a
            factor-out of one channel.
    """
    tokens = parse_architecture(architecture)
    c, h, w = (int(s) for s in shape)

    def build(i: int, c: int, h: int, w: int, level: int) -> Transform | None:
        steps: list[Transform] = []
        while i < len(tokens):
            t = tokens[i]
            if t == "S":
                if h % 2 or w % 2:
                    raise ValueError(f"cannot squeeze an image of size {h}x{w} (token {i} of {architecture!r}): "
                                     "expected even height and width")
                inner = build(i + 1, 4 * c, h // 2, w // 2, level + 1)
                if inner is None:
                    raise ValueError(f"a squeeze must be followed by layers, got {architecture!r}")
                steps.append(Squeezed(inner))
                break
            if t == "F":
                if c < 2:
                    raise ValueError(
                        f"cannot factor out channels of a 1-channel tensor (token {i} of {architecture!r})"
                    )
                steps.append(FactorOut(c, c // 2, inner=build(i + 1, c // 2, h, w, level), learn_prior=learn_prior))
                break
            n, kind = int(t[:-1]), t[-1]
            mask = {"c": "checkerboard", "h": "channel", "w": "columns"}[kind]
            if mask == "channel" and c < 2:
                raise ValueError(
                    f"a channel coupling needs at least 2 channels, got {c} (token {i} of {architecture!r})"
                )
            if mask == "columns" and w % 2:
                raise ValueError(f"a columns coupling needs an even width, got {w} (token {i} of {architecture!r})")
            steps.extend(step(c, mask, k % 2, level) for k in range(n))
            i += 1
        if not steps:
            return None
        return steps[0] if len(steps) == 1 else Compose(*steps)

    transform = build(0, c, h, w, 0)
    if transform is None:
        raise ValueError(f"the architecture {architecture!r} has no layers")
    return transform


def _per_level(value: int | Sequence[int], level: int) -> int:
    """``value`` if an int, else its entry for ``level`` (the last entry for deeper levels)."""
    if isinstance(value, int):
        return value
    return int(value[min(level, len(value) - 1)])


class _MultiScaleImageFlow(ImageFlow):
    """Shared constructor of the multi-scale models: architecture string, step factory, dequantization."""

    default_architecture = "2c S 2h F S 2h"

    def __init__(
        self,
        shape: Sequence[int],
        step: StepFactory,
        *,
        architecture: str | None,
        levels: int,
        dequantization: str | Dequantizer,
        dequantizer: dict | None,
        alpha: float,
        validate: bool,
        learn_prior: bool = True,
    ):
        architecture = architecture or self.default_architecture
        transform = build_multiscale(architecture, shape, step, learn_prior=learn_prior)
        super().__init__(transform, shape, levels=levels, dequantization=dequantization, alpha=alpha,
                         dequantizer=dequantizer, validate=validate)
        self.architecture = architecture

    def extra_repr(self) -> str:
        return super().extra_repr() + f", architecture={self.architecture!r}"


class ImageRealNVP(_MultiScaleImageFlow):
    """Multi-scale RealNVP for images: affine couplings with gated convolutional ResNet conditioners.

    Each step of the architecture (see :mod:`tractable.models.multiscale`) is one
    :class:`~tractable.transforms.image_coupling.ImageAffineCoupling`; the default ``"2c S 2h F S 2h"`` suits small
    images (8x8 digits), ``"2c S 2h F S 4h"`` with ``hidden=(32, 48, 64)`` is the UvA tutorial's MNIST flow and
    ``"3c S 3h F 3c S 3h F 4c"`` RealNVP's CIFAR-10 layout.

    Args:
        shape: image shape ``(C, H, W)``.
        levels: number of discrete levels ``k``.
        architecture: the architecture string.
        hidden: conditioner width, an int or one per scale (index = number of squeezes so far).
        blocks: gated residual blocks per conditioner.
        bound: bound on the couplings' ``|log scale|``.
        output_activation: concat-ELU before each conditioner's last convolution.
        learn_bound: learn each coupling's log-scale bound per channel (the UvA tutorial's scaling factor).
        learn_prior: the factor-outs' learned conditional prior (``False``: a fixed ``N(0, I)``, as the tutorial).
        dequantization: ``"uniform"`` or ``"variational"`` (or a dequantizer module).
        dequantizer: keyword arguments of the variational dequantizer
            (:class:`~tractable.dequantization.VariationalDequantization`).
        alpha: the logit pre-processing's ``α``.
        validate: check inputs.

    Example:
        >>> import torch
        >>> from tractable import ImageRealNVP
        >>> model = ImageRealNVP((1, 8, 8), levels=17, hidden=8, blocks=1)
        >>> x = torch.randint(0, 17, (4, 1, 8, 8)).float()
        >>> tuple(model.bpd(x).shape), tuple(model.sample(2).shape)
        ((4,), (2, 1, 8, 8))

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017), arXiv:1605.08803.
    """

    @renamed(dequantization_options="dequantizer")
    def __init__(
        self,
        shape: Sequence[int],
        *,
        levels: int = 256,
        architecture: str | None = None,
        hidden: int | Sequence[int] = 32,
        blocks: int = 2,
        bound: float = 2.0,
        output_activation: bool = True,
        learn_bound: bool = False,
        learn_prior: bool = True,
        dequantization: str | Dequantizer = "uniform",
        dequantizer: dict | None = None,
        alpha: float = 0.05,
        validate: bool = True,
    ):
        def step(c: int, mask: str, parity: int, level: int) -> Transform:
            coupling = ImageAffineCoupling(c, mask=mask, parity=parity, hidden=_per_level(hidden, level),
                                           blocks=blocks, bound=bound, output_activation=output_activation,
                                           learn_bound=learn_bound)
            return self._step(c, coupling)

        super().__init__(shape, step, architecture=architecture, levels=levels, dequantization=dequantization,
                         dequantizer=dequantizer, alpha=alpha, validate=validate, learn_prior=learn_prior)


    @staticmethod
    def _step(channels: int, coupling: Transform) -> Transform:
        """One step of the architecture around its coupling: the coupling alone (Glow adds ActNorm and a 1x1
        convolution before it)."""
        return coupling

class Glow(ImageRealNVP):
    """Glow: steps of ActNorm, invertible 1x1 convolution and affine coupling, in a multi-scale architecture.

    The ActNorm layers initialise from the first batch seen in training mode (call ``log_prob`` on a large training
    batch first). Default architecture ``"S 4h F S 4h"`` (two levels of four steps).

    Args:
        shape: image shape ``(C, H, W)``.
        levels: number of discrete levels ``k``.
        architecture: the architecture string (Glow with ``L`` levels of ``K`` steps: ``"S Kh F ... S Kh"``).
        hidden: conditioner width, an int or one per scale.
        blocks: gated residual blocks per conditioner.
        bound: bound on the couplings' ``|log scale|``.
        output_activation: concat-ELU before each conditioner's last convolution.
        learn_bound: learn each coupling's log-scale bound per channel (the UvA tutorial's scaling factor).
        learn_prior: the factor-outs' learned conditional prior (``False``: a fixed ``N(0, I)``, as the tutorial).
        dequantization: ``"uniform"`` or ``"variational"``.
        dequantizer: keyword arguments of the variational dequantizer
            (:class:`~tractable.dequantization.VariationalDequantization`).
        alpha: the logit pre-processing's ``α``.
        validate: check inputs.

    Example:
        >>> import torch
        >>> from tractable import Glow
        >>> model = Glow((1, 8, 8), levels=17, hidden=8, blocks=1)
        >>> x = torch.randint(0, 17, (4, 1, 8, 8)).float()
        >>> tuple(model.bpd(x).shape), tuple(model.sample(2, temperature=0.8).shape)
        ((4,), (2, 1, 8, 8))

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018), arXiv:1807.03039.
    """

    default_architecture = "S 4h F S 4h"

    @staticmethod
    def _step(channels: int, coupling: Transform) -> Transform:
        return Compose(ActNorm(channels, event_dims=3), InvertibleConv1x1(channels), coupling)

class FlowPlusPlus(_MultiScaleImageFlow):
    """Flow++: steps of ActNorm, 1x1 convolution and logistic-mixture CDF coupling with conv-attention conditioners.

    Variational dequantization is the default (Flow++'s). Flow++'s CIFAR-10 model is ``"4w S 2h 3w"`` (four
    column-split couplings, Flow++'s "checkerboard split", at full resolution, a squeeze, two channel and three
    column-split couplings at half resolution, no factor-out; the ``cifar10-flowpp`` preset); the default
    ``"2c S F 2c 2h"`` is a smaller layout for 8x8 digits.

    Args:
        shape: image shape ``(C, H, W)``.
        levels: number of discrete levels ``k``.
        architecture: the architecture string.
        hidden: conditioner width, an int or one per scale.
        blocks: conv-attention blocks per conditioner (Flow++: 10 on CIFAR-10).
        components: logistic mixture components (Flow++: 32).
        attention: self-attention in the conditioners.
        heads: attention heads.
        dropout: dropout in the conditioners (Flow++: 0.2 on CIFAR-10).
        bound: bound on the couplings' final log-scale ``|a|``.
        output_activation: concat-ELU before each conditioner's last convolution (``False``: Flow++'s released
            code).
        positions: ``"sinusoidal"`` (default: no parameters) or ``"learned"`` (a position embedding per coupling
            for its attention blocks, sized for its scale, as Flow++'s code; also in the default dequantizer).
        learn_prior: the factor-outs' learned conditional prior (``False``: a fixed ``N(0, I)``).
        dequantization: ``"variational"`` (default) or ``"uniform"``.
        dequantizer: keyword arguments of the variational dequantizer
            (:class:`~tractable.dequantization.VariationalDequantization`; default: 4 mixture couplings of the same
            width and half the blocks).
        alpha: the logit pre-processing's ``α``.
        validate: check inputs.

    Example:
        >>> import torch
        >>> from tractable import FlowPlusPlus
        >>> model = FlowPlusPlus((1, 8, 8), levels=17, hidden=8, blocks=1, components=2, heads=1)
        >>> x = torch.randint(0, 17, (4, 1, 8, 8)).float()
        >>> tuple(model.bpd(x).shape), tuple(model.sample(2).shape)
        ((4,), (2, 1, 8, 8))

    References:
        Flow++ (Ho, Chen, Srinivas, Duan & Abbeel, 2019), arXiv:1902.00275.
    """

    default_architecture = "2c S F 2c 2h"

    @renamed(dequantization_options="dequantizer")
    def __init__(
        self,
        shape: Sequence[int],
        *,
        levels: int = 256,
        architecture: str | None = None,
        hidden: int | Sequence[int] = 32,
        blocks: int = 2,
        components: int = 8,
        attention: bool = True,
        heads: int = 4,
        dropout: float = 0.0,
        bound: float = 2.0,
        output_activation: bool = True,
        positions: str = "sinusoidal",
        learn_prior: bool = True,
        dequantization: str | Dequantizer = "variational",
        dequantizer: dict | None = None,
        alpha: float = 0.05,
        validate: bool = True,
    ):
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"unknown positions {positions!r}; expected 'sinusoidal' or 'learned'")

        def step(c: int, mask: str, parity: int, level: int) -> Transform:
            h, w = int(shape[1]) >> level, int(shape[2]) >> level
            size = (h, w // 2 if mask == "columns" else w) if positions == "learned" else None
            coupling = MixtureLogisticCoupling(c, mask=mask, parity=parity, components=components, bound=bound,
                                               hidden=_per_level(hidden, level), blocks=blocks, attention=attention,
                                               heads=heads, dropout=dropout, output_activation=output_activation,
                                               positions=size)
            return Compose(ActNorm(c, event_dims=3), InvertibleConv1x1(c), coupling)

        if dequantization == "variational" and dequantizer is None:
            width = _per_level(hidden, 0)
            dequantizer = {"layers": 4, "hidden": width, "blocks": max(1, blocks // 2), "coupling": "mixture",
                           "components": components, "attention": attention, "dropout": dropout,
                           "output_activation": output_activation, "positions": positions}
        super().__init__(shape, step, architecture=architecture, levels=levels, dequantization=dequantization,
                         dequantizer=dequantizer, alpha=alpha, validate=validate, learn_prior=learn_prior)


__all__ = ["FlowPlusPlus", "Glow", "ImageRealNVP", "StepFactory", "build_multiscale", "parse_architecture"]
