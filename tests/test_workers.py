"""Folds on worker processes and dask workers: same answers as in this process, faults
survived."""

import os
import signal
import warnings

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import hoag_shine.outer.workers as workers
from hoag_shine import LogisticProblem, ShineLogisticRegressionCV, hoag
from hoag_shine.datasets import make_sparse_classification
from hoag_shine.outer.workers import WorkerLostWarning

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def always_processes(monkeypatch):
    """Worker processes whatever the size of the problem (the tests' problems are small)."""
    monkeypatch.setattr(workers, "MIN_WORK_FOR_PROCESSES", 0)


def _folds(n_folds=4, seed=0, fit_intercept=True):
    X, y = make_sparse_classification(600, 300, density=0.05, random_state=seed)
    idx = np.arange(len(y))
    out = []
    for k in range(n_folds):
        val = idx[k::n_folds]
        tr = np.setdiff1d(idx, val)
        out.append(LogisticProblem(X[tr], y[tr], X[val], y[val], fit_intercept=fit_intercept))
    return out


#: Settings of the fault tests: solved to the end, so that a fit that lost a worker
#: can be compared with one that did not (to 1e-6 on alpha). Their folds have no
#: intercept: on these all-positive features the intercept's solves to the 1e-12 of
#: the "exact" schedule take ten times the iterations (7 s a fit instead of 0.9 s).
TIGHT = dict(hypergradient="cg", max_iter=60, tol=1e-7, value_tol=0, tol_schedule="exact")


@pytest.fixture(scope="module")
def tight_reference():
    """The fault tests' fit without a fault, in this process (computed once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hoag(_folds(fit_intercept=False), **TIGHT)


def test_processes_give_the_serial_answer_to_the_last_digit(always_processes):
    problems = _folds()
    serial = hoag(problems, max_iter=15)
    parallel = hoag(problems, max_iter=15, n_jobs=2)
    np.testing.assert_array_equal(parallel.alpha, serial.alpha)
    for key in ("alpha", "outer_value", "hypergradient", "inner_iter", "accepted"):
        np.testing.assert_array_equal([r[key] for r in parallel.trace],
                                      [r[key] for r in serial.trace])
    for a, b in zip(parallel.x, serial.x):
        np.testing.assert_array_equal(a, b)
    assert parallel.memory is None  # the pairs stayed on the workers


def test_estimator_n_jobs_gives_the_same_C(always_processes):
    X, y = make_sparse_classification(500, 200, density=0.05, random_state=1)
    one = ShineLogisticRegressionCV(cv=4).fit(X, y)
    two = ShineLogisticRegressionCV(cv=4, n_jobs=2).fit(X, y)
    assert two.C_ == one.C_
    np.testing.assert_array_equal(two.coef_, one.coef_)
    np.testing.assert_array_equal(two.scores_, one.scores_)


def test_per_class_stage_on_processes(always_processes):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((300, 3)), axis=1)
    kw = dict(cv=3, multi_class_C="per-class", max_iter=8)
    one = ShineLogisticRegressionCV(**kw).fit(X, y)
    two = ShineLogisticRegressionCV(n_jobs=2, **kw).fit(X, y)
    np.testing.assert_array_equal(two.C_, one.C_)


def test_small_problems_stay_in_this_process():
    problems = _folds()
    specs = [(p, np.zeros(1), None, None, None, None) for p in problems]
    assert not workers.processes_pay(problems)
    assert workers.processes_pay(problems * 400)  # (the same work, 400 times over)
    del specs


def test_a_killed_worker_process_loses_its_folds_warm_state_not_the_fit(always_processes,
                                                                      tight_reference):
    problems = _folds(fit_intercept=False)
    tight, reference = TIGHT, tight_reference
    killed, before = [], set(_children())

    def kill_one(record):
        if record["iteration"] == 3 and not killed:
            pid = sorted(set(_children()) - before)[0]  # one of this fit's workers
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.warns(WorkerLostWarning, match="rebuilt cold"):
        res = hoag(problems, n_jobs=2, callback=kill_one, **tight)
    assert killed and res.success and reference.success
    # (C = exp(-alpha) to 1e-6 relative)
    np.testing.assert_allclose(res.alpha, reference.alpha, rtol=0, atol=1e-6)


@pytest.fixture
def loky_workers(monkeypatch, always_processes):
    """The folds on loky's executors (as when threads run in this process), and
    the runners of the fits kept to look at."""
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 2)
    runners = []
    init = workers.ProcessRunner.__init__

    def keep(self, *args):
        runners.append(self)
        init(self, *args)

    monkeypatch.setattr(workers.ProcessRunner, "__init__", keep)
    return runners


def test_every_worker_is_forked_from_a_single_threaded_process():
    # (in a fresh interpreter: earlier tests leave threads in this one)
    import subprocess
    import sys

    code = """
import os, numpy as np
import hoag_shine.outer.workers as workers
workers.MIN_WORK_FOR_PROCESSES = 0
from hoag_shine import LogisticProblem, hoag
from hoag_shine.datasets import make_sparse_classification
X, y = make_sparse_classification(300, 100, density=0.05, random_state=0)
va = np.arange(300) % 3 == 0
folds = [LogisticProblem(X[~va], y[~va], X[va], y[va])] * 3
runners, seen = [], []
init = workers.ProcessRunner.__init__
workers.ProcessRunner.__init__ = lambda self, *a: (runners.append(self), init(self, *a))[1]
hoag(folds, n_jobs=3, max_iter=2, callback=lambda r: seen.append(
    ([type(h).__name__ for h in runners[-1].hosts], runners[-1].pids())))
hosts, pids = seen[0]
print(hosts, len(set(pids)), os.getpid() in pids)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    # (a worker's helper thread in the parent would make the next one unforkable)
    assert out.stdout.split("\n")[-2] == "['ForkedWorker', 'ForkedWorker', 'ForkedWorker'] 3 False"


def test_a_replaced_worker_process_has_its_folds_rebuilt_there(loky_workers, tight_reference):
    problems = _folds(fit_intercept=False)
    tight, reference = TIGHT, tight_reference
    seen = {}

    def replace_one(record):
        runner = loky_workers[-1]
        if record["iteration"] == 1:
            flag = "__import__('joblib.externals.loky.process_executor', fromlist=['_'])._USE_PSUTIL"
            seen["leak check"] = runner.hosts[0].submit(eval, flag).result()
            seen["loky"] = "loky" in type(runner.hosts[0]).__module__
        if record["iteration"] == 3 and "stopped" not in seen:
            # (what loky does to a worker whose memory grew: a fresh process in its place)
            seen["stopped"] = runner.hosts[0].submit(workers._host_call, "stop").result()

    with pytest.warns(WorkerLostWarning, match="replaced by a fresh process"):
        res = hoag(problems, n_jobs=2, callback=replace_one, **tight)
    assert seen == {"leak check": False, "loky": True, "stopped": True}
    assert res.success and reference.success
    np.testing.assert_allclose(res.alpha, reference.alpha, rtol=0, atol=1e-6)


def _children():
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children()]


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_cluster_gives_the_serial_C(dask_client):
    X, y = make_sparse_classification(500, 200, density=0.05, random_state=1)
    one = ShineLogisticRegressionCV(cv=4).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        two = ShineLogisticRegressionCV(cv=4).fit(X, y)
    assert two.C_ == one.C_
    np.testing.assert_array_equal(two.coef_, one.coef_)


def test_a_killed_dask_worker_loses_warm_state_not_the_fit(dask_client, tight_reference):
    problems = _folds(fit_intercept=False)
    tight, reference = TIGHT, tight_reference
    done = []

    def kill_one(record):
        if record["iteration"] == 3 and not done:
            pids = dask_client.run(os.getpid)  # {worker address: its process}
            address = sorted(pids)[0]
            os.kill(pids[address], signal.SIGKILL)
            done.append(address)

    with joblib.parallel_config(backend="dask"):
        with pytest.warns(WorkerLostWarning):
            res = hoag(problems, callback=kill_one, **tight)
    assert done and res.success and reference.success
    np.testing.assert_allclose(res.alpha, reference.alpha, rtol=0, atol=1e-6)
