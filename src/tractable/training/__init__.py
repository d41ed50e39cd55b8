"""Training: the reverse-KL and maximum-likelihood loops on one shared core (:class:`Trainer`), checkpoints that
resume exactly, DDP, metric logging, progress display and run directories."""

from .checkpoint import CheckpointError, latest_step_checkpoint, load_checkpoint, save_checkpoint
from .distributed import DistContext, init_distributed, initialize_actnorm, shutdown_distributed
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
from .run import REVERSE_KL_KEYS, build, load_run, run_fit
from .run_images import IMAGE_KEYS, build_image, evaluate_bpd, load_image_data
from .trainer import StepResult, Trainer

__all__ = [
    "COLUMNS",
    "EMA",
    "IMAGE_KEYS",
    "ML_COLUMNS",
    "REVERSE_KL_KEYS",
    "CheckpointError",
    "DistContext",
    "FitHistory",
    "MaxLikelihoodHistory",
    "MetricsLog",
    "NonFiniteError",
    "Progress",
    "StepResult",
    "Trainer",
    "build",
    "build_image",
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
    "load_image_data",
    "load_run",
    "load_safetensors",
    "make_adam",
    "make_scheduler",
    "nll_per_row",
    "read_metrics_csv",
    "run_fit",
    "save_checkpoint",
    "save_safetensors",
    "seed_everything",
    "set_rng_state",
    "shutdown_distributed",
]
