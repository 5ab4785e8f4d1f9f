r"""Global self-attention: a finite multi-head layer and its infinite-width limit.

Reference: Hron, Bahri, Sohl-Dickstein and Novak, "Infinite attention: NNGP and NTK
for deep attention networks", ICML 2020 (arXiv:2006.10540). The layer is
:class:`GlobalSelfAttention`, built from three (``scaling="sqrt"``: four)
:class:`~ntk_companion.layers.Dense` projections applied at every position, so its
finite network, its parameterizations and its share of the structured empirical NTK
(:mod:`ntk_companion.layer_ntk`) are those of ``Dense``; only the mixing of the
positions by the attention weights is new.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._validation import check_choice, check_int, check_scalar
from .layers import Dense, KernelState, Layer, Shape, _rank

__all__ = ["GlobalSelfAttention"]

_SCALINGS = ("linear", "sqrt")


def _hi(spec: str, *ops: jax.Array) -> jax.Array:
    return jnp.einsum(spec, *ops, precision=lax.Precision.HIGHEST)


@dataclass(frozen=True)
class GlobalSelfAttention(Layer):
    r"""Multi-head self-attention over all positions of inputs ``(n, *S, C)`` (the
    positions flattened, ``P = |S|``): ``(n, *S, C) -> (n, *S, out_channels)``.

    Finite network (NTK parameterization; ``H = n_heads`` heads,
    ``d_k = key_channels / H`` and ``d_v = value_channels / H`` channels per head,
    weights standard normal)::

        Z^h_s  = (W_QK_std / sqrt(C)) a_s W_QK^h        (d_k numbers per position)
        G^h_st = Z^h_s . Z^h_t / d_k                     scaling="linear"
        G^h_st = Q^h_s . K^h_t / sqrt(d_k)               scaling="sqrt"
        A^h    = softmax over t of G^h                   (rows sum to 1)
        V^h_t  = (W_V_std / sqrt(C)) a_t W_V^h           (d_v numbers)
        U_s    = concat_h sum_t A^h_st V^h_t             (value_channels numbers)
        z_s    = (W_O_std / sqrt(value_channels)) U_s W_O + b_std b

    With ``scaling="linear"`` queries and keys are one projection ``Z`` (tied
    weights ``W_QK``); with ``"sqrt"`` they have independent weights ``W_Q``, ``W_K``
    (both with standard deviation ``W_QK_std``). The standard parameterization draws
    the same weights with variance ``std^2 / fan_in`` and no multiplier (the same
    function for the same key). Parameters: ``{"QK", "V", "O"}`` (``"sqrt"``:
    ``{"Q", "K", "V", "O"}``), each a ``Dense`` parameter dict; only ``O`` has a bias
    (``b_std > 0``).

    Kernel map (``scaling="linear"``; the limit ``C -> inf`` for a hidden layer, any
    ``C`` for the input layer, ``d_k -> inf`` and ``value_channels -> inf``; the
    number of heads may stay finite). With ``Sigma(x)[s, t] = K(x_s, x_t)`` the
    self-covariance over positions (``KernelState.var1``/``var2``) and
    ``sigma^2 = W_V_std^2 W_O_std^2``::

        A(x)             = softmax over t of W_QK_std^2 Sigma(x)[s, t]
        K_new(x_s, x'_u) = sigma^2 sum_{t,v} A(x)[s,t] A(x')[u,v] K(x_t, x'_v)
                           + b_std^2
        Theta_new        = sigma^2 A(x) (Theta + 2 K) A(x')^T + b_std^2

    (matrix products over positions; ``var`` maps like ``K`` with ``A(x')`` replaced
    by ``A(x)``).

    Why. ``G^h_st = W_QK_std^2 a_s (W_QK^h W_QK^hT / d_k) a_t / C`` tends to
    ``W_QK_std^2 a_s . a_t / C`` (law of large numbers over the ``d_k`` columns) and
    that to ``W_QK_std^2 Sigma(x)[s, t]`` (over the ``C`` channels; exact for the
    input layer), so every head's attention weights become the same deterministic
    function ``A(x)`` of the input covariance. The layer is then the linear map
    ``a -> A a`` followed by two independent Gaussian dense layers ``W_V``, ``W_O``:
    given ``W_V`` its output is Gaussian with covariance
    ``sigma^2 (A a W_V)(A' a' W_V)^T / (C value_channels)``, which concentrates as
    ``value_channels -> inf``, so the output is a Gaussian process. The NTK collects
    ``sigma^2 A Theta A'^T`` from the layers below (through the values; the path
    through the logits vanishes, the logits being averages over ``C`` channels),
    ``sigma^2 A K A'^T`` from ``W_V``, the same from ``W_O``, ``b_std^2`` from ``b``,
    and nothing from ``W_QK``, whose gradient has squared norm ``O(1 / d_k)``.

    The other scalings. Linear scaling with independent query and key weights is
    degenerate: ``G -> 0`` (``E[Q . K] = 0``), uniform attention ``A = 1/P``, the
    limit of a global average broadcast to every position; it is not offered. With
    ``scaling="sqrt"`` (the usual ``1 / sqrt(d_k)``) the logits tend to a Gaussian
    process, ``Cov(G^h_st(x), G^h_uv(x')) = W_QK_std^4 K(x_s, x'_u) K(x_t, x'_v)``,
    independent over heads: each head's weights stay random and a single head's
    output is a mixture of Gaussians. It is Gaussian only as ``n_heads -> inf`` too,
    with ``K_new = sigma^2 E_G[A(G) K A(G')^T] + b_std^2``, an integral of softmaxes
    over a Gaussian without closed form (and the NTK gains a non-vanishing term from
    ``W_Q``, ``W_K``). That finite network is offered; its ``kernel_map`` raises
    ``ValueError``.

    Structured empirical NTK: the projections are dense layers applied per position,
    so each contributes the ``Dense`` share of :mod:`ntk_companion.layer_ntk`:
    ``W_QK`` with the inputs ``a_s`` and the signals ``d f / d Z_s`` (which sum the
    query and the key paths of the tied weights), ``W_V`` with ``a_s`` and
    ``d f / d V_s``, ``W_O`` with ``U_s`` and ``d f / d z_s``.

    >>> import jax
    >>> from ntk_companion import layers as nl
    >>> att = nl.GlobalSelfAttention(8, key_channels=8, value_channels=8, n_heads=2)
    >>> net = nl.serial(att, nl.Activation("relu"), nl.GlobalAvgPool(), nl.Dense(1))
    >>> x = jax.random.normal(jax.random.key(0), (3, 5, 2))
    >>> net.apply(net.init(jax.random.key(1), x.shape[1:]), x).shape
    (3, 1)
    >>> k = net.kernels(x)                       # invariant to permuting the positions
    >>> bool(jax.numpy.allclose(net.kernels(x[:, ::-1]).ntk, k.ntk, rtol=1e-12))
    True
    """

    out_channels: int
    key_channels: int = 64
    value_channels: int = 64
    n_heads: int = 1
    scaling: str = "linear"
    W_QK_std: float = 1.0
    W_V_std: float = 1.0
    W_O_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"

    def __post_init__(self) -> None:
        for name in ("out_channels", "key_channels", "value_channels", "n_heads"):
            value = check_int(getattr(self, name), name, minimum=1)
            object.__setattr__(self, name, value)
        for name in ("key_channels", "value_channels"):
            if getattr(self, name) % self.n_heads:
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple "
                                 f"of n_heads ({self.n_heads}): each head gets "
                                 f"{name} / n_heads channels")
        for name in ("W_QK_std", "W_V_std", "W_O_std"):
            object.__setattr__(self, name, check_scalar(getattr(self, name), name,
                                                        positive=True))
        object.__setattr__(self, "b_std", check_scalar(self.b_std, "b_std",
                                                       nonnegative=True))
        check_choice(self.scaling, "scaling", _SCALINGS)
        check_choice(self.parameterization, "parameterization", ("ntk", "standard"))

    # ------------------------------------------------------------------ projections
    def _projections(self) -> dict[str, Dense]:
        par = self.parameterization
        qk = Dense(self.key_channels, self.W_QK_std, 0.0, par)
        out = {"QK": qk} if self.scaling == "linear" else {"Q": qk, "K": qk}
        out["V"] = Dense(self.value_channels, self.W_V_std, 0.0, par)
        out["O"] = Dense(self.out_channels, self.W_O_std, self.b_std, par)
        return out

    def centered(self, in_centered: bool) -> bool:
        return True                     # ends in the dense output projection

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 2:
            raise ValueError(f"x: GlobalSelfAttention needs inputs with spatial axes "
                             f"(n, *S, C) (rank >= 3), got feature shape {in_shape}")
        return (*in_shape[:-1], self.out_channels)

    def _init(self, key: jax.Array, in_shape: Shape, dtype: np.dtype) -> dict:
        proj = self._projections()
        keys = jax.random.split(key, len(proj))
        u_shape = (*in_shape[:-1], self.value_channels)
        return {name: layer._init(k, u_shape if name == "O" else in_shape, dtype)
                for (name, layer), k in zip(proj.items(), keys)}

    def _check_params(self, params: Any, channels: int) -> dict[str, Dense]:
        proj = self._projections()
        if not isinstance(params, dict) or set(params) != set(proj):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"params of GlobalSelfAttention (scaling="
                             f"{self.scaling!r}) must be a dict with keys "
                             f"{sorted(proj)}, got {got}")
        for name, layer in proj.items():
            fan_in = self.value_channels if name == "O" else channels
            try:
                layer._check_params(params[name], (fan_in,))
            except (TypeError, ValueError) as err:
                msg = f"params[{name!r}] of GlobalSelfAttention: {err}"
                raise type(err)(msg) from None
        return proj

    def _fwd(self, params: Any, x: jax.Array, rec: Any) -> jax.Array:
        proj = self._check_params(params, x.shape[-1])
        n, spatial = x.shape[0], x.shape[1:-1]
        H = self.n_heads

        def heads(name: str) -> jax.Array:       # (n, H, P, channels per head)
            y = proj[name]._fwd(params[name], x, rec)
            return jnp.moveaxis(y.reshape(n, -1, H, y.shape[-1] // H), 2, 1)

        if self.scaling == "linear":
            Z = heads("QK")
            logits = _hi("nhsd,nhtd->nhst", Z, Z) / Z.shape[-1]
        else:
            Q, K = heads("Q"), heads("K")
            logits = _hi("nhsd,nhtd->nhst", Q, K) / math.sqrt(Q.shape[-1])
        A = jax.nn.softmax(logits, axis=-1)
        U = _hi("nhst,nhtd->nshd", A, heads("V"))
        U = U.reshape(n, *spatial, self.value_channels)
        return proj["O"]._fwd(params["O"], U, rec)

    # ------------------------------------------------------------------ kernel map
    def attention_weights(self, var: jax.Array) -> jax.Array:
        """The limit ``A(x) = softmax_t(W_QK_std^2 Sigma(x)[s, t])`` for the
        self-covariances ``var`` of shape ``(n, *S, *S)``; returns ``(n, P, P)``
        (rows sum to 1)."""
        r = (var.ndim - 1) // 2
        p = math.prod(var.shape[1:1 + r])
        return jax.nn.softmax(self.W_QK_std ** 2 * var.reshape(var.shape[0], p, p),
                              axis=-1)

    def kernel_map(self, state: KernelState) -> KernelState:
        if self.scaling != "linear":
            raise ValueError("scaling='sqrt': the infinite-width kernel of "
                             "1/sqrt(d_k) attention is an integral of softmaxes over "
                             "Gaussian logits without closed form (and Gaussian only "
                             "with infinitely many heads); use scaling='linear' for an "
                             "exact kernel")
        if self.parameterization != "ntk":
            raise ValueError("GlobalSelfAttention: the kernel map is derived for "
                             "parameterization='ntk' (the standard one has the same "
                             "NNGP kernel and a width-dependent NTK, not implemented); "
                             f"got parameterization={self.parameterization!r}")
        r = _rank(state)
        n1, n2 = state.nngp.shape[:2]
        full = state.nngp.shape
        p = math.prod(full[2:2 + r])
        A1 = self.attention_weights(state.var1)
        A2 = self.attention_weights(state.var2)
        s2, b2 = (self.W_V_std * self.W_O_std) ** 2, self.b_std ** 2

        def cross(K):
            return s2 * _hi("ist,ijtv,juv->ijsu", A1, K.reshape(n1, n2, p, p), A2)

        def own(var, A):
            out = s2 * _hi("ist,itv,iuv->isu", A, var.reshape(-1, p, p), A) + b2
            return out.reshape(var.shape)

        k = cross(state.nngp)
        ntk = cross(state.ntk) + 2 * k + b2
        return KernelState((k + b2).reshape(full), ntk.reshape(full),
                           own(state.var1, A1), own(state.var2, A2))
