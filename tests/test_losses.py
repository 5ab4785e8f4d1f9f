"""Tests of ntk_companion.losses."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from helpers import normal_params



MODEL = ntk.MLP((6,), activation="tanh", b_std=0.3)
PARAMS = normal_params(MODEL, 2, 0)
X = jnp.asarray(np.random.default_rng(1).standard_normal((5, 2)))
Y = jnp.asarray(np.linspace(-1.0, 1.0, 5))


def test_residual_and_square_loss_values():
    r = ntk.residual(MODEL.apply, PARAMS, X, Y)
    np.testing.assert_allclose(r, MODEL.apply(PARAMS, X) - Y, rtol=1e-14)
    loss = ntk.square_loss(MODEL.apply, PARAMS, X, Y)
    assert loss.shape == ()
    np.testing.assert_allclose(loss, 0.5 * np.sum(np.asarray(r) ** 2), rtol=1e-14)


def test_gradient_of_sum_loss_is_G_transpose_r():
    """grad l = G^T r for the sum loss (no 1/n)."""
    g = ntk.flatten(jax.grad(lambda p: ntk.square_loss(MODEL.apply, p, X, Y))(PARAMS))
    G = ntk.jacobian(MODEL.apply, PARAMS, X)
    r = ntk.residual(MODEL.apply, PARAMS, X, Y)
    np.testing.assert_allclose(g, G.T @ r, rtol=1e-12, atol=1e-14)


def test_vector_targets():
    m = ntk.MLP((4,), out_dim=2)
    p = m.init(jax.random.key(2), 2)
    y = jnp.ones((5, 2))
    np.testing.assert_allclose(ntk.square_loss(m.apply, p, X, y),
                               0.5 * jnp.sum((m.apply(p, X) - y) ** 2), rtol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match=r"y must have the shape of the model outputs "
                                         r"\(5,\)"):
        ntk.square_loss(MODEL.apply, PARAMS, X, Y[:4])
    with pytest.raises(ValueError, match="y must have the shape"):
        ntk.residual(MODEL.apply, PARAMS, X, Y[:, None])
    with pytest.raises(ValueError, match="y contains NaN"):
        ntk.square_loss(MODEL.apply, PARAMS, X, Y.at[0].set(jnp.nan))
    with pytest.raises(TypeError, match="y must be an array"):
        ntk.residual(MODEL.apply, PARAMS, X, "y")
    with pytest.raises(TypeError, match="apply_fn must be callable"):
        ntk.square_loss(None, PARAMS, X, Y)
    with pytest.raises(ValueError, match="x has 3 features"):
        ntk.residual(MODEL.apply, PARAMS, jnp.ones((5, 3)), Y)
    with pytest.raises(ValueError, match="x contains NaN"):
        ntk.residual(MODEL.apply, PARAMS, X.at[1, 1].set(jnp.inf), Y)
