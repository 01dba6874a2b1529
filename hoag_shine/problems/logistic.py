"""Binary L2-regularised logistic regression as a bilevel problem."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .base import LinearModelProblem, _check_labels

__all__ = ["LogisticProblem"]


class LogisticProblem(LinearModelProblem):
    """Tune the L2 penalty of binary logistic regression on a validation set.

    Inner objective (training data ``A, b`` with ``b`` in {-1, +1})::

        h(x, alpha) = sum_i log(1 + exp(-b_i (a_i . w + c)))
                      + 0.5 * sum_j exp(alpha[group_j]) * w_j**2

    where ``x = w``, or ``x = [w, c]`` with ``fit_intercept=True`` (the
    intercept ``c`` is not penalised). Outer criterion: the unregularised
    logistic loss (a sum, like the inner one) on the validation data.

    Parameters
    ----------
    X_train : {ndarray, sparse matrix} of shape (n_train, n_features)
    y_train : array-like of shape (n_train,)
        Exactly two distinct labels, of any type. The smaller one (in sorted
        order) is mapped to -1, the larger to +1.
    X_val : {ndarray, sparse matrix} of shape (n_val, n_features)
    y_val : array-like of shape (n_val,)
        Labels among the two training labels.
    fit_intercept : bool, default=False
        Whether to fit an unpenalised intercept, stored last in ``x``.
    penalty_groups : array-like of int of shape (n_features,), default=None
        Group of each feature; one hyperparameter per group. ``None``: a single
        hyperparameter.
    sample_weight : array-like of shape (n_train,), default=None
        Weight of each training sample in the inner loss (a weighted sum).
    sample_weight_val : array-like of shape (n_val,), default=None
        Weight of each validation sample in the outer loss.
    classes : array-like of shape (2,), default=None
        The two labels, sorted (default: those of ``y_train``). Given, the
        training part may hold only one of them (a cross-validation fold).
    feature_offset : array-like of shape (n_features,), default=None
        Centre the features implicitly on it (e.g. the training means; a sparse
        ``X`` stays sparse): the margins are ``(X - offset) w + c``. With an
        intercept the model is the same (``c`` absorbs ``offset . w``:
        :meth:`coef_intercept` gives the original intercept), and the inner
        problem is far better conditioned on uncentred data.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the positive class.
    n_params : int
        Length of ``x``.
    n_hyper : int
        Length of ``alpha``.

    Examples
    --------
    >>> import numpy as np
    >>> from hoag_shine import LogisticProblem, hypergradient
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5)); y = (X[:, 0] > 0).astype(int)
    >>> prob = LogisticProblem(X[:40], y[:40], X[40:], y[40:])
    >>> value, grad = hypergradient(prob, np.array([0.0]), method="exact")
    >>> grad.shape
    (1,)
    """

    def __init__(
        self, X_train, y_train, X_val, y_val, *, fit_intercept=False, penalty_groups=None,
        sample_weight=None, sample_weight_val=None, classes=None, feature_offset=None,
    ):
        y_train, y_val = self._init_data(
            X_train, y_train, X_val, y_val, fit_intercept, penalty_groups, sample_weight,
            sample_weight_val, feature_offset,
        )
        self.classes_ = np.unique(y_train) if classes is None else np.asarray(classes)
        if self.classes_.shape[0] != 2:
            raise ValueError(
                f"LogisticProblem needs exactly two classes in y_train, got "
                f"{self.classes_.shape[0]}: {self.classes_[:5].tolist()}. With one "
                "class there is nothing to learn; with more, use a multiclass problem."
            )
        self.y_train = self.encode(y_train, "y_train")
        self.y_val = self.encode(y_val, "y_val")

    def encode(self, y, name="y") -> np.ndarray:
        """Map labels to -1/+1 (``classes_[1]`` is +1)."""
        y = _check_labels(y, self.classes_, name)
        return np.where(y == self.classes_[1], 1.0, -1.0)

    def _encode_target(self, y, name):
        return self.encode(y, name)

    def _sample_loss(self, m, b):
        bm = b * m
        # log(1 + exp(-bm)) and its derivative, without overflow for any margin.
        return np.logaddexp(0.0, -bm), -b * expit(-bm)

    def _curvature(self, m, b):
        return expit(m) * expit(-m)
