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
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit, check_cv
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._params import Callable, Interval, InvalidParameterError, Options, Pair, validate_params
from ._utils import single_thread_blas
from .outer import HoagOptions, fit_inner, hoag
from .problems import LogisticProblem, MultinomialLogisticProblem, RidgeProblem

__all__ = ["ShineLogisticRegressionCV", "ShineRidgeCV"]

#: One default for every setting the estimators share with ``hoag``.
_D = HoagOptions()

#: The constructor parameters that are HoagOptions fields under the same name.
_HOAG_PARAMS = tuple(n for n in HoagOptions.names() if n != "bounds")

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
        ``value_tol`` (relative) over the last ``patience`` outer iterations.
    patience : int, default=5
        Outer iterations over which ``value_tol`` is measured.
    stop_eps : float or None, default=1e-6
        The stopping tests count only once the relative inner tolerance is at
        most ``stop_eps`` (see :class:`~hoag_shine.HoagOptions`).
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
    inner_solver : {"numpy", "scipy"}, default="numpy"
        The project's L-BFGS (starts from the carried pairs) or SciPy's L-BFGS-B.
    max_time : float or None, default=None
        Wall-clock budget of the outer loop, in seconds.
    n_jobs : int or None, default=None
        Folds solved in parallel (joblib; ``None`` follows
        ``joblib.parallel_config``).
    cv : int, cross-validation generator or iterable, default=None
        ``None``: one hold-out split of ``validation_fraction`` of the data
        (stratified for a classifier). An int: that many folds (stratified
        for a classifier). Any scikit-learn splitter (e.g. ``PredefinedSplit``
        for your own validation set) or an iterable of ``(train, validation)``
        index arrays. With several folds the validation losses and their
        hypergradients are summed.
    validation_fraction : float, default=0.2
        Share of the data held out when ``cv=None``.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    refit : bool, default=True
        Refit on all the data at the chosen penalty (warm-started from the
        folds' mean solution). ``False`` keeps the average of the folds'
        coefficients, each solved tightly at the chosen penalty.
    final_tol : float, default=1e-8
        Relative gradient tolerance of the final fit(s).
    random_state : int, RandomState instance or None, default=None
        Seeds the hold-out split when ``cv=None``.
    verbose : int, default=0
        ``> 0`` logs each outer iteration (logger ``"hoag_shine"``, level
        INFO) to stderr, unless that logger already has handlers of the
        application's.
    callback : callable, default=None
        Passed to :func:`hoag_shine.hoag`; raise ``StopIteration`` to stop.
"""


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
        if np.ndim(groups) != 1 or len(groups) != n_features:
            raise ValueError(
                f"penalty_groups must give one group per feature ({n_features}), got "
                f"{groups!r}." if np.ndim(groups) != 1 else
                f"penalty_groups must give one group per feature ({n_features}), "
                f"got {len(groups)}.")

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
        """Run the outer loop on the splits' problems; keep its result and trace."""
        n_hyper = problems[0].n_hyper
        start = getattr(self, self._start_param)
        alpha0 = None if start is None else np.full(n_hyper, self._log_penalty(start))
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
            res = hoag(problems, alpha0, options=options, callback=self.callback)
        finally:
            logger.setLevel(old_level)
            if handler is not None:
                logger.removeHandler(handler)
        self.hoag_result_ = res
        self.n_iter_ = int(res.nit)
        cols = res.trace_columns()
        one = n_hyper == 1
        self.history_ = {
            **self._penalty_history(cols["alpha"][:, 0] if one else cols["alpha"]),
            "validation_loss": cols["outer_value"],
            "hypergradient": cols["hypergradient"][:, 0] if one else cols["hypergradient"],
            "accepted": cols["accepted"], "time": cols["time"],
            "forward_time": cols["forward_time"], "backward_time": cols["backward_time"],
            "inner_iter": cols["inner_iter"], "n_hvp": cols["n_hvp"],
        }
        return res

    def _final_fits(self, res, problems, X, y):
        """Tight fits at the chosen penalty: ``[(problem, x)]``.

        ``refit=True``: one fit on all of ``(X, y)``, started from the folds'
        mean solution; otherwise one fit per fold.
        """
        xs = res.x if isinstance(res.x, list) else [res.x]
        if self.refit:
            full = self._problem(X, y, X[:1], y[:1])
            return [(full, self._final_fit(full, np.mean(xs, axis=0), res.alpha))]
        return [(p, self._final_fit(p, xk, res.alpha)) for p, xk in zip(problems, xs)]

    def _final_fit(self, problem, x0, alpha):
        res = fit_inner(problem, alpha, tol=self.final_tol, x0=x0, maxcor=self.maxcor,
                        max_iter=max(10 * self.max_inner_iter, 1000))
        tol = self.final_tol * problem.gradient_scale(alpha)
        if not res.success and res.grad_norm > 1e3 * tol:
            warnings.warn(
                f"The final fit at log-penalty {alpha} stopped with ||grad|| = "
                f"{res.grad_norm:.3g}, above final_tol * ||grad(0)|| = {tol:.3g} "
                f"({res.message}). Increase max_inner_iter or final_tol.",
                ConvergenceWarning, stacklevel=5,  # the caller of fit
            )
        return res.x

    def _check_splits(self, cv, X, y, labels):
        """The splits of ``cv``, checked: non-empty parts, each with every class of ``labels``."""
        try:
            splits = list(cv.split(X, y))
        except ValueError as exc:
            raise ValueError(f"The cross-validation split failed: {exc} Provide more samples "
                             "(per class, for a classifier) or fewer folds.") from None
        for k, (train, val) in enumerate(splits):
            for part, idx in (("training", train), ("validation", val)):
                if len(idx) == 0:
                    raise ValueError(f"The {part} part of split {k} is empty; provide more "
                                     "data or change the split.")
                if labels is None:
                    continue
                missing = np.setdiff1d(labels, y[idx])
                if missing.size:
                    raise ValueError(
                        f"The {part} part of split {k} misses the class(es) "
                        f"{missing.tolist()}; every split needs every class. Use a "
                        "stratified splitter, more data, or fewer folds."
                    )
        return splits



class ShineLogisticRegressionCV(ClassifierMixin, _HoagCV):
    __doc__ = None  # set below, with the parameters shared with ShineRidgeCV

    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "C0": [_POSITIVE, None],
        "C_bounds": [Pair(_POSITIVE)],
        "multi_class_C": [Options("shared", "per-class")],
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
        inner_solver=_D.inner_solver,
        max_time=_D.max_time,
        n_jobs=_D.n_jobs,
        cv=None,
        validation_fraction=0.2,
        fit_intercept=True,
        refit=True,
        final_tol=1e-8,
        random_state=None,
        verbose=0,
        callback=None,
        multi_class_C="shared",
        penalty_groups=None,
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _log_penalty(self, C):
        return -float(np.log(C))

    def _penalty_history(self, log_penalty):
        return {"C": np.exp(-log_penalty), "alpha": log_penalty}

    def _splits(self, X, y):
        if self.cv is None:
            n_val = int(np.ceil(self.validation_fraction * len(y)))
            if n_val < len(self.classes_) or len(y) - n_val < len(self.classes_):
                raise ValueError(
                    f"Too few samples ({len(y)}) for a stratified validation split of "
                    f"validation_fraction={self.validation_fraction}: both the training and "
                    f"the validation part need every class ({len(self.classes_)}). Provide "
                    "more data or change validation_fraction."
                )
            cv = StratifiedShuffleSplit(n_splits=1, test_size=n_val,
                                        random_state=self.random_state)
        else:
            cv = check_cv(self.cv, y, classifier=True)
        return self._check_splits(cv, X, y, self.classes_)

    @single_thread_blas
    def fit(self, X, y):
        """Tune ``C`` on the validation split(s) and fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two classes or more, of any label type.

        Returns
        -------
        self : ShineLogisticRegressionCV
        """
        options = self._hoag_options()
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64,
                             y_numeric=False, multi_output=False, ensure_min_samples=2)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
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
        splits = self._splits(X, y)
        problems = [self._problem(X[tr], y[tr], X[va], y[va]) for tr, va in splits]
        res = self._run_hoag(problems, options)
        self.alpha_ = _squeeze(res.alpha)
        self.C_ = _squeeze(np.exp(-res.alpha))
        fits = [p.coef_intercept(xk) for p, xk in self._final_fits(res, problems, X, y)]
        coef = np.mean([np.atleast_2d(w) for w, _ in fits], axis=0)
        self.coef_ = coef.reshape(-1, X.shape[1])
        self.intercept_ = np.atleast_1d(np.mean([b for _, b in fits], axis=0)).astype(float)
        return self

    def _problem(self, X_train, y_train, X_val, y_val):
        """The bilevel problem of one split: binary or multinomial."""
        if len(self.classes_) > 2:
            return MultinomialLogisticProblem(
                X_train, y_train, X_val, y_val, fit_intercept=self.fit_intercept,
                penalty=self.multi_class_C)
        return LogisticProblem(X_train, y_train, X_val, y_val, fit_intercept=self.fit_intercept,
                               penalty_groups=self.penalty_groups)

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
        inner_solver=_D.inner_solver,
        max_time=_D.max_time,
        n_jobs=_D.n_jobs,
        cv=None,
        validation_fraction=0.2,
        fit_intercept=True,
        refit=True,
        final_tol=1e-8,
        random_state=None,
        verbose=0,
        callback=None,
        penalty_groups=None,
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _log_penalty(self, alpha):
        return float(np.log(alpha))

    def _penalty_history(self, log_penalty):
        return {"alpha": np.exp(log_penalty), "log_alpha": log_penalty}

    def _center(self, X_train, y_train):
        """``(x_mean, y_mean)`` when the split's data are centred (dense ``X`` with an
        intercept), else ``None``."""
        if self.fit_intercept and not sp.issparse(X_train):
            return X_train.mean(axis=0), y_train.mean()
        return None

    def _problem(self, X_train, y_train, X_val, y_val):
        """The bilevel problem of one split.

        With dense ``X`` and ``fit_intercept``, the data are centred on the
        training part's means (:meth:`_center`) and the problem has no
        intercept (as in scikit-learn's ``Ridge``; the solution is the same).
        An explicit intercept has curvature ``n_train`` against ``alpha`` plus
        the features' for the weights: an ill-conditioned inner Hessian whose
        L-BFGS estimate, hence SHINE's hypergradient, is poor (on diabetes with
        5 folds SHINE then stopped at alpha = 0.04, 100x the optimum). Sparse
        ``X`` keeps the explicit intercept, to stay sparse.
        """
        offsets = self._center(X_train, y_train)
        if offsets is not None:
            x_mean, y_mean = offsets
            X_train, X_val = X_train - x_mean, X_val - x_mean
            y_train, y_val = y_train - y_mean, y_val - y_mean
        return RidgeProblem(X_train, y_train, X_val, y_val,
                            fit_intercept=self.fit_intercept and offsets is None,
                            penalty_groups=self.penalty_groups)

    @staticmethod
    def _coef_intercept(problem, x, offsets):
        """``(coef, intercept)`` of the original data from a problem's solution."""
        w, b = problem.coef_intercept(x)
        if offsets is not None:
            x_mean, y_mean = offsets
            return w, float(y_mean - x_mean @ w)
        return w, b

    def _splits(self, X, y):
        if self.cv is None:
            n_val = int(np.ceil(self.validation_fraction * len(y)))
            if len(y) - n_val < 1:
                raise ValueError(
                    f"Too few samples ({len(y)}) for a validation split of "
                    f"validation_fraction={self.validation_fraction}: the training part "
                    "would be empty. Provide more data or lower validation_fraction."
                )
            cv = ShuffleSplit(n_splits=1, test_size=n_val, random_state=self.random_state)
        else:
            cv = check_cv(self.cv, y, classifier=False)
        return self._check_splits(cv, X, y, None)

    @single_thread_blas
    def fit(self, X, y):
        """Tune ``alpha`` on the validation split(s) and fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Real-valued targets (one output).

        Returns
        -------
        self : ShineRidgeCV
        """
        options = self._hoag_options()
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64,
                             y_numeric=True, multi_output=False, ensure_min_samples=2)
        y = column_or_1d(y, warn=True)
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ShineRidgeCV needs numeric targets y ({exc}); for class labels "
                             "use ShineLogisticRegressionCV.") from None
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values; remove or impute them.")
        self._check_penalty_groups(X.shape[1])
        if sp.issparse(X):
            X = X.tocsr()
        splits = self._splits(X, y)
        problems = [self._problem(X[tr], y[tr], X[va], y[va]) for tr, va in splits]
        res = self._run_hoag(problems, options)
        self.log_alpha_ = _squeeze(res.alpha)
        self.alpha_ = _squeeze(np.exp(res.alpha))
        offsets = ([self._center(X, y)] if self.refit
                   else [self._center(X[tr], y[tr]) for tr, _ in splits])
        fits = [self._coef_intercept(p, xk, o)
                for (p, xk), o in zip(self._final_fits(res, problems, X, y), offsets)]
        self.coef_ = np.mean([w for w, _ in fits], axis=0)
        self.intercept_ = float(np.mean([b for _, b in fits]))
        return self

    def predict(self, X):
        """Predicted targets ``X @ coef_ + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=("csr", "csc"), dtype=np.float64, reset=False)
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
    penalty_groups : array-like of int of shape (n_features,), default=None
        Binary targets only: the group of each feature, one ``C`` per group
        (``np.arange(n_features)``: one per feature).

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
        ``inner_iter``, ``n_hvp``.
    hoag_result_ : HoagResult
        The full result of the outer loop.

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

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_groups,)
        Chosen penalty (an array with ``penalty_groups``).
    log_alpha_ : float or ndarray of shape (n_groups,)
        ``log(alpha_)``, what the outer loop optimised.
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.
    n_iter_ : int
        Outer iterations run.
    history_ : dict of ndarray
        The outer trace: ``alpha``, ``log_alpha``, ``validation_loss`` (half
        the summed squared validation error), ``hypergradient``, ``accepted``,
        ``time``, ``forward_time``, ``backward_time``, ``inner_iter``, ``n_hvp``.
    hoag_result_ : HoagResult
        The full result of the outer loop.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from hoag_shine import ShineRidgeCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = ShineRidgeCV(cv=5).fit(X, y)
    >>> reg.score(X, y) > 0.4
    True
    """
