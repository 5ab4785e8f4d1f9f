"""Remove run-dependent metadata from executed notebooks so stored outputs diff cleanly.

Usage: python tests/strip_metadata.py book/NN_name.ipynb [...]

Drops per-cell execution timestamps and widget state and numbers the cell ids; keeps
outputs, which are the reference that nbval compares.
"""
from __future__ import annotations

import sys

import nbformat


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        # stable ids keep diffs of re-executed notebooks small
        cell.id = f"cell-{i:03d}"
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
