"""Sphinx glue for the "edit this page" button, loaded from _config.yml.

A chapter page is built from ``book/NN_name.ipynb``, the executed twin of the MyST source
``book/NN_name.md`` that authors edit (jupytext pairs them; CONTRIBUTING.md). The theme's
button would open the notebook in GitHub's editor, where an edit breaks the pair; this hook
points it at the ``.md`` source when one exists. Launch and download buttons still use the
notebook.
"""
from __future__ import annotations

import pathlib
from typing import Any

from sphinx.application import Sphinx


def _buttons(buttons: list) -> list[dict]:
    for button in buttons:
        yield button
        yield from _buttons(button.get("buttons", []))


def edit_the_source(app: Sphinx, pagename: str, templatename: str, context: dict,
                    doctree: Any) -> None:
    """``html-page-context`` (after sphinx-book-theme's buttons): ``.ipynb`` -> ``.md``."""
    if not (pathlib.Path(app.srcdir) / f"{pagename}.md").is_file():
        return
    for button in _buttons(context.get("header_buttons", [])):
        url = button.get("url", "")
        if "/edit/" in url and url.endswith(f"{pagename}.ipynb"):
            button["url"] = url[: -len(".ipynb")] + ".md"


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", edit_the_source, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
