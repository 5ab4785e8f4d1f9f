r"""Kernel (ridge) regression, the end point of training a kernel model.

``f(X*) = K_* (K + ridge I)^{-1} y`` with ``K = K(X, X)`` and ``K_* = K(X*, X)``. With
``ridge = 0`` and ``K`` the NTK this is the prediction of an infinitely wide network
trained to convergence by gradient flow from a zero output
(see :func:`ntk_companion.dynamics.predict` at ``t = inf``); with ``K`` the NNGP kernel
it is the posterior mean of the Gaussian process with noise variance ``ridge``. The
linear system is solved by a Cholesky factorization (never an explicit inverse).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

from ._validation import (as_array, check_finite, check_rank, check_same_features,
                          check_scalar, check_symmetric, check_test_train, is_concrete,
                          value_check)
from .dynamics import _check_diag_reg, _diag_reg_value

__all__ = ["kernel_regression", "gaussian_kernel"]


def kernel_regression(K_train: Any, y: Any, K_test_train: Any, ridge: float = 0.0, *,
                      ridge_relative: bool = False) -> jax.Array:
    r"""Kernel ridge regression ``K_* (K + ridge I)^{-1} y`` by a Cholesky solve.

    Args:
        K_train: ``(n, n)`` symmetric positive (semi-)definite kernel ``K(X, X)``.
        y: targets, ``(n,)`` or ``(n, k)``.
        K_test_train: ``(m, n)`` kernel ``K(X*, X)`` between test and training inputs
            (pass ``K_train`` itself to get the fit on the training inputs).
        ridge: ``>= 0``, added to the diagonal; needed when ``K`` is singular
            (duplicated inputs, more points than the kernel's rank) or ill-conditioned.
        ridge_relative: ``False`` (default): ``ridge`` is absolute; ``True``: the ridge
            is ``ridge * tr(K_train) / n``, relative to the kernel's mean diagonal (as
            neural-tangents' ``diag_reg`` with ``diag_reg_absolute_scale=False``), so
            that it does not change when the kernel is rescaled.

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
    >>> rel = ntk.kernel_regression(K, jnp.array([1.0, 0.0]), K, 0.5,
    ...                             ridge_relative=True)
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
        raise ValueError(f"y must have {n} rows to match K_train of shape ({n}, {n}), "
                         f"got shape {tuple(y.shape)}")
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
        value_check(ok, "K_train + ridge * I is not positive definite (K_train is "
                    "singular or indefinite): pass a positive ridge")
    elif not bool(ok):
        scale = float(np.trace(np.asarray(K))) / max(n, 1)
        raise ValueError(
            f"K_train + ridge * I (ridge={ridge:g}) is not positive definite: the "
            "Cholesky factorization failed or has a rounding-level pivot (K_train is "
            "singular or indefinite, e.g. duplicated inputs). Pass a positive ridge, "
            f"e.g. ridge={max(1e-8 * scale, 1e-12):.1e} (1e-8 times the mean "
            "diagonal), or use ntk_companion.predict(..., t=inf) for the minimum-norm "
            "interpolant")
    return pred


@jax.jit
def _solve(K: jax.Array, y: jax.Array, Ks: jax.Array, ridge: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """``K_* (K + ridge I)^{-1} y`` by Cholesky, and whether ``K + ridge I`` is
    numerically positive definite: the factor is finite and every pivot ``L_ii^2``
    exceeds ``n eps max_i A_ii`` (otherwise ``A`` is singular to working precision and
    the solve would return noise)."""
    n = K.shape[0]
    A = K + ridge * jnp.eye(n, dtype=K.dtype)
    factor = cho_factor(A, lower=True)
    L = factor[0]
    tol = n * jnp.finfo(A.dtype).eps * jnp.max(jnp.abs(jnp.diagonal(A)))
    ok = jnp.all(jnp.isfinite(L)) & jnp.all(jnp.diagonal(L) ** 2 > tol)
    return Ks @ cho_solve(factor, y), ok


def gaussian_kernel(x1: Any, x2: Any, lengthscale: float = 1.0) -> jax.Array:
    r"""Gaussian (RBF) kernel matrix
    ``k(x, x') = exp(-|x - x'|^2 / (2 lengthscale^2))``.

    A strictly positive definite kernel on ``R^d`` with ``k(x, x) = 1``: its Gram matrix
    on distinct points is positive definite, and its RKHS norm bounds every function in
    it, ``|g(x)| <= ||g||_H``.

    Args:
        x1: inputs, shape ``(n1, d)``.
        x2: inputs, shape ``(n2, d)``.
        lengthscale: ``> 0``, the width ``l`` of the kernel.

    Returns:
        The ``(n1, n2)`` matrix ``k(x1_i, x2_j)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> K = ntk.gaussian_kernel(jnp.array([[0.0], [1.0]]), jnp.array([[0.0]]))
    >>> [round(float(v), 6) for v in K[:, 0]]                  # 1 and exp(-1/2)
    [1.0, 0.606531]
    """
    x1 = as_array(x1, "x1")
    x2 = as_array(x2, "x2")
    check_rank(x1, "x1", 2)
    check_rank(x2, "x2", 2)
    check_same_features(x1, x2)
    check_finite(x1, "x1")
    check_finite(x2, "x2")
    ell = check_scalar(lengthscale, "lengthscale", positive=True)
    sq = jnp.sum((x1[:, None, :] - x2[None, :, :]) ** 2, axis=-1)
    return jnp.exp(-0.5 * sq / ell ** 2)
