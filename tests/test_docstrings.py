"""The examples in the package's docstrings (``>>>``) run and print what they show.

Each module of ``ntk_companion`` is run through :mod:`doctest` in float64 (the test
configuration), so ``make test`` executes every docstring example."""
import doctest
import importlib
import inspect
import pkgutil

import pytest

import ntk_companion

MODULES = sorted(info.name for info in pkgutil.iter_modules(ntk_companion.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"ntk_companion.{name}")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


# Names of ``ntk_companion.__all__`` that are not functions or classes, so they carry no
# example of their own: modules (their public functions are checked below) and constants
# (a tuple and numbers: their docstring would be that of ``tuple``/``int``/``float``).
NO_EXAMPLE = {
    "plotting": "module; its functions are checked through MODULE_PUBLIC",
    "sharding": "module; its functions are checked through MODULE_PUBLIC",
    "parameterizations": "module; its functions are checked through MODULE_PUBLIC",
    "COLORS": "constant (tuple of colours), documented in ntk_companion.plotting",
    "COLUMN_WIDTH_PX": "constant (int), documented in ntk_companion.plotting",
    "MAX_FIGURE_WIDTH_IN": "constant (float), documented in ntk_companion.plotting",
}

# Public functions of the modules exported as modules. ``sharding.__all__`` is empty on
# purpose (nothing for the top-level namespace), so its public functions are listed
# here; ``shard_rows``, ``gather`` and ``by_rows`` are the machinery of ``empirical``
# and ``analytic``, not part of the API.
MODULE_PUBLIC = {
    "plotting": ("use_style", "loglog_with_fit"),
    "sharding": ("devices", "use_devices", "row_mesh", "global_inputs"),
    "parameterizations": tuple(ntk_companion.parameterizations.__all__),
}


def _public_objects():
    for name in ntk_companion.__all__:
        if name in NO_EXAMPLE:
            continue
        yield name, getattr(ntk_companion, name)
    for module, names in MODULE_PUBLIC.items():
        for name in names:
            yield f"{module}.{name}", getattr(getattr(ntk_companion, module), name)


def test_every_public_name_has_an_example():
    missing, not_callable = [], []
    for name, obj in _public_objects():
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            not_callable.append(name)
        elif ">>>" not in (obj.__doc__ or ""):
            missing.append(name)
    assert not not_callable, ("not a function or class, exempt it in NO_EXAMPLE with "
                              f"a reason: {not_callable}")
    assert not missing, f"docstring without a >>> example: {missing}"


def test_exemptions_are_current():
    public = set(ntk_companion.__all__)
    assert set(NO_EXAMPLE) <= public, sorted(set(NO_EXAMPLE) - public)
    for name in NO_EXAMPLE:
        obj = getattr(ntk_companion, name)
        assert not (inspect.isfunction(obj) or inspect.isclass(obj)), name
    for module in MODULE_PUBLIC:
        assert module in NO_EXAMPLE, module
