"""Per-step metrics: ``metrics.csv`` always, ``metrics.jsonl`` beside it, TensorBoard events when installed.

On resume the files are cut back to the rows of the checkpoint's step (a killed run may have logged further steps,
which the resumed run repeats), so a resumed run's logs equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..utils import atomic_write_text


def row_columns(loss_columns: Sequence[str]) -> tuple[str, ...]:
    """The metric columns of a fit whose loss adds ``loss_columns``: ``step, loss, *loss_columns, lr, grad_norm``."""
    return ("step", "loss", *loss_columns, "lr", "grad_norm")


def _csv_value(v: Any) -> Any:
    return "" if isinstance(v, float) and math.isnan(v) else v


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` as floats (``step`` as int; empty cells NaN).

    Reading stops at the first incomplete or unreadable row, or at a ``step`` that does not increase (a line cut
    short by a killed process).
    """
    rows: list[dict[str, float]] = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                parsed = {k: (int(v) if k == "step" else (float(v) if v != "" else math.nan))
                          for k, v in row.items() if k is not None}
            except (TypeError, ValueError):
                break
            if None in row or (rows and "step" in parsed and parsed["step"] <= rows[-1]["step"]):
                break
            rows.append(parsed)
    return rows


class MetricsLog:
    """Writes one row per step to CSV (``columns``), JSON lines and, when installed, TensorBoard.

    Args:
        columns: the CSV columns (every row holds these keys).
        csv_path: the CSV file (``None``: none).
        jsonl_path: the JSON-lines file (``None``: none); non-finite values become ``null``.
        tensorboard_dir: TensorBoard log directory (``None`` or TensorBoard not installed: none).
        resume_step: continue existing files, keeping only the rows with ``step <= resume_step``; they are
            available as :attr:`previous`.
    """

    def __init__(self, columns: Sequence[str], *, csv_path: str | Path | None = None,
                 jsonl_path: str | Path | None = None, tensorboard_dir: str | Path | None = None,
                 resume_step: int | None = None):
        self.columns = tuple(columns)
        self.previous: list[dict[str, float]] = []
        self._csv: TextIO | None = None
        self._jsonl: TextIO | None = None
        self._writer: csv.DictWriter | None = None
        self._tb: Any = None
        if csv_path is not None:
            csv_path = Path(csv_path)
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is not None and csv_path.is_file():
                self.previous = [r for r in read_metrics_csv(csv_path) if r["step"] <= resume_step]
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=self.columns, lineterminator="\n")
            writer.writeheader()
            for row in self.previous:
                writer.writerow({k: _csv_value(row.get(k, math.nan)) for k in self.columns})
            atomic_write_text(csv_path, text.getvalue())  # atomically: a second kill now loses nothing
            self._csv = open(csv_path, "a", newline="")  # noqa: SIM115 - closed in close()
            self._writer = csv.DictWriter(self._csv, fieldnames=self.columns, lineterminator="\n")
        if jsonl_path is not None:
            jsonl_path = Path(jsonl_path)
            jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            kept = []
            if resume_step is not None and jsonl_path.is_file():
                for line in jsonl_path.read_text().splitlines():
                    try:
                        if json.loads(line).get("step", math.inf) <= resume_step:
                            kept.append(line + "\n")
                    except json.JSONDecodeError:
                        break  # a line cut by the kill: everything after it is gone too
            atomic_write_text(jsonl_path, "".join(kept))
            self._jsonl = open(jsonl_path, "a")  # noqa: SIM115 - closed in close()
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra `tensorboard` is not installed
                SummaryWriter = None
            if SummaryWriter is not None:
                purge = None if resume_step is None else resume_step + 1
                self._tb = SummaryWriter(str(tensorboard_dir), purge_step=purge)

    @property
    def tensorboard(self) -> bool:
        """Whether TensorBoard events are written."""
        return self._tb is not None

    def write(self, row: dict[str, Any]) -> None:
        """Log one row (its ``step`` is the x-axis of TensorBoard)."""
        if self._writer is not None:
            self._writer.writerow({k: _csv_value(row[k]) for k in self.columns})
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"train/{k}", v, row["step"])

    def flush(self) -> None:
        """Push buffered rows to disk (before a checkpoint, so the files hold every row up to its step)."""
        for f in (self._csv, self._jsonl):
            if f is not None:
                f.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        for f in (self._csv, self._jsonl):
            if f is not None:
                f.close()
        if self._tb is not None:
            self._tb.close()
        self._csv = self._jsonl = self._tb = None
