"""Checks of the book's sources that need no execution.

- every chapter ``book/NN_name.md`` has an executed ``.ipynb`` twin holding the same
  cells (type, source and tags), and every twin stores outputs for nbval to compare;
- every chapter is listed in ``_toc.yml`` and every TOC entry exists;
- ``environment.yml`` and ``pyproject.toml`` name the same dependencies.

All read-only: nothing here rewrites a file.
"""
from __future__ import annotations

import pathlib
import re
import tomllib

import jupytext
import nbformat
import pytest
import yaml
from helpers import toc_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.md"))


def _cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (c.cell_type, c.source.strip(), tuple(sorted(c.metadata.get("tags", []))))
        for c in nb.cells
    ]


def test_there_are_chapters():
    assert CHAPTERS, "no chapter sources book/NN_name.md found"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_pair_in_sync(md: pathlib.Path):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), (f"{md.name} has no executed twin {ipynb.name}: run `make "
                            f"notebook NB=book/{md.name}`")
    text = jupytext.read(md)
    executed = nbformat.read(ipynb, as_version=4)
    a, b = _cells(text), _cells(executed)
    for i, (ca, cb) in enumerate(zip(a, b)):
        assert ca == cb, (
            f"cell {i} differs between {md.name} and {ipynb.name}: "
            f"re-run `make notebook NB=book/{md.name}`\n--- md:\n{ca[1][:300]}\n--- "
            f"ipynb:\n{cb[1][:300]}"
        )
    assert len(a) == len(b), f"{md.name} has {len(a)} cells, {ipynb.name} has {len(b)}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_notebook_is_executed(md: pathlib.Path):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        pytest.skip("chapter without code")
    missing = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not missing, f"{md.name}: code cells {missing} were never executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, (f"{md.name}: stored outputs contain an error: "
                        f"{errors[0].get('ename')}")


def test_toc_lists_every_chapter_and_nothing_missing():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = toc_files(toc)
    for f in files:
        candidates = [ROOT / f"{f}{ext}" for ext in (".md", ".ipynb")]
        assert any(p.exists() for p in candidates), (f"_toc.yml lists {f}, which does "
                                                     "not exist")
    for md in CHAPTERS:
        assert f"book/{md.stem}" in files, f"{md.name} is not in _toc.yml"


def _norm(req: str) -> str:
    """Project name of a requirement string, normalized (PEP 503)."""
    name = re.split(r"[\s<>=!~\[;@]", req.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_environment_yml_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_norm(r) for r in meta["dependencies"]}
    for extra in meta["optional-dependencies"].values():
        declared |= {_norm(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            listed |= {_norm(r) for r in dep["pip"] if not r.startswith(("-", "."))}
        elif isinstance(dep, str):
            listed.add(_norm(dep))
    listed -= {"python", "pip"}
    assert listed == declared, (
        f"only in environment.yml: {sorted(listed - declared)}; "
        f"only in pyproject.toml: {sorted(declared - listed)}"
    )
