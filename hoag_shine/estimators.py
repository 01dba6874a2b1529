"""scikit-learn estimators whose regularisation is tuned by hypergradient descent.

The estimators are thin: their (flat, scikit-learn-required) constructor
parameters become one :class:`~hoag_shine.outer.HoagOptions`, the data
become one bilevel problem per split, and :func:`~hoag_shine.outer.hoag` does
the tuning. They import :mod:`hoag_shine.outer` and :mod:`hoag_shine.problems`
only.
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit, check_cv
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._params import (Callable, Instance, Interval, InvalidParameterError, Options, Pair,
                      validate_params)
from ._utils import single_thread_blas
from .outer import HoagOptions, fit_inner, hoag
from .problems import (LogisticProblem, MultinomialLogisticProblem, RidgeProblem,
                       check_sample_weight)

__all__ = ["ShineLogisticRegressionCV", "ShineRidgeCV"]

#: One default for every setting the estimators share with ``hoag``.
_D = HoagOptions()

#: The constructor parameters that are HoagOptions fields under the same name.
_HOAG_PARAMS = tuple(n for n in HoagOptions.names() if n != "bounds")

#: Final fits whose parameters times samples are at most this are polished by
#: Newton steps (a few milliseconds there; 1.4 s on digits' 649 x 1257).
_POLISH_MAX_SIZE = 100_000

_POSITIVE = Interval(numbers.Real, 0, None, closed="neither")

_COMMON_CONSTRAINTS = {
    **{k: v for k, v in HoagOptions.CONSTRAINTS.items() if k in _HOAG_PARAMS},
    "cv": ["no_validation"],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "fit_intercept": [Options(True, False)],
    "refit": [Options(True, False)],
    "final_tol": [Interval(numbers.Real, 0, 1, closed="neither")],
    "random_state": ["no_validation"],
    "verbose": [Interval(numbers.Integral, 0, None)],
    "callback": [Callable(), None],
    "penalty_groups": ["no_validation"],
}

_SHARED_DOC = """
    hypergradient : {"shine", "shine-opa", "shine-refine", "cg", "truncated-cg", \\
"jacobian-free", "exact"} or HypergradientStrategy, default="shine"
        How the hypergradient's inverse-Hessian-vector product is approximated.
    hypergradient_params : dict, default=None
        Constructor parameters of the strategy, e.g. ``{"max_iter": 5}``.
    max_iter : int, default=30
        Outer (hyperparameter) iterations.
    tol : float, default=1e-2
        Stop when a step changes the log-penalty by at most ``tol`` (the
        penalty by about 1%).
    value_tol : float, default=1e-4
        Also stop when the validation loss has settled: it decreased by at most
        ``value_tol`` (relative) over the last ``patience`` outer iterations, or
        the next step promises no more than that.
    patience : int, default=5
        Outer iterations over which ``value_tol`` is measured.
    stop_eps : float or None, default=None
        When given, the stopping tests count only once the relative inner
        tolerance is at most ``stop_eps`` (see :class:`~hoag_shine.HoagOptions`).
    tol_schedule : {"exponential", "quadratic", "cubic", "exact"} or callable, \\
default="exponential"
        How the relative inner tolerance shrinks along the outer iterations.
    eps0 : float, default=1e-2
        First relative inner tolerance.
    decay : float, default=0.6
        Factor of the exponential schedule.
    maxcor : int, default=30
        L-BFGS memory of the inner solver (curvature pairs SHINE reuses).
    max_inner_iter : int, default=1000
        Iteration cap of each inner solve.
    step_rule : {"secant", "hoag"}, default="secant"
        Outer step: safeguarded secant (Barzilai-Borwein) or HOAG's 1/L rule.
    step_growth : float, default=0.95
        HOAG's factor on the outer Lipschitz estimate after a good step.
    first_step : float, default=2.0
        Change of the log-penalty in the first step.
    max_step : float, default=3.0
        Largest change of the log-penalty in one secant step.
    max_step_ratio : float, default=3.0
        No step moves the log-penalty by more than this times the last
        accepted move.
    warm_memory : bool, default=True
        Carry the exactly shifted L-BFGS pairs across outer iterations.
    pairs_memory_mb : float, default=1024
        Memory, in MB, the L-BFGS pairs of all folds may take together (the
        refit's too). Above it they are stored in single precision, and then the
        pairs of folds at rest wait in temporary files (see ``HoagOptions``).
    inner_solver : {"numpy", "scipy"}, default="numpy"
        The project's L-BFGS (starts from the carried pairs) or SciPy's L-BFGS-B.
    max_time : float or None, default=None
        Wall-clock budget of the outer loop, in seconds.
    n_jobs : int or None, default=None
        Folds solved in parallel, with a joblib backend chosen by
        ``joblib.parallel_config`` (e.g. ``backend="threading"``); with joblib's
        default the folds run in this thread, which measured faster (see
        :class:`~hoag_shine.HoagOptions`).
    cv : int, cross-validation generator, iterable or "holdout", default=None
        ``None``: 5 folds, stratified for a classifier (as in
        ``LogisticRegressionCV``). An int: that many folds (stratified for a
        classifier). Any scikit-learn splitter (``GroupKFold`` with
        ``fit(X, y, groups=...)``, ``PredefinedSplit`` for your own validation
        set, ...) or an iterable of ``(train, validation)`` index arrays.
        ``"holdout"``: one (stratified) split holding out
        ``validation_fraction`` of the data, seeded by ``random_state``. With
        several folds the validation losses and their hypergradients are
        summed: one penalty minimises the total.
    validation_fraction : float, default=0.2
        Share of the data held out when ``cv="holdout"``.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    refit : bool, default=True
        Refit on all the data at the chosen penalty (started from the folds'
        mean solution with several folds, from zero with one split: on 20news
        the mean of 5 folds' solutions halved the refit's iterations, one
        fold's solution made them longer). ``False`` keeps the average of the
        folds' coefficients, each solved at the chosen penalty.
    final_tol : float, default=1e-4
        Relative gradient tolerance of the final fit(s): ``||grad|| <=
        final_tol * ||grad(0)||``. On 20news the test log-loss is then within
        0.1% of the exact fit's (``1e-8``: the same, at four times the cost).
        Small problems (parameters times samples at most 100,000) are then
        polished by Newton steps to machine precision.
    random_state : int, RandomState instance or None, default=None
        Seeds the hold-out split of ``cv="holdout"``.
    verbose : int, default=0
        ``> 0`` logs each outer iteration (logger ``"hoag_shine"``, level
        INFO) to stderr, unless that logger already has handlers of the
        application's.
    callback : callable, default=None
        Passed to :func:`hoag_shine.hoag`; raise ``StopIteration`` to stop.
"""


#: First step of the per-class stage of ``multi_class_C="per-class"`` (log scale, root
#: mean square over the classes): it starts at the shared optimum.
_PER_CLASS_FIRST_STEP = 0.5

#: Conjugate-gradient iterations refining SHINE's backward vectors in that stage.
_PER_CLASS_REFINE = 10


def _unique_labels(y):
    """The sorted class labels of ``y``; a clear error for labels that do not sort."""
    try:
        return np.unique(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y})
        raise ValueError(f"y mixes label types ({', '.join(kinds)}) that cannot be sorted; "
                         "convert the labels to one type (e.g. all strings).") from None


def _squeeze(values):
    """A float for one hyperparameter, a copy of the array for several."""
    return float(values[0]) if values.shape[0] == 1 else np.array(values)


class _HoagCV(BaseEstimator):
    """What the hypergradient-tuned estimators share.

    Subclasses store their parameters in ``__init__`` (scikit-learn's rule),
    name their start and bounds (``_start_param``, ``_bounds_param``), turn
    them into log-penalties (``_log_penalty``) and build one bilevel problem
    per split (``_problem``); this class validates the parameters once, turns
    them into :class:`~hoag_shine.HoagOptions`, runs
    :func:`~hoag_shine.hoag` on the splits' problems, keeps its trace and makes
    the final fit.
    """

    _start_param = "C0"
    _bounds_param = "C_bounds"
    _parameter_constraints: dict = {}

    def _log_penalty(self, strength):  # pragma: no cover - interface
        """Log-penalty ``alpha`` of the user-facing strength (``C`` or ``alpha``)."""
        raise NotImplementedError

    def _penalty_history(self, log_penalty):  # pragma: no cover - interface
        """The ``history_`` entries of the penalties, named as the estimator names them."""
        raise NotImplementedError

    def _check_penalty_groups(self, n_features):
        groups = self.penalty_groups
        if groups is None:
            return
        got = len(groups) if np.ndim(groups) == 1 else repr(groups)
        if got != n_features:
            raise ValueError(f"penalty_groups must give one group per feature ({n_features}), "
                             f"got {got}.")

    def _log_bounds(self):
        """Bounds of the log-penalty, lower first."""
        return tuple(sorted(self._log_penalty(b) for b in getattr(self, self._bounds_param)))

    def _hoag_options(self) -> HoagOptions:
        """Validate every constructor parameter once; the outer loop's settings."""
        # The estimator's own parameters here; the shared ones by HoagOptions
        # (the same constraints, checked in one place).
        own = {k: v for k, v in self.get_params(deep=False).items() if k not in _HOAG_PARAMS}
        validate_params(self._parameter_constraints, own, owner=type(self).__name__)
        name, bname = self._start_param, self._bounds_param
        start, bounds = getattr(self, name), getattr(self, bname)
        if start is not None and not bounds[0] <= start <= bounds[1]:
            raise InvalidParameterError(
                f"{name}={start!r} lies outside {bname}={bounds!r}; choose a starting value "
                f"inside the searched range or widen {bname}."
            )
        return HoagOptions(bounds=self._log_bounds(),
                           **{k: getattr(self, k) for k in _HOAG_PARAMS})

    def _run_hoag(self, problems, options):
        """Run the outer loop on the splits' problems; keep its result and trace.

        Several penalties of a multinomial model (one ``C`` per class) are tuned
        in two stages: one ``C`` shared by the classes first, then one per class
        from there (the folds' solutions as warm starts), so that the per-class
        search starts at the shared answer, ends at a validation loss no higher
        than it, and spends its steps on what the classes' penalties add.
        """
        n_hyper = problems[0].n_hyper
        start = getattr(self, self._start_param)
        alpha0 = None if start is None else np.full(n_hyper, self._log_penalty(start))
        if n_hyper > 1 and hasattr(problems[0], "with_penalty"):
            shared = [p.with_penalty("shared") for p in problems]
            first = self._hoag_stage(shared, options, None if start is None else alpha0[:1],
                                     keep_memory=True)
            # The second stage solves at the tolerance where the first ended, held
            # constant, with a short first step (the per-class penalties refine the
            # shared one). Measured on digits (seed 0, 5 folds): the schedule going
            # on from there (decay 0.6) ran every late inner solve into
            # max_inner_iter (29.7 s, test log-loss 0.0908); started again at eps0,
            # the warm solutions met its first tolerances without an iteration, so
            # on 20news the first per-class steps were accepted at the shared
            # solutions (no information); held constant: 4.6 s, 0.0881.
            eps_last = [r["eps"] for r in first.trace if r["accepted"]][-1]
            settings = dict(first_step=min(options.first_step, _PER_CLASS_FIRST_STEP),
                            eps0=min(options.eps0, eps_last), decay=1.0)
            if options.strategy.name in ("shine", "shine-opa"):
                # The per-class hypergradient's components are small differences (which
                # class wants more penalty) that SHINE's own error swamps: on digits, with
                # the carried pairs, every per-class step it gave was rejected; refined
                # by 10 conjugate-gradient iterations per fold: test log-loss 0.0835 in
                # 10.7 s (SHINE with empty pairs: 0.0881 in 5.4 s; CG: 0.0810 in 36 s).
                settings.update(hypergradient="shine-refine",
                                hypergradient_params={"max_iter": _PER_CLASS_REFINE})
            if options.max_time is not None:
                settings["max_time"] = max(options.max_time - first.time, 0.0)
            # x0=first: the folds' solutions and L-BFGS pairs go on (the layout is the
            # same: the pairs shift exactly to any per-class penalties).
            res = self._hoag_stage(problems, options.replace(**settings),
                                   np.full(n_hyper, first.alpha[0]), x0=first)
            if res.status == 2:  # the budget is the user's, for both stages
                res.message = (f"stopped by the time budget max_time={options.max_time}s (the "
                               f"per-class stage had {settings['max_time']:.3g}s of it left)")
            if not res.fun <= first.fun:  # (the folds' loss as solved: never above the shared)
                res.update(alpha=np.full(n_hyper, first.alpha[0]), x=first.x, fun=first.fun,
                           message=res.message + "; the per-class penalties did not lower "
                           "the shared penalty's validation loss: it is kept")
            self._keep_result(res, before=first)
            return res
        res = self._hoag_stage(problems, options, alpha0)
        self._keep_result(res)
        return res

    def _hoag_stage(self, problems, options, alpha0, x0=None, keep_memory=False):
        """One outer loop (verbose logging, warnings in the estimator's words)."""
        # verbose > 0: the outer loop's INFO records go to stderr for this fit,
        # unless the application already configured the "hoag_shine" logger.
        logger = logging.getLogger("hoag_shine")
        old_level, handler = logger.level, None
        if self.verbose:
            logger.setLevel(logging.INFO)
            if not logger.handlers:
                handler = logging.StreamHandler()
                logger.addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = hoag(problems, alpha0, options=options, x0=x0, callback=self.callback)
        finally:
            logger.setLevel(old_level)
            if handler is not None:
                logger.removeHandler(handler)
        for w in caught:  # in the estimator's own words, pointing at the caller of fit
            warnings.warn(self._translate(str(w.message), options), w.category, stacklevel=6)
        if not keep_memory:
            res.pop("memory", None)  # (the folds' pairs: not kept by a fitted estimator)
        return res

    def _keep_result(self, res, before=None):
        """``hoag_result_``, ``n_iter_`` and ``history_`` (``before``: a first stage
        with one shared penalty, its records first, broadcast to every penalty)."""
        self.hoag_result_ = res
        n_hyper = len(res.alpha)
        cols = res.trace_columns()
        if before is not None:
            first = before.trace_columns()
            first["alpha"] = np.repeat(first["alpha"], n_hyper, axis=1)
            # (the shared penalty's hypergradient is the sum of the per-class ones,
            # which were not computed: NaN, as for a rejected step)
            first["hypergradient"] = np.full((len(first["time"]), n_hyper), np.nan)
            first_time = before.time  # (its stop check included)
            cols = {k: np.concatenate([first[k], v + first_time if k == "time" else v])
                    for k, v in cols.items()}
        self.n_iter_ = int(len(cols["time"]))
        one = n_hyper == 1
        self.history_ = {
            **self._penalty_history(cols["alpha"][:, 0] if one else cols["alpha"]),
            "validation_loss": cols["outer_value"],
            "hypergradient": cols["hypergradient"][:, 0] if one else cols["hypergradient"],
            "accepted": cols["accepted"], "time": cols["time"],
            "forward_time": cols["forward_time"], "backward_time": cols["backward_time"],
            "inner_iter": cols["inner_iter"], "n_hvp": cols["n_hvp"],
        }

    def _translate(self, message, options):
        """A message of the outer loop, naming the estimator's parameters: its bounds on
        the penalty (``C_bounds`` / ``alpha_bounds``) instead of ``bounds``."""
        bname = self._bounds_param
        lo, hi = getattr(self, bname)
        message = message.replace(f"bounds={options.bounds}", f"{bname}=({lo:g}, {hi:g})")
        if self._log_penalty(2.0) < self._log_penalty(1.0):  # C: alpha's upper is C's lower
            message = (message.replace("the lower bound", "the @@ bound")
                       .replace("the upper bound", "the lower bound")
                       .replace("the @@ bound", "the upper bound"))
        return message.replace("widen bounds", f"widen {bname}")

    def _tune(self, make_problem, X, targets, splits, weights, options):
        """Tune one penalty shared by ``targets`` (y arrays) over the splits; fit at it.

        ``make_problem(X_tr, y_tr, X_va, y_va, w_tr, w_va) -> (problem, meta)``
        builds one bilevel problem (``meta``: what the model's coefficients need
        besides ``x``, e.g. centring offsets). Sets ``scores_`` and
        ``best_score_``; returns the outer result and, per target, the final
        fits ``[(problem, x, meta)]``: one on all the data (``refit``) or one
        per split.
        """
        w_train, w_val = weights

        def sub(w, idx):
            return None if w is None else w[idx]

        built = [make_problem(X[tr], t[tr], X[va], t[va], sub(w_train, tr), sub(w_val, va))
                 for tr, va in splits for t in targets]
        problems = [p for p, _ in built]
        res = self._run_hoag(problems, options)
        xs = res.x if isinstance(res.x, list) else [res.x]
        n_t = len(targets)
        # Validation criterion per split at the chosen penalty: a mean loss per
        # sample (and target), negated as scikit-learn's scores are.
        self.scores_ = np.array([
            -sum(problems[k * n_t + j].outer_value_grad(xs[k * n_t + j], res.alpha)[0]
                 for j in range(n_t)) / (n_t * (len(va) if w_val is None else w_val[va].sum()))
            for k, (_, va) in enumerate(splits)])
        self.best_score_ = float(np.mean(self.scores_))
        finals = []
        for j, t in enumerate(targets):
            fold_x = xs[j::n_t]
            if self.refit:
                full, meta = make_problem(X, t, X[:1], t[:1], w_train, sub(w_val, slice(0, 1)))
                x0 = np.mean(fold_x, axis=0) if len(fold_x) > 1 else None
                finals.append([(full, self._final_fit(full, x0, res.alpha), meta)])
            else:
                finals.append([(p, self._final_fit(p, xk, res.alpha), m)
                               for (p, m), xk in zip(built[j::n_t], fold_x)])
        return res, finals

    def _final_fit(self, problem, x0, alpha):
        res = fit_inner(problem, alpha, tol=self.final_tol, x0=x0, maxcor=self.maxcor,
                        max_iter=max(10 * self.max_inner_iter, 1000), solver="numpy",
                        pairs_memory_mb=self.pairs_memory_mb)
        if problem.n_params * problem.X_train.shape[0] <= _POLISH_MAX_SIZE:
            # Small problems: Newton steps to machine precision, so that the model
            # does not depend on the solver's path (order of the samples, weights
            # as repeated rows) even where the penalty is weak.
            res = fit_inner(problem, alpha, tol=1e-14, x0=res.x, max_iter=0, polish=True)
        tol = self.final_tol * problem.gradient_scale(alpha)
        if not res.success and res.grad_norm > 1e3 * tol:
            warnings.warn(
                f"The final fit at log-penalty {alpha} stopped with ||grad|| = "
                f"{res.grad_norm:.3g}, above final_tol * ||grad(0)|| = {tol:.3g} "
                f"({res.message}). Increase max_inner_iter or final_tol.",
                ConvergenceWarning, stacklevel=6,  # the caller of fit
            )
        return res.x

    # -- splits and metadata routing ------------------------------------------
    def _cv(self, y, classifier):
        """The splitter: 5 folds by default (stratified for a classifier), ``"holdout"``
        for one split of ``validation_fraction``, or what ``cv`` says."""
        if isinstance(self.cv, str):
            if self.cv != "holdout":
                raise InvalidParameterError(
                    f"cv must be None, an int, a splitter, an iterable of splits or "
                    f"'holdout'; got {self.cv!r}.")
            n_val = int(np.ceil(self.validation_fraction * len(y)))
            n_min = len(np.unique(y)) if classifier else 1
            if len(y) - n_val < n_min or (classifier and n_val < n_min):
                raise ValueError(
                    f"Too few samples ({len(y)}) for a validation split of validation_fraction="
                    f"{self.validation_fraction}: the training part would be empty"
                    + (" or miss a class" if classifier else "")
                    + ". Provide more data or change validation_fraction.")
            split = StratifiedShuffleSplit if classifier else ShuffleSplit
            return split(n_splits=1, test_size=n_val, random_state=self.random_state)
        return check_cv(5 if self.cv is None else self.cv, y, classifier=classifier)

    def get_metadata_routing(self):
        """How ``fit``'s metadata are routed: ``sample_weight`` to this estimator,
        ``groups`` (and other split parameters) to the splitter.

        Returns
        -------
        routing : MetadataRouter
        """
        router = MetadataRouter(owner=type(self).__name__).add_self_request(self)
        if not isinstance(self.cv, str):
            router.add(splitter=check_cv(5 if self.cv is None else self.cv),
                       method_mapping=MethodMapping().add(caller="fit", callee="split"))
        return router

    def _split_params(self, sample_weight, params):
        """The parameters of ``cv.split``: routed when metadata routing is on, else
        ``groups`` only (as scikit-learn's search estimators accept it)."""
        if get_config().get("enable_metadata_routing", False):
            routed = process_routing(self, "fit", sample_weight=sample_weight, **params)
            return dict(routed.splitter.split) if "splitter" in routed else {}
        unknown = set(params) - {"groups"}
        if unknown:
            raise TypeError(
                f"fit() got unexpected parameter(s) {sorted(unknown)}; without metadata "
                "routing only groups is passed to the splitter (enable routing with "
                "sklearn.set_config(enable_metadata_routing=True) to route others).")
        return {k: v for k, v in params.items() if v is not None}

    def _check_splits(self, cv, X, y, labels, split_params):
        """The splits of ``cv``, checked: indices in range, non-empty parts, and (with
        ``labels``) two classes or more in each training part."""
        try:
            splits = [(np.asarray(tr), np.asarray(va)) for tr, va in cv.split(X, y,
                                                                             **split_params)]
        except ValueError as exc:
            hint = ("pass groups=... to fit" if "groups" in str(exc) else
                    "provide more samples (per class, for a classifier) or fewer folds")
            raise ValueError(f"The cross-validation split failed: {exc} Fix: {hint}.") from None
        if not splits:
            raise ValueError("cv gave no split; give at least one (train, validation) pair.")
        n = len(y)
        for k, (train, val) in enumerate(splits):
            for part, idx in (("training", train), ("validation", val)):
                if len(idx) == 0:
                    raise ValueError(f"The {part} part of split {k} is empty; provide more "
                                     "data or change the split.")
                if not np.issubdtype(idx.dtype, np.integer) or idx.min() < -n or idx.max() >= n:
                    raise ValueError(f"The {part} part of split {k} holds indices that are not "
                                     f"integers in [0, {n}); cv must index the rows of X.")
                if labels is None or part == "validation":
                    continue  # a validation part may miss classes (its loss is defined)
                if len(np.unique(y[idx])) < 2:
                    raise ValueError(
                        f"The training part of split {k} holds one class only; each training "
                        "part needs two classes or more. Use a stratified splitter, more data, "
                        "or fewer folds.")
        return splits


class ShineLogisticRegressionCV(ClassifierMixin, _HoagCV):
    __doc__ = None  # set below, with the parameters shared with ShineRidgeCV

    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "C0": [_POSITIVE, None],
        "C_bounds": [Pair(_POSITIVE)],
        "multi_class_C": [Options("shared", "per-class")],
        "class_weight": [Options("balanced"), Instance(dict), None],
    }

    def __init__(
        self,
        *,
        hypergradient=_D.hypergradient,
        hypergradient_params=_D.hypergradient_params,
        C0=None,
        C_bounds=(np.exp(-12.0), np.exp(12.0)),
        max_iter=_D.max_iter,
        tol=_D.tol,
        value_tol=_D.value_tol,
        patience=_D.patience,
        stop_eps=_D.stop_eps,
        tol_schedule=_D.tol_schedule,
        eps0=_D.eps0,
        decay=_D.decay,
        maxcor=_D.maxcor,
        max_inner_iter=_D.max_inner_iter,
        step_rule=_D.step_rule,
        step_growth=_D.step_growth,
        first_step=_D.first_step,
        max_step=_D.max_step,
        max_step_ratio=_D.max_step_ratio,
        warm_memory=_D.warm_memory,
        pairs_memory_mb=_D.pairs_memory_mb,
        inner_solver=_D.inner_solver,
        max_time=_D.max_time,
        n_jobs=_D.n_jobs,
        cv=None,
        validation_fraction=0.2,
        fit_intercept=True,
        refit=True,
        final_tol=1e-4,
        random_state=None,
        verbose=0,
        callback=None,
        multi_class_C="shared",
        penalty_groups=None,
        class_weight=None,
    ):
        self.hypergradient = hypergradient
        self.hypergradient_params = hypergradient_params
        self.C0 = C0
        self.C_bounds = C_bounds
        self.max_iter = max_iter
        self.tol = tol
        self.value_tol = value_tol
        self.patience = patience
        self.stop_eps = stop_eps
        self.tol_schedule = tol_schedule
        self.eps0 = eps0
        self.decay = decay
        self.maxcor = maxcor
        self.max_inner_iter = max_inner_iter
        self.step_rule = step_rule
        self.step_growth = step_growth
        self.first_step = first_step
        self.max_step = max_step
        self.max_step_ratio = max_step_ratio
        self.warm_memory = warm_memory
        self.pairs_memory_mb = pairs_memory_mb
        self.inner_solver = inner_solver
        self.max_time = max_time
        self.n_jobs = n_jobs
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.fit_intercept = fit_intercept
        self.refit = refit
        self.final_tol = final_tol
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.multi_class_C = multi_class_C
        self.penalty_groups = penalty_groups
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _log_penalty(self, C):
        return -float(np.log(C))

    def _penalty_history(self, log_penalty):
        return {"C": np.exp(-log_penalty), "alpha": log_penalty}

    @single_thread_blas
    def fit(self, X, y, sample_weight=None, **params):
        """Tune ``C`` on the validation split(s) and fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two classes or more, of any label type.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the training loss and in the validation
            loss that chooses ``C`` (integer weights act as repeated rows).
        **params : dict
            Parameters of the splitter's ``split``: ``groups`` always; any
            other with metadata routing enabled.

        Returns
        -------
        self : ShineLogisticRegressionCV
        """
        options = self._hoag_options()
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64,
                             y_numeric=False, multi_output=False, ensure_min_samples=2)
        y = column_or_1d(y, warn=True)
        classes = _unique_labels(y)  # before scikit-learn's check, which fails on mixed types
        check_classification_targets(y)
        self.classes_ = classes
        if len(self.classes_) < 2:
            raise ValueError(
                f"This solver needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {self.classes_[0]!r}."
            )
        if len(self.classes_) > 2 and self.penalty_groups is not None:
            raise ValueError("penalty_groups applies to binary targets; with "
                             f"{len(self.classes_)} classes use multi_class_C='per-class' or "
                             "'shared'.")
        self._check_penalty_groups(X.shape[1])
        if sp.issparse(X):
            X = X.tocsr()
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        if sample_weight is not None:
            weighted = np.unique(y[sample_weight > 0])
            if len(weighted) < 2:
                raise ValueError(
                    f"Only one class ({weighted[0]!r}) has samples of positive weight; this "
                    "solver needs samples of at least 2 classes.")
        split_params = self._split_params(sample_weight, params)
        splits = self._check_splits(self._cv(y, True), X, y, self.classes_, split_params)
        res, (fits,) = self._tune(self._problem, X, [y], splits,
                                  (self._class_weighted(y, sample_weight), sample_weight),
                                  options)
        self.alpha_ = _squeeze(res.alpha)
        self.C_ = _squeeze(np.exp(-res.alpha))
        coefs = [p.coef_intercept(xk) for p, xk, _ in fits]
        coef = np.mean([np.atleast_2d(w) for w, _ in coefs], axis=0)
        self.coef_ = coef.reshape(-1, X.shape[1])
        self.intercept_ = np.atleast_1d(np.mean([b for _, b in coefs], axis=0)).astype(float)
        return self

    def _class_weighted(self, y, sample_weight):
        """Training weights: ``sample_weight`` times ``class_weight`` (computed on all
        of ``y``, as ``LogisticRegressionCV`` does)."""
        if self.class_weight is None:
            return sample_weight
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names classes {sorted(map(str, unknown))} "
                                 f"that are not in y ({self.classes_.tolist()}).")
        cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        w = cw[np.searchsorted(self.classes_, y)]
        return w if sample_weight is None else w * sample_weight

    def _problem(self, X_train, y_train, X_val, y_val, w_train=None, w_val=None):
        """The bilevel problem of one split (binary or multinomial), and no metadata."""
        if len(self.classes_) > 2:
            return MultinomialLogisticProblem(
                X_train, y_train, X_val, y_val, fit_intercept=self.fit_intercept,
                penalty=self.multi_class_C, sample_weight=w_train,
                sample_weight_val=w_val, classes=self.classes_), None
        return LogisticProblem(X_train, y_train, X_val, y_val, fit_intercept=self.fit_intercept,
                               penalty_groups=self.penalty_groups, sample_weight=w_train,
                               sample_weight_val=w_val, classes=self.classes_), None

    # -- prediction ----------------------------------------------------------
    def decision_function(self, X):
        """Scores: binary, the signed margin (positive means ``classes_[1]``); else one per class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=("csr", "csc"), dtype=np.float64, reset=False)
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        if scores.ndim == 2:
            return self.classes_[np.argmax(scores, axis=1)]
        return self.classes_[(scores > 0).astype(int)]

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        d = self.decision_function(X)
        if d.ndim == 2:
            return softmax(d, axis=1)
        return np.column_stack([expit(-d), expit(d)])

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed without underflow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        d = self.decision_function(X)
        if d.ndim == 2:
            return log_softmax(d, axis=1)
        return np.column_stack([log_expit(-d), log_expit(d)])


class ShineRidgeCV(RegressorMixin, _HoagCV):
    __doc__ = None  # set below, with the parameters shared with ShineLogisticRegressionCV

    _start_param = "alpha0"
    _bounds_param = "alpha_bounds"
    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "alpha0": [_POSITIVE, None],
        "alpha_bounds": [Pair(_POSITIVE)],
        "alpha_per_target": [Options(True, False)],
    }

    def __init__(
        self,
        *,
        hypergradient=_D.hypergradient,
        hypergradient_params=_D.hypergradient_params,
        alpha0=None,
        alpha_bounds=(np.exp(-12.0), np.exp(12.0)),
        max_iter=_D.max_iter,
        tol=_D.tol,
        value_tol=_D.value_tol,
        patience=_D.patience,
        stop_eps=_D.stop_eps,
        tol_schedule=_D.tol_schedule,
        eps0=_D.eps0,
        decay=_D.decay,
        maxcor=_D.maxcor,
        max_inner_iter=_D.max_inner_iter,
        step_rule=_D.step_rule,
        step_growth=_D.step_growth,
        first_step=_D.first_step,
        max_step=_D.max_step,
        max_step_ratio=_D.max_step_ratio,
        warm_memory=_D.warm_memory,
        pairs_memory_mb=_D.pairs_memory_mb,
        inner_solver=_D.inner_solver,
        max_time=_D.max_time,
        n_jobs=_D.n_jobs,
        cv=None,
        validation_fraction=0.2,
        fit_intercept=True,
        refit=True,
        final_tol=1e-4,
        random_state=None,
        verbose=0,
        callback=None,
        penalty_groups=None,
        alpha_per_target=False,
    ):
        self.hypergradient = hypergradient
        self.hypergradient_params = hypergradient_params
        self.alpha0 = alpha0
        self.alpha_bounds = alpha_bounds
        self.max_iter = max_iter
        self.tol = tol
        self.value_tol = value_tol
        self.patience = patience
        self.stop_eps = stop_eps
        self.tol_schedule = tol_schedule
        self.eps0 = eps0
        self.decay = decay
        self.maxcor = maxcor
        self.max_inner_iter = max_inner_iter
        self.step_rule = step_rule
        self.step_growth = step_growth
        self.first_step = first_step
        self.max_step = max_step
        self.max_step_ratio = max_step_ratio
        self.warm_memory = warm_memory
        self.pairs_memory_mb = pairs_memory_mb
        self.inner_solver = inner_solver
        self.max_time = max_time
        self.n_jobs = n_jobs
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.fit_intercept = fit_intercept
        self.refit = refit
        self.final_tol = final_tol
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.penalty_groups = penalty_groups
        self.alpha_per_target = alpha_per_target

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags

    def _log_penalty(self, alpha):
        return float(np.log(alpha))

    def _penalty_history(self, log_penalty):
        return {"alpha": np.exp(log_penalty), "log_alpha": log_penalty}

    def _problem(self, X_train, y_train, X_val, y_val, w_train=None, w_val=None):
        """The bilevel problem of one split and target, with its centring offsets.

        With ``fit_intercept``, the data are centred on the training part's
        (weighted) means, implicitly (``feature_offset``: a sparse ``X`` stays
        sparse), and the problem has no intercept (as in scikit-learn's
        ``Ridge``; the solution is the same). An explicit intercept has
        curvature ``n_train`` against ``alpha`` plus the features' for the
        weights: an ill-conditioned inner Hessian whose L-BFGS estimate, hence
        SHINE's hypergradient, is poor (on diabetes with 5 folds SHINE then
        stopped at alpha = 0.04, 100x the optimum).

        Returns
        -------
        problem : RidgeProblem
        offsets : (ndarray, float) or None
            ``(x_mean, y_mean)`` the data were centred on.
        """
        offsets = None
        if self.fit_intercept:
            x_mean = np.asarray(X_train.T @ (np.full(X_train.shape[0], 1.0 / X_train.shape[0])
                                             if w_train is None else w_train / w_train.sum()))
            offsets = (x_mean.ravel(), float(np.average(y_train, weights=w_train)))
            y_train, y_val = y_train - offsets[1], y_val - offsets[1]
        problem = RidgeProblem(X_train, y_train, X_val, y_val, fit_intercept=False,
                               penalty_groups=self.penalty_groups, sample_weight=w_train,
                               sample_weight_val=w_val,
                               feature_offset=None if offsets is None else offsets[0])
        return problem, offsets

    @staticmethod
    def _coef_intercept(problem, x, offsets):
        """``(coef, intercept)`` of the original data from a problem's solution."""
        w, b = problem.coef_intercept(x)
        if offsets is not None:
            x_mean, y_mean = offsets
            return w, float(y_mean - x_mean @ w)
        return w, b

    @single_thread_blas
    def fit(self, X, y, sample_weight=None, **params):
        """Tune ``alpha`` on the validation split(s) and fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Real-valued targets. Several targets share one ``alpha``, or have one
            each with ``alpha_per_target=True``.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the training and validation errors.
        **params : dict
            Parameters of the splitter's ``split``: ``groups`` always; any
            other with metadata routing enabled.

        Returns
        -------
        self : ShineRidgeCV
        """
        options = self._hoag_options()
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64,
                             y_numeric=True, multi_output=True, ensure_min_samples=2)
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ShineRidgeCV needs numeric targets y ({exc}); for class labels "
                             "use ShineLogisticRegressionCV.") from None
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values; remove or impute them.")
        self._check_penalty_groups(X.shape[1])
        if sp.issparse(X):
            X = X.tocsr()
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        split_params = self._split_params(sample_weight, params)
        splits = self._check_splits(self._cv(y, False), X, y, None, split_params)
        Y = y.reshape(len(y), -1)
        groups = ([[t] for t in range(Y.shape[1])] if self.alpha_per_target
                  else [list(range(Y.shape[1]))])
        results, coefs, scores = [], {}, []
        for cols in groups:
            res, fits = self._tune(self._problem, X, [Y[:, t] for t in cols], splits,
                                   (sample_weight, sample_weight), options)
            results.append((res, dict(self.history_)))
            scores.append(self.scores_)
            for t, fit in zip(cols, fits):
                coefs[t] = [self._coef_intercept(p, xk, m) for p, xk, m in fit]
        self._set_fitted(results, coefs, scores, y.ndim == 2)
        return self

    def _set_fitted(self, results, coefs, scores, multi_output):
        """The fitted attributes from the outer results and final fits of every target."""
        one = len(results) == 1
        alphas = np.array([res.alpha for res, _ in results])  # (n_groups of targets, n_hyper)
        if one:
            self.log_alpha_ = _squeeze(alphas[0])
        else:  # one per target: (n_targets,), or (n_targets, n_hyper) with penalty_groups
            self.log_alpha_ = alphas[:, 0] if alphas.shape[1] == 1 else alphas
        self.alpha_ = (float(np.exp(self.log_alpha_)) if np.ndim(self.log_alpha_) == 0
                       else np.exp(self.log_alpha_))
        self.hoag_result_ = results[0][0] if one else [res for res, _ in results]
        self.history_ = results[0][1] if one else [h for _, h in results]
        self.n_iter_ = int(results[0][0].nit) if one else np.array([r.nit for r, _ in results])
        self.scores_ = scores[0] if one else np.mean(scores, axis=0)
        self.best_score_ = float(np.mean(self.scores_))
        coef = np.array([np.mean([w for w, _ in coefs[t]], axis=0) for t in sorted(coefs)])
        intercept = np.array([np.mean([b for _, b in coefs[t]]) for t in sorted(coefs)])
        self.coef_ = coef if multi_output else coef[0]
        self.intercept_ = intercept if multi_output else float(intercept[0])

    def predict(self, X):
        """Predicted targets ``X @ coef_ + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=("csr", "csc"), dtype=np.float64, reset=False)
        if np.ndim(self.coef_) == 2:
            return np.asarray(X @ self.coef_.T) + self.intercept_
        return np.asarray(X @ self.coef_).ravel() + self.intercept_


ShineLogisticRegressionCV.__doc__ = """L2 logistic regression whose C is tuned by hypergradient descent (HOAG + SHINE).

    An alternative to :class:`sklearn.linear_model.LogisticRegressionCV`:
    instead of fitting a grid of ``C`` values, it follows the gradient of the
    validation loss with respect to ``log(1 / C)``, computed by the implicit
    function theorem. With ``hypergradient="shine"`` the
    inverse-Hessian-vector product it needs comes for free from the inner
    L-BFGS solver's memory.

    The model minimises ``sum_i log(1 + exp(-y_i (x_i . w + b))) + ||w||^2 / (2 C)``
    (scikit-learn's ``LogisticRegression`` objective), and ``C`` is chosen to
    minimise the summed log-loss on the validation split(s). With three classes
    or more the model is multinomial (softmax), with one ``C`` shared by all
    classes or one per class (``multi_class_C``); with two, ``penalty_groups``
    gives one ``C`` per group of features.

    Parameters
    ----------
    C0 : float or None, default=None
        Starting value of ``C``. ``None``: scaled to the data, the inverse of
        the mean diagonal of the loss's Hessian (see
        :meth:`~hoag_shine.problems.BilevelProblem.default_alpha`), so that
        rescaling the features rescales the whole search.
    C_bounds : (float, float), default=(exp(-12), exp(12))
        Range of ``C`` searched.""" + _SHARED_DOC + """    multi_class_C : {"shared", "per-class"}, default="shared"
        With three classes or more: one ``C`` for the whole multinomial model,
        or one per class (the penalty on that class's coefficient column).
        ``"per-class"`` is tuned in two stages: one ``C`` shared by the classes
        first, then one per class starting there (the folds' solutions and
        L-BFGS pairs carried over, solved at the tolerance the first stage
        ended with, SHINE's backward vectors refined by 10 conjugate-gradient
        iterations; each stage runs up to ``max_iter`` outer iterations, both
        within ``max_time``): its
        validation loss ends no higher than the shared one's (else the shared
        ``C`` is kept), and the costly start of the search is paid once, with
        one hyperparameter.
    penalty_groups : array-like of int of shape (n_features,), default=None
        Binary targets only: the group of each feature, one ``C`` per group
        (``np.arange(n_features)``: one per feature).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the training loss (not in the validation
        loss), computed on the whole ``y`` as in ``LogisticRegressionCV``:
        ``"balanced"`` gives ``n_samples / (n_classes * bincount(y))``.

    Attributes
    ----------
    C_ : float or ndarray of shape (n_hyper,)
        Chosen inverse regularisation strength(s): a float for one ``C``, an
        array with per-class or per-group ``C``.
    alpha_ : float or ndarray of shape (n_hyper,)
        ``log(1 / C_)``, the log-penalties the outer loop optimised.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
        With several classes, class 0's intercept is 0 (the softmax is
        unchanged by a common shift; fixing one keeps the problem strictly
        convex).
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.
    n_iter_ : int
        Outer iterations run.
    history_ : dict of ndarray
        The outer trace: ``C``, ``alpha``, ``validation_loss``, ``hypergradient``,
        ``accepted``, ``time``, ``forward_time``, ``backward_time``,
        ``inner_iter``, ``n_hvp``. With ``multi_class_C="per-class"`` the shared
        stage's records come first, its ``C`` repeated for every class and its
        per-class hypergradients NaN (not computed).
    hoag_result_ : HoagResult
        The full result of the outer loop (of the per-class stage with
        ``multi_class_C="per-class"``).
    scores_ : ndarray of shape (n_splits,)
        Validation criterion of each split at ``C_``: minus the mean log-loss
        per validation sample (the sign of scikit-learn's ``neg_log_loss``:
        higher is better).
    best_score_ : float
        Mean of ``scores_``.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from hoag_shine import ShineLogisticRegressionCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> clf = ShineLogisticRegressionCV(random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

ShineRidgeCV.__doc__ = """Ridge regression whose penalty is tuned by hypergradient descent (HOAG + SHINE).

    An alternative to :class:`sklearn.linear_model.RidgeCV` that follows the
    gradient of the validation error with respect to ``log(alpha)`` instead of
    fitting a grid of ``alpha`` values. The model minimises
    ``||y - X w - b||^2 + alpha ||w||^2`` (scikit-learn's ``Ridge`` objective,
    intercept unpenalised), and ``alpha`` is chosen to minimise the summed
    squared error on the validation split(s). ``penalty_groups`` gives one
    ``alpha`` per group of features.

    Unlike :class:`ShineLogisticRegressionCV`, whose ``alpha_`` is a
    log-penalty, ``alpha_`` here is the penalty itself, as in ``RidgeCV``;
    ``log_alpha_`` is its log.

    Parameters
    ----------
    alpha0 : float or None, default=None
        Starting penalty. ``None``: scaled to the data, the mean diagonal of
        ``X^T X`` (see :meth:`~hoag_shine.problems.BilevelProblem.default_alpha`).
    alpha_bounds : (float, float), default=(exp(-12), exp(12))
        Range of ``alpha`` searched.""" + _SHARED_DOC + """    penalty_groups : array-like of int of shape (n_features,), default=None
        The group of each feature, one ``alpha`` per group.
    alpha_per_target : bool, default=False
        With several targets: one ``alpha`` per target (each tuned on its own
        validation error) instead of one shared by all (tuned on their sum).

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_groups,) or (n_targets,)
        Chosen penalty (an array with ``penalty_groups`` or
        ``alpha_per_target``).
    log_alpha_ : float or ndarray
        ``log(alpha_)``, what the outer loop optimised.
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.
    n_iter_ : int
        Outer iterations run.
    history_ : dict of ndarray
        The outer trace: ``alpha``, ``log_alpha``, ``validation_loss`` (half
        the summed squared validation error), ``hypergradient``, ``accepted``,
        ``time``, ``forward_time``, ``backward_time``, ``inner_iter``, ``n_hvp``
        (a list of them, one per target, with ``alpha_per_target``).
    hoag_result_ : HoagResult or list of HoagResult
        The full result of the outer loop (one per target with
        ``alpha_per_target``).
    scores_ : ndarray of shape (n_splits,)
        Validation criterion of each split at ``alpha_``: minus the mean squared
        error per validation sample and target (scikit-learn's
        ``neg_mean_squared_error``).
    best_score_ : float
        Mean of ``scores_``.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from hoag_shine import ShineRidgeCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = ShineRidgeCV(cv=5).fit(X, y)
    >>> reg.score(X, y) > 0.4
    True
    """
