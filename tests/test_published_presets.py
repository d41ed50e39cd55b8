"""The MNIST and CIFAR-10 presets against the published models they reproduce (issue 4).

The published parameter counts are recomputed here layer by layer from the published architectures, which checks our
reading of them:

* Flow++'s released code (github.com/aravindsrinivas/flowpp, ``flows/run_cifar.py``, whose docstring says
  ``Params: 31,443,440``): per coupling a learned position embedding, ``proj_in`` (3x3 conv), ``blocks`` x [gated
  conv (3x3 conv, 1x1 ``a_proj`` of the dequantizer's context, 1x1 gate), layer norm, gated attention (1x1 q/k/v with
  bias, 1x1 gate), layer norm], ``proj_out`` (3x3 conv, no activation before it); per step an element-wise ``Norm``
  and a 1x1 ``Pointwise`` matrix on each half; the dequantizer's context processor of 32 channels.
* The UvA deep-learning tutorial 11 (notebook of 2022-09-25, "multiscale" row: 1,711,818): ``GatedConvNet`` of 3
  gated layers per coupling, reading and writing every channel (masked), a learned scaling factor per channel.

Then every conditioner of our presets is checked against its published counterpart: equal, less exactly the
differences the README lists.
"""

from __future__ import annotations

from tractable.app.presets import build_preset, count_parameters, preset_info
from tractable.transforms.conv import InvertibleConv1x1
from tractable.transforms.image_coupling import ImageAffineCoupling, MixtureLogisticCoupling
from tractable.transforms.normalization import ActNorm

# --- Flow++ (CIFAR-10) ----------------------------------------------------------------------------------------------
F, K, BLOCKS, DEQ_BLOCKS, CTX = 96, 32, 10, 2, 32


def flowpp_coupling(c: int, blocks: int, context: int = 0) -> dict[str, int]:
    """Parameters of Flow++'s ``MixLogisticAttnCoupling`` on halves of ``c`` channels, by part (position embedding
    excluded: it depends on the resolution)."""
    gated_conv = 9 * 2 * F * F + F + (2 * context * F + F if context else 0) + 2 * F * 2 * F + 2 * F
    attention = F * 3 * F + 3 * F + F * 2 * F + 2 * F
    return {
        "proj_in": 9 * c * F + F,
        "blocks": blocks * (gated_conv + 2 * F + attention + 2 * F),
        "proj_out": 9 * F * c * (2 + 3 * K) + c * (2 + 3 * K),
        "qkv_bias": blocks * 3 * F,
    }


def flowpp_step(h: int, w: int, c: int, blocks: int, context: int = 0) -> int:
    """One published step on halves of shape ``(h, w, c)``: Norm and Pointwise on both halves, then the coupling."""
    norm, pointwise, position = 2 * (2 * h * w * c), 2 * c * c, h * w * F
    parts = flowpp_coupling(c, blocks, context)
    return norm + pointwise + position + parts["proj_in"] + parts["blocks"] + parts["proj_out"]


# (h, w, c) of the halves of each published step: 4 checkerboard at 32x32x3, 2 channel and 3 checkerboard at 16x16x12
FLOWPP_MAIN = [(32, 16, 3)] * 4 + [(16, 16, 6)] * 2 + [(16, 8, 12)] * 3
FLOWPP_CONTEXT = 9 * 6 * 32 + 32 + 3 * (9 * 64 * 32 + 32 + 9 * 64 * 64 + 64)


def flowpp_published() -> tuple[int, int]:
    main = sum(flowpp_step(h, w, c, BLOCKS) for h, w, c in FLOWPP_MAIN)
    deq = FLOWPP_CONTEXT + 4 * flowpp_step(32, 16, 3, DEQ_BLOCKS, CTX)
    return main, deq


def test_flowpp_published_count_is_reproduced() -> None:
    main, deq = flowpp_published()
    assert (main, deq, main + deq) == (27_976_464, 3_466_976, 31_443_440)
    assert preset_info("cifar10-flowpp").published_parameters == 31_443_440


def test_flowpp_preset_conditioners_match_the_published_ones() -> None:
    """Each main conditioner equals Flow++'s less the q/k/v bias, its learned position embedding included (column
    couplings run on the same half-width images as Flow++'s "checkerboard split"). The dequantizer's conditioners
    also read the context at their input convolution, and read both column halves of it (64 channels, not 32)."""
    model = build_preset("cifar10-flowpp")
    main = [m for m in model.transform.modules() if isinstance(m, MixtureLogisticCoupling)]
    deq = [m for m in model.dequantizer.modules() if isinstance(m, MixtureLogisticCoupling)]
    assert [m.split.n_transformed for m in main] == [c for _, _, c in FLOWPP_MAIN] and len(deq) == 4
    assert [m.split.kind for m in main] == ["columns"] * 4 + ["channel"] * 2 + ["columns"] * 3
    for couplings, blocks, halves in ((main, BLOCKS, FLOWPP_MAIN), (deq, DEQ_BLOCKS, [(32, 16, 3)] * 4)):
        for m, (h, w, c) in zip(couplings, halves):
            context = m.conditioner.context_channels // m.split.context_factor  # the context of one column half
            parts = flowpp_coupling(c, blocks, context)
            extra = 9 * 2 * context * F + blocks * 2 * context * F  # input conv; a_proj on both column halves
            expected = h * w * F + parts["proj_in"] + parts["blocks"] + parts["proj_out"] - parts["qkv_bias"] + extra
            assert sum(p.numel() for p in m.conditioner.parameters()) == expected
            assert m.conditioner.positions_shape == (h, w)
    assert [m.conditioner.context_channels // m.split.context_factor for m in deq] == [CTX] * 4


def test_flowpp_preset_total_differs_by_the_documented_items() -> None:
    """README: no q/k/v bias, per-channel ActNorm for per-element Norm, an LU 1x1 convolution for a matrix per half;
    in the dequantizer also the context at the input convolution and both its column halves in the gated convs, no
    Norm/Pointwise steps, and a smaller context network."""
    model = build_preset("cifar10-flowpp")
    counts = count_parameters(model)
    main, deq = flowpp_published()
    actnorm = sum(p.numel() for m in model.transform.modules() if isinstance(m, ActNorm) for p in m.parameters())
    conv = sum(p.numel() for m in model.transform.modules() if isinstance(m, InvertibleConv1x1) for p in m.parameters())
    published_norm = sum(2 * 2 * h * w * c for h, w, c in FLOWPP_MAIN)
    published_pointwise = sum(2 * c * c for _, _, c in FLOWPP_MAIN)
    qkv = len(FLOWPP_MAIN) * BLOCKS * 3 * F
    assert (actnorm, conv, published_norm, published_pointwise, qkv) == (144, 1_584, 55_296, 1_080, 25_920)
    assert counts["flow"] == main - qkv - (published_norm - actnorm) - (published_pointwise - conv)

    features = sum(p.numel() for p in model.dequantizer.context_net.parameters())
    deq_qkv, deq_norm_pointwise = 4 * DEQ_BLOCKS * 3 * F, 4 * (2 * 2 * 32 * 16 * 3 + 18)
    context_reads = 4 * (9 * 2 * CTX * F + DEQ_BLOCKS * 2 * CTX * F)
    assert (features, FLOWPP_CONTEXT, deq_qkv, deq_norm_pointwise, context_reads) == (
        87_424, 167_936, 2_304, 24_648, 270_336)
    assert counts["dequantizer"] == (deq - deq_qkv + context_reads - deq_norm_pointwise - (FLOWPP_CONTEXT - features))
    assert counts["total"] == 31_525_744


# --- UvA tutorial 11 (MNIST) ----------------------------------------------------------------------------------------
def gated_conv_net(c_in: int, hidden: int, c_out: int, layers: int = 3) -> int:
    """Parameters of the tutorial's ``GatedConvNet`` (2022 version)."""
    return 9 * c_in * hidden + hidden + layers * (9 * 2 * hidden * hidden + hidden + 4 * hidden * hidden + 2 * hidden
                                                  + 2 * hidden) + 9 * 2 * hidden * c_out + c_out


UVA_FLOW = [(1, 32, "checkerboard")] * 2 + [(4, 48, "channel")] * 2 + [(8, 64, "channel")] * 4


def test_uva_published_count_is_reproduced() -> None:
    flow = sum(gated_conv_net(c, h, 2 * c) + c for c, h, _ in UVA_FLOW)  # + c: the learned scaling factor
    deq = 4 * (gated_conv_net(2, 16, 2) + 1)
    assert (flow, deq, flow + deq) == (1_639_742, 72_076, 1_711_818)
    assert preset_info("mnist-realnvp").published_parameters == 1_711_818


def test_uva_preset_conditioners_match_the_published_ones() -> None:
    """Checkerboard conditioners are identical; channel ones read and write only the channels that matter (the
    tutorial's read all ``c`` channels, half of them masked to zero, and write ``2c`` outputs, half discarded); the
    dequantizer's couplings add the image inside each of their 3 gated layers (a 1x1 conv, 2·16 + 16 each). Bounds
    are learned from 1 as the tutorial's scaling factors, the factor-out prior is a fixed N(0, I), the dequantizer's
    noise is logistic, and the logit pre-processing is the tutorial's: its ``z(1 - α) + α/2`` with ``α = 1e-5`` is
    our ``α' + (1 - 2α')z``, α' = 5e-6."""
    model = build_preset("mnist-realnvp")
    assert model.alpha == 5e-6
    couplings = [m for m in model.transform.modules() if isinstance(m, ImageAffineCoupling)]
    assert [(m.split.channels, m.split.kind) for m in couplings] == [(c, mask) for c, _, mask in UVA_FLOW]
    for m, (c, h, mask) in zip(couplings, UVA_FLOW):
        ours = sum(p.numel() for p in m.conditioner.parameters())
        theirs = gated_conv_net(c, h, 2 * c)
        if mask == "channel":
            theirs -= 9 * (c // 2) * h + (9 * 2 * h + 1) * c
        assert ours == theirs
    deq = [m for m in model.dequantizer.modules() if isinstance(m, ImageAffineCoupling)]
    assert model.dequantizer.context_net is None and len(deq) == 4
    assert type(model.dequantizer.flow.base).__name__ == "StandardLogistic"  # u = σ(ε) starts uniform, as theirs
    for m in deq:
        assert sum(p.numel() for p in m.conditioner.parameters()) == gated_conv_net(2, 16, 2) + 3 * (2 * 16 + 16)
        assert m.map.log_bound.numel() == 1
    counts = count_parameters(model)
    # learned bounds ("scaling factors"): the tutorial keeps one per channel (42), ours one per transformed channel
    bounds = [m.map.log_bound.numel() for m in couplings]
    assert bounds == [1, 1, 2, 2, 4, 4, 4, 4]
    assert all(float(m.map.log_bound.detach().abs().max()) == 0.0 for m in couplings)
    assert counts["flow"] == 1_639_742 - 54_760 - (42 - sum(bounds))  # the factor-out's prior is fixed, as theirs
    assert counts["dequantizer"] == 72_076 + 4 * 3 * (2 * 16 + 16)
    assert counts["total"] == 1_657_614
