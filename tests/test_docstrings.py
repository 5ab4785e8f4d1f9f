"""The examples in the package's docstrings (``>>>``) run and print what they show.

Each module of ``ntk_companion`` is run through :mod:`doctest` in float64 (the test
configuration), so ``make test`` executes every docstring example."""
import doctest
import importlib
import pkgutil

import pytest

import ntk_companion

MODULES = sorted(info.name for info in pkgutil.iter_modules(ntk_companion.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"ntk_companion.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
