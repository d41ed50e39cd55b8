"""tractable: normalizing flows with exact, tractable densities, in PyTorch.

The public API is importable from here, lazily: ``import tractable`` loads no submodule, and a name such as
``tractable.NSF`` imports its module on first use. So the mathematics (transforms, models, distributions) never
pays for the training library, the plots, tqdm or matplotlib. docs/architecture.md describes the layers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import Any

__version__ = "0.2.0"
"""The version of tractable, as in ``pyproject.toml`` and ``tractable --version``.

Example:
    >>> import tractable
    >>> tractable.__version__
    '0.2.0'
"""

#: submodule -> the public names it provides.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "diagnostics": ("pareto_k", "pareto_k_reading", "psis", "psis_expectation", "reverse_summary"),
    "dequantization": ("UniformDequantization", "VariationalDequantization", "bits_per_dim", "unit_bits_per_dim"),
    "distributions": (
        "DiagonalGaussian", "Distribution", "GaussianMixture", "StandardLogistic", "StandardNormal", "TorchBase",
        "as_base", "make_base",
    ),
    "flow": ("Flow", "FlowDistribution", "values_checked"),
    "models": (
        "FlowPlusPlus", "Glow", "IAF", "ImageFlow", "ImageRealNVP", "MAF", "NSF", "PlanarFlow", "RealNVP",
        "build_image_model",
    ),
    "preprocessing": ("scale_report", "standardize_flow"),
    "objectives": ("annealing", "ess_fraction", "evaluate_reverse", "forward_kl", "log_z_estimate", "reverse_kl"),
    "targets": (
        "DATASETS", "CallableTarget", "DistributionTarget", "Energy", "GaussianMixtureEnergy", "ImageData", "Ring",
        "Standardizer", "TARGETS", "U1", "U2", "U3", "U4", "as_target", "get_dataset", "get_target", "load_cifar10",
        "load_digits", "load_images", "load_mnist", "load_table",
    ),
    "training": (
        "TrainOptions", "Trainer", "evaluate_bpd", "evaluate_nll", "fit", "fit_max_likelihood", "fit_reverse_kl",
        "load_safetensors", "save_safetensors",
    ),
    "transforms": (
        "ActNorm", "AdditiveCoupling", "AdditiveMap", "AffineCoupling", "AffineMap", "BatchNorm", "Compose",
        "Coupling", "ElementwiseAffine", "ElementwiseMap", "FactorOut", "ImageAffineCoupling", "ImageSplit",
        "Inverse", "InvertibleConv1x1", "LULinear", "LogisticMixtureMap", "Logit", "MaskedAffineAutoregressive",
        "MaskedAutoregressive", "MaskedSplineAutoregressive", "MixtureLogisticCoupling", "Planar", "RQSplineMap",
        "Radial", "RandomPermutation", "ReversePermutation", "Sigmoid", "Squeeze", "Squeezed", "StandardizeTransform",
        "Sylvester", "Transform", "VectorSplit", "WhitenTransform", "mlp_conditioner", "resnet_conditioner",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(["__version__", *_WHERE])  # noqa: PLE0605 - derived from _EXPORTS, the one list of names


#: Modules of 0.1 that moved -> where they are now. Importing an old one is an error that names the new one.
_MOVED = {
    "tractable.config": "tractable.app.config",
    "tractable.commands": "tractable.app.commands",
    "tractable.training.run": "tractable.app.run",
    "tractable.training.run_energy": "tractable.app.tasks.energy",
    "tractable.training.run_data": "tractable.app.tasks.data",
    "tractable.training.run_images": "tractable.app.tasks.image",
    "tractable.transforms.univariate": "tractable.transforms.maps",
    "tractable.targets.entropy": "tractable.targets.quadrature",
}


class _MovedModules(importlib.abc.MetaPathFinder):
    """Consulted last, so only for a module no other finder has: an old module name gets a clear error."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in _MOVED:
            raise ModuleNotFoundError(f"{name} is now {_MOVED[name]}", name=name)


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tractable' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
