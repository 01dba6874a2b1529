"""Ridge regression as a bilevel problem (its hypergradient has a closed form)."""

from __future__ import annotations

import numpy as np

from .base import LinearModelProblem

__all__ = ["RidgeProblem"]


class RidgeProblem(LinearModelProblem):
    """Tune the L2 penalty of least squares on a validation set.

    Inner objective::

        h(x, alpha) = 0.5 * ||A w + c - b||^2 + 0.5 * sum_j exp(alpha[group_j]) * w_j**2

    with ``x = w``, or ``x = [w, c]`` with ``fit_intercept=True`` (``c`` not
    penalised). Outer criterion: ``0.5 * ||A_val w + c - b_val||^2``.

    Parameters
    ----------
    X_train : {ndarray, sparse matrix} of shape (n_train, n_features)
    y_train : array-like of shape (n_train,)
    X_val : {ndarray, sparse matrix} of shape (n_val, n_features)
    y_val : array-like of shape (n_val,)
    fit_intercept : bool, default=False
        Whether to fit an unpenalised intercept, stored last in ``x``.
    penalty_groups : array-like of int of shape (n_features,), default=None
        Group of each feature; one hyperparameter per group.
    sample_weight : array-like of shape (n_train,), default=None
        Weight of each training sample in the inner loss.
    sample_weight_val : array-like of shape (n_val,), default=None
        Weight of each validation sample in the outer loss.
    feature_offset : array-like of shape (n_features,), default=None
        Subtracted from every row of ``X`` (training, validation and held-out)
        without forming ``X - offset``: with the training means and centred
        targets, an intercept without its ill-conditioning, for sparse ``X``
        too.
    """

    def __init__(
        self, X_train, y_train, X_val, y_val, *, fit_intercept=False, penalty_groups=None,
        sample_weight=None, sample_weight_val=None, feature_offset=None,
    ):
        y_train, y_val = self._init_data(
            X_train, y_train, X_val, y_val, fit_intercept, penalty_groups, sample_weight,
            sample_weight_val, feature_offset,
        )
        self.y_train = self._check_y(y_train, "y_train")
        self.y_val = self._check_y(y_val, "y_val")

    def inverse_hessian_guess(self, alpha) -> np.ndarray:
        """The inverse of the Hessian's diagonal (Jacobi): ``1 / (sum_i w_i x_ij^2 +
        penalty_j)``, exact at every ``x`` for least squares (where a logistic
        model's curvatures at ``initial_x`` are only a guess, see
        :meth:`~hoag_shine.problems.BilevelProblem.inverse_hessian_guess`): a
        feature much larger than the others (raw data) does not decide alone when
        an inner solve is accurate enough. Coordinates without curvature or penalty
        get 1."""
        return self.jacobi_guess(alpha)

    def preconditioner_guess(self, alpha) -> np.ndarray:
        """:meth:`inverse_hessian_guess` (Jacobi), on sparse data too."""
        return self.inverse_hessian_guess(alpha)

    def initial_x(self) -> np.ndarray:
        """Zero weights, and the intercept (if any) at the training targets' mean.

        The best constant model: the initial gradient, which scales the inner
        tolerances, then measures what the features have to explain, not the
        targets' offset.
        """
        x = np.zeros(self.n_params)
        if self.fit_intercept and self.y_train.size:
            x[-1] = np.average(self.y_train, weights=self.sample_weight)
        return x

    @staticmethod
    def _check_y(y, name):
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric for regression: {exc}") from None
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinite values; remove them.")
        if y.size and np.max(np.abs(y)) > 1e100:
            raise ValueError(f"{name} holds values up to {np.max(np.abs(y)):.3g}: their squares "
                             "overflow in floating point. Rescale the targets (e.g. divide "
                             "them by their standard deviation).")
        return y

    def _encode_target(self, y, name):
        return self._check_y(np.asarray(y), name)

    def _sample_loss(self, m, b):
        r = m - b
        return 0.5 * r * r, r

    def _curvature(self, m, b):
        return np.ones_like(m)
