"""Test-wide settings: one torch thread per process (tests run two processes in parallel on two cores)."""

import os

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
