"""The user's protocol: ShineLogisticRegressionCV against LogisticRegressionCV.

Each estimator is fitted on the training part of an 80/20 stratified split,
in a fresh process (forked after the data are loaded), timed in this one run,
and scored on the test part: fit time, C_, test log-loss (mean), accuracy and
the fit process's peak resident memory (MB = MiB; it counts the parent's
memory at the fork too: imports and data, printed as "at the start").

    python benchmarks/estimator_speed.py --dataset 20news --seed 0
    python benchmarks/estimator_speed.py --dataset breast-cancer --test-size 0.3 \
        --rows shine-cv5,lrcv --repeat 5
    python benchmarks/estimator_speed.py --dataset 20news-multiclass --rows shine-cv5,lrcv

Rows (``--rows``, comma-separated):

``shine-split``  ``ShineLogisticRegressionCV(cv=PredefinedSplit)``: one 20% validation
                 split of the training part, refit on all of it included;
``shine-cv5``    ``ShineLogisticRegressionCV(cv=5)``;
``shine-cg``     ``ShineLogisticRegressionCV(cv=5, hypergradient="cg")``;
``shine-per-class``  ``ShineLogisticRegressionCV(cv=5, multi_class_C="per-class")``;
``lrcv``         ``LogisticRegressionCV(cv=5, scoring="neg_log_loss")``, defaults otherwise;
``shine-cv5-j2``  ``ShineLogisticRegressionCV(cv=5, n_jobs=2)``: the folds on two worker
                 processes;
``shine-cv5-j2-threads``  the same with a second thread running in the fitting process
                 (a script that runs threads): the workers cannot be forked safely, they are
                 started fresh (loky) and the data pickled to them;
``shine-cv5-j2-notebook``  the same in a notebook's situation: a second thread running and
                 ``__main__`` no file (a kernel's): the workers are forked from
                 multiprocessing's forkserver, started by this first fit of the session;
``shine-cv5-j2-notebook-2nd``  the same session's second fit (the first one untimed): the
                 forkserver is up;
``lrcv-j2``      ``LogisticRegressionCV(cv=5, n_jobs=2, scoring="neg_log_loss")``, its
                 default BLAS threads;
``lrcv-j2-1blas``  the same with one BLAS thread per process (scikit-learn's best
                 setting on 2 cores);
``lrcv-j2-notebook-2nd``  ``lrcv-j2``'s second fit in a notebook's situation (its loky
                 workers, kept by joblib, are up);
``lr-at-C``      one ``LogisticRegression(C=<shine-split's C_>, tol=1e-6)`` fit: what
                 scikit-learn needs to fit once at the answer, as good on the test set.

Run it on a quiet machine: scikit-learn's BLAS threads slow down about fivefold
when another process shares the cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
import types
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import PredefinedSplit, train_test_split
from threadpoolctl import threadpool_limits

from hoag_shine import ShineLogisticRegressionCV
from hoag_shine.datasets import load_dataset

ROWS = ("shine-split", "shine-cv5", "shine-cv5-j2", "shine-cv5-j2-threads",
        "shine-cv5-j2-notebook", "shine-cv5-j2-notebook-2nd", "shine-cg", "shine-per-class",
        "lrcv", "lrcv-j2", "lrcv-j2-1blas", "lrcv-j2-notebook-2nd", "lr-at-C")


def _predefined(y, seed):
    """A stratified 80/20 PredefinedSplit of the training part."""
    idx = np.arange(len(y))
    _, val = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y)
    fold = np.full(len(y), -1)
    fold[val] = 0
    return PredefinedSplit(fold)


def _estimator(row, y_train, seed, C_split, params=None):
    params = params or {}
    if row == "shine-split":
        return ShineLogisticRegressionCV(cv=_predefined(y_train, seed), **params)
    if row == "shine-cv5":  # (params may replace a row's own settings: {"cv": 10})
        return ShineLogisticRegressionCV(**{"cv": 5, **params})
    if row in ("shine-cv5-j2", "shine-cv5-j2-threads", "shine-cv5-j2-notebook",
               "shine-cv5-j2-notebook-2nd"):
        return ShineLogisticRegressionCV(**{"cv": 5, "n_jobs": 2, **params})
    if row in ("lrcv-j2", "lrcv-j2-1blas", "lrcv-j2-notebook-2nd"):
        return LogisticRegressionCV(cv=5, scoring="neg_log_loss", n_jobs=2)
    if row == "shine-cg":
        return ShineLogisticRegressionCV(cv=5, hypergradient="cg", **params)
    if row == "shine-per-class":
        return ShineLogisticRegressionCV(cv=5, multi_class_C="per-class", **params)
    if row == "lrcv":
        return LogisticRegressionCV(cv=5, scoring="neg_log_loss")
    if row == "lr-at-C":
        if C_split is None:
            raise SystemExit("lr-at-C needs the shine-split row first (its C_).")
        return LogisticRegression(C=C_split, tol=1e-6, max_iter=10_000)
    raise SystemExit(f"unknown row {row!r}; choose among {ROWS}")


def _pss_mb(pid):
    """Proportional set size of a process (shared pages split between the sharers)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _tree(pid):
    """``pid`` and its descendants (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class _TreeMemory:
    """Peak of the summed PSS of a process and its descendants (worker processes),
    sampled from outside (this process) every 0.2 s while waiting for its answer:
    the fitting process keeps a single thread."""

    def __init__(self, pid):
        self.pid, self.peak = pid, 0.0

    def wait(self, queue, proc, timeout):
        """The process's answer; ``None`` if it ended without one or ran past
        ``timeout`` seconds (then it is killed, with its workers)."""
        import queue as queues

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            self.peak = max(self.peak, sum(_pss_mb(p) for p in _tree(self.pid)))
            try:
                return queue.get(timeout=0.2)
            except queues.Empty:
                if proc.exitcode is not None:
                    return None
        return None


def _end(proc, grace=60.0):
    """Wait for the fitting process to exit (a pool's shutdown can hang after the
    answer was sent): past ``grace`` seconds it is killed with its descendants."""
    proc.join(timeout=grace)
    if proc.exitcode is None:
        for pid in _tree(proc.pid)[::-1]:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        proc.join()


def _notebook():
    """This process's ``__main__`` as a notebook kernel's: no file, nor a module run
    by name (the kernel's threads: ``thread``)."""
    main = types.ModuleType("__main__")
    main.__spec__ = None
    sys.modules["__main__"] = main


def _fit_and_score(est, data, queue, repeat=1, one_blas=False, thread=False, notebook=False,
                   second=False):
    if thread:  # a thread that runs along the fit (as a notebook kernel's do)
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    if notebook:
        _notebook()
    if one_blas:  # one BLAS thread here and in the workers the fit starts
        os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        threadpool_limits(limits=1)
    X_tr, y_tr, X_te, y_te = data
    start_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # the data's, at fork
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        times = []
        if second:  # the session's first fit, untimed
            est.fit(X_tr, y_tr)
        for _ in range(repeat + (repeat > 1)):  # with repeats, one warm-up fit first
            t0 = time.perf_counter()
            est.fit(X_tr, y_tr)
            times.append(time.perf_counter() - t0)
        elapsed = float(np.median(times[1:] if repeat > 1 else times))
    C = np.ravel(getattr(est, "C_", getattr(est, "C", np.nan)))
    proba = est.predict_proba(X_te)
    out = dict(time=elapsed, C=C.tolist(), log_loss=float(log_loss(y_te, proba)),
               accuracy=float(accuracy_score(y_te, est.predict(X_te))),
               peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               start_mb=start_mb,
               n_iter=int(np.max(getattr(est, "n_iter_", 0))),
               warnings=sorted({type(w.message).__name__ for w in caught}))
    history = getattr(est, "history_", None)
    if history is not None:
        # the whole outer loop (stop checks included; history_ ends at the last step)
        result = getattr(est, "hoag_result_", None)
        out["outer_time"] = float(getattr(result, "time", history["time"][-1]))
        out["inner_iter"] = int(np.sum(history["inner_iter"]))
    queue.put(out)


def run(dataset, seed, rows, data_home=None, test_size=0.2, repeat=1, params=None,
        row_timeout=3600.0):
    X, y = load_dataset(dataset, data_home=data_home)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed,
                                              stratify=y)
    data = (X_tr, y_tr, X_te, y_te)
    ctx = mp.get_context("fork")
    results, C_split = {}, None
    for row in rows:
        est = _estimator(row, y_tr, seed, C_split, params)
        queue = ctx.Queue()
        proc = ctx.Process(target=_fit_and_score,
                           args=(est, data, queue, repeat, row.endswith("1blas"),
                                 row.endswith("threads") or "-notebook" in row,
                                 "-notebook" in row,
                                 row.endswith("-2nd")))
        proc.start()
        tree = _TreeMemory(proc.pid)
        out = tree.wait(queue, proc, row_timeout)
        _end(proc, grace=60.0 if out is not None else 0.0)
        if out is None:
            print(f"{row}: no answer (the process ended, or ran past {row_timeout:g} s); "
                  "left out", file=sys.stderr, flush=True)
            continue
        out["tree_mb"] = tree.peak
        results[row] = out
        if row == "shine-split":
            C_split = out["C"][0] if len(out["C"]) == 1 else None
        print(f"{row}: {out['time']:.2f} s, C_ {np.round(out['C'], 4).tolist()}, test log-loss "
              f"{out['log_loss']:.4f}, accuracy {out['accuracy']:.4f}, peak "
              f"{out['peak_mb']:.0f} MB ({out['start_mb']:.0f} at the start), outer loop {out.get('outer_time', 0):.1f} s, "
              f"{out.get('inner_iter', 0)} inner iterations", file=sys.stderr, flush=True)
    return results


def format_table(dataset, seed, results, test_size=0.2):
    lines = [f"{dataset}, seed {seed} ({test_size:g} stratified test split; fits on the "
             "training part)",
             "", "| estimator | fit time (s) | C_ | test log-loss | test accuracy | peak memory "
             "(MB) | all processes (MB, PSS) |", "|---|---|---|---|---|---|---|"]
    for row, r in results.items():
        C = r["C"]
        C = f"{C[0]:.4g}" if len(C) == 1 else f"{len(C)} values, median {np.median(C):.4g}"
        lines.append(f"| {row} | {r['time']:.2f} | {C} | {r['log_loss']:.4f} | "
                     f"{r['accuracy']:.4f} | {r['peak_mb']:.0f} | {r['tree_mb']:.0f} |")
    lines.append("")
    for a, b in (("shine-cv5", "lrcv"), ("shine-cg", "lrcv"), ("shine-per-class", "lrcv"),
                 ("shine-cv5-j2", "lrcv-j2"), ("shine-cv5-j2", "lrcv-j2-1blas"),
                 ("shine-cv5", "shine-cv5-j2"),
                 ("shine-cv5-j2-notebook-2nd", "lrcv-j2-notebook-2nd")):
        if a in results and b in results:
            lines.append(f"{a} / {b} fit time: {results[a]['time'] / results[b]['time']:.3f}")
    if "shine-split" in results and "lr-at-C" in results:
        lines.append(f"shine-split / lr-at-C fit time: "
                     f"{results['shine-split']['time'] / results['lr-at-C']['time']:.3f}")
    return "\n".join(lines)


def add_protocol_arguments(parser):
    """The options of the user's protocol that this benchmark and
    ``estimator_seeds.py`` share: dataset, test share, extra parameters, data cache,
    row timeout."""
    parser.add_argument("--dataset", default="20news",
                        help="20news, 20news-multiclass, real-sim, breast-cancer or digits")
    parser.add_argument("--test-size", type=float, default=0.2,
                        help="share of the data held out for the test (the protocol: 0.2 on "
                        "20news, 0.3 on breast-cancer and digits)")
    parser.add_argument("--params", type=json.loads, default=None,
                        help="JSON object of extra ShineLogisticRegressionCV parameters for "
                        "the shine rows, e.g. '{\"maxcor\": 10}' (they may replace a row's own: "
                        "'{\"cv\": 10}')")
    parser.add_argument("--data-home", help="dataset cache (default: $HOAG_SHINE_DATA, "
                        "~/hoag_shine_data, or scikit-learn's ~/scikit_learn_data)")
    parser.add_argument("--row-timeout", type=float, default=3600.0,
                        help="seconds a row may run before it is killed and left out")


def build_parser():
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_protocol_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the test split")
    parser.add_argument("--rows", default="shine-split,shine-cv5,lrcv,lr-at-C",
                        help=f"comma-separated rows, in order, among {', '.join(ROWS)}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="fits timed per row (median, after one warm-up fit when > 1): "
                        "for the small datasets, whose fits take milliseconds")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    try:
        results = run(args.dataset, args.seed, rows, args.data_home, args.test_size,
                      args.repeat, args.params, args.row_timeout)
    except (OSError, ValueError) as exc:  # (missing data: one line, not a traceback)
        raise SystemExit(f"estimator_speed.py: {exc}") from None
    print(format_table(args.dataset, args.seed, results, args.test_size))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(dataset=args.dataset, seed=args.seed, results=results), f, indent=1)


if __name__ == "__main__":
    main()
