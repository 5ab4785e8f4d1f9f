"""Regression tests of issue 19: finite gradients, the time rule for vector targets, the
quadrature limits, no silent garbage, value checks under jit, clear errors, and a
compiled recursion whose size does not grow with the depth."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import ntk_companion as ntk
from ntk_companion import analytic

X = np.random.default_rng(0).normal(size=(4, 3))


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_quadrature_kernels_have_finite_gradients(activation):
    def total(w):
        return ntk.analytic_kernels(X, depth=1, activation=activation,
                                    W_std=w).ntk.sum()

    g = jax.grad(total)(1.0)
    h = 1e-5
    fd = (total(1.0 + h) - total(1.0 - h)) / (2 * h)
    assert np.isfinite(g)
    assert abs(float(g) - float(fd)) < 1e-6 * abs(float(fd))


def test_predict_gradient_at_infinite_time_is_finite():
    K = np.asarray(ntk.analytic_kernels(X, depth=1).ntk)
    y = np.arange(4.0)
    Ks = K[:2] * 0.5

    def test_sum(s):
        return ntk.predict(s * K, y, jnp.inf, K_test_train=Ks).test.sum()

    g = jax.grad(test_sum)(1.0)
    # f_test = Ks (s K)^{-1} y, so d/ds = -f_test(s=1)
    assert np.isfinite(g)
    np.testing.assert_allclose(float(g), -float(test_sum(1.0)), rtol=1e-10)
    assert np.isfinite(
        jax.grad(lambda s: ntk.predict(s * K, y, jnp.inf).train.sum())(1.0))


# --------------------------------------------------------------------------- time rule
def test_mean_loss_time_rule_for_vector_targets():
    """Gradient descent on the mean over all n k entries, lr * steps = t_mean, matches
    predict at t = t_mean / (n k)."""
    rng = np.random.default_rng(1)
    n, p, k = 5, 8, 3
    phi = rng.normal(size=(n, p)) / np.sqrt(p)
    y = rng.normal(size=(n, k))

    def mean_loss(w):
        return 0.5 * jnp.mean((phi @ w - y) ** 2)

    lr, steps = 1.0, 100
    w, _, _ = ntk.gradient_descent(mean_loss, jnp.zeros((p, k)), lr=lr, steps=steps,
                                   save_every=steps)
    t = lr * steps / (n * k)
    pred = ntk.predict(phi @ phi.T, y, t).train
    # gradient descent approximates the flow to O(lr lambda_max / (n k)) per unit time
    err = float(jnp.max(jnp.abs(phi @ w - pred)) / jnp.max(jnp.abs(pred)))
    wrong = ntk.predict(phi @ phi.T, y, lr * steps / n).train
    assert err < 2e-2
    assert float(jnp.max(jnp.abs(phi @ w - wrong)) / jnp.max(jnp.abs(pred))) > 10 * err


def test_docs_state_the_vector_time_rule():
    import pathlib

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert "t_mean / (n * k)" in readme
    assert "t = t_mean / (n k)" in ntk.predict.__doc__
    assert "t = t_mean / (n k)" in ntk.__doc__


# --------------------------------------------------------------------------- quadrature
@pytest.mark.parametrize("rule, order", [("hermite", 400), ("polar", 190)])
def test_quadrature_order_above_the_limit_raises(rule, order):
    with pytest.raises(ValueError, match="order must be at most"):
        ntk.analytic_kernels(X, depth=1, activation="tanh", quadrature=rule,
                             order=order)


@pytest.mark.parametrize("rule", ["hermite", "polar"])
def test_quadrature_rules_are_finite_up_to_the_limit(rule):
    k = analytic._quadrature_moments(jnp.ones(2), jnp.array([0.3, 1.0]), jnp.ones(2),
                                     sigma=jnp.tanh, order=analytic.MAX_ORDER[rule],
                                     rule=rule)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in k)


def test_kinked_callable_with_hermite_rule_raises_and_polar_is_exact():
    with pytest.raises(ValueError, match="kink at 0"):
        ntk.analytic_kernels(X, depth=2, activation=jax.nn.relu)
    polar = ntk.analytic_kernels(X, depth=2, activation=jax.nn.relu, quadrature="polar",
                                 order=16)
    closed = ntk.analytic_kernels(X, depth=2, activation="relu")
    np.testing.assert_allclose(polar.ntk, closed.ntk, rtol=1e-12)


def test_large_variance_with_hermite_rule_raises():
    with pytest.raises(ValueError, match="quadrature .* is not accurate"):
        ntk.analytic_kernels(X, depth=2, activation="tanh", W_std=3.0)


def test_hermite_accuracy_at_moderate_variance():
    """erf as a callable (quadrature, default Hermite order 96) against the closed form
    at variances up to 2: accepted by the accuracy check and within 1e-7 (the module
    docstring's table: 5e-16 at K ~ 1, 3e-6 at K ~ 4)."""
    x = np.sqrt(2.0) * np.eye(3)           # x.x/d = 2/3, W_std^2 = 3: variance 2
    x = np.concatenate([x, x[:1] * 0.7 + x[1:2] * 0.3])
    quad = ntk.analytic_kernels(x, depth=1, activation=jax.scipy.special.erf,
                                W_std=np.sqrt(3.0))
    closed = ntk.analytic_kernels(x, depth=1, activation="erf", W_std=np.sqrt(3.0))
    assert float(jnp.max(jnp.abs(quad.ntk - closed.ntk))) < 1e-7 * float(
        jnp.max(jnp.abs(closed.ntk)))


# ----------------------------------------------------------------------- silent garbage
def test_predict_rejects_ambiguous_initial_outputs():
    K = np.eye(3) + 0.1
    y = np.zeros((3, 3))
    with pytest.raises(ValueError, match="f0_train must be a scalar or have shape"):
        ntk.predict(K, y, 1.0, f0_train=np.ones(3))
    with pytest.raises(ValueError, match="f0_test must be a scalar or have shape"):
        ntk.predict(K, y, 1.0, K_test_train=K, f0_test=np.ones(3))
    with pytest.raises(ValueError, match="f0_test was given without K_test_train"):
        ntk.predict(K, y[:, 0], 1.0, f0_test=np.ones(3))


def _centred(p, x):
    return jnp.tanh((x - x.mean(0)) @ p)


def test_batch_coupled_model_raises():
    p = jnp.ones(3)
    for fn in (lambda: ntk.jacobian(_centred, p, X),
               lambda: ntk.empirical_ntk(_centred, p, X, method="ntvp")):
        with pytest.raises(ValueError, match="every input of the batch independently"):
            fn()
    # a per-example model passes, and the three ways agree
    f = lambda p, x: jnp.tanh(x @ p)  # noqa: E731
    K = ntk.empirical_ntk(f, p, X, method="jacobian")
    np.testing.assert_allclose(ntk.ntk_vp(f, p, X, np.eye(4)), K, rtol=1e-12)


@pytest.mark.parametrize("scale, dtype", [(1e160, np.float64), (1e20, np.float32)])
def test_analytic_kernels_overflow_raises(scale, dtype):
    with pytest.raises(ValueError, match="overflowed"):
        ntk.analytic_kernels((X * scale).astype(dtype), depth=2)


def test_nan_parameters_and_inputs_are_rejected():
    model = ntk.MLP(hidden=(4,))
    params = model.init(jax.random.PRNGKey(0), 3)
    bad = [dict(layer) for layer in params]
    bad[0]["W"] = bad[0]["W"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN"):
        model.apply(bad, X)
    with pytest.raises(ValueError, match="NaN"):
        ntk.nested_params(bad, 2)
    f_lin = ntk.linearize(model.apply, params)
    with pytest.raises(ValueError, match="NaN"):
        f_lin(bad, X)
    with pytest.raises(ValueError, match="x contains NaN"):
        f_lin(params, X * np.nan)


def test_regression_target_with_nan_raises():
    with pytest.raises(ValueError, match="target returned NaN"):
        ntk.regression_1d(jax.random.PRNGKey(0), 8, target=jnp.log)


def test_diverging_training_raises():
    loss = lambda w: 0.5 * jnp.sum((3.0 * w - 1.0) ** 2)  # noqa: E731 (lambda_max = 9)
    with pytest.raises(ValueError, match="gradient_descent diverged.*lr=1"):
        ntk.gradient_descent(loss, jnp.ones(2), lr=1.0, steps=2000)
    with pytest.raises(ValueError, match="rk4 diverged"):
        ntk.gradient_flow(loss, jnp.ones(2), t=4000.0, steps=40)
    ntk.gradient_descent(loss, jnp.ones(2), lr=0.2, steps=100)   # below 2/9: fine


def test_unstable_gradient_flow_with_a_finite_result_raises():
    # h lambda_max = 3.33 * 9 = 30, far outside RK4's stability interval (-2.79, 0):
    # after 3 steps the state is about 1e12, finite, where the exact flow has
    # converged to 1/3
    loss = lambda w: 0.5 * jnp.sum((3.0 * w - 1.0) ** 2)  # noqa: E731 (lambda_max = 9)
    for observe in (None, lambda w: w[0]):
        with pytest.raises(ValueError, match=r"gradient_flow is unstable: the loss "
                                             r"rose .*h = t / steps = 3\.33"):
            ntk.gradient_flow(loss, jnp.ones(2), t=10.0, steps=3, observe=observe)
    assert "gradient_flow is unstable" in _checked(
        lambda w: ntk.gradient_flow(loss, w, t=10.0, steps=3)[0], jnp.ones(2))
    # h lambda = 0.9
    wT, _, losses = ntk.gradient_flow(loss, jnp.ones(2), t=10.0, steps=100)
    np.testing.assert_allclose(wT, 1 / 3, rtol=1e-12)
    assert np.all(np.diff(np.asarray(losses)) <= 0)


# --------------------------------------------------------------------- checks under jit
def _checked(fn, *args):
    with ntk.jit_checks():
        err, _ = checkify.checkify(jax.jit(fn))(*args)
    return err.get()


def test_value_checks_under_jit_with_checkify():
    K = np.eye(2) + 0.5
    y = np.ones(2)
    assert "t must be non-negative" in _checked(lambda t: ntk.predict(K, y, t).train,
                                                -1.0)
    assert _checked(lambda t: ntk.predict(K, y, t).train, 1.0) is None
    assert "y contains NaN" in _checked(lambda y: ntk.predict(K, y, 1.0).train,
                                         np.array([np.nan, 1.0]))
    assert "positive semi-definite" in _checked(lambda K: ntk.predict(K, y, 1.0).train,
                                                np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert "not positive definite" in _checked(
        lambda K: ntk.kernel_regression(K, y, K), np.ones((2, 2)))
    assert "W_std must be > 0" in _checked(
        lambda w: ntk.analytic_kernels(X, depth=1, W_std=w).ntk, -1.0)


def test_without_jit_checks_the_value_checks_are_skipped_and_static_checks_run():
    K = np.eye(2)
    out = jax.jit(lambda t: ntk.predict(K, np.ones(2), t).train)(-1.0)
    assert out.shape == (2,)
    with pytest.raises(ValueError, match="y must have 2 rows"):
        jax.jit(lambda y: ntk.predict(K, y, 1.0).train)(np.ones(3))
    with pytest.raises(TypeError, match="enabled must be a bool"):
        ntk.jit_checks("yes")


# ----------------------------------------------------------------------- obscure errors
def test_zero_size_kernels_raise_clearly():
    with pytest.raises(ValueError, match="K_train must be a non-empty"):
        ntk.predict(np.zeros((0, 0)), np.zeros(0), 1.0)
    with pytest.raises(ValueError, match="K_test_train must have at least one row"):
        ntk.kernel_regression(np.eye(2), np.ones(2), np.zeros((0, 2)))


def test_rk4_vector_field_of_wrong_structure_raises():
    with pytest.raises(ValueError, match="vector_field must return a pytree shaped "
                                         "like y0"):
        ntk.rk4(lambda y: y["a"], {"a": jnp.ones(2)}, t=1.0, steps=2)
    with pytest.raises(ValueError, match="vector_field must return leaves of the "
                                         "shapes"):
        ntk.rk4(lambda y: y[:1], jnp.ones(2), t=1.0, steps=2)


def test_vector_valued_loss_raises():
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        ntk.gradient_descent(lambda w: w ** 2, jnp.ones(2), lr=0.1, steps=2)


def test_non_elementwise_activation_raises():
    with pytest.raises(ValueError, match="activation must be elementwise"):
        ntk.MLP(hidden=(3,), activation=jax.nn.softmax)
    with pytest.raises(ValueError, match="activation must be elementwise"):
        ntk.analytic_kernels(X, depth=1, activation=jax.nn.softmax)


@pytest.mark.parametrize("devs, error, match", [
    ("cpu", TypeError, "sequence of jax devices"),
    ([0, 1], TypeError, "must hold jax devices"),
    (5, TypeError, "sequence of jax devices"),
])
def test_use_devices_bad_arguments(devs, error, match):
    with pytest.raises(error, match=match):
        ntk.sharding.use_devices(devs)


def test_use_devices_duplicated():
    with pytest.raises(ValueError, match="must not repeat a device"):
        ntk.sharding.use_devices([jax.devices()[0]] * 2)


# --------------------------------------------------------------------------- depth
def test_recursion_program_does_not_grow_with_depth():
    """The hidden layers are one scanned body: the lowered program has the same size at
    depth 2 and depth 40 (an unrolled loop grows linearly)."""
    x = jnp.asarray(X)

    def size(depth):
        net = analytic._network(depth, jnp.tanh, 1.0, 0.0, 8, "hermite", "ntk", 1)
        lowered = ntk.layers._kernels.lower(net._bind(x.shape[1:]), x, x, True, None,
                                            None)
        return len(lowered.as_text())

    assert size(40) < 1.05 * size(2)
    deep = ntk.analytic_kernels(x, depth=60, activation="tanh", W_std=1.0)
    assert np.all(np.isfinite(np.asarray(deep.ntk)))
