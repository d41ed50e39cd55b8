"""The transform interface: `Transform`, `Compose` and `Inverse`.

A transform is an invertible map that returns its output *and* the log-absolute-determinant of its Jacobian
(``ladj``) from one call. ``forward`` is the *normalizing* direction (data ``x`` -> latent ``z``), ``inverse`` the
generative one, as in nflows and zuko (see docs/architecture.md, "The transform contract").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Transform(nn.Module):
    """An invertible map with a tractable log-absolute-determinant of its Jacobian.

    Subclasses implement :meth:`forward` and :meth:`inverse`; both return ``(output, ladj)`` where ``ladj`` has the
    batch shape of the input (event dimensions summed). Every transform accepts ``context``; those that do not use it
    ignore it.

    Example:
        >>> import torch
        >>> from tractable import Planar
        >>> t = Planar(2)
        >>> x = torch.randn(5, 2)
        >>> y, ladj = t(x)
        >>> x2, ladj_inv = t.inverse(y)
        >>> bool(torch.allclose(x, x2, atol=1e-5)), ladj.shape
        (True, torch.Size([5]))
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map ``x`` to ``y``; return ``(y, log|det dy/dx|)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, context=None) -> (y, ladj)")

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map ``y`` back to ``x``; return ``(x, log|det dx/dy|)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement inverse(y, context=None) -> (x, ladj); a "
                                  "layer with only one analytic direction may solve the other numerically "
                                  "(transforms.numerics)")

    @property
    def inv(self) -> Transform:
        """This transform with its directions swapped."""
        return Inverse(self)


class Compose(Transform):
    """Apply transforms in list order and sum their log-determinants.

    ``Compose(t1, t2)(x)`` computes ``t2(t1(x))``; its inverse runs ``t2.inverse`` first. There is no reversed-order
    surprise: the order you write is the order of the forward pass.

    Args:
        *transforms: the transforms, first applied first.

    Example:
        >>> import torch
        >>> from tractable import Compose, ElementwiseAffine, ReversePermutation
        >>> t = Compose(ElementwiseAffine(3), ReversePermutation(3))
        >>> x = torch.randn(4, 3)
        >>> z, ladj = t(x)
        >>> x_back, ladj_inv = t.inverse(z)
        >>> bool(torch.allclose(x_back, x, atol=1e-6)), bool(torch.allclose(ladj + ladj_inv, torch.zeros(4)))
        (True, True)
    """

    def __init__(self, *transforms: Transform):
        super().__init__()
        if not transforms:
            raise ValueError("Compose expects at least one transform, got none")
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"Compose expects Transform instances, got {type(t).__name__} at position {i}")
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # each layer's result is checked (a few attribute reads) so a broken custom layer is named, not a broadcast
        x, total = checked_result(self.transforms[0](x, context), self.transforms[0], "forward", where=self._at(0))
        for i, t in enumerate(self.transforms[1:], 1):
            x, ladj = checked_result(t(x, context), t, "forward", where=self._at(i))
            total = total + ladj
        return x, total

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        last = len(self.transforms) - 1
        y, total = checked_result(self.transforms[-1].inverse(y, context), self.transforms[-1], "inverse",
                                  where=self._at(last))
        for i in range(last - 1, -1, -1):
            t = self.transforms[i]
            y, ladj = checked_result(t.inverse(y, context), t, "inverse", where=self._at(i))
            total = total + ladj
        return y, total

    def _at(self, i: int) -> str:
        return f"layer {i} of Compose"

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]


class Inverse(Transform):
    """A transform with its two directions swapped: ``Inverse(t).forward`` is ``t.inverse`` and vice versa.

    Layers whose cheap direction is the generative one (planar, radial, Sylvester, IAF) are placed in a flow as
    ``Inverse(layer)`` so that sampling runs their analytic direction.

    Example:
        >>> import torch
        >>> from tractable import Inverse, Planar
        >>> layer = Inverse(Planar(2, layers=4))  # forward now runs the numerical inverse, inverse the analytic map
        >>> z = torch.randn(5, 2)
        >>> x, ladj = layer.inverse(z)
        >>> z_back, ladj_back = layer(x)
        >>> bool(torch.allclose(z_back, z, atol=1e-4)), bool(torch.allclose(ladj_back, -ladj, atol=1e-4))
        (True, True)
    """

    def __init__(self, transform: Transform):
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"Inverse expects a Transform, got {type(transform).__name__}")
        self.transform = transform

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, context)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(y, context)

    @property
    def inv(self) -> Transform:
        return self.transform


class LayerStack(Transform):
    """A stack of ``layers`` maps of one family held in one module, parameters with a leading ``layers`` dimension.

    Keeping the whole chain in one module cuts the per-layer overhead (one parameter tensor per kind, a handful of
    kernel launches per map). Subclasses implement :meth:`run` and :meth:`run_inverse`, which return the output
    after each map (so a picture of the chain can show every map) and the summed log-determinant; this class derives
    ``forward`` and ``inverse`` from them. Inputs of shape ``(..., features)`` are accepted (see :meth:`_flat`).
    """

    def __init__(self, features: int, layers: int):
        super().__init__()
        if features < 1 or layers < 1:
            raise ValueError(f"expected features >= 1 and layers >= 1, got features={features}, layers={layers}")
        self.features, self.layers = features, layers

    def _flat(self, x: Tensor) -> tuple[Tensor, torch.Size]:
        """``x`` as a ``(N, features)`` matrix, and its batch shape to restore."""
        check_features(x, self.features)
        return x.reshape(-1, self.features), x.shape[:-1]

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The forward outputs after each map (each of ``x``'s shape) and the total ladj (batch shape)."""
        raise NotImplementedError(f"{type(self).__name__} must implement run(x) -> (outputs, ladj)")

    def run_inverse(self, y: Tensor) -> tuple[list[Tensor], Tensor]:
        """The inverse outputs after each map, last map first, and the total ladj of the inverse."""
        raise NotImplementedError(f"{type(self).__name__} must implement run_inverse(y) -> (outputs, ladj)")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        steps, ladj = self.run(x)
        return steps[-1], ladj

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        steps, ladj = self.run_inverse(y)
        return steps[-1], ladj

    def extra_repr(self) -> str:
        return f"features={self.features}, layers={self.layers}"


def _describe(out: object) -> str:
    if isinstance(out, Tensor):
        return f"a single tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        kinds = ", ".join(type(o).__name__ for o in out)
        return f"a {type(out).__name__} of {len(out)} items ({kinds})"
    return f"a {type(out).__name__}"


def checked_result(out: object, transform: nn.Module, direction: str, *, batch_shape: tuple[int, ...] | None = None,
                   where: str | None = None) -> tuple[Tensor, Tensor]:
    """``out``, the result of ``transform.<direction>``, if it keeps the contract; else an error naming the transform.

    The contract (docs/architecture.md): a pair ``(y, ladj)`` of tensors whose ``ladj`` has the batch shape, the
    event dimensions summed: ``batch_shape`` when the caller knows it (a ``Flow``), otherwise fewer dimensions than
    ``y``. The check reads a few attributes, so it runs on every call.

    Raises:
        TypeError: when ``out`` is not a pair of tensors (e.g. a transform returned only ``y``).
        ValueError: when ``ladj`` has the wrong shape (e.g. a per-element log-determinant of ``y``'s shape).
    """
    if type(out) is tuple and len(out) == 2 and isinstance(out[0], Tensor) and isinstance(out[1], Tensor):
        y, ladj = out
        if ladj.shape == batch_shape if batch_shape is not None else ladj.dim() < y.dim():
            return out
        name = f"{type(transform).__name__}.{direction}" + (f" ({where})" if where else "")
        expected = f"shape {tuple(batch_shape)}" if batch_shape is not None else "the batch shape"
        raise ValueError(
            f"{name} returned a log-determinant of shape {tuple(ladj.shape)} for an output of shape {tuple(y.shape)}; "
            f"expected {expected}, one value per row with the event dimensions summed (e.g. ladj.sum(-1))"
        )
    name = f"{type(transform).__name__}.{direction}" + (f" ({where})" if where else "")
    raise TypeError(f"{name} must return (y, logdet), a pair of tensors; got {_describe(out)}")


def check_features(x: Tensor, features: int, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` has shape ``(..., features)`` with at least one batch dimension."""
    if x.dim() < 2 or x.shape[-1] != features:
        raise ValueError(f"expected {name} of shape (batch, {features}), got {name} of shape {tuple(x.shape)}")
