import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hoag_shine.datasets import load_dataset, make_sparse_classification, paper_split

SHARED_20NEWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "20news-bydate_py3.pkz"


def test_paper_split_sizes_and_disjointness():
    n = 1003
    X = np.arange(n, dtype=float)[:, None] * np.ones((1, 3))  # row i holds i
    y = np.where(np.arange(n) % 3 == 0, 1.0, -1.0)
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = paper_split(X, y, seed=4)
    assert len(X_tr) == n - int(np.ceil(0.1 * n))
    assert abs(len(X_val) - len(X_ho)) <= 1 and len(X_val) >= len(X_ho)
    ids = [set(A[:, 0].astype(int)) for A in (X_tr, X_val, X_ho)]
    assert sum(map(len, ids)) == n and set.union(*ids) == set(range(n))
    for A, b in ((X_tr, y_tr), (X_val, y_val), (X_ho, y_ho)):
        np.testing.assert_array_equal(b, y[A[:, 0].astype(int)])  # labels follow their rows
    # Seeded: the same seed gives the same split, another seed another one.
    np.testing.assert_array_equal(paper_split(X, y, 4)[2], X_val)
    assert not np.array_equal(paper_split(X, y, 5)[2], X_val)


def test_synthetic_is_seeded_sparse_and_balanced():
    X, y = make_sparse_classification(2000, 500, density=0.02, random_state=3)
    X2, y2 = make_sparse_classification(2000, 500, density=0.02, random_state=3)
    assert sp.isspmatrix_csr(X) and X.shape == (2000, 500)
    assert (X != X2).nnz == 0 and np.array_equal(y, y2)
    np.testing.assert_allclose(sp.linalg.norm(X, axis=1), 1.0)
    assert set(np.unique(y)) == {-1.0, 1.0} and 0.4 < np.mean(y > 0) < 0.6
    assert 0.015 < X.nnz / (2000 * 500) < 0.025
    X3, _ = load_dataset("synthetic", n_samples=50, n_features=20, random_state=1)
    assert X3.shape == (50, 20)


def test_breast_cancer_is_standardised():
    X, y = load_dataset("breast-cancer")
    assert X.shape == (569, 30)
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-12)
    assert set(np.unique(y)) == {-1.0, 1.0}


def test_digits_are_scaled_with_ten_classes():
    X, y = load_dataset("digits")
    assert X.shape == (1797, 64) and X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.unique(y), np.arange(10))


def test_paper_split_test_size():
    X, y = np.arange(400.0)[:, None], np.arange(400) % 4
    X_tr, _, X_val, _, X_ho, _ = paper_split(X, y, 0, test_size=0.5)
    assert (len(X_tr), len(X_val), len(X_ho)) == (200, 100, 100)
    with pytest.raises(ValueError, match="test_size must be in"):
        paper_split(X, y, 0, test_size=1.0)


def test_unknown_dataset_and_params():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="takes no parameters"):
        load_dataset("breast-cancer", n_samples=3)


def test_missing_20news_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"20news-bydate_py3\.pkz.*sklearn"):
        load_dataset("20news", data_home=tmp_path)


def test_missing_real_sim_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOAG_SHINE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"real-sim_X\.npz.*{tmp_path}"):
        load_dataset("real-sim")


def test_real_sim_loader_reads_libsvmdata_cache(tmp_path):
    """A small file in libsvmdata's cache layout (CSC features, raw +-1 labels)."""
    rng = np.random.default_rng(0)
    X = sp.random(40, 20958, density=0.001, format="csc", random_state=0)
    y = np.where(rng.random(40) > 0.5, 1.0, -1.0)
    folder = tmp_path / "libsvm"
    folder.mkdir()
    sp.save_npz(folder / "real-sim_X.npz", X)
    np.save(folder / "real-sim_y.npy", y)
    X2, y2 = load_dataset("real-sim", data_home=tmp_path)
    assert sp.isspmatrix_csr(X2) and X2.shape == (40, 20958)
    assert (X2 != X).nnz == 0
    np.testing.assert_array_equal(y2, y)


@pytest.mark.skipif(not SHARED_20NEWS.exists(), reason="needs ../shared/data (the 20news cache)")
def test_20news_from_the_shared_cache(tmp_path):
    (tmp_path / "sklearn").mkdir()
    shutil.copy(SHARED_20NEWS, tmp_path / "sklearn" / SHARED_20NEWS.name)
    X, y = load_dataset("20news", data_home=tmp_path)
    assert X.shape == (18846, 130108) and sp.isspmatrix_csr(X)
    assert set(np.unique(y)) == {-1.0, 1.0}
    # Targets 0-9 are -1: 9,645 documents (the first ten newsgroups of the corpus).
    assert int(np.sum(y < 0)) == 9645
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = paper_split(X, y, 0)
    assert (X_tr.shape[0], X_val.shape[0], X_ho.shape[0]) == (16961, 943, 942)
    # The 20-class version: the same rows, the binary labels are its targets < 10.
    Xm, ym = load_dataset("20news-multiclass", data_home=tmp_path)
    assert (Xm != X).nnz == 0
    np.testing.assert_array_equal(np.unique(ym), np.arange(20))
    np.testing.assert_array_equal(np.where(ym < 10, -1.0, 1.0), y)
