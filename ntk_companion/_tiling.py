"""Kernel matrices computed in tiles, in bounded memory (private; used by ``layer_ntk``,
``empirical`` and ``analytic``).

A kernel matrix ``K[i, j] = k(row_i, col_j)`` of shape ``(n1, n2)`` is filled by tiles
of at most ``b x b`` entries (``b = block_size``): the rows and the columns are cut into
blocks ``[s, s + b)`` (the last one shorter when ``b`` does not divide ``n``), and each
tile is computed from its row block and its column block alone and written in place into
the output (``lax.fori_loop`` over the tiles of one shape with
``lax.dynamic_update_slice``). Memory: the output plus the temporaries of one tile,
``O(b^2)``, instead of ``O(n1 n2)`` temporaries; compile time: one traced tile per tile
shape (at most four). Everything is traceable, so it runs inside ``jit`` and under
``vmap``.

For a symmetric kernel (rows = columns) only the tiles on and above the diagonal are
computed (about half the work); a second pass copies the transpose of tile ``(I, J)`` to
``(J, I)`` and replaces a diagonal tile ``T`` by ``(T + T^T)/2``, so the result is
exactly symmetric. The transposes read the stored tiles: had they been applied to the
tile expressions, XLA would fuse the whole tile computation into a transposed
(cache-unfriendly) read and compute it twice. (Never mirror with
``where(i <= j, K, K.T)``: in jaxlib 0.10.2 that select of a transpose crashes or hangs
XLA:CPU for n >~ 1000.)
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["blocks", "fill"]

PyTree = Any
#: ``tile_fn(rows, cols, row0, col0, diagonal) -> tuple of (s1, s2) arrays``: ``rows``
#: and ``cols`` are the pytrees sliced to the tile's row and column blocks, ``row0`` and
#: ``col0`` the (traced) global indices of the tile's first row and column,
#: ``diagonal`` (static) whether the tile is a diagonal tile of a symmetric kernel
#: (which :func:`fill` makes exactly symmetric).
TileFn = Callable[[PyTree, PyTree, jax.Array, jax.Array, bool], Sequence[jax.Array]]


def blocks(n: int, b: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the blocks of ``b`` indices covering ``range(n)``."""
    return [(s, min(b, n - s)) for s in range(0, n, b)]


def _rows(tree: PyTree, start: jax.Array | int, size: int, n: int) -> PyTree:
    if size == n:
        return tree
    return jax.tree_util.tree_map(
        lambda a: lax.dynamic_slice_in_dim(a, start, size, 0), tree)


def fill(tile_fn: TileFn, rows: PyTree, cols: PyTree, *, n1: int, n2: int,
         block_size: int | None, symmetric: bool, n_out: int, dtype: Any,
         row_offset: jax.Array | int = 0,
         col_offset: jax.Array | int = 0) -> tuple[jax.Array, ...]:
    """The ``n_out`` kernel matrices ``(n1, n2)`` of ``tile_fn``, computed by tiles.

    Args:
        tile_fn: see :data:`TileFn`.
        rows, cols: pytrees of arrays with leading axes ``n1`` and ``n2`` (the same
            objects when ``symmetric``).
        block_size: tile side ``b``; ``None`` (or ``b >= max(n1, n2)``) computes the
            whole matrix as one tile.
        symmetric: rows = columns; compute the upper block triangle and mirror it.
        row_offset: global index of the first row (a band of rows on one device).
        col_offset: global index of the first column (a block of columns).
    """
    if symmetric and n1 != n2:
        raise ValueError("a symmetric kernel needs as many rows as columns")
    if block_size is None or block_size >= max(n1, n2):
        zero = jnp.zeros((), jnp.int32)
        tiles = tuple(tile_fn(rows, cols, row_offset + zero, col_offset + zero,
                              symmetric))
        if symmetric:   # (XLA fuses this transpose into the tile: small kernels only)
            tiles = tuple(0.5 * (t + t.T) for t in tiles)
        return tuple(t.astype(dtype) for t in tiles)
    b = block_size
    # Tiles grouped by (rows, columns, diagonal): one fori_loop (one traced tile) per
    # group.
    groups: dict[tuple[int, int, bool], list[tuple[int, int]]] = {}
    for i, (si, ni) in enumerate(blocks(n1, b)):
        for j, (sj, nj) in enumerate(blocks(n2, b)):
            if symmetric and j < i:
                continue
            groups.setdefault((ni, nj, symmetric and i == j), []).append((si, sj))
    outs = tuple(jnp.zeros((n1, n2), dtype) for _ in range(n_out))

    def loop(body: Callable, starts: list[tuple[int, int]],
             outs: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        if len(starts) == 1:
            return body(starts[0][0], starts[0][1], outs)
        table = jnp.asarray(np.array(starts, np.int32))
        return lax.fori_loop(0, len(starts),
                             lambda t, o: body(table[t, 0], table[t, 1], o), outs)

    # Pass 1: the tiles (upper block triangle when symmetric), written in place.
    for (ni, nj, diagonal), starts in groups.items():
        def compute(si, sj, outs, ni=ni, nj=nj, diagonal=diagonal):
            tiles = tile_fn(_rows(rows, si, ni, n1), _rows(cols, sj, nj, n2),
                            row_offset + si, col_offset + sj, diagonal)
            return tuple(lax.dynamic_update_slice(out, tile.astype(dtype), (si, sj))
                         for out, tile in zip(outs, tiles))
        outs = loop(compute, starts, outs)
    if not symmetric:
        return outs
    # Pass 2: mirror, reading the tiles back from the output (a loop-carried buffer, so
    # XLA cannot fuse the tile computation into the transposed read and compute it
    # twice).
    for (ni, nj, diagonal), starts in groups.items():
        def mirror(si, sj, outs, ni=ni, nj=nj, diagonal=diagonal):
            new = []
            for out in outs:
                tile = lax.dynamic_slice(out, (si, sj), (ni, nj))
                if diagonal:
                    out = lax.dynamic_update_slice(out, 0.5 * (tile + tile.T), (si, sj))
                else:
                    out = lax.dynamic_update_slice(out, tile.T, (sj, si))
                new.append(out)
            return tuple(new)
        outs = loop(mirror, starts, outs)
    return outs
