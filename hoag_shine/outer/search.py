"""Grid and random search baselines, warm-started, with HOAG's trace format."""

from __future__ import annotations

import time

import numpy as np

from .._utils import single_thread_blas
from .loop import fit_inner
from .trace import HoagResult, heldout_loss_fn

__all__ = ["grid_search", "random_search", "search"]


@single_thread_blas
def search(problem, alphas, *, tol=1e-6, maxcor=30, max_inner_iter=1000, heldout=None,
           callback=None, max_time=None):
    """Evaluate the outer criterion at the given hyperparameters, in order.

    Each inner solve is warm-started from the previous solution and stops at
    ``||grad h|| <= tol * ||grad h(0, alpha)||``.

    Parameters
    ----------
    problem : BilevelProblem
    alphas : array-like of shape (n_points, n_hyper) or (n_points,)
        Log-penalties to evaluate, in this order.
    tol : float, default=1e-6
        Relative tolerance of each inner solve.
    maxcor, max_inner_iter : int
        Inner L-BFGS memory and iteration cap.
    heldout : (X, y) or callable, default=None
        Held-out data. Each record's ``heldout_value`` is the held-out loss of
        the best point so far (lowest validation loss): what a user of the
        search would hold at that time.
    callback : callable, default=None
        Called with each record; raise ``StopIteration`` to stop.
    max_time : float, default=None
        Wall-clock budget (seconds).

    Returns
    -------
    result : HoagResult
        ``alpha`` and ``x`` of the best point; one trace record per point.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim == 1:
        alphas = alphas[:, None]
    heldout_fn = heldout_loss_fn(problem, heldout)
    x = problem.initial_x()
    clock, trace, best = 0.0, [], None
    best_heldout = np.nan
    message = "evaluated every point"
    for k, alpha in enumerate(alphas):
        alpha = problem.check_alpha(alpha)
        t0 = time.perf_counter()
        inner = fit_inner(problem, alpha, tol=tol, x0=x, maxcor=maxcor, max_iter=max_inner_iter)
        x = inner.x
        value = problem.outer_value_grad(x, alpha)[0]
        dt = time.perf_counter() - t0
        clock += dt
        improved = best is None or value < best["value"]
        if improved:
            best = dict(alpha=alpha, x=x, value=value)
            if heldout_fn is not None:
                best_heldout = float(heldout_fn(x))
        record = dict(
            iteration=k, alpha=alpha.copy(), outer_value=float(value),
            heldout_value=best_heldout, hypergradient=np.full(alpha.shape, np.nan),
            hypergradient_norm=np.nan, accepted=bool(improved), time=clock,
            forward_time=dt, backward_time=0.0, inner_iter=int(inner.nit), n_hvp=0,
            eps=float(tol), step_size=np.nan,
        )
        trace.append(record)
        if callback is not None:
            try:
                callback(record)
            except StopIteration:
                message = "stopped by the callback"
                break
        if max_time is not None and clock >= max_time:
            message = f"stopped by the time budget max_time={max_time}s"
            break
    return HoagResult(alpha=best["alpha"], x=best["x"], fun=best["value"],
                      grad=np.full(best["alpha"].shape, np.nan), nit=len(trace), success=True,
                      message=message, trace=trace)


def grid_search(problem, n_points=10, *, bounds=(-12.0, 12.0), **kwargs):
    """Search on ``n_points`` evenly spaced log-penalties, strongest penalty first.

    Starting from the strongest penalty (the smoothest problem, solution near
    zero) makes each warm start a short continuation step. One hyperparameter
    only.
    """
    if problem.n_hyper != 1:
        raise ValueError("grid_search handles one hyperparameter; use random_search for more.")
    lo, hi = _check_search(n_points, bounds)
    alphas = np.linspace(hi, lo, int(n_points))
    return search(problem, alphas, **kwargs)


def random_search(problem, n_points=10, *, bounds=(-12.0, 12.0), random_state=0, **kwargs):
    """Search on ``n_points`` log-penalties drawn uniformly in ``bounds``, in the order drawn."""
    rng = np.random.default_rng(random_state)
    lo, hi = _check_search(n_points, bounds)
    alphas = rng.uniform(lo, hi, size=(int(n_points), problem.n_hyper))
    return search(problem, alphas, **kwargs)


def _check_search(n_points, bounds):
    """``bounds`` as ``(low, high)``; clear errors for a bad count or range."""
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be an int >= 1, got {n_points!r}.")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (low, high) of log-penalties, got "
                         f"{bounds!r}.") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must satisfy low < high and be finite, got {bounds!r}; "
                         "e.g. (-12, 12).")
    return lo, hi
