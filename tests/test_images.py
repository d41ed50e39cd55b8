"""Image modeling (issue 4): the image layers beyond the shared suite, the conditioner networks, and the ready image
models and presets (dequantization: test_dequantization.py; data loaders: test_image_data.py)."""

from __future__ import annotations

import math

import pytest
import torch
from cases_image import IMAGES
from torch import Tensor

from tractable import Flow, ImageFlow
from tractable.app.presets import build_preset, image_format, print_parameter_counts
from tractable.models.image_registry import build_image_model
from tractable.models.multiscale import FlowPlusPlus, build_multiscale, parse_architecture
from tractable.testing import randomised
from tractable.transforms.conv import InvertibleConv1x1
from tractable.transforms.image_coupling import ImageAffineCoupling, MixtureLogisticCoupling
from tractable.transforms.logistic_mixture import mixture_logit_cdf
from tractable.transforms.reshape import FactorOut, Squeeze, Squeezed, channel_mask, checkerboard_mask, squeeze

NET = {"hidden": 8, "blocks": 1}


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    constructor, shape = IMAGES[name]
    return constructor(), shape


# --- the image layers, beyond the shared suite -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_layer_state_dict_float32_and_extremes(name: str) -> None:
    t, shape = make(name)
    other, _ = make(name, 1)
    x = torch.randn(3, *shape, dtype=torch.float64)
    other.load_state_dict(t.state_dict())
    torch.testing.assert_close(other(x), t(x), rtol=0, atol=0)
    torch.testing.assert_close(other.inverse(x), t.inverse(x), rtol=0, atol=0)
    t32 = t.float()
    x32 = x.float()
    y32, ladj32 = t32(x32)
    assert y32.dtype == ladj32.dtype == torch.float32
    torch.testing.assert_close(t32.inverse(y32)[0], x32, rtol=0, atol=1e-3)
    t = t.double()
    for fn in (t.forward, t.inverse):  # finite values and gradients far in the tails
        big = (1e3 * torch.sign(torch.randn(2, *shape, dtype=torch.float64))).requires_grad_(True)
        y, ladj = fn(big)
        assert bool(torch.isfinite(y).all() & torch.isfinite(ladj).all()), name
        (y.sum() + ladj.sum()).backward()
        assert bool(torch.isfinite(big.grad).all()), name


@pytest.mark.parametrize(
    "constructor",
    [
        lambda: ImageAffineCoupling(2, **NET),
        lambda: ImageAffineCoupling(4, mask="channel", parity=1, **NET),
        lambda: MixtureLogisticCoupling(2, components=3, **NET, heads=2),
        lambda: FactorOut(4, inner=ImageAffineCoupling(2, **NET)),
        lambda: InvertibleConv1x1(4, init="identity"),
    ],
)
def test_identity_at_initialisation(constructor) -> None:
    torch.manual_seed(0)
    t = constructor().double()
    channels = t.split.channels if hasattr(t, "split") else getattr(t, "channels", 4)
    x = torch.randn(5, channels, 4, 4, dtype=torch.float64)
    y, ladj = t(x)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(ladj, torch.zeros_like(ladj), rtol=0, atol=1e-10)


def test_rotation_init_is_a_rotation() -> None:
    for seed in range(10):
        torch.manual_seed(seed)
        w = InvertibleConv1x1(5).double().weight()
        torch.testing.assert_close(w @ w.T, torch.eye(5, dtype=torch.float64), rtol=0, atol=1e-6)
        assert torch.linalg.det(w) > 0


def test_squeeze_orders_and_errors() -> None:
    x = torch.arange(2 * 4 * 4.0).reshape(1, 2, 4, 4)
    y, ladj = Squeeze()(x)
    assert y.shape == (1, 8, 2, 2) and ladj.tolist() == [0.0]
    assert y[0, :4, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # Glow order: channel 4c + 2dy + dx
    torch.testing.assert_close(Squeeze().inverse(y)[0], x, rtol=0, atol=0)
    # The checkerboard order puts one checkerboard colour into the first half of the channels.
    yc = squeeze(x, "checkerboard")
    colour = checkerboard_mask(4, 4, 0).expand_as(x)
    assert sorted(yc[:, :4].flatten().tolist()) == sorted(x[colour].tolist())
    with pytest.raises(ValueError, match=r"even H and W.*\(1, 2, 3, 4\)"):
        Squeeze()(torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="order"):
        Squeeze("rows")


def test_masks() -> None:
    m = checkerboard_mask(3, 3, 1)
    assert m.shape == (1, 1, 3, 3) and int(m.sum()) == 4 and not bool(m[0, 0, 0, 0])
    assert channel_mask(5).flatten().tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="at least 2 channels"):
        channel_mask(1)


def test_wrong_shapes_raise() -> None:
    t = ImageAffineCoupling(3, **NET)
    for bad in (torch.randn(2, 4, 4, 4), torch.randn(2, 3, 4)):
        with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)") as info:
            t(bad)
        assert str(tuple(bad.shape)) in str(info.value)
    with pytest.raises(ValueError, match="channels"):
        ImageAffineCoupling(1, mask="channel")


def test_conditional_coupling_reads_an_image_context() -> None:
    torch.manual_seed(0)
    t = Squeezed(ImageAffineCoupling(4, mask="channel", context_channels=12, **NET)).double()
    randomised(t, 0.3)
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    c1, c2 = torch.randn(2, 4, 3, 4, 4, dtype=torch.float64)  # full resolution, 3 channels: squeezed to 12
    y1, _ = t(x, c1)
    y2, _ = t(x, c2)
    assert (y1 - y2).abs().amax((1, 2, 3)).min() > 1e-6
    torch.testing.assert_close(t.inverse(y1, c1)[0], x, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="context"):
        t(x)


def test_columns_coupling_splits_even_and_odd_columns() -> None:
    """``mask="columns"`` (Flow++'s split): parity 0 keeps the even columns, the conditioner reads them at half width
    together with both column halves of a full-resolution context, and an odd width is refused."""
    torch.manual_seed(0)
    t = ImageAffineCoupling(1, mask="columns", context_channels=2, **NET).double()
    randomised(t, 0.3)
    x = torch.randn(3, 1, 4, 6, dtype=torch.float64)
    c1, c2 = torch.randn(2, 3, 2, 4, 6, dtype=torch.float64)
    y1, _ = t(x, c1)
    y2, _ = t(x, c2)
    assert torch.equal(y1[..., 0::2], x[..., 0::2]) and (y1[..., 1::2] - x[..., 1::2]).abs().max() > 1e-3
    assert (y1 - y2).abs().amax((1, 2, 3)).min() > 1e-6
    torch.testing.assert_close(t.inverse(y1, c1)[0], x, rtol=0, atol=1e-10)
    assert t.conditioner.input.in_channels == 1 + 4  # passing half + both halves of the 2-channel context
    with pytest.raises(ValueError, match="even width"):
        t(torch.randn(1, 1, 4, 5, dtype=torch.float64), torch.randn(1, 2, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="even width, got 5"):
        build_multiscale("1w", (1, 4, 5), lambda c, mask, parity, level: ImageAffineCoupling(c, mask=mask, **NET))


# --- the logistic-mixture coupling ----------------------------------------------------------------------------------
def test_mixture_logit_cdf_matches_the_direct_formula() -> None:
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    logits, loc, log_scale = torch.randn(3, 2, 3, 5, 4, 4, generator=g, dtype=torch.float64)
    v, log_dv = mixture_logit_cdf(x, logits, loc, log_scale, 2)
    pi = torch.softmax(logits, 2)
    cdf = (pi * torch.sigmoid((x.unsqueeze(2) - loc) / log_scale.exp())).sum(2)
    torch.testing.assert_close(v, torch.logit(cdf), rtol=0, atol=1e-10)
    xr = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(mixture_logit_cdf(xr, logits, loc, log_scale, 2)[0].sum(), xr)[0]
    # Components on the last axis (the default) give the same.
    last = [t.movedim(2, -1) for t in (logits, loc, log_scale)]
    torch.testing.assert_close(mixture_logit_cdf(x, *last)[0], v, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_dv, grad.log(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype,bar", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_mixture_inverse_meets_its_tolerance(dtype: torch.dtype, bar: float) -> None:
    """The bisection (Newton-safeguarded) inverse is accurate to ≤ 1e-5 in float32, ≤ 1e-10 in float64."""
    torch.manual_seed(0)
    t = MixtureLogisticCoupling(2, mask="channel", components=5, attention=False, **NET).to(dtype)
    with torch.no_grad():
        t.conditioner.output.weight.normal_(0, 0.1)
        t.conditioner.output.bias.normal_(0, 1.0)
    x = 4 * torch.randn(64, 2, 4, 4, dtype=dtype)
    with torch.no_grad():
        x2 = t.inverse(t(x)[0])[0]
    assert (x2 - x).abs().max().item() < bar * max(1.0, x.abs().max().item())


def test_gradients_through_the_mixture_inverse() -> None:
    torch.manual_seed(0)
    t = MixtureLogisticCoupling(2, mask="channel", components=3, attention=False, hidden=4, blocks=1).double()
    with torch.no_grad():
        t.conditioner.output.weight.normal_(0, 0.1)
    y = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: t.inverse(v), (y,))



def test_mixture_inverse_stays_finite_for_huge_log_scales() -> None:
    """A conditioner fed inputs like 1e3 can produce log-scales in the hundreds: a component that flat made the
    inverse land near 1e196 with NaN gradients. Log-scales are capped at 7, so it lies within max|μ| + e^7 |v|."""
    from tractable.transforms.logistic_mixture import MAX_LOG_SCALE, LogisticMixtureMap

    m = LogisticMixtureMap(components=3)
    theta = torch.zeros(2, 1, m.params, dtype=torch.float64)
    theta[..., 2 + 6 :] = torch.tensor([500.0, 300.0, -2.0])  # the log-scales
    theta[..., 2 + 3 : 2 + 6] = torch.tensor([40.0, -40.0, 0.0])  # the means
    theta.requires_grad_(True)
    y = torch.tensor([[1e3], [-1e3]], dtype=torch.float64, requires_grad=True)
    x, ladj = m.inverse(y, theta)
    (x.sum() + ladj.sum()).backward()
    assert x.abs().max() <= 40 + math.exp(MAX_LOG_SCALE) * 1e3
    assert torch.isfinite(y.grad).all() and torch.isfinite(theta.grad).all()
    torch.testing.assert_close(m.forward(x, theta)[0], y.detach(), rtol=1e-9, atol=0)


def test_plain_output_conditioner_starts_as_the_identity() -> None:
    """``output_activation=False`` (Flow++'s released code): the last conv reads the hidden features directly."""
    from tractable.nn.convnets import GatedResNet

    net = GatedResNet(2, 6, hidden=8, blocks=1, output_activation=False)
    assert net.output.in_channels == 8
    with torch.no_grad():
        assert float(net(torch.randn(2, 2, 4, 4)).abs().max()) == 0.0


def test_learned_positions_are_sized_per_scale_and_trained() -> None:
    """``positions="learned"``: one embedding per coupling, for its scale's H x W, shared by its attention blocks."""
    from tractable.nn.convnets import GatedResNet

    model = FlowPlusPlus((1, 8, 8), levels=17, hidden=8, blocks=2, components=3, heads=2, architecture="1c S 1h",
                         positions="learned", dequantizer={"layers": 1, "hidden": 8, "blocks": 1,
                                                                      "coupling": "mixture", "attention": True,
                                                                      "components": 3, "positions": "learned"})
    nets = [m for m in model.modules() if isinstance(m, GatedResNet) and m.attentions]
    assert sorted(n.positions_shape for n in nets) == [(4, 4), (8, 8), (8, 8)]
    with torch.no_grad():  # off the zero-initialised identity, so gradients reach the embeddings
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.log_prob(torch.randint(0, 17, (3, 1, 8, 8))).sum().backward()
    assert all(n.positions.grad is not None and n.positions.grad.abs().sum() > 0 for n in nets)
    with pytest.raises(ValueError, match="learned positions for 8x8 inputs, got 4x4"):
        nets[0](torch.randn(1, nets[0].in_channels, 4, 4))
    with pytest.raises(ValueError, match="unknown positions 'rotary'"):
        FlowPlusPlus((1, 8, 8), levels=17, positions="rotary")


def test_attention_dropout_acts_on_the_attended_features() -> None:
    """Dropout (Flow++: 0.2) zeroes attended features before the gate in training, and is off in ``eval()``."""
    from tractable.nn.attention import GatedAttention

    torch.manual_seed(0)
    att = GatedAttention(8, heads=2, dropout=0.5)
    x = torch.randn(2, 8, 3, 3)
    seen: list[Tensor] = []
    att.gate.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        train_out = att(x)
        att.eval()
        eval_out, eval_again = att(x), att(x)
    dropped = seen[0] == 0
    assert 0.3 < dropped.float().mean().item() < 0.7 and not bool((seen[1] == 0).any())
    torch.testing.assert_close(seen[0][~dropped], 2 * seen[1][~dropped])  # survivors scaled by 1 / (1 - p)
    assert not torch.allclose(train_out, eval_out) and torch.equal(eval_out, eval_again)


# --- the ready image models --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,options",
    [
        ("realnvp", {}),
        ("realnvp", {"dequantization": "variational", "dequantizer": {"layers": 2, **NET}}),
        ("glow", {}),
        ("flowpp", {"components": 3, "heads": 2}),
    ],
)
def test_image_models_end_to_end(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = build_image_model(name, (1, 8, 8), levels=17, **NET, **options).double()
    x = torch.randint(0, 17, (4, 1, 8, 8))
    log_p = model.log_prob(x)  # also initialises ActNorm layers (training mode)
    assert log_p.shape == (4,) and bool(torch.isfinite(log_p).all())
    (-log_p.mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        bpd = model.bpd(x)
        assert bpd.shape == (4,) and 1.0 < bpd.mean().item() < 10.0
        iw = model.bpd(x, samples=3)
        assert iw.shape == (4,) and bool(torch.isfinite(iw).all())
        y, _ = model.dequantize(x)
        z, ladj = model.transform(y)
        assert ladj.shape == (4,)
        torch.testing.assert_close(model.transform.inverse(z)[0], y, rtol=0, atol=1e-8)
        # The single-sample bound is the unit-cube density, scaled by k^-D, of the dequantized images.
        torch.manual_seed(1)
        bound = model.log_prob(x)
        torch.manual_seed(1)
        y, log_q = model.dequantize(x)
        torch.testing.assert_close(bound, model.unit_log_prob(y) - 64 * math.log(17) - log_q, rtol=0, atol=1e-8)
    samples = model.sample(5, temperature=0.7)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 16
    assert bool((samples == samples.floor()).all())
    frozen = model.sample(3, temperature=0.0)
    assert bool((frozen == frozen[:1]).all())  # T = 0: every sample is the image of z = 0


def test_image_model_rejects_bad_levels_and_shapes() -> None:
    model = build_image_model("realnvp", (1, 4, 4), levels=17, **NET)
    with pytest.raises(ValueError, match="0..16"):
        model.log_prob(torch.full((2, 1, 4, 4), 17.0))
    with pytest.raises(ValueError, match=r"\(batch, 1, 4, 4\)"):
        model.log_prob(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown image model"):
        build_image_model("pixelcnn", (1, 4, 4))


def test_architecture_strings() -> None:
    assert parse_architecture("2c S 2h F S 4h") == ["2c", "S", "2h", "F", "S", "4h"]
    for bad, match in (("2x", "unknown architecture token"), ("", "non-empty"),
                       ("S 2c", "squeeze an image of size 3x3"), ("F 2c", "factor out"), ("2h", "at least 2 channels")):
        with pytest.raises(ValueError, match=match):
            build_multiscale(bad, (1, 6, 6) if bad != "S 2c" else (1, 3, 3), lambda c, m, p, lvl: Squeeze())


def test_fit_reduces_bits_per_dim() -> None:
    """A few Adam steps on a toy 17-level data set (two prototype images) lower the training bits/dim."""
    torch.manual_seed(0)
    protos = torch.randint(0, 17, (2, 1, 4, 4))
    data = protos[torch.randint(0, 2, (128,))]
    model = build_image_model("realnvp", (1, 4, 4), levels=17, architecture="2c", **NET)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = model.bpd(data).mean().item()
    for _ in range(60):
        opt.zero_grad()
        (-model.log_prob(data).mean()).backward()
        opt.step()
    assert model.bpd(data).mean().item() < start - 0.3


def test_presets_run_forward_and_inverse_on_cpu(capsys) -> None:
    """The published architectures (UvA MNIST multi-scale, Flow++ CIFAR-10) run both ways on random data."""
    for name in ("mnist-realnvp", "cifar10-flowpp"):
        torch.manual_seed(0)
        shape, levels = image_format(name.split("-")[0])
        model = build_preset(name).eval()
        x = torch.randint(0, levels, (1, *shape))
        with torch.no_grad():
            y, _ = model.dequantize(x)
            z, _ = model.transform(y)
            y2, _ = model.transform.inverse(z)
            assert z.shape == x.shape and (y2 - y).abs().max().item() < 1e-4
            assert bool(torch.isfinite(model.unit_log_prob(y)).all())
    print_parameter_counts(["digits-flowpp"])
    out = capsys.readouterr().out
    assert "digits-flowpp" in out and "total" in out



def test_image_flow_is_a_flow() -> None:
    model = build_image_model("glow", (2, 4, 4), levels=4, **NET)
    assert isinstance(model, ImageFlow) and isinstance(model, Flow) and model.event_shape == (2, 4, 4)
