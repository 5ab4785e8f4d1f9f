"""Sphinx glue for the API reference page (book/api.md), loaded from _config.yml.

1. Plain-text formulas in docstrings. The package's docstrings are written for ``help()``:
   a formula stands on its own lines, indented under the paragraph that introduces it::

       the empirical NTK is

           K(X1, X2) = G(X1) G(X2)^T

   In reStructuredText such a block is a block quote (its lines run together) or, when a
   line is followed by a more indented one, a definition list. ``autodoc-process-docstring``
   turns every such block into a ``code-block:: text``, so it is shown as written. Section
   titles in module docstrings (a line underlined with ``---``) become rubrics, so that they
   do not add sections to the page that includes them.

2. Cross-references by module path. Every public object is documented once, where users
   import it from: ``ntk_companion.<name>`` (``ntk_companion.plotting.<name>`` for the
   plotting helpers). Docstrings may refer to an object by its defining module,
   ``:func:`ntk_companion.dynamics.predict```, or, in a module docstring, by its bare name;
   ``missing-reference`` resolves such a reference to the documented object when it is the
   same Python object, and leaves every other missing reference alone (it still fails the
   nitpicky build).

3. One script tag per script. sphinx-thebe (loaded by Jupyter Book) registers its inline
   ``const THEBE_JS_URL = ...`` script at every ``env-before-read-docs``, which fires more
   than once per build, so pages declared the constant twice and logged a JavaScript error.
   ``html-page-context`` drops repeated identical scripts.
"""
from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

PACKAGE = "ntk_companion"
DOCUMENTED_AT = (PACKAGE, f"{PACKAGE}.plotting")


# --------------------------------------------------------------------------- formulas

def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content_indent(line: str) -> int:
    """Indentation of the text of a paragraph that starts with ``line`` (after a bullet)."""
    stripped = line.lstrip(" ")
    for bullet in ("* ", "- ", "+ "):
        if stripped.startswith(bullet):
            return _indent(line) + len(bullet)
    return _indent(line)


def literal_formula_blocks(lines: list[str]) -> list[str]:
    """Wrap indented blocks that are neither literal blocks nor directive content in
    ``.. code-block:: text``. Returns the new list of lines."""
    out: list[str] = []
    para_start: str | None = None     # first line of the current or last paragraph
    last_text: str | None = None      # last non-blank line
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            out.append(line)
            i += 1
            continue
        after_blank = i > 0 and not lines[i - 1].strip()
        if (after_blank and para_start is not None and last_text is not None
                and _indent(line) > _content_indent(para_start)
                and not last_text.rstrip().endswith("::")
                and not para_start.lstrip().startswith((".. ", ":"))
                and not line.lstrip().startswith((">>>", ".. "))):
            base = _content_indent(para_start)
            block = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():      # trailing blank lines stay outside
                block.pop()
                i -= 1
            out += [" " * base + ".. code-block:: text", ""] + block
            last_text = block[-1]
            continue
        if (after_blank or para_start is None or _content_indent(line) > _indent(line)
                or _indent(line) < _indent(last_text or line)):
            para_start = line       # a new paragraph, list item or dedent
        last_text = line
        out.append(line)
        i += 1
    return out


def titles_as_rubrics(lines: list[str]) -> list[str]:
    """Replace ``Title`` + an underline of ``-``, ``=`` or ``~`` by ``.. rubric:: Title``."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        under = lines[i + 1] if i + 1 < len(lines) else ""
        if (line.strip() and _indent(line) == 0 and len(under.strip()) >= len(line.strip())
                and len(set(under.strip())) == 1 and under.strip()[0] in "-=~"
                and _indent(under) == 0):
            out += [f".. rubric:: {line.strip()}", ""]
            i += 2
            continue
        out.append(line)
        i += 1
    return out


def _process_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                       lines: list[str]) -> None:
    lines[:] = literal_formula_blocks(titles_as_rubrics(lines))


# --------------------------------------------------------------------------- references

def _lookup(path: str) -> Any:
    """The Python object a documented name stands for, or None. Attributes win over
    submodules, as in Python: ``ntk_companion.linearize`` is the function, not the module."""
    parts = path.split(".")
    try:
        obj = importlib.import_module(parts[0])
    except ImportError:
        return None
    for i, attr in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                return None
    return obj


def _lookup_in_module(path: str) -> Any:
    """The object a reference written as ``module.name`` means: the longest importable
    module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _missing_reference(app: Sphinx, env: Any, node: nodes.Element,
                       contnode: nodes.Element) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    context = node.get("py:module") or ""
    if target.startswith(PACKAGE + "."):
        candidates = [target]
    elif context.startswith(PACKAGE) and "." not in target:
        candidates = [f"{context}.{target}"]
    else:
        return None
    domain = env.get_domain("py")
    for path in candidates:
        obj = _lookup_in_module(path)
        if obj is None:
            continue
        name = path.rsplit(".", 1)[-1]
        for home in DOCUMENTED_AT:
            documented = f"{home}.{name}"
            if documented != path and documented in domain.objects and _lookup(documented) is obj:
                new = node.deepcopy()
                new["reftarget"] = documented
                new["py:module"] = None
                return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                           documented, new, contnode)
    return None


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict,
                    doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # an inline script is registered once with filename None and once with ""
        key = (getattr(js, "filename", js) or "", getattr(js, "priority", 500),
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _nitpick_ignore_as_tuples(app: Sphinx, config: Any) -> None:
    # _config.yml can only give lists; Sphinx compares (type, target) tuples.
    config.nitpick_ignore = [tuple(x) for x in config.nitpick_ignore]
    config.nitpick_ignore_regex = [tuple(x) for x in config.nitpick_ignore_regex]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _nitpick_ignore_as_tuples)
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    # after napoleon (priority 500), which turns Google sections into field lists
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)
    app.connect("missing-reference", _missing_reference)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
