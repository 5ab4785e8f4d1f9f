r"""Infinite-width NNGP kernel and NTK of a fully connected network, by the layer
recursion.

Take ``MLP(hidden=(m,) * depth, activation=sigma, W_std=sigma_w, b_std=sigma_b)`` in the
NTK parameterization with a scalar readout. As every width ``m -> infinity`` (Neal 1996,
Lee et al. 2018, Jacot et al. 2018, Arora et al. 2019), at initialization

* the output ``f(x; theta_0)`` is a centred Gaussian process with covariance ``Sigma(x,
  x')``, the **NNGP kernel**, and
* the empirical NTK ``<grad_theta f(x), grad_theta f(x')>`` converges (in probability)
  to a deterministic kernel ``Theta(x, x')``, the **NTK**, the same for every random
  draw.

Both follow from one recursion over the layers. With ``d = d_in``:

.. code-block:: text

    input:            K = x . x' / d,                    Theta = 0
    each dense layer: K <- sigma_w^2 K + sigma_b^2,      Theta <- K + sigma_w^2 Theta
    each activation:  (u, v) ~ N(0, [[K(x,x), K(x,x')], [K(x,x'), K(x',x')]])
                      K <- E[sigma(u) sigma(v)],  Kdot = E[sigma'(u) sigma'(v)],
                      Theta <- Theta * Kdot
    (``depth`` times dense + activation, then the linear readout dense layer)
    NNGP = final K,   NTK = final Theta.

(After the first dense layer ``Theta = K``, the NTK of a linear model.) The diagonal
``K(x, x)`` follows the same recursion and feeds the 2x2 covariance of the next layer.

Expectations
------------
* ``relu`` (arc-cosine kernels, Cho & Saul 2009): with the angle
  ``theta = atan2(sqrt(K11 K22 - K12^2), K12)`` (never ``arccos`` of the correlation
  ``K12 / sqrt(K11 K22)``, whose rounding near ``+-1`` costs half the digits of the
  angle, can leave ``[-1, 1]`` and divides by zero for a zero input),

      E[relu(u) relu(v)] = (sqrt(K11 K22 - K12^2) + (pi - theta) K12) / (2 pi)
                         = sqrt(K11 K22) (sin theta + (pi - theta) cos theta) / (2 pi),
      E[step(u) step(v)] = (pi - theta) / (2 pi).

  The determinant ``K11 K22 - K12^2`` is computed with an absolute rounding error of
  about ``eps K11 K22``, so the angle is accurate to about ``eps / theta`` (1e-10 at
  ``theta = 1e-6``). A determinant below ``16 eps K11 K22`` (angles below
  ``4 sqrt(eps) ~ 6e-8``, indistinguishable from 0 in the rounded kernel) is set to
  zero, so that identical inputs give exactly ``theta = 0``.
* ``erf`` (Williams 1997): with ``D = (1 + 2 K11)(1 + 2 K22) - 4 K12^2
  = 1 + 2 (K11 + K22) + 4 (K11 K22 - K12^2) >= 1``,

      E[erf(u) erf(v)] = (2/pi) arcsin(2 K12 / sqrt((1 + 2 K11)(1 + 2 K22)))
                       = (2/pi) atan2(2 K12, sqrt(D)),
      E[erf'(u) erf'(v)] = (4/pi) / sqrt(D).
* ``identity``: ``K`` unchanged, ``Kdot = 1`` (a deep linear network).
* anything else (``"tanh"``, ``"gelu"``, ``"softplus"``, or any elementwise callable,
  with the same meaning as in :func:`ntk_companion.models.get_activation`): numerical
  quadrature over the 2-D Gaussian; ``sigma'`` is ``jax.grad`` of the activation,
  vmapped. The covariance is whitened by its Cholesky factor ``L = [[a, 0], [b, c]]``,
  ``a = sqrt(K11)``, ``b = K12 / a``, ``c = sqrt((K11 K22 - K12^2) / K11)`` (clipped at
  0), so ``(u, v) = (a z1, b z1 + c z2)`` with ``z ~ N(0, I)``; ``x = x'`` (``c = 0``)
  and a zero input (``a = 0``) are handled. Two rules:

  - ``quadrature="hermite"`` (default): the tensor Gauss-Hermite rule
    (``numpy.polynomial.hermite_e.hermegauss``, ``order`` nodes per axis, ``order <=
    360``, ``E ~ sum_ij w_i w_j sigma(a z_i) sigma(b z_i + c z_j)``). It converges
    spectrally for smooth activations, but its nodes are ``~ sqrt(K / order)`` apart in
    ``u``, so large variances need more nodes. Measured maximal relative errors of
    ``E[sigma sigma]`` and ``E[sigma' sigma']`` (34 pairs of variances ``K/2 .. K``,
    correlations in ``[-1, 1]``):

    .. code-block:: text

        K       tanh          gelu          softplus      erf (callable)
                96    360     96    360     96    360     96    360
        1       1e-10 1e-12   1e-12 1e-12   5e-13 5e-13   5e-16 6e-16
        4       1e-4  1e-10   8e-11 1e-12   8e-13 8e-13   3e-6  5e-16
        16      8e-2  3e-4    2e-3  5e-10   3e-6  3e-12   8e-2  2e-5
        100     7e-1  1e-1    6e-2  2e-3    2e-3  5e-6    8e-1  1e-1

    For an activation with a kink the error is only ``O(1/order)`` (relu as a callable:
    4e-2 at order 96, 2e-2 at 360), whatever the variance.
  - ``quadrature="polar"`` (``order <= 180``), below: exact for piecewise-linear
    activations at every variance (relu, abs: 1e-12 from ``order = 16``); for smooth
    ones tanh 3e-8 at ``K = 1`` and 3e-6 at ``K = 4`` with ``order = 64``.

  Accuracy is checked, not assumed: ``analytic_kernels`` raises ``ValueError`` when
  (a) the Hermite rule is asked for an activation whose derivative jumps at 0 (use the
  polar rule), or (b) on the diagonal ``x = x'`` of any hidden layer the quadrature
  moments ``E[sigma(u)^2]``, ``E[sigma'(u)^2]`` differ by more than ``QUADRATURE_RTOL``
  (1e-4, relative) from a 1-D composite Gauss-Legendre reference (``64 x 16`` nodes on
  each side of 0 over ``|u| <= 10 sqrt(K)``), e.g. tanh with variances above ~5 at
  ``order = 96``. The message says which order or rule to use. (Off-diagonal errors are
  of the same size as the diagonal ones for smooth activations; a kink away from 0 is
  not detected.)

  The polar rule: ``z = r (cos phi, sin phi)``, ``r`` in R with the Gauss rule of
    the weight ``|r| exp(-r^2 / 2)`` (Gauss-Laguerre in ``r^2/2``, ``order`` nodes of
    each sign), ``phi`` in ``[0, pi)`` split where ``u = 0`` or ``v = 0`` into three
    arcs, each with Gauss-Legendre (``order // 2`` nodes). An activation with a kink or
    jump at 0 (leaky relu, abs, relu as a callable, their step derivatives) is smooth on
    each piece, so the rule converges spectrally: for relu the radial rule is exact and
    the relative error is 4e-6 at ``order = 8``, 1e-10 at 12 and 1e-15 at 16. About ``3
    order^2`` points per pair: several times slower than the Hermite rule at the same
    ``order``, so pass ``order=16`` for piecewise-linear activations.

The recursion is exactly the limit of ``empirical_ntk`` / the output covariance of
:class:`ntk_companion.models.MLP` (NTK parameterization, ``out_dim = 1``) with the same
``depth``, activation, ``W_std`` and ``b_std``.

Standard parameterization
-------------------------
``parameterization="standard", width=m`` gives the kernels of
``MLP(hidden=(m,) * depth, parameterization="standard")``, whose dense layer with fan-in
``n`` computes ``z = a W + b`` with ``W ~ N(0, W_std^2 / n)``, ``b ~ N(0, b_std^2)`` at
initialization: neural-tangents' ``Dense(out_dim=m, parameterization="standard")`` with
``s=(1, 1)`` (Sohl-Dickstein et al. 2020, arXiv:2001.07301), whose ``kernel_fn`` uses
the finite ``out_dim``. At initialization the network is the same random function as in
the NTK parameterization, so the **NNGP kernel is the same**. The gradients differ:
``dz/dW = a`` instead of ``(W_std / sqrt(n)) a``, ``dz/db = 1`` instead of ``b_std``, so
each dense layer maps the NTK by

.. code-block:: text

    standard:  Theta <- n K_in + c_b + W_std^2 Theta   (K_in: NNGP kernel of the input)
    NTK:       Theta <- W_std^2 K_in + b_std^2 + W_std^2 Theta

with ``n = d`` for the first layer (its term is ``d x.x'/d = x.x'``), ``n = m`` for the
others, and ``c_b = 1`` when the layers have a bias. This NTK grows linearly with the
width, ``Theta_SP(m) = m Theta_inf + O(1)``, and it is what the empirical NTK of the
finite network concentrates on: ``||ntk_hat - Theta_SP(m)|| / ||Theta_SP(m)||`` decays
like ``m^(-1/2)`` (measured slope -0.50 for depth 2, widths 32 to 2048, in
``tests/test_analytic.py``), and for ``depth = 1`` the expectation over initializations
is exactly ``Theta_SP(m)`` at every width.

*Learning rate.* Gradient flow for time ``t`` (sum loss, :func:`ntk_companion.predict`)
with a width-independent learning rate moves the outputs with ``Theta_SP(m)``, which
diverges as ``m -> infinity``: the standard parameterization has a kernel limit only
with the learning rate ``eta / m`` (``parameterizations.scaled_lr`` with ``"standard"``:
a factor ``1/m`` on every parameter, which for equal hidden widths is time ``t / m``).
Its kernel ``Theta_SP(m) / m`` tends to ``Theta_inf``, the recursion with ``Theta = 0``
after the first dense layer and ``Theta <- K_in + W_std^2 Theta`` in the later ones: the
first-layer weights and all biases stop training in that limit.

*Zero bias*, side by side (``b_std = 0`` means *no bias parameters* here, as
``b_std=None`` in neural-tangents; neural-tangents' ``b_std=0.`` is a *trainable bias
initialized at zero*):

.. code-block:: text

                                 NNGP per dense layer   NTK per dense layer
    NTK parameterization
      b_std = 0 (no bias)        W_std^2 K_in           W_std^2 (K_in + Theta)
      trainable zero bias        W_std^2 K_in           W_std^2 (K_in + Theta)  (same)
    standard parameterization
      b_std = 0 (no bias)        W_std^2 K_in           n K_in + W_std^2 Theta
      trainable zero bias        W_std^2 K_in           n K_in + 1 + W_std^2 Theta
      b_std > 0                  W_std^2 K_in + b_std^2 n K_in + 1 + W_std^2 Theta

In the NTK parameterization the bias gradient is ``b_std = 0``, so both conventions are
one network. In the standard one the trainable zero bias is a different network (the
same function at initialization, one more trainable parameter per unit): as a finite
network it is ``MLP(b_std=1.0, parameterization="standard")`` with its initial biases
set to 0 (there ``b_std`` only scales the initial biases), and its NTK adds ``c_b = 1``
in every dense layer; ``analytic_kernels(b_std=0.0, parameterization="standard")`` is
the network without biases.

Layer engine, tiles and devices
-------------------------------
``analytic_kernels`` is a front end: it builds the network
``serial(repeat(serial(Dense(m), Activation(sigma)), depth), Dense(1))`` of
:mod:`ntk_companion.layers` (``m = width``, which only the standard parameterization's
NTK depends on) and returns its ``Layer.kernels``; the expectations above are the
activations' kernel maps, this module's closed forms and quadratures. The identical
hidden layers are one ``lax.scan`` body (``repeat``), so the compile time does not grow
with ``depth``. The entry ``(i, j)`` of both kernels depends on ``x1_i`` and ``x2_j``
only, so the kernels are computed by square tiles of ``block_size`` rows and columns
(``block_size=None``: one tile up to ``layers.LAYER_TILE_ENTRIES = 2**17`` entries,
tiles of ``AUTO_BLOCK = 256`` beyond), written in place into the result: memory is the
two ``n1 x n2`` results plus ``O(block_size^2)``, and the tiles' intermediate arrays
stay in cache. For ``x2=None`` only the tiles on and above the diagonal are computed,
then mirrored (half the work, exactly symmetric); pairs of equal inputs use
``K12 = K(x, x)`` exactly, and quadrature evaluates the pairs below the diagonal as
their mirror image. With several devices the rows are sharded over them
(``ntk_companion.sharding``). The arc tangent above is computed by a rational
approximation (Cephes' ``atan``, about 2 ulp; see ``_atan2``) that XLA vectorizes:
``jnp.arctan2`` runs element by element on the CPU and took most of the time. Tiled,
untiled and sharded results agree to rounding.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.laguerre import laggauss
from numpy.polynomial.legendre import leggauss

from ._validation import (as_array, check_batch, check_choice, check_finite, check_int,
                          check_same_features, check_scalar, is_concrete, value_check)

__all__ = ["Kernels", "analytic_kernels"]

_CLOSED_FORMS = ("relu", "erf", "identity")
_QUADRATURES = ("hermite", "polar")
_PARAMETERIZATIONS = ("ntk", "standard")
#: Largest ``order`` of each rule: numpy's Gauss-Hermite weights are NaN from 371 nodes
#: on and its Gauss-Laguerre nodes overflow from 187 (measured: the rules integrate 1
#: and ``z^2`` to 1e-12 up to these orders).
MAX_ORDER = {"hermite": 360, "polar": 180}
#: Largest relative error of the quadrature moments on the diagonal ``x = x'`` (against
#: the 1-D reference rule of ``_reference_rule``) that ``analytic_kernels`` accepts
#: (float64; 100 eps in float32).
QUADRATURE_RTOL = 1e-4
# Number of quadrature points handled at once (bounds memory at a few tens of MB).
_POINTS_PER_BATCH = 2 ** 20
#: Largest tile side of ``block_size=None`` (``layers.LAYER_TILE_ENTRIES`` decides when
#: to tile): memory bounded, and faster too (the intermediate arrays of a tile stay in
#: cache; a symmetric kernel costs half).
AUTO_BLOCK = 256


class Kernels(NamedTuple):
    """Infinite-width kernels between two batches of inputs, each of shape ``(n1, n2)``.

    Attributes:
        nngp: ``Sigma(x, x')``, the covariance of the network output at initialization.
        ntk: ``Theta(x, x')``, the limiting neural tangent kernel.

    A named pair, so ``nngp, ntk = kernels`` unpacks it. With one ReLU hidden layer and
    no bias, ``Theta(x, x) = 2 Sigma(x, x) = |x|^2 / d`` on the diagonal:

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> k = ntk.analytic_kernels(jnp.array([[1.0, 2.0], [3.0, 0.0]]), depth=1)
    >>> k.nngp.shape, jnp.diag(k.ntk).tolist(), jnp.diag(k.nngp).tolist()
    ((2, 2), [2.5, 4.5], [1.25, 2.25])
    """

    nngp: jax.Array
    ntk: jax.Array


# ------------------------------------------------------------------------ closed forms
def _det(k11: jax.Array, k12: jax.Array, k22: jax.Array) -> jax.Array:
    """``K11 K22 - K12^2``, set to 0 when it is below rounding level (collinear
    inputs)."""
    prod = k11 * k22
    det = prod - k12 * k12
    eps = jnp.finfo(det.dtype).eps
    return jnp.where(det <= 16 * eps * prod, jnp.zeros_like(det), det)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` with a finite gradient at 0."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1)), 0)


# Cephes' rational approximation of atan on [0, 0.66] (S. L. Moshier, atan.c): relative
# error below 1e-16, so the result is correctly rounded up to an ulp or two in float64.
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1,
           -7.500855792314704667340e1, -1.228866684490136173410e2,
           -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2,
           4.328810604912902668951e2, 4.853903996359136964868e2,
           1.945506571482613964425e2)
_ATAN_MOREBITS = 6.123233995736765886130e-17   # pi/4 - fl(pi/4)


@jax.custom_jvp
def _atan2(y: jax.Array, x: jax.Array) -> jax.Array:
    """``atan2(y, x)`` from arithmetic and divisions only, so that XLA vectorizes it
    (XLA:CPU evaluates ``jnp.arctan2`` one entry at a time, ~15 ns each: it dominated
    the kernel recursion). Accurate to about 2 ulp in float32 and float64, with IEEE's
    signs: ``atan2(+-0, +0) = +-0``, ``atan2(+-0, -0) = +-pi``; derivatives as
    ``jnp.arctan2``'s, ``(x dy - y dx) / (x^2 + y^2)``.

    Octant reduction ``a = min(|x|, |y|) / max(|x|, |y|)`` in ``[0, 1]``; for ``a >
    0.66``, ``atan(a) = pi/4 + atan((a - 1)/(a + 1))``; then ``pi/2 - r`` when ``|y| >
    |x|``, ``pi - r`` when ``x`` is negative, and the sign of ``y``. (``0.66 big`` is
    rounded, so the switch point moves by an ulp: both formulas are accurate there.)"""
    dtype = jnp.result_type(y, x)
    ax, ay = jnp.abs(x), jnp.abs(y)
    big, small = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    # a = small / big; t = a, or (a - 1)/(a + 1) = (small - big)/(small + big) when
    # a > 0.66: one division (XLA:CPU stores the result of every division that has
    # several users).
    upper = small > 0.66 * big
    num = jnp.where(upper, small - big, small)
    den = jnp.where(upper, small + big, jnp.where(big > 0, big, 1))
    t = num / den
    z = t * t
    p = jnp.asarray(_ATAN_P[0], dtype)
    for c in _ATAN_P[1:]:
        p = p * z + c
    q = z + _ATAN_Q[0]
    for c in _ATAN_Q[1:]:
        q = q * z + c
    r = t * (z * p / q) + t
    r = jnp.where(upper, (math.pi / 4 + 0.5 * _ATAN_MOREBITS) + r, r)
    r = jnp.where(ay > ax, (math.pi / 2 + _ATAN_MOREBITS) - r, r)
    r = jnp.where(jnp.signbit(x), (math.pi + 2 * _ATAN_MOREBITS) - r, r)
    return jnp.where(jnp.signbit(y), -r, r)


@_atan2.defjvp
def _atan2_jvp(primals: tuple[jax.Array, jax.Array],
               tangents: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    y, x = primals
    dy, dx = tangents
    return _atan2(y, x), (x * dy - y * dx) / (x * x + y * y)


def _relu_moments(k11, k12, k22):
    sdet = _safe_sqrt(_det(k11, k12, k22))
    theta = _atan2(sdet, k12)
    k = (sdet + (math.pi - theta) * k12) / (2 * math.pi)
    kdot = (math.pi - theta) / (2 * math.pi)
    return k, kdot


def _erf_moments(k11, k12, k22):
    d = 1 + 2 * (k11 + k22) + 4 * _det(k11, k12, k22)
    sd = jnp.sqrt(d)
    k = (2 / math.pi) * _atan2(2 * k12, sd)
    kdot = (4 / math.pi) / sd
    return k, kdot


def _identity_moments(k11, k12, k22):
    return k12, jnp.ones_like(k12)


# --------------------------------------------------------------------------- quadrature
def _polar_rule(order: int):
    """Radial nodes/weights (weight |r| e^{-r^2/2} / (2 pi) on R) and Legendre nodes on
    [-1, 1]."""
    s, ws = laggauss(order)
    r = np.sqrt(2 * s)
    radius = np.concatenate([r, -r])
    rweight = np.concatenate([ws, ws]) / (2 * np.pi)
    xa, wa = leggauss(max(order // 2, 2))
    return radius, rweight, xa, wa


@functools.partial(jax.jit, static_argnames=("sigma", "order", "rule"))
def _quadrature_moments(k11, k12, k22, *, sigma: Callable, order: int, rule: str):
    """``E[sigma(u) sigma(v)]`` and ``E[sigma'(u) sigma'(v)]`` by quadrature,
    elementwise.

    Compiled once per (activation, order, rule, shapes)."""
    dtype = k12.dtype
    dsigma_flat = jax.vmap(jax.grad(sigma))

    def dsigma(x):
        return dsigma_flat(x.ravel()).reshape(x.shape)

    if rule == "polar":
        radius, rweight, xa, wa = (jnp.asarray(a, dtype) for a in _polar_rule(order))
    else:
        z, w = hermegauss(order)
        z = jnp.asarray(z, dtype)
        w = jnp.asarray(w / math.sqrt(2 * math.pi), dtype)

    def one(args):
        a11, a12, a22 = args
        det = _det(a11, a12, a22)
        has_u = a11 > 0
        # _safe_sqrt: the determinant is 0 on the diagonal (x = x'), where a plain sqrt
        # has an infinite derivative and the chain rule gives 0 * inf = NaN.
        a = _safe_sqrt(a11)
        safe_a = jnp.where(has_u, a, 1)
        b = jnp.where(has_u, a12 / safe_a, 0)
        c = jnp.where(has_u, _safe_sqrt(det / jnp.where(has_u, a11, 1)),
                      _safe_sqrt(a22))
        if rule == "polar":
            # Arcs of [0, pi) between the lines u = 0 (phi = pi/2) and v = 0.
            phi0 = jnp.mod(jnp.arctan2(-b, c), math.pi)
            half = jnp.asarray(math.pi / 2, dtype)
            edges = jnp.stack([jnp.zeros((), dtype), jnp.minimum(half, phi0),
                               jnp.maximum(half, phi0), jnp.asarray(math.pi, dtype)])
            lo, hi = edges[:-1, None], edges[1:, None]
            phi = (lo + (hi - lo) * (xa[None, :] + 1) / 2).ravel()
            wphi = ((hi - lo) / 2 * wa[None, :]).ravel()
            u = radius[:, None] * (a * jnp.cos(phi))[None, :]
            v = radius[:, None] * (b * jnp.cos(phi) + c * jnp.sin(phi))[None, :]
            weight = rweight[:, None] * wphi[None, :]
            k = jnp.sum(weight * sigma(u) * sigma(v))
            kdot = jnp.sum(weight * dsigma(u) * dsigma(v))
        else:
            # Tensor grid: u = a z_i depends on one axis only, v = b z_i + c z_j on
            # both.
            u = a * z
            v = b * z[:, None] + c * z[None, :]
            k = w @ (sigma(u) * (sigma(v) @ w))
            kdot = w @ (dsigma(u) * (dsigma(v) @ w))
        return k, kdot

    shape = jnp.broadcast_shapes(jnp.shape(k11), jnp.shape(k12), jnp.shape(k22))
    flat = tuple(jnp.broadcast_to(a, shape).ravel() for a in (k11, k12, k22))
    points = 3 * order * max(order // 2, 2) * 2 if rule == "polar" else order * order
    batch = max(1, _POINTS_PER_BATCH // points)
    k, kdot = jax.lax.map(one, flat, batch_size=min(batch, max(flat[0].shape[0], 1)))
    return k.reshape(shape), kdot.reshape(shape)


# --------------------------------------------------------------------------- public API
def _moments_fn(kind: str, sigma: Callable | None, order: int, rule: str) -> Callable:
    """``(k11, k12, k22) -> (E[sigma sigma], E[sigma' sigma'])``, elementwise."""
    if kind == "relu":
        return _relu_moments
    if kind == "erf":
        return _erf_moments
    if kind == "identity":
        return _identity_moments
    return functools.partial(_quadrature_moments, sigma=sigma, order=order, rule=rule)


def analytic_kernels(x1: Any, x2: Any = None, *, depth: int,
                     activation: str | Callable = "relu", W_std: float = 1.0,
                     b_std: float = 0.0, order: int = 96, quadrature: str = "hermite",
                     block_size: int | None = None, parameterization: str = "ntk",
                     width: int | None = None) -> Kernels:
    r"""Infinite-width NNGP kernel and NTK of a fully connected network (module
    docstring).

    The limit, as every hidden width tends to infinity, of ``MLP(hidden=(m,) * depth,
    activation=activation, W_std=W_std, b_std=b_std)`` in the NTK parameterization with
    a scalar readout: ``nngp[i, j]`` is the covariance of ``f(x1_i)`` and ``f(x2_j)`` at
    initialization, ``ntk[i, j]`` the limit of ``empirical_ntk(model.apply, params, x1,
    x2)``.

    Recursion: ``K = x.x'/d_in``, ``Theta = 0``; ``depth`` times {dense:
    ``K <- W_std^2 K + b_std^2``, ``Theta <- K + W_std^2 Theta``; activation:
    ``K <- E[sigma(u) sigma(v)]``, ``Theta <- Theta * E[sigma'(u) sigma'(v)]``}; then
    the readout dense layer. relu, erf and identity use closed forms; other activations
    use quadrature (see the module docstring for the formulas and the rules).

    Args:
        x1: inputs, shape ``(n1, d)``.
        x2: inputs, shape ``(n2, d)``; ``None`` (or an array equal to ``x1``) means
        ``x1``:
            the result is then exactly symmetric, only the pairs ``i <= j`` are
            computed, and the diagonal uses the exact ``x = x'`` formulas.
        depth: number of hidden layers ``L >= 1``.
        activation: ``"relu"``, ``"erf"``, ``"identity"`` (closed forms), ``"tanh"``,
            ``"gelu"``, ``"softplus"`` or an elementwise callable (quadrature; a
            callable always takes the quadrature path, even ``jax.nn.relu``).
        W_std: weight scale ``sigma_w > 0``.
        b_std: bias scale ``sigma_b >= 0``.
        order: quadrature order (nodes per dimension, at most 360 for ``"hermite"`` and
        180
            for ``"polar"``; see the module docstring for the measured accuracy; too few
            nodes for the input variances raise ``ValueError``).
        quadrature: ``"hermite"`` (tensor Gauss-Hermite, default, for smooth
            activations) or ``"polar"`` (kink-aware: for activations with a kink at 0,
            e.g. a relu-like callable; 1e-15 at ``order=16`` for relu).
        block_size: side ``b`` of the square tiles the kernels are computed by (see
            "Layer engine, tiles and devices" in the module docstring): memory
            ``O(b^2)`` besides the result. ``None``: one tile up to 2**17 entries, tiles
            of ``AUTO_BLOCK`` (256) beyond. The result equals the untiled one to
            rounding.
        parameterization: ``"ntk"`` (default) or ``"standard"``: the kernels of
            ``MLP(hidden=(width,) * depth, parameterization="standard")``, as
            neural-tangents' ``Dense(parameterization="standard")`` defines them (see
            "Standard parameterization" in the module docstring): the same NNGP kernel,
            and an NTK that grows linearly with ``width``.
        width: the hidden width ``m >= 1`` of every hidden layer; required by
            ``parameterization="standard"`` (its NTK depends on it), ignored by
            ``"ntk"`` (whose kernels do not).

    Returns:
        ``Kernels(nngp, ntk)``, each of shape ``(n1, n2)``, in the dtype of ``x1``; with
        several devices, arrays sharded by rows (:mod:`ntk_companion.sharding`).

    The kernels are those of the layer network
    ``serial(repeat(serial(Dense(width), Activation(activation)), depth), Dense(1))``
    (:func:`ntk_companion.layers.repeat`), compiled once per (shapes, depth, activation,
    order, quadrature); the identical hidden layers are one ``lax.scan`` body, so the
    compile time does not grow with ``depth``. Pass a callable activation defined once
    (not a new ``lambda`` per call) to reuse the compilation. Value checks (``W_std >
    0``, finite inputs, no overflow, the quadrature accuracy) raise ``ValueError``;
    under ``jit`` they need :class:`jit_checks`.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> k = ntk.analytic_kernels(x, depth=1, activation="relu", W_std=2.0)
    >>> round(float(k.nngp[0, 0]), 6), round(float(k.ntk[0, 0]), 6)   # 16 |x|^2 / (2 d)
    (4.0, 8.0)
    >>> sp = ntk.analytic_kernels(x, depth=1, W_std=2.0, parameterization="standard",
    ...                           width=100)
    >>> round(float(sp.ntk[0, 0]), 6)     # |x|^2 W_std^2 / 2 + width * K_1 = 2 + 100
    102.0
    """
    symmetric = x2 is None or x2 is x1
    x1 = as_array(x1, "x1")
    check_batch(x1, "x1")
    if x1.ndim != 2:
        raise ValueError(f"x1 must be 2-D of shape (n, d), got shape {tuple(x1.shape)}")
    check_finite(x1, "x1")
    if not symmetric:
        x2 = as_array(x2, "x2")
        check_batch(x2, "x2")
        if x2.ndim != 2:
            raise ValueError(f"x2 must be 2-D of shape (n, d), got shape "
                             f"{tuple(x2.shape)}")
        check_finite(x2, "x2")
        check_same_features(x1, x2, "x1", "x2")
        if x1.dtype != x2.dtype:
            common = jnp.result_type(x1, x2)
            x1, x2 = x1.astype(common), x2.astype(common)
        symmetric = (is_concrete(x1) and is_concrete(x2) and x1.shape == x2.shape
                     and bool(np.array_equal(np.asarray(x1), np.asarray(x2))))
    depth = check_int(depth, "depth", minimum=1)
    W_std = check_scalar(W_std, "W_std", positive=True)
    b_std = check_scalar(b_std, "b_std", nonnegative=True)
    order = check_int(order, "order", minimum=2)
    check_choice(quadrature, "quadrature", _QUADRATURES)
    if order > MAX_ORDER[quadrature]:
        raise ValueError(f"order must be at most {MAX_ORDER[quadrature]} for "
                         f"quadrature={quadrature!r} (numpy's nodes and weights are "
                         f"not "
                         f"finite beyond), got {order}")
    if block_size is not None:
        block_size = check_int(block_size, "block_size", minimum=1)
    check_choice(parameterization, "parameterization", _PARAMETERIZATIONS)
    if width is not None:
        width = check_int(width, "width", minimum=1)
    if parameterization == "standard" and width is None:
        raise ValueError("width (the hidden width m of MLP(hidden=(m,) * depth)) is "
                         "required with parameterization='standard': its NTK grows "
                         "linearly with m")
    if not (isinstance(activation, str) or callable(activation)):
        raise TypeError(f"activation must be a name or a callable, got "
                        f"{type(activation).__name__}")
    net = _network(depth, activation, W_std, b_std, order, quadrature, parameterization,
                   1 if width is None else width)
    return net.kernels(x1, None if symmetric else x2, block_size=block_size)


def _network(depth: int, activation: str | Callable, W_std: float, b_std: float,
             order: int, quadrature: str, parameterization: str, width: int) -> Any:
    """The layer network of ``analytic_kernels``: ``depth`` times ``Dense(width) ->
    Activation`` (one scanned block), then ``Dense(1)``."""
    from . import layers as nl

    hidden = nl.serial(nl.Dense(width, W_std, b_std, parameterization),
                       nl.Activation(activation, order=order, quadrature=quadrature))
    return nl.serial(nl.repeat(hidden, depth),
                     nl.Dense(1, W_std, b_std, parameterization))


def _check_smooth_at_zero(sigma: Callable) -> None:
    """Raise ``ValueError`` if ``sigma'`` jumps at 0 (relu, leaky relu, abs as
    callables): the Hermite rule then converges only like ``1 / order`` off the diagonal
    (2e-2 for relu at order 96 and 360, measured; on the diagonal the symmetric rule
    happens to be exact, so the diagonal check does not see it), while the polar rule is
    exact for piecewise-linear activations. A kink elsewhere than 0 is not detected."""
    x = jnp.asarray([-1e-6, 1e-6], jnp.result_type(float))
    try:
        left, right = (float(v) for v in jax.vmap(jax.grad(sigma))(x))
    except Exception:  # noqa: BLE001 (no derivative: fails later, clearly)
        return
    if abs(right - left) > 1e-3 * (1 + abs(left) + abs(right)):
        raise ValueError(f"the activation has a kink at 0 (its derivative jumps from "
                         f"{left:.3g} to {right:.3g}): the default Hermite rule is "
                         f"only ~1e-2 accurate there; pass quadrature='polar' "
                         f"(e.g. order=16), "
                         f"or the name 'relu' for the closed form")


# 1-D reference for the diagonal moments: composite Gauss-Legendre in s = u / sqrt(K) on
# [-10, 10], 64 panels of 16 nodes on each side of 0 (a kink at 0 falls on a panel
# edge).
_REF_PANELS, _REF_NODES, _REF_RANGE = 64, 16, 10.0


def _reference_rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``s`` and weights of ``E[g(s)]``, ``s ~ N(0, 1)`` (Gaussian density folded
    in)."""
    xg, wg = leggauss(_REF_NODES)
    edges = np.linspace(-_REF_RANGE, _REF_RANGE, 2 * _REF_PANELS + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    s = (lo + (hi - lo) * (xg[None, :] + 1) / 2).ravel()
    w = (((hi - lo) / 2 * wg[None, :]).ravel() * np.exp(-s * s / 2)
         / math.sqrt(2 * math.pi))
    return s, w


def _moment_error(q: jax.Array, *, sigma: Callable, order: int, rule: str) -> jax.Array:
    """Largest relative error, over the variances ``q`` (any shape: the diagonal
    ``K(x, x)`` an activation sees), of the quadrature moments ``E[sigma(u)^2]`` and
    ``E[sigma'(u)^2]`` (``u ~ N(0, q)``) against the 1-D reference rule (accurate to
    rounding for smooth or piecewise-smooth activations with a kink at 0, at any
    variance up to ~1e4 times the scale of the activation's features). Traceable."""
    s_np, w_np = _reference_rule()
    s, w = jnp.asarray(s_np, q.dtype), jnp.asarray(w_np, q.dtype)
    dsigma = jax.vmap(jax.grad(sigma))
    q = q.ravel()
    k, kdot = _quadrature_moments(q, q, q, sigma=sigma, order=order, rule=rule)
    u = _safe_sqrt(q)[:, None] * s[None, :]
    ref_k = (sigma(u) ** 2) @ w
    ref_kdot = (dsigma(u.ravel()).reshape(u.shape) ** 2) @ w
    return jnp.maximum(jnp.max(jnp.abs(k - ref_k)) / jnp.max(jnp.abs(ref_k)),
                       jnp.max(jnp.abs(kdot - ref_kdot)) / jnp.max(jnp.abs(ref_kdot)))


@jax.jit
def _all_finite(nngp: jax.Array, ntk: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(nngp)) & jnp.all(jnp.isfinite(ntk))
