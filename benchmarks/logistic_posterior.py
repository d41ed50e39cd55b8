"""The Bayesian logistic-regression posterior on scikit-learn's breast_cancer: a 31-dimensional energy for reverse KL.

Model: 569 tumours, 30 features standardized (zero mean, unit variance over all rows) plus an intercept, labels
``y ∈ {0, 1}`` (1 = benign); ``y_i ~ Bernoulli(σ(θ₀ + x_iᵀθ_{1:}))`` with the prior ``θ ~ N(0, σ²I)``, ``σ = 1``.
``σ = 1`` on standardized features is the usual weakly-informative scale (a one-sd change of a feature moves the
log-odds by about 1 a priori); the data nearly separate the classes, so a flat or wide prior leaves a posterior with
heavy, curved tails that no method in this benchmark would be tested on fairly.

:func:`log_prob` maps ``(batch, 31)`` parameters to ``(batch,)`` unnormalized log-posterior densities (the log
likelihood plus the log prior, without the constant ``log Z``), in the input's dtype and device: the form
``tractable fit --energy`` takes::

    tractable fit --energy benchmarks/logistic_posterior.py:log_prob --features 31 --out runs/logistic

and the form the library takes (``fit_reverse_kl(flow, energy, ...)`` with :func:`energy`). The data ship with
scikit-learn (nothing is downloaded).

References:
    Yes, but Did It Work?: Evaluating Variational Inference (Yao, Vehtari, Simpson & Gelman, 2018), arXiv:1802.02538
        — PSIS k̂ and the logistic-regression posteriors used to test variational approximations.
    A weakly informative default prior distribution for logistic and other regression models (Gelman, Jakulin,
        Pittau & Su, 2008), Annals of Applied Statistics 2(4) — priors on standardized inputs.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: Prior standard deviation of every coefficient (intercept included).
PRIOR_SD = 1.0
#: Intercept + 30 standardized features.
FEATURES = 31


@functools.lru_cache(maxsize=1)
def _data() -> tuple[Tensor, Tensor]:
    """``(X, y)`` in float64: ``X`` is ``(569, 31)`` with a leading column of ones, ``y`` is ``(569,)`` of 0/1."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = torch.as_tensor(data.data, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0, correction=0)
    return torch.cat([torch.ones(len(x), 1, dtype=torch.float64), x], 1), torch.as_tensor(data.target,
                                                                                         dtype=torch.float64)


def log_prob(theta: Tensor) -> Tensor:
    """The unnormalized log posterior ``Σ_i [y_i η_i − log(1 + e^{η_i})] − ‖θ‖²/(2σ²)``, ``η = Xθ``, per row.

    Args:
        theta: ``(batch, 31)`` coefficients (intercept first).

    Returns:
        ``(batch,)`` log-densities in ``theta``'s dtype and device.
    """
    if theta.dim() != 2 or theta.shape[-1] != FEATURES:
        raise ValueError(f"expected coefficients of shape (batch, {FEATURES}), got {tuple(theta.shape)}")
    x, y = (t.to(theta) for t in _data())
    eta = theta @ x.T  # (batch, 569)
    log_lik = (y * eta - torch.nn.functional.softplus(eta)).sum(-1)
    return log_lik - 0.5 * (theta * theta).sum(-1) / PRIOR_SD**2


def energy():
    """:func:`log_prob` as a :class:`tractable.targets.Energy` (``features = 31``, ``log Z`` unknown), for
    ``fit_reverse_kl`` and ``evaluate_reverse``."""
    from tractable.app.tasks.user_energy import FunctionEnergy

    return FunctionEnergy(log_prob, FEATURES, name="logistic_posterior")
