"""A worker process forked from this one that answers calls over a pipe, in order.

Used where forking is safe (a POSIX system, this process running one thread):
the worker inherits the data it is given at the fork (nothing is pickled to it)
and, unlike an executor of the standard library, the parent starts no thread to
serve it, so several workers can be forked one after the other, each from a
process that still runs a single thread.
"""

from __future__ import annotations

import collections
import multiprocessing

__all__ = ["ForkedWorker", "WorkerDied"]


class WorkerDied(RuntimeError):
    """The worker process ended (killed, or out of memory) before it answered."""


class _Reply:
    """The answer to one call, read from the pipe when it is asked for."""

    def __init__(self, worker):
        self._worker, self.done = worker, False
        self._ok, self._value = None, None

    def set(self, ok, value):
        self._ok, self._value, self.done = ok, value, True

    def result(self, timeout=None):
        """The call's return value; its exception raised here (``timeout`` is
        accepted for the executors' interface: a call is waited for to its end)."""
        self._worker.read_until(self)
        if not self._ok:
            raise self._value
        return self._value


class ForkedWorker:
    """One forked process: ``init(*init_args)`` runs there first, then each
    ``submit(fn, *args)`` runs ``fn(*args)`` there, in the order submitted.

    Parameters
    ----------
    init : callable
        Run in the new process before any call (its return value is the first
        reply, see :attr:`started`; an exception there is that reply's).
    init_args : tuple
        Its arguments, inherited by the fork (not pickled).
    """

    def __init__(self, init, init_args=()):
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._pending = collections.deque()
        self._stopped = False
        self.process = context.Process(target=_serve, args=(child, init, init_args),
                                       daemon=True)
        self.process.start()
        child.close()
        self.started = self._expect()

    def _expect(self):
        reply = _Reply(self)
        self._pending.append(reply)
        return reply

    def submit(self, fn, *args):
        """Send ``fn(*args)`` to the process; the reply is read at ``.result()``."""
        reply = self._expect()
        try:
            self._conn.send((fn, args))
        except (OSError, ValueError) as exc:  # (the pipe is closed: the process ended)
            self._pending.remove(reply)
            reply.set(False, WorkerDied(f"worker process {self.process.pid}: {exc}"))
        return reply

    def read_until(self, reply):
        """Read the replies in order until ``reply`` has its own."""
        while not reply.done:
            head = self._pending.popleft()
            try:
                ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                ok, value = False, WorkerDied(
                    f"worker process {self.process.pid} ended before it answered ({exc!r})")
            head.set(ok, value)

    def alive(self) -> bool:
        """Whether the process still runs."""
        self.process.join(timeout=0.5)
        return self.process.is_alive()

    def stop(self) -> None:
        """Ask the process to end, without waiting for it (several workers asked at
        once end side by side: a worker's end can take a second, the kernel freeing
        its spill files)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass

    def shutdown(self, wait=True) -> None:
        """Ask the process to end (:meth:`stop`), and wait for it (``wait``)."""
        self.stop()
        if wait:
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
        self._conn.close()


def _serve(conn, init, init_args):
    """The worker process: ``init``, then calls until told to stop (or the pipe
    closes), each answered with ``(ok, value)``."""
    _answer(conn, init, init_args)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        fn, args = message
        _answer(conn, fn, args)
    conn.close()


def _answer(conn, fn, args):
    try:
        reply = (True, fn(*args))
    except BaseException as exc:  # (sent back, raised in the parent)
        reply = (False, exc)
    try:
        conn.send(reply)
    except Exception as exc:  # (an answer that does not pickle)
        conn.send((False, RuntimeError(f"the worker's answer could not be sent: {exc!r}")))
