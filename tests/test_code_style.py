"""Code lines of at most 88 characters (the rule the chapters' cells follow too).

Checked on every file git tracks in the package, the tests, the benchmarks, the tools
and the CI script: the ``.py`` files, the shell scripts (``.sh`` or a shell shebang)
and the top-level ``Makefile``. Outside a git checkout (an unpacked sdist) the same
folders are walked instead.
"""
from __future__ import annotations

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINE = 88
FOLDERS = ("ntk_companion", "tests", "benchmarks", "tools", ".ci")
SHOWN = 20          # offenders listed in a failure message


def _tracked() -> list[pathlib.Path]:
    """Files under ``FOLDERS`` that git tracks (every file there without git)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *FOLDERS], cwd=ROOT,
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    return sorted(ROOT / name for name in out.decode().split("\0") if name)


def _is_shell_script(path: pathlib.Path) -> bool:
    if path.suffix == ".sh":
        return True
    if path.suffix:
        return False
    with path.open("rb") as f:
        first = f.readline(200)
    return first.startswith(b"#!") and first.rstrip().endswith((b"sh", b"bash"))


def long_lines(paths: list[pathlib.Path], root: pathlib.Path = ROOT) -> list[str]:
    """``path:line (length)`` of every line longer than ``MAX_LINE`` characters."""
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.split("\n"), start=1):
            length = len(line.rstrip("\r"))
            if length > MAX_LINE:
                found.append(f"{path.relative_to(root)}:{number} ({length})")
    return found


def _report(found: list[str]) -> str:
    more = f"\n  ... and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return (f"{len(found)} lines longer than {MAX_LINE} characters; wrap them "
            f"(first offenders):\n  " + "\n  ".join(found[:SHOWN]) + more)


FILES = [p for p in _tracked() if p.is_file()]


def test_files_are_found():
    assert any(p.suffix == ".py" for p in FILES), FOLDERS
    assert (ROOT / "Makefile").is_file()


@pytest.mark.parametrize("kind", ["python", "shell and Makefile"])
def test_lines_are_at_most_88_characters(kind: str):
    if kind == "python":
        paths = [p for p in FILES if p.suffix == ".py"]
    else:
        paths = [p for p in FILES if _is_shell_script(p)] + [ROOT / "Makefile"]
    found = long_lines(paths)
    if found:
        pytest.fail(_report(found), pytrace=False)


def test_the_check_sees_a_long_line(tmp_path: pathlib.Path):
    """The check reports a line of 89 characters (and not one of 88) with its place."""
    ok, bad = tmp_path / "ok.py", tmp_path / "bad.py"
    ok.write_text("x = 1\n" + "#" * MAX_LINE + "\n")
    bad.write_text("y = 2\n\n" + "#" * (MAX_LINE + 1) + "\n")
    assert long_lines([ok], tmp_path) == []
    assert long_lines([bad], tmp_path) == ["bad.py:3 (89)"]
