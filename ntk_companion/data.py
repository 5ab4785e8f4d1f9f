"""Small deterministic data sets for the course (seeded; float64 when x64 is enabled).

* :func:`unit_circle` / :func:`circle_points`: inputs ``x = (cos a, sin a)`` on the unit
  circle, where the NTK of a network depends only on the angle between inputs.
* :func:`regression_1d`: a 1-D regression problem ``y = g(x) + noise * N(0, 1)`` on
  ``x ~ Uniform[-1, 1]`` with a named target ``g`` (:func:`target_fn`).
* :func:`gaussian_inputs`: standard normal inputs in ``R^d``, optionally normalized to
  ``||x|| = sqrt(d)`` so that the input kernel ``x . x' / d`` of the analytic NTK
  recursion is 1 on the diagonal.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (as_array, check_finite, check_int, check_rank, check_scalar,
                          is_concrete, named_or_callable)

__all__ = ["unit_circle", "circle_points", "regression_1d", "target_fn",
           "gaussian_inputs"]

Target = Union[str, Callable[[jax.Array], jax.Array]]


def _float() -> Any:
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_key(key: Any) -> None:
    dtype = getattr(key, "dtype", None)
    ok = dtype is not None and (
        (jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(key) == 0)
        or (dtype == jnp.uint32 and jnp.shape(key) == (2,)))
    if not ok:
        raise TypeError(f"key must be a jax.random key (jax.random.key(seed) or "
                        f"jax.random.PRNGKey(seed)), got {type(key).__name__}")


def circle_points(angles: Any) -> jax.Array:
    """Points ``(cos a_i, sin a_i)`` on the unit circle, shape ``(n, 2)``, for 1-D
    ``angles``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> ntk.circle_points(jnp.array([0.0])).tolist()
    [[1.0, 0.0]]
    """
    a = as_array(angles, "angles")
    check_rank(a, "angles", 1)
    check_finite(a, "angles")
    return jnp.stack([jnp.cos(a), jnp.sin(a)], axis=1)


def unit_circle(n: int, *, start: float = 0.0, stop: float = 2 * math.pi
                ) -> tuple[jax.Array, jax.Array]:
    """``n`` equally spaced points on the unit circle.

    The angles are ``a_i = start + (stop - start) i / n``, ``i = 0..n-1`` (``stop``
    excluded, so the default full turn has no duplicate point).

    Returns:
        ``(x, angles)`` with ``x`` of shape ``(n, 2)`` (see :func:`circle_points`) and
        ``angles`` of shape ``(n,)``.

    >>> import ntk_companion as ntk
    >>> x, angles = ntk.unit_circle(4)
    >>> x.shape, angles.shape
    ((4, 2), (4,))
    """
    n = check_int(n, "n", minimum=1)
    start = check_scalar(start, "start")
    stop = check_scalar(stop, "stop")
    if not stop > start:
        raise ValueError(f"stop must be greater than start, got start={start}, "
                         f"stop={stop}")
    angles = start + (stop - start) * jnp.arange(n, dtype=_float()) / n
    return circle_points(angles), angles


_TARGETS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sin": lambda x: jnp.sin(math.pi * x),          # one period on [-1, 1]
    "sin3": lambda x: jnp.sin(3 * math.pi * x),     # three periods: harder, higher
                                                    # frequency
    "cubic": lambda x: x ** 3 - 0.5 * x,
    "abs": lambda x: jnp.abs(x),                    # kink at 0
    "step": lambda x: jnp.sign(x),                  # discontinuous at 0
}


def target_fn(target: Target) -> Callable[[jax.Array], jax.Array]:
    """The target function ``g`` of :func:`regression_1d`, elementwise on arrays.

    Names: ``"sin"`` (sin(pi x)), ``"sin3"`` (sin(3 pi x)), ``"cubic"`` (x^3 - x/2),
    ``"abs"`` (abs(x)), ``"step"`` (sign(x)). A callable is returned unchanged.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> float(ntk.target_fn(jnp.square)(jnp.array(3.0)))
    9.0
    """
    return named_or_callable(target, "target", _TARGETS)


def regression_1d(key: jax.Array, n: int, *, noise: float = 0.0, target: Target = "sin"
                  ) -> tuple[jax.Array, jax.Array]:
    """A 1-D regression data set: ``x_i ~ Uniform[-1, 1]`` (sorted increasingly) and
    ``y_i = g(x_i) + noise * eps_i`` with ``eps_i ~ N(0, 1)`` and
    ``g = target_fn(target)``.

    Returns:
        ``(x, y)`` with ``x`` of shape ``(n, 1)`` and ``y`` of shape ``(n,)``.

    >>> import jax
    >>> import ntk_companion as ntk
    >>> x, y = ntk.regression_1d(jax.random.PRNGKey(0), 5)
    >>> x.shape, y.shape
    ((5, 1), (5,))
    """
    _check_key(key)
    n = check_int(n, "n", minimum=1)
    noise = check_scalar(noise, "noise", nonnegative=True)
    g = target_fn(target)
    kx, ke = jax.random.split(key)
    x = jnp.sort(jax.random.uniform(kx, (n,), _float(), minval=-1.0, maxval=1.0))
    gx = g(x)
    if jnp.shape(gx) != x.shape:
        raise ValueError(f"target must map the inputs elementwise (shape {x.shape}), "
                         f"got shape {jnp.shape(gx)}")
    if is_concrete(gx) and not bool(np.all(np.isfinite(np.asarray(gx)))):
        raise ValueError("target returned NaN or infinite values on [-1, 1] (e.g. "
                         "jnp.log of a negative input): pass a target defined on all "
                         "of [-1, 1]")
    y = gx + noise * jax.random.normal(ke, (n,), _float())
    return x[:, None], y


def gaussian_inputs(key: jax.Array, n: int, d: int, *,
                    normalize: bool = False) -> jax.Array:
    """``n`` inputs in ``R^d`` with i.i.d. N(0, 1) entries, shape ``(n, d)``.

    With ``normalize=True`` every row is rescaled to norm ``sqrt(d)`` (uniform on the
    sphere of radius ``sqrt(d)``), so ``x . x / d = 1``: the input kernel of the NTK
    recursion has unit diagonal and the kernels depend only on the angles between
    inputs.

    >>> import jax, jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x = ntk.gaussian_inputs(jax.random.PRNGKey(0), 3, 5, normalize=True)
    >>> [round(float(v), 6) for v in jnp.sum(x * x, axis=1) / 5]
    [1.0, 1.0, 1.0]
    """
    _check_key(key)
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    x = jax.random.normal(key, (n, d), _float())
    if normalize:
        x = x * (math.sqrt(d) / jnp.linalg.norm(x, axis=1, keepdims=True))
    return x
