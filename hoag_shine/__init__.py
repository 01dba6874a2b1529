"""hoag_shine: gradient-based hyperparameter optimisation with SHINE.

Tune regularisation hyperparameters by following the hypergradient of a
validation loss (HOAG), with the inverse-Hessian-vector product it needs taken
from the inner L-BFGS solver's own memory (SHINE) or computed by conjugate
gradient; and train implicit (deep-equilibrium) layers whose backward pass
reuses the forward Broyden solver's inverse estimate (:mod:`hoag_shine.implicit`).
"""

from .estimators import ShineLogisticRegressionCV, ShineRidgeCV
from .hypergrad import HypergradientStrategy, get_strategy
from .implicit import DEQClassifier, EquilibriumLayer, TanhLayer
from .inner import InnerResult, LbfgsMemory, PairPlan, minimize_lbfgs, plan_pairs
from .outer import (BoundWarning, HoagOptions, HoagResult, grid_search, hoag, hypergradient,
                    random_search, tolerance_schedule)
from .problems import BilevelProblem, LogisticProblem, MultinomialLogisticProblem, RidgeProblem

__version__ = "0.1.0.dev0"

__all__ = [
    "BilevelProblem",
    "BoundWarning",
    "DEQClassifier",
    "EquilibriumLayer",
    "HoagOptions",
    "HoagResult",
    "HypergradientStrategy",
    "InnerResult",
    "LbfgsMemory",
    "LogisticProblem",
    "MultinomialLogisticProblem",
    "PairPlan",
    "RidgeProblem",
    "ShineLogisticRegressionCV",
    "ShineRidgeCV",
    "TanhLayer",
    "get_strategy",
    "grid_search",
    "hoag",
    "hypergradient",
    "minimize_lbfgs",
    "plan_pairs",
    "random_search",
    "tolerance_schedule",
]
