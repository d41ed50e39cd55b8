"""`MLP`: the fully connected conditioner network of coupling and autoregressive layers.

A conditioner maps the features a layer leaves unchanged (and, for conditional flows, a context vector) to the
parameters of the elementwise maps it applies to the others. Its last layer starts with zero weights, so its output is
the last bias whatever the input; a layer sets that bias to the parameters of its identity map and so starts as the
exact identity (as in nflows), which keeps deep stacks stable at initialisation. The hidden layers are initialised for
their activation (He initialisation before ReLU: :func:`~tractable.nn.activations.init_hidden_`).

References:
    Delving Deep into Rectifiers (He, Zhang, Ren & Sun, 2015), arXiv:1502.01852.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from ..utils import renamed
from .activations import activation_fn, init_hidden_
from .functional import linear


def _widths(hidden: int | Sequence[int], blocks: int) -> list[int]:
    if isinstance(hidden, int):
        if blocks < 0 or hidden < 1:
            raise ValueError(f"expected hidden >= 1 and blocks >= 0, got hidden={hidden}, blocks={blocks}")
        return [hidden] * blocks
    widths = [int(h) for h in hidden]
    if any(h < 1 for h in widths):
        raise ValueError(f"expected positive hidden widths, got {list(hidden)}")
    return widths


class MLP(nn.Module):
    """A multilayer perceptron ``x (+ context) -> out``, with an optionally zero-initialised last layer.

    Args:
        in_features: width of the input ``x``.
        out_features: width of the output.
        hidden: width of each hidden layer (an int, repeated ``blocks`` times) or a sequence of widths (whose length
            then sets the depth and ``blocks`` is not used).
        blocks: number of hidden layers when ``hidden`` is an int (0 gives an affine map).
        context_features: width of the context concatenated to the input (0: no context; any context passed is then
            ignored, as transforms that do not use context ignore it).
        activation: a name of :data:`~tractable.nn.activations.ACTIVATIONS`; the hidden layers are initialised for
            it (:func:`~tractable.nn.activations.init_hidden_`: He-uniform before a rectifier).
        zero_last: zero the last layer's weights *and* bias, so the output is constant (the bias) at initialisation;
            callers set :attr:`last`'s bias to the parameters they want to start from.

    Input ``x`` has shape ``(..., in_features)`` and ``context`` ``(..., context_features)`` with the same (or a
    broadcastable) batch shape; the output has shape ``(..., out_features)``.

    Example:
        >>> import torch
        >>> from tractable.nn.mlp import MLP
        >>> net = MLP(3, 4, hidden=32, blocks=2, context_features=2)
        >>> net(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 4])
        >>> bool((net(torch.randn(5, 3), torch.randn(5, 2)) == 0).all())  # zero last layer: constant output
        True
    """

    @renamed(layers="blocks")
    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int | Sequence[int] = 64,
        blocks: int = 2,
        context_features: int = 0,
        activation: str = "relu",
        zero_last: bool = True,
    ):
        super().__init__()
        if in_features < 0 or out_features < 1 or context_features < 0 or in_features + context_features < 1:
            raise ValueError(
                f"expected in_features >= 0, out_features >= 1, context_features >= 0 and at least one input, got "
                f"in_features={in_features}, out_features={out_features}, context_features={context_features}"
            )
        act = activation_fn(activation, in_place=True)  # applied to each linear layer's fresh output only
        widths = [in_features + context_features, *_widths(hidden, blocks), out_features]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.in_features, self.out_features, self.context_features = in_features, out_features, context_features
        self.activation = activation
        self._act = act
        self.input_standardized = False  # set by standardize_input_, so a second data-dependent init is refused
        for lin in self.linears[:-1]:
            init_hidden_(lin, activation)
        if zero_last:
            nn.init.zeros_(self.last.weight)
            nn.init.zeros_(self.last.bias)

    @property
    def last(self) -> nn.Linear:
        """The output layer (set its bias to choose the initial output when ``zero_last``)."""
        return self.linears[-1]  # type: ignore[return-value]

    def _join(self, x: Tensor, context: Tensor | None) -> Tensor:
        if not self.context_features:
            return x
        if context is None:
            raise ValueError(
                f"expected a context of shape (batch, {self.context_features}) for this conditional network, got None"
            )
        if context.shape[-1] != self.context_features:
            raise ValueError(
                f"expected a context of shape (batch, {self.context_features}), got shape {tuple(context.shape)}"
            )
        if context.shape[:-1] != x.shape[:-1]:
            try:
                context = context.expand(*x.shape[:-1], self.context_features)
            except RuntimeError:
                raise ValueError(
                    f"expected a context with batch shape {tuple(x.shape[:-1])} (or broadcastable to it), got shape "
                    f"{tuple(context.shape)}"
                ) from None
        return torch.cat((x, context), -1) if self.in_features else context

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The network's output for input ``x`` and (if ``context_features > 0``) ``context``."""
        h = self._join(x, context)
        *body, head = self.linears
        act = self._act
        for lin in body:
            h = act(linear(h, lin.weight, lin.bias))
        return linear(h, head.weight, head.bias)

    @torch.no_grad()
    def standardize_input_(self, mean: Tensor, std: Tensor) -> None:
        """Make the first layer read its input standardized: ``W ← W / std``, ``b ← b − (W / std) · mean``.

        Afterwards the network computes on ``v`` what it computed on ``(v − mean) / std`` before, where ``v`` is the
        joined input ``[x, context]``; so the first layer's pre-activations on data with these statistics have the
        scale its initialisation chose for standardized inputs, whatever the data's units (a data-dependent
        initialisation in the spirit of weight normalization's, and of ActNorm's). It changes the function unless
        the output does not depend on the input yet, as while the last layer is zero (``zero_last``). It sets
        :attr:`input_standardized`, which data-dependent initialisations check so as never to standardize twice.

        Args:
            mean: per-feature mean of the joined input, shape ``(in_features + context_features,)``.
            std: per-feature scale, the same shape; entries that are not positive and finite leave their feature
                unscaled (only centred).

        References:
            Weight Normalization (Salimans & Kingma, 2016), arXiv:1602.07868, §3.
        """
        first = self.linears[0]
        width = first.in_features
        if mean.shape != (width,) or std.shape != (width,):
            raise ValueError(f"expected mean and std of shape ({width},), got shapes {tuple(mean.shape)} and "
                             f"{tuple(std.shape)}")
        std = torch.where(torch.isfinite(std) & (std > 0), std, torch.ones_like(std)).to(first.weight)
        first.weight.div_(std)
        first.bias.sub_(first.weight @ mean.to(first.weight))
        self.input_standardized = True

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


__all__ = ["MLP"]
