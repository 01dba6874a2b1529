"""Datasets of the benchmarks and the SHINE paper's split.

=================  ==========================================================
``"20news"``       scikit-learn's vectorised 20 newsgroups, train and test
                   stacked (18,846 x 130,108), label -1 for targets 0-9 and +1
                   for 10-19. Needs scikit-learn's raw cache file
                   ``20news-bydate_py3.pkz`` in ``<data_home>/sklearn``.
``"real-sim"``     LIBSVM's real-sim (72,309 x 20,958) through libsvmdata,
                   cached in ``<data_home>/libsvm``.
``"breast-cancer"``  scikit-learn's breast cancer data, standardised (no network).
``"synthetic"``    a seeded sparse binary classification set (no network).
``"20news-multiclass"``  the same 20 newsgroups with their 20 classes (labels 0-19).
``"digits"``       scikit-learn's 8x8 digits (1,797 x 64, pixels scaled to
                   [0, 1], labels 0-9; no network).
=================  ==========================================================

Binary sets have labels in {-1, +1}; multiclass sets, class indices.

The data home is, in order: the ``data_home`` argument, the environment
variable ``HOAG_SHINE_DATA``, ``~/hoag_shine_data``; for 20news, scikit-learn's
own cache (``~/scikit_learn_data`` or ``$SCIKIT_LEARN_DATA``) is used when it
holds the file and the data home does not. Nothing is downloaded
unless ``download=True``: a missing file is an error that says where to put it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split

__all__ = ["DATASETS", "get_data_home", "load_dataset", "paper_split", "make_sparse_classification"]

DATASETS = ("20news", "real-sim", "breast-cancer", "synthetic", "20news-multiclass", "digits")

_20NEWS_FILE = "20news-bydate_py3.pkz"


def get_data_home(data_home=None) -> Path:
    """The folder the loaders read (and, with ``download=True``, write)."""
    if data_home is None:
        data_home = os.environ.get("HOAG_SHINE_DATA") or Path.home() / "hoag_shine_data"
    return Path(data_home).expanduser()


def make_sparse_classification(n_samples=5000, n_features=2000, *, density=0.01, noise=0.5,
                               random_state=0):
    """A seeded sparse binary classification set with unit-norm rows.

    Labels are ``sign(X w + noise * e)`` for a random ``w`` and Gaussian ``e``,
    in {-1, +1}; ``X`` is CSR with about ``density * n_features`` non-zeros per
    row (at least one), like bag-of-words data after tf-idf normalisation.

    Returns
    -------
    X : sparse matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    """
    rng = np.random.default_rng(random_state)
    nnz_row = np.maximum(rng.binomial(n_features, density, size=n_samples), 1)
    rows = np.repeat(np.arange(n_samples), nnz_row)
    # Column indices drawn with replacement; the rare repeats are merged.
    cols = rng.integers(0, n_features, size=rows.size)
    data = np.abs(rng.standard_normal(rows.size))
    X = sp.csr_matrix((data, (rows, cols)), shape=(n_samples, n_features))
    X.sum_duplicates()
    X.sort_indices()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.csr_matrix(sp.diags(1.0 / norms) @ X)
    w = rng.standard_normal(n_features) * np.sqrt(n_features * density)
    m = X @ w
    y = np.where(m - np.median(m) + noise * rng.standard_normal(n_samples) > 0, 1.0, -1.0)
    return X, y


def _load_20news(home: Path, download: bool, multiclass: bool = False):
    from sklearn.datasets import fetch_20newsgroups_vectorized, get_data_home as sk_data_home

    sk_home = home / "sklearn"
    theirs = Path(sk_data_home())  # scikit-learn's own cache (~/scikit_learn_data)
    if not (sk_home / _20NEWS_FILE).exists() and (theirs / _20NEWS_FILE).exists():
        sk_home = theirs
    if not download and not (sk_home / _20NEWS_FILE).exists():
        raise FileNotFoundError(
            f"The 20news cache is missing: put scikit-learn's raw 20 newsgroups cache "
            f"'{_20NEWS_FILE}' in {sk_home}/ (for instance copy it from a machine where "
            "fetch_20newsgroups() has run), point HOAG_SHINE_DATA or --data-home at a folder "
            "whose 'sklearn' subfolder holds it, or pass download=True (--download) to "
            "fetch it from the internet."
        )
    sk_home.mkdir(parents=True, exist_ok=True)
    try:
        bunch = fetch_20newsgroups_vectorized(subset="all", data_home=str(sk_home),
                                              download_if_missing=download)
    except OSError as exc:  # (URLError: offline, or the server refused)
        raise OSError(f"Downloading 20news failed ({getattr(exc, 'reason', exc)}): no network? "
                      f"Put scikit-learn's cache file '{_20NEWS_FILE}' in {sk_home}/ "
                      "instead.") from None
    X = sp.csr_matrix(bunch.data, dtype=np.float64)
    if multiclass:
        return X, np.asarray(bunch.target, dtype=np.int64)
    return X, np.where(bunch.target < 10, -1.0, 1.0)


def _load_real_sim(home: Path, download: bool):
    import libsvmdata

    dataset = libsvmdata.ALL_DATASETS["real-sim"]
    folder = home / "libsvm"
    files = [folder / "real-sim_X.npz", folder / "real-sim_y.npy"]
    if not download and not all(f.exists() for f in files):
        raise FileNotFoundError(
            f"The real-sim cache is missing: libsvmdata's files {files[0].name} and "
            f"{files[1].name} are expected in {folder}/ (libsvmdata writes them there after "
            "a download). Copy them from a machine with network access, point "
            "HOAG_SHINE_DATA or --data-home at the folder that holds 'libsvm/', or pass "
            "download=True (--download)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    # libsvmdata fixes its cache folder when imported; the dataset object's folder is
    # a public attribute, set here so that data_home is honoured.
    dataset.dataset_dir = folder
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        X, y = libsvmdata.fetch_dataset("real-sim")
    except OSError as exc:
        raise OSError(f"Downloading real-sim failed ({getattr(exc, 'reason', exc)}): no "
                      f"network? Put libsvmdata's cache files in {folder}/ instead.") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
    y = np.asarray(y, dtype=np.float64)
    return sp.csr_matrix(X, dtype=np.float64), np.where(y > 0, 1.0, -1.0)


def _load_breast_cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), np.where(y == 1, 1.0, -1.0)


def _load_digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y.astype(np.int64)


def load_dataset(name, *, data_home=None, download=False, **params):
    """Load a benchmark dataset as ``(X, y)``.

    Binary datasets have labels in {-1, +1}, the multiclass ones
    (``"20news-multiclass"``, ``"digits"``) class indices ``0 .. n_classes - 1``.

    Parameters
    ----------
    name : {"20news", "real-sim", "breast-cancer", "synthetic", "20news-multiclass", "digits"}
    data_home : str or Path, default=None
        Cache folder (see the module's documentation).
    download : bool, default=False
        Allow downloading a missing 20news or real-sim file.
    **params
        Parameters of :func:`make_sparse_classification` for ``"synthetic"``.

    Returns
    -------
    X : ndarray or sparse CSR matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    """
    if name != "synthetic" and params:
        raise ValueError(f"Dataset {name!r} takes no parameters, got {sorted(params)}.")
    home = get_data_home(data_home)
    if name in ("20news", "20news-multiclass"):
        return _load_20news(home, download, multiclass=name == "20news-multiclass")
    if name == "digits":
        return _load_digits()
    if name == "real-sim":
        return _load_real_sim(home, download)
    if name == "breast-cancer":
        return _load_breast_cancer()
    if name == "synthetic":
        return make_sparse_classification(**params)
    raise ValueError(f"Unknown dataset {name!r}; choose one of {DATASETS}.")


def paper_split(X, y, seed, *, test_size=0.1):
    """The SHINE paper's split: 90% training, the rest halved into held-out and validation.

    As in the reference code: ``train_test_split(X, y, test_size=0.1,
    random_state=seed)``, then the 10% are split in two halves with the same
    seed; the second half is the validation set (the outer objective), the
    first the held-out set (only reported).

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    seed : int
    test_size : float, default=0.1
        Share of the data split into held-out and validation halves (the
        paper's 0.1; a small dataset such as digits needs more, so that each
        class has enough validation samples).

    Returns
    -------
    X_train, y_train, X_val, y_val, X_heldout, y_heldout
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}.")
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=test_size, random_state=seed)
    X_ho, X_val, y_ho, y_val = train_test_split(X_rest, y_rest, test_size=0.5, random_state=seed)
    return X_tr, y_tr, X_val, y_val, X_ho, y_ho
