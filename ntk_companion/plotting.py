"""House style for the course figures and a log-log plotting helper.

Call :func:`use_style` once (first cell of every chapter); then draw with matplotlib as usual.
Colours come from :data:`COLORS` (the Okabe-Ito palette, safe for colour-blind readers).
"""
from __future__ import annotations

from typing import Any

import matplotlib as mpl
import numpy as np
from cycler import cycler

from .diagnostics import fit_power_law

__all__ = ["COLORS", "use_style", "loglog_with_fit"]

#: Okabe-Ito colour-blind-safe palette (without its yellow, which is faint on white):
#: blue, vermillion, bluish green, reddish purple, orange, sky blue, black.
COLORS: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
)

_STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "savefig.format": "png",
    "savefig.dpi": 100,
    "axes.grid": True,
    "axes.prop_cycle": cycler(color=list(COLORS)),
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "font.size": 11,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.frameon": False,
    "grid.color": "#b0b0b0",
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Set the course's matplotlib style (rcParams): 6.4 x 4.0 in figures at 100 dpi, PNG
    output, constrained layout, a light grid, 11 pt fonts, frameless legends and the
    :data:`COLORS` colour cycle. Prints nothing; safe to call more than once.

    >>> import matplotlib
    >>> import ntk_companion as ntk
    >>> ntk.use_style()
    >>> matplotlib.rcParams["savefig.format"]
    'png'
    """
    mpl.rcParams.update(_STYLE)


def loglog_with_fit(ax: Any, x: Any, y: Any, *, label: str, color: str | None = None,
                    marker: str = "o") -> float:
    """Plot ``y`` against ``x`` on log-log axes together with the fitted power law.

    The fit is :func:`ntk_companion.fit_power_law` (least squares of ``log y`` on ``log x``);
    the points are drawn as markers labelled ``"{label}"`` and the fit as a dashed line
    labelled ``"slope {slope:.2f}"``, in the same colour.

    Returns:
        The fitted slope (a Python float).

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import ntk_companion as ntk
    >>> fig, ax = plt.subplots()
    >>> round(ntk.loglog_with_fit(ax, [1.0, 10.0, 100.0], [1.0, 0.1, 0.01], label="1/x"), 6)
    -1.0
    >>> plt.close(fig)
    """
    if not hasattr(ax, "loglog"):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    if not isinstance(label, str):
        raise TypeError(f"label must be a string, got {type(label).__name__}")
    slope, intercept = fit_power_law(x, y)
    xs = np.asarray(x, dtype=np.float64)
    (points,) = ax.loglog(xs, np.asarray(y, dtype=np.float64), marker, linestyle="none",
                          color=color, label=label)
    grid = np.geomspace(xs.min(), xs.max(), 100)
    ax.loglog(grid, np.exp(intercept) * grid ** slope, "--", color=points.get_color(),
              linewidth=1.2, label=f"slope {slope:.2f}")
    return slope
