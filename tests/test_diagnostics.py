"""Tests of ntk_companion.diagnostics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk

RNG = np.random.default_rng(0)
B = RNG.standard_normal((5, 3))
H = jnp.asarray(B @ B.T + 0.1 * np.eye(5))   # symmetric positive definite


def test_flatten():
    params = [{"W": jnp.ones((2, 3)), "b": jnp.zeros(3)}, {"W": 2 * jnp.ones((3, 1))}]
    theta = ntk.flatten(params)
    assert theta.shape == (12,)
    np.testing.assert_array_equal(theta, jax.flatten_util.ravel_pytree(params)[0])


def test_eigen_helpers():
    ref = np.linalg.eigvalsh(np.asarray(H))
    np.testing.assert_allclose(ntk.min_eigenvalue(H), ref[0], rtol=1e-12)
    evals, evecs = ntk.eigh_descending(H)
    np.testing.assert_allclose(evals, ref[::-1], rtol=1e-12)
    assert np.all(np.diff(np.asarray(evals)) <= 0)
    np.testing.assert_allclose(evecs @ jnp.diag(evals) @ evecs.T, H, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(evecs.T @ evecs, np.eye(5), atol=1e-12)
    idx = np.argmax(np.abs(np.asarray(evecs)), axis=0)
    assert np.all(np.asarray(evecs)[idx, np.arange(5)] > 0)   # sign convention
    r = jnp.asarray(RNG.standard_normal(5))
    c = ntk.spectral_components(H, r)
    np.testing.assert_allclose(c, evecs.T @ r, rtol=1e-12)
    np.testing.assert_allclose(jnp.linalg.norm(c), jnp.linalg.norm(r), rtol=1e-12)
    R = jnp.stack([r, 2 * r], axis=1)
    np.testing.assert_allclose(ntk.spectral_components(H, R)[:, 1], 2 * c, rtol=1e-12)


def test_relative_change_and_weight_movement():
    A0 = jnp.array([[3.0, 0.0], [0.0, 4.0]])
    A = A0 + jnp.array([[0.0, 0.5], [0.0, 0.0]])
    np.testing.assert_allclose(ntk.relative_change(A, A0), 0.5 / 5.0, rtol=1e-14)
    p0 = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}
    p = {"a": jnp.array([3.0, 1.0]), "b": jnp.array([4.0])}
    np.testing.assert_allclose(ntk.weight_movement(p, p0), 1.0 / 5.0, rtol=1e-14)
    np.testing.assert_allclose(ntk.weight_movement(p, p0, relative=False), 1.0,
                               rtol=1e-14)


def test_fit_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    slope, intercept = ntk.fit_power_law(x, 3.0 * x ** -0.5)
    assert isinstance(slope, float)
    np.testing.assert_allclose([slope, intercept], [-0.5, np.log(3.0)], rtol=1e-12)
    noisy = 2.0 * x ** 1.5 * np.exp(0.01 * RNG.standard_normal(5))
    assert abs(ntk.fit_power_law(jnp.asarray(x), noisy)[0] - 1.5) < 0.05


def test_bad_input():
    with pytest.raises(ValueError, match="H must be symmetric"):
        ntk.min_eigenvalue(jnp.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="H must be a square matrix"):
        ntk.eigh_descending(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="H must be 2-D"):
        ntk.min_eigenvalue(jnp.ones(3))
    with pytest.raises(ValueError, match="H contains NaN"):
        ntk.eigh_descending(H.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="r must have 5 rows"):
        ntk.spectral_components(H, jnp.ones(4))
    with pytest.raises(ValueError, match="r must be 1-D or 2-D"):
        ntk.spectral_components(H, jnp.ones((5, 1, 1)))
    with pytest.raises(ValueError, match="A and A0 must have the same shape"):
        ntk.relative_change(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="A0 is zero"):
        ntk.relative_change(jnp.ones(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="A contains NaN"):
        ntk.relative_change(jnp.array([jnp.inf]), jnp.ones(1))
    with pytest.raises(ValueError, match="params and params0 must have the same "
                                         "pytree"):
        ntk.weight_movement({"a": jnp.ones(2)}, {"b": jnp.ones(2)})
    with pytest.raises(ValueError, match="params0 is zero"):
        ntk.weight_movement({"a": jnp.ones(2)}, {"a": jnp.zeros(2)})
    with pytest.raises(TypeError, match="relative must be a bool"):
        ntk.weight_movement({"a": jnp.ones(2)}, {"a": jnp.ones(2)}, relative="yes")
    with pytest.raises(TypeError, match="params must be a pytree of arrays"):
        ntk.flatten({"a": "w"})
    with pytest.raises(ValueError, match="y must be positive"):
        ntk.fit_power_law([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="x must hold at least two distinct"):
        ntk.fit_power_law([2.0, 2.0], [1.0, 3.0])
    with pytest.raises(ValueError, match="x and y must have the same length"):
        ntk.fit_power_law([1.0, 2.0, 3.0], [1.0, 3.0])
    with pytest.raises(ValueError, match="x must be 1-D"):
        ntk.fit_power_law(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="y contains NaN"):
        ntk.fit_power_law([1.0, 2.0], [1.0, np.nan])
