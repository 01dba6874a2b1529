"""scikit-learn estimators whose regularisation is tuned by hypergradient descent."""

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

from ._utils import single_thread_blas
from .hypergrad import STRATEGIES, HypergradientStrategy
from .inner import minimize_lbfgs
from .outer import hoag
from .problems import LogisticProblem, MultinomialLogisticProblem, RidgeProblem

__all__ = ["ShineLogisticRegressionCV", "ShineRidgeCV"]

_TOL_SCHEDULES = ("exponential", "quadratic", "cubic", "exact")


def _check_number(name, value, *, low=None, high=None, integer=False, low_open=False,
                  allow_none=False):
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, "
                         f"got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")


def _squeeze(values):
    """A float for one hyperparameter, a copy of the array for several."""
    return float(values[0]) if values.shape[0] == 1 else np.array(values)


class _HoagCV(BaseEstimator):
    """What the hypergradient-tuned estimators share.

    Subclasses store their parameters in ``__init__`` (scikit-learn's rule),
    name their start and bounds (``_start_param``, ``_bounds_param``), turn
    them into log-penalties (``_log_penalty``) and build one bilevel problem
    per split (``_problem``); this class validates the outer loop's knobs, runs
    :func:`~hoag_shine.hoag` on the splits' problems, keeps its trace and makes
    the final fit.
    """

    _start_param = "C0"
    _bounds_param = "C_bounds"

    def _log_penalty(self, strength):  # pragma: no cover - interface
        """Log-penalty ``alpha`` of the user-facing strength (``C`` or ``alpha``)."""
        raise NotImplementedError

    def _penalty_history(self, log_penalty):  # pragma: no cover - interface
        """The ``history_`` entries of the penalties, named as the estimator names them."""
        raise NotImplementedError

    def _check_penalty_groups(self, n_features):
        if self.penalty_groups is not None and len(self.penalty_groups) != n_features:
            raise ValueError(f"penalty_groups must give one group per feature ({n_features}), "
                             f"got {len(self.penalty_groups)}.")

    def _log_bounds(self):
        """Bounds of the log-penalty, lower first."""
        return tuple(sorted(self._log_penalty(b) for b in getattr(self, self._bounds_param)))

    def _validate_hoag_params(self):
        if not (isinstance(self.hypergradient, HypergradientStrategy)
                or self.hypergradient in STRATEGIES):
            raise ValueError(
                f"Unknown hypergradient {self.hypergradient!r}; choose one of "
                f"{sorted(STRATEGIES)} or pass a HypergradientStrategy instance."
            )
        name, bname = self._start_param, self._bounds_param
        start, bounds = getattr(self, name), getattr(self, bname)
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ValueError(f"{bname} must be a pair (min, max), got {bounds!r}.")
        _check_number(f"{bname}[0]", bounds[0], low=0, low_open=True)
        _check_number(f"{bname}[1]", bounds[1], low=0, low_open=True)
        if not bounds[0] < bounds[1]:
            raise ValueError(f"{bname} must satisfy min < max, got {bounds!r}.")
        _check_number(name, start, low=0, low_open=True)
        if not bounds[0] <= start <= bounds[1]:
            raise ValueError(
                f"{name}={start!r} lies outside {bname}={bounds!r}; choose a starting value "
                f"inside the searched range or widen {bname}."
            )
        _check_number("max_iter", self.max_iter, low=1, integer=True)
        _check_number("tol", self.tol, low=0)
        _check_number("value_tol", self.value_tol, low=0)
        _check_number("patience", self.patience, low=1, integer=True)
        _check_number("stop_eps", self.stop_eps, low=0, high=1, low_open=True, allow_none=True)
        _check_number("validation_fraction", self.validation_fraction, low=0, high=1,
                      low_open=True)
        if self.validation_fraction >= 1:
            raise ValueError("validation_fraction must be < 1.")
        _check_number("memory", self.memory, low=1, integer=True)
        _check_number("max_inner_iter", self.max_inner_iter, low=1, integer=True)
        if self.tol_schedule not in _TOL_SCHEDULES and not callable(self.tol_schedule):
            raise ValueError(f"tol_schedule must be one of {_TOL_SCHEDULES} or a callable, "
                             f"got {self.tol_schedule!r}.")
        _check_number("eps0", self.eps0, low=0, high=1, low_open=True)
        _check_number("decay", self.decay, low=0, high=1, low_open=True)
        _check_number("step_growth", self.step_growth, low=0, high=1, low_open=True)
        _check_number("max_step", self.max_step, low=0, low_open=True)
        _check_number("first_step", self.first_step, low=0, low_open=True)
        if self.step_rule not in ("secant", "hoag"):
            raise ValueError(f"step_rule must be 'secant' or 'hoag', got {self.step_rule!r}.")
        if self.inner_solver not in ("numpy", "scipy"):
            raise ValueError(f"inner_solver must be 'numpy' or 'scipy', got {self.inner_solver!r}.")
        _check_number("final_tol", self.final_tol, low=0, low_open=True)
        _check_number("verbose", self.verbose, low=0, integer=True)

    def _run_hoag(self, problems):
        """Run the outer loop on the splits' problems; keep its result and trace."""
        n_hyper = problems[0].n_hyper
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
            res = hoag(
                problems, np.full(n_hyper, self._log_penalty(getattr(self, self._start_param))),
                hypergradient=self.hypergradient,
                hypergradient_params=self.hypergradient_params,
                max_iter=self.max_iter, tol=self.tol, value_tol=self.value_tol,
                patience=self.patience, stop_eps=self.stop_eps,
                tol_schedule=self.tol_schedule,
                eps0=self.eps0, decay=self.decay, bounds=self._log_bounds(),
                maxcor=self.memory, max_inner_iter=self.max_inner_iter,
                step_growth=self.step_growth, step_rule=self.step_rule,
                max_step=self.max_step, first_step=self.first_step,
                inner_solver=self.inner_solver, warm_memory=self.warm_memory,
                callback=self.callback, n_jobs=self.n_jobs,
            )
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
        fun_grad = lambda v: problem.inner_value_grad(v, alpha)  # noqa: E731
        norm0 = float(np.linalg.norm(fun_grad(problem.initial_x())[1]))
        tol = self.final_tol * (norm0 if norm0 > 0 else 1.0)
        res = minimize_lbfgs(fun_grad, x0, tol=tol, maxcor=self.memory,
                             max_iter=max(10 * self.max_inner_iter, 1000))
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
    """L2 logistic regression whose C is tuned by hypergradient descent (HOAG + SHINE).

    A drop-in alternative to :class:`sklearn.linear_model.LogisticRegressionCV`:
    instead of fitting a grid of ``C`` values, it follows
    the gradient of the validation loss with respect to ``log(1 / C)``,
    computed by the implicit function theorem. With ``hypergradient="shine"``
    the inverse-Hessian-vector product it needs comes for free from the inner
    L-BFGS solver's memory.

    The model minimises ``sum_i log(1 + exp(-y_i (x_i . w + b))) + ||w||^2 / (2 C)``
    (scikit-learn's ``LogisticRegression`` objective), and ``C`` is chosen to
    minimise the summed log-loss on the validation split(s). With three classes
    or more the model is multinomial (softmax), with one ``C`` shared by all
    classes or one per class (``multi_class_C``); with two, ``penalty_groups``
    gives one ``C`` per group of features.

    Parameters
    ----------
    hypergradient : {"shine", "shine-opa", "shine-refine", "cg", "truncated-cg", \
"jacobian-free", "exact"} or HypergradientStrategy, default="shine"
        How the hypergradient's inverse-Hessian-vector product is approximated.
    hypergradient_params : dict, default=None
        Constructor parameters of the strategy, e.g. ``{"max_iter": 5}``.
    C0 : float, default=1.0
        Starting value of ``C``.
    max_iter : int, default=30
        Outer (hyperparameter) iterations.
    tol : float, default=1e-2
        Stop when a step changes ``log(C)`` by at most ``tol`` (C by about 1%:
        the validation loss is flat at that scale, and noisier hypergradients
        such as SHINE's rarely settle much finer within ``max_iter``).
    value_tol : float, default=1e-4
        Also stop when the validation loss has settled: it decreased by at most
        ``value_tol`` (relative) over the last ``patience`` outer iterations.
    patience : int, default=5
        Outer iterations over which ``value_tol`` is measured.
    stop_eps : float, default=1e-6
        The stopping tests (``tol``, ``value_tol``) count only once the
        relative inner tolerance is at most ``stop_eps``; an earlier stop
        tightens the schedule to it and goes on (see :func:`hoag_shine.hoag`).
        The search starts with loose solves and ends on tight ones. ``None``:
        the tests count at any tolerance.
    cv : int, cross-validation generator or iterable, default=None
        ``None``: one stratified hold-out split of ``validation_fraction`` of
        the data. An int: that many stratified folds. Any scikit-learn
        splitter (e.g. ``PredefinedSplit`` for your own validation set) or an
        iterable of ``(train, validation)`` index arrays. With several folds
        the validation losses and their hypergradients are summed.
    validation_fraction : float, default=0.2
        Share of the data held out when ``cv=None``.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    refit : bool, default=True
        Refit on all the data at the chosen ``C`` (warm-started). ``False``
        keeps the average of the folds' coefficients, each solved tightly at
        the chosen ``C``.
    memory : int, default=30
        L-BFGS memory of the inner solver (curvature pairs SHINE reuses).
    max_inner_iter : int, default=1000
        Iteration cap of each inner solve.
    tol_schedule : {"exponential", "quadratic", "cubic", "exact"}, default="exponential"
        How the inner tolerance shrinks along the outer iterations.
    eps0 : float, default=1e-3
        First relative inner tolerance.
    decay : float, default=0.9
        Factor of the exponential schedule.
    C_bounds : (float, float), default=(exp(-12), exp(12))
        Range of ``C`` searched.
    step_growth : float, default=0.95
        HOAG's factor on the outer Lipschitz estimate after a good step.
    step_rule : {"secant", "hoag"}, default="secant"
        Outer step: safeguarded secant (Barzilai-Borwein) or HOAG's 1/L rule;
        see :func:`hoag_shine.hoag`.
    max_step : float, default=3.0
        Largest change of ``log(C)`` in one secant step.
    first_step : float, default=1.0
        Change of ``log(C)`` in the first step.
    warm_memory : bool, default=True
        Carry the exactly shifted L-BFGS pairs across outer iterations.
    inner_solver : {"numpy", "scipy"}, default="numpy"
        The project's L-BFGS (starts from the carried pairs) or SciPy's L-BFGS-B.
    final_tol : float, default=1e-8
        Relative gradient tolerance of the final fit(s) at the chosen ``C``.
    random_state : int, RandomState instance or None, default=None
        Seeds the stratified split when ``cv=None``.
    n_jobs : int, default=None
        Folds solved in parallel (threads).
    verbose : int, default=0
        ``> 0`` logs each outer iteration (logger ``"hoag_shine"``, level INFO)
        to stderr, unless that logger already has handlers of the
        application's.
    callback : callable, default=None
        Passed to :func:`hoag_shine.hoag`; raise ``StopIteration`` to stop.
    multi_class_C : {"shared", "per-class"}, default="shared"
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

    def __init__(
        self,
        *,
        hypergradient="shine",
        hypergradient_params=None,
        C0=1.0,
        max_iter=30,
        tol=1e-2,
        value_tol=1e-4,
        patience=5,
        stop_eps=1e-6,
        cv=None,
        validation_fraction=0.2,
        fit_intercept=True,
        refit=True,
        memory=30,
        max_inner_iter=1000,
        tol_schedule="exponential",
        eps0=1e-3,
        decay=0.9,
        C_bounds=(np.exp(-12.0), np.exp(12.0)),
        step_growth=0.95,
        step_rule="secant",
        max_step=3.0,
        first_step=1.0,
        warm_memory=True,
        inner_solver="numpy",
        final_tol=1e-8,
        random_state=None,
        n_jobs=None,
        verbose=0,
        callback=None,
        multi_class_C="shared",
        penalty_groups=None,
    ):
        self.hypergradient = hypergradient
        self.hypergradient_params = hypergradient_params
        self.C0 = C0
        self.max_iter = max_iter
        self.tol = tol
        self.value_tol = value_tol
        self.patience = patience
        self.stop_eps = stop_eps
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.fit_intercept = fit_intercept
        self.refit = refit
        self.memory = memory
        self.max_inner_iter = max_inner_iter
        self.tol_schedule = tol_schedule
        self.eps0 = eps0
        self.decay = decay
        self.C_bounds = C_bounds
        self.step_growth = step_growth
        self.step_rule = step_rule
        self.max_step = max_step
        self.first_step = first_step
        self.inner_solver = inner_solver
        self.warm_memory = warm_memory
        self.final_tol = final_tol
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callback = callback
        self.multi_class_C = multi_class_C
        self.penalty_groups = penalty_groups

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- validation ----------------------------------------------------------
    def _log_penalty(self, C):
        return -float(np.log(C))

    def _penalty_history(self, log_penalty):
        return {"C": np.exp(-log_penalty), "alpha": log_penalty}

    def _validate_params(self):
        self._validate_hoag_params()
        if self.multi_class_C not in ("shared", "per-class"):
            raise ValueError("multi_class_C must be 'shared' (one C for all classes) or "
                             f"'per-class' (one C per class), got {self.multi_class_C!r}.")

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

    # -- fitting -------------------------------------------------------------
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
        self._validate_params()
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
        multiclass = len(self.classes_) > 2
        if multiclass and self.penalty_groups is not None:
            raise ValueError("penalty_groups applies to binary targets; with "
                             f"{len(self.classes_)} classes use multi_class_C='per-class' or "
                             "'shared'.")
        self._check_penalty_groups(X.shape[1])
        if sp.issparse(X):
            X = X.tocsr()
        splits = self._splits(X, y)
        problems = [self._problem(X[tr], y[tr], X[va], y[va]) for tr, va in splits]
        res = self._run_hoag(problems)
        self.alpha_ = _squeeze(res.alpha)
        self.C_ = _squeeze(np.exp(-res.alpha))
        x = np.mean([xk for _, xk in self._final_fits(res, problems, X, y)], axis=0)
        n_features = X.shape[1]
        if multiclass:
            W, b = problems[0]._split(x)
            self.coef_, self.intercept_ = W.T.copy(), b
        else:
            self.coef_ = x[:n_features].reshape(1, -1)
            self.intercept_ = np.array([x[-1] if self.fit_intercept else 0.0])
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
    """Ridge regression whose penalty is tuned by hypergradient descent (HOAG + SHINE).

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
    hypergradient : {"shine", "shine-opa", "shine-refine", "cg", "truncated-cg", \
"jacobian-free", "exact"} or HypergradientStrategy, default="shine"
        How the hypergradient's inverse-Hessian-vector product is approximated.
    hypergradient_params : dict, default=None
        Constructor parameters of the strategy, e.g. ``{"max_iter": 5}``.
    alpha0 : float, default=1.0
        Starting penalty.
    max_iter : int, default=30
        Outer (hyperparameter) iterations.
    tol : float, default=1e-2
        Stop when a step changes ``log(alpha)`` by at most ``tol``.
    value_tol : float, default=1e-4
        Also stop when the validation loss has settled: it decreased by at most
        ``value_tol`` (relative) over the last ``patience`` outer iterations.
    patience : int, default=5
        Outer iterations over which ``value_tol`` is measured.
    stop_eps : float, default=1e-6
        The stopping tests (``tol``, ``value_tol``) count only once the
        relative inner tolerance is at most ``stop_eps``; an earlier stop
        tightens the schedule to it and goes on (see :func:`hoag_shine.hoag`).
        The search starts with loose solves and ends on tight ones. ``None``:
        the tests count at any tolerance.
    cv : int, cross-validation generator or iterable, default=None
        ``None``: one shuffled hold-out split of ``validation_fraction`` of the
        data. An int: that many (unshuffled) K folds. Any scikit-learn splitter
        (e.g. ``PredefinedSplit`` for your own validation set) or an iterable
        of ``(train, validation)`` index arrays. With several folds the
        validation errors and their hypergradients are summed.
    validation_fraction : float, default=0.2
        Share of the data held out when ``cv=None``.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    refit : bool, default=True
        Refit on all the data at the chosen ``alpha``. ``False`` keeps the
        average of the folds' coefficients, each solved tightly.
    memory : int, default=30
        L-BFGS memory of the inner solver (curvature pairs SHINE reuses).
    max_inner_iter : int, default=1000
        Iteration cap of each inner solve.
    tol_schedule : {"exponential", "quadratic", "cubic", "exact"}, default="exponential"
        How the inner tolerance shrinks along the outer iterations.
    eps0 : float, default=1e-3
        First relative inner tolerance.
    decay : float, default=0.9
        Factor of the exponential schedule.
    alpha_bounds : (float, float), default=(exp(-12), exp(12))
        Range of ``alpha`` searched.
    step_growth : float, default=0.95
        HOAG's factor on the outer Lipschitz estimate after a good step.
    step_rule : {"secant", "hoag"}, default="secant"
        Outer step: safeguarded secant (Barzilai-Borwein) or HOAG's 1/L rule.
    max_step : float, default=3.0
        Largest change of ``log(alpha)`` in one secant step.
    first_step : float, default=1.0
        Change of ``log(alpha)`` in the first step.
    warm_memory : bool, default=True
        Carry the exactly shifted L-BFGS pairs across outer iterations.
    inner_solver : {"numpy", "scipy"}, default="numpy"
        The project's L-BFGS or SciPy's L-BFGS-B.
    final_tol : float, default=1e-8
        Relative gradient tolerance of the final fit(s).
    random_state : int, RandomState instance or None, default=None
        Seeds the hold-out split when ``cv=None``.
    n_jobs : int, default=None
        Folds solved in parallel (threads).
    verbose : int, default=0
        ``> 0`` logs each outer iteration to stderr.
    callback : callable, default=None
        Passed to :func:`hoag_shine.hoag`; raise ``StopIteration`` to stop.
    penalty_groups : array-like of int of shape (n_features,), default=None
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

    _start_param = "alpha0"
    _bounds_param = "alpha_bounds"

    def __init__(
        self,
        *,
        hypergradient="shine",
        hypergradient_params=None,
        alpha0=1.0,
        max_iter=30,
        tol=1e-2,
        value_tol=1e-4,
        patience=5,
        stop_eps=1e-6,
        cv=None,
        validation_fraction=0.2,
        fit_intercept=True,
        refit=True,
        memory=30,
        max_inner_iter=1000,
        tol_schedule="exponential",
        eps0=1e-3,
        decay=0.9,
        alpha_bounds=(np.exp(-12.0), np.exp(12.0)),
        step_growth=0.95,
        step_rule="secant",
        max_step=3.0,
        first_step=1.0,
        warm_memory=True,
        inner_solver="numpy",
        final_tol=1e-8,
        random_state=None,
        n_jobs=None,
        verbose=0,
        callback=None,
        penalty_groups=None,
    ):
        self.hypergradient = hypergradient
        self.hypergradient_params = hypergradient_params
        self.alpha0 = alpha0
        self.max_iter = max_iter
        self.tol = tol
        self.value_tol = value_tol
        self.patience = patience
        self.stop_eps = stop_eps
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.fit_intercept = fit_intercept
        self.refit = refit
        self.memory = memory
        self.max_inner_iter = max_inner_iter
        self.tol_schedule = tol_schedule
        self.eps0 = eps0
        self.decay = decay
        self.alpha_bounds = alpha_bounds
        self.step_growth = step_growth
        self.step_rule = step_rule
        self.max_step = max_step
        self.first_step = first_step
        self.warm_memory = warm_memory
        self.inner_solver = inner_solver
        self.final_tol = final_tol
        self.random_state = random_state
        self.n_jobs = n_jobs
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

    def _problem(self, X_train, y_train, X_val, y_val):
        """The bilevel problem of one split.

        With dense ``X`` and ``fit_intercept``, the data are centred on the
        training part's means and the problem has no intercept (as in
        scikit-learn's ``Ridge``; the solution is the same). An explicit
        intercept has curvature ``n_train`` against ``alpha`` plus the
        features' for the weights: an ill-conditioned inner Hessian whose
        L-BFGS estimate, hence SHINE's hypergradient, is poor (on diabetes with
        5 folds SHINE then stopped at alpha = 0.04, 100x the optimum). Sparse
        ``X`` keeps the explicit intercept, to stay sparse.
        """
        center = self.fit_intercept and not sp.issparse(X_train)
        if center:
            x_mean, y_mean = X_train.mean(axis=0), y_train.mean()
            X_train, X_val = X_train - x_mean, X_val - x_mean
            y_train, y_val = y_train - y_mean, y_val - y_mean
        problem = RidgeProblem(X_train, y_train, X_val, y_val,
                               fit_intercept=self.fit_intercept and not center,
                               penalty_groups=self.penalty_groups)
        problem.offsets_ = (x_mean, y_mean) if center else None
        return problem

    @staticmethod
    def _coef_intercept(problem, x):
        """``(coef, intercept)`` of the original data from a problem's solution."""
        w = x[: problem.n_features]
        if problem.offsets_ is not None:
            x_mean, y_mean = problem.offsets_
            return w, float(y_mean - x_mean @ w)
        return w, float(x[-1]) if problem.fit_intercept else 0.0

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
        self._validate_hoag_params()
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
        res = self._run_hoag(problems)
        self.log_alpha_ = _squeeze(res.alpha)
        self.alpha_ = _squeeze(np.exp(res.alpha))
        fits = [self._coef_intercept(p, xk) for p, xk in self._final_fits(res, problems, X, y)]
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
