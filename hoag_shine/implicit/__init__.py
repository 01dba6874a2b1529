"""Implicit (deep-equilibrium) layers whose backward pass reuses the forward's Broyden inverse.

The SHINE paper's second half: a layer's state is the fixed point ``z* = f(z*, x)``,
found per sample by Broyden's method (:func:`broyden`, which keeps its low-rank
inverse-Jacobian estimate); the gradient of a loss in the layer's parameters
needs the adjoint ``u`` of ``(I - J)^T u = dL/dz*``, which :func:`adjoint` gets
exactly (GMRES), from the forward's estimate (SHINE, with fallback, refinement or
OPA), or not at all (Jacobian-Free). :class:`TanhLayer` is a ready layer,
:class:`EquilibriumLayer` takes one as plain callables, and
:class:`DEQClassifier` is a scikit-learn classifier around it.
"""

from .backward import BACKWARDS, AdjointResult, adjoint
from .broyden import BroydenResult, LowRankInverse, broyden
from .classifier import DEQClassifier, deq_gradient
from .layer import EquilibriumLayer, TanhLayer

__all__ = ["BACKWARDS", "AdjointResult", "BroydenResult", "DEQClassifier", "EquilibriumLayer",
           "LowRankInverse", "TanhLayer", "adjoint", "broyden", "deq_gradient"]
