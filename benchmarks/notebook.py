"""Fits in a real Jupyter kernel: ``n_jobs=2`` where the fitting process runs threads.

A kernel runs threads (its heartbeat, its message loops), so its process
cannot be forked safely: the folds' workers come from multiprocessing's
forkserver (``hoag_shine.outer.workers.forkserver_context``). This starts an
IPython kernel through ``jupyter_client``, loads the data there, and times
``--fits`` fits of ``ShineLogisticRegressionCV(cv=5, n_jobs=2)`` and of
``LogisticRegressionCV(cv=5, n_jobs=2, scoring="neg_log_loss")`` one after
the other in the same kernel (a notebook's later fits find the forkserver, and
joblib's loky workers, up), printing each fit's time, ``C_`` and the kind of
worker the folds ran on.

It needs a kernel, which the package does not depend on::

    pip install ipykernel jupyter_client
    python benchmarks/notebook.py --fits 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SETUP = """
import json, sys, time, warnings
sys.path.insert(0, {root!r})
warnings.simplefilter("ignore")
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
import hoag_shine.outer.workers as workers
from hoag_shine import ShineLogisticRegressionCV
from hoag_shine.datasets import load_dataset
X, y = load_dataset({dataset!r})
X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state={seed},
                                          stratify=y)
runners = []
_init = workers.ProcessRunner.__init__
workers.ProcessRunner.__init__ = lambda self, *a: (runners.append(self), _init(self, *a))[1]
"""

FIT = """
est = {estimator}
t = time.perf_counter(); est.fit(X_tr, y_tr); elapsed = time.perf_counter() - t
hosts = runners[-1].hosts if runners and est.__class__.__name__.startswith("Shine") else []
print(json.dumps(dict(time=elapsed, C=float(est.C_[0] if hasattr(est.C_, "__len__") else est.C_),
                      workers=type(hosts[0]).__module__ if hosts else "-")))
runners.clear()
"""

ESTIMATORS = {
    "shine-cv5-j2": "ShineLogisticRegressionCV(cv=5, n_jobs=2)",
    "lrcv-j2": 'LogisticRegressionCV(cv=5, n_jobs=2, scoring="neg_log_loss")',
}


def _run(client, code, timeout=3600.0):
    """Execute ``code`` in the kernel; its printed output (an error raises)."""
    msg_id = client.execute(code)
    out = []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError(f"the kernel raised {msg['content']['ename']}: "
                               f"{msg['content']['evalue']}")
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out)


def build_parser():
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="20news", help="20news or 20news-multiclass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 80/20 test split")
    parser.add_argument("--fits", type=int, default=3, help="fits of each estimator, in turn")
    parser.add_argument("--rows", default="shine-cv5-j2,lrcv-j2",
                        help=f"comma-separated estimators among {', '.join(ESTIMATORS)}")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        raise SystemExit("notebook.py needs a Jupyter kernel: pip install ipykernel "
                         "jupyter_client") from None
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ESTIMATORS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose among {sorted(ESTIMATORS)}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        _run(client, SETUP.format(root=root, dataset=args.dataset, seed=args.seed))
        print(f"{args.dataset}, seed {args.seed}: fits in one Jupyter kernel, one after "
              "the other", flush=True)
        print("| fit | " + " | ".join(f"{r} (s)" for r in rows) + " |")
        print("|---|" + "---|" * len(rows))
        for k in range(args.fits):
            cells = []
            for row in rows:
                out = json.loads(_run(client, FIT.format(estimator=ESTIMATORS[row])).strip()
                                 .splitlines()[-1])
                cells.append(f"{out['time']:.2f} (C_ {out['C']:.4g}, workers: {out['workers']})")
            print(f"| {k + 1} | " + " | ".join(cells) + " |", flush=True)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
