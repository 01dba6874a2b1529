"""The folds of one outer loop, solved together (one per cross-validation split).

A :class:`FoldSet` runs the :class:`~hoag_shine.outer.fold.Fold` objects of one
outer loop and reduces their answers in a fixed order (:class:`Forward`,
:class:`Backward`); where the folds live (this process, worker processes, dask
workers) is the business of :mod:`hoag_shine.outer.workers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inner import LbfgsMemory, plan_pairs, single_precision
from .fold import Fold, FoldBackward, FoldForward
from .trace import HoagResult
from .workers import make_runner

__all__ = ["Backward", "Fold", "FoldBackward", "FoldForward", "FoldSet", "Forward",
           "start_memories"]


@dataclass(frozen=True)
class Forward:
    """The folds' trial solves, reduced: what the step rule's accept test reads."""

    value: float | None
    value_c: float | None
    inner_iter: int
    x: np.ndarray | None = None  # the first fold's trial solution, when asked for


@dataclass(frozen=True)
class Backward:
    """The folds' accepted states, reduced: what the step rule and the trace read."""

    value: float
    grad: np.ndarray
    n_hvp: int
    value_c: float
    inner_ok: bool
    inner_nit: int
    inner_message: str


def start_memories(x0, n_problems, take_pairs=False):
    """``(x0s, memories)`` from ``hoag``'s ``x0``: starting points and pairs, one per
    problem. A :class:`~hoag_shine.HoagResult` gives its solutions and copies of its
    folds' pairs (it is not changed); with ``take_pairs``, its pairs themselves
    (they leave it)."""
    memories = None
    if isinstance(x0, HoagResult):  # an earlier run's result
        given = x0.pop("memory", None) if take_pairs else x0.get("memory")
        if given is not None and not take_pairs:
            memories = [(m.copy() if isinstance(m, LbfgsMemory) else m, a) for m, a in given]
        elif given is not None:
            memories = list(given)
        x0 = x0.x
    if x0 is None:
        x0 = [None] * n_problems
    elif n_problems == 1 and not isinstance(x0, (list, tuple)):
        x0 = [x0]
    if len(x0) != n_problems:
        raise ValueError(f"x0 must give one starting point per problem ({n_problems}).")
    if memories is None:
        memories = [None] * n_problems
    if len(memories) != n_problems:
        raise ValueError(f"x0's memory must give one (memory, alpha) per problem "
                         f"({n_problems}).")
    return list(x0), memories


class FoldSet:
    """The folds of one outer loop, solved together; their answers reduced in fold
    order (the same whatever runs them).

    A context manager. Where the folds run is chosen by ``options.n_jobs`` and
    the active joblib backend (:func:`~hoag_shine.outer.workers.make_runner`):
    in this process, on worker processes of this machine, or on dask workers.

    Parameters
    ----------
    problems : list of BilevelProblem
    alpha : ndarray of shape (n_hyper,)
    x0 : None, ndarray, list of ndarray or HoagResult
    options : HoagOptions
    take_pairs : bool, default=False
        Work on the pairs of a ``HoagResult`` given as ``x0`` in place (they leave
        it) instead of copies.
    runner : runner, default=None
        Folds already built (by an earlier stage of the same fit, restaged): used,
        and left open for their owner to close. ``None``: built here, closed on exit.
    """

    def __init__(self, problems, alpha, x0, options, take_pairs=False, runner=None):
        self.n_folds = len(problems)
        #: the folds' size: parameters times training samples, summed
        self.work = sum(p.n_params * getattr(getattr(p, "X_train", None), "shape",
                                             (p.n_params,))[0] for p in problems)
        self._own = runner is None
        if runner is None:
            x0s, memories = start_memories(x0, len(problems), take_pairs)
            n_params = max(p.n_params for p in problems)
            plan = plan_pairs(n_params, options.maxcor, len(problems), options.pairs_memory_mb,
                              single_precision(options.pairs_precision, n_params))
            specs = [(p, alpha, x, options, plan, m)
                     for p, x, m in zip(problems, x0s, memories)]
            runner = make_runner(specs, options)
        self.runner = runner

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._own or exc[0] is not None:
            self.runner.close()
        return False

    def forward(self, alpha, eps, want_x=False) -> Forward:
        """Every fold's trial solve at ``alpha``: total value, corrected value,
        iterations (and the first fold's trial solution with ``want_x``)."""
        out = self.runner.call_all("forward", alpha, eps)
        value = _total(r.value for r in out) if out[0].value is not None else None
        value_c = _total(r.value_c for r in out) if out[0].value_c is not None else None
        x = self.runner.call(0, "solution", True) if want_x else None
        return Forward(value, value_c, sum(r.nit for r in out), x)

    def settle(self, alpha, eps, reduce=None) -> Forward:
        """Every fold solved at ``alpha`` and made its accepted state at once, without a
        backward pass (a point of a coarse scan): total outer value and iterations."""
        out = self.runner.call_all("settle", alpha, eps, reduce)
        return Forward(_total(r.value for r in out), None, sum(r.nit for r in out))

    def reject(self) -> None:
        """Drop every fold's trial."""
        self.runner.call_all("reject")

    def accept(self, alpha, eps) -> Backward:
        """Accept every fold's trial: total value, hypergradient, Hessian products."""
        out = self.runner.call_all("accept", alpha, eps)
        failed = [r for r in out if not r.success]
        return Backward(value=_total(r.value for r in out), grad=_sum_grads(r.grad for r in out),
                        n_hvp=sum(r.n_hvp for r in out), value_c=_total(r.value_c for r in out),
                        inner_ok=not failed, inner_nit=min(r.nit for r in out),
                        inner_message=failed[0].message if failed else "")

    def end_game(self, newton=False) -> None:
        """From now on, refine each backward vector by conjugate gradient (warm-started
        at SHINE's estimate) to the inner tolerance: near the optimum, where SHINE's
        error is as large as the hypergradient itself. ``newton``: inner solves that
        L-BFGS cannot finish are finished by Newton steps (small problems)."""
        self.runner.call_all("refine_from_now", newton)

    def refine(self, alpha, eps, trial=False):
        """The hypergradient at ``alpha`` by conjugate gradient (warm-started at each
        fold's backward vector) to relative residual ``eps``, at the accepted
        solutions (the folds' backward vectors become the refined ones) or, with
        ``trial``, at the trial solutions. Returns the total and the Hessian products."""
        out = self.runner.call_all("refine", alpha, eps, trial)
        return _sum_grads(g for g, _ in out), sum(n for _, n in out)

    @property
    def memory(self):
        """Each fold's curvature pairs and the log-penalties they are at (``(None,
        None)`` for a fold not solved yet); ``None`` when the folds live on workers
        (the pairs stay there)."""
        return None if self.runner.remote else self.runner.call_all("pairs")

    @property
    def x(self):
        """The accepted inner solutions, one per fold (fetched one at a time)."""
        return [self.runner.call(k, "solution") for k in range(self.n_folds)]

    def mean_x(self) -> np.ndarray:
        """The mean of the accepted solutions, summed in fold order, one at a time."""
        total = None
        for k in range(self.n_folds):
            x = self.runner.call(k, "solution")
            total = np.array(x, dtype=np.float64) if total is None else total + x
        return total / self.n_folds


def _total(values) -> float:
    """Sum in the given (fold) order."""
    out = 0.0
    for v in values:
        out += v
    return out


def _sum_grads(grads) -> np.ndarray:
    """Sum of the folds' hypergradients, in fold order."""
    return np.sum(list(grads), axis=0)
