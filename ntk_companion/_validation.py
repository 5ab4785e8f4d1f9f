"""Input validation shared by every public function of ``ntk_companion``.

Each checker raises :class:`TypeError` (wrong kind of object) or :class:`ValueError`
(right kind, wrong shape or value) with a message that names the offending argument,
so that bad input never turns into silent garbage further down.

Under ``jax.jit`` (or ``vmap``, ``grad``) the arguments are tracers. The static parts of
every check (types, ranks, shapes, dtypes, integer and string options) still run, at
trace time, and raise as usual. The checks on *values* (NaN or infinite entries,
negative times, ``W_std <= 0``, an indefinite kernel, a singular system, ...) cannot
raise from inside a compiled program; they are staged as
``jax.experimental.checkify.check`` calls when
:class:`jit_checks` is on, and skipped otherwise:

.. code-block:: python

    from jax.experimental import checkify
    with ntk.jit_checks():                  # on while the function is traced
        err, out = checkify.checkify(jax.jit(f))(args)
    err.throw()                             # raises checkify.JaxRuntimeError naming the
                                            # argument, as the eager ValueError does

(Without ``checkify.checkify`` around the traced function, JAX refuses to stage a check:
switch the value checks on only together with it.)
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "jit_checks",
    "value_check",
    "is_concrete",
    "check_test_train",
    "as_array",
    "check_rank",
    "check_finite",
    "check_square",
    "check_symmetric",
    "check_time",
    "check_same_features",
    "check_callable",
    "check_int",
    "check_scalar",
    "check_choice",
    "check_batch",
    "check_params",
    "check_same_structure",
]


_JIT_CHECKS: list[bool] = [False]


class jit_checks:  # noqa: N801 (used like a function: ``with jit_checks():``)
    """Context manager: while it is active, the value checks of the package (NaN inputs,
    negative times or scales, indefinite or singular kernels, ...) on traced arguments
    are staged with ``jax.experimental.checkify.check``, so that a function transformed
    by ``checkify.checkify`` reports them (module docstring). Trace the function inside
    the block (a jitted function traced before keeps its cached program, without the
    checks). Nestable; ``jit_checks(False)`` switches them off inside an outer block.

    >>> import jax, jax.numpy as jnp
    >>> from jax.experimental import checkify
    >>> import ntk_companion as ntk
    >>> K, y = jnp.eye(2), jnp.ones(2)
    >>> with ntk.jit_checks():
    ...     f = jax.jit(lambda t: ntk.predict(K, y, t).train)
    ...     err, out = checkify.checkify(f)(-1.0)
    >>> print(err.get().split(" (`check`")[0])
    t must be non-negative (time runs forward)
    """

    def __init__(self, enabled: bool = True) -> None:
        if not isinstance(enabled, (bool, np.bool_)):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
        self.enabled = bool(enabled)

    def __enter__(self) -> "jit_checks":
        _JIT_CHECKS.append(self.enabled)
        return self

    def __exit__(self, *exc: Any) -> None:
        _JIT_CHECKS.pop()


def value_check(ok: Any, message: str, error: type = ValueError) -> None:
    """Raise ``error(message)`` if the concrete boolean ``ok`` is false; for a traced
    ``ok`` stage ``checkify.check(ok, message)`` when :class:`jit_checks` is on
    (else nothing)."""
    if is_concrete(ok):
        if not bool(np.all(np.asarray(ok))):
            raise error(message)
    elif _JIT_CHECKS[-1]:
        checkify.check(jnp.all(ok), message.replace("{", "{{").replace("}", "}}"))


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds actual values (not a tracer inside ``jit``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def as_array(x: Any, name: str, *, dtype: Any = None) -> jax.Array:
    """Convert ``x`` to a floating JAX array or raise ``TypeError`` naming ``name``."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    if not is_concrete(x):
        return x if dtype is None else x.astype(dtype)
    try:
        arr = jnp.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers, got "
                        f"{type(x).__name__}") from err
    if not (jnp.issubdtype(arr.dtype, jnp.floating)
            or jnp.issubdtype(arr.dtype, jnp.integer)
            or arr.dtype == jnp.bool_):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def check_rank(x: jax.Array, name: str, rank: int | tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``x.ndim`` is ``rank`` (or one of ``rank``)."""
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    if x.ndim not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{name} must be {want}, got an array of shape "
                         f"{tuple(x.shape)}")


def check_finite(x: jax.Array, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``x`` holds NaN or infinity."""
    # numpy, not jnp: inside a jit trace even an op on a concrete array returns a tracer
    if is_concrete(x):
        if not np.all(np.isfinite(np.asarray(x))):
            raise ValueError(f"{name} contains NaN or infinite values")
    else:
        value_check(jnp.all(jnp.isfinite(x)), f"{name} contains NaN or infinite values")


def check_square(x: jax.Array, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a square matrix."""
    check_rank(x, name, 2)
    if x.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape "
                         f"{tuple(x.shape)}")


def check_symmetric(x: jax.Array, name: str, *, rtol: float = 1e-6) -> None:
    """Raise ``ValueError`` unless the square matrix ``x`` is symmetric to ``rtol``."""
    check_square(x, name)
    if is_concrete(x):
        a = np.asarray(x)
        scale = max(float(np.max(np.abs(a))), np.finfo(a.dtype).tiny)
        if float(np.max(np.abs(a - a.T))) > rtol * scale:
            raise ValueError(f"{name} must be symmetric (a kernel Gram matrix); "
                             f"max |A - A^T| = {float(np.max(np.abs(a - a.T))):.3g}")
    else:
        value_check(jnp.max(jnp.abs(x - x.T)) <= rtol * jnp.max(jnp.abs(x)),
                    f"{name} must be symmetric (a kernel Gram matrix)")


def check_time(t: Any, name: str = "t") -> jax.Array:
    """Convert times to an array; raise ``ValueError`` for negative or NaN times.

    ``+inf`` is allowed (the end of training)."""
    arr = as_array(t, name)
    check_rank(arr, name, (0, 1))
    if is_concrete(arr):
        a = np.asarray(arr)
        if np.any(np.isnan(a)):
            raise ValueError(f"{name} contains NaN")
        if np.any(a < 0):
            raise ValueError(f"{name} must be non-negative (time runs forward), got "
                             f"min {float(np.min(a))}")
    else:
        value_check(~jnp.any(jnp.isnan(arr)), f"{name} contains NaN")
        value_check(jnp.all(arr >= 0), f"{name} must be non-negative (time runs "
                                       "forward)")
    return arr


def check_same_features(x1: jax.Array, x2: jax.Array, name1: str = "x1",
                        name2: str = "x2") -> None:
    """Raise ``ValueError`` unless two input batches have the same feature dimension."""
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"{name1} and {name2} must have the same feature shape, got "
                         f"{tuple(x1.shape[1:])} and {tuple(x2.shape[1:])}")


# --- checkers added for models / training / empirical
# kernels -------------------------------

def check_callable(fn: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``fn`` is callable."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def named_or_callable(value: Any, name: str, table: dict[str, Any]) -> Any:
    """``table[value]`` for a known name, ``value`` itself for a callable; otherwise a
    ``ValueError`` (unknown name) or ``TypeError`` naming the argument ``name`` and the
    known names."""
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"unknown {name} {value!r}; known {name}s are "
                             f"{sorted(table)} (or pass a callable)")
        return table[value]
    if callable(value):
        return value
    raise TypeError(f"{name} must be a name in {sorted(table)} or a callable, got "
                    f"{type(value).__name__}")


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python ``int``; ``TypeError`` if it is not an integer,
    ``ValueError`` if it is below ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_scalar(value: Any, name: str, *, positive: bool = False,
                 nonnegative: bool = False) -> Any:
    """Check a real scalar hyperparameter (finite; optionally > 0 or >= 0).

    Returns a Python ``float`` for concrete input and the tracer itself inside
    ``jit``."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not is_concrete(value):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape "
                             f"{tuple(jnp.shape(value))}")
        value_check(jnp.isfinite(value), f"{name} must be finite")
        if positive:
            value_check(value > 0, f"{name} must be > 0")
        if nonnegative:
            value_check(value >= 0, f"{name} must be >= 0")
        return value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number, got "
                        f"{type(value).__name__}") from err
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating)
            or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real number, got dtype {arr.dtype}")
    out = float(arr)
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    if positive and not out > 0:
        raise ValueError(f"{name} must be > 0, got {out}")
    if nonnegative and not out >= 0:
        raise ValueError(f"{name} must be >= 0, got {out}")
    return out


def check_choice(value: Any, name: str, choices: Any) -> str:
    """Raise ``ValueError`` (listing ``choices``) unless ``value`` is one of them."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {sorted(choices)}, "
                        f"got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value


def check_batch(x: jax.Array, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of inputs: a leading batch axis of
    length >= 1 followed by at least one feature axis, e.g. shape ``(n, d)``."""
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch of inputs of shape (n, d) (at least "
                         f"2-D), got an array of shape {tuple(x.shape)}; reshape a "
                         f"single input with x[None] or 1-D data with x[:, None]")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one input, got shape "
                         f"{tuple(x.shape)}")


def check_params(params: Any, name: str = "params") -> None:
    """Raise unless ``params`` is a non-empty pytree of floating arrays
    (finite when concrete)."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{name} must be a non-empty pytree of arrays, got {params!r}")
    for leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            if isinstance(leaf, (float, int)) and not isinstance(leaf, bool):
                continue
            raise TypeError(f"{name} must be a pytree of arrays, found a leaf of type "
                            f"{type(leaf).__name__}")
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{name} must hold floating-point arrays, found dtype "
                            f"{dtype}")
    for leaf in leaves:
        check_finite(leaf, name)


def check_same_structure(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two pytrees have the same structure and leaf
    shapes."""
    ta, tb = jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b)
    if ta != tb:
        raise ValueError(f"{name_a} and {name_b} must have the same pytree structure, "
                         f"got {ta} and {tb}")
    for la, lb in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if jnp.shape(la) != jnp.shape(lb):
            raise ValueError(f"{name_a} and {name_b} must have leaves of the same "
                             f"shapes, got {jnp.shape(la)} and {jnp.shape(lb)}")


def check_test_train(K_test_train: Any, n: int,
                     name: str = "K_test_train") -> jax.Array:
    """A finite 2-D kernel block between test and training inputs with ``n`` columns."""
    Ks = as_array(K_test_train, name)
    check_rank(Ks, name, 2)
    if Ks.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row (test input), got shape "
                         f"{tuple(Ks.shape)}")
    if Ks.shape[1] != n:
        raise ValueError(f"{name} must have {n} columns (one per training input, as "
                         f"K_train), got shape {tuple(Ks.shape)}")
    check_finite(Ks, name)
    return Ks
