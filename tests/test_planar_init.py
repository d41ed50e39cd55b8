"""Planar's starting values: no map contracts at the start (m = wᵀû = 0, so log|det| = 0 exactly), the identity start
is near the identity, the shear start shears by about its scale, and the option is checked where it is given."""

from __future__ import annotations

import math

import pytest
import torch

from tractable import Planar, PlanarFlow
from tractable.models.registry import MODELS
from tractable.transforms.planar import INITS


@pytest.mark.parametrize(("init", "tol"), [("shear", 1e-6), ("identity", 0.05)])
def test_no_map_contracts_at_the_start(init: str, tol: float) -> None:
    torch.manual_seed(0)
    t = Planar(2, layers=32, init=init).double()
    _, m = t.constrained()
    # shear: m = 0 up to the float32 rounding of the stored u; identity: m of order its 0.01 noise (a u drawn
    # independently of w gives m of order 1, mostly < 0)
    assert m.abs().max().item() < tol
    x = 3 * torch.randn(512, 2, dtype=torch.float64)
    y, ladj = t(x)
    assert ladj.abs().max().item() < 10 * tol  # a shear preserves volume
    torch.testing.assert_close(t.inverse(y)[0], x, rtol=0, atol=1e-10)


def test_the_two_starts_differ_in_size() -> None:
    torch.manual_seed(0)
    x = torch.randn(4096, 2, dtype=torch.float64)
    moved = {}
    for init in ("shear", "identity"):
        t = Planar(2, layers=64, init=init).double()
        uh, _ = t.constrained()
        w = t.w / torch.linalg.vector_norm(t.w, dim=-1, keepdim=True)
        across = uh - (uh * w).sum(-1, keepdim=True) * w
        moved[init] = torch.linalg.vector_norm(across, dim=-1).mean().item()
    # û across w: u ~ U(±s·√2) per entry gives a mean length of about 0.67 s in 2D, times a factor of mean
    # 0.9 / ln 10 ≈ 0.39 (log-uniform on [0.1, 1]); the identity start 0.01
    s = INITS["shear"]
    assert 0.15 * s < moved["shear"] < 0.4 * s, moved
    assert moved["identity"] < 0.03, moved
    t = Planar(2, layers=64, init="shear", scale=0.0).double()
    assert (t(x)[0] - x).abs().max().item() < 1e-5  # scale 0: every map the identity (up to float32 rounding)


def test_shear_is_the_default_and_the_model_option() -> None:
    assert Planar(2).init == "shear"
    flow = MODELS["planar"](2, 4, init="identity")
    assert flow.transform.transform.init == "identity"
    assert PlanarFlow(2, 4, init="identity").transform.transform.init == "identity"


def test_init_is_checked() -> None:
    with pytest.raises(ValueError, match="init must be one of shear, identity; got 'normal'"):
        Planar(2, init="normal")
    with pytest.raises(ValueError, match="scale must be >= 0; got -1.0"):
        Planar(2, scale=-1.0)
    with pytest.raises(ValueError, match="init is an option of the planar flow, not of 'radial'"):
        PlanarFlow(2, 4, flow="radial", init="shear")
    with pytest.raises(ValueError, match="init is an option of the planar flow, not of 'sylvester'"):
        PlanarFlow(2, 4, flow="sylvester", init="shear")


def test_log_e_minus_1_puts_m_at_zero() -> None:
    c = math.log(math.e - 1)
    assert abs(math.log1p(math.exp(c)) - 1) < 1e-15
