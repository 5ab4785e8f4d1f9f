"""predict_ensemble: the Gaussian over initializations of infinitely wide trained
networks.

Exact identities (t = 0 is the prior; t = inf with get="nngp" is the GP posterior; the
mean is predict's test output), and a Monte Carlo ensemble of wide networks trained by
gradient descent."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from ntk_companion.models import _forward

RNG = np.random.default_rng(0)
D, N_TRAIN, M = 3, 4, 3
X = RNG.normal(size=(N_TRAIN, D))
XS = RNG.normal(size=(M, D))
Y = RNG.normal(size=N_TRAIN)
KW = dict(depth=1, activation="erf", W_std=1.5, b_std=0.3)


def _kernels():
    return (ntk.analytic_kernels(X, **KW), ntk.analytic_kernels(XS, X, **KW),
            ntk.analytic_kernels(XS, **KW))


def _predict(t, **kw):
    k, ks, kss = _kernels()
    return ntk.predict_ensemble(k, Y, t, k_test_train=ks, k_test=kss, **kw)


def test_time_zero_is_the_prior():
    out = _predict(0.0)
    np.testing.assert_allclose(out.mean, 0.0, atol=1e-14)
    np.testing.assert_allclose(out.cov, _kernels()[2].nngp, rtol=1e-12)


@pytest.mark.parametrize("relative", [False, True])
def test_nngp_at_infinity_is_the_gp_posterior(relative):
    k, ks, kss = _kernels()
    reg = 0.1
    s = reg * float(np.trace(k.nngp)) / N_TRAIN if relative else reg
    out = _predict(jnp.inf, get="nngp", diag_reg=reg, diag_reg_relative=relative)
    mean = ntk.kernel_regression(k.nngp, Y, ks.nngp, ridge=s)
    cov = kss.nngp - ks.nngp @ np.linalg.solve(k.nngp + s * np.eye(N_TRAIN), ks.nngp.T)
    np.testing.assert_allclose(out.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(out.cov, cov, rtol=1e-10, atol=1e-13)


def test_mean_is_predict_and_times_stack():
    k, ks, _ = _kernels()
    ts = jnp.array([0.5, 2.0, jnp.inf])
    out = _predict(ts)
    ref = ntk.predict(k.ntk, Y, ts, K_test_train=ks.ntk).test
    np.testing.assert_allclose(out.mean, ref, rtol=1e-12)
    assert out.cov.shape == (3, M, M)
    for i, t in enumerate(ts):
        np.testing.assert_allclose(out.cov[i], _predict(t).cov, rtol=1e-12)
        assert np.min(np.linalg.eigvalsh(np.asarray(out.cov[i]))) > -1e-12
    vec = _predict(1.0, diag_reg=0.0)
    two = ntk.predict_ensemble(k, np.stack([Y, 2 * Y], 1), 1.0, k_test_train=ks,
                               k_test=_kernels()[2])
    np.testing.assert_allclose(two.mean[:, 1], 2 * vec.mean, rtol=1e-12)


def test_bad_arguments():
    k, ks, kss = _kernels()
    with pytest.raises(TypeError, match="k_train must be ntk_companion.Kernels"):
        ntk.predict_ensemble(k.ntk, Y, 1.0, k_test_train=ks, k_test=kss)
    with pytest.raises(ValueError, match="k_test must be"):
        ntk.predict_ensemble(k, Y, 1.0, k_test_train=ks, k_test=k)
    with pytest.raises(ValueError, match="unknown get"):
        ntk.predict_ensemble(k, Y, 1.0, k_test_train=ks, k_test=kss, get="gp")
    with pytest.raises(ValueError, match="diag_reg must be >= 0"):
        ntk.predict_ensemble(k, Y, 1.0, k_test_train=ks, k_test=kss, diag_reg=-1.0)


def test_monte_carlo_ensemble_of_trained_wide_networks():
    """300 networks of width 512 trained by gradient descent (lr 0.02, time 1): the
    sample mean and covariance of the test outputs match within 4 standard errors; the
    prior (t = 0) and the NNGP-only prediction are rejected by the same test."""
    width, count, t, lr = 512, 300, 1.0, 0.02
    model = ntk.MLP(hidden=(width,), activation="erf", W_std=1.5, b_std=0.3)
    keys = jax.random.split(jax.random.PRNGKey(1), count)
    params = jax.vmap(lambda key: model.init(key, D))(keys)
    x, xs, y = jnp.asarray(X), jnp.asarray(XS), jnp.asarray(Y)

    def train(p):
        grad = jax.grad(lambda p: 0.5 * jnp.sum((_forward(model, p, x) - y) ** 2))

        def step(p, _):
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, grad(p)), None

        p, _ = jax.lax.scan(step, p, None, length=round(t / lr))
        return _forward(model, p, xs)

    out = np.asarray(jax.jit(jax.vmap(train))(params))
    mean, cov = out.mean(0), np.cov(out.T)

    def max_z(pred):
        C = np.asarray(pred.cov)
        z_mean = (mean - np.asarray(pred.mean)) / np.sqrt(np.diag(C) / count)
        se_cov = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C ** 2) / count)
        return max(np.max(np.abs(z_mean)), np.max(np.abs((cov - C) / se_cov)))

    assert max_z(_predict(t)) < 4
    assert max_z(_predict(0.0)) > 4
    assert max_z(_predict(t, get="nngp")) > 4


def test_monte_carlo_kernels_tend_to_the_analytic_ones():
    """64 initializations of width 256: within 5 standard errors (estimated from the
    samples) plus the O(1/width) finite-width bias, and tiles give the same estimate."""
    model = ntk.MLP(hidden=(256,), activation="erf", W_std=1.5, b_std=0.3)
    key = jax.random.PRNGKey(2)
    init = lambda k: model.init(k, D)  # noqa: E731
    mc = ntk.monte_carlo_kernels(init, model.apply, key, X, XS, n_samples=64)
    exact = ntk.analytic_kernels(X, XS, **KW)
    few = ntk.monte_carlo_kernels(init, model.apply, key, X, XS, n_samples=4)
    tiled = ntk.monte_carlo_kernels(init, model.apply, key, X, XS, n_samples=4,
                                    block_size=2)
    np.testing.assert_allclose(tiled.ntk, few.ntk, rtol=1e-10)
    scale = float(np.max(np.abs(exact.nngp)))
    # NNGP: products of Gaussians, standard error ~ sqrt(2/64) of the scale
    assert float(np.max(np.abs(mc.nngp - exact.nngp))) < 5 * np.sqrt(2 / 64) * scale
    # NTK: the empirical NTK fluctuates by O(1/sqrt(width)) around its mean
    rel = float(np.max(np.abs(mc.ntk - exact.ntk)) / np.max(np.abs(exact.ntk)))
    assert rel < 5 / np.sqrt(256 * 64) + 4 / 256
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        ntk.monte_carlo_kernels(init, model.apply, key, X, n_samples=0)


def test_max_learning_rate_is_the_stability_limit():
    H = np.asarray(_kernels()[0].ntk)
    lr = ntk.max_learning_rate(H)
    np.testing.assert_allclose(lr, 2 / np.max(np.linalg.eigvalsh(H)), rtol=1e-12)
    assert ntk.max_learning_rate(H, n_entries=6) == pytest.approx(6 * lr)
    loss = lambda w: 0.5 * jnp.sum((phi @ w - Y) ** 2)  # noqa: E731
    phi = np.linalg.cholesky(H + 1e-12 * np.eye(N_TRAIN))            # phi phi^T = H
    below, _, _ = ntk.gradient_descent(loss, jnp.zeros(N_TRAIN), lr=0.98 * lr,
                                       steps=3000)
    assert float(loss(below)) < 1e-3 * float(loss(jnp.zeros(N_TRAIN)))
    above, _, obs = ntk.gradient_descent(loss, jnp.zeros(N_TRAIN), lr=1.02 * lr,
                                         steps=300)
    assert float(obs[-1]) > 10 * float(obs[0])
    with pytest.raises(ValueError, match="positive eigenvalue"):
        ntk.max_learning_rate(np.zeros((2, 2)))
