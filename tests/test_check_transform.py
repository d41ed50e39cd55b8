"""Issue 12, item 5: ``tractable.testing.check_transform`` passes transforms that keep the contract and fails,
readably, on a wrong log-determinant, a wrong inverse, a wrong return shape and the other breaches of the contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from tractable import (
    AffineCoupling,
    ElementwiseAffine,
    ImageAffineCoupling,
    Inverse,
    MaskedAffineAutoregressive,
    Planar,
    ReversePermutation,
    Transform,
)
from tractable.testing import check_log_det_cancels, check_round_trip, check_transform, randomised


class Scale(Transform):
    """``y = x·exp(s)`` per feature: a correct custom transform, which the faulty ones below break one way each."""

    def __init__(self, features: int = 3):
        super().__init__()
        self.features = features
        self.log_scale = nn.Parameter(torch.linspace(0.1, 0.3, features))  # log|det| = 0.6 for 3

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(y.shape[0])


class WrongLogDet(Scale):
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, ladj = super().forward(x)
        return y, 2 * ladj  # twice the log-determinant


class WrongInverse(Scale):
    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y * torch.exp(self.log_scale), (-self.log_scale.sum()).expand(y.shape[0])  # the forward again


class PerElement(Scale):
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x * torch.exp(self.log_scale), self.log_scale.expand_as(x)  # (B, D), not (B,)


class OnlyY(Scale):
    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return x * torch.exp(self.log_scale)


class Flip(Transform):
    """``y = −x``: a correct map with a negative determinant (in odd dimensions)."""

    features = 3

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return -x, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return -y, y.new_zeros(y.shape[0])


class BatchMean(Scale):
    """Subtracts the batch mean: rows interact (and the inverse cannot undo it)."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x - x.mean(0), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y, y.new_zeros(y.shape[0])


class NoContext(Scale):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return super().forward(x)


def test_a_correct_custom_transform_passes_and_is_left_unchanged() -> None:
    t = Scale()
    before = {k: v.clone() for k, v in t.state_dict().items()}
    check_transform(t)
    assert t.log_scale.dtype == torch.float32 and all(torch.equal(before[k], v) for k, v in t.state_dict().items())


@pytest.mark.parametrize(("make", "kwargs"), [
    (lambda: randomised(Inverse(Planar(3, layers=2))), {}),
    (lambda: randomised(ElementwiseAffine(2)), {}),
    (lambda: randomised(MaskedAffineAutoregressive(3, hidden=8, context_features=2)), {"context_features": 2}),
    (lambda: randomised(AffineCoupling(4, hidden=8)), {}),
    (lambda: ReversePermutation(3), {"signed": True}),
    (lambda: randomised(ImageAffineCoupling(2, hidden=4), 0.1), {"features": (2, 4, 4), "batch": 2}),
])
def test_built_in_transforms_pass(make: object, kwargs: dict) -> None:
    torch.manual_seed(0)
    check_transform(make(), **kwargs)


def test_a_wrong_log_determinant_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"WrongLogDet.forward: the log-determinant differs from log\|det J\| by "
                                             r"autograd by up to 0.6 \(tolerance 1e-06\)"):
        check_transform(WrongLogDet())


def test_a_wrong_log_determinant_names_both_values() -> None:
    t = WrongLogDet(2)
    with torch.no_grad():
        t.log_scale.copy_(torch.tensor([0.3, 0.2]))  # log|det| = 0.5, the faulty one 1.0
    with pytest.raises(AssertionError, match=r"WrongLogDet.forward: the log-determinant differs from log\|det J\| by "
                                             r"autograd by up to 0.5 \(tolerance 1e-06\) at row \d+: ladj = 1, "
                                             r"autograd = 0.5"):
        check_transform(t)


def test_a_wrong_inverse_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"WrongInverse: inverse\(forward\(x\)\) differs from x by up to [\d.]+ "
                                             r"at row \d+ \(tolerance 1e-06 \+ 100 × eps × the way back's "
                                             r"magnification, [\d.e-]+\): inverse is not the inverse of forward"):
        check_transform(WrongInverse())


class SteepShift(Transform):
    """``y = 1 + 10⁻¹⁰·x``: exact both ways, but ``y`` near 1 is rounded to 2.2e-16, which the way back magnifies
    ``10¹⁰`` times: a round trip misses ``x`` by up to 2.2e-6, more than the default tolerance, by rounding alone."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return 1 + 1e-10 * x, torch.full(x.shape[:1], 3 * math.log(1e-10), dtype=x.dtype)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (y - 1) / 1e-10, torch.full(y.shape[:1], -3 * math.log(1e-10), dtype=y.dtype)


def test_a_round_trip_allows_for_rounding_that_the_way_back_magnifies() -> None:
    t, x = SteepShift(), torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((t.inverse(t(x)[0])[0] - x).abs().max()) > 1e-6  # the fixed tolerance alone would fail it
    check_round_trip(t, x)

    class OffByTenMillionths(Scale):  # a well-conditioned map: the tolerance stays about 1e-6
        def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            x, ladj = super().inverse(y)
            return x + 1e-5, ladj

    with pytest.raises(AssertionError, match=r"differs from x by up to 1e-05 at row \d+ \(tolerance 1e-06 \+ 100 × "
                                             r"eps × the way back's magnification, [\d.]+e-1[0-4]\)"):
        check_round_trip(OffByTenMillionths().double(), x)


def test_an_inverse_log_determinant_off_by_a_millionth_is_caught() -> None:
    # the tolerance grows with the round-trip error, which for this exact inverse is rounding only
    class InverseLogDetOff(Scale):
        def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            x, ladj = super().inverse(y)
            return x, ladj + 1e-6

    x = torch.randn(16, 3, dtype=torch.float64)
    check_log_det_cancels(Scale().double(), x)
    with pytest.raises(AssertionError, match="do not cancel: their sum is 1e-06"):
        check_log_det_cancels(InverseLogDetOff().double(), x)


def test_a_wrong_return_shape_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"PerElement.forward: expected a log-determinant of shape \(8,\) \(one "
                                             r"value per row, the event dimensions summed, e.g. ladj.sum\(-1\)\), got "
                                             r"shape \(8, 3\)"):
        check_transform(PerElement())
    with pytest.raises(AssertionError, match=r"OnlyY.forward must return \(y, ladj\), a pair of tensors; got a tensor "
                                             r"of shape \(8, 3\)"):
        check_transform(OnlyY())


def test_a_negative_determinant_needs_signed() -> None:
    with pytest.raises(AssertionError, match=r"Flip.forward: Jacobian determinant not positive at rows \[0, 1, .*"
                                             r"signed=True"):
        check_transform(Flip())
    check_transform(Flip(), signed=True)


def test_interacting_rows_are_caught() -> None:
    with pytest.raises(AssertionError, match=r"BatchMean"):
        check_transform(BatchMean())


def test_the_context_argument_is_required() -> None:
    with pytest.raises(AssertionError, match=r"NoContext.forward must accept a context argument"):
        check_transform(NoContext())
    with pytest.raises(AssertionError, match=r"the context changes only 0% of the outputs"):
        check_transform(Scale(), context_features=2)


def test_a_bounded_domain() -> None:
    class Sigmoid01(Transform):
        features = 2

        def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            return torch.logit(x), (-torch.log(x) - torch.log1p(-x)).sum(-1)

        def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            x = torch.sigmoid(y)
            return x, (torch.log(x) + torch.log1p(-x)).sum(-1)

    check_transform(Sigmoid01(), domain=(0.0, 1.0))
    with pytest.raises(AssertionError, match="non-finite output"):
        check_transform(Sigmoid01())  # inputs outside (0, 1)


@pytest.mark.parametrize("module", ["tractable.transforms.maps", "tractable.testing", "tractable.diagnostics",
                                    "tractable.targets.custom", "tractable.flow", "tractable.distributions"])
def test_the_examples_of_the_new_api_run(module: str) -> None:
    """The docstring examples of issue 12's API (a custom ElementwiseMap under check_transform, PSIS, custom targets,
    the torch conventions) run as written."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
