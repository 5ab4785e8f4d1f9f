"""Every page of the book, opened in headless Chromium as a reader would.

For each page listed in ``_toc.yml`` (served from ``_build/html`` on localhost):

- it loads with no console error, no failed or 4xx/5xx request, and no request leaving
  the machine (MathJax and everything else come from the build);
- MathJax has typeset every math element (an ``mjx-container`` in each), there is math
  wherever the source has some, and no ``mjx-merror``;
- code cells and outputs (lines of at most 88 characters) fit their boxes at 1280 px,
  with no sideways scroll bar;
- every image has loaded (``naturalWidth > 0``); every figure has alt text that is not
  its file path and at least 2 image pixels per CSS pixel as shown;
- no raw MyST or LaTeX reaches the reader: the text outside math and code (collapsed
  solutions included) has no ``$``, ``\\frac``, ``{eq}``, ``{numref}``, ``{cite``,
  ``{prf:``, ``:::`` or MathJax error message;
- every internal link resolves (HTTP 200) and every anchor exists on its target page;
- the theorem-like blocks (``{prf:...}``), exercises and solutions of the source are all
  rendered, each dropdown solution with its toggle button;
- chapters built from notebooks have Colab and Binder launch links and a .ipynb
  download, all to the chapter's plain-Jupyter copy (``book/notebooks/``).

Each page is opened again at phone width (390 px): no raw markup there either, the page
does not scroll sideways, nothing is cut off at the right edge, multi-panel figures
(more than twice as wide as tall) keep their design width in a box that scrolls
sideways, and each display equation stays on the screen with its number beside it (a
formula wider than the screen scrolls inside its own box).

In print (CSS print media), code and outputs wrap instead of being cut, and collapsed
solutions are expanded.

A screenshot of each page at both widths is saved in ``_build/screenshots/``. Two pages
are also opened from disk (``file://``) with the network cut off, as a reader of a
downloaded build would.
"""
from __future__ import annotations

import collections
import os
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import nbformat
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import toc_files  # noqa: E402
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
TIMEOUT_MS = 60_000
# Screenshots show the top of each page (1280 x 900); BROWSER_FULL_PAGE=1 takes whole
# pages.
FULL_PAGE = bool(os.environ.get("BROWSER_FULL_PAGE"))


PAGES = toc_files(TOC)


# -------------------------------------------------------------------------- the sources

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*(\S*)")
# code, not a directive
CODE_INFO = re.compile(r"^(\{code-cell\}.*|[A-Za-z0-9_+.-]*)$")
INLINE_CODE = re.compile(r"(?<![}`])(`+)[^`\n]+\1")      # not a role's {name}`target`
DIRECTIVE = re.compile(
    r"^\s*(?:`{3,}|:{3,})\s*\{(prf:[a-z]+|exercise|solution)(?:-start)?\}", re.M)
MATH = re.compile(r"\$[^$\n]+\$|\$\$|\\begin\{|\{math\}`")


def source_path(doc: str) -> pathlib.Path:
    md = ROOT / f"{doc}.md"
    return md if md.exists() else ROOT / f"{doc}.ipynb"


def markdown_text(doc: str) -> str:
    """The prose of a page's source: markdown without code blocks or inline code.
    Directive fences (```{name}) are kept with their content; code fences
    (```{code-cell}, ```python, bare ```) are dropped."""
    path = source_path(doc)
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    else:
        text = path.read_text()
    kept: list[str] = []
    stack: list[tuple[str, bool]] = []          # open fences: (fence, is_code)
    for line in text.splitlines():
        m = FENCE.match(line)
        if m:
            fence, info = m.group(1), m.group(2)
            if (stack and not info and fence[0] == stack[-1][0][0]
                    and len(fence) >= len(stack[-1][0])):
                stack.pop()                         # a closing fence
                continue
            # an opening fence, unless inside code
            if not (stack and stack[-1][1]):
                stack.append((fence, bool(CODE_INFO.match(info))))
                if not stack[-1][1]:
                    kept.append(line)
                continue
        if stack and stack[-1][1]:
            continue
        kept.append(INLINE_CODE.sub("", line))
    return "\n".join(kept)


def expected_blocks(doc: str) -> collections.Counter:
    return collections.Counter(DIRECTIVE.findall(markdown_text(doc)))


def is_notebook_page(doc: str) -> bool:
    return (ROOT / f"{doc}.ipynb").exists()


# -------------------------------------------------------------------------- the browser

# One evaluate call gathers everything from the rendered page.
PAGE_REPORT_JS = """
async () => {
  const q = s => [...document.querySelectorAll(s)];
  await Promise.all(q('img').map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r);
  })));
  return {
    mathjaxScripts: q('script[src*="mathjax"]').map(s => s.getAttribute('src')),
    mathElements: q('.math').length,
    unrendered: q('.math').filter(e => !e.querySelector('mjx-container'))
                           .map(e => e.textContent.slice(0, 80)),
    mjx: q('mjx-container').length,
    merrors: q('mjx-merror')
      .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80)),
    images: q('img').length,
    brokenImages: q('img').filter(i => !(i.complete && i.naturalWidth > 0))
                          .map(i => i.getAttribute('src')),
    links: q('a[href], link[href]').map(a => a.href),
    ids: q('[id]').map(e => e.id).concat(q('a[name]').map(e => e.getAttribute('name'))),
    proofs: q('div.proof').map(e => [...e.classList]),
    exercises: q('div.exercise').length,
    solutions: q('div.solution').map(e => ({
      dropdown: e.classList.contains('dropdown'),
      toggle: e.querySelector('button.toggle-button') !== null,
    })),
    // the page's text outside math and code, hidden parts (collapsed solutions)
    // included
    prose: (() => {
      const body = document.body.cloneNode(true);
      body.querySelectorAll('mjx-container, script, style, pre, code, kbd, samp, '
                            + 'textarea, noscript, svg').forEach(e => e.remove());
      return body.textContent;
    })(),
    figures: q('article figure img, article div.cell_output img').map(i => ({
      src: i.getAttribute('src'), alt: i.getAttribute('alt') || '',
      natural: i.naturalWidth, shown: i.getBoundingClientRect().width,
      design: parseFloat(i.style.width) || i.naturalWidth / 2,
      aspect: i.naturalWidth / Math.max(i.naturalHeight, 1),
    })),
    // code cells and their outputs cut at the box's right edge (scroll bar needed)
    cutCode: q('div.cell pre').filter(p => p.scrollWidth > p.clientWidth + 1)
                              .map(p => p.textContent.split('\\n').reduce(
                                (a, l) => l.length > a.length ? l : a, '')),
    viewport: window.innerWidth,
    pageWidth: Math.max(document.documentElement.scrollWidth,
                        document.body.scrollWidth),
    // elements reaching past the viewport with no sideways-scrolling box around them
    offscreen: (() => {
      const vw = document.documentElement.clientWidth;
      const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
      const out = [];
      for (const el of q('article.bd-article *')) {
        if (el.closest('mjx-container') && el.tagName !== 'MJX-CONTAINER') continue;
        const r = el.getBoundingClientRect();
        if (r.width === 0 || (r.right <= vw + 1 && r.left >= -1)) continue;
        let a = el.parentElement, inBox = false;
        while (a && a !== document.body) {
          if (scrolls(a)) {
            const ra = a.getBoundingClientRect();
            inBox = ra.right <= vw + 1 && ra.left >= -1;
            break;
          }
          a = a.parentElement;
        }
        if (!inBox) out.push(`<${el.tagName.toLowerCase()} `
                             + `class="${el.className.baseVal ?? el.className}"> `
                             + `${(el.textContent || '').trim().slice(0, 60)} `
                             + `(right edge ${Math.round(r.right)} px)`);
        if (out.length >= 5) break;
      }
      return out;
    })(),
    // numbered display equations: the number inside the viewport, clear of the
    // formula, and a formula wider than its box scrolls inside it
    equations: q('div.math').filter(d => d.querySelector(':scope > mjx-container'))
                            .map(d => {
      const m = d.querySelector(':scope > mjx-container');
      const n = d.querySelector(':scope > span.eqno');
      const rm = m.getBoundingClientRect(), rn = n ? n.getBoundingClientRect() : null;
      const vw = document.documentElement.clientWidth;
      return {
        id: d.id,
        wide: m.scrollWidth > m.clientWidth + 1,
        scrolls: ['auto', 'scroll'].includes(getComputedStyle(m).overflowX),
        inside: rm.left >= -1 && rm.right <= vw + 1,
        numberVisible: !rn || (rn.width > 0 && rn.left >= -1 && rn.right <= vw + 1),
        numberClear: !rn || rn.left >= rm.right - 1 || rn.right <= rm.left + 1,
      };
    }),
  };
}
"""

# Raw MyST or LaTeX that reached the reader: a role or directive that was not parsed,
# math that was not typeset (its delimiters or commands left in the text).
RAW_MARKUP = re.compile(r"\$|\\frac|\\[a-zA-Z]+\{|\\\(|\\\[|:::|\{cite|\{prf:"
                        r"|\{(?:eq|numref|term|ref|doc|math|glue(?::[a-z]+)?)\}")
MATHJAX_ERROR_TEXT = re.compile(r"Math input error|Undefined control sequence"
                                r"|Missing (?:open|close) brace")
# an alt text that is a file name or path (Sphinx's default when none is given)
PATH_ALT = re.compile(r"(^|/)[^\s/]+\.(png|jpe?g|svg|gif|pdf)$|^\.{0,2}/|_images/",
                      re.I)


def markup_problems(report: dict) -> list[str]:
    """Raw markup and MathJax error messages in the page's text outside math and
    code."""
    text = report["prose"]
    found = []
    for rx, what in ((RAW_MARKUP, "raw markup"),
                     (MATHJAX_ERROR_TEXT, "MathJax error text")):
        for m in list(rx.finditer(text))[:5]:
            context = " ".join(text[max(0, m.start() - 50):m.end() + 30].split())
            found.append(f"{what} {m.group(0)!r} in the text: ...{context}...")
    return found

PRF_KINDS = {"theorem", "lemma", "proposition", "definition", "corollary", "algorithm",
             "remark", "conjecture", "criterion", "example", "property", "observation",
             "assumption", "notation", "axiom"}


class PageSession:
    """A browser page that records console errors, failed requests and any request that
    would leave ``allowed`` (a URL prefix)."""

    def __init__(self, browser, allowed: str, width: int = 1280):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.external: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"console: {m.text} ({m.location.get('url', '')})"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed",
                     lambda r: r.url.startswith(allowed) and self.failed.append(
            f"{r.url}: {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.url}: HTTP {r.status}"))

        def refuse(route):
            self.external.append(route.request.url)
            route.abort()

        # only requests that would leave `allowed` are intercepted (and refused)
        local = "|".join(re.escape(p) for p in (allowed, "data:", "blob:", "about:"))
        self.context.route(re.compile(f"^(?!{local})"), refuse)

    def open(self, url: str) -> dict:
        self.page.goto(url, wait_until="load")
        return self.report()

    def report(self) -> dict:
        """Wait for MathJax to finish typesetting, then gather the page report."""
        # MathJax's script is deferred: after the load event it has run, if it could be
        # loaded at all (if not, the report shows the failed request and no typeset
        # math).
        self.page.evaluate("""() => (window.MathJax && MathJax.startup
                                      && MathJax.startup.promise)
                                     ? MathJax.startup.promise.then(() => true)
                                     : false""")
        return self.page.evaluate(PAGE_REPORT_JS)

    def close(self) -> None:
        self.context.close()


class LinkChecker:
    """HTTP status and element ids of local pages, fetched once each."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[int, set[str]]] = {}

    def get(self, url: str) -> tuple[int, set[str]]:
        if url not in self.cache:
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    status, body = resp.status, resp.read()
            except urllib.error.HTTPError as err:
                status, body = err.code, b""
            ids: set[str] = set()
            if url.endswith((".html", "/")):
                text = body.decode("utf-8", "replace")
                ids = set(re.findall(r'\bid="([^"]+)"', text)) | set(
                    re.findall(r'<a\b[^>]*\bname="([^"]+)"', text))
            self.cache[url] = (status, ids)
        return self.cache[url]


@pytest.fixture(scope="module")
def links() -> LinkChecker:
    return LinkChecker()


def _launch_urls(doc: str) -> list[str]:
    repo = CONFIG["repository"]["url"].rstrip("/")
    branch = CONFIG["repository"].get("branch", "main")
    org_repo = "/".join(repo.split("/")[-2:])
    launch = CONFIG["launch_buttons"]
    ui = {"classic": "tree",
          "jupyterlab": "lab/tree"}[launch.get("notebook_interface", "classic")]
    # they open the plain-Jupyter copy of the chapter (book/_ext/plain_notebooks.py)
    plain = f"book/notebooks/{doc.rsplit('/', 1)[-1]}.ipynb"
    assert (ROOT / plain).is_file(), f"{plain} is missing: run `make plain-notebooks`"
    return [
        f"{launch['colab_url'].rstrip('/')}/github/{org_repo}/blob/{branch}/{plain}",
        f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org_repo}/{branch}"
        f"?urlpath={ui}/{plain}",
    ]


# --------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("doc", PAGES)
def test_page(doc: str, browser, server: str, site: pathlib.Path,
              screenshots: pathlib.Path, links: LinkChecker):
    html = site / f"{doc}.html"
    assert html.is_file(), f"{doc} is in _toc.yml but {html} was not built"
    url = f"{server}{doc}.html"
    session = PageSession(browser, allowed=server)
    try:
        report = session.open(url)
        session.page.screenshot(path=str(screenshots / f"{doc.replace('/', '_')}.png"),
                                full_page=FULL_PAGE)
    finally:
        session.close()
    problems: list[str] = []

    # loading
    problems += session.errors
    problems += [f"failed request {f}" for f in session.failed]
    problems += [f"request leaving the machine: {u}" for u in session.external]

    # code: lines of at most 88 characters fit the code box at desktop width
    problems += [f"code cut off at the right edge of its box: {line[:60]!r}..."
                 for line in report["cutCode"][:5]]

    # math
    prose = markdown_text(doc)
    for src in report["mathjaxScripts"]:
        if src.startswith(("http:", "https:", "//")) or "_static/mathjax/" not in src:
            problems.append(f"MathJax is not loaded from the build: {src}")
    if MATH.search(prose) and report["mjx"] == 0:
        problems.append("the source has math but the page shows no typeset math "
                        "(mjx-container)")
    if report["mathElements"] and not report["mathjaxScripts"]:
        problems.append("math on the page but no MathJax script")
    problems += [f"math not typeset: {t!r}" for t in report["unrendered"][:5]]
    problems += [f"MathJax error: {t!r}" for t in report["merrors"]]
    problems += markup_problems(report)

    # figures: real alt text, not the image's path
    problems += [f"figure {f['src']} has no alt text saying what it shows "
                 f"(alt={f['alt']!r})"
                 for f in report["figures"]
                 if not f["alt"].strip() or PATH_ALT.search(f["alt"])]
    # ... and sharp: at least 2 image pixels per CSS pixel as shown (a 2x "retina" PNG)
    problems += [f"figure {f['src']} is shown at {f['shown']:.0f} px from "
                 f"{f['natural']} px: {f['natural'] / f['shown']:.2f}x, not 2x"
                 for f in report["figures"]
                 if f["shown"] > 0 and f["natural"] < 1.99 * f["shown"]]

    # images
    problems += [f"image did not load: {src}" for src in report["brokenImages"]]

    # links and anchors
    page_url = url
    own_ids = set(report["ids"])
    for href in sorted(set(report["links"])):
        if not href.startswith(server):
            continue
        target, _, frag = href.partition("#")
        frag = urllib.parse.unquote(frag)
        if target == page_url:
            if frag and frag not in own_ids:
                problems.append(f"anchor #{frag} missing on this page")
            continue
        status, ids = links.get(target)
        if status != 200:
            problems.append(f"broken link {href} (HTTP {status})")
        elif frag and target.endswith(".html") and frag not in ids:
            problems.append(f"broken anchor {href}")

    # theorem-like blocks, exercises, solutions
    expected = expected_blocks(doc)
    rendered = collections.Counter(
        "prf:" + next((c for c in classes if c in PRF_KINDS), "proof")
        for classes in report["proofs"])
    for kind in sorted(k for k in set(expected) | set(rendered)
                       if k.startswith("prf:")):
        if expected[kind] != rendered[kind]:
            problems.append(f"{kind}: {expected[kind]} in the source, {rendered[kind]} "
                            "rendered")
    if expected["exercise"] != report["exercises"]:
        problems.append(f"exercise: {expected['exercise']} in the source, "
                        f"{report['exercises']} rendered")
    if expected["solution"] != len(report["solutions"]):
        problems.append(f"solution: {expected['solution']} in the source, "
                        f"{len(report['solutions'])} rendered")
    problems += ["a dropdown solution has no toggle button"
                 for s in report["solutions"] if s["dropdown"] and not s["toggle"]]

    # launch and download buttons on notebook pages
    if is_notebook_page(doc):
        hrefs = set(report["links"])
        problems += [f"no launch link {u}" for u in _launch_urls(doc) if u not in hrefs]
        if f"{server}notebooks/{doc.rsplit('/', 1)[-1]}.ipynb" not in hrefs:
            problems.append("no .ipynb download link to the plain notebook")

    assert not problems, f"{doc}:\n  " + "\n  ".join(problems)


PHONE_WIDTH = 390


@pytest.mark.parametrize("doc", PAGES)
def test_page_on_a_phone(doc: str, browser, server: str, screenshots: pathlib.Path):
    """At 390 px: no raw markup or MathJax error, nothing makes the page scroll sideways
    or is cut off at the right edge, and every numbered display equation stays in view
    with its number beside it (a formula wider than the screen scrolls inside its own
    box)."""
    session = PageSession(browser, allowed=server, width=PHONE_WIDTH)
    try:
        report = session.open(f"{server}{doc}.html")
        shot = screenshots / f"{doc.replace('/', '_')}-{PHONE_WIDTH}px.png"
        session.page.screenshot(path=str(shot), full_page=FULL_PAGE)
    finally:
        session.close()
    problems = list(session.errors)
    problems += [f"MathJax error: {t!r}" for t in report["merrors"]]
    problems += markup_problems(report)
    if report["pageWidth"] > report["viewport"] + 1:
        problems.append(f"the page scrolls sideways: {report['pageWidth']} px wide "
                        f"in a {report['viewport']} px window")
    problems += [f"cut off at the right edge: {e}" for e in report["offscreen"]]
    problems += [f"multi-panel figure {f['src']} shrunk to {f['shown']:.0f} px of its "
                 f"{f['design']:.0f} px (its text would be below 11 px)"
                 for f in report["figures"]
                 if f["aspect"] > 2 and f["shown"] < f["design"] - 1]
    for eq in report["equations"]:
        where = f"equation #{eq['id'] or '(unnumbered)'}"
        if eq["wide"] and not eq["scrolls"]:
            problems.append(f"{where} is wider than its box and does not scroll inside "
                            "it")
        if not eq["inside"]:
            problems.append(f"{where} reaches outside the screen")
        if not eq["numberVisible"]:
            problems.append(f"{where}: its number is outside the screen")
        if not eq["numberClear"]:
            problems.append(f"{where}: its number covers the formula")
    assert not problems, f"{doc} at {PHONE_WIDTH} px:\n  " + "\n  ".join(problems)


def _first_page_with_solutions() -> str:
    return next(doc for doc in PAGES if expected_blocks(doc)["solution"])


PRINT_REPORT_JS = """
() => {
  const q = s => [...document.querySelectorAll(s)];
  const shown = e => { const s = getComputedStyle(e);
                       return s.visibility !== 'hidden' && s.display !== 'none'
                              && e.getBoundingClientRect().height > 0; };
  return {
    pre: q('article pre').map(p => ({
      wraps: ['pre-wrap', 'break-spaces'].includes(getComputedStyle(p).whiteSpace),
      cut: p.scrollWidth > p.clientWidth + 1, text: p.textContent.slice(0, 60),
    })),
    solutions: q('div.solution').map(s => ({
      id: s.id,
      hidden: [...s.children].filter(c => !c.classList.contains('admonition-title'))
                             .filter(c => !shown(c)).length,
      buttons: [...s.querySelectorAll('button.toggle-button')].filter(shown).length,
    })),
  };
}
"""


def test_print_layout(browser, server: str):
    """In print: code and outputs wrap at the margin, collapsed solutions are
    expanded."""
    doc = _first_page_with_solutions()
    session = PageSession(browser, allowed=server)
    try:
        session.open(f"{server}{doc}.html")
        session.page.emulate_media(media="print")
        report = session.page.evaluate(PRINT_REPORT_JS)
    finally:
        session.close()
    assert report["pre"] and report["solutions"], doc
    problems = [f"code block does not wrap in print: {p['text']!r}"
                for p in report["pre"] if not p["wraps"] or p["cut"]]
    problems += [f"solution {s['id']}: {s['hidden']} part(s) still collapsed in print"
                 for s in report["solutions"] if s["hidden"]]
    problems += [f"solution {s['id']}: toggle button printed"
                 for s in report["solutions"] if s["buttons"]]
    assert not problems, f"{doc}:\n  " + "\n  ".join(problems)


def _first_page_with_equation_refs() -> str:
    for doc in PAGES:
        if "{eq}`" in markdown_text(doc):
            return doc
    return PAGES[0]


@pytest.mark.parametrize("start",
                         ["index.html", f"{_first_page_with_equation_refs()}.html"])
def test_offline_from_disk(start: str, browser, site: pathlib.Path):
    """Opened with file:// and every network request refused, math still renders."""
    session = PageSession(browser, allowed="file://")
    try:
        session.page.goto((site / start).as_uri(), wait_until="load")
        if start == "index.html":          # a redirect to the root page
            session.page.wait_for_url(re.compile(r".*/book/[^/]*\.html$"),
                                      wait_until="load")
        report = session.report()
        session_url = session.page.url
    finally:
        session.close()
    assert not session.errors, session.errors
    assert not session.external, f"requests leaving the machine: {session.external}"
    assert not session.failed, session.failed
    assert report["mjx"] > 0, f"no typeset math on {start} opened from disk"
    assert not report["unrendered"], report["unrendered"][:5]
    assert not report["merrors"], report["merrors"]
    # numbered equations and their {eq} references
    page = session_url.split("#")[0]
    eq_links = [h for h in report["links"] if h.startswith(page + "#equation-")]
    doc = urllib.parse.unquote(page)[len(site.as_uri()) + 1:].removesuffix(".html")
    if doc in PAGES and "{eq}`" in markdown_text(doc):
        assert eq_links, f"{doc}: no equation reference links"
    missing = [h for h in eq_links
               if urllib.parse.unquote(h.split("#", 1)[1]) not in report["ids"]]
    assert not missing, f"equation references without target: {missing}"


# ------------------------------------------------------------------------- bibliography

CITATION_LINK = re.compile(r'<a class="reference internal" '
                           r'href="(?:bibliography\.html)?#(id\d+)" '
                           r'title="[^"]*">(.*?)</a>', re.S)
ENTRY = re.compile(r'<div class="citation" id="(id\d+)" role="doc-biblioentry">\s*'
                   r'<span class="label"><span class="fn-bracket">\[</span>(.*?)'
                   r'<span class="fn-bracket">\]</span></span>\s*<p>(.*?)</p>', re.S)


def _text(html_fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html_fragment).split())


def test_citations_match_bibliography_labels(site: pathlib.Path):
    """Each entry of the bibliography is labelled as the text cites it ("Jacot et al.,
    2018"; ``{cite:t}`` links the year alone) and links to the work (DOI, arXiv or URL);
    every citation links to an entry."""
    entries = {i: (_text(label), body) for i, label, body in
               ENTRY.findall((site / "book" / "bibliography.html").read_text())}
    assert entries, "no entries on the bibliography page"
    problems = [f"entry [{label}] has no DOI, arXiv or URL link"
                for label, body in entries.values()
                if not re.search(r'<a class="[^"]*reference external[^"]*" '
                                 r'href="https?://', body)]
    if len({label for label, _ in entries.values()}) != len(entries):
        problems.append("two bibliography entries share a label")
    cited = 0
    for doc in PAGES:
        if doc.endswith("bibliography"):
            continue
        for target, text in CITATION_LINK.findall((site / f"{doc}.html").read_text()):
            if target not in entries:
                continue            # an internal link to some other id
            cited += 1
            label = entries[target][0]
            text = _text(text)
            if text != label and text != label.rsplit(", ", 1)[1]:
                problems.append(f"{doc}: citation {text!r} links to the entry labelled "
                                f"[{label}]")
    assert cited, "no citation links to the bibliography"
    assert not problems, "\n  ".join(problems)


# ----------------------------------------------------------------------- hover previews

HOVER_TARGETS = {   # reference kind: a CSS selector for such references in the article
    "equation": 'a.reference.internal[href*="#equation-"]',
    "theorem": 'a.reference.internal[href*="#thm-"]',
    "figure": 'a.reference.internal[href*="#fig-"]',
    "citation": 'span.bibtex-citation a.reference.internal',
}


@pytest.mark.parametrize("kind", sorted(HOVER_TARGETS))
def test_hover_preview(kind: str, browser, server: str, screenshots: pathlib.Path):
    """Hovering a reference shows its target (sphinx-tippy) without leaving the page or
    the machine; math in the preview is typeset."""
    selector = f"article.bd-article {HOVER_TARGETS[kind]} >> visible=true"
    session = PageSession(browser, allowed=server)
    try:
        # the first chapter with one
        for doc in (d for d in PAGES if is_notebook_page(d)):
            session.open(f"{server}{doc}.html")
            if session.page.locator(selector).count():
                break
        else:
            pytest.fail(f"no chapter shows a {kind} reference")
        link = session.page.locator(selector).first
        link.scroll_into_view_if_needed()
        link.hover()
        tip = session.page.locator("[data-tippy-root] .tippy-content").first
        tip.wait_for(state="visible", timeout=10_000)
        session.page.wait_for_timeout(500)            # MathJax typesets the tip
        report = tip.evaluate("""t => ({
            text: t.textContent.trim().slice(0, 80),
            raw: /\\\\\\(|\\\\\\[/.test(t.textContent),
            merrors: t.querySelectorAll('mjx-merror').length,
        })""")
        session.page.screenshot(path=str(screenshots / f"hover-{kind}.png"))
    finally:
        session.close()
    assert report["text"], f"{doc}: empty {kind} preview"
    assert not report["raw"] and not report["merrors"], (f"{doc}: math not typeset in "
                                                         f"{report}")
    assert not session.errors and not session.external and not session.failed, (
        session.errors, session.external, session.failed)
