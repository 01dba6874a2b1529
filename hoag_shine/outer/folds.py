"""State of the inner problems across outer iterations (one per cross-validation fold)."""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import LokyBackend, get_active_backend

from .._utils import SpillFile
from ..hypergrad import ShineRefine, TruncatedCG, compute_hypergradient
from ..inner import (LbfgsMemory, PairPlan, _Diag, minimize_lbfgs, minimize_lbfgs_numpy,
                     plan_pairs)
from .trace import HoagResult

__all__ = ["Fold", "FoldSet"]

#: Cap on the conjugate-gradient iterations of a refined backward vector (its
#: warm start, SHINE's estimate, is the rest of the budget).
_REFINE_MAX_ITER = 100


class Fold:
    """One inner problem's state across outer iterations.

    Keeps the last accepted inner solution (warm start) and backward-pass
    vector, the trial solve awaiting the accept test, and one L-BFGS memory,
    updated in place: each solve starts from the pairs of the last one (accepted
    or not), shifted exactly to the new penalty. When the plan spills (problems
    too large for every fold's pairs to stay in memory), the fold's vectors
    wait on disk too between its uses, pairs and all: only the fold being
    solved is in memory.

    Parameters
    ----------
    problem : BilevelProblem
    alpha : ndarray of shape (n_hyper,)
        Starting log-penalties (they fix the scale of the relative tolerances).
    x0 : ndarray of shape (n_params,) or None
        Starting inner point (``problem.initial_x()`` by default).
    options : HoagOptions
    pairs : PairPlan, default=None
        How the memory is stored (:func:`~hoag_shine.inner.plan_pairs`).
        ``None``: ``options.maxcor`` pairs in double precision, a rejected
        trial's memory rolled back.
    memory : (LbfgsMemory, ndarray), default=None
        Pairs to start with and the log-penalties they are at (shifted to
        each solve's penalty).
    """

    def __init__(self, problem, alpha, x0, options, pairs=None, memory=None):
        self.problem = problem
        self.options = options
        self.strategy = options.strategy
        self.solve = minimize_lbfgs if options.inner_solver == "scipy" else minimize_lbfgs_numpy
        self.n_solves = 0
        self.x = problem.initial_x() if x0 is None else np.array(x0, dtype=np.float64)
        if self.x.shape != (problem.n_params,):
            raise ValueError(f"x0 must have shape ({problem.n_params},), got {self.x.shape}.")
        if not np.all(np.isfinite(self.x)):
            raise ValueError("x0 contains NaN or infinite values; pass a finite starting point "
                             "or None (zeros).")
        self.norm_init = problem.gradient_scale(alpha)
        # (kept as constant head and short tail when it has that shape: no full copy)
        self.alpha0, self.h0 = alpha, _Diag(problem.inverse_hessian_guess(alpha))
        self.alpha = None  # alpha of the accepted state
        self.fun = self.jac = None  # inner value and gradient at (x, alpha), accepted state
        self.pairs = pairs or PairPlan(np.dtype(np.float64), options.maxcor, True, False)
        self.memory, self.memory_alpha = None, None  # the pairs, and the alpha they are at
        if memory is not None and memory[0] is not None:
            pairs_in, at = memory
            if not isinstance(pairs_in, LbfgsMemory):
                raise TypeError("x0's memory must hold (LbfgsMemory, alpha) pairs, got "
                                f"{type(pairs_in).__name__}.")
            if pairs_in.n_params not in (None, problem.n_params):
                raise ValueError(f"x0's pairs have {pairs_in.n_params} parameters, the "
                                 f"problem {problem.n_params}.")
            at = np.atleast_1d(np.asarray(at, dtype=np.float64))
            if at.size == 1 and problem.n_hyper > 1:  # one penalty for every group
                at = np.full(problem.n_hyper, at[0])
            self.memory, self.memory_alpha = pairs_in, problem.check_alpha(at)
        self.pending = None  # the trial's backward pass (with its zc), when done before the
        # accept test
        self.z = None  # backward-pass vector of the accepted state
        self.zc = None  # vector of the first-order value correction
        self.value_c = None
        self.trial = None
        self._parked, self._entries = SpillFile("hoag_shine_fold_"), None

    # -- vectors at rest ------------------------------------------------------
    def park(self):
        """When the plan spills: write the fold's vectors (solutions, gradients,
        backward vectors, accepted and trial) to its temporary file and drop them
        from memory until :meth:`unpark`. Shared arrays are written once and come
        back shared."""
        if not self.pairs.spill or self._parked.holds:
            return
        n = self.problem.n_params
        arrays, index, entries = [], {}, []
        for owner in (self.__dict__, self.trial, self.pending):
            for key in ("x", "jac", "z", "zc"):
                a = None if owner is None else owner.get(key)
                if isinstance(a, np.ndarray) and a.size == n:
                    i = index.setdefault(id(a), len(arrays))
                    if i == len(arrays):
                        arrays.append(a)
                    entries.append((owner, key, i))
        if arrays:
            self._parked.write(arrays)
            for owner, key, _ in entries:
                owner[key] = None
            self._entries = entries

    def unpark(self):
        """Read back what :meth:`park` wrote (exactly)."""
        if self._parked.holds:
            arrays = self._parked.read()
            for owner, key, i in self._entries:
                owner[key] = arrays[i]
            self._entries = None

    def forward(self, alpha, eps):
        """Inner solve at ``alpha`` from the accepted state; outer value, corrected."""
        self.unpark()
        problem = self.problem
        kwargs = {}
        if self.jac is not None:  # the warm start's evaluation, moved to the new alpha
            kwargs["fg0"] = problem.inner_value_grad_update(self.x, self.fun, self.jac,
                                                            self.alpha, alpha)
        if self.strategy.uses_opa:
            kwargs["opa"] = (lambda v: problem.outer_value_grad(v, alpha)[1],
                             self.strategy.opa_period(self.n_solves))
        if self.solve is minimize_lbfgs_numpy:  # the first step's scale, at this alpha
            h0 = self.h0.new_array()  # h0 / (1 + h0 (w(alpha) - w(alpha0))), in place
            dw = problem.penalty_weights(alpha) - problem.penalty_weights(self.alpha0)
            dw *= h0
            dw += 1.0
            kwargs["h0"] = np.divide(h0, dw, out=h0)
            del dw
        memory = self.memory
        if self.options.warm_memory and memory is not None:  # moved exactly, in place
            if self.pairs.rollback:
                memory.checkpoint()
            memory.shift(problem.penalty_weights(alpha)
                         - problem.penalty_weights(self.memory_alpha))
        else:
            # (not .get: the default, when kept as head and tail, is built on each access)
            diag = kwargs["h0"] if "h0" in kwargs else self.h0.array
            memory = LbfgsMemory(self.pairs.maxcor, problem.n_params,
                                 diag if np.ndim(diag) == 1 else None, dtype=self.pairs.dtype)
        self.memory, self.memory_alpha = memory, alpha
        inner = self.solve(
            lambda v: problem.inner_value_grad(v, alpha), self.x,
            tol=eps * self.norm_init, maxcor=self.pairs.maxcor,
            max_iter=self.options.max_inner_iter, memory=memory, gnorm_weights=self.h0,
            **kwargs,
        )
        self.n_solves += 1
        self.trial, self.pending = inner, None
        out = {"inner": inner, "x": inner.x, "value": None, "value_c": None}
        if self.pairs.spill:
            # The memory waits on disk while the other folds are solved, and the
            # backward pass needs it: done now (wasted only if the step is rejected;
            # SHINE's costs one product).
            self.pending = self._backward(alpha, eps)
            memory.spill()
            value = self.pending.value
        elif self.zc is not None:
            value = problem.outer_value_grad(inner.x, alpha)[0]
        if self.zc is not None:
            out.update(value=value, value_c=value - float(self.zc @ inner.jac))
        self.park()
        return out

    def _backward(self, alpha, eps):
        """The trial's hypergradient, with ``zc``, the vector of its value correction."""
        inner = self.trial
        hg = compute_hypergradient(
            self.problem, inner.x, alpha, self.strategy, eps=eps, memory=inner.memory,
            init=self.z if self.strategy.warm_start else None,
        )
        hg.zc = hg.z if self.strategy.approximates_inverse else inner.memory.inv_hvp(hg.grad_x)
        del hg["grad_x"]  # (not needed any more: 20 MB on 20 classes)
        return hg

    def accept(self, alpha, eps):
        """Make the trial solve the accepted state; return its hypergradient."""
        self.unpark()
        inner = self.trial
        hg = self.pending or self._backward(alpha, eps)
        self.zc = hg.pop("zc")
        self.pending = None
        self.memory.commit()
        self.value_c = hg.value - float(self.zc @ inner.jac)
        self.x, self.alpha, self.z = inner.x, alpha, hg.z
        if self.pairs.dtype == np.float32:  # large problems: the backward vectors at rest
            self.z = hg.z.astype(np.float32)  # in the pairs' precision (20 MB per fold)
            self.zc = self.z if self.zc is hg.z else self.zc.astype(np.float32)
        self.fun, self.jac = inner.fun, inner.jac
        self.park()
        return hg

    def reject(self):
        """Drop the trial: the memory returns to the accepted state's when it can."""
        self.unpark()
        self.trial = self.pending = None
        if self.memory is not None and self.memory.rollback():
            self.memory_alpha = self.alpha
        self.park()


class FoldSet:
    """The folds of one outer loop, solved together.

    A context manager. The folds run in this thread, unless a joblib backend is
    chosen with ``joblib.parallel_config`` (e.g. ``backend="threading"``) and
    ``n_jobs`` (or the configuration's) asks for more than one job: then one
    pool of that backend serves the whole loop.
    """

    def __init__(self, problems, alpha, x0, options):
        memory0 = None
        if isinstance(x0, HoagResult):  # an earlier run's solutions, and its pairs, which
            memory0, x0 = x0.pop("memory", None), x0.x  # move here (updated in place)
        if x0 is None:
            x0 = [None] * len(problems)
        elif len(problems) == 1 and not isinstance(x0, (list, tuple)):
            x0 = [x0]
        if len(x0) != len(problems):
            raise ValueError(f"x0 must give one starting point per problem ({len(problems)}).")
        if memory0 is None:
            memory0 = [None] * len(problems)
        if len(memory0) != len(problems):
            raise ValueError(f"x0's memory must give one (memory, alpha) per problem "
                             f"({len(problems)}).")
        n_params = max(p.n_params for p in problems)
        pairs = plan_pairs(n_params, options.maxcor, len(problems), options.pairs_memory_mb)
        self.folds = [Fold(p, alpha, x, options, pairs, m)
                      for p, x, m in zip(problems, x0, memory0)]
        n_jobs = effective_n_jobs(options.n_jobs) if len(problems) > 1 else 1
        # Only a backend chosen with joblib.parallel_config runs the folds apart: with
        # joblib's default, threads measured slower than this thread on every problem
        # tried (benchmarks/n_jobs.py), and processes would ship each fold's L-BFGS
        # memory at every outer step.
        chosen = not isinstance(get_active_backend()[0], LokyBackend)
        self._parallel = (Parallel(n_jobs=min(n_jobs, len(problems)))
                          if n_jobs > 1 and chosen else None)

    def __enter__(self):
        if self._parallel is not None:
            self._parallel.__enter__()
        return self

    def __exit__(self, *exc):
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
        return False

    def _run(self, method, *args):
        if self._parallel is None:
            return [getattr(f, method)(*args) for f in self.folds]
        return self._parallel(delayed(getattr(f, method))(*args) for f in self.folds)

    def forward(self, alpha, eps):
        """Every fold's trial solve at ``alpha``: total value, corrected value, iterations."""
        out = self._run("forward", alpha, eps)
        value = sum(r["value"] for r in out) if out[0]["value"] is not None else None
        value_c = sum(r["value_c"] for r in out) if out[0]["value_c"] is not None else None
        return dict(value=value, value_c=value_c, inner_iter=sum(r["inner"].nit for r in out),
                    x=out[0]["x"])

    def reject(self):
        """Drop every fold's trial."""
        for f in self.folds:
            f.reject()

    def accept(self, alpha, eps):
        """Accept every fold's trial: total value, hypergradient, Hessian products."""
        out = self._run("accept", alpha, eps)
        failed = [f.trial for f in self.folds if not f.trial.success]
        return dict(value=sum(r.value for r in out), grad=np.sum([r.grad for r in out], axis=0),
                    n_hvp=sum(r.n_hvp for r in out),
                    value_c=sum(f.value_c for f in self.folds),
                    inner_ok=not failed, inner_nit=min(f.trial.nit for f in self.folds),
                    inner_message=failed[0].message if failed else "")

    def end_game(self):
        """From now on, refine each backward vector by conjugate gradient (warm-started
        at SHINE's estimate) to the inner tolerance: near the optimum, where SHINE's
        error is as large as the hypergradient itself."""
        strategy = ShineRefine(max_iter=_REFINE_MAX_ITER)
        for f in self.folds:
            f.strategy = strategy

    def refine(self, alpha, eps, trial=False):
        """The hypergradient at ``alpha`` by conjugate gradient (warm-started at each
        fold's backward vector) to relative residual ``eps``, at the accepted solutions
        (the folds' backward vectors become the refined ones) or, with ``trial``, at
        the trial solutions. Returns the total and the Hessian products."""
        strategy = TruncatedCG(max_iter=_REFINE_MAX_ITER)
        grads, n_hvp = [], 0
        for f in self.folds:
            f.unpark()
            x = f.trial.x if trial else f.x
            hg = compute_hypergradient(f.problem, x, alpha, strategy, eps=eps, init=f.z)
            if not trial:
                f.z = hg.z
            f.park()
            grads.append(hg.grad)
            n_hvp += hg.n_hvp
        return np.sum(grads, axis=0), n_hvp

    @property
    def memory(self):
        """Each fold's curvature pairs and the log-penalties they are at (``(None,
        None)`` for a fold not solved yet)."""
        return [(f.memory, f.memory_alpha) for f in self.folds]

    @property
    def x(self):
        """The accepted inner solutions, one per fold."""
        for f in self.folds:
            f.unpark()
        return [f.x for f in self.folds]
