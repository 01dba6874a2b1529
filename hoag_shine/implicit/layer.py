"""Equilibrium layers given as plain callables, and a ready one: ``z = tanh(W z + U x + b)``.

A layer is a map ``f(z, x, params)`` (batched: rows are samples) with its two
vector-Jacobian products, in ``z`` and in the parameters. Nothing here depends
on an array library beyond what the callables do, so another one can plug in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EquilibriumLayer", "TanhLayer"]


class EquilibriumLayer:
    """A fixed-point map ``z = f(z, x; params)`` and its vector-Jacobian products.

    Parameters
    ----------
    f : callable
        ``f(z, x, params) -> (n_samples, dim)``; each row depends on its own row of
        ``z`` and ``x`` only.
    vjp_z : callable
        ``vjp_z(z, x, params, v) -> v^T df/dz`` per sample, shape (n_samples, dim).
    vjp_params : callable
        ``vjp_params(z, x, params, v) -> dict`` of arrays shaped as ``params``:
        ``sum over samples of v^T df/dparams``.
    """

    def __init__(self, f, vjp_z, vjp_params):
        for name, fn in (("f", f), ("vjp_z", vjp_z), ("vjp_params", vjp_params)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}.")
        self._f, self._vjp_z, self._vjp_params = f, vjp_z, vjp_params

    def f(self, z, x, params):
        return self._f(z, x, params)

    def vjp_z(self, z, x, params, v):
        return self._vjp_z(z, x, params, v)

    def vjp_params(self, z, x, params, v):
        return self._vjp_params(z, x, params, v)

    def linearize(self, z, x, params, fz=None):
        """``(vjp_z, vjp_params)`` at ``z``, as functions of ``v`` alone (a layer can
        share the work the two need: :class:`TanhLayer` computes its derivative once,
        from ``fz = f(z, x, params)`` when the caller has it)."""
        return (lambda v: self.vjp_z(z, x, params, v),
                lambda v: self.vjp_params(z, x, params, v))


class TanhLayer(EquilibriumLayer):
    """``f(z, x) = tanh(z W^T + x U^T + b)`` (rows are samples), with ``params``
    ``{"W": (dim, dim), "U": (dim, n_features), "b": (dim,)}``.

    Its Jacobian in ``z`` is ``diag(1 - f^2) W``: its spectral radius is at most
    ``||W||_2``, so ``||W||_2 < 1`` makes the map a contraction.
    """

    def __init__(self):
        pass

    @staticmethod
    def init_params(n_features, dim, rng, spectral_norm=0.5, init="gaussian"):
        """Random parameters, ``W`` of spectral norm ``spectral_norm``: Gaussian
        (its eigenvalues in a disk of about half that radius), or ``"orthogonal"``
        (a scaled orthogonal matrix: every eigenvalue at that modulus, so that the
        Jacobian's spectral radius is near ``spectral_norm`` where tanh is linear)."""
        if init == "orthogonal":
            Q, R = np.linalg.qr(rng.standard_normal((dim, dim)))
            W = Q * np.sign(np.diag(R)) * spectral_norm
        else:
            W = rng.standard_normal((dim, dim))
            W *= spectral_norm / np.linalg.norm(W, 2)
        U = rng.standard_normal((dim, n_features)) / np.sqrt(n_features)
        return {"W": W, "U": U, "b": np.zeros(dim)}

    def f(self, z, x, params):
        return np.tanh(z @ params["W"].T + x @ params["U"].T + params["b"])

    def vjp_z(self, z, x, params, v):
        fz = self.f(z, x, params)
        return (v * (1.0 - fz * fz)) @ params["W"]

    def vjp_params(self, z, x, params, v):
        fz = self.f(z, x, params)
        r = v * (1.0 - fz * fz)
        return {"W": r.T @ z, "U": r.T @ x, "b": r.sum(axis=0)}

    def linearize(self, z, x, params, fz=None):
        fz = self.f(z, x, params) if fz is None else fz
        d, W = 1.0 - fz * fz, params["W"]

        def vjp_params(v):
            r = v * d
            return {"W": r.T @ z, "U": r.T @ x, "b": r.sum(axis=0)}

        return (lambda v: (v * d) @ W), vjp_params
