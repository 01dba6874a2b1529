"""Inner solvers that keep their L-BFGS curvature pairs.

SHINE reuses the quasi-Newton estimate of the inverse Hessian that the inner
solver built on its way to the solution. This module provides

* :class:`LbfgsMemory`: the curvature pairs ``(s_i, y_i)`` in chronological
  order and the one two-loop recursion that turns them into an
  inverse-Hessian-vector product;
* :func:`minimize_lbfgs`: a wrapper around ``scipy.optimize.minimize(method=
  "L-BFGS-B")`` (public API only) that stops on HOAG's test
  ``||grad h(x)|| <= tol`` and returns the solution with its pairs.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import NamedTuple

import numpy as np
from scipy.linalg.blas import daxpy, saxpy
from scipy.optimize import OptimizeResult, minimize
from scipy.sparse.linalg import LinearOperator, cg
from sklearn.exceptions import ConvergenceWarning

from ._utils import SpillFile

__all__ = ["InnerResult", "LbfgsMemory", "PairPlan", "minimize_lbfgs",
           "minimize_lbfgs_numpy", "newton_polish", "plan_pairs"]

_EPS = np.finfo(np.float64).eps


def _norm(g, weights=None) -> float:
    """``||g||``, or ``sqrt(sum(weights * g**2))`` in the metric ``weights`` (an array,
    or a :class:`_Diag`: then without a temporary array)."""
    if weights is None:
        return float(np.linalg.norm(g))
    if isinstance(weights, _Diag):
        return float(np.sqrt(weights.quad(g, float(g @ g))))
    return float(np.sqrt(np.dot(weights * g, g)))


def _warn_iteration_cap(max_iter, gnorm, tol):
    warnings.warn(
        f"The inner L-BFGS solver stopped after max_iter={max_iter} iterations "
        f"with ||grad|| = {gnorm:.3g} > tol = {tol:.3g}. Increase the inner "
        "iteration cap (max_inner_iter) or loosen the tolerance schedule.",
        ConvergenceWarning,
        stacklevel=3,
    )


def _constant_head(v) -> int:
    """Length ``k`` of the constant head of ``v`` (``v[:k]`` all equal to ``v[0]``)
    when the rest is a short tail (at most ``max(64, n // 100)`` entries: the
    penalised coefficients, then e.g. intercepts); 0 when ``v`` has no such shape
    (a periodic head, as with one penalty per class, or a long tail)."""
    n = v.size
    same = v == v[0]
    k = n - int(np.argmax(same[::-1]))  # one past the last entry equal to v[0]
    if n - k > max(64, n // 100) or not np.all(same[:k]):
        return 0
    return k


class _Diag:
    """A positive diagonal ``D`` made of a constant head and a short tail (the
    penalised coefficients, then e.g. intercepts): ``v . D v`` and ``v . D^-1 v``
    follow from ``v . v`` and the tail alone, without a pass over the vector."""

    def __init__(self, diag):
        diag = np.asarray(diag, dtype=np.float64)
        k = _constant_head(diag)
        self.full = diag if k == 0 else None  # no structure: full passes
        self.k, self.head, self.tail = k, float(diag[0]), diag[k:].copy()
        self.n = diag.size

    @property
    def array(self):
        """The diagonal as an array (built anew when it is kept as head and tail)."""
        return self.full if self.full is not None else self.new_array()

    def new_array(self):
        """The diagonal as a new array (the caller's to modify)."""
        if self.full is not None:
            return self.full.copy()
        out = np.full(self.n, self.head)
        out[self.k:] = self.tail
        return out

    def quad(self, v, vv):
        """``v . D v`` given ``vv = v . v``."""
        if self.full is not None:
            return float(v @ (self.full * v))
        t = v[self.k:]
        return self.head * self._head_sq(v, vv, t) + float(t @ (self.tail * t))

    def quad_inv(self, v, vv):
        """``v . D^-1 v`` given ``vv = v . v``."""
        if self.full is not None:
            return float(v @ (v / self.full))
        t = v[self.k:]
        return self._head_sq(v, vv, t) / self.head + float(t @ (t / self.tail))

    def _head_sq(self, v, vv, t):
        """``v[:k] . v[:k]`` from ``vv``, or summed again when the tail holds most of
        ``vv`` (the difference would lose its digits)."""
        tt = float(t @ t)
        if tt <= 0.5 * vv:
            return vv - tt
        head = v[: self.k]
        return float(head @ head)

    def scale(self, q, factor, inverse=False):
        """``q *= factor * D`` in place (``q *= factor / D`` with ``inverse``)."""
        if self.full is not None:
            if inverse:
                q /= self.full
                q *= factor
            else:
                q *= factor * self.full
        elif inverse:
            q[: self.k] *= factor / self.head
            q[self.k:] *= factor / self.tail
        else:
            q[: self.k] *= factor * self.head
            q[self.k:] *= factor * self.tail


class LbfgsMemory:
    """Curvature pairs of an L-BFGS run, oldest first.

    Parameters
    ----------
    maxlen : int
        Number of pairs kept; older pairs are dropped first.
    n_params : int, default=None
        Length of the vectors (checked on :meth:`append` when given).
    diag : ndarray of shape (n_params,), default=None
        A diagonal ``D`` whose scaled copy ``gamma * D`` is the initial inverse
        Hessian (a guess of the inverse Hessian's diagonal makes the estimate
        independent of the scale of each coordinate); ``None``: the identity.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision in which the pairs are stored. Single precision halves the
        memory (and the bytes each product reads); the products are then
        accurate to about ``1e-6`` relative, plenty for a quasi-Newton
        estimate, and the vectors are stored in the metric of ``D``, each
        scaled to unit norm, so that no data scale under- or overflows.

    Notes
    -----
    The inverse-Hessian estimate is the L-BFGS matrix built from the initial
    matrix ``H0 = gamma * D`` (``gamma = s.y / y.D.y`` of the newest pair) by one
    BFGS update per pair, oldest first; see Nocedal & Wright, *Numerical
    Optimization*, Algorithm 7.4.

    The pairs are kept in the coordinates ``u = D^-1/2 x`` (``s -> D^-1/2 s``,
    ``y -> D^1/2 y``), where ``H0`` is ``gamma I`` and every product, test and
    norm is Euclidean; one row per pair, a full memory dropping its oldest pair
    for the new one, and :meth:`shift` updating the rows in place.
    """

    def __init__(self, maxlen: int, n_params: int | None = None, diag=None,
                 dtype=np.float64):
        if int(maxlen) < 1:
            raise ValueError(f"maxlen (the L-BFGS memory size) must be >= 1, got {maxlen}.")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"dtype must be float64 or float32, got {dtype}.")
        self.maxlen = int(maxlen)
        self.n_params = n_params
        self.dtype = dtype
        if isinstance(diag, _Diag):
            diag = diag.array
        if diag is not None:
            diag = np.asarray(diag, dtype=np.float64)
            if diag.size and np.all(diag == diag.flat[0]):
                diag = None  # a constant diagonal: gamma alone does the scaling
        # Kept as constant head and short tail when it has that shape (no full copy).
        self._d = None if diag is None else _Diag(diag)
        self._sqrt = None if diag is None else _Diag(np.sqrt(diag))
        # Slots: one row per pair, allocated when first written; twice maxlen, so that
        # a trial run can add maxlen pairs without overwriting a checkpoint's.
        self._S = [None] * (2 * self.maxlen)
        self._Y = [None] * (2 * self.maxlen)
        self._order = deque()  # slots of the pairs in use, oldest first
        self._saved = None  # checkpoint: (slots in use then, their scalars then)
        self._orig = {}  # checkpoint: the y rows as they were before a shift
        self._file = SpillFile("hoag_shine_pairs_")  # where spill() puts the rows
        # Per slot: 1 / s.y, y.y and s.s (in the metric's coordinates), and the norms
        # the stored vectors were divided by (1 in double precision).
        self._rho, self._yy, self._ss = (np.zeros(2 * self.maxlen) for _ in range(3))
        self._ns, self._ny = np.ones(2 * self.maxlen), np.ones(2 * self.maxlen)
        self.n_skipped = 0

    def __len__(self) -> int:
        return len(self._order)

    @property
    def diag(self):
        """The diagonal ``D`` of the initial matrix (``None``: the identity)."""
        return None if self._d is None else self._d.array

    @property
    def nbytes(self) -> int:
        """Bytes the stored pairs take in memory now (0 when spilled)."""
        return sum(r.nbytes for r in self._S + self._Y if r is not None)

    def spill(self) -> None:
        """Move the pairs to a temporary file, releasing their memory (a checkpoint
        is given up). Any later use reads them back first, exactly."""
        self.commit()
        if self._file.holds or not self._order:
            return
        self._file.write([row for slot in self._order for row in (self._S[slot], self._Y[slot])])
        for slot in self._order:
            self._S[slot] = self._Y[slot] = None

    def _restore(self):
        """Read spilled pairs back."""
        if not self._file.holds:
            return
        rows = iter(self._file.read())
        for slot in self._order:
            self._S[slot], self._Y[slot] = next(rows), next(rows)

    # -- coordinates ---------------------------------------------------------------
    def _to_metric(self, s, y):
        """``(D^-1/2 s, D^1/2 y)`` in place (the arrays are the memory's own)."""
        if self._sqrt is not None:
            self._sqrt.scale(s, 1.0, inverse=True)
            self._sqrt.scale(y, 1.0)
        return s, y

    def _vector(self, store, norms, slot, kind):
        v = store[slot].astype(np.float64) * norms[slot]
        if self._sqrt is not None:
            self._sqrt.scale(v, 1.0, inverse=(kind == "y"))
        return v

    @property
    def s(self) -> np.ndarray:
        """Steps ``s_i``, shape (n_pairs, n_params), oldest first."""
        self._restore()
        rows = [self._vector(self._S, self._ns, i, "s") for i in self._order]
        return np.array(rows).reshape(len(self), -1)

    @property
    def y(self) -> np.ndarray:
        """Gradient differences ``y_i``, shape (n_pairs, n_params), oldest first."""
        self._restore()
        rows = [self._vector(self._Y, self._ny, i, "y") for i in self._order]
        return np.array(rows).reshape(len(self), -1)

    # -- writing ---------------------------------------------------------------------
    def append(self, s, y) -> bool:
        """Add the pair ``(s, y)`` if its curvature ``s . y`` is positive.

        A pair whose curvature is not safely positive would break the positive
        definiteness of the estimate: it is skipped (counted in ``n_skipped``).

        Returns
        -------
        added : bool
        """
        s = np.array(s, dtype=np.float64)
        y = np.array(y, dtype=np.float64)
        if self.n_params is not None and s.shape != (self.n_params,):
            raise ValueError(f"s must have shape ({self.n_params},), got {s.shape}.")
        return self._append(s, y)

    def _append(self, s, y, ss=None) -> bool:
        """:meth:`append` for fresh float64 arrays the memory may overwrite."""
        s, y = self._to_metric(s, y)
        return self._push(s, y, float(s @ y), float(y @ y), float(s @ s))

    def _push(self, s, y, sy, yy, ss) -> bool:
        # Keep the pair only if its curvature is safely positive: s.y > eps ||s|| ||y||
        # (a cosine, in the metric of the memory's diagonal when it has one, so that the
        # test does not depend on the scale of the data; L-BFGS-B's s.y > eps y.y does).
        if (not (np.isfinite(sy) and np.isfinite(yy) and np.isfinite(ss)) or sy <= 0
                or sy <= _EPS * np.sqrt(ss) * np.sqrt(yy)):
            self.n_skipped += 1
            return False
        self._restore()
        if len(self._order) == self.maxlen:
            old = self._order.popleft()
            if self._saved is None or old not in self._saved[0]:
                self._free(old)
            elif old in self._orig:  # a checkpoint's pair: only its original is needed
                self._Y[old] = None
        busy = set(self._order).union(self._saved[0] if self._saved is not None else ())
        slot = next(i for i in range(2 * self.maxlen) if i not in busy)
        self._write(slot, s, y)
        self._rho[slot], self._yy[slot], self._ss[slot] = 1.0 / sy, yy, ss
        self._order.append(slot)
        return True

    def _write(self, slot, s, y):
        if self.dtype == np.float64:  # the fresh arrays are kept as they are
            self._S[slot], self._Y[slot] = s, y
            return
        ns, ny = float(np.linalg.norm(s)), float(np.linalg.norm(y))
        for rows, v, norm in ((self._S, s, ns), (self._Y, y, ny)):
            rows[slot] = np.empty(v.size, dtype=self.dtype)
            np.multiply(v, 1.0 / norm, out=rows[slot], casting="same_kind")
        self._ns[slot], self._ny[slot] = ns, ny

    def _free(self, slot):
        self._S[slot] = self._Y[slot] = None

    def clear(self) -> None:
        """Drop every pair (a checkpoint is kept: :meth:`rollback` restores it)."""
        self._restore()
        for slot in self._order:
            if self._saved is None or slot not in self._saved[0]:
                self._free(slot)
        self._order.clear()

    def truncate(self, n_pairs: int) -> None:
        """Keep only the newest ``n_pairs`` pairs; the others' storage is released
        (and a checkpoint given up)."""
        self._restore()
        self.commit()
        while len(self._order) > max(int(n_pairs), 0):
            self._free(self._order.popleft())

    def checkpoint(self) -> None:
        """Remember the pairs in use, so that :meth:`rollback` can return to them after
        a trial run (a :meth:`shift`, then appends). Until :meth:`commit` the trial's
        pairs take other storage, and a shift writes copies of the ``y_i``: up to
        two and a half times ``maxlen`` pairs are held."""
        self._restore()
        self.commit()
        scalars = tuple(a.copy() for a in (self._rho, self._yy, self._ss, self._ns, self._ny))
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
        """Return to the checkpoint exactly: the trial's pairs dropped, the checkpoint's
        as they were. Returns whether there was a checkpoint."""
        if self._saved is None:
            return False
        saved, scalars = self._saved
        for slot in self._order:
            if slot not in saved:
                self._free(slot)
        for slot, y in self._orig.items():
            self._Y[slot] = y
        self._rho, self._yy, self._ss, self._ns, self._ny = scalars
        self._order = deque(saved)
        self._saved, self._orig = None, {}
        return True

    def copy(self) -> "LbfgsMemory":
        """An independent copy (its own storage)."""
        self._restore()
        new = LbfgsMemory(self.maxlen, self.n_params, dtype=self.dtype)
        new._d, new._sqrt = self._d, self._sqrt
        for i in self._order:
            new._S[i], new._Y[i] = self._S[i].copy(), self._Y[i].copy()
        new._order = deque(self._order)
        for name in ("_rho", "_yy", "_ss", "_ns", "_ny"):
            setattr(new, name, getattr(self, name).copy())
        new.n_skipped = self.n_skipped
        return new

    def shift(self, delta) -> None:
        """Replace every ``y_i`` by ``y_i + delta * s_i`` (pairs with lost curvature dropped).

        For an inner objective whose Hessian changes by ``diag(delta)`` (an L2
        penalty whose strength changed), the shifted pairs are exactly the pairs
        the new objective would have produced along the same steps.

        Parameters
        ----------
        delta : float or ndarray of shape (n_params,)

        Notes
        -----
        The pairs are updated in place. Where ``delta * D`` is constant but for a
        short tail (one penalty, unpenalised intercepts), the curvatures follow
        from cached scalars and the tail, without another pass over the vectors:
        ``s.y += d s.s`` and ``y.y += 2 d s.y + d**2 s.s`` on the constant part.
        """
        if not self._order:
            return
        self._restore()
        n = self._S[self._order[0]].size
        delta = np.broadcast_to(np.asarray(delta, dtype=np.float64), (n,))
        dd = np.array(delta)
        if self._d is not None:
            self._d.scale(dd, 1.0)  # delta in the metric's coordinates
        k = _constant_head(dd)
        head, tail = float(dd[0]), dd[k:]
        axpy = daxpy if self.dtype == np.float64 else saxpy
        dd_stored = None if k else dd.astype(self.dtype)
        for slot in list(self._order):
            S, Y = self._S[slot], self._Y[slot]
            if self._saved is not None and slot not in self._orig:
                self._orig[slot] = Y  # a checkpoint's: shifted in a copy
                Y = self._Y[slot] = Y.copy()
            ns, ny = self._ns[slot], self._ny[slot]
            sy, yy, ss = 1.0 / self._rho[slot], self._yy[slot], self._ss[slot]
            if not k:  # no constant head (one penalty per class, say): whole passes
                axpy(dd_stored * S, Y, a=ns / ny)
                self._set_curvature(slot, ns * ny * float(S @ Y), ny * ny * float(Y @ Y), ss)
                continue
            # The constant head from cached scalars (y_h += head * s_h), the tail apart.
            s_t = S[k:].astype(np.float64) * ns
            y_t = Y[k:].astype(np.float64) * ny
            ss_h, sy_h = max(ss - float(s_t @ s_t), 0.0), sy - float(s_t @ y_t)
            yy_h = max(yy - float(y_t @ y_t), 0.0)
            axpy(S[:k], Y[:k], a=head * ns / ny)
            sy_h, yy_h = sy_h + head * ss_h, yy_h + head * (2.0 * sy_h + head * ss_h)
            y_t = y_t + tail * s_t
            Y[k:] = y_t / ny
            sy_new = sy_h + float(s_t @ y_t)
            yy_new = yy_h + float(y_t @ y_t)
            # Lost digits (the tail held most of s.s or y.y) or a doubtful curvature:
            # the sums again, over the stored vectors.
            if not (sy_new > 1e-8 * abs(sy) and yy_h >= 1e-8 * yy):
                sv = S.astype(np.float64) * ns
                yv = Y.astype(np.float64) * ny
                sy_new, yy_new = float(sv @ yv), float(yv @ yv)
            self._set_curvature(slot, sy_new, yy_new, ss)

    def _set_curvature(self, slot, sy, yy, ss):
        """New ``s.y`` and ``y.y`` of a shifted pair; a pair whose curvature is lost
        is dropped."""
        self._rho[slot], self._yy[slot] = (1.0 / sy if sy else np.inf), yy
        if not (np.isfinite(sy) and np.isfinite(yy) and sy > 0
                and sy > _EPS * np.sqrt(ss) * np.sqrt(yy)):
            self._order.remove(slot)
            self.n_skipped += 1

    # -- products --------------------------------------------------------------------
    def gamma(self) -> float:
        """Scaling ``s.y / y.D.y`` of the newest pair (1 when the memory is empty), with
        ``D`` the memory's ``diag`` (the identity by default)."""
        if not self._order:
            return 1.0
        slot = self._order[-1]
        return 1.0 / (self._rho[slot] * self._yy[slot])

    def inv_hvp(self, v, h0: float | None = None) -> np.ndarray:
        """Apply the L-BFGS inverse-Hessian estimate to ``v`` (two-loop recursion).

        Parameters
        ----------
        v : ndarray of shape (n_params,)
        h0 : float, default=None
            Initial inverse Hessian ``h0 * I``. ``None`` uses ``gamma() * D``
            (the usual L-BFGS scaling, with the memory's diagonal ``D``, the
            identity unless given); ``1.0`` reproduces SciPy's
            ``LbfgsInvHessProduct``.

        Returns
        -------
        Hv : ndarray of shape (n_params,)
        """
        self._restore()
        q = np.array(v, dtype=np.float64)
        if self._sqrt is not None:
            self._sqrt.scale(q, 1.0)  # into the metric's coordinates
        order = list(self._order)
        if self.dtype == np.float32 and order:
            return self._inv_hvp_single(q, order, h0)
        a = np.empty(len(order))
        for j in range(len(order) - 1, -1, -1):
            i = order[j]
            a[j] = self._rho[i] * float(self._S[i] @ q)
            q = daxpy(self._Y[i], q, a=-a[j])  # in place: q -= a_j y
        self._middle(q, h0)
        for j, i in enumerate(order):
            b = self._rho[i] * float(self._Y[i] @ q)
            q = daxpy(self._S[i], q, a=a[j] - b)
        if self._sqrt is not None:
            self._sqrt.scale(q, 1.0)  # back: x = D^1/2 u
        return q

    def _middle(self, q, h0):
        """``q *= H0`` in the metric's coordinates."""
        if h0 is None:
            q *= self.gamma()
            return
        q *= h0
        if self._sqrt is not None:  # h0 I in the original coordinates is h0 D^-1 here
            self._sqrt.scale(q, 1.0, inverse=True)
            self._sqrt.scale(q, 1.0, inverse=True)

    def _inv_hvp_single(self, q, order, h0):
        """The two-loop recursion over single-precision pairs: ``q = c * q32``, with
        the float64 scale ``c`` kept apart so that nothing under- or overflows."""
        q32 = np.empty(q.size, dtype=np.float32)  # (no float64 temporaries: at 2.6M
        c = float(np.linalg.norm(q)) or 1.0         # parameters each one is 20 MB)
        np.multiply(q, 1.0 / c, out=q32, casting="same_kind")
        a = np.empty(len(order))
        for j in range(len(order) - 1, -1, -1):
            i = order[j]
            a[j] = self._rho[i] * self._ns[i] * c * float(self._S[i] @ q32)
            q32 = saxpy(self._Y[i], q32, a=-a[j] * self._ny[i] / c)  # in place
        np.multiply(q32, c, out=q)
        self._middle(q, h0)
        c = float(np.linalg.norm(q)) or 1.0
        np.multiply(q, 1.0 / c, out=q32, casting="same_kind")
        for j, i in enumerate(order):
            b = self._rho[i] * self._ny[i] * c * float(self._Y[i] @ q32)
            q32 = saxpy(self._S[i], q32, a=(a[j] - b) * self._ns[i] / c)
        np.multiply(q32, c, out=q)
        if self._sqrt is not None:
            self._sqrt.scale(q, 1.0)
        return q


class PairPlan(NamedTuple):
    """How the L-BFGS memories of an outer loop are stored (:func:`plan_pairs`)."""

    dtype: np.dtype  #: precision of the stored pairs
    maxcor: int  #: pairs of a memory
    rollback: bool  #: whether a rejected trial's memory returns to the accepted one
    spill: bool  #: whether a memory at rest waits in a temporary file


def plan_pairs(n_params: int, maxcor: int, n_memories: int = 1,
               budget_mb: float = 1024.0) -> PairPlan:
    """How ``n_memories`` L-BFGS memories of ``maxcor`` pairs fit in ``budget_mb``.

    One memory is in use at a time (the fold being solved); the others are at
    rest between their solves. In order of preference, the first that fits:
    double precision, with room for a trial's pairs beside the accepted ones (a
    rejected trial returns to the accepted memory); the same in single
    precision; single precision without that room (a rejected trial's pairs
    are kept: they are exact pairs of the objective too); and last, memories at
    rest wait in temporary files (``maxcor`` itself shrinks only when one
    memory alone is over the budget).

    Parameters
    ----------
    n_params : int
        Length of the vectors.
    maxcor : int
        Pairs of an L-BFGS memory.
    n_memories : int, default=1
        Memories alive together (one per fold).
    budget_mb : float, default=1024
        Memory the pairs may take together, in MB.

    Returns
    -------
    plan : PairPlan
    """
    budget = float(budget_mb) * 2.0**20
    pair64, pair32 = 16.0 * n_params, 8.0 * n_params
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
    total = n_memories * maxcor
    if 2.5 * total * pair64 <= budget:  # (a trial holds up to 2.5 maxcor pairs)
        return PairPlan(f64, int(maxcor), True, False)
    if 2.5 * total * pair32 <= budget:
        return PairPlan(f32, int(maxcor), True, False)
    if total * pair32 <= budget:
        return PairPlan(f32, int(maxcor), False, False)
    active = int(max(1, min(maxcor, budget // pair32)))
    return PairPlan(f32, active, False, n_memories > 1)


class InnerResult(OptimizeResult):
    """Result of an inner solve.

    Attributes
    ----------
    x : ndarray of shape (n_params,)
        Last iterate.
    fun : float
        Inner objective at ``x``.
    jac : ndarray of shape (n_params,)
        Inner gradient at ``x``.
    grad_norm : float
        ``||jac||``.
    nit : int
        Iterations taken (accepted steps).
    nfev : int
        Objective-and-gradient evaluations.
    success : bool
        Whether ``grad_norm <= tol``.
    message : str
    memory : LbfgsMemory
        The curvature pairs of the run, oldest first (at most ``maxcor``).
    time : float
        Wall time in seconds.
    """


def minimize_lbfgs(
    fun_grad,
    x0,
    *,
    tol: float,
    maxcor: int = 30,
    max_iter: int = 1000,
    memory: LbfgsMemory | None = None,
    fg0=None,
    gnorm_weights=None,
) -> InnerResult:
    """Minimise a smooth function with SciPy's L-BFGS-B and keep its curvature pairs.

    Stops as soon as ``||grad f(x)||_2 <= tol`` (HOAG's test), checked at
    every iterate, the starting point included.

    Parameters
    ----------
    fun_grad : callable
        ``fun_grad(x) -> (value, gradient)``.
    x0 : ndarray of shape (n_params,)
        Starting point (warm start).
    tol : float
        Absolute tolerance on the Euclidean norm of the gradient.
    maxcor : int, default=30
        L-BFGS memory: number of curvature pairs kept.
    max_iter : int, default=1000
        Iteration cap. Reaching it with ``||grad|| > tol`` raises a
        :class:`~sklearn.exceptions.ConvergenceWarning`.
    memory : LbfgsMemory, default=None
        Where to append the run's pairs. ``None`` starts an empty memory. SciPy's
        solver itself always starts from an empty memory.
    fg0 : (float, ndarray), default=None
        ``fun_grad(x0)`` when it is already known (saves one evaluation).
    gnorm_weights : ndarray of shape (n_params,), default=None
        Measure the gradient in the metric ``sqrt(sum(gnorm_weights * g**2))``
        (e.g. a guess of the inverse Hessian's diagonal: a scale-free test);
        also the diagonal of a new memory.

    Returns
    -------
    result : InnerResult
    """
    t0 = time.perf_counter()
    x0 = np.array(x0, dtype=np.float64)
    if memory is None:
        memory = LbfgsMemory(maxcor, x0.size, gnorm_weights)
    nfev = 0
    # Most recent evaluations, to look up the gradient at each accepted iterate.
    cache: deque = deque(maxlen=4)

    def wrapped(x):
        nonlocal nfev
        for xc, fc, gc in reversed(cache):
            if np.array_equal(xc, x):
                return fc, gc.copy()
        nfev += 1
        f, g = fun_grad(x)
        g = np.asarray(g, dtype=np.float64)
        cache.append((np.array(x), float(f), g))
        return f, g.copy()

    if fg0 is not None:
        cache.append((x0.copy(), float(fg0[0]), np.array(fg0[1], dtype=np.float64)))
    f, g = wrapped(x0)
    state = {"x": x0, "f": f, "g": g, "nit": 0}
    gnorm = _norm(g, gnorm_weights)

    def callback(intermediate_result):
        x = intermediate_result.x
        f, g = wrapped(x)
        memory._append(x - state["x"], g - state["g"])
        state.update(x=np.array(x), f=f, g=g, nit=state["nit"] + 1)
        if _norm(g, gnorm_weights) <= tol:
            raise StopIteration

    message = "converged: ||grad|| <= tol"
    if gnorm > tol and max_iter > 0:
        res = minimize(
            wrapped,
            x0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxcor": maxcor, "maxiter": max_iter, "maxfun": 20 * max_iter + 100,
                     "gtol": 0.0, "ftol": 0.0},
        )
        gnorm = _norm(state["g"], gnorm_weights)
        if gnorm > tol:
            message = str(res.message)
    success = gnorm <= tol
    if not success and state["nit"] >= max_iter:
        _warn_iteration_cap(max_iter, gnorm, tol)
    return InnerResult(
        x=state["x"], fun=state["f"], jac=state["g"], grad_norm=gnorm, nit=state["nit"],
        nfev=nfev, success=success, message=message, memory=memory,
        time=time.perf_counter() - t0,
    )


def newton_polish(fun_grad, hessp_at, x, *, tol: float, max_steps: int = 5,
                  gnorm_weights=None):
    """Refine an approximate minimiser with Newton steps (Hessian solved by CG).

    L-BFGS-B stops when its line search can no longer decrease the objective
    in floating point, which can leave the gradient well above a very tight
    ``tol``; Newton steps on the gradient go further. A step is kept only if
    it reduces the gradient norm.

    Parameters
    ----------
    fun_grad : callable
        ``x -> (value, gradient)``.
    hessp_at : callable
        ``x -> (v -> H(x) v)``.
    x : ndarray of shape (n_params,)
    tol : float
        Target on ``||gradient||``.
    max_steps : int, default=5
    gnorm_weights : ndarray of shape (n_params,), default=None
        Metric of the gradient norm (see :func:`minimize_lbfgs`).

    Returns
    -------
    x : ndarray of shape (n_params,)
    grad_norm : float
    n_steps : int
        Newton steps kept.
    """
    x = np.array(x, dtype=np.float64)
    g = fun_grad(x)[1]
    gnorm = _norm(g, gnorm_weights)
    n_steps = 0
    for _ in range(max_steps):
        if gnorm <= tol:
            break
        hessp = hessp_at(x)
        # CG on the system scaled by the metric's square root (D^1/2 H D^1/2): the same
        # Newton step, computed without over- or underflow whatever the data's scale.
        root = np.ones_like(x) if gnorm_weights is None else np.sqrt(gnorm_weights)
        op = LinearOperator((x.size, x.size), matvec=lambda v: root * hessp(root * np.ravel(v)),
                            dtype=np.float64)
        step, _ = cg(op, root * g, rtol=1e-12, atol=0.0, maxiter=10 * x.size)
        step = root * step
        x_new = x - step
        g_new = fun_grad(x_new)[1]
        gnorm_new = _norm(g_new, gnorm_weights)
        if not gnorm_new < gnorm:
            break
        x, g, gnorm = x_new, g_new, gnorm_new
        n_steps += 1
    return x, gnorm, n_steps


def _wolfe_line_search(fun_grad, x, d, f0, g0, t0, *, c1=1e-4, c2=0.9, max_eval=20):
    """Step ``t`` along ``d`` satisfying the strong Wolfe conditions.

    Bracketing by doubling, then zooming by safeguarded quadratic
    interpolation of the values (Nocedal & Wright, Algorithms 3.5-3.6).

    Returns
    -------
    t, x_new, f_new, g_new, n_eval : the accepted step (``t = None`` when no
        step with sufficient decrease was found within ``max_eval``
        evaluations; then the other entries are those of ``x``).
    """
    gd0 = float(g0 @ d)
    lo, f_lo, gd_lo = 0.0, f0, gd0
    hi = np.inf
    best = None  # best point with sufficient decrease, in case Wolfe is not met
    t = t0
    for n_eval in range(1, max_eval + 1):
        x_t = x + t * d
        f_t, g_t = fun_grad(x_t)
        gd_t = float(g_t @ d)
        # Near the minimiser, decreases fall under the rounding of f: accept a
        # step that meets the approximate Wolfe conditions of Hager & Zhang.
        if (np.isfinite(f_t) and f_t <= f0 + 1e-12 * abs(f0)
                and (2 * c1 - 1) * gd0 >= gd_t >= c2 * gd0):
            return t, x_t, f_t, g_t, n_eval
        if not np.isfinite(f_t) or f_t > f0 + c1 * t * gd0 or f_t >= f_lo and lo > 0:
            hi = t
        else:
            if best is None or f_t < best[2]:
                best = (t, x_t, f_t, g_t)
            if abs(gd_t) <= -c2 * gd0:
                return t, x_t, f_t, g_t, n_eval
            if gd_t * (hi - lo if np.isfinite(hi) else 1.0) >= 0:
                hi = lo
            lo, f_lo, gd_lo = t, f_t, gd_t
        if not np.isfinite(hi):
            t = 2.0 * t
            continue
        a, b = min(lo, hi), max(lo, hi)
        width = b - a
        if width <= 1e-14 * max(b, 1.0):
            break
        # Minimiser of the quadratic through (lo, f_lo) with slope gd_lo and (hi, f_hi).
        f_hi = f_t if t == hi else None
        t_new = None
        if f_hi is not None and np.isfinite(f_hi):
            dt = hi - lo
            denom = 2.0 * (f_hi - f_lo - gd_lo * dt)
            if denom > 0:
                t_new = lo - gd_lo * dt * dt / denom
        if t_new is None or not a + 0.1 * width <= t_new <= b - 0.1 * width:
            t_new = 0.5 * (a + b)
        t = t_new
    if best is not None:
        return (*best, n_eval)
    return None, x, f0, g0, n_eval


def _direction(memory, g, gnorm, h0):
    """Search direction and first trial step: the L-BFGS direction with step 1; with
    an empty memory, ``-h0 * g`` with step 1 (a guess of the inverse Hessian's
    diagonal: a step that does not depend on the scale of the data) or, without a
    guess, ``-g`` with step ``min(1, 1/||g||)``.

    (Guarding the first step to one unit in the metric ``1/h0`` was tried: on
    20news its median time to 1% over 10 seeds was no better, 1.52 s against 1.44
    s, and the paths of single fits differ from one first step to another by
    more than that: a loose first solve's iterate feeds every later step.)
    """
    if len(memory):
        d = memory.inv_hvp(g)
        d *= -1.0
        return d, 1.0
    if h0 is not None:
        return -h0 * g, 1.0
    return -g, min(1.0, 1.0 / gnorm)


def _opa_pair(fun_grad, memory, direction, x, g, length):
    """Insert one OPA pair along ``H_k direction(x)``, rescaled to ``length``.

    Returns ``(added, n_eval)``: whether the pair entered the memory, and the
    gradient evaluations spent (0 or 1).
    """
    e = memory.inv_hvp(direction(x))
    norm_e = float(np.linalg.norm(e))
    if not norm_e > 0:
        return False, 0
    e *= length / norm_e
    g_e = fun_grad(x + e)[1]
    return bool(memory._append(e, g_e - g)), 1


def minimize_lbfgs_numpy(
    fun_grad,
    x0,
    *,
    tol: float,
    maxcor: int = 30,
    max_iter: int = 1000,
    memory: LbfgsMemory | None = None,
    opa=None,
    callback=None,
    fg0=None,
    h0=None,
    gnorm_weights=None,
) -> InnerResult:
    """Minimise a smooth function with a NumPy L-BFGS whose memory is open.

    Two-loop recursion, strong Wolfe line search, HOAG's test ``||grad|| <=
    tol``. Unlike SciPy's solver it *starts* from the pairs in ``memory`` (warm
    memory: the previous solve's, shifted exactly), and OPA inserts pairs mid-run.

    Parameters
    ----------
    fun_grad : callable
        ``fun_grad(x) -> (value, gradient)``.
    x0 : ndarray of shape (n_params,)
    tol : float
        Absolute tolerance on the Euclidean norm of the gradient.
    maxcor : int, default=30
        Memory size (used when ``memory`` is None).
    max_iter : int, default=1000
        Iteration cap; reaching it with ``||grad|| > tol`` warns.
    memory : LbfgsMemory, default=None
        Starting pairs; the run appends to it (it is modified).
    opa : (callable, int), default=None
        Outer-problem awareness: ``(direction, freq)``. Every ``freq``
        iterations, ``e = H_k direction(x)`` rescaled to the length of the last
        step and ``y = grad f(x + e) - grad f(x)`` enter the memory (one extra
        gradient), before the search direction is computed.
    callback : callable, default=None
        ``callback(x)`` after each iteration; ``StopIteration`` stops the solve.
    fg0 : (float, ndarray), default=None
        ``fun_grad(x0)`` when it is already known (saves one evaluation).
    h0 : float or ndarray of shape (n_params,), default=None
        A guess of the inverse Hessian's diagonal: the first step with an empty
        memory is ``-h0 * grad`` (scale-free; without it ``-grad`` times
        ``min(1, 1 / ||grad||)``), and the diagonal of a new memory.
    gnorm_weights : ndarray of shape (n_params,), default=None
        Metric of the gradient norm, ``sqrt(sum(gnorm_weights * g**2))``.

    Returns
    -------
    result : InnerResult
        As :func:`minimize_lbfgs`, plus ``n_opa`` (pairs inserted by OPA).
    """
    t_start = time.perf_counter()
    x = np.array(x0, dtype=np.float64)
    if memory is None:
        memory = LbfgsMemory(maxcor, x.size, h0 if np.ndim(h0) == 1 else None)
    f, g = fun_grad(x) if fg0 is None else fg0
    f, g = float(f), np.asarray(g, dtype=np.float64)
    nfev, nit, n_opa = int(fg0 is None), 0, 0
    gnorm = _norm(g, gnorm_weights)
    message = "converged: ||grad|| <= tol"
    last_step = None
    while gnorm > tol:
        if nit >= max_iter:
            message = f"reached max_iter={max_iter}"
            break
        if opa is not None and last_step is not None and nit % opa[1] == 0:
            added, n_eval = _opa_pair(fun_grad, memory, opa[0], x, g, last_step)
            n_opa, nfev = n_opa + added, nfev + n_eval
        d, t0 = _direction(memory, g, gnorm, h0)
        if not float(g @ d) < 0:  # not a descent direction: restart from the gradient
            memory.clear()  # (restart)
            d, t0 = _direction(memory, g, gnorm, h0)
        t, x_new, f_new, g_new, n_eval = _wolfe_line_search(fun_grad, x, d, f, g, t0)
        nfev += n_eval
        if t is None:
            message = "line search failed: no decrease found (precision limit?)"
            break
        s = x_new - x
        ss = float(s @ s)
        memory._append(s, np.asarray(g_new, dtype=np.float64) - g, ss)
        last_step = float(np.sqrt(ss))
        x, f, g = x_new, f_new, np.asarray(g_new, dtype=np.float64)
        gnorm = _norm(g, gnorm_weights)
        nit += 1
        if callback is not None:
            try:
                callback(x)
            except StopIteration:
                message = "stopped by the callback"
                break
    success = gnorm <= tol
    if not success and nit >= max_iter:
        _warn_iteration_cap(max_iter, gnorm, tol)
    return InnerResult(
        x=x, fun=float(f), jac=g, grad_norm=gnorm, nit=nit, nfev=nfev, success=success,
        message=message, memory=memory, n_opa=n_opa, time=time.perf_counter() - t_start,
    )
