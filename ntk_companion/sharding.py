"""Kernel matrices sharded over several devices, on one host or on many.

:func:`ntk_companion.empirical_ntk` and :func:`ntk_companion.analytic_kernels` compute a
kernel matrix ``K`` of shape ``(n1, n2)`` whose rows are independent: row ``i`` needs
input ``x1_i`` and all of ``X2``. When JAX sees several devices, the rows are cut into
one band per device (a 1-D ``jax.sharding.Mesh`` with the axis ``"rows"``), every device
computes its band ``K[band, :]`` (in tiles of ``block_size`` when one is given), and the
result is a ``jax.Array`` sharded by rows
(``NamedSharding(mesh, PartitionSpec("rows"))``) when ``n1`` is a multiple of the
number of devices (JAX shards evenly only; otherwise it is replicated, so for large
kernels choose ``n1`` a multiple of ``jax.device_count()``):

* ``x1`` is split into bands (padded with copies of its last row to a multiple of the
  number of devices ``D``; the padding is sliced off the result);
* ``x2`` is split the same way and gathered with ``lax.all_gather``: the structured
  empirical NTK computes the features of its band of ``X2`` (one forward and backward
  pass) and gathers the features, so that ``O(n2 P)`` work is shared too; the other
  methods and the analytic kernels gather the inputs;
* a symmetric kernel (``x2=None``) computed by bands (``shard_rows``) is made
  exactly symmetric at the end (a transpose, which moves data between devices); the
  upper-triangle saving of one device is not used across devices, so each device does
  ``2/D`` of the work of one device: ``D`` devices are at best ``D/2`` times faster than
  one on a symmetric kernel (``D`` times faster otherwise);
* a symmetric kernel computed by ``shard_symmetric`` uses the triangle across
  devices: the rows are cut into ``2D`` bands, device ``d`` owns bands ``2d`` and
  ``2d + 1`` (its rows of the result), and the blocks ``K[I, J]``, ``I <= J``, are dealt
  out so that every device computes two diagonal blocks (their upper tile triangle) and
  ``2D - 1`` off-diagonal ones (``symmetric_blocks``): each device does ``1/D`` of
  one device's work, and the result, ``U + U^T`` of the stored blocks, is exactly
  symmetric and sharded by rows. ``analytic_kernels`` and ``Layer.kernels`` use it
  for ``x2=None``; the empirical NTK uses ``shard_rows``. Devices that share
  cores (the CPU devices of one machine, ``--xla_force_host_platform_device_count``)
  share the cores' time: only separate hardware turns the ``1/D`` of the work into a
  speed-up of ``D``.

The same code is used with one device (no mesh, no ``shard_map``), so results agree with
the single-device ones to rounding (``tests/test_performance_paths.py`` and
``tests/test_sharding_symmetric.py`` check it on two and four CPU devices created with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``).

Choosing the devices
--------------------
By default all of ``jax.devices()``. ``with use_devices(jax.devices()[:2]): ...``
restricts to some, ``with use_devices(jax.devices()[:1]): ...`` turns sharding off.

Several hosts
-------------
The mesh is built from ``jax.devices()``, which after ``jax.distributed.initialize()``
lists the devices of all processes, so the same call scales to a cluster:

.. code-block:: python

    import jax
    jax.distributed.initialize()   # on a cluster (SLURM, Cloud TPU, ...) the
                                   # arguments are found automatically; otherwise pass
                                   # coordinator_address="host0:1234", num_processes=N,
                                   # process_id=i (CPU: also jax.config.update(
                                   # "jax_cpu_collectives_implementation", "gloo"))
    import ntk_companion as ntk
    K = ntk.empirical_ntk(model.apply, params, x)      # every process, same arguments
    K_local = [s.data for s in K.addressable_shards]   # this process's rows, or
    from jax.experimental import multihost_utils
    K_full = multihost_utils.process_allgather(K)      # the whole matrix on every host

Every process runs the same program with the same inputs (same keys, same data), as
usual in multi-controller JAX; concrete inputs are turned into replicated global arrays
(:func:`ntk_companion.sharding.global_inputs`) before the computation.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _tiling

# Used as ``ntk.sharding.use_devices(...)``: no names for the top-level namespace (the
# public functions are ``devices``, ``use_devices``, ``row_mesh`` and ``global_inputs``;
# ``shard_rows``, ``shard_symmetric``, ``symmetric_blocks``, ``gather`` and ``by_rows``
# are the machinery of ``empirical``, ``analytic`` and ``layers``).
__all__: list[str] = []

#: Name of the mesh axis over which the rows of a kernel matrix are sharded.
AXIS = "rows"

_override: list[tuple[Any, ...] | None] = [None]


def devices() -> tuple[Any, ...]:
    """The devices kernel matrices are sharded over: those of
    :class:`ntk_companion.sharding.use_devices`, else all of ``jax.devices()``.

    >>> import jax
    >>> import ntk_companion as ntk
    >>> ntk.sharding.devices() == tuple(jax.devices())
    True
    """
    chosen = _override[-1]
    return tuple(jax.devices()) if chosen is None else chosen


class use_devices:  # noqa: N801 (used like a function: ``with use_devices(...):``)
    """Context manager: within the ``with`` block, kernels are sharded over ``devs`` (a
    single device: no sharding; ``None``: all devices). Reusable and nestable.

    >>> import jax
    >>> import ntk_companion as ntk
    >>> with ntk.sharding.use_devices(jax.devices()[:1]):
    ...     print(ntk.sharding.row_mesh())          # one device: no mesh, no sharding
    None
    """

    def __init__(self, devs: Sequence[Any] | None) -> None:
        if devs is not None:
            if isinstance(devs, (str, bytes)) or not hasattr(devs, "__iter__"):
                raise TypeError(f"devs must be a sequence of jax devices (e.g. "
                                f"jax.devices()[:2]) or None, got "
                                f"{type(devs).__name__} {devs!r}")
            devs = tuple(devs)
            if not devs:
                raise ValueError("use_devices needs at least one device (or None for "
                                 "all)")
            for dev in devs:
                if not isinstance(dev, jax.Device):
                    raise TypeError(f"devs must hold jax devices (e.g. "
                                    f"jax.devices()[:2]), "
                                    f"not {type(dev).__name__} {dev!r}; device ids map "
                                    f"to devices with [jax.devices()[i] for i in ids]")
            if len(set(devs)) != len(devs):
                raise ValueError(f"devs must not repeat a device, got {list(devs)}")
        self.devs = devs

    def __enter__(self) -> None:
        _override.append(self.devs)

    def __exit__(self, *exc: Any) -> None:
        _override.pop()


@functools.lru_cache(maxsize=None)
def _mesh(devs: tuple[Any, ...]) -> Mesh:
    return Mesh(np.array(devs, dtype=object), (AXIS,))


def row_mesh() -> Mesh | None:
    """The 1-D mesh (axis ``"rows"``) over :func:`ntk_companion.sharding.devices`, or
    ``None`` for one device.

    >>> import jax
    >>> import ntk_companion as ntk
    >>> mesh = ntk.sharding.row_mesh()
    >>> mesh is None if jax.device_count() == 1 else mesh.axis_names == ("rows",)
    True
    """
    devs = devices()
    return _mesh(devs) if len(devs) > 1 else None


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    extra = (-x.shape[0]) % multiple
    if not extra:
        return x
    return jnp.concatenate([x, jnp.broadcast_to(x[-1:], (extra, *x.shape[1:]))])


def gather(tree: Any) -> Any:
    """Inside ``shard_rows``: the bands of all devices, concatenated along axis 0."""
    return jax.tree_util.tree_map(lambda a: lax.all_gather(a, AXIS, tiled=True), tree)


def shard_rows(fn: Callable[..., tuple[jax.Array, ...]], mesh: Mesh, x1: jax.Array,
               x2: jax.Array, replicated: Any) -> tuple[jax.Array, ...]:
    """Run ``fn(x1_band, x2_band, replicated, row0) -> tuple of (band1, N2) arrays`` on
    every device of ``mesh`` and assemble the row-sharded ``(n1, n2)`` results.

    ``x1`` and ``x2`` are padded to a multiple of the number of devices and split into
    bands; ``row0`` is the global index of the band's first row; ``fn`` gets the other
    devices' bands of ``x2`` with ``gather`` (so ``N2`` is ``n2`` padded), and
    ``replicated`` (a pytree, e.g. the parameters) whole.
    """
    n1, n2 = x1.shape[0], x2.shape[0]
    count = mesh.size
    x1p, x2p = _pad_rows(x1, count), _pad_rows(x2, count)
    band = x1p.shape[0] // count

    def local(xa: jax.Array, xb: jax.Array, rep: Any) -> tuple[jax.Array, ...]:
        row0 = lax.axis_index(AXIS).astype(jnp.int32) * band
        return tuple(fn(xa, xb, rep, row0))

    rows, rep = PartitionSpec(AXIS), PartitionSpec()
    rep_specs = jax.tree_util.tree_map(lambda _: rep, replicated)
    outs = jax.shard_map(local, mesh=mesh, in_specs=(rows, rows, rep_specs),
                         out_specs=rows, check_vma=False)(x1p, x2p, replicated)
    return tuple(o[:n1, :n2] if o.shape != (n1, n2) else o for o in outs)


def symmetric_blocks(count: int) -> np.ndarray:
    """The off-diagonal blocks each of ``count`` devices computes in
    ``shard_symmetric``: ``table[d]`` lists ``2 count - 1`` pairs ``(I, J)`` of
    band indices (``2 count`` bands; device ``d`` owns bands ``2d`` and ``2d + 1``),
    ``I`` one of its own. Every unordered pair ``{I, J}``, ``I != J``, is listed
    exactly once.

    >>> from ntk_companion import sharding
    >>> sharding.symmetric_blocks(2).tolist()
    [[[0, 1], [0, 2], [1, 3]], [[2, 3], [2, 1], [3, 0]]]
    """
    table = []
    for d in range(count):
        own = [(2 * d, 2 * d + 1)]
        for f in range(count):
            if f == d:
                continue
            for a in (0, 1):
                b = a if d < f else 1 - a
                own.append((2 * d + a, 2 * f + b))
        table.append(own)
    return np.array(table, np.int32).reshape(count, 2 * count - 1, 2)


def shard_symmetric(make_tile: Callable[[Any], Callable[..., Any]], mesh: Mesh,
                    x: jax.Array, replicated: Any = (), *,
                    prepare: Callable[[jax.Array, Any], Any] | None = None,
                    block_size: int | None, n_out: int,
                    dtype: Any) -> tuple[jax.Array, ...]:
    """The ``n_out`` symmetric kernels ``K(X, X)`` of shape ``(n, n)``, with the work of
    the upper block triangle split evenly over the devices of ``mesh``.

    The rows are padded (copies of the last row) to ``N = 2 D m`` and cut into ``2 D``
    bands of ``m`` rows (``m`` a multiple of the tile side, which is ``block_size`` or a
    little less, so that every tile has one shape); device ``d`` owns bands ``2d`` and
    ``2d + 1`` (its rows of the result). Of the ``D (2D + 1)`` blocks ``K[I, J]`` with
    ``I <= J``, device ``d`` computes its two diagonal blocks (their upper tile
    triangle, by :func:`ntk_companion._tiling.fill`) and the ``2D - 1`` off-diagonal
    blocks of ``symmetric_blocks`` (against every other device, two of the four
    blocks between their bands), so every device does the same work: ``1/D`` of one
    device's (tile triangle included). It stores them in ``U`` (its ``(2m, N)`` band;
    zeros elsewhere, diagonal blocks halved) and the result is ``K = U + U^T``: exactly
    symmetric, each entry computed once, its rows on the devices that own them (the
    caller pins it with :func:`by_rows`; the padding is sliced off).

    Args:
        make_tile: ``make_tile(replicated) -> tile_fn`` (see
            :data:`ntk_companion._tiling.TileFn`), called on each device.
        x: the inputs, leading axis ``n``.
        replicated: a pytree every device gets whole (e.g. the parameters).
        prepare: ``prepare(x_band, replicated) -> rows`` (a pytree with leading axis the
            band's rows, e.g. features), computed on each device's band and gathered;
            ``None``: the inputs themselves.
        block_size: tile side within a block (``None``: a block is one tile).

    >>> import jax, jax.numpy as jnp
    >>> from ntk_companion import sharding
    >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("rows",))
    >>> x = jnp.arange(5.0)[:, None]
    >>> def gram(x):
    ...     tile = lambda a, b, row0, col0, diagonal: (a @ b.T,)
    ...     return sharding.shard_symmetric(lambda _: tile, mesh, x, block_size=2,
    ...                                     n_out=1, dtype=x.dtype)
    >>> (K,) = jax.jit(gram)(x)
    >>> bool(jnp.all(K == x @ x.T))
    True
    """
    n, count = x.shape[0], mesh.size
    bands = 2 * count
    m = -(-n // bands)
    if block_size is not None and block_size < m:
        # k equal tiles of side b <= block_size per band (m padded by fewer than k
        # rows): one tile shape per block, so one traced tile per kind of block
        k = -(-m // block_size)
        block_size = -(-m // k)
        m = k * block_size
    else:
        block_size = None
    N = bands * m
    xp = _pad_rows(x, N)
    table = symmetric_blocks(count)

    def local(xb: jax.Array, rep: Any) -> tuple[jax.Array, ...]:
        full = gather(xb if prepare is None else prepare(xb, rep))
        tile = make_tile(rep)
        d = lax.axis_index(AXIS).astype(jnp.int32)
        tab = jnp.asarray(table)[d]

        def block(rb: jax.Array, cb: jax.Array,
                  diagonal: bool) -> tuple[jax.Array, ...]:
            rows = _tiling._rows(full, rb * m, m, N)
            cols = rows if diagonal else _tiling._rows(full, cb * m, m, N)
            return _tiling.fill(tile, rows, cols, n1=m, n2=m, block_size=block_size,
                                symmetric=diagonal, n_out=n_out, dtype=dtype,
                                row_offset=rb * m, col_offset=cb * m)

        def put(outs: tuple[jax.Array, ...], tiles: Sequence[jax.Array], rb: jax.Array,
                cb: jax.Array, scale: float) -> tuple[jax.Array, ...]:
            at = ((rb - 2 * d) * m, cb * m)
            return tuple(lax.dynamic_update_slice(o, scale * t, at)
                         for o, t in zip(outs, tiles))

        def diagonal_block(k: jax.Array, outs: tuple[jax.Array, ...]) -> Any:
            rb = 2 * d + k
            return put(outs, block(rb, rb, True), rb, rb, 0.5)

        def off_diagonal_block(t: jax.Array, outs: tuple[jax.Array, ...]) -> Any:
            rb, cb = tab[t, 0], tab[t, 1]
            return put(outs, block(rb, cb, False), rb, cb, 1.0)

        outs = tuple(jnp.zeros((2 * m, N), dtype) for _ in range(n_out))
        outs = lax.fori_loop(0, 2, diagonal_block, outs)
        return lax.fori_loop(0, bands - 1, off_diagonal_block, outs)

    rows, rep = PartitionSpec(AXIS), PartitionSpec()
    rep_specs = jax.tree_util.tree_map(lambda _: rep, replicated)
    halves = jax.shard_map(local, mesh=mesh, in_specs=(rows, rep_specs), out_specs=rows,
                           check_vma=False)(xp, replicated)
    outs = tuple(u + u.T for u in halves)
    return tuple(o[:n, :n] if N != n else o for o in outs)


def by_rows(a: jax.Array, mesh: Mesh) -> jax.Array:
    """``a`` constrained to be sharded by rows over ``mesh``. JAX shards evenly only:
    when the number of rows is not a multiple of the number of devices, ``a`` is left to
    XLA (which replicates it)."""
    if a.shape[0] % mesh.size:
        return a
    return lax.with_sharding_constraint(a, NamedSharding(mesh, PartitionSpec(AXIS)))


def global_inputs(tree: Any, mesh: Mesh | None) -> Any:
    """With several processes, concrete arrays as global arrays replicated over ``mesh``
    (every process must pass the same values); otherwise ``tree`` unchanged.

    >>> import jax, jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> tree = {"x": jnp.ones((4, 2))}
    >>> out = ntk.sharding.global_inputs(tree, ntk.sharding.row_mesh())
    >>> out is tree if jax.process_count() == 1 else out["x"].is_fully_replicated
    True
    """
    if mesh is None or jax.process_count() == 1:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())

    def to_global(a: Any) -> Any:
        if isinstance(a, jax.core.Tracer) or not hasattr(a, "shape"):
            return a
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(to_global, tree)
