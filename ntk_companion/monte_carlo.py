r"""Monte Carlo estimates of the NNGP kernel and the NTK of any finite network.

For a network ``f(x; theta)`` with random initialization ``theta ~ p``, the NNGP kernel
is the output covariance and the (expected) NTK the average empirical kernel,

.. code-block:: text

    Sigma(x, x') = E_theta[f(x; theta) f(x'; theta)],
    Theta(x, x') = E_theta[<grad_theta f(x; theta), grad_theta f(x'; theta)>],

estimated by the averages over ``n_samples`` independent initializations (the outputs of
the architectures here are centred at initialization, so the second moment is the
covariance). Each empirical kernel is computed by :func:`ntk_companion.empirical_ntk`,
by tiles of ``block_size`` when given (bounded memory), one initialization at a time.
The standard error of an entry falls like ``1 / sqrt(n_samples)``; for an MLP in the NTK
parameterization the estimates tend to :func:`ntk_companion.analytic_kernels` as the
width and ``n_samples`` grow (neural-tangents' ``monte_carlo_kernel_fn``).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._validation import as_array, check_batch, check_callable, check_finite, check_int
from .analytic import Kernels
from .empirical import _scalar_outputs, empirical_ntk

__all__ = ["monte_carlo_kernels"]


def monte_carlo_kernels(init_fn: Callable[[jax.Array], Any],
                        apply_fn: Callable[[Any, jax.Array], jax.Array], key: jax.Array,
                        x1: Any, x2: Any = None, *, n_samples: int,
                        method: str = "auto", block_size: int | None = None) -> Kernels:
    r"""Monte Carlo NNGP kernel and NTK of a finite network: averages over ``n_samples``
    initializations ``init_fn(k)``, ``k`` in ``jax.random.split(key, n_samples)``.

    Args:
        init_fn: ``init_fn(key)`` -> parameters (e.g. ``lambda k: model.init(k, d)``).
        apply_fn: ``apply_fn(params, x)`` -> outputs of shape ``(n,)`` (or ``(n, 1)``).
        key: a JAX PRNG key.
        x1: inputs ``(n1, ...)``; x2: inputs ``(n2, ...)`` or ``None`` (``x1``).
        n_samples: number of initializations ``>= 1``.
        method, block_size: as in :func:`ntk_companion.empirical_ntk` (tiles of
            ``block_size``).

    Returns:
        ``Kernels(nngp, ntk)`` of shape ``(n1, n2)``.

    >>> import jax, jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> model = ntk.MLP(hidden=(64,), activation="relu")
    >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    >>> mc = ntk.monte_carlo_kernels(lambda k: model.init(k, 2), model.apply,
    ...                              jax.random.PRNGKey(0), x, n_samples=8)
    >>> mc.ntk.shape, bool(jnp.all(mc.ntk == mc.ntk.T))
    ((2, 2), True)
    """
    check_callable(init_fn, "init_fn")
    check_callable(apply_fn, "apply_fn")
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    x1 = as_array(x1, "x1")
    check_batch(x1, "x1")
    check_finite(x1, "x1")
    if x2 is not None:
        x2 = as_array(x2, "x2")
        check_batch(x2, "x2")
        check_finite(x2, "x2")
    try:
        keys = jax.random.split(key, n_samples)
    except (TypeError, ValueError) as err:
        raise TypeError("key must be a JAX PRNG key, got "
                        f"{type(key).__name__}") from err
    nngp = ntk = None
    for k in keys:
        params = init_fn(k)
        f1 = _scalar_outputs(apply_fn, params, x1)
        f2 = f1 if x2 is None else _scalar_outputs(apply_fn, params, x2)
        outer = jnp.outer(f1, f2)
        kernel = empirical_ntk(apply_fn, params, x1, x2, method=method,
                               block_size=block_size)
        nngp = outer if nngp is None else nngp + outer
        ntk = kernel if ntk is None else ntk + kernel
    return Kernels(nngp=nngp / n_samples, ntk=ntk / n_samples)
