"""The linearized (first-order Taylor) model around ``theta_0``:

    f_lin(x; theta) = f(x; theta_0) + <grad_theta f(x; theta_0), theta - theta_0>
                    = f(x; theta_0) + G(x; theta_0) (theta - theta_0).

``f_lin`` is affine in ``theta`` with the tangent features
``phi(x) = grad_theta f(x; theta_0)``, so its NTK is ``H_0`` (the NTK of ``f`` at
``theta_0``) for every ``theta``, and gradient flow on it is kernel gradient flow with
the constant kernel ``H_0``. It is evaluated with one Jacobian-vector product
(``jax.jvp``), never forming the Jacobian.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._utils import static_callable
from ._validation import (as_array, check_callable, check_finite, check_params,
                          check_same_structure)

__all__ = ["linearize"]

PyTree = Any


@partial(jax.jit, static_argnums=0)
def _f_lin(apply_fn: Callable, params0: PyTree, params: PyTree,
           x: jax.Array) -> jax.Array:
    dparams = jax.tree_util.tree_map(lambda p, p0: (p - p0).astype(jnp.result_type(p0)),
                                     params, params0)
    f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (dparams,))
    return f0 + df


def linearize(apply_fn: Callable[[PyTree, jax.Array], jax.Array], params0: PyTree
              ) -> Callable[[PyTree, jax.Array], jax.Array]:
    """Return ``f_lin(params, x) = f(x; params0) + J(x; params0) (params - params0)``.

    Args:
        apply_fn: the model, ``apply_fn(params, x)`` -> outputs (any output shape).
        params0: the expansion point ``theta_0``.

    Returns:
        ``f_lin(params, x)``, with the output shape of ``apply_fn``; ``params`` must
        have the pytree structure and leaf shapes of ``params0``.
        ``f_lin(params0, x) == f(x; params0)`` exactly. ``f_lin`` can be passed anywhere
        ``apply_fn`` can (training, empirical NTK).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> f_lin = ntk.linearize(lambda w, x: jnp.sin(x @ w), jnp.zeros(1))
    >>> float(f_lin(jnp.ones(1), jnp.array([[0.5]]))[0])         # sin(0) + cos(0) * 0.5
    0.5
    """
    check_callable(apply_fn, "apply_fn")
    check_params(params0, "params0")

    apply_static = static_callable(apply_fn)

    def f_lin(params: PyTree, x: jax.Array) -> jax.Array:
        check_params(params, "params")
        check_same_structure(params, params0, "params", "params0")
        x = as_array(x, "x")
        check_finite(x, "x")
        return _f_lin(apply_static, params0, params, x)

    f_lin.__doc__ = ("Linearized model f(x; params0) + J(x; params0)(params - params0) "
                     f"of {getattr(apply_fn, '__qualname__', repr(apply_fn))}.")
    return f_lin
