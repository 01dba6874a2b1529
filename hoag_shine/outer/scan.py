"""A coarse look over the bounds before the local search.

Hypergradient descent is a local search: started where the validation loss is
flat (a penalty so strong that no feature is used, or so weak that it no longer
matters) or on the wrong side of a bump, it can stop far from the best penalty,
where a grid cannot. On raw data (one large column, offsets) the data-scaled
start is often such a place. :func:`coarse_scan` solves the folds, at the loose
first tolerance of the schedule and without any backward pass, at points
``step`` apart from the strongest penalty down (warm-started along the way: a
regularisation path, cheapest where the penalty is strong), until the
validation loss has risen clearly above its lowest value twice in a row; the
local search starts at the lowest point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Scan", "coarse_scan"]

#: A scan point counts as a rise when its value exceeds the lowest so far by this
#: much (relative): flat stretches do not stop the scan.
RISE = 1e-3

#: Each point's solve also brings the gradient down by this factor from its warm
#: start's (at the point's penalty): at weak penalties a loose relative tolerance can
#: hold at the warm start already, on ill-conditioned raw data far from the solution.
REDUCE = 0.1

#: Rises in a row that end the scan (one may be noise of the loose solves).
RISES_TO_STOP = 2

#: Values this close (relative) to the lowest are ties: a flat stretch.
TIE = 1e-7

#: Half-width of the scanned window around the data-scaled start (log scale, within
#: the bounds): e^12 either way, as the default bounds around a start at 0. A window
#: that moves with the start keeps the search equivariant to the data's scale.
RADIUS = 12.0


@dataclass
class Scan:
    """The points of a coarse scan.

    Attributes
    ----------
    alpha : list of ndarray
        Log-penalties visited, strongest first.
    value : list of float
        Outer value (summed over the folds) at each.
    inner_iter : list of int
        Inner iterations each took (all folds).
    time : float
        Wall time of the scan, seconds.
    """

    alpha: list = field(default_factory=list)
    value: list = field(default_factory=list)
    inner_iter: list = field(default_factory=list)
    time: float = 0.0
    start: np.ndarray | None = None

    @property
    def best(self) -> np.ndarray:
        """The point of lowest value; among points within :data:`TIE` of it (a flat
        stretch, where the order is the solves' noise), the nearest to the start."""
        values = np.asarray(self.value)
        low = float(values.min())
        ties = np.flatnonzero(values <= low + TIE * abs(low))
        if self.start is None or len(ties) == 1:
            return self.alpha[int(np.argmin(values))]
        dist = [float(np.max(np.abs(self.alpha[k] - self.start))) for k in ties]
        return self.alpha[int(ties[int(np.argmin(dist))])]


def scan_points(start, lower, upper, step) -> list:
    """The scan's points: from ``start + RADIUS`` (strongest penalty) down to ``start -
    RADIUS``, ``step`` apart, within the bounds; every log-penalty equal."""
    a0 = float(np.mean(start))
    hi = min(float(np.min(upper)), a0 + RADIUS)
    lo = max(float(np.max(lower)), a0 - RADIUS)
    n = max(int(np.floor((hi - lo) / step + 1e-9)), 0)
    points = [hi - k * step for k in range(n + 1)]
    return [np.clip(np.full(lower.shape, a), lower, upper) for a in points]


def coarse_scan(folds, start, lower, upper, eps, step) -> Scan:
    """Walk the folds from the strongest penalty down, ``step`` apart, until the
    total validation loss has risen above its lowest value (by more than
    :data:`RISE`) at :data:`RISES_TO_STOP` points in a row, or the window's end.

    Parameters
    ----------
    folds : FoldSet
    start : ndarray of shape (n_hyper,)
        The data-scaled start: the window is ``RADIUS`` either side of it.
    lower, upper : ndarray of shape (n_hyper,)
    eps : float
        Inner tolerance of every point.
    step : float
        Distance between two points (log scale).

    Returns
    -------
    scan : Scan
    """
    import time

    t0 = time.perf_counter()
    scan, rises = Scan(start=np.array(start, dtype=np.float64)), 0
    for alpha in scan_points(start, lower, upper, step):
        out = folds.settle(alpha, eps, REDUCE)
        if not np.isfinite(out.value):
            break  # (beyond what floating point can evaluate: the local search says so)
        scan.alpha.append(alpha)
        scan.value.append(float(out.value))
        scan.inner_iter.append(out.inner_iter)
        best = min(scan.value)
        rises = rises + 1 if out.value > best + RISE * abs(best) else 0
        if rises >= RISES_TO_STOP:
            break
    if scan.alpha and not np.array_equal(scan.best, scan.alpha[-1]):
        folds.settle(scan.best, eps, REDUCE)  # the search starts from the best point's state
    scan.time = time.perf_counter() - t0
    return scan
