"""Suite cases for the image layers (issue 4): squeeze, factor-out, 1x1 convolution, image couplings, Flow++ couplings,
and the multi-scale transforms of the ready image models, each checked on ``(batch, C, H, W)`` inputs."""

from __future__ import annotations

from collections.abc import Callable

from cases import randomised

from tractable import Compose, Transform
from tractable.models.multiscale import FlowPlusPlus, Glow, ImageRealNVP
from tractable.transforms.conv import InvertibleConv1x1
from tractable.transforms.image_coupling import ImageAffineCoupling, MixtureLogisticCoupling
from tractable.transforms.reshape import FactorOut, Squeezed

_NET = {"hidden": 8, "blocks": 1}


def model_transform(model_cls: type, shape: tuple[int, int, int], scale: float = 0.1, **kwargs) -> Transform:
    """The image transform of a small ready model (without its logit pre-processing), weights randomised.

    The noise is small: a chain of randomised 1x1 convolutions and couplings is ill-conditioned at larger scales (its
    round trip then loses the 1e-6 bar to float64 rounding alone, amplified by the condition number)."""
    model = model_cls(shape, levels=17, dequantization="uniform", **_NET, **kwargs)
    return randomised(model.transform[1], scale).eval()


IMAGES: dict[str, tuple[Callable[[], Transform], tuple[int, ...]]] = {
    "conv1x1": (lambda: randomised(InvertibleConv1x1(3), 0.3), (3, 4, 4)),
    "conv1x1-identity-init": (lambda: randomised(InvertibleConv1x1(4, init="identity"), 0.3), (4, 3, 3)),
    "factor-out": (lambda: randomised(FactorOut(4), 0.3), (4, 3, 3)),
    "factor-out-inner": (lambda: randomised(FactorOut(4, 1, inner=ImageAffineCoupling(1, **_NET)), 0.3), (4, 4, 4)),
    "factor-out-fixed-prior": (
        lambda: randomised(FactorOut(3, inner=InvertibleConv1x1(1), learn_prior=False), 0.3),
        (3, 2, 2),
    ),
    "squeezed-channel-coupling": (
        lambda: randomised(Squeezed(ImageAffineCoupling(8, mask="channel", **_NET)), 0.5),
        (2, 4, 4),
    ),
    "squeezed-checkerboard-order": (
        lambda: randomised(Squeezed(Compose(InvertibleConv1x1(4), FactorOut(4)), order="checkerboard"), 0.3),
        (1, 4, 6),
    ),
    "affine-checkerboard": (lambda: randomised(ImageAffineCoupling(1, **_NET), 0.5), (1, 4, 4)),
    "affine-checkerboard-odd": (lambda: randomised(ImageAffineCoupling(2, parity=1, **_NET), 0.5), (2, 3, 5)),
    "affine-channel": (lambda: randomised(ImageAffineCoupling(3, mask="channel", parity=1, **_NET), 0.5), (3, 4, 4)),
    "affine-channel-plain-output": (
        lambda: randomised(ImageAffineCoupling(4, mask="channel", output_activation=False, **_NET), 0.5),
        (4, 4, 4),
    ),
    "mixture-checkerboard": (
        lambda: randomised(MixtureLogisticCoupling(2, components=3, attention=False, **_NET), 0.15),
        (2, 4, 4),
    ),
    "affine-learned-bound": (
        lambda: randomised(ImageAffineCoupling(4, mask="channel", bound=1.0, learn_bound=True, **_NET), 0.5),
        (4, 3, 3),
    ),
    "affine-columns": (lambda: randomised(ImageAffineCoupling(2, mask="columns", parity=1, **_NET), 0.5), (2, 3, 4)),
    "mixture-columns-learned-positions": (
        lambda: randomised(MixtureLogisticCoupling(2, mask="columns", components=3, heads=2, positions=(4, 2),
                                                   **_NET), 0.15),
        (2, 4, 4),
    ),
    "mixture-plain-output": (
        lambda: randomised(MixtureLogisticCoupling(2, components=3, heads=2, output_activation=False, **_NET), 0.15),
        (2, 4, 4),
    ),
    "mixture-channel-attention": (
        lambda: randomised(MixtureLogisticCoupling(3, mask="channel", components=4, heads=2, **_NET), 0.15),
        (3, 4, 4),
    ),
    "realnvp-multiscale": (lambda: model_transform(ImageRealNVP, (1, 4, 4)), (1, 4, 4)),
    "realnvp-uva-style": (
        lambda: model_transform(ImageRealNVP, (1, 4, 4), bound=1.0, learn_bound=True, learn_prior=False),
        (1, 4, 4),
    ),
    "glow-multiscale": (lambda: model_transform(Glow, (2, 4, 4)), (2, 4, 4)),
    "flowpp-multiscale": (
        lambda: model_transform(FlowPlusPlus, (2, 4, 4), components=3, heads=2, architecture="2c S F 1c 1h"),
        (2, 4, 4),
    ),
    "flowpp-columns": (
        lambda: model_transform(FlowPlusPlus, (1, 4, 4), components=3, heads=2, architecture="2w S 1h 1w",
                                positions="learned"),
        (1, 4, 4),
    ),
    "flowpp-learned-positions": (
        lambda: model_transform(FlowPlusPlus, (1, 4, 4), components=3, heads=2, architecture="1c S 1h 1c",
                                positions="learned", output_activation=False),
        (1, 4, 4),
    ),
}
