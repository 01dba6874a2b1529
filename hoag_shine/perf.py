"""Performance yardstick: how close hyperparameter search gets to one fit at the answer.

Per seed of the paper's split (DESIGN.md, "Performance" issue):

* ``best``: the lowest held-out loss over a fine grid of log-penalties (step
  0.1) around the best point any benchmarked scheme found;
* ``target = 1.01 * best``;
* ``floor``: wall time of one cold L-BFGS fit (memory 30, from zero) at the
  best log-penalty until its iterate first has held-out loss <= target (time
  spent evaluating the held-out loss not counted).

:func:`perf_report` compares the schemes of a benchmark run against it;
:func:`nnz_scaling` measures the cost of an outer step against ``nnz(X)``.
"""

from __future__ import annotations

import resource
import time

import numpy as np

from ._utils import single_thread_blas
from .datasets import make_sparse_classification, paper_split
from .inner import minimize_lbfgs_numpy
from .outer import hoag
from .problems import LogisticProblem

__all__ = ["yardstick", "floor_time", "perf_report", "nnz_scaling", "peak_memory_mb"]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@single_thread_blas
def yardstick(split, center, *, step=0.1, width=1.0, tol=1e-8, maxcor=30, rel_target=0.01,
              floor_repeats=3):
    """Best held-out loss on a fine grid around ``center``, its target and floor.

    Parameters
    ----------
    split : tuple
        ``(X_train, y_train, X_val, y_val, X_heldout, y_heldout)``.
    center : float
        Log-penalty around which to search (the grid grows if the best point
        lies on its edge).
    step, width : float
        Grid spacing and half-width.
    tol : float
        Relative gradient tolerance of the grid's fits.
    maxcor : int
        Memory of the floor's cold L-BFGS fit.
    rel_target : float
        ``target = (1 + rel_target) * best``.
    floor_repeats : int
        The floor is the median of this many timed fits.

    Returns
    -------
    dict with ``best_alpha``, ``best``, ``target``, ``floor`` (seconds;
    ``inf`` if never reached), ``floor_iterations``, the validation optimum
    of the grid (``validation_best_alpha``) and the held-out loss there
    relative to ``best`` (``heldout_at_validation_best``): a search that
    converges to the validation optimum reaches the target only if this is
    at most ``1 + rel_target`` (``reachable``). ``grid`` lists
    ``(alpha, held-out loss, validation loss)``.
    """
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
    heldout = lambda x: prob.data_loss(x, X_ho, y_ho)  # noqa: E731

    values, val_values = {}, {}
    x = prob.initial_x()

    def evaluate(alphas):
        nonlocal x
        for a in alphas:  # strongest penalty first: short warm-started continuations
            a = round(float(a), 10)
            if a in values:
                continue
            f = lambda v, a=a: prob.inner_value_grad(v, np.array([a]))  # noqa: E731
            norm0 = float(np.linalg.norm(f(prob.initial_x())[1]))
            x = minimize_lbfgs_numpy(f, x, tol=tol * norm0, maxcor=maxcor, max_iter=5000).x
            values[a] = heldout(x)
            val_values[a] = prob.data_loss(x, X_val, y_val)

    lo, hi = center - width, center + width
    evaluate(np.arange(hi, lo - 1e-9, -step))
    for _ in range(20):
        alphas = sorted(values)
        edges = {min(values, key=values.get), min(val_values, key=val_values.get)}
        if alphas[0] in edges:
            evaluate(np.arange(alphas[0] - step, alphas[0] - width - 1e-9, -step))
        elif alphas[-1] in edges:
            evaluate(np.arange(alphas[-1] + width, alphas[-1] + 1e-9, -step))
        else:
            break
    best_alpha = min(values, key=values.get)
    best = values[best_alpha]
    target = (1 + rel_target) * best
    val_alpha = min(val_values, key=val_values.get)
    floor, iterations = floor_time(prob, best_alpha, heldout, target, tol=tol, maxcor=maxcor,
                                   repeats=floor_repeats)
    return dict(best_alpha=float(best_alpha), best=float(best), target=float(target),
                floor=floor, floor_iterations=iterations,
                validation_best_alpha=float(val_alpha),
                heldout_at_validation_best=float(values[val_alpha] / best),
                reachable=bool(values[val_alpha] <= target),
                grid=[(a, values[a], val_values[a]) for a in sorted(values)])


@single_thread_blas
def floor_time(problem, alpha, heldout, target, *, tol=1e-8, maxcor=30, repeats=3):
    """Time of a cold L-BFGS fit at ``alpha`` until its held-out loss is <= ``target``.

    Parameters
    ----------
    problem : LogisticProblem
    alpha : float
        Log-penalty.
    heldout : callable
        ``x -> held-out loss`` (its evaluation time is not counted).
    target : float
    tol : float
        Relative gradient tolerance at which the fit would stop anyway.
    maxcor : int
        L-BFGS memory.
    repeats : int
        Timed fits; the median is returned.

    Returns
    -------
    floor : float
        Seconds (``inf`` if the fit never reaches ``target``).
    iterations : int
        L-BFGS iterations of the (last) fit.
    """
    a = np.array([float(alpha)])
    f = lambda v: problem.inner_value_grad(v, a)  # noqa: E731
    x0 = problem.initial_x()
    gtol = tol * float(np.linalg.norm(f(x0)[1]))
    times, nit = [], 0
    for _ in range(max(1, int(repeats))):
        excluded, hit = 0.0, {}

        def watch(xk):
            nonlocal excluded
            t = time.perf_counter()
            if heldout(xk) <= target:
                hit["t"] = t - t0 - excluded
                raise StopIteration
            excluded += time.perf_counter() - t

        t0 = time.perf_counter()
        res = minimize_lbfgs_numpy(f, x0, tol=gtol, maxcor=maxcor, max_iter=5000, callback=watch)
        times.append(hit.get("t", np.inf))
        nit = int(res.nit)
    return float(np.median(times)), nit


def _time_to(t, h, level):
    hit = np.flatnonzero(h <= level)
    return float(t[hit[0]]) if hit.size else np.inf


def perf_report(cols, yardsticks, *, shine="shine", cg="hoag-cg", grid="grid",
                random="random", sklearn="sklearn-cv"):
    """Figures of the performance issue from benchmark results and per-seed yardsticks.

    Parameters
    ----------
    cols : dict
        Benchmark results (``hoag_shine.benchmark.read_results``), one dataset.
    yardsticks : dict
        ``seed -> yardstick(...)``.
    shine, cg, grid, random, sklearn : str
        Scheme names in the results.

    Returns
    -------
    report : dict
        ``per_scheme[scheme]``: per-seed times to target and their median
        (``inf`` counted as never), seeds reached, and reached among the
        ``reachable_seeds`` (those whose validation optimum is within the
        target, when the yardsticks say); plus the ratios.
    """
    seeds = sorted(yardsticks)
    schemes = list(dict.fromkeys(cols["scheme"]))
    per_scheme = {}
    # Seeds whose validation optimum lies within the target (unknown: assumed).
    reachable = [s for s in seeds if yardsticks[s].get("reachable", True)]
    for s in schemes:
        ttt, final, ratio_bf, n_reachable = [], [], [], 0
        for seed in seeds:
            m = (cols["scheme"] == s) & (cols["seed"] == seed)
            if not m.any():
                continue
            t, h = cols["time"][m], cols["heldout_loss"][m]
            ttt.append(_time_to(t, h, yardsticks[seed]["target"]))
            n_reachable += int(seed in reachable and np.isfinite(ttt[-1]))
            final.append((float(t[-1]), float(h[-1])))
            fwd, bwd = cols["forward_time"][m], cols["backward_time"][m]
            ratio_bf.extend(bwd[fwd > 0] / fwd[fwd > 0])
        ttt = np.array(ttt)
        per_scheme[s] = dict(
            time_to_target=ttt.tolist(), n_reached=int(np.isfinite(ttt).sum()),
            n_reached_of_reachable=n_reachable,
            n_seeds=len(ttt), median_time_to_target=float(np.median(ttt)) if len(ttt) else np.nan,
            final=final,
            median_backward_over_forward=float(np.median(ratio_bf)) if ratio_bf else np.nan,
        )
    floors = np.array([yardsticks[s]["floor"] for s in seeds])
    report = dict(seeds=seeds, floor=floors.tolist(), median_floor=float(np.median(floors)),
                  reachable_seeds=reachable, per_scheme=per_scheme)
    if shine in per_scheme:
        sh = per_scheme[shine]
        med = sh["median_time_to_target"]
        report["shine_over_floor"] = med / float(np.median(floors))
        report["shine_over_floor_per_seed"] = (np.array(sh["time_to_target"]) / floors).tolist()
        for name, key in ((cg, "cg_over_shine"), (grid, "grid_over_shine"),
                          (random, "random_over_shine")):
            if name in per_scheme:
                report[key] = per_scheme[name]["median_time_to_target"] / med
        if sklearn in per_scheme:
            # Time SHINE needs to get below the held-out loss scikit-learn ends with.
            rows = []
            for seed, (t_sk, h_sk) in zip(seeds, per_scheme[sklearn]["final"]):
                m = (cols["scheme"] == shine) & (cols["seed"] == seed)
                t_sh = _time_to(cols["time"][m], cols["heldout_loss"][m], h_sk)
                rows.append((t_sh, t_sk, float(cols["heldout_loss"][m][-1]), h_sk))
            rows = np.array(rows)
            report["sklearn"] = dict(
                shine_lower_final=int(np.sum(rows[:, 2] < rows[:, 3])),
                median_time_ratio=float(np.median(rows[:, 0] / rows[:, 1])),
                per_seed=rows.tolist(),
            )
            if all("sklearn_floor" in yardsticks[s] for s in seeds):
                # What no search can beat: a cold fit at the best penalty, until
                # it gets below scikit-learn's final loss, over scikit-learn's time.
                bound = np.array([yardsticks[s]["sklearn_floor"] for s in seeds]) / rows[:, 1]
                report["sklearn"]["floor_ratio_per_seed"] = bound.tolist()
                report["sklearn"]["median_floor_ratio"] = float(np.median(bound))
    return report


@single_thread_blas
def nnz_scaling(n_rows=(10_000, 100_000, 1_000_000), *, n_features=20_000, nnz_per_row=20,
                max_iter=4, seed=0):
    """Cost of SHINE's outer steps against ``nnz(X)`` on synthetic sparse sets.

    Returns
    -------
    dict with ``nnz``, ``time_per_outer_step``, ``time_per_inner_iteration``
    (forward time over inner iterations, backward included per step) and the
    fitted exponents of both against ``nnz`` (1 means linear).
    """
    nnz, per_step, per_iter = [], [], []
    for n in n_rows:
        X, y = make_sparse_classification(int(n), n_features, density=nnz_per_row / n_features,
                                          random_state=seed)
        X_tr, y_tr, X_val, y_val, _, _ = paper_split(X, y, seed)
        prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
        res = hoag(prob, [0.0], hypergradient="shine", max_iter=max_iter, tol=0, value_tol=0)
        fwd = np.array([r["forward_time"] for r in res.trace])
        bwd = np.array([r["backward_time"] for r in res.trace])
        its = np.array([r["inner_iter"] for r in res.trace])
        nnz.append(X_tr.nnz)
        per_step.append(float(np.median(fwd + bwd)))
        per_iter.append(float((fwd.sum() + bwd.sum()) / max(its.sum(), 1)))
    slope = lambda v: float(np.polyfit(np.log(nnz), np.log(v), 1)[0])  # noqa: E731
    return dict(nnz=nnz, time_per_outer_step=per_step, time_per_inner_iteration=per_iter,
                exponent_outer_step=slope(per_step), exponent_inner_iteration=slope(per_iter))
