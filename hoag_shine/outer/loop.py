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
from dataclasses import dataclass

import numpy as np

from .._utils import single_thread_blas
from ..hypergrad import compute_hypergradient, get_strategy
from ..inner import (InnerResult, LbfgsMemory, default_maxcor, get_inner_solver, metric_norm,
                     newton_polish, plan_pairs)
from .folds import FoldSet
from .options import HoagOptions
from .scan import coarse_scan
from .steps import StepRule
from .stopping import Stop, StopReason, StoppingRule, describe, warn_stop
from .trace import HoagResult, Trace, heldout_loss_fn

__all__ = ["hoag", "hypergradient", "fit_inner", "check_problems", "run_hoag", "start_alpha"]

#: Relative inner tolerance (at most) of the polishing steps that follow a stop.
POLISH_EPS = 1e-6

#: Folds whose parameters times training samples, summed, are at most this are
#: scanned before the search and polished to ``polish_tol`` at ``POLISH_EPS`` after
#: it; larger ones start at the data-scaled start and only check the stop (on
#: 20news, 2e9, the scan took twice and a tight polish three times the whole search; on
#: digits, 5e6, together sixty times:
#: ``benchmarks/raw_data.py``).
SMALL_WORK = 1_000_000


def _polishes(reason, opts, work, stalled) -> bool:
    """Whether a stop for ``reason`` is polished: any stop of a small problem; on a
    larger one, a stop on ``tol`` of a strategy whose small steps may be its own
    error (SHINE), or a stop after every recent step was rejected (a hypergradient
    that points the wrong way), which are checked."""
    if opts.polish_tol <= 0:
        return False
    return (work <= SMALL_WORK or stalled
            or (reason is StopReason.STEP and opts.strategy.needs_stop_check))


def _polish_settings(opts, work, eps):
    """``(step tolerance, inner tolerance)`` of the polish that follows a stop."""
    if work <= SMALL_WORK:
        return (min(opts.polish_tol, opts.tol) if opts.tol > 0 else opts.polish_tol,
                POLISH_EPS)
    return (opts.tol if opts.tol > 0 else opts.polish_tol), eps


def check_problems(problem) -> list:
    """``problem`` as a non-empty list of problems sharing their hyperparameters."""
    from ..problems import BilevelProblem

    problems = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    if not problems:
        raise ValueError("problem must be a BilevelProblem or a non-empty list of them.")
    wrong = [type(p).__name__ for p in problems if not isinstance(p, BilevelProblem)]
    if wrong:
        raise TypeError(f"problem must be a BilevelProblem (e.g. LogisticProblem(X_train, "
                        f"y_train, X_val, y_val)) or a list of them; got {wrong[0]}.")
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
    x0 : ndarray of shape (n_params,), list of them, or HoagResult, default=None
        Starting inner point (``problem.initial_x()``), one per problem. A
        result of an earlier run on the same data (problems with the same
        parameters; the penalty may differ, e.g. one shared ``C`` before one
        per class) gives its solutions and copies of its folds' curvature pairs
        (``result.memory``), shifted exactly to each new penalty; the result
        itself is not changed, and the new result carries the new pairs.
    heldout : (X, y) or callable, default=None
        Held-out data whose loss is recorded in the trace, never used by the
        optimisation; a callable ``x -> loss`` is accepted too. Its evaluation
        time is not counted in the trace's times.
    callback : callable, default=None
        ``callback(record)`` after each iteration, with the trace record as an
        ``OptimizeResult`` (plus a copy of ``x``). Raise ``StopIteration`` to stop.
    **settings
        Fields of :class:`~hoag_shine.outer.options.HoagOptions` (``max_iter``,
        ``tol``, ``bounds``, ...) replacing those of ``options``.

    Returns
    -------
    result : HoagResult
        ``result.x`` is the inner solution, or the list of the folds' ones;
        ``result.stop`` says why it stopped, as values.

    Warns
    -----
    BoundWarning
        When it stopped at a bound the hypergradient points out of.
    ConvergenceWarning
        When ``max_iter`` ran out with a stopping test active, or the search
        could not proceed (``status`` 5).
    """
    opts = HoagOptions.make(options, **settings)
    res = run_hoag(problem, alpha0, options=opts, x0=x0, heldout=heldout, callback=callback)
    warn_stop(res.stop, opts, stacklevel=3)  # warn <- hoag <- single_thread_blas <- caller
    return res


def run_hoag(problem, alpha0=None, *, options, x0=None, heldout=None, callback=None,
             runner=None, keep_runner=False, log=None):
    """:func:`hoag` without its warnings: the result says why it stopped
    (``result.stop``), for a caller that reports stops in its own words.

    ``runner``: folds already built and restaged by an earlier stage of the same
    fit (see :class:`~hoag_shine.outer.folds.FoldSet`); ``keep_runner``: leave
    the folds open and hand them over as ``result.runner`` (the caller closes it);
    ``log``: ``log(record)`` after each iteration (:class:`Trace`).
    """
    opts, problems = options, check_problems(problem)
    lower, upper = opts.bounds_arrays(problems[0].n_hyper)
    alpha = start_alpha(problems, alpha0, lower, upper)
    if heldout is not None and len(problems) > 1:
        raise ValueError("heldout is recorded for a single problem; pass one problem, not folds.")
    trace = Trace(heldout_loss_fn(problems[0], heldout), callback, log)
    stopping, scan = StoppingRule(opts), None
    t_start = time.perf_counter()
    with FoldSet(problems, alpha, x0, opts, runner=runner) as folds:
        folds._own = folds._own and not keep_runner
        if opts.scan and alpha0 is None and runner is None and folds.work <= SMALL_WORK:
            scan = coarse_scan(folds, alpha, lower, upper, opts.eps0, opts.scan_step)
            alpha = scan.best
        first = None if scan is None else min(opts.first_step, opts.scan_step / 2)
        steps = StepRule(opts, lower, upper, first_step=first)
        clock = time.perf_counter() - t_start  # held-out evaluations excluded
        stop, clock = _loop(folds, steps, stopping, trace, alpha, opts, clock)
        xs, memory = folds.x, folds.memory
    stop = _verdict(stop, steps)
    point = steps.point
    return HoagResult(
        alpha=point.alpha, x=xs[0] if len(xs) == 1 else xs, fun=point.value, grad=point.grad,
        nit=len(trace.records), success=stop.status in (0, 3), status=stop.status,
        message=describe(stop, opts), stop=stop, trace=trace.records, options=opts,
        time=clock, memory=memory, scan=scan,
        **({"runner": folds.runner} if keep_runner else {}),
    )


def _loop(folds, steps, stopping, trace, alpha, opts, clock):
    """The outer iterations; ``(stop, clock)`` when they end.

    When a stopping test first holds, the answer is polished (unless
    ``polish_tol`` is 0): every backward vector refined by conjugate gradient
    from then on, the accepted point solved again, a probe step of length ``tol``
    for a curvature of refined hypergradients only, and the (secant) steps go on
    until one moves ``alpha`` by at most ``polish_tol`` with the inner solves
    tightened to :data:`POLISH_EPS` (small problems, :data:`SMALL_WORK`),
    or, on larger ones, a stop on ``tol`` of SHINE is checked: by at most ``tol``
    at the same tolerance; if ``max_iter`` runs out first, the first stop stands.
    """
    trial, converged = alpha, None
    for _ in range(opts.max_iter):
        eps = stopping.next_eps()
        it = _iteration(folds, steps, trial, eps, trace.wants_x)
        clock += it.forward_time + it.backward_time
        if not trace.add(alpha=trial, time=clock, eps=eps, step_size=steps.step_size,
                         value=it.value, grad=it.grad, accepted=it.accepted,
                         forward_time=it.forward_time, backward_time=it.backward_time,
                         inner_iter=it.inner_iter, n_hvp=it.n_hvp, x=it.x):
            return Stop(StopReason.CALLBACK), clock
        failure = _failure(it, len(trace.records) == 1, trial)
        if failure is not None:
            return failure, clock
        trial = steps.next_alpha()
        reason, tighten = stopping.check(steps.step, steps.point,
                                         steps.predicted_decrease(trial),
                                         None if it.accepted else steps.rejected)
        if tighten:
            steps.refresh, trial = True, steps.point.alpha
        elif (reason is not None and converged is None
              and _polishes(reason, opts, folds.work, stopping.stalled)):
            converged, reason = reason, None  # polish it: refined hypergradients from now
            stopping.polish(*_polish_settings(opts, folds.work, eps))
            folds.end_game(newton=folds.work <= SMALL_WORK)
            # the accepted point solved again, then a probe step of tol: the secant
            # curvature of refined hypergradients
            steps.restart(first_step=max(opts.tol, 10 * opts.polish_tol))
            trial = steps.point.alpha
        if reason is not None:
            return Stop(converged or reason, alpha=steps.point.alpha), clock
        if stopping.out_of_time(clock):
            return Stop(StopReason.TIME), clock
        if np.array_equal(trial, steps.point.alpha) and not steps.refresh:
            return _stuck(steps), clock
    if converged is not None:  # (max_iter ran out while polishing: the first stop stands)
        return Stop(converged, alpha=steps.point.alpha), clock
    return Stop(StopReason.MAX_ITER), clock


@dataclass(frozen=True)
class _Iteration:
    """What one outer iteration gives the trace and the stopping tests."""

    accepted: bool
    value: float
    grad: np.ndarray
    n_hvp: int
    inner_iter: int
    forward_time: float
    backward_time: float
    x: np.ndarray | None
    inner_ok: bool = True
    inner_nit: int = 0
    inner_message: str = ""


def _iteration(folds, steps, trial, eps, want_x=False):
    """One outer iteration: the folds' trial solves, the accept test, then the backward
    pass (accepted) or the undoing of the step (rejected)."""
    t0 = time.perf_counter()
    forward = folds.forward(trial, eps, want_x)
    t1 = time.perf_counter()
    accepted, sufficient = steps.test(trial, forward, eps)
    if accepted:
        backward = folds.accept(trial, eps)
        steps.accept(trial, backward, eps, sufficient)
        out = dict(value=backward.value, grad=backward.grad, n_hvp=backward.n_hvp,
                   inner_ok=backward.inner_ok, inner_nit=backward.inner_nit,
                   inner_message=backward.inner_message)
    else:
        steps.reject()
        folds.reject()
        out = dict(value=forward.value, grad=np.full(trial.shape, np.nan), n_hvp=0)
    return _Iteration(accepted=accepted, inner_iter=forward.inner_iter, x=forward.x,
                      forward_time=t1 - t0, backward_time=time.perf_counter() - t1, **out)


def _failure(it, first, alpha):
    """Why the accepted point cannot be trusted (``None`` when it can)."""
    if not it.accepted:
        return None
    if not (np.isfinite(it.value) and np.all(np.isfinite(it.grad))):
        return Stop(StopReason.FAILURE, failure="nonfinite", alpha=alpha)
    if first and not it.inner_ok and it.inner_nit == 0:
        return Stop(StopReason.FAILURE, failure="no-progress", alpha=alpha,
                    inner_message=it.inner_message)
    if first and np.all(it.grad == 0):
        return Stop(StopReason.FAILURE, failure="zero-gradient", alpha=alpha)
    return None


def _stuck(steps):
    """The stop when the next step would not move ``alpha``."""
    if np.all(steps.point.grad == 0):
        return Stop(StopReason.ZERO_GRADIENT, alpha=steps.point.alpha)
    return Stop(StopReason.BOUND, sides=steps.bound_sides(), alpha=steps.point.alpha)


def _verdict(stop, steps):
    """The final stop: a search that ended (converged, out of iterations, stuck) at a
    bound the hypergradient points out of stopped at that bound."""
    if stop.reason is StopReason.FAILURE:
        return stop
    sides = steps.bound_sides()
    if np.any(sides) and stop.status in (0, 1, 4):
        return Stop(StopReason.BOUND, sides=sides, alpha=steps.point.alpha)
    return stop


def fit_inner(problem, alpha, *, tol, x0=None, maxcor=30, max_iter=1000, solver="scipy",
              polish=False, pairs_memory_mb=None, single_pairs=False, metric=None):
    """Solve the inner problem at ``alpha`` to a relative gradient tolerance.

    Stops when ``||grad_x h(x, alpha)||_D <= tol * problem.gradient_scale(alpha, D)``,
    in the metric ``D = problem.inverse_hessian_guess(alpha)`` (or ``metric``), which
    is also the L-BFGS's initial inverse-Hessian diagonal (see
    :meth:`~hoag_shine.problems.BilevelProblem.gradient_scale`).

    Parameters
    ----------
    problem : BilevelProblem
    alpha : array-like of shape (n_hyper,)
    tol : float
        Relative tolerance.
    x0 : ndarray of shape (n_params,), default=None
        Warm start (``problem.initial_x()``).
    maxcor : int or None, default=30
        L-BFGS memory (``None``: :func:`~hoag_shine.inner.default_maxcor` for one
        memory in ``pairs_memory_mb``).
    max_iter : int, default=1000
        Iteration cap (0: no L-BFGS iteration, e.g. to polish ``x0`` only).
    solver : {"scipy", "numpy"}, default="scipy"
        SciPy's L-BFGS-B or the project's L-BFGS.
    polish : bool, default=False
        When L-BFGS stops above the tolerance (its line search reaches the
        limits of floating point first), refine the solution with a few Newton
        steps (Hessian systems solved by conjugate gradient).
    pairs_memory_mb : float, default=None
        Memory, in MB, the ``"numpy"`` solver's pairs may take: above it they
        are stored in single precision (:func:`~hoag_shine.inner.plan_pairs`).
        ``None``: no limit.
    single_pairs : bool, default=False
        Store the ``"numpy"`` solver's pairs in single precision even where double
        precision fits ``pairs_memory_mb``: the products (memory-bound on long
        vectors) read half the bytes, accurate to ~1e-6 relative, which moves the
        iterates by rounding only.
    metric : ndarray of shape (n_params,), default=None
        The diagonal ``D`` to solve and measure in: the L-BFGS's first step and
        initial matrix (scaled), and the stopping test's metric. ``None``:
        ``problem.inverse_hessian_guess(alpha)``. The estimators' final fits pass
        ``problem.preconditioner_guess(alpha)``.

    Returns
    -------
    result : InnerResult
    """
    alpha = problem.check_alpha(alpha)
    x = problem.initial_x() if x0 is None else np.array(x0, dtype=np.float64)
    metric = problem.inverse_hessian_guess(alpha) if metric is None else metric
    abs_tol = tol * problem.gradient_scale(alpha, metric)
    fun_grad = lambda v: problem.inner_value_grad(v, alpha)  # noqa: E731
    if max_iter > 0:
        plan = plan_pairs(x.size, maxcor, 1, np.inf if pairs_memory_mb is None
                          else pairs_memory_mb, single=single_pairs)
        memory = LbfgsMemory(plan.maxcor, x.size, metric, dtype=plan.dtype)
        inner = get_inner_solver(solver).solve(fun_grad, x, tol=abs_tol, max_iter=max_iter,
                                               memory=memory, h0=metric, gnorm_weights=metric)
    else:  # no L-BFGS iteration: Newton steps only (polish) or an evaluation
        f, g = fun_grad(x)
        gnorm = metric_norm(g, metric)
        inner = InnerResult(x=x, fun=f, jac=g, grad_norm=gnorm, nit=0, nfev=1,
                            success=gnorm <= abs_tol, message="no L-BFGS iteration asked for",
                            memory=LbfgsMemory(default_maxcor(x.size) if maxcor is None
                                               else maxcor, x.size), time=0.0)
    if polish and not inner.success:
        x, gnorm, n_steps = newton_polish(
            fun_grad, lambda v: problem.inner_hessp(v, alpha), inner.x, tol=abs_tol,
            gnorm_weights=metric)
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
        ``||grad_x h||_D <= inner_tol * problem.gradient_scale(alpha)`` (see
        :func:`fit_inner`).
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
    hg = compute_hypergradient(problem, inner.x, alpha, strategy, eps=eps, memory=inner.memory,
                               metric=problem.scale_guess(alpha))
    if not (np.isfinite(hg.value) and np.all(np.isfinite(hg.grad))):
        raise ValueError(
            f"The outer value or hypergradient at alpha={alpha} is not finite; the "
            "log-penalty is outside the range where the problem can be evaluated in floating "
            "point. Use a smaller |alpha| or rescale the data.")
    if return_result:
        return hg.value, hg.grad, hg, inner
    return hg.value, hg.grad
