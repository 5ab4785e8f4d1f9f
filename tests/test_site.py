"""Checks of the online book's configuration that need no build.

- the repository URL is set once, in ``_config.yml``; launch buttons (Colab, Binder) and
  the download button are configured;
- MathJax is loaded from the build by a relative path (``make mathjax`` puts it where
  ``html_static_path`` copies it from), and both ``make book`` and ``make book-strict``
  fetch it;
- ``make test`` runs, in this order: unit tests and nbval, the strict build, the browser
  test, the tree-state check; ``.ci/run`` installs Chromium when it is missing;
- the GitHub Actions workflow runs ``make test`` and publishes ``_build/html`` to Pages;
- every chapter's first code cell installs ``ntk_companion`` from that repository when
  it is missing (for Colab and Binder), and prints nothing in the stored outputs;
- the API reference page documents every public name of ``ntk_companion``.

The page-level checks of the built HTML are in ``tests/browser``
(``make browser-test``).
"""
from __future__ import annotations

import pathlib
import re
import sys

import nbformat
import pytest
import yaml

import ntk_companion

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_TEXT = (ROOT / "_config.yml").read_text()
CONFIG = yaml.safe_load(CONFIG_TEXT)
SPHINX = CONFIG["sphinx"]["config"]
REPO_URL = CONFIG["repository"]["url"]
MAKEFILE = (ROOT / "Makefile").read_text()
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))


# -------------------------------------------------------------------------- _config.yml

def test_repository_url_is_set_once():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO_URL), REPO_URL
    assert CONFIG_TEXT.count(REPO_URL) == 1, ("the repository URL must appear once in "
                                              "_config.yml")
    others = set(re.findall(r"https?://(?:www\.)?github\.com/[^\s\"']*",
                            CONFIG_TEXT)) - {REPO_URL}
    assert not others, f"other repository URLs in _config.yml: {others}"
    # launch links are built from repository.path_to_book; "." would give
    # ".../main/./book/..."
    assert CONFIG["repository"].get("path_to_book", "") == ""
    assert CONFIG["repository"]["branch"] == "main"


def test_launch_and_download_buttons():
    launch = CONFIG["launch_buttons"]
    assert launch["notebook_interface"] in ("classic", "jupyterlab")
    assert launch["binderhub_url"] == "https://mybinder.org"
    assert launch["colab_url"] == "https://colab.research.google.com"
    # sphinx.config is merged into Jupyter Book's settings (keeping the repository and
    # launch buttons in html_theme_options), not substituted for them
    assert CONFIG["sphinx"]["recursive_update"] is True
    assert SPHINX["html_theme_options"]["use_download_button"] is True


def _make_var(name: str) -> str:
    m = re.search(rf"^{name}\s*:=\s*(\S+)\s*$", MAKEFILE, re.M)
    assert m, f"Makefile does not define {name}"
    return m.group(1)


def test_mathjax_comes_from_the_build():
    path = SPHINX["mathjax_path"]
    assert not re.match(r"^([a-z]+:)?//", path), ("mathjax_path must be relative, got "
                                                  f"{path}")
    assert path.startswith("mathjax/es5/") and path.endswith(".js"), path
    # `make mathjax` copies the npm package's es5/ to
    # $(MATHJAX_DIR)/static/mathjax/es5/, and Sphinx copies html_static_path's contents
    # to _build/html/_static/
    static = f"{_make_var('MATHJAX_DIR')}/static"
    assert SPHINX["html_static_path"][0] == static
    # the other static folders: Popper and Tippy.js (`make tippy`) and the book's own
    # CSS/JS, loaded by name
    assert SPHINX["html_static_path"][1:] == [f"{_make_var('TIPPY_DIR')}/static",
                                              "book/_static"]
    assert all(not re.match(r"^([a-z]+:)?//", js) for js in SPHINX["tippy_js"])
    assert not SPHINX["tippy_enable_wikitips"] and not SPHINX["tippy_enable_doitips"]
    for name in SPHINX["html_css_files"] + SPHINX["html_js_files"]:
        assert (ROOT / "book" / "_static" / name).is_file(), name
    assert re.search(r"npm install .*mathjax@\$\(MATHJAX_VERSION\)",
                     MAKEFILE.replace("\\\n", " "))
    assert re.fullmatch(r"3\.\d+\.\d+", _make_var("MATHJAX_VERSION"))
    assert "$(MATHJAX_DIR)/static/mathjax/" in MAKEFILE
    # a root _static/ would make Jupyter Book load every .js under html_static_path
    assert not (ROOT / "_static").exists()
    # no copy of MathJax in the repository
    assert not list(ROOT.glob("book/**/tex-*.js"))


@pytest.mark.parametrize("target", ["book", "book-strict"])
def test_book_targets_fetch_mathjax(target: str):
    m = re.search(rf"^{re.escape(target)}:([^\n]*)$", MAKEFILE, re.M)
    assert m and "mathjax" in m.group(1).split(), (f"`make {target}` must depend on "
                                                   "`mathjax`")


def _recipe(target: str) -> list[str]:
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n|[^\S\n]*\n)*)",
                  MAKEFILE, re.M)
    assert m, f"no target {target} in the Makefile"
    recipe = m.group(1).replace("\\\n", " ")         # join continued lines
    return [line.strip() for line in recipe.splitlines() if line.strip()]


def test_make_test_order():
    steps = _recipe("test")

    def index(pattern: str) -> int:
        hits = [i for i, s in enumerate(steps) if re.search(pattern, s)]
        assert hits, f"`make test` has no step matching {pattern!r}: {steps}"
        return hits[0]

    order = [index(r"\$\(PYTEST\).*\$\(NBVAL\)"), index(r"\bnbval-profile\b"),
             index(r"\bbook-strict\b"), index(r"\bplain-check\b"),
             index(r"\bbrowser-test\b"), index(r"tree_state\.py check")]
    assert order == sorted(order), f"`make test` steps out of order: {steps}"
    assert any("tests/browser" in s for s in _recipe("browser-test"))
    assert re.search(r"^NBVAL\s*:=\s*--nbval ", MAKEFILE, re.M)


def test_nbval_runs_under_another_floating_point_profile():
    """The second nbval run imitates another CPU: XLA limited to SSE4.2, OpenBLAS on its
    Prescott kernels, one BLAS thread; the same stored outputs must pass."""
    profile = re.search(r"^FP_PROFILE\s*:=((?:.*\\\n)*.*)$", MAKEFILE, re.M).group(1)
    for flag in ("XLA_FLAGS=--xla_cpu_max_isa=SSE4_2", "OPENBLAS_CORETYPE=Prescott",
                 "OPENBLAS_NUM_THREADS=1"):
        assert flag in profile, flag
    steps = _recipe("nbval-profile")
    assert any(s.startswith("$(FP_PROFILE) $(PYTEST)") and "$(NBVAL)" in s
               and "$(NOTEBOOKS)" in s for s in steps), steps


def test_make_lab_opens_markdown_chapters_as_notebooks():
    import json

    steps = " ".join(_recipe("lab"))
    assert "jupyter lab" in steps and "$(LAB_ARGS)" in steps
    assert "book/_lab" in MAKEFILE
    viewers = json.loads((ROOT / "book" / "_lab" / "overrides.json").read_text())[
        "@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}


def test_pytest_tests_does_not_collect_the_browser_tests():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ini = pyproject["tool"]["pytest"]["ini_options"]
    assert "browser" in ini["norecursedirs"]
    assert (ROOT / "tests" / "browser" / "test_pages.py").exists()


def test_ci_installs_chromium_when_missing():
    run = (ROOT / ".ci" / "run").read_text()
    assert "[ -x /usr/bin/chromium ]" in run
    assert re.search(r"apt-get install -y -qq \"\$\{missing\[@\]\}\"", run)
    assert run.index("apt-get install") < run.index("make test")


# ------------------------------------------------------------------------- the workflow

def test_pages_workflow_shape():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = wf.get("on", wf.get(True))             # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in on
    assert wf["permissions"]["pages"] == "write"
    assert wf["permissions"]["id-token"] == "write"
    assert wf["concurrency"]["group"]

    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    steps = build["steps"]
    runs = [s.get("run", "") for s in steps]
    uses = [s.get("uses", "") for s in steps]
    test_step = next(i for i, r in enumerate(runs) if re.search(r"\bmake test\b", r))
    chromium_step = next(i for i, r in enumerate(runs)
                         if "install" in r and "chromium" in r)
    assert chromium_step < test_step, "Chromium must be installed before `make test`"
    assert any(u.startswith("actions/checkout@") for u in uses)
    configure = next(i for i, u in enumerate(uses)
                     if u.startswith("actions/configure-pages@"))
    upload = next(i for i, u in enumerate(uses)
                  if u.startswith("actions/upload-pages-artifact@"))
    assert test_step < configure < upload
    assert steps[upload]["with"]["path"] == "_build/html"

    needs = deploy["needs"]
    assert needs == "build" or needs == ["build"]
    assert deploy["environment"]["name"] == "github-pages"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@")
               for s in deploy["steps"])


# --------------------------------------------------------------------------- chapters

INSTALL_CELL = re.compile(
    r"try:\n[ \t]+import ntk_companion\b[^\n]*\n"
    r"except ImportError:\n"
    r"[ \t]+%pip install (?P<args>[^\n]+)\Z")


def _first_code_cell(path: pathlib.Path):
    nb = nbformat.read(path, as_version=4)
    return next((c for c in nb.cells if c.cell_type == "code"), None)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_chapter_starts_with_the_install_cell(md: pathlib.Path):
    """On Colab and Binder the package is missing: the chapter's first code cell
    installs it from the repository of _config.yml, and where it is installed prints
    nothing."""
    ipynb = md.with_suffix(".ipynb")
    cell = _first_code_cell(ipynb)
    assert cell is not None, f"{ipynb.name} has no code cell"
    source = cell.source.strip()
    expected = (f'try:\n    import ntk_companion\nexcept ImportError:\n'
                f'    %pip install --quiet "ntk_companion @ git+{REPO_URL}"')
    m = INSTALL_CELL.match(source)
    assert m, (f"the first code cell of {ipynb.name} must install ntk_companion when "
               f"it is missing, e.g.\n{expected}\ngot:\n{source[:300]}")
    assert f"git+{REPO_URL}" in m.group("args"), (
        f"{ipynb.name} installs from {m.group('args')!r}, not from the repository of "
        f"_config.yml ({REPO_URL})")
    assert not cell.outputs, (f"the install cell of {ipynb.name} stores outputs: "
                              f"{cell.outputs}")


# --------------------------------------------------------------------------- API page

def test_api_page_documents_every_public_name():
    api = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(
        r"^\.\. auto(?:function|class|data)::\s+ntk_companion\.(\w+)\s*$", api, re.M))
    modules_with_members = set(re.findall(
        r"^\.\. automodule::\s+(ntk_companion\.\w+)\s*\n"
        r"(?:[ \t]+:[^\n]*\n)*?[ \t]+:members:",
        api, re.M))
    for module in modules_with_members:
        documented |= set(getattr(sys.modules[module], "__all__", []))
        documented.add(module.rsplit(".", 1)[1])
    missing = [n for n in ntk_companion.__all__ if n not in documented]
    assert not missing, f"book/api.md does not document: {missing}"


def test_api_page_is_in_the_back_matter_before_the_glossary():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    back = next(p for p in toc["parts"] if p["caption"] == "Back matter")
    files = [c["file"] for c in back["chapters"]]
    assert "book/api" in files
    assert files.index("book/api") < files.index("book/glossary")


def test_docstring_formulas_become_code_blocks():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from ntk_api import literal_formula_blocks, titles_as_rubrics
    finally:
        sys.path.pop(0)
    doc = ["Intro:", "", "    K = G G^T,", "        = H", "", "* item", "",
           "      x = y", "", "Title", "-----", "text"]
    out = literal_formula_blocks(titles_as_rubrics(doc))
    assert out == ["Intro:", "", ".. code-block:: text", "", "    K = G G^T,",
                   "        = H", "", "* item", "", "  .. code-block:: text", "",
                   "      x = y", "", ".. rubric:: Title", "", "text"]
    # literal blocks and directive content are left alone
    kept = ["Example::", "", "    x = 1", "", ".. code-block:: text", "", "    y = 2"]
    assert literal_formula_blocks(kept) == kept


def test_same_authors_and_year_get_letters_in_citations():
    import pybtex.database

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from citation_years import author_text, year_suffixes
    finally:
        sys.path.pop(0)
    entries = pybtex.database.parse_file(str(ROOT / "book" / "references.bib")).entries
    suffixes = year_suffixes(entries)
    # the two Arora et al. (2019) papers, in bibliography order (last names, then title)
    assert suffixes["arora2019exact"] == "2019a"
    assert suffixes["arora2019finegrained"] == "2019b"
    # after the letters, no two entries share an author-year label
    labels = [(author_text(e), suffixes.get(k, e.fields.get("year")))
              for k, e in entries.items()]
    assert len(labels) == len(set(labels))
    # idempotent: a second pass (cached environment) changes nothing
    for key, year in suffixes.items():
        entries[key].fields["year"] = year
    assert year_suffixes(entries) == {}


def test_bibliography_labels_and_links():
    """Every entry links to the work (doi, arXiv eprint or url) and gets the author-year
    label its citations show."""
    import pybtex.database

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from citation_years import author_year_label, year_suffixes
    finally:
        sys.path.pop(0)
    entries = pybtex.database.parse_file(str(ROOT / "book" / "references.bib")).entries
    unlinked = [k for k, e in entries.items()
                if not ({"doi", "eprint", "url"} & {f.lower() for f in e.fields})]
    assert not unlinked, f"entries without doi, eprint or url: {unlinked}"
    for key, e in entries.items():
        if "eprint" in e.fields:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", e.fields["eprint"]), key
            assert e.fields.get("archiveprefix", "").lower() == "arxiv", key
        if "doi" in e.fields:
            assert re.fullmatch(r"10\.\d{4,9}/\S+", e.fields["doi"]), key
    for key, year in year_suffixes(entries).items():
        entries[key].fields["year"] = year
    labels = {k: author_year_label(e) for k, e in entries.items()}
    assert labels["jacot2018ntk"] == "Jacot et al., 2018"
    assert labels["chizat2018global"] == "Chizat and Bach, 2018"
    assert labels["neal1996bayesian"] == "Neal, 1996"
    assert labels["scholkopf2002learning"] == "Schölkopf and Smola, 2002"
    assert labels["arora2019exact"] == "Arora et al., 2019a"
    assert len(set(labels.values())) == len(labels), "two entries share a label"
    assert SPHINX["bibtex_default_style"] == "authoryear"
