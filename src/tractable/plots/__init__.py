"""Pictures of a 2D fit: densities, samples, the layer-by-layer warp (as a panel and as an animated GIF), and
training curves.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas, so nothing here touches the
global pyplot state or the interactive backend; each writes one file, creates its parent folders, and returns the
:class:`~pathlib.Path` it wrote. Flows are evaluated under ``torch.no_grad()`` in evaluation mode (their training
mode is restored afterwards), in the flow's own dtype and device, and moved to NumPy only for drawing.

Example:
    >>> import tempfile
    >>> from tractable import PlanarFlow, get_target
    >>> from tractable.plots import plot_fit
    >>> flow, target = PlanarFlow(2, layers=4), get_target("ring")
    >>> paths = plot_fit(flow, target, tempfile.mkdtemp(), gif=False)
    >>> sorted(paths)
    ['densities', 'layers', 'samples']
"""

from __future__ import annotations

from pathlib import Path

from ..flow import Flow
from ..targets.energies import Energy
from ._common import CMAP, Metrics, PathLike, _check_flow, _check_target
from .densities import plot_densities, plot_samples
from .layers import animate_layers, plot_layers
from .training import plot_training

__all__ = ["CMAP", "animate_layers", "plot_densities", "plot_fit", "plot_layers", "plot_samples", "plot_training"]


def plot_fit(
    flow: Flow,
    target: Energy,
    out_dir: PathLike,
    *,
    metrics: Metrics | None = None,
    gif: bool = True,
    resolution: int = 200,
    n: int = 5000,
    layer_n: int = 20_000,
) -> dict[str, Path]:
    """Every picture of a 2D variational fit, written into ``out_dir`` under stable names.

    Writes ``densities.png``, ``samples.png``, ``layers.png``, ``layers.gif`` (when ``gif``) and ``training.png``
    (when ``metrics`` is given).

    Args:
        flow: a flow of 2D vectors.
        target: the target energy.
        out_dir: the folder to write into (created if needed).
        metrics: per-step training metrics, as accepted by :func:`plot_training`.
        gif: also write the animation.
        resolution: grid points per axis of the density pictures.
        n: samples in the scatter and the animation.
        layer_n: samples in the layer-by-layer panel.

    Returns:
        ``{name: path}`` for each file written, keyed ``densities``, ``samples``, ``layers``, ``gif``, ``training``.

    Raises:
        ValueError: if the flow or target is not 2D.
    """
    _check_flow(flow)
    _check_target(target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "densities": plot_densities(flow, target, out / "densities.png", resolution=resolution),
        "samples": plot_samples(flow, target, out / "samples.png", n=n),
        "layers": plot_layers(flow, out / "layers.png", target=target, n=layer_n),
    }
    if gif:
        paths["gif"] = animate_layers(flow, out / "layers.gif", target=target, n=n)
    if metrics is not None:
        paths["training"] = plot_training(metrics, out / "training.png")
    return paths

