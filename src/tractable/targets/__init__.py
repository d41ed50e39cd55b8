"""What a flow is fitted to: unnormalized energies (reverse KL), toy 2D data and users' tables (maximum likelihood)."""

from .energies import TARGETS, U1, U2, U3, U4, Energy, GaussianMixtureEnergy, Ring, get_target
from .entropy import entropy_integral_2d, grid_entropy
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
    "ALIASES", "Checkerboard", "DATASETS", "EightGaussians", "Energy", "GaussianMixtureData", "GaussianMixtureEnergy",
    "Pinwheel", "Ring", "Rings", "StandardizeTransform", "Standardizer", "SwissRoll", "TARGETS", "Table", "ToyDataset",
    "TwoMoons", "TwoSpirals", "U1", "U2", "U3", "U4", "entropy_integral_2d", "get_dataset", "get_target",
    "grid_entropy", "grid_log_z", "load_table", "log_integral_2d", "sample_splits", "split",
]
