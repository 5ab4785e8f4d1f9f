"""Empirical neural tangent kernel of a scalar-output model at fixed parameters.

With the parameters flattened to ``theta`` in R^P (``jax.flatten_util.ravel_pytree``
order) and ``G(X)`` the Jacobian, ``G(X)_ij = d f(x_i; theta) / d theta_j``, the
empirical NTK is

    K(x, x') = <grad_theta f(x; theta), grad_theta f(x'; theta)>,
    K(X1, X2) = G(X1) G(X2)^T  (n1 x n2),     H = K(X, X) = G G^T  (symmetric PSD).

Three ways to compute it (cf. Novak et al. 2022, "Fast finite width neural tangent
kernel"):

* ``"jacobian"`` (Jacobian contraction): form ``G(X1)`` and ``G(X2)`` by reverse mode
  and multiply. With ``block_size = b`` only ``b``-row blocks of the Jacobians are held
  at a time (memory O(b P)), at the price of recomputing the ``X2`` blocks for every
  ``X1`` block.
* ``"ntvp"`` (NTK-vector products): column ``j`` of ``K`` is ``G1 (G2^T e_j)``, a
  vector-Jacobian product (reverse mode) followed by a Jacobian-vector product (forward
  mode), vmapped over the basis vectors ``e_j``, over blocks of ``b`` columns; ``G(X1)``
  is never formed.
* ``"structured"`` (for ``apply_fn = model.apply`` of an :class:`~ntk_companion.MLP` or
  of a network of :mod:`ntk_companion.layers`): the layer factorization ``K = sum_l (D_l
  D_l'^T) * (c_l^2 A_l A_l'^T + beta^2)`` of :mod:`ntk_companion.layer_ntk` (the MLP is
  its layer network ``model.network``), from one forward pass and one vector-Jacobian
  product: time ``O(n P + n1 n2 sum(widths))``, memory ``O(n sum(widths) + n1 n2)``, no
  Jacobian. With ``block_size = b`` the Grams are computed by ``b x b`` tiles (for
  ``x2=None`` only the tiles on and above the diagonal, then mirrored).
* ``"auto"``: ``"structured"`` when ``apply_fn`` is the ``apply`` method of an ``MLP``
  (by tiles of ``AUTO_BLOCK = 256`` when ``n1`` or ``n2`` exceeds it); otherwise
  ``"jacobian"`` when both Jacobians fit the memory budget (``(n1 + n2) P <= 2**24``
  numbers), ``"ntvp"`` otherwise.

Several devices: when JAX sees more than one device, the rows of ``K`` are sharded over
them (:mod:`ntk_companion.sharding`; also across hosts after
``jax.distributed.initialize()``).

For ``x2=None`` the result is ``H = K(X1, X1)``, symmetrized exactly (``(K + K^T)/2``).
:func:`ntk_vp` gives ``H v`` without ever forming ``H`` or ``G``.

``apply_fn(params, x)`` must map a batch ``x`` of shape ``(n, ...)`` to ``n`` scalar
outputs (shape ``(n,)``, or ``(n, 1)``), each depending on its own input only (no batch
statistics), which is what makes ``K(x, x')`` a kernel; gradients are computed per input
(``vmap`` of ``grad`` on one-row batches).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import layer_ntk, sharding
from ._utils import static_callable
from ._validation import (as_array, check_batch, check_callable, check_choice,
                          check_finite, check_int, check_params, check_rank,
                          check_same_features, is_concrete)

__all__ = ["jacobian", "empirical_ntk", "ntk_vp"]

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

#: ``"auto"`` forms Jacobians when ``(n1 + n2) * P`` is at most this many numbers (2**24
#: float64 numbers are 128 MiB), and otherwise uses NTK-vector products in blocks of at
#: most this many numbers (``block_size * P``).
AUTO_MEMORY_BUDGET = 2 ** 24
#: ``"auto"`` computes the structured kernel of an MLP by tiles of ``AUTO_BLOCK`` rows
#: and columns when ``n1`` or ``n2`` exceeds it: the Gram products of a tile and their
#: entrywise combination stay in cache (2-3 times faster than one n x n tile from n =
#: 1024 on, and a symmetric kernel costs half), and the temporaries are bounded.
AUTO_BLOCK = 256


# --------------------------------------------------------------------------- helpers

def _scalar_outputs(apply_fn: ApplyFn, params: PyTree, x: jax.Array) -> jax.Array:
    """``apply_fn(params, x)`` as a vector of shape ``(n,)``; ``(n, 1)`` is accepted."""
    out = apply_fn(params, x)
    shape = tuple(jnp.shape(out))
    n = x.shape[0]
    if shape == (n, 1):
        return out[:, 0]
    if shape != (n,):
        raise ValueError("apply_fn must return one scalar output per input, shape "
                         f"({n},), got shape {shape}; the empirical NTK here is for "
                         "scalar-output models (take one output, e.g. lambda p, x: "
                         "f(p, x)[:, k])")
    return out


def _flat_model(apply_fn: ApplyFn,
                params: PyTree) -> tuple[jax.Array, Callable, Callable]:
    """``theta`` (flat), the batch model ``f(theta, x) -> (n,)`` and the one-input model
    ``f1(theta, x_i) -> scalar`` (``x_i`` without the batch axis)."""
    flat, unravel = ravel_pytree(params)

    def f(theta: jax.Array, x: jax.Array) -> jax.Array:
        return _scalar_outputs(apply_fn, unravel(theta), x)

    def f1(theta: jax.Array, xi: jax.Array) -> jax.Array:
        return f(theta, xi[None])[0]

    return flat, f, f1


def _jac_rows(f1: Callable, flat: jax.Array, x: jax.Array) -> jax.Array:
    # Row i is grad_theta f(x_i): per-example gradients, vmapped (one backward pass per
    # input instead of one backward pass over the whole batch per output).
    return jax.vmap(jax.grad(f1), in_axes=(None, 0))(flat, x)


@partial(jax.jit, static_argnums=0)
def _jacobian(apply_fn: ApplyFn, params: PyTree, x: jax.Array) -> jax.Array:
    flat, _, f1 = _flat_model(apply_fn, params)
    return _jac_rows(f1, flat, x)


def _blocks(x: jax.Array, b: int) -> jax.Array:
    """The rows of ``x`` as ``ceil(n/b)`` blocks of ``b`` rows, shape ``(nb, b, ...)``;
    the last block is padded by repeating the last row (the padding is sliced off
    later)."""
    n = x.shape[0]
    nb = -(-n // b)
    if nb * b > n:
        x = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (nb * b - n, *x.shape[1:]))])
    return x.reshape(nb, b, *x.shape[1:])


def _ntk_jacobian(apply_fn: ApplyFn, params: PyTree, x1: jax.Array,
                  x2: jax.Array | None, block_size: int | None) -> jax.Array:
    """Jacobian contraction G1 G2^T, in (block_size x block_size) tiles when blocked."""
    flat, _, f1 = _flat_model(apply_fn, params)
    sym = x2 is None
    x2 = x1 if sym else x2
    n1, n2 = x1.shape[0], x2.shape[0]
    if block_size is None or block_size >= max(n1, n2):
        G1 = _jac_rows(f1, flat, x1)
        G2 = G1 if sym else _jac_rows(f1, flat, x2)
        return G1 @ G2.T
    b = block_size
    B1, B2 = _blocks(x1, b), _blocks(x2, b)
    nb1, nb2 = B1.shape[0], B2.shape[0]

    def row_of_tiles(args: tuple[jax.Array, jax.Array]) -> jax.Array:
        i, xa = args
        Ga = _jac_rows(f1, flat, xa)                       # only b rows of G1 at a time

        def tile(args2: tuple[jax.Array, jax.Array]) -> jax.Array:
            j, xb = args2
            compute = lambda: Ga @ _jac_rows(f1, flat, xb).T  # noqa: E731
            if not sym:
                return compute()
            # symmetric: compute the upper block triangle only, mirror below
            return jax.lax.cond(j >= i, compute, lambda: jnp.zeros((b, b), flat.dtype))

        return jax.lax.map(tile, (jnp.arange(nb2), B2))  # (nb2, b, b)

    tiles = jax.lax.map(row_of_tiles, (jnp.arange(nb1), B1))    # (nb1, nb2, b, b)
    K = tiles.transpose(0, 2, 1, 3).reshape(nb1 * b, nb2 * b)
    if sym:
        blk = jnp.arange(nb1 * b) // b
        K = jnp.where(blk[:, None] <= blk[None, :], K, K.T)
    return K[:n1, :n2]


def _ntk_ntvp(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None,
              block_size: int | None) -> jax.Array:
    """NTK-vector products: column j of K is G1 (G2^T e_j) = jvp of f(., x1) along
    grad_theta f(x2_j); vmapped over the columns of a block of block_size columns."""
    flat, f, f1 = _flat_model(apply_fn, params)
    x2 = x1 if x2 is None else x2
    n2 = x2.shape[0]
    _, jvp1 = jax.linearize(lambda th: f(th, x1), flat)

    def columns(xb: jax.Array) -> jax.Array:          # (b, ...) -> (n1, b)
        def column(xj: jax.Array) -> jax.Array:
            g = jax.grad(f1)(flat, xj)      # G2^T e_j = grad_theta f(x2_j)   in R^P
            return jvp1(g)                  # G1 G2^T e_j                      in R^{n1}
        return jax.vmap(column)(xb).T

    if block_size is None or block_size >= n2:
        return columns(x2)
    cols = jax.lax.map(columns, _blocks(x2, block_size))   # (nb, n1, b)
    return cols.transpose(1, 0, 2).reshape(x1.shape[0], -1)[:, :n2]


def _ntk_structured(apply_fn: ApplyFn, params: PyTree, x1: jax.Array,
                    x2: jax.Array | None, block_size: int | None) -> jax.Array:
    """The layer factorization of an MLP's kernel (``ntk_companion.layer_ntk``), by its
    layer network."""
    model = apply_fn.__self__
    return layer_ntk.structured(model.network, model.network_params(params), x1, x2,
                                block_size, trace=False)


# Methods by name: f(apply_fn, params, x1, x2 or None, block_size) -> K (n1, n2),
# traceable (they run inside one ``jit``). A new method is one entry here plus, if
# "auto" should pick it, one rule in ``_auto_method``.
_METHODS: dict[str, Callable[..., jax.Array]] = {
    "jacobian": _ntk_jacobian,
    "ntvp": _ntk_ntvp,
    "structured": _ntk_structured,
}


def _auto_method(apply_fn: ApplyFn, params: PyTree, n1: int, n2: int, P: int,
                 block_size: int | None) -> tuple[str, int | None]:
    """The method (and block size) ``"auto"`` uses. Rules are tried in order."""
    if layer_ntk.mlp_of(apply_fn) is not None:
        if block_size is None and max(n1, n2) > AUTO_BLOCK:
            block_size = AUTO_BLOCK
        return "structured", block_size
    if (n1 + n2) * P <= AUTO_MEMORY_BUDGET:
        return "jacobian", block_size
    if block_size is None:
        block_size = max(1, AUTO_MEMORY_BUDGET // (2 * P))
    return "ntvp", block_size


def _sharded(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None,
             method: str, block_size: int | None, mesh: Any) -> jax.Array:
    """The kernel with its rows sharded over ``mesh`` (``ntk_companion.sharding``): each
    device computes the band ``K(x1_band, X2)`` by the method, not exploiting
    symmetry."""
    if method == "structured":
        model = apply_fn.__self__

        def fn(xa: jax.Array, xb: jax.Array, p: PyTree,
               row0: jax.Array) -> tuple[jax.Array]:
            return layer_ntk.structured_band(model.network, block_size, xa, xb,
                                             model.network_params(p))
    else:
        def fn(xa: jax.Array, xb: jax.Array, p: PyTree,
               row0: jax.Array) -> tuple[jax.Array]:
            return (_METHODS[method](apply_fn, p, xa, sharding.gather(xb), block_size),)
    (K,) = sharding.shard_rows(fn, mesh, x1, x1 if x2 is None else x2, params)
    return K


@partial(jax.jit, static_argnames=("apply_fn", "method", "block_size", "mesh"))
def _empirical_ntk(apply_fn: ApplyFn, params: PyTree, x1: jax.Array,
                   x2: jax.Array | None, method: str, block_size: int | None,
                   mesh: Any = None) -> jax.Array:
    if mesh is None:
        K = _METHODS[method](apply_fn, params, x1, x2, block_size)
        if x2 is None and method != "structured":    # (structured: exactly symmetric)
            K = 0.5 * (K + K.T)
        return K
    K = _sharded(apply_fn, params, x1, x2, method, block_size, mesh)
    if x2 is None:
        K = 0.5 * (K + K.T)
    return sharding.by_rows(K, mesh)


def _check_apply_inputs(apply_fn: Any, params: Any, x: Any, name: str) -> jax.Array:
    check_callable(apply_fn, "apply_fn")
    check_params(params, "params")
    x = as_array(x, name)
    check_batch(x, name)
    check_finite(x, name)
    return x


def _check_per_example(apply_fn: ApplyFn, params: PyTree, x: jax.Array,
                       name: str) -> None:
    """Raise ``ValueError`` unless the output for one input does not depend on the other
    inputs of the batch (checked on the first two inputs: ``f(x[:2])`` against
    ``f(x[:1])`` and ``f(x[1:2])``). The per-example Jacobian rows of ``"jacobian"`` /
    ``"ntvp"`` are the kernel of such a model only; a model that mixes the batch (``x -
    x.mean(0)``, batch normalization) has no per-pair kernel. An
    :class:`~ntk_companion.MLP` (per-example by construction) and traced inputs are not
    checked."""
    if x.shape[0] < 2 or not is_concrete(x) or layer_ntk.mlp_of(apply_fn) is not None:
        return
    if not all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(params)):
        return
    out = jnp.asarray(apply_fn(params, x[:2]))      # scalar or vector outputs per input
    if out.ndim == 0 or out.shape[0] != 2:
        _scalar_outputs(apply_fn, params, x[:2])     # raises with the shape it expects
    dtype = out.dtype if jnp.issubdtype(out.dtype, jnp.floating) else jnp.float32
    pair = np.asarray(out, dtype=np.float64).reshape(2, -1)[:, 0]
    alone = np.array([float(np.asarray(apply_fn(params, x[i:i + 1]),
                                       dtype=np.float64).reshape(-1)[0])
                      for i in range(2)])
    if not np.all(np.isfinite(np.asarray(out, dtype=np.float64))):
        raise ValueError(f"apply_fn returned NaN or infinite outputs on {name}")
    eps = float(jnp.finfo(dtype).eps)
    tol = 1e3 * eps * (np.max(np.abs(pair)) + np.max(np.abs(alone))) + 1e-300
    if np.max(np.abs(pair - alone)) > tol:
        raise ValueError(
            "apply_fn must evaluate every input of the batch independently: its output "
            f"for {name}[0] changes when {name}[1] is in the batch ({pair[0]:.6g} vs "
            f"{alone[0]:.6g} alone), e.g. a model that centres or normalizes over the "
            "batch. Its empirical NTK per pair of inputs is not defined; ntk_vp gives "
            "the Gram matrix of the batch Jacobian H = G G^T with the coupling")


# --------------------------------------------------------------------------- public

def jacobian(apply_fn: ApplyFn, params: PyTree, x: jax.Array) -> jax.Array:
    """Jacobian ``G`` (n x P) of the outputs on a batch, ``G_ij = d f(x_i; theta)/d
    theta_j``, with the parameters flattened in ``ravel_pytree`` order (see
    :func:`ntk_companion.flatten`); computed by reverse mode.

    Args:
        apply_fn: ``apply_fn(params, x)`` -> outputs of shape ``(n,)`` (or ``(n, 1)``).
        params: parameter pytree.
        x: inputs, shape ``(n, ...)``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> f = lambda w, x: x @ w                      # linear model: G = X
    >>> ntk.jacobian(f, jnp.zeros(2), jnp.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    x = _check_apply_inputs(apply_fn, params, x, "x")
    _check_per_example(apply_fn, params, x, "x")
    return _jacobian(static_callable(apply_fn), params, x)


def _vector_or_layers(apply_fn: ApplyFn, params: PyTree, x1: jax.Array,
                      x2: jax.Array | None, method: str, block_size: int | None,
                      trace: bool) -> jax.Array | None:
    """The kernel by :mod:`ntk_companion.layer_ntk` for a model with several outputs
    or a layer network's structured kernel; ``None`` for the scalar paths of this
    module."""
    net = layer_ntk.network_of(apply_fn)
    mlp = layer_ntk.mlp_of(apply_fn)
    n = x1.shape[0]
    if mlp is not None:
        if mlp.out_dim > 1 or method in ("structured", "auto"):
            for xx, name in ((x1, "x1"), (x2, "x2")):   # (MLP.apply's checks)
                if xx is not None and xx.ndim != 2:
                    raise ValueError(f"{name} must be 2-D of shape (n, d_in) for an "
                                     f"MLP, got shape {tuple(xx.shape)}")
                if xx is not None:
                    mlp._check_params(params, xx.shape[1])
        if mlp.out_dim == 1:
            return None
        k = mlp.out_dim
    else:
        out = jax.eval_shape(apply_fn, params, x1).shape
        if len(out) not in (1, 2) or out[0] != n:
            raise ValueError(f"apply_fn must return shape ({n},) or ({n}, k), "
                             f"got {out}")
        k = out[1] if len(out) == 2 else 1
    if k == 1 and not (net is not None and method in ("structured", "auto")):
        return None
    if method == "auto":
        P = sum(math.prod(jnp.shape(leaf))
                for leaf in jax.tree_util.tree_leaves(params))
        if net is not None or mlp is not None:
            method = "structured"
            n2 = x1.shape[0] if x2 is None else x2.shape[0]
            if block_size is None and max(n, n2) > AUTO_BLOCK:
                block_size = AUTO_BLOCK
        else:
            method = "jacobian" if (2 * n) * P * k <= AUTO_MEMORY_BUDGET else "ntvp"
    if method == "structured":
        if net is None and mlp is None:
            raise ValueError("method='structured' needs apply_fn = model.apply of an "
                             "ntk_companion.MLP or of a network of "
                             "ntk_companion.layers")
    return layer_ntk.vector_ntk(apply_fn, params, x1, x2, method=method,
                                block_size=block_size, trace=bool(trace), k=k)


def empirical_ntk(apply_fn: ApplyFn, params: PyTree, x1: jax.Array,
                  x2: jax.Array | None = None, *, method: str = "auto",
                  block_size: int | None = None, trace: bool = False) -> jax.Array:
    """Empirical NTK ``K(X1, X2) = G(X1) G(X2)^T`` (n1 x n2) at ``params``.

    Args:
        apply_fn: ``apply_fn(params, x)`` -> outputs of shape ``(n,)`` (or ``(n, 1)``).
        params: parameter pytree.
        x1: inputs, shape ``(n1, ...)``.
        x2: inputs, shape ``(n2, ...)`` with the feature shape of ``x1``; ``None`` means
            ``x1`` and returns the Gram matrix ``H``, exactly symmetric.
        method: ``"jacobian"``, ``"ntvp"``, ``"structured"`` (``apply_fn`` must be
            ``model.apply`` of an :class:`~ntk_companion.MLP`) or ``"auto"`` (structured
            for an MLP, else jacobian or ntvp; see the module docstring).
        block_size: rows of ``x1``/``x2`` (jacobian; the side of the Gram tiles for
            structured) or columns (ntvp) processed at a time, to bound memory; ``None``
            processes everything at once (``"auto"`` then picks a block size for
            ``"ntvp"``, and for ``"structured"`` beyond ``AUTO_BLOCK`` (256) inputs).
            Any positive integer works, also one that does not divide ``n``.

        trace: for a model with ``k > 1`` outputs, return the trace over the outputs
            ``sum_a K[:, :, a, a]`` (shape ``(n1, n2)``) instead of the full kernel.

    Returns:
        The kernel matrix, shape ``(n1, n2)``; with several devices a ``jax.Array``
        sharded by rows (:mod:`ntk_companion.sharding`). For ``k > 1`` outputs
        (``apply_fn`` returns ``(n, k)``) the full kernel ``K[i, j, a, b] = <grad
        f_a(x1_i), grad f_b(x2_j)>`` of shape ``(n1, n2, k, k)``, or its trace
        (``trace=True``), by every method (:mod:`ntk_companion.layer_ntk`, one device).
        For ``apply_fn = net.apply`` of a network of :mod:`ntk_companion.layers`,
        ``"structured"`` and ``"auto"`` use its layer factorization.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    >>> ntk.empirical_ntk(lambda w, x: x @ w, jnp.zeros(2), x).tolist()   # X X^T
    [[5.0, 11.0], [11.0, 25.0]]
    """
    x1 = _check_apply_inputs(apply_fn, params, x1, "x1")
    if x2 is not None:
        x2 = as_array(x2, "x2")
        check_batch(x2, "x2")
        check_finite(x2, "x2")
        check_same_features(x1, x2)
    check_choice(method, "method", (*_METHODS, "auto"))
    if not isinstance(trace, (bool,)):
        raise TypeError(f"trace must be True or False, got {type(trace).__name__}")
    if block_size is not None:
        block_size = check_int(block_size, "block_size", minimum=1)
    _check_per_example(apply_fn, params, x1, "x1")
    apply_fn = static_callable(apply_fn)
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    routed = _vector_or_layers(apply_fn, params, x1, x2, method, block_size, trace)
    if routed is not None:
        return routed
    if method == "auto":
        P = sum(math.prod(jnp.shape(leaf))
                for leaf in jax.tree_util.tree_leaves(params))
        method, block_size = _auto_method(apply_fn, params, n1, n2, P, block_size)
    if method == "structured" and layer_ntk.mlp_of(apply_fn) is None:
        raise ValueError("method='structured' needs apply_fn = model.apply of an "
                         "ntk_companion.MLP (a bound method); use method='jacobian', "
                         "'ntvp' or 'auto' for other models")
    mesh = sharding.row_mesh()
    if mesh is not None:
        params, x1, x2 = sharding.global_inputs((params, x1, x2), mesh)
    return _empirical_ntk(apply_fn, params, x1, x2, method, block_size, mesh)


@partial(jax.jit, static_argnums=0)
def _ntk_vp(apply_fn: ApplyFn, params: PyTree, x: jax.Array, v: jax.Array) -> jax.Array:
    flat, f, _ = _flat_model(apply_fn, params)
    _, vjp = jax.vjp(lambda th: f(th, x), flat)
    _, jvp = jax.linearize(lambda th: f(th, x), flat)

    def hv(u: jax.Array) -> jax.Array:
        (g,) = vjp(u.astype(flat.dtype))    # G^T u in R^P
        return jvp(g)                       # G G^T u

    return hv(v) if v.ndim == 1 else jax.vmap(hv, in_axes=1, out_axes=1)(v)


def ntk_vp(apply_fn: ApplyFn, params: PyTree, x: jax.Array, v: jax.Array) -> jax.Array:
    """NTK-vector product ``H v = G (G^T v)`` with ``H = G(x) G(x)^T``: one
    vector-Jacobian product (``G^T v``, reverse mode) and one Jacobian-vector product
    (forward mode); neither ``G`` nor ``H`` is formed.

    Args:
        apply_fn, params: the model, as in :func:`empirical_ntk`.
        x: inputs, shape ``(n, ...)``.
        v: vector of shape ``(n,)``, or ``(n, k)`` for ``k`` vectors at once.

    Returns:
        ``H v``, the shape of ``v``.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    >>> ntk.ntk_vp(lambda w, x: x @ w, jnp.zeros(2), x, jnp.array([1.0, 0.0])).tolist()
    [5.0, 11.0]
    """
    x = _check_apply_inputs(apply_fn, params, x, "x")
    v = as_array(v, "v")
    check_rank(v, "v", (1, 2))
    check_finite(v, "v")
    if v.shape[0] != x.shape[0]:
        raise ValueError(f"v must have one entry per input ({x.shape[0]}), got shape "
                         f"{tuple(v.shape)}")
    return _ntk_vp(static_callable(apply_fn), params, x, v)
