r"""Compositional layers: each layer knows its finite network, its infinite-width kernel
map and its share of the structured empirical NTK, so an architecture is described once.

Inputs are batches ``x`` of shape ``(n, *S, C)``: ``S`` the spatial shape (``()`` for a
vector, ``(L,)`` for 1-D signals, ``(H, W)`` for images), ``C`` the channels (last).

Finite network
--------------
``layer.init(key, in_shape) -> params`` (``in_shape`` without the batch axis) and
``layer.apply(params, x)``. A parameterized layer with fan-in ``N`` computes, in the NTK
parameterization, ``z = (W_std / sqrt(N)) (W * a) + b_std b`` with ``W, b ~ N(0, 1)``,
in the standard parameterization ``z = W * a + b`` with ``W ~ N(0, W_std^2 / N)``,
``b ~ N(0, b_std^2)`` (the same normals rescaled: one key gives the same function in
both).

Kernel map
----------
For every layer the infinite-width limit (widths, i.e. channels, to infinity) is a map
of the state ``(K, Theta)``:
``K[i, j, s, t] = lim (1/C) sum_c E[a_{s,c}(x_i) a_{t,c}(x'_j)]``, the NNGP covariance
between position ``s`` of input ``x_i`` and position ``t`` of ``x'_j``, and the NTK
``Theta`` of the same shape (plus the covariances of ``x_i`` with itself, which the
nonlinearities need). The input state is ``K = x_s . x'_t / C``, ``Theta = 0``. See
each layer's docstring for its map; the NTK maps hold in the NTK parameterization. The
kernels of a network with ``k`` outputs are ``K (x) I_k``: outputs are independent and
identically distributed in the limit, so ``Layer.kernels`` returns the ``(n1, n2)``
factor ``K``.

Structured empirical NTK
------------------------
A parameterized layer (``Dense``, ``Conv``) with inputs ``a`` (for a convolution, the
patches ``P_s(a)`` of the positions ``s``; for a dense layer the input at ``s``) and
backpropagated signals ``delta_s = d f / d z_s`` contributes

    K_l(x, x') = c^2 sum_{s,t} (P_s(x) . P_t(x')) (delta_s(x) . delta_t(x'))
                 + beta^2 (sum_s delta_s(x)) . (sum_t delta_t(x')),

``c^2 = W_std^2 / N``, ``beta^2 = b_std^2`` (NTK) or ``c = beta = 1`` (standard).
Equivalently ``c^2 <g(x), g(x')>`` with the per-example weight gradient
``g = sum_s P_s delta_s^T`` (``N x C_out`` numbers); the cheaper of the two forms is
used per layer (position Grams when ``|S|^2 (N + C_out) <= N C_out``). See
:mod:`ntk_companion.layer_ntk`.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _tiling, sharding
from ._validation import (as_array, check_batch, check_choice, check_finite, check_int,
                          check_same_features, check_scalar)
from ._validation import is_concrete, value_check
from .analytic import (AUTO_BLOCK, MAX_ORDER, QUADRATURE_RTOL, Kernels, _CLOSED_FORMS,
                       _all_finite, _check_smooth_at_zero, _moment_error, _moments_fn)
from .models import _is_key, get_activation
from .parameterizations import PARAMETERIZATIONS, layer_multipliers

__all__ = ["Layer", "Dense", "Conv", "Activation", "AvgPool", "GlobalAvgPool",
           "Flatten", "LayerNorm", "Identity", "serial", "parallel_sum", "repeat",
           "KernelState", "GlobalSelfAttention"]

Shape = tuple[int, ...]
#: ``block_size=None``: the kernels are one tile while the state ``(n1, n2, *S, *S)``
#: has at most this many entries, else tiles of about this many (512 KiB in float32):
#: the temporaries of a tile then stay in the cache (measured: 5x faster than one tile
#: of 64 x 64 images of 8 x 8 pixels; 2**17 is 10 % faster than 2**16 and 2**18).
LAYER_TILE_ENTRIES = 2 ** 17
#: An activation's moments are computed by chunks of rows (a loop) of at least this many
#: entries when the state has more: see :func:`_by_rows`.
ACTIVATION_CHUNK_ENTRIES = 2 ** 14
_PADDINGS = ("SAME", "VALID", "CIRCULAR")


class KernelState(NamedTuple):
    """Infinite-width state between the row batch ``x`` (``n1``) and column batch
    ``x'``.

    Attributes:
        nngp: ``K[i, j, *s, *t]``, shape ``(n1, n2, *S, *S)``.
        ntk: ``Theta``, same shape.
        var1: ``K(x_i, x_i)[*s, *t]``, shape ``(n1, *S, *S)``.
        var2: ``K(x'_j, x'_j)``, shape ``(n2, *S, *S)``.

    A layer's ``kernel_map`` takes and returns one (here without spatial axes): a dense
    layer with ``b_std = 1`` maps ``K <- K + 1`` and ``Theta <- Theta + K_new``.

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> K = jnp.array([[2.5, 1.5], [1.5, 4.5]])
    >>> state = nl.KernelState(nngp=K, ntk=0 * K, var1=jnp.diag(K), var2=jnp.diag(K))
    >>> out = nl.Dense(3, b_std=1.0).kernel_map(state)
    >>> out.nngp.tolist(), out.ntk.tolist(), out.var1.tolist()
    ([[3.5, 2.5], [2.5, 5.5]], [[3.5, 2.5], [2.5, 5.5]], [3.5, 5.5])
    """

    nngp: jax.Array
    ntk: jax.Array
    var1: jax.Array
    var2: jax.Array


class DiagonalState(NamedTuple):
    """The position-diagonal part of a :class:`KernelState`:
    ``nngp[i, j, *s] = K[i, j, *s, *s]`` (shape ``(n1, n2, *S)``), ``ntk`` the same,
    ``var1[i, *s] = K(x_i, x_i)[*s, *s]`` (``(n1, *S)``), ``var2`` (``(n2, *S)``).
    See :meth:`Layer.kernels` (diagonal path)."""

    nngp: jax.Array
    ntk: jax.Array
    var1: jax.Array
    var2: jax.Array


def _rank(state: KernelState) -> int:
    return (state.var1.ndim - 1) // 2


def _to_diagonal(state: KernelState) -> DiagonalState:
    """The position-diagonal of a full state."""
    r = _rank(state)
    if r == 0:
        return DiagonalState(*state)

    def go(K, lead):
        flat = K.reshape(*K.shape[:lead], math.prod(K.shape[lead:lead + r]), -1)
        return jnp.diagonal(flat, axis1=-2, axis2=-1).reshape(K.shape[:lead + r])

    return DiagonalState(go(state.nngp, 2), go(state.ntk, 2), go(state.var1, 1),
                         go(state.var2, 1))


def _diagonal_ok(layer: "Layer") -> bool:
    """Whether the position-diagonal of ``layer``'s output state depends on the
    diagonal of its input state only (and the layer has a ``diagonal_map``):
    per-position layers (``Dense``, ``Activation``, ``LayerNorm``, ``Identity``) and
    ``Conv`` (its kernel map pairs the same offset on both sides: ``K(s, s)`` needs
    ``K(s*stride + o, s*stride + o)`` only), and combinators of these. Pooling and
    attention mix positions in pairs."""
    if isinstance(layer, _Serial):
        return all(_diagonal_ok(m) for m in layer.layers)
    if isinstance(layer, _Sum):
        return all(_diagonal_ok(m) for m in layer.branches)
    if isinstance(layer, _Repeat):
        return _diagonal_ok(layer.block)
    return isinstance(layer, (Dense, Conv, Activation, LayerNorm, Identity))


def _diagonal_run(layers: Sequence["Layer"]) -> bool:
    """``layers`` start with layers of :func:`_diagonal_ok` followed by a ``Flatten``:
    their state is needed on the position-diagonal only."""
    for layer in layers:
        if isinstance(layer, Flatten):
            return True
        if not _diagonal_ok(layer):
            return False
    return False


def _starts_diagonal(net: "Layer") -> bool:
    return isinstance(net, _Serial) and _diagonal_run(net.layers)


def _diag(var: jax.Array) -> jax.Array:
    """``var[i, *s, *s]``, shape ``(n, *S)``."""
    r = (var.ndim - 1) // 2
    spatial = var.shape[1:1 + r]
    p = math.prod(spatial)
    flat = var.reshape(var.shape[0], p, p)
    return jnp.diagonal(flat, axis1=1, axis2=2).reshape(var.shape[0], *spatial)


# --------------------------------------------------------------------------- base
class Layer:
    """Common interface of the layers (see the module docstring).

    Subclasses implement ``out_shape(in_shape)``, ``init(key, in_shape)``,
    ``_fwd(params, x, rec)``, ``kernel_map(state)`` and ``centered(in_centered)``
    (whether the output is a zero-mean function of independent weights, which makes sums
    of branches have summed kernels).

    >>> import jax, jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> net = nl.serial(nl.Dense(8), nl.Activation("erf"), nl.Dense(1))
    >>> params = net.init(jax.random.key(0), (2,))          # in_shape without the batch
    >>> isinstance(net, nl.Layer), net.apply(params, jnp.ones((5, 2))).shape
    (True, (5, 1))
    """

    def out_shape(self, in_shape: Shape) -> Shape:  # pragma: no cover - interface
        raise NotImplementedError

    def centered(self, in_centered: bool) -> bool:
        return False

    def init(self, key: jax.Array, in_shape: Sequence[int], dtype: Any = None) -> Any:
        """Draw the parameters for inputs of shape ``(n, *in_shape)``."""
        if not _is_key(key):
            raise TypeError(f"key must be a jax.random key (jax.random.key(seed) or "
                            f"jax.random.PRNGKey(seed)), got {type(key).__name__}")
        in_shape = _check_shape(in_shape, "in_shape")
        self.out_shape(in_shape)
        if dtype is None:
            dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        elif not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        return self._init(key, in_shape, np.dtype(dtype))

    def _init(self, key: jax.Array, in_shape: Shape, dtype: np.dtype) -> Any:
        return ()

    def apply(self, params: Any, x: Any) -> jax.Array:
        """The network on a batch ``x`` of shape ``(n, *in_shape)``."""
        x = as_array(x, "x")
        check_batch(x, "x")
        check_finite(x, "x")
        self.out_shape(tuple(x.shape[1:]))
        return self._fwd(params, x, None)

    def _fwd(self, params: Any, x: jax.Array,
             rec: Any) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def kernel_map(self, state: KernelState) -> KernelState:  # pragma: no cover
        raise NotImplementedError

    def diagonal_map(self, state: DiagonalState) -> Any:  # pragma: no cover
        """The kernel map on the position-diagonal (layers of :func:`_diagonal_ok` and
        ``Flatten``)."""
        raise NotImplementedError

    def kernels(self, x1: Any, x2: Any = None, *,
                block_size: int | None = None) -> Kernels:
        r"""Infinite-width ``Kernels(nngp, ntk)`` of shape ``(n1, n2)`` of this network.

        The state of the inputs, ``K = x_s . x'_t / C``, ``Theta = 0``, is mapped
        through every layer's ``kernel_map``; the network must end with a vector output
        (``Dense`` after ``Flatten`` or ``GlobalAvgPool``). With ``k`` outputs the
        kernel of the outputs is ``K (x) I_k``; the ``(n1, n2)`` factor is returned.
        Computed by tiles of ``block_size`` inputs (``None``: tiles whose state has
        about ``LAYER_TILE_ENTRIES`` entries, so that they stay in the cache), rows
        sharded over several devices; for ``x2 = None`` only the tiles on and above the
        diagonal are computed. The covariances of each input with itself, which every
        tile of its row or column needs, are computed once. Each ``Dense`` and ``Conv``
        maps the NTK in its own parameterization: in the standard one the NNGP kernel is
        the same and the NTK grows with the widths (the fan-ins, bound from the input
        shape before tracing; see :class:`Dense`).

        Exactness and checks: for ``x2 = None`` the result is exactly symmetric, every
        activation uses ``K(x, x)`` exactly on the pairs of equal inputs (``K12 = K11``
        before the nonlinearity), and evaluates the pairs below the diagonal as their
        mirror image, so the result does not depend on the tiles or the number of
        devices. A quadrature :class:`Activation` (Hermite rule) whose derivative jumps
        at 0 raises ``ValueError``, as does one whose moments on the diagonal (the
        variances it sees) are off by more than ``analytic.QUADRATURE_RTOL`` from a 1-D
        reference rule, and non-finite kernels (overflow). Under ``jit`` these value
        checks need :class:`~ntk_companion.jit_checks`.

        Diagonal path (automatic; Xiao et al. 2018, Novak et al. 2019): ``Flatten``
        keeps ``K(s, s)`` only, and the diagonal of the output of ``Dense``,
        ``Activation``, ``LayerNorm``, ``Identity`` and ``Conv`` depends on the diagonal
        of their input only (a convolution pairs the same offset on both sides). The
        run of such layers before a ``Flatten`` is therefore mapped on the diagonal
        states ``(n1, n2, *S)`` instead of ``(n1, n2, *S, *S)``: ``O(|S|)`` per pair of
        inputs instead of ``O(|S|^2)``, the same numbers (the same operations on the
        diagonal entries, up to the order of the sums). A CNN without pooling is
        diagonal from its input.

        >>> import jax, jax.numpy as jnp
        >>> from ntk_companion import layers as nl
        >>> net = nl.serial(nl.Conv(8, (3,)), nl.Activation("relu"), nl.GlobalAvgPool(),
        ...                 nl.Dense(1))
        >>> x = jax.random.normal(jax.random.key(0), (4, 6, 2))
        >>> net.kernels(x).ntk.shape
        (4, 4)
        """
        symmetric = x2 is None or x2 is x1
        x1 = as_array(x1, "x1")
        check_batch(x1, "x1")
        check_finite(x1, "x1")
        if not symmetric:
            x2 = as_array(x2, "x2")
            check_batch(x2, "x2")
            check_finite(x2, "x2")
            check_same_features(x1, x2)
            common = jnp.result_type(x1, x2)
            x1, x2 = x1.astype(common), x2.astype(common)
        out = self.out_shape(tuple(x1.shape[1:]))
        self.centered(False)
        if len(out) != 1:
            raise ValueError(f"kernels needs a network with vector outputs (n, k); "
                             f"this one outputs shape (n, *{out}): end it with "
                             f"Flatten() or GlobalAvgPool() and a Dense layer")
        if block_size is not None:
            block_size = check_int(block_size, "block_size", minimum=1)
        n1 = x1.shape[0]
        n2 = n1 if symmetric else x2.shape[0]
        if block_size is None:
            block_size = _auto_block(n1, n2, math.prod(x1.shape[1:-1]) ** 2)
        mesh = sharding.row_mesh()
        if mesh is not None:
            x1, x2 = sharding.global_inputs((x1, x2), mesh)
        for layer in _leaves(self):
            if isinstance(layer, Activation):
                layer.check_rule()
        try:
            hash(self)
        except TypeError:   # traced hyperparameters (jax.grad in W_std): jit per call
            kernels_fn = jax.jit(functools.partial(_kernels.__wrapped__, self),
                                 static_argnums=(2, 3, 4))
        else:
            kernels_fn = functools.partial(_kernels, self)
        nngp, ntk, err = kernels_fn(x1, x1 if symmetric else x2, symmetric, block_size,
                                    mesh)
        _check_kernels(self, nngp, ntk, err)
        return Kernels(nngp=nngp, ntk=ntk)

    def _bind(self, in_shape: Shape) -> "Layer":
        """This layer for inputs of shape ``(n, *in_shape)``: a layer whose kernel map
        needs its input shape (the standard parameterization's fan-in) returns a bound
        copy; combinators bind their parts. Called by :meth:`kernels` before tracing."""
        return self


def _leaves(net: Layer) -> list[Layer]:
    """The layers of ``net`` that are not combinators, in order."""
    if isinstance(net, _Serial):
        return [leaf for m in net.layers for leaf in _leaves(m)]
    if isinstance(net, _Sum):
        return [leaf for m in net.branches for leaf in _leaves(m)]
    if isinstance(net, _Repeat):
        return _leaves(net.block)
    return [net]


def _check_kernels(net: Layer, nngp: jax.Array, ntk: jax.Array, err: jax.Array) -> None:
    """The value checks of :meth:`Layer.kernels`: quadrature accuracy, no overflow."""
    quad = [m for m in _leaves(net) if isinstance(m, Activation) and m.by_quadrature]
    if quad:
        dtype = nngp.dtype
        rtol = max(QUADRATURE_RTOL, 100 * float(jnp.finfo(dtype).eps))
        rules = sorted({(m.quadrature, m.order) for m in quad})
        rule = ", ".join(f"quadrature={q!r}, order={o}" for q, o in rules)
        value_check(err <= rtol,
                    f"the quadrature ({rule}) is not accurate for this activation and "
                    f"these input variances: its relative error on the diagonal x = x' "
                    f"is " + (f"{float(err):.1e}" if is_concrete(err) else "above")
                    + f" (tolerance {rtol:.0e}). Raise order (at most "
                    f"{MAX_ORDER['hermite']} for 'hermite', {MAX_ORDER['polar']} for "
                    f"'polar'), use quadrature='polar' for an activation with a kink "
                    f"at 0 (relu, leaky relu, abs as callables), or rescale the inputs "
                    f"/ W_std, b_std (large variances need more nodes)")
    name = jnp.dtype(nngp.dtype).name
    value_check(_all_finite(nngp, ntk),
                f"the kernels overflowed in {name} (non-finite entries): the inputs "
                f"are too large (the input kernel x.x'/d and its images by the layers "
                f"must stay below the largest {name}); rescale x1 and x2 (relu and "
                f"identity kernels are homogeneous: K(c x, c x') = c^2 K(x, x') for "
                f"b_std = 0) or use float64")


def _input_state(x1: jax.Array, x2: jax.Array, var1: jax.Array | None = None,
                 var2: jax.Array | None = None,
                 diagonal: bool = False) -> KernelState | DiagonalState:
    c = x1.shape[-1]
    r = x1.ndim - 2
    s = "abc"[:r]
    t = s if diagonal else "def"[:r]
    out = s if diagonal else s + t
    cross = _hi(f"i{s}z,j{t}z->ij{out}", x1, x2) / c
    if var1 is None:
        var1 = _hi(f"i{s}z,i{t}z->i{out}", x1, x1) / c
    if var2 is None:
        var2 = _hi(f"i{s}z,i{t}z->i{out}", x2, x2) / c
    kind = DiagonalState if diagonal else KernelState
    return kind(cross, jnp.zeros_like(cross), var1, var2)


def _hi(spec: str, *ops: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *ops, precision=lax.Precision.HIGHEST)


# The covariances of every input with itself (``var1``, ``var2``) are the same in every
# tile of a row (column): they are computed once, for all inputs, by a recording pass,
# and each tile replays its rows' and columns' slices (the tile's own var maps are then
# unused, and XLA drops them). ``_map`` is how the combinators call their parts: with a
# tape, every layer that is not a combinator appends (record) or substitutes (replay)
# its output vars.
_TAPES: list = []


class _Tape:
    """Records (or replays) the vars after every layer; a recording tape also collects
    the diagonal quadrature errors of the activations (see :meth:`Layer.kernels`)."""

    def __init__(self, replay: tuple[list, list] | None = None) -> None:
        self.var1: list = [] if replay is None else list(replay[0])
        self.var2: list = [] if replay is None else list(replay[1])
        self.errors: list = []
        self.replay = replay is not None
        self.step = 0

    def __enter__(self) -> "_Tape":
        _TAPES.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _TAPES.pop()

    def take(self) -> tuple[Any, Any]:
        """The next replayed ``(var1, var2)`` entry."""
        v1, v2 = self.var1[self.step], self.var2[self.step]
        self.step += 1
        return v1, v2

    def __call__(self, state: KernelState) -> KernelState:
        if not self.replay:
            self.var1.append(state.var1)
            self.var2.append(state.var2)
            return state
        v1, v2 = self.take()
        return state._replace(var1=v1, var2=v2)


class _Pairs(NamedTuple):
    """The tile being computed of a symmetric kernel: global indices of its first row
    and column; ``diagonal``: a diagonal tile (rows = columns)."""

    row0: jax.Array
    col0: jax.Array
    diagonal: bool


# The tile of a symmetric kernel being computed (innermost last): the activations then
# use ``K(x, x)`` exactly for the pairs of equal global indices, and evaluate the pairs
# below the diagonal as their mirror image (quadrature is not symmetric in its
# arguments).
_PAIRS: list = []


def _map(layer: "Layer", state: KernelState | DiagonalState) -> Any:
    """``layer.kernel_map(state)`` (``layer.diagonal_map`` for a diagonal state),
    recorded or replayed by the innermost tape (a recording tape also stores the
    quadrature accuracy of an activation on the diagonal of its input)."""
    tape = _TAPES[-1] if _TAPES and not isinstance(layer, _COMBINATORS) else None
    if tape is not None and not tape.replay and isinstance(layer, Activation):
        err = layer.diagonal_error(state)
        if err is not None:
            tape.errors.append(err)
    if isinstance(state, DiagonalState):
        out = layer.diagonal_map(state)
    else:
        out = layer.kernel_map(state)
    return out if tape is None else tape(out)


def _var_tape(net: "Layer", x: jax.Array) -> tuple[list, jax.Array]:
    """``([var at the input, var after each layer], error)`` (vars in ``_map`` order,
    each ``(n, ...)``): the kernel map of the pairs ``(x_i, x_0)``, whose ``var1`` are
    those of every ``x_i``; ``error`` the largest diagonal error of the quadrature
    activations (0 without any)."""
    state = _input_state(x, x[:1], diagonal=_starts_diagonal(net))
    with _Tape() as tape:
        _map(net, state)
    err = jnp.max(jnp.stack(tape.errors)) if tape.errors else jnp.zeros((), x.dtype)
    return [state.var1] + tape.var1, err


def _tile(net: Layer, x1: tuple, x2: tuple, row0: Any, col0: Any, diagonal: bool, *,
          symmetric: bool = False, band: bool = False) -> tuple[jax.Array, jax.Array]:
    """One tile. ``symmetric``: of a symmetric kernel, whose pairs of equal global
    indices the activations treat exactly (only in a diagonal tile, or anywhere in a
    ``band`` of rows of several devices)."""
    (a, tape1), (b, tape2) = x1, x2
    state = _input_state(a, b, tape1[0], tape2[0], diagonal=_starts_diagonal(net))
    pairs = [_Pairs(row0, col0, diagonal)] if symmetric and (diagonal or band) else []
    with _Tape((tape1[1:], tape2[1:])):
        _PAIRS.extend(pairs)
        try:
            state = _map(net, state)
        finally:
            del _PAIRS[len(_PAIRS) - len(pairs):]
    return state.nngp, state.ntk


def _auto_block(n1: int, n2: int, positions: int) -> int | None:
    """``None`` (one tile) when the ``(n1, n2, *S, *S)`` state has at most
    ``LAYER_TILE_ENTRIES`` entries, else the tile side ``b`` whose state has about as
    many (``positions = |S|^2``), at most ``AUTO_BLOCK``."""
    if n1 * n2 * positions <= LAYER_TILE_ENTRIES:
        return None
    return max(1, min(AUTO_BLOCK, math.isqrt(LAYER_TILE_ENTRIES // positions)))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _kernels(net: Layer, x1: jax.Array, x2: jax.Array, symmetric: bool,
             block_size: int | None,
             mesh: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(nngp, ntk, error)``: the kernels by tiles (device bands), and the largest
    diagonal error of the quadrature activations."""
    net = net._bind(tuple(x1.shape[1:]))
    if mesh is None:
        tape1, err = _var_tape(net, x1)
        rows = (x1, tape1)
        if symmetric:
            cols = rows
        else:
            tape2, err2 = _var_tape(net, x2)
            cols, err = (x2, tape2), jnp.maximum(err, err2)
        tile = functools.partial(_tile, net, symmetric=symmetric)
        nngp, ntk = _tiling.fill(tile, rows, cols, n1=x1.shape[0], n2=x2.shape[0],
                                 block_size=block_size, symmetric=symmetric, n_out=2,
                                 dtype=x1.dtype)
        return nngp, ntk, err

    tile = functools.partial(_tile, net, symmetric=symmetric, band=True)
    if symmetric:   # the upper block triangle, the same work on every device
        nngp, ntk = sharding.shard_symmetric(
            lambda _: tile, mesh, x1, prepare=lambda xa, _: (xa, _var_tape(net, xa)[0]),
            block_size=block_size, n_out=2, dtype=x1.dtype)
        err = _var_tape(net, x1)[1]
        return sharding.by_rows(nngp, mesh), sharding.by_rows(ntk, mesh), err

    def band(xa, xb, _, row0):
        xs = sharding.gather(xb)
        return _tiling.fill(tile, (xa, _var_tape(net, xa)[0]),
                            (xs, _var_tape(net, xs)[0]), n1=xa.shape[0], n2=xs.shape[0],
                            block_size=block_size, symmetric=False, n_out=2,
                            dtype=x1.dtype, row_offset=row0)

    nngp, ntk = sharding.shard_rows(band, mesh, x1, x2, ())
    err = jnp.maximum(_var_tape(net, x1)[1], _var_tape(net, x2)[1])
    return sharding.by_rows(nngp, mesh), sharding.by_rows(ntk, mesh), err


def _check_shape(shape: Any, name: str) -> Shape:
    try:
        shape = tuple(shape)
    except TypeError as err:
        raise TypeError(f"{name} must be a tuple of positive integers") from err
    if not shape:
        raise ValueError(f"{name} must have at least one (channel) axis, got ()")
    return tuple(check_int(s, name, minimum=1) for s in shape)


def _normals(key: jax.Array, shapes: Sequence[Shape],
             dtype: np.dtype) -> list[jax.Array]:
    keys = jax.random.split(key, len(shapes))
    return [jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)]


# ------------------------------------------------------------------------ affine layers
@dataclass(frozen=True)
class _Affine(Layer):
    """Shared by Dense and Conv: parameters, coefficients, the structured share."""

    #: the parameterizations the layer offers; whether it is a network's readout (only
    #: ``Dense`` has the field, which changes the maximal-update multiplier)
    _parameterizations = ("ntk", "standard")
    readout = False

    def _check_common(self) -> None:
        object.__setattr__(self, "out_channels",
                           check_int(self.out_channels, "out_channels", minimum=1))
        object.__setattr__(self, "W_std",
                           check_scalar(self.W_std, "W_std", positive=True))
        object.__setattr__(self, "b_std",
                           check_scalar(self.b_std, "b_std", nonnegative=True))
        check_choice(self.parameterization, "parameterization", self._parameterizations)

    def centered(self, in_centered: bool) -> bool:
        return True

    @property
    def has_bias(self) -> bool:
        return self.b_std > 0

    def _fan_in(self, in_shape: Shape) -> int:
        return math.prod(self._filter()) * in_shape[-1]

    def _filter(self) -> Shape:
        return ()

    def _init(self, key: jax.Array, in_shape: Shape, dtype: np.dtype) -> dict:
        fan_in = self._fan_in(in_shape)
        w_shape = (*self._filter(), in_shape[-1], self.out_channels)
        W, b = _normals(key, [w_shape, (self.out_channels,)], dtype)
        if self.parameterization == "standard":
            W = W * (self.W_std / math.sqrt(fan_in))
            b = b * self.b_std
        return {"W": W, "b": b} if self.has_bias else {"W": W}

    def _check_params(self, params: Any, in_shape: Shape) -> None:
        want = (*self._filter(), in_shape[-1], self.out_channels)
        name = type(self).__name__
        if not isinstance(params, dict) or "W" not in params:
            raise TypeError(f"params of {name} must be a dict with key 'W'")
        if tuple(jnp.shape(params["W"])) != want:
            raise ValueError(f"params of {name}: 'W' must have shape {want} for inputs "
                             f"with {in_shape[-1]} channels, got "
                             f"{tuple(jnp.shape(params['W']))}")
        if ("b" in params) != self.has_bias:
            raise ValueError(f"params of {name} "
                             + ("need a bias 'b' (b_std > 0)" if self.has_bias
                                else "must not have a bias 'b' (b_std == 0)"))

    def _multipliers(self, fan_in: int) -> tuple[float, float]:
        """``(c, beta)`` of ``z = c (W * a) + beta b``: the table
        :func:`~ntk_companion.parameterizations.layer_multipliers`."""
        return layer_multipliers(self.parameterization, self.W_std, self.b_std, fan_in,
                                 self.readout)

    def coefficients(self, in_shape: Shape) -> tuple[float, float]:
        """``(c^2, beta^2)`` of the structured share (0 for ``beta^2`` without bias)."""
        c, beta = self._multipliers(self._fan_in(in_shape))
        return c ** 2, (beta ** 2 if self.has_bias else 0.0)

    def _affine(self, state: Any) -> Any:
        """``K <- W_std^2 K + b_std^2`` (the vars as ``K``) and the NTK map of the
        layer's parameterization, on a full or diagonal state (for a ``Conv``, after its
        stencil): NTK ``Theta <- W_std^2 Theta + K_new``; standard
        ``Theta <- N K + c_b + W_std^2 Theta`` with the fan-in ``N`` and ``c_b = 1``
        with a bias (0 without; the gradients ``dz/dW = a``, ``dz/db = 1``)."""
        w2, b2 = self.W_std ** 2, self.b_std ** 2
        k = w2 * state.nngp + b2
        if self.parameterization == "standard":
            fan_in = self.__dict__.get("_bound_fan_in")
            if fan_in is None:
                raise ValueError(f"{type(self).__name__}(parameterization='standard'): "
                                 f"its NTK map needs the fan-in; compute the kernels "
                                 f"with Layer.kernels, which binds the input shape")
            c_b = 1.0 if self.has_bias else 0.0
            ntk = fan_in * state.nngp + c_b + w2 * state.ntk
        else:
            ntk = w2 * state.ntk + k
        return type(state)(k, ntk, w2 * state.var1 + b2, w2 * state.var2 + b2)

    def _bind(self, in_shape: Shape) -> "Layer":
        """A copy that knows its fan-in (the standard parameterization's NTK map)."""
        if self.parameterization != "standard":
            return self
        bound = copy.copy(self)
        object.__setattr__(bound, "_bound_fan_in", self._fan_in(in_shape))
        return bound

    def _scale(self, params: dict, fan_in: int, z: jax.Array) -> jax.Array:
        if self.parameterization == "standard":        # (the scales sit in W and b)
            return z + params["b"] if "b" in params else z
        c, beta = self._multipliers(fan_in)
        z = c * z
        return z + beta * params["b"] if "b" in params else z

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        in_shape = tuple(x.shape[1:])
        self._check_params(params, in_shape)
        z = self._scale(params, self._fan_in(in_shape), self._linear(params["W"], x))
        if rec is not None:
            z = rec(self, params, x, z)
        return z


@dataclass(frozen=True)
class Dense(_Affine):
    r"""Dense layer on the channel axis, the same weights at every position:
    ``z_s = (W_std / sqrt(C)) a_s W + b_std b`` (NTK parameterization).

    ``parameterization="mup"`` (maximal update, as in :class:`~ntk_companion.MLP`): as
    ``"ntk"``, except that the layer marked ``readout=True`` (the network's last)
    computes ``z_s = (W_std / C) a_s W + b_std b``; the multipliers are those of
    :func:`~ntk_companion.parameterizations.layer_multipliers`. Its features move as the
    width grows, so it has no kernel limit: ``kernels`` raises a ``ValueError``.
    ``readout`` is accepted with ``"mup"`` only (it changes no other parameterization).

    Kernel map (per pair of positions): ``K <- W_std^2 K + b_std^2``,
    ``Theta <- W_std^2 Theta + K_new``. On inputs the kernel is ``K = x x'^T / C``:

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> x = jnp.array([[1.0, 2.0], [3.0, 0.0]])
    >>> k = nl.Dense(4, W_std=2.0, b_std=0.5).kernels(x)
    >>> bool(jnp.allclose(k.nngp, 4.0 * (x @ x.T) / 2 + 0.25)), k.ntk.shape
    (True, (2, 2))
    """

    out_channels: int
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"
    readout: bool = False

    _parameterizations = PARAMETERIZATIONS

    def __post_init__(self) -> None:
        self._check_common()
        if not isinstance(self.readout, (bool, np.bool_)):
            raise TypeError(f"readout must be True or False, got "
                            f"{type(self.readout).__name__}")
        object.__setattr__(self, "readout", bool(self.readout))
        if self.readout and self.parameterization != "mup":
            raise ValueError("readout=True changes the maximal-update "
                             "parameterization only; use it with "
                             f"parameterization='mup', got {self.parameterization!r}")

    def centered(self, in_centered: bool) -> bool:
        if self.parameterization == "mup":     # (the kernel engine's first check)
            raise ValueError("Dense(parameterization='mup') has no infinite-width "
                             "kernel limit (its features move as the width grows); "
                             "kernels are defined for 'ntk' and 'standard'")
        return True

    def out_shape(self, in_shape: Shape) -> Shape:
        return (*in_shape[:-1], self.out_channels)

    def _linear(self, W: jax.Array, x: jax.Array) -> jax.Array:
        return x @ W

    def patches(self, a: jax.Array) -> jax.Array:
        """The layer's inputs as ``(n, |S|, C)``."""
        return a.reshape(a.shape[0], -1, a.shape[-1])

    def kernel_map(self, state: KernelState) -> KernelState:
        return self._affine(state)

    def diagonal_map(self, state: DiagonalState) -> DiagonalState:
        return self._affine(state)


def _pads(spatial: Shape, window: Shape, strides: Shape, padding: str,
          name: str) -> list[tuple[int, int]]:
    """``(lo, hi)`` per spatial axis: ``VALID`` none; ``SAME`` and ``CIRCULAR`` the
    amounts giving ``ceil(L / stride)`` outputs (lo = total // 2)."""
    out = []
    for length, f, s in zip(spatial, window, strides):
        if padding == "VALID":
            if f > length:
                raise ValueError(f"{name}: window {f} is larger than the input length "
                                 f"{length} with padding 'VALID'")
            out.append((0, 0))
            continue
        n_out = -(-length // s)
        total = max((n_out - 1) * s + f - length, 0)
        if padding == "CIRCULAR" and total > length:
            raise ValueError(f"{name}: circular padding of {total} exceeds the input "
                             f"length {length}")
        out.append((total // 2, total - total // 2))
    return out


def _out_len(length: int, f: int, s: int, pad: tuple[int, int]) -> int:
    return (length + pad[0] + pad[1] - f) // s + 1


def _pad_spatial(a: jax.Array, axes: Sequence[int], pads: Sequence[tuple[int, int]],
                 circular: bool) -> jax.Array:
    widths = [(0, 0)] * a.ndim
    for ax, p in zip(axes, pads):
        widths[ax] = p
    return jnp.pad(a, widths, mode="wrap" if circular else "constant")


def _window_check(value: Any, rank: int | None, name: str) -> Shape:
    try:
        value = tuple(value)
    except TypeError as err:
        raise TypeError(f"{name} must be a tuple of positive integers") from err
    if not 1 <= len(value) <= 2:
        raise ValueError(f"{name} must have 1 (1-D) or 2 (2-D) entries, got {value}")
    if rank is not None and len(value) != rank:
        raise ValueError(f"{name} must have {rank} entries, got {value}")
    return tuple(check_int(v, name, minimum=1) for v in value)


def _check_spatial(layer: Any, in_shape: Shape, rank: int) -> None:
    name = type(layer).__name__
    if len(in_shape) != rank + 1:
        raise ValueError(f"x: {name} with a {rank}-D window needs inputs of shape "
                         f"(n, {', '.join(['L'] * rank)}, C) (rank {rank + 2}), got "
                         f"feature shape {in_shape}")


def _same_offset_sum(K: jax.Array, lead: int, rank: int, window: Shape, strides: Shape,
                     pads: Sequence[tuple[int, int]], circular: bool, out: Shape,
                     paired: bool) -> jax.Array:
    """For a covariance ``K[lead..., *s, *t]``: ``sum_o K[s*stride + o, t*stride + o]``
    (``paired``, a convolution: the same offset on both sides) or ``sum_{o, o'}
    K[s*stride + o, t*stride + o']`` (pooling), over the window offsets, with
    padding."""
    ax1 = list(range(lead, lead + rank))
    ax2 = list(range(lead + rank, lead + 2 * rank))
    if not paired:  # separable: pool side 1, then side 2
        K = _side_sum(K, ax1, window, strides, pads, circular, out)
        return _side_sum(K, ax2, window, strides, pads, circular, out)
    for d in range(rank):       # separable: one spatial axis (on both sides) at a time
        K = _pad_spatial(K, [ax1[d], ax2[d]], [pads[d]] * 2, circular)
        total = None
        for o in range(window[d]):
            idx = [slice(None)] * K.ndim
            sl = slice(o, o + (out[d] - 1) * strides[d] + 1, strides[d])
            idx[ax1[d]] = idx[ax2[d]] = sl
            piece = K[tuple(idx)]
            total = piece if total is None else total + piece
        K = total
    return K


def _side_sum(K: jax.Array, axes: list[int], window: Shape, strides: Shape,
              pads: Sequence[tuple[int, int]], circular: bool, out: Shape) -> jax.Array:
    K = _pad_spatial(K, axes, pads, circular)
    total = None
    for off in itertools.product(*(range(f) for f in window)):
        idx = [slice(None)] * K.ndim
        for d, ax in enumerate(axes):
            idx[ax] = slice(off[d], off[d] + (out[d] - 1) * strides[d] + 1, strides[d])
        piece = K[tuple(idx)]
        total = piece if total is None else total + piece
    return total


def _windowed(state: Any, window: Shape, strides: Shape, padding: str,
              paired: bool, name: str) -> Any:
    """The window sums of a full state, or of a diagonal one (``paired`` only: the
    offsets of the diagonal, one set of spatial axes)."""
    diagonal = isinstance(state, DiagonalState)
    rank = state.var1.ndim - 1 if diagonal else _rank(state)
    spatial = state.var1.shape[1:1 + rank]
    pads = _pads(spatial, window, strides, padding, name)
    out = tuple(_out_len(length, f, s, p)
                for length, f, s, p in zip(spatial, window, strides, pads))
    circ = padding == "CIRCULAR"
    norm = math.prod(window) ** (1 if paired else 2)

    def go(K, lead):
        if diagonal:
            return _side_sum(K, list(range(lead, lead + rank)), window, strides, pads,
                             circ, out) / norm
        return _same_offset_sum(K, lead, rank, window, strides, pads, circ, out,
                                paired) / norm

    return type(state)(go(state.nngp, 2), go(state.ntk, 2), go(state.var1, 1),
                       go(state.var2, 1))


@dataclass(frozen=True)
class Conv(_Affine):
    r"""Convolution, channels last, 1-D (``filter_shape=(f,)``, inputs ``(n, L, C)``) or
    2-D (``(fh, fw)``, inputs ``(n, H, W, C)``); ``strides``; ``padding`` ``"SAME"``,
    ``"VALID"`` or ``"CIRCULAR"`` (periodic, the output size of ``"SAME"``). NTK
    parameterization with fan-in ``N = C prod(filter_shape)``:
    ``z_s = (W_std / sqrt(N)) sum_{o, c} W[o, c, :] a_{s*stride + o, c} + b_std b``.

    Kernel map:
    ``K(s, t) <- (W_std^2 / |f|) sum_o K(s*stride + o, t*stride + o) + b_std^2`` (the
    same offset ``o`` on both sides; zero-padded positions contribute 0, circular ones
    wrap),
    ``Theta(s, t) <- (W_std^2 / |f|) sum_o Theta(s*stride + o, t*stride + o) + K_new``.
    A ``1x1`` convolution is :class:`Dense` applied per position.

    >>> from ntk_companion import layers as nl
    >>> nl.Conv(8, (3,), strides=(2,), padding="VALID").out_shape((9, 2))   # (L, C)
    (4, 8)
    """

    out_channels: int
    filter_shape: Shape = (3, 3)
    strides: Shape | None = None
    padding: str = "SAME"
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"

    def __post_init__(self) -> None:
        self._check_common()
        f = _window_check(self.filter_shape, None, "filter_shape")
        object.__setattr__(self, "filter_shape", f)
        s = (1,) * len(f) if self.strides is None else self.strides
        object.__setattr__(self, "strides", _window_check(s, len(f), "strides"))
        check_choice(self.padding, "padding", _PADDINGS)

    def _filter(self) -> Shape:
        return self.filter_shape

    def _geometry(self, in_shape: Shape) -> tuple[list[tuple[int, int]], Shape]:
        rank = len(self.filter_shape)
        _check_spatial(self, in_shape, rank)
        spatial = in_shape[:-1]
        for length, s in zip(spatial, self.strides):
            if s > length:
                raise ValueError(f"strides {self.strides} larger than the input's "
                                 f"spatial shape {spatial}")
        pads = _pads(spatial, self.filter_shape, self.strides, self.padding,
                     "filter_shape")
        out = tuple(_out_len(length, f, s, p) for length, f, s, p in
                    zip(spatial, self.filter_shape, self.strides, pads))
        return pads, out

    def out_shape(self, in_shape: Shape) -> Shape:
        _, out = self._geometry(in_shape)
        return (*out, self.out_channels)

    def _padded(self, x: jax.Array) -> jax.Array:
        pads, _ = self._geometry(tuple(x.shape[1:]))
        rank = len(self.filter_shape)
        return _pad_spatial(x, range(1, 1 + rank), pads, self.padding == "CIRCULAR")

    def _dims(self) -> tuple[str, str, str]:
        return (("NHC", "HIO", "NHC") if len(self.filter_shape) == 1
                else ("NHWC", "HWIO", "NHWC"))

    def _linear(self, W: jax.Array, x: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(self._padded(x), W, self.strides, "VALID",
                                        dimension_numbers=self._dims(),
                                        precision=lax.Precision.HIGHEST)

    def patches(self, a: jax.Array) -> jax.Array:
        """The patches ``P_s(a)`` of every output position, shape ``(n, |S_out|, N)``,
        features ordered as the rows of ``W.reshape(N, C_out)`` (offset, then channel).
        Strided slices of the padded input (``lax.conv_general_dilated_patches`` would
        be a convolution with an ``N x N`` identity filter: ``N`` times the
        arithmetic)."""
        padded = self._padded(a)
        _, out = self._geometry(tuple(a.shape[1:]))
        pieces = []
        for off in itertools.product(*(range(f) for f in self.filter_shape)):
            idx = (slice(None),) + tuple(
                slice(o, o + (m - 1) * s + 1, s)
                for o, m, s in zip(off, out, self.strides)) + (slice(None),)
            pieces.append(padded[idx])
        p = jnp.stack(pieces, axis=-2)                    # (n, *S_out, |f|, C)
        return p.reshape(p.shape[0], math.prod(out), -1)

    def kernel_map(self, state: KernelState) -> KernelState:
        return self._affine(self._stencil(state, _rank(state)))

    def diagonal_map(self, state: DiagonalState) -> DiagonalState:
        """``K(s, s) <- (W_std^2 / |f|) sum_o K(s*stride + o, s*stride + o) + b_std^2``:
        the diagonal of the input only."""
        return self._affine(self._stencil(state, state.var1.ndim - 1))

    def _stencil(self, state: Any, rank: int) -> Any:
        if rank != len(self.filter_shape):
            raise ValueError(f"filter_shape {self.filter_shape} does not match inputs "
                             f"with {rank} spatial axes")
        return _windowed(state, self.filter_shape, self.strides, self.padding, True,
                         "filter_shape")


# -------------------------------------------------------------------------- activations
@dataclass(frozen=True)
class Activation(Layer):
    r"""Elementwise nonlinearity ``sigma`` (a name of
    :func:`~ntk_companion.get_activation` or an elementwise callable).

    Kernel map, for each pair of positions with
    ``(u, v) ~ N(0, [[K(x_s, x_s), K(x_s, x'_t)], [., K(x'_t, x'_t)]])``:
    ``K <- E[sigma(u) sigma(v)]``, ``Theta <- Theta E[sigma'(u) sigma'(v)]``: closed
    forms for relu, erf and identity, quadrature (``order``, ``quadrature``)
    otherwise — the expectations of :func:`~ntk_companion.analytic_kernels`.

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> nl.Activation("relu").apply((), jnp.array([[-1.0, 2.0]])).tolist()   # no params
    [[0.0, 2.0]]
    """

    activation: Any = "relu"
    order: int = 96
    quadrature: str = "hermite"

    def __post_init__(self) -> None:
        get_activation(self.activation)
        object.__setattr__(self, "order", check_int(self.order, "order", minimum=2))
        check_choice(self.quadrature, "quadrature", ("hermite", "polar"))
        if self.order > MAX_ORDER[self.quadrature]:
            raise ValueError(f"order must be at most {MAX_ORDER[self.quadrature]} for "
                             f"quadrature={self.quadrature!r} (numpy's nodes and "
                             f"weights "
                             f"are not finite beyond), got {self.order}")

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        return get_activation(self.activation)(x)

    @property
    def by_quadrature(self) -> bool:
        """Whether the moments are computed by quadrature (no closed form)."""
        act = self.activation
        return not (isinstance(act, str) and act in _CLOSED_FORMS)

    def _moments(self) -> Callable:
        if not self.by_quadrature:
            return _moments_fn(self.activation, None, self.order, self.quadrature)
        return _moments_fn("quadrature", get_activation(self.activation), self.order,
                           self.quadrature)

    def check_rule(self) -> None:
        """Raise ``ValueError`` for the Hermite rule on an activation whose derivative
        jumps at 0 (only ``O(1/order)`` accurate there: use ``quadrature="polar"``)."""
        if self.by_quadrature and self.quadrature == "hermite":
            _check_smooth_at_zero(get_activation(self.activation))

    def diagonal_error(self, state: Any) -> jax.Array | None:
        """Largest relative error of the quadrature moments ``E[sigma(u)^2]``,
        ``E[sigma'(u)^2]`` at the variances ``K(x_s, x_s)`` of ``state.var1`` against
        a 1-D reference rule (``None`` for a closed form); see
        :func:`~ntk_companion.analytic_kernels`."""
        if not self.by_quadrature:
            return None
        q = state.var1 if isinstance(state, DiagonalState) else _diag(state.var1)
        return _moment_error(q, sigma=get_activation(self.activation), order=self.order,
                             rule=self.quadrature)

    def _pairs(self, nngp: jax.Array, ntk: jax.Array, var1: jax.Array, a: jax.Array,
               b: jax.Array, paired: bool) -> tuple[jax.Array, ...]:
        """Inside a tile of a symmetric kernel (``_PAIRS``): ``K12 = K(x, x)``
        (``var1``) for the pairs of equal global indices, and for quadrature the pairs
        below the diagonal evaluated as their mirror image (the roles of ``a`` and ``b``
        exchanged; in a diagonal tile the mirrored entries themselves), so that the
        result does not depend on the tiling or the devices."""
        if not _PAIRS:
            return nngp, ntk, a, b
        pairs = _PAIRS[-1]
        n1, n2 = nngp.shape[:2]
        i = jnp.arange(n1)
        if pairs.diagonal:
            j = i
        else:
            j = pairs.row0 + i - pairs.col0
            j = jnp.where((j >= 0) & (j < n2), j, n2)          # out of range: dropped
        nngp = nngp.at[i, j].set(var1.astype(nngp.dtype), mode="drop")
        if not self.by_quadrature:
            return nngp, ntk, a, b
        npos = nngp.ndim - 2
        lower = (pairs.row0 + i)[:, None] > (pairs.col0 + jnp.arange(n2))[None, :]
        lower = lower.reshape(n1, n2, *(1,) * npos)
        full = nngp.shape
        a, b = jnp.broadcast_to(a, full), jnp.broadcast_to(b, full)
        a, b = jnp.where(lower, b, a), jnp.where(lower, a, b)
        if pairs.diagonal:
            perm = (1, 0) + tuple(range(2, 2 + npos))
            if paired:                               # K[j, i, t, s] for K[i, j, s, t]
                r = npos // 2
                perm = (1, 0) + perm[2 + r:] + perm[2:2 + r]
            nngp = jnp.where(lower, jnp.transpose(nngp, perm), nngp)
            ntk = jnp.where(lower, jnp.transpose(ntk, perm), ntk)
        return nngp, ntk, a, b

    def _cross(self, a: jax.Array, b: jax.Array, k: jax.Array, theta: jax.Array,
               spatial: bool) -> tuple[jax.Array, jax.Array]:
        """``(E[sigma(u) sigma(v)], Theta E[sigma'(u) sigma'(v)])`` with
        ``Var u = a``, ``Cov(u, v) = k``, ``Var v = b`` (broadcast), by chunks of rows
        when the state is ``spatial`` (:func:`_by_rows`; a vector state has no stencil
        to keep the moments out of, and the loop costs 5 %, measured)."""
        moments = self._moments()
        if not spatial:
            m, mdot = moments(a, k, b)
            return m, theta * mdot
        if b.shape[0] == 1:                          # shared by all rows
            def cross(a_i, k_i, theta_i):
                m, mdot = moments(a_i, k_i, b)
                return m, theta_i * mdot

            return _by_rows(cross, jnp.broadcast_to(a, (k.shape[0], *a.shape[1:])), k,
                            theta)

        def cross_ab(a_i, b_i, k_i, theta_i):
            m, mdot = moments(a_i, k_i, b_i)
            return m, theta_i * mdot

        return _by_rows(cross_ab, a, b, k, theta)

    def kernel_map(self, state: KernelState) -> KernelState:
        moments = self._moments()
        r = _rank(state)
        d1, d2 = _diag(state.var1), _diag(state.var2)
        rows = (slice(None),) * r + (None,) * r      # a position s of the first input
        cols = (None,) * r + (slice(None),) * r      # a position t of the second
        a = d1[(slice(None), None) + rows]
        b = d2[(None, slice(None)) + cols]
        nngp, ntk, a, b = self._pairs(state.nngp, state.ntk, state.var1, a, b, True)
        k, ntk = self._cross(a, b, nngp, ntk, r > 0)

        def self_map(var, d):
            return _by_rows(lambda d_i, v_i: moments(d_i[(slice(None),) + rows], v_i,
                                                     d_i[(slice(None),) + cols])[0],
                            d, var)

        return KernelState(k, ntk, self_map(state.var1, d1), self_map(state.var2, d2))

    def diagonal_map(self, state: DiagonalState) -> DiagonalState:
        """The same moments on the diagonal: ``(u, v)`` of covariance
        ``[[K(x_s, x_s), K(x_s, x'_s)], [., K(x'_s, x'_s)]]``."""
        moments = self._moments()
        d1, d2 = state.var1, state.var2
        nngp, ntk, a, b = self._pairs(state.nngp, state.ntk, d1, d1[:, None], d2[None],
                                       False)
        k, ntk = self._cross(a, b, nngp, ntk, d1.ndim > 1)
        return DiagonalState(k, ntk, moments(d1, d1, d1)[0], moments(d2, d2, d2)[0])


def _by_rows(fn: Callable, *arrays: jax.Array) -> Any:
    """``fn(*arrays)`` (elementwise along the leading axis), computed by a loop
    (``lax.map``) over chunks of rows of at least ``ACTIVATION_CHUNK_ENTRIES`` entries.

    Why: XLA:CPU splits an activation's moments into several fused passes at the
    divisions and square roots, and fuses the cheap tail of each into the strided reads
    of the next layer's stencil, which then recomputes it for every offset of the filter
    (measured: the ReLU map in a conv net cost 10x its isolated cost). A loop body is a
    computation of its own: the moments are computed once, on a chunk that stays in the
    cache, and the stencil reads the stored result (measured: the standard benchmark
    2.2x faster)."""
    n = arrays[0].shape[0]
    per_row = max(1, arrays[-1].size // max(n, 1))
    chunk = max(1, -(-ACTIVATION_CHUNK_ENTRIES // per_row))
    steps = n // chunk
    if steps < 2:
        return fn(*arrays)
    body = [a[:steps * chunk].reshape(steps, chunk, *a.shape[1:]) for a in arrays]
    out = lax.map(lambda a: fn(*a), body)
    out = jax.tree_util.tree_map(lambda o: o.reshape(steps * chunk, *o.shape[2:]), out)
    if steps * chunk == n:
        return out
    rest = fn(*(a[steps * chunk:] for a in arrays))
    return jax.tree_util.tree_map(lambda o, q: jnp.concatenate([o, q]), out, rest)


@dataclass(frozen=True)
class Identity(Layer):
    """The identity map (the skip branch of a residual block); kernels unchanged.

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> nl.Identity().apply((), jnp.array([[1.0, -2.0]])).tolist()
    [[1.0, -2.0]]
    """

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def centered(self, in_centered: bool) -> bool:
        return in_centered

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        return x

    def kernel_map(self, state: KernelState) -> KernelState:
        return state

    def diagonal_map(self, state: DiagonalState) -> DiagonalState:
        return state


# --------------------------------------------------------------------------- pooling
@dataclass(frozen=True)
class AvgPool(Layer):
    r"""Average pooling over windows ``window_shape`` (1-D or 2-D), ``strides``
    (default: the window), ``padding`` as for :class:`Conv` (zero padding counts in the
    average).

    Kernel map: ``K(s, t) <- |w|^{-2} sum_{o, o'} K(s*stride + o, t*stride + o')``, the
    same for ``Theta`` (a linear map without parameters).

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> x = jnp.arange(4.0).reshape(1, 4, 1)   # one input, 4 positions, 1 channel
    >>> nl.AvgPool((2,)).apply((), x)[0, :, 0].tolist()
    [0.5, 2.5]
    """

    window_shape: Shape = (2, 2)
    strides: Shape | None = None
    padding: str = "VALID"

    def __post_init__(self) -> None:
        w = _window_check(self.window_shape, None, "window_shape")
        object.__setattr__(self, "window_shape", w)
        s = w if self.strides is None else self.strides
        object.__setattr__(self, "strides", _window_check(s, len(w), "strides"))
        check_choice(self.padding, "padding", _PADDINGS)

    def centered(self, in_centered: bool) -> bool:
        return in_centered

    def _geometry(self, in_shape: Shape):
        _check_spatial(self, in_shape, len(self.window_shape))
        spatial = in_shape[:-1]
        for length, s in zip(spatial, self.strides):
            if s > length:
                raise ValueError(f"strides {self.strides} larger than the input's "
                                 f"spatial shape {spatial}")
        pads = _pads(spatial, self.window_shape, self.strides, self.padding,
                     "window_shape")
        out = tuple(_out_len(length, f, s, p) for length, f, s, p in
                    zip(spatial, self.window_shape, self.strides, pads))
        return pads, out

    def out_shape(self, in_shape: Shape) -> Shape:
        return (*self._geometry(in_shape)[1], in_shape[-1])

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        pads, out = self._geometry(tuple(x.shape[1:]))
        rank = len(self.window_shape)
        return (_side_sum(x, list(range(1, 1 + rank)), self.window_shape, self.strides,
                          pads, self.padding == "CIRCULAR", out)
                / math.prod(self.window_shape))

    def kernel_map(self, state: KernelState) -> KernelState:
        return _windowed(state, self.window_shape, self.strides, self.padding, False,
                         "window_shape")


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    r"""Mean over all spatial positions: ``(n, *S, C) -> (n, C)``.

    Kernel map: ``K <- |S|^{-2} sum_{s, t} K(s, t)``, the same for ``Theta``.

    >>> from ntk_companion import layers as nl
    >>> nl.GlobalAvgPool().out_shape((6, 6, 3))
    (3,)
    """

    def centered(self, in_centered: bool) -> bool:
        return in_centered

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 2:
            raise ValueError(f"x: GlobalAvgPool needs inputs with spatial axes "
                             f"(n, *S, C), got feature shape {in_shape}")
        return (in_shape[-1],)

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))

    def kernel_map(self, state: KernelState) -> KernelState:
        r = _rank(state)

        def go(K, lead):
            return jnp.mean(K, axis=tuple(range(lead, lead + 2 * r)))

        return KernelState(go(state.nngp, 2), go(state.ntk, 2), go(state.var1, 1),
                           go(state.var2, 1))


@dataclass(frozen=True)
class Flatten(Layer):
    r"""``(n, *S, C) -> (n, |S| C)``.

    Kernel map (the following layer's fan-in is ``|S| C``):
    ``K <- |S|^{-1} sum_s K(s, s)``, the same for ``Theta``: only equal positions
    correlate.

    >>> from ntk_companion import layers as nl
    >>> nl.Flatten().out_shape((4, 4, 3))
    (48,)
    """

    def centered(self, in_centered: bool) -> bool:
        return in_centered

    def out_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        return x.reshape(x.shape[0], -1)

    def kernel_map(self, state: KernelState) -> KernelState:
        r = _rank(state)
        if r == 0:
            return state
        spatial = state.var1.shape[1:1 + r]
        p = math.prod(spatial)

        def go(K, lead):
            flat = K.reshape(*K.shape[:lead], p, p)
            return jnp.mean(jnp.diagonal(flat, axis1=-2, axis2=-1), axis=-1)

        return KernelState(go(state.nngp, 2), go(state.ntk, 2), go(state.var1, 1),
                           go(state.var2, 1))

    def diagonal_map(self, state: DiagonalState) -> KernelState:
        """``K <- |S|^{-1} sum_s K(s, s)`` from the diagonal state (vector output)."""
        r = state.var1.ndim - 1

        def go(K, lead):
            return jnp.mean(K.reshape(*K.shape[:lead], -1), axis=-1) if r else K

        return KernelState(go(state.nngp, 2), go(state.ntk, 2), go(state.var1, 1),
                           go(state.var2, 1))


@dataclass(frozen=True)
class LayerNorm(Layer):
    r"""Normalization over the channels at every position:
    ``a_s <- (a_s - mean_c a_s) / sqrt(var_c a_s + eps)``.

    Kernel map: ``K(s, t) <- K(s, t) / sqrt(K(x_s, x_s) K(x'_t, x'_t))``, the same for
    ``Theta``. Exact in the limit when the channel mean of the input vanishes there (an
    input from a ``Dense`` or ``Conv`` layer, ``centered``); otherwise an error is
    raised.

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> a = nl.LayerNorm().apply((), jnp.array([[1.0, 2.0, 3.0]]))
    >>> # mean 0, variance 1
    >>> round(float(a.mean()), 12), round(float((a ** 2).mean()), 6)
    (0.0, 1.0)
    """

    eps: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_scalar(self.eps, "eps", nonnegative=True))

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        c = x - mean
        return c / jnp.sqrt(jnp.mean(c * c, axis=-1, keepdims=True) + self.eps)

    def centered(self, in_centered: bool) -> bool:
        if not in_centered:
            raise ValueError("LayerNorm: the kernel map needs an input whose channel "
                             "mean vanishes at infinite width (place it after a Dense "
                             "or Conv layer)")
        return False

    def kernel_map(self, state: KernelState) -> KernelState:
        r = _rank(state)
        d1, d2 = _diag(state.var1), _diag(state.var2)
        s1 = jnp.sqrt(d1 + self.eps)
        s2 = jnp.sqrt(d2 + self.eps)
        a = s1[(slice(None), None) + (slice(None),) * r + (None,) * r]
        b = s2[(None, slice(None)) + (None,) * r + (slice(None),) * r]

        def self_norm(var, s):
            return var / (s[(slice(None),) + (slice(None),) * r + (None,) * r]
                          * s[(slice(None),) + (None,) * r + (slice(None),) * r])

        return KernelState(state.nngp / (a * b), state.ntk / (a * b),
                           self_norm(state.var1, s1), self_norm(state.var2, s2))

    def diagonal_map(self, state: DiagonalState) -> DiagonalState:
        s1 = jnp.sqrt(state.var1 + self.eps)
        s2 = jnp.sqrt(state.var2 + self.eps)
        ab = s1[:, None] * s2[None]
        return DiagonalState(state.nngp / ab, state.ntk / ab, state.var1 / (s1 * s1),
                             state.var2 / (s2 * s2))


# -------------------------------------------------------------------------- combinators
@dataclass(frozen=True)
class _Serial(Layer):
    layers: tuple

    def out_shape(self, in_shape: Shape) -> Shape:
        for layer in self.layers:
            in_shape = layer.out_shape(in_shape)
        return in_shape

    def centered(self, in_centered: bool) -> bool:
        for layer in self.layers:
            in_centered = layer.centered(in_centered)
        return in_centered

    def _init(self, key: jax.Array, in_shape: Shape, dtype: np.dtype) -> list:
        keys = jax.random.split(key, len(self.layers))
        params = []
        for k, layer in zip(keys, self.layers):
            params.append(layer._init(k, in_shape, dtype))
            in_shape = layer.out_shape(in_shape)
        return params

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        if not isinstance(params, (list, tuple)) or len(params) != len(self.layers):
            raise ValueError(f"params must be a list of {len(self.layers)} entries, "
                             f"one per layer of the serial network")
        for p, layer in zip(params, self.layers):
            x = layer._fwd(p, x, rec)
        return x

    def kernel_map(self, state: KernelState) -> Any:
        for i, layer in enumerate(self.layers):
            if (isinstance(state, KernelState) and _rank(state) > 0
                    and _diagonal_run(self.layers[i:])):
                state = _to_diagonal(state)      # only the diagonal is needed from here
            state = _map(layer, state)
        return state

    def diagonal_map(self, state: DiagonalState) -> Any:
        return self.kernel_map(state)

    def _bind(self, in_shape: Shape) -> Layer:
        bound = []
        for layer in self.layers:
            bound.append(layer._bind(in_shape))
            in_shape = layer.out_shape(in_shape)
        return _Serial(tuple(bound))


def _check_layers(layers: Sequence[Any], name: str) -> tuple:
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"{name} needs at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"{name}: argument {i} must be a layer of "
                            f"ntk_companion.layers, got {type(layer).__name__}")
    return layers


def serial(*layers: Layer) -> Layer:
    """The composition ``layers[-1] o ... o layers[0]``; parameters are a list with one
    entry per layer (``()`` for a layer without parameters); the kernel maps compose.

    >>> from ntk_companion import layers as nl
    >>> net = nl.serial(nl.Dense(16), nl.Activation("relu"), nl.Dense(1))
    >>> net.out_shape((3,))
    (1,)
    """
    return _Serial(_check_layers(layers, "serial"))


@dataclass(frozen=True)
class _Sum(Layer):
    branches: tuple

    def out_shape(self, in_shape: Shape) -> Shape:
        shapes = [b.out_shape(in_shape) for b in self.branches]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"parallel_sum: the branches give different output shapes "
                             f"{shapes}")
        return shapes[0]

    def centered(self, in_centered: bool) -> bool:
        flags = [b.centered(in_centered) for b in self.branches]
        if sum(not f for f in flags) > 1:
            raise ValueError("parallel_sum: at most one branch may end without a Dense "
                             "or Conv layer for the kernel map (otherwise the branches "
                             "are correlated and the kernels do not add)")
        return all(flags)

    def _init(self, key: jax.Array, in_shape: Shape, dtype: np.dtype) -> list:
        keys = jax.random.split(key, len(self.branches))
        return [b._init(k, in_shape, dtype) for k, b in zip(keys, self.branches)]

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        if not isinstance(params, (list, tuple)) or len(params) != len(self.branches):
            raise ValueError(f"params must be a list of {len(self.branches)} entries, "
                             f"one per branch of parallel_sum")
        out = None
        for p, b in zip(params, self.branches):
            y = b._fwd(p, x, rec)
            out = y if out is None else out + y
        return out

    def kernel_map(self, state: Any) -> Any:
        states = [_map(b, state) for b in self.branches]
        return type(states[0])(*(sum(s[i] for s in states) for i in range(4)))

    def diagonal_map(self, state: DiagonalState) -> DiagonalState:
        return self.kernel_map(state)

    def _bind(self, in_shape: Shape) -> Layer:
        return _Sum(tuple(b._bind(in_shape) for b in self.branches))


def parallel_sum(*branches: Layer) -> Layer:
    r"""Fan-out to every branch and sum: ``f(x) = sum_b branch_b(x)`` (a residual block
    is ``parallel_sum(Identity(), serial(...))``).

    Kernel map: the branches' kernels add, ``K = sum_b K_b``, ``Theta = sum_b Theta_b``.
    This is exact when the cross-covariances of the branches vanish, i.e. when every
    branch but at most one ends in a zero-mean function of its own weights (a ``Dense``
    or ``Conv`` layer, possibly followed by pooling or ``Flatten``); ``Layer.kernels``
    rejects other sums (the finite network is any sum).

    >>> from ntk_companion import layers as nl
    >>> block = nl.parallel_sum(nl.Identity(), nl.serial(nl.Activation("relu"),
    ...                                                  nl.Dense(4)))
    """
    return _Sum(_check_layers(branches, "parallel_sum"))


@dataclass(frozen=True)
class _Repeat(Layer):
    block: Layer
    n: int

    def out_shape(self, in_shape: Shape) -> Shape:
        out = self.block.out_shape(in_shape)
        if self.n > 1 and self.block.out_shape(out) != out:
            raise ValueError(f"repeat: the block maps its output shape {out} to "
                             f"{self.block.out_shape(out)}; after the first copy it "
                             f"must "
                             f"keep the shape of its input")
        return out

    def centered(self, in_centered: bool) -> bool:
        for _ in range(min(self.n, 2)):
            in_centered = self.block.centered(in_centered)
        return in_centered

    def _init(self, key: jax.Array, in_shape: Shape, dtype: np.dtype) -> list:
        params = []
        for k in jax.random.split(key, self.n):
            params.append(self.block._init(k, in_shape, dtype))
            in_shape = self.block.out_shape(in_shape)
        return params

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        if not isinstance(params, (list, tuple)) or len(params) != self.n:
            raise ValueError(f"params must be a list of {self.n} entries, one per copy "
                             f"of the repeated block")
        for p in params:
            x = self.block._fwd(p, x, rec)
        return x

    def _bind(self, in_shape: Shape) -> Layer:
        first = self.block._bind(in_shape)
        rest = self.block._bind(self.block.out_shape(in_shape)) if self.n > 1 else first
        bound = _Repeat(first, self.n)
        object.__setattr__(bound, "_rest", rest)
        return bound

    def kernel_map(self, state: Any) -> Any:
        """The first copy, then ``lax.scan`` over the ``n - 1`` others (bound to the
        block's output shape): one traced body whatever ``n``. A recording tape gets
        the vars of the scanned copies stacked (inputs first), a replaying one gives
        them back as the scanned sequence."""
        rest = self.__dict__.get("_rest", self.block)
        state = _map(self.block, state)
        if self.n == 1:
            return state
        tape = _TAPES[-1] if _TAPES else None
        if tape is None:
            state, _ = lax.scan(lambda s, _: (_map(rest, s), None), state, None,
                                length=self.n - 1)
            return state
        if not tape.replay:
            def record(s, _):
                with _Tape() as inner:
                    s = _map(rest, s)
                errs = jnp.max(jnp.stack(inner.errors)) if inner.errors else None
                return s, (inner.var1, inner.var2, errs)

            state, (v1, v2, errs) = lax.scan(record, state, None, length=self.n - 1)
            batch_first = functools.partial(jax.tree_util.tree_map,
                                            lambda v: jnp.moveaxis(v, 0, 1))
            tape.var1.append(batch_first(v1))
            tape.var2.append(batch_first(v2))
            if errs is not None:
                tape.errors.append(jnp.max(errs))
            return state

        def replay(s, vs):
            with _Tape(vs):
                return _map(rest, s), None

        v1, v2 = tape.take()
        vs = jax.tree_util.tree_map(lambda v: jnp.moveaxis(v, 1, 0), (v1, v2))
        state, _ = lax.scan(replay, state, vs)
        return state

    def diagonal_map(self, state: DiagonalState) -> Any:
        return self.kernel_map(state)


def repeat(block: Layer, n: int) -> Layer:
    r"""``n`` copies of ``block`` in series (``serial(block, ..., block)``), each with
    its own parameters (a list of ``n`` entries); after the first copy the block must
    keep the shape of its input (``Dense(m) -> Activation`` on width ``m``).

    Kernel map: the first copy, then one ``lax.scan`` over the ``n - 1`` identical
    others, so the compiled program and its compile time do not grow with ``n``; the
    kernels equal those of the unrolled ``serial`` to rounding. A deep fully connected
    network ``serial(repeat(serial(Dense(m), Activation(sigma)), L), Dense(1))`` is the
    network of :func:`~ntk_companion.analytic_kernels`. The structured empirical NTK
    and the finite network see the ``n`` copies as ``serial`` would.

    >>> import jax.numpy as jnp
    >>> from ntk_companion import layers as nl
    >>> hidden = nl.serial(nl.Dense(16), nl.Activation("erf"))
    >>> deep = nl.serial(nl.repeat(hidden, 3), nl.Dense(1))
    >>> flat = nl.serial(hidden, hidden, hidden, nl.Dense(1))
    >>> x = jnp.array([[1.0, 0.5], [0.2, -1.0]])
    >>> bool(jnp.allclose(deep.kernels(x).ntk, flat.kernels(x).ntk, rtol=1e-12))
    True
    """
    if not isinstance(block, Layer):
        raise TypeError(f"repeat: block must be a layer of ntk_companion.layers, got "
                        f"{type(block).__name__}")
    return _Repeat(block, check_int(n, "n", minimum=1))


_COMBINATORS = (_Serial, _Sum, _Repeat)


# The attention layer lives in its own module (built on the classes above).
from .attention import GlobalSelfAttention  # noqa: E402
