"""When the outer loop stops, why, and the tolerance schedule it walks along.

The reason a loop stopped is a value (:class:`Stop`: a :class:`StopReason` and
its fields); words are made from it once, by :func:`describe`, in the names of
whoever reports it (:class:`Wording`: ``hoag`` says ``bounds`` and ``alpha``,
an estimator ``C_bounds``), and :func:`warn_stop` turns the stops a user must
hear about into warnings that carry the same fields (:class:`BoundWarning`).
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass, fields

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["BoundWarning", "Stop", "StopReason", "StoppingRule", "Wording", "describe",
           "warn_stop"]


class StopReason(enum.Enum):
    """Why an outer loop stopped; ``status`` is :class:`~hoag_shine.HoagResult`'s code."""

    STEP = 0  #: an accepted step moved alpha by at most tol, or a trial that did was rejected
    VALUE = 1  #: the outer value decreased by at most value_tol over patience iterations
    PREDICTED = 2  #: the next steps promise at most value_tol (secant model)
    ZERO_GRADIENT = 3  #: the hypergradient is exactly zero
    MAX_ITER = 4  #: max_iter outer iterations ran out
    TIME = 5  #: the max_time budget is spent
    CALLBACK = 6  #: the callback raised StopIteration
    BOUND = 7  #: at a bound that the hypergradient points out of
    FAILURE = 8  #: the search cannot proceed (see ``Stop.failure``)

    @property
    def status(self) -> int:
        """0: converged; 1: max_iter; 2: time budget; 3: callback; 4: at a bound;
        5: failure."""
        return _STATUS[self]

    @property
    def converged(self) -> bool:
        return self.status == 0


_STATUS = {StopReason.STEP: 0, StopReason.VALUE: 0, StopReason.PREDICTED: 0,
           StopReason.ZERO_GRADIENT: 0, StopReason.MAX_ITER: 1, StopReason.TIME: 2,
           StopReason.CALLBACK: 3, StopReason.BOUND: 4, StopReason.FAILURE: 5}


@dataclass(frozen=True)
class Stop:
    """Why a loop stopped, as values.

    Attributes
    ----------
    reason : StopReason
    sides : ndarray of int8 of shape (n_hyper,) or None
        With ``BOUND``: per log-penalty, -1 at its lower bound, +1 at its upper,
        0 inside.
    failure : str or None
        With ``FAILURE``: ``"nonfinite"``, ``"no-progress"`` or ``"zero-gradient"``.
    alpha : ndarray or None
        The log-penalties the failure or the stop happened at.
    inner_message : str
        With a ``"no-progress"`` failure, the inner solver's message.
    budget_left : float or None
        With ``TIME``, for a later stage of a staged search: what was left of
        the budget when it started.
    fallback : bool
        A staged search kept its first stage's answer (the later stage did not
        lower the validation loss).
    """

    reason: StopReason
    sides: np.ndarray | None = None
    failure: str | None = None
    alpha: np.ndarray | None = None
    inner_message: str = ""
    budget_left: float | None = None
    fallback: bool = False

    @property
    def status(self) -> int:
        return self.reason.status

    def replace(self, **changes) -> "Stop":
        """A copy with some fields replaced."""
        return Stop(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


@dataclass(frozen=True)
class Wording:
    """How the owner of a report names what a stop speaks of.

    Parameters
    ----------
    who : str
        The subject of a warning (``"HOAG"``).
    bounds_name : str
        The parameter holding the bounds (``"bounds"``, ``"C_bounds"``).
    bounds_text : str or None
        Its value as the owner shows it (``None``: ``repr`` of the options').
    flip : bool
        Whether the owner's parameter decreases with the log-penalty (``C =
        exp(-alpha)``): its lower bound is the log-penalty's upper.
    """

    who: str = "HOAG"
    bounds_name: str = "bounds"
    bounds_text: str | None = None
    flip: bool = False

    def side(self, sides) -> str:
        """``"lower"``, ``"upper"`` or ``""`` (mixed), in the owner's terms."""
        sides = np.asarray(sides)
        hit = sides[sides != 0]
        if hit.size and np.all(hit < 0):
            return "upper" if self.flip else "lower"
        if hit.size and np.all(hit > 0):
            return "lower" if self.flip else "upper"
        return ""


class BoundWarning(ConvergenceWarning):
    """The search stopped at a bound that the hypergradient points out of: the
    optimum lies at or beyond it.

    Attributes
    ----------
    side : str
        ``"lower"``, ``"upper"`` or ``""`` (several hyperparameters, at both), in the
        terms of the parameter named by ``bounds_name``.
    bounds_name : str
        The parameter to widen (``"bounds"``, ``"C_bounds"``, ``"alpha_bounds"``).
    sides : ndarray of int8
        Per log-penalty: -1 at its lower bound, +1 at its upper, 0 inside.
    """

    def __init__(self, message, *, side="", bounds_name="bounds", sides=None):
        super().__init__(message)
        self.side, self.bounds_name = side, bounds_name
        self.sides = None if sides is None else np.asarray(sides)


def describe(stop: Stop, options, wording: Wording = Wording()) -> str:
    """The stop in words (``HoagResult.message``), in ``wording``'s names."""
    opts, r = options, stop.reason
    if r is StopReason.STEP:
        text = f"converged: step on alpha <= tol={opts.tol}"
    elif r is StopReason.VALUE:
        text = (f"converged: the outer value decreased by at most value_tol={opts.value_tol} "
                f"(relative) over the last patience={opts.patience} iterations")
    elif r is StopReason.PREDICTED:
        text = ("converged: at the last two points the next step would decrease the outer "
                f"value by at most value_tol={opts.value_tol} (relative)")
    elif r is StopReason.ZERO_GRADIENT:
        text = "converged: the hypergradient is zero"
    elif r is StopReason.MAX_ITER:
        text = f"reached max_iter={opts.max_iter} outer iterations"
    elif r is StopReason.TIME:
        text = f"stopped by the time budget max_time={opts.max_time}s"
        if stop.budget_left is not None:
            text += f" (the per-class stage had {stop.budget_left:.3g}s of it left)"
    elif r is StopReason.CALLBACK:
        text = "stopped by the callback"
    elif r is StopReason.BOUND:
        text = (f"stopped at the {wording.side(stop.sides)} bound of {_bounds(opts, wording)}: "
                "the optimum lies at or beyond it (the hypergradient points out of the box)"
                ).replace("  ", " ")
    else:
        text = _failure_text(stop)
    if stop.fallback:
        text += ("; the per-class penalties did not lower the shared penalty's validation "
                 "loss: it is kept")
    return text


def _bounds(opts, wording):
    value = opts.bounds if wording.bounds_text is None else wording.bounds_text
    return f"{wording.bounds_name}={value}"


def _failure_text(stop):
    alpha = stop.alpha
    if stop.failure == "nonfinite":
        return (f"the outer value or hypergradient at alpha={alpha} is not finite: the data "
                "or the log-penalties are outside what floating point can evaluate; rescale "
                "the features or narrow the bounds")
    if stop.failure == "no-progress":
        return (f"the first inner solve at alpha={alpha} made no progress "
                f"({stop.inner_message}); the features are probably badly scaled "
                "(standardise them) or max_inner_iter is too small")
    return (f"the hypergradient is exactly zero at the start alpha={alpha}: the "
            "validation loss does not vary with the penalty there (all-zero features, "
            "or a strategy that returned no backward vector); start elsewhere or check "
            "the data and hypergradient_params")


def warn_stop(stop: Stop, options, wording: Wording = Wording(), *, stacklevel: int = 2):
    """Warn about a stop a user must hear of: a failure, a bound (:class:`BoundWarning`),
    ``max_iter`` running out while a stopping test was active, or the time budget."""
    opts, who = options, wording.who
    if stop.reason is StopReason.FAILURE:
        warnings.warn(f"{who} stopped: {describe(stop, opts, wording)}.", ConvergenceWarning,
                      stacklevel=stacklevel + 1)
    elif stop.reason is StopReason.BOUND:
        warnings.warn(BoundWarning(
            f"{who} {describe(stop, opts, wording)}; widen {wording.bounds_name} to search "
            "further.", side=wording.side(stop.sides), bounds_name=wording.bounds_name,
            sides=stop.sides), stacklevel=stacklevel + 1)
    elif stop.reason is StopReason.MAX_ITER and (opts.tol > 0 or opts.value_tol > 0):
        warnings.warn(
            f"{who} did not meet its stopping tests (step <= tol={opts.tol}, or a relative "
            f"decrease <= value_tol={opts.value_tol} over {opts.patience} iterations) "
            f"within max_iter={opts.max_iter} outer iterations; increase max_iter, tol or "
            "value_tol.", ConvergenceWarning, stacklevel=stacklevel + 1)
    elif stop.reason is StopReason.TIME:
        warnings.warn(
            f"{who} {describe(stop, opts, wording)} before a stopping test held: the answer "
            "is the best point reached by then; increase max_time (or None) to finish the "
            "search.", ConvergenceWarning, stacklevel=stacklevel + 1)


class StoppingRule:
    """The tolerance schedule and the stopping tests of the outer loop.

    Tests, after each iteration:

    * ``tol``: the accepted step moved ``alpha`` by at most ``tol`` (max-norm), or
      a trial that did was rejected: nothing within ``tol`` along the descent
      direction is better than the accepted point (without this test, near an
      optimum whose values the inexact solves blur, the loop went on solving
      the accepted point again and rejecting ever shorter trials: 20news with
      ``cv=10``, ten splits: two 12-23% faster, the same ``C_`` to 0.1%, the
      others unchanged: ``docs/benchmarks.md``);
    * ``value_tol``, observed: the last accepted outer value is lower than the
      one ``patience`` iterations earlier by at most ``value_tol`` times its
      magnitude;
    * ``value_tol``, predicted: at two accepted points in a row, the next
      step, on the quadratic model of the outer value the step rule uses
      (``grad . d + L ||d||^2 / 2``, with a secant curvature ``L``), would
      decrease it by at most ``value_tol`` times its magnitude: further steps
      cannot change the model by more than that (near the optimum the
      validation loss is flat, and checking it more closely would take tight
      solves for nothing);
    * with ``stop_eps``, they count only once the accepted point was solved at
      a tolerance ``<= stop_eps``: an earlier stop jumps the schedule there
      (the accepted point is then solved again, and the search goes on);
    * ``max_time``: the wall-clock budget is spent (not a success).

    Parameters
    ----------
    options : HoagOptions
    """

    def __init__(self, options):
        self.options = options
        self.tol, self.value_tol = options.tol, options.value_tol
        self.polishing = False
        self.schedule = options.schedule()
        self.k_eps = 0  # index into the schedule (jumps ahead when a stop comes too early)
        self.accepted_values = []  # the last accepted outer value, after each iteration
        self.since_move = 0  # iterations since the last accepted move
        self.n_flat = 0  # accepted points in a row whose next step promised little

    def next_eps(self) -> float:
        """Tolerance of the next inner solve (held constant while polishing)."""
        if self.polishing:
            return self.held_eps
        eps = self.schedule(self.k_eps)
        self.k_eps += 1
        return eps

    def check(self, step, base, predicted=None, rejected=None):
        """``(reason, tighten)`` after an iteration.

        ``predicted`` is the decrease of the outer value the next step promises
        (``None``: no curvature estimate yet); ``rejected`` the max-norm move of
        the trial this iteration rejected (``None``: none was).

        ``reason`` is a :class:`StopReason` to stop for (``None``: go on); ``tighten`` means
        a stop came before the solves were tight enough to trust it: the
        schedule has jumped and the accepted point must be solved again.
        """
        opts = self.options
        stop = None
        if step is not None and np.max(np.abs(step)) <= self.tol:
            stop = StopReason.STEP
        elif rejected is not None and rejected <= self.tol:
            stop = StopReason.STEP
        values = self.accepted_values
        if values and base.value - values[-1] > self.value_tol * abs(base.value):
            # The accepted value went up: the point was solved again, more tightly,
            # so the values before came from looser solves (an inexact solve can
            # flatter a weak penalty) and are not comparable: the window restarts.
            values.clear()
            self.n_flat = 0
        values.append(base.value)
        self.since_move = 0 if step is not None else self.since_move + 1
        if (stop is None and self.value_tol > 0 and len(values) > opts.patience
                and values[-1 - opts.patience] - values[-1]
                <= self.value_tol * abs(values[-1])):
            stop = StopReason.VALUE
        if predicted is not None:  # a new accepted point with a secant model
            flat = self.value_tol > 0 and predicted <= self.value_tol * abs(values[-1])
            self.n_flat = self.n_flat + 1 if flat else 0
        if stop is None and self.n_flat >= 2:
            stop = StopReason.PREDICTED
        gate = self.gate()
        if stop is not None and base.eps > gate and not self.polishing:
            # Too early to trust: tighten the schedule and solve the point again.
            jump = next((j for j in range(self.k_eps, self.k_eps + 100_000)
                         if self.schedule(j) <= gate), None)
            if jump is not None:
                self.k_eps = jump
                values.clear()
                self.n_flat = 0
                return None, True
        return stop, False

    def polish(self, tol, eps) -> None:
        """From now on: stop only on a step of at most ``tol``; every inner solve at
        ``eps`` (or the last tolerance, if smaller)."""
        self.polishing, self.tol, self.value_tol = True, tol, 0.0
        self.held_eps = min(eps, self.schedule(max(self.k_eps - 1, 0)))
        self.accepted_values.clear()
        self.n_flat = 0

    def start_at(self, eps) -> None:
        """Go on from the schedule's first tolerance at most ``eps``."""
        self.k_eps = self._first_at_most(eps, self.k_eps)

    def _first_at_most(self, eps, k0):
        return next((j for j in range(k0, k0 + 100_000) if self.schedule(j) <= eps), k0)

    @property
    def stalled(self) -> bool:
        """Whether no move was accepted over the last ``patience`` iterations (every
        step rejected: a hypergradient that points the wrong way)."""
        return self.since_move >= self.options.patience

    def gate(self) -> float:
        """The inner tolerance a stop must have been reached at to count: ``stop_eps``
        (``None``: any)."""
        return 1.0 if self.options.stop_eps is None else self.options.stop_eps

    def out_of_time(self, clock: float) -> bool:
        return self.options.max_time is not None and clock >= self.options.max_time
