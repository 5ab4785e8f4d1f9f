"""The whole book as one PDF (``make pdf``), read back with poppler's ``pdfinfo`` and
``pdftotext`` (``apt-get install poppler-utils``).

- the PDF has a plausible number of A4 pages and contains every page of ``_toc.yml``
  (each chapter's title);
- no raw MyST or LaTeX reaches the reader: outside code (lines that are part of a code
  cell, its output, or a docstring of ``ntk_companion``), the text has no ``$``,
  ``\\frac``, other LaTeX commands with an argument, ``\\(``, ``\\[``, ``{eq}``,
  ``{numref}``, ``{cite``, ``{prf:``, ``:::`` or a MathJax error;
- code and outputs are wrapped, not cut: every line of a code cell appears in the text.

Run by ``make pdf-test`` after ``make pdf``; not collected by ``pytest tests``. A
missing PDF or missing poppler tools is a failure, not a skip.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import toc_files  # noqa: E402

PDF = pathlib.Path(os.environ.get("BOOK_PDF",
                                  ROOT / "_build" / "pdf" / "ntk-course.pdf"))
PAGES = toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
RAW = re.compile(r"\$|\\frac|\\[a-zA-Z]+\{|\\\(|\\\[|:::|\{cite|\{prf:"
                 r"|\{(?:eq|numref|term|ref|doc|math)\}|Math input error")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def pdf_text() -> str:
    if not PDF.is_file():
        pytest.fail(f"no PDF at {PDF}: run `make pdf` first")
    if not shutil.which("pdftotext"):
        pytest.fail("pdftotext not found: `apt-get install poppler-utils`")
    return subprocess.run(["pdftotext", "-layout", str(PDF), "-"], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def code_text() -> str:
    """Everything printed as code: notebook code cells and their text outputs, and the
    docstrings of the package (the API page shows their formulas as code)."""
    parts = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            parts.append(cell.source)
            for out in cell.get("outputs", []):
                parts.append(out.get("text", ""))
                parts.append(out.get("data", {}).get("text/plain", ""))
    import ntk_companion

    for info in pkgutil.iter_modules(ntk_companion.__path__):
        module = importlib.import_module(f"ntk_companion.{info.name}")
        for _, obj in inspect.getmembers(module):
            parts.append(inspect.getdoc(obj) or "")
        parts.append(module.__doc__ or "")
    return _squash("\n".join(str(p) for p in parts))


def test_page_count_and_contents(pdf_text: str):
    info = subprocess.run(["pdfinfo", str(PDF)], check=True, capture_output=True,
                          text=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert re.search(r"^Page size:.*\(A4\)", info, re.M), info
    # a few pages per chapter at the very least, and not one page per line
    assert 10 * len(NOTEBOOKS) <= pages <= 2000, f"{pages} pages"
    text = _squash(pdf_text)
    for doc in PAGES:
        source = ROOT / f"{doc}.md"
        title = next((line[2:] for line in source.read_text().splitlines()
                      if line.startswith("# ")), None) if source.exists() else None
        if title:
            assert _squash(title) in text, (f"{doc}: its title {title!r} is not in the "
                                            "PDF")


def test_no_raw_markup_outside_code(pdf_text: str, code_text: str):
    raw = []
    for line in pdf_text.splitlines():
        if RAW.search(line) and _squash(line) not in code_text:
            raw.append(line.strip()[:120])
    assert not raw, (f"{len(raw)} lines with raw markup, e.g.:\n  "
                     + "\n  ".join(raw[:10]))


def test_code_is_wrapped_not_cut(pdf_text: str):
    text = _squash(pdf_text)
    cut = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                cut += [f"{path.stem}: {line.strip()[:80]}"
                        for line in cell.source.splitlines()
                        if line.strip() and _squash(line) not in text]
    # pdftotext may split a wrapped line at a page break; allow a handful
    assert len(cut) <= 5, f"{len(cut)} code lines missing from the PDF, e.g.:\n  " + \
        "\n  ".join(cut[:10])
