"""The outer loop: HOAG over the log-penalties, and grid and random search beside it.

* :class:`HoagOptions` — the settings, one object, one default each;
* :class:`~hoag_shine.outer.steps.StepRule` — accept/reject test and step length;
* :class:`~hoag_shine.outer.stopping.StoppingRule` — schedule and stopping tests;
  :class:`~hoag_shine.outer.stopping.Stop` — why a loop stopped, as values;
* :class:`~hoag_shine.outer.folds.FoldSet` — the inner problems' state across steps;
* :class:`~hoag_shine.outer.trace.Trace`, :class:`HoagResult` — the record;
* :func:`hoag` — the loop composing them; :func:`hypergradient` and
  :func:`fit_inner` — one hypergradient, one inner fit;
* :func:`grid_search`, :func:`random_search` — the baselines, same trace format.
"""

from .loop import check_problems, fit_inner, hoag, hypergradient, run_hoag, start_alpha
from .options import TOL_SCHEDULES, HoagOptions, tolerance_schedule
from .search import grid_search, random_search, search
from .stopping import BoundWarning, Stop, StopReason, Wording, describe, warn_stop
from .trace import TRACE_FIELDS, HoagResult, heldout_loss_fn

__all__ = [
    "BoundWarning",
    "HoagOptions",
    "HoagResult",
    "Stop",
    "StopReason",
    "Wording",
    "describe",
    "run_hoag",
    "warn_stop",
    "TOL_SCHEDULES",
    "TRACE_FIELDS",
    "check_problems",
    "fit_inner",
    "grid_search",
    "heldout_loss_fn",
    "hoag",
    "hypergradient",
    "random_search",
    "search",
    "start_alpha",
    "tolerance_schedule",
]
