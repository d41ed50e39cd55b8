"""Targets: energies match their formulas, log Z matches an independent quadrature and the reference values."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from tractable import TARGETS, GaussianMixtureEnergy, get_target
from tractable.targets.quadrature import log_integral_2d

REFERENCE = {"ring": 2.3133, "u1": 1.8775, "u2": 2.143, "u3": 2.702, "u4": 2.771, "mixture": 0.0}


@pytest.mark.parametrize("name", list(TARGETS))
def test_log_z_matches_design_reference(name):
    assert get_target(name).log_z == pytest.approx(REFERENCE[name], abs=6e-4)


# Independent scalar re-implementations of the reference formulas of docs/architecture.md (plain math, not the
# library's code).
def _bump(x, mu, s):
    return math.exp(-0.5 * ((x - mu) / s) ** 2)


def _wall(z1):
    return 0.5 * (max(abs(z1) - 4, 0) / 0.2) ** 2


def _w1(z1):
    return math.sin(2 * math.pi * z1 / 4)


SCALAR_ENERGY = {
    "ring": lambda z1, z2: 0.5 * ((math.hypot(z1, z2) - 4) / 0.4) ** 2
    - math.log(_bump(z1, 2, 0.8) + _bump(z1, -2, 0.8)),
    "u1": lambda z1, z2: 0.5 * ((math.hypot(z1, z2) - 2) / 0.4) ** 2
    - math.log(_bump(z1, 2, 0.6) + _bump(z1, -2, 0.6)),
    "u2": lambda z1, z2: 0.5 * ((z2 - _w1(z1)) / 0.4) ** 2 + _wall(z1),
    "u3": lambda z1, z2: -math.log(
        _bump(z2 - _w1(z1), 0, 0.35) + _bump(z2 - _w1(z1) + 3 * _bump(z1, 1, 0.6), 0, 0.35) + 1e-300
    ) + _wall(z1),
    "u4": lambda z1, z2: -math.log(
        _bump(z2 - _w1(z1), 0, 0.4) + _bump(z2 - _w1(z1) + 3 / (1 + math.exp(-(z1 - 1) / 0.3)), 0, 0.35) + 1e-300
    ) + _wall(z1),
}


@pytest.mark.parametrize("name", list(SCALAR_ENERGY))
def test_energy_matches_independent_formula(name):
    t = get_target(name)
    z = 3 * torch.randn(50, 2, dtype=torch.float64)
    expect = torch.tensor([SCALAR_ENERGY[name](float(a), float(b)) for a, b in z], dtype=torch.float64)
    torch.testing.assert_close(t.energy(z), expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name, r_max", [("ring", 7.0), ("u1", 5.0)])
def test_log_z_against_independent_polar_quadrature(name, r_max):
    """Adaptive quadrature in polar coordinates (scipy), a different rule on a different parameterization."""
    u = SCALAR_ENERGY[name]

    def f(r, th):
        return math.exp(-u(r * math.cos(th), r * math.sin(th))) * r

    value, _ = integrate.dblquad(f, 0, 2 * math.pi, 0, r_max, epsabs=1e-10, epsrel=1e-8)
    assert get_target(name).log_z == pytest.approx(math.log(value), abs=1e-5)


@pytest.mark.parametrize("name", ["u2", "u3", "u4"])
def test_walled_log_z_against_adaptive_quadrature(name):
    u = SCALAR_ENERGY[name]
    # the wall confines |z1| to about 4.8; the bands keep z2 within [-6, 4]
    value, _ = integrate.dblquad(lambda y, x: math.exp(-u(x, y)), -6.5, 6.5, -8, 8, epsabs=1e-9, epsrel=1e-7)
    assert get_target(name).log_z == pytest.approx(math.log(value), abs=1e-5)


def test_ring_formula_at_points():
    t = get_target("ring")
    z = torch.tensor([[4.0, 0.0], [0.0, 3.0], [2.0, 2 * math.sqrt(3)]], dtype=torch.float64)
    r = np.linalg.norm(z.numpy(), axis=1)
    z1 = z[:, 0].numpy()
    modes = np.exp(-0.5 * ((z1 - 2) / 0.8) ** 2) + np.exp(-0.5 * ((z1 + 2) / 0.8) ** 2)
    expect = 0.5 * ((r - 4) / 0.4) ** 2 - np.log(modes)
    np.testing.assert_allclose(t.energy(z).numpy(), expect, rtol=1e-12, atol=1e-15)


def test_u2_wall_only_outside_box():
    t = get_target("u2")
    inside = torch.tensor([[3.9, math.sin(2 * math.pi * 3.9 / 4)]], dtype=torch.float64)
    assert float(t.energy(inside)) == pytest.approx(0.0, abs=1e-12)
    outside = torch.tensor([[4.4, math.sin(2 * math.pi * 4.4 / 4)]], dtype=torch.float64)
    assert float(t.energy(outside)) == pytest.approx(0.5 * (0.4 / 0.2) ** 2, rel=1e-9)


def test_mixture_is_normalized_on_grid_and_in_3d():
    t = GaussianMixtureEnergy()
    assert log_integral_2d(lambda z: -t.energy(z), t.quadrature_box, 800) == pytest.approx(0.0, abs=1e-8)
    t3 = GaussianMixtureEnergy(locs=[[0.0, 0.0, 1.0]], scales=[2.0], weights=[1.0])
    z = torch.randn(5, 3, dtype=torch.float64)
    ref = torch.distributions.Normal(torch.tensor([0.0, 0.0, 1.0]).double(), 2.0).log_prob(z).sum(-1)
    torch.testing.assert_close(t3.log_prob(z), ref)


def test_unknown_target_and_bad_shape():
    with pytest.raises(ValueError, match="unknown target 'moon'.*ring"):
        get_target("moon")
    with pytest.raises(ValueError, match=r"\(batch, 2\).*\(5, 3\)"):
        get_target("ring").log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="expected locs"):
        GaussianMixtureEnergy(locs=[[0.0, 0.0]], scales=[1.0, 2.0], weights=[1.0])
