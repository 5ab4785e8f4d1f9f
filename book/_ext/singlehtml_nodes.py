"""Sphinx glue for the one-page build behind ``make pdf``, loaded from _config.yml.

``jupyter-book build --builder singlehtml`` renders the whole book as one HTML page. Sphinx
looks up how to render a node first by builder name (``singlehtml``) and only when no
extension registered anything under that name by format (``html``). Some extensions register
``singlehtml`` handlers, so the nodes that others (sphinx-proof's theorems) registered for
``html`` alone would have no handler there and the build would stop. :func:`share_html_handlers`
gives the ``singlehtml`` builder every ``html`` handler it lacks; other builders are untouched.
"""
from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def share_html_handlers(app: Sphinx) -> None:
    """``builder-inited``: copy missing ``html`` node handlers to ``singlehtml``."""
    if app.builder.name != "singlehtml":
        return
    handlers = app.registry.translation_handlers
    single = handlers.setdefault("singlehtml", {})
    for node, visit_depart in handlers.get("html", {}).items():
        single.setdefault(node, visit_depart)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", share_html_handlers)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
