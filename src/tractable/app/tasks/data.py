"""Fitting data by maximum likelihood: toy data sets (exact density and entropy known) and users' tables.

The test figures are the mean NLL and, where the data's density is known, the exact gap KL(p‖q) = NLL − H(p); for a
user's table also the test NLL of two classical baselines on the same split (:mod:`tractable.baselines`). The data
are standardized by an exact affine layer fitted on the training split and stored in the model, so every density is
in the data's own units.

A user's table gets defaults sized by its number of training rows (:func:`sized_for_rows`): the defaults made for
100,000 toy rows overfit 142 rows of wine within a few hundred steps.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...baselines import baselines, conditional_baselines
from ...distributions import GaussianMixture
from ...flow import Flow
from ...models.registry import MODELS
from ...plots.data import plot_data_fit
from ...plots.samples import plot_sample_set
from ...preprocessing import standardize_flow, unscaled_report
from ...targets.tabular import load_table, split
from ...targets.toy import GaussianMixtureData, ToyDataset, get_dataset, sample_splits
from ...training import evaluate_conditional_toy, evaluate_nll, evaluate_toy, fit_max_likelihood
from ...transforms.base import Compose, Transform
from ...transforms.elementwise import StandardizeTransform
from ...transforms.linear import WhitenTransform
from ..config import MODEL_NAME, ConfigError, DataConfig, FitConfig
from ..models import build_vector, one_feature_warning
from .base import PLOT_FEATURES, TEST, device_of, dtype, parameter_count, place, rename_split


class DataFileError(ConfigError):
    """A run's data file is gone, so its splits cannot be regenerated."""


@dataclass
class DataSplits:
    """Train/validation/test rows (and contexts), and the toy data set they came from (``None`` for a file)."""

    train: Tensor
    val: Tensor
    test: Tensor
    train_context: Tensor | None
    val_context: Tensor | None
    test_context: Tensor | None
    dataset: ToyDataset | None
    name: str

    @property
    def features(self) -> int:
        return int(self.train.shape[-1])

    @property
    def context_features(self) -> int:
        return 0 if self.train_context is None else int(self.train_context.shape[-1])

    def split(self, name: str) -> tuple[Tensor, Tensor | None]:
        """The rows and contexts of the split ``name`` (``train``, ``val`` or ``test``)."""
        return {"train": (self.train, self.train_context), "val": (self.val, self.val_context),
                "test": (self.test, self.test_context)}[name]


def _columns(spec: str) -> list[int | str] | None:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    return [int(s) if s.lstrip("-").isdigit() else s for s in items] or None


def load_data(config: FitConfig) -> DataSplits:
    """The splits a configuration names: a user's file (``data.path``) or a toy data set (``target``), drawn from
    ``train.seed`` so that every command regenerates the fit's splits exactly."""
    d, kind = config.data, dtype(config)
    if d.path:
        if d.conditional:
            raise ConfigError("data.conditional applies to labelled toy data sets; for a file use data.context_columns")
        fractions = (1.0 - d.val_fraction - d.test_fraction, d.val_fraction, d.test_fraction)
        if min(fractions) <= 0:
            raise ConfigError(f"expected positive train/val/test fractions, got {fractions}")
        table = load_table(d.path, context_columns=_columns(d.context_columns), dtype=kind)
        (xtr, ctr), (xva, cva), (xte, cte) = split((table.features, table.context), fractions, seed=config.train.seed)
        return DataSplits(xtr, xva, xte, ctr, cva, cte, None, Path(d.path).name)
    if d.context_columns:
        raise ConfigError("data.context_columns applies to a data file (--data); use --conditional for toy labels")
    dataset = get_dataset(config.target)
    sizes = (d.train_size, d.val_size, d.test_size)
    if d.conditional:
        (xtr, ctr), (xva, cva), (xte, cte) = sample_splits(dataset, sizes, seed=config.train.seed, dtype=kind,
                                                           labels=True)
        return DataSplits(xtr, xva, xte, ctr, cva, cte, dataset, dataset.name)
    xtr, xva, xte = sample_splits(dataset, sizes, seed=config.train.seed, dtype=kind)
    return DataSplits(xtr, xva, xte, None, None, None, dataset, dataset.name)


#: The model and training defaults by training rows, ``(fewer than this many rows, settings)``, the first that fits:
#: a model whose size grows with the data (a conditioner of ``hidden`` units per layer has about ``hidden²``
#: weights), every batch at most the training rows, validation about every tenth of an epoch's worth of rows and
#: early stopping after ``PATIENCE`` validations without a new best. Measured on scikit-learn's wine (142 training
#: rows) and diabetes (354): docs/guide/your-own-data.md, benchmarks/small_tables.py.
SIZES: tuple[tuple[float, dict[str, Any]], ...] = (
    (1_000, {"layers": 2, "hidden": 16, "bins": 8}),
    (10_000, {"layers": 3, "hidden": 32, "bins": 8}),
    (100_000, {"layers": 4, "hidden": 64, "bins": 16}),
    (math.inf, {}),  # the fixed defaults: 5 layers, 64 hidden, 16 bins
)
#: Training rows for which the base is a 4-slot diagonal Gaussian mixture fitted by EM before training
#: (``base="mixture"``, :meth:`~tractable.distributions.GaussianMixture.fit_em`: 1–4 distinct components chosen by
#: 5-fold cross-validation; at least 10 rows per slot, and only below the first size, where it was measured): after
#: the whitening layer the flow then starts as a Gaussian mixture in whitened space. With one Gaussian as the base, a
#: mixture chosen by cross-validation beat the flow by 3–4 nats on diabetes (a two-valued column).
MIXTURE_ROWS = (40, 1_000)
#: Validations without a new best before a table's fit stops (the fixed default, 0, never stops).
PATIENCE = 10
#: The largest batch (the fixed default).
BATCH = 512
#: Learning-rate warmup steps of a table's fit. The flow starts as the fitted Gaussian (or mixture), and Adam's first
#: steps at the full rate can throw it far off on a table with a discrete column: on diabetes (seed 0) the training
#: loss went from 20.8 to 29.2 in one step (gradient norm 15,480) and the fit ended above the Gaussian's test NLL
#: (28.5 against 28.0); with 50 warmup steps, 21.1.
WARMUP = 50
#: Model settings of every new NSF fit to data, recorded in its ``config.toml`` (so a run written before keeps the
#: model it trained): each coupling's passing half gets a spline of its own (:class:`~tractable.models.nsf.NSF`'s
#: ``passing_map``). On the quality grid of benchmarks/density_quality.py it closed the gap to nflows on rings in raw
#: coordinates (16 bins, 2×64 conditioners, 5,000 steps: 0.058 → 0.041 nats).
NEW_NSF: dict[str, Any] = {"passing_map": True}
#: A fit warns when its parameters exceed this many times the numbers in the training split (rows × features).
OVERPARAMETERIZED = 10


def _count_rows(path: Path) -> int:
    """The data rows of a table without parsing it (a ``.npy`` header; a text file's non-blank lines, less a header
    line that is not all numbers): only the size rule reads this, :func:`load_table` reads the data."""
    if path.suffix.lower() == ".npy":
        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    rows, first = 0, None
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                rows += 1
                if first is None:
                    first = line.decode("utf-8", "replace").lstrip("\ufeff")
    if first is None:
        return 0
    cells = [c.strip() for c in first.replace("\t", ",").replace(";", ",").replace(" ", ",").split(",") if c.strip()]
    try:
        [float(c) for c in cells]
    except ValueError:
        rows -= 1
    return rows


def training_rows(rows: int, val_fraction: float, test_fraction: float) -> int:
    """The training rows of a table of ``rows`` split as :func:`~tractable.targets.tabular.split` splits it."""
    return rows - round(val_fraction * rows) - round(test_fraction * rows)


def sized_for_rows(train_rows: int) -> dict[str, Any]:
    """The defaults for a table with ``train_rows`` training rows (nested tables; see :data:`SIZES`).

    ``batch_size = min(512, train_rows)``, ``eval_every = clamp(train_rows // 10, 10, 250)``, ``patience = 10``,
    ``warmup = 50`` (:data:`WARMUP`),
    the model's ``layers``/``hidden``/``bins`` from :data:`SIZES`, ``base = "mixture"`` for :data:`MIXTURE_ROWS`
    (the base mixture is fitted by EM to the whitened training rows before training), and ``data.whiten``: the flow
    starts as the full-covariance Gaussian (or that mixture), so that early stopping keeps at least what it explains
    (on wine the per-column standardization ended above the Gaussian's test NLL for two seeds of three).

    Example:
        >>> sized_for_rows(142)["train"]
        {'batch_size': 142, 'eval_every': 14, 'patience': 10, 'warmup': 50}
        >>> sized_for_rows(142)["model"]
        {'layers': 2, 'hidden': 16, 'bins': 8, 'base': 'mixture'}
    """
    model = dict(next(settings for limit, settings in SIZES if train_rows < limit))
    if MIXTURE_ROWS[0] <= train_rows < MIXTURE_ROWS[1]:
        model["base"] = "mixture"
    train = {"batch_size": max(1, min(BATCH, train_rows)), "eval_every": min(250, max(10, train_rows // 10)),
             "patience": PATIENCE, "warmup": WARMUP}
    return {"train": train, "model": model, "data": {"whiten": True}}


def circular(config: FitConfig) -> bool:
    """Whether the data are angles (a toy data set with ``circular = True``, e.g. ``torus``), which are fitted as they
    are: ``data.standardize`` and ``data.whiten`` do not apply to them."""
    if config.data.path:
        return False
    try:
        return bool(getattr(get_dataset(config.target), "circular", False))
    except ValueError:
        return False


def _on(x: Tensor | None, device: torch.device | str) -> Tensor | None:
    return None if x is None else x.to(device)


class DataTask:
    """Maximum likelihood on data: NSF (5 coupling layers, 16 bins) with a standard-normal base, 5,000 steps at
    lr 1e-3 (16 bins measured better than 8 on the exact toy sets at this budget:
    benchmarks/results/density_quality.md)."""

    kind = "data"
    images = False
    defaults: Mapping[str, Any] = {
        "model": {MODEL_NAME: "nsf", "layers": 5, "base": "normal", "bins": 16},
        "train": {"steps": 5000, "lr": 1e-3, "anneal": 0.0},
    }
    metrics_keys = (
        "test_nll", "test_nll_stderr", "entropy", "kl_gap", "kl_paired", "kl_paired_stderr", "best_val_nll",
        "best_step", "stopped_early", "steps", "seconds", "parameters", "target", "flow", "layers", "seed", "features",
        "context_features", "train_rows", "val_rows", "test_rows", "skipped_steps",
    )
    #: Beside :attr:`metrics_keys`, in the ``metrics.json`` of a fit to a user's table (the first three without context
    #: columns, the last with them).
    baseline_keys = ("baseline_gaussian_nll", "baseline_gmm_nll", "baseline_gmm", "baseline_linear_gaussian_nll")
    figure_suffix = "scatter"
    label = "data (maximum likelihood)"

    def sized_defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`sized_for_table`, under the training defaults a named model declares in its ``train_defaults``
        (FFJORD: fewer steps, each an ODE solve); a new NSF fit also gets :data:`NEW_NSF`."""
        sized = self.sized_for_table(given)
        model = given.get("model", {})
        name = model.get(MODEL_NAME) if isinstance(model, Mapping) else None
        own = getattr(MODELS.get(name), "train_defaults", None) if isinstance(name, str) else None
        if own:
            sized["train"] = {**own, **sized.get("train", {})}
        if (name or self.defaults["model"][MODEL_NAME]) == "nsf":
            sized["model"] = {**NEW_NSF, **sized.get("model", {})}
        return sized

    def sized_for_table(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """:func:`sized_for_rows` for a user's table (``data.path``), its rows counted from the file; ``{}`` for toy
        data sets (100,000 rows: the fixed defaults are theirs) and for a file that cannot be read (loading it then
        reports why). Model keys apply only to the default model (a model the user names keeps its own)."""
        data = given.get("data", {}) if isinstance(given.get("data"), Mapping) else {}
        path = data.get("path", "")
        if not path or not Path(path).is_file():
            return {}
        try:
            rows = _count_rows(Path(path))
        except (ValueError, OSError, EOFError):  # an empty or broken file: load_table names the problem
            return {}
        d = DataConfig()
        fractions = (data.get("val_fraction", d.val_fraction), data.get("test_fraction", d.test_fraction))
        if not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions):
            return {}  # the configuration's own check names the bad value
        sized = sized_for_rows(max(1, training_rows(rows, *fractions)))
        model = given.get("model", {})
        if isinstance(model, Mapping) and MODEL_NAME in model and model[MODEL_NAME] != self.defaults["model"][
                MODEL_NAME]:
            del sized["model"]
        return sized

    def inapplicable(self, config: FitConfig) -> dict[str, str]:
        out = {
            "train.anneal": "annealing tempers an energy; data are fitted by maximum likelihood",
            "eval.samples": "it is the fresh samples of a reverse-KL evaluation; data are scored on the test split",
            "eval.iw_samples": "it is the importance samples of the image bits/dim bound",
            "output.grid": "it is the image sample grid", "output.temperature": "it is the image sample grid's",
            "output.gif": "the layer animation is drawn for energies",
            "data.data_dir": "it is the directory of the MNIST or CIFAR-10 files",
            **{f"energy.{key}": "it applies to --energy" for key in ("source", "features")},
        }
        if config.data.path:
            out.update({f"data.{key}": "it sizes a toy data set; a file is split by data.val_fraction and "
                        "data.test_fraction" for key in ("train_size", "val_size", "test_size")})
            out["data.conditional"] = "it conditions a labelled toy data set; for a file use --context COLS"
        else:
            out.update({f"data.{key}": "it splits a --data file; a toy data set is drawn with data.train_size, "
                        "data.val_size and data.test_size" for key in ("val_fraction", "test_fraction")})
            out["data.context_columns"] = "it names columns of a --data file; for toy labels use --conditional"
        return out

    def load(self, config: FitConfig) -> DataSplits:
        path = config.data.path
        if path and not Path(path).is_file():
            raise DataFileError(f"run {config.name!r} was fitted to the data file {path!r}, which does not exist "
                                "(relative paths are read from the current directory)")
        return load_data(config)

    def spec(self, problem: DataSplits) -> dict[str, Any]:
        return {"features": problem.features, "context_features": problem.context_features}

    def build(self, config: FitConfig, spec: Mapping[str, Any], problem: DataSplits | None = None) -> Flow:
        features = int(spec["features"])
        flow = place(build_vector(config.model, features, int(spec["context_features"])), config)
        if circular(config):  # angles on the torus: an affine standardisation would break their periodicity
            return flow
        if config.data.standardize and problem is not None:
            with warnings.catch_warnings(record=True) as caught:  # collinear columns: standardized, said on stderr
                warnings.simplefilter("always")
                standardize_flow(flow, problem.train, whiten=config.data.whiten)
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)
        elif config.data.standardize:  # a placeholder for the fitted values a checkpoint holds
            standardize: Transform = (
                WhitenTransform([0.0] * features, torch.eye(features, dtype=torch.float64)).to(config.train.device)
                if config.data.whiten
                else StandardizeTransform([0.0] * features, [1.0] * features).to(config.train.device, dtype(config))
            )
            flow.transform = Compose(standardize, flow.transform)
        base = flow.base
        if problem is not None and problem.dataset is None and problem.train_context is None and isinstance(
                base, GaussianMixture) and len(problem.train) >= base.loc.shape[0]:
            # a table's flow starts as the diagonal mixture fitted by EM to the training rows as the flow maps them
            # (after whitening: a mixture in whitened space), as whitening alone makes it start as the Gaussian
            with torch.no_grad():
                z, _ = flow.transform(problem.train.to(device_of(flow), dtype(config)))
            base.fit_em(z, seed=config.train.seed)
        return flow

    def fit(self, flow: Flow, problem: DataSplits, config: FitConfig, **options: Any) -> Any:
        t, device = config.train, config.train.device
        numbers = problem.train.numel()
        parameters = parameter_count(flow)
        sized = {"layers": 5, "hidden": 64, **sized_for_rows(len(problem.train))["model"]}
        # the default model at the sizes chosen for the table (or smaller) is as small as the defaults go
        at_sized = config.model_name == self.defaults["model"][MODEL_NAME] and all(
            config.model.get(key, math.inf) <= sized[key] for key in ("layers", "hidden"))
        if parameters > OVERPARAMETERIZED * numbers and not at_sized:
            print(f"warning: the flow has {parameters:,} parameters for {len(problem.train):,} training rows × "
                  f"{problem.features} features ({parameters / numbers:.0f} per number): expect it to overfit "
                  f"(early stopping on the validation rows limits it); smaller --layers/--hidden suit the table "
                  f"(the default model gets --layers {sized['layers']} --hidden {sized['hidden']} for this many "
                  "rows)", file=sys.stderr)
        if (warning := one_feature_warning(config.model, flow, problem.context_features)) is not None:
            print(warning, file=sys.stderr)
        if not config.data.standardize and not circular(config) and (
                report := unscaled_report(flow, problem.train)):
            print(f"warning: {report}, and the flow's defaults suit standardized data: drop --no-standardize "
                  "(or set data.standardize = true)", file=sys.stderr)
        with warnings.catch_warnings():  # the library's form of that warning, whose advice is for Python
            warnings.filterwarnings("ignore", message="training data: ")
            return fit_max_likelihood(
                flow, _on(problem.train, device), context=_on(problem.train_context, device),
                val=_on(problem.val, device), val_context=_on(problem.val_context, device), steps=t.steps,
                batch_size=t.batch_size, lr=t.lr, schedule=t.schedule, clip=t.clip, eval_every=t.eval_every,
                patience=t.patience or None, seed=t.seed, **options,
            )

    def evaluate(self, flow: Flow, problem: DataSplits, config: FitConfig, *, split: str = TEST,
                 samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """The NLL of a split with the exact KL gap where the data's entropy is known (per label for conditional
        toy fits); ``samples`` keeps only the split's first rows."""
        x, c = problem.split(split)
        if samples is not None:
            x, c = x[:samples], None if c is None else c[:samples]
        device = device_of(flow)
        x, c = x.to(device), _on(c, device)
        if problem.dataset is not None and c is None:
            metrics: dict[str, Any] = evaluate_toy(flow, problem.dataset, test=x)
            metrics.pop("test_samples", None)
        else:
            nll, se = evaluate_nll(flow, x, c)
            metrics = {"test_nll": nll, "test_nll_stderr": se, "entropy": math.nan, "kl_gap": math.nan,
                       "kl_paired": math.nan, "kl_paired_stderr": math.nan}
            if isinstance(problem.dataset, GaussianMixtureData) and c is not None:
                if seed is not None:
                    torch.manual_seed(seed)
                per_label = evaluate_conditional_toy(flow, problem.dataset)
                metrics.update({f"label_{k}": v for k, v in per_label.items()})
        metrics[f"{TEST}_rows"] = len(x)
        return rename_split(metrics, split)

    def run_metrics(self, flow: Flow, problem: DataSplits, config: FitConfig, history: Any) -> dict[str, Any]:
        extra = {}
        if problem.dataset is None and problem.train_context is None:  # a user's table: the classical baselines
            extra = baselines(problem.train, problem.val, problem.test, seed=config.train.seed)
        elif problem.dataset is None:  # with context columns: the linear-Gaussian regression
            extra = conditional_baselines(problem.train, problem.train_context, problem.test, problem.test_context)
        return {**extra,
            "best_val_nll": history.best_val_nll, "best_step": history.best_step,
            "stopped_early": history.stopped_early, "steps": len(history.rows), "seconds": round(history.seconds, 3),
            "parameters": parameter_count(flow), "target": problem.name, "flow": config.model_name,
            "layers": self.layers(flow, config), "seed": config.train.seed, "features": problem.features,
            "context_features": problem.context_features, "train_rows": len(problem.train),
            "val_rows": len(problem.val), "test_rows": len(problem.test), "skipped_steps": history.skipped,
        }

    def layers(self, flow: Flow, config: FitConfig) -> int | None:
        return config.model.get("layers")

    def describe(self, config: FitConfig, metrics: Mapping[str, Any]) -> str:
        layers = metrics.get("layers")
        return f"{config.name} × {config.model_name}" + ("" if layers is None else f" ({layers} layers)")

    def summary(self, metrics: Mapping[str, Any], split: str = TEST) -> str:
        m = metrics
        text = (f"{split} NLL = {m[f'{split}_nll']:.4f} ± {m[f'{split}_nll_stderr']:.4f} nats "
                f"({m[f'{split}_rows']:,} rows)")
        gap = m.get("kl_gap")
        if gap is not None and math.isfinite(gap):
            text += f", entropy = {m['entropy']:.4f}, KL gap = {m['kl_gap']:.4f} nats"
        if m.get("baseline_gaussian_nll") is not None and split == TEST:
            gmm = m.get("baseline_gmm_nll")
            text += (f"; baselines on the same split: full-covariance Gaussian {m['baseline_gaussian_nll']:.4f}, "
                     f"Gaussian mixture {'n/a' if gmm is None else f'{gmm:.4f}'}")
        if m.get("baseline_linear_gaussian_nll") is not None and split == TEST:
            text += f"; baseline on the same split: linear-Gaussian regression {m['baseline_linear_gaussian_nll']:.4f}"
        if "label_kl_gap" in m:
            text += ", per-label KL gap = " + ", ".join(f"{g:.4f}" for g in m["label_kl_gap"])
        return text

    def target(self, config: FitConfig) -> ToyDataset | None:
        return None if config.data.path else get_dataset(config.target)

    def plot(self, flow: Flow, problem: DataSplits, config: FitConfig, out: Path, *, metrics: Path | None,
             gif: bool) -> dict[str, Path]:
        device = device_of(flow)
        return plot_data_fit(flow, out, data=problem.test.to(device), dataset=problem.dataset, metrics=metrics,
                             context=_on(problem.test_context, device))

    def sample_figure(self, flow: Flow, target: ToyDataset | None, x: Tensor, path: Path, title: str) -> Path | None:
        if tuple(flow.event_shape) != (PLOT_FEATURES,):
            return None
        return plot_sample_set(x, path, box=getattr(target, "box", None), title=title)
