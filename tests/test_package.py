"""The package namespace: every public name of every module is re-exported."""
import importlib
import pkgutil

import ntk_companion as ntk


def test_all_names_exist():
    for name in ntk.__all__:
        assert hasattr(ntk, name), name
    assert len(set(ntk.__all__)) == len(ntk.__all__)


def test_every_module_is_re_exported():
    for info in pkgutil.iter_modules(ntk.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"ntk_companion.{info.name}")
        missing = set(getattr(module, "__all__", [])) - set(ntk.__all__)
        assert not missing, (f"ntk_companion.{info.name}: {missing} not in "
                             "ntk_companion.__all__")


def test_docstring_states_conventions():
    doc = ntk.__doc__
    for phrase in ("dr/dt = -H r", "t = t_mean / (n k)", "W_std / sqrt(n_in)", "sum"):
        assert phrase in doc, phrase
