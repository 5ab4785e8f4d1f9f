"""Kernel ridge classification helpers: folds, ridge selection, accuracy, digits
loader."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_companion as ntk

jax.config.update("jax_enable_x64", True)


def _blobs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    x = centres[labels] + 0.4 * rng.standard_normal((n, 2))
    return x, labels


def test_one_hot_and_accuracy():
    Y = ntk.one_hot(np.array([1, 0, 2]), 4)
    assert Y.shape == (3, 4) and np.allclose(np.asarray(Y).sum(1), 1)
    assert ntk.accuracy(Y, [1, 0, 2]) == 1.0
    assert ntk.accuracy(np.asarray(Y)[:, ::-1], [1, 0, 2]) == 0.0
    assert ntk.one_hot([0, 2]).shape == (2, 3)


def test_kfold_splits_partition():
    folds = ntk.kfold_splits(23, 5, seed=3)
    assert len(folds) == 5
    val = np.concatenate([va for _, va in folds])
    assert np.array_equal(np.sort(val), np.arange(23))
    for tr, va in folds:
        assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == 23
    assert all(np.array_equal(a[1], b[1])
               for a, b in zip(folds, ntk.kfold_splits(23, 5, seed=3)))


def test_classify_matches_regression_and_centring():
    x, labels = _blobs()
    K = np.asarray(ntk.gaussian_kernel(x, x, 1.0))
    tr, te = np.arange(30), np.arange(30, 40)
    s = ntk.kernel_ridge_classify(K[np.ix_(tr, tr)], labels[tr], K[np.ix_(te, tr)],
                                  1e-3)
    Y = np.eye(3)[labels[tr]]
    ref = ntk.kernel_regression(K[np.ix_(tr, tr)], Y, K[np.ix_(te, tr)], 1e-3,
                                ridge_relative=True)
    assert np.allclose(s, ref, rtol=1e-12, atol=1e-12)
    centred = ntk.kernel_regression(K[np.ix_(tr, tr)], Y - 1 / 3, K[np.ix_(te, tr)],
                                    1e-3, ridge_relative=True)
    assert np.array_equal(np.argmax(s, 1), np.argmax(np.asarray(centred), 1))
    assert ntk.accuracy(s, labels[te]) == 1.0


def test_select_ridge_matches_direct_solves():
    """The eigendecomposition path gives the accuracies of direct Cholesky solves."""
    x, labels = _blobs(30, seed=1)
    Ks = np.stack([np.asarray(ntk.gaussian_kernel(x, x, ell)) for ell in (0.3, 1.0)])
    ridges = [1e-6, 1e-2, 1.0]
    folds = ntk.kfold_splits(30, 3, seed=0)
    sel = ntk.select_ridge(Ks, labels, ridges, folds=folds)
    for c in range(2):
        for i, r in enumerate(ridges):
            accs = [ntk.accuracy(ntk.kernel_ridge_classify(
                Ks[c][np.ix_(tr, tr)], labels[tr], Ks[c][np.ix_(va, tr)], r,
                n_classes=3), labels[va]) for tr, va in folds]
            assert sel.accuracy[c, i] == pytest.approx(np.mean(accs), abs=1e-12)
    best = sel.accuracy.max()
    assert sel.accuracy[sel.index, ridges.index(sel.ridge)] == best


def test_select_ridge_prefers_the_right_kernel():
    x, labels = _blobs(45, seed=2)
    good = np.asarray(ntk.gaussian_kernel(x, x, 1.0))
    rng = np.random.default_rng(0)
    junk = rng.standard_normal((45, 5))
    bad = junk @ junk.T
    sel = ntk.select_ridge(np.stack([bad, good]), labels, [1e-3, 1e-1],
                           folds=ntk.kfold_splits(45, 5))
    assert sel.index == 1 and sel.accuracy[1].max() > 0.9


def test_load_digits_images():
    x, labels = ntk.load_digits_images(12, seed=4)
    assert x.shape == (12, 8, 8, 1) and labels.shape == (12,)
    flat = np.asarray(x).reshape(12, 64)
    assert np.allclose(flat.mean(1), 0, atol=1e-12)
    assert np.allclose((flat ** 2).mean(1), 1, atol=1e-12)
    x2, labels2 = ntk.load_digits_images(12, seed=4)
    assert (np.array_equal(np.asarray(x), np.asarray(x2))
            and np.array_equal(labels, labels2))
    xa, la = ntk.load_digits_images()
    assert xa.shape == (1797, 8, 8, 1) and set(la.tolist()) == set(range(10))


@pytest.mark.parametrize("call, match", [
    (lambda: ntk.one_hot([[0, 1]]), "labels must be a 1-D"),
    (lambda: ntk.one_hot([0.5, 1.0]), "integer class indices"),
    (lambda: ntk.one_hot([-1, 0]), "non-negative"),
    (lambda: ntk.one_hot([0, 3], 2), "n_classes=2"),
    (lambda: ntk.accuracy(np.zeros(3), [0, 1, 2]), "scores must be 2-D"),
    (lambda: ntk.accuracy(np.zeros((3, 2)), [0, 1]), "one entry per row"),
    (lambda: ntk.accuracy(np.zeros((2, 2)), [0, 2]), "only 2 columns"),
    (lambda: ntk.accuracy(np.full((1, 2), np.nan), [0]), "NaN"),
    (lambda: ntk.kfold_splits(5, 6), "n_folds"),
    (lambda: ntk.kfold_splits(5, 1), "n_folds"),
    (lambda: ntk.select_ridge(np.eye(4), [0, 1, 0, 1], [0.0],
                              folds=ntk.kfold_splits(4, 2)), "ridges"),
    (lambda: ntk.select_ridge(np.eye(4), [0, 1, 0], [1.0],
                              folds=ntk.kfold_splits(4, 2)), "one entry per row of K"),
    (lambda: ntk.select_ridge(np.ones((4, 3)), [0, 1, 0, 1], [1.0],
                              folds=ntk.kfold_splits(4, 2)), "K must be a square"),
    (lambda: ntk.select_ridge(np.eye(4), [0, 1, 0, 1], [1.0], folds=[]),
     "at least one"),
    (lambda: ntk.select_ridge(np.eye(4), [0, 1, 0, 1], [1.0],
                              folds=[([0, 1], [1, 2])]), "overlap"),
    (lambda: ntk.select_ridge(np.eye(4), [0, 1, 0, 1], [1.0],
                              folds=[([0, 1], [7])]), "in 0..3"),
    (lambda: ntk.kernel_ridge_classify(np.eye(3), [0, 1], np.eye(3), 0.1),
     "one entry per row of K_train"),
    (lambda: ntk.load_digits_images(2000), "at most 1797"),
])
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
