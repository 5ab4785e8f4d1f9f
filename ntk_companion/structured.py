r"""Structured empirical NTK of an :class:`~ntk_companion.MLP`: layer by layer, without
Jacobians.

The math
--------
A dense layer ``l`` (``l = 1 .. L+1``) maps its input ``a^{l-1}`` (width ``n_{l-1}``, with
``a^0 = x``) to ``z^l = c_l a^{l-1} W_l + beta b_l``: NTK parameterization
``c_l = W_std / sqrt(n_{l-1})``, ``beta = b_std``; standard parameterization ``c_l = 1``,
``beta = 1`` (its ``W`` and ``b`` are the raw parameters); maximal-update parameterization as
NTK except the readout's ``c_{L+1} = W_std / n_L`` (``parameterizations.layer_multipliers``).
With the backpropagated signal
``delta^l(x) = d f(x) / d z^l`` (a row vector of width ``n_l``), the gradients are

    d f / d W_l[j, k] = c_l a^{l-1}_j delta^l_k,      d f / d b_l[k] = beta delta^l_k,

so the layer's share of ``K(x, x') = <grad_theta f(x), grad_theta f(x')>`` factorizes:

    K(x, x') = sum_l (delta^l(x) . delta^l(x')) (c_l^2 a^{l-1}(x) . a^{l-1}(x') + beta^2 [bias]).

For the scalar readout ``delta^{L+1} = 1``. On batches ``X1``, ``X2`` with ``A_l`` the
``(n, n_{l-1})`` matrix of the ``a^{l-1}`` and ``D_l`` the ``(n, n_l)`` matrix of the
``delta^l``:

    K(X1, X2) = sum_l (D_l(X1) D_l(X2)^T) * (c_l^2 A_l(X1) A_l(X2)^T + beta^2)   (* entrywise).

Algorithm: one batched forward pass stores the ``A_l``; the ``D_l`` of all ``n`` inputs come
from **one** vector-Jacobian product of the summed output ``sum_i f(x_i)`` with respect to
"taps" (zeros added to the pre-activations ``z^l``): as ``f(x_i)`` depends on row ``i`` of
``z^l`` only, row ``i`` of that gradient is ``delta^l(x_i)``. Then ``2 L + 1`` Gram products.

Cost: the passes take ``O(n P)`` time; the Grams ``O(n1 n2 sum_l (n_{l-1} + n_l))``; memory
``O(n sum_l n_l)`` for the features plus the ``n1 x n2`` result (with ``block_size = b`` the
Grams are computed by ``b x b`` tiles, ``O(b^2)`` temporaries). The Jacobian method needs
``O(n P)`` memory and ``O(n1 n2 P)`` time, with ``P ~ sum_l n_{l-1} n_l``: for hidden widths
``m`` the structured method is about ``m / 2`` times cheaper in the Gram and holds no ``n x P``
Jacobian.

Scope: the empirical NTK of ``ntk_companion`` is for scalar outputs; an ``MLP`` with
``out_dim > 1`` is rejected like by the other methods (for output ``k``, use
``lambda p, x: model.apply(p, x)[:, k]`` with a generic method; with
``out_dim = k`` the kernel would be the ``k x k`` block matrix
``sum_l (D_l^a D_l^b{}^T) * (...)``, one ``D_l`` per output). Every activation works (``delta``
comes from JAX's derivative of the activation, as in the other methods), both
parameterizations, any depth (``hidden=()`` is a linear model), with or without biases, and
any parameter values. The result equals the Jacobian method's to rounding
(``tests/test_performance_paths.py``: relative 1e-10 in float64).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from . import _tiling, sharding
from .models import MLP, _dense, get_activation
from .parameterizations import layer_multipliers

# The public entry is ``empirical_ntk(model.apply, params, x, method="structured")`` (or
# "auto"); the functions here are its machinery, not part of the top-level namespace.
__all__: list[str] = []

Params = list
Features = tuple[list[jax.Array], list[jax.Array]]


def mlp_of(apply_fn: Callable) -> MLP | None:
    """The ``MLP`` whose bound ``apply`` method ``apply_fn`` is, else ``None``."""
    owner = getattr(apply_fn, "__self__", None)
    if isinstance(owner, MLP) and getattr(apply_fn, "__func__", None) is MLP.apply:
        return owner
    return None


def _coefficients(model: MLP, params: Params) -> list[tuple[float, float]]:
    """``(c_l^2, beta^2 [bias])`` of every dense layer."""
    out = []
    for i, layer in enumerate(params):
        fan_in = jnp.shape(layer["W"])[0]
        c_w, c_b = layer_multipliers(model.parameterization, model.W_std, model.b_std, fan_in,
                               readout=i == model.depth)
        out.append((c_w ** 2, c_b ** 2 if "b" in layer else 0.0))
    return out


def features(model: MLP, params: Params, x: jax.Array) -> Features:
    """``(A, D)``: ``A[l]`` = the inputs ``a^l`` of dense layer ``l + 1`` (``l = 0 .. L``,
    ``A[0] = x``), ``D[l]`` = ``d f / d z^{l+1}`` for the hidden layers (``l = 0 .. L-1``;
    the readout's is 1), all of shape ``(n, width)``: one forward pass and one
    vector-Jacobian product. Traceable."""
    sigma = get_activation(model.activation)
    depth = model.depth
    leaves = jax.tree_util.tree_leaves(params)
    dtype = jnp.result_type(x.dtype, *(leaf.dtype for leaf in leaves))
    n = x.shape[0]

    def net(taps: list[jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
        a, acts = x, []
        for i, layer in enumerate(params):
            acts.append(a)
            z = _dense(model, layer, a, readout=i == depth)
            if i < depth:
                a = sigma(z + taps[i])
            else:
                a = z
        return jnp.sum(a[:, 0]), acts

    taps = [jnp.zeros((n, m), dtype) for m in model.hidden]
    if not taps:
        return net(taps)[1], []
    out, vjp, acts = jax.vjp(net, taps, has_aux=True)
    (deltas,) = vjp(jnp.ones_like(out))
    return acts, deltas


def _gram_tile(coeffs: list[tuple[float, float]], f1: Features, f2: Features,
               row0: jax.Array, col0: jax.Array, diagonal: bool) -> tuple[jax.Array]:
    """``sum_l (D1_l D2_l^T) * (c_l^2 A1_l A2_l^T + beta^2)`` for one tile."""
    (a1, d1), (a2, d2) = f1, f2
    K = None
    for l, (scale, bias) in enumerate(coeffs):
        term = scale * (a1[l] @ a2[l].T)
        if bias:
            term = term + bias
        if l < len(d1):
            term = term * (d1[l] @ d2[l].T)
        K = term if K is None else K + term
    return (K,)


def _check(model: MLP, params: Any, x: jax.Array, name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n, d_in) for an MLP, got shape "
                         f"{tuple(x.shape)}")
    model._check_params(params, x.shape[1])
    if model.out_dim != 1:
        n = x.shape[0]
        raise ValueError(f"apply_fn must return one scalar output per input, shape ({n},), "
                         f"got shape ({n}, {model.out_dim}); the empirical NTK here is for "
                         f"scalar-output models (take one output, e.g. "
                         f"lambda p, x: f(p, x)[:, k])")


def _gram(model: MLP, params: Params, f1: Features, f2: Features, n1: int, n2: int,
          block_size: int | None, symmetric: bool, row_offset: jax.Array | int = 0) -> jax.Array:
    """The Gram sum of ``_gram_tile`` over the features ``f1`` (rows) and ``f2`` (columns),
    by tiles, in the dtype of the parameters."""
    dtype = jnp.result_type(*(leaf.dtype for leaf in jax.tree_util.tree_leaves(params)))
    tile = functools.partial(_gram_tile, _coefficients(model, params))
    (K,) = _tiling.fill(tile, f1, f2, n1=n1, n2=n2, block_size=block_size, symmetric=symmetric,
                        n_out=1, dtype=dtype, row_offset=row_offset)
    return K


def structured_ntk(model: MLP, params: Params, x1: jax.Array, x2: jax.Array | None,
                   block_size: int | None) -> jax.Array:
    """``K(X1, X2)`` (``X2 = X1``, exactly symmetric, when ``x2`` is ``None``) by the
    layer factorization (module docstring), in ``block_size`` tiles when given. Traceable;
    the caller validates (``empirical_ntk(..., method="structured")``)."""
    f1 = features(model, params, x1)
    if x2 is None:
        return _gram(model, params, f1, f1, x1.shape[0], x1.shape[0], block_size, True)
    f2 = features(model, params, x2)
    return _gram(model, params, f1, f2, x1.shape[0], x2.shape[0], block_size, False)


def structured_band(model: MLP, block_size: int | None, xa: jax.Array, xb: jax.Array,
                    params: Params, row0: jax.Array) -> tuple[jax.Array]:
    """Inside ``sharding.shard_rows``: the band ``K(xa, X2)`` of one device; the features of
    ``X2`` are computed by bands and gathered."""
    fa = features(model, params, xa)
    fb = sharding.gather(features(model, params, xb))
    n2 = fb[0][0].shape[0]
    return (_gram(model, params, fa, fb, xa.shape[0], n2, block_size, False, row0),)


def check_inputs(model: MLP, params: Any, x1: jax.Array, x2: jax.Array | None) -> None:
    """The checks of ``MLP.apply`` (same messages), for the structured method."""
    _check(model, params, x1, "x1")
    if x2 is not None:
        _check(model, params, x2, "x2")

