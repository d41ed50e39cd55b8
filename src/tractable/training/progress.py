"""Progress display: a tqdm bar on a terminal, plain periodic lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm


class Progress:
    """Shows training progress for ``total`` steps.

    On a terminal a tqdm bar with the latest metrics; elsewhere one plain line every ``every`` steps (and at the end),
    so logs stay readable. ``enabled=False`` shows nothing.
    """

    def __init__(self, total: int, *, desc: str = "fit", enabled: bool = True, every: int | None = None,
                 stream: TextIO | None = None):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every or max(1, total // 10)
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, file=self.stream, dynamic_ncols=True, leave=True) if self.tty else None

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Report that ``step`` (1-based count of finished steps) is done, with ``metrics`` to show."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
            self.bar.update(step - self.bar.n)  # redraws at most every tqdm.mininterval
        elif step % self.every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.start
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"{self.desc} step {step}/{self.total} {shown} [{elapsed:.1f}s]", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
