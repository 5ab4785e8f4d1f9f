"""Tests of ntk_companion.training: RK4, gradient flow, gradient descent."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import ntk_companion as ntk
from helpers import normal_params

A = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 3.0]])
Y0 = jnp.array([1.0, -1.0, 0.5])


def linear_field(y):
    return -A @ y



MODEL = ntk.MLP((8,), activation="tanh", b_std=0.2)
PARAMS = normal_params(MODEL, 2, 0)
_X = np.random.default_rng(1).standard_normal((6, 2))
X, Y = jnp.asarray(_X), jnp.asarray(np.sin(_X[:, 0]))
# one loss object: compiled scans are reused
LOSS = ntk.square_loss_fn(MODEL.apply, X, Y)


def w00(p):
    return p[0]["W"][0, 0]


def loss_and_w00(p):
    return {"loss": LOSS(p), "w": w00(p)}


def flow(t=0.8):
    """Gradient flow on LOSS to time t (one compilation shared by the tests)."""
    return ntk.gradient_flow(LOSS, PARAMS, t=t, steps=40, save_every=2,
                             observe=loss_and_w00)


def test_rk4_is_fourth_order():
    """Global error O(h^4): halving the step divides the error by ~2^4 = 16."""
    t = 1.0
    exact = scipy.linalg.expm(-t * np.asarray(A)) @ np.asarray(Y0)
    errs = []
    for steps in (10, 20, 40, 80):
        yT, ts, obs = ntk.rk4(linear_field, Y0, t=t, steps=steps, save_every=steps)
        errs.append(float(jnp.linalg.norm(yT - exact)))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all(np.abs(np.log2(ratios) - 4) < 0.25), ratios
    assert errs[-1] < 1e-8


def test_rk4_saved_times_and_observations_on_a_pytree():
    state = {"a": Y0, "b": (2.0 * Y0,)}
    field = lambda s: jax.tree_util.tree_map(linear_field, s)  # noqa: E731
    yT, ts, obs = ntk.rk4(field, state, t=1.5, steps=12, save_every=4,
                          observe=lambda s: jnp.sum(s["a"] ** 2))
    np.testing.assert_allclose(ts, [0.0, 0.5, 1.0, 1.5], rtol=1e-15)
    assert obs.shape == (4,)
    np.testing.assert_allclose(obs[0], jnp.sum(Y0 ** 2))
    np.testing.assert_allclose(obs[-1], jnp.sum(yT["a"] ** 2), rtol=1e-14)
    np.testing.assert_allclose(yT["b"][0], 2 * yT["a"], rtol=1e-14)
    # default observe: the whole trajectory of the state; each saved point matches expm
    _, ts, traj = ntk.rk4(linear_field, Y0, t=1.0, steps=100, save_every=25)
    assert traj.shape == (5, 3)
    for s, y in zip(ts, traj):
        np.testing.assert_allclose(y, scipy.linalg.expm(-float(s) * np.asarray(A)) @ Y0,
                                   atol=1e-8)


def test_rk4_t_zero_and_jit():
    yT, ts, _ = ntk.rk4(linear_field, Y0, t=0.0, steps=3)
    np.testing.assert_allclose(yT, Y0)
    run = jax.jit(lambda t: ntk.rk4(linear_field, Y0, t=t, steps=8)[0])
    np.testing.assert_allclose(run(1.0), ntk.rk4(linear_field, Y0, t=1.0, steps=8)[0],
                               rtol=1e-14)


def test_gradient_flow_decreases_the_loss():
    pT, ts, obs = flow()
    np.testing.assert_allclose(ts, 0.04 * np.arange(21), rtol=1e-14)
    losses = obs["loss"]
    assert losses.shape == obs["w"].shape == (21,)
    assert np.all(np.diff(np.asarray(losses)) <= 1e-14), losses
    assert losses[-1] < 0.5 * losses[0]
    np.testing.assert_allclose(losses[-1], LOSS(pT), rtol=1e-13)
    assert (float(obs["w"][0]) == float(w00(PARAMS))
            and float(obs["w"][-1]) == float(w00(pT)))
    # dl/dt = -|grad l|^2 = -r^T H r: the slope of the saved losses near t = 0
    r0 = ntk.residual(MODEL.apply, PARAMS, X, Y)
    H0 = ntk.empirical_ntk(MODEL.apply, PARAMS, X)
    # O(h^2) difference
    slope = (-3 * losses[0] + 4 * losses[1] - losses[2]) / (2 * 0.04)
    np.testing.assert_allclose(slope, -r0 @ H0 @ r0, rtol=2e-2)
    # the default observation is the loss; a repeated call gives identical results
    pT2, _, losses2 = ntk.gradient_flow(LOSS, PARAMS, t=0.8, steps=40, save_every=2)
    np.testing.assert_array_equal(losses2, losses)
    np.testing.assert_array_equal(ntk.flatten(pT2), ntk.flatten(pT))


def test_gradient_descent_step():
    """One step theta - lr grad l, on a pytree with a quadratic loss."""
    a = {"u": jnp.array([1.0, 2.0]), "v": (jnp.array(3.0),)}

    def loss(p):
        return 0.5 * (jnp.sum(a["u"] * p["u"] ** 2) + a["v"][0] * p["v"][0] ** 2)

    p0 = {"u": jnp.array([1.0, -1.0]), "v": (jnp.array(2.0),)}
    p1, ks, losses = ntk.gradient_descent(loss, p0, lr=0.1, steps=1)
    np.testing.assert_allclose(p1["u"], [0.9, -0.8], rtol=1e-15)
    np.testing.assert_allclose(p1["v"][0], 2.0 - 0.1 * 6.0, rtol=1e-15)
    np.testing.assert_array_equal(ks, [0, 1])
    np.testing.assert_allclose(losses, [loss(p0), loss(p1)], rtol=1e-15)


def test_gradient_descent_converges_to_gradient_flow_at_rate_lr():
    """|theta_GD(k = t/lr) - theta_GF(t)| = O(lr): ratio ~2 per halving of lr.
    One compiled run (80 steps, saved every 20) serves the three step sizes."""
    t = 0.8
    theta_flow = ntk.flatten(flow(t)[0])
    errs = []
    for lr, k in ((0.04, 20), (0.02, 40), (0.01, 80)):
        _, ks, thetas = ntk.gradient_descent(LOSS, PARAMS, lr=lr, steps=80,
                                             save_every=20, observe=ntk.flatten)
        np.testing.assert_array_equal(ks, [0, 20, 40, 60, 80])
        errs.append(float(jnp.linalg.norm(thetas[k // 20] - theta_flow)))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.3)), (errs, ratios)


def test_square_loss_fn():
    np.testing.assert_allclose(LOSS(PARAMS), ntk.square_loss(MODEL.apply, PARAMS, X, Y))
    with pytest.raises(ValueError, match="y contains NaN"):
        ntk.square_loss_fn(MODEL.apply, X, Y.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="x contains NaN"):
        ntk.square_loss_fn(MODEL.apply, X.at[0, 0].set(jnp.nan), Y)
    with pytest.raises(TypeError, match="apply_fn"):
        ntk.square_loss_fn("model", X, Y)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(t=-1.0, steps=4), ValueError, "t must be >= 0"),
    (dict(t=float("nan"), steps=4), ValueError, "t must be finite"),
    (dict(t=jnp.ones(2), steps=4), ValueError, "t must be a scalar"),
    (dict(t=1.0, steps=0), ValueError, "steps"),
    (dict(t=1.0, steps=4.0), TypeError, "steps must be an integer"),
    (dict(t=1.0, steps=10, save_every=3), ValueError, "multiple of save_every"),
    (dict(t=1.0, steps=10, save_every=0), ValueError, "save_every"),
    (dict(t=1.0, steps=4, observe="loss"), TypeError, "observe must be callable"),
])
def test_rk4_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ntk.rk4(linear_field, Y0, **kwargs)


def test_training_bad_input():
    with pytest.raises(TypeError, match="vector_field must be callable"):
        ntk.rk4(None, Y0, t=1.0, steps=2)
    with pytest.raises(ValueError, match="y0 contains NaN"):
        ntk.rk4(linear_field, Y0.at[0].set(jnp.nan), t=1.0, steps=2)
    with pytest.raises(ValueError, match="y0 must be a non-empty"):
        ntk.rk4(linear_field, {}, t=1.0, steps=2)
    params, loss_fn = PARAMS, LOSS
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        ntk.gradient_flow(3.0, params, t=1.0, steps=2)
    with pytest.raises(ValueError, match="params contains NaN"):
        ntk.gradient_flow(loss_fn, [{"W": jnp.full((2, 8), jnp.nan)}, params[1]],
                          t=1.0, steps=2)
    with pytest.raises(TypeError, match="params must hold floating"):
        ntk.gradient_descent(loss_fn, [{"W": jnp.ones((2, 8), int)}], lr=0.1, steps=2)
    for lr, exc in ((0.0, ValueError), (-0.1, ValueError), (float("inf"), ValueError),
                    (None, TypeError)):
        with pytest.raises(exc, match="lr"):
            ntk.gradient_descent(loss_fn, params, lr=lr, steps=2)
    with pytest.raises(ValueError, match="multiple of save_every"):
        ntk.gradient_descent(loss_fn, params, lr=0.1, steps=5, save_every=2)
    with pytest.raises(ValueError, match="t must be >= 0"):
        ntk.gradient_flow(loss_fn, params, t=-0.5, steps=2)
