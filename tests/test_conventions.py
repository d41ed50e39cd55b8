"""Issue 12, items 3 and 4: a flow follows torch.distributions' conventions, and a mistake is one message that says
what to do.

Each test is one convention or one error of the issue, tried the way a user of torch.distributions or zuko would; the
errors assert the message (the expected and the actual value, and the fix)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from tractable import (
    MAF,
    Compose,
    ElementwiseAffine,
    Flow,
    FlowDistribution,
    Inverse,
    Planar,
    StandardNormal,
    TorchBase,
    Transform,
)


def planar_flow(features: int = 2, base: object = None) -> Flow:
    torch.manual_seed(0)
    return Flow(Inverse(Planar(features, layers=2)), base if base is not None else StandardNormal(features))


# -- item 3: conventions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "expected"), [(3, (3, 2)), ((3,), (3, 2)), ((2, 3), (2, 3, 2)),
                                                 (torch.Size([4]), (4, 2)), ((), (2,))])
def test_sample_takes_a_sample_shape(shape: object, expected: tuple[int, ...]) -> None:
    flow = planar_flow()
    assert tuple(flow.sample(shape).shape) == expected
    x = flow.rsample(shape)
    assert tuple(x.shape) == expected and x.requires_grad
    x, log_q = flow.sample_and_log_prob(shape)
    assert tuple(log_q.shape) == expected[:-1]
    torch.testing.assert_close(flow.log_prob(x.reshape(-1, 2)).reshape(expected[:-1]), log_q, atol=1e-4, rtol=0)


def test_old_calls_still_work() -> None:
    flow = MAF(2, layers=2, hidden=8, context_features=3)
    c = torch.randn(3)
    assert tuple(flow.sample(5, c, temperature=0.5).shape) == (5, 2)
    assert tuple(flow.sample(4, context=torch.randn(4, 3)).shape) == (4, 2)
    assert tuple(flow.sample((2, 3), c).shape) == (2, 3, 2)


def test_rsample_is_reparameterized() -> None:
    flow = planar_flow()
    flow.rsample((8,)).sum().backward()
    assert all(p.grad is not None for p in flow.parameters())


@pytest.mark.parametrize("base", [MultivariateNormal(torch.ones(2), 2 * torch.eye(2)),
                                  Independent(Normal(torch.ones(2), torch.full((2,), 1.5)), 1)])
def test_torch_distribution_base(base: torch.distributions.Distribution) -> None:
    flow = Flow(Inverse(Planar(2)), base)  # the planar map starts near the identity: the flow is close to the base
    assert isinstance(flow.base, TorchBase)
    x = torch.randn(6, 2)
    z, ladj = flow.transform(x)
    torch.testing.assert_close(flow.log_prob(x), base.log_prob(z) + ladj)
    assert tuple(flow.sample(5, temperature=0.5).shape) == (5, 2)
    flow = flow.double()  # the base's tensors follow the flow
    assert flow.sample(3).dtype == torch.float64 and flow.log_prob(x.double()).dtype == torch.float64


def test_a_torch_base_needs_an_event_shape() -> None:
    with pytest.raises(ValueError, match=r"batch shape \(2,\).*Independent\(Normal\(\.\.\.\), 1\)"):
        Flow(Inverse(Planar(2)), Normal(torch.zeros(2), torch.ones(2)))
    with pytest.raises(TypeError, match="expected a tractable Distribution or a torch.distributions.Distribution"):
        Flow(Inverse(Planar(2)), "normal")


def test_a_list_of_transforms_is_composed() -> None:
    t1, t2 = Inverse(Planar(2)), Inverse(Planar(2))
    flow = Flow([t1, t2], StandardNormal(2))
    assert isinstance(flow.transform, Compose) and list(flow.transform) == [t1, t2]
    with pytest.raises(TypeError, match="expected a Transform \\(or a list of them\\), got str"):
        Flow("planar", StandardNormal(2))


def test_calling_the_flow_gives_its_distribution() -> None:
    flow = MAF(2, layers=2, hidden=8, context_features=3)
    c = torch.randn(3)
    dist = flow(c)
    assert isinstance(dist, FlowDistribution) and isinstance(flow(), torch.distributions.Distribution)
    x = dist.sample((4,))
    assert tuple(x.shape) == (4, 2) and tuple(dist.rsample((2, 4)).shape) == (2, 4, 2)
    torch.testing.assert_close(dist.log_prob(x), flow.log_prob(x, c.expand(4, 3)))
    assert tuple(dist.log_prob(dist.sample((2, 3))).shape) == (2, 3)
    assert tuple(dist.sample().shape) == (2,) and dist.log_prob(dist.sample()).shape == ()
    x, log_q = dist.rsample_and_log_prob((5,))
    torch.testing.assert_close(dist.log_prob(x), log_q, atol=1e-4, rtol=0)


def test_monte_carlo_entropy_and_kl() -> None:
    """A flow of N(μ, diag σ²) against the closed forms: entropy and KL to another Gaussian."""
    torch.manual_seed(0)
    mu, sigma = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0])
    q = Independent(Normal(mu, sigma), 1)
    flow = Flow(ElementwiseAffine(2), q)  # the identity at initialisation: the flow is q
    p = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    with torch.no_grad():
        assert abs(float(flow.entropy(200_000)) - float(q.entropy())) < 0.02
        assert abs(float(flow.kl(p, 200_000)) - float(kl_divergence(q, p))) < 0.03
        assert abs(float(flow.kl(flow, 1000))) < 1e-5
    with pytest.raises(ValueError, match=r"expected other.log_prob of shape \(10,\)"):
        flow.kl(Normal(torch.zeros(2), torch.ones(2)), 10)


@pytest.mark.parametrize(("call", "instead"), [
    (lambda d: kl_divergence(d, MultivariateNormal(torch.zeros(2), torch.eye(2))), r"flow\.kl\(other, n\)"),
    (lambda d: kl_divergence(MultivariateNormal(torch.zeros(2), torch.eye(2)), d), r"flow\.kl\(other, n\)"),
    (lambda d: d.entropy(), r"flow\.entropy\(n\)"),
    (lambda d: d.mean, r"flow\.sample\(n\)\.mean\(0\)"),
    (lambda d: d.variance, r"flow\.sample\(n\)\.var\(0\)"),
    (lambda d: d.stddev, r"flow\.sample\(n\)\.std\(0\)"),
    (lambda d: d.mode, r"flow\.log_prob"),
    (lambda d: d.expand((3,)), r"sample\(\(n,\)\)"),
    (lambda d: d.cdf(torch.zeros(2)), r"flow\.sample\(n\)"),
    (lambda d: d.icdf(torch.zeros(2)), r"quantile"),
    (lambda d: d.enumerate_support(), r"continuous"),
])
def test_what_has_no_closed_form_says_what_to_use(call: object, instead: str) -> None:
    with pytest.raises(NotImplementedError, match=instead):
        call(planar_flow()())


# -- item 4: errors that teach -----------------------------------------------------------------------------------------


def test_dtype_mismatch_names_both_dtypes_and_the_fix() -> None:
    flow = planar_flow()
    message = r"expected input of dtype torch.float32 \(the flow's\), got torch.float64; convert the flow with " \
              r"flow.double\(\) or the input with x.float\(\)"
    with pytest.raises(ValueError, match=message):
        flow.log_prob(torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"got torch.float32; convert the flow with flow.float\(\) or the input with "
                                         r"x.double\(\)"):
        flow.double().log_prob(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"got torch.int64; convert the input with x.float\(\)$"):
        planar_flow().log_prob(torch.ones(4, 2, dtype=torch.long))  # .double() above converted flow in place


def test_context_dtype_mismatch() -> None:
    flow = MAF(2, layers=1, hidden=8, context_features=3)
    with pytest.raises(ValueError, match=r"expected context of dtype torch.float32 .* context.float\(\)"):
        flow.log_prob(torch.randn(4, 2), torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected context of dtype torch.float32"):
        flow.sample(4, torch.randn(3, dtype=torch.float64))


def test_device_mismatch_names_both_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a second device at hand, the flow's reference tensor is made to report another device."""
    flow = planar_flow()
    meta = torch.empty((), device="meta")
    monkeypatch.setattr(flow.base, "_reference", lambda: meta)
    with pytest.raises(ValueError, match=r"expected input on meta \(the flow's device\), got input on cpu; move the "
                                         r"flow with flow.to\('cpu'\) or the input with x.to\('meta'\)"):
        flow.log_prob(torch.randn(4, 2))


def test_distribution_log_prob_shape_is_as_clear_as_the_flows() -> None:
    dist = planar_flow()()
    with pytest.raises(ValueError, match=r"expected a value of shape \(\.\.\., 2\), got a value of shape \(4, 3\)"):
        dist.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 2\), got input of shape \(4, 3\)"):
        planar_flow().log_prob(torch.randn(4, 3))


class _OnlyY(Transform):
    """A custom transform that forgets the log-determinant."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return 2 * x

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y / 2


class _PerElement(Transform):
    """A custom transform returning a per-element log-determinant, shape (B, D) instead of (B,)."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return 2 * x, torch.full_like(x, 0.6931)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y / 2, torch.full_like(y, -0.6931)


@pytest.mark.parametrize("batch", [2, 4])  # 2 rows: a tensor of 2 rows would unpack into "(y, ladj)" silently
def test_a_transform_returning_only_y_is_named(batch: int) -> None:
    flow = Flow(_OnlyY(), StandardNormal(2))
    with pytest.raises(TypeError, match=r"_OnlyY.forward must return \(y, logdet\), a pair of tensors; got a single "
                                        rf"tensor of shape \({batch}, 2\)"):
        flow.log_prob(torch.randn(batch, 2))
    with pytest.raises(TypeError, match=r"_OnlyY.inverse must return \(y, logdet\)"):
        flow.sample(batch)
    chain = Flow([Inverse(Planar(2)), _OnlyY()], StandardNormal(2))
    with pytest.raises(TypeError, match=r"_OnlyY.forward \(layer 1 of Compose\) must return \(y, logdet\)"):
        chain.log_prob(torch.randn(batch, 2))


def test_a_per_element_log_determinant_is_named() -> None:
    flow = Flow(_PerElement(), StandardNormal(2))
    with pytest.raises(ValueError, match=r"_PerElement.forward returned a log-determinant of shape \(5, 2\) for an "
                                         r"output of shape \(5, 2\); expected shape \(5,\).*ladj.sum\(-1\)"):
        flow.log_prob(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"_PerElement.inverse returned a log-determinant of shape \(3, 2\)"):
        flow.sample(3)
    chain = Flow([_PerElement(), Inverse(Planar(2))], StandardNormal(2))
    with pytest.raises(ValueError, match=r"_PerElement.forward \(layer 0 of Compose\) returned a log-determinant of "
                                         r"shape \(2, 2\)"):
        chain.log_prob(torch.randn(2, 2))
