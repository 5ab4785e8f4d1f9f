"""Square loss and residual (the sum convention of the course).

    r(theta) = f(X; theta) - y,        l(theta) = 1/2 sum_i r_i^2 = 1/2 ||r||^2.

The loss is a sum, not a mean: with it gradient flow gives ``dr/dt = -H r``. A library
that minimizes the mean loss ``||r||^2 / (2N)`` over the ``N`` entries of the residual
moves ``N`` times slower: time ``t_mean = N t``, with ``N = n k`` for ``k`` outputs
(``n`` for one).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._validation import as_array, check_callable, check_finite

__all__ = ["residual", "square_loss"]


def residual(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any,
             x: jax.Array, y: jax.Array) -> jax.Array:
    """Residual ``r = f(x; params) - y`` on a batch.

    Args:
        apply_fn: ``apply_fn(params, x)`` returns the outputs, shape ``(n,)``
            (or ``(n, k)``).
        params: parameters (any pytree ``apply_fn`` accepts).
        x: inputs, shape ``(n, d)``; checked by ``apply_fn``.
        y: targets, the same shape as the outputs.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> f = lambda w, x: x @ w
    >>> ntk.residual(f, jnp.ones(1), jnp.array([[2.0]]), jnp.array([0.5])).tolist()
    [1.5]
    """
    check_callable(apply_fn, "apply_fn")
    y = as_array(y, "y")
    check_finite(y, "y")
    u = apply_fn(params, x)
    if jnp.shape(u) != y.shape:
        raise ValueError("y must have the shape of the model outputs "
                         f"{tuple(jnp.shape(u))}, got {tuple(y.shape)}")
    return u - y


def square_loss(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any,
                x: jax.Array, y: jax.Array) -> jax.Array:
    """Sum-of-squares loss ``l = 1/2 sum_i (f(x_i; params) - y_i)^2`` (a scalar).

    Arguments as in :func:`residual`.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> f = lambda w, x: x @ w
    >>> float(ntk.square_loss(f, jnp.ones(1), jnp.array([[2.0]]), jnp.array([0.0])))
    2.0
    """
    r = residual(apply_fn, params, x, y)
    return 0.5 * jnp.sum(r ** 2)
