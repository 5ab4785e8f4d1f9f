"""``MLP`` as a front end to the layer library: its forward pass, hidden features and
structured empirical NTK are those of ``model.network``, in every parameterization."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from ntk_companion import layers as nl

jax.config.update("jax_enable_x64", True)

PARS = ("ntk", "standard", "mup")
W_STD = 1.3


def _x(n=6, d=3, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, d))


def _by_hand(model, params, x):
    """The forward pass in numpy with the multipliers written out: ``W_std / sqrt(n)``
    (NTK, mup hidden), ``W_std / n`` (mup readout), ``1`` (standard)."""
    a = np.asarray(x)
    hidden = []
    for i, layer in enumerate(params):
        W = np.asarray(layer["W"])
        n = W.shape[0]
        readout = i == len(params) - 1
        if model.parameterization == "standard":
            c, beta = 1.0, 1.0
        elif model.parameterization == "mup" and readout:
            c, beta = W_STD / n, model.b_std
        else:
            c, beta = W_STD / math.sqrt(n), model.b_std
        z = c * (a @ W)
        if "b" in layer:
            z = z + beta * np.asarray(layer["b"])
        a = z if readout else np.tanh(z)
        if not readout:
            hidden.append(a)
    return (a[:, 0] if model.out_dim == 1 else a), hidden


def _serial(model):
    """The serial network written out, independently of ``MLP.network``."""
    par, b = model.parameterization, model.b_std
    parts = []
    for m in model.hidden:
        parts += [nl.Dense(m, W_STD, b, par), nl.Activation("tanh")]
    readout = nl.Dense(model.out_dim, W_STD, b, par, readout=par == "mup")
    return nl.serial(*parts, readout)


CASES = [(par, b, k) for par in PARS for b in (0.0, 0.2) for k in (1, 3)]


@pytest.fixture(params=CASES, ids=lambda c: "-".join(map(str, c)))
def mlp(request):
    """``(model, params)`` for every parameterization, with and without biases, one
    and three outputs."""
    parameterization, b_std, out_dim = request.param
    model = ntk.MLP((7, 5), "tanh", W_STD, b_std, parameterization, out_dim)
    return model, model.init(jax.random.key(0), 3)


def test_apply_is_the_serial_network(mlp):
    model, p = mlp
    out_dim = model.out_dim
    x = _x()
    f = model.apply(p, x)
    g = _serial(model).apply(model.network_params(p), x)
    g = g[:, 0] if out_dim == 1 else g
    assert float(jnp.max(jnp.abs(f - g))) <= 1e-15 * float(jnp.max(jnp.abs(g)))
    ref, hidden = _by_hand(model, p, x)
    np.testing.assert_allclose(f, ref, rtol=1e-12, atol=1e-14)   # (float64 rounding)
    for a, b in zip(ntk.hidden_features(model, p, x), hidden):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert model.network == _serial(model)


def test_structured_equals_jacobian(mlp):
    model, p = mlp
    out_dim = model.out_dim
    x, x2 = _x(), _x(4, seed=2)
    for args in ((x,), (x, x2)):
        K = ntk.empirical_ntk(model.apply, p, *args, method="structured", block_size=4)
        J = ntk.empirical_ntk(model.apply, p, *args, method="jacobian")
        outputs = (3, 3) if out_dim == 3 else ()
        assert K.shape == J.shape == (6, len(args[-1]), *outputs)
        assert float(jnp.max(jnp.abs(K - J))) < 1e-10 * float(jnp.max(jnp.abs(J)))


def test_mup_readout_multiplier_in_the_kernel():
    """mup differs from NTK in the readout multiplier only (``W_std / n_L`` instead of
    ``W_std / sqrt(n_L)``), and every share of the kernel carries its square (the
    readout share through ``c^2``, the others through ``delta``), except the readout
    bias's ``b_std^2``: ``K_mup = (K_ntk - b_std^2) / n_L + b_std^2``."""
    kw = dict(hidden=(6,), activation="tanh", W_std=W_STD, b_std=0.2)
    mup, ntk_model = ntk.MLP(parameterization="mup", **kw), ntk.MLP(**kw)
    p = ntk_model.init(jax.random.key(3), 3)
    x = _x()
    K_ntk = ntk.empirical_ntk(ntk_model.apply, p, x, method="structured")
    K_mup = ntk.empirical_ntk(mup.apply, p, x, method="structured")
    np.testing.assert_allclose(K_mup, (K_ntk - 0.04) / 6 + 0.04, rtol=1e-12)


def test_dense_mup_and_readout_errors():
    assert nl.Dense(4, parameterization="mup", readout=True).coefficients((8,)) == (
        1 / 8 ** 2, 0.0)
    with pytest.raises(ValueError, match="readout=True .* parameterization='mup'"):
        nl.Dense(4, readout=True)
    with pytest.raises(TypeError, match="readout must be True or False"):
        nl.Dense(4, parameterization="mup", readout=1)
    with pytest.raises(ValueError, match="parameterization"):
        nl.Conv(4, (3,), parameterization="mup")
    x = _x()
    for net in (nl.Dense(1, parameterization="mup", readout=True),
                ntk.MLP((4,), parameterization="mup").network):
        with pytest.raises(ValueError,
                           match=r"'mup'\) has no infinite-width kernel limit"):
            net.kernels(x)
