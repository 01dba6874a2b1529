"""Never silently wrong: scale, failed solves, non-finite settings, malformed splits.

Each case asserts one of three outcomes: the (rescaled) answer, a warning that
names the knob, or a ValueError/TypeError with a sentence. The suite runs with
RuntimeWarnings as errors (setup.cfg), so no overflow passes unnoticed.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from hoag_shine import (LogisticProblem, RidgeProblem, ShineLogisticRegressionCV, ShineRidgeCV,
                        hoag, hypergradient)
from conftest import make_classification_data, split


def _cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X)[:300], y[:300]


def _diabetes():
    return load_diabetes(return_X_y=True)


WIDE = (1e-300, 1e300)


def _normalised(est, s):
    """The chosen log-penalty with the data's scale taken out (log C + 2 log s for C,
    log alpha - 2 log s for ridge's alpha)."""
    if isinstance(est, ShineLogisticRegressionCV):
        return np.log(est.C_) + 2 * np.log(s)
    return np.log(est.alpha_) - 2 * np.log(s)


@pytest.fixture(scope="module")
def reference():
    X, y = _cancer()
    Xd, yd = _diabetes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return (_normalised(ShineLogisticRegressionCV(cv=3, C_bounds=WIDE).fit(X, y), 1.0),
                _normalised(ShineRidgeCV(cv=3, alpha_bounds=WIDE).fit(Xd, yd), 1.0))


@pytest.mark.parametrize("s", [1e-100, 1e-30, 1e-8, 1e-3, 1e3, 1e8, 1e30, 1e100])
def test_rescaled_features_rescale_the_penalty(reference, s):
    X, y = _cancer()
    Xd, yd = _diabetes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = ShineLogisticRegressionCV(cv=3, C_bounds=WIDE).fit(X * s, y)
        reg = ShineRidgeCV(cv=3, alpha_bounds=WIDE).fit(Xd * s, yd)
    # (each answer is polished to polish_tol=1e-4 on alpha, C to about 0.01%: two of
    # them within 2e-4 of each other)
    assert _normalised(clf, s) == pytest.approx(reference[0], abs=2e-4)
    assert _normalised(reg, s) == pytest.approx(reference[1], abs=2e-4)
    # The models are the same up to the scale: the same predictions (to what C's
    # 1e-4 relative precision moves a probability).
    ref = ShineLogisticRegressionCV(cv=3, C_bounds=WIDE).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X * s), ref.predict_proba(X), atol=3e-5)


@pytest.mark.parametrize("s,side", [(1e8, "lower"), (1e-8, "upper")])
def test_optimum_beyond_the_bounds_is_a_warning_naming_them(s, side):
    X, y = _cancer()
    with pytest.warns(ConvergenceWarning, match=f"{side} bound of C_bounds.*widen C_bounds"):
        clf = ShineLogisticRegressionCV(cv=3).fit(X * s, y)
    assert not clf.hoag_result_.success and clf.hoag_result_.status == 4
    assert "converged" not in clf.hoag_result_.message
    assert clf.C_ == pytest.approx(np.exp(-12.0) if side == "lower" else np.exp(12.0))
    Xd, yd = _diabetes()
    with pytest.warns(ConvergenceWarning, match="alpha_bounds"):
        ShineRidgeCV(cv=3).fit(Xd * s, yd)
    prob = LogisticProblem(X[:200] * s, y[:200], X[200:] * s, y[200:])
    with pytest.warns(ConvergenceWarning, match="bound of bounds=.*widen bounds"):
        res = hoag(prob)
    assert not res.success


@pytest.mark.parametrize("s", [1e-150, 1e150, 1e-200, 1e200])
def test_extreme_scales_give_the_answer_a_bound_warning_or_an_error(reference, s):
    X, y = _cancer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clf = ShineLogisticRegressionCV(cv=3, C_bounds=WIDE).fit(X * s, y)
        except ValueError as exc:
            assert "rescale" in str(exc) or "scale" in str(exc)
            return
    bound = [w for w in caught if "C_bounds" in str(w.message)]
    assert bound or _normalised(clf, s) == pytest.approx(reference[0], abs=1e-3)


class _BrokenProblem(LogisticProblem):
    """A problem whose objective is NaN away from zero: every line search fails."""

    def inner_value_grad(self, x, alpha):
        value, grad = super().inner_value_grad(x, alpha)
        return (value, grad) if not np.any(x) else (np.nan, grad * np.nan)


def test_a_first_solve_that_cannot_move_is_not_converged():
    X, y = make_classification_data(120, 6, seed=1)
    prob = _BrokenProblem(*split(X, y, 80))
    with pytest.warns(ConvergenceWarning, match="made no progress"):
        res = hoag(prob, [0.0])
    assert not res.success and res.status == 5 and res.nit == 1


def test_zero_hypergradient_at_the_start_is_not_converged():
    X, y = make_classification_data(120, 6, seed=1)
    X_tr, y_tr, X_val, y_val = split(X, y, 80)
    prob = LogisticProblem(X_tr, y_tr, np.zeros_like(X_val), y_val)  # validation ignores w
    with pytest.warns(ConvergenceWarning, match="exactly zero at the start"):
        res = hoag(prob, [0.0])
    assert not res.success
    with pytest.raises(ValueError, match="no curvature"):
        hoag(LogisticProblem(np.zeros_like(X_tr), y_tr, X_val, y_val))


@pytest.mark.parametrize("params,match", [
    ({"hypergradient": "cg", "hypergradient_params": {"max_iter": 0}}, "max_iter must be"),
    ({"max_inner_iter": 0}, "max_inner_iter"),
    ({"tol_schedule": lambda k: float("nan")}, "tol_schedule"),
    ({"tol": float("nan")}, "tol must be"),
    ({"max_iter": 2.7}, "max_iter must be an int"),
    ({"fit_intercept": "yes"}, "fit_intercept must be one of True, False"),
    ({"C_bounds": (np.nan, 1.0)}, "C_bounds"),
    ({"C0": -1.0}, "C0"),
    ({"penalty_groups": 3}, "one group per feature"),
    ({"cv": []}, "no split"),
    ({"cv": [(np.arange(10), np.arange(200, 260))]}, "indices that are not"),
    ({"cv": "loo"}, "holdout"),
    ({"class_weight": "even"}, "class_weight"),
])
def test_bad_settings_are_errors_with_a_sentence(params, match):
    X, y = make_classification_data(150, 4, seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        ShineLogisticRegressionCV(**params).fit(X, y)


def test_non_finite_inputs_are_rejected():
    X, y = make_classification_data(120, 5, seed=2)
    prob = LogisticProblem(*split(X, y, 80))
    with pytest.raises(ValueError, match="finite"):
        hoag(prob, [0.0], bounds=(np.nan, 2.0))
    with pytest.raises(ValueError, match="x0"):
        hoag(prob, [0.0], x0=np.full(prob.n_params, np.nan))
    with pytest.raises(ValueError, match="finite"):
        hoag(prob, [np.nan])
    with pytest.raises(ValueError, match="log-penalty beyond"):
        hypergradient(prob, [800.0])
    with pytest.raises(ValueError, match="NaN"):
        ShineLogisticRegressionCV().fit(X, y, sample_weight=np.full(120, np.nan))
    Xd, yd = _diabetes()
    with pytest.raises(ValueError, match="Rescale the targets|infinite"):
        ShineRidgeCV().fit(Xd, np.where(np.arange(len(yd)) == 0, 1e308, yd))
    with pytest.raises(ValueError, match="Rescale the targets"):
        RidgeProblem(Xd[:300], yd[:300] * 1e200, Xd[300:], yd[300:])


def test_mixed_label_types_are_a_clear_error():
    X, y = make_classification_data(60, 3, seed=0)
    labels = np.array([1, "a"], dtype=object)[y]
    with pytest.raises(ValueError, match="label"):
        ShineLogisticRegressionCV().fit(X, labels)
