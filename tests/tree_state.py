"""Check that `make test` leaves every tracked file as it found it.

`python tests/tree_state.py save` records the state of tracked files before the tests;
`python tests/tree_state.py check` fails if any tracked file changed since then.
Outside a git checkout both commands do nothing.
"""
from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys

STATE = pathlib.Path("_build/.tree_state")


def snapshot() -> str | None:
    try:
        files = subprocess.run(["git", "ls-files", "-z"], check=True,
                               capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    digest = hashlib.sha256()
    for name in sorted(f for f in files.decode().split("\0") if f):
        p = pathlib.Path(name)
        digest.update(name.encode())
        digest.update(p.read_bytes() if p.is_file() else b"<missing>")
    return digest.hexdigest()


def main(cmd: str) -> int:
    state = snapshot()
    if state is None:
        return 0
    if cmd == "save":
        STATE.parent.mkdir(exist_ok=True)
        STATE.write_text(state)
        return 0
    if not STATE.exists():
        print("tree_state: no saved state; run `save` first", file=sys.stderr)
        return 1
    if STATE.read_text() != state:
        changed = subprocess.run(["git", "status", "--porcelain",
                                  "--untracked-files=no"],
                                 capture_output=True, text=True).stdout
        print("`make test` changed tracked files:\n" + changed, file=sys.stderr)
        return 1
    print("tracked files unchanged by the test run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "check"))
