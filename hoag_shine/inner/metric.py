"""Diagonal metrics: a guess of the inverse Hessian's diagonal, kept cheaply.

The inner solvers measure gradients, and the L-BFGS memory stores its pairs, in
the metric of a positive diagonal ``D`` (a guess of the inverse Hessian's
diagonal), so that nothing depends on the scale of the data or of single
coordinates. Such a diagonal is most often a constant for the penalised
coefficients and a short tail (intercepts): :class:`DiagonalMetric` keeps it
as head and tail, without a full copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DiagonalMetric", "constant_head", "metric_norm"]


def metric_norm(g, weights=None) -> float:
    """``||g||``, or ``sqrt(sum(weights * g**2))`` in the metric ``weights`` (an array,
    or a :class:`DiagonalMetric`: then without a temporary array)."""
    if weights is None:
        return float(np.linalg.norm(g))
    if isinstance(weights, DiagonalMetric):
        return float(np.sqrt(weights.quad(g, float(g @ g))))
    return float(np.sqrt(np.dot(weights * g, g)))


def constant_head(v) -> int:
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


class DiagonalMetric:
    """A positive diagonal ``D`` made of a constant head and a short tail (the
    penalised coefficients, then e.g. intercepts): ``v . D v`` and ``v . D^-1 v``
    follow from ``v . v`` and the tail alone, without a pass over the vector."""

    def __init__(self, diag):
        diag = np.asarray(diag, dtype=np.float64)
        k = constant_head(diag)
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


