"""Print the one-page HTML build of the book to a PDF with headless Chromium
(``make pdf``).

Usage: ``python tools/book_pdf.py SITE OUTPUT.pdf`` where SITE is the output folder of
``jupyter-book build . --builder singlehtml`` (``_build/singlehtml``).

The page is served on localhost and opened in Debian's Chromium (``CHROMIUM``, default
``/usr/bin/chromium``) through Playwright, with every request that would leave the
machine refused, so the PDF is built offline like the book. Before printing, the script
waits until MathJax has typeset the page and every image has loaded, and fails if math
is left untypeset or MathJax reports an error. The print layout is the book's own print
CSS (``book/_static/ntk-book.css``): code and outputs wrap at the margin, collapsed
solutions and hidden code cells are expanded, buttons are left out. A4 pages carry the
book title and a page number.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import pathlib
import re
import sys
import threading
import time

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 300_000

READY_JS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const q = s => [...document.querySelectorAll(s)];
  await Promise.all(q('img').map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r);
  })));
  return {
    math: q('.math').length,
    untypeset: q('.math').filter(e => !e.querySelector('mjx-container')).length,
    merrors: q('mjx-merror').length,
    brokenImages: q('img').filter(i => !(i.complete && i.naturalWidth > 0))
                          .map(i => i.getAttribute('src')),
    solutions: q('div.solution').length,
  };
}
"""

FOOTER = ('<div style="width:100%; font-size:8px; color:#555; padding:0 15mm; '
          'display:flex; justify-content:space-between; font-family:sans-serif">'
          '<span>{title}</span><span><span class="pageNumber"></span> / '
          '<span class="totalPages"></span></span></div>')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def find_page(site: pathlib.Path) -> pathlib.Path:
    """The one HTML page of a singlehtml build, at the top of ``site``.

    ``index.html`` redirects to the page, ``book/intro.html`` here, whose links to
    ``_static/`` and ``_images/`` are written relative to the top folder: the page is
    copied there (as ``book.html``) so that they resolve."""
    index = site / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"no book at {site}: run the singlehtml build first")
    m = re.search(r'url=([^"\']+)', index.read_text())
    if not m:
        return index
    top = site / "book.html"
    top.write_text((site / m.group(1)).read_text())
    return top


def print_pdf(site: pathlib.Path, output: pathlib.Path) -> dict:
    """Print the book at ``site`` to ``output``; returns the page report and the
    time."""
    from playwright.sync_api import sync_playwright

    page_path = find_page(site)
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    url = base + page_path.relative_to(site).as_posix()
    external: list[str] = []
    start = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--disable-gpu", "--no-first-run"])
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})

                def refuse(route):
                    external.append(route.request.url)
                    route.abort()

                local = "|".join(re.escape(s)
                                 for s in (base, "data:", "blob:", "about:"))
                context.route(re.compile(f"^(?!{local})"), refuse)
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url, wait_until="load")
                report = page.evaluate(READY_JS)
                # hidden code (myst-nb's hide-input, hide-output) is printed expanded
                page.evaluate("() => document.querySelectorAll('details')"
                              ".forEach(d => { d.open = true; })")
                page.emulate_media(media="print")
                title = page.title().split(" — ")[-1].replace("<", "&lt;")
                output.parent.mkdir(parents=True, exist_ok=True)
                page.pdf(path=str(output), format="A4", print_background=True,
                         margin={"top": "15mm", "bottom": "18mm", "left": "15mm",
                                 "right": "15mm"},
                         display_header_footer=True, header_template="<span></span>",
                         footer_template=FOOTER.format(title=title))
            finally:
                browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    report["seconds"] = time.perf_counter() - start
    report["external"] = external
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=pathlib.Path, help="singlehtml output folder")
    parser.add_argument("output", type=pathlib.Path, help="the PDF to write")
    args = parser.parse_args(argv)
    report = print_pdf(args.site, args.output)
    problems = []
    if report["untypeset"] or report["merrors"]:
        problems.append(f"{report['untypeset']} math elements not typeset, "
                        f"{report['merrors']} MathJax errors")
    if report["brokenImages"]:
        problems.append(f"images did not load: {report['brokenImages'][:5]}")
    if report["external"]:
        problems.append(f"requests leaving the machine: {report['external'][:5]}")
    print(f"{args.output}: {report['math']} formulas, {report['solutions']} solutions, "
          f"printed in {report['seconds']:.0f} s")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
