"""When the outer loop stops, and the tolerance schedule it walks along."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["StoppingRule"]


class StoppingRule:
    """The tolerance schedule and the stopping tests of the outer loop.

    Tests, after each iteration:

    * ``tol``: the accepted step moved ``alpha`` by at most ``tol`` (max-norm);
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
        self.schedule = options.schedule()
        self.k_eps = 0  # index into the schedule (jumps ahead when a stop comes too early)
        self.accepted_values = []  # the last accepted outer value, after each iteration
        self.n_flat = 0  # accepted points in a row whose next step promised little

    def next_eps(self) -> float:
        """Tolerance of the next inner solve."""
        eps = self.schedule(self.k_eps)
        self.k_eps += 1
        return eps

    def check(self, step, base, predicted=None):
        """``(message, tighten)`` after an iteration.

        ``predicted`` is the decrease of the outer value the next step promises
        (``None``: no curvature estimate yet).

        ``message`` is the reason to stop (``None``: go on); ``tighten`` means
        a stop came before the solves were tight enough to trust it: the
        schedule has jumped and the accepted point must be solved again.
        """
        opts = self.options
        stop = None
        if step is not None and np.max(np.abs(step)) <= opts.tol:
            stop = f"converged: step on alpha <= tol={opts.tol}"
        values = self.accepted_values
        values.append(base["value"])
        if (stop is None and opts.value_tol > 0 and len(values) > opts.patience
                and values[-1 - opts.patience] - values[-1]
                <= opts.value_tol * abs(values[-1])):
            stop = (f"converged: the outer value decreased by at most value_tol="
                    f"{opts.value_tol} (relative) over the last patience={opts.patience} "
                    "iterations")
        if predicted is not None:  # a new accepted point with a secant model
            flat = opts.value_tol > 0 and predicted <= opts.value_tol * abs(values[-1])
            self.n_flat = self.n_flat + 1 if flat else 0
        if stop is None and self.n_flat >= 2:
            stop = (f"converged: at the last two points the next step would decrease the "
                    f"outer value by at most value_tol={opts.value_tol} (relative)")
        gate = self.gate()
        if stop is not None and base["eps"] > gate:
            # Too early to trust: tighten the schedule and solve the point again.
            jump = next((j for j in range(self.k_eps, self.k_eps + 100_000)
                         if self.schedule(j) <= gate), None)
            if jump is not None:
                self.k_eps = jump
                values.clear()
                self.n_flat = 0
                return None, True
        return stop, False

    def gate(self) -> float:
        """The inner tolerance a stop must have been reached at to count: ``stop_eps``
        (``None``: any)."""
        return 1.0 if self.options.stop_eps is None else self.options.stop_eps

    def out_of_time(self, clock: float) -> bool:
        return self.options.max_time is not None and clock >= self.options.max_time

    def can_converge(self) -> bool:
        """Whether any stopping test is active (otherwise running out of
        iterations is what was asked for)."""
        return self.options.tol > 0 or self.options.value_tol > 0

    def warn(self, status: int, *, stacklevel: int = 2) -> None:
        """A ``ConvergenceWarning`` when ``max_iter`` ran out before a stopping test
        held (``status`` 1) while one was active."""
        opts = self.options
        if status == 1 and self.can_converge():
            warnings.warn(
                f"HOAG did not meet its stopping tests (step <= tol={opts.tol}, or a relative "
                f"decrease <= value_tol={opts.value_tol} over {opts.patience} iterations) "
                f"within max_iter={opts.max_iter} outer iterations; increase max_iter, tol or "
                "value_tol.", ConvergenceWarning, stacklevel=stacklevel + 1)
