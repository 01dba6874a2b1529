"""One inner problem's state across outer iterations, behind an interface of values.

A :class:`Fold` keeps one inner problem's warm state (its accepted solution,
backward vector and L-BFGS pairs) and talks through a narrow interface:
:meth:`~Fold.forward`, :meth:`~Fold.accept`, :meth:`~Fold.reject`,
:meth:`~Fold.refine` take log-penalties and a tolerance and return scalars and
``n_hyper``-long vectors (:class:`FoldForward`, :class:`FoldBackward`), so that
a fold can live in this process, in a worker process or on a dask worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeResult

from .._utils import SpillFile
from ..hypergrad import ShineRefine, TruncatedCG, compute_hypergradient
from ..inner import (DiagonalMetric, LbfgsMemory, get_inner_solver, metric_norm,
                     newton_polish, plan_pairs)
from ..inner.solvers import warn_iteration_cap

__all__ = ["Fold", "FoldBackward", "FoldForward"]

#: Cap on the conjugate-gradient iterations of a refined backward vector (its
#: warm start, SHINE's estimate, is the rest of the budget): small problems, polished
#: to machine precision.
_REFINE_MAX_ITER = 100

#: The same cap for the check of a stop on larger problems, where each iteration is
#: a Hessian product over the data. On 20news binary (seed 5's last point, per fold)
#: the scalar hypergradient by CG from SHINE's estimate was within 5% of CG to 1e-10
#: at 50 iterations (-9.21 and -4.92 against -9.65 and -4.81; 100: -9.13 and
#: -4.80; SHINE alone: -3.41 and +1.31), and on ten test splits the checked
#: searches ended at the same C_ as with 100, 2-5 s sooner
#: (``benchmarks/estimator_seeds.py``).
_CHECK_MAX_ITER = 50


def _refine_cap(newton) -> int:
    """The CG cap of a refined backward vector: small problems' (``newton``) or the
    check's."""
    return _REFINE_MAX_ITER if newton else _CHECK_MAX_ITER

#: L-BFGS iterations after which a polishing solve of a small problem is finished by
#: Newton steps.
_NEWTON_AFTER = 200


@dataclass(frozen=True)
class FoldForward:
    """One fold's trial solve: its outer value (raw and corrected; ``None`` until
    the fold has a backward vector) and its inner solve's outcome."""

    value: float | None
    value_c: float | None
    nit: int
    success: bool
    message: str


@dataclass(frozen=True)
class FoldBackward:
    """One fold's accepted state: outer value, hypergradient, Hessian products, the
    corrected value, and its inner solve's outcome."""

    value: float
    grad: np.ndarray
    n_hvp: int
    value_c: float
    nit: int
    success: bool
    message: str


class _Accepted(OptimizeResult):
    """A fold's accepted state: ``x``, ``fun``, ``jac`` (inner value and gradient at
    ``(x, alpha)``), ``alpha``, ``z`` (backward vector), ``zc`` (the vector of the
    first-order value correction) and ``value_c``."""


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
        ``None``: ``options.maxcor`` pairs (``None``: 30) in double precision,
        a rejected trial's memory rolled back.
    memory : (LbfgsMemory, ndarray), default=None
        Pairs to start with and the log-penalties they are at (shifted to
        each solve's penalty). The fold works on them in place.
    """

    def __init__(self, problem, alpha, x0, options, pairs=None, memory=None):
        self.problem, self.options = problem, options
        self.strategy = options.strategy
        self.solver = get_inner_solver(options.inner_solver)
        self.n_solves, self.newton = 0, False
        x = problem.initial_x() if x0 is None else np.array(x0, dtype=np.float64)
        if x.shape != (problem.n_params,):
            raise ValueError(f"x0 must have shape ({problem.n_params},), got {x.shape}.")
        if not np.all(np.isfinite(x)):
            raise ValueError("x0 contains NaN or infinite values; pass a finite starting point "
                             "or None (zeros).")
        self.state = _Accepted(x=x, fun=None, jac=None, alpha=None, z=None, zc=None,
                               value_c=None)
        self.norm_init = problem.gradient_scale(alpha)
        # (kept as constant head and short tail when it has that shape: no full copy)
        self.alpha0, self.h0 = alpha, DiagonalMetric(problem.inverse_hessian_guess(alpha))
        self.plan = pairs or plan_pairs(problem.n_params, options.maxcor, 1, np.inf)
        self.memory, self.memory_alpha = _check_memory(memory, problem)
        self.trial = self.pending = None  # the trial solve; its backward pass when done
        self._parked, self._entries = SpillFile("hoag_shine_fold_"), None

    # -- vectors at rest ------------------------------------------------------
    def park(self):
        """When the plan spills: write the fold's vectors (solutions, gradients,
        backward vectors, accepted and trial) to its temporary file and drop them
        from memory until :meth:`unpark`. Shared arrays are written once and come
        back shared."""
        if not self.plan.spill or self._parked.holds:
            return
        n = self.problem.n_params
        arrays, index, entries = [], {}, []
        for owner in (self.state, self.trial, self.pending):
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

    # -- the interface of values ----------------------------------------------
    def forward(self, alpha, eps) -> FoldForward:
        """Inner solve at ``alpha`` from the accepted state; outer value, corrected."""
        self.unpark()
        problem, st = self.problem, self.state
        inner = self._solve(alpha, eps)
        self.trial, self.pending = inner, None
        value = value_c = None
        if self.plan.spill:
            # The memory waits on disk while the other folds are solved, and the
            # backward pass needs it: done now (wasted only if the step is rejected;
            # SHINE's costs one product).
            self.pending = self._backward(alpha, eps)
            self.memory.spill()
            value = self.pending.value
        elif st.zc is not None:
            value = problem.outer_value_grad(inner.x, alpha)[0]
        if st.zc is not None:
            value_c = value - float(st.zc @ inner.jac)
        self.park()
        return FoldForward(value, value_c, int(inner.nit), bool(inner.success),
                           str(inner.message))

    def settle(self, alpha, eps, reduce=None) -> FoldForward:
        """Inner solve at ``alpha`` made the accepted state at once, without a backward
        pass (a point of a coarse scan): its outer value. ``reduce``: also bring the
        gradient down by that factor from the warm start's (at ``alpha``), so that
        every point makes progress however loose ``eps`` is for it."""
        self.unpark()
        inner, st = self._solve(alpha, eps, reduce), self.state
        self.memory.commit()
        if self.plan.spill:
            self.memory.spill()
        value = float(self.problem.outer_value_grad(inner.x, alpha)[0])
        st.x, st.alpha, st.fun, st.jac = inner.x, alpha, inner.fun, inner.jac
        st.z = st.zc = st.value_c = None
        self.trial = self.pending = None
        self.park()
        return FoldForward(value, None, int(inner.nit), bool(inner.success),
                           str(inner.message))

    def _solve(self, alpha, eps, reduce=None):
        """The inner solve at ``alpha`` from the accepted state, its pairs moved there."""
        problem, st = self.problem, self.state
        fg0 = None
        if st.jac is not None:  # the warm start's evaluation, moved to the new alpha
            fg0 = problem.inner_value_grad_update(st.x, st.fun, st.jac, st.alpha, alpha)
        tol = eps * self.norm_init
        if reduce is not None:
            g = fg0[1] if fg0 is not None else problem.inner_value_grad(st.x, alpha)[1]
            tol = min(tol, reduce * metric_norm(g, self.h0))
        opa = self.strategy.opa(problem, alpha, self.n_solves)
        h0 = self._first_step_scale(alpha)
        memory = self._memory_at(alpha, h0)
        cap = self.options.max_inner_iter
        inner = self.solver.solve(
            lambda v: problem.inner_value_grad(v, alpha), st.x, tol=tol,
            max_iter=min(cap, _NEWTON_AFTER) if self.newton else cap, memory=memory,
            fg0=fg0, h0=h0, gnorm_weights=self.h0, opa=opa, warn=not self.newton)
        self.n_solves += 1
        if self.newton and not inner.success:
            inner = _finish_by_newton(problem, inner, alpha, tol, self.h0.array)
        return inner

    def _first_step_scale(self, alpha):
        """``h0 / (1 + h0 (w(alpha) - w(alpha0)))``: the inverse-Hessian guess moved to
        ``alpha`` (computed in place, without temporaries of the problem's size)."""
        h0 = self.h0.new_array()
        dw = self.problem.penalty_weights(alpha) - self.problem.penalty_weights(self.alpha0)
        dw *= h0
        dw += 1.0
        return np.divide(h0, dw, out=h0)

    def _memory_at(self, alpha, h0):
        """The memory the solve at ``alpha`` starts from: the carried pairs moved
        exactly (in place, with a checkpoint when a rejected trial rolls back), or a
        new one whose diagonal is ``h0``."""
        memory = self.memory
        if self.options.warm_memory and memory is not None:
            if self.plan.rollback:
                memory.checkpoint()
            memory.shift(self.problem.penalty_weights(alpha)
                         - self.problem.penalty_weights(self.memory_alpha))
        else:
            memory = LbfgsMemory(self.plan.maxcor, self.problem.n_params, h0,
                                 dtype=self.plan.dtype)
        self.memory, self.memory_alpha = memory, alpha
        return memory

    def _backward(self, alpha, eps):
        """The trial's hypergradient, with ``zc``, the vector of its value correction."""
        inner = self.trial
        hg = compute_hypergradient(
            self.problem, inner.x, alpha, self.strategy, eps=eps, memory=inner.memory,
            init=self.state.z,  # (a strategy that is not warm-started ignores it)
            metric=self.problem.scale_guess(alpha))
        hg.zc = hg.z if self.strategy.correction_is_z else inner.memory.inv_hvp(hg.grad_x)
        del hg["grad_x"]  # (not needed any more: 20 MB on 20 classes)
        return hg

    def accept(self, alpha, eps) -> FoldBackward:
        """Make the trial solve the accepted state; return its hypergradient."""
        self.unpark()
        inner, st = self.trial, self.state
        hg = self.pending or self._backward(alpha, eps)
        zc = hg.pop("zc")
        self.pending = None
        self.memory.commit()
        st.value_c = hg.value - float(zc @ inner.jac)
        st.x, st.alpha, st.z, st.zc = inner.x, alpha, hg.z, zc
        if self.plan.dtype == np.float32:  # large problems: the backward vectors at rest
            st.z = hg.z.astype(np.float32)  # in the pairs' precision (20 MB per fold)
            st.zc = st.z if zc is hg.z else zc.astype(np.float32)
        st.fun, st.jac = inner.fun, inner.jac
        self.park()
        return FoldBackward(float(hg.value), np.asarray(hg.grad), int(hg.n_hvp),
                            float(st.value_c), int(inner.nit), bool(inner.success),
                            str(inner.message))

    def reject(self) -> None:
        """Drop the trial: the memory returns to the accepted state's when it can."""
        self.unpark()
        self.trial = self.pending = None
        if self.memory is not None and self.memory.rollback():
            self.memory_alpha = self.state.alpha
        self.park()

    def refine(self, alpha, eps, trial=False):
        """``(grad, n_hvp)``: the hypergradient at ``alpha`` by conjugate gradient,
        warm-started at the backward vector, to relative residual ``eps``; at the
        accepted solution (whose backward vector becomes the refined one) or, with
        ``trial``, at the trial solution."""
        self.unpark()
        x = self.trial.x if trial else self.state.x
        cg = TruncatedCG(max_iter=_refine_cap(self.newton))
        hg = compute_hypergradient(self.problem, x, alpha, cg, eps=eps, init=self.state.z,
                                   metric=self.problem.scale_guess(alpha))
        if not trial:
            self.state.z = hg.z
        self.park()
        return hg.grad, int(hg.n_hvp)

    def refine_from_now(self, newton=False) -> None:
        """From now on, refine each backward vector by conjugate gradient (warm-started
        at SHINE's estimate) to the inner tolerance; with ``newton``, finish every
        inner solve that L-BFGS could not bring to its tolerance by Newton steps (small
        problems: ill-conditioned raw data)."""
        self.strategy = ShineRefine(max_iter=_refine_cap(newton))
        self.newton = bool(newton)

    def solution(self, trial=False) -> np.ndarray:
        """The accepted inner solution (with ``trial``, the trial's)."""
        self.unpark()
        x = self.trial.x if trial else self.state.x
        self.park()
        return x

    def restage(self, penalty, alpha, options) -> "Fold":
        """A fold of this problem with another penalty (``problem.with_penalty``),
        started from this fold's accepted solution and pairs (moved, not copied)."""
        self.unpark()
        if self.memory is not None:
            self.memory.commit()
        return Fold(self.problem.with_penalty(penalty), alpha, self.state.x, options,
                    self.plan, (self.memory, self.memory_alpha))

    def pairs(self):
        """``(memory, alpha)``: the curvature pairs and the log-penalties they are at."""
        return self.memory, self.memory_alpha


def _check_memory(memory, problem):
    """``(pairs, alpha)`` given to a fold, checked against its problem."""
    if memory is None or memory[0] is None:
        return None, None
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
    return pairs_in, problem.check_alpha(at)


def _finish_by_newton(problem, inner, alpha, tol, metric):
    """Newton steps after an L-BFGS solve that stopped short (small problems)."""
    fun_grad = lambda v: problem.inner_value_grad(v, alpha)  # noqa: E731
    x, gnorm, _ = newton_polish(fun_grad, lambda v: problem.inner_hessp(v, alpha),
                                inner.x, tol=tol, gnorm_weights=metric)
    f, g = fun_grad(x)
    inner.update(x=x, fun=f, jac=g, grad_norm=gnorm, success=gnorm <= tol)
    if not inner.success:
        warn_iteration_cap(inner.nit, gnorm, tol, stacklevel=4)
    return inner
