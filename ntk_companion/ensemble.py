r"""Ensembles of networks: many initializations at once, the map between
parameterizations, the sample kurtosis, and the predictive distribution of an ensemble
of infinitely wide networks trained by gradient flow.

Finite ensembles
----------------

* :func:`init_ensemble` draws ``len(keys)`` initializations of
  an :class:`~ntk_companion.MLP`, stacked on a leading axis (the layout that
  ``jax.vmap`` and
  :func:`~ntk_companion.nested_params` expect).
* :func:`to_standard` maps NTK-parameterized parameters to the standard
  parameterization, ``W_bar = (W_std / sqrt(fan_in)) W``, ``b_bar = b_std b``: the same
  function.
* :func:`standard_ntk_factors` is the diagonal ``D`` with ``K_SP = G D G^T``, where
  ``G`` is the Jacobian in the NTK parameterization: ``fan_in / W_std^2`` for weights,
  ``1 / b_std^2`` for biases.
* :func:`excess_kurtosis` estimates ``E[f^4] / E[f^2]^2 - 3`` of a centred symmetric
  sample, with its delta-method standard error.

The trained infinite-width ensemble
-----------------------------------

:func:`predict_ensemble` follows Lee et al. 2019 ("Wide neural networks of any depth
evolve as linear models under gradient descent", Section 2.3 and Appendix).

At initialization the outputs of an infinitely wide network are a centred Gaussian
process with covariance the NNGP kernel ``K``, and its NTK ``Theta`` is deterministic
and constant during training. Gradient flow on the sum loss ``1/2 ||f(X) - y||^2`` for
time ``t`` moves the outputs linearly (:mod:`ntk_companion.dynamics`),

.. code-block:: text

    f*(t) = f*(0) + A(t) (y - f(X; 0)),   A(t) = Theta_* Theta^{-1} (I - exp(-Theta t)),

so over random initializations ``f*(t)`` is Gaussian with

.. code-block:: text

    mean(t) = A(t) y
    cov(t)  = K_** - A(t) K_*^T - K_* A(t)^T + A(t) K A(t)^T

(``K = K(X, X)``, ``K_* = K(X*, X)``, ``K_** = K(X*, X*)`` the NNGP blocks; ``Theta``,
``Theta_*`` the NTK blocks). ``get="nngp"`` replaces ``Theta`` by ``K`` (training the
readout layer only): then ``cov(t) = K_** - K_* K^{-1} (I - exp(-2 K t)) K_*^T`` and at
``t = inf`` the pair is the Bayesian posterior of the NNGP,
``K_* (K + s I)^{-1} y`` and ``K_** - K_* (K + s I)^{-1} K_*^T`` with noise variance
``s`` the diagonal regularizer. At ``t = inf``, ``Theta^{-1}(I - exp(-Theta t))`` is the
pseudo-inverse of ``Theta`` (exactly as in :func:`ntk_companion.predict`).

``diag_reg`` is added to the diagonal of both training blocks ``K`` and ``Theta``
(neural-tangents' convention), as an absolute value or, with ``diag_reg_relative=True``,
times each block's mean diagonal ``tr(K) / n``. The time is that of the sum loss: a mean
loss over ``n k`` entries with learning rate ``eta`` runs ``t = eta steps / (n k)``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._validation import as_array, check_choice, check_int, check_symmetric, check_time
from .analytic import Kernels
from .dynamics import (_check_diag_reg, _check_kernel, _check_targets, _g, _regularize,
                       _spectrum)
from .models import MLP, Params, _layer_list

__all__ = ["Gaussian", "predict_ensemble", "init_ensemble", "to_standard",
           "standard_ntk_factors", "excess_kurtosis"]


def _check_mlp(model: Any) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError("model must be an ntk_companion.MLP, got "
                        f"{type(model).__name__}")
    return model


def init_ensemble(model: MLP, keys: jax.Array, d_in: int, dtype: Any = None) -> Params:
    """Initializations of ``model``, one per key, stacked on a leading axis.

    In the NTK parameterization every parameter is an independent standard normal,
    ``theta_0 ~ N(0, I_P)``, so each initialization is one normal vector of length ``P``
    drawn from its key and reshaped into the layer list of ``MLP.init``. The values are
    drawn in float32 and cast to ``dtype``, so a float32 and a float64 ensemble from the
    same keys hold the same networks up to float32 rounding. In the standard
    parameterization the same draws are mapped by :func:`to_standard` (one key gives the
    same function in both).

    Args:
        model: the :class:`~ntk_companion.MLP`.
        keys: an array of ``jax.random`` keys, shape ``(S,)`` (e.g.
            ``jax.random.split``).
        d_in: input dimension.
        dtype: floating dtype of the result; default float64 when x64 is enabled.

    Returns:
        The parameter list of ``model`` with a leading axis of length ``S`` on every
        leaf.

    >>> net = MLP(hidden=(16,), activation="relu")
    >>> ens = init_ensemble(net, jax.random.split(jax.random.PRNGKey(0), 5), 3)
    >>> [layer["W"].shape for layer in ens]
    [(5, 3, 16), (5, 16, 1)]
    """
    model = _check_mlp(model)
    d_in = check_int(d_in, "d_in", minimum=1)
    keys = jnp.asarray(keys)
    if not (jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) or
            (keys.dtype == jnp.uint32 and keys.ndim == 2 and keys.shape[-1] == 2)):
        raise TypeError("keys must be an array of jax.random keys, e.g. "
                        "jax.random.split(jax.random.PRNGKey(0), S)")
    if keys.shape[0] < 1:
        raise ValueError("keys must hold at least one key")
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    elif not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    ntk_model = dataclasses.replace(model, parameterization="ntk")
    template = jax.eval_shape(lambda k: ntk_model.init(k, d_in, dtype=dtype), keys[0])
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), template)
    _, unravel = ravel_pytree(zeros)
    P = ntk_model.num_params(d_in)

    def draw(key):
        return unravel(jax.random.normal(key, (P,), jnp.float32).astype(dtype))

    params = jax.jit(jax.vmap(draw))(keys)
    if model.parameterization == "standard":
        params = to_standard(ntk_model, params)
    return params


def to_standard(model: MLP, params: Params) -> Params:
    """Map NTK-parameterized parameters of ``model`` to the standard parameterization.

    ``W_bar = (W_std / sqrt(fan_in)) W`` and ``b_bar = b_std b`` layer by layer, so that
    ``model_sp.apply(to_standard(model, p), x)`` equals ``model.apply(p, x)`` for
    ``model_sp = dataclasses.replace(model, parameterization="standard")``. Leaves may
    carry leading batch axes (an ensemble); the fan-in is the second-to-last axis of
    each ``W``.

    >>> net = MLP(hidden=(4,), W_std=2.0)
    >>> p = net.init(jax.random.PRNGKey(0), 1)
    >>> bool(jnp.allclose(to_standard(net, p)[0]["W"], p[0]["W"] * 2.0))
    True
    """
    model = _check_mlp(model)
    out = []
    for layer in _layer_list(params):
        fan_in = jnp.shape(layer["W"])[-2]
        new = {"W": (model.W_std / math.sqrt(fan_in)) * layer["W"]}
        if "b" in layer:
            new["b"] = model.b_std * layer["b"]
        out.append(new)
    return out


def standard_ntk_factors(model: MLP, params: Params) -> jax.Array:
    """The diagonal ``D`` of ``K_SP = G D G^T``, in ``ravel_pytree`` order of
    ``params``.

    ``G`` is the Jacobian of the NTK-parameterized network and ``K_SP`` the empirical
    NTK of the same network in the standard parameterization: by the chain rule a weight
    of a layer with fan-in ``n`` contributes with the factor ``n / W_std^2`` and a bias
    with ``1 / b_std^2``. ``params`` is one (unbatched) parameter list; only its shapes
    are used.

    >>> net = MLP(hidden=(3,), W_std=1.0, b_std=0.5)
    >>> D = standard_ntk_factors(net, net.init(jax.random.PRNGKey(0), 2))
    >>> [float(v) for v in D[:1]], D.shape
    ([2.0], (13,))
    """
    model = _check_mlp(model)
    factors = []
    for layer in _layer_list(params):
        W = layer["W"]
        if jnp.ndim(W) != 2:
            raise ValueError("params must be one parameter list without batch axes, "
                             f"got a weight of shape {jnp.shape(W)}")
        new = {"W": jnp.full(jnp.shape(W), jnp.shape(W)[0] / model.W_std ** 2, W.dtype)}
        if "b" in layer:
            new["b"] = jnp.full(jnp.shape(layer["b"]), 1.0 / model.b_std ** 2, W.dtype)
        factors.append(new)
    return ravel_pytree(factors)[0]


def excess_kurtosis(samples: Any) -> tuple[float, float]:
    """Sample excess kurtosis of a centred, symmetric sample and its standard error.

    With the mean known to be zero and sample moments ``mu_k = mean(f^k)``, the estimate
    is ``mu_4 / mu_2^2 - 3``; its delta-method variance for a symmetric distribution is

        (1/N) [ (mu_8 - mu_4^2) / mu_2^4 - 4 mu_4 (mu_6 - mu_2 mu_4) / mu_2^5
                + 4 mu_4^2 (mu_4 - mu_2^2) / mu_2^6 ],

    evaluated with the sample moments. Computed in float64 (NumPy).

    Args:
        samples: 1-D array of ``N >= 8`` draws.

    Returns:
        ``(kurtosis, standard_error)`` as Python floats.

    >>> k, se = excess_kurtosis(np.random.default_rng(0).standard_normal(100_000))
    >>> abs(k) < 4 * se
    True
    """
    f = np.asarray(as_array(samples, "samples"), dtype=np.float64)
    if f.ndim != 1:
        raise ValueError(f"samples must be a 1-D array, got shape {f.shape}")
    if f.size < 8:
        raise ValueError(f"samples must hold at least 8 draws, got {f.size}")
    if not np.all(np.isfinite(f)):
        raise ValueError("samples must be finite")
    m2, m4, m6, m8 = (float(np.mean(f ** k)) for k in (2, 4, 6, 8))
    if m2 == 0.0:
        raise ValueError("samples must not all be zero")
    var = ((m8 - m4 ** 2) / m2 ** 4 - 4 * m4 * (m6 - m2 * m4) / m2 ** 5
           + 4 * m4 ** 2 * (m4 - m2 ** 2) / m2 ** 6) / f.size
    return m4 / m2 ** 2 - 3.0, math.sqrt(max(var, 0.0))



class Gaussian(NamedTuple):
    """Mean and covariance of a Gaussian predictive distribution over ``m`` test inputs.

    Attributes:
        mean: shape ``(m,)`` (or ``(m, k)`` for ``k`` outputs), with a leading axis
            ``T`` for ``T`` times.
        cov: shape ``(m, m)`` (the same for every output), with a leading axis ``T``.

    At ``t = 0`` it is the prior: mean zero and the NNGP covariance ``K(X*, X*)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x, xs = jnp.array([[1.0, 2.0], [3.0, 0.0]]), jnp.array([[0.0, 1.0]])
    >>> prior = ntk.predict_ensemble(
    ...     ntk.analytic_kernels(x, depth=1), jnp.array([1.0, -1.0]), 0.0,
    ...     k_test_train=ntk.analytic_kernels(xs, x, depth=1),
    ...     k_test=ntk.analytic_kernels(xs, depth=1))
    >>> float(prior.mean[0]), float(prior.cov[0, 0])      # relu: |x*|^2 / (2 d) = 1/4
    (0.0, 0.25)
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
        raise ValueError(f"{name}.nngp and {name}.ntk must be matrices of one shape, "
                         f"got {tuple(nngp.shape)} and {tuple(ntk.shape)}")
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
        get: ``"ntk"`` (the whole network trained, Lee et al. 2019) or ``"nngp"``
            (readout only; at ``t = inf`` the NNGP posterior).
        diag_reg: ``>= 0``, added to the diagonal of the training blocks.
        diag_reg_relative: when true, ``diag_reg`` is relative to each training block's
            mean diagonal.

    Returns:
        ``Gaussian(mean, cov)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> xs = jnp.array([[1.0, 0.0]])
    >>> post = ntk.predict_ensemble(ntk.analytic_kernels(x, depth=1),
    ...                             jnp.array([1.0, -1.0]), jnp.inf,
    ...                             k_test_train=ntk.analytic_kernels(xs, x, depth=1),
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
        raise ValueError(f"k_test_train must have {n} columns (one per training "
                         f"input), got shape {tuple(Ks.shape)}")
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
