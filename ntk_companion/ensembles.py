"""Ensembles of networks: many initializations at once, the map between parameterizations,
and sample kurtosis. (The Gaussian process of an ensemble trained in the kernel regime is
:func:`~ntk_companion.predict_ensemble`, module :mod:`ntk_companion.ensemble`.)

* :func:`init_ensemble` draws ``len(keys)`` initializations of an :class:`~ntk_companion.MLP`,
  stacked on a leading axis (the layout that ``jax.vmap`` and
  :func:`~ntk_companion.nested_params` expect).
* :func:`to_standard` maps NTK-parameterized parameters to the standard parameterization,
  ``W_bar = (W_std / sqrt(fan_in)) W``, ``b_bar = b_std b``: the same function.
* :func:`standard_ntk_factors` is the diagonal ``D`` with ``K_SP = G D G^T``, where ``G`` is
  the Jacobian in the NTK parameterization: ``fan_in / W_std^2`` for weights, ``1 / b_std^2``
  for biases.
* :func:`excess_kurtosis` estimates ``E[f^4] / E[f^2]^2 - 3`` of a centred symmetric sample,
  with its delta-method standard error.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._validation import as_array, check_int
from .models import MLP, Params

__all__ = ["init_ensemble", "to_standard", "standard_ntk_factors", "excess_kurtosis"]


def _check_mlp(model: Any) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an ntk_companion.MLP, got {type(model).__name__}")
    return model


def _layers(params: Any) -> list:
    if not isinstance(params, (list, tuple)) or not params or not all(
            isinstance(layer, dict) and "W" in layer for layer in params):
        raise TypeError("params must be an MLP parameter list of layers {'W': ..., 'b': ...}")
    return list(params)


def init_ensemble(model: MLP, keys: jax.Array, d_in: int, dtype: Any = None) -> Params:
    """Initializations of ``model``, one per key, stacked on a leading axis.

    In the NTK parameterization every parameter is an independent standard normal,
    ``theta_0 ~ N(0, I_P)``, so each initialization is one normal vector of length ``P``
    drawn from its key and reshaped into the layer list of ``MLP.init``. The values are drawn
    in float32 and cast to ``dtype``, so a float32 and a float64 ensemble from the same keys
    hold the same networks up to float32 rounding. In the standard parameterization the same
    draws are mapped by :func:`to_standard` (one key gives the same function in both).

    Args:
        model: the :class:`~ntk_companion.MLP`.
        keys: an array of ``jax.random`` keys, shape ``(S,)`` (e.g. ``jax.random.split``).
        d_in: input dimension.
        dtype: floating dtype of the result; default float64 when x64 is enabled.

    Returns:
        The parameter list of ``model`` with a leading axis of length ``S`` on every leaf.

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
    ``dataclasses.replace(model, parameterization="standard").apply(to_standard(model, p), x)``
    equals ``model.apply(p, x)``. Leaves may carry leading batch axes (an ensemble); the
    fan-in is the second-to-last axis of each ``W``.

    >>> net = MLP(hidden=(4,), W_std=2.0)
    >>> p = net.init(jax.random.PRNGKey(0), 1)
    >>> bool(jnp.allclose(to_standard(net, p)[0]["W"], p[0]["W"] * 2.0))
    True
    """
    model = _check_mlp(model)
    out = []
    for layer in _layers(params):
        fan_in = jnp.shape(layer["W"])[-2]
        new = {"W": (model.W_std / math.sqrt(fan_in)) * layer["W"]}
        if "b" in layer:
            new["b"] = model.b_std * layer["b"]
        out.append(new)
    return out


def standard_ntk_factors(model: MLP, params: Params) -> jax.Array:
    """The diagonal ``D`` of ``K_SP = G D G^T``, in ``ravel_pytree`` order of ``params``.

    ``G`` is the Jacobian of the NTK-parameterized network and ``K_SP`` the empirical NTK of
    the same network in the standard parameterization: by the chain rule a weight of a layer
    with fan-in ``n`` contributes with the factor ``n / W_std^2`` and a bias with
    ``1 / b_std^2``. ``params`` is one (unbatched) parameter list; only its shapes are used.

    >>> net = MLP(hidden=(3,), W_std=1.0, b_std=0.5)
    >>> D = standard_ntk_factors(net, net.init(jax.random.PRNGKey(0), 2))
    >>> [float(v) for v in D[:1]], D.shape
    ([2.0], (13,))
    """
    model = _check_mlp(model)
    factors = []
    for layer in _layers(params):
        W = layer["W"]
        if jnp.ndim(W) != 2:
            raise ValueError(f"params must be one parameter list without batch axes, got a "
                             f"weight of shape {jnp.shape(W)}")
        new = {"W": jnp.full(jnp.shape(W), jnp.shape(W)[0] / model.W_std ** 2, W.dtype)}
        if "b" in layer:
            new["b"] = jnp.full(jnp.shape(layer["b"]), 1.0 / model.b_std ** 2, W.dtype)
        factors.append(new)
    return ravel_pytree(factors)[0]


def excess_kurtosis(samples: Any) -> tuple[float, float]:
    """Sample excess kurtosis of a centred, symmetric sample and its standard error.

    With the mean known to be zero and sample moments ``mu_k = mean(f^k)``, the estimate is
    ``mu_4 / mu_2^2 - 3``; its delta-method variance for a symmetric distribution is

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
