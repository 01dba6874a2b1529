"""Shared fixtures and an independent reference implementation for the tests.

The reference solves the inner problems with a damped Newton method on dense
matrices written out here from the formulas, so that the library's own
objective, gradient, Hessian products and L-BFGS are checked against code
that shares none of them.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """Reference fits (scikit-learn's, dense solves) with one BLAS thread: with
    OpenBLAS's default two fighting for two cores the suite took 5.5 min instead of 2."""
    with threadpool_limits(limits=1):
        yield


def make_word_counts(n_samples=600, n_features=2000, *, seed=0):
    """Sparse binary data whose columns occur with power-law frequencies, as words do
    (a few in half the rows, most in a handful): ``(X, y)``, ``X`` CSR."""
    rng = np.random.default_rng(seed)
    freq = np.minimum(0.5, 2.0 / np.arange(1, n_features + 1) ** 0.8)
    X = sp.csr_matrix((rng.random((n_samples, n_features)) < freq)
                      * rng.random((n_samples, n_features)))
    m = X @ (2 * rng.normal(size=n_features)) + 0.5 * rng.normal(size=n_samples)
    return X, (m > np.median(m)).astype(int)


def make_classification_data(n_samples=150, n_features=12, *, seed=0, density=None,
                             noise=1.0, labels=(0, 1)):
    """Noisy linearly generated binary data (not separable), dense or sparse."""
    rng = np.random.default_rng(seed)
    if density is None:
        X = rng.standard_normal((n_samples, n_features))
    else:
        X = sp.random(n_samples, n_features, density=density, random_state=seed,
                      data_rvs=rng.standard_normal, format="csr")
    w = rng.standard_normal(n_features)
    m = np.asarray(X @ w).ravel() + noise * rng.standard_normal(n_samples)
    y = np.where(m > 0, labels[1], labels[0])
    return X, y


def split(X, y, n_train):
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _design(X, fit_intercept):
    A = _dense(X)
    return np.hstack([A, np.ones((A.shape[0], 1))]) if fit_intercept else A


def _pen(n, fit_intercept, lam):
    d = np.full(n, lam)
    if fit_intercept:
        d[-1] = 0.0
    return d


def ref_logistic_solution(X, y01, alpha, fit_intercept):
    """Newton's method on the L2-regularised logistic loss (labels 0/1)."""
    A = _design(X, fit_intercept)
    b = np.where(y01 == y01.max(), 1.0, -1.0)
    pen = _pen(A.shape[1], fit_intercept, np.exp(alpha))
    w = np.zeros(A.shape[1])
    for _ in range(100):
        m = A @ w
        grad = A.T @ (-b * expit(-b * m)) + pen * w
        D = expit(m) * expit(-m)
        H = A.T @ (D[:, None] * A) + np.diag(pen)
        step = np.linalg.solve(H, grad)
        w -= step
        if np.linalg.norm(step) < 1e-14 * (1 + np.linalg.norm(w)):
            break
    return w


def ref_logistic_outer(X_tr, y_tr, X_val, y_val, alpha, fit_intercept):
    w = ref_logistic_solution(X_tr, y_tr, alpha, fit_intercept)
    A = _design(X_val, fit_intercept)
    b = np.where(y_val == y_tr.max(), 1.0, -1.0)
    return float(np.logaddexp(0.0, -b * (A @ w)).sum())


def ref_ridge(X_tr, y_tr, X_val, y_val, alpha, fit_intercept):
    """Closed form: outer value and hypergradient of ridge at alpha."""
    A, Av = _design(X_tr, fit_intercept), _design(X_val, fit_intercept)
    pen = _pen(A.shape[1], fit_intercept, np.exp(alpha))
    K = A.T @ A + np.diag(pen)
    w = np.linalg.solve(K, A.T @ y_tr)
    r = Av @ w - y_val
    dw = -np.linalg.solve(K, pen * w)  # d w / d alpha
    return 0.5 * float(r @ r), float(r @ (Av @ dw)), w


def load_benchmark(path):
    """A script of ``benchmarks/`` (``path`` relative to the repository) imported as a
    module, its ``__main__`` part not run."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(Path(path).stem, root / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def central_difference(f, a, h=1e-4):
    return (f(a + h) - f(a - h)) / (2 * h)


@pytest.fixture(params=["dense", "sparse"])
def sparsity(request):
    return request.param


@pytest.fixture
def logistic_data(sparsity):
    density = None if sparsity == "dense" else 0.3
    X, y = make_classification_data(160, 10, seed=1, density=density)
    return split(X, y, 100)


def loads_misaligned(obj):
    """``obj`` pickled and loaded back with each of its array buffers at an odd
    address, as a dask worker receives them off a socket."""
    import pickle

    buffers = []
    blob = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    moved = []
    for b in buffers:
        raw = b.raw().tobytes()
        store = bytearray(len(raw) + 16)
        off = (1 - np.frombuffer(store, np.uint8).ctypes.data) % 8
        view = memoryview(store)[off:off + len(raw)]
        view[:] = raw
        moved.append(view)
    return pickle.loads(blob, buffers=moved)
