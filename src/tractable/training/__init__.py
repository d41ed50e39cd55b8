"""Training: the reverse-KL and maximum-likelihood loops, checkpoints, progress display and run directories."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .max_likelihood import (
    ML_COLUMNS,
    MaxLikelihoodHistory,
    evaluate_conditional_toy,
    evaluate_nll,
    evaluate_toy,
    fit_max_likelihood,
    nll_per_row,
)
from .progress import Progress
from .reverse_kl import (
    COLUMNS,
    FitHistory,
    NonFiniteError,
    fit_reverse_kl,
    make_adam,
    make_scheduler,
    seed_everything,
)
from .run import REVERSE_KL_KEYS, build, load_run, run_fit

__all__ = [
    "COLUMNS", "CheckpointError", "FitHistory", "ML_COLUMNS", "MaxLikelihoodHistory", "NonFiniteError", "Progress",
    "REVERSE_KL_KEYS", "build", "evaluate_conditional_toy", "evaluate_nll", "evaluate_toy", "fit_max_likelihood",
    "fit_reverse_kl", "load_checkpoint", "load_run", "make_adam", "make_scheduler", "nll_per_row", "run_fit",
    "save_checkpoint", "seed_everything",
]
