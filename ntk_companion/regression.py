r"""Kernel (ridge) regression, the end point of training a kernel model.

``f(X*) = K_* (K + ridge I)^{-1} y`` with ``K = K(X, X)`` and ``K_* = K(X*, X)``. With
``ridge = 0`` and ``K`` the NTK this is the prediction of an infinitely wide network trained to
convergence by gradient flow from a zero output (see :func:`ntk_companion.dynamics.predict` at
``t = inf``); with ``K`` the NNGP kernel it is the posterior mean of the Gaussian process with
noise variance ``ridge``. The linear system is solved by a Cholesky factorization
(never an explicit inverse).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

from ._validation import (as_array, check_finite, check_rank, check_symmetric,
                          check_test_train, is_concrete, value_check)
from .dynamics import _check_diag_reg, _diag_reg_value

__all__ = ["kernel_regression"]


def kernel_regression(K_train: Any, y: Any, K_test_train: Any, ridge: float = 0.0, *,
                      ridge_relative: bool = False) -> jax.Array:
    r"""Kernel ridge regression ``K_* (K + ridge I)^{-1} y`` by a Cholesky solve.

    Args:
        K_train: ``(n, n)`` symmetric positive (semi-)definite kernel ``K(X, X)``.
        y: targets, ``(n,)`` or ``(n, k)``.
        K_test_train: ``(m, n)`` kernel ``K(X*, X)`` between test and training inputs
            (pass ``K_train`` itself to get the fit on the training inputs).
        ridge: ``>= 0``, added to the diagonal; needed when ``K`` is singular (duplicated
            inputs, more points than the kernel's rank) or ill-conditioned.
        ridge_relative: ``False`` (default): ``ridge`` is absolute; ``True``: the ridge is
            ``ridge * tr(K_train) / n``, relative to the kernel's mean diagonal (as
            neural-tangents' ``diag_reg`` with ``diag_reg_absolute_scale=False``), so that
            it does not change when the kernel is rescaled.

    Returns:
        Predictions, shape ``(m,)`` or ``(m, k)``.

    Raises:
        ValueError: when ``K_train + ridge I`` is not positive definite (the Cholesky
            factorization fails), with a suggestion for ``ridge``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> K = jnp.array([[2.0, 1.0], [1.0, 2.0]])
    >>> fit = ntk.kernel_regression(K, jnp.array([1.0, 0.0]), K)   # interpolates y
    >>> bool(jnp.allclose(fit, jnp.array([1.0, 0.0])))
    True
    >>> rel = ntk.kernel_regression(K, jnp.array([1.0, 0.0]), K, 0.5, ridge_relative=True)
    >>> bool(jnp.allclose(rel, ntk.kernel_regression(K, jnp.array([1.0, 0.0]), K, 1.0)))
    True
    """
    K = as_array(K_train, "K_train")
    check_symmetric(K, "K_train")
    check_finite(K, "K_train")
    n = K.shape[0]
    y = as_array(y, "y")
    check_rank(y, "y", (1, 2))
    if y.shape[0] != n:
        raise ValueError(f"y must have {n} rows to match K_train of shape ({n}, {n}), got shape "
                         f"{tuple(y.shape)}")
    check_finite(y, "y")
    Ks = check_test_train(K_test_train, n)
    ridge = _check_diag_reg(ridge, ridge_relative, "ridge", "ridge_relative")
    dtype = jnp.result_type(K, y, Ks)
    K = K.astype(dtype)
    ridge = _diag_reg_value(K, ridge, ridge_relative)
    if is_concrete(ridge):
        ridge = float(ridge)
    pred, ok = _solve(K, y.astype(dtype), Ks.astype(dtype), jnp.asarray(ridge, dtype))
    if not is_concrete(ok):
        value_check(ok, "K_train + ridge * I is not positive definite (K_train is singular "
                    "or indefinite): pass a positive ridge")
    elif not bool(ok):
        scale = float(np.trace(np.asarray(K))) / max(n, 1)
        raise ValueError(
            f"K_train + ridge * I (ridge={ridge:g}) is not positive definite: the Cholesky "
            f"factorization failed or has a rounding-level pivot (K_train is singular or "
            f"indefinite, e.g. duplicated inputs). Pass a positive ridge, e.g. "
            f"ridge={max(1e-8 * scale, 1e-12):.1e} (1e-8 times the mean diagonal), or use "
            f"ntk_companion.predict(..., t=inf) for the minimum-norm interpolant")
    return pred


@jax.jit
def _solve(K: jax.Array, y: jax.Array, Ks: jax.Array, ridge: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """``K_* (K + ridge I)^{-1} y`` by Cholesky, and whether ``K + ridge I`` is numerically
    positive definite: the factor is finite and every pivot ``L_ii^2`` exceeds
    ``n eps max_i A_ii`` (otherwise ``A`` is singular to working precision and the solve
    would return noise)."""
    n = K.shape[0]
    A = K + ridge * jnp.eye(n, dtype=K.dtype)
    factor = cho_factor(A, lower=True)
    L = factor[0]
    tol = n * jnp.finfo(A.dtype).eps * jnp.max(jnp.abs(jnp.diagonal(A)))
    ok = jnp.all(jnp.isfinite(L)) & jnp.all(jnp.diagonal(L) ** 2 > tol)
    return Ks @ cho_solve(factor, y), ok
