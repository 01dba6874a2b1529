"""The outer loop's record: one trace entry per outer iteration, and the result."""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import OptimizeResult

__all__ = ["HoagResult", "TRACE_FIELDS", "Trace", "heldout_loss_fn"]

logger = logging.getLogger("hoag_shine")

#: Fields of each trace record, in order.
TRACE_FIELDS = (
    "iteration", "alpha", "outer_value", "heldout_value", "hypergradient",
    "hypergradient_norm", "accepted", "time", "forward_time", "backward_time",
    "inner_iter", "n_hvp", "eps", "step_size",
)


class HoagResult(OptimizeResult):
    """Result of :func:`~hoag_shine.hoag` (and of grid and random search).

    Attributes
    ----------
    alpha : ndarray of shape (n_hyper,)
        Best accepted hyperparameters (the last accepted point).
    x : ndarray of shape (n_params,) or list of them
        Inner solution at ``alpha`` (one per fold with several problems).
    fun : float
        Outer value at ``(x, alpha)``.
    grad : ndarray of shape (n_hyper,)
        Hypergradient at ``alpha``.
    nit : int
        Outer iterations (inner solves), the initial one included.
    success : bool
        Whether a stopping test really held (or the callback stopped the loop).
    status : int
        0: a stopping test held; 1: ``max_iter`` reached; 2: time budget;
        3: stopped by the callback; 4: stopped at a bound of ``alpha``;
        5: the search could not proceed (see ``message``).
    message : str
        Why it stopped, in words.
    stop : Stop
        (:func:`~hoag_shine.hoag` only) Why it stopped, as values: a
        :class:`~hoag_shine.outer.stopping.StopReason` and its fields (which
        bound and side, which failure).
    trace : list of dict
        One record per outer iteration, with the keys of ``TRACE_FIELDS``.
    scan : Scan or None
        (:func:`~hoag_shine.hoag` only) The coarse scan's points, when one was
        made (``options.scan`` from the data-scaled start); its time is part of
        the first record's ``time``.
    memory : list of (LbfgsMemory, ndarray)
        (:func:`~hoag_shine.hoag` only) Each problem's final curvature pairs
        and the log-penalties they are at, for a next run started from this
        result (``x0=result``, which starts from copies). Up to ``pairs_memory_mb``
        of memory (spilled pairs stay on disk): ``del result["memory"]`` frees it.
    time : float
        Wall time of the whole loop in seconds (:func:`~hoag_shine.hoag`
        only): the last record's ``time`` plus what came after it, such as the
        check of a stop on ``tol`` (held-out evaluations excluded).
    """

    def trace_columns(self) -> dict:
        """The trace as a dict of arrays (one entry per record)."""
        return {k: np.array([r[k] for r in self.trace]) for k in TRACE_FIELDS}


def heldout_loss_fn(problem, heldout):
    """``x -> loss`` on held-out data: from ``(X, y)``, a callable, or ``None``.

    Parameters
    ----------
    problem : BilevelProblem
        Gives the loss (``problem.data_loss``).
    heldout : (X, y), callable or None

    Returns
    -------
    fn : callable or None
    """
    if heldout is None or callable(heldout):
        return heldout
    if not isinstance(heldout, (tuple, list)) or len(heldout) != 2:
        got = (f"{len(heldout)} items" if isinstance(heldout, (tuple, list))
               else type(heldout).__name__)
        raise ValueError(f"heldout must be a pair (X, y) or a callable x -> loss; got {got}.")
    X_h, y_h = heldout
    X_h = problem.check_X(X_h, "X_heldout")
    n_y = len(y_h) if hasattr(y_h, "__len__") else None
    if n_y != X_h.shape[0]:
        raise ValueError(f"heldout has {X_h.shape[0]} rows in X but {n_y} labels in y; give "
                         "one label per row.")
    return lambda x: problem.data_loss(x, X_h, y_h)


class Trace:
    """Collects the records of an outer loop; logs them and calls the callback.

    Parameters
    ----------
    heldout : callable or None
        ``x -> held-out loss``, recorded but never used to decide anything.
    callback : callable or None
        ``callback(record)`` with the record as an ``OptimizeResult`` plus
        ``x``; raising ``StopIteration`` asks the loop to stop.
    log : callable or None
        ``log(record)`` after each iteration (a caller's own progress report, e.g.
        an estimator's ``verbose``), besides the ``"hoag_shine"`` logger's INFO
        record.
    """

    def __init__(self, heldout=None, callback=None, log=None):
        self.heldout, self.callback, self.log = heldout, callback, log
        self.records: list[dict] = []

    @property
    def wants_x(self) -> bool:
        """Whether a record needs the (first) inner solution: for the held-out loss or
        the callback."""
        return self.heldout is not None or self.callback is not None

    def add(self, *, alpha, value, grad, accepted, time, forward_time, backward_time,
            inner_iter, n_hvp, eps, step_size, x) -> bool:
        """Append one record; return ``False`` when the callback asks to stop."""
        k = len(self.records)
        record = dict(
            iteration=k, alpha=np.array(alpha), outer_value=float(value),
            heldout_value=float(self.heldout(x)) if self.heldout is not None else np.nan,
            hypergradient=np.array(grad), hypergradient_norm=float(np.linalg.norm(grad)),
            accepted=bool(accepted), time=float(time), forward_time=float(forward_time),
            backward_time=float(backward_time), inner_iter=int(inner_iter), n_hvp=int(n_hvp),
            eps=float(eps), step_size=float(step_size),
        )
        self.records.append(record)
        logger.info("hoag it %d: alpha=%s outer=%.6g %s inner_iter=%d n_hvp=%d time=%.3fs",
                    k, np.array2string(record["alpha"], precision=4), value,
                    "accepted" if accepted else "rejected", inner_iter, n_hvp, time)
        if self.log is not None:
            self.log(record)
        if self.callback is not None:
            try:
                # (a copy: writing to the record's x must not change the fit)
                self.callback(OptimizeResult(x=np.array(x), **record))
            except StopIteration:
                return False
        return True
