r"""The predictive distribution of an ensemble of infinitely wide networks trained by
gradient flow (Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
under gradient descent", Section 2.3 and Appendix).

At initialization the outputs of an infinitely wide network are a centred Gaussian process
with covariance the NNGP kernel ``K``, and its NTK ``Theta`` is deterministic and constant
during training. Gradient flow on the sum loss ``1/2 ||f(X) - y||^2`` for time ``t`` moves
the outputs linearly (:mod:`ntk_companion.dynamics`),

.. code-block:: text

    f*(t) = f*(0) + A(t) (y - f(X; 0)),     A(t) = Theta_* Theta^{-1} (I - exp(-Theta t)),

so over random initializations ``f*(t)`` is Gaussian with

.. code-block:: text

    mean(t) = A(t) y
    cov(t)  = K_** - A(t) K_*^T - K_* A(t)^T + A(t) K A(t)^T

(``K = K(X, X)``, ``K_* = K(X*, X)``, ``K_** = K(X*, X*)`` the NNGP blocks; ``Theta``,
``Theta_*`` the NTK blocks). ``get="nngp"`` replaces ``Theta`` by ``K`` (training the
readout layer only): then ``cov(t) = K_** - K_* K^{-1} (I - exp(-2 K t)) K_*^T`` and at
``t = inf`` the pair is the Bayesian posterior of the NNGP,
``K_* (K + s I)^{-1} y`` and ``K_** - K_* (K + s I)^{-1} K_*^T`` with noise variance ``s``
the diagonal regularizer. At ``t = inf``, ``Theta^{-1}(I - exp(-Theta t))`` is the
pseudo-inverse of ``Theta`` (exactly as in :func:`ntk_companion.predict`).

``diag_reg`` is added to the diagonal of both training blocks ``K`` and ``Theta``
(neural-tangents' convention), as an absolute value or, with ``diag_reg_relative=True``,
times each block's mean diagonal ``tr(K) / n``. The time is that of the sum loss: a mean
loss over ``n k`` entries with learning rate ``eta`` runs ``t = eta steps / (n k)``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._validation import as_array, check_choice, check_symmetric, check_time
from .analytic import Kernels
from .dynamics import (_check_diag_reg, _check_kernel, _check_targets, _g, _regularize,
                       _spectrum)

__all__ = ["Gaussian", "predict_ensemble"]


class Gaussian(NamedTuple):
    """Mean and covariance of a Gaussian predictive distribution over ``m`` test inputs.

    Attributes:
        mean: shape ``(m,)`` (or ``(m, k)`` for ``k`` outputs), with a leading axis ``T``
            for ``T`` times.
        cov: shape ``(m, m)`` (the same for every output), with a leading axis ``T``.
    """

    mean: jax.Array
    cov: jax.Array


def _block(kernels: Any, name: str, get: str) -> tuple[jax.Array, jax.Array]:
    if not isinstance(kernels, Kernels):
        raise TypeError(f"{name} must be ntk_companion.Kernels(nngp, ntk) (e.g. from "
                        f"analytic_kernels), got {type(kernels).__name__}")
    nngp = as_array(kernels.nngp, f"{name}.nngp")
    ntk = nngp if get == "nngp" else as_array(kernels.ntk, f"{name}.ntk")
    if nngp.ndim != 2 or ntk.shape != nngp.shape:
        raise ValueError(f"{name}.nngp and {name}.ntk must be matrices of one shape, got "
                         f"{tuple(nngp.shape)} and {tuple(ntk.shape)}")
    return nngp, ntk


def predict_ensemble(k_train: Kernels, y: Any, t: Any, *, k_test_train: Kernels,
                     k_test: Kernels, get: str = "ntk", diag_reg: float = 0.0,
                     diag_reg_relative: bool = False) -> Gaussian:
    r"""Mean and covariance of the test outputs of infinitely wide networks trained by
    gradient flow for time ``t``, over random initializations (module docstring).

    Args:
        k_train: ``Kernels(nngp, ntk)`` on the training inputs, ``(n, n)`` each.
        y: targets, ``(n,)`` or ``(n, k)``.
        t: time ``>= 0`` of the sum loss: scalar, ``inf``, or 1-D (leading output axis).
        k_test_train: ``Kernels`` between test and training inputs, ``(m, n)``.
        k_test: ``Kernels`` on the test inputs, ``(m, m)`` (only its ``nngp`` is used).
        get: ``"ntk"`` (the whole network trained, Lee et al. 2019) or ``"nngp"`` (readout
            only; at ``t = inf`` the NNGP posterior).
        diag_reg: ``>= 0``, added to the diagonal of the training blocks.
        diag_reg_relative: when true, ``diag_reg`` is relative to each training block's mean
            diagonal.

    Returns:
        ``Gaussian(mean, cov)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> xs = jnp.array([[1.0, 0.0]])
    >>> post = ntk.predict_ensemble(ntk.analytic_kernels(x, depth=1), jnp.array([1.0, -1.0]),
    ...                             jnp.inf, k_test_train=ntk.analytic_kernels(xs, x, depth=1),
    ...                             k_test=ntk.analytic_kernels(xs, depth=1))
    >>> round(float(post.mean[0]), 5), float(post.cov[0, 0]) < 1e-6   # a training input
    (1.0, True)
    """
    check_choice(get, "get", ("ntk", "nngp"))
    K, Theta = _block(k_train, "k_train", get)
    Ks, Theta_s = _block(k_test_train, "k_test_train", get)
    Kss, _ = _block(k_test, "k_test", "nngp")
    K, Theta = _check_kernel(K, "k_train.nngp"), _check_kernel(Theta, "k_train.ntk")
    n = K.shape[0]
    y = _check_targets(y, "y", n, "k_train")
    if Ks.shape[1] != n:
        raise ValueError(f"k_test_train must have {n} columns (one per training input), got "
                         f"shape {tuple(Ks.shape)}")
    m = Ks.shape[0]
    if Kss.shape != (m, m):
        raise ValueError(f"k_test must be ({m}, {m}) to match k_test_train, got shape "
                         f"{tuple(Kss.shape)}")
    check_symmetric(Kss, "k_test.nngp")
    diag_reg = _check_diag_reg(diag_reg, diag_reg_relative)
    t = check_time(t, "t")
    dtype = jnp.result_type(K, Theta, Ks, Theta_s, Kss, y)
    K = _regularize(K.astype(dtype), diag_reg, diag_reg_relative)
    Theta = K if get == "nngp" else _regularize(Theta.astype(dtype), diag_reg,
                                                diag_reg_relative)
    lam, V = _spectrum(Theta, "k_train.ntk" if get == "ntk" else "k_train.nngp")
    _spectrum(K, "k_train.nngp")     # the prior covariance must be PSD too
    mean, cov = _moments(lam, V, K, Ks.astype(dtype), Theta_s.astype(dtype),
                         Kss.astype(dtype), y.astype(dtype), t.astype(dtype))
    return Gaussian(mean=mean, cov=cov)


@jax.jit
def _moments(lam, V, K, Ks, Theta_s, Kss, y, t):
    g = _g(lam, t)                                   # t.shape + (n,)
    A = jnp.einsum("mn,nj,...j,ij->...mi", Theta_s, V, g, V)     # A(t), (..., m, n)
    spec = "...mn,n->...m" if y.ndim == 1 else "...mn,nk->...mk"
    mean = jnp.einsum(spec, A, y)
    AKs = jnp.einsum("...mn,pn->...mp", A, Ks)
    cov = (Kss - AKs - jnp.swapaxes(AKs, -1, -2)
           + jnp.einsum("...mn,nj,...pj->...mp", A, K, A))
    return mean, 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
