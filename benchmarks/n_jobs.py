"""Folds on worker processes: what crosses per outer step, and a model of the time on
more workers.

1. Bytes per outer step. For two data sizes (a synthetic sparse set and one 10
   times larger), the calls a fold set makes in one outer step (forward, accept)
   are pickled as a worker process receives and returns them: the sizes do not
   grow with the data (log-penalties, a tolerance, scalars and ``n_hyper``-long
   hypergradients cross; the data went once, at the start).
2. A model of the fit on ``w`` workers, from the per-fold, per-call times of a
   serial fit: each outer step takes the slowest worker's sum over its folds
   (folds dealt ``k % w``), the rest (start, refit) is serial.
3. Small data: the default (``n_jobs=None``) and ``n_jobs=2`` on breast cancer and
   digits (processes start only when the folds' work pays for them).

    python benchmarks/n_jobs.py                      # 1 and 3
    python benchmarks/n_jobs.py --model 20news       # 2 on 20news (needs its cache)
"""

from __future__ import annotations

import argparse
import pickle
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split

import hoag_shine.outer.workers as workers
from hoag_shine import (LogisticProblem, MultinomialLogisticProblem, ShineLogisticRegressionCV,
                        hoag)
from hoag_shine.datasets import load_dataset, make_sparse_classification


def _folds(X, y, n_folds=5):
    out = []
    multi = len(np.unique(y)) > 2
    for tr, va in StratifiedKFold(n_folds).split(X, y):
        make = MultinomialLogisticProblem if multi else LogisticProblem
        kw = dict(penalty="shared", classes=np.unique(y)) if multi else {}
        out.append(make(X[tr], y[tr], X[va], y[va], fit_intercept=True, **kw))
    return out


class _Recorder(workers.LocalRunner):
    """A local runner that records each call: per fold, its seconds and the pickled
    sizes of what would cross to and from a worker."""

    log = []

    def call_all(self, method, *args):
        out = []
        for k, f in enumerate(self.folds):
            t0 = time.perf_counter()
            r = getattr(f, method)(*args)
            self.log.append(dict(method=method, fold=k, seconds=time.perf_counter() - t0,
                                 sent=len(pickle.dumps((method, args))),
                                 back=len(pickle.dumps(r))))
            out.append(r)
        return out


def _recorded_fit(problems, **kw):
    _Recorder.log = []
    real = workers.make_runner
    workers.make_runner = lambda specs, options: _Recorder(specs)
    import hoag_shine.outer.folds as folds_module

    folds_module.make_runner = workers.make_runner
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = hoag(problems, **kw)
        total = time.perf_counter() - t0
    finally:
        workers.make_runner = real
        folds_module.make_runner = real
    return res, list(_Recorder.log), total


def bytes_per_step():
    print("| data | stored entries | calls per outer step | bytes sent per fold | bytes back "
          "per fold |\n|---|---|---|---|---|")
    for n, p in ((2000, 5000), (20000, 50000)):
        X, y = make_sparse_classification(n, p, density=0.01, random_state=0)
        res, log, _ = _recorded_fit(_folds(X, y), max_iter=6, scan=False)
        steps = [r for r in log if r["method"] in ("forward", "accept")]
        sent = np.median([r["sent"] for r in steps])
        back = np.median([r["back"] for r in steps])
        print(f"| {n:,} x {p:,} | {X.nnz:,} | forward, accept (or reject) | {sent:.0f} | "
              f"{back:.0f} |")


def model(dataset):
    X, y = load_dataset(dataset)
    X_tr, _, y_tr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    res, log, total = _recorded_fit(_folds(X_tr, y_tr))
    calls = [r for r in log if r["method"] in ("forward", "accept", "reject", "refine",
                                                "settle")]
    n_folds = 5
    # group the calls into rounds (one call_all each: n_folds consecutive records)
    rounds = [calls[i:i + n_folds] for i in range(0, len(calls), n_folds)]
    in_folds = sum(r["seconds"] for r in calls)
    other = total - in_folds
    print(f"serial outer loop {total:.1f} s: {in_folds:.1f} s in the folds' calls "
          f"({len(rounds)} rounds), {other:.1f} s elsewhere")
    print("| workers | modelled outer loop (s) | speed-up |\n|---|---|---|")
    for w in (1, 2, 5, 10):
        t = other + sum(max(sum(r["seconds"] for r in rnd if r["fold"] % w == j)
                            for j in range(min(w, n_folds))) for rnd in rounds)
        print(f"| {w} | {t:.1f} | {total / t:.2f}x |")


def small_data():
    print("| data (cv=5) | n_jobs=None (s) | n_jobs=2 (s) | worker processes started |\n"
          "|---|---|---|---|")
    digits = load_digits(return_X_y=True)
    for name, (X, y) in (("breast cancer (raw)", load_breast_cancer(return_X_y=True)),
                         ("digits (/16)", (digits[0] / 16, digits[1]))):
        times = {}
        for n_jobs in (None, 2):
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ShineLogisticRegressionCV(cv=5, n_jobs=n_jobs).fit(X, y)
                best = min(best, time.perf_counter() - t0)
            times[n_jobs] = best
        problems = _folds(X, y)
        print(f"| {name} | {times[None]:.2f} | {times[2]:.2f} | "
              f"{'yes' if workers.processes_pay(problems) else 'no'} |")


def build_parser():
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="dataset of the model of the time on w workers "
                        "(e.g. 20news)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.model:
        model(args.model)
        return
    bytes_per_step()
    print()
    small_data()


if __name__ == "__main__":
    main()
