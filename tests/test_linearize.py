"""Tests of ntk_companion.linearize: the first-order Taylor model around theta_0."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import ntk_companion as ntk
from helpers import normal_params



MODEL = ntk.MLP((8, 8), activation="tanh", b_std=0.3)
P0 = normal_params(MODEL, 2, 0)
X = jnp.asarray(np.random.default_rng(1).standard_normal((5, 2)))
F_LIN = ntk.linearize(MODEL.apply, P0)


def direction(seed=2):
    theta0, unravel = jax.flatten_util.ravel_pytree(P0)
    v = jax.random.normal(jax.random.key(seed), theta0.shape)
    return theta0, unravel, v / jnp.linalg.norm(v) * jnp.linalg.norm(theta0)


def test_equals_f_at_theta0():
    np.testing.assert_array_equal(F_LIN(P0, X), MODEL.apply(P0, X))


def test_taylor_remainder_is_second_order():
    """|f(theta0 + eps v) - f_lin(theta0 + eps v)| = O(eps^2): ratio ~4 per halving of
    eps."""
    theta0, unravel, v = direction()
    errs = []
    for eps in (0.04, 0.02, 0.01, 0.005):
        p = unravel(theta0 + eps * v)
        errs.append(float(jnp.linalg.norm(MODEL.apply(p, X) - F_LIN(p, X))))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all(np.abs(ratios - 4) < 0.4), (errs, ratios)


def test_affine_in_params_and_jvp_matches_jacobian():
    theta0, unravel, v = direction(3)
    G = ntk.jacobian(MODEL.apply, P0, X)
    for a in (0.5, -2.0):
        np.testing.assert_allclose(F_LIN(unravel(theta0 + a * v), X),
                                   MODEL.apply(P0, X) + a * (G @ v), rtol=1e-11,
                                   atol=1e-12)


def test_ntk_of_linearized_model_is_H0_everywhere():
    theta0, unravel, v = direction(4)
    H0 = ntk.empirical_ntk(MODEL.apply, P0, X)
    H_lin = ntk.empirical_ntk(F_LIN, unravel(theta0 + 3.0 * v), X)
    np.testing.assert_allclose(H_lin, H0, rtol=1e-10,
                               atol=1e-12 * float(jnp.abs(H0).max()))
    # and H0 differs from the NTK of f itself at those far-away parameters
    H_far = ntk.empirical_ntk(MODEL.apply, unravel(theta0 + 3.0 * v), X)
    assert float(ntk.relative_change(H_far, H0)) > 1e-3


def test_gradient_flow_on_linearized_model_is_kernel_flow():
    """For f_lin, dr/dt = -H0 r exactly: r(t) = expm(-H0 t) r(0)."""
    y = jnp.cos(X[:, 1])
    loss_fn = ntk.square_loss_fn(F_LIN, X, y)
    pT, _, _ = ntk.gradient_flow(loss_fn, P0, t=1.0, steps=100, save_every=100)
    H0 = np.asarray(ntk.empirical_ntk(MODEL.apply, P0, X))
    r0 = np.asarray(MODEL.apply(P0, X) - y)
    r_exact = scipy.linalg.expm(-H0) @ r0
    np.testing.assert_allclose(F_LIN(pT, X) - y, r_exact, rtol=1e-6, atol=1e-9)


def test_bad_input():
    with pytest.raises(TypeError, match="apply_fn must be callable"):
        ntk.linearize("f", P0)
    with pytest.raises(ValueError, match="params0 contains NaN"):
        ntk.linearize(MODEL.apply,
                      [{"W": jnp.full((2, 8), jnp.nan), "b": P0[0]["b"]}] + P0[1:])
    with pytest.raises(ValueError, match="params and params0 must have the same "
                                         "pytree"):
        F_LIN(P0[:2], X)
    with pytest.raises(ValueError, match="params and params0 must have leaves of the "
                                         "same"):
        F_LIN([{"W": jnp.ones((2, 7)), "b": P0[0]["b"]}] + P0[1:], X)
    with pytest.raises(ValueError, match="params contains NaN"):
        F_LIN(jax.tree_util.tree_map(lambda a: a * jnp.nan, P0), X)
    with pytest.raises(ValueError, match="x has 3 features"):
        F_LIN(P0, jnp.ones((2, 3)))
