"""The outer step: accept/reject test, first step, secant (or HOAG) step length, bounds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Point", "StepRule"]


@dataclass(frozen=True)
class Point:
    """The last accepted point of the outer loop.

    Attributes
    ----------
    alpha : ndarray of shape (n_hyper,)
    value : float
        Outer value (summed over the folds).
    value_c : float
        Outer value corrected for the inner solutions' inexactness.
    grad : ndarray of shape (n_hyper,)
        Hypergradient.
    eps : float
        Inner tolerance it was solved at.
    """

    alpha: np.ndarray
    value: float
    value_c: float
    grad: np.ndarray
    eps: float


class StepRule:
    """Where the next outer iterate goes, and whether a trial is accepted.

    A step from the last accepted point ``alpha_k`` to ``alpha_t`` is accepted
    when the outer value, corrected for the inner solutions' inexactness, does
    not increase: ``G(alpha_t) <= G(alpha_k) + m``, with ``G = g(x) - z .
    grad_x h(x)`` (``z`` the backward vector of the last accepted point) and
    ``m = (eps_k + eps_t) |g(alpha_k)|``. A rejected step is undone: ``L``
    doubles, the accepted point is solved again at the next tolerance, and the
    next moves stay within half the rejected one until one is accepted.

    The step is ``alpha_k - grad_k / L`` projected onto the bounds. The first
    ``L`` is ``||grad_0|| / (sqrt(n_hyper) first_step)``; then ``"secant"``
    sets ``L`` to the secant curvature of the last two hypergradients (a
    Barzilai-Borwein step; grown by ``step_growth`` when not positive) capped
    so that no log-penalty moves by more than ``max_step`` nor by more than
    ``max_step_ratio`` times the last accepted move; ``"hoag"`` multiplies
    ``L`` by ``step_growth`` after a step with sufficient decrease.

    Parameters
    ----------
    options : HoagOptions
    lower, upper : ndarray of shape (n_hyper,)
        Bounds of ``alpha``.
    first_step : float, default=None
        Length of the first step (``options.first_step`` by default).
    """

    def __init__(self, options, lower, upper, first_step=None):
        self.options = options
        self.first_step = options.first_step if first_step is None else first_step
        self.lower, self.upper = lower, upper
        self.point: Point | None = None  # the last accepted point
        self.L = None
        self.last_move = None  # max-norm of the last accepted move of alpha
        self.step = None  # the accepted move of the last iteration (None: not a move)
        self.refresh = False  # re-solve the last accepted point at a tighter tolerance
        self.trust = None  # half the last rejected move: the next moves stay within it
        self.rejected = None  # the max-norm move of the trial just rejected (None: none)
        self._trial = None

    @property
    def step_size(self) -> float:
        return 1.0 / self.L if self.L > 0 else np.inf

    def test(self, alpha, forward, eps):
        """``(accepted, sufficient)`` for the trial ``alpha`` solved at ``eps``."""
        base = self.point
        if base is None or self.refresh:
            return True, False
        d = alpha - base.alpha
        slack = (base.eps + eps) * abs(base.value)
        accepted = forward.value_c <= base.value_c + slack
        sufficient = forward.value_c <= (base.value_c + float(base.grad @ d)
                                         + 0.5 * self.L * float(d @ d) + slack)
        return accepted, sufficient

    def accept(self, alpha, backward, eps, sufficient):
        """Make ``alpha`` the accepted point and update ``L``."""
        opts, base = self.options, self.point
        step = None if (base is None or self.refresh) else alpha - base.alpha
        prev_grad = None if base is None else base.grad
        grad = backward.grad
        self.point = Point(alpha=alpha, value=backward.value, value_c=backward.value_c,
                           grad=grad, eps=eps)
        if self.L is None:
            gnorm = float(np.linalg.norm(grad))
            self.L = gnorm / (np.sqrt(grad.size) * self.first_step) if gnorm > 0 else 1.0
        elif opts.step_rule == "secant" and step is not None:
            y = grad - prev_grad
            curv = float(step @ y) / float(step @ step)
            # Positive secant curvature: a Barzilai-Borwein step. Otherwise (a
            # sign of noise or of a concave stretch) grow the step.
            self.L = curv if curv > 0 and np.isfinite(curv) else self.L * opts.step_growth
            self.last_move = float(np.max(np.abs(step)))
        elif sufficient:
            self.L *= opts.step_growth
        if step is not None:
            self.trust = None
        self.step, self.refresh, self.rejected = step, False, None

    def reject(self):
        """Undo the trial: shorter steps, and the accepted point solved again. The
        next moves stay within half the rejected one until one is accepted (the
        hypergradient at the point solved again can be larger, and its step with
        it: on 20 newsgroups three trials in a row went past the optimum)."""
        self.L *= 2.0
        self.rejected = None
        if self._trial is not None and self.point is not None:
            move = float(np.max(np.abs(self._trial - self.point.alpha)))
            self.trust = move / 2 if self.trust is None else min(self.trust, move / 2)
            self.rejected = move
        self.step, self.refresh = None, True

    def next_alpha(self):
        """The next trial point: the accepted point again (refresh) or a step from it."""
        base = self.point
        if self.refresh:
            return base.alpha
        if self.options.step_rule == "secant":
            # Bound the move: at most max_step, and at most max_step_ratio times
            # the last accepted move (a nearly flat secant, from noisy
            # hypergradients, would otherwise throw alpha far away).
            cap = self.options.max_step
            if self.last_move is not None:
                cap = min(cap, self.options.max_step_ratio * self.last_move)
            if cap > 0:
                self.L = max(self.L, float(np.max(np.abs(base.grad))) / cap)
        if not self.L > 0:  # gradients that underflow: no curvature information at all
            self.L = float(np.max(np.abs(base.grad))) / self.options.max_step or 1.0
        if self.trust is not None and self.trust > 0:
            self.L = max(self.L, float(np.max(np.abs(base.grad))) / self.trust)
        self._trial = np.clip(base.alpha - base.grad / self.L, self.lower, self.upper)
        return self._trial

    def model_decrease(self, alpha):
        """Decrease of the outer value that the step to ``alpha`` promises on the
        quadratic model ``grad . d + L ||d||^2 / 2`` around the accepted point."""
        d = alpha - self.point.alpha
        return -(float(self.point.grad @ d) + 0.5 * self.L * float(d @ d))

    def predicted_decrease(self, alpha):
        """:meth:`model_decrease`, or ``None`` until ``L`` is a secant curvature (two
        accepted moves) of a new accepted point."""
        if self.last_move is None or self.refresh or self.step is None:
            return None
        return self.model_decrease(alpha)

    def at_bound(self):
        """Which coordinates of the accepted point stand at a bound the hypergradient
        points out of (a boolean array)."""
        a, g = self.point.alpha, self.point.grad
        return ((a <= self.lower) & (g > 0)) | ((a >= self.upper) & (g < 0))

    def bound_sides(self) -> np.ndarray:
        """Per log-penalty: -1 at a lower bound the hypergradient points out of, +1 at
        such an upper bound, 0 otherwise."""
        out = self.at_bound()
        sides = np.zeros(out.shape, dtype=np.int8)
        sides[out & (self.point.alpha <= self.lower)] = -1
        sides[out & (self.point.alpha >= self.upper)] = 1
        return sides

    def restart(self, first_step) -> None:
        """Forget the curvature: the accepted point is solved again (``refresh``) and
        the next step has length ``first_step``, after which the secant curvature
        comes from the new hypergradients only (polishing: the old ones were
        noisier)."""
        self.L, self.last_move, self.first_step = None, None, first_step
        self.step, self.refresh, self.trust = None, True, None

    def revise(self, grad, curvature=None):
        """Replace the accepted point's hypergradient by a better one (a refined
        backward pass), and ``L`` by ``curvature`` when it is a positive number."""
        self.point = Point(alpha=self.point.alpha, value=self.point.value,
                           value_c=self.point.value_c, grad=grad, eps=self.point.eps)
        if curvature is not None and curvature > 0 and np.isfinite(curvature):
            self.L = curvature
