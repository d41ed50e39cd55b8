"""The application: configurations, the three tasks (energy, data, image), run directories and the run commands.

``tractable fit`` resolves a configuration (:mod:`.resolve`: the task's defaults, a file or preset, the command
line), runs it through its task (:mod:`.run`) into a run directory, and ``tractable eval``/``sample``/``plot``
(:mod:`.commands`) open that directory again through the same task. Everything below (training, models, plots,
targets) knows nothing of this layer.
"""

from .commands import evaluate_run, plot_run, sample_run
from .config import ConfigError, FitConfig
from .resolve import load_config, resolve
from .run import Run, RunDirError, load_run, open_run, run_fit
from .tasks import TASKS, Task, task_for

__all__ = [
    "TASKS",
    "ConfigError",
    "FitConfig",
    "Run",
    "RunDirError",
    "Task",
    "evaluate_run",
    "load_config",
    "load_run",
    "open_run",
    "plot_run",
    "resolve",
    "run_fit",
    "sample_run",
    "task_for",
]
