"""Dequantization and bits per dimension (issue 4): the exact 8.000 bits/dim of a uniform model, the
importance-weighted bound, and the variational dequantizer (its exact density, feature network, analytic sampling)."""

from __future__ import annotations

import math

import pytest
import torch

from tractable import Flow, bits_per_dim, unit_bits_per_dim
from tractable.dequantization import UniformDequantization, VariationalDequantization, importance_weighted
from tractable.distributions import Distribution
from tractable.testing import randomised
from tractable.transforms.elementwise import Logit

NET = {"hidden": 8, "blocks": 1}


class StandardLogistic(Distribution):
    """The standard logistic distribution: its logit-pushforward onto (0, 1) is exactly uniform."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = shape
        self.register_buffer("_zero", torch.zeros((), dtype=torch.float64))

    def _reference(self) -> torch.Tensor:
        return self._zero

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._sum_event(-x - 2 * torch.nn.functional.softplus(-x))


def test_uniform_model_on_8_bit_data_gives_exactly_8_bits_per_dim() -> None:
    torch.manual_seed(0)
    shape = (3, 4, 4)
    x = torch.randint(0, 256, (16, *shape)).double()
    uniform = Flow(Logit(), StandardLogistic(shape))  # the uniform density on [0, 1)^D, via logit + logistic
    y, log_q = UniformDequantization()(x)
    assert bool((log_q == 0).all()) and bool(((y >= 0) & (y < 1)).all())
    log_p = uniform.log_prob((x + y) / 256)
    torch.testing.assert_close(log_p, torch.zeros_like(log_p), rtol=0, atol=1e-9)
    bpd = unit_bits_per_dim(log_p - log_q, math.prod(shape), 256)
    torch.testing.assert_close(bpd, torch.full_like(bpd, 8.0), rtol=0, atol=1e-12)
    assert f"{bpd.mean().item():.3f}" == "8.000"
    # 17-level digits: log2(17) bits.
    torch.testing.assert_close(unit_bits_per_dim(torch.zeros(2), 64, 17), torch.full((2,), math.log2(17)))


def test_bits_per_dim_and_importance_weighting() -> None:
    torch.testing.assert_close(bits_per_dim(torch.tensor([-64 * math.log(2.0)]), 64), torch.tensor([1.0]))
    log_w = torch.randn(8, 5, dtype=torch.float64)
    iw = importance_weighted(log_w)
    assert bool((iw >= log_w.mean(0)).all())  # Jensen: the IW bound is at least the average single-sample bound
    torch.testing.assert_close(importance_weighted(torch.full((4, 3), -2.0)), torch.full((3,), -2.0))
    with pytest.raises(ValueError, match="levels"):
        unit_bits_per_dim(torch.zeros(1), 4, 1)


def test_variational_dequantization_density_is_exact_and_trains() -> None:
    torch.manual_seed(0)
    deq = VariationalDequantization((1, 4, 4), levels=17, layers=2, **NET).double()
    randomised(deq.flow, 0.1)
    x = torch.randint(0, 17, (6, 1, 4, 4)).double()
    u, log_q = deq(x)
    assert bool(((u > 0) & (u < 1)).all()) and log_q.shape == (6,)
    context = deq.context_net(2 * x / 16 - 1)
    torch.testing.assert_close(deq.flow.log_prob(u, context), log_q, rtol=0, atol=1e-8)
    log_q.sum().backward()
    assert all(p.grad is not None for p in deq.context_net.parameters())
    with pytest.raises(ValueError, match=r"\(batch, 1, 4, 4\)"):
        deq(torch.zeros(2, 1, 3, 3))


def test_variational_dequantization_without_context_net_reads_the_image() -> None:
    """``context_net=False`` (the UvA tutorial's dequantizer): the couplings read the scaled image itself."""
    torch.manual_seed(0)
    deq = VariationalDequantization((2, 4, 4), levels=17, layers=2, context_net=False, **NET).double()
    assert deq.context_net is None
    randomised(deq.flow, 0.1)
    x = torch.randint(0, 17, (5, 2, 4, 4)).double()
    u, log_q = deq(x)
    torch.testing.assert_close(deq.flow.log_prob(u, 2 * x / 16 - 1), log_q, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="context is the image"):
        VariationalDequantization((2, 4, 4), levels=17, context_net=False, context_channels=8)


def test_variational_dequantization_context_net_options() -> None:
    """The context network's width is ``context_channels`` and its depth ``context_blocks`` (Flow++'s processor)."""
    deq = VariationalDequantization((3, 4, 4), levels=256, hidden=16, blocks=2, context_channels=8, context_blocks=3,
                                    coupling="mixture", attention=True, output_activation=False)
    assert len(deq.context_net.convs) == 3 and not deq.context_net.attentions
    assert deq.context_net.output.out_channels == 8 and deq.context_net.input.out_channels == 8
    coupling = deq.flow.transform[1].inv  # mixture couplings sit as Inverse(coupling): sampling is analytic
    assert coupling.conditioner.output.in_channels == 16 and len(coupling.conditioner.attentions) == 2


def test_mixture_dequantizer_samples_analytically_and_its_density_is_exact() -> None:
    """Drawing ``u`` runs the mixture couplings' analytic direction; ``log q(u|x)`` from the draw equals the density
    recomputed through the numerical inverse, in float64."""
    torch.manual_seed(0)
    deq = VariationalDequantization((1, 4, 4), levels=17, layers=2, coupling="mixture", components=3,
                                    **NET).double()
    randomised(deq.flow, 0.1)
    x = torch.randint(0, 17, (4, 1, 4, 4)).double()
    calls = {"forward": 0, "inverse": 0}
    for step in deq.flow.transform[1:]:
        coupling = step.inv
        coupling.register_forward_hook(lambda *a: calls.__setitem__("forward", calls["forward"] + 1))
        original = coupling.inverse

        def counted(*args, _original=original, **kwargs):
            calls["inverse"] += 1
            return _original(*args, **kwargs)

        coupling.inverse = counted
    u, log_q = deq(x)
    assert calls == {"forward": 2, "inverse": 0}
    torch.testing.assert_close(deq.flow.log_prob(u, deq.context_net(2 * x / 16 - 1)), log_q, rtol=0, atol=1e-8)
    assert calls["inverse"] == 2


def test_standard_logistic_distribution() -> None:
    """Log-density against torch's logistic (uniform pushed through the logit), tails included; sample moments."""
    from torch.distributions import TransformedDistribution, Uniform
    from torch.distributions.transforms import SigmoidTransform

    from tractable import StandardLogistic

    torch.manual_seed(0)
    d = StandardLogistic((2, 3)).double()
    one = torch.ones((), dtype=torch.float64)
    reference = TransformedDistribution(Uniform(0 * one, one), [SigmoidTransform().inv])
    z = torch.tensor([-30.0, -3.0, 0.0, 0.5, 3.0, 30.0], dtype=torch.float64).reshape(1, 2, 3)
    torch.testing.assert_close(d.log_prob(z), reference.log_prob(z).sum().reshape(1), rtol=0, atol=1e-10)
    samples, log_p = d.sample_and_log_prob(20_000)
    torch.testing.assert_close(log_p, d.log_prob(samples), rtol=0, atol=0)
    assert abs(samples.mean().item()) < 0.03 and abs(samples.var().item() - math.pi**2 / 3) < 0.1
    with pytest.raises(ValueError, match=r"\(batch, 2, 3\)"):
        d.log_prob(torch.zeros(4, 3, 2))


def test_logistic_noise_starts_as_uniform_dequantization() -> None:
    """``noise="logistic"`` (the UvA tutorial): at initialisation u = σ(ε) is uniform and log q(u|x) = 0."""
    torch.manual_seed(0)
    deq = VariationalDequantization((1, 4, 4), levels=17, layers=2, noise="logistic", context_net=False,
                                    **NET).double()
    u, log_q = deq(torch.randint(0, 17, (4096, 1, 4, 4)).double())
    assert float(log_q.detach().abs().max()) < 1e-9
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    with pytest.raises(ValueError, match="unknown noise 'laplace'"):
        VariationalDequantization((1, 4, 4), levels=17, noise="laplace")


def test_checkpoints_with_the_old_context_network_name_load() -> None:
    """State dicts written before the rename (the context network under ``features``) load into ``context_net``."""
    torch.manual_seed(0)
    deq = VariationalDequantization((1, 4, 4), levels=17, layers=1, hidden=8, blocks=1)
    old = {k.replace("context_net.", "features."): v + 1 for k, v in deq.state_dict().items()}
    fresh = VariationalDequantization((1, 4, 4), levels=17, layers=1, hidden=8, blocks=1)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.context_net.input.weight, deq.context_net.input.weight + 1)
