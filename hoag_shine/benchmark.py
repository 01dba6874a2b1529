"""Benchmark runner: datasets x schemes x seeds, declared in a TOML file.

A configuration names the datasets (and their parameters), the schemes (a
``method`` among ``"hoag"``, ``"grid"``, ``"random"``, ``"sklearn-cv"`` and
its parameters) and the seeds. A dataset with more than two classes is
tuned as a multinomial problem (a scheme's ``penalty``: ``"per-class"``, the
default, or ``"shared"``; a binary dataset has one C whatever it says);
the ``alpha`` column is the mean log-penalty and ``alphas`` holds them all.
Each (dataset, scheme, seed) run writes its own CSV file under ``<out>/runs/``
atomically as soon as it finishes, so an interrupted benchmark loses no
finished run and a rerun skips them; ``<out>/results.csv`` is the
concatenation, rebuilt at the end.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from ._utils import single_thread_blas
from .config import (ConfigError, dataset_spec, load_config, parse_seeds, run_settings,
                     settings_hash)
from .datasets import load_dataset, paper_split
from .outer import grid_search, hoag, random_search
from .problems import LogisticProblem, MultinomialLogisticProblem
from .results import (ALPHA_COLUMNS, COLUMNS, atomic_write_csv, atomic_write_text, read_results,
                      read_run, write_run)

__all__ = ["COLUMNS", "ConfigError", "load_config", "parse_seeds", "plan_runs", "run_benchmark",
           "read_results", "run_scheme"]


def plan_runs(config, *, datasets=None, schemes=None, seeds=None):
    """The (dataset, scheme, seed) triples to run, checked against the configuration;
    a dataset, scheme or seed named twice runs once."""
    bench = config["benchmark"]
    datasets = list(dict.fromkeys(datasets or bench["datasets"]))
    schemes = list(dict.fromkeys(schemes or bench["schemes"]))
    seeds = parse_seeds(list(seeds)) if seeds is not None else list(bench["seeds"])
    for s in schemes:
        if s not in config.get("schemes", {}):
            raise ConfigError(f"Unknown scheme {s!r}; the configuration defines "
                              f"{', '.join(sorted(config.get('schemes', {})))}.")
    for d in datasets:
        dataset_spec(config, d)
    return [(d, s, seed) for d in datasets for seed in seeds for s in schemes]


def _run_file(out: Path, dataset, scheme, seed) -> Path:
    """The run's rows; beside it ``.alphas.csv`` and the ``.json`` record."""
    return out / "runs" / f"{dataset}__{scheme}__seed{seed}.csv"


@functools.lru_cache(maxsize=2)
def _load(loader, params_json, data_home, download):
    return load_dataset(loader, data_home=data_home, download=download,
                        **json.loads(params_json))


def _load_split(loader, params_json, seed, data_home, download, test_size=0.1):
    return paper_split(*_load(loader, params_json, data_home, download), seed,
                       test_size=test_size)


def _sklearn_cv(split, params, fit_intercept):
    from sklearn.linear_model import LogisticRegressionCV

    # Fitted on the training part only, like the other schemes' models (its own
    # K-fold CV replaces our validation part), so held-out losses compare.
    X_tr, y_tr, _, _, X_ho, y_ho = split
    kw = dict(Cs=10, cv=5, tol=1e-4, max_iter=1000, scoring="neg_log_loss")
    # Opt in to the behaviour scikit-learn announces, where it knows the
    # parameters (silences its transition warnings; same model).
    accepted = inspect.signature(LogisticRegressionCV).parameters
    for key, value in (("use_legacy_attributes", False), ("l1_ratios", (0.0,))):
        if key in accepted:
            kw[key] = value
    kw.update(params)
    t0 = time.perf_counter()
    clf = LogisticRegressionCV(fit_intercept=fit_intercept, **kw).fit(X_tr, y_tr)
    elapsed = time.perf_counter() - t0
    if len(clf.classes_) > 2:  # cross-entropy (a sum), as MultinomialLogisticProblem's
        log_proba = clf.predict_log_proba(X_ho)
        heldout = -float(log_proba[np.arange(len(y_ho)), np.searchsorted(clf.classes_, y_ho)]
                         .sum())
    else:
        d = np.asarray(X_ho @ np.ravel(clf.coef_)).ravel() + np.ravel(clf.intercept_)[0]
        heldout = float(np.logaddexp(0, -y_ho * d).sum())
    alpha = -float(np.log(np.ravel(clf.C_)[0]))
    return [dict(iteration=0, time=elapsed, alpha=alpha, validation_loss=np.nan,
                 heldout_loss=heldout, forward_time=elapsed, backward_time=0.0, inner_iter=0,
                 n_hvp=0, accepted=True, alphas=[alpha])]


@single_thread_blas
def run_scheme(split, scheme: dict, *, fit_intercept=False, max_time=None):
    """Run one scheme on one split; return one row (dict) per outer iteration."""
    params = {k: v for k, v in scheme.items() if k not in ("method", "label")}
    method = scheme["method"]
    if method == "sklearn-cv":
        return _sklearn_cv(split, params, fit_intercept)
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
    penalty = params.pop("penalty", "per-class")
    if len(np.unique(y_tr)) > 2:
        problem = MultinomialLogisticProblem(X_tr, y_tr, X_val, y_val,
                                             fit_intercept=fit_intercept, penalty=penalty)
    else:
        problem = LogisticProblem(X_tr, y_tr, X_val, y_val, fit_intercept=fit_intercept)
    common = dict(heldout=(X_ho, y_ho), max_time=params.pop("max_time", max_time))
    if method == "hoag":
        alpha0 = np.broadcast_to(params.pop("alpha0", 0.0), (problem.n_hyper,))
        params.setdefault("tol", 0.0)  # a benchmark runs its budget
        params.setdefault("value_tol", 0.0)
        params.setdefault("maxcor", 30)  # the memory the figures were made with,
        params.setdefault("pairs_precision", "double")  # in double precision
        if "bounds" in params:
            params["bounds"] = tuple(params["bounds"])
        res = hoag(problem, alpha0, **params, **common)
    elif method == "grid":
        res = grid_search(problem, **params, **common)
    else:
        res = random_search(problem, **params, **common)
    rows = []
    for r in res.trace:
        rows.append(dict(
            iteration=r["iteration"], time=r["time"], alpha=float(np.mean(r["alpha"])),
            alphas=[float(a) for a in r["alpha"]],
            validation_loss=r["outer_value"], heldout_loss=r["heldout_value"],
            forward_time=r["forward_time"], backward_time=r["backward_time"],
            inner_iter=r["inner_iter"], n_hvp=r["n_hvp"], accepted=r["accepted"],
        ))
    return rows


def _run_group(config, out, dataset, seed, schemes, data_home, download, report=None):
    """Run the given schemes on one (dataset, seed), writing each run as it finishes.

    ``report(dataset, scheme, seed, elapsed, heldout)`` is called after each run
    when given (in-process runs); the list of those tuples is returned."""
    loader, params = dataset_spec(config, dataset)
    entry = config.get("datasets", {}).get(dataset, {})
    split = _load_split(loader, json.dumps(params, sort_keys=True), seed,
                        None if data_home is None else str(data_home), download,
                        entry.get("test_size", 0.1))
    done = []
    for name in schemes:
        settings = run_settings(config, dataset, name, seed)
        scheme = config["schemes"][name]
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:  # (summarised once per run)
            warnings.simplefilter("always")
            rows = run_scheme(split, scheme, fit_intercept=settings["fit_intercept"],
                              max_time=settings["max_time"])
        alpha_rows = []
        for r in rows:
            alphas = r.pop("alphas")
            r.update(dataset=dataset, scheme=name, label=scheme.get("label", name), seed=seed,
                     log_C=-r["alpha"], n_hyper=len(alphas))
            alpha_rows.extend(dict(dataset=dataset, scheme=name, seed=seed,
                                   iteration=r["iteration"], index=i, alpha=a)
                              for i, a in enumerate(alphas))
        write_run(_run_file(out, dataset, name, seed), rows, alpha_rows, settings,
                  settings_hash(settings))
        said = [(w.category.__name__, str(w.message)) for w in caught]
        done.append((dataset, name, seed, time.perf_counter() - t0, rows[-1]["heldout_loss"],
                     said))
        if report is not None:
            report(*done[-1])
    return done


def _environment(config, backend):
    import joblib
    import scipy
    import sklearn

    from . import __version__

    return {
        "config_file": config.get("_path"),
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "backend": backend,
        "versions": {"hoag_shine": __version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                     "joblib": joblib.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _todo(config, out, runs, say):
    """The runs still to do: not run, unfinished, damaged, or made with other settings
    (each reason said once, with the runs it concerns)."""
    todo, reasons = [], {}
    for r in runs:
        _, _, reason = read_run(_run_file(out, *r), settings_hash(run_settings(config, *r)))
        if reason is not None:
            todo.append(r)
            reasons.setdefault(reason, []).append(r)
    for reason, which in reasons.items():
        if reason != "not run yet":
            names = ", ".join(f"{d}/{s}/seed {k}" for d, s, k in which[:3])
            more = f" and {len(which) - 3} more" if len(which) > 3 else ""
            say(f"rerunning {len(which)} run(s) {reason}: {names}{more}")
    return todo


@contextlib.contextmanager
def _backend(backend, n_jobs, scheduler):
    """joblib's parallel configuration for the runs; ``"dask"`` starts a local cluster
    of ``n_jobs`` single-threaded workers, or connects to ``scheduler``."""
    from joblib import parallel_config

    if backend != "dask":
        with parallel_config(backend=backend, n_jobs=n_jobs):
            yield
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("backend 'dask' needs dask's distributed package: "
                          "pip install 'dask[distributed]'.") from None
    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_jobs or 2, threads_per_worker=1, processes=True,
                dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        with parallel_config(backend="dask", n_jobs=len(client.scheduler_info()["workers"])
                             or -1):
            yield


def run_benchmark(config, out, *, datasets=None, schemes=None, seeds=None, n_jobs=1,
                  backend=None, scheduler=None, data_home=None, download=False,
                  progress=None):
    """Run the planned benchmark, skipping the runs finished with the same settings.

    Parameters
    ----------
    config : dict
        From :func:`~hoag_shine.config.load_config`.
    out : str or Path
        Output folder: ``runs/`` (per run: its rows, its hyperparameters' long
        table and a record of its settings), ``results.csv``, ``alphas.csv``,
        ``benchmark.json``.
    datasets, schemes, seeds : list, default=None
        Subsets of the configuration's (``None``: all of them).
    n_jobs : int, default=1
        (dataset, seed) groups run in parallel. Timings are most faithful
        with 1 (one process, nothing beside it).
    backend : str, default=None
        A joblib backend for the groups (``"loky"`` when ``n_jobs > 1``);
        ``"dask"`` starts a local cluster (or connects to ``scheduler``). The
        results are the same as a serial run's but for the timings.
    scheduler : str, default=None
        Address of a running dask scheduler (``backend="dask"``).
    data_home : str or Path, default=None
    download : bool, default=False
    progress : callable, default=None
        ``progress(event, **info)``: ``"plan"`` (``total``, ``done``, ``out``),
        ``"note"`` (``message``) and ``"run"`` (``dataset``, ``scheme``, ``seed``,
        ``elapsed``, ``heldout``) after each finished run.

    Returns
    -------
    results : Path
        ``<out>/results.csv``.
    """
    from joblib import Parallel, delayed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    emit = progress or (lambda event, **info: None)
    runs = plan_runs(config, datasets=datasets, schemes=schemes, seeds=seeds)
    todo = _todo(config, out, runs, lambda message: emit("note", message=message))
    emit("plan", total=len(runs), done=len(runs) - len(todo), out=str(out))
    if backend is None:
        backend = "sequential" if (n_jobs or 1) == 1 else "loky"
    atomic_write_text(out / "benchmark.json",
                      json.dumps(_environment(config, backend), indent=2, default=str))
    groups = {}
    for d, s, seed in todo:
        groups.setdefault((d, seed), []).append(s)

    said = []

    def report(d, s, seed, elapsed, heldout, caught=()):
        said.extend((d, s, seed, kind, text) for kind, text in caught)
        emit("run", dataset=d, scheme=s, seed=seed, elapsed=elapsed, heldout=heldout)

    if backend == "sequential":  # in-process: an event as each run finishes
        for (d, seed), ss in groups.items():
            _run_group(config, out, d, seed, ss, data_home, download, report=report)
    elif groups:
        jobs = [delayed(_run_group)(config, out, d, seed, ss, data_home, download)
                for (d, seed), ss in groups.items()]
        with _backend(backend, n_jobs, scheduler):
            for done in Parallel(return_as="generator_unordered")(jobs):
                for item in done:
                    report(*item)
    _summarise_warnings(out, said, emit)
    return _gather(config, out, runs)


def _summarise_warnings(out, said, emit):
    """The runs' warnings, once: counts by kind in a note, every one in
    ``OUT/warnings.log``."""
    if not said:
        return
    counts = {}
    for *_, kind, _ in said:
        counts[kind] = counts.get(kind, 0) + 1
    lines = [f"{d} {s} seed {seed}: {kind}: {text}" for d, s, seed, kind, text in said]
    atomic_write_text(out / "warnings.log", "\n".join(lines) + "\n")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    emit("note", message=f"warnings: {kinds} (every one in {out / 'warnings.log'})")


def _gather(config, out, runs):
    """``results.csv`` and ``alphas.csv``: every run's rows, in the plan's order."""
    rows, alpha_rows = [], []
    for r in runs:
        run_rows, run_alphas, reason = read_run(_run_file(out, *r),
                                                settings_hash(run_settings(config, *r)))
        if reason is not None:
            raise RuntimeError(f"run {r} is {reason} after the benchmark; rerun it.")
        rows.extend(run_rows)
        alpha_rows.extend(run_alphas)
    atomic_write_csv(out / "results.csv", rows)
    atomic_write_csv(out / "alphas.csv", alpha_rows, ALPHA_COLUMNS)
    return out / "results.csv"
