r"""Closed-form gradient-flow dynamics of kernel (linearized) models.

Conventions: sum loss ``l = 1/2 ||u - y||^2``, gradient flow ``d theta/dt = -grad l``.
For a model that is linear in its parameters (the linearized network ``f_lin``, or a
wide network in the NTK regime) with tangent kernel ``K`` the outputs move in function
space by

.. code-block:: text

    du/dt   = -K (u - y),            so r(t) = u(t) - y = exp(-K t) r(0),
    df*/dt  = -K(X*, X) (u - y),     so f*(t) = f*(0) - K_* K^{-1} (I - exp(-K t)) r(0).

Everything is computed from one eigendecomposition ``K = V diag(lambda) V^T`` (never a
matrix exponential evaluated on the fly, never an explicit inverse):
``exp(-K t) = V diag(exp(-lambda t)) V^T`` and
``K^{-1}(I - exp(-K t)) = V diag(g(lambda)) V^T`` with
``g(lambda) = (1 - exp(-lambda t)) / lambda = -expm1(-lambda t) / lambda``, computed
with ``expm1`` so that it is accurate for small ``lambda t`` and tends to ``t`` as
``lambda -> 0``: a singular ``K`` (duplicated inputs, more points than features) is fine
at every ``t``. At ``t = inf`` the flow has converged: ``g = 1/lambda`` on the range of
``K``, i.e. the pseudo-inverse, and the test prediction is the minimum-norm interpolant
(kernel regression without ridge when ``K`` is positive definite).

Eigenvalues below ``n * eps * lambda_max`` (rounding level) count as exact zeros. On
that null space the training outputs do not move, and for a test kernel consistent with
``K`` (the joint Gram matrix of train and test inputs is PSD) ``K_* v = 0`` for every
null vector ``v``, so the null-space term ``K_* v v^T (y - f0) t`` of ``f_test``
vanishes; it is dropped (``g = 0`` there) rather than computed from rounding noise that
would grow like ``t``. Hence ``f_test(t) -> f_test(inf)`` continuously and the result
stays bounded for every ``t``.

**Time scale.** ``t`` is the gradient-flow time of the *sum* loss. A library or an
optimizer that uses the *mean* loss over all ``N`` entries of the residual,
``||r||^2 / (2N)``, moves ``N`` times slower: its time ``t_mean`` (e.g. learning rate
times steps) corresponds to ``t = t_mean / N`` here. For scalar targets ``N = n``; for
vector targets of shape ``(n, k)`` the mean runs over all ``N = n k`` entries
(neural-tangents' ``mse`` loss, optax's ``l2_loss`` averaged), so pass
``t = t_mean / (n k)``.

**Gradients.** Everything is differentiable in the kernel, the targets, the initial
outputs and ``t``, also at ``t = inf`` (where the derivative in ``lambda`` of the
converged flow is taken from the limit formulas, not from ``expm1(-lambda inf)``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (as_array, check_finite, check_rank, check_scalar,
                          check_symmetric, check_test_train, check_time, is_concrete,
                          value_check)

__all__ = ["residual_flow", "Prediction", "predict", "loss_bound", "train_loss_curve"]


class Prediction(NamedTuple):
    """Outputs of the trained linearized model.

    Attributes:
        train: ``f(X; t)`` on the training inputs, shape ``(n,)`` (or ``(T, n)`` for
            ``T`` times; a trailing axis for vector targets).
        test: ``f(X*; t)`` on the test inputs, shape ``(m,)`` (or ``(T, m)``), or
            ``None`` when no ``K_test_train`` was given.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> out = ntk.predict(jnp.eye(2), jnp.array([1.0, -1.0]), jnp.inf,
    ...                   K_test_train=jnp.array([[0.5, 0.5]]))
    >>> [float(v) for v in out.train], [float(v) for v in out.test]   # interpolates y
    ([1.0, -1.0], [0.0])
    >>> ntk.predict(jnp.eye(2), jnp.array([1.0, -1.0]), 1.0).test is None
    True
    """

    train: jax.Array
    test: jax.Array | None


# --------------------------------------------------------------------------- helpers
def _check_kernel(K: Any, name: str) -> jax.Array:
    """A finite symmetric matrix (positive semi-definiteness is checked on its
    spectrum)."""
    K = as_array(K, name)
    check_symmetric(K, name)
    check_finite(K, name)
    return K


def _check_targets(y: Any, name: str, n: int, kernel_name: str) -> jax.Array:
    y = as_array(y, name)
    check_rank(y, name, (1, 2))
    if y.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows to match {kernel_name} of shape "
                         f"({n}, {n}), got shape {tuple(y.shape)}")
    check_finite(y, name)
    return y


def _check_outputs(f0: Any, name: str, shape: tuple[int, ...]) -> jax.Array:
    """Initial outputs: a scalar or an array of exactly ``shape`` (no other
    broadcasting: a 1-D array against ``(n, k)`` targets would be spread along the
    outputs when its length happens to equal ``k``)."""
    f0 = as_array(f0, name)
    if f0.ndim != 0 and tuple(f0.shape) != tuple(shape):
        raise ValueError(f"{name} must be a scalar or have shape {tuple(shape)}, got "
                         f"shape {tuple(f0.shape)}")
    check_finite(f0, name)
    return f0


def _check_diag_reg(diag_reg: Any, relative: Any, name: str = "diag_reg",
                    relative_name: str = "diag_reg_relative") -> Any:
    """Validate a diagonal regularizer ``>= 0`` and its ``relative`` flag (a bool)."""
    if not isinstance(relative, (bool, np.bool_)):
        raise TypeError(f"{relative_name} must be a bool (True: {name} is relative to "
                        f"the kernel's mean diagonal), got {type(relative).__name__}")
    return check_scalar(diag_reg, name, nonnegative=True)


def _diag_reg_value(K: jax.Array, diag_reg: Any, relative: bool) -> Any:
    """``s = diag_reg`` (absolute) or ``s = diag_reg tr(K) / n`` (relative to the mean
    diagonal, neural-tangents' default ``diag_reg_absolute_scale=False``)."""
    return diag_reg * jnp.trace(K) / K.shape[0] if relative else diag_reg


def _regularize(K: jax.Array, diag_reg: Any, relative: bool) -> jax.Array:
    """``K + s I`` with ``s`` from ``_diag_reg_value``; ``K`` itself when ``diag_reg``
    is a concrete 0."""
    if is_concrete(diag_reg) and float(diag_reg) == 0.0:
        return K
    s = _diag_reg_value(K, diag_reg, relative)
    return K + s * jnp.eye(K.shape[0], dtype=K.dtype)


@jax.jit
def _eigh_clipped(K: jax.Array) -> tuple[jax.Array, ...]:
    lam, V = jnp.linalg.eigh(K)
    n = K.shape[0]
    tol = n * jnp.finfo(K.dtype).eps * jnp.max(jnp.abs(lam))
    clipped = jnp.where(lam > tol, lam, jnp.zeros_like(lam))
    return clipped, V, jnp.min(lam), jnp.max(lam), tol


def _spectrum(K: jax.Array, name: str) -> tuple[jax.Array, jax.Array]:
    """Eigenpairs ``K = V diag(lambda) V^T`` of a symmetric PSD ``K``; eigenvalues below
    ``n eps lambda_max`` are set to exactly 0. Raises ``ValueError`` (concrete input) if
    ``K`` has a clearly negative eigenvalue (below ``-100 n eps lambda_max``)."""
    lam, V, lam_min, lam_max, tol = _eigh_clipped(K)
    if is_concrete(lam_min):
        if float(lam_min) < -100 * float(tol):
            raise ValueError(f"{name} must be positive semi-definite (a kernel Gram "
                             "matrix); its smallest eigenvalue is "
                             f"{float(lam_min):.3g} (largest {float(lam_max):.3g})")
    else:
        value_check(lam_min >= -100 * tol,
                    f"{name} must be positive semi-definite (a kernel Gram matrix)")
    return lam, V


def _rotate(V: jax.Array, diag: jax.Array, x: jax.Array) -> jax.Array:
    """``V diag(d) V^T x`` for ``d`` of shape ``(T, n)`` or ``(n,)``; ``x`` of shape
    ``(n,)`` or ``(n, k)``. The output has the leading axes of ``d`` followed by the
    shape of ``x``."""
    c = V.T @ x                                   # (n,) or (n, k)
    d = diag.reshape(diag.shape + (1,) * (x.ndim - 1))
    spec = "ij,...j->...i" if x.ndim == 1 else "ij,...jk->...ik"
    return jnp.einsum(spec, V, d * c)


def _decay(lam: jax.Array, t: jax.Array) -> jax.Array:
    """``exp(-lambda t)``, shape ``t.shape + lam.shape``; 1 on the null space even at
    t = inf (and 0 on the range at t = inf, with a zero derivative: no ``inf * 0``)."""
    t = t[..., None]
    finite = jnp.isfinite(t)
    pos = lam > 0
    lt = jnp.where(pos & finite, lam * jnp.where(finite, t, 0), jnp.zeros_like(lam))
    return jnp.where(pos & ~finite, jnp.zeros_like(lt), jnp.exp(-lt))


def _g(lam: jax.Array, t: jax.Array) -> jax.Array:
    """``(1 - exp(-lambda t)) / lambda`` on the range of ``K`` (``1/lambda`` at t = inf:
    the pseudo-inverse) and 0 on its null space; shape ``t.shape + lam.shape``."""
    pos = lam > 0
    safe = jnp.where(pos, lam, jnp.ones_like(lam))
    t = t[..., None]
    finite = jnp.isfinite(t)
    on_range = jnp.where(finite, -jnp.expm1(-safe * jnp.where(finite, t, 0)), 1) / safe
    return jnp.where(pos, on_range, jnp.zeros_like(on_range))


@jax.jit
def _flow(lam: jax.Array, V: jax.Array, r0: jax.Array, t: jax.Array) -> jax.Array:
    return _rotate(V, _decay(lam, t.astype(lam.dtype)), r0.astype(lam.dtype))


@jax.jit
def _predict_train(lam, V, y, f0_train, t):
    y = y.astype(lam.dtype)
    r0 = jnp.broadcast_to(f0_train, y.shape).astype(lam.dtype) - y
    return y + _rotate(V, _decay(lam, t.astype(lam.dtype)), r0), r0


@jax.jit
def _predict_test(lam, V, r0, Ks, f0_test, t):
    alpha = _rotate(V, _g(lam, t.astype(lam.dtype)), -r0)   # K^+(I - e^{-Kt})(y - f0)
    spec = "mn,...n->...m" if r0.ndim == 1 else "mn,...nk->...mk"
    out = jnp.einsum(spec, Ks.astype(lam.dtype), alpha)
    return out + jnp.broadcast_to(f0_test,
                                  out.shape[out.ndim - r0.ndim:]).astype(lam.dtype)


@jax.jit
def _bound(l0, lambda_min, t):
    rate = 2 * lambda_min * t
    rate = jnp.where(jnp.isnan(rate), jnp.zeros_like(rate), rate)   # 0 * inf
    return l0 * jnp.exp(-rate)


# --------------------------------------------------------------------------- public API
def residual_flow(H: Any, r0: Any, t: Any) -> jax.Array:
    r"""Residual of gradient flow on the sum loss: ``r(t) = exp(-H t) r0``.

    Solves ``dr/dt = -H r`` exactly through the eigendecomposition
    ``H = V diag(lambda) V^T``: ``r(t) = V diag(exp(-lambda t)) V^T r0``. Rounding-level
    eigenvalues (``|lambda| <= n eps lambda_max``) count as 0; ``t = inf`` gives the
    projection of ``r0`` on the null space of ``H``. (For a mean-loss time ``t_mean``
    pass ``t = t_mean / (n k)`` for ``r0`` of shape ``(n, k)``, ``t_mean / n`` for
    ``(n,)``.)

    Args:
        H: symmetric positive semi-definite ``(n, n)`` matrix (the NTK Gram matrix).
        r0: initial residual ``u(0) - y``, shape ``(n,)`` or ``(n, k)``.
        t: time ``>= 0``: a scalar, ``inf``, or a 1-D array of ``T`` times.

    Returns:
        ``r(t)``: shape of ``r0``, with a leading axis of length ``T`` for 1-D ``t``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> r = ntk.residual_flow(jnp.diag(jnp.array([1.0, 0.0])), jnp.ones(2), jnp.inf)
    >>> r.tolist()                                  # the null-space part stays
    [0.0, 1.0]
    """
    H = _check_kernel(H, "H")
    r0 = _check_targets(r0, "r0", H.shape[0], "H")
    t = check_time(t, "t")
    lam, V = _spectrum(H.astype(jnp.result_type(H, r0)), "H")
    return _flow(lam, V, r0, t)


def predict(K_train: Any, y: Any, t: Any, *, K_test_train: Any = None,
            f0_train: Any = 0.0, f0_test: Any = None, diag_reg: float = 0.0,
            diag_reg_relative: bool = False) -> Prediction:
    r"""Outputs of the linearized model trained by gradient flow on the sum loss for
    time ``t``.

    With ``K = K_train = V diag(lambda) V^T`` and ``K_* = K_test_train``:

    .. code-block:: text

        f_train(t) = y + exp(-K t) (f0_train - y)
        f_test(t)  = f0_test + K_* K^{-1} (I - exp(-K t)) (y - f0_train)

    where ``K^{-1}(I - exp(-K t)) = V diag(g) V^T``, ``g = -expm1(-lambda t) / lambda``
    on the range of ``K`` and ``g = 0`` on its null space (see the module docstring). At
    ``t = inf``, ``g = 1/lambda`` on the range (the pseudo-inverse): ``f_test`` is then
    the minimum-norm kernel interpolant, equal to
    :func:`ntk_companion.regression.kernel_regression` with ``ridge = 0`` when ``K`` is
    positive definite, and ``f_train = y`` on the range of ``K``. A singular ``K`` is
    allowed at every ``t``. (Mean-loss time ``t_mean`` corresponds to
    ``t = t_mean / (n k)`` for targets of shape ``(n, k)``, ``t_mean / n`` for ``(n,)``:
    module docstring.)

    Args:
        K_train: ``(n, n)`` symmetric PSD kernel on the training inputs (e.g. the NTK).
        y: targets, ``(n,)`` or ``(n, k)``.
        t: time ``>= 0``: scalar, ``inf`` or a 1-D array of ``T`` times
            (leading output axis).
        K_test_train: ``(m, n)`` kernel between test and training inputs, optional.
        f0_train: outputs at initialization on the training inputs (scalar or exactly
            the shape of ``y``).
        f0_test: outputs at initialization on the test inputs (scalar or exactly
            ``(m,)`` / ``(m, k)``); default 0. Only with ``K_test_train``.
        diag_reg: ``s >= 0`` added to the diagonal of ``K_train`` before everything
            (neural-tangents' ``diag_reg``): the flow is that of ``K_train + s I``, and
            at ``t = inf`` with ``f0 = 0`` the test outputs are kernel ridge regression
            with ridge ``s``. Default 0 (no regularization).
        diag_reg_relative: ``False`` (default): ``s = diag_reg``; ``True``:
            ``s = diag_reg * tr(K_train) / n``, relative to the mean diagonal
            (neural-tangents' default, ``diag_reg_absolute_scale=False``).

    Returns:
        ``Prediction(train, test)``; ``test`` is ``None`` without ``K_test_train``.

    Example (at ``t = inf`` the training outputs interpolate the targets):

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> K = jnp.array([[2.0, 1.0], [1.0, 2.0]])
    >>> pred = ntk.predict(K, jnp.array([1.0, -1.0]), jnp.inf, K_test_train=K[:1])
    >>> [round(float(v), 6) for v in pred.train], round(float(pred.test[0]), 6)
    ([1.0, -1.0], 1.0)
    >>> ridge = ntk.predict(K, jnp.array([1.0, -1.0]), jnp.inf, K_test_train=K[:1],
    ...                     diag_reg=0.5, diag_reg_relative=True)   # s = 0.5 * 2 = 1
    >>> round(float(ridge.test[0]), 6)      # K_* (K + I)^{-1} y = (2, 1) (0.5, -0.5)
    0.5
    """
    K = _check_kernel(K_train, "K_train")
    n = K.shape[0]
    y = _check_targets(y, "y", n, "K_train")
    f0_train = _check_outputs(f0_train, "f0_train", y.shape)
    Ks = None
    if K_test_train is not None:
        Ks = check_test_train(K_test_train, n)
        f0_test = _check_outputs(0.0 if f0_test is None else f0_test, "f0_test",
                                 (Ks.shape[0],) + y.shape[1:])
    elif f0_test is not None:
        raise ValueError("f0_test was given without K_test_train: the test outputs "
                         "need the kernel between test and training inputs (pass "
                         "K_test_train)")
    t = check_time(t, "t")
    diag_reg = _check_diag_reg(diag_reg, diag_reg_relative)
    K = _regularize(K.astype(jnp.result_type(K, y, f0_train)), diag_reg,
                    diag_reg_relative)
    lam, V = _spectrum(K, "K_train")
    train, r0 = _predict_train(lam, V, y, f0_train, t)
    test = None if Ks is None else _predict_test(lam, V, r0, Ks, f0_test, t)
    return Prediction(train=train, test=test)


def loss_bound(l0: Any, lambda_min: Any, t: Any) -> jax.Array:
    r"""The bound ``l(t) <= l(0) exp(-2 lambda_min t)`` of gradient flow on the sum
    loss.

    From ``dl/dt = -r^T H r <= -2 lambda_min(H) l`` (Gronwall). Valid for any
    ``lambda_min`` not above the smallest eigenvalue of ``H`` along the flow (a negative
    value is allowed and gives a weaker bound). At ``t = inf`` with ``lambda_min = 0``
    it is ``l0``.

    Args:
        l0: initial loss ``>= 0`` (scalar).
        lambda_min: lower bound on the smallest eigenvalue of ``H`` (scalar).
        t: time ``>= 0``: scalar, ``inf`` or 1-D array.

    Returns:
        ``l0 * exp(-2 lambda_min t)``, with the shape of ``t``.

    >>> import ntk_companion as ntk
    >>> round(float(ntk.loss_bound(2.0, 0.5, 1.0)), 6)      # 2 exp(-1)
    0.735759
    """
    l0 = check_scalar(l0, "l0", nonnegative=True)
    lambda_min = check_scalar(lambda_min, "lambda_min")
    t = check_time(t, "t")
    return _bound(jnp.asarray(l0, t.dtype), jnp.asarray(lambda_min, t.dtype), t)


def train_loss_curve(K_train: Any, y: Any, t: Any, f0_train: Any = 0.0) -> jax.Array:
    r"""Training loss ``l(t) = 1/2 ||r(t)||^2`` of the linearized model under gradient
    flow, with ``r(t) = exp(-K t)(f0_train - y)`` (see :func:`residual_flow`).

    Args:
        K_train: ``(n, n)`` symmetric PSD kernel.
        y: targets ``(n,)`` or ``(n, k)``.
        t: time(s) ``>= 0``: scalar, ``inf`` or 1-D array.
        f0_train: initial outputs (scalar or shape of ``y``).

    Returns:
        scalar for scalar ``t``, shape ``(T,)`` for 1-D ``t``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> curve = ntk.train_loss_curve(jnp.eye(2), jnp.ones(2), jnp.array([0.0, jnp.inf]))
    >>> curve.tolist()                              # 1/2 ||y||^2, then 0
    [1.0, 0.0]
    """
    K = _check_kernel(K_train, "K_train")
    y = _check_targets(y, "y", K.shape[0], "K_train")
    f0 = _check_outputs(f0_train, "f0_train", y.shape)
    t = check_time(t, "t")
    lam, V = _spectrum(K.astype(jnp.result_type(K, y, f0)), "K_train")
    return _loss_curve(lam, V, y, f0, t)


@jax.jit
def _loss_curve(lam, V, y, f0, t):
    r = _flow(lam, V, jnp.broadcast_to(f0, y.shape) - y, t)
    axes = tuple(range(r.ndim - y.ndim, r.ndim))
    return 0.5 * jnp.sum(r * r, axis=axes)
