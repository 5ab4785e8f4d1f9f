"""The chapters' figures as stored in the executed notebooks: sharp and readable.

Every PNG output of ``book/NN_name.ipynb`` must be

- at 2x resolution: a "retina" PNG (``ntk_companion.plotting.use_style`` in a notebook)
  with a display width in its output metadata and at least twice that many pixels;
- readable in the book: shown at its display width, or shrunk to the text column
  (:data:`ntk_companion.plotting.COLUMN_WIDTH_PX`) when it is wider, the style's
  smallest font (11 pt, 15.3 CSS px at 100 px per inch) stays at least 11 CSS px high.

Alt text and captions are checked on the built pages (tests/browser).
"""
from __future__ import annotations

import base64
import pathlib
import struct

import matplotlib
import nbformat
import pytest

from ntk_companion import plotting

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
MIN_TEXT_CSS_PX = 11.0
# figure.dpi of the house style (test_style_fonts_and_resolution)
CSS_PX_PER_INCH = 100


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def pngs(path: pathlib.Path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                meta = out.get("metadata", {}).get("image/png", {})
                yield i, base64.b64decode(data["image/png"]), meta


def test_png_size_reads_the_header():
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1), dpi=50)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    assert png_size(buf.getvalue()) == (100, 50)
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))


def test_style_fonts_and_resolution():
    with matplotlib.rc_context():
        plotting.use_style()
        rc = matplotlib.rcParams
        assert rc["figure.dpi"] == CSS_PX_PER_INCH and rc["savefig.dpi"] >= 200
        sizes = [rc[k] for k in ("font.size", "axes.titlesize", "axes.labelsize",
                                 "xtick.labelsize", "ytick.labelsize",
                                 "legend.fontsize")]
        assert min(float(s) for s in sizes) >= 11, sizes
        assert rc["figure.figsize"][0] <= plotting.MAX_FIGURE_WIDTH_IN
    # the widest figure whose 11 pt text is 11 px at the column width
    assert plotting.MAX_FIGURE_WIDTH_IN == pytest.approx(plotting.COLUMN_WIDTH_PX / 72)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_figures_are_2x_and_readable(path: pathlib.Path):
    problems = []
    found = 0
    for cell, data, meta in pngs(path):
        found += 1
        width_px, _ = png_size(data)
        css_width = meta.get("width")
        if not css_width:
            problems.append(f"cell {cell}: a {width_px} px PNG with no display width "
                            "(not shown at 2x; re-execute with plotting.use_style())")
            continue
        density = width_px / float(css_width)
        if density < 2:
            problems.append(f"cell {cell}: {density:.2f} pixels per CSS px, not 2")
        shown = min(float(css_width), plotting.COLUMN_WIDTH_PX)
        text_px = 11 / 72 * CSS_PX_PER_INCH * shown / float(css_width)
        if text_px < MIN_TEXT_CSS_PX:
            problems.append(
                f"cell {cell}: {css_width} CSS px wide, shrunk to the "
                f"{plotting.COLUMN_WIDTH_PX} px column its 11 pt text is {text_px:.1f} "
                f"px (at most {plotting.MAX_FIGURE_WIDTH_IN:.1f} in wide, or stack the "
                "panels)")
    assert found, f"{path.name} has no figure"
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)
