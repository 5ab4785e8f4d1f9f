"""Kernel (ridge) regression by Cholesky solve."""
import jax
import numpy as np
import pytest

from ntk_companion.regression import kernel_regression


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(7, 12)) / np.sqrt(12)
    phi_s = rng.normal(size=(3, 12)) / np.sqrt(12)
    return dict(K=phi @ phi.T, Ks=phi_s @ phi.T, y=rng.normal(size=7),
                Y=rng.normal(size=(7, 2)))


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 0.5])
def test_matches_dense_solve(data, ridge):
    K, Ks, y, Y = data["K"], data["Ks"], data["y"], data["Y"]
    A = K + ridge * np.eye(7)
    np.testing.assert_allclose(kernel_regression(K, y, Ks, ridge=ridge),
                               Ks @ np.linalg.solve(A, y), rtol=1e-10, atol=1e-12)
    got = kernel_regression(K, Y, Ks, ridge)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, Ks @ np.linalg.solve(A, Y), rtol=1e-10, atol=1e-12)


def test_interpolates_without_ridge_and_shrinks_with_ridge(data):
    K, y = data["K"], data["y"]
    np.testing.assert_allclose(kernel_regression(K, y, K), y, rtol=1e-10, atol=1e-12)
    fit = kernel_regression(K, y, K, ridge=10.0)
    assert np.linalg.norm(fit) < np.linalg.norm(y)
    # huge ridge: K y / ridge
    np.testing.assert_allclose(kernel_regression(K, y, K, ridge=1e8), K @ y / 1e8,
                               rtol=1e-6)


def test_jit_and_dtype(data):
    K, Ks, y = data["K"], data["Ks"], data["y"]
    jitted = jax.jit(kernel_regression)
    np.testing.assert_allclose(jitted(K, y, Ks, 0.1), kernel_regression(K, y, Ks, 0.1),
                               rtol=1e-12)
    out = kernel_regression(K.astype(np.float32), y.astype(np.float32),
                            Ks.astype(np.float32))
    assert out.dtype == np.float32


def test_not_positive_definite(data):
    K, y = data["K"], data["y"]
    with pytest.raises(ValueError, match="not positive definite.*positive ridge"):
        kernel_regression(K - 2 * np.linalg.eigvalsh(K).max() * np.eye(7), y, K)
    # singular: duplicated inputs, and a low-rank kernel
    phi = np.random.default_rng(1).normal(size=(5, 8))
    phi[3] = phi[0]
    Kd = phi @ phi.T
    with pytest.raises(ValueError, match="not positive definite"):
        kernel_regression(Kd, np.ones(5), Kd)
    low = phi[:, :2] @ phi[:, :2].T
    with pytest.raises(ValueError, match="not positive definite"):
        kernel_regression(low, np.ones(5), low)
    # the suggested remedy works
    assert np.all(np.isfinite(kernel_regression(Kd, np.ones(5), Kd, ridge=1e-6)))


def test_bad_input(data):
    K, Ks, y = data["K"], data["Ks"], data["y"]
    with pytest.raises(ValueError, match="K_train must be a square matrix"):
        kernel_regression(K[:5], y, Ks)
    with pytest.raises(ValueError, match="K_train must be symmetric"):
        kernel_regression(K + np.triu(np.ones((7, 7)), 1), y, Ks)
    with pytest.raises(ValueError, match="y must have 7 rows"):
        kernel_regression(K, y[:6], Ks)
    with pytest.raises(ValueError, match="K_test_train must have 7 columns"):
        kernel_regression(K, y, Ks.T)
    with pytest.raises(ValueError, match="K_test_train must be 2-D"):
        kernel_regression(K, y, Ks[0])
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        kernel_regression(K, y, Ks, ridge=-1e-3)
    with pytest.raises(ValueError, match="y contains NaN"):
        kernel_regression(K, np.full(7, np.nan), Ks)
    with pytest.raises(ValueError, match="K_test_train contains NaN"):
        kernel_regression(K, y, np.full((3, 7), np.inf))
    with pytest.raises(TypeError, match="K_train must be an array"):
        kernel_regression("K", y, Ks)


def test_gaussian_kernel_formula_psd_and_bad_input():
    from ntk_companion.regression import gaussian_kernel

    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    for ell in (1.0, 0.7):
        expected = np.exp(-((x1[:, None] - x2[None]) ** 2).sum(-1) / (2 * ell ** 2))
        np.testing.assert_allclose(gaussian_kernel(x1, x2, ell), expected, rtol=1e-13)
    K = np.asarray(gaussian_kernel(x1, x1))
    np.testing.assert_allclose(np.diag(K), 1.0, rtol=1e-15)            # k(x, x) = 1
    np.testing.assert_allclose(K, K.T, rtol=1e-15)
    # distinct points
    assert np.linalg.eigvalsh(K)[0] > 0
    jitted = jax.jit(gaussian_kernel)(x1, x2, 0.7)
    np.testing.assert_allclose(jitted, gaussian_kernel(x1, x2, 0.7), rtol=1e-13)
    with pytest.raises(ValueError, match=r"x1 and x2 must have the same feature shape, "
                       r"got \(3,\) and \(2,\)"):
        gaussian_kernel(x1, rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match="x1"):
        gaussian_kernel(x1[0], x2)
    with pytest.raises(ValueError, match="lengthscale"):
        gaussian_kernel(x1, x2, 0.0)
    with pytest.raises(TypeError, match="lengthscale"):
        gaussian_kernel(x1, x2, "1")


def test_relative_ridge(data):
    """``ridge_relative=True``: the ridge is ``ridge tr(K) / n``; rescaling the kernel
    leaves the prediction unchanged; bad values raise."""
    K, Ks, y = data["K"], data["Ks"], data["Y"]
    s = 0.2 * np.trace(K) / K.shape[0]
    np.testing.assert_allclose(kernel_regression(K, y, Ks, 0.2, ridge_relative=True),
                               kernel_regression(K, y, Ks, s), rtol=1e-13)
    np.testing.assert_allclose(kernel_regression(50 * K, y, 50 * Ks, 0.2,
                                                 ridge_relative=True),
                               kernel_regression(K, y, Ks, 0.2, ridge_relative=True),
                               rtol=1e-12)
    assert not np.allclose(kernel_regression(K, y, Ks, 0.2, ridge_relative=True),
                           kernel_regression(K, y, Ks, 0.2), rtol=1e-3)
    jitted = jax.jit(lambda r: kernel_regression(K, y, Ks, r, ridge_relative=True))
    np.testing.assert_allclose(jitted(0.2), kernel_regression(K, y, Ks, s), rtol=1e-12)
    with pytest.raises(TypeError, match="ridge_relative must be a bool"):
        kernel_regression(K, y, Ks, 0.2, ridge_relative=1)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        kernel_regression(K, y, Ks, -0.2, ridge_relative=True)
