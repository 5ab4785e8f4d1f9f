"""The chapters in JupyterLab, as a reader who runs them locally sees them
(``make lab``).

JupyterLab is started headless on a free loopback port with the settings of ``make lab``
(``book/_lab/overrides.json``: ``.md`` files open as notebooks through jupytext) plus
autosave off, so that opening a chapter can never rewrite it. A chapter source is opened
in headless Chromium; jupyterlab-myst must have rendered its theorem blocks, admonitions
and math: no raw ``{prf:theorem}``, ``:label:`` or ``$$`` text on the page. The server
is stopped afterwards.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHAPTER = "book/04_convergence.md"
TOKEN = "ntk-course-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    settings = tmp_path_factory.mktemp("lab-settings")
    overrides = json.loads((ROOT / "book" / "_lab" / "overrides.json").read_text())
    docmanager = overrides.setdefault("@jupyterlab/docmanager-extension:plugin", {})
    docmanager["autosave"] = False
    overrides["@jupyterlab/apputils-extension:notification"] = {
        "fetchNews": "false", "checkForUpdates": False}
    (settings / "overrides.json").write_text(json.dumps(overrides))
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
           f"--LabApp.app_settings_dir={settings}", f"--ServerApp.root_dir={ROOT}",
           "--ServerApp.open_browser=False", "--allow-root"]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(settings / "runtime"))
    log = (settings / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail("JupyterLab exited: "
                            f"{(settings / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode is not None


def test_chapter_renders_in_jupyterlab(lab: str, browser,
                                       screenshots: pathlib.Path) -> None:
    before = (ROOT / CHAPTER).read_bytes()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{lab}/lab/tree/{CHAPTER}?token={TOKEN}", timeout=120_000)
        # jupytext opens the .md as a notebook; jupyterlab-myst renders its Markdown
        # cells
        page.wait_for_selector(".jp-Notebook .myst-proof", timeout=120_000)
        page.wait_for_selector(".jp-Notebook .katex, .jp-Notebook mjx-container",
                               timeout=60_000)
        page.screenshot(path=str(screenshots / "jupyterlab-04_convergence.png"))
        proofs = page.locator(".jp-Notebook .myst-proof").count()
        titles = page.locator(".jp-Notebook .myst-proof-title").all_inner_texts()
        math = page.locator(".jp-Notebook .katex, .jp-Notebook mjx-container").count()
        text = page.inner_text(".jp-Notebook")
    finally:
        page.close()
    print(f"JupyterLab: {proofs} proof blocks, {math} typeset formulas")
    assert proofs >= 1 and any("Theorem" in t for t in titles), titles
    assert math >= 10, math
    for raw in ("{prf:theorem}", "{prf:proof}", ":label:", "$$", "{admonition}"):
        assert raw not in text, f"raw MyST {raw!r} shown in JupyterLab"
    assert (ROOT / CHAPTER).read_bytes() == before, ("opening the chapter changed its "
                                                     "source")
