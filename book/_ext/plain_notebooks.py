"""Plain-Jupyter versions of the chapters, for readers without a MyST renderer.

The chapters are MyST notebooks: theorems, proofs, exercises and solutions are directives,
and cross-references (``{eq}``, ``{numref}``, ``{prf:ref}``, ``{doc}``, ``{cite:p}``) are
roles that only Sphinx resolves. Opened in Colab, or in a Jupyter without jupyterlab-myst,
they show as raw code blocks and literal text. This extension writes, after every HTML
build, a plain copy of each chapter to ``_build/html/notebooks/NN_name.ipynb`` in which

- blocks become Markdown: ``**Theorem 4.1 (Gronwall).**`` and its text, ``*Proof.* ... ∎``,
  ``**Exercise 4.2.**``; solutions go in ``<details>``; admonitions become quotes;
- roles become what the book shows: ``(4.2)``, ``Fig. 4.1``, ``Theorem 4.1``,
  ``Exercise 4.2``, ``Chapter 3``, ``(Jacot et al., 2018)``;
- labelled display equations carry ``\\tag{4.2}``; figure captions follow their cell;
- outputs are dropped (the book shows them; a reader runs the notebook).

The numbers come from the build itself (Sphinx's environment), so they are the book's.
The launch buttons (Colab, Binder) and the download button of a chapter page point at these
notebooks: Colab and Binder at the committed copies in ``book/notebooks/`` of the repository
(``make plain-notebooks`` refreshes them from a build), the download button at the built copy.
``python book/_ext/plain_notebooks.py check _build/html/notebooks book/notebooks`` (run by
``make test``) fails when a committed copy differs from what the sources give.
"""
from __future__ import annotations

import json
import pathlib
import re
import sys
from typing import Any, Callable

PLAIN_DIR = "notebooks"          # inside the HTML output
COMMITTED_DIR = "book/notebooks"  # in the repository, what Colab and Binder open
CHAPTER = re.compile(r"book/\d\d_[a-z0-9_]+$")

# Display names of numbered blocks and roles, as the book prints them.
KIND_NAMES = {
    "theorem": "Theorem", "lemma": "Lemma", "proposition": "Proposition",
    "corollary": "Corollary", "definition": "Definition", "remark": "Remark",
    "example": "Example", "conjecture": "Conjecture", "axiom": "Axiom",
    "criterion": "Criterion", "algorithm": "Algorithm", "property": "Property",
    "observation": "Observation", "assumption": "Assumption", "notation": "Notation",
    "exercise": "Exercise", "figure": "Fig.", "table": "Table", "code-block": "Listing",
}
ADMONITIONS = {"note", "tip", "warning", "important", "caution", "attention", "danger",
               "error", "hint", "seealso"}


class Resolver:
    """What the conversion needs to know of the book: numbers, titles, citation labels.

    ``numbers[label] = (kind, "4.2")`` for equations (kind ``"displaymath"``), figures,
    theorem-like blocks and exercises; ``titles[label]`` for section and document targets;
    ``chapters[docname] = (number or None, title)``; ``cite(key)`` gives ``("Jacot et al.",
    "2018")``.
    """

    def __init__(self, numbers: dict[str, tuple[str, str]], titles: dict[str, str],
                 chapters: dict[str, tuple[str | None, str]],
                 cite: Callable[[str], tuple[str, str]], docname: str) -> None:
        self.numbers, self.titles, self.chapters = numbers, titles, chapters
        self.cite_label, self.docname = cite, docname

    def number(self, label: str) -> tuple[str, str]:
        if label not in self.numbers:
            raise KeyError(f"{self.docname}: no number for label {label!r}")
        return self.numbers[label]

    def named(self, label: str) -> str:
        kind, num = self.number(label)
        return f"{KIND_NAMES.get(kind, kind.capitalize())} {num}"

    def doc(self, target: str) -> str:
        base = self.docname.rsplit("/", 1)[0]
        name = target if target.startswith("/") else f"{base}/{target}"
        name = name.lstrip("/")
        if name not in self.chapters:
            raise KeyError(f"{self.docname}: unknown document {target!r}")
        number, title = self.chapters[name]
        return f"Chapter {number}" if number else title


# ----------------------------------------------------------------------------- roles

ROLE = re.compile(r"\{([a-z]+(?::[a-z]+)?)\}`([^`]*)`")
EXPLICIT = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)


def _split_title(content: str) -> tuple[str | None, str]:
    m = EXPLICIT.match(content)
    return (m.group(1), m.group(2)) if m else (None, content)


def convert_roles(text: str, res: Resolver) -> str:
    """Replace every MyST role in ``text`` by the text the book shows for it."""

    def one(m: re.Match) -> str:
        role, content = m.group(1), m.group(2)
        if role == "eq":
            return f"({res.number(content)[1]})"
        if role in ("numref", "prf:ref", "ref"):
            title, label = _split_title(content)
            if role == "ref" and label not in res.numbers:
                if label not in res.titles:
                    raise KeyError(f"{res.docname}: unknown reference {label!r}")
                return title or res.titles[label]
            named = res.named(label)
            if title is None:
                return named
            if role == "numref":
                return title.replace("%s", res.number(label)[1]).replace("{number}",
                                                                          res.number(label)[1])
            return title
        if role == "doc":
            title, target = _split_title(content)
            return title or res.doc(target)
        if role in ("cite:p", "cite:t", "cite:ps", "cite:ts", "cite"):
            keys = [k.strip() for k in content.split(",") if k.strip()]
            labels = [res.cite_label(k) for k in keys]
            if role.startswith("cite:t"):
                return "; ".join(f"{a} ({y})" for a, y in labels)
            return "(" + "; ".join(f"{a}, {y}" for a, y in labels) + ")"
        if role == "term":
            title, term = _split_title(content)
            return title or term
        if role in ("py:func", "py:meth", "py:class", "py:mod", "py:data", "py:attr",
                    "py:obj", "func", "class", "mod", "meth"):
            title, name = _split_title(content)
            if title is None:
                name = name[1:].split(".")[-1] if name.startswith("~") else name
                title = name + ("()" if role in ("py:func", "py:meth", "func", "meth") else "")
            return f"`{title}`"
        if role == "math":
            return f"${content}$"
        if role in ("code", "literal", "samp", "file", "kbd"):
            return f"`{content}`"
        if role in ("sup", "sub"):
            return f"<{role}>{content}</{role}>"
        if role == "abbr":
            return _split_title(content)[0] or content
        raise ValueError(f"{res.docname}: no plain form for the role {{{role}}}")

    return ROLE.sub(one, text)


# ------------------------------------------------------------------------ directives

FENCE = re.compile(r"^(\s*)(`{3,}|:{3,})\{([\w:-]+)\}\s*(.*)$")
OPTION = re.compile(r"^:([\w-]+):\s*(.*)$")
MATH_LABEL = re.compile(r"^\$\$\s*\(([\w-]+)\)\s*$")


def _parse_block(lines: list[str], start: int) -> tuple[dict[str, Any], int]:
    """The directive opened at ``lines[start]``: name, argument, options, body lines, and
    the index after its closing fence."""
    m = FENCE.match(lines[start])
    indent, fence, name, arg = m.group(1), m.group(2), m.group(3), m.group(4).strip()
    char, width = fence[0], len(fence)
    close = re.compile(rf"^\s*{re.escape(char)}{{{width},}}\s*$")
    body, i, depth = [], start + 1, 0
    while i < len(lines):
        line = lines[i]
        inner = FENCE.match(line)
        if inner and inner.group(2)[0] == char and len(inner.group(2)) == width:
            depth += 1
        elif close.match(line) and len(line.strip()) == width:
            if depth == 0:
                break
            depth -= 1
        body.append(line[len(indent):] if line.startswith(indent) else line)
        i += 1
    else:
        raise ValueError(f"unclosed directive {name} at line {start + 1}")
    options: dict[str, str] = {}
    while body and OPTION.match(body[0].strip()) and body[0].strip() != "":
        k, v = OPTION.match(body[0].strip()).groups()
        options[k] = v
        body.pop(0)
    if body[:1] == ["---"]:  # YAML options block
        end = body.index("---", 1)
        for line in body[1:end]:
            if ":" in line:
                k, v = line.split(":", 1)
                options[k.strip()] = v.strip()
        body = body[end + 1:]
    return {"name": name, "arg": arg, "options": options, "body": body}, i + 1


def _quote(text: str) -> str:
    return "\n".join(("> " + line).rstrip() for line in text.split("\n"))


def convert_blocks(text: str, res: Resolver) -> str:
    """Markdown for the directives, labels, comments and labelled equations of ``text``."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        if FENCE.match(line):
            block, i = _parse_block(lines, i)
            out.extend(_render(block, res).split("\n"))
            continue
        if re.match(r"^\s*\([\w-]+\)=\s*$", line) or re.match(r"^\s*%", line):
            i += 1  # a target label or a comment
            continue
        m = MATH_LABEL.match(line.strip())
        if m:  # closing "$$ (label)" of a labelled display equation
            out.append(f"\\tag{{{res.number(m.group(1))[1]}}}")
            out.append("$$")
            i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _render(block: dict[str, Any], res: Resolver) -> str:
    name, arg, opts = block["name"], block["arg"], block["options"]
    body = convert_blocks("\n".join(block["body"]), res).strip("\n")
    title = f" ({arg})" if arg else ""
    label = opts.get("label") or opts.get("name")
    if name.startswith("prf:"):
        kind = name[4:]
        if kind == "proof":
            return f"*Proof.* {body} $\\blacksquare$\n"
        number = f" {res.number(label)[1]}" if label else ""
        return f"**{KIND_NAMES.get(kind, kind.capitalize())}{number}{title}.** {body}\n"
    if name == "exercise":
        number = f" {res.number(label)[1]}" if label else ""
        return f"**Exercise{number}{title}.** {body}\n"
    if name in ("solution", "solution-start"):
        target = res.named(arg) if arg else "the exercise"
        summary = f"<summary><b>Solution to {target}</b></summary>"
        if name == "solution-start":
            # A gated solution: its text and its code cells follow, up to solution-end;
            # a plain notebook cannot fold several cells, so it gets a heading instead.
            return f"**Solution to {target}.**\n\n{body}\n"
        return f"<details>{summary}\n\n{body}\n\n</details>\n"
    if name == "solution-end":
        return ""
    if name == "dropdown":
        return f"<details><summary><b>{arg or 'Details'}</b></summary>\n\n{body}\n\n</details>\n"
    if name == "admonition":
        return _quote(f"**{arg}**\n\n{body}") + "\n"
    if name in ADMONITIONS:
        return _quote(f"**{name.capitalize()}{': ' + arg if arg else ''}**\n\n{body}") + "\n"
    if name == "math":
        tag = f"\n\\tag{{{res.number(label)[1]}}}" if label else ""
        return f"$$\n{body}{tag}\n$$\n"
    if name in ("code-block", "code"):
        return f"```{arg}\n{body}\n```\n"
    if name == "figure":
        caption = body
        number = f"{res.named(label)}: " if label else ""
        alt = opts.get("alt", "figure")
        return f"![{alt}]({arg})\n\n*{number}{caption}*\n"
    if name in ("epigraph", "div", "container"):
        return body + "\n"
    raise ValueError(f"{res.docname}: no plain form for the directive {{{name}}}")


def convert_markdown(text: str, res: Resolver) -> str:
    """The plain-Markdown form of one MyST Markdown cell."""
    return convert_roles(convert_blocks(text, res), res).strip("\n")


def convert_notebook(nb: dict[str, Any], res: Resolver) -> dict[str, Any]:
    """A plain copy of the notebook ``nb`` (nbformat 4 JSON as a dict), without outputs."""
    cells = []
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            text = convert_markdown(source, res)
            if cell is nb["cells"][0] and res.chapters[res.docname][0]:
                text = re.sub(r"^# ", f"# {res.chapters[res.docname][0]}. ", text, count=1)
            if text.strip():
                cells.append({"cell_type": "markdown", "metadata": {}, "source": text})
            continue
        if cell["cell_type"] != "code":
            continue
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
        cells.append({"cell_type": "code", "execution_count": None, "metadata": meta,
                      "outputs": [], "source": source})
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if figure and figure.get("caption"):
            label = figure.get("name")
            number = f"{res.named(label)}. " if label else ""
            caption = convert_markdown(figure["caption"].strip(), res)
            cells.append({"cell_type": "markdown", "metadata": {},
                          "source": f"*{number}{caption}*"})
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index:03d}"  # stable ids, so a rebuild gives the same file
    meta = {k: nb["metadata"][k] for k in ("kernelspec", "language_info")
            if k in nb["metadata"]}
    meta["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def dumps(nb: dict[str, Any]) -> str:
    """Stable JSON text of a notebook (sorted keys, one-space indent, final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------- Sphinx glue

def _resolver_tables(app: Any) -> tuple[dict, dict, dict, Callable[[str], tuple[str, str]]]:
    from pybtex.richtext import Text
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from citation_years import author_text

    env = app.env
    numbers: dict[str, tuple[str, str]] = {}
    for docname, kinds in env.toc_fignumbers.items():
        for kind, ids in kinds.items():
            for node_id, num in ids.items():
                label = node_id[len("equation-"):] if kind == "displaymath" else node_id
                numbers[label] = (kind, ".".join(map(str, num)))
    titles = {label: str(title) for label, (_, _, title) in env.domaindata["std"]["labels"].items()}
    chapters = {}
    for docname, title in env.titles.items():
        secnum = env.toc_secnumbers.get(docname, {}).get("")
        chapters[docname] = (".".join(map(str, secnum)) if secnum else None, title.astext())
    entries = env.get_domain("cite").bibdata.data.entries

    def cite(key: str) -> tuple[str, str]:
        if key not in entries:
            raise KeyError(f"unknown citation key {key!r}")
        entry = entries[key]
        names = [Text.from_latex(n).render_as("text") for n in author_text(entry)]
        if len(names) == 2 and names[1] == "et al.":
            who = f"{names[0]} et al."
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = names[0]
        return who, entry.fields.get("year", "")

    return numbers, titles, chapters, cite


def write_plain_notebooks(app: Any, exception: Exception | None) -> None:
    """``build-finished``: write ``notebooks/NN_name.ipynb`` into the HTML output."""
    if exception is not None or app.builder.name != "html":
        return
    numbers, titles, chapters, cite = _resolver_tables(app)
    outdir = pathlib.Path(app.outdir) / PLAIN_DIR
    outdir.mkdir(parents=True, exist_ok=True)
    for docname in sorted(app.env.found_docs):
        if not CHAPTER.match(docname):
            continue
        source = pathlib.Path(app.srcdir) / f"{docname}.ipynb"
        nb = json.loads(source.read_text())
        res = Resolver(numbers, titles, chapters, cite, docname)
        plain = convert_notebook(nb, res)
        (outdir / f"{pathlib.Path(docname).name}.ipynb").write_text(dumps(plain))


def point_buttons(app: Any, pagename: str, templatename: str, context: dict,
                  doctree: Any) -> None:
    """``html-page-context``: the Colab, Binder and .ipynb buttons of a chapter open its
    plain notebook."""
    if not CHAPTER.match(pagename):
        return
    name = pagename.rsplit("/", 1)[1]
    original = f"{pagename}.ipynb"
    committed = f"{COMMITTED_DIR}/{name}.ipynb"

    def visit(buttons: list[dict]) -> None:
        for button in buttons:
            if button.get("type") == "group":
                visit(button.get("buttons", []))
            elif str(button.get("url", "")).endswith(f"_sources/{original}"):
                # the .ipynb download (the page's source is the notebook)
                button["url"] = context["pathto"](f"{PLAIN_DIR}/{name}.ipynb", 1)
            elif button.get("text") in ("Colab", "Binder") and button.get("url"):
                button["url"] = button["url"].replace(original, committed)

    visit(context.get("header_buttons", []))


def setup(app: Any) -> dict[str, Any]:
    app.connect("build-finished", write_plain_notebooks)
    app.connect("html-page-context", point_buttons, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ------------------------------------------------------------------------ the check

def check(built: pathlib.Path, committed: pathlib.Path) -> list[str]:
    """Differences between the notebooks just built and the committed ones."""
    problems = []
    built_names = {p.name for p in built.glob("*.ipynb")}
    committed_names = {p.name for p in committed.glob("*.ipynb")}
    if not built_names:
        problems.append(f"no plain notebooks in {built}: build the book first")
    for name in sorted(built_names - committed_names):
        problems.append(f"{committed / name} is missing")
    for name in sorted(committed_names - built_names):
        problems.append(f"{committed / name} has no chapter")
    for name in sorted(built_names & committed_names):
        if (built / name).read_text() != (committed / name).read_text():
            problems.append(f"{committed / name} differs from what its chapter gives")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "check":
        sys.exit("usage: plain_notebooks.py check BUILT_DIR COMMITTED_DIR")
    found = check(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print("run `make plain-notebooks` to refresh book/notebooks/", file=sys.stderr)
    sys.exit(1 if found else 0)
