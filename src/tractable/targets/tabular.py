"""Tabular data from a user's file: load (``.npy`` / ``.csv``), split reproducibly, standardize on the training split.

A density is only comparable across pre-processing if it is reported in the original units: standardizing with
``x̃ = (x − μ)/σ`` multiplies densities by ``Π σ_j``, so ``NLL_original = NLL_standardized + Σ_j log σ_j``.
:class:`Standardizer` keeps ``μ`` and ``σ`` as plain lists (for a checkpoint or JSON) and applies that correction.

References:
    Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017), arXiv:1705.07057 — the tabular
        benchmarks (POWER, GAS, ...), standardized with training statistics and reported in nats.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..transforms.elementwise import StandardizeTransform

_SHOWN = 5  # how many bad cells an error message lists
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file


@dataclass
class Table:
    """A loaded table: ``features`` ``(rows, D)``, optional ``context`` ``(rows, C)`` and the column names (if any)."""

    features: Tensor
    context: Tensor | None = None
    feature_names: list[str] | None = None
    context_names: list[str] | None = None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff(line: str) -> str | None:
    """The delimiter of a CSV line: comma, tab or semicolon if present, else ``None`` (whitespace)."""
    for d in (",", "\t", ";"):
        if d in line:
            return d
    return None


def _split_line(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [cell.strip() for cell in next(csv.reader(io.StringIO(line), delimiter=delimiter))]


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, a leading byte-order mark dropped (spreadsheets write one)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"file {str(path)!r} is not UTF-8 text (byte {e.start}: {e.reason}); expected a CSV of "
                         "numbers") from None


def _read_csv(path: Path, delimiter: str | None) -> tuple[np.ndarray, list[str] | None, np.ndarray]:
    """The numbers, the header (if any) and the file's line number of every data row."""
    lines = [(i + 1, line) for i, line in enumerate(_read_text(path).splitlines()) if line.strip()]
    if not lines:
        raise ValueError(f"file {str(path)!r} is empty; expected a header and/or rows of numbers")
    if delimiter is None:
        delimiter = _sniff(lines[0][1])
    first = _split_line(lines[0][1], delimiter)
    header = None
    if any(cell and not _is_number(cell) for cell in first):
        header, lines = first, lines[1:]
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise ValueError(f"file {str(path)!r} names the columns {duplicates} more than once in its header; "
                             "expected unique column names")
        if not lines:
            raise ValueError(f"file {str(path)!r} has a header but no data rows")
    width = len(header) if header is not None else len(_split_line(lines[0][1], delimiter))
    data = np.empty((len(lines), width), dtype=np.float64)
    for r, (line_no, line) in enumerate(lines):
        cells = _split_line(line, delimiter)
        if len(cells) != width:
            raise ValueError(
                f"file {str(path)!r} line {line_no}: expected {width} columns, got {len(cells)}"
                + (" (is the delimiter right?)" if len(cells) == 1 else "")
            )
        for c, cell in enumerate(cells):
            if cell == "":
                data[r, c] = math.nan  # a missing cell, reported with the other non-finite cells
                continue
            try:
                data[r, c] = float(cell)
            except ValueError:
                name = f" ({header[c]!r})" if header is not None else ""
                raise ValueError(
                    f"file {str(path)!r} line {line_no} (data row {r}) column {c}{name}: expected a number, got "
                    f"{cell!r} (encode a text column, such as a category, as numbers or drop it)"
                ) from None
    return data, header, np.array([n for n, _ in lines])


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        magic = f.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise ValueError(f"file {str(path)!r} is not a .npy file (it does not begin with the .npy magic bytes); "
                         "expected an array saved by numpy.save (a CSV file should end in .csv)")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = "it holds Python objects" if "pickled" in str(e) else str(e)
        raise ValueError(f"file {str(path)!r} is not a readable numeric .npy array: {reason}") from None
    if data.ndim != 2:
        hint = ("; --data reads tables: images (N, C, H, W) of integer levels fit from Python, with "
                "build_image_model and fit_max_likelihood (user guide, 'Images')" if data.ndim in (3, 4) else "")
        raise ValueError(f"expected a 2D array (rows, columns) in {str(path)!r}, got shape {data.shape}{hint}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ValueError(f"expected a float or integer array in {str(path)!r}, got dtype {data.dtype}")
    return data.astype(np.float64)


def _place(lines: np.ndarray | None, r: int) -> str:
    """Where data row ``r`` is in its file: the line of a CSV, the row of an array."""
    return f"line {lines[r]}" if lines is not None else f"row {r}"


def _check_finite(data: np.ndarray, path: Path, lines: np.ndarray | None, dtype: torch.dtype) -> None:
    """Every cell finite, and representable in ``dtype`` (``1e39`` overflows float32 to infinity)."""
    bad = ~np.isfinite(data)
    if bad.any():
        rows, cols = np.nonzero(bad)
        shown = ", ".join(f"{_place(lines, r)} column {c} ({data[r, c]})" for r, c in zip(rows[:_SHOWN], cols[:_SHOWN]))
        more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
        raise ValueError(
            f"file {str(path)!r} has {len(rows)} non-finite or missing cells in {len(np.unique(rows))} rows, "
            f"columns {np.unique(cols).tolist()}: {shown}{more}; expected finite numbers (drop or impute them)"
        )
    largest = torch.finfo(dtype).max
    over = np.abs(data) > largest
    if over.any():
        rows, cols = np.nonzero(over)
        r, c = rows[0], cols[0]
        raise ValueError(
            f"file {str(path)!r} {_place(lines, r)} column {c}: {float(data[r, c])!r} overflows {str(dtype)[6:]} "
            f"(largest {largest:.4g}; {len(rows)} cell{'s' if len(rows) > 1 else ''} in all); expected values within "
            "range (rescale the column, or train in float64: --set train.dtype=float64)"
        )


def _resolve_columns(spec: Sequence[int | str], width: int, header: list[str] | None, path: Path) -> list[int]:
    out = []
    for col in spec:
        if isinstance(col, str):
            if header is None or col not in header:
                known = f"the header has {header}" if header is not None else "the file has no header"
                raise ValueError(f"context column {col!r} not found in {str(path)!r}; {known}")
            out.append(header.index(col))
        elif isinstance(col, (int, np.integer)) and not isinstance(col, bool):
            if not -width <= col < width:
                raise ValueError(
                    f"context column {col} is out of range for {str(path)!r}, which has {width} columns "
                    f"(expected -{width} <= column < {width})"
                )
            out.append(int(col) % width)
        else:
            raise TypeError(f"expected context columns as ints or header names, got {col!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"context columns {list(spec)} name the same column twice")
    if len(out) >= width:
        raise ValueError(f"context columns {list(spec)} leave no feature columns in {str(path)!r} ({width} columns)")
    return out


def load_table(
    path: str | Path,
    *,
    context_columns: Sequence[int | str] | None = None,
    delimiter: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Table:
    """Read a 2D table of numbers from ``.npy`` or ``.csv`` (or ``.txt``/``.tsv``) into tensors.

    A CSV's first line is taken as a header when any of its cells is not a number. Without ``delimiter`` the first
    line decides: comma, tab or semicolon if present, otherwise whitespace. Empty cells count as missing.

    Args:
        path: the file.
        context_columns: columns (indices, negative allowed, or header names) to return as ``context`` (the
            conditioning variables of a conditional flow), in the order given; the other columns, in file order, are
            the ``features``.
        delimiter: the CSV delimiter (default: detected).
        dtype: the floating dtype of the returned tensors.

    A CSV is read as UTF-8 (a leading byte-order mark is dropped); its header names must be unique. A ``.npy`` file
    must be an array saved by ``numpy.save`` (nothing is unpickled).

    Raises:
        ValueError: naming the file, for a missing file, an unsupported extension, a file that is not what its
            extension says, a non-2D array, a non-numeric cell, rows of unequal length, duplicate header names,
            NaN/inf/missing cells or values that overflow ``dtype`` (with their lines of a CSV, rows of an array, and
            columns) or bad context columns.

    Example:
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from tractable import load_table
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
        >>> np.savetxt(path, [[1.5, 75, 30], [1.25, 60, 41]], delimiter=",", header="height,weight,age", comments="")
        >>> table = load_table(path, context_columns=["age"])
        >>> table.features.tolist(), table.context.tolist()
        ([[1.5, 75.0], [1.25, 60.0]], [[30.0], [41.0]])
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    header: list[str] | None = None
    lines: np.ndarray | None = None
    if suffix == ".npy":
        data = _read_npy(path)
    elif suffix in (".csv", ".txt", ".tsv"):
        data, header, lines = _read_csv(path, "\t" if suffix == ".tsv" and delimiter is None else delimiter)
    else:
        raise ValueError(f"unsupported data file extension {suffix!r} for {str(path)!r}; expected .npy or .csv")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"expected at least one row and one column in {str(path)!r}, got shape {data.shape}")
    _check_finite(data, path, lines, dtype)
    ctx_idx = _resolve_columns(context_columns, data.shape[1], header, path) if context_columns else []
    feat_idx = [c for c in range(data.shape[1]) if c not in ctx_idx]
    features = torch.as_tensor(data[:, feat_idx], dtype=dtype)
    context = torch.as_tensor(data[:, ctx_idx], dtype=dtype) if ctx_idx else None
    feature_names = [header[i] for i in feat_idx] if header is not None else None
    context_names = [header[i] for i in ctx_idx] if header is not None and ctx_idx else None
    return Table(features, context, feature_names, context_names)


def split(
    arrays: Tensor | Sequence[Tensor | None],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
    min_rows: int = 1,
) -> list[Any]:
    """Shuffle rows reproducibly and cut them into splits (train, validation, test by default).

    Args:
        arrays: one tensor, or several with the same number of rows (e.g. ``(features, context)``; ``None`` entries
            pass through as ``None``).
        fractions: the share of rows in each split; non-negative and summing to 1. Every split but the first gets
            ``round(fraction · rows)`` rows, the first the rest.
        seed: seeds the permutation (a ``torch.Generator``; the same seed gives the same splits).
        min_rows: the fewest rows a split of positive fraction may get.

    Raises:
        ValueError: for arrays of different lengths, bad fractions, or too few rows for every split of positive
            fraction to get ``min_rows`` (the message says how many are needed).

    Returns:
        One entry per split: a tensor when ``arrays`` is one tensor, else a tuple aligned with ``arrays``.
    """
    single = isinstance(arrays, Tensor)
    items = [arrays] if single else list(arrays)
    present = [a for a in items if a is not None]
    if not present:
        raise ValueError("expected at least one array to split, got none")
    n = present[0].shape[0]
    for a in present:
        if a.shape[0] != n:
            raise ValueError(f"expected arrays with the same number of rows, got {[tuple(a.shape) for a in present]}")
    if not fractions or any(not f >= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"expected non-negative fractions summing to 1, got {tuple(fractions)}")
    sizes = _sizes(n, fractions)
    if any(size < min_rows for size, f in zip(sizes, fractions) if f > 0):
        # round(f·m) >= min_rows needs about f·m >= min_rows - 0.5: start there, then step to the exact count
        start = max([n + 1] + [math.floor((min_rows - 0.5) / f) for f in fractions if f > 0])
        needed = next((m for m in range(start, start + 1000) if all(
            size >= min_rows for size, f in zip(_sizes(m, fractions), fractions) if f > 0)), start)
        raise ValueError(f"{n} {'row is' if n == 1 else 'rows are'} too few to split as {tuple(fractions)}: expected "
                         f"at least {needed} rows, "
                         f"so that each split gets {min_rows} or more (got {tuple(sizes)})")
    first, sizes = sizes[0], sizes[1:]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for size in [first, *sizes]:
        idx = perm[start : start + size]
        start += size
        parts = tuple(None if a is None else a[idx.to(a.device) if isinstance(a, Tensor) else idx.numpy()]
                      for a in items)
        out.append(parts[0] if single else parts)
    return out


def _sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """The rows of each split: ``round(fraction · n)`` for all but the first, which gets the rest."""
    rest = [round(f * n) for f in fractions[1:]]
    return [n - sum(rest), *rest]


class Standardizer:
    """Per-column standardization ``x̃ = (x − μ)/σ`` with statistics fitted on the training split only.

    ``mean`` and ``std`` are plain lists of floats, so ``state_dict()`` fits in a checkpoint (``weights_only``) or
    JSON. ``ladj = −Σ log σ`` is the log-determinant of the standardizing map: a flow's log-density on standardized
    data plus ``ladj`` is the log-density in the original units, i.e. ``NLL_original = NLL_standardized − ladj =
    NLL_standardized + Σ log σ``.

    Args:
        mean: the column means.
        std: the column standard deviations (positive).

    Example:
        >>> import math, torch
        >>> train = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
        >>> s = Standardizer.fit(train)
        >>> s.transform(train).tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
        >>> round(s.nll_original(0.0), 4) == round(math.log(1.0) + math.log(10.0), 4)
        True
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"expected as many means as stds (at least one), got {len(self.mean)} and {len(self.std)}")
        if not all(math.isfinite(s) and s > 0 for s in self.std) or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"expected finite means and positive finite stds, got mean={self.mean}, std={self.std}")

    @classmethod
    def fit(cls, train: Tensor) -> Standardizer:
        """Fit ``μ`` and ``σ`` (population standard deviation) on ``train``, ``(rows, D)``, in float64.

        Raises:
            ValueError: for fewer than two rows, or for constant columns (zero variance; the density of such a column
                is degenerate, so drop it), naming them.
        """
        if train.dim() != 2 or train.shape[0] < 2:
            raise ValueError(f"expected a training array of shape (rows >= 2, D), got {tuple(train.shape)}")
        x = train.detach().double()
        mean, std = x.mean(0), x.std(0, correction=0)
        constant = torch.nonzero(std <= 1e-12 * mean.abs().clamp(min=1.0)).flatten().tolist()
        if constant:
            raise ValueError(f"columns {constant} are constant on the training split (zero variance); drop them")
        return cls(mean.tolist(), std.tolist())

    @property
    def features(self) -> int:
        return len(self.mean)

    @property
    def ladj(self) -> float:
        """``log|det ∂x̃/∂x| = −Σ log σ_j`` (the same for every row)."""
        return -math.fsum(math.log(s) for s in self.std)

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-1] != self.features:
            raise ValueError(f"expected {self.features} columns, got an array of shape {tuple(x.shape)}")
        return torch.tensor(self.mean, dtype=x.dtype, device=x.device), torch.tensor(self.std, dtype=x.dtype,
                                                                                      device=x.device)

    def transform(self, x: Tensor) -> Tensor:
        """``(x − μ)/σ``."""
        mean, std = self._params(x)
        return (x - mean) / std

    def inverse(self, x: Tensor) -> Tensor:
        """``x̃ σ + μ`` (back to the original units)."""
        mean, std = self._params(x)
        return x * std + mean

    def nll_original(self, nll_standardized: float | Tensor) -> float | Tensor:
        """The NLL in the original units: ``NLL_standardized + Σ log σ``."""
        return nll_standardized - self.ladj

    def as_transform(self) -> StandardizeTransform:
        """The standardization as a :class:`~tractable.transforms.Transform` (prepend it to a flow's transform)."""
        return StandardizeTransform(self.mean, self.std)

    def state_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}``: plain lists, for checkpoints and JSON."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Sequence[float]]) -> Standardizer:
        missing = {"mean", "std"} - set(state)
        if missing:
            raise ValueError(f"expected a standardizer state with keys 'mean' and 'std', missing {sorted(missing)}")
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"Standardizer(mean={self.mean}, std={self.std})"
