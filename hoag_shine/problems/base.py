"""Base class and shared pieces of the bilevel problems.

A problem is pure math: it holds the training and validation data and, for a
given pair ``(x, alpha)``, answers the inner value and gradient, the inner
Hessian-vector product, the cross term ``(d2h / dx dalpha)^T z`` and the outer
value and gradients. It contains no solver logic.

All problems here share the same penalty, ``0.5 * sum_j exp(alpha[group_j]) *
x_j**2`` over the penalised coordinates of ``x``; :class:`L2Penalty`
implements it once.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array

from .._utils import aligned

__all__ = ["BilevelProblem", "L2Penalty", "LinearModelProblem", "check_sample_weight"]


#: Largest |log-penalty| accepted: exp(700) ~ 1e304 is still a float64.
MAX_LOG_PENALTY = 700.0

#: Largest magnitude of the features (and inverse of the smallest non-zero largest one).
MAX_FEATURE_SCALE = 1e150


def _check_X(X, name: str, *, n_features: int | None = None):
    """Validate a design matrix: 2-d, finite, float64, CSR if sparse."""
    X = check_array(
        X,
        accept_sparse=("csr", "csc", "coo"),
        dtype=np.float64,
        ensure_all_finite=True,
        input_name=name,
    )
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        X.sort_indices()
    values = X.data if sp.issparse(X) else X
    top = float(np.max(np.abs(values))) if values.size else 0.0
    if top > MAX_FEATURE_SCALE or 0.0 < top < 1.0 / MAX_FEATURE_SCALE:
        raise ValueError(
            f"{name} holds values of magnitude up to {top:.3g}: beyond [1e-150, 1e150] the "
            "squares and products the solvers need over- or underflow in floating point. "
            "Rescale the features (e.g. with StandardScaler or MaxAbsScaler).")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the training data has "
            f"{n_features}; pass validation data with the same columns."
        )
    return X


def _transpose(X):
    """``X.T`` in the layout its products prefer: CSR for sparse ``X``.

    The adjoint products ``X^T r`` gather from CSR rows instead of scattering
    from the CSC view ``X.T``: 17% faster on 20news (binary), 1.8x with one
    column per class (multinomial).
    """
    return X.T.tocsr() if sp.issparse(X) else X.T


def _check_target(y, name: str, n_samples: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got an array of shape {y.shape}.")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {y.shape[0]} entries but the matching X has "
            f"{n_samples} rows."
        )
    return y


def check_sample_weight(w, n_samples: int, name: str = "sample_weight"):
    """Sample weights: ``None`` (all ones), or a finite non-negative 1-d array of length
    ``n_samples`` with a positive sum (a scalar is broadcast).

    Returns
    -------
    w : ndarray of shape (n_samples,) or None
    """
    if w is None:
        return None
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {w!r}.") from None
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise ValueError(f"{name} must have one weight per sample ({n_samples}), got shape "
                         f"{w.shape}.")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinite values; give finite weights.")
    if np.any(w < 0):
        raise ValueError(f"{name} contains negative weights; weights must be >= 0.")
    if n_samples and not w.sum() > 0:
        raise ValueError(f"{name} sums to zero; at least one sample needs a positive weight.")
    return w


def check_offset(offset, n_features):
    """A ``feature_offset``: ``None``, or ``n_features`` finite numbers (an array)."""
    if offset is None:
        return None
    offset = np.asarray(offset, dtype=np.float64).ravel()
    if offset.shape != (n_features,) or not np.all(np.isfinite(offset)):
        raise ValueError(f"feature_offset must hold {n_features} finite numbers, one per "
                         f"feature; got shape {offset.shape}.")
    return offset


def _weighted_sum(values, w) -> float:
    return float(values.sum()) if w is None else float(w @ values)


def _check_labels(y, classes, name: str) -> np.ndarray:
    """``y`` as an array whose labels are all among ``classes`` (else a clear error)."""
    y = np.asarray(y)
    unknown = ~np.isin(y, classes)
    if np.any(unknown):
        raise ValueError(f"{name} contains labels {np.unique(y[unknown])[:5].tolist()} that "
                         f"are not among the training classes {classes.tolist()}.")
    return y


def _inverse_diagonal(diag) -> np.ndarray:
    """``1 / diag``, with 1 where ``diag`` is not positive or the inverse not finite."""
    with np.errstate(divide="ignore"):
        inv = 1.0 / diag
    return np.where(np.isfinite(inv) & (diag > 0), inv, 1.0)


@functools.lru_cache(maxsize=4)
def _shared_weights(n_penalised, n_params, alpha_key):
    """Penalty weights of one shared penalty, read-only, kept for the last few alphas
    and shared by the problems of one shape (a fit's folds ask for the same ones)."""
    w = np.zeros(n_params)
    w[:n_penalised] = np.exp(np.frombuffer(alpha_key, dtype=np.float64)[0])
    w.flags.writeable = False
    return w


class L2Penalty:
    """Squared L2 penalty with one log-scale strength per group of coordinates.

    The penalty on ``x`` is ``0.5 * sum_j exp(alpha[groups[j]]) * x[j]**2``,
    summed over the first ``n_penalised`` coordinates (an intercept stored after
    them is not penalised).

    Parameters
    ----------
    n_penalised : int
        Number of penalised coordinates (the features).
    n_params : int
        Total length of ``x`` (features plus unpenalised coordinates).
    groups : array-like of int of shape (n_penalised,), default=None
        Group index of each penalised coordinate, in ``0 .. n_groups - 1``.
        ``None`` means a single group (one hyperparameter).
    """

    def __init__(self, n_penalised: int, n_params: int, groups=None):
        self.n_penalised = int(n_penalised)
        self.n_params = int(n_params)
        if groups is None:
            self.groups = None
            self.n_groups = 1
        else:
            groups = np.asarray(groups)
            if groups.shape != (self.n_penalised,):
                raise ValueError(
                    f"penalty_groups must have one entry per feature "
                    f"({self.n_penalised}), got shape {groups.shape}."
                )
            if not np.issubdtype(groups.dtype, np.integer):
                raise ValueError("penalty_groups must be an array of integers.")
            if groups.size and groups.min() < 0:
                raise ValueError("penalty_groups must be non-negative integers.")
            self.n_groups = int(groups.max()) + 1 if groups.size else 1
            missing = np.setdiff1d(np.arange(self.n_groups), groups)
            if missing.size:
                raise ValueError(
                    f"penalty_groups must use every group from 0 to "
                    f"{self.n_groups - 1}; groups {missing.tolist()} are empty."
                )
            # (a read-only index array is shared, e.g. the classes' of all the folds)
            self.groups = (groups if groups.dtype == np.intp and not groups.flags.writeable
                           else groups.astype(np.intp))

    def check_alpha(self, alpha) -> np.ndarray:
        """Return ``alpha`` as a finite float array of length ``n_groups``."""
        if isinstance(alpha, numbers.Real) and self.n_groups == 1:
            alpha = [alpha]
        alpha = np.asarray(alpha, dtype=np.float64)
        if alpha.ndim == 0 and self.n_groups == 1:
            alpha = alpha.reshape(1)
        if alpha.shape != (self.n_groups,):
            raise ValueError(
                f"alpha must be a 1-d array of length {self.n_groups} (one "
                f"log-penalty per group), got shape {alpha.shape}."
            )
        if not np.all(np.isfinite(alpha)):
            raise ValueError(f"alpha must be finite, got {alpha}.")
        if np.any(np.abs(alpha) > MAX_LOG_PENALTY):
            raise ValueError(
                f"alpha={alpha} is a log-penalty beyond +-{MAX_LOG_PENALTY:g}: exp(alpha) "
                "over- or underflows in floating point. Use log-penalties within that range "
                "(rescaling the features by s shifts the useful ones by 2 log(s)).")
        return alpha

    def weights(self, alpha) -> np.ndarray:
        """Diagonal of the penalty's Hessian: ``exp(alpha)`` per coordinate.

        Returns
        -------
        w : ndarray of shape (n_params,)
            ``exp(alpha[group])`` on the penalised coordinates, 0 elsewhere.
        """
        key = np.asarray(alpha, dtype=np.float64).tobytes()
        if self.groups is None:  # one array for every problem of this shape (the folds)
            return _shared_weights(self.n_penalised, self.n_params, key)
        cached = getattr(self, "_weights_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]  # read-only: the same alpha is asked for at every evaluation
        lam = np.exp(alpha)
        w = np.zeros(self.n_params)
        w[: self.n_penalised] = lam[self.groups]
        w.flags.writeable = False
        self._weights_cache = (key, w)
        return w

    def value(self, x, weights) -> float:
        xp = x[: self.n_penalised]
        return 0.5 * float(np.dot(weights[: self.n_penalised] * xp, xp))

    def cross(self, x, alpha, z) -> np.ndarray:
        """``(d2 penalty / dx dalpha)^T z``, shape (n_groups,)."""
        lam = np.exp(alpha)
        prod = x[: self.n_penalised] * z[: self.n_penalised]
        if self.groups is None:
            return lam * prod.sum()
        return lam * np.bincount(self.groups, weights=prod, minlength=self.n_groups)

    def dalpha(self, x, alpha) -> np.ndarray:
        """``d penalty / d alpha``, shape (n_groups,)."""
        return 0.5 * self.cross(x, alpha, x)


class _Portable:
    """How a problem travels to a worker process or a dask worker (pickled): without
    what it can compute again there, and with its arrays aligned on arrival."""

    #: attributes computed from the others (transposes of the data): not pickled, made
    #: again on unpickling (:meth:`_derive`), so that a fold's problem goes to a worker
    #: process or a dask worker at about half the bytes (20news binary, one training
    #: fold: 51 MB -> 28 MB) and a dense ``X.T`` arrives as a view, not a copy
    _DERIVED = ()

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in self._DERIVED + ("_threads",):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update({k: aligned(v) for k, v in state.items()})
        self._derive()

    def __copy__(self):
        # (a shallow copy shares everything, the derived attributes too)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def _derive(self) -> None:
        """Compute the :attr:`_DERIVED` attributes from the others."""


class BilevelProblem(_Portable):
    """Interface shared by every bilevel problem.

    The inner problem is ``x*(alpha) = argmin_x h(x, alpha)``, the outer
    criterion ``g(x*(alpha), alpha)``. Subclasses implement the methods below;
    solvers and hypergradient strategies use nothing else.

    Attributes
    ----------
    n_params : int
        Length of ``x``.
    n_hyper : int
        Length of ``alpha``.
    """

    n_params: int
    n_hyper: int
    penalty: L2Penalty
    #: threads serving the products with the training data (see
    #: :func:`~hoag_shine.problems._threads.threaded_products`); ``None``: this one
    _threads = None

    def _matmul(self, A, V):
        """``A @ V``, on the threads of ``threaded_products`` when they serve ``A``."""
        return A @ V if self._threads is None else self._threads.matmul(A, V)

    def check_alpha(self, alpha) -> np.ndarray:
        """Validate ``alpha``: a finite 1-d array of length ``n_hyper``."""
        return self.penalty.check_alpha(alpha)

    def initial_x(self) -> np.ndarray:
        """A default starting point of the inner solver (zeros)."""
        return np.zeros(self.n_params)

    def _set_weights(self, sample_weight, sample_weight_val):
        """Check and keep the training and validation samples' weights."""
        self.sample_weight = check_sample_weight(sample_weight, self.X_train.shape[0])
        self.sample_weight_val = check_sample_weight(sample_weight_val, self.X_val.shape[0],
                                                     "sample_weight_val")

    def check_X(self, X, name: str = "X"):
        """Validate a design matrix against the problem's features (2-d, finite, float64)."""
        return _check_X(X, name, n_features=getattr(self, "n_features", None))

    def gradient_scale(self, alpha, metric=None) -> float:
        """``||grad_x h(initial_x, alpha)||_D``: what relative inner tolerances refer to.

        The norm is taken in the metric ``D = inverse_hessian_guess(alpha)`` (or
        ``metric``), ``||g||_D = sqrt(g . D g)``, as the solvers' stopping tests are: an
        inner solve at relative tolerance ``eps`` stops when ``||grad_x h(x,
        alpha)||_D <= eps * gradient_scale(alpha)``, which means the same
        accuracy whatever the scale of the data or of single coordinates (an
        intercept against the weights). For one penalty and no intercept ``D``
        is a multiple of the identity and the test is the Euclidean one. ``1.0``
        when that gradient is zero (``initial_x`` is then the solution).
        """
        g = self.inner_value_grad(self.initial_x(), alpha)[1]
        d = self.inverse_hessian_guess(alpha) if metric is None else metric
        norm = float(np.sqrt(np.dot(d * g, g)))
        return norm if norm > 0 and np.isfinite(norm) else 1.0

    def curvature_scale(self) -> float:
        """Mean diagonal of the data term's Hessian at ``initial_x`` (over the penalised
        coordinates): the penalty at which the regularisation weighs as much as the
        data in an average direction. Scales as the square of the features."""
        raise NotImplementedError

    def curvature_diagonal(self) -> np.ndarray:
        """Diagonal of the data term's Hessian at ``initial_x``, shape (n_params,).

        Computed afresh at each call (a pass over the training data). What the
        start, the inner tolerances' scale and the metric of every fold and
        refit need of it, its mean over the penalised coordinates and its other
        entries, is computed once and kept (:meth:`curvature_summary`): a copy of
        the whole diagonal per fold weighed 100 MB on 20 classes with 5 folds.
        """
        return np.asarray(self._curvature_diagonal(), dtype=np.float64)

    def curvature_summary(self):
        """``(mean, rest)``: the mean of :meth:`curvature_diagonal` over the penalised
        coordinates that have curvature (all-zero features do not count) and its
        entries on the others (e.g. intercepts), computed once."""
        cached = getattr(self, "_curvature_summary_cache", None)
        if cached is None:
            d = self.curvature_diagonal()
            n_pen = self.penalty.n_penalised
            rest = d[n_pen:].copy()
            rest.flags.writeable = False
            head = d[:n_pen]
            head = head[head > 0]  # (all-zero features carry no curvature: not counted)
            cached = (float(np.mean(head)) if head.size else 0.0, rest)
            self._curvature_summary_cache = cached
        return cached

    def _curvature_diagonal(self) -> np.ndarray:
        """The diagonal itself. The default spreads :meth:`curvature_scale` evenly
        over the coordinates; problems override it with the exact diagonal (Jacobi)."""
        return np.full(self.n_params, self.curvature_scale())

    def inverse_hessian_guess(self, alpha) -> np.ndarray:
        """A guess of the inner Hessian's inverse diagonal at ``initial_x``.

        Dense data: the Jacobi diagonal ``1 / (curvature_diagonal() +
        penalty_weights(alpha))``, one entry per feature, so that a feature in
        large units (raw data: an area beside a ratio) does not decide alone when
        an inner solve is accurate enough and rescaling a feature rescales its
        coordinate of the iterates. Sparse data: :meth:`scale_guess` (the mean
        curvature for every feature, the intercept its own): there a feature's
        curvature mostly counts how often it occurs, not its unit, and the Jacobi
        diagonal weighs the rare features up and the frequent ones down; the loose
        early solves of weak penalties then stop with the frequent features
        unsolved and flatter them (20 newsgroups, 20 classes: ``C`` 11,521 and test
        log-loss 0.381 against 515, 0.360).

        It sizes the inner solver's first step, is the initial matrix of the L-BFGS
        estimate (scaled) and the metric of the gradient norms. Coordinates
        without curvature or penalty get 1.

        Returns
        -------
        h0 : ndarray of shape (n_params,)
        """
        if sp.issparse(getattr(self, "X_train", None)):
            return self.scale_guess(alpha)
        return self.jacobi_guess(alpha)

    def preconditioner_guess(self, alpha) -> np.ndarray:
        """The metric of a final fit (``metric`` of :func:`~hoag_shine.fit_inner`): its
        L-BFGS's initial diagonal and its stopping test's; by default
        :meth:`inverse_hessian_guess`, the search's."""
        return self.inverse_hessian_guess(alpha)

    def jacobi_guess(self, alpha) -> np.ndarray:
        """``1 / (curvature_diagonal() + penalty_weights(alpha))``, one entry per
        coordinate (1 where there is neither curvature nor penalty)."""
        return _inverse_diagonal(self.curvature_diagonal() + self.penalty_weights(alpha))

    def scale_guess(self, alpha) -> np.ndarray:
        """A coarse guess of the inner Hessian's inverse diagonal: ``1 / (mean
        curvature + penalty)`` on the penalised coordinates, ``1 / own curvature`` on
        the others (e.g. an intercept). It scales the backward pass's linear systems
        (an intercept's curvature can be 1e200 times the weights' on extreme data)
        without preconditioning them feature by feature: on the weights alone,
        conjugate gradient is the plain one.

        Returns
        -------
        d : ndarray of shape (n_params,)
        """
        n_pen = self.penalty.n_penalised
        diag = np.empty(self.n_params)
        diag[:n_pen] = self.curvature_scale()
        diag[n_pen:] = self.curvature_summary()[1]
        return _inverse_diagonal(diag + self.penalty_weights(alpha))

    def default_alpha(self) -> np.ndarray:
        """A data-scaled starting point for the log-penalties.

        ``log(curvature_scale())`` for every hyperparameter: a penalty as strong
        as the data's average curvature. Rescaling the features by ``s`` shifts it
        by ``2 log(s)``, so a search started there follows the same path on
        rescaled data (the optimum moves by the same shift).
        """
        scale = self.curvature_scale()
        if not np.isfinite(scale):
            raise ValueError("The features' squares overflow in floating point; rescale the "
                             "features (e.g. with StandardScaler).")
        if not scale > 0:
            raise ValueError("The features carry no curvature (X is all zero on the training "
                             "part); check X, or pass a starting penalty explicitly.")
        return np.full(self.n_hyper, np.log(scale))

    def penalty_weights(self, alpha) -> np.ndarray:
        """Diagonal of the penalty's Hessian at ``alpha``, shape (n_params,).

        Between two hyperparameter values the inner Hessian changes by exactly
        ``diag(penalty_weights(alpha_new) - penalty_weights(alpha_old))``.
        """
        return self.penalty.weights(alpha)

    def inner_value_grad_update(self, x, value, grad, alpha_old, alpha_new):
        """Inner value and gradient at ``(x, alpha_new)`` from those at ``(x, alpha_old)``.

        ``h(x, alpha) = loss(x) + penalty(x, alpha)``: only the penalty's part
        changes, so no pass over the data is needed (a warm-started inner
        solve at a new ``alpha`` starts from the last solve's evaluation).

        Parameters
        ----------
        x : ndarray of shape (n_params,)
        value : float
            ``h(x, alpha_old)``.
        grad : ndarray of shape (n_params,)
            ``grad_x h(x, alpha_old)``.
        alpha_old, alpha_new : ndarray of shape (n_hyper,)

        Returns
        -------
        value : float
        grad : ndarray of shape (n_params,)
        """
        w_old, w_new = self.penalty.weights(alpha_old), self.penalty.weights(alpha_new)
        value = float(value) + self.penalty.value(x, w_new) - self.penalty.value(x, w_old)
        return value, grad + (w_new - w_old) * x

    # The methods below are the problem's math.
    def inner_value_grad(self, x, alpha):  # pragma: no cover - interface
        """Inner objective ``h(x, alpha)`` and its gradient in ``x``."""
        raise NotImplementedError

    def inner_hessp(self, x, alpha):  # pragma: no cover - interface
        """Return ``v -> H v`` with ``H`` the inner Hessian at ``(x, alpha)``.

        The returned callable accepts a vector of shape (n_params,) or a
        matrix of shape (n_params, n_vectors).
        """
        raise NotImplementedError

    def inner_cross(self, x, alpha, z) -> np.ndarray:
        """Cross term ``(d2h / dx dalpha)^T z``, shape (n_hyper,)."""
        return self.penalty.cross(x, alpha, z)

    def outer_value_grad(self, x, alpha):  # pragma: no cover - interface
        """Outer value, its gradient in ``x`` and its partial gradient in ``alpha``.

        Returns
        -------
        value : float
        grad_x : ndarray of shape (n_params,)
        grad_alpha : ndarray of shape (n_hyper,)
        """
        raise NotImplementedError

    def data_loss(self, x, X, y, sample_weight=None) -> float:  # pragma: no cover
        """Unregularised loss of the model ``x`` on the data ``(X, y)`` (weighted sum)."""
        raise NotImplementedError

    def inner_hessian(self, x, alpha) -> np.ndarray:
        """Dense inner Hessian (``n_params`` Hessian-vector products).

        Meant for small problems and tests.
        """
        hessp = self.inner_hessp(x, alpha)
        H = hessp(np.eye(self.n_params))
        return 0.5 * (H + H.T)


class LinearModelProblem(BilevelProblem):
    """A bilevel problem whose model is linear: predictions ``(X - offset) w + c``.

    Holds the data, the ``x = [w, c]`` layout and the products with ``X``
    shared by the logistic and ridge problems. Subclasses give the per-sample
    loss through :meth:`_loss_grad` (value and gradient for margins) and its
    second derivative through :meth:`_curvature`. A ``feature_offset``
    (e.g. the training means) centres the features implicitly, without
    densifying a sparse ``X``.
    """

    _DERIVED = ("_XT_train",)

    def _derive(self) -> None:
        self._XT_train = _transpose(self.X_train)

    def _init_data(self, X_train, y_train, X_val, y_val, fit_intercept, penalty_groups,
                   sample_weight=None, sample_weight_val=None, feature_offset=None):
        self.X_train = _check_X(X_train, "X_train")
        n_features = self.X_train.shape[1]
        self.X_val = _check_X(X_val, "X_val", n_features=n_features)
        y_train = _check_target(y_train, "y_train", self.X_train.shape[0])
        y_val = _check_target(y_val, "y_val", self.X_val.shape[0])
        self.fit_intercept = bool(fit_intercept)
        self.n_features = n_features
        self.n_params = n_features + int(self.fit_intercept)
        self.penalty = L2Penalty(n_features, self.n_params, penalty_groups)
        self.n_hyper = self.penalty.n_groups
        self._derive()
        self._set_weights(sample_weight, sample_weight_val)
        self.feature_offset = check_offset(feature_offset, n_features)
        return y_train, y_val

    def curvature_scale(self) -> float:
        return self.curvature_summary()[0]  # the features are the penalised coordinates

    def _curvature_diagonal(self) -> np.ndarray:
        """Diagonal of the data term's Hessian at ``initial_x``: ``sum_i d_i (x_ij -
        offset_j)^2`` per feature, ``sum_i d_i`` for the intercept (``d_i`` the
        samples' weighted loss curvatures)."""
        X = self.X_train
        d = self._curvature(self.decision_function(self.initial_x(), X), self.y_train)
        if self.sample_weight is not None:
            d = d * self.sample_weight
        sq = (np.asarray(X.multiply(X).T @ d).ravel() if sp.issparse(X)
              else np.einsum("ij,ij,i->j", X, X, d))
        mu = self.feature_offset
        if mu is not None:  # sum_i d_i (x_ij - mu_j)^2
            sq = sq - 2.0 * mu * (self._XT_train @ d) + mu * mu * d.sum()
        out = np.empty(self.n_params)
        out[: self.n_features] = np.maximum(sq, 0.0)
        if self.fit_intercept:
            out[-1] = d.sum()
        return out

    def preconditioner_guess(self, alpha) -> np.ndarray:
        """The metric of a final fit: its L-BFGS's initial inverse-Hessian diagonal and
        its stopping test's. Sparse data: the geometric mean ``sqrt(scale_guess *
        jacobi_guess)``, entry by entry; dense data: :meth:`inverse_hessian_guess`.

        The coarse guess leaves L-BFGS slow along the rare words (curvature near
        the penalty, weighed like the frequent ones), the Jacobi one along the
        frequent words; the mean is better than either. 20news binary, the final
        fit at the tuned ``C`` from the folds' mean, ``final_tol=1e-4`` (seeds 0,
        1, 5, 9): 33, 36, 21, 35 iterations instead of 86, 90, 40, 84, ending 3-5x
        nearer the minimum in value. The search keeps the coarse guess: with the
        mean, its loose early solves reached their tolerance fast and far from the
        minimum, and misled the loop. So does a multinomial problem (20 classes:
        90 iterations instead of 52, though ending far nearer the minimum)."""
        if sp.issparse(self.X_train):
            d = self.scale_guess(alpha)
            d *= self.jacobi_guess(alpha)
            return np.sqrt(d, out=d)
        return self.inverse_hessian_guess(alpha)

    def coef_intercept(self, x):
        """``(coef, intercept)`` of the model ``x`` on the original features: ``w``, and
        ``c`` (0 without intercept) less ``offset . w`` with a ``feature_offset``."""
        w = x[: self.n_features]
        if not self.fit_intercept:
            return w, 0.0
        c = float(x[-1])
        return w, (c if self.feature_offset is None else c - float(self.feature_offset @ w))

    def decision_function(self, x, X) -> np.ndarray:
        """Predictions (margins) ``(X - offset) w + c`` of the model ``x`` on the rows of ``X``."""
        w = x[: self.n_features]
        m = np.asarray(self._matmul(X, w)).ravel()
        if self.feature_offset is not None:
            m = m - float(self.feature_offset @ w)
        return m + x[-1] if self.fit_intercept else m

    def _rmatvec(self, X, r):
        """``[(X - offset)^T r, sum(r)]``: the adjoint of :meth:`decision_function`."""
        out = np.empty(self.n_params)
        out[: self.n_features] = self._matmul(self._XT_train if X is self.X_train else X.T, r)
        if self.feature_offset is not None:
            out[: self.n_features] -= self.feature_offset * r.sum()
        if self.fit_intercept:
            out[-1] = r.sum()
        return out

    def _sample_loss(self, m, b):  # pragma: no cover - interface
        """Each sample's loss, and its derivative in the sample's margin."""
        raise NotImplementedError

    def _curvature(self, m, b):  # pragma: no cover - interface
        """Second derivative of each sample's loss in its margin."""
        raise NotImplementedError

    def _loss_grad(self, x, X, b, w=None):
        """Weighted loss summed over the rows of ``X``, and its gradient in ``x``."""
        loss, r = self._sample_loss(self.decision_function(x, X), b)
        if w is not None:
            r = w * r
        return _weighted_sum(loss, w), self._rmatvec(X, r)

    def data_loss(self, x, X, y, sample_weight=None) -> float:
        """Unregularised loss (a weighted sum over rows) of the model ``x`` on ``(X, y)``."""
        X = _check_X(X, "X", n_features=self.n_features)
        b = self._encode_target(y, "y")
        w = check_sample_weight(sample_weight, X.shape[0])
        return _weighted_sum(self._sample_loss(self.decision_function(x, X), b)[0], w)

    def inner_value_grad(self, x, alpha):
        weights = self.penalty.weights(alpha)
        value, grad = self._loss_grad(x, self.X_train, self.y_train, self.sample_weight)
        return value + self.penalty.value(x, weights), grad + weights * x

    def inner_hessp(self, x, alpha):
        X = self.X_train
        weights = self.penalty.weights(alpha)
        d = self._curvature(self.decision_function(x, X), self.y_train)
        if self.sample_weight is not None:
            d = d * self.sample_weight
        n_features, intercept = self.n_features, self.fit_intercept
        XT, mu = self._XT_train, self.feature_offset

        def hessp(v):
            v = np.asarray(v, dtype=np.float64)
            Av = X @ v[:n_features]
            if mu is not None:
                Av = Av - mu @ v[:n_features]
            if intercept:
                Av = Av + v[-1]
            dAv = (d[:, None] if v.ndim == 2 else d) * Av
            out = np.empty_like(v)
            out[:n_features] = XT @ dAv
            if mu is not None:
                out[:n_features] -= np.multiply.outer(mu, dAv.sum(axis=0)).reshape(
                    out[:n_features].shape)
            if intercept:
                out[-1] = dAv.sum(axis=0)
            out += (weights[:, None] if v.ndim == 2 else weights) * v
            return out

        return hessp

    def outer_value_grad(self, x, alpha):
        value, grad = self._loss_grad(x, self.X_val, self.y_val, self.sample_weight_val)
        return value, grad, np.zeros(self.n_hyper)
