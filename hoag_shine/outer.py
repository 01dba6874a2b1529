"""HOAG: approximate-hypergradient descent on the hyperparameters.

Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016.
Each outer iteration solves the inner problem to a tolerance that shrinks
along a schedule, computes an approximate hypergradient with one of the
strategies of :mod:`hoag_shine.hypergrad`, and takes a projected gradient step
on ``alpha`` of size ``1 / L``. ``L`` comes from the secant of the last two
hypergradients (default) or from HOAG's rule (longer steps after a sufficient
decrease). A step that increases the outer value is undone (``alpha``, ``x``
and the hypergradient go back to the last accepted point), ``L`` doubles, and
the last accepted point is solved again at the next, tighter tolerance, so
that its outer value and hypergradient are not stale when the shorter step is
taken from it.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from scipy.optimize import OptimizeResult
from sklearn.exceptions import ConvergenceWarning

from ._utils import single_thread_blas
from .hypergrad import compute_hypergradient, get_strategy
from .inner import minimize_lbfgs, minimize_lbfgs_numpy, newton_polish

__all__ = ["HoagResult", "hoag", "hypergradient", "tolerance_schedule", "TRACE_FIELDS"]

logger = logging.getLogger("hoag_shine")

_EPS_FLOOR = 1e-12

#: Fields of each trace record, in order.
TRACE_FIELDS = (
    "iteration", "alpha", "outer_value", "heldout_value", "hypergradient",
    "hypergradient_norm", "accepted", "time", "forward_time", "backward_time",
    "inner_iter", "n_hvp", "eps", "step_size",
)


def tolerance_schedule(kind="exponential", *, eps0=1e-3, decay=0.9):
    """Return ``k -> eps_k``, the relative tolerance of the k-th inner solve.

    Parameters
    ----------
    kind : {"exponential", "quadratic", "cubic", "exact"} or callable
        ``eps0 * decay**k``, ``eps0 / (k + 1)**2``, ``eps0 / (k + 1)**3`` or a
        constant ``1e-12``. A callable is returned as it is.
    eps0 : float, default=1e-3
        First tolerance.
    decay : float, default=0.9
        Factor of the exponential schedule, in (0, 1].

    Returns
    -------
    schedule : callable
        ``schedule(k)`` for ``k = 0, 1, ...``; never below 1e-12.
    """
    if callable(kind):
        return kind
    if not 0 < eps0 < 1:
        raise ValueError(f"eps0 must be in (0, 1), got {eps0}.")
    if kind == "exponential":
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}.")
        return lambda k: max(eps0 * decay**k, _EPS_FLOOR)
    if kind == "quadratic":
        return lambda k: max(eps0 / (k + 1) ** 2, _EPS_FLOOR)
    if kind == "cubic":
        return lambda k: max(eps0 / (k + 1) ** 3, _EPS_FLOOR)
    if kind == "exact":
        return lambda k: _EPS_FLOOR
    raise ValueError(
        f"Unknown tol_schedule {kind!r}; use 'exponential', 'quadratic', 'cubic', "
        "'exact' or a callable k -> eps_k."
    )


class HoagResult(OptimizeResult):
    """Result of :func:`hoag`.

    Attributes
    ----------
    alpha : ndarray of shape (n_hyper,)
        Best accepted hyperparameters (the last accepted point).
    x : ndarray of shape (n_params,)
        Inner solution at ``alpha``.
    fun : float
        Outer value at ``(x, alpha)``.
    grad : ndarray of shape (n_hyper,)
        Hypergradient at ``alpha``.
    nit : int
        Outer iterations (inner solves), the initial one included.
    success : bool
        Whether the stopping test on ``tol`` was met (or the loop was stopped
        by the callback or stood at a bound).
    message : str
    trace : list of dict
        One record per outer iteration, with the keys of ``TRACE_FIELDS``.
    """

    def trace_columns(self) -> dict:
        """The trace as a dict of arrays (one entry per record)."""
        return {k: np.array([r[k] for r in self.trace]) for k in TRACE_FIELDS}


def _check_bounds(bounds, n_hyper):
    lo, hi = bounds
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n_hyper,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n_hyper,)).copy()
    if np.any(lo >= hi):
        raise ValueError(f"bounds must satisfy lower < upper, got {bounds}.")
    return lo, hi


def _heldout_fn(problem, heldout):
    if heldout is None:
        return None
    if callable(heldout):
        return heldout
    X_h, y_h = heldout
    from .problems.base import _check_X

    X_h = _check_X(X_h, "X_heldout", n_features=getattr(problem, "n_features", None))
    return lambda x: problem.data_loss(x, X_h, y_h)


@single_thread_blas
def hoag(
    problem,
    alpha0,
    *,
    hypergradient="shine",
    hypergradient_params=None,
    max_iter=30,
    tol=1e-3,
    value_tol=0.0,
    patience=5,
    stop_eps=1e-6,
    tol_schedule="exponential",
    eps0=1e-2,
    decay=0.6,
    bounds=(-12.0, 12.0),
    x0=None,
    maxcor=30,
    max_inner_iter=1000,
    step_growth=0.95,
    step_rule="secant",
    max_step=3.0,
    max_step_ratio=3.0,
    first_step=2.0,
    warm_memory=True,
    inner_solver="numpy",
    heldout=None,
    callback=None,
    max_time=None,
    n_jobs=None,
):
    """Tune hyperparameters by approximate hypergradient descent (HOAG).

    Parameters
    ----------
    problem : BilevelProblem or list of BilevelProblem
        E.g. :class:`~hoag_shine.LogisticProblem`. A list (cross-validation
        folds sharing ``alpha``) minimises the sum of their outer criteria;
        each fold keeps its own inner warm start and L-BFGS memory.
    alpha0 : array-like of shape (n_hyper,)
        Starting log-penalties.
    hypergradient : str or HypergradientStrategy, default="shine"
        How to approximate the inverse-Hessian-vector product: "shine",
        "shine-refine", "shine-opa", "cg", "truncated-cg", "jacobian-free" or
        "exact".
    hypergradient_params : dict, default=None
        Constructor parameters of the strategy (e.g. ``{"max_iter": 5}``).
    max_iter : int, default=30
        Outer iterations (inner solves, the initial one and rejected steps
        included).
    tol : float, default=1e-3
        Stop when an accepted step moves ``alpha`` by at most ``tol``
        (max-norm, log scale).
    value_tol : float, default=0
        Also stop when the outer value has settled: the last accepted value is
        lower than the one ``patience`` iterations earlier by at most
        ``value_tol`` times its magnitude. On a flat validation loss, or with
        hypergradients too noisy for the steps to shrink below ``tol``,
        ``alpha`` can wander without improving anything (the estimators use
        ``1e-4``). ``0`` disables this test; ``tol=0`` and ``value_tol=0`` run
        all ``max_iter`` iterations.
    patience : int, default=5
        Outer iterations over which ``value_tol`` is measured.
    stop_eps : float, default=1e-6
        The two stopping tests count only once the inner tolerance ``eps_k``
        is at most ``stop_eps``. When one would fire earlier (a loose schedule
        can settle ``alpha`` while its solves, and SHINE's estimate with
        them, are still rough), the schedule jumps to its first tolerance
        ``<= stop_eps``, the accepted point is solved again there, and the
        search goes on: it ends on tight solves however loose it started. On
        the ridge test problem SHINE then stops 2e-5 from the optimum in
        log-alpha (42 outer iterations) instead of 0.03 (15). ``None``: the
        tests count at any tolerance.
    tol_schedule : {"exponential", "quadratic", "cubic", "exact"} or callable, default="exponential"
        Schedule of the relative tolerance ``eps_k``; the k-th inner solve stops
        when ``||grad_x h|| <= eps_k * ||grad_x h(0, alpha0)||`` and
        conjugate-gradient strategies stop at relative residual ``eps_k``.
    eps0 : float, default=1e-2
        First tolerance of the schedule. Far from the optimum a loose solve
        gives a good enough direction; on 20news (10 seeds) ``1e-2`` with
        ``decay=0.6`` reached 1% of the best held-out loss in about half the
        time of HOAG's ``1e-3`` with ``0.9``, and ``3e-2`` or more lost seeds.
    decay : float, default=0.6
        Factor of the exponential schedule (HOAG uses 0.9; the SHINE paper
        0.78 for SHINE and Jacobian-Free).
    bounds : (float, float) or (array, array), default=(-12, 12)
        Box on ``alpha``; steps are projected onto it.
    x0 : ndarray of shape (n_params,) or list of them, default=None
        Starting inner point (zeros by default), one per problem.
    maxcor : int, default=30
        Memory of the inner L-BFGS (the curvature pairs SHINE reuses).
    max_inner_iter : int, default=1000
        Iteration cap of each inner solve.
    step_growth : float, default=0.95
        Factor applied to ``L`` after a step that passes the sufficient
        decrease test (HOAG's 0.95: steps grow by about 5%).
    step_rule : {"secant", "hoag"}, default="secant"
        ``"hoag"``: ``L`` only changes by ``step_growth`` and doubling.
        ``"secant"``: after each accepted step, ``L`` is set to the secant
        curvature ``s.y / s.s`` of the last two hypergradients (a
        Barzilai-Borwein step), when it is positive; the accept/reject test,
        ``max_step`` and the rejection doubling keep it safe.
    max_step : float, default=3.0
        Largest move of any log-penalty in one step (``"secant"`` rule only).
    max_step_ratio : float, default=3.0
        A step moves no log-penalty by more than ``max_step_ratio`` times the
        largest move of the last accepted step (``"secant"`` rule only): with
        noisy hypergradients (SHINE on ill-conditioned problems) two nearly
        equal ones give a nearly flat secant and an overlong step.
    first_step : float, default=2.0
        Length (Euclidean, divided by ``sqrt(n_hyper)``) of the first step: the
        first ``L`` is ``||grad_0|| / (sqrt(n_hyper) * first_step)``.
    warm_memory : bool, default=True
        Carry the L-BFGS curvature pairs from one inner solve to the next, each
        ``y_i`` shifted by ``(w_new - w_old) * s_i`` where ``w`` is the penalty's
        Hessian diagonal (exact for an L2 penalty), so that SHINE has pairs even
        when a warm-started inner solve takes few or no iterations. ``False``
        keeps only the pairs of the current solve, as in the SHINE paper.
    inner_solver : {"numpy", "scipy"}, default="numpy"
        ``"scipy"``: SciPy's L-BFGS-B (:func:`~hoag_shine.inner.minimize_lbfgs`),
        which starts each solve with an empty memory (the carried pairs serve
        SHINE only). ``"numpy"``: the project's L-BFGS
        (:func:`~hoag_shine.inner.minimize_lbfgs_numpy`), which starts each solve
        from the carried pairs when ``warm_memory`` is on.
    heldout : (X, y) or callable, default=None
        Held-out data whose loss is recorded in the trace, never used by the
        optimisation; a callable ``x -> loss`` is accepted too. Its
        evaluation time is not counted in the trace's times.
    callback : callable, default=None
        ``callback(record)`` after each iteration, with the trace record as an
        ``OptimizeResult`` (plus ``x``). Raise ``StopIteration`` to stop.
    max_time : float, default=None
        Wall-clock budget in seconds (held-out evaluations not counted); the
        loop stops after the iteration that exceeds it.
    n_jobs : int, default=None
        Folds solved in parallel (threads) when ``problem`` is a list.

    Returns
    -------
    result : HoagResult
        ``result.x`` is the inner solution, or the list of the folds' ones.

    Notes
    -----
    Each step is ``alpha - grad / L``, projected onto the bounds. A step from
    ``alpha_k`` to ``alpha_t`` is accepted when the outer value does not
    increase, ``G(alpha_t) <= G(alpha_k) + m``; otherwise it is undone, ``L``
    doubles and the last accepted point is solved again at the next tolerance.
    With ``step_rule="hoag"``, an accepted step makes the next ones longer
    (``L`` times ``step_growth``) when the decrease is sufficient::

        G(alpha_t) <= G(alpha_k) + grad_k . (alpha_t - alpha_k)
                      + (L / 2) ||alpha_t - alpha_k||^2 + m

    With ``step_rule="secant"``, ``L`` becomes the secant curvature of the last
    two hypergradients (when positive), capped so that no coordinate moves by
    more than ``max_step``, nor by more than ``max_step_ratio`` times the last
    accepted move.

    ``G = g(x) - z_k . grad_x h(x)`` is the outer value corrected to first
    order for the inner solution's error (a Newton step on the inner problem
    seen through the outer gradient; ``z_k ~= H^{-1} grad_x g`` is the
    backward-pass vector of the last accepted point, or the L-BFGS estimate for
    Jacobian-Free), and ``m = (eps_k + eps_t) |g(alpha_k)|`` a margin for what
    the correction misses. Comparing raw values of inexact inner solutions
    rejects good steps and accepts bad ones. The first ``L`` is
    ``||grad_0|| / (sqrt(n_hyper) first_step)``: by default the first step
    moves each log-penalty by about two.
    """
    strategy = get_strategy(hypergradient, **(hypergradient_params or {}))
    problems = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    if not problems:
        raise ValueError("problem must be a BilevelProblem or a non-empty list of them.")
    n_hyper = problems[0].n_hyper
    if any(p.n_hyper != n_hyper for p in problems):
        raise ValueError("All the problems (folds) must have the same number of hyperparameters.")
    alpha = problems[0].check_alpha(alpha0)
    lo, hi = _check_bounds(bounds, n_hyper)
    if np.any(alpha < lo) or np.any(alpha > hi):
        raise ValueError(f"alpha0={alpha} lies outside the bounds [{lo}, {hi}].")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}.")
    if not 0 < step_growth <= 1:
        raise ValueError(f"step_growth must be in (0, 1], got {step_growth}.")
    if step_rule not in ("hoag", "secant"):
        raise ValueError(f"step_rule must be 'hoag' or 'secant', got {step_rule!r}.")
    if inner_solver not in ("scipy", "numpy"):
        raise ValueError(f"inner_solver must be 'scipy' or 'numpy', got {inner_solver!r}.")
    if not first_step > 0:
        raise ValueError(f"first_step must be > 0, got {first_step}.")
    if not max_step > 0:
        raise ValueError(f"max_step must be > 0, got {max_step}.")
    if not max_step_ratio > 0:
        raise ValueError(f"max_step_ratio must be > 0, got {max_step_ratio}.")
    if not value_tol >= 0:
        raise ValueError(f"value_tol must be >= 0, got {value_tol}.")
    if int(patience) < 1:
        raise ValueError(f"patience must be >= 1, got {patience}.")
    schedule = tolerance_schedule(tol_schedule, eps0=eps0, decay=decay)
    if stop_eps is not None and not stop_eps > 0:
        raise ValueError(f"stop_eps must be > 0 or None, got {stop_eps}.")
    if heldout is not None and len(problems) > 1:
        raise ValueError("heldout is recorded for a single problem; pass one problem, not folds.")
    heldout_fn = _heldout_fn(problems[0], heldout)
    if x0 is None:
        x0 = [None] * len(problems)
    elif len(problems) == 1 and not isinstance(x0, (list, tuple)):
        x0 = [x0]
    if len(x0) != len(problems):
        raise ValueError(f"x0 must give one starting point per problem ({len(problems)}).")
    parallel = Parallel(n_jobs=n_jobs, backend="threading") if len(problems) > 1 else None

    def run(method, *args):
        if parallel is None or parallel.n_jobs in (None, 1):
            return [getattr(f, method)(*args) for f in folds]
        return parallel(delayed(getattr(f, method))(*args) for f in folds)

    clock = 0.0  # wall time of the optimisation, held-out evaluations excluded
    t_start = time.perf_counter()
    folds = [_Fold(p, alpha, x, strategy, maxcor, max_inner_iter, warm_memory, inner_solver)
             for p, x in zip(problems, x0)]
    clock += time.perf_counter() - t_start

    trace = []
    accepted_values = []  # the last accepted outer value, after each iteration
    base = None  # last accepted point: alpha, value, corrected value, grad, eps
    L = None
    last_move = None  # max-norm of the last accepted move of alpha
    message = f"reached max_iter={max_iter} outer iterations"
    success = False
    trial_alpha = alpha
    refresh = False  # re-solve the last accepted point at a tighter tolerance
    k_eps = 0  # index into the schedule (jumps ahead when a stop comes too early)
    for k in range(int(max_iter)):
        eps = schedule(k_eps)
        k_eps += 1
        t0 = time.perf_counter()
        forward = run("forward", trial_alpha, eps)
        t_forward = time.perf_counter() - t0

        t1 = time.perf_counter()
        sufficient = False
        if base is None or refresh:
            accepted = True
        else:
            value_t = sum(r["value"] for r in forward)
            value_tc = sum(r["value_c"] for r in forward)
            d = trial_alpha - base["alpha"]
            slack = (base["eps"] + eps) * abs(base["value"])
            accepted = value_tc <= base["value_c"] + slack
            sufficient = value_tc <= (base["value_c"] + float(base["grad"] @ d)
                                      + 0.5 * L * float(d @ d) + slack)
        if accepted:
            backward = run("accept", trial_alpha, eps)
            value = sum(r.value for r in backward)
            grad = np.sum([r.grad for r in backward], axis=0)
            n_hvp = sum(r.n_hvp for r in backward)
            step = None if (base is None or refresh) else trial_alpha - base["alpha"]
            prev_grad = None if base is None else base["grad"]
            base = dict(alpha=trial_alpha, value=value, grad=grad, eps=eps,
                        value_c=sum(f.value_c for f in folds))
            if L is None:
                gnorm = float(np.linalg.norm(grad))
                L = gnorm / (np.sqrt(n_hyper) * first_step) if gnorm > 0 else 1.0
            elif step_rule == "secant" and step is not None:
                y = grad - prev_grad
                curv = float(step @ y) / float(step @ step)
                # Positive secant curvature: a Barzilai-Borwein step. Otherwise
                # (a sign of noise or of a concave stretch) grow the step.
                L = curv if curv > 0 else L * step_growth
                last_move = float(np.max(np.abs(step)))
            elif sufficient:
                L *= step_growth
            refresh = False
        else:
            value, grad, n_hvp, step = value_t, np.full(n_hyper, np.nan), 0, None
            L *= 2.0
            refresh = True
        t_backward = time.perf_counter() - t1
        clock += t_forward + t_backward

        x_trial = forward[0]["inner"].x
        record = dict(
            iteration=k, alpha=trial_alpha.copy(), outer_value=float(value),
            heldout_value=float(heldout_fn(x_trial)) if heldout_fn is not None else np.nan,
            hypergradient=grad.copy(), hypergradient_norm=float(np.linalg.norm(grad)),
            accepted=bool(accepted), time=clock, forward_time=t_forward,
            backward_time=t_backward, inner_iter=int(sum(r["inner"].nit for r in forward)),
            n_hvp=int(n_hvp), eps=float(eps), step_size=1.0 / L,
        )
        trace.append(record)
        logger.info(
            "hoag it %d: alpha=%s outer=%.6g %s inner_iter=%d n_hvp=%d time=%.3fs",
            k, np.array2string(trial_alpha, precision=4), value,
            "accepted" if accepted else "rejected", record["inner_iter"], n_hvp, clock,
        )
        if callback is not None:
            try:
                callback(OptimizeResult(x=x_trial, **record))
            except StopIteration:
                message, success = "stopped by the callback", True
                break

        stop = None
        if step is not None and np.max(np.abs(step)) <= tol:
            stop = f"converged: step on alpha <= tol={tol}"
        accepted_values.append(base["value"])
        if (stop is None and value_tol > 0 and len(accepted_values) > patience
                and accepted_values[-1 - patience] - accepted_values[-1]
                <= value_tol * abs(accepted_values[-1])):
            stop = (f"converged: the outer value decreased by at most value_tol={value_tol} "
                    f"(relative) over the last patience={patience} iterations")
        if stop is not None and stop_eps is not None and base["eps"] > stop_eps:
            # Too early to trust: tighten the schedule and solve the point again.
            jump = next((j for j in range(k_eps, k_eps + 100_000) if schedule(j) <= stop_eps),
                        None)
            if jump is not None:
                k_eps, stop, refresh = jump, None, True
                accepted_values.clear()
        if stop is not None:
            message, success = stop, True
            break
        if max_time is not None and clock >= max_time:
            message = f"stopped by the time budget max_time={max_time}s"
            break
        if refresh:
            trial_alpha = base["alpha"]
            continue
        if step_rule == "secant" and last_move is not None:
            # Bound the move: at most max_step, and at most max_step_ratio times
            # the last accepted move (a nearly flat secant, from noisy
            # hypergradients, would otherwise throw alpha far away).
            cap = min(max_step, max_step_ratio * last_move)
            L = max(L, float(np.max(np.abs(base["grad"]))) / cap)
        trial_alpha = np.clip(base["alpha"] - base["grad"] / L, lo, hi)
        if np.array_equal(trial_alpha, base["alpha"]):
            if np.all(base["grad"] == 0):
                message = "converged: the hypergradient is zero"
            else:
                message = "converged: alpha stands at a bound the hypergradient points out of"
            success = True
            break
    else:
        if tol > 0 or value_tol > 0:
            warnings.warn(
                f"HOAG did not meet its stopping tests (step <= tol={tol}, or a relative "
                f"decrease <= value_tol={value_tol} over {patience} iterations) within "
                f"max_iter={max_iter} outer iterations; increase max_iter, tol or value_tol.",
                ConvergenceWarning,
                stacklevel=3,  # hoag <- single_thread_blas wrapper <- caller
            )

    xs = [f.x for f in folds]
    return HoagResult(
        alpha=base["alpha"], x=xs[0] if len(folds) == 1 else xs, fun=base["value"],
        grad=base["grad"], nit=len(trace), success=success, message=message, trace=trace,
    )


class _Fold:
    """State of one inner problem across outer iterations.

    Keeps the last accepted inner solution (warm start), its L-BFGS memory and
    backward-pass vector, and the trial solve awaiting the accept test.
    """

    def __init__(self, problem, alpha, x0, strategy, maxcor, max_inner_iter, warm_memory,
                 inner_solver="scipy"):
        self.problem = problem
        self.solve = minimize_lbfgs if inner_solver == "scipy" else minimize_lbfgs_numpy
        if strategy.uses_opa and inner_solver != "numpy":
            raise ValueError(f"hypergradient={strategy.name!r} inserts curvature pairs during "
                             "the inner solve, which SciPy's L-BFGS-B cannot do: use "
                             "inner_solver='numpy'.")
        self.n_solves = 0
        self.strategy = strategy
        self.maxcor = maxcor
        self.max_inner_iter = max_inner_iter
        self.warm_memory = warm_memory
        self.x = problem.initial_x() if x0 is None else np.array(x0, dtype=np.float64)
        if self.x.shape != (problem.n_params,):
            raise ValueError(f"x0 must have shape ({problem.n_params},), got {self.x.shape}.")
        norm = float(np.linalg.norm(problem.inner_value_grad(problem.initial_x(), alpha)[1]))
        self.norm_init = norm if norm > 0 else 1.0
        self.alpha = None  # alpha of the accepted state
        self.fg = None  # inner value and gradient at (x, alpha) of the accepted state
        self.memory = None
        self.z = None  # backward-pass vector of the accepted state
        self.zc = None  # vector of the first-order value correction
        self.value_c = None
        self.trial = None

    def forward(self, alpha, eps):
        """Inner solve at ``alpha`` from the accepted state; outer value, corrected."""
        memory = None
        if self.warm_memory and self.memory is not None:
            memory = self.memory.copy()
            memory.shift(self.problem.penalty_weights(alpha)
                         - self.problem.penalty_weights(self.alpha))
        kwargs = {}
        if self.fg is not None:  # the warm start's evaluation, moved to the new alpha
            kwargs["fg0"] = self.problem.inner_value_grad_update(self.x, *self.fg, self.alpha,
                                                                 alpha)
        if self.strategy.uses_opa:
            kwargs["opa"] = (lambda v: self.problem.outer_value_grad(v, alpha)[1],
                             self.strategy.opa_period(self.n_solves))
        inner = self.solve(
            lambda v: self.problem.inner_value_grad(v, alpha), self.x,
            tol=eps * self.norm_init, maxcor=self.maxcor, max_iter=self.max_inner_iter,
            memory=memory, **kwargs,
        )
        self.n_solves += 1
        out = {"inner": inner, "value": None, "value_c": None}
        if self.zc is not None:
            value = self.problem.outer_value_grad(inner.x, alpha)[0]
            out.update(value=value, value_c=value - float(self.zc @ inner.jac))
        self.trial = inner
        return out

    def accept(self, alpha, eps):
        """Make the trial solve the accepted state; return its hypergradient."""
        inner = self.trial
        hg = compute_hypergradient(
            self.problem, inner.x, alpha, self.strategy, eps=eps, memory=inner.memory,
            init=self.z if self.strategy.warm_start else None,
        )
        self.zc = hg.z if self.strategy.approximates_inverse else inner.memory.inv_hvp(hg.grad_x)
        self.value_c = hg.value - float(self.zc @ inner.jac)
        self.x, self.alpha, self.memory, self.z = inner.x, alpha, inner.memory, hg.z
        self.fg = (inner.fun, inner.jac)
        return hg


@single_thread_blas
def hypergradient(
    problem,
    alpha,
    *,
    method="exact",
    inner_tol=1e-10,
    backward_tol=None,
    x0=None,
    maxcor=30,
    max_inner_iter=10000,
    polish=True,
    return_result=False,
    **params,
):
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
        ``||grad_x h|| <= inner_tol * ||grad_x h(0, alpha)||``.
    backward_tol : float, default=None
        Relative tolerance passed to the strategy (CG residual); defaults to
        ``inner_tol``.
    x0 : ndarray of shape (n_params,), default=None
        Starting inner point (zeros).
    maxcor : int, default=30
        Inner L-BFGS memory.
    max_inner_iter : int, default=10000
        Iteration cap of the inner solve.
    polish : bool, default=True
        When L-BFGS stops above the tolerance (its line search reaches the
        limits of floating point first), refine the solution with a few Newton
        steps (Hessian systems solved by conjugate gradient). The curvature
        pairs stay those of the L-BFGS run.
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
    x = problem.initial_x() if x0 is None else np.array(x0, dtype=np.float64)
    norm0 = float(np.linalg.norm(problem.inner_value_grad(problem.initial_x(), alpha)[1]))
    tol = inner_tol * (norm0 if norm0 > 0 else 1.0)
    fun_grad = lambda v: problem.inner_value_grad(v, alpha)  # noqa: E731
    inner = minimize_lbfgs(fun_grad, x, tol=tol, maxcor=maxcor, max_iter=max_inner_iter)
    if polish and not inner.success:
        x, gnorm, n_steps = newton_polish(
            fun_grad, lambda v: problem.inner_hessp(v, alpha), inner.x, tol=tol)
        f, g = fun_grad(x)
        inner.update(x=x, fun=f, jac=g, grad_norm=gnorm, success=gnorm <= tol,
                     newton_steps=n_steps)
    eps = inner_tol if backward_tol is None else backward_tol
    hg = compute_hypergradient(problem, inner.x, alpha, strategy, eps=eps, memory=inner.memory)
    if return_result:
        return hg.value, hg.grad, hg, inner
    return hg.value, hg.grad
