"""Tests of ntk_companion.ensemble (stacked initializations, parameterization map,
kurtosis, the trained-ensemble Gaussian process)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk

X = ntk.circle_points(jnp.array([0.0, 0.7, 1.6, 2.8]))
KEYS = jax.random.split(jax.random.PRNGKey(0), 3)


def test_init_ensemble_shapes_distribution_and_nesting():
    net = ntk.MLP(hidden=(8, 8), activation="relu", W_std=1.0, b_std=0.1)
    ens = ntk.init_ensemble(net, KEYS, 2)
    assert [l["W"].shape for l in ens] == [(3, 2, 8), (3, 8, 8), (3, 8, 1)]
    assert ens[0]["W"].dtype == jnp.float64
    # each member is a valid parameter list of the model, and members differ
    outs = [net.apply(jax.tree_util.tree_map(lambda a, s=s: a[s], ens), X)
            for s in range(3)]
    assert not np.allclose(outs[0], outs[1])
    # standard normal entries (many draws)
    big = ntk.init_ensemble(ntk.MLP(hidden=(64,)), jax.random.split(KEYS[0], 200), 4)
    v = np.asarray(ntk.flatten(big))
    assert abs(v.mean()) < 0.02 and abs(v.std() - 1) < 0.02
    # float32 and float64 draws hold the same networks
    e32 = ntk.init_ensemble(net, KEYS, 2, dtype=jnp.float32)
    np.testing.assert_allclose(e32[1]["W"], ens[1]["W"], rtol=1e-6)
    # works with nested_params
    assert ntk.nested_params(ens, 4)[1]["W"].shape == (3, 4, 4)


def test_init_ensemble_standard_is_same_function():
    net = ntk.MLP(hidden=(16,), activation="tanh", W_std=1.5, b_std=0.3)
    sp = dataclasses.replace(net, parameterization="standard")
    e_ntk, e_sp = ntk.init_ensemble(net, KEYS, 2), ntk.init_ensemble(sp, KEYS, 2)
    f_ntk = jax.vmap(net.apply, (0, None))(e_ntk, X)
    f_sp = jax.vmap(sp.apply, (0, None))(e_sp, X)
    np.testing.assert_allclose(f_ntk, f_sp, rtol=1e-12, atol=1e-14)


def test_to_standard_and_factors_match_the_direct_kernel():
    net = ntk.MLP(hidden=(32, 32), activation="relu", W_std=1.3, b_std=0.2)
    sp = dataclasses.replace(net, parameterization="standard")
    p = net.init(jax.random.PRNGKey(3), 2)
    p_sp = ntk.to_standard(net, p)
    np.testing.assert_allclose(net.apply(p, X), sp.apply(p_sp, X), rtol=1e-12)
    G = ntk.jacobian(net.apply, p, X)
    D = ntk.standard_ntk_factors(net, p)
    assert D.shape == (net.num_params(2),)
    direct = ntk.empirical_ntk(sp.apply, p_sp, X, method="jacobian")
    np.testing.assert_allclose((G * D) @ G.T, direct, rtol=1e-10)
    # a wrong factor (5 % off) is detected by the same comparison
    assert not np.allclose((G * (1.05 * D)) @ G.T, direct, rtol=1e-3)


def test_bias_free_networks():
    net = ntk.MLP(hidden=(4,), W_std=2.0)                         # no biases
    p = net.init(jax.random.PRNGKey(0), 3)
    assert all("b" not in layer for layer in ntk.to_standard(net, p))
    D = ntk.standard_ntk_factors(net, p)
    np.testing.assert_allclose(D[:12], 3 / 4.0)
    np.testing.assert_allclose(D[12:], 4 / 4.0)


def test_excess_kurtosis_gaussian_and_relu_layer():
    rng = np.random.default_rng(0)
    k, se = ntk.excess_kurtosis(rng.standard_normal(200_000))
    assert abs(k) < 4 * se and 0 < se < 0.05
    # one hidden ReLU layer of width m, no biases: excess kurtosis exactly 15 / m
    m, N = 4, 200_000
    v, u = rng.standard_normal((2, N, m))
    f = (v * np.maximum(u, 0)).sum(axis=1) / np.sqrt(m)
    k, se = ntk.excess_kurtosis(f)
    assert abs(k - 15 / m) < 4 * se
    # Laplace distribution: excess kurtosis 3
    k, se = ntk.excess_kurtosis(rng.laplace(size=200_000))
    assert abs(k - 3) < 4 * se


def test_excess_kurtosis_bad_input():
    with pytest.raises(ValueError, match="samples"):
        ntk.excess_kurtosis(np.ones((3, 3)))
    with pytest.raises(ValueError, match="samples"):
        ntk.excess_kurtosis(np.ones(3))
    with pytest.raises(ValueError, match="samples"):
        ntk.excess_kurtosis(np.zeros(10))
    with pytest.raises(TypeError, match="samples"):
        ntk.excess_kurtosis("abc")


def _kernels(x_train, x_test):
    kw = dict(depth=1, activation="relu", W_std=1.0, b_std=0.1)
    tr = ntk.analytic_kernels(x_train, **kw)
    te = ntk.analytic_kernels(x_test, x_train, **kw)
    tt = ntk.analytic_kernels(x_test, **kw)
    return tr, te, tt


def _gp(tr, te, tt, y, t=jnp.inf):
    post = ntk.predict_ensemble(tr, y, t, k_test_train=te, k_test=tt)
    return post.mean, post.cov


def test_predict_ensemble_against_sampled_gaussian_process():
    """Mean and covariance of f_t for f_0 ~ GP(0, Sigma), by sampling f_0 directly: an
    independent check of ntk.predict_ensemble (tests/test_ensemble.py trains
    networks)."""
    x_train = ntk.circle_points(jnp.array([-2.0, -0.5, 1.0, 2.2]))
    x_test = ntk.circle_points(jnp.array([-1.2, 0.3, 1.6]))
    y = jnp.array([0.5, -1.0, 0.8, 0.1])
    tr, te, tt = _kernels(x_train, x_test)
    for t in (0.7, jnp.inf):
        mean, cov = _gp(tr, te, tt, y, t)
        # exact sampling of (f_0(X), f_0(X_*)) and the linear map of eq. (f_t)
        S = jnp.block([[tr.nngp, te.nngp.T], [te.nngp, tt.nngp]])
        L = jnp.linalg.cholesky(S + 1e-12 * jnp.eye(7))
        f0 = (L @ jax.random.normal(jax.random.PRNGKey(1), (7, 100_000))).T
        lam, V = jnp.linalg.eigh(tr.ntk)
        g = -jnp.expm1(-lam * t) / lam
        M = te.ntk @ V @ jnp.diag(g) @ V.T
        ft = f0[:, 4:] + (y - f0[:, :4]) @ M.T
        se = np.sqrt(np.diag(cov) / ft.shape[0])
        assert np.all(np.abs(np.asarray(ft.mean(axis=0) - mean)) < 5 * se)
        np.testing.assert_allclose(np.cov(np.asarray(ft).T), cov,
                                   atol=0.02 * float(cov.max()))


def test_predict_ensemble_limits():
    x_train = ntk.circle_points(jnp.array([-2.0, -0.5, 1.0, 2.2]))
    y = jnp.array([0.5, -1.0, 0.8, 0.1])
    tr, _, _ = _kernels(x_train, x_train)
    # at t = 0 nothing is learned: mean 0, covariance Sigma
    mean, cov = _gp(tr, tr, tr, y, 0.0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-14)
    np.testing.assert_allclose(cov, tr.nngp, atol=1e-14)
    # at t = inf on the training inputs: interpolation, no variance
    mean, cov = _gp(tr, tr, tr, y)
    np.testing.assert_allclose(mean, y, atol=1e-10)
    assert float(jnp.max(jnp.abs(cov))) < 1e-10
    # the mean equals ntk.predict of the linearized model with zero offset
    mean_t, _ = _gp(tr, tr, tr, y, 1.3)
    np.testing.assert_allclose(mean_t, ntk.predict(tr.ntk, y, 1.3).train, rtol=1e-12)


def test_ensembles_bad_input():
    with pytest.raises(TypeError, match="model"):
        ntk.init_ensemble("mlp", KEYS, 2)
    with pytest.raises(TypeError, match="keys"):
        ntk.init_ensemble(ntk.MLP(hidden=(2,)), jnp.ones(3), 2)
