"""Training: the loop, checkpoints, progress display and run directories."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .progress import Progress
from .reverse_kl import COLUMNS, FitHistory, NonFiniteError, fit_reverse_kl, make_scheduler, seed_everything
from .run import REVERSE_KL_KEYS, build, load_run, run_fit

__all__ = [
    "COLUMNS", "CheckpointError", "FitHistory", "NonFiniteError", "Progress", "REVERSE_KL_KEYS", "build",
    "fit_reverse_kl", "load_checkpoint", "load_run", "make_scheduler", "run_fit", "save_checkpoint",
    "seed_everything",
]
