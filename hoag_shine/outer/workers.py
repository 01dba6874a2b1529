"""Where the folds of an outer loop live, and how calls reach them.

A runner holds the folds of one :class:`~hoag_shine.outer.folds.FoldSet` and
answers ``call_all(method, *args)`` (every fold's answer, in fold order) and
``call(k, method, *args)`` (fold ``k``'s). Only log-penalties, tolerances,
scalars and ``n_hyper``-long vectors cross it per outer step.
"""

from __future__ import annotations

from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import LokyBackend, get_active_backend

__all__ = ["LocalRunner", "make_runner"]


def _build(spec):
    from .folds import Fold

    problem, alpha, x0, options, plan, memory = spec
    return Fold(problem, alpha, x0, options, plan, memory)


class LocalRunner:
    """The folds in this process, called one after the other (or, with a joblib
    backend of threads chosen by ``joblib.parallel_config``, in its threads).

    Parameters
    ----------
    specs : list of tuple
        ``(problem, alpha, x0, options, plan, memory)`` per fold.
    parallel : joblib.Parallel or None
        The pool of threads serving the whole loop.
    """

    def __init__(self, specs, parallel=None):
        self.folds = [_build(s) for s in specs]
        self._parallel = parallel
        if parallel is not None:
            parallel.__enter__()

    def call_all(self, method, *args) -> list:
        if self._parallel is None:
            return [getattr(f, method)(*args) for f in self.folds]
        return self._parallel(delayed(getattr(f, method))(*args) for f in self.folds)

    def call(self, k, method, *args):
        return getattr(self.folds[k], method)(*args)

    def close(self) -> None:
        if self._parallel is not None:
            self._parallel.__exit__(None, None, None)
            self._parallel = None


def make_runner(specs, options):
    """The runner of the folds ``specs`` that ``options.n_jobs`` and the active joblib
    backend ask for."""
    n_jobs = effective_n_jobs(options.n_jobs) if len(specs) > 1 else 1
    # Threads only when a backend is chosen with joblib.parallel_config: with joblib's
    # default, threads measured slower than this thread on every problem tried
    # (benchmarks/n_jobs.py).
    chosen = not isinstance(get_active_backend()[0], LokyBackend)
    if n_jobs > 1 and chosen:
        return LocalRunner(specs, Parallel(n_jobs=min(n_jobs, len(specs))))
    return LocalRunner(specs)
