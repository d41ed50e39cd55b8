"""`MADE`: a masked autoencoder whose outputs for feature ``i`` depend only on the features before ``i``.

MADE is the conditioner of masked autoregressive flows (MAF, IAF, NSF-AR): one pass of the network yields, for every
feature ``i``, the parameters ``θ_i(x_<i)`` of its scalar map, where ``<`` is a chosen autoregressive order. The
masks are built once from integer *degrees* (kept as buffers) and applied by one multiplication of each weight
matrix per forward pass, so the density direction of a MAF layer costs one dense MLP pass.

References:
    MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray & Larochelle, 2015),
    arXiv:1502.03509.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import renamed
from .activations import activation_fn
from .functional import linear


def _order(order: Sequence[int] | Tensor | None, features: int) -> Tensor:
    if order is None:
        return torch.arange(features)
    order = torch.as_tensor(order, dtype=torch.long).flatten()
    if order.numel() != features or not torch.equal(torch.sort(order).values, torch.arange(features)):
        raise ValueError(
            f"expected order to be a permutation of 0..{features - 1} ({features} entries), got {order.tolist()}"
        )
    return order


def hidden_degrees(features: int, hidden: int, *, lowest: int) -> Tensor:
    """Degrees of ``hidden`` units, assigned deterministically in ``[lowest, features - 2]``.

    A unit of degree ``m`` sees the inputs of degree ``≤ m`` and feeds the outputs of degree ``> m``. With at least
    as many units as distinct degrees, degrees cycle (every degree gets ``hidden / n`` units, as in nflows);
    with fewer they are spread evenly over the range, so the highest degree still sees every input but the last.

    Args:
        features: number of autoregressive features ``D``.
        hidden: number of hidden units.
        lowest: ``-1`` when units may depend on no input at all (only on the context: this lets the first feature's
            parameters depend on the context, and is the only choice when ``D = 1``), else ``0``.
    """
    highest = max(features - 2, lowest)
    n = highest - lowest + 1
    if hidden >= n:
        return lowest + torch.arange(hidden) % n
    return torch.linspace(lowest, highest, hidden).round().long()


class MADE(nn.Module):
    """A masked MLP mapping ``(..., features)`` to ``(..., features, params)``, autoregressive in ``order``.

    ``output[..., i, :]`` depends only on the inputs ``j`` with ``order[j] < order[i]`` (and on the context, which
    feeds every unit of the first hidden layer unmasked). Input degrees are ``order``; hidden degrees are assigned
    deterministically by :func:`hidden_degrees`, and the hidden units are stored sorted by degree (for the
    sequential passes); the output units of feature ``i`` have degree ``order[i]``. A
    connection from a unit of degree ``a`` to one of degree ``b`` exists when ``a ≤ b`` (hidden) or ``a < b``
    (into the output). The weights are multiplied by the mask buffers on every forward pass, so parameter noise or
    optimiser updates can never break the autoregressive property.

    The output is a ``(..., features, params)`` view of parameter-major storage: ``output[..., p]`` is a contiguous
    block of ``features`` numbers per row, so the elementwise maps' arithmetic on each parameter runs on
    vectorizable memory (with feature-major storage it would be strided by ``params``, several times slower on CPU).

    With ``zero_last`` (default) the last layer's weights start at zero: the output is then the bias, which the
    caller sets (:meth:`set_output_bias`) to the parameters at which its map is the identity, so deep flows start
    as the identity (as in nflows).

    Args:
        features: number of autoregressive features ``D`` (``≥ 1``; with ``D = 1`` the output depends only on the
            context and the bias).
        params: number of outputs per feature.
        hidden: width of each hidden layer.
        blocks: number of hidden layers (``≥ 1``).
        context_features: size of the context vector (0 for none).
        activation: a name of :data:`~tractable.nn.activations.ACTIVATIONS`.
        order: the autoregressive order as a permutation of ``0..D-1`` (``order[j]`` is the position of feature
            ``j``); default ``0, 1, ..., D-1``.
        zero_last: start the last layer's weights at zero.

    Example:
        >>> import torch
        >>> from tractable.nn.made import MADE
        >>> made = MADE(3, 2, hidden=16, zero_last=False)
        >>> x = torch.randn(5, 3)
        >>> made(x).shape
        torch.Size([5, 3, 2])
        >>> j = torch.autograd.functional.jacobian(lambda v: made(v).sum(-1), x[0])
        >>> bool((j.triu() == 0).all())  # output i depends on inputs j < i only
        True

    References:
        MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015), arXiv:1502.03509.
    """

    @renamed(layers="blocks")
    def __init__(
        self,
        features: int,
        params: int,
        *,
        hidden: int = 64,
        blocks: int = 2,
        context_features: int = 0,
        activation: str = "relu",
        order: Sequence[int] | Tensor | None = None,
        zero_last: bool = True,
    ):
        super().__init__()
        if features < 1 or params < 1 or hidden < 1 or blocks < 1 or context_features < 0:
            raise ValueError(
                "expected features, params, hidden, blocks >= 1 and context_features >= 0, got "
                f"features={features}, params={params}, hidden={hidden}, blocks={blocks}, "
                f"context_features={context_features}"
            )
        self._act = activation_fn(activation, in_place=True)  # on each linear output, which no one else holds
        self.features, self.params, self.hidden = features, params, hidden
        self.context_features, self.activation = context_features, activation

        order_t = _order(order, features)
        lowest = -1 if (context_features > 0 or features == 1) else 0
        sizes = [features + context_features] + [hidden] * blocks + [features * params]
        # The linear layers keep the attribute name ``layers``: it names the state_dict keys of saved models.
        self.layers = nn.ModuleList(nn.Linear(sizes[k], sizes[k + 1]) for k in range(blocks + 1))
        if zero_last:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
        # The hidden units are stored sorted by degree (the network drawn above, its units reordered): the sequential
        # passes then read prefixes of the weights as they are.
        deg, by_degree = torch.sort(hidden_degrees(features, hidden, lowest=lowest), stable=True)
        with torch.no_grad():
            for k, layer in enumerate(self.layers):
                weight = layer.weight[by_degree] if k < blocks else layer.weight
                layer.weight.copy_(weight[:, by_degree] if k > 0 else weight)
                if k < blocks:
                    layer.bias.copy_(layer.bias[by_degree])
        self.register_buffer("order", order_t)
        self.register_buffer("degrees", deg)
        self._set_positions()
        self.register_load_state_dict_post_hook(lambda module, _: module._set_positions())

        first = (order_t[None, :] <= deg[:, None]).to(torch.get_default_dtype())
        first = torch.cat([first, first.new_ones(hidden, context_features)], dim=1)
        inner = (deg[None, :] <= deg[:, None]).to(first.dtype)
        # Output unit p·D + i is parameter p of feature i (parameter-major: each parameter's D values are contiguous).
        last = (deg[None, :] < order_t[:, None]).to(first.dtype).repeat(params, 1)
        masks = [first] + [inner] * (blocks - 1) + [last]
        for layer, mask in zip(self.layers, masks):
            layer.register_buffer("mask", mask.clone())

    def _set_positions(self) -> None:
        # the features in autoregressive order, as Python ints: the sequential direction loops over them, and a
        # compiled graph unrolls the loop (a tensor's values would be unknown while tracing)
        self.positions: list[int] = torch.argsort(self.order).tolist()
        # The sequential direction takes the hidden units by degree: feature i then needs only the units of degree
        # below its position order[i], a prefix of that order of length prefix[i] (0 for the first feature without
        # a context). unit_order is None when the units are stored in that order (every MADE built now); a model
        # saved before they were keeps its order, and its passes sort the units per call.
        degrees = self.degrees.tolist()
        self.unit_order: list[int] | None = sorted(range(len(degrees)), key=degrees.__getitem__)
        if self.unit_order == list(range(len(degrees))):
            self.unit_order = None
        self.prefix: list[int] = [sum(d < t for d in degrees) for t in self.order.tolist()]

    @torch.no_grad()
    def set_output_bias(self, theta: Tensor) -> None:
        """Set the last layer's bias so that, with zero last weights, every feature's output is ``theta``.

        Args:
            theta: shape ``(params,)`` (the same for every feature) or ``(features, params)``.
        """
        theta = torch.as_tensor(theta)
        if theta.shape not in ((self.params,), (self.features, self.params)):
            raise ValueError(
                f"expected output bias of shape ({self.params},) or ({self.features}, {self.params}), "
                f"got shape {tuple(theta.shape)}"
            )
        bias = self.layers[-1].bias
        bias.copy_(theta.to(bias).expand(self.features, self.params).T.reshape(-1))

    def check_inputs(self, x: Tensor, context: Tensor | None) -> Tensor | None:
        """Check ``x`` ``(..., features)`` and the context; return the context broadcast to ``x``'s batch shape
        (``None`` without context features)."""
        if x.dim() < 1 or x.shape[-1] != self.features:
            raise ValueError(f"expected input of shape (..., {self.features}), got input of shape {tuple(x.shape)}")
        if not self.context_features:
            return None
        if context is None:
            raise ValueError(f"expected a context of shape (..., {self.context_features}), got None")
        if context.shape[-1] != self.context_features:
            raise ValueError(
                f"expected a context of shape (..., {self.context_features}), got shape {tuple(context.shape)}"
            )
        if context.shape[:-1] != x.shape[:-1]:
            context = context.expand(*x.shape[:-1], self.context_features)
        return context

    def _hidden(self, x: Tensor, context: Tensor | None) -> Tensor:
        """The last hidden layer's activations."""
        context = self.check_inputs(x, context)
        if context is not None:
            x = torch.cat([x, context], dim=-1)
        act = self._act
        layers = self.layers
        for k in range(len(layers) - 1):
            layer = layers[k]
            x = act(linear(x, layer.weight * layer.mask, layer.bias))
        return x

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The parameters ``θ`` of shape ``(..., features, params)`` for inputs ``x`` of shape ``(..., features)``."""
        last = self.layers[-1]
        out = linear(self._hidden(x, context), last.weight * last.mask, last.bias)
        return out.unflatten(-1, (self.params, self.features)).transpose(-1, -2)

    def feature_params(self, x: Tensor, context: Tensor | None, feature: int) -> Tensor:
        """``forward(x, context)[..., feature, :]`` (shape ``(..., params)``), computing only what that feature needs.

        One call of :meth:`sequential`; a loop over the features should prepare the passes once.
        """
        return self.sequential()(x, context, feature)

    def sequential(self) -> SequentialPasses:
        """The network prepared for the sequential direction (:class:`SequentialPasses`): call it once per
        sampling (or inverse) call and use it for every feature."""
        return SequentialPasses(self)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, params={self.params}, hidden={self.hidden}, "
            f"context_features={self.context_features}, activation={self.activation!r}"
        )


class SequentialPasses:
    """A :class:`MADE` prepared for the sequential (sampling) direction: one feature's parameters per call.

    The pass for the feature at position ``t`` of the order reads only the hidden units of degree ``< t`` (a unit of
    degree ``m`` feeds the outputs of degree ``> m``, and reads only units and inputs of degree ``≤ m``). With the
    hidden units sorted by degree (as a MADE stores them) those are a prefix of each layer, so the pass multiplies
    prefix blocks of the masked weights, masked once here: the ``D`` passes of a sample cost about half of ``D`` full
    passes (a third in the inner layers), and the first feature, which depends on no input, costs no pass at all
    without a context. The result equals the full pass (the skipped units contribute exact zeros), up to the order of
    floating-point sums.
    """

    def __init__(self, made: MADE):
        self.made = made
        layers = made.layers
        self.weights = [layer.weight * layer.mask for layer in layers]
        self.biases = [layer.bias for layer in layers]
        if made.unit_order is not None:  # a model saved with its units in another order
            index = torch.tensor(made.unit_order, device=made.degrees.device)
            w = self.weights
            self.weights = [w[0].index_select(0, index)]
            self.weights += [m.index_select(0, index).index_select(1, index) for m in w[1:-1]]
            self.weights.append(w[-1].index_select(1, index))
            self.biases = [b.index_select(0, index) for b in self.biases[:-1]] + [self.biases[-1]]
        self.act = made._act

    def __call__(self, x: Tensor, context: Tensor | None, feature: int) -> Tensor:
        """The parameters ``(..., params)`` of ``feature``, from ``x`` whose features before it are final."""
        made = self.made
        context = made.check_inputs(x, context)
        rows = slice(feature, None, made.features)  # parameter-major: rows feature, feature + D, ...
        units = made.prefix[feature]
        last, bias = self.weights[-1], self.biases[-1][rows]
        if units == 0:  # no hidden unit reaches this feature: its parameters are the output bias
            return bias.expand(*x.shape[:-1], made.params)
        h = x if context is None else torch.cat([x, context], dim=-1)
        cut = slice(None, units)
        h = self.act(F.linear(h, self.weights[0][cut], self.biases[0][cut]))
        for w, b in zip(self.weights[1:-1], self.biases[1:-1]):
            h = self.act(F.linear(h, w[cut, cut], b[cut]))
        return linear(h, last[rows, cut], bias)  # params outputs: a thin product, transposed without gradients


__all__ = ["MADE", "SequentialPasses", "hidden_degrees"]
