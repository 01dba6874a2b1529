"""Inner solvers that keep their L-BFGS curvature pairs.

SHINE reuses the quasi-Newton estimate of the inverse Hessian that the inner
solver built on its way to the solution. This package provides

* :class:`LbfgsMemory`: the curvature pairs ``(s_i, y_i)`` and the operator
  they define (the two-loop recursion, the exact shift to a new penalty); the
  pairs' storage is a :class:`PairStore` (precision, slots, checkpoint, spill),
  planned by :func:`plan_pairs`;
* :class:`InnerSolver` (:class:`NumpyLbfgs`, :class:`ScipyLbfgs`): one
  interface for the two L-BFGS solvers, :func:`minimize_lbfgs_numpy` and
  :func:`minimize_lbfgs`;
* :class:`DiagonalMetric`: the diagonal metric gradients and pairs are
  measured in.
"""

from .memory import LbfgsMemory
from .metric import DiagonalMetric, constant_head, metric_norm
from .pairs import (PAIRS_PRECISIONS, SINGLE_PAIRS_MIN_PARAMS, PairPlan, PairStore, default_maxcor,
                    plan_pairs, single_precision)
from .solvers import (INNER_SOLVERS, InnerResult, InnerSolver, NumpyLbfgs, ScipyLbfgs,
                      get_inner_solver, minimize_lbfgs, minimize_lbfgs_numpy, newton_polish)

__all__ = ["DiagonalMetric", "INNER_SOLVERS", "InnerResult", "InnerSolver", "LbfgsMemory",
           "NumpyLbfgs", "PairPlan", "PairStore", "ScipyLbfgs", "constant_head", "default_maxcor",
           "get_inner_solver", "metric_norm", "minimize_lbfgs", "minimize_lbfgs_numpy",
           "newton_polish", "plan_pairs", "single_precision", "PAIRS_PRECISIONS",
           "SINGLE_PAIRS_MIN_PARAMS"]
