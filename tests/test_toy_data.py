"""Toy 2D data sets: reproducible sampling; exact log-densities that integrate to 1 and match their samples; entropies
that match independent estimates (Monte Carlo, a 1D radial quadrature, closed forms)."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from tractable.targets.quadrature import entropy_integral_2d, grid_entropy, log_integral_2d
from tractable.targets.toy import (
    ALIASES,
    DATASETS,
    GaussianMixtureData,
    Rings,
    get_dataset,
    sample_splits,
)

EXACT = [name for name in DATASETS if get_dataset(name).log_prob is not None]
VISUAL = [name for name in DATASETS if name not in EXACT]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_which_sets_are_exact():
    assert set(EXACT) == {"eight_gaussians", "checkerboard", "rings", "gaussian_mixture", "torus"}
    for name in VISUAL:
        d = get_dataset(name)
        assert d.log_prob is None and d.entropy is None


@pytest.mark.parametrize("name", list(DATASETS))
def test_sampling_shape_dtype_and_reproducibility(name):
    d = get_dataset(name)
    assert d.name == name and d.features == 2
    x = d.sample(1000, generator=_gen(3))
    assert x.shape == (1000, 2) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert torch.equal(x, d.sample(1000, generator=_gen(3)))
    assert not torch.equal(x, d.sample(1000, generator=_gen(4)))
    x64 = d.sample(1000, generator=_gen(3), dtype=torch.float64)
    assert x64.dtype == torch.float64 and torch.equal(x64.float(), x)  # same points in every dtype
    lo, hi = d.box
    inside = ((x >= lo) & (x <= hi)).all(-1).float().mean()
    assert inside > 0.995, f"only {inside:.4f} of the samples lie in the plotting box {d.box}"


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_sample_count(n):
    with pytest.raises(ValueError, match="positive integer number of samples"):
        get_dataset("rings").sample(n)


@pytest.mark.parametrize("name", EXACT)
def test_log_prob_integrates_to_one(name):
    d = get_dataset(name)
    box = getattr(d, "quadrature_box", d.box)
    z = math.exp(log_integral_2d(d.log_prob, box, 800))
    assert abs(z - 1) < 1e-3


def _bin_probabilities(d, edges, sub=40):
    """The mass of each histogram bin by a fine midpoint rule inside the bin, in float64."""
    lo, hi, bins = edges[0], edges[-1], len(edges) - 1
    n = bins * sub
    h = (hi - lo) / n
    g = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    x, y = torch.meshgrid(g, g, indexing="ij")
    p = torch.exp(d.log_prob(torch.stack([x.reshape(-1), y.reshape(-1)], -1))).reshape(n, n) * h * h
    return p.reshape(bins, sub, bins, sub).sum((1, 3)).numpy()


@pytest.mark.parametrize("name", EXACT)
def test_samples_agree_with_density_chi_square(name):
    d = get_dataset(name)
    n, bins = 100_000, 16
    x = d.sample(n, generator=_gen(11), dtype=torch.float64).numpy()
    edges = np.linspace(*d.box, bins + 1)
    observed, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])
    expected = n * _bin_probabilities(d, edges)
    keep = expected >= 5
    assert expected[~keep].sum() < 0.01 * n
    chi2 = float((((observed - expected) ** 2)[keep] / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), f"chi² = {chi2:.1f} for {dof} degrees of freedom"


@pytest.mark.parametrize("name", EXACT)
def test_entropy_matches_monte_carlo(name):
    d = get_dataset(name)
    lp = d.log_prob(d.sample(200_000, generator=_gen(5), dtype=torch.float64))
    assert bool(torch.isfinite(lp).all())  # every sample lies in the support
    mc, se = float(-lp.mean()), float(lp.std() / math.sqrt(len(lp)))
    assert abs(mc - d.entropy) <= 4 * se + 1e-9, f"H = {d.entropy:.5f}, Monte Carlo {mc:.5f} ± {se:.5f}"


def test_checkerboard_entropy_is_log_32_and_grid_agrees():
    d = get_dataset("checkerboard")
    assert d.entropy == pytest.approx(math.log(32), abs=1e-12)
    mass, h = entropy_integral_2d(d.log_prob, (-5.0, 5.0), 1000)  # square edges fall on grid-cell edges
    assert mass == pytest.approx(1, abs=1e-9) and h == pytest.approx(math.log(32), abs=1e-9)
    corners = torch.tensor([[-3.0, -3.0], [-3.0, -1.0], [1.0, 1.0], [1.0, 3.0], [4.5, 0.5]], dtype=torch.float64)
    assert torch.isfinite(d.log_prob(corners)).tolist() == [True, False, True, False, False]


def _ring_density(r, radii, weights, s):
    """The ring density at radius ``r`` by its definition: the noise Gaussian averaged over the ring's angle."""

    def at(phi, radius):
        d2 = r * r + radius * radius - 2 * r * radius * math.cos(phi)
        return math.exp(-d2 / (2 * s * s)) / (2 * math.pi * s * s)

    return sum(w * integrate.quad(at, 0, 2 * math.pi, args=(R,), points=[0.0], limit=200)[0] / (2 * math.pi)
               for R, w in zip(radii, weights))


def test_rings_log_prob_matches_the_convolution_definition():
    d = Rings(radii=(1.0, 2.0), weights=(1.0, 3.0), noise=0.3)
    pts = torch.tensor([[0.0, 0.0], [0.9, 0.2], [-1.5, 1.2], [2.1, -0.3], [3.5, 0.0]], dtype=torch.float64)
    mine = torch.exp(d.log_prob(pts)).tolist()
    ref = [_ring_density(math.hypot(*p), (1.0, 2.0), (0.25, 0.75), 0.3) for p in pts.tolist()]
    assert mine == pytest.approx(ref, rel=1e-7)


def test_rings_entropy_matches_radial_quadrature():
    d = get_dataset("rings")
    radii, w, s = d.radii.tolist(), d.weights.tolist(), d.noise

    def density(r):  # an independent scalar implementation with scipy's i0e
        terms = (wk * math.exp(-((r - R) ** 2) / (2 * s * s)) * special.i0e(r * R / (s * s)) for R, wk in zip(radii, w))
        return sum(terms) / (2 * math.pi * s * s)

    def integrand(r):
        p = density(r)
        return -2 * math.pi * r * p * math.log(p) if p > 0 else 0.0

    h, _ = integrate.quad(integrand, 0, 5, points=radii, limit=400, epsabs=1e-11)
    assert d.entropy == pytest.approx(h, abs=1e-6)


def test_eight_gaussians_matches_ffjord_and_scipy():
    d = get_dataset("eight_gaussians")
    # FFJORD: centres 4·(unit compass directions) and noise 0.5, both divided by 1.414 (≈ √2).
    assert d.centers.norm(dim=-1).tolist() == pytest.approx([4 / math.sqrt(2)] * 8)
    assert d.std == pytest.approx(0.5 / 1.414, rel=2e-4)
    pts = torch.randn(50, 2, generator=_gen(1), dtype=torch.float64) * 2
    ref = np.log(sum(stats.multivariate_normal(c, d.std**2).pdf(pts.numpy()) for c in d.centers.numpy()) / 8)
    assert d.log_prob(pts).numpy() == pytest.approx(ref, rel=1e-9)


def test_gaussian_mixture_against_scipy_and_conditionals():
    d = get_dataset("gaussian_mixture")
    assert isinstance(d, GaussianMixtureData) and len(set(d.weights.tolist())) == d.components  # unequal weights
    pts = torch.randn(50, 2, generator=_gen(2), dtype=torch.float64) * 2
    comps = [stats.multivariate_normal(m, c) for m, c in zip(d.locs.numpy(), d.covariances.numpy())]
    ref = np.log(sum(w * c.pdf(pts.numpy()) for w, c in zip(d.weights.numpy(), comps)))
    assert d.log_prob(pts).numpy() == pytest.approx(ref, rel=1e-9)
    for k, c in enumerate(comps):
        assert d.conditional_log_prob(pts, k).numpy() == pytest.approx(c.logpdf(pts.numpy()), rel=1e-9)
        assert d.component_entropies[k] == pytest.approx(float(c.entropy()), abs=1e-12)
        z = math.exp(log_integral_2d(lambda x, k=k: d.conditional_log_prob(x, k), d.quadrature_box, 800))
        assert abs(z - 1) < 1e-3
    labels = torch.tensor([0, 2, 1] * 10 + [0] * 20)
    per_row = d.conditional_log_prob(pts, labels)
    assert torch.equal(per_row, d.component_log_prob(pts).gather(1, labels[:, None]).squeeze(1))
    assert d.conditional_entropy == pytest.approx(sum(w * h for w, h in zip(d.weights.tolist(), d.component_entropies)))


def test_gaussian_mixture_labels():
    d = get_dataset("gaussian_mixture")
    x, y = d.sample_with_labels(200_000, generator=_gen(7), dtype=torch.float64)
    x2, y2 = d.sample_with_labels(200_000, generator=_gen(7), dtype=torch.float64)
    assert torch.equal(x, x2) and torch.equal(y, y2) and y.dtype == torch.int64
    freq = torch.bincount(y, minlength=d.components).double() / len(y)
    se = torch.sqrt(d.weights * (1 - d.weights) / len(y))
    assert bool(((freq - d.weights).abs() < 4 * se).all())
    for k, h in enumerate(d.component_entropies):  # conditional samples have the component's entropy
        lp = d.conditional_log_prob(x[y == k], k)
        assert abs(float(-lp.mean()) - h) < 4 * float(lp.std()) / math.sqrt(len(lp))
    c = d.one_hot(y[:5])
    assert c.shape == (5, d.components) and c.dtype == torch.float32 and torch.equal(c.argmax(1), y[:5])
    with pytest.raises(ValueError, match=r"integer labels in \[0, 3\)"):
        d.conditional_log_prob(x[:3], 3)
    with pytest.raises(ValueError, match="one label or 3 labels"):
        d.conditional_log_prob(x[:3], torch.tensor([0, 1]))


def test_gaussian_mixture_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"expected locs \(K, 2\), covariances \(K, 2, 2\)"):
        GaussianMixtureData(locs=((0.0, 0.0),), covariances=(((1.0, 0.0), (0.0, 1.0)),) * 2, weights=(1.0,))
    with pytest.raises(ValueError, match="not positive definite"):
        GaussianMixtureData(locs=((0.0, 0.0),), covariances=(((1.0, 2.0), (2.0, 1.0)),), weights=(1.0,))


def test_grid_entropy_closed_forms_and_checks():
    cov = torch.tensor([[1.5, 0.4], [0.4, 0.5]], dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.tensor([0.3, -0.2], dtype=torch.float64), cov)
    h = grid_entropy("test-mvn", mvn.log_prob, (-12.0, 12.0))
    assert h == pytest.approx(float(mvn.entropy()), abs=1e-8)
    with pytest.raises(ValueError, match="integrates to"):  # box too small
        grid_entropy("test-mvn-small-box", mvn.log_prob, (-1.0, 1.0))


def test_unknown_name_and_aliases():
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'; expected one of eight_gaussians, checker"):
        get_dataset("spiral")
    for alias, name in ALIASES.items():
        assert get_dataset(alias).name == name


def test_sample_splits_are_reproducible_and_independent_of_sizes():
    d = get_dataset("eight_gaussians")
    a = sample_splits(d, (100, 20, 50), seed=1)
    b = sample_splits(d, (300, 20, 50), seed=1)
    assert [t.shape[0] for t in a] == [100, 20, 50]
    assert torch.equal(a[2], b[2]) and torch.equal(a[1], b[1])  # the test set does not move with the train size
    assert not torch.equal(a[2], sample_splits(d, (100, 20, 50), seed=2)[2])
    (x, c), *_ = sample_splits(get_dataset("gaussian_mixture"), (10, 5), labels=True)
    assert x.shape == (10, 2) and c.shape == (10, 3)
    with pytest.raises(ValueError, match="labels=True needs a labelled data set"):
        sample_splits(d, (10,), labels=True)
