"""The abc-family of parameterizations of an MLP (Yang & Hu 2021) and their learning
rates.

Write every dense layer ``l = 1..L+1`` of a network with hidden width ``m`` (input
dimension ``d`` fixed) as ``z^l = m^{-a_l} a^{l-1} w^l``, with trainable ``w^l ~ N(0,
m^{-2 b_l})`` at initialization, and train it by gradient descent with step size ``eta
m^{-c}``. The exponents ``(a_l, b_l, c)`` decide what happens as ``m -> infinity``:

================  ========================  ======================  ======
parameterization  ``a_1, a_2..a_L, a_L+1``  ``b_1, b_2..b_L+1``     ``c``
================  ========================  ======================  ======
``"standard"``    0, 0, 0                   0, 1/2                  1
``"ntk"``         0, 1/2, 1/2               0, 0                    0
``"mup"``         0, 1/2, 1                 0, 0                    -1
================  ========================  ======================  ======

(constant factors such as ``W_std`` and the input layer's ``1/sqrt(d)`` are not
exponents of ``m``). For SGD the family has a symmetry:
``(a_l, b_l, c) -> (a_l + s, b_l - s, c - 2s)`` leaves the function and its whole
training trajectory unchanged, because ``w -> m^{s} w`` with the step size scaled by
``m^{2s}`` is a change of variables.
``"mup"`` above is the maximal-update parameterization in the form with standard-normal
trainable parameters; with ``s = -1/2`` it is Yang & Hu's table form ``a = (-1/2, 0,
1/2)``, ``b = 1/2``, ``c = 0``, and for one hidden layer it is the mean-field
parameterization of Mei, Montanari & Nguyen (2018) and Chizat & Bach (2018), ``f(x) =
(W_std / m) sum_j v_j sigma(z_j(x))``.

``"standard"`` and ``"ntk"`` have kernel limits (their features do not move as ``m ->
infinity``); ``"mup"`` is the limit in which every layer's features move by order one.

In :class:`~ntk_companion.MLP` terms a dense layer with fan-in ``n`` computes ``z = c_W
a W + c_b b``, with ``W, b ~ N(0, 1)`` at initialization in ``"ntk"`` and ``"mup"`` and
``W ~ N(0, W_std^2 / n)``, ``b ~ N(0, b_std^2)`` in ``"standard"``;
:func:`layer_multipliers` gives ``(c_W, c_b)``, :func:`lr_multipliers` the factors of
the step size per parameter (the ``m^{-c}`` of the table, layer by layer, for unequal
widths), and :func:`scaled_lr` the per-parameter step sizes ready for
:func:`~ntk_companion.gradient_descent`.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._validation import check_choice, check_int, check_params, check_scalar

__all__ = ["ABCExponents", "abc_exponents", "hidden_features", "layer_multipliers",
           "lr_multipliers", "scaled_lr"]

#: The values of ``MLP.parameterization``.
PARAMETERIZATIONS = ("ntk", "standard", "mup")


class ABCExponents(NamedTuple):
    """The exponents of one parameterization: ``a`` and ``b`` per dense layer (``L + 1``
    of them, input layer first), ``c`` of the step size ``eta m^{-c}``.

    >>> e = abc_exponents("ntk", 1)            # one hidden layer: two dense layers
    >>> e.a, e.b, e.c
    ((0.0, 0.5), (0.0, 0.0), 0.0)
    """

    a: tuple[float, ...]
    b: tuple[float, ...]
    c: float


def abc_exponents(parameterization: str, depth: int) -> ABCExponents:
    """The abc-exponents (module table) that ``MLP(parameterization=...)`` with
    ``depth`` hidden layers implements, together with the step-size scaling of
    :func:`lr_multipliers`.

    >>> abc_exponents("mup", 2)
    ABCExponents(a=(0.0, 0.5, 1.0), b=(0.0, 0.0, 0.0), c=-1.0)
    """
    check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    depth = check_int(depth, "depth", minimum=1)
    hidden = depth - 1
    if parameterization == "standard":
        return ABCExponents((0.0,) * (depth + 1), (0.0,) + (0.5,) * depth, 1.0)
    if parameterization == "ntk":
        return ABCExponents((0.0,) + (0.5,) * depth, (0.0,) * (depth + 1), 0.0)
    return ABCExponents((0.0,) + (0.5,) * hidden + (1.0,), (0.0,) * (depth + 1), -1.0)


def layer_multipliers(parameterization: str, W_std: float, b_std: float, fan_in: int,
                readout: bool) -> tuple[float, float]:
    """``(c_W, c_b)`` of a dense layer ``z = c_W a W + c_b b`` with fan-in ``fan_in``.

    ``"ntk"``: ``(W_std / sqrt(n), b_std)``; ``"standard"``: ``(1, 1)`` (the scales sit
    in the initialization); ``"mup"``: ``(W_std / sqrt(n), b_std)`` for the hidden
    layers and ``(W_std / n, b_std)`` for the readout (``readout=True``).

    >>> layer_multipliers("mup", 1.0, 0.0, 100, readout=True)
    (0.01, 0.0)
    """
    check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    fan_in = check_int(fan_in, "fan_in", minimum=1)
    if parameterization == "standard":
        return 1.0, 1.0
    if parameterization == "mup" and readout:
        return W_std / fan_in, b_std
    return W_std / math.sqrt(fan_in), b_std


def _width(l: int, widths: tuple[int, ...]) -> int:
    """The width ``m`` that layer ``l`` (0-based) scales with: its fan-out for the input
    layer, its fan-in for the others (the input dimension and the output size are
    fixed)."""
    return widths[1] if l == 0 else widths[l]


def lr_multipliers(model: Any, d_in: int) -> list[dict[str, float]]:
    """Per-parameter factors of the step size, shaped like ``model.init(key, d_in)``
    (one float per leaf): the ``m^{-c}`` of the module table with ``m`` the layer's
    width (fan-out of the input layer, fan-in of the others).

    * ``"ntk"``: every factor is 1 (the NTK has a limit at a fixed step size).
    * ``"standard"``: ``1 / m`` for every weight and bias (the NTK grows like ``m``).
    * ``"mup"``: ``m`` for every weight and for the biases of the hidden layers, 1 for
      the readout bias. With standard-normal parameters and the readout multiplier
      ``W_std / m`` this moves every hidden feature and the output by order one per unit
      of time.

    >>> from ntk_companion import MLP
    >>> lr_multipliers(MLP((8, 8), parameterization="mup"), 3)
    [{'W': 8.0}, {'W': 8.0}, {'W': 8.0}]
    """
    from .models import MLP
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP, got {type(model).__name__}")
    d_in = check_int(d_in, "d_in", minimum=1)
    widths = model._widths(d_in)
    if not model.hidden and model.parameterization != "ntk":
        raise ValueError(f"parameterization {model.parameterization!r} scales with the "
                         f"hidden width; model has no hidden layer (hidden=())")
    out = []
    last = len(widths) - 2
    for l in range(last + 1):
        m = float(_width(l, widths))
        if model.parameterization == "ntk":
            w, b = 1.0, 1.0
        elif model.parameterization == "standard":
            w, b = 1.0 / m, 1.0 / m
        else:
            w, b = m, (1.0 if l == last else float(widths[l + 1]))
        layer = {"W": w}
        if model.has_bias:
            layer["b"] = b
        out.append(layer)
    return out


def scaled_lr(model: Any, params: Any, lr: float) -> list[dict[str, jax.Array]]:
    """Per-parameter step sizes ``lr * lr_multipliers(model, d_in)``, a pytree shaped
    like ``params`` (scalar leaves in the dtype of the parameters), for
    :func:`~ntk_companion.gradient_descent`'s ``lr``.

    >>> import jax
    >>> from ntk_companion import MLP
    >>> net = MLP((16,), parameterization="mup")
    >>> p0 = net.init(jax.random.PRNGKey(0), 2)
    >>> [float(leaf["W"]) for leaf in scaled_lr(net, p0, 0.5)]
    [8.0, 8.0]
    """
    check_params(params, "params")
    lr = check_scalar(lr, "lr", positive=True)
    if not isinstance(params, (list, tuple)) or not params or "W" not in params[0]:
        raise TypeError("params must be the list of layer dicts returned by MLP.init")
    d_in = int(jnp.shape(params[0]["W"])[0])
    factors = lr_multipliers(model, d_in)
    model._check_params(params, d_in)
    return [{k: jnp.asarray(lr * f, dtype=params[i][k].dtype) for k, f in layer.items()}
            for i, layer in enumerate(factors)]


def hidden_features(model: Any, params: Any, x: jax.Array) -> list[jax.Array]:
    """The hidden features of an MLP on a batch: ``[a^1(x), ..., a^L(x)]``, the
    post-activations ``a^l = sigma(z^l)`` of the hidden layers, each of shape ``(n,
    m_l)`` (an empty list for ``hidden=()``). Their movement during training is what
    tells a kernel limit (``"ntk"``, ``"standard"``) from a feature-learning one
    (``"mup"``).

    >>> import jax
    >>> from ntk_companion import MLP
    >>> net = MLP((4, 3))
    >>> [a.shape for a in hidden_features(net, net.init(jax.random.PRNGKey(0), 2),
    ...                                   jax.numpy.ones((5, 2)))]
    [(5, 4), (5, 3)]
    """
    from .models import MLP, _activations
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP, got {type(model).__name__}")
    return _activations(model, params, model._check_inputs(params, x))[:-1]
