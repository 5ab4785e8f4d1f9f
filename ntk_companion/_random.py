"""Standard normal draws bitwise identical to ``jax.random.normal``, without one
compilation per array shape (private; used by :meth:`ntk_companion.MLP.init`).

Why: ``jax.random.normal(key, shape)`` is compiled once per ``shape`` (about 0.3-0.5 CPU
seconds each: twenty unrolled Threefry rounds and an ``erf_inv`` polynomial), so a
chapter that initializes networks of many widths spends most of its time compiling.

How: with the partitionable Threefry generator (``jax_threefry_partitionable``, the
default since JAX 0.5), the bits of element ``i`` of ``random_bits(key, shape)`` are
``threefry2x32(key, (hi(i), lo(i)))`` of the row-major flat index ``i = hi 2^32 + lo``
alone, whatever the shape. So ``normal(key, shape)`` is the concatenation of fixed-size
chunks "elements ``s .. s + C - 1`` of a flat draw". One chunk is drawn by
``jax.random.normal(chunk_key, (C,), dtype)`` itself, with ``chunk_key`` a key of a
small PRNG implementation (:data:`_OFFSET_IMPL`) whose key data is ``(k1, k2, s)`` and
whose ``random_bits`` are the partitionable Threefry bits of the counters
``s + 0 .. s + C - 1``. The float transform (bits -> uniform -> ``sqrt(2) erf_inv``) is
therefore JAX's own, and the chunk program is compiled once per dtype.
``tests/test_models.py`` checks bitwise equality with ``jax.random.normal`` for many
shapes, keys and both float dtypes, so a change of JAX's algorithm cannot go unnoticed.

The caller uses ``jax.random`` itself when :func:`fast_path` says no (a traced key, a
non-Threefry key, ``jax_threefry_partitionable`` off, a dtype other than
float32/float64, ``2**32 - C`` elements or more).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.random import define_prng_impl, threefry2x32_p

__all__ = ["fast_path", "normal", "split"]

#: Elements per chunk: one compiled program per dtype, ~1 ms per call.
CHUNK = 2 ** 16
_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def _offset_random_bits(key: jax.Array, bit_width: int,
                        shape: tuple[int, ...]) -> jax.Array:
    """Partitionable Threefry bits of the flat counters ``s, s+1, ...`` (key data
    ``(k1, k2, s)``); the same combination of the two hash words as JAX's
    ``_threefry_random_bits_partitionable``."""
    k1, k2, start = key[0], key[1], key[2]
    size = math.prod(shape)
    # hi word 0: < 2**32 elements
    lo = (start + lax.iota(np.uint32, size)).reshape(shape)
    hi = jnp.zeros(shape, np.uint32)
    bits1, bits2 = threefry2x32_p.bind(k1, k2, hi, lo)
    dtype = _UINT[bit_width]
    if bit_width == 64:
        return (lax.shift_left(lax.convert_element_type(bits1, dtype),
                               jnp.asarray(32, dtype))
                | lax.convert_element_type(bits2, dtype))
    if bit_width == 32:
        return bits1 ^ bits2
    return lax.convert_element_type(bits1 ^ bits2, dtype)


def _unsupported(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("the chunk keys of ntk_companion._random only draw bits")


_OFFSET_IMPL = define_prng_impl(key_shape=(3,), seed=_unsupported, split=_unsupported,
                                random_bits=_offset_random_bits, fold_in=_unsupported,
                                name="ntk_companion_threefry_chunk",
                                tag="ntkc_fry_chunk")


def fast_path(key: Any, dtype: Any, size: int) -> bool:
    """Whether :func:`split` and :func:`normal` reproduce ``jax.random`` for this key,
    dtype and largest array size (otherwise the caller uses ``jax.random`` itself)."""
    if isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable:
        return False
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return False
    if size >= 2 ** 32 - CHUNK:
        return False
    try:
        return str(jax.random.key_impl(key)) == "threefry2x32"
    except (TypeError, ValueError):
        return False


def split(key: jax.Array, num: int) -> np.ndarray:
    """``numpy(jax.random.key_data(jax.random.split(key, num)))``, shape ``(num, 2)``
    uint32.

    The partitionable split is prefix-stable too (key ``j`` depends on ``j`` only), so
    the keys are drawn for ``num`` rounded up to a power of two (at least 8): one
    compilation serves every depth up to 3 instead of one per ``num``.
    Needs :func:`fast_path`."""
    padded = max(8, 1 << (num - 1).bit_length())
    return np.asarray(jax.random.key_data(jax.random.split(key, padded)))[:num]


def normal(key_data: np.ndarray, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``numpy(jax.random.normal(wrap_key_data(key_data), shape, dtype))``, bitwise, for
    the data ``(k1, k2)`` of a Threefry key, by chunks of :data:`CHUNK` elements. Needs
    :func:`fast_path`."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    k1, k2 = np.asarray(key_data, np.uint32).reshape(2)
    out = np.empty(size, dtype)
    for start in range(0, size, CHUNK):
        chunk_key = jax.random.wrap_key_data(np.array([k1, k2, start], np.uint32),
                                             impl=_OFFSET_IMPL)
        values = np.asarray(jax.random.normal(chunk_key, (CHUNK,), dtype))
        out[start:start + CHUNK] = values[:min(CHUNK, size - start)]
    return out.reshape(shape)
