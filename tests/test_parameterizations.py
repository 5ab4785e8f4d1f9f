"""Tests of ntk_companion.parameterizations and of MLP(parameterization="mup")."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from ntk_companion import MLP, parameterizations

KEY = jax.random.key(0)


def _x(n=6, d=3, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, d))


def test_mup_is_ntk_with_the_readout_divided_by_sqrt_width():
    """Same standard-normal parameters; only the readout multiplier differs (1/m vs
    1/sqrt(m)), so without a readout bias f_mup = f_ntk / sqrt(m)."""
    kw = dict(hidden=(37, 23), activation="tanh", W_std=1.3, b_std=0.0)
    p = MLP(**kw).init(KEY, 3)
    f_ntk = MLP(**kw).apply(p, _x())
    f_mup = MLP(parameterization="mup", **kw).apply(p, _x())
    np.testing.assert_allclose(f_mup, f_ntk / math.sqrt(23), rtol=1e-12)


def test_mup_readout_bias_is_not_rescaled():
    kw = dict(hidden=(9,), activation="relu", b_std=0.7)
    p = MLP(**kw).init(KEY, 3)
    p[-1]["W"] = jnp.zeros_like(p[-1]["W"])
    f = MLP(parameterization="mup", **kw).apply(p, _x())
    np.testing.assert_allclose(f, 0.7 * p[-1]["b"][0], rtol=1e-14)


def test_mup_one_hidden_layer_is_the_mean_field_network():
    """f(x) = (W_std / m) sum_j v_j sigma(W_std x.w_j / sqrt(d))."""
    m, d, W_std = 50, 3, 1.7
    net = MLP((m,), activation="erf", W_std=W_std, parameterization="mup")
    p = net.init(KEY, d)
    x = _x(d=d)
    h = jax.scipy.special.erf(W_std * x @ p[0]["W"] / math.sqrt(d))
    np.testing.assert_allclose(net.apply(p, x), W_std / m * h @ p[1]["W"][:, 0],
                               rtol=1e-12)


@pytest.mark.parametrize("hidden, b_std",
                         [((6,), 0.0), ((5, 7), 0.4), ((4, 3, 5), 1.0)])
def test_structured_kernel_of_mup_equals_jacobian_kernel(hidden, b_std):
    net = MLP(hidden, activation="gelu", b_std=b_std, parameterization="mup")
    p = net.init(KEY, 3)
    x = _x(n=7)
    K_jac = ntk.empirical_ntk(net.apply, p, x, method="jacobian")
    K_str = ntk.empirical_ntk(net.apply, p, x, method="structured")
    np.testing.assert_allclose(K_str, K_jac, rtol=1e-11, atol=1e-14)


def test_abc_exponents_table():
    assert ntk.abc_exponents("ntk", 2) == ((0.0, 0.5, 0.5), (0.0, 0.0, 0.0), 0.0)
    assert ntk.abc_exponents("standard", 2) == ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), 1.0)
    assert ntk.abc_exponents("mup", 1) == ((0.0, 1.0), (0.0, 0.0), -1.0)
    with pytest.raises(ValueError, match="parameterization"):
        ntk.abc_exponents("sp", 2)
    with pytest.raises(ValueError, match="depth"):
        ntk.abc_exponents("ntk", 0)


@pytest.mark.parametrize("name", parameterizations.PARAMETERIZATIONS)
def test_exponents_agree_with_multipliers_and_step_sizes(name):
    """The width exponents measured from layer_multipliers, MLP.init and lr_multipliers
    at two widths are the table's: effective multiplier m^{-a_l}, init std m^{-b_l},
    step m^{-c} (input dimension fixed)."""
    depth, d = 2, 3
    table = ntk.abc_exponents(name, depth)

    def measure(m):
        net = MLP((m,) * depth, W_std=1.0, parameterization=name)
        p = net.init(KEY, d)
        mult = [parameterizations.layer_multipliers(name, 1.0, 0.0, p[l]["W"].shape[0],
                                                    readout=l == depth)[0]
                for l in range(depth + 1)]
        # the standard parameterization's weights are the NTK draw times the init std
        ref = MLP((m,) * depth, W_std=1.0).init(KEY, d)
        std = [float(p[l]["W"][0, 0] / ref[l]["W"][0, 0]) for l in range(depth + 1)]
        lrs = [f["W"] for f in ntk.lr_multipliers(net, d)]
        return np.array(mult), np.array(std), np.array(lrs)

    m1, m2 = 256, 1024
    (a1, s1, c1), (a2, s2, c2) = measure(m1), measure(m2)
    rate = lambda u, v: -np.log(v / u) / np.log(m2 / m1)
    np.testing.assert_allclose(rate(a1, a2), table.a, atol=1e-12)
    np.testing.assert_allclose(rate(s1, s2), table.b, atol=1e-12)
    np.testing.assert_allclose(rate(c1, c2), [table.c] * (depth + 1), atol=1e-12)


def test_lr_multipliers_layout_and_values():
    net = MLP((8, 5), b_std=0.3, parameterization="mup")
    assert ntk.lr_multipliers(net, 3) == [{"W": 8.0, "b": 8.0}, {"W": 8.0, "b": 5.0},
                                          {"W": 5.0, "b": 1.0}]
    assert ntk.lr_multipliers(MLP((8,), b_std=0.3), 3) == [{"W": 1.0, "b": 1.0}] * 2
    std = ntk.lr_multipliers(MLP((8, 4), parameterization="standard"), 3)
    assert std == [{"W": 1 / 8}, {"W": 1 / 8}, {"W": 1 / 4}]


def test_scaled_lr_matches_params_and_dtype():
    net = MLP((6,), b_std=0.5, parameterization="mup")
    p = net.init(KEY, 2, dtype=jnp.float32)
    lr = ntk.scaled_lr(net, p, 0.25)
    assert jax.tree_util.tree_structure(lr) == jax.tree_util.tree_structure(p)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(lr))
    assert float(lr[0]["W"]) == 1.5 and float(lr[1]["b"]) == 0.25


def test_gradient_descent_with_per_leaf_steps_is_per_layer_descent():
    """One step with lr = scaled_lr(...) moves every leaf by its own step times its
    gradient; a uniform pytree equals the scalar step size."""
    net = MLP((7,), b_std=0.5, parameterization="mup")
    p0 = net.init(KEY, 3)
    x, y = _x(), jnp.linspace(-1, 1, 6)
    loss = ntk.square_loss_fn(net.apply, x, y)
    lr = ntk.scaled_lr(net, p0, 0.1)
    p1, _, _ = ntk.gradient_descent(loss, p0, lr=lr, steps=1)
    g = jax.grad(loss)(p0)
    want = jax.tree_util.tree_map(lambda a, s, b: a - s * b, p0, lr, g)
    for u, v in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(u, v, rtol=1e-13)
    uniform = jax.tree_util.tree_map(lambda a: 0.1, p0)
    q1, _, _ = ntk.gradient_descent(loss, p0, lr=uniform, steps=3)
    q2, _, _ = ntk.gradient_descent(loss, p0, lr=0.1, steps=3)
    for u, v in zip(jax.tree_util.tree_leaves(q1), jax.tree_util.tree_leaves(q2)):
        np.testing.assert_allclose(u, v, rtol=1e-14)


def test_mup_features_move_by_order_one_and_ntk_features_do_not():
    """One hidden layer, a few steps: the relative change of the hidden pre-activations
    shrinks like m^{-1/2} in the NTK parameterization and stays put under muP."""
    d, n = 3, 8
    x = _x(n=n, d=d)
    y = jnp.sin(x[:, 0]) * 2

    def feature_change(name, m, eta):
        net = MLP((m,), activation="tanh", parameterization=name)
        p0 = net.init(KEY, d)
        lr = ntk.scaled_lr(net, p0, eta)
        pT, _, _ = ntk.gradient_descent(ntk.square_loss_fn(net.apply, x, y), p0, lr=lr,
                                        steps=20)
        z = lambda p: x @ p[0]["W"]
        return float(jnp.linalg.norm(z(pT) - z(p0)) / jnp.linalg.norm(z(p0)))

    ntk_ratio = feature_change("ntk", 1024, 0.05) / feature_change("ntk", 4096, 0.05)
    mup_ratio = feature_change("mup", 1024, 0.05) / feature_change("mup", 4096, 0.05)
    assert 1.4 < ntk_ratio < 2.8, ntk_ratio  # sqrt(4) = 2
    assert 0.8 < mup_ratio < 1.25, mup_ratio


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(lr=[{"W": 0.1}]), ValueError, "lr.*structure"),
    (dict(lr=[{"W": 0.1, "b": -1.0}, {"W": 0.1, "b": 0.1}]), ValueError, "lr"),
])
def test_gradient_descent_rejects_bad_step_sizes(kwargs, exc, match):
    net = MLP((4,), b_std=0.5)
    p0 = net.init(KEY, 3)
    loss = ntk.square_loss_fn(net.apply, _x(), jnp.zeros(6))
    with pytest.raises(exc, match=match):
        ntk.gradient_descent(loss, p0, steps=1, **kwargs)


def test_bad_arguments():
    net = MLP((4,), parameterization="mup")
    p = net.init(KEY, 3)
    with pytest.raises(TypeError, match="model"):
        ntk.lr_multipliers("mup", 3)
    with pytest.raises(ValueError, match="d_in"):
        ntk.lr_multipliers(net, 0)
    with pytest.raises(ValueError, match="hidden"):
        ntk.lr_multipliers(MLP((), parameterization="mup"), 3)
    with pytest.raises(ValueError, match="lr"):
        ntk.scaled_lr(net, p, -1.0)
    with pytest.raises(ValueError, match="params"):
        ntk.scaled_lr(MLP((5,), parameterization="mup"), p, 0.1)
    with pytest.raises(ValueError, match="parameterization"):
        ntk.layer_multipliers("NTK", 1.0, 0.0, 4, readout=False)
    with pytest.raises(ValueError, match="fan_in"):
        ntk.layer_multipliers("ntk", 1.0, 0.0, 0, readout=False)
