"""House style for the course figures and a log-log plotting helper.

Call :func:`use_style` once (first cell of every chapter); then draw with matplotlib as
usual. Colours come from :data:`COLORS` (the Okabe-Ito palette, safe for colour-blind
readers).

Figures are sized in inches at 100 CSS pixels per inch and stored at twice that
resolution (200 pixels per inch), so they are sharp on high-density screens and in
print. The book's text column is :data:`COLUMN_WIDTH_PX` CSS pixels wide; a wider figure
is shrunk to fit, and its 11 pt text stays at least 11 CSS pixels high only while the
figure is at most
:data:`MAX_FIGURE_WIDTH_IN` inches wide: stack the panels of a wider figure instead.
"""
from __future__ import annotations

from typing import Any

import matplotlib as mpl
import numpy as np
from cycler import cycler

from .diagnostics import fit_power_law

__all__ = ["COLORS", "COLUMN_WIDTH_PX", "MAX_FIGURE_WIDTH_IN", "use_style",
           "loglog_with_fit"]

#: Okabe-Ito colour-blind-safe palette (without its yellow, which is faint on white):
#: blue, vermillion, bluish green, reddish purple, orange, sky blue, black.
COLORS: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
)

#: Width in CSS pixels of the book's text column at desktop width (sphinx-book-theme at
# a
#: 1280 px window; measured by tests/browser), where figures are shown.
COLUMN_WIDTH_PX: int = 672

#: Smallest font size of the style, in points.
_MIN_FONT_PT = 11

#: Widest figure (inches, at ``figure.dpi`` = 100) whose 11 pt text is still 11 CSS px
# high
#: once the figure is shrunk to :data:`COLUMN_WIDTH_PX`: an 11 pt glyph is 11/72 in,
# i.e.
#: 15.3 px at 100 px/in, and shrinking by ``COLUMN_WIDTH_PX / (100 * width)`` keeps it
# at
#: 11 px or more while ``width <= COLUMN_WIDTH_PX / 72`` (9.33 in).
MAX_FIGURE_WIDTH_IN: float = COLUMN_WIDTH_PX / 72

_STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,          # sizes: 100 CSS px per inch (the inline display's unit)
    "figure.constrained_layout.use": True,
    "savefig.format": "png",
    "savefig.dpi": 200,         # files written with savefig: 2x resolution
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
    """Set the course's matplotlib style: 6.4 x 4.0 in figures, PNG output at 2x
    resolution, constrained layout, a light grid, 11 pt fonts, frameless legends and
    the :data:`COLORS` colour cycle.

    The style is a set of rcParams (``savefig.dpi`` 200 for files). In a notebook
    (IPython's inline backend) figures are also shown in the ``"retina"`` format: a PNG
    at twice ``figure.dpi`` (200 pixels per inch) displayed at ``figure.dpi`` (a 6.4 in
    figure takes 640 CSS px and is 1280 px wide). Prints nothing; safe to call more than
    once.

    >>> import matplotlib as mpl
    >>> use_style()
    >>> mpl.rcParams["savefig.dpi"], mpl.rcParams["font.size"]
    (200.0, 11.0)
    """
    mpl.rcParams.update(_STYLE)
    _show_inline_figures_at_2x()


def _show_inline_figures_at_2x() -> None:
    """Inline figures as 2x PNGs, when running under IPython with the inline backend."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:      # plain Python: nothing is shown inline
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def loglog_with_fit(ax: Any, x: Any, y: Any, *, label: str, color: str | None = None,
                    marker: str = "o") -> float:
    """Plot ``y`` against ``x`` on log-log axes together with the fitted power law.

    The fit is :func:`ntk_companion.fit_power_law` (least squares of ``log y`` on
    ``log x``); the points are drawn as markers labelled ``"{label}"`` and the fit as a
    dashed line labelled ``"slope {slope:.2f}"``, in the same colour.

    Returns:
        The fitted slope (a Python float).

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import ntk_companion as ntk
    >>> fig, ax = plt.subplots()
    >>> slope = ntk.loglog_with_fit(ax, [1.0, 10.0, 100.0], [1.0, 0.1, 0.01],
    ...                             label="1/x")
    >>> round(slope, 6)
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
