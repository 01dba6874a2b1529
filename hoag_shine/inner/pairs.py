"""Where the L-BFGS curvature pairs live: slots, precision, checkpoint, spill.

:class:`PairStore` is the storage half of an L-BFGS memory: it holds the pairs'
rows (in double or single precision), the scalars each pair's products need,
the order of the pairs, a checkpoint a rejected trial returns to, and a
temporary file the rows wait in while the memory is at rest. It does no
arithmetic on the pairs: :class:`~hoag_shine.inner.LbfgsMemory` (the operator:
two-loop recursion, exact shift) does. :func:`plan_pairs` decides how the
memories of an outer loop are stored.
"""

from __future__ import annotations

from collections import deque
import warnings
from typing import NamedTuple

import numpy as np

from .._utils import SpillFile, aligned

__all__ = ["PAIRS_PRECISIONS", "PairPlan", "PairStore", "SINGLE_PAIRS_MIN_PARAMS", "default_maxcor",
           "plan_pairs", "single_precision"]


class PairStore:
    """The rows and scalars of up to ``maxlen`` curvature pairs, oldest first.

    Parameters
    ----------
    maxlen : int
        Pairs kept; a full store drops its oldest pair for a new one.
    dtype : {numpy.float64, numpy.float32}
        Precision of the rows. In single precision each row is stored divided
        by its norm (kept in ``ns`` / ``ny``), so that no scale under- or
        overflows.

    Attributes
    ----------
    rho, yy, ss : ndarray of shape (2 * maxlen,)
        Per slot: ``1 / s.y``, ``y.y`` and ``s.s`` (in the operator's coordinates).
    ns, ny : ndarray of shape (2 * maxlen,)
        Per slot: the norms the stored rows were divided by (1 in double precision).

    Notes
    -----
    There are twice ``maxlen`` slots, allocated when first written, so that a
    trial run can add ``maxlen`` pairs without overwriting a checkpoint's.
    """

    def __init__(self, maxlen: int, dtype=np.float64):
        self.maxlen = int(maxlen)
        self.dtype = np.dtype(dtype)
        self.S = [None] * (2 * self.maxlen)
        self.Y = [None] * (2 * self.maxlen)
        self._order = deque()  # slots of the pairs in use, oldest first
        self._saved = None  # checkpoint: (slots in use then, their scalars then)
        self._orig = {}  # checkpoint: the y rows as they were before a shift
        self._file = SpillFile("hoag_shine_pairs_")  # where spill() puts the rows
        self.rho, self.yy, self.ss = (np.zeros(2 * self.maxlen) for _ in range(3))
        self.ns, self.ny = np.ones(2 * self.maxlen), np.ones(2 * self.maxlen)

    def __len__(self) -> int:
        return len(self._order)

    def __setstate__(self, state):
        # (rows received as raw buffers, e.g. by a dask worker, aligned again: see
        # hoag_shine._utils.aligned)
        self.__dict__.update(state)
        self.S = [None if r is None else aligned(r) for r in self.S]
        self.Y = [None if r is None else aligned(r) for r in self.Y]

    @property
    def slots(self) -> list:
        """The slots of the pairs in use, oldest first (a copy)."""
        return list(self._order)

    @property
    def newest(self):
        """The newest pair's slot (``None`` when empty)."""
        return self._order[-1] if self._order else None

    @property
    def nbytes(self) -> int:
        """Bytes the stored rows take in memory now (0 when spilled)."""
        return sum(r.nbytes for r in self.S + self.Y if r is not None)

    # -- at rest ---------------------------------------------------------------------
    def spill(self) -> None:
        """Move the rows to a temporary file, releasing their memory (a checkpoint is
        given up). :meth:`restore` reads them back exactly."""
        self.commit()
        if self._file.holds or not self._order:
            return
        self._file.write([row for slot in self._order for row in (self.S[slot], self.Y[slot])])
        for slot in self._order:
            self.S[slot] = self.Y[slot] = None

    def restore(self) -> None:
        """Read spilled rows back (nothing when they are in memory)."""
        if not self._file.holds:
            return
        rows = iter(self._file.read())
        for slot in self._order:
            self.S[slot], self.Y[slot] = next(rows), next(rows)

    # -- writing ---------------------------------------------------------------------
    def add(self, s, y, sy, yy, ss) -> int:
        """Store a new newest pair (the oldest is dropped from a full store); its slot.

        ``s`` and ``y`` are fresh float64 arrays the store may keep as they are."""
        self.restore()
        if len(self._order) == self.maxlen:
            old = self._order.popleft()
            if self._saved is None or old not in self._saved[0]:
                self._free(old)
            elif old in self._orig:  # a checkpoint's pair: only its original is needed
                self.Y[old] = None
        busy = set(self._order).union(self._saved[0] if self._saved is not None else ())
        slot = next(i for i in range(2 * self.maxlen) if i not in busy)
        self._write(slot, s, y)
        self.rho[slot], self.yy[slot], self.ss[slot] = 1.0 / sy, yy, ss
        self._order.append(slot)
        return slot

    def _write(self, slot, s, y):
        if self.dtype == np.float64:  # the fresh arrays are kept as they are
            self.S[slot], self.Y[slot] = s, y
            return
        ns, ny = float(np.linalg.norm(s)), float(np.linalg.norm(y))
        for rows, v, norm in ((self.S, s, ns), (self.Y, y, ny)):
            rows[slot] = np.empty(v.size, dtype=self.dtype)
            np.multiply(v, 1.0 / norm, out=rows[slot], casting="same_kind")
        self.ns[slot], self.ny[slot] = ns, ny

    def writable_y(self, slot):
        """The ``y`` row of ``slot``, to be updated in place: under a checkpoint, a
        copy (the checkpoint keeps the original)."""
        if self._saved is not None and slot not in self._orig:
            self._orig[slot] = self.Y[slot]
            self.Y[slot] = self.Y[slot].copy()
        return self.Y[slot]

    def drop(self, slot) -> None:
        """Take the pair of ``slot`` out of use (its curvature was lost)."""
        self._order.remove(slot)

    def _free(self, slot):
        self.S[slot] = self.Y[slot] = None

    def clear(self) -> None:
        """Drop every pair (a checkpoint is kept: :meth:`rollback` restores it)."""
        self.restore()
        for slot in self._order:
            if self._saved is None or slot not in self._saved[0]:
                self._free(slot)
        self._order.clear()

    def truncate(self, n_pairs: int) -> None:
        """Keep only the newest ``n_pairs`` pairs (a checkpoint is given up)."""
        self.restore()
        self.commit()
        while len(self._order) > max(int(n_pairs), 0):
            self._free(self._order.popleft())

    # -- checkpoint ------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Remember the pairs in use, so that :meth:`rollback` can return to them after
        a trial run. Until :meth:`commit` the trial's pairs take other slots, and a
        shift writes copies of the ``y`` rows: up to two and a half times ``maxlen``
        pairs are held."""
        self.restore()
        self.commit()
        scalars = tuple(a.copy() for a in (self.rho, self.yy, self.ss, self.ns, self.ny))
        self._saved = (list(self._order), scalars)

    def commit(self) -> None:
        """Keep the trial's pairs; release the checkpoint's that are out of use."""
        if self._saved is None:
            return
        for slot in self._saved[0]:
            if slot not in self._order:
                self._free(slot)
        self._saved, self._orig = None, {}

    def rollback(self) -> bool:
        """Return to the checkpoint exactly; whether there was one."""
        if self._saved is None:
            return False
        saved, scalars = self._saved
        for slot in self._order:
            if slot not in saved:
                self._free(slot)
        for slot, y in self._orig.items():
            self.Y[slot] = y
        self.rho, self.yy, self.ss, self.ns, self.ny = scalars
        self._order = deque(saved)
        self._saved, self._orig = None, {}
        return True

    def copy(self) -> "PairStore":
        """An independent copy (a checkpoint is not copied). Spilled rows are copied
        file to file, without passing through memory."""
        new = PairStore(self.maxlen, self.dtype)
        new._order = deque(self._order)
        for name in ("rho", "yy", "ss", "ns", "ny"):
            setattr(new, name, getattr(self, name).copy())
        if self._file.holds:
            new._file = self._file.copy()
            return new
        for i in self._order:
            new.S[i], new.Y[i] = self.S[i].copy(), self.Y[i].copy()
        return new


class PairPlan(NamedTuple):
    """How the L-BFGS memories of an outer loop are stored (:func:`plan_pairs`)."""

    dtype: np.dtype  #: precision of the stored pairs
    maxcor: int  #: pairs of a memory
    rollback: bool  #: whether a rejected trial's memory returns to the accepted one
    spill: bool  #: whether a memory at rest waits in a temporary file


#: The L-BFGS memory when none is given: ``LARGE_MAXCOR`` pairs where the memories
#: fit their budget in double precision, ``SMALL_MAXCOR`` where they do not.
LARGE_MAXCOR, SMALL_MAXCOR = 30, 15


def default_maxcor(n_params: int, n_memories: int = 1, budget_mb: float = np.inf) -> int:
    """The L-BFGS memory for ``maxcor=None``: 30 pairs, or 15 where ``n_memories``
    memories of 30 pairs of ``n_params`` do not fit ``budget_mb`` in double precision.

    Each L-BFGS iteration reads every stored vector twice. Where the pairs are too
    large for double precision, that reading (memory-bound, and shared between the
    workers with ``n_jobs``), not the data, sets an iteration's cost: fewer pairs cost
    some more iterations and less time. 20news, 20 classes (2.6 million parameters),
    five folds, runs alternated: on two workers 60.5 s with 15 pairs against 65.7 s
    with 30 (means of three), all processes 1.74 GB against 2.33 GB; serial 78.9 s
    against 86.6 s; test log-loss 0.3595 against 0.3593. Where the pairs fit (binary
    20news: 130,107 parameters), 15 pairs were no faster (20 splits) and on small
    ill-conditioned data slower (breast cancer, raw: 2.6 s against 1.3 s).

    Parameters
    ----------
    n_params : int
        Length of the vectors.
    n_memories : int, default=1
        Memories alive together (one per fold).
    budget_mb : float, default=inf
        Memory the pairs may take together, in MB.

    Returns
    -------
    maxcor : int
    """
    fits = _fits_double(n_params, LARGE_MAXCOR, n_memories, float(budget_mb) * 2.0**20)
    return LARGE_MAXCOR if fits else SMALL_MAXCOR


#: Problems of at least this many parameters keep their L-BFGS pairs in single
#: precision with ``pairs_precision="auto"``: each inner iteration reads every stored
#: vector twice (at 130,000 parameters, 30 pairs: 7 ms in double precision, at this
#: machine's memory bandwidth), and that reading, shared between workers with
#: ``n_jobs``, costs more than the sparse products. 20news binary, 20 splits, five
#: folds, double against single precision alternated: serial 153.1 s -> 136.4 s,
#: ``n_jobs=2`` 115.0 s -> 104.2 s, test log-loss the same to +-0.0003 per split (the
#: rounding moves each split's path: ``C_`` by up to 8%); the final fit alone: 1.93 s
#: -> 1.51 s (``docs/benchmarks.md``). Below it the pairs are cheap and stay exact.
SINGLE_PAIRS_MIN_PARAMS = 10_000

#: ``pairs_precision``'s values.
PAIRS_PRECISIONS = ("auto", "double", "single")


def single_precision(precision: str, n_params: int) -> bool:
    """Whether ``pairs_precision`` asks for pairs of ``n_params`` in single precision
    (``"auto"``: at least :data:`SINGLE_PAIRS_MIN_PARAMS`)."""
    if precision not in PAIRS_PRECISIONS:
        raise ValueError(f"pairs_precision must be one of {PAIRS_PRECISIONS}, got {precision!r}.")
    return precision == "single" or (precision == "auto" and n_params >= SINGLE_PAIRS_MIN_PARAMS)


def _fits_double(n_params, maxcor, n_memories, budget_bytes) -> bool:
    """Whether the memories fit in double precision, with room for a trial's pairs
    beside the accepted ones (a trial holds up to 2.5 maxcor pairs)."""
    return 2.5 * n_memories * maxcor * 16.0 * n_params <= budget_bytes


def plan_pairs(n_params: int, maxcor: int | None, n_memories: int = 1,
               budget_mb: float = 1024.0, single: bool = False) -> PairPlan:
    """How ``n_memories`` L-BFGS memories of ``maxcor`` pairs fit in ``budget_mb``.

    One memory is in use at a time (the fold being solved); the others are at
    rest between their solves. In order of preference, the first that fits:
    double precision, with room for a trial's pairs beside the accepted ones (a
    rejected trial returns to the accepted memory); the same in single
    precision; single precision without that room (a rejected trial's pairs
    are kept: they are exact pairs of the objective too); and last, memories at
    rest wait in temporary files (``maxcor`` itself shrinks only when one
    memory alone is over the budget). ``single`` skips double precision.

    Parameters
    ----------
    n_params : int
        Length of the vectors.
    maxcor : int or None
        Pairs of an L-BFGS memory (``None``: :func:`default_maxcor`).
    n_memories : int, default=1
        Memories alive together (one per fold).
    budget_mb : float, default=1024
        Memory the pairs may take together, in MB.
    single : bool, default=False
        Single precision even where double precision fits the budget
        (:func:`single_precision`).

    Returns
    -------
    plan : PairPlan
    """
    if maxcor is None:
        maxcor = default_maxcor(n_params, n_memories, budget_mb)
    budget = float(budget_mb) * 2.0**20
    pair32 = 8.0 * n_params
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
    total = n_memories * maxcor
    if not single and _fits_double(n_params, maxcor, n_memories, budget):
        return PairPlan(f64, int(maxcor), True, False)
    if 2.5 * total * pair32 <= budget:
        return PairPlan(f32, int(maxcor), True, False)
    if total * pair32 <= budget:
        return PairPlan(f32, int(maxcor), False, False)
    active = int(max(1, min(maxcor, budget // pair32)))
    if active < maxcor:
        warnings.warn(
            f"pairs_memory_mb={budget_mb:g} holds {active} of maxcor={maxcor} curvature pairs "
            f"of {n_params} parameters (in single precision, one memory at a time): the "
            f"L-BFGS memory is cut to {active}, which changes the search; raise "
            f"pairs_memory_mb to at least {np.ceil(maxcor * pair32 / 2**20):g}.",
            UserWarning, stacklevel=3)
    return PairPlan(f32, active, False, n_memories > 1)

