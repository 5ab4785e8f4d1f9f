"""Tests of ntk_companion.models: MLP and activations."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from ntk_companion import MLP, get_activation

KEY = jax.random.key(0)


def _x(n=5, d=3, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, d))


@pytest.mark.parametrize("hidden, b_std", [((), 0.5), ((4,), 0.0), ((7, 5), 0.5)])
def test_params_layout_and_shapes(hidden, b_std):
    model = MLP(hidden, b_std=b_std)
    params = model.init(KEY, 3)
    widths = (3, *hidden, 1)
    assert (isinstance(params, list)
            and len(params) == len(hidden) + 1 == model.depth + 1)
    for i, layer in enumerate(params):
        assert layer["W"].shape == (widths[i], widths[i + 1])
        assert layer["W"].dtype == jnp.float64
        if b_std == 0:
            assert set(layer) == {"W"}
        else:
            assert set(layer) == {"W", "b"} and layer["b"].shape == (widths[i + 1],)
    assert model.apply(params, _x()).shape == (5,)
    assert model.num_params(3) == ntk.flatten(params).size


def test_vector_output_and_dtype():
    model = MLP((4,), out_dim=3, b_std=0.1)
    params = model.init(KEY, 3, dtype=jnp.float32)
    out = model.apply(params, jnp.ones((5, 3), jnp.float32))
    assert out.shape == (5, 3) and out.dtype == jnp.float32
    assert model.num_params(3) == 3 * 4 + 4 + 4 * 3 + 3


@pytest.mark.parametrize("activation, b_std", [
    ("relu", 0.0), ("erf", 0.7), ("tanh", 0.0), ("identity", 0.7), ("gelu", 0.0),
    ("softplus", 0.7)])
def test_ntk_and_standard_parameterization_give_the_same_function(activation, b_std):
    """For the same standard normals the NTK-parameterized network equals the
    standard-parameterized one whose weights are rescaled by W_std/sqrt(fan_in),
    b_std."""
    kw = dict(hidden=(7, 5), activation=activation, W_std=1.3, b_std=b_std)
    m_ntk, m_std = (MLP(parameterization="ntk", **kw),
                    MLP(parameterization="standard", **kw))
    p_ntk, p_std = m_ntk.init(KEY, 3), m_std.init(KEY, 3)
    for a, b in zip(p_ntk, p_std):
        np.testing.assert_allclose(b["W"], a["W"] * 1.3 / math.sqrt(a["W"].shape[0]),
                                   rtol=1e-14)
        if b_std:
            np.testing.assert_allclose(b["b"], a["b"] * b_std, rtol=1e-14)
    x = _x()
    np.testing.assert_allclose(m_ntk.apply(p_ntk, x), m_std.apply(p_std, x), rtol=1e-12,
                               atol=1e-14)


def test_forward_pass_by_hand():
    model = MLP((4,), activation="tanh", W_std=2.0, b_std=0.5)
    p = model.init(KEY, 3)
    x = np.asarray(_x())
    W0, b0, W1, b1 = (np.asarray(p[0]["W"]), np.asarray(p[0]["b"]),
                      np.asarray(p[1]["W"]), np.asarray(p[1]["b"]))
    h = np.tanh(2.0 / np.sqrt(3) * x @ W0 + 0.5 * b0)
    f = 2.0 / np.sqrt(4) * h @ W1 + 0.5 * b1
    np.testing.assert_allclose(model.apply(p, x), f[:, 0], rtol=1e-12)


def test_activations():
    z = jnp.linspace(-2.0, 2.0, 9)
    np.testing.assert_allclose(get_activation("relu")(z), np.maximum(z, 0))
    np.testing.assert_allclose(get_activation("identity")(z), z)
    np.testing.assert_allclose(get_activation("tanh")(z), np.tanh(z))
    from scipy.special import erf
    np.testing.assert_allclose(get_activation("erf")(z), erf(np.asarray(z)), rtol=1e-12)
    np.testing.assert_allclose(get_activation("softplus")(z), np.log1p(np.exp(z)),
                               rtol=1e-12)
    gelu = np.asarray(z) * 0.5 * (1 + erf(np.asarray(z) / np.sqrt(2)))
    np.testing.assert_allclose(get_activation("gelu")(z), gelu, rtol=1e-12)
    fn = lambda u: u ** 3  # noqa: E731
    assert get_activation(fn) is fn
    # a deep linear network without bias is linear in x; a callable activation is used
    lin = MLP((7, 5), activation="identity")
    p = lin.init(KEY, 3)
    np.testing.assert_allclose(lin.apply(p, 2.5 * _x()), 2.5 * lin.apply(p, _x()),
                               rtol=1e-12)
    cube = MLP((4,), activation=fn)
    pc = cube.init(KEY, 3)
    np.testing.assert_allclose(cube.apply(pc, 2 * _x()), 8 * cube.apply(pc, _x()),
                               rtol=1e-12)


def test_apply_under_jit_and_hashable():
    model = MLP((7, 5), activation="erf", b_std=0.2)
    p = model.init(KEY, 3)
    np.testing.assert_allclose(jax.jit(model.apply)(p, _x()), model.apply(p, _x()),
                               rtol=1e-12)
    assert hash(model) == hash(MLP((7, 5), activation="erf", b_std=0.2))
    assert MLP([3, 4]).hidden == (3, 4)


def test_init_distribution():
    """NTK parameterization: W, b ~ N(0, 1);
    standard: W ~ N(0, W_std^2/fan_in), b ~ N(0, b_std^2)."""
    for param, w_var, b_var in (("ntk", 1.0, 1.0), ("standard", 4.0 / 400, 0.25)):
        p = MLP((300,), W_std=2.0, b_std=0.5, parameterization=param).init(KEY, 400)
        W, b = np.asarray(p[0]["W"]), np.asarray(p[0]["b"])
        assert abs(W.mean()) < 5 * np.sqrt(w_var / W.size)
        assert abs(W.var() / w_var - 1) < 0.02 and abs(b.var() / b_var - 1) < 0.3


def test_output_variance_at_init_matches_theory():
    """For relu, E[f(x)^2] over initializations is exact at any width:
    q_1 = W^2 |x|^2/d + b^2, q_{l+1} = W^2 q_l / 2 + b^2, E f^2 = q_{L+1}.
    (Standard normal parameters drawn with numpy for 4000 networks at once.)"""
    W_std, b_std, d = 1.4, 0.3, 3
    model = MLP((32, 32), W_std=W_std, b_std=b_std)
    x = jnp.array([[1.0, -2.0, 0.5]])
    rng = np.random.default_rng(42)
    widths = (d, 32, 32, 1)
    stacked = [{"W": jnp.asarray(rng.standard_normal((4000, m, k))),
                "b": jnp.asarray(rng.standard_normal((4000, k)))}
               for m, k in zip(widths[:-1], widths[1:])]
    f = jax.vmap(lambda p: model.apply(p, x)[0])(stacked)
    q = W_std ** 2 * float(jnp.sum(x ** 2)) / d + b_std ** 2
    for _ in range(model.depth):
        q = W_std ** 2 * q / 2 + b_std ** 2
    measured = float(jnp.mean(f ** 2))
    assert abs(float(jnp.mean(f))) < 4 * math.sqrt(q / 4000)
    assert abs(measured / q - 1) < 0.1, (measured, q)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(hidden=(0,)), ValueError, "hidden"),
    (dict(hidden=(4, -1)), ValueError, "hidden"),
    (dict(hidden=(2.5,)), TypeError, "hidden"),
    (dict(hidden=8), TypeError, "hidden"),
    (dict(hidden=None), TypeError, "hidden"),
    (dict(W_std=0.0), ValueError, "W_std"),
    (dict(W_std=float("nan")), ValueError, "W_std"),
    (dict(W_std="1"), TypeError, "W_std"),
    (dict(b_std=-0.1), ValueError, "b_std"),
    (dict(b_std=float("inf")), ValueError, "b_std"),
    (dict(parameterization="mean-field"), ValueError, "parameterization"),
    (dict(activation="swish"), ValueError, r"activation.*relu"),
    (dict(activation=3), TypeError, "activation"),
    (dict(out_dim=0), ValueError, "out_dim"),
])
def test_bad_hyperparameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


def test_get_activation_rejects_unknown():
    with pytest.raises(ValueError, match="activation.*erf"):
        get_activation("sigmoid_ish")
    with pytest.raises(TypeError, match="activation"):
        get_activation(None)


def test_bad_init_and_apply_input():
    model = MLP((4,), b_std=0.5)
    with pytest.raises(TypeError, match="key"):
        model.init(0, 3)
    with pytest.raises(ValueError, match="d_in"):
        model.init(KEY, 0)
    with pytest.raises(TypeError, match="d_in"):
        model.init(KEY, 2.0)
    with pytest.raises(TypeError, match="dtype"):
        model.init(KEY, 2, dtype=jnp.int32)
    with pytest.raises(ValueError, match="d_in"):
        model.num_params(-1)
    p = model.init(KEY, 3)
    with pytest.raises(ValueError, match=r"x must be a batch .*\(n, d\)"):
        model.apply(p, jnp.ones(3))
    with pytest.raises(ValueError, match="x must be 2-D"):
        model.apply(p, jnp.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="x has 2 features but params expect 3"):
        model.apply(p, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="x contains NaN"):
        model.apply(p, jnp.array([[1.0, jnp.nan, 0.0]]))
    with pytest.raises(ValueError, match="x contains NaN or infinite"):
        model.apply(p, jnp.array([[1.0, jnp.inf, 0.0]]))
    with pytest.raises(TypeError, match="x must be an array"):
        model.apply(p, "abc")
    with pytest.raises(ValueError, match="params must hold 2 layers"):
        model.apply(p[:1], jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"params\[0\] must not have a bias"):
        MLP((4,)).apply(p, jnp.ones((2, 3)))
    with pytest.raises(ValueError,
                       match=r"params\[0\]\['W'\] must have shape \(3, 5\)"):
        MLP((5,), b_std=0.5).apply(p, jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="params must be the list"):
        model.apply({"W": 1}, jnp.ones((2, 3)))


def test_nested_params_keeps_the_first_units():
    wide = MLP((6, 5), activation="tanh", b_std=0.3)
    params = wide.init(KEY, 3)
    narrow = MLP((2, 2), activation="tanh", b_std=0.3)
    sub = ntk.nested_params(params, 2)
    assert [layer["W"].shape for layer in sub] == [(3, 2), (2, 2), (2, 1)]
    np.testing.assert_array_equal(sub[1]["W"], params[1]["W"][:2, :2])
    np.testing.assert_array_equal(sub[2]["b"], params[2]["b"])
    x = _x()
    narrow.apply(sub, x)                      # the parameters of the narrower network
    # stacked initializations, under jit, and without biases
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), params, params)
    sub_b = jax.jit(ntk.nested_params, static_argnums=1)(stacked, 4)
    assert [layer["W"].shape for layer in sub_b] == [(2, 3, 4), (2, 4, 4), (2, 4, 1)]
    nobias = MLP((4,)).init(KEY, 3)
    assert set(ntk.nested_params(nobias, 2)[0]) == {"W"}
    with pytest.raises(ValueError, match="hidden layer 2 has 5 units"):
        ntk.nested_params(params, 6)
    with pytest.raises(ValueError, match="width"):
        ntk.nested_params(params, 0)
    with pytest.raises(TypeError, match="MLP parameter list"):
        ntk.nested_params({"W": params[0]["W"]}, 2)
