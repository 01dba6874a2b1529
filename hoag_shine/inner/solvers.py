"""The inner solvers: L-BFGS runs that keep (and may start from) their curvature pairs.

* :class:`InnerSolver`: the one interface the outer loop's folds call,
  ``solve(fun_grad, x0, *, tol, max_iter, memory, fg0, h0, gnorm_weights, opa)``;
  :class:`NumpyLbfgs` and :class:`ScipyLbfgs` implement it
  (:func:`get_inner_solver` by name);
* :func:`minimize_lbfgs_numpy`: the project's L-BFGS (two-loop recursion,
  strong Wolfe line search) whose memory is open: it starts from the pairs it
  is given and OPA inserts pairs mid-run;
* :func:`minimize_lbfgs`: SciPy's ``L-BFGS-B`` (public API only), stopped on
  HOAG's test, its pairs recorded;
* :func:`newton_polish`: Newton steps past the precision limit of a line search.
"""

from __future__ import annotations

import time
import warnings
from collections import deque

import numpy as np
from scipy.optimize import OptimizeResult, minimize
from scipy.sparse.linalg import LinearOperator, cg
from sklearn.exceptions import ConvergenceWarning

from .memory import LbfgsMemory
from .metric import metric_norm as _norm

_EPS = np.finfo(np.float64).eps

#: Iterations in a row without a decrease of the objective (in floating point) after
#: which a solve stops as stalled: its tolerance is out of floating point's reach.
_STALL = 30

__all__ = ["INNER_SOLVERS", "InnerResult", "InnerSolver", "NumpyLbfgs", "ScipyLbfgs",
           "get_inner_solver", "minimize_lbfgs", "minimize_lbfgs_numpy", "newton_polish"]


def warn_iteration_cap(max_iter, gnorm, tol, stacklevel=3):
    warnings.warn(
        f"The inner L-BFGS solver stopped after max_iter={max_iter} iterations "
        f"with ||grad|| = {gnorm:.3g} > tol = {tol:.3g}. Increase the inner "
        "iteration cap (max_inner_iter) or loosen the tolerance schedule.",
        ConvergenceWarning,
        stacklevel=stacklevel,
    )



class InnerResult(OptimizeResult):
    """Result of an inner solve.

    Attributes
    ----------
    x : ndarray of shape (n_params,)
        Last iterate.
    fun : float
        Inner objective at ``x``.
    jac : ndarray of shape (n_params,)
        Inner gradient at ``x``.
    grad_norm : float
        ``||jac||``.
    nit : int
        Iterations taken (accepted steps).
    nfev : int
        Objective-and-gradient evaluations.
    success : bool
        Whether ``grad_norm <= tol``.
    message : str
    memory : LbfgsMemory
        The curvature pairs of the run, oldest first (at most ``maxcor``).
    time : float
        Wall time in seconds.
    """


class _CachedFunGrad:
    """``fun_grad`` with its most recent evaluations remembered (SciPy's callback
    gets the iterate only: its gradient is looked up), counting evaluations."""

    def __init__(self, fun_grad, size=4):
        self.fun_grad, self.nfev = fun_grad, 0
        self.cache: deque = deque(maxlen=size)

    def remember(self, x, f, g):
        self.cache.append((np.array(x), float(f), np.array(g, dtype=np.float64)))

    def __call__(self, x):
        for xc, fc, gc in reversed(self.cache):
            if np.array_equal(xc, x):
                return fc, gc.copy()
        self.nfev += 1
        f, g = self.fun_grad(x)
        g = np.asarray(g, dtype=np.float64)
        self.cache.append((np.array(x), float(f), g))
        return f, g.copy()


def minimize_lbfgs(fun_grad, x0, *, tol: float, maxcor: int = 30, max_iter: int = 1000,
                   memory: LbfgsMemory | None = None, fg0=None, h0=None, gnorm_weights=None,
                   opa=None, callback=None, warn=True) -> InnerResult:
    """Minimise a smooth function with SciPy's L-BFGS-B and keep its curvature pairs.

    Stops as soon as ``||grad f(x)||_2 <= tol`` (HOAG's test), checked at
    every iterate, the starting point included.

    Parameters
    ----------
    fun_grad : callable
        ``fun_grad(x) -> (value, gradient)``.
    x0 : ndarray of shape (n_params,)
        Starting point (warm start).
    tol : float
        Absolute tolerance on the Euclidean norm of the gradient.
    maxcor : int, default=30
        L-BFGS memory: number of curvature pairs kept.
    max_iter : int, default=1000
        Iteration cap. Reaching it with ``||grad|| > tol`` raises a
        :class:`~sklearn.exceptions.ConvergenceWarning`.
    memory : LbfgsMemory, default=None
        Where to append the run's pairs. ``None`` starts an empty memory. SciPy's
        solver itself always starts from an empty memory.
    fg0 : (float, ndarray), default=None
        ``fun_grad(x0)`` when it is already known (saves one evaluation).
    h0 : ndarray of shape (n_params,), default=None
        A guess of the inverse Hessian's diagonal. SciPy's solver sizes its own
        steps: here it is only the diagonal of a new memory (``memory=None``).
    gnorm_weights : ndarray of shape (n_params,), default=None
        Measure the gradient in the metric ``sqrt(sum(gnorm_weights * g**2))``
        (e.g. a guess of the inverse Hessian's diagonal: a scale-free test);
        also the diagonal of a new memory when ``h0`` is not given.
    opa : None
        Not supported: SciPy's solver cannot take pairs mid-run (a clear
        ``ValueError``; use :func:`minimize_lbfgs_numpy`).
    callback : callable, default=None
        ``callback(x)`` after each iteration; ``StopIteration`` stops the solve.
    warn : bool, default=True
        Warn when ``max_iter`` runs out (``False``: the caller finishes the solve).

    Returns
    -------
    result : InnerResult
    """
    if opa is not None:
        raise ValueError("SciPy's L-BFGS-B cannot insert OPA curvature pairs during its run; "
                         "use the NumPy L-BFGS (inner_solver='numpy').")
    t0 = time.perf_counter()
    x0 = np.array(x0, dtype=np.float64)
    if memory is None:
        memory = LbfgsMemory(maxcor, x0.size, gnorm_weights if h0 is None else h0)
    wrapped = _CachedFunGrad(fun_grad)
    if fg0 is not None:
        wrapped.remember(x0, *fg0)
    f, g = wrapped(x0)
    state = {"x": x0, "f": f, "g": g, "nit": 0}
    gnorm = _norm(g, gnorm_weights)

    def on_iterate(intermediate_result):
        x = intermediate_result.x
        f, g = wrapped(x)
        memory._append(x - state["x"], g - state["g"])
        state.update(x=np.array(x), f=f, g=g, nit=state["nit"] + 1)
        if _norm(g, gnorm_weights) <= tol:
            raise StopIteration
        if callback is not None:
            try:
                callback(state["x"])
            except StopIteration:
                state["stopped"] = True
                raise

    message = "converged: ||grad|| <= tol"
    if gnorm > tol and max_iter > 0:
        res = minimize(wrapped, x0, jac=True, method="L-BFGS-B", callback=on_iterate,
                       options={"maxcor": maxcor, "maxiter": max_iter,
                                "maxfun": 20 * max_iter + 100, "gtol": 0.0, "ftol": 0.0})
        gnorm = _norm(state["g"], gnorm_weights)
        if gnorm > tol:
            message = "stopped by the callback" if state.get("stopped") else str(res.message)
    success = gnorm <= tol
    if warn and not success and state["nit"] >= max_iter:
        warn_iteration_cap(max_iter, gnorm, tol)
    return InnerResult(
        x=state["x"], fun=state["f"], jac=state["g"], grad_norm=gnorm, nit=state["nit"],
        nfev=wrapped.nfev, success=success, message=message, memory=memory,
        time=time.perf_counter() - t0,
    )


def newton_polish(fun_grad, hessp_at, x, *, tol: float, max_steps: int = 5,
                  gnorm_weights=None):
    """Refine an approximate minimiser with Newton steps (Hessian solved by CG).

    L-BFGS-B stops when its line search can no longer decrease the objective
    in floating point, which can leave the gradient well above a very tight
    ``tol``; Newton steps on the gradient go further. A step is kept only if
    it reduces the gradient norm.

    Parameters
    ----------
    fun_grad : callable
        ``x -> (value, gradient)``.
    hessp_at : callable
        ``x -> (v -> H(x) v)``.
    x : ndarray of shape (n_params,)
    tol : float
        Target on ``||gradient||``.
    max_steps : int, default=5
    gnorm_weights : ndarray of shape (n_params,), default=None
        Metric of the gradient norm (see :func:`minimize_lbfgs`).

    Returns
    -------
    x : ndarray of shape (n_params,)
    grad_norm : float
    n_steps : int
        Newton steps kept.
    """
    x = np.array(x, dtype=np.float64)
    g = fun_grad(x)[1]
    gnorm = _norm(g, gnorm_weights)
    n_steps = 0
    for _ in range(max_steps):
        if gnorm <= tol:
            break
        hessp = hessp_at(x)
        # CG on the system scaled by the metric's square root (D^1/2 H D^1/2): the same
        # Newton step, computed without over- or underflow whatever the data's scale.
        root = np.ones_like(x) if gnorm_weights is None else np.sqrt(gnorm_weights)
        op = LinearOperator((x.size, x.size), matvec=lambda v: root * hessp(root * np.ravel(v)),
                            dtype=np.float64)
        step, _ = cg(op, root * g, rtol=1e-12, atol=0.0, maxiter=10 * x.size)
        step = root * step
        x_new = x - step
        g_new = fun_grad(x_new)[1]
        gnorm_new = _norm(g_new, gnorm_weights)
        if not gnorm_new < gnorm:
            break
        x, g, gnorm = x_new, g_new, gnorm_new
        n_steps += 1
    return x, gnorm, n_steps


def _wolfe_line_search(fun_grad, x, d, f0, g0, t0, *, c1=1e-4, c2=0.9, max_eval=20):
    """Step ``t`` along ``d`` satisfying the strong Wolfe conditions.

    Bracketing by doubling, then zooming by safeguarded quadratic
    interpolation of the values (Nocedal & Wright, Algorithms 3.5-3.6).

    Returns
    -------
    t, x_new, f_new, g_new, n_eval : the accepted step (``t = None`` when no
        step with sufficient decrease was found within ``max_eval``
        evaluations; then the other entries are those of ``x``).
    """
    gd0 = float(g0 @ d)
    lo, f_lo, gd_lo = 0.0, f0, gd0
    hi = np.inf
    best = None  # best point with sufficient decrease, in case Wolfe is not met
    t = t0
    for n_eval in range(1, max_eval + 1):
        x_t = x + t * d
        f_t, g_t = fun_grad(x_t)
        gd_t = float(g_t @ d)
        # Near the minimiser, decreases fall under the rounding of f: accept a
        # step that meets the approximate Wolfe conditions of Hager & Zhang.
        if (np.isfinite(f_t) and f_t <= f0 + 1e-12 * abs(f0)
                and (2 * c1 - 1) * gd0 >= gd_t >= c2 * gd0):
            return t, x_t, f_t, g_t, n_eval
        if not np.isfinite(f_t) or f_t > f0 + c1 * t * gd0 or f_t >= f_lo and lo > 0:
            hi = t
        else:
            if best is None or f_t < best[2]:
                best = (t, x_t, f_t, g_t)
            if abs(gd_t) <= -c2 * gd0:
                return t, x_t, f_t, g_t, n_eval
            if gd_t * (hi - lo if np.isfinite(hi) else 1.0) >= 0:
                hi = lo
            lo, f_lo, gd_lo = t, f_t, gd_t
        if not np.isfinite(hi):
            t = 2.0 * t
            continue
        a, b = min(lo, hi), max(lo, hi)
        width = b - a
        if width <= 1e-14 * max(b, 1.0):
            break
        # Minimiser of the quadratic through (lo, f_lo) with slope gd_lo and (hi, f_hi).
        f_hi = f_t if t == hi else None
        t_new = None
        if f_hi is not None and np.isfinite(f_hi):
            dt = hi - lo
            denom = 2.0 * (f_hi - f_lo - gd_lo * dt)
            if denom > 0:
                t_new = lo - gd_lo * dt * dt / denom
        if t_new is None or not a + 0.1 * width <= t_new <= b - 0.1 * width:
            t_new = 0.5 * (a + b)
        t = t_new
    if best is not None:
        return (*best, n_eval)
    return None, x, f0, g0, n_eval


def _direction(memory, g, gnorm, h0):
    """Search direction and first trial step: the L-BFGS direction with step 1; with
    an empty memory, ``-h0 * g`` with step 1 (a guess of the inverse Hessian's
    diagonal: a step that does not depend on the scale of the data) or, without a
    guess, ``-g`` with step ``min(1, 1/||g||)``.

    (Guarding the first step to one unit in the metric ``1/h0`` was tried: on
    20news its median time to 1% over 10 seeds was no better, 1.52 s against 1.44
    s, and the paths of single fits differ from one first step to another by
    more than that: a loose first solve's iterate feeds every later step.)
    """
    if len(memory):
        d = memory.inv_hvp(g)
        d *= -1.0
        return d, 1.0
    if h0 is not None:
        return -h0 * g, 1.0
    return -g, min(1.0, 1.0 / gnorm)


#: Length of the probe of :func:`_first_step`, as a fraction of the guessed step.
_PROBE = 1e-3


def _first_step(fun_grad, x, d, g, t0) -> float:
    """The first trial step along ``d`` of a run with an empty memory: the guess
    ``t0``, shortened to the one-dimensional Newton step ``-g.d / d.H.d`` when that is
    shorter, the curvature ``d.H.d`` measured by one gradient at ``x + _PROBE t0 d``
    (a finite difference).

    The guess comes from a diagonal estimate of the inverse Hessian, and a poor one
    costs more than the probe: on 20news (binary, 5 folds, cold start at the first
    penalty) the guessed step was 1,000 times too long, and the line search took 6
    evaluations to find a step that barely decreased the objective (8,360 ->
    8,200); from the Newton step, 2 evaluations with the probe, for a step near the
    minimum along ``d``. That saves ~0.1 s a fit; the outer path that follows
    from the new first iterate decides more: 40 splits, five folds, serial: 286 s
    -> 213 s, the same test log-loss; 30 single 20% splits: 13% slower in
    geometric mean (``docs/benchmarks.md``).
    """
    probe = _PROBE * t0
    g_p = fun_grad(x + probe * d)[1]
    curvature = float((np.asarray(g_p, dtype=np.float64) - g) @ d) / probe
    if not (np.isfinite(curvature) and curvature > 0):
        return t0
    return min(t0, -float(g @ d) / curvature)


def _opa_pair(fun_grad, memory, direction, x, g, length):
    """Insert one OPA pair along ``H_k direction(x)``, rescaled to ``length``.

    Returns ``(added, n_eval)``: whether the pair entered the memory, and the
    gradient evaluations spent (0 or 1).
    """
    e = memory.inv_hvp(direction(x))
    norm_e = float(np.linalg.norm(e))
    if not norm_e > 0:
        return False, 0
    e *= length / norm_e
    g_e = fun_grad(x + e)[1]
    return bool(memory._append(e, g_e - g)), 1


def minimize_lbfgs_numpy(fun_grad, x0, *, tol: float, maxcor: int = 30, max_iter: int = 1000,
                         memory: LbfgsMemory | None = None, opa=None, callback=None, fg0=None,
                         h0=None, gnorm_weights=None, warn=True) -> InnerResult:
    """Minimise a smooth function with a NumPy L-BFGS whose memory is open.

    Two-loop recursion, strong Wolfe line search, HOAG's test ``||grad|| <=
    tol``. Unlike SciPy's solver it *starts* from the pairs in ``memory`` (warm
    memory: the previous solve's, shifted exactly), and OPA inserts pairs mid-run.

    Parameters
    ----------
    fun_grad : callable
        ``fun_grad(x) -> (value, gradient)``.
    x0 : ndarray of shape (n_params,)
    tol : float
        Absolute tolerance on the Euclidean norm of the gradient.
    maxcor : int, default=30
        Memory size (used when ``memory`` is None).
    max_iter : int, default=1000
        Iteration cap; reaching it with ``||grad|| > tol`` warns.
    memory : LbfgsMemory, default=None
        Starting pairs; the run appends to it (it is modified).
    opa : (callable, int), default=None
        Outer-problem awareness: ``(direction, freq)``. Every ``freq``
        iterations, ``e = H_k direction(x)`` rescaled to the length of the last
        step and ``y = grad f(x + e) - grad f(x)`` enter the memory (one extra
        gradient), before the search direction is computed.
    callback : callable, default=None
        ``callback(x)`` after each iteration; ``StopIteration`` stops the solve.
    fg0 : (float, ndarray), default=None
        ``fun_grad(x0)`` when it is already known (saves one evaluation).
    h0 : float or ndarray of shape (n_params,), default=None
        A guess of the inverse Hessian's diagonal: the first step with an empty
        memory is ``-h0 * grad`` (scale-free; without it ``-grad`` times
        ``min(1, 1 / ||grad||)``), and the diagonal of a new memory.
    gnorm_weights : ndarray of shape (n_params,), default=None
        Metric of the gradient norm, ``sqrt(sum(gnorm_weights * g**2))``.
    warn : bool, default=True
        Warn when ``max_iter`` runs out (``False``: the caller finishes the solve).

    Returns
    -------
    result : InnerResult
        As :func:`minimize_lbfgs`, plus ``n_opa`` (pairs inserted by OPA).
    """
    t_start = time.perf_counter()
    x = np.array(x0, dtype=np.float64)
    if memory is None:
        memory = LbfgsMemory(maxcor, x.size, h0 if np.ndim(h0) == 1 else None)
    f, g = fun_grad(x) if fg0 is None else fg0
    f, g = float(f), np.asarray(g, dtype=np.float64)
    nfev, nit, n_opa = int(fg0 is None), 0, 0
    gnorm = _norm(g, gnorm_weights)
    message = "converged: ||grad|| <= tol"
    last_step, flat = None, 0
    while gnorm > tol:
        if nit >= max_iter:
            message = f"reached max_iter={max_iter}"
            break
        if opa is not None and last_step is not None and nit % opa[1] == 0:
            added, n_eval = _opa_pair(fun_grad, memory, opa[0], x, g, last_step)
            n_opa, nfev = n_opa + added, nfev + n_eval
        d, t0 = _direction(memory, g, gnorm, h0)
        if not float(g @ d) < 0:  # not a descent direction: restart from the gradient
            memory.clear()  # (restart)
            d, t0 = _direction(memory, g, gnorm, h0)
        if not len(memory):  # a guessed first step: measure the curvature along it
            t0, nfev = _first_step(fun_grad, x, d, g, t0), nfev + 1
        t, x_new, f_new, g_new, n_eval = _wolfe_line_search(fun_grad, x, d, f, g, t0)
        nfev += n_eval
        if t is None:
            message = "line search failed: no decrease found (precision limit?)"
            break
        s = x_new - x
        ss = float(s @ s)
        memory._append(s, np.asarray(g_new, dtype=np.float64) - g, ss)
        last_step = float(np.sqrt(ss))
        flat = flat + 1 if not f_new < f - _EPS * abs(f) else 0
        x, f, g = x_new, f_new, np.asarray(g_new, dtype=np.float64)
        gnorm = _norm(g, gnorm_weights)
        nit += 1
        if flat >= _STALL:
            message = (f"stalled: {_STALL} iterations without a decrease of the objective in "
                       "floating point (the tolerance is below what it can reach)")
            break
        if callback is not None:
            try:
                callback(x)
            except StopIteration:
                message = "stopped by the callback"
                break
    success = gnorm <= tol
    if warn and not success and nit >= max_iter:
        warn_iteration_cap(max_iter, gnorm, tol)
    return InnerResult(
        x=x, fun=float(f), jac=g, grad_norm=gnorm, nit=nit, nfev=nfev, success=success,
        message=message, memory=memory, n_opa=n_opa, time=time.perf_counter() - t_start,
    )


class InnerSolver:
    """The interface of an inner solver, as the outer loop's folds call it.

    ``solve(fun_grad, x0, *, tol, max_iter, memory, fg0, h0, gnorm_weights,
    opa, warn)`` minimises ``fun_grad`` from ``x0`` until ``||grad||`` (in the metric
    ``gnorm_weights``) is at most ``tol``, appends its curvature pairs to
    ``memory`` and returns an :class:`InnerResult`. What a solver cannot do it
    refuses with a clear error, so that the caller never branches on which
    solver it holds.

    Attributes
    ----------
    name : str
        The name :func:`get_inner_solver` knows it by.
    starts_from_pairs : bool
        Whether its steps use the pairs already in ``memory`` (warm memory).
    """

    name = "base"
    starts_from_pairs = False

    def solve(self, fun_grad, x0, *, tol, max_iter, memory, fg0=None, h0=None,
              gnorm_weights=None, opa=None, warn=True) -> InnerResult:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class NumpyLbfgs(InnerSolver):
    """:func:`minimize_lbfgs_numpy`: starts from the given pairs, first step scaled
    by ``h0``, OPA pairs on request."""

    name = "numpy"
    starts_from_pairs = True

    def solve(self, fun_grad, x0, *, tol, max_iter, memory, fg0=None, h0=None,
              gnorm_weights=None, opa=None, warn=True) -> InnerResult:
        return minimize_lbfgs_numpy(fun_grad, x0, tol=tol, maxcor=memory.maxlen,
                                    max_iter=max_iter, memory=memory, opa=opa, fg0=fg0, h0=h0,
                                    gnorm_weights=gnorm_weights, warn=warn)


class ScipyLbfgs(InnerSolver):
    """:func:`minimize_lbfgs`: SciPy's L-BFGS-B, which starts from an empty memory
    of its own (the given pairs are kept and the run's appended) and refuses OPA."""

    name = "scipy"

    def solve(self, fun_grad, x0, *, tol, max_iter, memory, fg0=None, h0=None,
              gnorm_weights=None, opa=None, warn=True) -> InnerResult:
        return minimize_lbfgs(fun_grad, x0, tol=tol, maxcor=memory.maxlen, max_iter=max_iter,
                              memory=memory, fg0=fg0, h0=h0, gnorm_weights=gnorm_weights,
                              opa=opa, warn=warn)


#: The inner solvers by name.
INNER_SOLVERS = {cls.name: cls() for cls in (NumpyLbfgs, ScipyLbfgs)}


def get_inner_solver(solver) -> InnerSolver:
    """The inner solver named ``solver`` ("numpy" or "scipy"), or an instance as is."""
    if isinstance(solver, InnerSolver):
        return solver
    try:
        return INNER_SOLVERS[solver]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown inner solver {solver!r}; choose one of "
                         f"{sorted(INNER_SOLVERS)}.") from None
