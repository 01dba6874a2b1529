"""The L-BFGS inverse-Hessian estimate: the operator over the stored pairs."""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import daxpy, ddot, saxpy, sdot

from .metric import DiagonalMetric, constant_head
from .pairs import PairStore

__all__ = ["LbfgsMemory"]

_EPS = np.finfo(np.float64).eps


def _dot(a, b) -> float:
    """``a . b`` by the BLAS that the axpys here use (SciPy's).

    The loops here alternate dots and axpys on long vectors. NumPy and SciPy each
    ship their own OpenBLAS, each with its own thread pool: alternating between
    the two with more than one BLAS thread, each library's spinning threads take
    the cores from the other's (on 2 cores a two-loop recursion over 30 pairs of
    130,000 parameters took 520 ms, against 10 ms with one library). With one
    thread the two give the same result to the last bit.
    """
    if not a.size:
        return 0.0
    return float((ddot if a.dtype == np.float64 else sdot)(a, b))


def _delegate(name, doc):
    """A method of :class:`LbfgsMemory` that is its store's."""
    def method(self, *args):
        return getattr(self.store, name)(*args)

    method.__name__, method.__doc__ = name, doc
    return method


class LbfgsMemory:
    """Curvature pairs of an L-BFGS run, oldest first, and the estimate they define.

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
    norm is Euclidean. The rows, their precision, checkpoint and spill file are a
    :class:`~hoag_shine.inner.PairStore`'s (``store``); this class holds the
    metric and does the arithmetic: :meth:`inv_hvp` and :meth:`shift`.
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
        if isinstance(diag, DiagonalMetric):
            diag = diag.array
        if diag is not None:
            diag = np.asarray(diag, dtype=np.float64)
            if diag.size and np.all(diag == diag.flat[0]):
                diag = None  # a constant diagonal: gamma alone does the scaling
        # Kept as constant head and short tail when it has that shape (no full copy).
        self._d = None if diag is None else DiagonalMetric(diag)
        self._sqrt = None if diag is None else DiagonalMetric(np.sqrt(diag))
        # D moved with the penalty by :meth:`shift`, as a ratio to the D of the
        # coordinates (``None``: 1): the initial matrix is gamma times the moved D.
        self._ratio = None
        self._ratio_saved = None
        self.store = PairStore(self.maxlen, dtype)
        self.n_skipped = 0

    def __len__(self) -> int:
        return len(self.store)

    @property
    def diag(self):
        """The diagonal ``D`` of the initial matrix, as moved by :meth:`shift` (``None``:
        the identity)."""
        if self._d is None:
            return None
        if self._ratio is None:
            return self._d.array
        return self._d.array * self._ratio.array

    @property
    def nbytes(self) -> int:
        """Bytes the stored pairs take in memory now (0 when spilled)."""
        return self.store.nbytes

    # -- the store's life cycle (see PairStore) --------------------------------------
    spill = _delegate("spill", "Move the pairs to a temporary file, releasing their memory "
                      "(a checkpoint is given up); any later use reads them back exactly.")
    def checkpoint(self) -> None:
        """Remember the pairs in use (and the diagonal as moved), so that
        :meth:`rollback` can return to them after a trial run (a shift, then appends)."""
        self.store.checkpoint()
        self._ratio_saved = self._ratio

    commit = _delegate("commit", "Keep the trial's pairs; release the checkpoint's.")

    def rollback(self) -> bool:
        """Return to the checkpoint exactly; whether there was one."""
        if not self.store.rollback():
            return False
        self._ratio = self._ratio_saved
        return True

    clear = _delegate("clear", "Drop every pair (a checkpoint is kept).")
    truncate = _delegate("truncate", "Keep only the newest n_pairs pairs (a checkpoint is "
                         "given up).")

    def copy(self) -> "LbfgsMemory":
        """An independent copy (its own storage; spilled pairs stay on disk)."""
        new = LbfgsMemory(self.maxlen, self.n_params, dtype=self.dtype)
        new._d, new._sqrt = self._d, self._sqrt
        new._ratio, new._ratio_saved = self._ratio, self._ratio_saved  # (never changed in place)
        new.store = self.store.copy()
        new.n_skipped = self.n_skipped
        return new

    # -- coordinates ---------------------------------------------------------------
    def _to_metric(self, s, y):
        """``(D^-1/2 s, D^1/2 y)`` in place (the arrays are the memory's own)."""
        if self._sqrt is not None:
            self._sqrt.scale(s, 1.0, inverse=True)
            self._sqrt.scale(y, 1.0)
        return s, y

    s = property(lambda self: _stored_rows(self, "s"),
                 doc="Steps ``s_i``, shape (n_pairs, n_params), oldest first.")
    y = property(lambda self: _stored_rows(self, "y"),
                 doc="Gradient differences ``y_i``, shape (n_pairs, n_params), oldest first.")

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
        sy, yy, ss = float(s @ y), float(y @ y), float(s @ s)
        # Keep the pair only if its curvature is safely positive: s.y > eps ||s|| ||y||
        # (a cosine, in the metric of the memory's diagonal when it has one, so that the
        # test does not depend on the scale of the data; L-BFGS-B's s.y > eps y.y does).
        if not _curvature_ok(sy, yy, ss):
            self.n_skipped += 1
            return False
        self.store.add(s, y, sy, yy, ss)
        return True

    def shift(self, delta) -> None:
        """Replace every ``y_i`` by ``y_i + delta * s_i`` (pairs with lost curvature dropped).

        For an inner objective whose Hessian changes by ``diag(delta)`` (an L2
        penalty whose strength changed), the shifted pairs are exactly the pairs
        the new objective would have produced along the same steps. The diagonal
        ``D`` of the initial matrix, a guess of the inverse Hessian's diagonal,
        moves with them: ``D <- 1 / (1/D + delta)`` (see :func:`_moved_ratio`).

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
        st = self.store
        if not len(st):
            return
        st.restore()
        n = st.S[st.newest].size
        dd = np.array(np.broadcast_to(np.asarray(delta, dtype=np.float64), (n,)))
        if self._d is not None:
            self._d.scale(dd, 1.0)  # delta in the metric's coordinates
            self._ratio = _moved_ratio(self._ratio, dd)
        self.n_skipped += _shift_slots(st, dd, self.dtype)

    # -- products --------------------------------------------------------------------
    def gamma(self) -> float:
        """Scaling ``s.y / y.D.y`` of the newest pair (1 when the memory is empty), with
        ``D`` the memory's ``diag`` (the identity by default)."""
        st = self.store
        slot = st.newest
        if slot is None:
            return 1.0
        return 1.0 / (st.rho[slot] * _newest_yy(st, slot, self._ratio))

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
        st = self.store
        st.restore()
        q = np.array(v, dtype=np.float64)
        if self._sqrt is not None:
            self._sqrt.scale(q, 1.0)  # into the metric's coordinates
        order = st.slots
        if self.dtype == np.float32 and order:
            q = _two_loop_single(st, q, order, lambda v: self._middle(v, h0))
            if self._sqrt is not None:
                self._sqrt.scale(q, 1.0)
            return q
        a = np.empty(len(order))
        for j in range(len(order) - 1, -1, -1):
            i = order[j]
            a[j] = st.rho[i] * _dot(st.S[i], q)
            q = daxpy(st.Y[i], q, a=-a[j])  # in place: q -= a_j y
        self._middle(q, h0)
        for j, i in enumerate(order):
            b = st.rho[i] * _dot(st.Y[i], q)
            q = daxpy(st.S[i], q, a=a[j] - b)
        if self._sqrt is not None:
            self._sqrt.scale(q, 1.0)  # back: x = D^1/2 u
        return q

    def _middle(self, q, h0):
        """``q *= H0`` in the metric's coordinates."""
        if h0 is None:
            q *= self.gamma()
            if self._ratio is not None:
                self._ratio.scale(q, 1.0)  # gamma D = gamma r D0, and D0 is I here
            return
        q *= h0
        if self._sqrt is not None:  # h0 I in the original coordinates is h0 D^-1 here
            self._sqrt.scale(q, 1.0, inverse=True)
            self._sqrt.scale(q, 1.0, inverse=True)


def _stored_rows(memory, kind) -> np.ndarray:
    """The stored ``s`` (or ``y``) vectors in the original coordinates, oldest first."""
    st = memory.store
    st.restore()
    rows, norms = (st.S, st.ns) if kind == "s" else (st.Y, st.ny)
    out = []
    for slot in st.slots:
        v = rows[slot].astype(np.float64) * norms[slot]
        if memory._sqrt is not None:
            memory._sqrt.scale(v, 1.0, inverse=(kind == "y"))
        out.append(v)
    return np.array(out).reshape(len(memory), -1)


def _moved_ratio(ratio, dd):
    """The initial matrix's diagonal moved with the penalty, ``D <- 1 / (1/D + delta)``,
    given ``dd = D0 delta`` (``D0``: the diagonal of the pairs' coordinates) and kept
    as the ratio ``r = D / D0``: ``r <- r / (1 + r dd)``; ``None`` stands for 1.

    Kept where the memory was made, ``D`` drifted over a search: a memory made at a
    strong penalty, its ``D`` 2,000 times too small for the coefficients at the end
    (3 classes, one penalty per class), took 150 iterations for a warm solve that a
    fresh memory did in 25.
    """
    if not np.any(dd):
        return ratio
    r = np.ones_like(dd) if ratio is None else ratio.new_array()
    denom = r * dd
    denom += 1.0
    # (1/D + delta stays positive for a guess of the form 1 / (curvature + penalty);
    # the floor only guards rounding)
    np.maximum(denom, 1e-12, out=denom)
    r /= denom
    return DiagonalMetric(r)


def _newest_yy(st, slot, ratio) -> float:
    """``y . r y`` of the pair in ``slot`` (in the pairs' coordinates; ``r`` = 1 for
    ``None``: the cached ``y . y``)."""
    if ratio is None:
        return st.yy[slot]
    st.restore()
    ny = st.ny[slot]  # (the stored row is y / ny)
    return ratio.quad(st.Y[slot], st.yy[slot] / (ny * ny)) * ny * ny


def _shift_slots(st, dd, dtype) -> int:
    """Every stored ``y`` moved by ``dd * s`` in place (pairs' coordinates), their
    curvatures updated; pairs whose curvature is lost are dropped. Returns how many."""
    k = constant_head(dd)
    axpy = daxpy if dtype == np.float64 else saxpy
    dd_stored = None if k else dd.astype(dtype)
    dropped = 0
    for slot in st.slots:
        S, Y = st.S[slot], st.writable_y(slot)
        if not k:  # no constant head (one penalty per class, say): whole passes
            ns, ny = st.ns[slot], st.ny[slot]
            axpy(dd_stored * S, Y, a=ns / ny)
            sy, yy = ns * ny * _dot(S, Y), ny * ny * _dot(Y, Y)
        else:
            sy, yy = _shift_head_tail(st, slot, S, Y, k, float(dd[0]), dd[k:], axpy)
        st.rho[slot], st.yy[slot] = (1.0 / sy if sy else np.inf), yy
        if not _curvature_ok(sy, yy, st.ss[slot]):
            st.drop(slot)
            dropped += 1
    return dropped


def _shift_head_tail(st, slot, S, Y, k, head, tail, axpy):
    """One pair's shift by a constant ``head`` on ``[:k]`` and ``tail`` after it, in
    place: the head's curvatures from cached scalars (``y_h += head * s_h``), the
    tail apart. Returns the new ``(s.y, y.y)``."""
    ns, ny = st.ns[slot], st.ny[slot]
    sy, yy, ss = 1.0 / st.rho[slot], st.yy[slot], st.ss[slot]
    s_t = S[k:].astype(np.float64) * ns
    y_t = Y[k:].astype(np.float64) * ny
    ss_h, sy_h = max(ss - _dot(s_t, s_t), 0.0), sy - _dot(s_t, y_t)
    yy_h = max(yy - _dot(y_t, y_t), 0.0)
    axpy(S[:k], Y[:k], a=head * ns / ny)
    sy_h, yy_h = sy_h + head * ss_h, yy_h + head * (2.0 * sy_h + head * ss_h)
    y_t = y_t + tail * s_t
    Y[k:] = y_t / ny
    sy_new = sy_h + _dot(s_t, y_t)
    yy_new = yy_h + _dot(y_t, y_t)
    # Lost digits (the tail held most of s.s or y.y) or a doubtful curvature:
    # the sums again, over the stored vectors.
    if not (sy_new > 1e-8 * abs(sy) and yy_h >= 1e-8 * yy):
        sv = S.astype(np.float64) * ns
        yv = Y.astype(np.float64) * ny
        sy_new, yy_new = _dot(sv, yv), _dot(yv, yv)
    return sy_new, yy_new


def _two_loop_single(st, q, order, middle):
    """The two-loop recursion over single-precision pairs, in place on ``q``:
    ``q = c * q32``, with the float64 scale ``c`` kept apart so that nothing under-
    or overflows; ``middle(q)`` applies the initial matrix."""
    q32 = np.empty(q.size, dtype=np.float32)  # (no float64 temporaries: at 2.6M
    c = float(np.linalg.norm(q)) or 1.0         # parameters each one is 20 MB)
    np.multiply(q, 1.0 / c, out=q32, casting="same_kind")
    a = np.empty(len(order))
    for j in range(len(order) - 1, -1, -1):
        i = order[j]
        a[j] = st.rho[i] * st.ns[i] * c * _dot(st.S[i], q32)
        q32 = saxpy(st.Y[i], q32, a=-a[j] * st.ny[i] / c)  # in place
    np.multiply(q32, c, out=q)
    middle(q)
    c = float(np.linalg.norm(q)) or 1.0
    np.multiply(q, 1.0 / c, out=q32, casting="same_kind")
    for j, i in enumerate(order):
        b = st.rho[i] * st.ny[i] * c * _dot(st.Y[i], q32)
        q32 = saxpy(st.S[i], q32, a=(a[j] - b) * st.ns[i] / c)
    np.multiply(q32, c, out=q)
    return q


def _curvature_ok(sy, yy, ss) -> bool:
    """Whether a pair's curvature is safely positive: ``s.y > eps ||s|| ||y||``."""
    return bool(np.isfinite(sy) and np.isfinite(yy) and np.isfinite(ss) and sy > 0
                and sy > _EPS * np.sqrt(ss) * np.sqrt(yy))
