"""Symmetric kernels split over several devices with balanced work
(``ntk_companion.sharding.shard_symmetric``): equal to one device to rounding, exactly
symmetric, sharded by rows: analytic and layer kernels (which use it), and the machinery
with any tile function."""
import os
import subprocess
import sys

import numpy as np
import pytest

from ntk_companion import sharding


def test_every_block_pair_is_listed_once_and_work_is_balanced():
    for count in (1, 2, 3, 4, 5):
        table = sharding.symmetric_blocks(count)
        assert table.shape == (count, 2 * count - 1, 2)
        pairs = [frozenset(map(int, p)) for p in table.reshape(-1, 2)]
        assert len(set(pairs)) == len(pairs) == count * (2 * count - 1)
        assert all(len(p) == 2 for p in pairs)
        for d in range(count):   # the rows of every block are the device's own bands
            assert set(table[d, :, 0].tolist()) <= {2 * d, 2 * d + 1}


SCRIPT = """
import functools, sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import ntk_companion as ntk
from ntk_companion import layers as nl, sharding
D = int(sys.argv[1])
assert jax.device_count() == D, jax.devices()
mesh = sharding.row_mesh()
one = sharding.use_devices(jax.devices()[:1])


def check(name, got, want, n):
    for a, b in zip(got, want):
        assert a.shape == b.shape == (n, n), (name, a.shape, b.shape)
        a, b = np.asarray(a), np.asarray(b)
        err = np.max(np.abs(a - b)) / np.max(np.abs(b))
        assert err < 1e-12, (name, err)
        assert np.array_equal(a, a.T), name


def sym(make_tile, x, rep=(), **kw):   # under jit, as the callers run it
    def run(x, rep):
        return sharding.shard_symmetric(make_tile, mesh, x, rep, **kw)
    return jax.jit(run)(x, rep)


def sharded_by_rows(a):
    return a.sharding.is_equivalent_to(
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows")), 2)


# analytic kernels (closed form and quadrature) and layer kernels, as called
# (odd n, n not a multiple of D, n a multiple of D; block_size given and None)
for n, block, act in [(13, 3, "relu"), (4 * D, None, "relu"), (4 * D + 1, 2, "relu"),
                      (13, None, jnp.sin), (11, 2, jnp.sin)]:
    x = jax.random.normal(jax.random.key(n), (n, 3))
    kw = dict(depth=2, activation=act, W_std=1.5, b_std=0.3, block_size=block)
    got = ntk.analytic_kernels(x, **kw)
    with one:
        want = ntk.analytic_kernels(x, **kw)
    check(("analytic", act, n, block), got, want, n)
    if n % D == 0:
        assert sharded_by_rows(got.nngp) and sharded_by_rows(got.ntk)

net = nl.serial(nl.Conv(3, (3, 3), b_std=0.1), nl.Activation("relu"),
                nl.parallel_sum(nl.Identity(), nl.serial(nl.Activation("erf"),
                                                         nl.Conv(3, (3, 2)))),
                nl.AvgPool((2, 2)), nl.Flatten(), nl.Dense(1))
for n, block in [(7, None), (9, 2)]:
    x = jax.random.normal(jax.random.key(n), (n, 5, 4, 2))
    got = net.kernels(x, block_size=block)
    with one:
        want = net.kernels(x, block_size=block)
    check(("layers", n, block), got, want, n)

# the machinery with any tile function: the jacobian method of an MLP's empirical NTK
model = ntk.MLP(hidden=(6, 5), activation="erf", b_std=0.2)
x = jax.random.normal(jax.random.key(3), (11, 4))
p = model.init(jax.random.key(4), 4)
with one:
    want = (ntk.empirical_ntk(model.apply, p, x, method="jacobian"),)
for block in (None, 3):
    got = sym(
        lambda q: lambda a, b, r0, c0, diag: (ntk.empirical._METHODS["jacobian"](
            model.apply, q, a, b, None),),
        x, p, block_size=block, n_out=1, dtype=x.dtype)
    check(("jacobian", block), got, want, 11)
print("symmetric sharded ok")
"""


@pytest.mark.parametrize("count", [2, 4])
def test_symmetric_kernels_on_several_devices_equal_one_device(count):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(count)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "symmetric sharded ok" in out.stdout
