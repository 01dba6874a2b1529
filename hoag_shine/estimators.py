"""scikit-learn estimators whose regularisation is tuned by hypergradient descent.

The estimators adapt, :mod:`hoag_shine.outer` tunes: their (flat,
scikit-learn-required) constructor parameters become one
:class:`~hoag_shine.outer.HoagOptions`, their input is validated and split,
and :func:`~hoag_shine.outer.tune.tune` returns the search's result, history,
scores and final fits as one value, which ``fit`` turns into the fitted
attributes in one place. The outer loop's stops are put in the estimator's
words here (``C_bounds``), from the values the search returns.
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._cv import check_splits, make_cv, metadata_router, split_params
from ._params import (Callable, Instance, Interval, InvalidParameterError, Options, Pair,
                      parameter_docs, validate_params)
from ._utils import outside_stacklevel, single_thread_blas
from .outer import HoagOptions, Wording, warn_stop
from .outer.tune import tune
from .problems import (LogisticProblem, MultinomialLogisticProblem, RidgeProblem,
                       check_sample_weight)

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

# The settings shared with hoag are documented once, in HoagOptions.
_SHARED_DOC = "\n" + parameter_docs(HoagOptions.__doc__, _HOAG_PARAMS) + """\
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
        mean solution with several folds, from zero with one split).
        ``False`` keeps the average of the folds' coefficients, each solved at
        the chosen penalty.
    final_tol : float, default=1e-4
        Relative gradient tolerance of the final fit(s): ``||grad|| <=
        final_tol * ||grad(0)||``, in the diagonal metric its L-BFGS is
        preconditioned by (binary problems on sparse data: the geometric mean of
        a coarse and a Jacobi guess of the inverse Hessian's diagonal). Small
        problems (parameters times samples at most 100,000) are then polished by
        Newton steps to machine precision.
    random_state : int, RandomState instance or None, default=None
        Seeds the hold-out split of ``cv="holdout"``.
    verbose : int, default=0
        ``> 0`` reports each outer iteration (the penalty as the estimator
        names it, the validation loss) to stderr, or to the handlers of the
        ``"hoag_shine"`` logger when the application configured some.
    callback : callable, default=None
        Passed to :func:`hoag_shine.hoag`; raise ``StopIteration`` to stop.
"""


def _unique_labels(y):
    """The sorted class labels of ``y``; a clear error for labels that do not sort."""
    try:
        return np.unique(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y})
        raise ValueError(f"y mixes label types ({', '.join(kinds)}) that cannot be sorted; "
                         "convert the labels to one type (e.g. all strings).") from None


def _training_mean(X, w=None) -> np.ndarray:
    """The (weighted) mean of the rows of ``X``."""
    weights = np.full(X.shape[0], 1.0 / X.shape[0]) if w is None else w / w.sum()
    return np.asarray(X.T @ weights).ravel()


def _check_weighted_splits(splits, y, w_train, w_val):
    """Each split's training part keeps two classes of positive weight, and each
    validation part a positive total weight (a clear error naming the split)."""
    for k, (train, val) in enumerate(splits):
        if w_train is not None and not w_train[train].sum() > 0:
            raise ValueError(f"The training part of split {k} has zero total sample_weight; "
                             "give some of its samples weight or change cv.")
        if (y is not None and w_train is not None
                and len(np.unique(y[train][w_train[train] > 0])) < 2):
            raise ValueError(
                f"The training part of split {k} has one class of positive weight only "
                "(sample_weight / class_weight); each training part needs two. Give those "
                "samples weight, or use a stratified splitter.")
        if w_val is not None and not w_val[val].sum() > 0:
            raise ValueError(
                f"The validation part of split {k} has zero total sample_weight: its loss "
                "cannot choose the penalty. Give some of its samples weight or change cv.")


def _squeeze(values):
    """A float for one hyperparameter, a copy of the array for several."""
    return float(values[0]) if values.shape[0] == 1 else np.array(values)


def _progress(verbose, names):
    """``log(record)`` for a fit with ``verbose > 0``: one line per outer iteration,
    the penalty named as the estimator names it, through the ``"hoag_shine"``
    logger's handlers when the application configured some, else to stderr. No
    logger's level is changed (fits in several threads do not interfere)."""
    if not verbose:
        return None
    logger = logging.getLogger("hoag_shine")
    handle = logger.handle if logger.handlers else logging.StreamHandler().handle
    name, to_strength = names

    def log(record):
        strength = np.array2string(to_strength(record["alpha"]), precision=4)
        msg = (f"iteration {record['iteration']}: {name}={strength} validation loss="
               f"{record['outer_value']:.6g} {'accepted' if record['accepted'] else 'rejected'}"
               f" inner_iter={record['inner_iter']} time={record['time']:.3f}s")
        handle(logger.makeRecord(logger.name, logging.INFO, "hoag_shine", 0, msg, None, None))

    return log


class _HoagCV(BaseEstimator):
    """What the hypergradient-tuned estimators share.

    Subclasses store their parameters in ``__init__`` (scikit-learn's rule),
    name their start and bounds (``_start_param``, ``_bounds_param``), turn
    them into log-penalties (``_log_penalty``) and build one bilevel problem
    per split (``_problem``); this class validates the parameters once, turns
    them into :class:`~hoag_shine.HoagOptions`, splits the data and calls
    :func:`~hoag_shine.outer.tune.tune`.
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
        log_bounds = tuple(sorted(self._log_penalty(b) for b in bounds))
        return HoagOptions(bounds=log_bounds, **{k: getattr(self, k) for k in _HOAG_PARAMS})

    def _wording(self) -> Wording:
        """How this estimator names the search's bounds (its own parameter, in the
        direction of its own strength)."""
        lo, hi = getattr(self, self._bounds_param)
        return Wording(bounds_name=self._bounds_param, bounds_text=f"({lo:g}, {hi:g})",
                       flip=self._log_penalty(2.0) < self._log_penalty(1.0))

    def _splits(self, X, y, sample_weight, params, classifier):
        """The checked ``(train, validation)`` splits of ``X``."""
        if self.penalty_groups is not None:
            groups = self.penalty_groups
            got = len(groups) if np.ndim(groups) == 1 else repr(groups)
            if got != X.shape[1]:
                raise ValueError(f"penalty_groups must give one group per feature "
                                 f"({X.shape[1]}), got {got}.")
        cv = make_cv(self.cv, y, classifier, self.validation_fraction, self.random_state)
        return check_splits(cv, X, y, classifier, split_params(self, sample_weight, params))

    def _tune(self, make_problem, X, targets, splits, weights, options, staged=False):
        """:func:`~hoag_shine.outer.tune.tune`, its warnings pointing at the caller of
        ``fit`` and its stops in this estimator's words."""
        start = getattr(self, self._start_param)
        alpha0 = None if start is None else self._log_penalty(start)
        log = _progress(self.verbose, self._strength_name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tuning = tune(make_problem, X, targets, splits, weights, options, alpha0=alpha0,
                          staged=staged, refit=self.refit, final_tol=self.final_tol,
                          callback=self.callback, log=log)
        for w in caught:  # pointing at the caller of fit
            warnings.warn(w.message, w.category, stacklevel=outside_stacklevel())
        for stop, opts in tuning.stops:
            warn_stop(stop, opts, self._wording(), stacklevel=outside_stacklevel())
        tuning.result.pop("memory", None)  # (the folds' pairs: not kept by an estimator)
        return tuning

    def _history(self, tuning) -> dict:
        """``history_``: the search's trace, its penalties named as this estimator
        names them."""
        cols = tuning.history
        one = cols["alpha"].shape[1] == 1
        return {
            **self._penalty_history(cols["alpha"][:, 0] if one else cols["alpha"]),
            "validation_loss": cols["outer_value"],
            "hypergradient": cols["hypergradient"][:, 0] if one else cols["hypergradient"],
            "accepted": cols["accepted"], "time": cols["time"],
            "forward_time": cols["forward_time"], "backward_time": cols["backward_time"],
            "inner_iter": cols["inner_iter"], "n_hvp": cols["n_hvp"],
        }

    def get_metadata_routing(self):
        """How ``fit``'s metadata are routed: ``sample_weight`` to this estimator,
        ``groups`` (and other split parameters) to the splitter.

        Returns
        -------
        routing : MetadataRouter
        """
        return metadata_router(self)


class _LinearClassifierOutputs:
    """Scores, labels and probabilities of a fitted linear classifier (``coef_``,
    ``intercept_``, ``classes_``): binary by the logistic function, several classes
    by the softmax."""

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


class ShineLogisticRegressionCV(ClassifierMixin, _LinearClassifierOutputs, _HoagCV):
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
        polish_tol=_D.polish_tol,
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
        scan=_D.scan,
        scan_step=_D.scan_step,
        warm_memory=_D.warm_memory,
        pairs_memory_mb=_D.pairs_memory_mb,
        pairs_precision=_D.pairs_precision,
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
        self.polish_tol = polish_tol
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
        self.scan = scan
        self.scan_step = scan_step
        self.warm_memory = warm_memory
        self.pairs_memory_mb = pairs_memory_mb
        self.pairs_precision = pairs_precision
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

    _strength_name = ("C", lambda alpha: np.exp(-alpha))

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
        X, y, sample_weight = self._check_data(X, y, sample_weight)
        splits = self._splits(X, y, sample_weight, params, classifier=True)
        staged = self.multi_class_C == "per-class" and len(self.classes_) > 2
        w_train = self._class_weighted(y, sample_weight)
        _check_weighted_splits(splits, y, w_train, sample_weight)
        tuning = self._tune(self._problem, X, [y], splits, (w_train, sample_weight), options,
                            staged=staged)
        res = tuning.result
        coefs = [p.coef_intercept(xk) for p, xk, _ in tuning.fits[0]]
        coef = np.mean([np.atleast_2d(w) for w, _ in coefs], axis=0)
        self.alpha_, self.C_ = _squeeze(res.alpha), _squeeze(np.exp(-res.alpha))
        self.coef_ = coef.reshape(-1, X.shape[1])
        self.intercept_ = np.atleast_1d(np.mean([b for _, b in coefs], axis=0)).astype(float)
        self.hoag_result_, self.history_ = res, self._history(tuning)
        self.n_iter_ = int(len(self.history_["time"]))
        self.scores_, self.best_score_ = tuning.scores, float(np.mean(tuning.scores))
        return self

    def _check_data(self, X, y, sample_weight):
        """Validated ``X``, ``y`` and weights; sets ``classes_``."""
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
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        if sample_weight is not None:
            weighted = np.unique(y[sample_weight > 0])
            if len(weighted) < 2:
                raise ValueError(
                    f"Only one class ({weighted[0]!r}) has samples of positive weight; this "
                    "solver needs samples of at least 2 classes.")
        return (X.tocsr() if sp.issparse(X) else X), y, sample_weight

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
        cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y,
                                  sample_weight=sample_weight)
        w = cw[np.searchsorted(self.classes_, y)]
        w = w if sample_weight is None else w * sample_weight
        kept = np.unique(y[w > 0])
        if len(kept) < 2:
            raise ValueError(
                f"class_weight={self.class_weight!r} leaves one class ({kept[0]!r}) with "
                "positive weight; every class the model learns needs a positive weight.")
        return w

    def _problem(self, X_train, y_train, X_val, y_val, w_train=None, w_val=None):
        """The bilevel problem of one split (binary or multinomial), and no metadata.

        With an intercept, the features are centred on the training part's
        (weighted) means, implicitly (a sparse ``X`` stays sparse): the same model,
        whose inner problem does not degrade with offsets in the features."""
        offset = _training_mean(X_train, w_train) if self.fit_intercept else None
        if len(self.classes_) > 2:
            return MultinomialLogisticProblem(
                X_train, y_train, X_val, y_val, fit_intercept=self.fit_intercept,
                penalty=self.multi_class_C, sample_weight=w_train,
                sample_weight_val=w_val, classes=self.classes_, feature_offset=offset), None
        return LogisticProblem(X_train, y_train, X_val, y_val, fit_intercept=self.fit_intercept,
                               penalty_groups=self.penalty_groups, sample_weight=w_train,
                               sample_weight_val=w_val, classes=self.classes_,
                               feature_offset=offset), None


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
        polish_tol=_D.polish_tol,
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
        scan=_D.scan,
        scan_step=_D.scan_step,
        warm_memory=_D.warm_memory,
        pairs_memory_mb=_D.pairs_memory_mb,
        pairs_precision=_D.pairs_precision,
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
        self.polish_tol = polish_tol
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
        self.scan = scan
        self.scan_step = scan_step
        self.warm_memory = warm_memory
        self.pairs_memory_mb = pairs_memory_mb
        self.pairs_precision = pairs_precision
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

    _strength_name = ("alpha", np.exp)

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
        SHINE's hypergradient, is poor.

        Returns
        -------
        problem : RidgeProblem
        offsets : (ndarray, float) or None
            ``(x_mean, y_mean)`` the data were centred on.
        """
        offsets = None
        if self.fit_intercept:
            offsets = (_training_mean(X_train, w_train),
                       float(np.average(y_train, weights=w_train)))
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
        X, y, sample_weight = self._check_data(X, y, sample_weight)
        splits = self._splits(X, y, sample_weight, params, classifier=False)
        _check_weighted_splits(splits, None, sample_weight, sample_weight)
        Y = y.reshape(len(y), -1)
        groups = ([[t] for t in range(Y.shape[1])] if self.alpha_per_target
                  else [list(range(Y.shape[1]))])
        tunings = [self._tune(self._problem, X, [Y[:, t] for t in cols], splits,
                              (sample_weight, sample_weight), options) for cols in groups]
        coefs = {t: [self._coef_intercept(p, xk, m) for p, xk, m in fit]
                 for cols, tuning in zip(groups, tunings) for t, fit in zip(cols, tuning.fits)}
        self._set_fitted(tunings, coefs, y.ndim == 2 and y.shape[1] > 1)
        return self

    def _check_data(self, X, y, sample_weight):
        """Validated ``X``, numeric ``y`` and weights."""
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64,
                             y_numeric=True, multi_output=True, ensure_min_samples=2)
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ShineRidgeCV needs numeric targets y ({exc}); for class labels "
                             "use ShineLogisticRegressionCV.") from None
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values; remove or impute them.")
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        return (X.tocsr() if sp.issparse(X) else X), y, sample_weight

    def _set_fitted(self, tunings, coefs, multi_output):
        """The fitted attributes from the tunings and final fits of every target."""
        one = len(tunings) == 1
        alphas = np.array([t.result.alpha for t in tunings])  # (n_tunings, n_hyper)
        if one:
            self.log_alpha_ = _squeeze(alphas[0])
        else:  # one per target: (n_targets,), or (n_targets, n_hyper) with penalty_groups
            self.log_alpha_ = alphas[:, 0] if alphas.shape[1] == 1 else alphas
        self.alpha_ = (float(np.exp(self.log_alpha_)) if np.ndim(self.log_alpha_) == 0
                       else np.exp(self.log_alpha_))
        histories = [self._history(t) for t in tunings]
        self.hoag_result_ = tunings[0].result if one else [t.result for t in tunings]
        self.history_ = histories[0] if one else histories
        self.n_iter_ = (len(histories[0]["time"]) if one
                        else np.array([len(h["time"]) for h in histories]))
        if one:
            self.scores_, self.best_score_ = tunings[0].scores, float(np.mean(tunings[0].scores))
        else:  # one score per target, as RidgeCV's alpha_per_target
            self.scores_ = np.array([t.scores for t in tunings]).T  # (n_splits, n_targets)
            self.best_score_ = np.mean(self.scores_, axis=0)
        coef = np.array([np.mean([w for w, _ in coefs[t]], axis=0) for t in sorted(coefs)])
        intercept = np.array([np.mean([b for _, b in coefs[t]]) for t in sorted(coefs)])
        self.coef_ = coef if multi_output else coef[0]
        self.intercept_ = intercept if multi_output else np.float64(intercept[0])

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
        rescaling the features rescales the whole search; on small problems a
        coarse scan around it comes first (``scan``).
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
        loss), computed on the whole ``y`` (and ``sample_weight``) as in
        ``LogisticRegressionCV``: ``"balanced"`` gives ``n_samples / (n_classes
        * bincount(y))``, with the samples' weights counted.

    Attributes
    ----------
    C_ : float or ndarray of shape (n_hyper,)
        Chosen inverse regularisation strength(s): a float for one ``C``, an
        array with per-class or per-group ``C``.
    alpha_ : float or ndarray of shape (n_hyper,)
        ``log(1 / C_)``, the log-penalties the outer loop optimised.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
        With several classes the intercepts sum to zero, as scikit-learn's (the
        softmax is unchanged by a common shift).
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
    scores_ : ndarray of shape (n_splits,) or (n_splits, n_targets)
        Validation criterion of each split at ``alpha_``: minus the mean squared
        error per validation sample and target (scikit-learn's
        ``neg_mean_squared_error``); one column per target with
        ``alpha_per_target``.
    best_score_ : float or ndarray of shape (n_targets,)
        Mean of ``scores_`` over the splits (one per target with
        ``alpha_per_target``, as ``RidgeCV``).

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from hoag_shine import ShineRidgeCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = ShineRidgeCV(cv=5).fit(X, y)
    >>> reg.score(X, y) > 0.4
    True
    """
