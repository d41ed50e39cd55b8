"""Training, as a library: one loop (:func:`fit`) that takes a loss (reverse KL, maximum likelihood — the dequantized
likelihood on images), an optional :class:`Validation` and :class:`TrainOptions`, on one core (:class:`Trainer`);
checkpoints that resume exactly, DDP, metric logging, progress display and evaluation. It knows nothing of
configuration files, run directories or plots."""

from .checkpoint import (
    CheckpointError,
    latest_step_checkpoint,
    load_checkpoint,
    load_model_state,
    newest_intact_checkpoint,
    save_checkpoint,
)
from .data_init import fresh_conditioners, initialize_from_data
from .distributed import (
    CollectiveError,
    DistContext,
    collective_failure,
    end_process,
    init_distributed,
    shutdown_distributed,
)
from .evaluation import (
    TOY_TEST_SEED,
    evaluate_bpd,
    evaluate_conditional_toy,
    evaluate_nll,
    evaluate_toy,
    nll_per_row,
)
from .export import load_safetensors, save_safetensors
from .hygiene import EMA, NonFiniteError, first_nonfinite_layer, make_adam, make_scheduler, seed_everything
from .loop import FitHistory, Loss, fit
from .losses import COLUMNS, ML_COLUMNS, LikelihoodLoss, ReverseKLLoss
from .max_likelihood import fit_max_likelihood
from .metrics_log import MetricsLog, read_metrics_csv
from .options import TrainOptions
from .progress import Progress
from .reverse_kl import fit_reverse_kl
from .rng import get_rng_state, set_rng_state
from .trainer import StepResult, Trainer
from .validation import Validation

__all__ = [
    "COLUMNS",
    "EMA",
    "ML_COLUMNS",
    "TOY_TEST_SEED",
    "CheckpointError",
    "CollectiveError",
    "DistContext",
    "FitHistory",
    "LikelihoodLoss",
    "Loss",
    "MetricsLog",
    "NonFiniteError",
    "Progress",
    "ReverseKLLoss",
    "StepResult",
    "TrainOptions",
    "Trainer",
    "Validation",
    "collective_failure",
    "end_process",
    "evaluate_bpd",
    "evaluate_conditional_toy",
    "evaluate_nll",
    "evaluate_toy",
    "first_nonfinite_layer",
    "fit",
    "fit_max_likelihood",
    "fit_reverse_kl",
    "fresh_conditioners",
    "get_rng_state",
    "init_distributed",
    "initialize_from_data",
    "latest_step_checkpoint",
    "load_checkpoint",
    "load_model_state",
    "load_safetensors",
    "make_adam",
    "make_scheduler",
    "newest_intact_checkpoint",
    "nll_per_row",
    "read_metrics_csv",
    "save_checkpoint",
    "save_safetensors",
    "seed_everything",
    "set_rng_state",
    "shutdown_distributed",
]
