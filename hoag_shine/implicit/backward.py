"""Backward passes of an equilibrium layer: the adjoint ``u`` of ``(I - J)^T u = w``.

At the fixed point ``z* = f(z*)``, the gradient of a loss ``L(z*)`` in the layer's
parameters is ``(df/dparams)^T u`` with ``(I - J)^T u = w``, ``J = df/dz`` and
``w = dL/dz*``. The strategies, by name (the names and meanings of the
hyperparameter strategies of :mod:`hoag_shine.hypergrad` where they match):

====================  ==========================================================
``"exact"``           GMRES on ``(I - J)^T u = w`` (block-diagonal: one system
                      per sample) to relative residual ``tol``
``"shine"``           ``u = B^T w``, the forward Broyden inverse estimate (no
                      Jacobian product)
``"shine-opa"``       the same, the forward pass taught ``w``'s direction (OPA)
``"shine-fallback"``  SHINE, but Jacobian-Free for the samples whose ``||u||``
                      exceeds ``ratio * ||w||`` (an implausibly large adjoint)
``"shine-refine"``    ``k`` GMRES iterations warm-started at SHINE's ``u`` and
                      preconditioned by ``B^T`` (``"refine"`` is the same)
``"jacobian-free"``   ``u = w`` (``(I - J)^-T`` replaced by the identity)
====================  ==========================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator, gmres

__all__ = ["BACKWARDS", "AdjointResult", "adjoint"]

#: The backward strategies; ``"refine"`` is an alias of ``"shine-refine"``.
BACKWARDS = ("exact", "shine", "shine-opa", "shine-fallback", "shine-refine", "refine",
             "jacobian-free")


@dataclass
class AdjointResult:
    """``u`` and what it cost: vector-Jacobian products, seconds, fallbacks taken."""

    u: np.ndarray
    n_vjp: int
    time: float
    n_fallback: int = 0
    converged: bool = True


def _system(vjp, shape):
    """``u -> u - J^T u`` as a LinearOperator on the flattened batch, counting products."""
    count = [0]

    def matvec(u):
        count[0] += 1
        u = np.reshape(u, shape)
        return (u - vjp(u)).ravel()

    return LinearOperator((np.prod(shape),) * 2, matvec=matvec, dtype=np.float64), count


def adjoint(strategy, w, *, vjp=None, inverse=None, tol=1e-8, max_iter=200, ratio=1.8,
            refine_iter=5) -> AdjointResult:
    """The adjoint ``u`` of ``(I - J)^T u = w`` by ``strategy``.

    Parameters
    ----------
    strategy : str
        One of :data:`BACKWARDS`.
    w : ndarray of shape (n_samples, dim)
        ``dL/dz*``.
    vjp : callable, default=None
        ``vjp(v) -> J^T v`` per sample at the fixed point (``"exact"`` and
        ``"shine-refine"``).
    inverse : LowRankInverse, default=None
        The forward pass's Broyden estimate (the SHINE strategies).
    tol : float, default=1e-8
        Relative residual of ``"exact"``'s GMRES.
    max_iter : int, default=200
        GMRES iterations of ``"exact"``.
    ratio : float, default=1.8
        ``"shine-fallback"``: SHINE's ``u`` is kept where ``||u|| <= ratio ||w||``.
    refine_iter : int, default=5
        GMRES iterations of ``"shine-refine"``.

    Returns
    -------
    result : AdjointResult
    """
    if strategy not in BACKWARDS:
        raise ValueError(f"Unknown backward {strategy!r}; choose one of {list(BACKWARDS)}.")
    t0 = time.perf_counter()
    w = np.asarray(w, dtype=np.float64)
    if strategy == "jacobian-free":
        return AdjointResult(w.copy(), 0, time.perf_counter() - t0)
    if strategy == "exact":
        op, count = _system(vjp, w.shape)
        u, info = gmres(op, w.ravel(), rtol=tol, atol=0.0, restart=min(max_iter, 50),
                        maxiter=max(1, max_iter // 50 + 1))
        return AdjointResult(u.reshape(w.shape), count[0], time.perf_counter() - t0,
                             converged=info == 0)
    if inverse is None:
        raise ValueError(f"backward={strategy!r} needs the forward pass's Broyden inverse.")
    u = inverse.rmatvec(w)
    if strategy == "shine-fallback":
        far = np.linalg.norm(u, axis=1) > ratio * np.linalg.norm(w, axis=1)
        u[far] = w[far]
        return AdjointResult(u, 0, time.perf_counter() - t0, n_fallback=int(far.sum()))
    if strategy in ("shine-refine", "refine"):
        op, count = _system(vjp, w.shape)
        pre = LinearOperator(op.shape, dtype=np.float64,
                             matvec=lambda v: inverse.rmatvec(np.reshape(v, w.shape)).ravel())
        u, _ = gmres(op, w.ravel(), x0=u.ravel(), rtol=1e-12, atol=0.0, M=pre,
                     restart=refine_iter, maxiter=1)
        return AdjointResult(u.reshape(w.shape), count[0], time.perf_counter() - t0)
    return AdjointResult(u, 0, time.perf_counter() - t0)
