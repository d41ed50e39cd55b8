"""What a flow is fitted to: unnormalized energies (reverse KL), toy 2D data and users' tables (maximum likelihood)."""

from .energies import TARGETS, U1, U2, U3, U4, Energy, GaussianMixtureEnergy, Ring, get_target
from .entropy import entropy_integral_2d, grid_entropy
from .images import IMAGE_DATASETS, ImageData, load_cifar10, load_digits, load_images, load_mnist, read_idx
from .quadrature import grid_log_z, log_integral_2d
from .tabular import Standardizer, StandardizeTransform, Table, load_table, split
from .toy import (
    ALIASES,
    DATASETS,
    Checkerboard,
    EightGaussians,
    GaussianMixtureData,
    Pinwheel,
    Rings,
    SwissRoll,
    ToyDataset,
    TwoMoons,
    TwoSpirals,
    get_dataset,
    sample_splits,
)

__all__ = [
    "ALIASES",
    "DATASETS",
    "IMAGE_DATASETS",
    "TARGETS",
    "U1",
    "U2",
    "U3",
    "U4",
    "Checkerboard",
    "EightGaussians",
    "Energy",
    "GaussianMixtureData",
    "GaussianMixtureEnergy",
    "ImageData",
    "Pinwheel",
    "Ring",
    "Rings",
    "StandardizeTransform",
    "Standardizer",
    "SwissRoll",
    "Table",
    "ToyDataset",
    "TwoMoons",
    "TwoSpirals",
    "entropy_integral_2d",
    "get_dataset",
    "get_target",
    "grid_entropy",
    "grid_log_z",
    "load_cifar10",
    "load_digits",
    "load_images",
    "load_mnist",
    "load_table",
    "log_integral_2d",
    "read_idx",
    "sample_splits",
    "split",
]
