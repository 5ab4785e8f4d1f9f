"""Tests of ntk_companion.empirical: Jacobian, empirical NTK (all methods), NTK-vector
products."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import ntk_companion as ntk
from helpers import normal_params
from ntk_companion import empirical

METHODS = ("jacobian", "ntvp", "auto")



MODEL = ntk.MLP((6, 5), activation="erf", b_std=0.4)
PARAMS = normal_params(MODEL, 3, 0)
X1 = jnp.asarray(np.random.default_rng(1).standard_normal((7, 3)))
X2 = jnp.asarray(np.random.default_rng(2).standard_normal((4, 3)))


def assert_kernel_close(K, ref):
    ref = np.asarray(ref)
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_jacobian_matches_forward_mode_of_the_batch():
    G = ntk.jacobian(MODEL.apply, PARAMS, X1)
    flat, unravel = ravel_pytree(PARAMS)
    # forward mode on the whole batch, columns in flatten (ravel_pytree) order
    ref = jax.jit(jax.jacfwd(lambda th: MODEL.apply(unravel(th), X1)))(flat)
    assert G.shape == (7, MODEL.num_params(3))
    np.testing.assert_allclose(G, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method, block_size", [
    ("jacobian", None), ("jacobian", 3), ("ntvp", None), ("ntvp", 3), ("auto", None)])
def test_methods_agree_with_jacobian_product(method, block_size):
    """Every method equals G1 G2^T, also with blocks (3 divides neither n1 = 7 nor
    n2 = 4)."""
    G1 = ntk.jacobian(MODEL.apply, PARAMS, X1)
    G2 = ntk.jacobian(MODEL.apply, PARAMS, X2)
    H = ntk.empirical_ntk(MODEL.apply, PARAMS, X1, method=method, block_size=block_size)
    assert H.shape == (7, 7)
    assert_kernel_close(H, G1 @ G1.T)
    np.testing.assert_array_equal(H, H.T)   # exactly symmetric
    K = ntk.empirical_ntk(MODEL.apply, PARAMS, X1, X2, method=method,
                          block_size=block_size)
    assert K.shape == (7, 4)
    assert_kernel_close(K, G1 @ G2.T)


def test_auto_switches_to_ntvp_beyond_the_memory_budget(monkeypatch):
    # "auto" computes an MLP's kernel by the structured method; the memory rule is for
    # any other apply_fn, such as this wrapper
    f = lambda p, x: MODEL.apply(p, x)  # noqa: E731
    P = MODEL.num_params(3)
    assert (empirical._auto_method(MODEL.apply, PARAMS, 7, 4, P, None)
            == ("structured", None))
    assert empirical._auto_method(f, PARAMS, 7, 4, P, None) == ("jacobian", None)
    monkeypatch.setattr(empirical, "AUTO_MEMORY_BUDGET", 5 * P)
    method, block = empirical._auto_method(f, PARAMS, 7, 4, P, None)
    assert method == "ntvp" and block == 2
    G1 = ntk.jacobian(MODEL.apply, PARAMS, X1)
    assert_kernel_close(ntk.empirical_ntk(f, PARAMS, X1, X2), G1 @ ntk.jacobian(
        MODEL.apply, PARAMS, X2).T)


def test_ntk_vp_is_H_times_v():
    G = ntk.jacobian(MODEL.apply, PARAMS, X1)
    H = G @ G.T
    v = jnp.arange(7.0) - 3.0
    np.testing.assert_allclose(ntk.ntk_vp(MODEL.apply, PARAMS, X1, v), H @ v,
                               rtol=1e-10, atol=1e-12 * float(jnp.abs(H @ v).max()))
    V = jax.random.normal(jax.random.key(4), (7, 3))
    np.testing.assert_allclose(ntk.ntk_vp(MODEL.apply, PARAMS, X1, V), H @ V,
                               rtol=1e-10, atol=1e-12 * float(jnp.abs(H @ V).max()))


def test_scalar_column_output_general_pytrees_jit_and_float32():
    # any apply_fn over any pytree: a quadratic model with (n, 1) output
    params = {"a": jnp.array([1.0, -2.0]), "c": (jnp.array(0.5),)}
    f = lambda p, x: (p["a"] @ x.T  # noqa: E731
                      + p["c"][0] * jnp.sum(x ** 2, axis=1))[:, None]
    x = jnp.array([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]])
    G = np.stack([np.asarray(x)[:, 0], np.asarray(x)[:, 1],
                  np.sum(np.asarray(x) ** 2, 1)], 1)
    for method in ("jacobian", "ntvp"):
        assert_kernel_close(ntk.empirical_ntk(f, params, x, method=method), G @ G.T)
    H = jax.jit(lambda p: ntk.empirical_ntk(MODEL.apply, p, X1))(PARAMS)
    G1 = ntk.jacobian(MODEL.apply, PARAMS, X1)
    assert_kernel_close(H, G1 @ G1.T)
    p32 = MODEL.init(jax.random.key(0), 3, dtype=jnp.float32)
    x32 = X1.astype(jnp.float32)
    K32 = ntk.empirical_ntk(MODEL.apply, p32, x32)
    assert K32.dtype == jnp.float32
    G64 = ntk.jacobian(MODEL.apply,
                       jax.tree_util.tree_map(lambda a: a.astype(float), p32),
                       x32.astype(float))
    np.testing.assert_allclose(K32, G64 @ G64.T, rtol=1e-4, atol=1e-5)


@st.composite
def ntk_cases(draw):
    depth = draw(st.integers(0, 2))
    hidden = tuple(draw(st.integers(1, 6)) for _ in range(depth))
    model = ntk.MLP(hidden,
                    activation=draw(st.sampled_from(["relu", "erf", "tanh", "gelu"])),
                    W_std=draw(st.sampled_from([0.5, 1.0, 2.0])),
                    b_std=draw(st.sampled_from([0.0, 0.3])),
                    parameterization=draw(st.sampled_from(["ntk", "standard"])))
    d = draw(st.integers(1, 4))
    n1 = draw(st.integers(1, 6))
    n2 = draw(st.one_of(st.none(), st.integers(1, 5)))   # None: the Gram matrix H
    method = draw(st.sampled_from(METHODS))
    block = draw(st.one_of(st.none(), st.integers(1, 7)))
    return model, d, n1, n2, draw(st.integers(0, 2 ** 16)), method, block


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(ntk_cases())
def test_property_kernel_is_G_G_transpose_symmetric_psd(case):
    model, d, n1, n2, seed, method, block = case
    # numpy draws (no PRNG compilation per shape): any parameter values must work
    rng = np.random.default_rng(seed)
    widths = (d, *model.hidden, 1)
    params = [{"W": jnp.asarray(rng.standard_normal((m, k))),
               "b": jnp.asarray(rng.standard_normal(k))}
              for m, k in zip(widths[:-1], widths[1:])]
    if model.b_std == 0:
        params = [{"W": layer["W"]} for layer in params]
    x = jnp.asarray(rng.standard_normal((n1 + (n2 or 0), d)))
    G = ntk.jacobian(model.apply, params, x)
    assert G.shape == (x.shape[0], model.num_params(d))
    if n2 is None:
        H = ntk.empirical_ntk(model.apply, params, x, method=method, block_size=block)
        assert H.shape == (n1, n1)
        assert_kernel_close(H, G @ G.T)
        np.testing.assert_array_equal(H, H.T)
        evals = np.linalg.eigvalsh(np.asarray(H))
        assert evals.min() >= -1e-12 * max(evals.max(), 1.0)
    else:
        K = ntk.empirical_ntk(model.apply, params, x[:n1], x[n1:], method=method,
                              block_size=block)
        assert K.shape == (n1, n2)
        assert_kernel_close(K, G[:n1] @ G[n1:].T)


def test_bad_input():
    f, p = MODEL.apply, PARAMS
    with pytest.raises(TypeError, match="apply_fn must be callable"):
        ntk.empirical_ntk("f", p, X1)
    with pytest.raises(ValueError,
                       match=r"x1 must be a batch of inputs of shape \(n, d\)"):
        ntk.empirical_ntk(f, p, X1[0])
    with pytest.raises(ValueError, match="x1 must hold at least one input"):
        ntk.empirical_ntk(f, p, X1[:0])
    with pytest.raises(ValueError, match="x1 and x2 must have the same feature shape"):
        ntk.empirical_ntk(f, p, X1, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="x2 must be a batch"):
        ntk.empirical_ntk(f, p, X1, jnp.ones(3))
    with pytest.raises(ValueError, match="x1 contains NaN"):
        ntk.empirical_ntk(f, p, X1.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="x2 contains NaN or infinite"):
        ntk.empirical_ntk(f, p, X1, X2.at[0, 0].set(-jnp.inf))
    with pytest.raises(ValueError, match="unknown method 'structured_typo'.*jacobian"):
        ntk.empirical_ntk(f, p, X1, method="structured_typo")
    with pytest.raises(ValueError, match="block_size"):
        ntk.empirical_ntk(f, p, X1, block_size=0)
    with pytest.raises(TypeError, match="block_size"):
        ntk.empirical_ntk(f, p, X1, block_size=2.5)
    with pytest.raises(ValueError, match="params must be a non-empty"):
        ntk.empirical_ntk(f, [], X1)
    with pytest.raises(ValueError, match="params contains NaN"):
        ntk.jacobian(f, [{"W": jnp.full((3, 6), jnp.nan)}] + p[1:], X1)
    with pytest.raises(ValueError, match="x has 2 features but params expect 3"):
        ntk.jacobian(f, p, jnp.ones((4, 2)))
    vec = ntk.MLP((3,), out_dim=2)
    # several outputs: the full (n1, n2, k, k) kernel (tests/test_layers.py checks
    # values)
    assert ntk.empirical_ntk(vec.apply, vec.init(jax.random.key(0), 3), X1).shape == \
        (7, 7, 2, 2)
    with pytest.raises(ValueError, match=r"v must have one entry per input \(7\)"):
        ntk.ntk_vp(f, p, X1, jnp.ones(6))
    with pytest.raises(ValueError, match="v must be 1-D or 2-D"):
        ntk.ntk_vp(f, p, X1, jnp.ones((7, 1, 1)))
    with pytest.raises(ValueError, match="v contains NaN"):
        ntk.ntk_vp(f, p, X1, jnp.full(7, jnp.nan))
    with pytest.raises(ValueError, match="x must be a batch"):
        ntk.ntk_vp(f, p, X1[0], jnp.ones(7))
