"""ntk_companion: Neural Tangent Kernels in JAX, the companion package of the NTK
course.

Conventions (used by every function)
------------------------------------
* Scalar-output model ``f(x; theta)``; training set ``(x_i, y_i)``, ``i = 1..n``, inputs
  stacked as ``X`` of shape ``(n, d)``, targets ``y`` of shape ``(n,)``.
* Loss: the *sum* ``l(theta) = 1/2 sum_i (f(x_i; theta) - y_i)^2`` (not the mean).
* Gradient flow ``d theta/dt = -grad l(theta)``; outputs ``u_i(t) = f(x_i; theta(t))``,
  residual ``r(t) = u(t) - y``.
* Jacobian ``G`` (n x P), ``G_ij = d f(x_i; theta) / d theta_j`` with the parameters
  flattened in ``jax.flatten_util.ravel_pytree`` order; NTK Gram matrix ``H = G G^T``;
  then ``dr/dt = -H r`` and ``dl/dt = -r^T H r <= -2 lambda_min(H) l``.
* Libraries that use the mean loss ``||r||^2 / (2N)`` over the ``N`` entries of the
  residual run on the time scale ``t_mean = N t``: ``N = n`` for scalar targets and
  ``N = n k`` for targets of shape ``(n, k)``, so time ``t_mean`` there is
  ``t = t_mean / (n k)`` here.
* NTK parameterization of a dense layer with fan-in ``n_in``:
  ``z = (W_std / sqrt(n_in)) W a + b_std b`` with ``W, b`` standard normal at
  initialization (the standard parameterization, ``z = W a + b`` with
  ``W ~ N(0, W_std^2/n_in)``, ``b ~ N(0, b_std^2)``, is offered too).
* Functions work in the dtype they are given (enable ``jax_enable_x64`` for float64),
  validate their inputs (``ValueError``/``TypeError`` naming the argument) and can be
  used under ``jax.jit``: the static checks (types, shapes, options) run at trace time;
  the checks on values (NaN, negative times or scales, indefinite or singular kernels,
  overflow) are staged with ``jax.experimental.checkify`` inside ``with jit_checks():``
  and skipped under ``jit`` otherwise.

API overview
------------
models
    ``MLP(hidden, activation, W_std, b_std, parameterization, out_dim)``: fully
    connected network with ``.init(key, d_in)``, ``.apply(params, x)``,
    ``.num_params(d_in)``, ``.depth``; ``get_activation(name_or_fn)``;
    ``nested_params(params, m)``: the network of the first m units of every hidden
    layer.
losses
    ``square_loss(apply_fn, params, x, y)`` = ``1/2 ||f(x) - y||^2``;
    ``residual(apply_fn, params, x, y)`` = ``f(x) - y``.
training
    ``rk4(vector_field, y0, t=, steps=)``: classical Runge-Kutta for ``y' = F(y)`` on a
    pytree; ``gradient_flow(loss_fn, params, t=, steps=)``: ``d theta/dt = -grad l`` by
    RK4; ``gradient_descent(loss_fn, params, lr=, steps=)``:
    ``theta <- theta - lr grad l`` (step ``k`` is time ``t = k lr``; ``lr`` a scalar or
    per-leaf step sizes); ``square_loss_fn(apply_fn, x, y)`` builds ``l``;
    ``max_learning_rate(H)`` = 2 / lambda_max(H), the stability limit of gradient
    descent.
empirical
    ``jacobian(apply_fn, params, x)`` = G; ``empirical_ntk(apply_fn, params, x1, x2)`` =
    G(x1) G(x2)^T (methods "jacobian", "ntvp", "structured" (an MLP's kernel layer by
    layer, no Jacobian; module ``layer_ntk``), "auto"; ``block_size=`` for tiles);
    ``ntk_vp(apply_fn, params, x, v)`` = H v without forming H.
linearize
    ``linearize(apply_fn, params0)`` -> ``f_lin(params, x) = f(x; theta_0) +
    G(x; theta_0)(theta - theta_0)``, the first-order Taylor model.
diagnostics
    ``flatten``, ``min_eigenvalue``, ``eigh_descending``, ``spectral_components``
    (``V^T r``), ``relative_change`` (``||A - A0||_F / ||A0||_F``), ``weight_movement``
    (``||theta - theta0|| / ||theta0||``), ``fit_power_law`` (slope of log y against log
    x).
data
    Deterministic data sets: ``unit_circle``, ``circle_points``, ``regression_1d``,
    ``target_fn``, ``gaussian_inputs``.
plotting
    ``use_style()`` (house style for figures), ``loglog_with_fit``, ``COLORS``.
analytic
    ``analytic_kernels(x1, x2, depth=, activation=, W_std=, b_std=)`` ->
    ``Kernels(nngp, ntk)``: the infinite-width NNGP kernel and NTK of ``MLP`` (NTK
    parameterization, width -> infinity) by the layer recursion; closed forms for relu,
    erf and identity, quadrature (``order=``, ``quadrature="hermite"`` or ``"polar"``)
    for other activations; computed by tiles (``block_size=``) in bounded memory.
layers
    Compositional networks (module ``ntk_companion.layers``): ``Dense``, ``Conv``
    (1-D/2-D, strides, SAME/VALID/CIRCULAR), ``Activation``, ``AvgPool``,
    ``GlobalAvgPool``, ``Flatten``, ``LayerNorm``, ``Identity``, ``serial``,
    ``parallel_sum``, ``repeat``; every layer has ``.init``, ``.apply``, ``.kernels``
    (infinite-width NNGP and NTK with spatial covariances) and a structured empirical
    NTK through ``empirical_ntk``.
attention
    ``GlobalSelfAttention(out_channels, key_channels=, value_channels=, n_heads=,
    scaling=)``: multi-head self-attention over all positions with the exact
    infinite-width kernel of 1/d_k ("linear") logit scaling (Hron et al. 2020).
sharding
    With several devices (or hosts, after ``jax.distributed.initialize()``) the rows of
    the kernels are sharded over them; ``use_devices(devices)`` chooses which.
dynamics
    ``residual_flow(H, r0, t)`` = exp(-H t) r0;
    ``predict(K_train, y, t, K_test_train=, f0_train=, f0_test=)`` ->
    ``Prediction(train, test)``: outputs of the linearized model trained by gradient
    flow to time ``t`` (scalar, 1-D array or ``inf``, where a singular ``K`` gives the
    minimum-norm interpolant); ``loss_bound(l0, lambda_min, t)`` =
    l0 exp(-2 lambda_min t); ``train_loss_curve(K_train, y, t)`` = 1/2 ||r(t)||^2.
ensemble
    ``predict_ensemble(k_train, y, t, k_test_train=, k_test=, get=, diag_reg=,
    diag_reg_relative=)`` -> ``Gaussian(mean, cov)``: the distribution over
    initializations of infinitely wide networks trained by gradient flow (NTK, Lee et
    al. 2019) or of the readout-only / Bayesian NNGP posterior, at time ``t`` or
    ``inf``;
    ``init_ensemble(model, keys, d_in)``: one initialization per key, stacked;
    ``to_standard(model, params)``: NTK -> standard parameterization (same function);
    ``standard_ntk_factors(model, params)``: D with K_SP = G D G^T;
    ``excess_kurtosis(samples)`` -> (kurtosis, standard error).
monte_carlo
    ``monte_carlo_kernels(init_fn, apply_fn, key, x1, x2, n_samples=)`` -> ``Kernels``:
    the NNGP kernel and NTK of any finite network averaged over initializations, by
    tiles.
regression
    ``kernel_regression(K_train, y, K_test_train, ridge)`` = K_* (K + ridge I)^{-1} y by
    a Cholesky solve (a non-positive-definite ``K`` raises and suggests a ridge);
    ``gaussian_kernel(x1, x2, lengthscale)`` = exp(-|x - x'|^2 / (2 l^2)).
random_features
    ``random_features(x, W)`` = sigma(x W^T / sqrt(d)) / sqrt(N)
    (an (n, N) feature matrix); ``min_norm_fit(Phi, y)`` = Phi^+ y and
    ``ridge_fit(Phi, y, ridge)`` = (Phi^T Phi + ridge I)^{-1} Phi^T y, both by SVD;
    ``marchenko_pastur_edges(n, N)``: the spectral edges (1 -+ sqrt(n/N))^2 of Phi Phi^T
    for Gaussian Phi, Tracy-Widom scales.
spectral
    ``zonal_eigenvalues(d, k_max, profile or depth=, activation=, ..., kernel=)``: the
    eigenvalues mu_k of a dot-product kernel on the sphere (Funk-Hecke quadrature of the
    profile ``zonal_profile``), of multiplicity ``harmonic_multiplicity(d, k)``, with
    the Gegenbauer polynomials ``gegenbauer(t, k_max, d)``; ``eigenlearning(eigenvalues,
    target_power, n, ridge=, noise=)`` -> ``LearningCurve``: the predicted test error of
    kernel ridge regression against ``n`` (effective regularization kappa).
model_selection
    ``kernel_ridge_classify(K_train, labels, K_test_train, ridge)``: scores
    ``K_* (K + rho I)^{-1} Y`` on one-hot targets (relative ridge);
    ``accuracy(scores, labels)``; ``one_hot``; ``kfold_splits(n, n_folds, seed=)``;
    ``select_ridge(K, labels, ridges, folds=)`` -> ``RidgeSelection``: kernel and ridge
    by cross-validated accuracy; ``load_digits_images(n, seed=)``: scikit-learn's 8x8
    digits as ``(n, 8, 8, 1)``.
"""
# One import statement per module, and one group of the same names in ``__all__``
# below.
from . import plotting
from . import sharding
from ._validation import jit_checks
from . import layers
from .models import MLP, get_activation, nested_params
from . import parameterizations
from .parameterizations import (ABCExponents, abc_exponents, hidden_features,
                                layer_multipliers, lr_multipliers, scaled_lr)
from .losses import residual, square_loss
from .training import (gradient_descent, gradient_flow, max_learning_rate, rk4,
                       square_loss_fn)
from .empirical import empirical_ntk, jacobian, ntk_vp
from .linearize import linearize
from .diagnostics import (eigh_descending, fit_power_law, flatten, min_eigenvalue,
                          relative_change, spectral_components, weight_movement)
from .data import circle_points, gaussian_inputs, regression_1d, target_fn, unit_circle
from .analytic import Kernels, analytic_kernels
from .layers import (Activation, AvgPool, Conv, Dense, Flatten, GlobalAvgPool, Identity,
                     KernelState, Layer, LayerNorm, parallel_sum, repeat,
                     serial)
from .attention import GlobalSelfAttention
from .dynamics import Prediction, loss_bound, predict, residual_flow, train_loss_curve
from .ensemble import (Gaussian, excess_kurtosis, init_ensemble, predict_ensemble,
                       standard_ntk_factors, to_standard)
from .monte_carlo import monte_carlo_kernels
from .regression import gaussian_kernel, kernel_regression
from .random_features import (MPEdges, marchenko_pastur_edges, min_norm_fit,
                              random_features, ridge_fit)
from .spectral import (LearningCurve, eigenlearning, gegenbauer, harmonic_multiplicity,
                       zonal_eigenvalues, zonal_profile)
from .plotting import (COLORS, COLUMN_WIDTH_PX, MAX_FIGURE_WIDTH_IN, loglog_with_fit,
                       use_style)
from .model_selection import (RidgeSelection, accuracy, kernel_ridge_classify,
                              kfold_splits, load_digits_images, one_hot, select_ridge)

__all__ = [
    "plotting",
    "sharding",
    "jit_checks",
    "MLP", "get_activation", "nested_params",
    "parameterizations",
    "ABCExponents", "abc_exponents", "hidden_features", "layer_multipliers",
    "lr_multipliers", "scaled_lr",
    "residual", "square_loss",
    "gradient_descent", "gradient_flow", "max_learning_rate", "rk4", "square_loss_fn",
    "empirical_ntk", "jacobian", "ntk_vp",
    "linearize",
    "eigh_descending", "fit_power_law", "flatten", "min_eigenvalue", "relative_change",
    "spectral_components", "weight_movement",
    "circle_points", "gaussian_inputs", "regression_1d", "target_fn", "unit_circle",
    "Kernels", "analytic_kernels",
    "Activation", "AvgPool", "Conv", "Dense", "Flatten", "GlobalAvgPool", "Identity",
    "KernelState", "Layer", "LayerNorm", "parallel_sum", "repeat", "serial",
    "GlobalSelfAttention",
    "Prediction", "loss_bound", "predict", "residual_flow", "train_loss_curve",
    "Gaussian", "excess_kurtosis", "init_ensemble", "predict_ensemble",
    "standard_ntk_factors", "to_standard",
    "monte_carlo_kernels",
    "kernel_regression", "gaussian_kernel",
    "min_norm_fit", "random_features", "ridge_fit",
    "MPEdges", "marchenko_pastur_edges",
    "LearningCurve", "eigenlearning", "gegenbauer", "harmonic_multiplicity",
    "zonal_eigenvalues", "zonal_profile",
    "COLORS", "COLUMN_WIDTH_PX", "MAX_FIGURE_WIDTH_IN", "loglog_with_fit", "use_style",
    "RidgeSelection", "accuracy", "kernel_ridge_classify", "kfold_splits",
    "load_digits_images", "one_hot", "select_ridge",
]
