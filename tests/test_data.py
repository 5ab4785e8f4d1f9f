"""Tests of ntk_companion.data."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk

KEY = jax.random.key(0)


def test_unit_circle_and_circle_points():
    x, angles = ntk.unit_circle(8)
    assert x.shape == (8, 2) and angles.shape == (8,) and x.dtype == jnp.float64
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, rtol=1e-15)
    np.testing.assert_allclose(jnp.linalg.norm(x, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(x[2], [0.0, 1.0], atol=1e-15)
    x2, a2 = ntk.unit_circle(4, start=-1.0, stop=1.0)
    np.testing.assert_allclose(a2, [-1.0, -0.5, 0.0, 0.5])
    np.testing.assert_allclose(ntk.circle_points(a2), x2)


def test_regression_1d():
    for target in ("sin", "sin3", "cubic", "abs", "step"):
        x, y = ntk.regression_1d(KEY, 20, target=target)
        assert x.shape == (20, 1) and y.shape == (20,) and y.dtype == jnp.float64
        assert np.all(np.diff(np.asarray(x[:, 0])) >= 0) and np.all(np.abs(x) <= 1)
        np.testing.assert_allclose(y, ntk.target_fn(target)(x[:, 0]), rtol=1e-15)


def test_regression_1d_noise_and_determinism():
    x, y = ntk.regression_1d(KEY, 400, noise=0.1)
    x_again, y_again = ntk.regression_1d(jax.random.key(0), 400, noise=0.1)
    np.testing.assert_array_equal(y, y_again)
    resid = y - jnp.sin(math.pi * x[:, 0])
    assert 0.08 < float(jnp.std(resid)) < 0.12
    np.testing.assert_allclose(ntk.target_fn("sin")(jnp.array([0.5])), [1.0])
    f = lambda t: 2 * t  # noqa: E731
    assert ntk.target_fn(f) is f
    _, y2 = ntk.regression_1d(KEY, 20, target=f)
    np.testing.assert_allclose(y2, 2 * ntk.regression_1d(KEY, 20)[0][:, 0])


def test_gaussian_inputs():
    x = ntk.gaussian_inputs(KEY, 20, 4)
    assert x.shape == (20, 4) and x.dtype == jnp.float64
    xn = ntk.gaussian_inputs(KEY, 20, 4, normalize=True)
    np.testing.assert_allclose(jnp.linalg.norm(xn, axis=1), 2.0, rtol=1e-14)
    np.testing.assert_allclose(xn / jnp.linalg.norm(xn, axis=1, keepdims=True),
                               x / jnp.linalg.norm(x, axis=1, keepdims=True),
                               rtol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        ntk.unit_circle(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        ntk.unit_circle(3.0)
    with pytest.raises(ValueError, match="stop must be greater than start"):
        ntk.unit_circle(3, start=1.0, stop=1.0)
    with pytest.raises(ValueError, match="angles must be 1-D"):
        ntk.circle_points(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="angles contains NaN"):
        ntk.circle_points(jnp.array([0.0, jnp.nan]))
    with pytest.raises(TypeError, match="key must be a jax.random key"):
        ntk.regression_1d(0, 5)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        ntk.regression_1d(KEY, 5, noise=-1.0)
    with pytest.raises(ValueError, match="unknown target 'square'.*sin"):
        ntk.regression_1d(KEY, 5, target="square")
    with pytest.raises(TypeError, match="target must be"):
        ntk.target_fn(3)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        ntk.gaussian_inputs(KEY, 5, 0)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        ntk.gaussian_inputs(KEY, 5, 2, normalize="yes")
