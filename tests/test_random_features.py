"""Tests of ntk_companion.random_features (random features, minimum-norm and ridge
fits)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk

KEY = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (7, 3))
W = jax.random.normal(jax.random.key(2), (11, 3))
Y = jnp.linspace(-1.0, 2.0, 7)


def test_random_features_formula_and_kernel_limit():
    Phi = ntk.random_features(X, W)
    assert Phi.shape == (7, 11) and Phi.dtype == jnp.float64
    expected = np.maximum(np.asarray(X) @ np.asarray(W).T / np.sqrt(3), 0) / np.sqrt(11)
    np.testing.assert_allclose(Phi, expected, rtol=1e-14)
    # other activation by name
    np.testing.assert_allclose(ntk.random_features(X, W, activation="tanh"),
                               np.tanh(np.asarray(X) @ np.asarray(W).T / np.sqrt(3))
                               / np.sqrt(11), rtol=1e-14)
    # K_N -> arc-cosine kernel = analytic NNGP kernel of depth 1 (Monte Carlo, N^-1/2)
    x = ntk.gaussian_inputs(jax.random.key(3), 5, 4, normalize=True)
    Wbig = jax.random.normal(jax.random.key(4), (200_000, 4))
    P = ntk.random_features(x, Wbig)
    K = ntk.analytic_kernels(x, depth=1, activation="relu").nngp
    assert float(jnp.max(jnp.abs(P @ P.T - K))) < 0.02


def test_min_norm_fit_matches_pinv_all_shapes():
    for N in (3, 7, 11):            # under-, exactly and over-parameterized
        Phi = ntk.random_features(X, W[:N])
        a = ntk.min_norm_fit(Phi, Y)
        np.testing.assert_allclose(a, np.linalg.pinv(np.asarray(Phi)) @ np.asarray(Y),
                                   rtol=1e-9, atol=1e-12)
    # over-parameterized: interpolates, and lies in the row space (minimum norm)
    Phi = ntk.random_features(X, W)
    a = ntk.min_norm_fit(Phi, Y)
    np.testing.assert_allclose(Phi @ a, Y, atol=1e-10)
    # a null-space direction
    z = jnp.asarray(np.linalg.svd(np.asarray(Phi))[2][-1])
    assert float(jnp.abs(z @ a)) < 1e-10
    assert float(jnp.linalg.norm(a + 0.1 * z)) > float(jnp.linalg.norm(a))


def test_min_norm_fit_rank_deficient_and_rcond():
    Phi = ntk.random_features(X, W)
    Phi_dup = jnp.concatenate([Phi, Phi[:, :1]], axis=1)           # duplicated column
    a = ntk.min_norm_fit(Phi_dup, Y)
    np.testing.assert_allclose(a, np.linalg.pinv(np.asarray(Phi_dup)) @ np.asarray(Y),
                               rtol=1e-8, atol=1e-12)
    # the duplicated feature splits its weight equally (minimum norm)
    np.testing.assert_allclose(a[0], a[-1], rtol=1e-10)
    # a huge rcond keeps only the top singular direction
    U, s, Vt = np.linalg.svd(np.asarray(Phi), full_matrices=False)
    a1 = ntk.min_norm_fit(Phi, Y, rcond=0.999)
    np.testing.assert_allclose(a1, Vt[0] * (U[:, 0] @ np.asarray(Y)) / s[0], rtol=1e-10)


def test_ridge_fit_formulas_and_vector_targets():
    Phi = ntk.random_features(X, W)
    A = np.asarray(Phi)
    for rho in (1e-3, 0.5):
        a = ntk.ridge_fit(Phi, Y, rho)
        np.testing.assert_allclose(a,
                                   np.linalg.solve(A.T @ A + rho * np.eye(11), A.T @ Y),
                                   rtol=1e-10)
        # push-through: kernel ridge regression with K_N = Phi Phi^T
        np.testing.assert_allclose(Phi @ a,
                                   ntk.kernel_regression(Phi @ Phi.T, Y, Phi @ Phi.T,
                                                         ridge=rho), rtol=1e-10)
    np.testing.assert_allclose(ntk.ridge_fit(Phi, Y, 0.0), ntk.min_norm_fit(Phi, Y),
                               rtol=1e-12)
    rhos = jnp.array([0.0, 1e-3, 0.5])
    many = ntk.ridge_fit(Phi, Y, rhos)
    assert many.shape == (3, 11)
    for k, rho in enumerate(rhos):
        np.testing.assert_allclose(many[k], ntk.ridge_fit(Phi, Y, float(rho)),
                                   rtol=1e-12)
    Y2 = jnp.stack([Y, 2 * Y], axis=1)
    out = ntk.ridge_fit(Phi, Y2, rhos)
    assert out.shape == (3, 11, 2)
    np.testing.assert_allclose(out[..., 1], 2 * many, rtol=1e-12)
    assert ntk.min_norm_fit(Phi, Y2).shape == (11, 2)


def test_ridge_shrinks_and_bounded_gain():
    Phi = ntk.random_features(X, W[:7])                              # square
    norms = [float(jnp.linalg.norm(ntk.ridge_fit(Phi, Y, r)))
             for r in (1e-6, 1e-3, 1e-1, 10.0)]
    assert all(a > b for a, b in zip(norms, norms[1:]))
    # s / (s^2 + rho) <= 1 / (2 sqrt rho) for every s
    for rho in (1e-4, 1e-1):
        gain_bound = float(jnp.linalg.norm(Y)) / (2 * np.sqrt(rho))
        gain = float(jnp.linalg.norm(ntk.ridge_fit(Phi, Y, rho)))
        assert gain <= gain_bound * (1 + 1e-12)


def test_jit_and_vmap():
    Ws = jax.random.normal(jax.random.key(5), (4, 9, 3))
    f = jax.jit(jax.vmap(lambda w: ntk.min_norm_fit(ntk.random_features(X, w), Y)))
    out = f(Ws)
    for k in range(4):
        np.testing.assert_allclose(out[k],
                                   ntk.min_norm_fit(ntk.random_features(X, Ws[k]), Y),
                                   rtol=1e-10, atol=1e-13)
    g = jax.vmap(lambda r: ntk.ridge_fit(ntk.random_features(X, W), Y, r))
    np.testing.assert_allclose(g(jnp.array([1e-2, 1.0]))[1],
                               ntk.ridge_fit(ntk.random_features(X, W), Y, 1.0),
                               rtol=1e-12)


def test_float32_preserved():
    Phi = ntk.random_features(X.astype(jnp.float32), W.astype(jnp.float32))
    assert Phi.dtype == jnp.float32
    assert ntk.min_norm_fit(Phi, Y.astype(jnp.float32)).dtype == jnp.float32
    assert ntk.ridge_fit(Phi, Y.astype(jnp.float32), 0.1).dtype == jnp.float32


def test_bad_input():
    with pytest.raises(ValueError, match=r"x and W must have the same feature shape, "
                       r"got \(3,\) and \(2,\)"):
        ntk.random_features(X, W[:, :2])
    with pytest.raises(ValueError, match="x must be 2-D"):
        ntk.random_features(X[0], W)
    with pytest.raises(ValueError, match="W must be 2-D"):
        ntk.random_features(X, W[0])
    with pytest.raises(ValueError, match="unknown activation"):
        ntk.random_features(X, W, activation="nope")
    with pytest.raises(ValueError, match="x contains NaN"):
        ntk.random_features(X.at[0, 0].set(jnp.nan), W)
    Phi = ntk.random_features(X, W)
    with pytest.raises(ValueError, match="y must have 7 rows"):
        ntk.min_norm_fit(Phi, Y[:5])
    with pytest.raises(ValueError, match="Phi must be 2-D"):
        ntk.min_norm_fit(Phi[0], Y)
    with pytest.raises(ValueError, match="rcond must be >= 0"):
        ntk.min_norm_fit(Phi, Y, rcond=-1.0)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        ntk.ridge_fit(Phi, Y, -0.1)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        ntk.ridge_fit(Phi, Y, jnp.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="ridge must be 0-D or 1-D"):
        ntk.ridge_fit(Phi, Y, jnp.ones((2, 2)))
    with pytest.raises(TypeError, match="Phi must be an array"):
        ntk.min_norm_fit("abc", Y)
    with pytest.raises(ValueError, match="y contains NaN"):
        ntk.ridge_fit(Phi, Y.at[0].set(jnp.inf), 0.1)


def test_marchenko_pastur_edges_formula_and_simulation():
    e = ntk.marchenko_pastur_edges(64, np.array([16, 64, 256]))
    np.testing.assert_allclose(e.lower, [1.0, 0.0, 0.25], rtol=1e-15)
    np.testing.assert_allclose(e.upper, [9.0, 4.0, 2.25], rtol=1e-15)
    assert e.lower_scale[1] == 0.0 and np.all(e.upper_scale > 0)
    # swapping n and N rescales by N / n (Phi^T Phi has the nonzero spectrum of
    # Phi Phi^T)
    f = ntk.marchenko_pastur_edges(256, 64)
    np.testing.assert_allclose([f.lower, f.upper], [0.25 * 4, 2.25 * 4], rtol=1e-15)
    # simulation: the mean extreme eigenvalues sit at edge -+ 1.21 scale
    # (Tracy-Widom mean)
    n, N, S = 40, 400, 200
    G = jax.random.normal(jax.random.key(5), (S, n, N)) / np.sqrt(N)
    lam = np.asarray(jnp.linalg.eigvalsh(G @ jnp.swapaxes(G, 1, 2)))
    e = ntk.marchenko_pastur_edges(n, N)
    for meas, pred in ((lam[:, -1], e.upper - 1.2065 * e.upper_scale),
                       (lam[:, 0], e.lower + 1.2065 * e.lower_scale)):
        se = meas.std() / np.sqrt(S)
        assert abs(meas.mean() - pred) < 4 * se, (meas.mean(), pred, se)
        assert abs(meas.mean() - 1.05 * pred) > 4 * se           # a 5 % error is seen


def test_marchenko_pastur_edges_bad_input():
    for bad in (0, -3, 2.5, np.nan, np.array([4, 0])):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            ntk.marchenko_pastur_edges(bad, 10)
    with pytest.raises(ValueError, match="N must be a positive integer"):
        ntk.marchenko_pastur_edges(10, 0)
    for bad in ("10", True, None):
        with pytest.raises(TypeError, match="N must be a positive integer"):
            ntk.marchenko_pastur_edges(10, bad)
