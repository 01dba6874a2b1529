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

import json
import resource
import time
from pathlib import Path

import numpy as np

from ._utils import single_thread_blas
from .datasets import load_dataset, make_sparse_classification, paper_split
from .inner import minimize_lbfgs_numpy
from .outer import fit_inner, hoag
from .problems import LogisticProblem
from .results import atomic_write_text, read_results

__all__ = ["yardstick", "floor_time", "perf_report", "nnz_scaling", "peak_memory_mb",
           "run_perf", "format_report", "save_report"]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@single_thread_blas
def yardstick(split, center, *, step=0.1, width=1.0, tol=1e-8, maxcor=30, rel_target=0.01,
              floor_repeats=3, problem=None):
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
    problem : LogisticProblem, default=None
        The split's problem, when already built.

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
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val) if problem is None else problem
    heldout = lambda x: prob.data_loss(x, X_ho, y_ho)  # noqa: E731

    values, val_values = {}, {}
    x = prob.initial_x()

    def evaluate(alphas):
        nonlocal x
        for a in alphas:  # strongest penalty first: short warm-started continuations
            a = round(float(a), 10)
            if a in values:
                continue
            x = fit_inner(prob, [a], tol=tol, x0=x, maxcor=maxcor, max_iter=5000,
                          solver="numpy").x
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
    gtol = tol * problem.gradient_scale(a)
    metric = problem.inverse_hessian_guess(a)
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
        res = minimize_lbfgs_numpy(f, x0, tol=gtol, maxcor=maxcor, max_iter=5000, callback=watch,
                                   gnorm_weights=metric)
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


def _seed_yardstick(X, y, seed, cols, cache, cache_path):
    """One seed's yardstick: the grid from the cache (or computed and cached), the
    floors timed now."""
    split = paper_split(X, y, seed)
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
    heldout = lambda v: prob.data_loss(v, X_ho, y_ho)  # noqa: E731
    if str(seed) in cache:
        st = dict(cache[str(seed)])
        st["floor"], st["floor_iterations"] = floor_time(prob, st["best_alpha"], heldout,
                                                         st["target"])
    else:
        m = (cols["seed"] == seed) & np.isfinite(cols["heldout_loss"])
        center = float(cols["alpha"][m][np.argmin(cols["heldout_loss"][m])])
        st = yardstick(split, round(center, 1), problem=prob)
        cache[str(seed)] = {k: v for k, v in st.items() if k not in ("floor", "grid")}
        atomic_write_text(cache_path, json.dumps(cache, indent=1))
    sk = (cols["scheme"] == "sklearn-cv") & (cols["seed"] == seed)
    if sk.any():
        # The same cold fit, until it beats LogisticRegressionCV's final loss.
        st["sklearn_floor"] = floor_time(prob, st["best_alpha"], heldout,
                                         float(cols["heldout_loss"][sk][-1]))[0]
    return st


def run_perf(results, *, dataset="20news", seeds=None, data_home=None, yardsticks=None,
             scaling=False, progress=None):
    """The performance report of a benchmark run: yardsticks per seed and the ratios.

    The grid part of a yardstick (best, target, validation optimum) depends on
    the data only: it is cached per seed in ``yardsticks`` (a JSON file,
    written after each seed). The floor is a timing: it is measured again in
    every run.

    Parameters
    ----------
    results : str or Path
        Benchmark results (CSV or folder).
    dataset : str, default="20news"
    seeds : list of int, default=None
        Subset of the seeds in the results.
    data_home : str, default=None
    yardsticks : str or Path, default=None
        Cache of the per-seed grids.
    scaling : bool, default=False
        Also measure the cost per outer step against ``nnz(X)``.
    progress : callable, default=None
        Called with a line of text per seed.

    Returns
    -------
    report : dict
        :func:`perf_report`'s, plus ``yardsticks`` and ``peak_memory_mb``
        (and ``nnz_scaling``).
    """
    say = progress or (lambda msg: None)
    cols = read_results(results)
    keep = cols["dataset"] == dataset
    cols = {k: v[keep] for k, v in cols.items()}
    available = sorted({int(s) for s in cols["seed"]})
    seeds = available if seeds is None else [s for s in seeds if s in available]
    if not seeds:
        raise ValueError(f"no {dataset} runs in {results}.")
    X, y = load_dataset(dataset, data_home=data_home)
    cache_path = Path(yardsticks) if yardsticks else Path(f"yardsticks_{dataset}.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    sticks = {}
    for seed in seeds:
        t0 = time.perf_counter()
        st = sticks[seed] = _seed_yardstick(X, y, seed, cols, cache, cache_path)
        say(f"seed {seed}: best {st['best']:.2f} at log-lambda {st['best_alpha']:.1f}, "
            f"validation optimum {st['validation_best_alpha']:.1f} "
            f"(held-out there {st['heldout_at_validation_best']:.4f} x best), "
            f"floor {st['floor']:.2f}s ({time.perf_counter() - t0:.0f}s)")
    cols["seed"] = cols["seed"].astype(int)
    report = perf_report(cols, sticks)
    report.update(dataset=dataset, results=str(results))
    report["yardsticks"] = {str(k): {kk: vv for kk, vv in v.items() if kk != "grid"}
                            for k, v in sticks.items()}
    report["peak_memory_mb"] = peak_memory_mb()
    if scaling:
        say("nnz scaling: synthetic sets of 1e4, 1e5, 1e6 rows ...")
        report["nnz_scaling"] = nnz_scaling()
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return report


def _fmt(v):
    return "never" if not np.isfinite(v) else f"{v:.2f}"


def format_report(report) -> str:
    """The report of :func:`run_perf` as text (Markdown tables and lines)."""
    per, seeds, reach = report["per_scheme"], report["seeds"], report["reachable_seeds"]
    lines = [
        f"Performance on {report['dataset']}, seeds {seeds[0]}-{seeds[-1]} (results: "
        f"{report['results']})",
        f"median floor (cold L-BFGS fit at the best log-lambda): {report['median_floor']:.2f}s",
        f"seeds whose validation optimum is within 1% of the best held-out loss: "
        f"{len(reach)}/{len(seeds)} {reach} (elsewhere a search that converges on the "
        "validation loss ends above the target)",
        "| scheme | seeds reaching 1.01 x best | of the reachable | median time to target (s) "
        "| / floor |",
        "|---|---|---|---|---|",
    ]
    for s, r in per.items():
        lines.append(f"| {s} | {r['n_reached']}/{r['n_seeds']} | "
                     f"{r['n_reached_of_reachable']}/{len(reach)} | "
                     f"{_fmt(r['median_time_to_target'])} | "
                     f"{_fmt(r['median_time_to_target'] / report['median_floor'])} |")
    for key, label in (("shine_over_floor", "SHINE time to target / floor (target <= 1.0)"),
                       ("cg_over_shine", "HOAG (CG) / SHINE time to target (target >= 2)"),
                       ("grid_over_shine", "grid search / SHINE time to target (target >= 5)"),
                       ("random_over_shine",
                        "random search / SHINE time to target (target >= 5)")):
        if key in report:
            lines.append(f"{label}: {_fmt(report[key])}")
    if "sklearn" in report:
        sk = report["sklearn"]
        lines.append(f"LogisticRegressionCV: SHINE ends lower on {sk['shine_lower_final']}/"
                     f"{len(seeds)} seeds; time for SHINE to beat its final loss / its time: "
                     f"{sk['median_time_ratio']:.3f} (target <= 0.05)")
        if "median_floor_ratio" in sk:
            lines.append(f"  the same for a cold fit at the best log-lambda (no search beats "
                         f"it): {sk['median_floor_ratio']:.3f}")
    if "shine" in per:
        lines.append(f"SHINE backward / forward time per outer step (median): "
                     f"{per['shine']['median_backward_over_forward']:.4f} (target <= 0.01)")
    lines.append(f"peak resident memory of this process: {report['peak_memory_mb']:.0f} MB "
                 "(target <= 1024)")
    if "nnz_scaling" in report:
        sc = report["nnz_scaling"]
        lines.append(f"cost vs nnz: exponent {sc['exponent_inner_iteration']:.2f} per inner "
                     f"iteration, {sc['exponent_outer_step']:.2f} per outer step "
                     f"(nnz {sc['nnz']})")
    return "\n".join(lines)


def save_report(report, out) -> Path:
    """Write the report as JSON to ``out`` and append it to ``perf_history.jsonl`` beside it."""
    out = Path(out)
    atomic_write_text(out, json.dumps(report, indent=2, default=float))
    with open(out.parent / "perf_history.jsonl", "a") as f:
        f.write(json.dumps(report, default=float) + "\n")
    return out.parent / "perf_history.jsonl"
