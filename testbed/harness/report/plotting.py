"""Drawing a figure: a headless matplotlib canvas, panels, saving with the fidelity
verdict along the top, and :class:`_Skip` for a figure left out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

DPI = 100


class _Skip(Exception):
    """A figure left out, with the line the report shows instead."""


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 3.6)):
    """A new figure on the Agg backend and its axes as a flat list."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    # a Debian-packaged matplotlib beside the venv's makes mpl_toolkits warn; no 3-D here
    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _panels(n: int, width: float = 3.4, height: float = 2.7):
    """A figure with ``n`` panels, at most four to a row; unused panels hidden."""
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(nrows, ncols, (width * ncols, height * nrows))
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Any, out: Path, note: str = "") -> None:
    """Write the figure, with ``note`` (the fidelity verdict) along its top."""
    if note:
        fig.suptitle(note, fontsize=7, color="#555555")
    fig.savefig(out, dpi=DPI)

