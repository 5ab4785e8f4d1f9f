"""The plain-Jupyter chapters (``book/notebooks/``) that Colab, Binder and the download
button open: the conversion of ``book/_ext/plain_notebooks.py``, what the committed
copies contain, and one of them executed from top to bottom.

That the committed copies equal what the sources give is checked after the book build
(``make plain-check``, part of ``make test``): the numbers come from the build.
"""
from __future__ import annotations

import json
import pathlib
import re
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import plain_notebooks as pn  # noqa: E402

CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
PLAIN = ROOT / "book" / "notebooks"
# What must never reach a reader without MyST: roles, directive fences, colon fences,
# target labels, labelled-equation suffixes, MyST comments.
MYST = re.compile(r"\{[a-z]+(?::[a-z]+)?\}`|^\s*(?:`{3,}|:{3,})\s*\{|^\s*:{3,}|"
                  r"^\s*\([\w-]+\)=\s*$|^\$\$\s*\([\w-]+\)|^:(?:label|class|name):",
                  re.M)


def resolver(docname: str = "book/04_convergence") -> pn.Resolver:
    numbers = {"eq-conv-gronwall": ("displaymath", "4.3"),
               "thm-conv-gronwall": ("theorem", "4.1"),
               "lem-conv-x": ("lemma", "4.1"),
               "fig-conv-width": ("figure", "4.4"),
               "ex-conv-pl": ("exercise", "4.2")}
    titles = {"notation": "Notation", "sec-x": "The spectral picture"}
    chapters = {"book/03_function_space": ("3", "The function-space view"),
                "book/04_convergence": ("4", "Global convergence"),
                "book/api": (None, "API reference")}
    cites = {"jacot2018ntk": ("Jacot et al.", "2018"),
             "du2019gradient": ("Du et al.", "2019b"),
             "chizat2019lazy": ("Chizat and Bach", "2019")}
    return pn.Resolver(numbers, titles, chapters, cites.__getitem__, docname)


@pytest.mark.parametrize("source, expected", [
    ("by {eq}`eq-conv-gronwall`", "by (4.3)"),
    ("{prf:ref}`thm-conv-gronwall` and {prf:ref}`lem-conv-x`",
     "Theorem 4.1 and Lemma 4.1"),
    ("{numref}`fig-conv-width`", "Fig. 4.4"),
    ("{numref}`Figure %s <fig-conv-width>`", "Figure 4.4"),
    ("{ref}`ex-conv-pl`", "Exercise 4.2"),
    ("{ref}`the table <notation>`", "the table"),
    ("{ref}`sec-x`", "The spectral picture"),
    ("{doc}`03_function_space`", "Chapter 3"),
    ("{doc}`api`", "API reference"),
    ("{cite:p}`jacot2018ntk,du2019gradient`", "(Jacot et al., 2018; Du et al., 2019b)"),
    ("{cite:t}`chizat2019lazy`", "Chizat and Bach (2019)"),
    ("{term}`NTK <neural tangent kernel>`", "NTK"),
    ("{py:func}`~ntk_companion.empirical_ntk`", "`empirical_ntk()`"),
    ("{py:class}`ntk_companion.MLP`", "`ntk_companion.MLP`"),
])
def test_roles_become_what_the_book_shows(source: str, expected: str):
    assert pn.convert_markdown(source, resolver()) == expected


def test_blocks_become_markdown():
    text = "\n".join([
        "(sec-x)=",
        "## Title",
        "% a comment",
        "$$",
        "\\ell(t) \\le \\ell(0)",
        "$$ (eq-conv-gronwall)",
        "",
        "```{prf:theorem} Exponential decay",
        ":label: thm-conv-gronwall",
        "",
        "The loss decays, by {eq}`eq-conv-gronwall`.",
        "```",
        "",
        "```{prf:proof}",
        "Gronwall.",
        "```",
        "",
        "````{exercise} A bound",
        ":label: ex-conv-pl",
        "",
        "Show it.",
        "````",
        "",
        "````{solution} ex-conv-pl",
        ":class: dropdown",
        "",
        "```python",
        "x = 1",
        "```",
        "````",
        "",
        ":::{admonition} Learning goals",
        "- one",
        ":::",
    ])
    out = pn.convert_markdown(text, resolver())
    assert "(sec-x)=" not in out and "% a comment" not in out
    assert "\\ell(t) \\le \\ell(0)\n\\tag{4.3}\n$$" in out
    assert "**Theorem 4.1 (Exponential decay).** The loss decays, by (4.3)." in out
    assert "*Proof.* Gronwall. $\\blacksquare$" in out
    assert "**Exercise 4.2 (A bound).** Show it." in out
    assert "<details><summary><b>Solution to Exercise 4.2</b></summary>" in out
    assert "```python\nx = 1\n```" in out and "</details>" in out
    assert "> **Learning goals**\n>\n> - one" in out
    assert not MYST.search(out), MYST.search(out)


def test_unknown_syntax_is_an_error_not_a_leak():
    with pytest.raises(ValueError, match="no plain form for the role"):
        pn.convert_markdown("{foo}`bar`", resolver())
    with pytest.raises(ValueError, match="no plain form for the directive"):
        pn.convert_markdown("```{mystery}\nx\n```", resolver())
    with pytest.raises(KeyError, match="no number for label"):
        pn.convert_markdown("{eq}`eq-nowhere`", resolver())


def test_every_chapter_has_a_plain_notebook_without_myst():
    names = sorted(p.name for p in PLAIN.glob("*.ipynb"))
    assert names == sorted(md.with_suffix(".ipynb").name for md in CHAPTERS)
    for path in sorted(PLAIN.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert "jupytext" not in nb.metadata, path.name
        chapter = nbformat.read(ROOT / "book" / path.name, as_version=4)
        code = [c.source for c in chapter.cells if c.cell_type == "code"]
        assert [c.source for c in nb.cells if c.cell_type == "code"] == code, path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
                continue
            hit = MYST.search(cell.source)
            assert not hit, f"{path.name}: MyST syntax {hit.group(0)!r} left"
        first = nb.cells[0].source
        assert re.match(r"# \d+\. \S", first), (path.name, first[:60])
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "\\tag{" in text or "$$" not in text, path.name


def test_a_plain_notebook_runs_from_top_to_bottom():
    from nbclient import NotebookClient

    nb = nbformat.read(PLAIN / "02_setup.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    assert any(c.outputs for c in nb.cells if c.cell_type == "code")


def test_buttons_point_at_the_plain_notebooks():
    context = {"pathto": lambda name, resource: f"../{name}", "header_buttons": [
        {"type": "group", "buttons": [
            {"type": "link", "label": "download-source-button",
             "url": "../_sources/book/04_convergence.ipynb"}]},
        {"type": "group", "buttons": [
            {"type": "link", "text": "Colab", "url":
             "https://colab.research.google.com/github/o/r/blob/main/"
             "book/04_convergence.ipynb"},
            {"type": "link", "text": "Binder", "url":
             "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/"
             "book/04_convergence.ipynb"},
        ]}]}
    pn.point_buttons(None, "book/04_convergence", "page.html", context, None)
    download, (colab, binder) = (context["header_buttons"][0]["buttons"][0],
                                 context["header_buttons"][1]["buttons"])
    assert download["url"] == "../notebooks/04_convergence.ipynb"
    assert colab["url"].endswith("/blob/main/book/notebooks/04_convergence.ipynb")
    assert binder["url"].endswith(
        "urlpath=lab/tree/book/notebooks/04_convergence.ipynb")


def test_the_extension_is_configured():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"]["plain_notebooks"] == "book/_ext"
    assert json.loads(pn.dumps({"a": 1})) == {"a": 1}
