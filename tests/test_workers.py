"""Folds on worker processes and dask workers: same answers as in this process, faults
survived."""

import contextlib
import multiprocessing
import multiprocessing.forkserver
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


@pytest.mark.parametrize("n_jobs, backend, runner, n_workers", [
    (3, None, "ProcessRunner", 3),
    (10, None, "ProcessRunner", 4),  # (no more workers than folds)
    (2, "loky", "ProcessRunner", 2),
    (2, "multiprocessing", "ProcessRunner", 2),
    (2, "threading", "LocalRunner", 0),
    (2, "sequential", "LocalRunner", 0),
])
def test_backends_and_worker_counts_give_the_serial_answer(always_processes, monkeypatch,
                                                           n_jobs, backend, runner, n_workers):
    made = []
    make = workers.make_runner

    def spy(specs, options):
        made.append(make(specs, options))
        return made[-1]

    monkeypatch.setattr("hoag_shine.outer.folds.make_runner", spy)
    X, y = make_sparse_classification(500, 200, density=0.05, random_state=1)
    one = ShineLogisticRegressionCV(cv=4).fit(X, y)
    est = ShineLogisticRegressionCV(cv=4, n_jobs=n_jobs)
    made.clear()
    with (joblib.parallel_config(backend=backend) if backend else contextlib.nullcontext()):
        est.fit(X, y)
    assert [type(r).__name__ for r in made] == [runner]
    assert len(getattr(made[0], "hosts", [])) == n_workers
    assert est.C_ == one.C_
    np.testing.assert_array_equal(est.coef_, one.coef_)


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
    before = set(_children())
    # (one of this fit's workers)
    _kill_a_worker_mid_fit(lambda: sorted(set(_children()) - before)[0], tight_reference)


def _kill_a_worker_mid_fit(find_worker, reference):
    """A fit whose worker ``find_worker()`` is killed at its third outer iteration ends
    with a WorkerLostWarning and the answer of the fit without the fault."""
    killed = []

    def kill_one(record):
        if record["iteration"] == 3 and not killed:
            pid = find_worker()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.warns(WorkerLostWarning, match="rebuilt cold"):
        res = hoag(_folds(fit_intercept=False), n_jobs=2, callback=kill_one, **TIGHT)
    assert killed and res.success and reference.success
    # (C = exp(-alpha) to 1e-6 relative)
    np.testing.assert_allclose(res.alpha, reference.alpha, rtol=0, atol=1e-6)


@pytest.fixture
def loky_workers(monkeypatch, always_processes):
    """The folds on loky's executors (as when threads run in this process), and
    the runners of the fits kept to look at."""
    monkeypatch.setattr(workers, "forkserver_context", lambda: None)  # (as on Windows)
    return _threaded_runners(monkeypatch)


@pytest.fixture
def forkserver_workers(monkeypatch, always_processes):
    """The folds on processes forked by multiprocessing's forkserver (threads run in
    this process, an interactive one), and the runners of the fits kept to look at."""
    import sys
    import types

    main = types.ModuleType("__main__")  # (a notebook's: no file, no module name)
    main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", main)
    return _threaded_runners(monkeypatch)


def _threaded_runners(monkeypatch):
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 2)  # (not safe to fork)
    runners = []
    init = workers.ProcessRunner.__init__

    def keep(self, *args):
        runners.append(self)
        init(self, *args)

    monkeypatch.setattr(workers.ProcessRunner, "__init__", keep)
    return runners


def test_with_threads_running_the_workers_come_from_the_forkserver(forkserver_workers):
    from concurrent.futures import ProcessPoolExecutor

    problems = _folds()
    serial = hoag(problems, max_iter=6)
    parents = []

    def look(record):
        if not parents:
            runner = forkserver_workers[-1]
            parents.extend(h.submit(os.getppid).result() for h in runner.hosts)

    parallel = hoag(problems, max_iter=6, n_jobs=2, callback=look)
    (runner,) = forkserver_workers
    assert not runner.forked
    assert all(type(h) is ProcessPoolExecutor for h in runner.hosts) and runner.hosts
    assert len(set(parents)) == 1 and os.getpid() not in parents  # the server's children
    assert workers.__name__ in multiprocessing.forkserver._forkserver._preload_modules
    np.testing.assert_array_equal(parallel.alpha, serial.alpha)
    for a, b in zip(parallel.x, serial.x):
        np.testing.assert_array_equal(a, b)


def test_a_script_s_workers_are_loky_s(monkeypatch):
    """multiprocessing would run a script (or ``python -m`` module) again in each
    worker it forks from its forkserver: a script's workers are loky's, which do not."""
    import sys
    import types

    script = types.ModuleType("__main__")
    script.__file__, script.__spec__ = "/tmp/my_script.py", None
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert workers.forkserver_context() is None
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="my_package.run")
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert workers.forkserver_context() is None
    notebook = types.ModuleType("__main__")
    notebook.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    assert workers.forkserver_context() is multiprocessing.get_context("forkserver")


def test_a_killed_forkserver_worker_loses_its_folds_warm_state_not_the_fit(
        forkserver_workers, tight_reference):
    _kill_a_worker_mid_fit(lambda: forkserver_workers[-1].pids()[0], tight_reference)


def test_a_problem_class_defined_in_a_notebook_reaches_the_forkserver_workers():
    """A class of ``__main__`` (a notebook's cell; here ``python -c``) cannot be
    imported by a worker: the folds go by cloudpickle, with the class by value."""
    import subprocess
    import sys

    code = """
import threading
import numpy as np
import hoag_shine.outer.workers as workers
workers.MIN_WORK_FOR_PROCESSES = 0
from hoag_shine import LogisticProblem, hoag
from hoag_shine.datasets import make_sparse_classification
class MyProblem(LogisticProblem):
    pass
threading.Thread(target=threading.Event().wait, daemon=True).start()  # (no fork)
X, y = make_sparse_classification(300, 100, density=0.05, random_state=0)
va = np.arange(300) % 3 == 0
folds = [MyProblem(X[~va], y[~va], X[va], y[va])] * 3
a = hoag(folds, n_jobs=2, max_iter=4).alpha
b = hoag(folds, max_iter=4).alpha
print(a == b)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[ True]"


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


@pytest.mark.parametrize("n_classes", [2, 4])
def test_threaded_products_are_the_products_bit_for_bit(monkeypatch, n_classes):
    """The final fit's products on threads, rows split: the same bits as one thread
    (each output row is one block's), for one column and for one per class."""
    import hoag_shine.problems._threads as threads
    from hoag_shine import MultinomialLogisticProblem
    from hoag_shine.problems._threads import RowBlocks, threaded_products

    monkeypatch.setattr(threads, "MIN_THREADED_WORK", 0)
    X, y = make_sparse_classification(900, 400, density=0.05, random_state=3)
    rng = np.random.default_rng(0)
    if n_classes > 2:
        y = rng.integers(0, n_classes, size=len(y))
        p = MultinomialLogisticProblem(X, y, X[:50], y[:50], fit_intercept=True)
    else:
        p = LogisticProblem(X, y, X[:50], y[:50], fit_intercept=True)
    x, alpha = rng.standard_normal(p.n_params), np.full(p.n_hyper, -1.0)
    f1, g1 = p.inner_value_grad(x, alpha)
    blocks = RowBlocks(p.X_train, 3)
    assert len(blocks.blocks) == 3 and blocks.blocks[-1][1] == X.shape[0]
    with threaded_products(p, 2) as same:
        assert same is p and p._threads is not None
        f2, g2 = p.inner_value_grad(x, alpha)
    assert p._threads is None
    assert f1 == f2
    np.testing.assert_array_equal(g1, g2)
    # an independent computation of the gradient's data part (one class)
    if n_classes == 2:
        b = np.where(y == p.classes_[1], 1.0, -1.0)
        m = X @ x[:-1] + x[-1]
        r = -b / (1.0 + np.exp(b * m))
        np.testing.assert_allclose(g2[:-1] - np.exp(alpha[0]) * x[:-1], X.T @ r,
                                   rtol=1e-10, atol=1e-12)


def test_threaded_products_leave_small_or_dense_data_alone():
    from hoag_shine.problems._threads import threaded_products

    X, y = make_sparse_classification(200, 50, density=0.2, random_state=0)
    for data in (X, X.toarray()):
        p = LogisticProblem(data, y, data[:20], y[:20])
        with threaded_products(p, 2):
            assert p._threads is None
    big = LogisticProblem(X, y, X[:20], y[:20])
    with threaded_products(big, 1):
        assert big._threads is None


def test_refit_on_threads_gives_the_serial_model(always_processes, monkeypatch):
    """n_jobs=2: folds on workers and the final fit's products on two threads; the
    model is the serial one's, bit for bit."""
    import hoag_shine.problems._threads as threads

    monkeypatch.setattr(threads, "MIN_THREADED_WORK", 0)
    calls = []
    product = threads.RowBlocks.matmul
    monkeypatch.setattr(threads.RowBlocks, "matmul",
                        lambda self, V, ex: calls.append(1) or product(self, V, ex))
    X, y = make_sparse_classification(500, 200, density=0.05, random_state=1)
    one = ShineLogisticRegressionCV(cv=3).fit(X, y)
    assert not calls
    two = ShineLogisticRegressionCV(cv=3, n_jobs=2).fit(X, y)
    assert calls  # (the final fit's products went through the threads)
    assert two.C_ == one.C_
    np.testing.assert_array_equal(two.coef_, one.coef_)
    np.testing.assert_array_equal(two.intercept_, one.intercept_)


def test_workers_end_by_the_end_of_the_fit():
    """The folds' workers are told to end before the final fit and waited for after
    it: the fit returns with none of its processes left."""
    # (in a fresh interpreter, whose workers are forked: earlier tests leave threads here)
    import subprocess
    import sys

    code = """
import multiprocessing
import numpy as np
import hoag_shine.outer.workers as workers
from hoag_shine import LogisticProblem, ShineLogisticRegressionCV, hoag
from hoag_shine.datasets import make_sparse_classification
from hoag_shine.outer.forked import ForkedWorker
workers.MIN_WORK_FOR_PROCESSES = 0
started, joined = [], []
start, shutdown = ForkedWorker.__init__, ForkedWorker.shutdown
def record_start(self, *args):
    start(self, *args)
    started.append(self.process)
def record_shutdown(self, wait=True):
    joined.append(self.process.pid)
    shutdown(self, wait)
ForkedWorker.__init__, ForkedWorker.shutdown = record_start, record_shutdown
X, y = make_sparse_classification(300, 100, density=0.05, random_state=0)
va = np.arange(300) % 3 == 0
folds = [LogisticProblem(X[~va], y[~va], X[va], y[va])] * 3
with workers.deferred_exits():
    hoag(folds, n_jobs=2, max_iter=2)
    print(len(started), len(joined))  # told to end, not waited for
print(sorted(joined) == sorted(p.pid for p in started), any(p.is_alive() for p in started))
ShineLogisticRegressionCV(cv=3, n_jobs=2, max_iter=3).fit(X, y)
print(len(started), any(p.is_alive() for p in started), len(multiprocessing.active_children()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-4:-1] == ["2 0", "True False", "4 False 0"]


def test_loky_workers_are_told_to_end_first_and_waited_for_at_the_end(loky_workers,
                                                                      monkeypatch):
    """Within deferred_exits (a fit's final fit), loky's executors are shut down without
    waiting when the folds close, and waited for when the block ends."""
    from joblib.externals.loky import ProcessPoolExecutor as LokyExecutor

    calls = []
    shutdown = LokyExecutor.shutdown

    def record(self, wait=True, **kwargs):
        calls.append((id(self), wait))
        return shutdown(self, wait=wait, **kwargs)

    monkeypatch.setattr(LokyExecutor, "shutdown", record)
    X, y = make_sparse_classification(300, 100, density=0.05, random_state=0)
    va = np.arange(300) % 3 == 0
    folds = [LogisticProblem(X[~va], y[~va], X[va], y[va])] * 3
    with workers.deferred_exits():
        hoag(folds, n_jobs=2, max_iter=2)
        inside = list(calls)
    (runner,) = loky_workers
    assert not runner.forked and len(inside) == 2
    assert all(wait is False for _, wait in inside)  # told, not waited for
    waited = [i for i, wait in calls[len(inside):] if wait]
    assert sorted(waited) == sorted(i for i, _ in inside)  # then waited for, each
