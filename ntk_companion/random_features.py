r"""Random-features regression: random features, minimum-norm and ridge least squares.

Random features (Rahimi & Recht 2007)
-------------------------------------
Draw ``N`` weight vectors ``w_1, ..., w_N`` in ``R^d`` (rows of ``W``, typically i.i.d.
``N(0, I_d)``) and map an input ``x`` in ``R^d`` to

.. code-block:: text

    phi_j(x) = sigma(w_j . x / sqrt(d)) / sqrt(N),        j = 1..N.

Stacked over the inputs ``x_1, ..., x_n`` this is the feature matrix ``Phi`` of shape
``(n, N)``, ``Phi_ij = phi_j(x_i)`` (:func:`random_features`). The model
``f(x; a) = sum_j a_j phi_j(x)`` is a two-layer network whose first layer is frozen at
its random initialization and whose readout ``a`` is trained. With the ``1/sqrt(N)``
scaling the feature kernel ``K_N(x, x') = sum_j phi_j(x) phi_j(x') = (1/N) sum_j
sigma(w_j.x/sqrt d) sigma(w_j.x'/sqrt d)`` is an average of ``N`` i.i.d. terms: as
``N -> infinity`` it converges (at the Monte Carlo rate ``N^{-1/2}``) to
``K(x, x') = E_w[sigma(u) sigma(v)]`` with ``(u, v)`` centred Gaussian of covariance
``[[x.x, x.x'], [x.x', x'.x']] / d``. For ``sigma = relu`` this is the arc-cosine kernel
of order 1 (Cho & Saul 2009), equal to
``analytic_kernels(x, x', depth=1, activation="relu").nngp`` (``W_std = 1``,
``b_std = 0``).

Fitting the readout
-------------------
With the thin singular value decomposition ``Phi = U diag(s) V^T`` (``r = min(n, N)``
singular values ``s_1 >= ... >= s_r >= 0``):

* :func:`min_norm_fit`: the minimum-norm least-squares solution
  ``a = Phi^+ y = V diag(1/s_k) U^T y`` (pseudo-inverse; singular values at or below
  ``rcond * s_1`` count as zero). Among the minimizers of ``||Phi a - y||^2`` it has the
  smallest ``||a||``; when ``Phi`` has full row rank (``N >= n``) it interpolates,
  ``Phi a = y``, and equals ``Phi^T (Phi Phi^T)^{-1} y``. It is also the limit of
  gradient flow on ``1/2 ||Phi a - y||^2`` started at ``a = 0``.
* :func:`ridge_fit`: ``a = (Phi^T Phi + ridge I)^{-1} Phi^T y = V diag(s_k / (s_k^2 +
  ridge)) U^T y = Phi^T (Phi Phi^T + ridge I)^{-1} y``, i.e. kernel ridge regression
  with ``K_N``; ``ridge = 0`` is :func:`min_norm_fit`.

Both are evaluated from the SVD: no normal equations (which square the condition
number), no explicit inverse. Every function works in the dtype it is given and under
``jax.jit`` / ``jax.vmap`` (value checks are skipped for tracers).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (as_array, check_finite, check_rank, check_same_features,
                          check_scalar, is_concrete)

__all__ = ["random_features", "min_norm_fit", "ridge_fit", "MPEdges",
           "marchenko_pastur_edges"]


def random_features(x: Any, W: Any, *,
                    activation: str | Callable = "relu") -> jax.Array:
    r"""Random-feature matrix ``Phi_ij = sigma(w_j . x_i / sqrt(d)) / sqrt(N)``.

    Args:
        x: inputs, shape ``(n, d)``.
        W: weights, shape ``(N, d)``, one row ``w_j`` per feature (e.g.
            ``jax.random.normal(key, (N, d))``). Taking the first ``N`` rows of a larger
            ``W`` gives nested feature sets.
        activation: a name known to :func:`ntk_companion.models.get_activation`
            (``"relu"``, ``"erf"``, ``"tanh"``, ...) or an elementwise callable.

    Returns:
        ``Phi`` of shape ``(n, N)``, in the common dtype of ``x`` and ``W``; then
        ``Phi @ Phi.T`` is the random-features kernel ``K_N(X, X)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> ntk.random_features(jnp.ones((2, 3)), jnp.ones((5, 3))).shape      # (n, N)
    (2, 5)
    """
    from .models import get_activation  # same names and functions as the MLP

    x = as_array(x, "x")
    W = as_array(W, "W")
    check_rank(x, "x", 2)
    check_rank(W, "W", 2)
    check_same_features(x, W, "x", "W")
    if x.shape[0] == 0 or W.shape[0] == 0:
        raise ValueError(f"x and W must have at least one row, got x of shape "
                         f"{tuple(x.shape)} and W of shape {tuple(W.shape)}")
    check_finite(x, "x")
    check_finite(W, "W")
    sigma = get_activation(activation)
    dtype = jnp.result_type(x, W)
    d, N = x.shape[1], W.shape[0]
    pre = (x.astype(dtype) @ W.astype(dtype).T) / math.sqrt(d)
    return sigma(pre) / math.sqrt(N)


def _check_system(Phi: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    Phi = as_array(Phi, "Phi")
    check_rank(Phi, "Phi", 2)
    if Phi.shape[0] == 0 or Phi.shape[1] == 0:
        raise ValueError("Phi must be a non-empty (n, N) matrix, got shape "
                         f"{tuple(Phi.shape)}")
    y = as_array(y, "y")
    check_rank(y, "y", (1, 2))
    if y.shape[0] != Phi.shape[0]:
        raise ValueError(f"y must have {Phi.shape[0]} rows to match Phi of shape "
                         f"{tuple(Phi.shape)}, got shape {tuple(y.shape)}")
    check_finite(Phi, "Phi")
    check_finite(y, "y")
    dtype = jnp.result_type(Phi, y)
    return Phi.astype(dtype), y.astype(dtype)


def _svd_filter_solve(Phi: jax.Array, y: jax.Array,
                      filt: Callable[[jax.Array], jax.Array]
                      ) -> jax.Array:
    """``V diag(filt(s)) U^T y`` from the thin SVD ``Phi = U diag(s) V^T``."""
    U, s, Vt = jnp.linalg.svd(Phi, full_matrices=False)
    coef = U.T @ y
    scale = filt(s)
    coef = coef * (scale if y.ndim == 1 else scale[:, None])
    return Vt.T @ coef


def min_norm_fit(Phi: Any, y: Any, *, rcond: float | None = None) -> jax.Array:
    r"""Minimum-norm least-squares coefficients ``a = Phi^+ y`` (the pseudo-inverse), by
    SVD.

    With ``Phi = U diag(s) V^T``, ``a = sum_k [s_k > rcond * s_1] (u_k . y / s_k) v_k``.
    It minimizes ``||Phi a - y||`` and, among all minimizers, ``||a||``; for ``N >= n``
    and full row rank it interpolates (``Phi a = y``). Gradient flow on
    ``1/2 ||Phi a - y||^2`` from ``a = 0`` converges to it (the iterates never leave the
    row space of ``Phi``).

    Args:
        Phi: feature matrix, shape ``(n, N)`` (any ``n``, ``N``).
        y: targets, shape ``(n,)`` or ``(n, k)``.
        rcond: relative cutoff: singular values ``<= rcond * s_max`` are treated as
            zero. Default ``max(n, N) * eps`` (as ``numpy.linalg.lstsq``): only singular
            values at rounding level are cut, so a nearly singular ``Phi`` gives the
            huge coefficients that its small singular values imply.

    Returns:
        ``a`` of shape ``(N,)`` or ``(N, k)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> a = ntk.min_norm_fit(jnp.array([[1.0, 1.0]]), jnp.array([2.0]))
    >>> [round(float(v), 6) for v in a]
    [1.0, 1.0]
    """
    Phi, y = _check_system(Phi, y)
    if rcond is None:
        rcond = max(Phi.shape) * float(jnp.finfo(Phi.dtype).eps)
    else:
        rcond = check_scalar(rcond, "rcond", nonnegative=True)
    return _min_norm(Phi, y, jnp.asarray(rcond, Phi.dtype))


@jax.jit
def _min_norm(Phi: jax.Array, y: jax.Array, rcond: jax.Array) -> jax.Array:
    def filt(s):
        keep = s > rcond * s[0]
        return jnp.where(keep, 1 / jnp.where(keep, s, 1), 0)

    return _svd_filter_solve(Phi, y, filt)


def ridge_fit(Phi: Any, y: Any, ridge: Any) -> jax.Array:
    r"""Ridge coefficients ``a = (Phi^T Phi + ridge I)^{-1} Phi^T y``, by SVD.

    With ``Phi = U diag(s) V^T``, ``a = sum_k s_k / (s_k^2 + ridge) (u_k . y) v_k``; by
    the push-through identity this is ``Phi^T (Phi Phi^T + ridge I)^{-1} y``, so the
    prediction ``phi(x) . a = K_N(x, X) (K_N(X, X) + ridge I)^{-1} y`` is kernel ridge
    regression with the feature kernel. It minimizes
    ``1/2 ||Phi a - y||^2 + ridge/2 ||a||^2``. A ridge of 0 gives
    :func:`min_norm_fit` (with its default cutoff).

    Args:
        Phi: feature matrix, shape ``(n, N)``.
        y: targets, shape ``(n,)`` or ``(n, k)``.
        ridge: ``>= 0``: a scalar, or a 1-D array of ``R`` ridges, all solved from one
            SVD.

    Returns:
        ``a`` of shape ``(N,)`` or ``(N, k)`` for a scalar ridge; ``(R, N)`` or
        ``(R, N, k)`` for ``R`` ridges.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> a = ntk.ridge_fit(jnp.array([[1.0]]), jnp.array([2.0]), 1.0)   # 2 / 2
    >>> round(float(a[0]), 6)
    1.0
    """
    Phi, y = _check_system(Phi, y)
    ridges = as_array(ridge, "ridge")
    check_rank(ridges, "ridge", (0, 1))
    check_finite(ridges, "ridge")
    if is_concrete(ridges) and bool(np.any(np.asarray(ridges) < 0)):
        raise ValueError("ridge must be >= 0, got min "
                         f"{float(np.min(np.asarray(ridges)))}")
    rcond = jnp.asarray(max(Phi.shape) * float(jnp.finfo(Phi.dtype).eps), Phi.dtype)
    out = _ridge(Phi, y, jnp.atleast_1d(ridges).astype(Phi.dtype), rcond)
    return out[0] if ridges.ndim == 0 else out


@jax.jit
def _ridge(Phi: jax.Array, y: jax.Array, ridges: jax.Array,
           rcond: jax.Array) -> jax.Array:
    """One SVD, then ``V diag(filter_r(s)) U^T y`` for every ridge ``r``:
    ``s / (s^2 + r)`` for ``r > 0``, the cut-off pseudo-inverse ``1/s`` for
    ``r = 0``."""
    U, s, Vt = jnp.linalg.svd(Phi, full_matrices=False)
    keep = s > rcond * s[0]
    inv = jnp.where(keep, 1 / jnp.where(keep, s, 1), 0)
    r = ridges[:, None]
    denom = s * s + r
    filt = jnp.where(r > 0, s / jnp.where(denom > 0, denom, 1), inv)      # (R, r_svd)
    # (r_svd,) or (r_svd, k)
    coef = U.T @ y
    if y.ndim == 1:
        return (filt * coef) @ Vt                                         # (R, N)
    return jnp.einsum("rk,kc,kn->rnc", filt, coef, Vt)                    # (R, N, k)


class MPEdges(NamedTuple):
    """Edges of the Marchenko-Pastur law and the Tracy-Widom scales of the extreme
    eigenvalues (see :func:`marchenko_pastur_edges`).

    >>> edges = marchenko_pastur_edges(100, 400)      # gamma = 1/4: (1 -+ 1/2)^2
    >>> float(edges.lower), float(edges.upper)
    (0.25, 2.25)
    """

    lower: np.ndarray
    upper: np.ndarray
    lower_scale: np.ndarray
    upper_scale: np.ndarray


def marchenko_pastur_edges(n: Any, N: Any) -> MPEdges:
    r"""Spectral edges of ``Phi Phi^T`` for an ``(n, N)`` matrix with i.i.d.
    ``N(0, 1/N)`` entries, with the Tracy-Widom scale of the extreme eigenvalues.

    With ``gamma = n / N``, the nonzero eigenvalues of ``Phi Phi^T``
    (there are ``min(n, N)``) fill, as ``n, N -> infinity`` at fixed ``gamma``, the
    Marchenko-Pastur support

    .. code-block:: text

        [(1 - sqrt(gamma))^2, (1 + sqrt(gamma))^2]      (lower, upper)

    on either side of the threshold (for ``N < n`` these are the eigenvalues of
    ``Phi^T Phi``). At finite size the largest eigenvalue fluctuates around the upper
    edge on the scale of Johnstone (2001), and the smallest one, for ``n != N``, around
    the lower edge on the scale with the signs reversed; with ``a = min(n, N)``,
    ``b = max(n, N)``:

    .. code-block:: text

        lambda_max ~ upper + upper_scale * TW_1,
            upper_scale = (sqrt a + sqrt b) (1/sqrt a + 1/sqrt b)^(1/3) / N
        lambda_min ~ lower - lower_scale * TW_1,
            lower_scale = (sqrt b - sqrt a) (1/sqrt a - 1/sqrt b)^(1/3) / N

    where ``TW_1`` follows the Tracy-Widom law of order 1 (mean -1.2065, standard
    deviation 1.2680), so both are of relative order ``a^(-2/3)``. At ``n = N`` the
    lower edge is the hard edge 0 and ``lower_scale`` is 0 (its fluctuations are not
    Tracy-Widom).

    Args:
        n: number of rows (training points), a positive integer or an array of them.
        N: number of columns (features), a positive integer or an array of them; ``n``
            and ``N`` broadcast.

    Returns:
        ``MPEdges(lower, upper, lower_scale, upper_scale)`` as float arrays of the
        broadcast shape.

    >>> import ntk_companion as ntk
    >>> e = ntk.marchenko_pastur_edges(64, 256)                    # gamma = 1/4
    >>> float(e.lower), float(e.upper)
    (0.25, 2.25)
    >>> float(ntk.marchenko_pastur_edges(64, 64).lower)            # the threshold N = n
    0.0
    """
    dims = []
    for value, name in ((n, "n"), (N, "N")):
        arr = np.asarray(value)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a positive integer (or an array of them), "
                            f"got {value!r}")
        if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 1) \
                or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must be a positive integer (or an array of "
                             f"them), got {value!r}")
        dims.append(arr.astype(np.float64))
    n_, N_ = np.broadcast_arrays(*dims)
    root = np.sqrt(n_ / N_)
    a, b = np.minimum(n_, N_), np.maximum(n_, N_)
    ra, rb = np.sqrt(a), np.sqrt(b)
    upper_scale = (ra + rb) * (1 / ra + 1 / rb) ** (1 / 3) / N_
    lower_scale = (rb - ra) * (1 / ra - 1 / rb) ** (1 / 3) / N_
    return MPEdges(lower=(1 - root) ** 2, upper=(1 + root) ** 2,
                   lower_scale=lower_scale, upper_scale=upper_scale)
