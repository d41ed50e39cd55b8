"""A user's own log-density as a reverse-KL target: ``tractable fit --energy module:function --features D``.

The function takes a ``(batch, D)`` tensor and returns ``(batch,)`` unnormalized log-densities ``log p̃(x)``
(``-U(x)``), differentiable in ``x`` (reverse KL follows the gradient through the samples). :func:`load_energy`
imports it and calls it once on a small batch of standard-normal points before anything is written, so that each
way of getting it wrong is one line: a module that cannot be imported, a missing name, something not callable, an
exception, a result that is not a tensor, of the wrong shape or dtype, not finite, or not differentiable.

``log Z`` of a user's density is unknown, so its runs report what does not need it: the ESS of the importance
weights, the estimate ``log Ẑ`` and the ELBO (``KL(q‖p) = log Z − ELBO`` up to that unknown constant).

Example:
    >>> import torch
    >>> from tractable.app.tasks.user_energy import FunctionEnergy
    >>> e = FunctionEnergy(lambda x: -0.5 * (x**2).sum(-1), 3, name="gauss")
    >>> e.log_prob(torch.zeros(2, 3)).tolist(), e.log_z is None
    ([-0.0, -0.0], True)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ...targets.energies import Energy
from ..config import ConfigError

#: Rows of the batch the function is checked on.
CHECK_ROWS = 4


class FunctionEnergy(Energy):
    """A function ``(batch, D) -> (batch,)`` of unnormalized log-densities as an :class:`Energy` (``log Z`` unknown).

    Args:
        fn: the log-density.
        features: ``D``.
        name: what runs and messages call it (``module:function``).
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], features: int, *, name: str = "energy"):
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"expected features to be a positive integer, got {features!r}")
        self.fn, self.features, self.name = fn, features, name

    def energy(self, z: Tensor) -> Tensor:
        return -self.log_prob(z)

    def log_prob(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[-1] != self.features:
            raise ValueError(f"energy {self.name!r} expects points of shape (batch, {self.features}), "
                             f"got {tuple(z.shape)}")
        out = self.fn(z)
        if not isinstance(out, Tensor) or out.shape != z.shape[:1]:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"energy {self.name!r} must return log-densities of shape ({z.shape[0]},) for a batch "
                             f"of shape {tuple(z.shape)}, got {got}")
        return out

    @property
    def log_z(self) -> float | None:
        return None

    def __repr__(self) -> str:
        return f"FunctionEnergy({self.name!r}, features={self.features})"


def _import(module: str, source: str) -> object:
    """The module ``module``: a ``.py`` file (a path), or a module name looked up from the current directory first."""
    try:
        if module.endswith(".py") or "/" in module or "\\" in module:
            path = Path(module)
            if not path.is_file():
                raise ConfigError(f"--energy {source!r}: file {module!r} does not exist (relative paths are read "
                                  "from the current directory)")
            name = f"tractable_user_energy_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"--energy {source!r}: {module!r} is not a Python file")
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded  # dataclasses and pickling look the module up by name
            spec.loader.exec_module(loaded)
            return loaded
        cwd = str(Path.cwd())
        added = cwd not in sys.path
        if added:  # the console script does not put the current directory on the path; `python -m` does
            sys.path.insert(0, cwd)
        try:
            return importlib.import_module(module)
        finally:
            if added:
                sys.path.remove(cwd)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises on import is one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"--energy {source!r}: cannot import {module!r}: {type(e).__name__}: {first}") from None


def _check(energy: FunctionEnergy, dtype: torch.dtype, device: str) -> None:
    """Call the energy once on a fixed standard-normal batch; one line for each way it can be wrong."""
    d, source = energy.features, energy.name
    z = torch.randn(CHECK_ROWS, d, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    z.requires_grad_(True)
    try:
        out = energy.fn(z)
    except Exception as e:  # noqa: BLE001 - whatever the user's function raises is one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"--energy {source!r} failed on a batch of shape ({CHECK_ROWS}, {d}) (--features {d}): "
                          f"{type(e).__name__}: {first}") from None
    if not isinstance(out, Tensor):
        raise ConfigError(f"--energy {source!r} must return a torch.Tensor of shape ({CHECK_ROWS},) for a batch of "
                          f"shape ({CHECK_ROWS}, {d}), got {type(out).__name__}")
    if out.shape != (CHECK_ROWS,):
        hint = " (drop the trailing dimension: .squeeze(-1))" if out.shape == (CHECK_ROWS, 1) else ""
        raise ConfigError(f"--energy {source!r} must return log-densities of shape ({CHECK_ROWS},) for a batch of "
                          f"shape ({CHECK_ROWS}, {d}), got shape {tuple(out.shape)}{hint}")
    if out.dtype != dtype:
        raise ConfigError(f"--energy {source!r} must return the input's dtype {dtype}, got {out.dtype}")
    if not bool(torch.isfinite(out).all()):
        raise ConfigError(f"--energy {source!r} returned non-finite log-densities {out.tolist()} at standard-normal "
                          "points; expected finite values wherever the flow may sample")
    if not out.requires_grad:
        raise ConfigError(f"--energy {source!r} is not differentiable in its input (reverse KL needs gradients "
                          "through it): compute it with torch operations, without .numpy(), .item() or .detach()")


def load_energy(source: str, features: int, *, dtype: torch.dtype = torch.float32,
                device: str = "cpu") -> FunctionEnergy:
    """Import ``source`` (``module:function`` or ``file.py:function``) and check it on a small batch.

    Raises:
        ConfigError: one line for a malformed source, a module that cannot be imported, a missing or non-callable
            function, or a function whose output is not a finite, differentiable ``(batch,)`` tensor.
    """
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ConfigError(f"--energy {source!r} needs --features D, the dimension of the function's input "
                          f"(energy.features), got {features!r}")
    module, sep, name = source.rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise ConfigError(f"expected --energy MODULE:FUNCTION or FILE.py:FUNCTION, got {source!r}")
    loaded = _import(module, source)
    fn = getattr(loaded, name, None)
    if fn is None:
        found = sorted(k for k, v in vars(loaded).items() if callable(v) and not k.startswith("_"))
        raise ConfigError(f"--energy {source!r}: {module!r} has no {name!r}; its functions are "
                          f"{', '.join(found) or 'none'}")
    if not callable(fn):
        raise ConfigError(f"--energy {source!r}: {name!r} is a {type(fn).__name__}, not a function")
    energy = FunctionEnergy(fn, features, name=source)
    _check(energy, dtype, device)
    return energy


__all__ = ["FunctionEnergy", "load_energy"]
