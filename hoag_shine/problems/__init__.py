"""Bilevel problems: data plus the math of the inner and outer objectives."""

from .base import BilevelProblem, L2Penalty, LinearModelProblem, check_sample_weight
from .logistic import LogisticProblem
from .multinomial import MultinomialLogisticProblem
from .ridge import RidgeProblem

__all__ = [
    "BilevelProblem",
    "L2Penalty",
    "LinearModelProblem",
    "LogisticProblem",
    "MultinomialLogisticProblem",
    "RidgeProblem",
    "check_sample_weight",
]
