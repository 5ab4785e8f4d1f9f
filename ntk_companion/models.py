"""Fully connected networks (MLPs) with scalar or vector output.

A network with hidden widths ``(m_1, ..., m_L)`` has ``L + 1`` dense layers; every
hidden dense layer is followed by the activation ``sigma`` and the last (readout) layer
is linear:

    a^0 = x,  z^l = dense_l(a^{l-1}),  a^l = sigma(z^l)  (l = 1..L),
    f(x) = dense_{L+1}(a^L).

Two parameterizations of a dense layer with fan-in ``n`` are offered.

* NTK parameterization (the default, the one the infinite-width theory uses): the
  trainable ``W`` and ``b`` are standard normal at initialization and

      z = (W_std / sqrt(n)) a W + b_std b.

* Standard parameterization: ``W ~ N(0, W_std^2 / n)``, ``b ~ N(0, b_std^2)`` and

      z = a W + b.

* Maximal-update parameterization (``"mup"``, Yang & Hu 2021): as the NTK
  parameterization, except that the readout multiplier is ``W_std / n`` instead of
  ``W_std / sqrt(n)``, and it is trained with the step sizes of
  :func:`ntk_companion.parameterizations.scaled_lr` (``m`` times larger). Its
  infinite-width limit learns features; with one hidden layer it is the mean-field
  parameterization ``f(x) = (W_std / m) sum_j v_j sigma(z_j(x))``. The multipliers,
  initializations and step sizes of every parameterization are tabulated in
  :mod:`ntk_companion.parameterizations`.

At initialization both describe the same distribution of functions (for one random key
they give the *same* function: the standard weights are the NTK weights times ``W_std /
sqrt(n)`` and ``b_std``). They differ in the gradients, hence in the NTK and in the
training dynamics: in the NTK parameterization the kernel has a finite limit as the
widths grow with a width-independent learning rate.

Parameters are a list with one dict per dense layer, ``{"W": (fan_in, fan_out), "b":
(fan_out,)}``; the key ``"b"`` is absent when ``b_std == 0`` (no bias at all).

The network is computed by the layer library: ``model.network`` is the
:func:`~ntk_companion.layers.serial` network ``Dense -> Activation -> ... -> Dense`` of
:mod:`ntk_companion.layers` (the readout marked ``readout=True`` in ``"mup"``) and
``model.network_params(params)`` its parameters, so ``apply``, the hidden features and
the structured empirical NTK (:mod:`ntk_companion.layer_ntk`) are those of that network.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property
from functools import partial
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import _random
from .parameterizations import PARAMETERIZATIONS
from ._validation import (as_array, check_batch, check_choice, check_finite,
                          check_int, check_scalar, is_concrete, named_or_callable)

__all__ = ["MLP", "get_activation", "nested_params"]

Params = list  # list[dict[str, jax.Array]]
Activation = Union[str, Callable[[jax.Array], jax.Array]]


def _relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0)


def _erf(x: jax.Array) -> jax.Array:
    return jax.scipy.special.erf(x)


def _identity(x: jax.Array) -> jax.Array:
    return x


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


# Named activations. The analytic kernels (``analytic.py``) have closed forms for relu,
# erf and identity and use Gauss-Hermite quadrature for the others.
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": _relu,            # max(x, 0)
    "erf": _erf,              # error function
    "tanh": jnp.tanh,
    "identity": _identity,    # a deep linear network
    "gelu": _gelu,            # x Phi(x), the exact (not tanh-approximated) GELU
    "softplus": jax.nn.softplus,  # log(1 + e^x)
}


def get_activation(activation: Activation) -> Callable[[jax.Array], jax.Array]:
    """Return the elementwise activation function for a name or a callable.

    Known names: ``"relu"`` (max(x, 0)), ``"erf"``, ``"tanh"``, ``"identity"``,
    ``"gelu"`` (exact, x Phi(x)) and ``"softplus"`` (log(1 + e^x)). A callable is
    returned unchanged; it must map an array elementwise to an array of the same shape;
    this is checked (once per callable, on 7 points of ``[-3, 3]``: each output entry
    must equal the output for that entry alone), and a ``ValueError`` names
    ``activation`` otherwise (e.g. ``jax.nn.softmax``).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> [float(v) for v in ntk.get_activation("relu")(jnp.array([-1.0, 2.0]))]
    [0.0, 2.0]
    """
    fn = named_or_callable(activation, "activation", _ACTIVATIONS)
    if not isinstance(activation, str):
        try:
            hash(fn)
        except TypeError:
            _check_elementwise.__wrapped__(fn)
        else:
            _check_elementwise(fn)
    return fn


@functools.lru_cache(maxsize=256)
def _check_elementwise(fn: Callable[[jax.Array], jax.Array]) -> None:
    """Raise unless ``fn`` maps arrays elementwise (probed on 7 points; skipped inside a
    trace, where the probe's values are not known)."""
    x = jnp.linspace(-3.0, 3.0, 7)
    try:
        out = fn(x)
    except Exception as err:  # noqa: BLE001 (any failure of a user callable)
        raise TypeError("activation must map an array elementwise, but calling it on "
                        f"an array failed: {err}") from err
    if tuple(jnp.shape(out)) != x.shape:
        raise ValueError("activation must map an array elementwise to an array of the "
                         f"same shape, got shape {tuple(jnp.shape(out))} for an input "
                         f"of shape {x.shape}")
    if not is_concrete(out):
        return
    alone = np.array([np.asarray(fn(x[i:i + 1])).reshape(-1)[0]
                      for i in range(x.shape[0])])
    out = np.asarray(out, dtype=np.float64)
    if np.max(np.abs(out - alone)) > 1e-5 * (1 + np.max(np.abs(out))):
        raise ValueError("activation must be elementwise: its output for an entry "
                         "depends on the other entries of the array (e.g. softmax or a "
                         "normalization); pass a function applied entry by entry")


def nested_params(params: Params, width: int) -> Params:
    """The parameters of the network made of the first ``width`` units of every hidden
    layer.

    ``params`` is a parameter list of :class:`MLP` (layers ``{"W": (fan_in, fan_out),
    "b": (fan_out,)}``, ``"b"`` optional), possibly with leading batch axes on every
    leaf (a stack of initializations): layer ``l`` keeps ``W[..., :n_{l-1}', :n_l']``
    and ``b[..., :n_l']`` with ``n_l' = width`` for the hidden layers and the input and
    output sizes unchanged. The result is the parameter list of ``MLP(hidden=(width,) *
    depth, ...)``.

    A sub-block of a matrix with i.i.d. N(0, 1) entries has i.i.d. N(0, 1) entries, so
    in the NTK parameterization (where ``MLP.init`` draws every parameter from N(0, 1))
    the result is a correctly distributed initialization of the narrower network.
    Networks of several widths read off one wide draw share their units, which removes
    part of the seed-to-seed noise from width comparisons. (In the standard
    parameterization the weights of ``MLP.init`` are scaled for the wide fan-in, so the
    result is not the narrower network's initialization.) Traceable: slicing with the
    static ``width``.

    >>> import jax
    >>> import ntk_companion as ntk
    >>> params = ntk.MLP(hidden=(8, 8)).init(jax.random.PRNGKey(0), 3)
    >>> [layer["W"].shape for layer in ntk.nested_params(params, 2)]
    [(3, 2), (2, 2), (2, 1)]
    """
    width = check_int(width, "width", minimum=1)
    params = _layer_list(params)
    for i, layer in enumerate(params):
        for key, leaf in layer.items():
            name = f"params[{i}][{key!r}]"
            check_finite(as_array(leaf, name), name)
    last = len(params) - 1
    for i, layer in enumerate(params[:-1]):
        fan_out = jnp.shape(layer["W"])[-1]
        if fan_out < width:
            raise ValueError("width must be at most the hidden width of every layer, "
                             f"got width={width} but hidden layer {i + 1} has "
                             f"{fan_out} units")
    out: Params = []
    for i, layer in enumerate(params):
        W = layer["W"]
        rows = W.shape[-2] if i == 0 else width
        cols = W.shape[-1] if i == last else width
        new = {"W": W[..., :rows, :cols]}
        if "b" in layer:
            new["b"] = layer["b"][..., :cols]
        out.append(new)
    return out


def _layer_list(params: Any) -> Params:
    """``params`` as a list, after checking that it is a non-empty list of layer dicts
    with a weight ``"W"`` (the layout of ``MLP.init``, leaves possibly batched)."""
    if not isinstance(params, (list, tuple)) or not params or not all(
            isinstance(layer, dict) and "W" in layer for layer in params):
        raise TypeError("params must be an MLP parameter list of layers "
                        "{'W': ..., 'b': ...}")
    return list(params)


def _is_key(key: Any) -> bool:
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return jnp.ndim(key) == 0
    return dtype == jnp.uint32 and jnp.shape(key) == (2,)


@dataclass(frozen=True)
class MLP:
    """A fully connected network ``f(x; theta)``; see the module docstring for the math.

    Attributes:
        hidden: widths of the hidden layers ``(m_1, ..., m_L)``; ``()`` gives a linear
            model.
        activation: name (see :func:`get_activation`) or elementwise callable.
        W_std: weight scale ``sigma_w > 0``.
        b_std: bias scale ``sigma_b >= 0``; ``0`` means the network has no biases.
        parameterization: ``"ntk"``, ``"standard"`` or ``"mup"`` (see
            :mod:`ntk_companion.parameterizations`).
        out_dim: number of outputs; ``apply`` returns shape ``(n,)`` when it is 1.

    ``b_std = 0`` versus a trainable zero bias: here ``b_std = 0`` removes the bias
    parameters. In the NTK parameterization a trainable bias multiplied by ``b_std = 0``
    (neural-tangents' ``b_std=0.``) is the same network with the same kernels. In the
    standard parameterization a trainable bias *initialized* at 0 (neural-tangents'
    ``b_std=0.``, ``parameterization="standard"``) is a different network: its gradient
    adds 1 per dense layer to the empirical NTK; it is not ``MLP(b_std=0,
    parameterization="standard")`` (see the migration page of the book).

    The instance is immutable and hashable, so ``model.apply`` can be passed to
    ``jax.jit`` as a static argument.

    >>> import jax
    >>> import ntk_companion as ntk
    >>> model = ntk.MLP(hidden=(16,), activation="tanh", b_std=0.1)
    >>> params = model.init(jax.random.PRNGKey(0), 3)
    >>> model.apply(params, jax.numpy.ones((5, 3))).shape, model.num_params(3)
    ((5,), 81)
    """

    hidden: tuple[int, ...] = (512, 512)
    activation: Activation = "relu"
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"
    out_dim: int = 1

    def __post_init__(self) -> None:
        hidden = self.hidden
        if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
            raise TypeError("hidden must be a tuple of layer widths, e.g. "
                            f"({int(hidden)},), got the integer {int(hidden)}")
        try:
            hidden = tuple(hidden)
        except TypeError as err:
            raise TypeError(f"hidden must be a tuple of positive integers, got "
                            f"{type(self.hidden).__name__}") from err
        hidden = tuple(check_int(m, "hidden", minimum=1) for m in hidden)
        object.__setattr__(self, "hidden", hidden)
        get_activation(self.activation)  # validates the name
        object.__setattr__(self, "W_std",
                           check_scalar(self.W_std, "W_std", positive=True))
        object.__setattr__(self, "b_std",
                           check_scalar(self.b_std, "b_std", nonnegative=True))
        check_choice(self.parameterization, "parameterization", PARAMETERIZATIONS)
        object.__setattr__(self, "out_dim",
                           check_int(self.out_dim, "out_dim", minimum=1))

    # ------------------------------------------------------------------ structure
    @property
    def depth(self) -> int:
        """Number of hidden layers ``L`` (= ``len(hidden)``)."""
        return len(self.hidden)

    @property
    def has_bias(self) -> bool:
        """Whether the dense layers carry a bias (``b_std > 0``)."""
        return self.b_std > 0

    def _widths(self, d_in: int) -> tuple[int, ...]:
        return (d_in, *self.hidden, self.out_dim)

    @cached_property
    def network(self) -> Any:
        """The same network in :mod:`ntk_companion.layers`: ``serial(Dense(m_1),
        Activation, ..., Dense(m_L), Activation, Dense(out_dim))`` with this model's
        ``W_std``, ``b_std`` and parameterization (the last ``Dense`` with
        ``readout=True`` in ``"mup"``); it takes the parameters of
        :meth:`network_params`.

        >>> import jax
        >>> import ntk_companion as ntk
        >>> model = ntk.MLP(hidden=(4,), activation="erf")
        >>> p = model.init(jax.random.PRNGKey(0), 2)
        >>> x = jax.numpy.ones((3, 2))
        >>> out = model.network.apply(model.network_params(p), x)
        >>> bool((out[:, 0] == model.apply(p, x)).all())
        True
        """
        from . import layers as nl       # (layers imports this module)
        dense = functools.partial(nl.Dense, W_std=self.W_std, b_std=self.b_std,
                                  parameterization=self.parameterization)
        parts: list = []
        for m in self.hidden:
            parts += [dense(m), nl.Activation(self.activation)]
        parts.append(dense(self.out_dim, readout=self.parameterization == "mup"))
        return nl.serial(*parts)

    def network_params(self, params: Params) -> list:
        """``params`` (one dict per dense layer) as parameters of :attr:`network`: the
        same arrays, with a ``()`` for every activation."""
        out: list = []
        for i, layer in enumerate(params):
            out.append(layer)
            if i < len(params) - 1:
                out.append(())
        return out

    def num_params(self, d_in: int) -> int:
        """Number of trainable parameters ``P`` for input dimension ``d_in``:
        sum over layers of ``fan_in * fan_out`` (+ ``fan_out`` with biases)."""
        d_in = check_int(d_in, "d_in", minimum=1)
        w = self._widths(d_in)
        bias = 1 if self.has_bias else 0
        return sum(w[i] * w[i + 1] + bias * w[i + 1] for i in range(len(w) - 1))

    # ------------------------------------------------------------------ init / apply
    def init(self, key: jax.Array, d_in: int, dtype: Any = None) -> Params:
        """Draw initial parameters for inputs of dimension ``d_in``.

        NTK and maximal-update parameterizations: every ``W`` and ``b`` entry is N(0,
        1). Standard parameterization: ``W ~ N(0, W_std^2 / fan_in)``, ``b ~ N(0,
        b_std^2)``, drawn as the same standard normals rescaled, so one key gives the
        same function in both parameterizations.

        Args:
            key: a ``jax.random`` key.
            d_in: input dimension.
            dtype: floating dtype of the parameters; default float64 when x64 is
                enabled, else float32.
        """
        if not _is_key(key):
            raise TypeError(f"key must be a jax.random key (jax.random.key(seed) or "
                            f"jax.random.PRNGKey(seed)), got {type(key).__name__}")
        d_in = check_int(d_in, "d_in", minimum=1)
        if dtype is None:
            dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        elif not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        return _init(self, key, d_in, np.dtype(dtype))

    def _check_params(self, params: Any, d_in: int) -> None:
        if not isinstance(params, (list, tuple)):
            raise TypeError("params must be the list of layer dicts returned by "
                            f"MLP.init, got {type(params).__name__}")
        if len(params) != self.depth + 1:
            raise ValueError(f"params must hold {self.depth + 1} layers for hidden="
                             f"{self.hidden}, got {len(params)}")
        widths = self._widths(d_in)
        for i, layer in enumerate(params):
            if not isinstance(layer, dict) or "W" not in layer:
                raise TypeError(f"params[{i}] must be a dict with key 'W'")
            want = (widths[i], widths[i + 1])
            if tuple(jnp.shape(layer["W"])) != want:
                if (i == 0 and jnp.ndim(layer["W"]) == 2
                        and jnp.shape(layer["W"])[1] == want[1]):
                    raise ValueError(f"x has {d_in} features but params expect "
                                     f"{jnp.shape(layer['W'])[0]} (params[0]['W'] has "
                                     f"shape {tuple(jnp.shape(layer['W']))})")
                raise ValueError(f"params[{i}]['W'] must have shape {want}, got "
                                 f"{tuple(jnp.shape(layer['W']))}")
            if ("b" in layer) != self.has_bias:
                what = "needs a bias 'b' (b_std > 0)" if self.has_bias else \
                    "must not have a bias 'b' (b_std == 0)"
                raise ValueError(f"params[{i}] {what}")
            if self.has_bias and tuple(jnp.shape(layer["b"])) != (want[1],):
                raise ValueError(f"params[{i}]['b'] must have shape {(want[1],)}, got "
                                 f"{tuple(jnp.shape(layer['b']))}")
            for key, leaf in layer.items():
                name = f"params[{i}][{key!r}]"
                check_finite(as_array(leaf, name), name)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Evaluate the network on a batch ``x`` of shape ``(n, d_in)``.

        Returns ``f(x_i; theta)`` for every row: shape ``(n,)`` when ``out_dim == 1``,
        else ``(n, out_dim)``. Each dense layer computes
        ``z = (W_std/sqrt(fan_in)) a W + b_std b`` (NTK) or ``z = a W + b`` (standard).
        """
        return _forward(self, params, self._check_inputs(params, x))

    def _check_inputs(self, params: Any, x: Any) -> jax.Array:
        """The checks of :meth:`apply` (and of ``hidden_features``): ``x`` a finite
        batch of shape ``(n, d_in)`` and ``params`` finite layers of this network for
        ``d_in`` inputs; returns ``x`` as an array."""
        x = as_array(x, "x")
        check_batch(x, "x")
        if x.ndim != 2:
            raise ValueError("x must be 2-D of shape (n, d_in), got shape "
                             f"{tuple(x.shape)}")
        check_finite(x, "x")
        self._check_params(params, x.shape[1])
        return x


# The computations behind ``MLP.init`` / ``MLP.apply``. ``_init`` runs eagerly: with a
# concrete Threefry key and float32/float64 it draws the values of ``jax.random.normal``
# bitwise, from one compiled program per dtype (``_random``: no compilation per layer
# shape, which cost ~0.4 CPU-s per new shape); otherwise it calls ``jax.random.normal``
# per layer. ``_forward`` (the layer network ``model.network``) is compiled once per
# model and input shape (the model is a hashable static argument) and is inlined inside
# an outer ``jit``.

def _init(model: MLP, key: jax.Array, d_in: int, dtype: np.dtype) -> Params:
    widths = model._widths(d_in)
    sizes = [m * k for m, k in zip(widths[:-1], widths[1:])]
    if _random.fast_path(key, dtype, max(sizes)):
        return _init_chunked(model, key, widths, dtype)
    keys = jax.random.split(key, 2 * (len(widths) - 1))
    params: Params = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        W = jax.random.normal(keys[2 * i], (fan_in, fan_out), dtype)
        b = jax.random.normal(keys[2 * i + 1], (fan_out,), dtype)
        if model.parameterization == "standard":
            W = W * (model.W_std / math.sqrt(fan_in))
            b = b * model.b_std
        layer = {"W": W}
        if model.has_bias:
            layer["b"] = b
        params.append(layer)
    return params


def _init_chunked(model: MLP, key: jax.Array, widths: tuple[int, ...],
                  dtype: np.dtype) -> Params:
    """``_init``'s values, drawn by ``_random`` (same keys, same normals, same scaling:
    the products are the IEEE products of the same numbers, done in numpy)."""
    keys = _random.split(key, 2 * (len(widths) - 1))
    params: Params = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        W = _random.normal(keys[2 * i], (fan_in, fan_out), dtype)
        if model.parameterization == "standard":
            W = W * dtype.type(model.W_std / math.sqrt(fan_in))
        layer = {"W": jnp.asarray(W)}
        if model.has_bias:
            b = _random.normal(keys[2 * i + 1], (fan_out,), dtype)
            if model.parameterization == "standard":
                b = b * dtype.type(model.b_std)
            layer["b"] = jnp.asarray(b)
        params.append(layer)
    return params


def _activations(model: MLP, params: Params, x: jax.Array) -> list[jax.Array]:
    """``[a^1(x), ..., a^L(x), f(x)]``: the post-activations of the hidden layers (the
    outputs of the network's ``Activation`` layers), then the readout's output of shape
    ``(n, out_dim)``."""
    outs, a = [], x
    for layer, p in zip(model.network.layers, model.network_params(params)):
        a = layer._fwd(p, a, None)
        outs.append(a)
    return outs[1::2] + [outs[-1]]


@partial(jax.jit, static_argnums=0)
def _forward(model: MLP, params: Params, x: jax.Array) -> jax.Array:
    a = model.network._fwd(model.network_params(params), x, None)
    return a[:, 0] if model.out_dim == 1 else a
