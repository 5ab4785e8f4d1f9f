"""The layer library: finite networks, kernel maps, structured empirical NTK
(float64)."""
import functools
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk
from ntk_companion import layers as nl


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _images(n=4, shape=(6, 6, 2), seed=0):
    return jax.random.normal(jax.random.key(seed), (n, *shape))


def _every_layer_net(b_std, par, out):
    """A 2-D network with every layer type."""
    kw = dict(b_std=b_std, parameterization=par)
    return nl.serial(
        nl.Conv(4, (3, 3), padding="SAME", **kw), nl.Activation("relu"),
        nl.Conv(3, (2, 2), strides=(2, 2), padding="VALID", **kw), nl.Activation("erf"),
        nl.parallel_sum(nl.Identity(), nl.serial(nl.Activation("tanh"),
                                                 nl.Conv(3, (3, 3), padding="CIRCULAR",
                                                         **kw))),
        nl.Dense(5, **kw), nl.LayerNorm(), nl.AvgPool((1, 2)), nl.Flatten(),
        nl.Dense(out, **kw))


# ------------------------------------------------------------- structured == jacobian
@pytest.mark.parametrize("b_std, par, out", [(0.0, "ntk", 1), (0.3, "ntk", 2),
                                             (0.0, "standard", 2),
                                             (0.3, "standard", 1)])
def test_structured_equals_jacobian_every_layer(b_std, par, out):
    net = _every_layer_net(b_std, par, out)
    x = _images(5)
    p = net.init(jax.random.key(1), x.shape[1:])
    Kj = ntk.empirical_ntk(net.apply, p, x, method="jacobian")
    Ks = ntk.empirical_ntk(net.apply, p, x, method="structured")
    want = (5, 5) if out == 1 else (5, 5, out, out)
    assert Ks.shape == Kj.shape == want
    assert _rel(Ks, Kj) < 1e-10
    if out > 1:
        Kt = ntk.empirical_ntk(net.apply, p, x, x[:3], method="structured", trace=True,
                               block_size=2)
        assert _rel(Kt, jnp.trace(Kj, axis1=2, axis2=3)[:, :3]) < 1e-10
    if par == "ntk":
        Kn = ntk.empirical_ntk(net.apply, p, x, method="ntvp", block_size=2)
        assert _rel(Kn, Kj) < 1e-10
        Kn = ntk.empirical_ntk(net.apply, p, x, method="ntvp", trace=out > 1)
        want = jnp.trace(Kj, axis1=2, axis2=3) if out > 1 else Kj
        assert _rel(Kn, want) < 1e-10


def test_structured_1d_and_auto():
    net = nl.serial(nl.Conv(6, (3,), strides=(2,), b_std=0.2), nl.Activation("gelu"),
                    nl.Conv(5, (2,), padding="CIRCULAR"), nl.Activation("relu"),
                    nl.AvgPool((2,), padding="SAME"), nl.GlobalAvgPool(), nl.Dense(3))
    x = _images(4, (9, 2))
    p = net.init(jax.random.key(2), x.shape[1:])
    Kj = ntk.empirical_ntk(net.apply, p, x, method="jacobian")
    Ka = ntk.empirical_ntk(net.apply, p, x)                    # auto: structured
    assert Ka.shape == (4, 4, 3, 3)
    assert _rel(Ka, Kj) < 1e-10
    # the full kernel of k outputs is symmetric: K[i, j, a, b] = K[j, i, b, a]
    assert float(jnp.max(jnp.abs(Ka - jnp.transpose(Ka, (1, 0, 3, 2))))) == 0.0


def test_mlp_vector_outputs_every_method():
    model = ntk.MLP(hidden=(7, 5), b_std=0.1, out_dim=3)
    x = jax.random.normal(jax.random.key(3), (6, 4))
    p = model.init(jax.random.key(4), 4)
    Ks = {m: ntk.empirical_ntk(model.apply, p, x, method=m) for m in
          ("jacobian", "ntvp", "structured", "auto")}
    for m, K in Ks.items():
        assert K.shape == (6, 6, 3, 3), m
        assert _rel(K, Ks["jacobian"]) < 1e-10, m
    Kt = ntk.empirical_ntk(model.apply, p, x, method="structured", trace=True)
    assert _rel(Kt, jnp.trace(Ks["jacobian"], axis1=2, axis2=3)) < 1e-10
    # output a alone, by the scalar path
    K1 = ntk.empirical_ntk(lambda q, z: model.apply(q, z)[:, 1], p, x,
                           method="jacobian")
    assert _rel(Ks["structured"][:, :, 1, 1], K1) < 1e-10


# ------------------------------------------------------------------ MLP == serial form
@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_serial_form_of_mlp(activation):
    model = ntk.MLP(hidden=(9, 8), activation=activation, W_std=1.4, b_std=0.2)
    net = model.network
    x = jax.random.normal(jax.random.key(5), (6, 3))
    x2 = x[:4] + 0.5
    if activation != "tanh":   # (quadrature is not symmetric in its arguments: the
        # symmetric kernels average the two orders on the diagonal tiles, to 1e-7)
        ka = ntk.analytic_kernels(x, depth=2, activation=activation, W_std=1.4,
                                  b_std=0.2)
        kl = net.kernels(x)
        assert _rel(kl.nngp, ka.nngp) < 1e-12 and _rel(kl.ntk, ka.ntk) < 1e-12
    ka = ntk.analytic_kernels(x, x2, depth=2, activation=activation, W_std=1.4,
                              b_std=0.2)
    kx = net.kernels(x, x2)
    assert _rel(kx.nngp, ka.nngp) < 1e-12 and _rel(kx.ntk, ka.ntk) < 1e-12
    p = model.init(jax.random.key(6), 3)
    q = model.network_params(p)
    assert _rel(net.apply(q, x)[:, 0], model.apply(p, x)) < 1e-14
    K_mlp = ntk.empirical_ntk(model.apply, p, x, method="structured")
    K_net = ntk.empirical_ntk(net.apply, q, x, method="structured")
    assert _rel(K_net, K_mlp) < 1e-12


def test_quadrature_equals_closed_forms_in_conv_net():
    x = _images(3, (5, 5, 2))

    def net(act):
        return nl.serial(nl.Conv(4, (3, 3), b_std=0.1), act, nl.Conv(4, (3, 3)), act,
                         nl.GlobalAvgPool(), nl.Dense(1))

    closed = net(nl.Activation("relu")).kernels(x)
    quad = net(nl.Activation(lambda z: jnp.maximum(z, 0), order=16,
                             quadrature="polar")).kernels(x)
    assert _rel(quad.nngp, closed.nngp) < 1e-10 and _rel(quad.ntk, closed.ntk) < 1e-10


def test_tiled_kernels_equal_untiled():
    net = nl.serial(nl.Conv(4, (3,)), nl.Activation("relu"), nl.GlobalAvgPool(),
                    nl.Dense(1, b_std=0.1))
    x = _images(7, (6, 1))
    a, b = net.kernels(x), net.kernels(x, block_size=3)
    assert _rel(b.ntk, a.ntk) < 1e-13 and _rel(b.nngp, a.nngp) < 1e-13
    assert bool(jnp.all(b.ntk == b.ntk.T))


@functools.partial(jax.jit, static_argnums=0)
def _full_path(net, x1, x2):
    """The kernel map of every position pair, layer by layer (no diagonal path)."""
    state = nl._input_state(x1, x2)
    for layer in net.layers:
        state = layer.kernel_map(state)
    return state


@pytest.mark.parametrize("pooled", [False, True])
def test_diagonal_path_equals_full_path(pooled):
    """Before a Flatten readout only K(s, s) is needed: Conv (strided, circular,
    VALID), Dense per position, Activation, LayerNorm and residual sums map diagonals to
    diagonals. ``pooled``: an AvgPool first (full path), then the diagonal path."""
    kw = dict(W_std=1.5, b_std=0.05)
    head = (nl.Conv(4, (3, 3), **kw), nl.Activation("relu"),
            nl.AvgPool((2, 2), strides=(1, 1))) if pooled else ()
    net = nl.serial(*head, nl.Conv(4, (3, 3), strides=(2, 1), **kw),
                    nl.Activation("relu"),
                    nl.Conv(4, (2, 3), padding="CIRCULAR"), nl.Activation("erf"),
                    nl.Dense(3), nl.LayerNorm(),
                    nl.parallel_sum(nl.Identity(), nl.serial(
                        nl.Activation("tanh"), nl.Conv(3, (3, 2), padding="SAME"))),
                    nl.Conv(3, (2, 2), padding="VALID"), nl.Flatten(),
                    nl.Dense(2, **kw), nl.Activation("relu"), nl.Dense(1))
    assert nl._starts_diagonal(net) is not pooled
    # one full path (one compilation) of K(x, [x, x2]): its blocks K(x, x) and K(x, x2)
    x, x2 = _images(5), _images(3, seed=1)
    state = _full_path(net, x, jnp.concatenate([x, x2]))
    for args, block, cols in [((x, x2), None, slice(5, None)), ((x,), 2, slice(5))]:
        want = (state.nngp[:, cols], state.ntk[:, cols])
        got = net.kernels(*args, block_size=block)
        assert got.nngp.shape == want[0].shape
        assert _rel(got.nngp, want[0]) < 1e-12 and _rel(got.ntk, want[1]) < 1e-12
    # the control: GlobalAvgPool needs every pair (no diagonal path)
    assert not nl._starts_diagonal(nl.serial(nl.Conv(4, (3, 3)), nl.GlobalAvgPool(),
                                             nl.Dense(1)))


def test_relu_map_gradient_finite_on_the_diagonal():
    """The arc-cosine map at x = x' (angle 0), chunked by rows: finite gradients."""
    net = nl.serial(nl.Conv(4, (3, 3), b_std=0.05), nl.Activation("relu"),
                    nl.Conv(4, (3, 3)), nl.Activation("relu"), nl.GlobalAvgPool(),
                    nl.Dense(1))
    x = _images(5)
    g = jax.grad(lambda z: net.kernels(z).ntk[0, 0] + net.kernels(z).nngp[1, 1])(x)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


# ------------------------------------------------------------------ exact special cases
def test_1x1_conv_is_dense_per_position():
    x = _images(3, (4, 5, 3))
    conv = nl.Conv(6, (1, 1), W_std=1.3, b_std=0.4)
    dense = nl.Dense(6, W_std=1.3, b_std=0.4)
    p = conv.init(jax.random.key(7), x.shape[1:])
    q = {"W": p["W"][0, 0], "b": p["b"]}
    assert _rel(conv.apply(p, x), dense.apply(q, x)) < 1e-14
    tail = (nl.Activation("relu"), nl.Flatten(), nl.Dense(1))
    kc = nl.serial(conv, *tail).kernels(x)
    kd = nl.serial(dense, *tail).kernels(x)
    assert _rel(kc.ntk, kd.ntk) < 1e-14 and _rel(kc.nngp, kd.nngp) < 1e-14


def test_circular_padding_and_gap_translation_invariant():
    x = _images(3, (6, 5, 2))
    xs = jnp.roll(x, (2, -1), axis=(1, 2))
    net = nl.serial(nl.Conv(5, (3, 3), padding="CIRCULAR", b_std=0.1),
                    nl.Activation("relu"),
                    nl.Conv(5, (3, 2), padding="CIRCULAR"), nl.Activation("erf"),
                    nl.GlobalAvgPool(), nl.Dense(2))
    p = net.init(jax.random.key(8), x.shape[1:])
    assert _rel(net.apply(p, xs), net.apply(p, x)) < 1e-13
    # one kernel of the 6 inputs (one compilation): K(xs, x) and K(x, x) are its blocks
    k = net.kernels(jnp.concatenate([xs, x]))
    for a in k:
        assert _rel(a[:3, 3:], a[3:, 3:]) < 1e-13
    # zero padding is not invariant: the test can fail
    zero = nl.serial(nl.Conv(5, (3, 3)), nl.Activation("relu"), nl.GlobalAvgPool(),
                     nl.Dense(1))
    kz = zero.kernels(jnp.concatenate([xs, x])).ntk
    assert _rel(kz[:3, 3:], kz[3:, 3:]) > 1e-3


# -------------------------------------------------------------- limits of finite nets
def _mc_nngp(body, readout_w2, readout_b2, x, width, draws, seed):
    """Monte Carlo over initializations of E[f(x) f(x')], the readout integrated out:
    E over W of f f' = (W_std^2 / C) phi . phi' + b_std^2 given the body features
    phi."""
    def one(key):
        p = body.init(key, x.shape[1:])
        phi = body.apply(p, x)
        return readout_w2 * phi @ phi.T / width + readout_b2
    keys = jax.random.split(jax.random.key(seed), draws)
    samples = jax.lax.map(one, keys, batch_size=50)
    return jnp.mean(samples, 0), jnp.std(samples, 0) / math.sqrt(draws)


@pytest.mark.parametrize("kind", ["gap", "flatten", "residual"])
def test_nngp_is_mc_covariance_of_outputs(kind):
    """One nonlinearity: the first layer's pre-activations are exactly Gaussian at any
    width, so the mean over draws is unbiased and only the CLT error remains."""
    C = 32
    x = _images(4, (5, 5, 1), seed=9)
    conv1 = nl.Conv(C, (3, 3), W_std=1.5, b_std=0.05)
    if kind == "gap":
        body = nl.serial(conv1, nl.Activation("relu"), nl.GlobalAvgPool())
    elif kind == "flatten":
        body = nl.serial(conv1, nl.Activation("relu"), nl.Flatten())
    else:
        body = nl.serial(conv1, nl.parallel_sum(
            nl.Identity(), nl.serial(nl.Activation("relu"),
                                     nl.Conv(C, (3, 3), W_std=1.5, b_std=0.05))),
            nl.GlobalAvgPool())
    width = body.out_shape(x.shape[1:])[0]
    net = nl.serial(body, nl.Dense(1, W_std=1.5, b_std=0.05))
    K = net.kernels(x).nngp
    mean, se = _mc_nngp(body, 1.5 ** 2, 0.05 ** 2, x, width, 400, seed=10)
    z = float(jnp.max(jnp.abs(mean - K) / se))
    print(f"{kind}: max |MC - NNGP| / SE = {z:.2f}, max SE/K = "
          f"{float(jnp.max(se / K)):.1e}")
    assert z < 4.5
    # the test resolves the kernel: an error of 7 % would be more than 4.5 SE
    assert float(jnp.max(se / jnp.abs(K))) < 0.016


SEEDS = 10


def _ntk_errors(net_fn, x, widths, seeds):
    analytic = net_fn(1).kernels(x).ntk
    errs = []
    for C in widths:
        net = net_fn(C)
        e = []
        for s in range(seeds):
            p = net.init(jax.random.key(100 + s), x.shape[1:])
            K = ntk.empirical_ntk(net.apply, p, x, method="structured")
            e.append(float(jnp.linalg.norm(K - analytic) / jnp.linalg.norm(analytic)))
        errs.append(math.sqrt(np.mean(np.square(e))))
    return np.array(errs)


@pytest.mark.parametrize("kind", ["gap", "flatten", "residual"])
def test_empirical_ntk_converges_at_rate_half(kind):
    x = _images(4, (5, 5, 1), seed=11)

    def net_fn(C):
        kw = dict(W_std=1.5, b_std=0.05)
        if kind == "residual":
            mid = nl.parallel_sum(nl.Identity(), nl.serial(nl.Activation("relu"),
                                                           nl.Conv(C, (3, 3), **kw)))
        else:
            mid = nl.serial(nl.Activation("relu"), nl.Conv(C, (3, 3), **kw))
        pool = nl.Flatten() if kind == "flatten" else nl.GlobalAvgPool()
        return nl.serial(nl.Conv(C, (3, 3), **kw), mid, nl.Activation("relu"), pool,
                         nl.Dense(1, **kw))

    widths = [16, 64, 256]
    errs = _ntk_errors(net_fn, x, widths, seeds=SEEDS)
    slope = float(np.polyfit(np.log(widths), np.log(errs), 1)[0])
    print(f"{kind}: errors {errs}, slope {slope:.2f}")
    # no bias in the limit: slope well below 0 (a wrong kernel map plateaus, slope -> 0)
    assert -0.75 < slope < -0.3, (errs, slope)


# ------------------------------------------------------------------ errors
def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="filter_shape"):
        nl.Conv(4, (3, 3, 3))
    with pytest.raises(ValueError, match="strides"):
        nl.Conv(4, (3, 3), strides=(1,))
    with pytest.raises(ValueError, match="padding"):
        nl.Conv(4, (3,), padding="REFLECT")
    with pytest.raises(ValueError, match="out_channels"):
        nl.Dense(0)
    with pytest.raises(ValueError, match="W_std"):
        nl.Dense(3, W_std=0.0)
    with pytest.raises(TypeError, match="serial"):
        nl.serial(nl.Dense(3), "relu")
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x: Conv"):       # wrong rank
        nl.Conv(4, (3, 3)).init(key, (5, 2))
    with pytest.raises(ValueError, match="strides"):   # strides larger than the input
        nl.Conv(4, (2,), strides=(7,)).init(key, (5, 2))
    with pytest.raises(ValueError, match="filter_shape"):   # impossible VALID padding
        nl.Conv(4, (6,), padding="VALID").init(key, (5, 2))
    with pytest.raises(ValueError, match="circular"):
        nl.Conv(4, (13,), padding="CIRCULAR").init(key, (5, 2))
    conv = nl.Conv(4, (3,))
    p = conv.init(key, (5, 2))
    with pytest.raises(ValueError, match="channels"):       # channel mismatch
        conv.apply(p, jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="x1 and x2"):
        conv.kernels(jnp.ones((2, 5, 2)), jnp.ones((2, 6, 2)))
    with pytest.raises(ValueError, match="Flatten"):
        conv.kernels(jnp.ones((2, 5, 2)))
    with pytest.raises(ValueError, match="LayerNorm"):
        nl.serial(nl.LayerNorm(), nl.Dense(1)).kernels(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="parallel_sum"):
        nl.serial(nl.parallel_sum(nl.Identity(), nl.Activation("relu")),
                  nl.Dense(1)).kernels(jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="trace"):
        ntk.empirical_ntk(conv.apply, p, jnp.ones((2, 5, 2)), trace="yes")
    with pytest.raises(ValueError, match="structured"):
        ntk.empirical_ntk(lambda q, z: conv.apply(q, z).reshape(2, -1), p,
                          jnp.ones((2, 5, 2)), method="structured")


# ------------------------------------------------------------------ several devices
SHARDED_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from ntk_companion import layers as nl, sharding
assert jax.device_count() == 2, jax.devices()
x1 = jax.random.normal(jax.random.key(0), (5, 6, 5, 2))
x2 = jax.random.normal(jax.random.key(1), (3, 6, 5, 2))
net = nl.serial(nl.Conv(4, (3, 3), b_std=0.1), nl.Activation("relu"),
                nl.parallel_sum(nl.Identity(), nl.serial(nl.Activation("erf"),
                                                         nl.Conv(4, (3, 2)))),
                nl.AvgPool((2, 2)), nl.Flatten(), nl.Dense(1))
one = sharding.use_devices(jax.devices()[:1])
# (symmetric untiled is the symmetric mirror of the first case on the untiled bands of
# the second: covered by the two)
for args, block in [((x1,), 2), ((x1, x2), None), ((x2, x1), 2)]:
    sharded = net.kernels(*args, block_size=block)
    with one:
        single = net.kernels(*args, block_size=block)
    for a, b in zip(sharded, single):
        a, b = np.asarray(a), np.asarray(b)
        tol = 1e-14 * np.abs(b).max()
        assert np.allclose(a, b, rtol=1e-12, atol=tol), (args, block)
        if len(args) == 1:
            assert np.array_equal(a, a.T)
print("sharded ok")
"""


def test_layer_kernels_sharded_over_two_devices_equal_one_device():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout
