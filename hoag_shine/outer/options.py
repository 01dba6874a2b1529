"""The outer loop's settings: one object, one default each, validated once."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._params import (Callable, Instance, Interval, InvalidParameterError, Options,
                       check_unknown, validate_params)
from ..hypergrad import STRATEGIES, HypergradientStrategy, get_strategy
from ..inner import PAIRS_PRECISIONS

__all__ = ["HoagOptions", "tolerance_schedule", "TOL_SCHEDULES"]

_EPS_FLOOR = 1e-12

TOL_SCHEDULES = ("exponential", "quadratic", "cubic", "exact")


def tolerance_schedule(kind="exponential", *, eps0=1e-2, decay=0.6):
    """Return ``k -> eps_k``, the relative tolerance of the k-th inner solve.

    Parameters
    ----------
    kind : {"exponential", "quadratic", "cubic", "exact"} or callable
        ``eps0 * decay**k``, ``eps0 / (k + 1)**2``, ``eps0 / (k + 1)**3`` or a
        constant ``1e-12``. A callable is wrapped so that every value it
        returns is checked (a finite number in (0, 1)).
    eps0 : float, default=1e-2
        First tolerance.
    decay : float, default=0.6
        Factor of the exponential schedule, in (0, 1].

    Returns
    -------
    schedule : callable
        ``schedule(k)`` for ``k = 0, 1, ...``; never below 1e-12.
    """
    if callable(kind):
        return _checked(kind)
    if not (isinstance(eps0, numbers.Real) and 0 < eps0 < 1):
        raise InvalidParameterError(f"eps0 must be in (0, 1), got {eps0!r}.")
    if kind == "exponential":
        if not (isinstance(decay, numbers.Real) and 0 < decay <= 1):
            raise InvalidParameterError(f"decay must be in (0, 1], got {decay!r}.")
        return lambda k: max(eps0 * decay**k, _EPS_FLOOR)
    if kind == "quadratic":
        return lambda k: max(eps0 / (k + 1) ** 2, _EPS_FLOOR)
    if kind == "cubic":
        return lambda k: max(eps0 / (k + 1) ** 3, _EPS_FLOOR)
    if kind == "exact":
        return lambda k: _EPS_FLOOR
    raise InvalidParameterError(
        f"Unknown tol_schedule {kind!r}; use 'exponential', 'quadratic', 'cubic', "
        "'exact' or a callable k -> eps_k."
    )


def _checked(schedule):
    def checked(k):
        eps = schedule(k)
        if not (isinstance(eps, numbers.Real) and np.isfinite(eps) and 0 < eps < 1):
            raise InvalidParameterError(
                f"tol_schedule({k}) returned {eps!r}; a tolerance schedule must return a "
                "finite relative tolerance in (0, 1).")
        return max(float(eps), _EPS_FLOOR)

    return checked


_REAL = numbers.Real
_INT = numbers.Integral


@dataclass(frozen=True)
class HoagOptions:
    """Settings of the HOAG outer loop (:func:`~hoag_shine.hoag`).

    One object holds every knob of the loop, with one default each; it is
    validated when it is made (type, range, finiteness) and never changes.
    :func:`~hoag_shine.hoag` takes it as ``options=`` or builds it from its
    keyword arguments; the estimators build it from their constructor
    parameters (their names are the same, but for the penalty-specific start
    and bounds).

    Parameters
    ----------
    hypergradient : str or HypergradientStrategy, default="shine"
        How to approximate the inverse-Hessian-vector product: "shine",
        "shine-refine", "shine-opa", "cg", "truncated-cg", "jacobian-free" or
        "exact".
    hypergradient_params : dict, default=None
        Constructor parameters of the strategy (e.g. ``{"max_iter": 5}``).
    max_iter : int, default=30
        Outer iterations (inner solves, the first and rejected ones included).
    tol : float, default=1e-2
        Stop when a step moves ``alpha`` by at most ``tol`` (max-norm, log
        scale: ``C`` by about 1%), accepted or rejected (then the accepted
        point stands: nothing within ``tol`` along the descent is better).
    value_tol : float, default=3e-4
        Also stop when the outer value has settled: the last accepted value is
        lower than the one ``patience`` iterations earlier by at most
        ``value_tol`` times its magnitude, or the next step promises a
        decrease of at most that much (on the secant model of the step rule).
        ``0`` disables these tests; ``tol=0`` and ``value_tol=0`` run all
        ``max_iter`` iterations (what it costs in test loss:
        ``docs/benchmarks.md``). The default is near the noise of the values
        themselves: on 20news an accepted point's summed validation loss moved
        by 7e-4 of itself when solved again at the next tolerance. Ten 20news
        splits, 5 folds: 1e-4 took 92.6 s in all, 3e-4 72.0 s (5e-4 74.7 s),
        with the same or a lower test log-loss on every split; every raw-data
        case of ``benchmarks/raw_data.py`` stayed within 0.01% of its grid's
        best.
    polish_tol : float, default=1e-4
        When a stopping test first holds, polish the answer: the backward
        vectors refined by conjugate gradient from then on, and the steps go on
        until one moves ``alpha`` by at most ``polish_tol`` (``C`` by about
        0.01%; ``tol`` if that is smaller) with the inner solves tightened to a
        relative 1e-6, within ``max_iter``. The validation loss is flat near its
        minimum: without it, where the search stops in the valley depends on its
        path (and so on details such as an offset on the features). On large
        problems (folds' parameters times samples over 1e6) only a stop on
        ``tol`` with SHINE is polished, to ``tol`` at the same inner tolerance:
        a check that the small step was not SHINE's own error (see
        :func:`~hoag_shine.hoag`). ``0``: no polishing.
    patience : int, default=5
        Outer iterations over which ``value_tol`` is measured.
    stop_eps : float or None, default=None
        When given, the stopping tests count only once the inner tolerance
        ``eps_k`` is at most ``stop_eps``: when one would fire earlier, the
        schedule jumps to its first tolerance ``<= stop_eps``, the accepted
        point is solved again there, and the search goes on. ``None``: they
        count at any tolerance (a stop is polished or checked instead, see
        ``polish_tol``).
    tol_schedule : {"exponential", "quadratic", "cubic", "exact"} or callable, \
default="exponential"
        Schedule of the relative tolerance ``eps_k``; the k-th inner solve
        stops when ``||grad_x h|| <= eps_k * ||grad_x h(x_init, alpha0)||``
        and conjugate-gradient strategies stop at relative residual ``eps_k``.
    eps0 : float, default=1e-2
        First tolerance of the schedule (loose: far from the optimum a rough
        solve gives a good enough direction).
    decay : float, default=0.6
        Factor of the exponential schedule (HOAG uses 0.9, the SHINE paper
        0.78).
    bounds : (float, float) or (array, array), default=(-12, 12)
        Box on the log-penalties ``alpha``; steps are projected onto it.
    maxcor : int or None, default=None
        Memory of the inner L-BFGS (the curvature pairs SHINE reuses).
        ``None``: 30 pairs, or 15 where the folds' memories of 30 pairs do not
        fit ``pairs_memory_mb`` in double precision (many parameters: there
        the reading of the pairs sets an inner iteration's cost, see
        :func:`~hoag_shine.inner.default_maxcor`).
    max_inner_iter : int, default=1000
        Iteration cap of each inner solve.
    step_rule : {"secant", "hoag"}, default="secant"
        ``"secant"``: after each accepted step the outer step is ``1 / L`` with
        ``L`` the secant curvature of the last two hypergradients
        (Barzilai-Borwein), when positive. ``"hoag"``: ``L`` only changes by
        ``step_growth`` after a sufficient decrease and doubles on a rejection.
    step_growth : float, default=0.95
        Factor applied to ``L`` after a step with sufficient decrease (HOAG's
        rule), or when the secant curvature is not positive.
    first_step : float, default=2.0
        Length (Euclidean, divided by ``sqrt(n_hyper)``) of the first step.
    max_step : float, default=3.0
        Largest move of any log-penalty in one step (``"secant"`` rule).
    max_step_ratio : float, default=3.0
        A step moves no log-penalty by more than ``max_step_ratio`` times the
        largest move of the last accepted step (``"secant"`` rule).
    scan : bool, default=True
        With the data-scaled start (``alpha0=None``), look over the bounds
        before the local search (:func:`~hoag_shine.outer.scan.coarse_scan`):
        the folds are solved at tolerance ``eps0`` (and to a tenth of each warm
        start's gradient), without backward pass, at points ``scan_step``
        apart from ``e^12`` above the start down (warm-started: a
        regularisation path), until the validation loss has clearly risen
        twice in a row; the search starts at the lowest point, with a first
        step of at most ``scan_step / 2``. Without it, a search started where
        the validation loss is flat or bumpy (raw data: one large column,
        offsets) can stop there. Not done from a given ``alpha0``, nor on large
        problems (folds' parameters times samples over 1e6, where it would cost
        more than the search).
    scan_step : float, default=2.0
        Distance, in log-penalty, between two points of the scan.
    warm_memory : bool, default=True
        Carry the L-BFGS curvature pairs from one inner solve to the next,
        shifted exactly for the new penalty.
    pairs_memory_mb : float, default=1024
        Memory, in MB, that the inner solvers' curvature pairs of all folds may
        take together (with many parameters, the largest part of a fit's
        memory: ``2 * maxcor`` vectors per fold). Within it, the precision
        ``pairs_precision`` asks; beyond it single precision (products accurate
        to ~1e-6, scale-free); and when even that is too much, the pairs of the
        folds at rest wait in temporary files while one fold is solved (read
        back exactly). With ``n_jobs`` the plan is the serial one (so is the
        answer); the pairs in use are one memory per worker (20 classes, 2 workers:
        2 x 0.3 GB). See :func:`~hoag_shine.inner.plan_pairs`.
    pairs_precision : {"auto", "double", "single"}, default="auto"
        Precision of the inner solves' pairs where ``pairs_memory_mb`` allows
        both: ``"auto"``, single from 10,000 parameters (reading the pairs then
        costs more than the products; 20news, 20 splits: 11% faster, the same
        test log-loss), double below.
    inner_solver : {"numpy", "scipy"}, default="numpy"
        The project's L-BFGS (starts from the carried pairs, supports OPA) or
        SciPy's L-BFGS-B (starts each solve with an empty memory).
    max_time : float or None, default=None
        Wall-clock budget in seconds (held-out evaluations not counted); the
        loop stops after the iteration that exceeds it.
    n_jobs : int or None, default=None
        Worker processes for the folds (``-1``: every core; ``None`` follows
        ``joblib.parallel_config``). Each fold lives on one worker: its data go
        there once, its warm start and curvature pairs stay there, and per
        outer step only log-penalties, tolerances, scalars and hypergradients
        cross; the answer is the serial one. Processes start only when the
        folds' work pays for them (stored training entries times classes,
        summed, at least 5e6: ``benchmarks/n_jobs.py``). With
        ``joblib.parallel_config(backend="dask")`` the folds go to the dask
        cluster's workers; ``"threading"``: threads; ``"loky"``, ``"multiprocessing"``: processes.
    """

    hypergradient: Any = "shine"
    hypergradient_params: Any = None
    max_iter: int = 30
    tol: float = 1e-2
    value_tol: float = 3e-4
    polish_tol: float = 1e-4
    patience: int = 5
    stop_eps: float | None = None
    tol_schedule: Any = "exponential"
    eps0: float = 1e-2
    decay: float = 0.6
    bounds: Any = (-12.0, 12.0)
    maxcor: Any = None
    max_inner_iter: int = 1000
    step_rule: str = "secant"
    step_growth: float = 0.95
    first_step: float = 2.0
    max_step: float = 3.0
    max_step_ratio: float = 3.0
    scan: bool = True
    scan_step: float = 2.0
    warm_memory: bool = True
    pairs_memory_mb: float = 1024.0
    pairs_precision: str = "auto"
    inner_solver: str = "numpy"
    max_time: float | None = None
    n_jobs: int | None = None
    _strategy: Any = field(default=None, init=False, repr=False, compare=False)

    #: What each setting accepts (a value is valid if it meets one entry).
    CONSTRAINTS = None  # (set below the class)

    def __post_init__(self):
        if isinstance(self.hypergradient, str) and self.hypergradient not in STRATEGIES:
            raise InvalidParameterError(
                f"Unknown hypergradient {self.hypergradient!r}; choose one of "
                f"{sorted(STRATEGIES)} or pass a HypergradientStrategy instance.")
        validate_params(self.CONSTRAINTS, {k: getattr(self, k) for k in self.CONSTRAINTS},
                        owner="hoag")
        self.bounds_arrays(None)
        # Build the strategy now: bad strategy parameters fail here, not mid-run.
        object.__setattr__(self, "_strategy", get_strategy(
            self.hypergradient, **(self.hypergradient_params or {})))
        if self._strategy.uses_opa and self.inner_solver != "numpy":
            raise InvalidParameterError(
                f"hypergradient={self._strategy.name!r} inserts curvature pairs during the "
                "inner solve, which SciPy's L-BFGS-B cannot do: use inner_solver='numpy'.")

    @classmethod
    def names(cls) -> tuple:
        """The settings' names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def make(cls, options=None, **settings) -> "HoagOptions":
        """``options`` (or the defaults) with ``settings`` replacing some entries.

        Unknown names are rejected with the closest valid one.
        """
        check_unknown(settings, cls.names(), what="hoag setting")
        if options is None:
            return cls(**settings)
        if not isinstance(options, cls):
            raise InvalidParameterError(f"options must be a HoagOptions, got {options!r}.")
        return dataclasses.replace(options, **settings) if settings else options

    def replace(self, **settings) -> "HoagOptions":
        """A copy with some settings replaced (validated again)."""
        return self.make(self, **settings)

    @property
    def strategy(self) -> HypergradientStrategy:
        """The hypergradient strategy these settings name."""
        return self._strategy

    def schedule(self):
        """The tolerance schedule ``k -> eps_k``."""
        return tolerance_schedule(self.tol_schedule, eps0=self.eps0, decay=self.decay)

    def bounds_arrays(self, n_hyper: int | None):
        """``(lower, upper)`` as arrays of length ``n_hyper`` (checked: finite, lower < upper)."""
        b = self.bounds
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise InvalidParameterError(
                f"bounds must be a pair (lower, upper) of log-penalties, got {b!r}.")
        try:
            lo, hi = (np.asarray(v, dtype=np.float64) for v in b)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"bounds must hold numbers, got {b!r}.") from None
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidParameterError(
                f"bounds must be finite log-penalties, got {b!r}; give a finite range such "
                "as (-12, 12).")
        if np.any(lo >= hi):
            raise InvalidParameterError(f"bounds must satisfy lower < upper, got {b!r}.")
        if n_hyper is None:
            return lo, hi
        try:
            return (np.broadcast_to(lo, (n_hyper,)).copy(),
                    np.broadcast_to(hi, (n_hyper,)).copy())
        except ValueError:
            raise InvalidParameterError(
                f"bounds give {lo.shape} and {hi.shape} values for {n_hyper} "
                "hyperparameters; give scalars or one value per hyperparameter.") from None


_CONSTRAINTS = {
    "hypergradient": [Options(*STRATEGIES), Instance(HypergradientStrategy)],
    "hypergradient_params": [Instance(dict), None],
    "max_iter": [Interval(_INT, 1, None)],
    "tol": [Interval(_REAL, 0, None)],
    "value_tol": [Interval(_REAL, 0, None)],
    "polish_tol": [Interval(_REAL, 0, None)],
    "patience": [Interval(_INT, 1, None)],
    "stop_eps": [Interval(_REAL, 0, 1, closed="right"), None],
    "tol_schedule": [Options(*TOL_SCHEDULES), Callable()],
    "eps0": [Interval(_REAL, 0, 1, closed="neither")],
    "decay": [Interval(_REAL, 0, 1, closed="right")],
    "maxcor": [Interval(_INT, 1, None), None],
    "max_inner_iter": [Interval(_INT, 1, None)],
    "step_rule": [Options("secant", "hoag")],
    "step_growth": [Interval(_REAL, 0, 1, closed="right")],
    "first_step": [Interval(_REAL, 0, None, closed="neither")],
    "max_step": [Interval(_REAL, 0, None, closed="neither")],
    "max_step_ratio": [Interval(_REAL, 0, None, closed="neither")],
    "scan": [Options(True, False)],
    "scan_step": [Interval(_REAL, 0, None, closed="neither")],
        "warm_memory": [Options(True, False)],
    "pairs_memory_mb": [Interval(_REAL, 0, None, closed="neither", allow_inf=True)],
    "pairs_precision": [Options(*PAIRS_PRECISIONS)],
    "inner_solver": [Options("numpy", "scipy")],
    "max_time": [Interval(_REAL, 0, None, allow_inf=True), None],
    "n_jobs": [Interval(_INT), None],
}
HoagOptions.CONSTRAINTS = _CONSTRAINTS
