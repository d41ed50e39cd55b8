"""Names that changed in 0.2 fail with an error naming the new one: keyword arguments and moved modules."""

from __future__ import annotations

import importlib

import pytest

from tractable.dequantization import VariationalDequantization
from tractable.models import FlowPlusPlus, Glow, ImageRealNVP
from tractable.nn import MADE, MLP
from tractable.transforms import (
    AdditiveCoupling,
    AffineCoupling,
    MaskedAffineAutoregressive,
    MaskedSplineAutoregressive,
)


@pytest.mark.parametrize(
    "build, old, new",
    [
        (lambda: MLP(2, 2, layers=3), "layers", "blocks"),
        (lambda: MADE(3, 2, layers=3), "layers", "blocks"),
        (lambda: AffineCoupling(4, layers=3), "layers", "blocks"),
        (lambda: AdditiveCoupling(4, layers=3), "layers", "blocks"),
        (lambda: MaskedAffineAutoregressive(3, layers=3), "layers", "blocks"),
        (lambda: MaskedSplineAutoregressive(3, layers=3), "layers", "blocks"),
        (lambda: VariationalDequantization((1, 4, 4), 17, features=False), "features", "context_net"),
        (lambda: VariationalDequantization((1, 4, 4), 17, feature_blocks=2), "feature_blocks", "context_blocks"),
        (lambda: FlowPlusPlus((1, 8, 8), levels=17, dequantization_options={}), "dequantization_options",
         "dequantizer"),
        (lambda: Glow((1, 8, 8), levels=17, dequantization_options={}), "dequantization_options", "dequantizer"),
        (lambda: ImageRealNVP((1, 8, 8), levels=17, dequantization_options={}), "dequantization_options",
         "dequantizer"),
    ],
)
def test_old_keywords_name_the_new_ones(build, old, new):
    with pytest.raises(TypeError, match=f"argument '{old}' is now '{new}'"):
        build()


def test_renamed_keeps_the_signature():
    import inspect

    assert "blocks" in inspect.signature(AffineCoupling).parameters
    assert "layers" not in inspect.signature(AffineCoupling).parameters
    assert AffineCoupling(4, blocks=1)(__import__("torch").zeros(2, 4))[0].shape == (2, 4)


@pytest.mark.parametrize(
    "old, new",
    [("tractable.config", "tractable.app.config"), ("tractable.commands", "tractable.app.commands"),
     ("tractable.training.run", "tractable.app.run"), ("tractable.transforms.univariate", "tractable.transforms.maps")],
)
def test_moved_modules_name_the_new_place(old, new):
    with pytest.raises(ModuleNotFoundError, match=f"{old} is now {new}"):
        importlib.import_module(old)
    importlib.import_module(new)
