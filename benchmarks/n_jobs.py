"""Folds in parallel or not: ShineLogisticRegressionCV(cv=3) with n_jobs=1 and 2, timed in one run.

    python benchmarks/n_jobs.py [--repeat 5]

On a 2,000 x 5,000 sparse binary problem (issue 14's measurement) and a larger
one (20,000 x 20,000), the median fit time of each setting, and the same under
``joblib.parallel_config(backend="sequential")`` (which must run in this thread).
"""

import argparse
import time

import numpy as np
from joblib import parallel_config

from hoag_shine import ShineLogisticRegressionCV
from hoag_shine.datasets import make_sparse_classification


def _time(est, X, y, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        est.fit(X, y)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print("| data | n_jobs=1 (s) | n_jobs=2 (s) | n_jobs=2 under backend='sequential' (s) | "
          "same C_ |")
    print("|---|---|---|---|---|")
    for n, p, density in ((2000, 5000, 0.01), (20000, 20000, 0.002)):
        X, y = make_sparse_classification(n, p, density=density, random_state=0)
        serial, a = _time(ShineLogisticRegressionCV(cv=3, n_jobs=1), X, y, args.repeat)
        threads, b = _time(ShineLogisticRegressionCV(cv=3, n_jobs=2), X, y, args.repeat)
        with parallel_config(backend="sequential"):
            seq, c = _time(ShineLogisticRegressionCV(cv=3, n_jobs=2), X, y, args.repeat)
        print(f"| {n} x {p} | {serial:.3f} | {threads:.3f} | {seq:.3f} | "
              f"{a.C_ == b.C_ == c.C_} |")


if __name__ == "__main__":
    main()
