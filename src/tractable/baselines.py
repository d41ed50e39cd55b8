"""Classical density baselines for a table: does the flow earn its keep?

Every ``--data`` fit reports, beside its own test NLL, the test NLL of two classical models fitted on the same
training split and scored on the same test split, in the same units (nats per row, the data's raw units):

* :func:`gaussian_nll`: one full-covariance Gaussian (maximum likelihood: the training mean and covariance);
* :func:`gmm_nll`: a Gaussian mixture (scikit-learn's ``GaussianMixture``) whose number of components and covariance
  type are chosen by 5-fold cross-validation on the training and validation rows pooled, then refitted on the
  training split and scored on the test split. scikit-learn is an optional dependency (the
  ``images`` and ``dev`` extras); without it the mixture baseline is ``None`` with a note saying why.

A conditional fit (a table with context columns) reports instead :func:`linear_gaussian_nll`: the conditional density
``x | c ~ N(A c + b, Σ)`` of a linear regression on the context with a full-covariance Gaussian residual (maximum
likelihood: least squares, then the residuals' covariance), the conditional analogue of the Gaussian.

A flow whose test NLL is above the Gaussian's has learned less than a covariance matrix; one well above a validated
mixture is not worth its parameters on this table.

Example:
    >>> import torch
    >>> from tractable.baselines import gaussian_nll
    >>> g = torch.Generator().manual_seed(0)
    >>> train, test = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    >>> abs(gaussian_nll(train, test) - 2.8379) < 0.1   # the entropy of N(0, I₂), log(2πe)
    True

References:
    Pattern Recognition and Machine Learning (Bishop, 2006), §2.3 (Gaussian) and §9.2 (mixtures, EM).
    Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017), arXiv:1705.07057 — the practice
        of reporting a full-covariance Gaussian and a Gaussian mixture beside the flows on tabular data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

#: The covariance types of the mixture searched by cross-validation.
COVARIANCES = ("full", "diag", "tied", "spherical")
#: The component counts searched (those that leave at least ``MIN_ROWS_PER_COMPONENT`` training rows each).
COMPONENTS = (1, 2, 3, 4, 5, 6, 8, 10)
MIN_ROWS_PER_COMPONENT = 10
#: The training rows the mixture search uses at most (a random subset beyond it: EM is O(rows · components · D²)).
MAX_GMM_ROWS = 10_000
#: scikit-learn's ridge on the covariances' diagonal, in standardized units (its default is 1e-6).
REG_COVAR = 1e-6
#: The cross-validation folds of the mixture search, fewer when a held-out fold would have fewer than MIN_FOLD_ROWS.
FOLDS = 5
MIN_FOLD_ROWS = 20
#: Above this many pooled rows each EM fit of the search starts once (n_init=1; twice below it, and for the refit).
MANY_ROWS = 2_000


def _array(x: Tensor | np.ndarray) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a table of shape (rows, features), got shape {a.shape}")
    return a


def gaussian_nll(train: Tensor | np.ndarray, test: Tensor | np.ndarray) -> float:
    """The mean test NLL (nats) of the full-covariance Gaussian fitted by maximum likelihood on ``train``.

    Raises:
        ValueError: if the training covariance is singular (fewer rows than features, or collinear columns).
    """
    xtr, xte = _array(train), _array(test)
    mean = xtr.mean(0)
    cov = np.atleast_2d(np.cov(xtr, rowvar=False, bias=True))
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"the training covariance of {xtr.shape[0]} rows × {xtr.shape[1]} columns is singular; "
                         "expected more rows than columns and no collinear columns") from None
    z = np.linalg.solve(chol, (xte - mean).T)
    d = xtr.shape[1]
    nll = 0.5 * (z * z).sum(0) + np.log(np.diag(chol)).sum() + 0.5 * d * math.log(2 * math.pi)
    return float(nll.mean())


def linear_gaussian_nll(train: Tensor | np.ndarray, train_context: Tensor | np.ndarray, test: Tensor | np.ndarray,
                        test_context: Tensor | np.ndarray) -> float:
    """The mean test NLL (nats) of ``x | c ~ N(A c + b, Σ)`` fitted by maximum likelihood on the training rows.

    ``A`` and ``b`` are the least-squares regression of the rows on their contexts; ``Σ`` is the covariance of its
    training residuals, whose mean is zero, so this is :func:`gaussian_nll` of the test residuals under the training
    residuals'.

    Raises:
        ValueError: if the rows and contexts differ in number, or the training rows are too few for the regression
            and the residual covariance (more rows than context columns plus features are needed).
    """
    xtr, ctr, xte, cte = _array(train), _array(train_context), _array(test), _array(test_context)
    if len(xtr) != len(ctr) or len(xte) != len(cte):
        raise ValueError(f"expected one context per row, got {len(xtr)} training rows with {len(ctr)} contexts and "
                         f"{len(xte)} test rows with {len(cte)} contexts")
    if len(xtr) <= ctr.shape[1] + xtr.shape[1]:
        raise ValueError(f"expected more than {ctr.shape[1] + xtr.shape[1]} training rows for a regression on "
                         f"{ctr.shape[1]} context columns, got {len(xtr)}")

    def design(c: np.ndarray) -> np.ndarray:
        return np.c_[c, np.ones(len(c))]

    coef, *_ = np.linalg.lstsq(design(ctr), xtr, rcond=None)
    return gaussian_nll(xtr - design(ctr) @ coef, xte - design(cte) @ coef)


def folds_for_rows(rows: int) -> int:
    """The cross-validation folds for ``rows`` pooled training and validation rows: ``FOLDS``, fewer when each
    held-out fold would have fewer than ``MIN_FOLD_ROWS`` rows, at least 2."""
    return max(2, min(FOLDS, rows // MIN_FOLD_ROWS))


def _fit(x: np.ndarray, k: int, covariance: str, seed: int, n_init: int) -> Any:
    """A ``GaussianMixture`` fitted by EM to ``x``, or ``None`` for a degenerate fit (an emptied component)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(k, covariance_type=covariance, reg_covar=REG_COVAR, n_init=n_init, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            return model.fit(x)
        except ValueError:
            return None


def gmm_nll(train: Tensor | np.ndarray, val: Tensor | np.ndarray, test: Tensor | np.ndarray, *,
            components: Sequence[int] = COMPONENTS, covariances: Sequence[str] = COVARIANCES,
            seed: int = 0) -> tuple[float | None, dict[str, Any]]:
    """The mean test NLL (nats) of the Gaussian mixture chosen by cross-validation, and what was chosen.

    The selection rule: the training and validation rows are pooled (at most :data:`MAX_GMM_ROWS` of them, a random
    subset beyond) and cut into :func:`folds_for_rows` folds (5, fewer for fewer than 100 rows; shuffled from
    ``seed``); each (components, covariance type) pair with at least :data:`MIN_ROWS_PER_COMPONENT` rows per
    component in every fold's training part is fitted by EM on each fold's training part and scored on its held-out
    part; the pair with the lowest mean held-out NLL is refitted on the training split and scored on ``test``.
    Rows are standardized with the training statistics for the fit's numerics; the NLL is reported in the raw units.
    (Chosen on a small validation split alone, e.g. wine's 18 rows, the mixture was often worse than one Gaussian.)

    Returns:
        ``(nll, info)``: ``info`` holds ``components``, ``covariance``, ``cv_nll`` (the mean held-out NLL of the
        choice) and ``folds``, or ``note`` (why there is no number: scikit-learn missing, too few rows) with ``nll``
        ``None``.
    """
    try:
        from sklearn.mixture import GaussianMixture  # noqa: F401  (only to say why there is no baseline)
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ImportError:
        return None, {"note": "scikit-learn is not installed (pip install 'tractable[dev]'); no mixture baseline"}
    # EM on small matrices: one BLAS thread is many times faster than several contending for busy cores
    with threadpool_limits(1):
        return _search(_array(train), _array(val), _array(test), components, covariances, seed)


def _search(xtr: np.ndarray, xva: np.ndarray, xte: np.ndarray, components: Sequence[int],
            covariances: Sequence[str], seed: int) -> tuple[float | None, dict[str, Any]]:
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(seed)
    if len(xtr) > MAX_GMM_ROWS:
        xtr = xtr[rng.choice(len(xtr), MAX_GMM_ROWS, replace=False)]
    pool = np.concatenate([xtr, xva])
    if len(pool) > MAX_GMM_ROWS:
        pool = pool[rng.choice(len(pool), MAX_GMM_ROWS, replace=False)]
    mean, std = xtr.mean(0), xtr.std(0)
    std = np.where(std > 0, std, 1.0)
    # the mixture is fitted on standardized rows; the density in raw units differs by log|det| = Σ log σ
    shift = float(np.log(std).sum())
    ztr, zte, zpool = ((x - mean) / std for x in (xtr, xte, pool))
    folds = folds_for_rows(len(zpool))
    held_out = [h for _, h in KFold(folds, shuffle=True, random_state=seed).split(zpool)]
    smallest = min(len(zpool) - len(h) for h in held_out)
    n_init = 2 if len(zpool) <= MANY_ROWS else 1
    best: tuple[float, int, str] | None = None
    for covariance in covariances:
        for k in components:
            if k > 1 and k * MIN_ROWS_PER_COMPONENT > min(smallest, len(ztr)):
                continue
            total = 0.0
            for h in held_out:
                model = _fit(np.delete(zpool, h, axis=0), k, covariance, seed, n_init)
                if model is None:
                    total = math.nan
                    break
                total += -float(model.score_samples(zpool[h]).sum())
            cv_nll = total / len(zpool) + shift
            if math.isfinite(cv_nll) and (best is None or cv_nll < best[0]):
                best = (cv_nll, k, covariance)
    model = None if best is None else _fit(ztr, best[1], best[2], seed, 2)
    if best is None or model is None:
        return None, {"note": f"no Gaussian mixture could be fitted to {len(ztr)} training rows"}
    cv_nll, k, covariance = best
    return -float(model.score(zte)) + shift, {"components": k, "covariance": covariance, "cv_nll": cv_nll,
                                              "folds": folds}


def baselines(train: Tensor, val: Tensor, test: Tensor, *, seed: int = 0) -> dict[str, Any]:
    """``metrics.json``'s baseline keys for one split: ``baseline_gaussian_nll``, ``baseline_gmm_nll`` and
    ``baseline_gmm`` (the mixture chosen, or a note why there is none)."""
    try:
        gaussian: float | None = gaussian_nll(train, test)
    except ValueError:
        gaussian = None
    gmm, info = gmm_nll(train, val, test, seed=seed)
    return {"baseline_gaussian_nll": gaussian, "baseline_gmm_nll": gmm, "baseline_gmm": info}


def conditional_baselines(train: Tensor, train_context: Tensor, test: Tensor, test_context: Tensor) -> dict[str, Any]:
    """``metrics.json``'s baseline key for a conditional split: ``baseline_linear_gaussian_nll`` (``None`` when the
    training rows are too few or the residual covariance is singular)."""
    try:
        nll: float | None = linear_gaussian_nll(train, train_context, test, test_context)
    except ValueError:
        nll = None
    return {"baseline_linear_gaussian_nll": nll}


__all__ = ["baselines", "conditional_baselines", "folds_for_rows", "gaussian_nll", "gmm_nll", "linear_gaussian_nll"]
