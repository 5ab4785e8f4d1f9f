"""Tests of the fast paths: the structured empirical NTK of an MLP, kernels computed by
tiles, kernels sharded over several devices, and the chunked random draws of
``MLP.init``.

Each fast path must give the result of the plain computation: the structured kernel
equals ``G G^T`` to rounding, tiled equals untiled, sharded equals one device, and
``MLP.init`` draws exactly (bitwise) the values of ``jax.random.normal``.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from helpers import normal_params
from ntk_companion import _random, empirical, layer_ntk


def assert_kernel_close(K, ref):
    ref = np.asarray(ref)
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


RNG = np.random.default_rng(7)
X1 = jnp.asarray(RNG.standard_normal((9, 3)))
X2 = jnp.asarray(RNG.standard_normal((5, 3)))


# ------------------------------------------------------------------ structured == G G^T
@pytest.mark.parametrize("hidden, activation, parameterization, b_std", [
    ((), "relu", "ntk", 0.3),                      # a linear model
    ((6,), "relu", "standard", 0.0),
    ((5, 4), "erf", "ntk", 0.0),
    ((4, 6, 3), "gelu", "standard", 0.4),
    ((5, 5), jnp.sin, "ntk", 0.3),                 # any elementwise callable
])
def test_structured_equals_jacobian_contraction(hidden, activation, parameterization,
                                                b_std):
    model = ntk.MLP(hidden, activation=activation, W_std=1.3, b_std=b_std,
                    parameterization=parameterization)
    params = normal_params(model, 3, 1)
    G = ntk.jacobian(model.apply, params, jnp.concatenate([X1, X2]))
    G1, G2 = G[:9], G[9:]
    H = ntk.empirical_ntk(model.apply, params, X1, method="structured")
    assert_kernel_close(H, G1 @ G1.T)
    np.testing.assert_array_equal(H, H.T)
    K = ntk.empirical_ntk(model.apply, params, X1, X2, method="structured")
    assert K.shape == (9, 5)
    assert_kernel_close(K, G1 @ G2.T)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_structured_equals_jacobian_for_every_named_activation(parameterization):
    X = jnp.concatenate([X1, X2])
    for activation in sorted(ntk.models._ACTIVATIONS):
        model = ntk.MLP((4, 3), activation=activation, W_std=1.2, b_std=0.2,
                        parameterization=parameterization)
        params = normal_params(model, 3, 5)
        G = ntk.jacobian(model.apply, params, X)
        K = ntk.empirical_ntk(model.apply, params, X, method="structured")
        assert_kernel_close(K, G @ G.T)


def test_auto_uses_structured_for_an_mlp_and_tiles_large_kernels():
    model = ntk.MLP((6, 5), activation="erf", b_std=0.4)
    params = normal_params(model, 3, 0)
    P = model.num_params(3)
    assert empirical._auto_method(model.apply, params, 7, 7, P, None) == (
        "structured", None)
    n = empirical.AUTO_BLOCK + 1
    assert empirical._auto_method(model.apply, params, n, 3, P, None) == (
        "structured", empirical.AUTO_BLOCK)
    assert empirical._auto_method(model.apply, params, n, 3, P, 5) == ("structured", 5)
    assert layer_ntk.mlp_of(model.apply) is model
    assert layer_ntk.mlp_of(lambda p, x: model.apply(p, x)) is None
    assert layer_ntk.mlp_of(model.num_params) is None


def test_structured_float32_and_mixed_dtypes():
    model = ntk.MLP((8, 8), activation="relu", W_std=1.5, b_std=0.1)
    p32 = model.init(jax.random.key(0), 3, dtype=jnp.float32)
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p32)
    G = ntk.jacobian(model.apply, p64, X1)
    H32 = ntk.empirical_ntk(model.apply, p32, X1.astype(jnp.float32))
    assert H32.dtype == jnp.float32
    np.testing.assert_allclose(H32, G @ G.T, rtol=2e-5,
                               atol=2e-5 * float(jnp.abs(G @ G.T).max()))
    # float32 parameters, float64 inputs: the dtype of the Jacobian method (the
    # parameters')
    Hmix = ntk.empirical_ntk(model.apply, p32, X1)
    Hjac = ntk.empirical_ntk(model.apply, p32, X1, method="jacobian")
    assert Hmix.dtype == Hjac.dtype


def test_structured_bad_input():
    model = ntk.MLP((4,), activation="relu")
    params = normal_params(model, 3, 0)
    with pytest.raises(ValueError, match="method='structured' needs apply_fn = "
                                         "model.apply"):
        ntk.empirical_ntk(lambda p, x: model.apply(p, x), params, X1,
                          method="structured")
    with pytest.raises(ValueError, match="x has 2 features but params expect 3"):
        ntk.empirical_ntk(model.apply, params, jnp.ones((4, 2)), method="structured")
    with pytest.raises(ValueError, match=r"x1 must be 2-D of shape \(n, d_in\)"):
        ntk.empirical_ntk(model.apply, params, jnp.ones((4, 3, 1)))
    vec = ntk.MLP((4,), out_dim=2)
    # several outputs: the full (n1, n2, k, k) kernel (tests/test_layers.py checks
    # values)
    K = ntk.empirical_ntk(vec.apply, normal_params(vec, 3, 0), X1, method="structured")
    assert K.shape == (X1.shape[0], X1.shape[0], 2, 2)


# ------------------------------------------------------------------ jit, vmap, grad
def test_jit_vmap_and_grad_work():
    model = ntk.MLP((6, 5), activation="tanh", W_std=1.2, b_std=0.2)
    params = normal_params(model, 3, 2)
    H = ntk.empirical_ntk(model.apply, params, X1)
    Hj = jax.jit(lambda x, p: ntk.empirical_ntk(model.apply, p, x))(X1, params)
    assert_kernel_close(Hj, H)
    Hb = jax.jit(lambda x, p: ntk.empirical_ntk(model.apply, p, x, block_size=4))(
        X1, params)
    assert_kernel_close(Hb, H)
    np.testing.assert_array_equal(Hb, Hb.T)
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    Hv = jax.vmap(lambda p: ntk.empirical_ntk(model.apply, p, X1[:4]))(stacked)
    assert_kernel_close(Hv[0], ntk.empirical_ntk(model.apply, params, X1[:4]))
    # the analytic kernels stay differentiable when tiled (tiles are static loops)
    x = X1[:6]
    def f(x, block):
        return ntk.analytic_kernels(x, depth=1, b_std=0.1, block_size=block).ntk.sum()
    np.testing.assert_allclose(jax.grad(f)(x, 3), jax.grad(f)(x, None), rtol=1e-10)


# ------------------------------------------------------------------ tiles == one tile
@pytest.mark.parametrize("activation", ["relu", "tanh"])    # closed form, quadrature
def test_analytic_tiles_equal_one_tile(activation):
    x = jnp.asarray(RNG.standard_normal((11, 4))).at[4].set(0.0)   # a zero input too
    x = x.at[7].set(x[2])                                             # and a duplicate
    y = x[:5] + 0.1
    kw = dict(depth=2, activation=activation, W_std=1.4, b_std=0.3, order=200)
    # one tile; then tiles 4, 4, 3: three shapes
    whole = ntk.analytic_kernels(jnp.concatenate([x, y]), block_size=16, **kw)
    tiled = ntk.analytic_kernels(x, block_size=4, **kw)
    for a, b in zip(tiled, whole):
        np.testing.assert_allclose(a, b[:11, :11], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(a, a.T)
    if activation == "relu":
        rect = ntk.analytic_kernels(x, y, block_size=4, **kw)
        for a, b in zip(rect, whole):
            np.testing.assert_allclose(a, b[:11, 11:], rtol=1e-12, atol=1e-14)


def test_structured_tiles_equal_one_tile():
    model = ntk.MLP((7, 6), activation="gelu", W_std=1.1, b_std=0.2)
    params = normal_params(model, 3, 3)
    whole = ntk.empirical_ntk(model.apply, params, X1, method="structured")
    tiled = ntk.empirical_ntk(model.apply, params, X1, method="structured",
                              block_size=4)
    assert_kernel_close(tiled, whole)                  # tiles of 4, 4 and 1 rows
    np.testing.assert_array_equal(tiled, tiled.T)


# ------------------------------------------------------------------ several devices
SHARDED_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import ntk_companion as ntk
    from ntk_companion import sharding
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x1 = jnp.asarray(rng.standard_normal((10, 3)))
    x2 = jnp.asarray(rng.standard_normal((6, 3)))
    model = ntk.MLP((6, 5), activation="tanh", W_std=1.3, b_std=0.3)
    params = model.init(jax.random.key(0), 3)
    one = sharding.use_devices(jax.devices()[:1])

    def close(a, b):
        a, b = np.asarray(a), np.asarray(b)
        tol = 1e-14 * np.abs(b).max()
        assert np.allclose(a, b, rtol=1e-12, atol=tol), np.abs(a - b).max()

    for method, block, args in [("structured", 3, (x1,)),
                                ("structured", None, (x1, x2)),
                                ("jacobian", None, (x1,))]:
        K = ntk.empirical_ntk(model.apply, params, *args, method=method,
                              block_size=block)
        with one:
            close(K, ntk.empirical_ntk(model.apply, params, *args, method=method,
                                       block_size=block))
        if len(args) == 1:
            assert np.array_equal(K, K.T)
    K = ntk.empirical_ntk(model.apply, params, jnp.concatenate([x1, x1[:2]]))  # 12 rows
    assert K.sharding.spec == jax.sharding.PartitionSpec("rows"), K.sharding
    assert len(K.sharding.device_set) == 4
    for activation, block, args in [("relu", 3, (x1,)), ("relu", None, (x1, x2)),
                                    ("tanh", None, (x1,))]:
        kw = dict(depth=2, activation=activation, b_std=0.2, block_size=block)
        sharded = ntk.analytic_kernels(*args, **kw)
        with one:
            single = ntk.analytic_kernels(*args, **kw)
        for a, b in zip(sharded, single):
            close(a, b)
    print("sharded ok")
""")


def test_sharded_over_four_cpu_devices_equals_one_device():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout


# ------------------------------------------------------------------ MLP.init draws
def test_init_is_bitwise_jax_random_normal():
    """The chunked draws (``_random``) are exactly ``jax.random.normal`` per layer: same
    split keys, same values, both parameterizations, both dtypes, raw and typed keys."""
    def reference(model, key, d_in, dtype):  # MLP.init as it was: jax.random per layer
        widths = (d_in, *model.hidden, model.out_dim)
        keys = jax.random.split(key, 2 * (len(widths) - 1))
        layers = []
        for i, (m, k) in enumerate(zip(widths[:-1], widths[1:])):
            W = jax.random.normal(keys[2 * i], (m, k), dtype)
            if model.parameterization == "standard":
                W = W * (model.W_std / np.sqrt(float(m))).item()
            layers.append({"W": W})
            if model.b_std:
                b = jax.random.normal(keys[2 * i + 1], (k,), dtype)
                standard = model.parameterization == "standard"
                layers[-1]["b"] = b * model.b_std if standard else b
        return layers

    cases = [(ntk.MLP((70000,)), jax.random.PRNGKey(3), jnp.float64),   # two chunks
             (ntk.MLP((5,), parameterization="standard", W_std=1.7, b_std=0.3),
              jax.random.key(9), jnp.float32)]
    for model, key, dtype in cases:
        got, ref = model.init(key, 3, dtype=dtype), reference(model, key, 3, dtype)
        for g, r in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
            assert g.dtype == r.dtype and g.shape == r.shape
            np.testing.assert_array_equal(np.asarray(g).view(np.uint8),
                                          np.asarray(r).view(np.uint8))
    # the fast path is skipped (and jax.random used) for traced keys and other
    # generators
    model = ntk.MLP((4,))
    assert not _random.fast_path(jax.random.key(0, impl="rbg"), jnp.float32, 8)
    shapes = jax.eval_shape(lambda k: model.init(k, 2), jax.random.key(0))
    assert [s["W"].shape for s in shapes] == [(2, 4), (4, 1)]
    rbg = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(
        model.init(rbg, 2)[0]["W"],
        jax.random.normal(jax.random.split(rbg, 4)[0], (2, 4)))


# --------------------------------------------------------------- the vectorized atan2
def test_atan2_is_accurate_with_ieee_signs_and_derivatives():
    from ntk_companion.analytic import _atan2
    rng = np.random.default_rng(3)
    y = rng.standard_normal(20000) * 10.0 ** rng.integers(-8, 8, 20000)
    x = rng.standard_normal(20000) * 10.0 ** rng.integers(-8, 8, 20000)
    y = np.concatenate([y, [0.0, -0.0, 0.0, -0.0, 2.0, -2.0]])
    x = np.concatenate([x, [0.0, 0.0, -0.0, -0.0, 0.0, -0.0]])
    got, ref = np.asarray(_atan2(jnp.asarray(y), jnp.asarray(x))), np.arctan2(y, x)
    err = np.abs(got - ref)
    assert np.all(err <= 2 * np.spacing(np.abs(ref))), np.max(err)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))
    for yx in [(0.0, 2.0), (0.3, -1.2), (-0.7, 0.4), (1.0, 0.0)]:
        np.testing.assert_allclose(jax.grad(_atan2, argnums=(0, 1))(*yx),
                                   jax.grad(jnp.arctan2, argnums=(0, 1))(*yx),
                                   rtol=1e-15)
