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

import functools
import inspect
import json
import os
import platform
import time
import tomllib
from pathlib import Path

import numpy as np

from ._utils import single_thread_blas
from .datasets import DATASETS, load_dataset, paper_split
from .outer import hoag
from .problems import LogisticProblem, MultinomialLogisticProblem
from .outer import grid_search, random_search
from .results import COLUMNS, atomic_write_csv, atomic_write_text, read_results, read_rows

__all__ = ["COLUMNS", "load_config", "parse_seeds", "plan_runs", "run_benchmark", "read_results"]

METHODS = ("hoag", "grid", "random", "sklearn-cv")

#: Keys of a [datasets.NAME] entry that are not the loader's parameters.
_SPLIT_KEYS = ("test_size", "max_time")


def load_config(path) -> dict:
    """Read and check a benchmark configuration (TOML)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No benchmark configuration at {path}.")
    with open(path, "rb") as f:
        config = tomllib.load(f)
    bench = config.get("benchmark", {})
    for key in ("datasets", "schemes", "seeds"):
        if key not in bench:
            raise ValueError(f"{path}: [benchmark] needs a '{key}' entry.")
    schemes = config.get("schemes", {})
    for name in bench["schemes"]:
        if name not in schemes:
            raise ValueError(f"{path}: scheme {name!r} is listed but has no [schemes.{name}].")
    for name, scheme in schemes.items():
        if scheme.get("method") not in METHODS:
            raise ValueError(f"{path}: [schemes.{name}] method must be one of {METHODS}, "
                             f"got {scheme.get('method')!r}.")
    for name in bench["datasets"]:
        _dataset_spec(config, name)
    config["_path"] = str(path)
    return config


def _dataset_spec(config, name):
    """``(loader, params)`` of a dataset entry: ``[datasets.NAME]`` may name its
    ``loader`` (one of ``DATASETS``; default: NAME itself), the ``test_size`` of
    its split (see :func:`~hoag_shine.datasets.paper_split`), a ``max_time``
    that overrides the benchmark's for its runs, and the loader's parameters."""
    params = dict(config.get("datasets", {}).get(name, {}))
    for key in _SPLIT_KEYS:
        params.pop(key, None)
    loader = params.pop("loader", name)
    if loader not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}: give it a [datasets.{name}] entry with a "
                         f"'loader' among {DATASETS}, or use one of those names.")
    return loader, params


def parse_seeds(text) -> list[int]:
    """``"0-9"``, ``"0,3,5"`` or ``"2"`` to a list of ints."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-")
            seeds.extend(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"No seeds in {text!r}; use e.g. '0-9' or '0,1,2'.")
    return seeds


def plan_runs(config, *, datasets=None, schemes=None, seeds=None):
    """The (dataset, scheme, seed) triples to run, checked against the configuration."""
    bench = config["benchmark"]
    datasets = list(datasets or bench["datasets"])
    schemes = list(schemes or bench["schemes"])
    seeds = list(seeds if seeds is not None else bench["seeds"])
    for s in schemes:
        if s not in config.get("schemes", {}):
            raise ValueError(f"Unknown scheme {s!r}; the configuration defines "
                             f"{sorted(config.get('schemes', {}))}.")
    for d in datasets:
        _dataset_spec(config, d)
    return [(d, s, seed) for d in datasets for seed in seeds for s in schemes]


def _run_file(out: Path, dataset, scheme, seed) -> Path:
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
                 n_hvp=0, accepted=True, alphas=f"{alpha:.6g}")]


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
            alphas=" ".join(f"{a:.6g}" for a in r["alpha"]),
            validation_loss=r["outer_value"], heldout_loss=r["heldout_value"],
            forward_time=r["forward_time"], backward_time=r["backward_time"],
            inner_iter=r["inner_iter"], n_hvp=r["n_hvp"], accepted=r["accepted"],
        ))
    return rows


def _run_group(config, out, dataset, seed, schemes, data_home, download, report=None):
    """Run the given schemes on one (dataset, seed), writing each run as it finishes.

    ``report(dataset, scheme, seed, elapsed, heldout)`` is called after each run
    when given (in-process runs); the list of those tuples is returned."""
    bench = config["benchmark"]
    loader, params = _dataset_spec(config, dataset)
    entry = config.get("datasets", {}).get(dataset, {})
    test_size = entry.get("test_size", 0.1)
    max_time = entry.get("max_time", bench.get("max_time"))
    split = _load_split(loader, json.dumps(params, sort_keys=True), seed,
                        None if data_home is None else str(data_home), download, test_size)
    done = []
    for name in schemes:
        scheme = config["schemes"][name]
        t0 = time.perf_counter()
        rows = run_scheme(split, scheme, fit_intercept=bench.get("fit_intercept", False),
                          max_time=max_time)
        for r in rows:
            r.update(dataset=dataset, scheme=name, label=scheme.get("label", name), seed=seed,
                     log_C=-r["alpha"])
        atomic_write_csv(_run_file(out, dataset, name, seed), rows)
        done.append((dataset, name, seed, time.perf_counter() - t0, rows[-1]["heldout_loss"]))
        if report is not None:
            report(*done[-1])
    return done


def _environment(config):
    import joblib
    import libsvmdata
    import scipy
    import sklearn

    from . import __version__

    return {
        "config_file": config.get("_path"),
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "versions": {"hoag_shine": __version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                     "libsvmdata": libsvmdata.__version__, "joblib": joblib.__version__,
                     "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_benchmark(config, out, *, datasets=None, schemes=None, seeds=None, n_jobs=1,
                  data_home=None, download=False, progress=None):
    """Run the planned benchmark, skipping runs already on disk.

    Parameters
    ----------
    config : dict
        From :func:`load_config`.
    out : str or Path
        Output folder: ``runs/`` (one CSV per run), ``results.csv``,
        ``benchmark.json``.
    datasets, schemes, seeds : list, default=None
        Subsets of the configuration's (``None``: all of them).
    n_jobs : int, default=1
        (dataset, seed) groups run in parallel processes. Timings are most
        faithful with 1.
    data_home : str or Path, default=None
    download : bool, default=False
    progress : callable, default=None
        Called with a line of text per event (the CLI prints it to stderr).

    Returns
    -------
    results : Path
        ``<out>/results.csv``.
    """
    from joblib import Parallel, delayed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    runs = plan_runs(config, datasets=datasets, schemes=schemes, seeds=seeds)
    todo = [r for r in runs if not _run_file(out, *r).exists()]
    say(f"{len(runs)} runs planned, {len(runs) - len(todo)} already done, {len(todo)} to run "
        f"-> {out}")
    atomic_write_text(out / "benchmark.json", json.dumps(_environment(config), indent=2,
                                                          default=str))
    groups = {}
    for d, s, seed in todo:
        groups.setdefault((d, seed), []).append(s)
    n_done = len(runs) - len(todo)

    def report(d, s, seed, elapsed, heldout):
        nonlocal n_done
        n_done += 1
        say(f"[{n_done}/{len(runs)}] {d} {s} seed {seed}: {elapsed:.1f}s, "
            f"final held-out loss {heldout:.4f}")

    if n_jobs == 1:  # in-process: a line as each run finishes
        for (d, seed), ss in groups.items():
            _run_group(config, out, d, seed, ss, data_home, download, report=report)
    elif groups:
        jobs = [delayed(_run_group)(config, out, d, seed, ss, data_home, download)
                for (d, seed), ss in groups.items()]
        for done in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            for item in done:
                report(*item)
    rows = []
    for r in runs:
        rows.extend(read_rows(_run_file(out, *r)))
    atomic_write_csv(out / "results.csv", rows)
    return out / "results.csv"
