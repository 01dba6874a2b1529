"""Where the folds of an outer loop live, and how calls reach them.

A runner holds the folds of one :class:`~hoag_shine.outer.folds.FoldSet` and
answers ``call_all(method, *args)`` (every fold's answer, in fold order) and
``call(k, method, *args)`` (fold ``k``'s). A fold lives where it was built: its
data go there once, its warm state (solution, backward vector, L-BFGS pairs)
stays there, and per outer step only log-penalties and a tolerance go out,
scalars and ``n_hyper``-long vectors come back.

* :class:`LocalRunner`: the folds in this process (one after the other, or in a
  joblib backend's threads);
* :class:`ProcessRunner`: the folds spread over worker processes of this
  machine, each one process of its own (forked from this one, or from
  multiprocessing's forkserver, or one of joblib's loky executors), so that a
  fold's calls always reach its process;
* :class:`DaskRunner`: the folds on the workers of a ``dask.distributed``
  cluster, one actor per worker.

The remote runners keep a journal of each fold's last accepted and trial
points: a worker that dies loses its folds' warm state, not the fit; they are
rebuilt cold on a live worker, brought back to the loop's state by solving
again, and a :class:`WorkerLostWarning` says so.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import threading
import warnings
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from contextlib import contextmanager

import cloudpickle
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import LokyBackend, MultiprocessingBackend, get_active_backend
from threadpoolctl import threadpool_limits

from .fold import Fold
from .forked import ForkedWorker

__all__ = ["DaskRunner", "FoldHost", "HostLost", "LocalRunner", "ProcessRunner", "WorkerLostWarning",
           "forkserver_context",
           "deferred_exits", "make_runner", "processes_pay"]

#: Work per outer step (stored entries of the training data times the
#: hyperparameter-independent width of the model) below which worker processes
#: do not pay for their start (``benchmarks/n_jobs.py``).
MIN_WORK_FOR_PROCESSES = 5_000_000  # (digits, 5 folds: 3.2e6, slower on two workers
#  than in this process; 20news binary: 9.2e6, 5.6 s against 7.1 s)


class WorkerLostWarning(UserWarning):
    """A worker holding folds died during a fit: its folds were rebuilt cold on a
    live worker (their warm state was lost, not the fit)."""


def _build(spec):
    problem, alpha, x0, options, plan, memory = spec
    return Fold(problem, alpha, x0, options, plan, memory)


class FoldHost:
    """Some folds of one fold set, by index: what a worker process or a dask actor
    holds. Its methods take and return values only."""

    def __init__(self, specs):
        with threadpool_limits(limits=1, user_api="blas"):
            self.folds = {k: _build(s) for k, s in specs.items()}

    def call(self, ks, method, args):
        """Fold ``k``'s ``method(*args)`` for each ``k`` of ``ks``, in that order."""
        with threadpool_limits(limits=1, user_api="blas"):
            return [getattr(self.folds[k], method)(*args) for k in ks]

    def add(self, k, spec):
        """Build fold ``k`` here (a fold whose worker died)."""
        with threadpool_limits(limits=1, user_api="blas"):
            self.folds[k] = _build(spec)

    def restage(self, ks, penalty, alpha, options):
        """Replace folds ``ks`` by folds of their problems with another penalty
        (``problem.with_penalty(penalty)``), started from their solutions and pairs."""
        for k in ks:
            self.folds[k] = self.folds[k].restage(penalty, alpha, options)

    def pid(self):
        return os.getpid()


class LocalRunner:
    """The folds in this process, called one after the other (or, with a joblib
    backend of threads chosen by ``joblib.parallel_config``, in its threads).

    Parameters
    ----------
    specs : list of tuple
        ``(problem, alpha, x0, options, plan, memory)`` per fold.
    parallel : joblib.Parallel or None
        The pool of threads serving the whole loop.
    """

    remote = False

    def __init__(self, specs, parallel=None):
        self.folds = [_build(s) for s in specs]
        self._parallel = parallel
        if parallel is not None:
            parallel.__enter__()

    def call_all(self, method, *args) -> list:
        if self._parallel is None:
            return [getattr(f, method)(*args) for f in self.folds]
        return self._parallel(delayed(getattr(f, method))(*args) for f in self.folds)

    def call(self, k, method, *args):
        return getattr(self.folds[k], method)(*args)

    def restage(self, penalty, alpha, options):
        self.folds = [f.restage(penalty, alpha, options) for f in self.folds]

    def close(self) -> None:
        if self._parallel is not None:
            self._parallel.__exit__(None, None, None)
            self._parallel = None


class _Journal:
    """What the loop asked of each fold since its last acceptance, to bring a fold
    rebuilt cold back to the loop's state."""

    def __init__(self, n):
        self.accepted = [None] * n  # (alpha, eps) of the accepted state
        self.trial = [None] * n  # (alpha, eps) of the pending trial
        self.end_game = False

    def record(self, k, method, args):
        if method == "forward":
            self.trial[k] = args
        elif method == "accept":
            self.accepted[k], self.trial[k] = ("accept", self.trial[k]), None
        elif method == "settle":
            self.accepted[k], self.trial[k] = ("settle", args), None
        elif method == "reject":
            self.trial[k] = None
        elif method == "refine_from_now":
            self.end_game = args

    def replay(self, k):
        """The calls that bring a cold fold ``k`` to its recorded state."""
        calls = [("refine_from_now", self.end_game)] if self.end_game else []
        if self.accepted[k] is not None:
            how, args = self.accepted[k]
            calls += ([("settle", args)] if how == "settle" else
                      [("forward", args), ("accept", args)])
        if self.trial[k] is not None:
            calls.append(("forward", self.trial[k]))
        return calls


class _RemoteRunner:
    """The folds spread over workers (``hosts``); the base of the process and dask
    runners. Subclasses give ``_start(w, specs)`` (what ``_started`` turns into
    the host once it is up), ``_submit(w, name, *args)`` (a future) and
    ``_alive(w)``."""

    remote = True

    def __init__(self, specs, n_workers):
        self.specs = list(specs)
        n_workers = max(1, min(n_workers, len(self.specs)))
        # Fold k on worker k % n_workers: a fixed assignment (the reduction order
        # is the folds', whatever the assignment).
        self.owner = [k % n_workers for k in range(len(self.specs))]
        self.journal = _Journal(len(self.specs))
        self.dead = set()
        # (every worker starts at once: processes import and unpickle side by side)
        starting = [self._start(w, {k: self.specs[k] for k in self._folds_of(w)})
                    for w in range(n_workers)]
        self.hosts = [self._started(s) for s in starting]

    def _folds_of(self, w):
        return [k for k, o in enumerate(self.owner) if o == w]

    def call_all(self, method, *args) -> list:
        out = [None] * len(self.specs)
        pending = [(w, ks, self._submit(w, "call", ks, method, args))
                   for w, ks in ((w, self._folds_of(w)) for w in range(len(self.hosts)))
                   if w not in self.dead and ks]
        for w, ks, future in pending:
            for k, r in zip(ks, self._result(w, future, method, args, ks)):
                out[k] = r
        for k in range(len(self.specs)):
            self.journal.record(k, method, args)
        return out

    def call(self, k, method, *args):
        w = self.owner[k]
        (r,) = self._result(w, self._submit(w, "call", [k], method, args), method, args, [k])
        self.journal.record(k, method, args)
        return r

    def _result(self, w, future, method, args, ks=None):
        """The answer of worker ``w``; a worker found dead has its folds rebuilt cold on
        a live worker and asked again."""
        ks = self._folds_of(w) if ks is None else ks
        try:
            return future.result()
        except HostLost:  # the worker's process was replaced by a fresh one
            return self._recover(w, ks, method, args, replaced=True)
        except Exception:
            if self._alive(w):
                raise
        return self._recover(w, ks, method, args)

    def _recover(self, w, ks, method, args, replaced=False):
        lost = self._folds_of(w)
        if replaced:  # the worker lives on, empty: its folds are rebuilt there
            live = [w]
            self._submit(w, "start", {}).result()
            what = "was replaced by a fresh process"
        else:
            self.dead.add(w)
            live = [v for v in range(len(self.hosts)) if v not in self.dead]
            if not live:
                raise RuntimeError("every worker of the fit died; its folds cannot be rebuilt")
            what = "died"
        warnings.warn(
            f"A worker holding folds {lost} {what} during the fit; they were rebuilt cold "
            "(their warm start and L-BFGS pairs were lost, not the fit).",
            WorkerLostWarning, stacklevel=2)
        for i, k in enumerate(lost):
            v = live[i % len(live)]
            self.owner[k] = v
            spec = self.specs[k][:5] + (None,)  # cold: the fold's start, no pairs
            self._submit(v, "add", k, self._portable(spec)).result()
            for name, replay_args in self.journal.replay(k):
                self._submit(v, "call", [k], name, replay_args).result()
        return [self._submit(self.owner[k], "call", [k], method, args).result()[0]
                for k in ks]

    def _portable(self, spec):
        """``spec`` as it is sent to a worker (subclasses: wrapped for their transport)."""
        return spec

    def restage(self, penalty, alpha, options):
        """Every fold replaced by one of its problem with another penalty (in place
        on its worker: its solution and pairs stay there)."""
        futures = [self._submit(w, "restage", self._folds_of(w), penalty, alpha, options)
                   for w in range(len(self.hosts)) if w not in self.dead]
        for f in futures:
            f.result()
        self.specs = [(s[0].with_penalty(penalty), alpha, s[2], options, s[4], None)
                      for s in self.specs]
        self.journal = _Journal(len(self.specs))


class HostLost(RuntimeError):
    """A worker process asked for its folds holds none: it is not the process they
    were built in (its executor replaced it)."""


def _host_call(name, *args):
    """Run in a worker process: the method ``name`` of its :class:`FoldHost`
    (``"start"`` builds it, ``"stop"`` lets it go)."""
    if name == "start":
        _keep_this_process()
        globals()["_HOST"] = FoldHost(args[0])
        return os.getpid()
    if name == "stop":
        return globals().pop("_HOST", None) is not None
    if "_HOST" not in globals():
        raise HostLost(f"worker process {os.getpid()} holds no folds")
    return getattr(globals()["_HOST"], name)(*args)


class _Pickled:
    """A value that pickles by cloudpickle and unpickles as the value itself: unlike
    pickle, cloudpickle sends classes and functions defined in ``__main__`` (a
    notebook's) by value. For the forkserver's workers, whose executor pickles by
    pickle (loky's and dask's use cloudpickle already; forked workers can import
    the parent's ``__main__``)."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return pickle.loads, (cloudpickle.dumps(self.value, protocol=pickle.HIGHEST_PROTOCOL),)


_PRELOADED = []


def forkserver_context():
    """multiprocessing's forkserver context, with this package preloaded by its
    server, in an interactive session; ``None`` elsewhere (loky's executors then).

    In a process with threads running (a notebook's kernel), forking it is not
    safe; the forkserver is a fresh single-threaded process that forks the
    workers instead. It imports this package once, on its first use in this
    session; every worker after that is forked from it ready to work, without
    the imports (1.3-1.5 s per worker with loky's spawned processes, 20 ms
    here). It stays up, idle, until the session ends, as loky's own helper
    processes do.

    Only where ``__main__`` is no file or module (a notebook, IPython, ``python
    -c``): elsewhere multiprocessing runs the main script again in every worker
    (a script that fits outside ``if __name__ == "__main__":`` would fit again
    there), which loky's workers do not.
    """
    main = sys.modules.get("__main__")
    interactive = (getattr(main, "__file__", None) is None
                   and getattr(getattr(main, "__spec__", None), "name", None) is None)
    if not interactive or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    if not _PRELOADED:
        # (a server already running, started by someone else, keeps its own list:
        # its workers then import the package themselves)
        context.set_forkserver_preload([__name__])
        _PRELOADED.append(True)
    return context


def _keep_this_process():
    """In a loky worker, turn off the restart of the worker when its memory has
    grown by 300 MB since its first task: the folds' warm state lives in this
    process and grows by design (solutions, L-BFGS pairs; and the allocator keeps
    what the solves freed). Without this, loky replaces the process mid-fit and
    the folds are rebuilt cold (:class:`HostLost`), which is correct but slow."""
    executor_module = sys.modules.get("joblib.externals.loky.process_executor")
    if executor_module is not None and hasattr(executor_module, "_USE_PSUTIL"):
        executor_module._USE_PSUTIL = False


class ProcessRunner(_RemoteRunner):
    """The folds on worker processes of this machine, started once per fit.

    Each worker is one process that holds its folds, so that a fold's calls
    always reach it: forked from this process where that is safe (a POSIX system,
    one thread running: the data are inherited, not copied or pickled; every
    worker is forked before any thread starts); else, with threads running, in
    a notebook an executor of one process forked from multiprocessing's
    forkserver, which has this package imported already
    (:func:`forkserver_context`), elsewhere (a script, Windows) one of joblib's
    loky executors: the data are pickled to it once.
    """

    def __init__(self, specs, n_workers):
        self._executors = []
        self.forked = os.name == "posix" and threading.active_count() == 1
        self._context = None if self.forked else forkserver_context()
        super().__init__(specs, n_workers)

    def _start(self, w, specs):
        if self.forked:
            worker = ForkedWorker(_host_call, ("start", specs))
            self._executors.append(worker)
            return worker, worker.started
        if self._context is not None:
            executor = ProcessPoolExecutor(max_workers=1, mp_context=self._context)
        else:
            from joblib.externals.loky import ProcessPoolExecutor as LokyExecutor

            executor = LokyExecutor(max_workers=1)
        self._executors.append(executor)
        return executor, executor.submit(_host_call, "start", self._portable(specs))

    def _portable(self, spec):
        # (to the forkserver's workers by cloudpickle: a problem class of the user's
        # defined in a notebook has no module a worker can import it from)
        return spec if self._context is None else _Pickled(spec)

    @staticmethod
    def _started(starting):
        executor, future = starting
        future.result()
        return executor

    def _submit(self, w, name, *args):
        return self.hosts[w].submit(_host_call, name, *args)

    def _alive(self, w):
        host = self.hosts[w]
        if isinstance(host, ForkedWorker):
            return host.alive()
        try:
            host.submit(os.getpid).result(timeout=60)
            return True
        except (BrokenExecutor, OSError, RuntimeError):
            return False
        except Exception:  # (loky's TerminatedWorkerError and kin)
            return False

    def pids(self):
        """The worker processes' ids (live ones)."""
        return [self._submit(w, "pid").result() for w in range(len(self.hosts))
                if w not in self.dead]

    def close(self) -> None:
        # Every forked worker told first, then waited for (they end side by side), or,
        # within deferred_exits(), at the end of its block: a worker's end takes the
        # kernel up to a second (20 classes: its memory and spill files), which the
        # final fit that follows need not wait for.
        # The same for loky's executors: each told to end at once, waited for later.
        pending = getattr(_EXITS, "pending", None)
        for ex in self._executors:
            if isinstance(ex, ForkedWorker):
                ex.stop()
            elif pending is not None:
                ex.shutdown(wait=False)
        for ex in self._executors:
            if pending is not None:
                pending.append(ex)
            else:
                ex.shutdown(wait=True)
        self._executors = []


_EXITS = threading.local()


@contextmanager
def deferred_exits():
    """Within the block, the worker processes of a closed runner (forked, or loky's)
    end while the block goes on; they are waited for at its end (nested blocks: the
    outermost's).

    A fit closes its folds' workers before its final fit on all the data: on 20news
    with 20 classes each worker took 0.6-1.1 s to end (the kernel releasing its
    memory and spill files), which the final fit no longer waits for.
    """
    if getattr(_EXITS, "pending", None) is not None:
        yield
        return
    _EXITS.pending = []
    try:
        yield
    finally:
        pending, _EXITS.pending = _EXITS.pending, None
        for worker in pending:
            worker.shutdown(wait=True)


class DaskRunner(_RemoteRunner):
    """The folds on the workers of a ``dask.distributed`` cluster: one actor
    (:class:`FoldHost`) per worker, pinned to it.

    Parameters
    ----------
    specs : list of tuple
    client : distributed.Client
    """

    def __init__(self, specs, client):
        self.client = client
        self.addresses = sorted(client.scheduler_info()["workers"])
        if not self.addresses:
            raise RuntimeError("the dask cluster has no worker to put the folds on")
        super().__init__(specs, len(self.addresses))

    def _start(self, w, specs):
        return self.client.submit(FoldHost, specs, actor=True, workers=[self.addresses[w]],
                                  allow_other_workers=False, pure=False)

    @staticmethod
    def _started(future):
        return future.result()

    def _submit(self, w, name, *args):
        return getattr(self.hosts[w], name)(*args)

    def _alive(self, w):
        if self.addresses[w] not in self.client.scheduler_info()["workers"]:
            return False
        try:  # (the scheduler may not have noticed yet: ask the actor itself)
            self.hosts[w].pid().result(timeout=60)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.hosts = []


def processes_pay(problems) -> bool:
    """Whether the folds' work per outer step is worth worker processes: stored
    training entries times the model's width (classes) of each fold, summed, at
    least :data:`MIN_WORK_FOR_PROCESSES`."""
    work = 0
    for p in problems:
        X = getattr(p, "X_train", None)
        if X is None:
            return True  # a problem of the user's: its cost is unknown, trust n_jobs
        nnz = X.nnz if hasattr(X, "nnz") else X.size
        work += nnz * max(1, p.n_params // max(1, X.shape[1]))
    return work >= MIN_WORK_FOR_PROCESSES


def _dask_client(backend):
    """The ``distributed.Client`` of joblib's dask backend (``None`` for another)."""
    client = getattr(backend, "client", None)
    if client is not None and type(backend).__name__ == "DaskDistributedBackend":
        return client
    return None


def make_runner(specs, options):
    """The runner of the folds ``specs`` that ``options.n_jobs`` and the active joblib
    backend ask for: a dask cluster (``joblib.parallel_config(backend="dask")``);
    threads (``backend="threading"``); worker processes (``n_jobs`` > 1 with
    joblib's default backend, ``"loky"``, or ``"multiprocessing"``, when
    :func:`processes_pay`: the workers are this module's, started as
    :class:`ProcessRunner` says, whichever of the two is chosen); else this process."""
    backend, config_jobs = get_active_backend()
    if len(specs) > 1 and _dask_client(backend) is not None:
        return DaskRunner(specs, _dask_client(backend))
    n_jobs = effective_n_jobs(options.n_jobs) if len(specs) > 1 else 1
    if n_jobs > 1 and type(backend).__name__ == "ThreadingBackend":
        return LocalRunner(specs, Parallel(n_jobs=min(n_jobs, len(specs))))
    if (n_jobs > 1 and isinstance(backend, (LokyBackend, MultiprocessingBackend))
            and processes_pay([s[0] for s in specs])):
        return ProcessRunner(specs, min(n_jobs, len(specs)))
    return LocalRunner(specs)
