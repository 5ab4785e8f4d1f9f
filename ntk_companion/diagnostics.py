"""Small measurements used throughout the course: spectra, relative changes, power laws.

* ``flatten(params)`` = theta, the parameter vector in ``ravel_pytree`` order.
* ``min_eigenvalue(H)`` = lambda_min(H); ``eigh_descending(H)`` = (lambda_1 >= ... >=
  lambda_n, V) with ``H = V diag(lambda) V^T``; ``spectral_components(H, r)`` = V^T r,
  the coordinates of ``r`` in the eigenbasis (under ``dr/dt = -H r`` component ``k``
  decays like ``exp(-lambda_k t)``).
* ``relative_change(A, A0)`` = ||A - A0||_F / ||A0||_F.
* ``weight_movement(params, params0)`` = ||theta - theta0||_2 / ||theta0||_2.
* ``fit_power_law(x, y)``: least-squares line ``log y = slope log x + intercept``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._validation import (as_array, check_finite, check_params, check_rank,
                          check_same_structure, check_symmetric, is_concrete)

__all__ = [
    "flatten",
    "min_eigenvalue",
    "eigh_descending",
    "spectral_components",
    "relative_change",
    "weight_movement",
    "fit_power_law",
]


def flatten(params: Any) -> jax.Array:
    """The parameter pytree as one vector ``theta`` of length ``P`` (``ravel_pytree``
    order, the column order of :func:`ntk_companion.jacobian`).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> ntk.flatten({"a": jnp.ones(2), "b": jnp.zeros((1, 1))}).tolist()
    [1.0, 1.0, 0.0]
    """
    check_params(params, "params")
    return ravel_pytree(params)[0]


def _symmetric_matrix(H: Any, name: str) -> jax.Array:
    H = as_array(H, name)
    check_finite(H, name)
    check_symmetric(H, name)
    return H


def min_eigenvalue(H: jax.Array) -> jax.Array:
    """Smallest eigenvalue ``lambda_min`` of a symmetric matrix ``H``
    (via ``eigvalsh``).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> float(ntk.min_eigenvalue(jnp.diag(jnp.array([2.0, 0.5]))))
    0.5
    """
    H = _symmetric_matrix(H, "H")
    return jnp.linalg.eigvalsh(H)[0]


def eigh_descending(H: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition ``H = V diag(lambda) V^T`` with eigenvalues in *descending*
    order.

    Returns ``(evals, evecs)``: ``evals[k] = lambda_k`` with
    ``lambda_1 >= lambda_2 >= ...`` and ``evecs[:, k]`` the unit eigenvector of
    ``lambda_k``. The sign of every eigenvector is fixed so that its entry of largest
    magnitude is positive (reproducible output).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> ntk.eigh_descending(jnp.diag(jnp.array([1.0, 3.0])))[0].tolist()
    [3.0, 1.0]
    """
    H = _symmetric_matrix(H, "H")
    evals, evecs = jnp.linalg.eigh(H)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    idx = jnp.argmax(jnp.abs(evecs), axis=0)
    signs = jnp.sign(evecs[idx, jnp.arange(evecs.shape[1])])
    signs = jnp.where(signs == 0, 1, signs)
    return evals, evecs * signs


def spectral_components(H: jax.Array, r: jax.Array) -> jax.Array:
    """Coordinates ``V^T r`` of ``r`` (shape ``(n,)`` or ``(n, k)``) in the eigenbasis
    of ``H``, ordered like :func:`eigh_descending` (largest eigenvalue first).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> H = jnp.diag(jnp.array([1.0, 3.0]))
    >>> ntk.spectral_components(H, jnp.array([1.0, 2.0])).tolist()
    [2.0, 1.0]
    """
    _, V = eigh_descending(H)
    r = as_array(r, "r")
    check_rank(r, "r", (1, 2))
    check_finite(r, "r")
    if r.shape[0] != V.shape[0]:
        raise ValueError(f"r must have {V.shape[0]} rows to match H, got shape "
                         f"{tuple(r.shape)}")
    return V.T @ r


def relative_change(A: jax.Array, A0: jax.Array) -> jax.Array:
    """Relative change ``||A - A0||_F / ||A0||_F`` (Frobenius norm; any equal shapes).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> float(ntk.relative_change(jnp.array([3.0, 4.0]) * 1.5, jnp.array([3.0, 4.0])))
    0.5
    """
    A = as_array(A, "A")
    A0 = as_array(A0, "A0")
    if A.shape != A0.shape:
        raise ValueError(f"A and A0 must have the same shape, got {tuple(A.shape)} and "
                         f"{tuple(A0.shape)}")
    check_finite(A, "A")
    check_finite(A0, "A0")
    den = jnp.linalg.norm(A0.ravel())
    if is_concrete(den) and float(den) == 0.0:
        raise ValueError("A0 is zero, so the relative change is undefined")
    return jnp.linalg.norm((A - A0).ravel()) / den


def weight_movement(params: Any, params0: Any, relative: bool = True) -> jax.Array:
    """Distance travelled by the weights: ``||theta - theta0||_2``, divided by
    ``||theta0||_2`` when ``relative`` (the default).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> float(ntk.weight_movement([jnp.array([3.0, 4.0])], [jnp.array([3.0, 0.0])]))
    1.3333333333333333
    """
    check_params(params, "params")
    check_params(params0, "params0")
    check_same_structure(params, params0, "params", "params0")
    if not isinstance(relative, (bool, np.bool_)):
        raise TypeError(f"relative must be a bool, got {type(relative).__name__}")
    theta, theta0 = ravel_pytree(params)[0], ravel_pytree(params0)[0]
    dist = jnp.linalg.norm(theta - theta0)
    if not relative:
        return dist
    den = jnp.linalg.norm(theta0)
    if is_concrete(den) and float(den) == 0.0:
        raise ValueError("params0 is zero, so the relative weight movement is "
                         "undefined; use relative=False")
    return dist / den


def fit_power_law(x: Any, y: Any) -> tuple[float, float]:
    """Least-squares fit of ``log y = slope * log x + intercept`` (natural logarithms),
    so ``y ~ exp(intercept) * x**slope``.

    Args:
        x, y: 1-D arrays of the same length >= 2, all entries positive and finite, with
            at least two distinct ``x``.

    Returns:
        ``(slope, intercept)`` as Python floats.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> slope, _ = ntk.fit_power_law(jnp.array([1.0, 2.0, 4.0]),
    ...                              jnp.array([1.0, 0.25, 0.0625]))
    >>> round(slope, 6)
    -2.0
    """
    xs = np.asarray(as_array(x, "x"), dtype=np.float64)
    ys = np.asarray(as_array(y, "y"), dtype=np.float64)
    for arr, name in ((xs, "x"), (ys, "y")):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if not np.all(arr > 0):
            raise ValueError(f"{name} must be positive for a log-log fit, got min "
                             f"{arr.min():.3g}")
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and "
                         f"{ys.size}")
    if xs.size < 2 or np.unique(xs).size < 2:
        raise ValueError("x must hold at least two distinct values to fit a power law")
    lx, ly = np.log(xs), np.log(ys)
    A = np.stack([lx, np.ones_like(lx)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(A, ly, rcond=None)
    return float(slope), float(intercept)
