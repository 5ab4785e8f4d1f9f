r"""Spectra of dot-product kernels on the sphere, and the learning curves they predict.

Zonal eigenvalues (Mercer decomposition on the sphere)
-------------------------------------------------------
Let ``x`` be uniform on the sphere ``S^{d-1}`` of radius ``sqrt(d)`` (the inputs of the
course, ``x . x / d = 1``) and let the kernel depend on the inputs only through
``t = x . x' / d``: ``K(x, x') = kappa(t)``, as the NNGP kernel and the NTK of an
:class:`~ntk_companion.MLP` do there. The integral operator
``(T f)(x) = E_{x'}[K(x, x') f(x')]`` is diagonal in the spherical harmonics: by the
Funk-Hecke formula every harmonic ``Y`` of degree ``k`` is an eigenfunction with
eigenvalue

.. code-block:: text

    mu_k = E_t[kappa(t) P_k(t)]
         = int_0^pi kappa(cos a) P_k(cos a) sin(a)^(d-2) da / int_0^pi sin(a)^(d-2) da,

of multiplicity ``N(d, k) = (2k + d - 2)/k * binom(k + d - 3, d - 2)``
(``N(d, 0) = 1``), where ``P_k`` is the Gegenbauer polynomial of the dimension
normalized to ``P_k(1) = 1`` (Chebyshev ``cos(k a)`` on the circle ``d = 2``, Legendre
for ``d = 3``), computed by the three-term recurrence
``(k + d - 2) P_{k+1} = (2k + d - 2) t P_k - k P_{k-1}``. Then
``kappa(t) = sum_k N(d, k) mu_k P_k(t)`` (Mercer), and in particular
``kappa(1) = sum_k N(d, k) mu_k``. The integral is taken in the angle ``a``: the
profiles of ReLU networks are analytic in ``a`` on ``[0, pi]`` although not in ``t`` at
``t = 1`` (``kappa(t) ~ sqrt(1 - t)``), so the Gauss-Legendre rule in ``a`` converges
exponentially.

Learning curves of kernel ridge regression (eigenlearning)
-----------------------------------------------------------
Let the operator have eigenvalues ``lambda_i`` with orthonormal eigenfunctions
``phi_i``, the target be ``f*(x) = sum_i v_i phi_i(x)`` and the labels
``y = f*(x) + eps`` with noise of variance ``sigma^2``. Kernel ridge regression
``f = K_* (K + ridge I)^{-1} y`` on ``n`` independent inputs
(:func:`ntk_companion.kernel_regression`, ``K`` the ``n x n`` Gram matrix) has, as ``n``
and the number of relevant modes grow (Bordelon, Canatar & Pehlevan 2020; Canatar,
Bordelon & Pehlevan 2021; Simon et al. 2023), the expected test error
``E = E_x[(f(x) - f*(x))^2]``

.. code-block:: text

    sum_i lambda_i / (lambda_i + kappa) + ridge / kappa = n    (defines kappa > 0)
    L_i = lambda_i / (lambda_i + kappa)                        (learnability of mode i)
    E0 = n / (n - sum_i L_i^2)                                 (overfitting coefficient)
    E = E0 * (sum_i (1 - L_i)^2 v_i^2 + sigma^2) - sigma^2.

``E + sigma^2`` is the error against noisy test labels. ``kappa`` is the effective
regularization: modes with ``lambda_i >> kappa`` are learned, those with
``lambda_i << kappa`` are not, and ``kappa`` decreases as ``n`` grows.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.polynomial.legendre import leggauss

from ._validation import as_array, check_choice, check_int, check_scalar

__all__ = ["LearningCurve", "eigenlearning", "gegenbauer", "harmonic_multiplicity",
           "zonal_eigenvalues", "zonal_profile"]

_KERNELS = ("nngp", "ntk")


def _check_dim(d: Any) -> int:
    return check_int(d, "d", minimum=2)


def harmonic_multiplicity(d: int, k: Any) -> np.ndarray:
    r"""Number ``N(d, k)`` of linearly independent spherical harmonics of degree ``k``
    on ``S^{d-1}``: ``N(d, 0) = 1`` and
    ``N(d, k) = (2k + d - 2)/k * binom(k + d - 3, d - 2)`` for ``k >= 1`` (2 on the
    circle, ``2k + 1`` on ``S^2``).

    Args:
        d: ambient dimension, ``>= 2``.
        k: a degree or a 1-D array of degrees, integers ``>= 0``.

    Returns:
        float64 array of the shape of ``k`` (exact integers up to ``2**53``).

    >>> harmonic_multiplicity(3, [0, 1, 2, 3]).tolist()
    [1.0, 3.0, 5.0, 7.0]
    """
    d = _check_dim(d)
    ks = np.asarray(k)
    if ks.dtype.kind not in "iu" or np.any(ks < 0):
        raise ValueError(f"k must hold integers >= 0, got {k!r}")
    out = np.ones(ks.shape)
    flat = out.reshape(-1)
    for j, kk in enumerate(ks.reshape(-1).tolist()):
        if kk > 0:
            # binom(k + d - 3, d - 2) as a product of ratios, exact for moderate sizes
            b = 1.0
            for i in range(1, d - 1):
                b = b * (kk - 1 + i) / i
            flat[j] = (2 * kk + d - 2) / kk * b
    return out


def gegenbauer(t: Any, k_max: int, d: int) -> np.ndarray:
    r"""Gegenbauer polynomials of ``S^{d-1}`` normalized to ``P_k(1) = 1``, for
    ``k = 0..k_max``, by ``P_0 = 1``, ``P_1 = t`` and
    ``(k + d - 2) P_{k+1}(t) = (2k + d - 2) t P_k(t) - k P_{k-1}(t)``.

    They are orthogonal for the weight ``(1 - t^2)^((d-3)/2)`` on ``[-1, 1]`` (the law
    of ``t = x . x' / d`` for independent uniform points), with
    ``E_t[P_k(t)^2] = 1 / N(d, k)``.

    Args:
        t: array of values in ``[-1, 1]``.
        k_max: largest degree, ``>= 0``.
        d: ambient dimension, ``>= 2``.

    Returns:
        float64 array of shape ``(k_max + 1,) + t.shape``.

    >>> import numpy as np
    >>> bool(np.allclose(gegenbauer(np.cos(0.3), 4, 2), np.cos(0.3 * np.arange(5))))
    True
    """
    d = _check_dim(d)
    k_max = check_int(k_max, "k_max", minimum=0)
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(np.abs(t) > 1):
        raise ValueError("t must hold finite values in [-1, 1]")
    P = np.empty((k_max + 1,) + t.shape)
    P[0] = 1.0
    if k_max >= 1:
        P[1] = t
    for k in range(1, k_max):
        P[k + 1] = ((2 * k + d - 2) * t * P[k] - k * P[k - 1]) / (k + d - 2)
    return P


def zonal_profile(t: Any, *, depth: int, activation: str | Callable = "relu",
                  W_std: float = 1.0, b_std: float = 0.0, kernel: str = "ntk",
                  **kwargs: Any) -> np.ndarray:
    r"""The profile ``kappa(t)`` of the infinite-width NNGP kernel or NTK of ``MLP`` on
    the sphere of radius ``sqrt(d)``: ``K(x, x') = kappa(x . x' / d)`` whatever ``d``.

    It is :func:`ntk_companion.analytic_kernels` evaluated at the pair
    ``x = sqrt(2) (1, 0)``, ``x' = sqrt(2) (t, sqrt(1 - t^2))`` (in two dimensions,
    which gives the same ``x . x / d = x' . x' / d = 1`` and ``x . x' / d = t``); the
    keyword arguments are those of ``analytic_kernels``.

    Args:
        t: 1-D array of correlations in ``[-1, 1]``.
        depth, activation, W_std, b_std: the network, as in ``analytic_kernels``.
        kernel: ``"ntk"`` or ``"nngp"``.
        **kwargs: passed to ``analytic_kernels`` (``order=``, ``quadrature=``).

    Returns:
        float64 array of the shape of ``t`` (enable ``jax_enable_x64``: otherwise the
        kernel is computed in float32).

    >>> import numpy as np
    >>> kappa = zonal_profile(np.array([0.0, 1.0]), depth=1, kernel="nngp")
    >>> bool(np.allclose(kappa, [1 / (2 * np.pi), 0.5], rtol=1e-6))
    True
    """
    from .analytic import analytic_kernels

    kernel = check_choice(kernel, "kernel", _KERNELS)
    t = np.asarray(as_array(t, "t"), dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"t must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(np.abs(t) > 1):
        raise ValueError("t must hold finite values in [-1, 1]")
    x1 = np.array([[np.sqrt(2.0), 0.0]])
    x2 = np.sqrt(2.0) * np.stack([t, np.sqrt(np.clip(1 - t * t, 0, None))], axis=1)
    k = analytic_kernels(x1, x2, depth=depth, activation=activation, W_std=W_std,
                         b_std=b_std, **kwargs)
    return np.asarray(getattr(k, kernel), dtype=np.float64)[0]


def zonal_eigenvalues(d: int, k_max: int, profile: Callable | None = None, *,
                      order: int | None = None, **network: Any) -> np.ndarray:
    r"""Eigenvalues ``mu_0..mu_{k_max}`` of the integral operator of a dot-product
    kernel ``kappa(x . x' / d)`` under the uniform distribution on the sphere of radius
    ``sqrt(d)`` in ``R^d`` (Funk-Hecke):

    ``mu_k = int_0^pi kappa(cos a) P_k(cos a) sin(a)^(d-2) da /
    int_0^pi sin(a)^(d-2) da``,

    each of multiplicity :func:`harmonic_multiplicity` ``(d, k)``. The Gram matrix
    ``K(X, X) / n`` of ``n`` uniform points has these eigenvalues in the limit
    ``n -> infinity``.

    Args:
        d: dimension ``>= 2``.
        k_max: largest degree ``>= 0``.
        profile: a vectorized callable ``kappa(t)`` on ``[-1, 1]``; if omitted, the
            profile of an ``MLP``'s analytic kernel, from :func:`zonal_profile` with the
            keyword arguments ``network`` (``depth=``, ``activation=``, ``W_std=``,
            ``b_std=``, ``kernel=``).
        order: number of Gauss-Legendre nodes in the angle (default
            ``2 k_max + 2 d + 200``; the rule is exact for ``kappa`` a polynomial of
            degree up to ``2 order - k_max - d`` and converges exponentially for a
            profile analytic in the angle, as those of relu and erf networks are). The
            result is accurate to about ``1e-13 * max |kappa|`` *absolute*, the rounding
            of the quadrature
            sum: eigenvalues far below that (high degrees of fast-decaying kernels) are
            rounding noise.
        **network: keyword arguments of :func:`zonal_profile`
            (only without ``profile``).

    Returns:
        float64 array of shape ``(k_max + 1,)``.

    >>> import numpy as np
    >>> mu = zonal_eigenvalues(3, 2, lambda t: t ** 2)   # t^2 = (2 P_2 + 1) / 3 on S^2
    >>> bool(np.allclose(mu, [1 / 3, 0, 2 / 15]))
    True
    """
    d = _check_dim(d)
    k_max = check_int(k_max, "k_max", minimum=0)
    if order is None:
        order = 2 * k_max + 2 * d + 200
    order = check_int(order, "order", minimum=1)
    if profile is None:
        if "depth" not in network:
            raise TypeError("zonal_eigenvalues needs either profile= or the network's "
                            "keyword arguments (depth=, activation=, ...)")
        profile = lambda t: zonal_profile(t, **network)   # noqa: E731
    elif network:
        raise TypeError(f"pass either profile= or network arguments, not both: got "
                        f"{sorted(network)}")
    elif not callable(profile):
        raise TypeError("profile must be a callable kappa(t), got "
                        f"{type(profile).__name__}")
    nodes, weights = leggauss(order)
    a = 0.5 * np.pi * (nodes + 1.0)
    w = weights * np.sin(a) ** (d - 2)
    w = w / w.sum()
    t = np.cos(a)
    kappa = np.asarray(profile(t), dtype=np.float64)
    if kappa.shape != t.shape or not np.all(np.isfinite(kappa)):
        raise ValueError(f"profile(t) must return finite values of shape {t.shape}, "
                         f"got shape {kappa.shape}")
    return gegenbauer(t, k_max, d) @ (w * kappa)


class LearningCurve(NamedTuple):
    """The eigenlearning prediction at each ``n`` (arrays with a leading axis of ``n``).

    Attributes:
        test_error: predicted ``E[(f(x) - f*(x))^2]``, shape ``(len(n),)``.
        kappa: the effective regularization, shape ``(len(n),)``.
        learnability: ``L_i = lambda_i / (lambda_i + kappa)``, shape ``(len(n), M)``.
        overfitting: ``E0 = n / (n - sum_i m_i L_i^2)``, shape ``(len(n),)``.

    >>> import numpy as np
    >>> curve = eigenlearning(np.array([1.0, 0.5, 0.25, 0.125]),
    ...                       np.array([1.0, 1.0, 0.0, 0.0]), [1, 2, 3])
    >>> curve.test_error.shape, bool(np.all(np.diff(curve.test_error) < 0))
    ((3,), True)
    """

    test_error: np.ndarray
    kappa: np.ndarray
    learnability: np.ndarray
    overfitting: np.ndarray


def eigenlearning(eigenvalues: Any, target_power: Any, n: Any, *, ridge: float = 0.0,
                  noise: float = 0.0, multiplicity: Any = None) -> LearningCurve:
    r"""Predicted test error of kernel ridge regression from the kernel's spectrum.

    With eigenvalues ``lambda_i`` (of multiplicity ``m_i``) of the integral operator,
    the target's squared coefficients summed over each eigenspace ``p_i = sum v^2`` and
    label noise of variance ``noise^2``, the effective regularization ``kappa`` solves

    ``sum_i m_i lambda_i / (lambda_i + kappa) + ridge / kappa = n``

    (by bisection in ``log kappa``), and with ``L_i = lambda_i / (lambda_i + kappa)``
    and ``E0 = n / (n - sum_i m_i L_i^2)``

    ``test_error = E0 (sum_i (1 - L_i)^2 p_i + noise^2) - noise^2``,

    the expected ``E_x[(f(x) - f*(x))^2]`` of ``f = K_* (K + ridge I)^{-1} y`` trained
    on ``n`` independent inputs (:func:`ntk_companion.kernel_regression`, whose
    ``ridge`` is the same number). The prediction becomes exact as ``n`` and the number
    of modes grow; at ``n`` of a few tens its error is a few percent.

    Args:
        eigenvalues: 1-D array of positive eigenvalues of the operator (not of the Gram
            matrix: those divided by ``n``).
        target_power: 1-D array ``p_i >= 0`` of the same length.
        n: a number of training points or a 1-D array of them (positive).
        ridge: ``>= 0``. With ``ridge = 0``, ``n`` must be below ``sum_i m_i`` (the
            number of modes), otherwise the interpolation equation has no solution.
        noise: standard deviation of the label noise, ``>= 0``.
        multiplicity: optional 1-D array ``m_i > 0`` (default 1), e.g.
            :func:`harmonic_multiplicity` for a zonal spectrum.

    Returns:
        :class:`LearningCurve` of float64 arrays.

    >>> import numpy as np
    >>> lam = 1.0 / np.arange(1, 2001) ** 2
    >>> lc = eigenlearning(lam, lam, [10, 100], ridge=0.0)
    >>> bool(lc.test_error[1] < lc.test_error[0])
    True
    """
    lam = np.asarray(as_array(eigenvalues, "eigenvalues"), dtype=np.float64)
    p = np.asarray(as_array(target_power, "target_power"), dtype=np.float64)
    for arr, name in ((lam, "eigenvalues"), (p, "target_power")):
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape "
                             f"{arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    if p.shape != lam.shape:
        raise ValueError("target_power must have the shape of eigenvalues "
                         f"{lam.shape}, got {p.shape}")
    if np.any(lam <= 0):
        raise ValueError(f"eigenvalues must be positive (drop the zero ones), got min "
                         f"{lam.min():.3g}")
    if np.any(p < 0):
        raise ValueError("target_power must be >= 0 (squared coefficients)")
    if multiplicity is None:
        m = np.ones_like(lam)
    else:
        m = np.asarray(as_array(multiplicity, "multiplicity"), dtype=np.float64)
        if m.shape != lam.shape or not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise ValueError("multiplicity must hold positive values of shape "
                             f"{lam.shape}")
    ns = np.atleast_1d(np.asarray(n, dtype=np.float64))
    if ns.ndim != 1 or not np.all(np.isfinite(ns)) or np.any(ns <= 0):
        raise ValueError("n must be a positive number or a 1-D array of them, got "
                         f"{n!r}")
    ridge = check_scalar(ridge, "ridge", nonnegative=True)
    noise = check_scalar(noise, "noise", nonnegative=True)
    modes = float(m.sum())
    if ridge == 0 and np.any(ns >= modes):
        raise ValueError(f"with ridge=0, n must be below the number of modes {modes:g} "
                         f"(sum of multiplicities), got max n = {ns.max():g}; pass "
                         f"more eigenvalues or a positive ridge")

    def excess(log_k: np.ndarray) -> np.ndarray:
        k = np.exp(log_k)[:, None]
        reg = ridge / k[:, 0] if ridge > 0 else 0.0
        return (m * lam / (lam + k)).sum(axis=1) + reg - ns

    # excess is decreasing in kappa; bracket the root, then bisect in log kappa
    hi = np.log((float((m * lam).sum()) + ridge) / ns) + 1.0
    lo = (np.log(ridge / ns) - 1.0 if ridge > 0
          else np.full_like(ns, np.log(lam.min()) - 1.0))
    while np.any(bad := excess(lo) <= 0):
        lo = np.where(bad, lo - 10.0, lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        pos = excess(mid) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    kappa = np.exp(0.5 * (lo + hi))
    L = lam / (lam + kappa[:, None])
    e0 = ns / (ns - (m * L ** 2).sum(axis=1))
    err = e0 * (((1 - L) ** 2 * p).sum(axis=1) + noise ** 2) - noise ** 2
    return LearningCurve(err, kappa, L, e0)
