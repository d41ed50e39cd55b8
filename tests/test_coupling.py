"""Density-estimation layers beyond the shared suite: MLP conditioners, data-initialised and batch normalization,
LU and permutation layers, coupling masks, and the RealNVP model (exact densities, context, errors)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tractable import Flow, StandardNormal
from tractable.models.realnvp import RealNVP
from tractable.nn.mlp import MLP
from tractable.testing import randomised
from tractable.transforms.coupling import AdditiveCoupling, AffineCoupling, Coupling, mlp_conditioner
from tractable.transforms.elementwise import ElementwiseAffine, Logit, Sigmoid
from tractable.transforms.linear import LULinear, Permutation, RandomPermutation
from tractable.transforms.maps import AffineMap, soft_bound
from tractable.transforms.normalization import ActNorm, BatchNorm
from tractable.transforms.splits import VectorSplit, coupling_mask

SETTINGS = settings(deadline=None, max_examples=5, database=None)


def jacobians(fn, x: torch.Tensor) -> torch.Tensor:
    """The ``(B, D, D)`` per-row Jacobians of a row-wise map ``fn`` at ``x`` of shape ``(B, D)``."""
    j = torch.autograd.functional.jacobian(fn, x, vectorize=True)
    idx = torch.arange(x.shape[0])
    return j[idx, :, idx, :]


# --- MLP ---------------------------------------------------------------------------------------------------------


def test_mlp_shapes_widths_and_zero_last() -> None:
    net = MLP(3, 5, hidden=[7, 9, 11], context_features=2)
    assert [lin.out_features for lin in net.linears] == [7, 9, 11, 5] and net.linears[0].in_features == 5
    with torch.no_grad():
        net.last.bias.copy_(torch.arange(5.0))
    out = net(torch.randn(2, 4, 3), torch.randn(2, 4, 2))
    assert out.shape == (2, 4, 5)
    # Zero last weights: the output is the bias, whatever the input.
    torch.testing.assert_close(out, torch.arange(5.0).expand(2, 4, 5))
    # One context for the whole batch broadcasts.
    assert net(torch.randn(6, 3), torch.randn(1, 2)).shape == (6, 5)
    affine = MLP(3, 2, blocks=0, zero_last=False)
    assert len(affine.linears) == 1 and affine(torch.randn(4, 3)).abs().sum() > 0


def test_mlp_context_errors() -> None:
    net = MLP(3, 4, context_features=2)
    with pytest.raises(ValueError, match=r"context of shape \(batch, 2\).*None"):
        net(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\(batch, 2\).*\(5, 3\)"):
        net(torch.randn(5, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="batch shape"):
        net(torch.randn(5, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="activation"):
        MLP(3, 4, activation="sine")
    # Unconditional networks ignore a context, as transforms do.
    plain = MLP(3, 4, zero_last=False)
    x = torch.randn(5, 3)
    torch.testing.assert_close(plain(x, torch.randn(5, 7)), plain(x))


# --- elementwise --------------------------------------------------------------------------------------------------


def test_logit_alpha_squeeze_and_domain() -> None:
    t = Logit(0.05)
    x = torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64)
    y, ladj = t(x)
    torch.testing.assert_close(y, torch.tensor([[math.log(0.05 / 0.95), math.log(0.95 / 0.05), 0.0]]).double())
    expected = 3 * math.log(0.9) - (math.log(0.05 * 0.95) * 2 + math.log(0.25))
    torch.testing.assert_close(ladj, torch.tensor([expected], dtype=torch.float64))
    # The inverse is onto the squeezed interval, slightly wider than [0, 1].
    x_far, _ = t.inverse(torch.tensor([[-1e3, 1e3]], dtype=torch.float64))
    torch.testing.assert_close(x_far, torch.tensor([[-0.05 / 0.9, 0.95 / 0.9]], dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha"):
        Logit(0.5)
    # Sigmoid is the inverse of Logit(0) on (0, 1), log-determinants included.
    u = torch.rand(4, 2, 3, dtype=torch.float64)
    y, ladj = Logit()(u)
    u2, ladj2 = Sigmoid()(y)
    torch.testing.assert_close(u2, u)
    torch.testing.assert_close(ladj + ladj2, torch.zeros(4, dtype=torch.float64))


def test_elementwise_affine_image_shape_error() -> None:
    t = ElementwiseAffine((3, 4, 4))
    with pytest.raises(ValueError, match=r"\(batch, 3, 4, 4\).*\(2, 3, 4, 5\)"):
        t(torch.randn(2, 3, 4, 5))


# --- permutations and LU ------------------------------------------------------------------------------------------


def test_permutation_validation_and_random_state() -> None:
    with pytest.raises(ValueError, match="permutation of 0..2"):
        Permutation([0, 0, 2])
    a, b = RandomPermutation(8, seed=3), RandomPermutation(8, seed=3)
    assert torch.equal(a.order, b.order)
    c = RandomPermutation(8, seed=4)
    c.load_state_dict(a.state_dict())
    x = torch.randn(5, 8)
    torch.testing.assert_close(c(x), a(x))
    torch.testing.assert_close(c.inverse(c(x)[0])[0], x)


def test_lu_linear_orthogonal_init_and_inverse() -> None:
    torch.manual_seed(0)
    t = LULinear(6, init="orthogonal").double()
    w = t.weight()
    torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0)
    randomised(t, 0.3)
    w = t.weight()
    y = torch.randn(9, 6, dtype=torch.float64)
    x, ladj = t.inverse(y)
    torch.testing.assert_close(x, (y - t.bias) @ torch.linalg.inv(w).T)
    torch.testing.assert_close(ladj, -torch.linalg.slogdet(w)[1].expand(9))
    with pytest.raises(ValueError, match="init"):
        LULinear(3, init="zeros")


# --- ActNorm ------------------------------------------------------------------------------------------------------


def test_actnorm_data_init_and_state_dict() -> None:
    torch.manual_seed(0)
    t = ActNorm(4)
    x = torch.tensor([1.0, -2.0, 5.0, 0.0]) + torch.tensor([0.5, 2.0, 10.0, 1.0]) * torch.randn(512, 4)
    y, ladj = t(x)
    assert bool(t.initialized)
    torch.testing.assert_close(y.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(ladj, -torch.log(x.std(0, unbiased=False)).sum().expand(512), atol=1e-5, rtol=0)
    # A second training call does not re-initialise.
    before = t.loc.detach().clone()
    t(x + 100)
    torch.testing.assert_close(t.loc.detach(), before)
    # The flag travels with the state dict: a loaded layer is not re-initialised by its first batch.
    fresh = ActNorm(4)
    fresh.load_state_dict(t.state_dict())
    assert bool(fresh.initialized)
    z = torch.randn(16, 4)
    torch.testing.assert_close(fresh(z), t(z))


def test_actnorm_before_init_and_explicit_initialize() -> None:
    t = ActNorm(3)
    x = 3 + torch.randn(64, 3)
    torch.testing.assert_close(t.inverse(x)[0], x)  # inverse before initialisation: identity, no init
    t.eval()
    torch.testing.assert_close(t(x)[0], x)  # eval before initialisation: identity, no init
    assert not bool(t.initialized)
    t.initialize(x)
    assert bool(t.initialized)
    torch.testing.assert_close(t(x)[0].mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_actnorm_images_and_replaceable_statistics() -> None:
    torch.manual_seed(0)
    t = ActNorm(3, event_dims=3)
    x = torch.tensor([1.0, -1.0, 4.0]).view(3, 1, 1) + torch.tensor([2.0, 0.5, 3.0]).view(3, 1, 1) * torch.randn(
        32, 3, 5, 6
    )
    y, ladj = t(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    assert ladj.shape == (32,)
    torch.testing.assert_close(ladj[0], -30 * t.log_scale.sum())  # H·W per channel
    with pytest.raises(ValueError, match=r"features=3.*\(2, 4, 5, 6\)"):
        t(torch.randn(2, 4, 5, 6))

    class Fixed(ActNorm):  # e.g. statistics all-reduced across processes
        def data_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.full((self.features,), 2.0), torch.full((self.features,), 4.0)

    f = Fixed(2)
    f(torch.randn(8, 2))
    torch.testing.assert_close(f.loc.detach(), torch.full((2,), 2.0))
    torch.testing.assert_close(f.log_scale.detach(), torch.full((2,), math.log(4.0)))


# --- BatchNorm ----------------------------------------------------------------------------------------------------


def test_batchnorm_train_and_eval_statistics() -> None:
    torch.manual_seed(0)
    t = BatchNorm(3, momentum=0.25).double()
    x = 2 + 3 * torch.randn(400, 3, dtype=torch.float64)
    y, ladj = t(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    var, mean = torch.var_mean(x, 0, correction=0)
    torch.testing.assert_close(t.running_mean, 0.25 * mean)
    torch.testing.assert_close(t.running_var, 0.75 + 0.25 * var)
    torch.testing.assert_close(ladj, (-0.5 * torch.log(var + t.eps)).sum().expand(400))
    t.eval()
    z = torch.randn(5, 3, dtype=torch.float64)
    y_eval, _ = t(z)
    torch.testing.assert_close(y_eval, (z - t.running_mean) / torch.sqrt(t.running_var + t.eps))
    torch.testing.assert_close(t.running_mean, 0.25 * mean)  # eval does not update the running statistics


def test_batchnorm_ladj_matches_autograd_in_both_modes() -> None:
    torch.manual_seed(1)
    t = randomised(BatchNorm(4, momentum=1.0).double(), 0.5)
    x = 1 + 2 * torch.randn(64, 4, dtype=torch.float64)
    y_train, ladj_train = t(x)  # momentum 1: the running statistics become this batch's
    t.eval()
    y_eval, ladj_eval = t(x)
    torch.testing.assert_close(y_eval, y_train)
    torch.testing.assert_close(ladj_eval, ladj_train)
    # Train-mode ladj = log|det| of the map with the batch statistics held fixed, which is the eval map now.
    logdet = torch.linalg.slogdet(jacobians(lambda v: t(v)[0], x[:8]))[1]
    torch.testing.assert_close(ladj_train[:8], logdet, atol=1e-10, rtol=0)
    x2, ladj_inv = t.inverse(y_eval)
    torch.testing.assert_close(x2, x)
    torch.testing.assert_close(ladj_inv, -ladj_eval)
    # Gradients flow through the batch statistics in training mode.
    t.train()
    xg = x.clone().requires_grad_(True)
    t(xg)[0][:, 0].sum().backward()
    assert xg.grad is not None and xg.grad[:, 1:].abs().max() == 0 and xg.grad[:, 0].abs().max() < 1e-10


# --- coupling -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("learned", [False, True])
def test_soft_bound_is_a_scaled_tanh_with_exact_derivatives(learned: bool) -> None:
    # the sigmoid form runs in place on its own products: values, first and second derivatives must be untouched
    torch.manual_seed(0)
    raw = (4 * torch.randn(3, 2, 4, 5, dtype=torch.float64)).requires_grad_()
    bound = (torch.rand(2, 1, 1, dtype=torch.float64) + 0.5).requires_grad_() if learned else 3.0
    assert torch.allclose(soft_bound(raw, bound), bound * torch.tanh(raw / bound), atol=1e-12)
    inputs = (raw, bound) if learned else (raw,)
    f = soft_bound if learned else (lambda r: soft_bound(r, bound))
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)
    assert float(soft_bound(torch.tensor([1e4, -1e4]), 2.0).abs().max()) <= 2.0


def test_coupling_mask_validation() -> None:
    with pytest.raises(ValueError, match="at least one True"):
        VectorSplit(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        VectorSplit(torch.tensor([1, 0, 1]))
    with pytest.raises(TypeError, match="ElementwiseMap"):
        Coupling(coupling_mask(3), torch.nn.Identity(), torch.nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nn.Module"):
        Coupling(coupling_mask(3), AffineMap(), lambda x, c: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mask of shape \(4,\)"):
        AffineCoupling(4, mask=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="at least 2 features"):
        AffineCoupling(1)
    assert coupling_mask(5, "half", 0).tolist() == [True, True, False, False, False]
    assert coupling_mask(5, "alternate", 1).tolist() == [False, True, False, True, False]


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), features=st.integers(2, 7))
def test_coupling_block_and_gather_paths_agree(seed: int, features: int) -> None:
    """The contiguous-block fast path computes what the general gather/scatter path does."""
    torch.manual_seed(seed)
    split = VectorSplit(coupling_mask(features, "half", seed % 2))
    fast = randomised(Coupling(split, AffineMap(), mlp_conditioner(split, AffineMap(), hidden=8)).double(), 0.5)
    split = VectorSplit(coupling_mask(features, "half", seed % 2))
    slow = Coupling(split, AffineMap(), mlp_conditioner(split, AffineMap(), hidden=8)).double()
    slow.load_state_dict(fast.state_dict())
    slow.split._blocks = False
    assert fast.split._blocks
    x = torch.randn(6, features, dtype=torch.float64)
    for a, b in ((fast(x), slow(x)), (fast.inverse(x), slow.inverse(x))):  # equal to a few ulps (sums reordered)
        torch.testing.assert_close(a, b, rtol=1e-15, atol=1e-14)


def test_coupling_state_dict_restores_mask() -> None:
    torch.manual_seed(0)
    a = randomised(AffineCoupling(4, mask="alternate", hidden=8), 0.5)
    b = AffineCoupling(4, mask="half", hidden=8).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(b(x), a(x))
    with pytest.raises(ValueError, match="passing features"):
        AffineCoupling(5, hidden=8).load_state_dict(AffineCoupling(5, parity=1, hidden=8).state_dict())


def test_additive_coupling_is_volume_preserving() -> None:
    t = randomised(AdditiveCoupling(4, hidden=8), 0.5)
    x = torch.randn(7, 4, dtype=torch.float64)
    y, ladj = t(x)
    assert not torch.allclose(y, x) and bool((ladj == 0).all())


# --- RealNVP ------------------------------------------------------------------------------------------------------


def random_realnvp(seed: int, scale: float = 0.3, **kwargs) -> RealNVP:
    torch.manual_seed(seed)
    return randomised(RealNVP(2, **kwargs).double(), scale)  # type: ignore[return-value]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layers": 4, "hidden": 16},
        {"layers": 3, "hidden": 8, "coupling": "additive", "permutation": "reverse", "base": "diagonal"},
        {"layers": 3, "hidden": 8, "permutation": "random", "actnorm": True, "context_features": 3},
    ],
)
@SETTINGS
@given(n=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_realnvp_log_prob_matches_sample_and_log_prob(kwargs: dict, n: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = randomised(RealNVP(5, **kwargs).double(), 0.3)
    c = torch.randn(n, 3, dtype=torch.float64) if kwargs.get("context_features") else None
    model.log_prob(torch.randn(64, 5, dtype=torch.float64), c[:1] if c is not None else None)  # ActNorm data init
    x, log_q = model.sample_and_log_prob(n, c)
    assert x.shape == (n, 5) and log_q.shape == (n,) and x.dtype == torch.float64
    torch.testing.assert_close(model.log_prob(x, c), log_q, rtol=0, atol=1e-8)
    (x.sum() + log_q.sum()).backward()  # reparameterized: gradients reach every parameter
    assert all(p.grad is not None for p in model.parameters())


def test_realnvp_context_changes_samples() -> None:
    torch.manual_seed(0)
    model = randomised(RealNVP(3, layers=4, hidden=16, context_features=2), 0.3)
    c1, c2 = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    torch.manual_seed(1)
    x1 = model.sample(100, c1)
    torch.manual_seed(1)
    x1b = model.sample(100, c1)
    torch.manual_seed(1)
    x2 = model.sample(100, c2)
    torch.testing.assert_close(x1, x1b)
    assert ((x1 - x2).abs().max(-1).values > 1e-4).all()
    x = torch.randn(10, 3, dtype=torch.float64)
    assert not torch.allclose(model.log_prob(x, c1), model.log_prob(x, c2))


def test_realnvp_density_integrates_to_one() -> None:
    # a perturbation that keeps the mass inside the box (He-initialised conditioners amplify it)
    model = random_realnvp(0, scale=0.05, layers=8, hidden=32, actnorm=True, permutation="random")
    model.log_prob(torch.randn(512, 2, dtype=torch.float64))  # ActNorm data init
    lo, hi, n = -12.0, 12.0, 300
    h = (hi - lo) / n
    g = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_p = model.log_prob(grid)
        # The model is not the base any more, and the box is not doing the work: some mass lies beyond |x| = 2.
        assert (log_p - StandardNormal(2).double().log_prob(grid)).abs().max() > 0.5
        assert (model.sample(2000).abs() > 2).any(-1).double().mean() > 0.05
    z = float(torch.exp(torch.logsumexp(log_p, 0) + 2 * math.log(h)))
    assert abs(z - 1) < 1e-2, z


def test_realnvp_errors_and_structure() -> None:
    with pytest.raises(ValueError, match="at least 2 features"):
        RealNVP(1)
    for bad in ({"coupling": "spline"}, {"permutation": "shuffle"}, {"layers": 0}):
        with pytest.raises(ValueError):
            RealNVP(3, **bad)
    model = RealNVP(4, layers=3, hidden=8, context_features=2)
    with pytest.raises(ValueError, match=r"\(batch, 2\).*\(6, 3\)"):
        model.log_prob(torch.randn(6, 4), torch.randn(6, 3))
    with pytest.raises(ValueError, match="context"):
        model.log_prob(torch.randn(6, 4))
    assert isinstance(model, Flow)
    steps = RealNVP(4, layers=3, actnorm=True, batchnorm=True, permutation="random").transform
    kinds = [type(s).__name__ for s in steps]
    assert kinds == [
        "ActNorm",
        "AffineCoupling",
        "BatchNorm",
        "ActNorm",
        "RandomPermutation",
        "AffineCoupling",
        "BatchNorm",
        "ActNorm",
        "RandomPermutation",
        "AffineCoupling",
    ]
    # 2-D data with alternating masks: the two coordinates take turns; "reverse" is an alias of "alternate".
    for permutation in ("alternate", "reverse"):
        masks = [s.split.mask.tolist() for s in RealNVP(2, layers=3, permutation=permutation).transform]
        assert masks == [[True, False], [False, True], [True, False]]


def test_realnvp_fits_a_correlated_gaussian() -> None:
    """Maximum likelihood reaches the data's entropy (a quick end-to-end check of training)."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    target = torch.distributions.MultivariateNormal(torch.tensor([1.0, -1.0]), cov)
    model = RealNVP(2, layers=4, hidden=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(200):
        loss = -model.log_prob(target.sample((256,))).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        nll = -model.log_prob(target.sample((20000,))).mean().item()
    assert nll - target.entropy().item() < 0.1, (nll, target.entropy().item())


def test_checkpoints_written_before_the_split_load() -> None:
    """A coupling's state dict of the old layout (``mask``, ``log_bound`` on the layer itself) still loads."""
    from tractable.transforms.image_coupling import ImageAffineCoupling

    torch.manual_seed(0)
    a = randomised(AffineCoupling(4, mask="alternate", hidden=8), 0.5)
    old = {k.replace("split.", ""): v for k, v in a.state_dict().items()}
    b = AffineCoupling(4, mask="half", hidden=8).double()
    b.load_state_dict(old)
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(b(x), a(x))
    image = randomised(ImageAffineCoupling(2, mask="channel", learn_bound=True, hidden=4, blocks=1), 0.3)
    old = {k.replace("map.", ""): v for k, v in image.state_dict().items()}
    assert "log_bound" in old
    fresh = ImageAffineCoupling(2, mask="channel", learn_bound=True, hidden=4, blocks=1).double()
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.map.log_bound, image.map.log_bound)
