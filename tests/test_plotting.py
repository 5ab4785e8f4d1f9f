"""Smoke tests of ntk_companion.plotting (Agg backend, nothing shown)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ntk_companion import plotting  # noqa: E402


def test_use_style_sets_house_style_silently(capsys):
    with matplotlib.rc_context():
        plotting.use_style()
        rc = matplotlib.rcParams
        assert tuple(rc["figure.figsize"]) == (6.4, 4.0)
        assert rc["figure.dpi"] == 100 and rc["savefig.format"] == "png"
        assert rc["axes.grid"] and not rc["legend.frameon"]
        assert rc["figure.constrained_layout.use"]
        assert rc["font.size"] == 11
        assert rc["axes.prop_cycle"].by_key()["color"] == list(plotting.COLORS)
        plotting.use_style()   # idempotent
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_colors_are_hex_and_distinct():
    assert (len(plotting.COLORS) >= 6
            and len(set(plotting.COLORS)) == len(plotting.COLORS))
    assert all(c.startswith("#") and len(c) == 7 for c in plotting.COLORS)


def test_loglog_with_fit_returns_slope_and_draws():
    with matplotlib.rc_context():
        plotting.use_style()
        fig, ax = plt.subplots()
        x = np.array([10.0, 20.0, 40.0, 80.0])
        slope = plotting.loglog_with_fit(ax, x, 5.0 / np.sqrt(x), label="error")
        assert slope == pytest.approx(-0.5, abs=1e-12)
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["error", "slope -0.50"]
        assert ax.get_lines()[0].get_color() == ax.get_lines()[1].get_color()
        plotting.loglog_with_fit(ax, x, x, label="other", color="#000000")
        assert ax.get_lines()[2].get_color() == "#000000"
        with pytest.raises(ValueError, match="y must be positive"):
            plotting.loglog_with_fit(ax, x, -x, label="bad")
        with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
            plotting.loglog_with_fit(None, x, x, label="bad")
        with pytest.raises(TypeError, match="label must be a string"):
            plotting.loglog_with_fit(ax, x, x, label=3)
        plt.close(fig)
