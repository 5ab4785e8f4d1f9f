"""Closed-form gradient-flow dynamics: residual_flow, predict, loss_bound,
train_loss_curve.

References: scipy's matrix exponential and ODE integration (solve_ivp) of the same
flows, kernel regression, and the minimum-norm (pseudo-inverse) solution.
"""
import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from ntk_companion.dynamics import (Prediction, loss_bound, predict, residual_flow,
                                    train_loss_curve)
from ntk_companion.regression import kernel_regression

INF = np.inf


def _features(seed, n, p):
    return np.random.default_rng(seed).normal(size=(n, p)) / np.sqrt(p)


@pytest.fixture
def problem():
    """A linear model f(x) = phi(x) . theta with P > n (PD kernel), train and test
    sets."""
    rng = np.random.default_rng(0)
    phi = _features(1, 6, 10)          # train features
    phi_s = _features(2, 4, 10)        # test features
    theta0 = rng.normal(size=10)
    y = rng.normal(size=6)
    return dict(phi=phi, phi_s=phi_s, K=phi @ phi.T, Ks=phi_s @ phi.T, theta0=theta0,
                y=y, f0=phi @ theta0, f0s=phi_s @ theta0)


def _ode(rhs, y0, ts):
    sol = scipy.integrate.solve_ivp(lambda t, z: rhs(z), (0.0, float(ts[-1])), y0,
                                    method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-14)
    assert sol.success
    return sol.y.T


# ----------------------------------------------------------------- residual_flow
def test_residual_flow_matches_expm(problem):
    H, r0 = problem["K"], problem["f0"] - problem["y"]
    for t in (0.0, 0.3, 1.7, 25.0):
        want = scipy.linalg.expm(-H * t) @ r0
        np.testing.assert_allclose(residual_flow(H, r0, t), want, rtol=1e-10,
                                   atol=1e-13)


def test_residual_flow_matches_ode_integration(problem):
    H, r0 = problem["K"], problem["f0"] - problem["y"]
    ts = np.linspace(0.0, 5.0, 11)
    got = residual_flow(H, r0, ts)
    assert got.shape == (11, 6)
    np.testing.assert_allclose(got, _ode(lambda r: -H @ r, r0, ts), rtol=1e-9,
                               atol=1e-11)


def test_residual_flow_vector_residual_and_limits(problem):
    H = problem["K"]
    R0 = np.stack([problem["f0"] - problem["y"], problem["y"]], axis=1)     # (n, 2)
    got = residual_flow(H, R0, [0.0, 1.0])
    assert got.shape == (2, 6, 2)
    for j in range(2):
        np.testing.assert_allclose(got[:, :, j], residual_flow(H, R0[:, j], [0.0, 1.0]),
                                   rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[0], R0, rtol=1e-12, atol=1e-14)
    # PD kernel: the residual vanishes at t = inf.
    np.testing.assert_allclose(residual_flow(H, R0, INF), 0.0, atol=1e-14)


def test_residual_flow_singular_keeps_null_space_component():
    phi = _features(3, 5, 2)           # rank 2, n = 5
    H = phi @ phi.T
    r0 = np.random.default_rng(4).normal(size=5)
    P_null = np.eye(5) - phi @ np.linalg.pinv(phi)
    np.testing.assert_allclose(residual_flow(H, r0, INF), P_null @ r0, atol=1e-12)
    np.testing.assert_allclose(residual_flow(H, r0, 1e8), P_null @ r0, atol=1e-12)


# ----------------------------------------------------------------- predict
def test_predict_at_infinity_is_kernel_regression(problem):
    K, Ks, y = problem["K"], problem["Ks"], problem["y"]
    pred = predict(K, y, INF, K_test_train=Ks)
    assert isinstance(pred, Prediction)
    np.testing.assert_allclose(pred.test, kernel_regression(K, y, Ks), rtol=1e-9,
                               atol=1e-11)
    np.testing.assert_allclose(pred.train, y, rtol=1e-10, atol=1e-12)   # interpolation
    # with a nonzero initial function: f0* + K_* K^{-1} (y - f0)
    pred = predict(K, y, INF, K_test_train=Ks, f0_train=problem["f0"],
                   f0_test=problem["f0s"])
    want = problem["f0s"] + kernel_regression(K, y - problem["f0"], Ks)
    np.testing.assert_allclose(pred.test, want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(pred.train, y, rtol=1e-10, atol=1e-12)


def test_predict_at_zero_returns_initial_outputs(problem):
    pred = predict(problem["K"], problem["y"], 0.0, K_test_train=problem["Ks"],
                   f0_train=problem["f0"], f0_test=problem["f0s"])
    np.testing.assert_allclose(pred.train, problem["f0"], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(pred.test, problem["f0s"])


def test_predict_on_train_set_equals_residual_flow(problem):
    K, y, f0 = problem["K"], problem["y"], problem["f0"]
    ts = np.array([0.0, 0.1, 1.0, 10.0, INF])
    pred = predict(K, y, ts, K_test_train=K, f0_train=f0, f0_test=f0)
    flow = y + residual_flow(K, f0 - y, ts)
    assert pred.train.shape == pred.test.shape == (5, 6)
    np.testing.assert_allclose(pred.train, flow, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(pred.test, flow, rtol=1e-10, atol=1e-11)


def test_predict_matches_gradient_flow_of_linear_model(problem):
    """Integrate d theta/dt = -Phi^T (Phi theta - y) numerically; compare f(t) = Phi
    theta(t)."""
    phi, phi_s = problem["phi"], problem["phi_s"]
    y, theta0 = problem["y"], problem["theta0"]
    ts = np.linspace(0.0, 8.0, 9)
    thetas = _ode(lambda th: -phi.T @ (phi @ th - y), theta0, ts)
    pred = predict(problem["K"], y, ts, K_test_train=problem["Ks"],
                   f0_train=phi @ theta0, f0_test=phi_s @ theta0)
    np.testing.assert_allclose(pred.train, thetas @ phi.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(pred.test, thetas @ phi_s.T, rtol=1e-9, atol=1e-10)


def test_mean_loss_time_scale(problem):
    """Gradient flow on the mean loss ||r||^2/(2n) for time n t equals predict at time
    t."""
    phi, y, theta0 = problem["phi"], problem["y"], problem["theta0"]
    n, t = phi.shape[0], 0.7
    thetas = _ode(lambda th: -phi.T @ (phi @ th - y) / n, theta0,
                  np.array([0.0, n * t]))
    pred = predict(problem["K"], y, t, f0_train=phi @ theta0)
    np.testing.assert_allclose(pred.train, phi @ thetas[-1], rtol=1e-9, atol=1e-10)


def test_predict_vector_targets_match_columns(problem):
    K, Ks = problem["K"], problem["Ks"]
    Y = np.stack([problem["y"], np.cos(problem["y"])], axis=1)
    pred = predict(K, Y, [0.5, INF], K_test_train=Ks)
    assert pred.train.shape == (2, 6, 2) and pred.test.shape == (2, 4, 2)
    for j in range(2):
        col = predict(K, Y[:, j], [0.5, INF], K_test_train=Ks)
        np.testing.assert_allclose(pred.train[..., j], col.train, rtol=1e-12,
                                   atol=1e-13)
        np.testing.assert_allclose(pred.test[..., j], col.test, rtol=1e-12, atol=1e-13)


def test_predict_singular_kernel_duplicated_inputs():
    """Duplicated inputs with conflicting targets: K is singular. Everything stays
    finite, and at t = inf the predictions are the minimum-norm (pseudo-inverse)
    solution."""
    phi = _features(5, 6, 10)
    phi[4] = phi[1]                      # duplicated training input
    phi_s = _features(6, 3, 10)
    K, Ks = phi @ phi.T, phi_s @ phi.T
    y = np.random.default_rng(7).normal(size=6)
    y[4] = y[1] + 1.0                    # conflicting targets
    ts = np.array([0.0, 1.0, 1e3, 1e12, INF])
    pred = predict(K, y, ts, K_test_train=Ks)
    assert np.all(np.isfinite(pred.train)) and np.all(np.isfinite(pred.test))
    K_pinv = np.linalg.pinv(K, rcond=1e-10)
    np.testing.assert_allclose(pred.test[-1], Ks @ K_pinv @ y, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(pred.train[-1], K @ K_pinv @ y, rtol=1e-8, atol=1e-10)
    # the duplicated pair is fitted to the mean of its two targets, the rest exactly
    np.testing.assert_allclose(pred.train[-1, [1, 4]], (y[1] + y[4]) / 2, atol=1e-10)
    np.testing.assert_allclose(np.delete(pred.train[-1], [1, 4]), np.delete(y, [1, 4]),
                               atol=1e-10)
    # the flow converges to the t = inf values
    np.testing.assert_allclose(pred.test[-2], pred.test[-1], rtol=1e-8, atol=1e-10)
    # and at finite t it still matches ODE integration of the linear model (theta0 = 0)
    thetas = _ode(lambda th: -phi.T @ (phi @ th - y), np.zeros(10), ts[:2])
    np.testing.assert_allclose(pred.test[1], phi_s @ thetas[1], rtol=1e-9, atol=1e-10)


def test_predict_singular_kernel_zero_matrix():
    """The extreme singular case K = 0: nothing moves, at any t."""
    pred = predict(np.zeros((3, 3)), [1.0, 2.0, 3.0], [0.0, 5.0, INF],
                   K_test_train=np.zeros((2, 3)), f0_train=0.5, f0_test=-1.0)
    np.testing.assert_array_equal(pred.train, np.full((3, 3), 0.5))
    np.testing.assert_array_equal(pred.test, np.full((3, 2), -1.0))


def test_predict_without_test_and_under_jit(problem):
    K, y = problem["K"], problem["y"]
    pred = predict(K, y, 1.0)
    assert pred.test is None
    jitted = jax.jit(lambda K, y, t: predict(K, y, t, K_test_train=K).test)
    np.testing.assert_allclose(jitted(K, y, 1.0), pred.train, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32(problem):
    K = problem["K"].astype(np.float32)
    y = problem["y"].astype(np.float32)
    assert predict(K, y, 1.0).train.dtype == np.float32
    assert residual_flow(K, y, [1.0, 2.0]).dtype == np.float32


# ----------------------------------------------------------------- losses
def test_train_loss_curve_and_bound(problem):
    K, y, f0 = problem["K"], problem["y"], problem["f0"]
    ts = np.linspace(0.0, 6.0, 25)
    curve = train_loss_curve(K, y, ts, f0_train=f0)
    r = residual_flow(K, f0 - y, ts)
    np.testing.assert_allclose(curve, 0.5 * np.sum(r ** 2, axis=1), rtol=1e-12)
    lam_min = float(np.linalg.eigvalsh(K)[0])
    bound = loss_bound(curve[0], lam_min, ts)
    assert bound.shape == ts.shape
    assert np.all(curve <= bound * (1 + 1e-10))
    # the bound is tight for a residual along the bottom eigenvector
    lam, V = np.linalg.eigh(K)
    tight = train_loss_curve(K, y, ts, f0_train=y + V[:, 0])
    np.testing.assert_allclose(tight, loss_bound(0.5, lam_min, ts), rtol=1e-9)
    assert float(train_loss_curve(K, y, INF, f0_train=f0)) < 1e-25


def test_loss_bound_values():
    np.testing.assert_allclose(loss_bound(2.0, 0.5, [0.0, 1.0, INF]),
                               [2.0, 2 * np.exp(-1), 0])
    assert float(loss_bound(3.0, 0.0, INF)) == 3.0      # no decay guaranteed at all
    assert float(loss_bound(1.0, -0.1, 1.0)) > 1.0       # weaker bound, still defined


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("t, match", [(-1.0, "non-negative"), (np.nan, "NaN"),
                                      ([0.0, -0.5], "non-negative"),
                                      (np.ones((2, 2)), "t must be 0-D or 1-D"),
                                      ("soon", "t must be an array")])
def test_bad_time(problem, t, match):
    err = TypeError if isinstance(t, str) else ValueError
    with pytest.raises(err, match=match):
        predict(problem["K"], problem["y"], t)
    with pytest.raises(err, match=match):
        residual_flow(problem["K"], problem["y"], t)
    with pytest.raises(err, match=match):
        loss_bound(1.0, 0.1, t)


def test_bad_kernels(problem):
    K, y = problem["K"], problem["y"]
    with pytest.raises(ValueError, match="H must be a square matrix"):
        residual_flow(K[:, :5], y, 1.0)
    with pytest.raises(ValueError, match="H must be 2-D"):
        residual_flow(y, y, 1.0)
    asym = K.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="K_train must be symmetric"):
        predict(asym, y, 1.0)
    with pytest.raises(ValueError, match="K_train must be positive semi-definite"):
        predict(K - 2 * np.eye(6) * np.linalg.eigvalsh(K).max(), y, 1.0)
    bad = K.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="K_train contains NaN"):
        predict(bad, y, 1.0)


def test_bad_targets_and_shapes(problem):
    K, y, Ks = problem["K"], problem["y"], problem["Ks"]
    with pytest.raises(ValueError, match="r0 must have 6 rows"):
        residual_flow(K, y[:5], 1.0)
    with pytest.raises(ValueError, match="y must have 6 rows"):
        predict(K, y[:4], 1.0)
    with pytest.raises(ValueError, match="y must be 1-D or 2-D"):
        predict(K, np.ones((6, 1, 1)), 1.0)
    with pytest.raises(ValueError, match="y contains NaN"):
        predict(K, np.full(6, np.inf), 1.0)
    with pytest.raises(ValueError, match="K_test_train must have 6 columns"):
        predict(K, y, 1.0, K_test_train=Ks[:, :5])
    with pytest.raises(ValueError, match="f0_train must be a scalar or have shape"):
        predict(K, y, 1.0, f0_train=np.zeros(5))
    with pytest.raises(ValueError, match="f0_test must be a scalar or have shape"):
        predict(K, y, 1.0, K_test_train=Ks, f0_test=np.zeros(6))
    with pytest.raises(TypeError, match="y must be an array"):
        train_loss_curve(K, None, 1.0)
    with pytest.raises(ValueError, match="l0 must be >= 0"):
        loss_bound(-1.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="lambda_min must be finite"):
        loss_bound(1.0, np.nan, 1.0)


# --------------------------------------------------------------------------- diag_reg
def test_predict_diag_reg_absolute_and_relative():
    """``diag_reg=s`` is the flow of ``K + s I`` (train and test, finite t and inf); the
    relative form is ``s = diag_reg tr(K) / n``; at t = inf from f0 = 0 the test outputs
    are kernel ridge regression with ridge s."""
    phi, phi_s = _features(11, 6, 4), _features(12, 3, 4)
    K, Ks = phi @ phi.T, phi_s @ phi.T                 # rank 4 < 6: singular
    y = np.random.default_rng(13).normal(size=(6, 2))
    t = np.array([0.3, 2.0, INF])
    s = 0.05
    ref = predict(K + s * np.eye(6), y, t, K_test_train=Ks, f0_train=0.1)
    got = predict(K, y, t, K_test_train=Ks, f0_train=0.1, diag_reg=s)
    np.testing.assert_allclose(got.train, ref.train, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.test, ref.test, rtol=1e-12, atol=1e-14)
    rel = predict(K, y, t, K_test_train=Ks, f0_train=0.1, diag_reg=s / np.trace(K) * 6,
                  diag_reg_relative=True)
    np.testing.assert_allclose(rel.test, ref.test, rtol=1e-12, atol=1e-14)
    inf = predict(K, y, INF, K_test_train=Ks, diag_reg=s)
    np.testing.assert_allclose(inf.test, kernel_regression(K, y, Ks, ridge=s),
                               rtol=1e-10)
    # The relative regularizer does not change when the kernel is rescaled (time t / c).
    scaled = predict(10 * K, y, t / 10, K_test_train=10 * Ks, f0_train=0.1,
                     diag_reg=0.1, diag_reg_relative=True)
    base = predict(K, y, t, K_test_train=Ks, f0_train=0.1, diag_reg=0.1,
                   diag_reg_relative=True)
    np.testing.assert_allclose(scaled.test, base.test, rtol=1e-11, atol=1e-13)
    # The default (0) is today's unregularized flow, bit for bit.
    np.testing.assert_array_equal(predict(K, y, t, K_test_train=Ks, diag_reg=0.0).test,
                                  predict(K, y, t, K_test_train=Ks).test)
    # Under jit (a traced diag_reg), the same values.
    jitted = jax.jit(lambda r: predict(K, y, 2.0, K_test_train=Ks, f0_train=0.1,
                                       diag_reg=r).test)
    np.testing.assert_allclose(jitted(s), ref.test[1], rtol=1e-12, atol=1e-14)


def test_predict_diag_reg_bad_input():
    K, y = np.eye(3), np.ones(3)
    with pytest.raises(ValueError, match="diag_reg must be >= 0"):
        predict(K, y, 1.0, diag_reg=-1e-3)
    with pytest.raises(ValueError, match="diag_reg must be finite"):
        predict(K, y, 1.0, diag_reg=np.nan)
    with pytest.raises(TypeError, match="diag_reg must be a real number"):
        predict(K, y, 1.0, diag_reg="1e-3")
    with pytest.raises(TypeError, match="diag_reg_relative must be a bool"):
        predict(K, y, 1.0, diag_reg=1e-3, diag_reg_relative="yes")
