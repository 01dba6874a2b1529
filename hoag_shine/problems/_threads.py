"""A problem's products with its training data on several threads, rows split.

The final fit on all the data runs in the caller's process after the folds'
workers are done: with ``n_jobs`` > 1 its products ``X @ W`` and ``X^T @ R`` can
use the cores the workers used. SciPy's sparse products release the GIL, and a
CSR product computes each output row from that row's stored entries alone, in
their order: split by rows, each block on a thread, the result is the whole
product's bit for bit, so the model does not depend on the number of threads.

Measured on 20news (``benchmarks/estimator_speed.py``'s data, 2 cores, 2 threads):
``X @ W`` with 20 columns 1.66x, ``X^T @ R`` 1.67x; one column, 1.03x and 1.33x.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

__all__ = ["MIN_THREADED_WORK", "RowBlocks", "threaded_products"]

#: Stored entries times output columns of a product below which threads do not pay
#: for their hand-over (about 20 microseconds each).
MIN_THREADED_WORK = 1_000_000


class RowBlocks:
    """A CSR matrix cut into row blocks of about equal stored entries (views of its
    arrays, nothing copied but the row pointers).

    Parameters
    ----------
    A : scipy.sparse.csr_matrix
    n_blocks : int
    """

    def __init__(self, A, n_blocks: int):
        self.shape = A.shape
        cuts = np.searchsorted(A.indptr, np.linspace(0, A.nnz, n_blocks + 1), side="left")
        cuts[0], cuts[-1] = 0, A.shape[0]
        cuts = np.unique(cuts)
        self.blocks = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            s, e = A.indptr[a], A.indptr[b]
            block = sp.csr_matrix((A.data[s:e], A.indices[s:e], A.indptr[a:b + 1] - s),
                                  shape=(b - a, A.shape[1]), copy=False)
            self.blocks.append((int(a), int(b), block))

    def matmul(self, V, executor) -> np.ndarray:
        """``A @ V`` (a vector or a 2-d array), one block per task of ``executor``."""
        out = np.empty((self.shape[0],) + np.shape(V)[1:])

        def one(block):
            a, b, B = block
            out[a:b] = B @ V

        for _ in executor.map(one, self.blocks):  # (raises a task's exception here)
            pass
        return out


class _Threads:
    """The row blocks of a problem's training matrices and the threads that use them."""

    def __init__(self, matrices, n_threads, executor):
        self.executor = executor
        self.split = [(A, RowBlocks(A, n_threads)) for A in matrices]

    def matmul(self, A, V):
        for matrix, blocks in self.split:
            if A is matrix:
                return blocks.matmul(V, self.executor)
        return A @ V


def _width(problem) -> int:
    """Output columns of the problem's products (classes of a multinomial model)."""
    return max(1, problem.n_params // max(1, problem.X_train.shape[1]))


@contextmanager
def threaded_products(problem, n_threads):
    """Within the block, ``problem``'s products with its training data (``X_train``
    and its transpose) run on ``n_threads`` threads, rows split (bit-identical to
    one thread). Nothing changes for dense data, one thread, or products under
    :data:`MIN_THREADED_WORK`.

    Parameters
    ----------
    problem : BilevelProblem
        A linear-model problem of this package (others are left as they are).
    n_threads : int
        Threads; capped at this machine's cores.

    Yields
    ------
    problem : BilevelProblem
    """
    X = getattr(problem, "X_train", None)
    XT = getattr(problem, "_XT_train", None)
    n_threads = min(int(n_threads), os.cpu_count() or 1)
    if (n_threads < 2 or not sp.isspmatrix_csr(X) or not sp.isspmatrix_csr(XT)
            or X.nnz * _width(problem) < MIN_THREADED_WORK):
        yield problem
        return
    with ThreadPoolExecutor(n_threads, thread_name_prefix="hoag_shine_products") as ex:
        problem._threads = _Threads((X, XT), n_threads, ex)
        try:
            yield problem
        finally:
            problem._threads = None
