"""A limited-memory Broyden root solver that keeps its inverse-Jacobian estimate.

An equilibrium layer's state is a root of ``g(z) = z - f(z)``, one system per
sample. :func:`broyden` solves every sample's system at once (batched) with
Broyden's "good" method on the inverse Jacobian,

    B_{k+1} = B_k + (s_k - B_k y_k) s_k^T B_k / (s_k^T B_k y_k),

which makes ``B_{k+1} y_k = s_k`` hold exactly (the secant condition), starting
from ``B_0 = I`` and keeping the newest ``memory`` rank-one terms:
``B = I + sum_j u_j v_j^T`` per sample (:class:`LowRankInverse`). SHINE reuses
``B^T`` for the backward pass. With OPA (outer-problem awareness), every
``opa_freq`` iterations one extra *adjoint* secant update, along ``a = B^T w``
for the outer gradient ``w = dL/dz``, makes ``B^T`` exact on ``q = J_g^T a``
(one vector-Jacobian product): as the forward pass converges, ``B^T w`` tends to
the exact adjoint ``J_g^-T w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BroydenResult", "LowRankInverse", "broyden"]

_TINY = 1e-30


class LowRankInverse:
    """Per sample, ``B = I + sum_j u_j v_j^T`` with at most ``memory`` terms (newest
    kept); all samples' terms stored together, shape (n_samples, memory, dim).

    Parameters
    ----------
    n_samples, dim : int
    memory : int
        Rank-one terms kept per sample.
    """

    def __init__(self, n_samples: int, dim: int, memory: int):
        if int(memory) < 1:
            raise ValueError(f"memory must be >= 1, got {memory}.")
        self.memory = int(memory)
        self.U = np.zeros((n_samples, self.memory, dim))
        self.V = np.zeros((n_samples, self.memory, dim))
        self.count = np.zeros(n_samples, dtype=int)  # terms written per sample

    @property
    def rank(self) -> np.ndarray:
        """Terms in use per sample."""
        return np.minimum(self.count, self.memory)

    def _used(self):
        """The slots written so far (all once the memory is full)."""
        k = min(int(self.count.max(initial=0)), self.memory)
        return self.U[:, :k], self.V[:, :k]

    def matvec(self, x):
        """``B x`` per sample: ``x`` of shape (n_samples, dim)."""
        U, V = self._used()
        return x + (np.matmul(V, x[:, :, None]).transpose(0, 2, 1) @ U)[:, 0]

    def rmatvec(self, x):
        """``B^T x`` per sample."""
        U, V = self._used()
        return x + (np.matmul(U, x[:, :, None]).transpose(0, 2, 1) @ V)[:, 0]

    def update(self, u, v, mask):
        """Add ``u v^T`` for the samples of ``mask`` (the oldest term goes when full)."""
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        slot = self.count[rows] % self.memory
        self.U[rows, slot] = u[rows]
        self.V[rows, slot] = v[rows]
        self.count[rows] += 1

    def secant(self, s, y, mask=None):
        """Broyden's good update of the inverse: afterwards ``B y = s`` (per sample of
        ``mask`` whose denominator ``s . B y`` is not zero). Returns the updated mask."""
        By = self.matvec(y)
        # B + (s - B y)(B^T s)^T / (s . B y): then B y = B y + (s - B y) = s
        return self._add(s - By, self.rmatvec(s), s, By, mask)

    def adjoint_secant(self, a, q, mask=None):
        """The transposed update: afterwards ``B^T q = a`` (``q = J_g^T a``)."""
        Bq = self.rmatvec(q)
        # B + (B q)(a - B^T q)^T / (q . B^T q): then B^T q = B^T q + (a - B^T q) = a
        return self._add(self.matvec(q), a - Bq, q, Bq, mask)

    def _add(self, u, v, p, Bp, mask):
        """Add ``u v^T / (p . Bp)`` where that denominator is safely non-zero."""
        denom = np.einsum("nd,nd->n", p, Bp)
        ok = np.abs(denom) > _TINY * (np.linalg.norm(p, axis=1) * np.linalg.norm(Bp, axis=1))
        ok &= np.abs(denom) > 0
        if mask is not None:
            ok &= mask
        self.update(u / np.where(ok, denom, 1.0)[:, None], v, ok)
        return ok


@dataclass
class BroydenResult:
    """Outcome of :func:`broyden`.

    Attributes
    ----------
    z : ndarray of shape (n_samples, dim)
        The roots (the last iterates).
    g : ndarray of shape (n_samples, dim)
        ``g(z)`` there (for a fixed point, ``f(z) = z - g``: no evaluation more).
    residual : ndarray of shape (n_samples,)
        ``||g(z)||`` per sample, relative to ``||g(z0)||``.
    converged : ndarray of bool of shape (n_samples,)
        ``residual <= tol``.
    n_iter : int
        Iterations (each one evaluation of ``g`` for all samples).
    n_vjp : int
        Vector-Jacobian products spent by OPA.
    inverse : LowRankInverse
        The inverse-Jacobian estimate ``B`` (``B^T`` is SHINE's adjoint).
    message : str
    """

    z: np.ndarray
    g: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    n_iter: int
    n_vjp: int
    inverse: LowRankInverse
    message: str

    @property
    def success(self) -> bool:
        return bool(np.all(self.converged))


def broyden(g, z0, *, tol=1e-6, max_iter=50, memory=30, opa=None, opa_freq=2):
    """Solve ``g(z) = 0`` per sample by limited-memory Broyden, keeping the inverse.

    Parameters
    ----------
    g : callable
        ``g(z) -> residual``, both of shape (n_samples, dim); each sample's residual
        depends on its own row only.
    z0 : ndarray of shape (n_samples, dim)
    tol : float, default=1e-6
        Stop a sample when ``||g(z)|| <= tol * ||g(z0)||``.
    max_iter : int, default=50
    memory : int, default=30
        Rank-one terms of the inverse estimate kept per sample.
    opa : (callable, callable), default=None
        Outer-problem awareness: ``(outer_grad, vjp)``, ``outer_grad(z) -> w`` (the
        outer loss's gradient in ``z``) and ``vjp(z, a) -> J_g(z)^T a``. Every
        ``opa_freq`` iterations, one adjoint secant update along ``a = B^T w``.
    opa_freq : int, default=2

    Returns
    -------
    result : BroydenResult
    """
    z = np.array(z0, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z0 must have shape (n_samples, dim), got {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise ValueError("z0 contains NaN or infinite values.")
    n, d = z.shape
    inv = LowRankInverse(n, d, memory)
    gz = np.asarray(g(z), dtype=np.float64)
    scale = np.maximum(np.linalg.norm(gz, axis=1), _TINY)
    active = np.linalg.norm(gz, axis=1) > tol * scale
    k = n_vjp = 0
    while k < max_iter and active.any():
        dz = -inv.matvec(gz)
        dz[~active] = 0.0
        z_new = z + dz
        g_new = np.asarray(g(z_new), dtype=np.float64)
        bad = ~np.all(np.isfinite(g_new), axis=1)
        if bad.any():  # (a step out of the map's domain: not taken for those samples)
            z_new[bad], g_new[bad], active = z[bad], gz[bad], active & ~bad
        inv.secant(z_new - z, g_new - gz, active)
        z, gz, k = z_new, g_new, k + 1
        if opa is not None and k % opa_freq == 0:
            outer_grad, vjp = opa
            a = inv.rmatvec(outer_grad(z))
            inv.adjoint_secant(a, vjp(z, a), active)
            n_vjp += 1
        active &= np.linalg.norm(gz, axis=1) > tol * scale
    residual = np.linalg.norm(gz, axis=1) / scale
    converged = residual <= tol
    message = ("converged" if converged.all() else
               f"{int((~converged).sum())} of {n} samples above tol={tol} after "
               f"max_iter={max_iter} iterations")
    return BroydenResult(z=z, g=gz, residual=residual, converged=converged, n_iter=k, n_vjp=n_vjp,
                         inverse=inv, message=message)
