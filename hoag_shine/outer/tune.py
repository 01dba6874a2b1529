"""Tuning as values: the cross-validated search, the staged per-class search, the final fits.

The scikit-learn estimators validate their input, build one bilevel problem per
split and call :func:`tune`; everything the algorithm decides happens here, and
comes back as one :class:`Tuning` value (the search's result, its history with
the stages joined, the validation scores, the final fits and why each stage
stopped). Nothing here warns about the outer loop's stops: the caller words
them (:func:`~hoag_shine.outer.stopping.warn_stop`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from joblib import effective_n_jobs
from sklearn.exceptions import ConvergenceWarning

from ..inner import single_precision
from ..problems._threads import threaded_products
from .loop import fit_inner, run_hoag
from .stopping import StopReason, describe
from .workers import deferred_exits

__all__ = ["Tuning", "final_fit", "search_penalty", "trace_history", "tune"]

#: First step of the per-class stage of a staged search (log scale, root mean square
#: over the classes): it starts at the shared optimum.
PER_CLASS_FIRST_STEP = 0.5

#: Conjugate-gradient iterations refining SHINE's backward vectors in that stage
#: (``benchmarks/estimator_speed.py --rows shine-per-class``).
PER_CLASS_REFINE = 10

#: Final fits whose parameters times samples are at most this are polished by
#: Newton steps (a few milliseconds there; 1.4 s on digits' 649 x 1257).
POLISH_MAX_SIZE = 100_000

@dataclass
class Tuning:
    """What :func:`tune` found.

    Attributes
    ----------
    result : HoagResult
        The search's result (its per-class stage's, for a staged search).
    history : dict of ndarray
        The trace as columns (:func:`trace_history`), the stages joined.
    scores : ndarray of shape (n_splits,)
        Per split: minus the mean validation loss per sample (and target) at the
        chosen penalty (the sign of scikit-learn's scores: higher is better).
    fits : list of list of (BilevelProblem, ndarray, object)
        Per target: the final fits ``(problem, x, meta)``, one on all the data
        (``refit``) or one per split.
    stops : list of (Stop, HoagOptions)
        Why each stage stopped, with the settings it ran with (to put in words).
    """

    result: object
    history: dict
    scores: np.ndarray
    fits: list
    stops: list


def trace_history(result, before=None) -> dict:
    """The trace of ``result`` as columns; ``alpha`` and ``hypergradient`` of shape
    (n_records, n_hyper). ``before``: a first stage with one shared penalty, whose
    records come first, its alpha repeated for every penalty and its (not computed)
    per-penalty hypergradients NaN; its times shift the later stage's."""
    cols = result.trace_columns()
    n_hyper = len(result.alpha)
    cols["alpha"] = cols["alpha"].reshape(-1, n_hyper)
    cols["hypergradient"] = cols["hypergradient"].reshape(-1, n_hyper)
    if before is None:
        return cols
    first = before.trace_columns()
    first["alpha"] = np.repeat(first["alpha"].reshape(-1, 1), n_hyper, axis=1)
    first["hypergradient"] = np.full((len(first["time"]), n_hyper), np.nan)
    return {k: np.concatenate([first[k], v + before.time if k == "time" else v])
            for k, v in cols.items()}


def search_penalty(problems, options, *, alpha0=None, staged=False, callback=None, log=None):
    """Tune the penalty of the folds ``problems``; ``(result, history, stops)``.

    ``staged`` (problems with several penalties that share one layout, e.g. one
    ``C`` per class of a multinomial model: they offer ``with_penalty("shared")``)
    tunes one shared penalty first, then one per class from its answer: the
    folds' solutions and copies of their L-BFGS pairs go on, at the tolerance the
    first stage ended with, held constant, with a short first step and (SHINE)
    backward vectors refined by :data:`PER_CLASS_REFINE` conjugate-gradient
    iterations; a per-class answer whose validation loss is not lower keeps the
    shared one (``stop.fallback``). One ``max_time`` covers both stages.
    """
    n_hyper = problems[0].n_hyper
    alpha0 = None if alpha0 is None else np.full(n_hyper, float(np.ravel(alpha0)[0]))
    if not staged or n_hyper == 1:
        res = run_hoag(problems, alpha0, options=options, callback=callback, log=log)
        return res, trace_history(res), [(res.stop, options)]
    if not all(hasattr(p, "with_penalty") for p in problems):
        raise TypeError("A staged search needs problems with with_penalty('shared') (one "
                        "penalty per class of a multinomial model).")
    first = run_hoag([p.with_penalty("shared") for p in problems],
                     None if alpha0 is None else alpha0[:1], options=options, callback=callback,
                     keep_runner=True, log=log)
    runner = first.pop("runner")
    try:
        later = _per_class_options(options, first)
        start = np.full(n_hyper, first.alpha[0])
        # The folds go on where they are: each one's solution and L-BFGS pairs (moved,
        # not copied) start its per-class problem.
        runner.restage("per-class", start, later)
        res = run_hoag(problems, start, options=later, callback=callback, runner=runner,
                       log=log)
    finally:
        runner.close()
    first.pop("memory", None)
    stop = res.stop
    if stop.reason is StopReason.TIME:  # the budget is the user's, for both stages
        stop = stop.replace(budget_left=later.max_time)
    if not res.fun <= first.fun:  # (the folds' loss as solved: never above the shared)
        stop = stop.replace(fallback=True)
        res.update(alpha=np.full(n_hyper, first.alpha[0]), x=first.x, fun=first.fun)
    res.update(stop=stop, message=describe(stop, options))
    return res, trace_history(res, before=first), [(first.stop, options), (stop, later)]


def _per_class_options(options, first):
    """The per-class stage's settings, from the shared stage's result.

    It solves at the tolerance where the first stage ended, held constant, with a
    short first step. Measured on digits (seed 0, 5 folds): the schedule going on
    from there ran every late inner solve into max_inner_iter (29.7 s, test
    log-loss 0.0908); started again at eps0, the warm solutions met its first
    tolerances without an iteration (on 20news the first per-class steps were
    accepted at the shared solutions: no information); held constant: 4.6 s,
    0.0881. SHINE's per-class hypergradient components are small differences that
    its own error swamps: refined by 10 CG iterations per fold, 0.0835 in 10.7 s.
    """
    eps_last = [r["eps"] for r in first.trace if r["accepted"]][-1]
    settings = dict(first_step=min(options.first_step, PER_CLASS_FIRST_STEP),
                    eps0=min(options.eps0, eps_last), decay=1.0)
    if options.strategy.name in ("shine", "shine-opa"):
        settings.update(hypergradient="shine-refine",
                        hypergradient_params={"max_iter": PER_CLASS_REFINE})
    if options.max_time is not None:
        settings["max_time"] = max(options.max_time - first.time, 0.0)
    return options.replace(**settings)


def final_fit(problem, x0, alpha, options, final_tol) -> np.ndarray:
    """The inner solution at ``alpha`` to relative tolerance ``final_tol`` (small
    problems then polished by Newton steps to machine precision, so that the model
    does not depend on the solver's path; its pairs in the precision
    ``options.pairs_precision`` asks for: ``"auto"``, single from
    :data:`~hoag_shine.inner.SINGLE_PAIRS_MIN_PARAMS` parameters: one solve at a
    fixed penalty whose products read half the bytes, 20news binary 1.93 s -> 1.51 s,
    the same iterations, test log-loss 0.118164 -> 0.118179); solved and measured in
    the metric ``problem.preconditioner_guess(alpha)``. Warns when it stopped far
    above the tolerance."""
    # (with n_jobs > 1, its products on that many threads: the folds' workers are done)
    metric = problem.preconditioner_guess(alpha)
    with threaded_products(problem, effective_n_jobs(options.n_jobs)):
        res = fit_inner(problem, alpha, tol=final_tol, x0=x0, maxcor=options.maxcor,
                        max_iter=max(10 * options.max_inner_iter, 1000), solver="numpy",
                        metric=metric,
                        pairs_memory_mb=options.pairs_memory_mb,
                        single_pairs=single_precision(options.pairs_precision,
                                                      problem.n_params))
    if _small(problem):
        res = fit_inner(problem, alpha, tol=1e-14, x0=res.x, max_iter=0, polish=True,
                        metric=metric)
    if res.success:
        return res.x
    # (the tolerance again, for the message only: one gradient at the start point)
    tol = final_tol * problem.gradient_scale(alpha, metric)
    stalled = str(res.message).startswith("stalled")
    if stalled or res.grad_norm > 1e3 * tol:
        knob = ("final_tol: it is below what floating point reaches here" if stalled
                else "max_inner_iter or final_tol")
        warnings.warn(
            f"The final fit at log-penalty {alpha} stopped with ||grad|| = "
            f"{res.grad_norm:.3g}, above final_tol * ||grad(0)|| = {tol:.3g} "
            f"({res.message}). Increase {knob}.", ConvergenceWarning, stacklevel=2)
    return res.x


def tune(make_problem, X, targets, splits, weights, options, *, alpha0=None, staged=False,
         refit=True, final_tol=1e-4, callback=None, log=None) -> Tuning:
    """Tune one penalty shared by ``targets`` over the splits, and fit at it.

    Parameters
    ----------
    make_problem : callable
        ``make_problem(X_tr, y_tr, X_va, y_va, w_tr, w_va) -> (problem, meta)``:
        one bilevel problem (``meta``: what the model's coefficients need
        besides ``x``, e.g. centring offsets).
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    targets : list of ndarray of shape (n_samples,)
        The targets sharing the penalty (their validation losses are summed).
    splits : list of (ndarray, ndarray)
        ``(train, validation)`` row indices.
    weights : (ndarray or None, ndarray or None)
        The samples' weights in the training and in the validation losses.
    options : HoagOptions
    alpha0 : float or ndarray, default=None
        Starting log-penalty (``None``: the problems' data-scaled default).
    staged : bool, default=False
        One shared penalty first, then one per class (:func:`search_penalty`).
    refit : bool, default=True
        One final fit on all the data (from the folds' mean solution) instead
        of one per split.
    final_tol : float, default=1e-4
    callback : callable, default=None
    log : callable, default=None
        ``log(record)`` after each outer iteration.

    Returns
    -------
    tuning : Tuning
    """
    # (the folds' workers end while the final fit runs: waited for at the end)
    with deferred_exits():
        return _tune(make_problem, X, targets, splits, weights, options, alpha0=alpha0,
                     staged=staged, refit=refit, final_tol=final_tol, callback=callback,
                     log=log)


def _tune(make_problem, X, targets, splits, weights, options, *, alpha0, staged, refit,
          final_tol, callback, log) -> Tuning:
    w_train, w_val = weights
    built = [make_problem(X[tr], t[tr], X[va], t[va], _sub(w_train, tr), _sub(w_val, va))
             for tr, va in splits for t in targets]
    problems = [p for p, _ in built]
    res, history, stops = search_penalty(problems, options, alpha0=alpha0, staged=staged,
                                         callback=callback, log=log)
    xs = res.x if isinstance(res.x, list) else [res.x]
    n_t = len(targets)
    scores = np.array([
        -sum(problems[k * n_t + j].outer_value_grad(xs[k * n_t + j], res.alpha)[0]
             for j in range(n_t)) / (n_t * (len(va) if w_val is None else w_val[va].sum()))
        for k, (_, va) in enumerate(splits)])
    fits = []
    for j, t in enumerate(targets):
        fold_x = xs[j::n_t]
        if refit:
            # (a validation part is required by the problem, not used: one row of
            # positive weight)
            row = _positive_row(w_val, len(t))
            full, meta = make_problem(X, t, X[row], t[row], w_train, _sub(w_val, row))
            # From the folds' mean solution (on 20news it halved the refit's
            # iterations), but for the small problems polished to machine precision:
            # from zero, so that the model does not depend on the search's path.
            x0 = (np.mean(fold_x, axis=0) if len(fold_x) > 1 and not _small(full) else None)
            fits.append([(full, final_fit(full, x0, res.alpha, options, final_tol), meta)])
        else:
            fits.append([(p, final_fit(p, xk, res.alpha, options, final_tol), m)
                         for (p, m), xk in zip(built[j::n_t], fold_x)])
    return Tuning(result=res, history=history, scores=scores, fits=fits, stops=stops)


def _small(problem) -> bool:
    """Whether a final fit is small enough to be polished to machine precision."""
    return problem.n_params * problem.X_train.shape[0] <= POLISH_MAX_SIZE


def _sub(w, idx):
    return None if w is None else w[idx]


def _positive_row(w, n) -> slice:
    """A one-row slice at the first row of positive weight (all rows count without
    weights)."""
    k = 0 if w is None else int(np.argmax(np.asarray(w) > 0))
    return slice(k, min(k + 1, n))

