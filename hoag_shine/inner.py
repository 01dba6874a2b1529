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

import numpy as np
from scipy.optimize import OptimizeResult, minimize
from scipy.sparse.linalg import LinearOperator, cg
from sklearn.exceptions import ConvergenceWarning

__all__ = ["InnerResult", "LbfgsMemory", "minimize_lbfgs", "newton_polish"]


class LbfgsMemory:
    """Curvature pairs of an L-BFGS run, oldest first.

    Parameters
    ----------
    maxlen : int
        Number of pairs kept; older pairs are dropped first.
    n_params : int, default=None
        Length of the vectors (checked on :meth:`append` when given).

    Notes
    -----
    The inverse-Hessian estimate is the L-BFGS matrix built from the initial
    matrix ``H0 = gamma * I`` by one BFGS update per pair, oldest first; see
    Nocedal & Wright, *Numerical Optimization*, Algorithm 7.4.
    """

    def __init__(self, maxlen: int, n_params: int | None = None):
        if int(maxlen) < 1:
            raise ValueError(f"maxlen (the L-BFGS memory size) must be >= 1, got {maxlen}.")
        self.maxlen = int(maxlen)
        self.n_params = n_params
        self._pairs: deque = deque(maxlen=self.maxlen)
        self.n_skipped = 0

    def __len__(self) -> int:
        return len(self._pairs)

    @property
    def s(self) -> np.ndarray:
        """Steps ``s_i``, shape (n_pairs, n_params), oldest first."""
        return np.array([p[0] for p in self._pairs]).reshape(len(self), -1)

    @property
    def y(self) -> np.ndarray:
        """Gradient differences ``y_i``, shape (n_pairs, n_params), oldest first."""
        return np.array([p[1] for p in self._pairs]).reshape(len(self), -1)

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
        sy = float(s @ y)
        if not np.isfinite(sy) or sy <= 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
            self.n_skipped += 1
            return False
        self._pairs.append((s, y, 1.0 / sy))
        return True

    def copy(self) -> "LbfgsMemory":
        new = LbfgsMemory(self.maxlen, self.n_params)
        new._pairs = deque(self._pairs, maxlen=self.maxlen)
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
        """
        pairs = list(self._pairs)
        self._pairs.clear()
        for s, y, _ in pairs:
            self.append(s, y + delta * s)

    def gamma(self) -> float:
        """Scaling ``s.y / y.y`` of the newest pair (1 when the memory is empty)."""
        if not self._pairs:
            return 1.0
        s, y, rho = self._pairs[-1]
        return 1.0 / (rho * float(y @ y))

    def inv_hvp(self, v, h0: float | None = None) -> np.ndarray:
        """Apply the L-BFGS inverse-Hessian estimate to ``v`` (two-loop recursion).

        Parameters
        ----------
        v : ndarray of shape (n_params,)
        h0 : float, default=None
            Initial inverse Hessian ``h0 * I``. ``None`` uses :meth:`gamma`
            (the usual L-BFGS scaling); ``1.0`` reproduces SciPy's
            ``LbfgsInvHessProduct``.

        Returns
        -------
        Hv : ndarray of shape (n_params,)
        """
        q = np.array(v, dtype=np.float64)
        a = np.empty(len(self._pairs))
        for i in range(len(self._pairs) - 1, -1, -1):
            s, y, rho = self._pairs[i]
            a[i] = rho * float(s @ q)
            q -= a[i] * y
        q *= self.gamma() if h0 is None else h0
        for i, (s, y, rho) in enumerate(self._pairs):
            b = rho * float(y @ q)
            q += (a[i] - b) * s
        return q


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

    Returns
    -------
    result : InnerResult
    """
    t0 = time.perf_counter()
    x0 = np.array(x0, dtype=np.float64)
    if memory is None:
        memory = LbfgsMemory(maxcor, x0.size)
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

    f, g = wrapped(x0)
    state = {"x": x0, "f": f, "g": g, "nit": 0}
    gnorm = float(np.linalg.norm(g))

    def callback(intermediate_result):
        x = intermediate_result.x
        f, g = wrapped(x)
        memory.append(x - state["x"], g - state["g"])
        state.update(x=np.array(x), f=f, g=g, nit=state["nit"] + 1)
        if np.linalg.norm(g) <= tol:
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
        gnorm = float(np.linalg.norm(state["g"]))
        if gnorm > tol:
            message = str(res.message)
    success = gnorm <= tol
    if not success and state["nit"] >= max_iter:
        warnings.warn(
            f"The inner L-BFGS solver stopped after max_iter={max_iter} iterations "
            f"with ||grad|| = {gnorm:.3g} > tol = {tol:.3g}. Increase the inner "
            "iteration cap (max_inner_iter) or loosen the tolerance schedule.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return InnerResult(
        x=state["x"], fun=state["f"], jac=state["g"], grad_norm=gnorm, nit=state["nit"],
        nfev=nfev, success=success, message=message, memory=memory,
        time=time.perf_counter() - t0,
    )


def newton_polish(fun_grad, hessp_at, x, *, tol: float, max_steps: int = 5):
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

    Returns
    -------
    x : ndarray of shape (n_params,)
    grad_norm : float
    n_steps : int
        Newton steps kept.
    """
    x = np.array(x, dtype=np.float64)
    g = fun_grad(x)[1]
    gnorm = float(np.linalg.norm(g))
    n_steps = 0
    for _ in range(max_steps):
        if gnorm <= tol:
            break
        hessp = hessp_at(x)
        op = LinearOperator((x.size, x.size), matvec=lambda v: hessp(np.ravel(v)),
                            dtype=np.float64)
        step, _ = cg(op, g, rtol=1e-12, atol=0.0, maxiter=10 * x.size)
        x_new = x - step
        g_new = fun_grad(x_new)[1]
        gnorm_new = float(np.linalg.norm(g_new))
        if not gnorm_new < gnorm:
            break
        x, g, gnorm = x_new, g_new, gnorm_new
        n_steps += 1
    return x, gnorm, n_steps
