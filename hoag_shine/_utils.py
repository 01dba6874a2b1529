"""Small internal helpers."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import weakref

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def single_thread_blas(func):
    """Run ``func`` with BLAS limited to one thread.

    The solvers here make many level-1 BLAS calls (dots, axpys on vectors of
    the problem's size) between sparse products, some by NumPy's OpenBLAS, some
    by SciPy's: each library has its own thread pool, whose threads spin after
    each call and take the cores from the other's. On the 2-core benchmark
    machine one L-BFGS solve on 20news (90 iterations) took 1.4-1.6 s with one
    BLAS thread, 40-44 s with two when the two-loop recursion alternated the two
    libraries, and still 3.7-4.0 s with two since it uses SciPy's alone.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


def aligned(value):
    """``value``, its arrays (a sparse matrix's too) copied where they are not aligned
    in memory for their type. Arrays received from another machine (dask sends them
    as raw buffers) can start at any byte; NumPy then takes other, differently
    rounded, loops for their products and sums (a fold on a dask worker gave a
    gradient that differed in the last digits from the same fold here)."""
    if isinstance(value, np.ndarray):
        return value if value.flags.aligned else np.array(value, order="K")
    if sp.issparse(value):
        for name in ("data", "indices", "indptr", "row", "col"):
            a = getattr(value, name, None)
            if isinstance(a, np.ndarray) and not a.flags.aligned:
                setattr(value, name, np.array(a, order="K"))
    return value


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def outside_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller of this function
    point at the first frame outside the package (the user's call), however deep
    in the package it was issued."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


class SpillFile:
    """Arrays parked in one temporary file and read back bit for bit.

    Large problems keep what waits between two uses (a fold's L-BFGS pairs, its
    solution and gradient) on disk instead of in memory. The file is created on
    the first :meth:`write`, reused by later ones, and deleted when the object
    is garbage-collected (``tempfile.TemporaryFile``, closed then without a
    ``ResourceWarning``) or on :meth:`close`.
    """

    def __init__(self, prefix="hoag_shine_"):
        self._prefix = prefix
        self._file = None
        self._meta = None  # (dtype, shape) of each array written, None when read back
        self._closer = None

    def __getstate__(self):
        # Pickled with what it holds (a result sent between processes keeps its pairs).
        arrays = None
        if self.holds:
            arrays = self.read()
            self.write(arrays)
        return {"prefix": self._prefix, "arrays": arrays}

    def __setstate__(self, state):
        self.__init__(state["prefix"])
        if state["arrays"] is not None:
            self.write(state["arrays"])

    def close(self) -> None:
        """Delete the file (what it held is lost)."""
        if self._closer is not None:
            self._closer()
        self._file = self._meta = self._closer = None

    @property
    def holds(self) -> bool:
        """Whether arrays are waiting in the file."""
        return self._meta is not None

    def write(self, arrays) -> None:
        """Write ``arrays`` (replacing what the file held)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix=self._prefix)
            self._closer = weakref.finalize(self, self._file.close)
        self._file.seek(0)
        for a in arrays:
            np.ascontiguousarray(a).tofile(self._file)
        self._file.flush()
        self._meta = [(a.dtype, a.shape) for a in arrays]

    def copy(self) -> "SpillFile":
        """A new file holding what this one holds (copied file to file, not through
        memory)."""
        new = SpillFile(self._prefix)
        if self.holds:
            new._file = tempfile.TemporaryFile(prefix=self._prefix)
            new._closer = weakref.finalize(new, new._file.close)
            self._file.seek(0)
            shutil.copyfileobj(self._file, new._file)
            new._file.flush()
            new._meta = list(self._meta)
        return new

    def read(self) -> list:
        """The arrays of the last :meth:`write`, in its order (new arrays)."""
        if self._meta is None:
            raise RuntimeError("nothing was written to this SpillFile since it was last read")
        self._file.seek(0)
        out = [np.fromfile(self._file, dtype=d, count=int(np.prod(s))).reshape(s)
               for d, s in self._meta]
        self._meta = None
        return out
