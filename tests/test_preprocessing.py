"""Standardization in front of a flow (``standardize_flow``) and the warning of a fit on data far from unit scale."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from tractable import MAF, NSF, build_image_model, fit_max_likelihood, scale_report, standardize_flow
from tractable.baselines import gaussian_nll
from tractable.transforms.linear import WhitenTransform

F64 = torch.float64


def table(rows: int, seed: int = 0) -> torch.Tensor:
    """Two correlated columns in their own units: one in the thousands, one near 0.01."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, 2, generator=g, dtype=F64)
    z[:, 1] = 0.8 * z[:, 0] + 0.6 * z[:, 1]
    return z * torch.tensor([300.0, 0.01], dtype=F64) + torch.tensor([1000.0, 0.05], dtype=F64)


@pytest.mark.parametrize("whiten", [False, True])
def test_the_standardized_density_is_exact_in_the_data_units(whiten: bool) -> None:
    torch.manual_seed(0)
    train, x = table(500), table(7, seed=1)
    inner = MAF(2, layers=2, hidden=8).double()
    with torch.no_grad():
        for p in inner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    expected_inner = inner.log_prob  # the same module, wrapped below
    mean, centred = train.mean(0), train - train.mean(0)
    if whiten:
        chol = torch.linalg.cholesky(centred.T @ centred / len(train))
        z = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False).T
        ladj = -torch.diagonal(chol).log().sum()
    else:
        std = centred.pow(2).mean(0).sqrt()
        z, ladj = (x - mean) / std, -std.log().sum()
    with torch.no_grad():
        want = expected_inner(z) + ladj
        flow = standardize_flow(inner, train, whiten=whiten)
        torch.testing.assert_close(flow.log_prob(x), want, rtol=0, atol=1e-10)
        # and it is saved with the flow
        other = standardize_flow(MAF(2, layers=2, hidden=8).double(), table(50, seed=3), whiten=whiten)
        other.load_state_dict(flow.state_dict())
        torch.testing.assert_close(other.log_prob(x), want, rtol=0, atol=1e-10)


def test_standardize_flow_refuses_bad_rows() -> None:
    with pytest.raises(ValueError, match=r"expected training rows of shape \(rows, 2\) .*got \(10, 3\)"):
        standardize_flow(NSF(2), torch.randn(10, 3))
    constant = torch.randn(10, 2)
    constant[:, 1] = 4.0
    with pytest.raises(ValueError, match=r"columns \[1\] are constant"):
        standardize_flow(NSF(2), constant)
    twice = standardize_flow(NSF(2), torch.randn(10, 2) * 100)
    with pytest.raises(ValueError, match="already starts with a standardization"):
        standardize_flow(twice, torch.randn(10, 2) * 100)
    collinear = torch.randn(50, 3)
    collinear[:, 2] = collinear[:, 0] + collinear[:, 1]
    with pytest.warns(UserWarning, match="each column is standardized instead"):
        flow = standardize_flow(NSF(3), collinear, whiten=True)
    assert isinstance(flow.transform.transforms[0], WhitenTransform)


def test_scale_report() -> None:
    assert scale_report(torch.randn(200, 3)) is None
    assert scale_report(torch.randn(200, 3) * 3 + 2) is None  # within a factor 5 of unit scale
    report = scale_report(table(200))
    assert report is not None and re.fullmatch(r"2 of 2 columns are far from unit scale \(column 0: mean 9\d\d\.\d, "
                                               r"std 3\d\d\)", report), report


def test_a_fit_on_data_far_from_unit_scale_warns_once_and_standardizing_fixes_it() -> None:
    """Reproduces what a user met: an NSF fitted to a table in its own units (breast-cancer columns, areas in the
    hundreds) scored a test NLL of 2.9e5 nats against the Gaussian's 7.4, silently; here two columns at scales 300
    and 0.01. The fit now warns, naming the fix, and with the fix the flow beats the Gaussian."""
    train, test = table(2000).float(), table(1000, seed=1).float()
    torch.manual_seed(0)
    raw = NSF(2, layers=2, hidden=16)
    with pytest.warns(UserWarning, match=r"far from unit scale .*standardize_flow\(flow, train\)") as caught:
        fit_max_likelihood(raw, train, steps=300, progress=False)
    assert [w.filename for w in caught] == [__file__]  # the user's line, not the library's
    torch.manual_seed(0)
    fixed = standardize_flow(NSF(2, layers=2, hidden=16), train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_max_likelihood(fixed, train, steps=300, progress=False)
    with torch.no_grad():
        nll_raw, nll_fixed = -raw.log_prob(test).mean().item(), -fixed.log_prob(test).mean().item()
    gaussian = gaussian_nll(train.double(), test.double())
    assert nll_fixed < gaussian + 0.05 < nll_raw - 1.0, (nll_fixed, gaussian, nll_raw)  # Gaussian data: a tie at best


def test_no_warning_for_standardized_data_or_images() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_max_likelihood(NSF(2, layers=1, hidden=4), torch.randn(300, 2), steps=2, progress=False)
        model = build_image_model("realnvp", (1, 4, 4), levels=17, hidden=4, blocks=1, dequantization="uniform")
        fit_max_likelihood(model, torch.randint(0, 17, (16, 1, 4, 4)).float(), steps=1, batch_size=8,
                           progress=False)


def test_a_spline_flow_warns_when_the_data_reach_beyond_its_interval() -> None:
    """Raw checkerboard data (uniform on [-4, 4], within a factor 5 of unit scale) put a quarter of each column in
    NSF(2)'s identity tails: fitted so (1,000 steps) it scored 2.19 nats above the entropy, standardized 0.10. The fit
    warns for a spline flow; not for a MAF, nor when an affine frame or a wider interval covers the data."""
    train = (torch.rand(2000, 2) * 8 - 4).float()
    assert scale_report(train) is None
    with pytest.warns(UserWarning, match=r"of column \d lies outside the splines' interval \[-3, 3\]"):
        fit_max_likelihood(NSF(2, layers=1, hidden=4), train, steps=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for flow in (MAF(2, layers=1, hidden=4), NSF(2, layers=1, hidden=4, affine=True),
                     NSF(2, layers=1, hidden=4, bound=5.0), standardize_flow(NSF(2, layers=1, hidden=4), train)):
            fit_max_likelihood(flow, train, steps=1, progress=False)
