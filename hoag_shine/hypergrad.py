"""Hypergradient strategies: ways to get ``z ~= H^{-1} grad_x g``.

By the implicit function theorem, the gradient of ``alpha -> g(x*(alpha),
alpha)`` is::

    grad_alpha g - (d2h / dx dalpha)^T z,    z = H^{-1} grad_x g,

with ``H`` the inner Hessian at the inner solution. The strategies differ only
in how they get ``z``; each is a small object with one method,
``solve(hessp, b, *, eps, init, memory) -> (z, n_hvp)``, chosen by name with
:func:`get_strategy`:

========================  ==================================================
``"exact"``               dense solve (small problems, tests)
``"cg"``                  conjugate gradient at relative tolerance ``eps``,
                          warm-started (HOAG)
``"truncated-cg"``        conjugate gradient capped at a few iterations
``"shine"``               the inner L-BFGS inverse estimate (no Hessian product)
``"shine-refine"``        conjugate gradient warm-started at the SHINE
                          estimate, with a cap that grows as ``eps`` shrinks
``"shine-opa"``           SHINE whose inner L-BFGS also learns the outer
                          gradient's direction (OPA; NumPy inner solver)
``"jacobian-free"``       ``z = grad_x g`` (``H^{-1}`` replaced by identity)
========================  ==================================================
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from scipy.optimize import OptimizeResult
from scipy.sparse.linalg import LinearOperator, cg
from sklearn.exceptions import ConvergenceWarning

from ._params import InvalidParameterError

__all__ = [
    "ConjugateGradient",
    "Exact",
    "HypergradientResult",
    "HypergradientStrategy",
    "JacobianFree",
    "Shine",
    "ShineOPA",
    "ShineRefine",
    "TruncatedCG",
    "compute_hypergradient",
    "conjugate_gradient",
    "get_strategy",
    "STRATEGIES",
]


def _check_int(name, value, low, owner, allow_none=False):
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidParameterError(
            f"{owner}'s {name} must be an int >= {low}, got {value!r} (hypergradient_params).")
    return int(value)


def _check_h0(h0):
    if h0 is None:
        return None
    if isinstance(h0, bool) or not isinstance(h0, (int, float, np.floating)) or not (
            np.isfinite(h0) and h0 > 0):
        raise InvalidParameterError(f"h0 must be None or a finite number > 0, got {h0!r}.")
    return float(h0)


class HypergradientStrategy:
    """Base class: a way to approximate ``H^{-1} b``.

    Attributes
    ----------
    name : str
        The name :func:`get_strategy` knows it by.
    uses_memory : bool
        Whether it reads the inner solver's L-BFGS memory.
    uses_hessp : bool
        Whether it needs Hessian-vector products.
    warm_start : bool
        Whether it uses the previous outer iteration's ``z`` as a start.
    approximates_inverse : bool
        Whether ``z`` is meant as an approximation of ``H^{-1} b`` (False for
        Jacobian-Free, which drops ``H^{-1}``).
    uses_opa : bool
        Whether the inner solver must insert OPA pairs (:class:`ShineOPA`).

    The outer loop reads these flags through the properties below
    (:attr:`needs_stop_check`, :attr:`correction_is_z`), in one place each.
    """

    name = "base"
    uses_memory = False
    uses_hessp = True
    warm_start = False
    approximates_inverse = True
    uses_opa = False

    @property
    def needs_stop_check(self) -> bool:
        """Whether a small step may be this strategy's own error (it estimates
        ``H^-1`` without Hessian products: SHINE), so that a stop on ``tol`` is
        checked by conjugate gradient first."""
        return self.approximates_inverse and not self.uses_hessp

    @property
    def correction_is_z(self) -> bool:
        """Whether ``z`` itself is the vector of the first-order correction of the
        outer value (``H^-1 grad_x g``); otherwise the inner solver's estimate
        applied to ``grad_x g`` is (Jacobian-Free)."""
        return self.approximates_inverse

    def opa(self, problem, alpha, k):
        """What the inner solver of outer iteration ``k`` must insert OPA pairs along:
        ``(direction, period)`` (``direction(x) = grad_x g(x, alpha)``), or ``None``."""
        return None

    def solve(self, hessp, b, *, eps, init=None, memory=None):  # pragma: no cover
        """Approximate ``H^{-1} b``.

        Parameters
        ----------
        hessp : callable
            ``v -> H v``.
        b : ndarray of shape (n_params,)
        eps : float
            Current tolerance of the outer loop (relative).
        init : ndarray of shape (n_params,), default=None
            A starting guess (the previous ``z``).
        memory : LbfgsMemory, default=None
            The inner solver's curvature pairs.

        Returns
        -------
        z : ndarray of shape (n_params,)
        n_hvp : int
            Hessian-vector products used.
        """
        raise NotImplementedError

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def conjugate_gradient(hessp, b, *, rtol, init=None, max_iter=1000):
    """Conjugate gradient on ``H z = b`` (SciPy's ``cg``), counting Hessian products.

    Parameters
    ----------
    hessp : callable
        ``v -> H v`` (``H`` symmetric positive definite).
    b : ndarray of shape (n,)
    rtol : float
        Relative residual tolerance.
    init : ndarray of shape (n,), default=None
        Starting guess.
    max_iter : int, default=1000

    Returns
    -------
    z : ndarray of shape (n,)
    n_hvp : int
        Hessian-vector products used.
    converged : bool
    """
    n_hvp = 0

    def matvec(v):
        nonlocal n_hvp
        n_hvp += 1
        return hessp(np.ravel(v))

    if max_iter <= 0:
        return (np.zeros_like(b) if init is None else np.array(init)), 0, False
    # Solved for b / ||b|| (the same z, rescaled): CG's inner products neither under-
    # nor overflow whatever the scale of the data.
    bnorm = float(np.linalg.norm(b))
    if not (bnorm > 0 and np.isfinite(bnorm)):
        return np.zeros_like(b), 0, bnorm == 0
    op = LinearOperator((b.size, b.size), matvec=matvec, dtype=np.float64)
    z, info = cg(op, b / bnorm, x0=None if init is None else np.asarray(init) / bnorm,
                 rtol=rtol, atol=0.0, maxiter=max_iter)
    return z * bnorm, n_hvp, info == 0


class Exact(HypergradientStrategy):
    """Dense solve of ``H z = b`` (``n_params`` Hessian-vector products).

    Parameters
    ----------
    max_params : int, default=5000
        Refuse problems larger than this (the dense Hessian would not fit).
    """

    name = "exact"

    def __init__(self, max_params: int = 5000):
        self.max_params = _check_int("max_params", max_params, 1, "exact")

    def solve(self, hessp, b, *, eps, init=None, memory=None):
        n = b.size
        if n > self.max_params:
            raise ValueError(
                f"method='exact' builds the dense {n} x {n} Hessian; it is meant for "
                f"small problems (n_params <= max_params={self.max_params}). Use "
                "'cg' for an exact-in-the-limit method on large problems."
            )
        H = hessp(np.eye(n))
        H = 0.5 * (H + H.T)
        return np.linalg.solve(H, b), n


class ConjugateGradient(HypergradientStrategy):
    """HOAG's backward pass: conjugate gradient at relative tolerance ``eps``.

    Parameters
    ----------
    max_iter : int, default=1000
        Cap on CG iterations; reaching it warns.
    warm_start : bool, default=True
        Start from the previous outer iteration's ``z``.
    """

    name = "cg"
    _warn_at_cap = True

    def __init__(self, max_iter: int = 1000, warm_start: bool = True):
        self.max_iter = _check_int("max_iter", max_iter, 1, "cg")
        self.warm_start = bool(warm_start)

    def solve(self, hessp, b, *, eps, init=None, memory=None):
        z, n_hvp, ok = conjugate_gradient(hessp, b, rtol=eps,
                                          init=init if self.warm_start else None,
                                          max_iter=self.max_iter)
        if not ok and self._warn_at_cap:
            warnings.warn(
                f"Conjugate gradient did not reach the relative tolerance {eps:.2g} in "
                f"max_iter={self.max_iter} iterations; increase the CG cap "
                "(hypergradient_params={'max_iter': ...}).",
                ConvergenceWarning,
                stacklevel=3,
            )
        return z, n_hvp


class TruncatedCG(ConjugateGradient):
    """Conjugate gradient stopped after a fixed small number of iterations (no
    warning when the cap is reached: it is the point).

    Parameters
    ----------
    max_iter : int, default=5
    warm_start : bool, default=True
    """

    name = "truncated-cg"
    _warn_at_cap = False

    def __init__(self, max_iter: int = 5, warm_start: bool = True):
        self.max_iter = _check_int("max_iter", max_iter, 1, "truncated-cg")
        self.warm_start = bool(warm_start)


class Shine(HypergradientStrategy):
    """SHINE: apply the inner L-BFGS inverse-Hessian estimate to ``b``.

    Parameters
    ----------
    h0 : float, default=None
        Initial inverse Hessian of the two-loop recursion; ``None`` uses the
        standard L-BFGS scaling ``s.y / y.y`` of the newest pair.
    """

    name = "shine"
    uses_memory = True
    uses_hessp = False

    def __init__(self, h0: float | None = None):
        self.h0 = _check_h0(h0)

    def solve(self, hessp, b, *, eps, init=None, memory=None):
        if memory is None or len(memory) == 0:
            # No curvature information at all (the inner solve took no step):
            # fall back to the identity, as Jacobian-Free does.
            return np.array(b, dtype=np.float64), 0
        return memory.inv_hvp(b, h0=self.h0), 0


class ShineRefine(HypergradientStrategy):
    """SHINE estimate refined by a few conjugate-gradient iterations.

    Parameters
    ----------
    max_iter : int or None, default=None
        CG cap. ``None`` uses the SHINE paper's schedule
        ``max(int(1 / (100 * sqrt(eps))), 0)``, which grows as ``eps`` shrinks.
    h0 : float, default=None
        As in :class:`Shine`.
    """

    name = "shine-refine"
    uses_memory = True

    def __init__(self, max_iter: int | None = None, h0: float | None = None):
        self.max_iter = _check_int("max_iter", max_iter, 0, "shine-refine", allow_none=True)
        self.h0 = _check_h0(h0)

    def cap(self, eps: float) -> int:
        if self.max_iter is not None:
            return int(self.max_iter)
        return max(int(1.0 / (100.0 * np.sqrt(eps))), 0)

    def solve(self, hessp, b, *, eps, init=None, memory=None):
        z0, _ = Shine(self.h0).solve(hessp, b, eps=eps, memory=memory)
        cap = self.cap(eps)
        if cap == 0:
            return z0, 0
        z, n_hvp, _ = conjugate_gradient(hessp, b, rtol=eps, init=z0, max_iter=cap)
        return z, n_hvp


class ShineOPA(Shine):
    """SHINE with outer-problem awareness (OPA).

    The backward pass is SHINE's; the difference is in the forward pass: the
    NumPy inner L-BFGS inserts, every ``freq_k`` inner iterations, an extra
    curvature pair along ``H_k grad_x g(x)`` (the direction SHINE will be asked
    about), so the estimate is good where it is used. Needs
    ``inner_solver="numpy"``.

    Parameters
    ----------
    freq : int, default=5
        Inner iterations between two OPA pairs at the first outer iteration.
    speedup : int, default=10
        Every ``speedup`` outer iterations the period is divided by one more:
        ``freq_k = max(min_freq, freq // (1 + k // speedup))`` (the outer
        gradient matters more as the tolerance tightens).
    min_freq : int, default=1
    h0 : float, default=None
        As in :class:`Shine`.
    """

    name = "shine-opa"
    uses_opa = True

    def __init__(self, freq: int = 5, speedup: int = 10, min_freq: int = 1,
                 h0: float | None = None):
        super().__init__(h0=h0)
        self.freq = _check_int("freq", freq, 1, "shine-opa")
        self.speedup = _check_int("speedup", speedup, 1, "shine-opa")
        self.min_freq = _check_int("min_freq", min_freq, 1, "shine-opa")

    def opa_period(self, k: int) -> int:
        """OPA period (inner iterations) at outer iteration ``k``."""
        return max(int(self.min_freq), int(self.freq) // (1 + int(k) // int(self.speedup)))

    def opa(self, problem, alpha, k):
        return (lambda v: problem.outer_value_grad(v, alpha)[1]), self.opa_period(k)


class JacobianFree(HypergradientStrategy):
    """Jacobian-Free backward pass: ``z = b`` (the inverse Hessian replaced by identity)."""

    name = "jacobian-free"
    uses_hessp = False
    approximates_inverse = False

    def solve(self, hessp, b, *, eps, init=None, memory=None):
        return np.array(b, dtype=np.float64), 0


STRATEGIES = {
    cls.name: cls
    for cls in (Exact, ConjugateGradient, TruncatedCG, Shine, ShineRefine, ShineOPA,
                JacobianFree)
}


def get_strategy(method, **params) -> HypergradientStrategy:
    """Return a strategy instance from its name (or pass an instance through).

    Parameters
    ----------
    method : str or HypergradientStrategy
        One of ``STRATEGIES`` or an instance.
    **params
        Constructor parameters of the named strategy.
    """
    if isinstance(method, HypergradientStrategy):
        if params:
            raise ValueError("Strategy parameters go to the constructor of an instance.")
        return method
    if method not in STRATEGIES:
        raise ValueError(
            f"Unknown hypergradient method {method!r}; choose one of "
            f"{sorted(STRATEGIES)} or pass a HypergradientStrategy instance."
        )
    try:
        return STRATEGIES[method](**params)
    except TypeError as exc:
        raise InvalidParameterError(
            f"Invalid parameters for hypergradient {method!r}: {exc}") from None


class HypergradientResult(OptimizeResult):
    """Outcome of one hypergradient computation.

    Attributes
    ----------
    value : float
        Outer value ``g(x, alpha)``.
    grad : ndarray of shape (n_hyper,)
        The hypergradient.
    z : ndarray of shape (n_params,)
        The approximation of ``H^{-1} grad_x g`` that was used.
    grad_x : ndarray of shape (n_params,)
        ``grad_x g``.
    n_hvp : int
        Hessian-vector products used.
    time : float
        Wall time of the backward pass (seconds), outer gradient included.
    """


class _ScaledMemory:
    """An L-BFGS memory seen in the coordinates ``u = D^-1/2 z`` of a scaled system."""

    def __init__(self, memory, root):
        self.memory, self.root = memory, root

    def __len__(self):
        return len(self.memory)

    def inv_hvp(self, v, h0=None):
        return self.memory.inv_hvp(v / self.root, h0=h0) / self.root


def compute_hypergradient(problem, x, alpha, strategy, *, eps, memory=None, init=None,
                          metric=None):
    """Hypergradient of ``problem`` at ``(x, alpha)`` with a given strategy.

    Parameters
    ----------
    problem : BilevelProblem
    x : ndarray of shape (n_params,)
        (Approximate) inner solution at ``alpha``.
    alpha : ndarray of shape (n_hyper,)
    strategy : HypergradientStrategy
    eps : float
        Relative tolerance passed to the strategy.
    memory : LbfgsMemory, default=None
        Curvature pairs of the inner solve.
    init : ndarray, default=None
        Warm start for ``z``.
    metric : ndarray of shape (n_params,), default=None
        A positive diagonal ``D`` guessing ``H^-1``'s scale (e.g. one value for the
        weights, another for an intercept): the strategy solves the system scaled
        by it, ``(D^1/2 H D^1/2) u = D^1/2 grad_x g`` with ``z = D^1/2 u``, so that
        its products neither under- nor overflow and an intercept far from the
        weights' scale does not stall conjugate gradient. ``None``: as it is.

    Returns
    -------
    result : HypergradientResult
    """
    t0 = time.perf_counter()
    value, grad_x, grad_alpha = problem.outer_value_grad(x, alpha)
    if strategy.uses_hessp:
        hessp = problem.inner_hessp(x, alpha)
    else:
        def hessp(v):  # pragma: no cover - guarded by uses_hessp
            raise RuntimeError(f"{strategy.name} declared that it uses no Hessian product")
    if metric is None or not strategy.uses_hessp:
        z, n_hvp = strategy.solve(hessp, grad_x, eps=eps, init=init, memory=memory)
    else:
        root = np.sqrt(np.asarray(metric, dtype=np.float64))
        raw = hessp
        u, n_hvp = strategy.solve(
            lambda v: (raw((root * v.T).T).T * root).T, root * grad_x, eps=eps,
            init=None if init is None else init / root,
            memory=None if memory is None else _ScaledMemory(memory, root))
        z = root * u
    grad = grad_alpha - problem.inner_cross(x, alpha, z)
    return HypergradientResult(
        value=float(value), grad=np.asarray(grad, dtype=np.float64), z=z, grad_x=grad_x,
        n_hvp=int(n_hvp), time=time.perf_counter() - t0,
    )
