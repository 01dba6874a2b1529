"""HOAG: approximate-hypergradient descent on the hyperparameters.

Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016.
Each outer iteration solves the inner problem to a tolerance that shrinks
along a schedule, computes an approximate hypergradient with one of the
strategies of :mod:`hoag_shine.hypergrad`, and takes a projected step on
``alpha``. The parts live beside this loop: the settings
(:class:`~hoag_shine.outer.options.HoagOptions`), the step rule
(:mod:`~hoag_shine.outer.steps`), the stopping rule
(:mod:`~hoag_shine.outer.stopping`), the folds' state
(:mod:`~hoag_shine.outer.folds`) and the trace (:mod:`~hoag_shine.outer.trace`).
"""

from __future__ import annotations

import time

import numpy as np

from .._utils import single_thread_blas
from ..hypergrad import compute_hypergradient, get_strategy
from ..inner import (InnerResult, LbfgsMemory, minimize_lbfgs, minimize_lbfgs_numpy,
                     newton_polish)
from .folds import FoldSet
from .options import HoagOptions
from .steps import StepRule
from .stopping import StoppingRule
from .trace import HoagResult, Trace, heldout_loss_fn

__all__ = ["hoag", "hypergradient", "fit_inner", "check_problems", "start_alpha"]


def check_problems(problem) -> list:
    """``problem`` as a non-empty list of problems sharing their hyperparameters."""
    problems = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    if not problems:
        raise ValueError("problem must be a BilevelProblem or a non-empty list of them.")
    if any(p.n_hyper != problems[0].n_hyper for p in problems):
        raise ValueError("All the problems (folds) must have the same number of hyperparameters.")
    return problems


def start_alpha(problems, alpha0, lower, upper) -> np.ndarray:
    """The starting log-penalties: ``alpha0``, or the problems' data-scaled default."""
    if alpha0 is None:
        alpha0 = np.mean([p.default_alpha() for p in problems], axis=0)
        return np.clip(alpha0, lower, upper)
    alpha = problems[0].check_alpha(alpha0)
    if np.any(alpha < lower) or np.any(alpha > upper):
        raise ValueError(f"alpha0={alpha} lies outside the bounds [{lower}, {upper}]; start "
                         "inside them or widen bounds.")
    return alpha


@single_thread_blas
def hoag(problem, alpha0=None, *, options=None, x0=None, heldout=None, callback=None,
         **settings):
    """Tune hyperparameters by approximate hypergradient descent (HOAG).

    Parameters
    ----------
    problem : BilevelProblem or list of BilevelProblem
        E.g. :class:`~hoag_shine.LogisticProblem`. A list (cross-validation
        folds sharing ``alpha``) minimises the sum of their outer criteria;
        each fold keeps its own inner warm start and L-BFGS memory.
    alpha0 : array-like of shape (n_hyper,), default=None
        Starting log-penalties. ``None``: the problems' data-scaled default
        (:meth:`~hoag_shine.problems.BilevelProblem.default_alpha`), clipped to
        the bounds.
    options : HoagOptions, default=None
        The loop's settings (defaults: ``HoagOptions()``).
    x0 : ndarray of shape (n_params,) or list of them, default=None
        Starting inner point (``problem.initial_x()``), one per problem.
    heldout : (X, y) or callable, default=None
        Held-out data whose loss is recorded in the trace, never used by the
        optimisation; a callable ``x -> loss`` is accepted too. Its evaluation
        time is not counted in the trace's times.
    callback : callable, default=None
        ``callback(record)`` after each iteration, with the trace record as an
        ``OptimizeResult`` (plus ``x``). Raise ``StopIteration`` to stop.
    **settings
        Fields of :class:`~hoag_shine.outer.options.HoagOptions` (``max_iter``,
        ``tol``, ``bounds``, ...) replacing those of ``options``.

    Returns
    -------
    result : HoagResult
        ``result.x`` is the inner solution, or the list of the folds' ones.

    Notes
    -----
    :class:`~hoag_shine.outer.steps.StepRule` holds the accept test (on outer
    values corrected for the inner solutions' inexactness) and the step
    length, :class:`~hoag_shine.outer.stopping.StoppingRule` the stopping tests.
    """
    opts = HoagOptions.make(options, **settings)
    problems = check_problems(problem)
    lower, upper = opts.bounds_arrays(problems[0].n_hyper)
    alpha = start_alpha(problems, alpha0, lower, upper)
    if heldout is not None and len(problems) > 1:
        raise ValueError("heldout is recorded for a single problem; pass one problem, not folds.")
    trace = Trace(heldout_loss_fn(problems[0], heldout), callback)
    t_start = time.perf_counter()
    with FoldSet(problems, alpha, x0, opts) as folds:
        clock = time.perf_counter() - t_start  # held-out evaluations excluded
        steps, stopping = StepRule(opts, lower, upper), StoppingRule(opts)
        status, message = 1, f"reached max_iter={opts.max_iter} outer iterations"
        trial = alpha
        for _ in range(opts.max_iter):
            eps = stopping.next_eps()
            t0 = time.perf_counter()
            forward = folds.forward(trial, eps)
            t1 = time.perf_counter()
            accepted, sufficient = steps.test(trial, forward, eps)
            if accepted:
                backward = folds.accept(trial, eps)
                steps.accept(trial, backward, eps, sufficient)
                value, grad, n_hvp = backward["value"], backward["grad"], backward["n_hvp"]
            else:
                steps.reject()
                value, grad, n_hvp = forward["value"], np.full(trial.shape, np.nan), 0
            t2 = time.perf_counter()
            clock += t2 - t0
            if not trace.add(alpha=trial, value=value, grad=grad, accepted=accepted, time=clock,
                             forward_time=t1 - t0, backward_time=t2 - t1,
                             inner_iter=forward["inner_iter"], n_hvp=n_hvp, eps=eps,
                             step_size=steps.step_size, x=forward["x"]):
                status, message = 3, "stopped by the callback"
                break
            trial = steps.next_alpha()
            stop, tighten = stopping.check(steps.step, steps.base,
                                           steps.predicted_decrease(trial))
            if tighten:
                steps.refresh, trial = True, steps.base["alpha"]
            if stop is not None:
                status, message = 0, stop
                break
            if stopping.out_of_time(clock):
                status, message = 2, f"stopped by the time budget max_time={opts.max_time}s"
                break
            if np.array_equal(trial, steps.base["alpha"]) and not steps.refresh:
                status, message = _stuck(steps)
                break
        xs = folds.x
    stopping.warn(status, stacklevel=4)  # warn <- hoag <- single_thread_blas wrapper <- caller
    base = steps.base
    return HoagResult(
        alpha=base["alpha"], x=xs[0] if len(xs) == 1 else xs, fun=base["value"],
        grad=base["grad"], nit=len(trace.records), success=status in (0, 3), status=status,
        message=message, trace=trace.records, options=opts,
    )


def _stuck(steps):
    """Status and message when the next step would not move ``alpha``."""
    if np.all(steps.base["grad"] == 0):
        return 0, "converged: the hypergradient is zero"
    return 0, "converged: alpha stands at a bound the hypergradient points out of"


def fit_inner(problem, alpha, *, tol, x0=None, maxcor=30, max_iter=1000, solver="scipy",
              polish=False):
    """Solve the inner problem at ``alpha`` to a relative gradient tolerance.

    Stops when ``||grad_x h(x, alpha)|| <= tol * problem.gradient_scale(alpha)``.

    Parameters
    ----------
    problem : BilevelProblem
    alpha : array-like of shape (n_hyper,)
    tol : float
        Relative tolerance.
    x0 : ndarray of shape (n_params,), default=None
        Warm start (``problem.initial_x()``).
    maxcor : int, default=30
        L-BFGS memory.
    max_iter : int, default=1000
        Iteration cap (0: no L-BFGS iteration, e.g. to polish ``x0`` only).
    solver : {"scipy", "numpy"}, default="scipy"
        SciPy's L-BFGS-B or the project's L-BFGS.
    polish : bool, default=False
        When L-BFGS stops above the tolerance (its line search reaches the
        limits of floating point first), refine the solution with a few Newton
        steps (Hessian systems solved by conjugate gradient).

    Returns
    -------
    result : InnerResult
    """
    alpha = problem.check_alpha(alpha)
    x = problem.initial_x() if x0 is None else np.array(x0, dtype=np.float64)
    abs_tol = tol * problem.gradient_scale(alpha)
    fun_grad = lambda v: problem.inner_value_grad(v, alpha)  # noqa: E731
    if max_iter > 0:
        solve = minimize_lbfgs if solver == "scipy" else minimize_lbfgs_numpy
        inner = solve(fun_grad, x, tol=abs_tol, maxcor=maxcor, max_iter=max_iter)
    else:  # no L-BFGS iteration: Newton steps only (polish) or an evaluation
        f, g = fun_grad(x)
        gnorm = float(np.linalg.norm(g))
        inner = InnerResult(x=x, fun=f, jac=g, grad_norm=gnorm, nit=0, nfev=1,
                            success=gnorm <= abs_tol, message="no L-BFGS iteration asked for",
                            memory=LbfgsMemory(maxcor, x.size), time=0.0)
    if polish and not inner.success:
        x, gnorm, n_steps = newton_polish(
            fun_grad, lambda v: problem.inner_hessp(v, alpha), inner.x, tol=abs_tol)
        f, g = fun_grad(x)
        inner.update(x=x, fun=f, jac=g, grad_norm=gnorm, success=gnorm <= abs_tol,
                     newton_steps=n_steps)
    return inner


@single_thread_blas
def hypergradient(problem, alpha, *, method="exact", inner_tol=1e-10, backward_tol=None,
                  x0=None, maxcor=30, max_inner_iter=10000, polish=True, return_result=False,
                  **params):
    """Outer value and hypergradient at ``alpha``, solving the inner problem first.

    Parameters
    ----------
    problem : BilevelProblem
    alpha : array-like of shape (n_hyper,)
        Log-penalties.
    method : str or HypergradientStrategy, default="exact"
        Hypergradient strategy (see :mod:`hoag_shine.hypergrad`).
    inner_tol : float, default=1e-10
        Relative tolerance of the inner solve:
        ``||grad_x h|| <= inner_tol * problem.gradient_scale(alpha)``.
    backward_tol : float, default=None
        Relative tolerance passed to the strategy (CG residual); defaults to
        ``inner_tol``.
    x0 : ndarray of shape (n_params,), default=None
        Starting inner point.
    maxcor : int, default=30
        Inner L-BFGS memory.
    max_inner_iter : int, default=10000
        Iteration cap of the inner solve.
    polish : bool, default=True
        Refine an inner solution L-BFGS could not bring to the tolerance with
        a few Newton steps (see :func:`fit_inner`).
    return_result : bool, default=False
        Also return the :class:`~hoag_shine.hypergrad.HypergradientResult`
        (``z``, ``n_hvp``, time) and the inner result.
    **params
        Constructor parameters of the strategy.

    Returns
    -------
    value : float
        Outer value at the inner solution.
    grad : ndarray of shape (n_hyper,)
        Hypergradient.
    """
    strategy = get_strategy(method, **params)
    alpha = problem.check_alpha(alpha)
    inner = fit_inner(problem, alpha, tol=inner_tol, x0=x0, maxcor=maxcor,
                      max_iter=max_inner_iter, polish=polish)
    eps = inner_tol if backward_tol is None else backward_tol
    hg = compute_hypergradient(problem, inner.x, alpha, strategy, eps=eps, memory=inner.memory)
    if not (np.isfinite(hg.value) and np.all(np.isfinite(hg.grad))):
        raise ValueError(
            f"The outer value or hypergradient at alpha={alpha} is not finite; the "
            "log-penalty is outside the range where the problem can be evaluated in floating "
            "point. Use a smaller |alpha| or rescale the data.")
    if return_result:
        return hg.value, hg.grad, hg, inner
    return hg.value, hg.grad
