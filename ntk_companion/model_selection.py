r"""Kernel ridge classification on real data: folds, ridge selection, accuracy, digits.

A classifier from a kernel ``K``: regress the one-hot encoding ``Y`` of the labels
(``Y_ic = 1`` if ``label_i = c``, else 0) by kernel ridge regression and predict the
class of largest output,

    scores(X*) = K_* (K + rho I)^{-1} Y,        label(x*_m) = argmax_c scores_mc,

with ``rho = r tr(K) / n`` a ridge relative to the mean diagonal of the training kernel
(so that rescaling ``K`` does not change the classifier). Subtracting the same constant
from every column of ``Y`` adds the same vector to every column of the scores, so
centred and plain one-hot targets give the same labels. The relative ridge ``r`` is
chosen by ``k``-fold cross-validation on the training set (:func:`select_ridge`): for
each fold the training block is decomposed once, ``K_tr = V diag(lambda) V^T``, and
every ridge of the grid costs two matrix products,
``K_val,tr V diag(1 / (lambda + rho)) V^T Y_tr``.

:func:`load_digits_images` returns scikit-learn's bundled ``load_digits`` images (no
download) as ``(n, 8, 8, 1)`` arrays for the convolutional layers of
:mod:`ntk_companion.layers`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import as_array, check_finite, check_int, check_rank, check_test_train
from .regression import kernel_regression

__all__ = ["one_hot", "accuracy", "kfold_splits", "select_ridge", "RidgeSelection",
           "kernel_ridge_classify", "load_digits_images"]


def _labels(labels: Any, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape "
                         f"{arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise TypeError(f"{name} must hold integer class indices 0, 1, ..., got "
                            f"dtype {arr.dtype} with non-integer values")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices, got {arr.min()}")
    return arr


def _n_classes(labels: np.ndarray, n_classes: int | None) -> int:
    top = int(labels.max()) + 1 if labels.size else 0
    if n_classes is None:
        return max(top, 1)
    n_classes = check_int(n_classes, "n_classes", minimum=1)
    if top > n_classes:
        raise ValueError(f"labels contain class {top - 1}, but n_classes={n_classes} "
                         f"(classes are 0..n_classes-1)")
    return n_classes


def one_hot(labels: Any, n_classes: int | None = None) -> jax.Array:
    """One-hot encoding ``Y_ic = [labels_i = c]``, shape ``(n, n_classes)``.

    Args:
        labels: integer class indices ``0..n_classes-1``, shape ``(n,)``.
        n_classes: number of classes; ``None``: ``max(labels) + 1``.

    >>> import ntk_companion as ntk
    >>> ntk.one_hot([2, 0], 3).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    lab = _labels(labels)
    k = _n_classes(lab, n_classes)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return jnp.asarray(np.eye(k)[lab], dtype=dtype)


def accuracy(scores: Any, labels: Any) -> float:
    """Fraction of rows whose largest score is at the true class:
    ``(1/m) sum_m [argmax_c scores_mc = labels_m]``.

    Args:
        scores: ``(m, k)`` outputs of a classifier (e.g. :func:`kernel_ridge_classify`).
        labels: true classes, shape ``(m,)``.

    >>> import ntk_companion as ntk
    >>> ntk.accuracy([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], [0, 1, 1])
    0.6666666666666666
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError("scores must be 2-D of shape (m, n_classes), got shape "
                         f"{s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    lab = _labels(labels)
    if lab.shape[0] != s.shape[0] or s.shape[0] == 0:
        raise ValueError(f"labels must have one entry per row of scores ({s.shape[0]} "
                         f"> 0), got {lab.shape[0]}")
    if lab.max() >= s.shape[1]:
        raise ValueError(f"labels contain class {lab.max()}, but scores have only "
                         f"{s.shape[1]} columns")
    return float(np.mean(np.argmax(s, axis=1) == lab))


def kfold_splits(n: int, n_folds: int = 5, *, seed: int = 0
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` disjoint validation sets covering ``0..n-1`` (a seeded random
    permutation cut into parts whose sizes differ by at most one), each with the
    complementary training indices.

    Returns:
        A list of ``(train_idx, val_idx)`` pairs of sorted integer arrays; it can be
        passed as ``cv=`` to scikit-learn's model selection, so that every method is
        tuned on the same folds.

    >>> import ntk_companion as ntk
    >>> [(len(tr), len(va)) for tr, va in ntk.kfold_splits(7, 3)]
    [(4, 3), (5, 2), (5, 2)]
    """
    n = check_int(n, "n", minimum=2)
    n_folds = check_int(n_folds, "n_folds", minimum=2)
    if n_folds > n:
        raise ValueError(f"n_folds ({n_folds}) must not exceed the number of points n "
                         f"({n})")
    seed = check_int(seed, "seed", minimum=0)
    perm = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(perm, n_folds)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(part))
            for i, part in enumerate(parts)]


class RidgeSelection(NamedTuple):
    """Result of :func:`select_ridge`.

    Attributes:
        index: the chosen kernel (row of ``accuracy``; 0 for a single kernel).
        ridge: the chosen relative ridge ``r`` (``rho = r tr(K_train) / n``).
        accuracy: mean validation accuracy, shape ``(n_kernels, n_ridges)``.
        error: mean validation square error ``||scores - Y||^2 / m``, same shape (breaks
            ties of accuracy).

    >>> import numpy as np, ntk_companion as ntk
    >>> x = np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2])
    >>> K = np.exp(-(x[:, None] - x[None, :]) ** 2)
    >>> sel = ntk.select_ridge(np.stack([K, K ** 2]), [0, 0, 0, 1, 1, 1], [1e-3, 1.0],
    ...                        folds=ntk.kfold_splits(6, 3))
    >>> sel.index in (0, 1), sel.ridge in (1e-3, 1.0), sel.accuracy.shape
    (True, True, (2, 2))
    """

    index: int
    ridge: float
    accuracy: np.ndarray
    error: np.ndarray


def _check_kernel_stack(K: Any) -> np.ndarray:
    arr = np.asarray(as_array(K, "K"), dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError("K must be a square kernel (n, n) or a stack (n_kernels, n, "
                         f"n), got shape {np.shape(K)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("K contains NaN or infinite values")
    return arr


def select_ridge(K: Any, labels: Any, ridges: Sequence[float], *,
                 folds: Sequence[tuple[Any, Any]],
                 n_classes: int | None = None) -> RidgeSelection:
    r"""Choose a kernel and a relative ridge by ``k``-fold cross-validated accuracy of
    :func:`kernel_ridge_classify`.

    For each fold ``(tr, va)``, candidate kernel ``K`` and relative ridge ``r``, the
    classifier trained on ``tr`` with ``rho = r tr(K_tr,tr) / |tr|`` is scored on
    ``va``; the pair of largest mean accuracy wins, ties broken by the smaller mean
    square error of the scores against the one-hot targets, then by the larger ridge.
    Each training block is decomposed once, ``K_tr,tr = V diag(lambda) V^T`` (float64,
    eigenvalues clipped at 0, which removes rounding-level negative ones of a float32
    kernel), so the whole grid costs one decomposition per fold and kernel.

    Args:
        K: the kernel on all training points, ``(n, n)``, or a stack
            ``(n_kernels, n, n)`` of candidates (e.g. depths or lengthscales) to choose
            from.
        labels: classes ``0..n_classes-1`` of the ``n`` points.
        ridges: relative ridges ``r > 0`` (e.g. ``10.0 ** np.arange(-10, 1)``).
        folds: ``(train_idx, val_idx)`` pairs, indices into ``0..n-1``
            (:func:`kfold_splits`).
        n_classes: number of classes (default ``max(labels) + 1``).

    Returns:
        :class:`RidgeSelection` ``(index, ridge, accuracy, error)``.

    >>> import numpy as np, ntk_companion as ntk
    >>> x = np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2])
    >>> K = np.exp(-(x[:, None] - x[None, :]) ** 2)
    >>> sel = ntk.select_ridge(K, [0, 0, 0, 1, 1, 1], [1e-3, 1.0],
    ...                        folds=ntk.kfold_splits(6, 3))
    >>> sel.accuracy.shape, float(sel.accuracy.max())
    ((1, 2), 1.0)
    """
    Ks = _check_kernel_stack(K)
    n = Ks.shape[1]
    lab = _labels(labels)
    if lab.shape[0] != n:
        raise ValueError(f"labels must have one entry per row of K ({n}), got "
                         f"{lab.shape[0]}")
    k = _n_classes(lab, n_classes)
    r = np.asarray(ridges, dtype=np.float64).reshape(-1)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError("ridges must be a non-empty sequence of positive finite "
                         f"numbers, got {list(np.asarray(ridges).reshape(-1))}")
    folds = list(folds)
    if not folds:
        raise ValueError("folds must contain at least one (train_idx, val_idx) pair")
    Y = np.eye(k)[lab]
    acc = np.zeros((Ks.shape[0], r.size))
    err = np.zeros_like(acc)
    for j, fold in enumerate(folds):
        try:
            tr, va = (np.asarray(f, dtype=np.int64).reshape(-1) for f in fold)
        except (TypeError, ValueError) as e:
            raise TypeError(f"folds[{j}] must be a pair (train_idx, val_idx) of "
                            f"integer index arrays") from e
        if tr.size == 0 or va.size == 0 or min(tr.min(), va.min()) < 0 \
                or max(tr.max(), va.max()) >= n:
            raise ValueError(f"folds[{j}]: indices must be non-empty and in 0..{n - 1}")
        if np.intersect1d(tr, va).size:
            raise ValueError(f"folds[{j}]: training and validation indices overlap")
        for c, Kc in enumerate(Ks):
            lam, V = np.linalg.eigh(Kc[np.ix_(tr, tr)])
            lam = np.clip(lam, 0.0, None)
            scale = np.trace(Kc[np.ix_(tr, tr)]) / tr.size
            A = Kc[np.ix_(va, tr)] @ V
            B = V.T @ Y[tr]
            for i, ri in enumerate(r):
                s = A @ (B / (lam + ri * scale)[:, None])
                acc[c, i] += np.mean(np.argmax(s, axis=1) == lab[va]) / len(folds)
                err[c, i] += np.sum((s - Y[va]) ** 2) / va.size / len(folds)
    best = max(((acc[c, i], -err[c, i], r[i], c, i) for c in range(acc.shape[0])
                for i in range(r.size)))
    return RidgeSelection(index=int(best[3]), ridge=float(best[2]), accuracy=acc,
                          error=err)


def kernel_ridge_classify(K_train: Any, labels: Any, K_test_train: Any, ridge: float, *,
                          n_classes: int | None = None) -> jax.Array:
    r"""Scores ``K_* (K + rho I)^{-1} Y`` of kernel ridge regression on the one-hot
    targets ``Y`` (:func:`one_hot`), with the relative ridge ``rho = ridge tr(K) / n``
    (:func:`~ntk_companion.kernel_regression` with ``ridge_relative=True``, a Cholesky
    solve); the predicted class of a test point is the column of its largest score
    (:func:`accuracy`).

    Args:
        K_train: ``(n, n)`` kernel on the training inputs.
        labels: their classes, shape ``(n,)``.
        K_test_train: ``(m, n)`` kernel between test and training inputs.
        ridge: relative ridge ``>= 0`` (as chosen by :func:`select_ridge`).
        n_classes: number of classes (default ``max(labels) + 1``).

    Returns:
        Scores of shape ``(m, n_classes)``.

    >>> import numpy as np, ntk_companion as ntk
    >>> K = np.array([[1.0, 0.2], [0.2, 1.0]])
    >>> s = ntk.kernel_ridge_classify(K, [0, 1], K, 1e-6)
    >>> ntk.accuracy(s, [0, 1])
    1.0
    """
    K = as_array(K_train, "K_train")
    check_rank(K, "K_train", 2)
    check_finite(K, "K_train")
    lab = _labels(labels)
    if lab.shape[0] != K.shape[0]:
        raise ValueError("labels must have one entry per row of K_train "
                         f"({K.shape[0]}), got {lab.shape[0]}")
    Ks = check_test_train(K_test_train, K.shape[0])
    Y = one_hot(lab, _n_classes(lab, n_classes)).astype(jnp.result_type(K, Ks))
    return kernel_regression(K, Y, Ks, ridge, ridge_relative=True)


def load_digits_images(n: int | None = None, *, seed: int = 0
                       ) -> tuple[jax.Array, np.ndarray]:
    r"""The ``8 x 8`` handwritten digits bundled with scikit-learn (``load_digits``,
    1797 images, 10 classes; no download), as images ``(n, 8, 8, 1)`` for the
    convolutional layers, each standardized on its own: ``x <- (x - mean(x)) / std(x)``
    over its 64 pixels, so ``|x|^2 / 64 = 1`` (the input kernel of the recursion has
    unit diagonal) and no statistic is shared between images (no leak from test to
    training sets).

    Args:
        n: number of images, drawn without replacement in a seeded random order;
            ``None``: all 1797 in the order of the data set.
        seed: seed of the draw.

    Returns:
        ``(x, labels)``: ``x`` of shape ``(n, 8, 8, 1)`` (float64 when x64 is enabled),
        ``labels`` integers ``0..9`` of shape ``(n,)``. ``x.reshape(n, 64)`` is the
        same image as a vector, for fully connected networks.

    >>> import ntk_companion as ntk
    >>> x, labels = ntk.load_digits_images(5)
    >>> x.shape, labels.shape, round(float((x[0] ** 2).mean()), 6)
    ((5, 8, 8, 1), (5,), 1.0)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is in the extras
        raise ImportError("load_digits_images needs scikit-learn: pip install "
                          "scikit-learn") from err
    data = load_digits()
    images, target = data.images.astype(np.float64), data.target.astype(np.int64)
    total = images.shape[0]
    if n is None:
        idx = np.arange(total)
    else:
        n = check_int(n, "n", minimum=1)
        if n > total:
            raise ValueError(f"n must be at most {total} (the number of digits), got "
                             f"{n}")
        seed = check_int(seed, "seed", minimum=0)
        idx = np.random.default_rng(seed).permutation(total)[:n]
    x = images[idx].reshape(idx.size, 64)
    x = x - x.mean(axis=1, keepdims=True)
    x = x / x.std(axis=1, keepdims=True)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return jnp.asarray(x.reshape(idx.size, 8, 8, 1), dtype=dtype), target[idx]
