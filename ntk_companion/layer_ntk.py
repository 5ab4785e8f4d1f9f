r"""Empirical NTK of layer-built networks and of models with vector outputs.

Used by :func:`ntk_companion.empirical_ntk`: for a model with ``k > 1`` outputs it
returns the full kernel ``K[i, j, a, b] = <grad_theta f_a(x_i), grad_theta f_b(x'_j)>``
of shape ``(n1, n2, k, k)``, or with ``trace=True`` its trace over the outputs ``sum_a
K[i, j, a, a]`` of shape ``(n1, n2)``, by every method; for ``apply_fn = net.apply`` of
a network of :mod:`ntk_companion.layers` (any number of outputs) ``"structured"`` (and
``"auto"``) use the layer factorization below.

Structured method
-----------------
One forward pass stores the input ``a_l`` of every ``Dense``/``Conv`` layer ``l``; zero
"taps" added to its output ``z_l`` give, by one vector-Jacobian product per output ``a``
(vmapped), the signals ``delta_l^a = d (sum_i f_a(x_i)) / d z_l``, whose row ``i`` is
``d f_a(x_i) / d z_l(x_i)`` (outputs depend on their own input only). With the patches
``P_{l,s}`` of position ``s`` (``Conv.patches``; for a dense layer
the input at ``s``) the layer contributes

    K_l[i, j, a, b] = c_l^2 sum_{s,t} (P_s(x_i) . P_t(x'_j))
                              (delta^a_s(x_i) . delta^b_t(x'_j))
                      + beta_l^2 (sum_s delta^a_s(x_i)) . (sum_t delta^b_t(x'_j)),

computed either as that sum of position Grams (cost ``|S|^2 (N + C)`` per pair of
inputs) or as the Gram of the per-example weight gradients ``g^a = sum_s P_s delta^{a
T}_s`` (``N C`` per pair), whichever is cheaper; a layer on vectors (one position, ``|S|
= 1``, every layer of an MLP) by the product of two Grams, ``K_l[i, j, a, b] = (c_l^2
a_l(x_i) . a_l(x'_j) + beta_l^2) (delta^a(x_i) . delta^b(x'_j))`` (``N + C`` per pair,
see below). A layer built from ``Dense`` projections
(:class:`~ntk_companion.GlobalSelfAttention`: queries and keys, values, output) records
each of them, so its share is the sum of theirs. The Grams are computed by
``block_size`` tiles (``ntk_companion._tiling``). Several devices: the vector-output and
layer paths run on one device (the result is replicated); the scalar paths of
:mod:`ntk_companion.empirical` shard rows (an MLP with one output:
``structured_band``).

MLPs
----
:class:`~ntk_companion.MLP` is the serial network ``model.network``, so its structured
kernel is the one above. A dense layer ``l`` (``l = 1 .. L+1``) maps its input
``a^{l-1}`` (width ``n_{l-1}``, ``a^0 = x``) to ``z^l = c_l a^{l-1} W_l + beta b_l``:
NTK parameterization ``c_l = W_std / sqrt(n_{l-1})``, ``beta = b_std``; standard
parameterization ``c_l = 1``, ``beta = 1`` (its ``W`` and ``b`` are the raw parameters);
maximal-update parameterization as NTK except the readout's ``c_{L+1} = W_std / n_L``
(``parameterizations.layer_multipliers``). With the backpropagated signal ``delta^l(x) =
d f(x) / d z^l`` (a row vector of width ``n_l``), the gradients are

    d f / d W_l[j, k] = c_l a^{l-1}_j delta^l_k,      d f / d b_l[k] = beta delta^l_k,

so the layer's share of ``K(x, x') = <grad_theta f(x), grad_theta f(x')>`` factorizes:

    K(x, x') = sum_l (delta^l(x) . delta^l(x'))
                     (c_l^2 a^{l-1}(x) . a^{l-1}(x') + beta^2 [bias]).

For the scalar readout ``delta^{L+1} = 1``. On batches ``X1``, ``X2`` with ``A_l`` the
``(n, n_{l-1})`` matrix of the ``a^{l-1}`` and ``D_l`` the ``(n, n_l)`` matrix of the
``delta^l``:

    K(X1, X2) = sum_l (D_l(X1) D_l(X2)^T) * (c_l^2 A_l(X1) A_l(X2)^T + beta^2)

(``*`` entrywise).

Cost: the passes take ``O(n P)`` time; the Grams ``O(n1 n2 sum_l (n_{l-1} + n_l))``;
memory ``O(n sum_l n_l)`` for the features plus the ``n1 x n2`` result (with
``block_size = b`` the Grams are computed by ``b x b`` tiles, ``O(b^2)`` temporaries).
The Jacobian method needs ``O(n P)`` memory and ``O(n1 n2 P)`` time, with ``P ~ sum_l
n_{l-1} n_l``: for hidden widths ``m`` the structured method is about ``m / 2`` times
cheaper in the Gram and holds no ``n x P`` Jacobian. Every activation works (``delta``
comes from JAX's derivative of the activation, as in the other methods), every
parameterization, any depth (``hidden=()`` is a linear model), with or without biases,
any parameter values; one output gives ``(n1, n2)``, ``k`` outputs the ``(n1, n2, k,
k)`` kernel. The result equals the Jacobian method's to rounding
(``tests/test_performance_paths.py``: relative 1e-10 in float64).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _tiling, sharding
from .layers import Layer, _Affine
from .models import MLP

__all__: list[str] = []


def network_of(apply_fn: Callable) -> Layer | None:
    """The layer network whose bound ``apply`` method ``apply_fn`` is, else ``None``."""
    owner = getattr(apply_fn, "__self__", None)
    if isinstance(owner, Layer) and getattr(apply_fn, "__func__", None) is Layer.apply:
        return owner
    return None


def mlp_of(apply_fn: Callable) -> MLP | None:
    """The ``MLP`` whose bound ``apply`` method ``apply_fn`` is, else ``None``."""
    owner = getattr(apply_fn, "__self__", None)
    if isinstance(owner, MLP) and getattr(apply_fn, "__func__", None) is MLP.apply:
        return owner
    return None


class _Recorder:
    """Collects ``(layer, input)`` of every affine layer and adds the taps to its
    output."""

    def __init__(self, taps: list | None) -> None:
        self.taps, self.layers, self.inputs, self.shapes = taps, [], [], []

    def __call__(self, layer: _Affine, params: Any, a: jax.Array,
                 z: jax.Array) -> jax.Array:
        self.layers.append(layer)
        self.inputs.append(a)
        self.shapes.append((z.shape, z.dtype))
        if self.taps is not None:
            z = z + self.taps[len(self.inputs) - 1]
        return z


def _output_dim(out_shape: tuple) -> int:
    return out_shape[1] if len(out_shape) == 2 else 1


def features(net: Layer, params: Any, x: jax.Array) -> tuple[list[tuple], list[tuple]]:
    """``(meta, arrays)``: per affine layer ``meta = (kind, c^2, beta^2)`` (static) and
    ``arrays = (U, V)``: ``kind == "vec"`` (one position): ``U`` the inputs ``(n, N)``,
    ``V`` the signals ``(n, k, C)``; ``kind == "pos"``: ``U`` the patches ``(n, |S|,
    N)``, ``V`` the signals ``(n, k, |S|, C)``; ``kind == "grad"``: ``U`` the
    per-example weight gradients ``(n, k, N, C)``, ``V`` the summed signals
    ``(n, k, C)``. Traceable."""
    probe = _Recorder(None)
    out_shape = jax.eval_shape(lambda: net._fwd(params, x, probe)).shape
    k = _output_dim(out_shape)
    n = x.shape[0]
    layers = list(probe.layers)

    def run(taps):
        rec = _Recorder(taps)
        out = net._fwd(params, x, rec)
        return out.reshape(n, k), rec.inputs

    taps = [jnp.zeros(s, d) for s, d in probe.shapes]
    out, vjp, inputs = jax.vjp(run, taps, has_aux=True)
    cts = jnp.broadcast_to(jnp.eye(k, dtype=out.dtype)[:, None, :], (k, n, k))
    (deltas,) = jax.vmap(vjp)(cts)            # each (k, n, *S, C)
    meta, feats = [], []
    for layer, a, d in zip(layers, inputs, deltas):
        P = layer.patches(a)                              # (n, S, N)
        D = jnp.moveaxis(d.reshape(k, n, -1, d.shape[-1]), 0, 1)   # (n, k, S, C)
        c2, b2 = layer.coefficients(tuple(a.shape[1:]))
        S, N, C = P.shape[1], P.shape[2], D.shape[-1]
        if S == 1:
            meta.append(("vec", c2, b2))
            feats.append((P[:, 0], D[:, :, 0]))
        elif S * S * (N + C) <= N * C:
            meta.append(("pos", c2, b2))
            feats.append((P, D))
        else:
            G = jnp.einsum("isn,iksc->iknc", P, D, precision=jax.lax.Precision.HIGHEST)
            meta.append(("grad", c2, b2))
            feats.append((G, jnp.sum(D, axis=2)))
    return meta, feats


def _hi(spec: str, *ops: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *ops, precision=jax.lax.Precision.HIGHEST)


def _layer_tile(meta: tuple, f1: tuple, f2: tuple, trace: bool) -> jax.Array:
    kind, c2, b2 = meta
    U1, V1 = f1
    U2, V2 = f2
    o = "ija" if trace else "ijab"
    b = "a" if trace else "b"
    if kind == "vec":      # (c^2 U1 U2^T + beta^2) * (V1 V2^T): two Grams
        GU = c2 * _hi("in,jn->ij", U1, U2)
        if b2:
            GU = GU + b2
        if trace:
            n1, n2 = V1.shape[0], V2.shape[0]
            GV = _hi("ik,jk->ij", V1.reshape(n1, -1), V2.reshape(n2, -1))
            return GU * GV
        return GU[:, :, None, None] * _hi("iac,jbc->ijab", V1, V2)
    if kind == "pos":
        GP = _hi("isn,jtn->ijst", U1, U2)
        GD = _hi(f"iasc,j{b}tc->{o}st", V1, V2)
        K = c2 * _hi(f"ijst,{o}st->{o}", GP, GD)
        bias = _hi(f"iac,j{b}c->{o}", jnp.sum(V1, 2), jnp.sum(V2, 2)) if b2 else 0.0
    else:
        K = c2 * _hi(f"ianc,j{b}nc->{o}", U1, U2)
        bias = _hi(f"iac,j{b}c->{o}", V1, V2) if b2 else 0.0
    K = K + b2 * bias
    return jnp.sum(K, axis=-1) if trace else K


def _fill4(tile4: Callable, rows: Any, cols: Any, n1: int, n2: int, k: int, trace: bool,
           block_size: int | None, symmetric: bool, dtype: Any) -> jax.Array:
    """Tiles of a ``(n1, n2, k, k)`` kernel (``(n1, n2)`` when ``trace``) by
    ``_tiling.fill``, one ``(n1, n2)`` matrix per output pair. The full kernel of a
    symmetric pair of batches is computed without the mirror
    (``K[j, i, b, a] = K[i, j, a, b]`` mixes output pairs)."""
    if trace or k == 1:
        def tile(r, c, row0, col0, diagonal):
            K = tile4(r, c)
            return (K if trace else K[:, :, 0, 0],)
        (K,) = _tiling.fill(tile, rows, cols, n1=n1, n2=n2, block_size=block_size,
                            symmetric=symmetric, n_out=1, dtype=dtype)
        return K if trace else K[:, :, None, None]

    def tile(r, c, row0, col0, diagonal):
        K = tile4(r, c)
        return tuple(K[:, :, a, b] for a in range(k) for b in range(k))
    outs = _tiling.fill(tile, rows, cols, n1=n1, n2=n2, block_size=block_size,
                        symmetric=False, n_out=k * k, dtype=dtype)
    K = jnp.stack(outs, axis=-1).reshape(n1, n2, k, k)
    if symmetric:
        K = 0.5 * (K + jnp.transpose(K, (1, 0, 3, 2)))
    return K


def _dtype(params: Any) -> Any:
    return jnp.result_type(*(leaf.dtype for leaf in jax.tree_util.tree_leaves(params)))


def structured(net: Layer, params: Any, x1: jax.Array, x2: jax.Array | None,
               block_size: int | None, trace: bool) -> jax.Array:
    """The structured kernel of a layer network (module docstring); ``(n1, n2, k, k)``
    or ``(n1, n2)`` (``trace``, or ``k == 1``). Traceable."""
    meta, f1 = features(net, params, x1)
    f2 = f1 if x2 is None else features(net, params, x2)[1]
    k = f1[0][1].shape[1] if f1 else 1
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]

    reduce = trace or k == 1

    def tile4(r, c):
        return sum(_layer_tile(m, a, b, reduce) for m, a, b in zip(meta, r, c))
    return _fill4(tile4, f1, f2, n1, n2, k, reduce, block_size, x2 is None,
                  _dtype(params))


def _flat(apply_fn: Callable, params: Any, k: int) -> tuple[jax.Array, Callable]:
    flat, unravel = ravel_pytree(params)

    def f1(theta: jax.Array, xi: jax.Array) -> jax.Array:
        return apply_fn(unravel(theta), xi[None]).reshape(k)
    return flat, f1


def jacobian_method(apply_fn: Callable, params: Any, x1: jax.Array,
                    x2: jax.Array | None, block_size: int | None, trace: bool,
                    k: int) -> jax.Array:
    """``G(X1) G(X2)^T`` with per-example Jacobians ``(k, P)``, by tiles."""
    flat, f1 = _flat(apply_fn, params, k)
    jac = jax.vmap(jax.jacrev(f1), in_axes=(None, 0))
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]

    def tile4(r, c):
        o = "ija" if trace else "ijab"
        b = "a" if trace else "b"
        K = _hi(f"iap,j{b}p->{o}", jac(flat, r), jac(flat, c))
        return jnp.sum(K, -1) if trace else K
    return _fill4(tile4, x1, x1 if x2 is None else x2, n1, n2, k, trace, block_size,
                  x2 is None, flat.dtype)


def ntvp_method(apply_fn: Callable, params: Any, x1: jax.Array, x2: jax.Array | None,
                block_size: int | None, trace: bool, k: int) -> jax.Array:
    """Columns ``K[:, j, :, b] = G1 (grad_theta f_b(x'_j))`` by Jacobian-vector products
    along the gradients of the column inputs (vmapped over ``block_size`` columns)."""
    flat, f1 = _flat(apply_fn, params, k)
    xs = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs.shape[0]
    unravel = ravel_pytree(params)[1]
    _, jvp1 = jax.linearize(lambda th: apply_fn(unravel(th), x1).reshape(n1, k), flat)

    def columns(xb: jax.Array) -> jax.Array:            # (b, ...) -> (n1, b, k, k)
        g = jax.vmap(jax.jacrev(f1), in_axes=(None, 0))(flat, xb)   # (b, k, P)
        cols = jax.vmap(jax.vmap(jvp1))(g)                # (b, kb, n1, ka)
        return jnp.transpose(cols, (2, 0, 3, 1))

    from .empirical import _blocks
    if block_size is None or block_size >= n2:
        K = columns(xs)
    else:
        cols = jax.lax.map(columns, _blocks(xs, block_size))     # (nb, n1, b, k, k)
        K = jnp.moveaxis(cols, 0, 1).reshape(n1, -1, k, k)[:, :n2]
    if x2 is None:
        K = 0.5 * (K + jnp.transpose(K, (1, 0, 3, 2)))
    return jnp.trace(K, axis1=2, axis2=3) if trace else K


def structured_band(net: Layer, block_size: int | None, xa: jax.Array, xb: jax.Array,
                    params: Any) -> tuple[jax.Array]:
    """Inside ``sharding.shard_rows``: the band ``K(xa, X2)`` of one device of a network
    with one output (``(n_a, n2)``); the features of ``X2`` are computed by bands and
    gathered."""
    meta, fa = features(net, params, xa)
    fb = sharding.gather(features(net, params, xb)[1])
    n2 = fb[0][0].shape[0]

    def tile4(r, c):
        return sum(_layer_tile(m, a, b, True) for m, a, b in zip(meta, r, c))
    return (_fill4(tile4, fa, fb, xa.shape[0], n2, 1, True, block_size, False,
                   _dtype(params)),)


@functools.partial(jax.jit, static_argnames=("apply_fn", "method", "block_size",
                                             "trace", "k"))
def vector_ntk(apply_fn: Callable, params: Any, x1: jax.Array, x2: jax.Array | None, *,
               method: str, block_size: int | None, trace: bool, k: int) -> jax.Array:
    """The empirical NTK of a model with ``k`` outputs (or a layer network) by
    ``method`` (``"jacobian"``, ``"ntvp"``, ``"structured"``); see the module
    docstring."""
    if method == "structured":
        net = network_of(apply_fn)
        if net is None:                        # an MLP (checked by the caller)
            model = apply_fn.__self__
            net, params = model.network, model.network_params(params)
        K = structured(net, params, x1, x2, block_size, trace)
        return K[:, :, 0, 0] if (k == 1 and not trace and K.ndim == 4) else K
    fn = jacobian_method if method == "jacobian" else ntvp_method
    K = fn(apply_fn, params, x1, x2, block_size, trace, k)
    return K[:, :, 0, 0] if (k == 1 and not trace) else K
