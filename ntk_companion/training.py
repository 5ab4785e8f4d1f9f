"""Training: gradient flow (integrated with RK4) and gradient descent on pytrees.

* :func:`rk4` integrates an autonomous ODE ``dy/dt = F(y)`` with the classical
  fourth-order Runge-Kutta method and a fixed step ``h = t / steps``:

      k1 = F(y),  k2 = F(y + h/2 k1),  k3 = F(y + h/2 k2),  k4 = F(y + h k3),
      y <- y + h/6 (k1 + 2 k2 + 2 k3 + k4);

  the global error is O(h^4).
* :func:`gradient_flow` solves ``d theta/dt = -grad l(theta)`` with :func:`rk4`.
* :func:`gradient_descent` iterates ``theta_{k+1} = theta_k - lr grad l(theta_k)``;
  after ``k`` steps it approximates gradient flow at time ``t = k lr`` with an O(lr)
  error.

With the sum loss ``l = 1/2 ||f(X) - y||^2`` of the course the residual obeys
``dr/dt = -H r``; libraries that use the mean loss ``||r||^2/(2N)`` over the ``N = n k``
entries of an ``(n, k)`` residual run on ``t_mean = n k t`` (``n t`` for scalar
targets).

All three run a ``jax.lax.scan`` compiled with ``jax.jit`` (``steps`` and ``save_every``
are static). Instead of storing the whole trajectory they evaluate ``observe(state)`` at
the saved times ``0, save_every h, 2 save_every h, ..., t`` and stack the results, so
that training a wide network never keeps copies of its parameters unless asked to.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (as_array, check_callable, check_finite, check_int,
                          check_params, check_scalar, check_symmetric, is_concrete,
                          value_check)
from ._utils import static_callable as _static
from .losses import square_loss

__all__ = ["rk4", "gradient_flow", "gradient_descent", "square_loss_fn",
           "max_learning_rate"]

PyTree = Any


# --------------------------------------------------------------------------- helpers

def _identity(y: PyTree) -> PyTree:
    return y


class _NegGrad:
    """The vector field ``theta -> -grad loss_fn(theta)``, hashable by ``loss_fn`` so
    that repeated calls with the same loss reuse the compiled scan."""

    def __init__(self, loss_fn: Callable) -> None:
        self.loss_fn = loss_fn

    def __call__(self, params: PyTree) -> PyTree:
        return jax.tree_util.tree_map(jnp.negative, jax.grad(self.loss_fn)(params))

    def __hash__(self) -> int:
        return hash((_NegGrad, self.loss_fn))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NegGrad) and other.loss_fn == self.loss_fn


def _check_state(y0: PyTree, name: str) -> PyTree:
    leaves, treedef = jax.tree_util.tree_flatten(y0)
    if not leaves:
        raise ValueError(f"{name} must be a non-empty pytree of arrays")
    leaves = [as_array(leaf, name) for leaf in leaves]
    for leaf in leaves:
        check_finite(leaf, name)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_steps(steps: Any, save_every: Any) -> tuple[int, int]:
    steps = check_int(steps, "steps", minimum=1)
    save_every = check_int(save_every, "save_every", minimum=1)
    if steps % save_every:
        raise ValueError(f"steps ({steps}) must be a multiple of save_every "
                         f"({save_every})")
    return steps, save_every


def _check_vector_field(vector_field: Callable, y0: PyTree) -> None:
    """``vector_field(y0)`` must return a pytree of the structure and leaf shapes of
    ``y0`` (checked on shapes only, by ``jax.eval_shape``: nothing is computed)."""
    try:
        out = jax.eval_shape(vector_field, y0)
    except (TypeError, ValueError) as err:
        raise TypeError(f"vector_field failed on the state y0: {err}") from err
    ta, tb = jax.tree_util.tree_structure(out), jax.tree_util.tree_structure(y0)
    if ta != tb:
        raise ValueError("vector_field must return a pytree shaped like y0 (the "
                         f"state), got structure {ta} for a state of structure {tb}")
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(y0)):
        if tuple(a.shape) != tuple(jnp.shape(b)):
            raise ValueError("vector_field must return leaves of the shapes of y0, "
                             f"got shape {tuple(a.shape)} for a leaf of shape "
                             f"{tuple(jnp.shape(b))}")


def _check_loss(loss_fn: Callable, params: PyTree) -> None:
    """``loss_fn(params)`` must be a real scalar (checked on shapes, by
    ``jax.eval_shape``)."""
    out = jax.eval_shape(loss_fn, params)
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a scalar loss, got shape {shape} "
                         f"(sum or average a vector of losses)")


def _check_diverged(state: PyTree, what: str, hint: str) -> None:
    """Raise ``ValueError`` if a concrete final state holds NaN or infinity."""
    for leaf in jax.tree_util.tree_leaves(state):
        if is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{what} diverged: the final state holds NaN or infinite "
                             f"values. {hint}")


def _stack_first(first: PyTree, rest: PyTree) -> PyTree:
    return jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b], axis=0), first, rest)


def _state_dtype(y: PyTree) -> Any:
    return jnp.result_type(*jax.tree_util.tree_leaves(y))


# --------------------------------------------------------------------------- rk4

def _rk4_step(vector_field: Callable, y: PyTree, h: jax.Array) -> PyTree:
    axpy = lambda a, x, y_: jax.tree_util.tree_map(
        lambda u, v: (u + a * v).astype(u.dtype), y_, x)
    k1 = vector_field(y)
    k2 = vector_field(axpy(h / 2, k1, y))
    k3 = vector_field(axpy(h / 2, k2, y))
    k4 = vector_field(axpy(h, k3, y))
    incr = jax.tree_util.tree_map(lambda a, b, c, d: a + 2 * b + 2 * c + d,
                                  k1, k2, k3, k4)
    return axpy(h / 6, incr, y)


@partial(jax.jit, static_argnames=("vector_field", "observe", "steps", "save_every"))
def _rk4_scan(vector_field: Callable, observe: Callable, y0: PyTree, t: jax.Array, *,
              steps: int, save_every: int) -> tuple[PyTree, PyTree]:
    h = (t / steps).astype(_state_dtype(y0))

    def inner(y, _):
        return _rk4_step(vector_field, y, h), None

    def outer(y, _):
        y, _ = jax.lax.scan(inner, y, None, length=save_every)
        return y, observe(y)

    yT, obs = jax.lax.scan(outer, y0, None, length=steps // save_every)
    return yT, _stack_first(observe(y0), obs)


def rk4(vector_field: Callable[[PyTree], PyTree], y0: PyTree, *, t: float, steps: int,
        save_every: int = 1, observe: Callable[[PyTree], PyTree] | None = None
        ) -> tuple[PyTree, jax.Array, PyTree]:
    """Integrate ``dy/dt = vector_field(y)`` from ``y(0) = y0`` to time ``t`` with
    classical RK4 and the fixed step ``h = t / steps`` (global error O(h^4)).

    Args:
        vector_field: ``F(y)`` returning a pytree shaped like ``y`` (autonomous).
        y0: initial state, any pytree of floating arrays.
        t: final time, finite and >= 0.
        steps: number of RK4 steps (static: a new value recompiles).
        save_every: observe every ``save_every`` steps; ``steps`` must be a multiple of
            it.
        observe: ``observe(y)`` -> pytree recorded at the saved times; default the
            state.

    Returns:
        ``(y_T, ts, observations)``: the state at ``t``; the saved times
        ``ts = [0, save_every h, ..., t]`` (``steps // save_every + 1`` of them); and
        the observations stacked along a new leading axis of that length.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> yT, ts, _ = ntk.rk4(lambda y: -y, jnp.ones(1), t=1.0, steps=20)   # y' = -y
    >>> abs(float(yT[0]) - float(jnp.exp(-1.0))) < 1e-6
    True
    """
    check_callable(vector_field, "vector_field")
    y0 = _check_state(y0, "y0")
    t = check_scalar(t, "t", nonnegative=True)
    steps, save_every = _check_steps(steps, save_every)
    if observe is None:
        observe = _identity
    check_callable(observe, "observe")
    _check_vector_field(vector_field, y0)
    dtype = _state_dtype(y0)
    t_arr = jnp.asarray(t, dtype=dtype)
    yT, obs = _rk4_scan(_static(vector_field), _static(observe), y0, t_arr,
                        steps=steps, save_every=save_every)
    ts = t_arr * (jnp.arange(steps // save_every + 1, dtype=dtype)
                  * (save_every / steps))
    _check_diverged(yT, "rk4", "RK4 is stable for h lambda_max below about 2.8 "
                    "(lambda_max the largest eigenvalue of the Jacobian of "
                    "vector_field): increase steps")
    return yT, ts, obs


# --------------------------------------------------------------------------- training

def gradient_flow(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *, t: float,
                  steps: int, save_every: int = 1,
                  observe: Callable[[PyTree], PyTree] | None = None
                  ) -> tuple[PyTree, jax.Array, PyTree]:
    """Gradient flow ``d theta/dt = -grad loss_fn(theta)`` from ``params`` to time
    ``t``, integrated by :func:`rk4` with ``steps`` steps of size ``h = t / steps``.

    Args:
        loss_fn: ``loss_fn(params)`` -> scalar loss, e.g. :func:`square_loss_fn`.
        params: initial parameters ``theta(0)`` (a pytree of floating arrays).
        t, steps, save_every: as in :func:`rk4`.
        observe: ``observe(params)`` -> pytree recorded at the saved times; default the
            loss.

    Returns:
        ``(params_T, ts, observations)`` as in :func:`rk4`.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> loss = lambda w: 0.5 * jnp.sum((w - 1.0) ** 2)       # w(t) = 1 - exp(-t) from 0
    >>> wT, ts, losses = ntk.gradient_flow(loss, jnp.zeros(1), t=2.0, steps=50)
    >>> abs(float(wT[0]) - (1 - float(jnp.exp(-2.0)))) < 1e-7
    True
    """
    check_callable(loss_fn, "loss_fn")
    check_params(params, "params")
    _check_loss(loss_fn, params)
    observes_loss = observe is None
    if observes_loss:
        observe = loss_fn
    check_callable(observe, "observe")
    params_T, ts, obs = rk4(_NegGrad(_static(loss_fn)), params, t=t, steps=steps,
                            save_every=save_every, observe=observe)
    losses = obs if observes_loss else jnp.stack([loss_fn(params), loss_fn(params_T)])
    _check_loss_rise(losses, ts[1] - ts[0] if observes_loss else ts[-1], t / steps)
    return params_T, ts, obs


def _check_loss_rise(losses: jax.Array, dt: Any, h: Any) -> None:
    """Raise if the loss ever rises above its initial value: the exact gradient flow
    never increases it (``dl/dt = -||grad l||^2``), so a rise by more than ``1e-3 l(0)``
    (plus one rounding unit) means that the RK4 steps are unstable, even when the result
    is finite."""
    losses = jnp.asarray(losses)
    l0 = losses[0]
    tol = 1e-3 * jnp.abs(l0) + jnp.finfo(losses.dtype).eps
    if is_concrete(losses) and is_concrete(h):
        worst = int(np.argmax(np.asarray(losses)))
        if float(losses[worst]) > float(l0 + tol):
            raise ValueError(
                f"gradient_flow is unstable: the loss rose from {float(l0):.3g} at t = "
                f"0 to {float(losses[worst]):.3g} at t = {float(worst * dt):.3g} "
                "(gradient flow never increases the loss). The RK4 step h = t / steps "
                f"= {float(h):.3g} is too large: RK4 is stable for h lambda_max below "
                "about 2.8 (lambda_max the largest eigenvalue of the Hessian of "
                "loss_fn); increase steps")
    else:
        value_check(jnp.all(losses <= l0 + tol), "gradient_flow is unstable: the loss "
                    "rose above its initial value (gradient flow never increases the "
                    "loss); increase steps")


@partial(jax.jit, static_argnames=("loss_fn", "observe", "steps", "save_every"))
def _gd_scan(loss_fn: Callable, observe: Callable, params: PyTree, lr: jax.Array, *,
             steps: int, save_every: int) -> tuple[PyTree, PyTree]:
    grad_fn = jax.grad(loss_fn)

    def inner(p, _):
        g = grad_fn(p)
        return jax.tree_util.tree_map(lambda a, b, s: a - s.astype(a.dtype) * b, p, g,
                                      lr), None

    def outer(p, _):
        p, _ = jax.lax.scan(inner, p, None, length=save_every)
        return p, observe(p)

    pT, obs = jax.lax.scan(outer, params, None, length=steps // save_every)
    return pT, _stack_first(observe(params), obs)


def _check_lr(lr: Any, params: PyTree) -> PyTree:
    """``lr`` as a pytree shaped like ``params`` with one positive scalar per leaf."""
    treedef = jax.tree_util.tree_structure(params)
    if not isinstance(lr, (list, tuple, dict)):
        lr = check_scalar(lr, "lr", positive=True)
        dtype = _state_dtype(params)
        return jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(lr, dtype=dtype)] * treedef.num_leaves)
    if jax.tree_util.tree_structure(lr) != treedef:
        raise ValueError("lr must be a positive scalar or a pytree with the structure "
                         f"of params ({treedef}), got "
                         f"{jax.tree_util.tree_structure(lr)}")
    leaves = [check_scalar(s, "lr", positive=True)
              for s in jax.tree_util.tree_leaves(lr)]
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(s, dtype=jnp.result_type(p))
                  for s, p in zip(leaves, jax.tree_util.tree_leaves(params))])


def gradient_descent(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *,
                     lr: float, steps: int, save_every: int = 1,
                     observe: Callable[[PyTree], PyTree] | None = None
                     ) -> tuple[PyTree, jax.Array, PyTree]:
    """Full-batch gradient descent ``theta_{k+1} = theta_k - lr grad loss_fn(theta_k)``.

    After ``k`` steps the iterate approximates gradient flow at time ``t = k lr`` (error
    O(lr) for smooth losses).

    Args:
        loss_fn: ``loss_fn(params)`` -> scalar loss.
        params: initial parameters ``theta_0``.
        lr: step size ``eta > 0``; or a pytree with the structure of ``params`` holding
            one positive scalar step size per leaf (per-layer learning rates, e.g.
            :func:`ntk_companion.parameterizations.scaled_lr` for the maximal-update
            parameterization).
        steps: number of steps (static); ``save_every`` must divide it.
        observe: ``observe(params)`` -> pytree recorded at the saved steps; default the
            loss.

    Returns:
        ``(params_T, ks, observations)``: final parameters, the saved step indices
        ``ks = [0, save_every, ..., steps]`` (times ``ks * lr``), and the stacked
        observations.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> loss = lambda w: 0.5 * jnp.sum((w - 1.0) ** 2)       # w_k = 1 - (1 - lr)^k
    >>> wT, ks, losses = ntk.gradient_descent(loss, jnp.zeros(1), lr=0.5, steps=3)
    >>> float(wT[0]), ks.tolist()
    (0.875, [0, 1, 2, 3])
    """
    check_callable(loss_fn, "loss_fn")
    check_params(params, "params")
    lr_tree = _check_lr(lr, params)
    steps, save_every = _check_steps(steps, save_every)
    _check_loss(loss_fn, params)
    if observe is None:
        observe = loss_fn
    check_callable(observe, "observe")
    pT, obs = _gd_scan(_static(loss_fn), _static(observe), params, lr_tree,
                       steps=steps, save_every=save_every)
    ks = jnp.arange(0, steps + 1, save_every)
    lr_text = f"lr={lr:g}" if isinstance(lr, float) else "lr"
    _check_diverged(pT, "gradient_descent", f"{lr_text} is probably above the "
                    "stability limit 2 / lambda_max of the Hessian (for the square "
                    "loss of a linearized model, 2 / lambda_max(H) of the NTK Gram "
                    "matrix)")
    return pT, ks, obs


def square_loss_fn(apply_fn: Callable[[PyTree, jax.Array], jax.Array], x: jax.Array,
                   y: jax.Array) -> Callable[[PyTree], jax.Array]:
    """Return ``loss_fn(params) = 1/2 sum_i (apply_fn(params, x)_i - y_i)^2`` for fixed
    data, ready for :func:`gradient_flow` / :func:`gradient_descent`.

    ``x`` and ``y`` are validated once, here (feature dimension checked at the first
    call).

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> loss_fn = ntk.square_loss_fn(lambda w, x: x @ w, jnp.ones((2, 1)), jnp.zeros(2))
    >>> float(loss_fn(jnp.ones(1)))
    1.0
    """
    check_callable(apply_fn, "apply_fn")
    x = as_array(x, "x")
    check_finite(x, "x")
    y = as_array(y, "y")
    check_finite(y, "y")

    def loss_fn(params: PyTree) -> jax.Array:
        return square_loss(apply_fn, params, x, y)

    return loss_fn


def max_learning_rate(H: Any, *, n_entries: int = 1) -> float:
    r"""The largest stable step of gradient descent on the square loss of a linearized
    model with NTK Gram matrix ``H``: ``2 / lambda_max(H)`` for the sum loss (the
    residual obeys ``r <- (I - lr H) r``, which diverges along the top eigenvector once
    ``lr lambda_max > 2``). For a mean loss over ``N`` entries (``N = n k`` for ``k``
    outputs) pass ``n_entries=N``: the bound is then ``2 N / lambda_max``.

    Args:
        H: ``(n, n)`` symmetric positive semi-definite kernel (not all zero).
        n_entries: ``N >= 1``, the number of entries the loss averages over
            (1: sum loss).

    Returns:
        ``2 n_entries / lambda_max(H)`` as a Python float.

    >>> import jax.numpy as jnp
    >>> import ntk_companion as ntk
    >>> ntk.max_learning_rate(jnp.diag(jnp.array([4.0, 1.0])))
    0.5
    """
    H = as_array(H, "H")
    check_symmetric(H, "H")
    check_finite(H, "H")
    n_entries = check_int(n_entries, "n_entries", minimum=1)
    lam_max = float(np.max(np.linalg.eigvalsh(np.asarray(H, dtype=np.float64))))
    if not lam_max > 0:
        raise ValueError("H must have a positive eigenvalue (a nonzero kernel), got "
                         f"largest eigenvalue {lam_max:.3g}")
    return 2.0 * n_entries / lam_max
