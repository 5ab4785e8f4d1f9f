"""Fixtures for the browser tests: the built book served on localhost, headless
Chromium.

These tests need a built book (``make book`` or ``make book-strict``) and Debian's
Chromium (``apt-get install chromium``). They are run by ``make browser-test``
(part of ``make test``) and are not collected by ``pytest tests`` (``norecursedirs`` in
pyproject.toml). When they are run, a missing book or browser is a failure, never a
skip.
"""
from __future__ import annotations

import functools
import http.server
import os
import pathlib
import shutil
import threading
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the built book
SITE = pathlib.Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags for a quiet, offline, throw-away browser; Playwright adds headless
# mode, --no-sandbox and a fresh temporary profile (--user-data-dir) itself.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def site() -> pathlib.Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built book at {SITE}: run `make book` (or `make book-strict`) "
                    "first")
    return SITE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def server(site: pathlib.Path) -> Iterator[str]:
    """Base URL (with a trailing slash) of ``_build/html`` served on a free localhost
    port."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium` "
                    "(or set CHROMIUM to a Chromium binary)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots() -> pathlib.Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
