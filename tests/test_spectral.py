"""Zonal eigenvalues of dot-product kernels and the eigenlearning curve
(module spectral)."""
import jax
import numpy as np
import pytest

import ntk_companion as ntk
from ntk_companion import spectral

jax.config.update("jax_enable_x64", True)


def sphere(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)


def test_multiplicity_known_values():
    assert spectral.harmonic_multiplicity(2, np.arange(4)).tolist() == [1, 2, 2, 2]
    assert spectral.harmonic_multiplicity(3, np.arange(4)).tolist() == [1, 3, 5, 7]
    # S^3: (k + 1)^2
    assert spectral.harmonic_multiplicity(4, np.arange(5)).tolist() == [1, 4, 9, 16, 25]
    # dimension of the polynomials of degree <= k on S^{d-1}: binom(k+d-1, d-1) +
    # binom(k+d-2, d-1)
    assert spectral.harmonic_multiplicity(6, np.arange(6)).sum() == 252 + 126


def test_gegenbauer_orthogonality():
    """E_t[P_j P_k] = delta_jk / N(d, k) for t = x . x' / d, x, x' uniform on the
    sphere."""
    for d in (2, 3, 7):
        gram = np.stack([spectral.zonal_eigenvalues(
            d, 6, lambda t, j=j: spectral.gegenbauer(t, 6, d)[j]) for j in range(7)])
        expected = np.diag(1 / spectral.harmonic_multiplicity(d, np.arange(7)))
        np.testing.assert_allclose(gram, expected, atol=1e-13)


def test_polynomial_profile_exact():
    # t^2 on S^2: t^2 = (2 P_2 + P_0) / 3
    np.testing.assert_allclose(spectral.zonal_eigenvalues(3, 3, lambda t: t ** 2),
                               [1 / 3, 0, 2 / 15, 0], atol=1e-15)


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_mercer_trace(kernel):
    """kappa(1) = sum_k N(d, k) mu_k (the diagonal of the Mercer expansion)."""
    d, k_max = 3, 400
    mu = spectral.zonal_eigenvalues(d, k_max, depth=1, kernel=kernel)
    total = (spectral.harmonic_multiplicity(d, np.arange(k_max + 1)) * mu).sum()
    kappa1 = spectral.zonal_profile(np.array([1.0]), depth=1, kernel=kernel)[0]
    # the NTK's tail sum_{k > K} 2k c k^-3 ~ 1/K is what remains
    tol = 1e-3 if kernel == "ntk" else 1e-6
    assert abs(total - kappa1) < tol * kappa1


def test_circle_eigenvalues_are_fourier_coefficients():
    """On the circle the eigenvalues are the Fourier cosine coefficients of
    kappa(cos a)."""
    a = 2 * np.pi * np.arange(4096) / 4096
    kappa = spectral.zonal_profile(np.cos(a), depth=2, activation="erf", b_std=0.5)
    fft = np.fft.rfft(kappa).real / 4096
    mu = spectral.zonal_eigenvalues(2, 10, depth=2, activation="erf", b_std=0.5)
    # on the circle kappa(cos a) = mu_0 + sum_k 2 mu_k cos(k a) (multiplicity 2)
    np.testing.assert_allclose(mu, np.r_[fft[0], fft[1:11]], atol=1e-12)


@pytest.mark.parametrize("act,depth,b_std", [("relu", 1, 0.0), ("erf", 2, 0.3)])
def test_gram_spectrum_converges(act, depth, b_std):
    """Eigenvalues of K(X, X) / n approach mu_k, each N(d, k) times (the sampling error
    of a level's mean at n = 1200 is a few percent; a 10% error in mu_k would fail)."""
    d, n = 3, 1200
    X = sphere(np.random.default_rng(0), n, d)
    K = np.asarray(ntk.analytic_kernels(X, depth=depth, activation=act,
                                        b_std=b_std).ntk)
    ev = np.sort(np.linalg.eigvalsh(K / n))[::-1]
    mu = spectral.zonal_eigenvalues(d, 3, depth=depth, activation=act, b_std=b_std)
    start = 0
    for k in range(3):
        mult = 2 * k + 1
        got = ev[start:start + mult].mean()
        start += mult
        assert abs(got - mu[k]) < 0.08 * mu[k], (k, got, mu[k])


def test_eigenlearning_solves_its_equation():
    lam = 1.0 / np.arange(1, 3001) ** 1.5
    lc = spectral.eigenlearning(lam, lam, [5, 50, 500], ridge=1e-3, noise=0.1)
    lhs = (lam / (lam + lc.kappa[:, None])).sum(axis=1) + 1e-3 / lc.kappa
    np.testing.assert_allclose(lhs, [5, 50, 500], rtol=1e-10)
    assert np.all(np.diff(lc.kappa) < 0) and np.all(np.diff(lc.test_error) < 0)
    assert np.all(lc.overfitting > 1)


def test_eigenlearning_large_ridge_limit():
    """ridge >> n lambda: nothing is learned, the error is the target's power."""
    lam = 1.0 / np.arange(1, 101) ** 2
    p = np.ones(100) / 100
    lc = spectral.eigenlearning(lam, p, 10, ridge=1e8)
    assert abs(lc.test_error[0] - 1.0) < 1e-6


def _brute_force(rng, n, ridge, noise, trials, d, coef, m):
    def target(X):
        P = spectral.gegenbauer(np.clip(X[:, 0] / np.sqrt(d), -1, 1), max(coef), d)
        return sum(c * np.sqrt(m[k]) * P[k] for k, c in coef.items())
    errs = []
    for _ in range(trials):
        X, Xt = sphere(rng, n, d), sphere(rng, 400, d)
        y = target(X) + noise * rng.standard_normal(n)
        K = ntk.analytic_kernels(X, depth=1).ntk
        Ks = ntk.analytic_kernels(Xt, X, depth=1).ntk
        f = np.asarray(ntk.kernel_regression(K, y, Ks, ridge=ridge))
        errs.append(np.mean((f - target(Xt)) ** 2))
    return np.mean(errs), np.std(errs) / np.sqrt(trials)


@pytest.mark.parametrize("ridge,noise", [(0.0, 0.3), (0.1, 0.3)])
def test_eigenlearning_matches_kernel_regression(ridge, noise):
    """Average test error of ReLU-NTK regression on S^2 against the prediction."""
    d, k_max, n = 3, 400, 60
    mu = spectral.zonal_eigenvalues(d, k_max, depth=1)
    m = spectral.harmonic_multiplicity(d, np.arange(k_max + 1))
    keep = mu > 1e-14 * mu[0]
    coef = {1: 1.0, 2: 0.7, 4: 0.5}
    p = np.zeros(k_max + 1)
    for k, c in coef.items():
        p[k] = c ** 2
    pred = spectral.eigenlearning(mu[keep], p[keep], n, ridge=ridge, noise=noise,
                                  multiplicity=m[keep]).test_error[0]
    mean, sem = _brute_force(np.random.default_rng(3), n, ridge, noise, 40, d, coef, m)
    # the theory's own finite-n error is about 10% here; 3 standard errors of the
    # average
    assert abs(mean - pred) < 0.1 * pred + 3 * sem, (mean, sem, pred)


def test_bad_input():
    with pytest.raises(ValueError, match="d must be"):
        spectral.zonal_eigenvalues(1, 3, lambda t: t)
    with pytest.raises(TypeError, match="profile= or the network"):
        spectral.zonal_eigenvalues(3, 3)
    with pytest.raises(TypeError, match="not both"):
        spectral.zonal_eigenvalues(3, 3, lambda t: t, depth=1)
    with pytest.raises(ValueError, match="finite values of shape"):
        spectral.zonal_eigenvalues(3, 3, lambda t: t[:2])
    with pytest.raises(ValueError, match="kernel"):
        spectral.zonal_profile(np.zeros(3), depth=1, kernel="cntk")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        spectral.gegenbauer(np.array([1.5]), 2, 3)
    with pytest.raises(ValueError, match="k must hold integers"):
        spectral.harmonic_multiplicity(3, [1.5])
    lam = np.ones(10)
    with pytest.raises(ValueError, match="number of modes"):
        spectral.eigenlearning(lam, lam, 10)
    with pytest.raises(ValueError, match="eigenvalues must be positive"):
        spectral.eigenlearning(np.r_[1.0, 0.0], np.ones(2), 1, ridge=1.0)
    with pytest.raises(ValueError, match="target_power must have the shape"):
        spectral.eigenlearning(lam, np.ones(3), 2)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        spectral.eigenlearning(lam, lam, 2, ridge=-1.0)
    with pytest.raises(ValueError, match="n must be a positive"):
        spectral.eigenlearning(lam, lam, 0)
