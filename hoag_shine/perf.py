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

__all__ = ["yardstick", "perf_report", "nnz_scaling", "peak_memory_mb"]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@single_thread_blas
def yardstick(split, center, *, step=0.1, width=1.0, tol=1e-8, maxcor=30, rel_target=0.01):
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

    Returns
    -------
    dict with ``best_alpha``, ``best``, ``target``, ``floor`` (seconds;
    ``inf`` if never reached), ``floor_iterations``.
    """
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
    heldout = lambda x: prob.data_loss(x, X_ho, y_ho)  # noqa: E731

    values = {}
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

    lo, hi = center - width, center + width
    evaluate(np.arange(hi, lo - 1e-9, -step))
    for _ in range(20):
        alphas = sorted(values)
        best_alpha = min(values, key=values.get)
        if best_alpha == alphas[0]:
            evaluate(np.arange(alphas[0] - step, alphas[0] - width - 1e-9, -step))
        elif best_alpha == alphas[-1]:
            evaluate(np.arange(alphas[-1] + width, alphas[-1] + 1e-9, -step))
        else:
            break
    best_alpha = min(values, key=values.get)
    best = values[best_alpha]
    target = (1 + rel_target) * best

    a = np.array([best_alpha])
    f = lambda v: prob.inner_value_grad(v, a)  # noqa: E731
    excluded = 0.0
    hit = {}

    def watch(xk):
        nonlocal excluded
        t = time.perf_counter()
        if heldout(xk) <= target:
            hit["t"] = t - t0 - excluded
            raise StopIteration
        excluded += time.perf_counter() - t

    t0 = time.perf_counter()
    res = minimize_lbfgs_numpy(f, prob.initial_x(), tol=tol * float(np.linalg.norm(f(prob.initial_x())[1])),
                               maxcor=maxcor, max_iter=5000, callback=watch)
    return dict(best_alpha=float(best_alpha), best=float(best), target=float(target),
                floor=float(hit.get("t", np.inf)), floor_iterations=int(res.nit),
                grid=sorted(values.items()))


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
        (``inf`` counted as never) and seeds reached; plus the ratios.
    """
    seeds = sorted(yardsticks)
    schemes = list(dict.fromkeys(cols["scheme"]))
    per_scheme = {}
    for s in schemes:
        ttt, final, ratio_bf = [], [], []
        for seed in seeds:
            m = (cols["scheme"] == s) & (cols["seed"] == seed)
            if not m.any():
                continue
            t, h = cols["time"][m], cols["heldout_loss"][m]
            ttt.append(_time_to(t, h, yardsticks[seed]["target"]))
            final.append((float(t[-1]), float(h[-1])))
            fwd, bwd = cols["forward_time"][m], cols["backward_time"][m]
            ratio_bf.extend(bwd[fwd > 0] / fwd[fwd > 0])
        ttt = np.array(ttt)
        per_scheme[s] = dict(
            time_to_target=ttt.tolist(), n_reached=int(np.isfinite(ttt).sum()),
            n_seeds=len(ttt), median_time_to_target=float(np.median(ttt)) if len(ttt) else np.nan,
            final=final,
            median_backward_over_forward=float(np.median(ratio_bf)) if ratio_bf else np.nan,
        )
    floors = np.array([yardsticks[s]["floor"] for s in seeds])
    report = dict(seeds=seeds, floor=floors.tolist(), median_floor=float(np.median(floors)),
                  per_scheme=per_scheme)
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
