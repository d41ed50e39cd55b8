"""Training: the reverse-KL and maximum-likelihood loops on one shared core (:class:`Trainer`), checkpoints that
resume exactly, DDP, metric logging and progress display. Run directories and configurations are the application's
(:mod:`tractable.app`)."""

from .checkpoint import CheckpointError, latest_step_checkpoint, load_checkpoint, save_checkpoint
from .distributed import DistContext, init_distributed, initialize_actnorm, shutdown_distributed
from .evaluation import evaluate_bpd
from .export import load_safetensors, save_safetensors
from .hygiene import EMA, first_nonfinite_layer
from .max_likelihood import (
    ML_COLUMNS,
    MaxLikelihoodHistory,
    evaluate_conditional_toy,
    evaluate_nll,
    evaluate_toy,
    fit_max_likelihood,
    nll_per_row,
)
from .metrics_log import MetricsLog, read_metrics_csv
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
from .rng import get_rng_state, set_rng_state
from .trainer import StepResult, Trainer

__all__ = [
    "COLUMNS",
    "EMA",
    "ML_COLUMNS",
    "CheckpointError",
    "DistContext",
    "FitHistory",
    "MaxLikelihoodHistory",
    "MetricsLog",
    "NonFiniteError",
    "Progress",
    "StepResult",
    "Trainer",
    "evaluate_bpd",
    "evaluate_conditional_toy",
    "evaluate_nll",
    "evaluate_toy",
    "first_nonfinite_layer",
    "fit_max_likelihood",
    "fit_reverse_kl",
    "get_rng_state",
    "init_distributed",
    "initialize_actnorm",
    "latest_step_checkpoint",
    "load_checkpoint",
    "load_safetensors",
    "make_adam",
    "make_scheduler",
    "nll_per_row",
    "read_metrics_csv",
    "save_checkpoint",
    "save_safetensors",
    "seed_everything",
    "set_rng_state",
    "shutdown_distributed",
]
