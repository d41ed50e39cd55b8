"""Every random-number generator's state as plain, weights-only-loadable values, and back.

A resumed run must draw exactly the numbers the uninterrupted run would have drawn, so a checkpoint holds the state of
PyTorch's CPU generator (and every CUDA device's, when present), NumPy's legacy global generator and Python's
``random``. NumPy arrays and Python tuples are converted to tensors and lists, which ``torch.load(weights_only=True)``
accepts.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

#: The prime that spreads a seed and a small index (a rank, an epoch) over distinct generator seeds: the shuffling
#: of epoch ``e`` uses ``seed · SEED_STRIDE + e`` and rank ``r`` of a distributed run ``seed + SEED_STRIDE · r``.
SEED_STRIDE = 1_000_003


def get_rng_state() -> dict[str, Any]:
    """The state of the torch (CPU and CUDA), NumPy and Python generators of this process."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only where this process has the same devices)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
