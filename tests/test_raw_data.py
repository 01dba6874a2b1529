"""Right on raw data: unscaled and uncentred features, degenerate weights and budgets.

The answers are checked against independent computations: scikit-learn's
LogisticRegression on the same folds (the features centred on the whole data: the
same models, an offset being absorbed by the unpenalised intercept) and closed-form
ridge fits; invariances are checked as properties of the answer with the defaults.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from conftest import load_benchmark
from hoag_shine import (LogisticProblem, ShineLogisticRegressionCV, ShineRidgeCV, grid_search,
                        hoag, random_search)
from hoag_shine.outer import BoundWarning

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# The cross-validated losses computed independently (scikit-learn's LogisticRegression
# by Newton-Cholesky to tol=1e-10, closed-form ridge): the raw-data benchmark's own.
_REFERENCE = load_benchmark("benchmarks/raw_data.py")
_logistic_cv_loss = _REFERENCE.logistic_cv_loss
_ridge_cv_loss = _REFERENCE.ridge_cv_loss


def _synthetic(seed=0, n=300, p=8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.standard_normal(n) > 0).astype(int)
    return X, y


def _grid_best(loss, lo=-12.0, hi=12.0):
    coarse = np.arange(lo, hi + 1e-9, 1.0)
    a0 = coarse[int(np.argmin([loss(np.exp(a)) for a in coarse]))]
    return min(loss(np.exp(a)) for a in np.arange(a0 - 1.0, a0 + 1.0 + 1e-9, 0.1))


# -- the search is right on raw data --------------------------------------------

def test_raw_breast_cancer_is_a_minimum_not_a_flat_spot():
    # Raw features (areas near 1e3 beside ratios near 0.1): the data-scaled start is
    # where the loss is flat; the best C is about 10 (the search used to stop at 0.018).
    X, y = load_breast_cancer(return_X_y=True)
    folds = list(StratifiedKFold(5).split(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = ShineLogisticRegressionCV(cv=folds).fit(X, y)
    assert 3.0 < clf.C_ < 60.0
    here = _logistic_cv_loss(X, y, clf.C_, folds)
    around = [_logistic_cv_loss(X, y, clf.C_ * f, folds) for f in (0.5, 2.0)]
    assert here <= 1.005 * min(around)


def test_cv_loss_at_the_answer_is_within_half_a_percent_of_a_fine_grid():
    # (wine, digits and more: benchmarks/raw_data.py)
    X, y = _synthetic()
    X[:, 3] *= 100.0
    folds = list(StratifiedKFold(5).split(X, y))
    clf = ShineLogisticRegressionCV(cv=folds).fit(X, y)
    loss = lambda C: _logistic_cv_loss(X, y, C, folds)  # noqa: E731
    assert loss(clf.C_) <= 1.005 * _grid_best(loss)


@pytest.mark.parametrize("scale", ["raw", "one column x1e4"])
def test_ridge_on_raw_data_ends_inside_without_a_bound_warning(scale):
    X, y = load_breast_cancer(return_X_y=True)
    y = y.astype(float)
    if scale != "raw":
        X = X[:, :10].copy()
        X[:, 2] *= 1e4
    folds = list(KFold(5).split(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = ShineRidgeCV(cv=folds).fit(X, y)
    assert np.exp(-12) < reg.alpha_ < np.exp(12)
    loss = lambda a: _ridge_cv_loss(X, y, a, folds)  # noqa: E731
    assert loss(reg.alpha_) <= 1.005 * _grid_best(loss)


def test_an_optimum_truly_at_a_bound_says_so_and_widening_moves_it():
    X, y = _synthetic()
    folds = list(StratifiedKFold(5).split(X, y))
    with pytest.warns(BoundWarning, match="lower bound of C_bounds") as record:
        clf = ShineLogisticRegressionCV(cv=folds, C_bounds=(3.0, 100.0)).fit(X, y)
    assert record[0].message.side == "lower" and clf.C_ == pytest.approx(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BoundWarning)
        wide = ShineLogisticRegressionCV(cv=folds).fit(X, y)
    assert wide.C_ < 3.0


# -- invariances of the answer, with the defaults ---------------------------------

@pytest.mark.parametrize("offset", [100.0, 2024.0])
def test_an_offset_on_the_features_leaves_C_unchanged(offset):
    X, y = _synthetic(seed=1)
    folds = list(StratifiedKFold(5).split(X, y))
    ref = ShineLogisticRegressionCV(cv=folds).fit(X, y)
    shifted = ShineLogisticRegressionCV(cv=folds).fit(X + offset, y)
    one = X.copy()
    one[:, 2] += offset
    single = ShineLogisticRegressionCV(cv=folds).fit(one, y)
    assert shifted.C_ == pytest.approx(ref.C_, rel=1e-3)
    assert single.C_ == pytest.approx(ref.C_, rel=1e-3)
    np.testing.assert_allclose(shifted.predict_proba(X + offset), ref.predict_proba(X),
                               atol=1e-4)
    reg = ShineRidgeCV(cv=list(KFold(5).split(X))).fit(X, X[:, 0] + y)
    reg_shifted = ShineRidgeCV(cv=list(KFold(5).split(X))).fit(X + offset, X[:, 0] + y)
    assert reg_shifted.alpha_ == pytest.approx(reg.alpha_, rel=1e-3)


def test_all_zero_columns_leave_C_unchanged():
    X, y = _synthetic(seed=2)
    folds = list(StratifiedKFold(5).split(X, y))
    ref = ShineLogisticRegressionCV(cv=folds).fit(X, y)
    padded = ShineLogisticRegressionCV(cv=folds).fit(np.c_[X, np.zeros((len(y), 3))], y)
    assert padded.C_ == pytest.approx(ref.C_, rel=1e-3)
    np.testing.assert_allclose(padded.coef_[:, -3:], 0.0)


def _three_classes(seed=0, n=300, p=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = np.argmax(X[:, :3] + rng.standard_normal((n, 3)), axis=1)
    return X, y


def test_permuting_the_class_labels_leaves_C_unchanged():
    X, y = _three_classes()
    folds = list(StratifiedKFold(5).split(X, y))
    ref = ShineLogisticRegressionCV(cv=folds).fit(X, y)
    perm = np.array([2, 0, 1])[y]
    other = ShineLogisticRegressionCV(cv=folds).fit(X, perm)
    assert other.C_ == pytest.approx(ref.C_, rel=1e-3)
    # (old class k is new class [2, 0, 1][k])
    np.testing.assert_allclose(other.predict_proba(X)[:, [2, 0, 1]], ref.predict_proba(X),
                               atol=1e-3)
    # scikit-learn's convention: the multinomial intercepts sum to zero
    assert abs(ref.intercept_.sum()) < 1e-10


@pytest.mark.parametrize("s", [1e-2, 1e2])
def test_per_class_C_is_scale_equivariant(s):
    X, y = _three_classes(seed=1)
    folds = list(StratifiedKFold(3).split(X, y))
    ref = ShineLogisticRegressionCV(cv=folds, multi_class_C="per-class").fit(X, y)
    scaled = ShineLogisticRegressionCV(cv=folds, multi_class_C="per-class").fit(X * s, y)
    np.testing.assert_allclose(scaled.C_ * s**2, ref.C_, rtol=1e-3)


# -- degenerate weights and budgets -----------------------------------------------

@pytest.mark.parametrize("cv", [None, "holdout"])
def test_a_zero_weight_on_the_first_row_is_accepted(cv):
    X, y = _synthetic(seed=3)
    w = np.ones(len(y))
    w[0] = 0.0
    ShineLogisticRegressionCV(cv=cv, random_state=0).fit(X, y, sample_weight=w)
    X3, y3 = _three_classes(seed=3)
    ShineLogisticRegressionCV(cv=cv, random_state=0).fit(X3, y3, sample_weight=w)
    ShineRidgeCV(cv=cv, random_state=0).fit(X, X[:, 0] + y, sample_weight=w)


def test_class_weights_that_leave_one_class_are_a_clear_error():
    X, y = _synthetic(seed=3)
    with pytest.raises(ValueError, match="class_weight.*one class"):
        ShineLogisticRegressionCV(class_weight={0: 0, 1: 1}).fit(X, y)


def test_a_fold_with_one_weighted_class_names_its_split():
    X, y = _synthetic(seed=4)
    folds = [(np.arange(0, 200), np.arange(200, 300)), (np.arange(100, 300), np.arange(100))]
    w = np.ones(len(y))
    w[:200][y[:200] == 1] = 0.0  # split 0's training part: class 1 has no weight
    with pytest.raises(ValueError, match="split 0 has one class of positive weight"):
        ShineLogisticRegressionCV(cv=folds).fit(X, y, sample_weight=w)
    w = np.ones(len(y))
    w[200:] = 0.0  # split 0's validation part weighs nothing
    with pytest.raises(ValueError, match="validation part of split 0 has zero total "
                                         "sample_weight"):
        ShineLogisticRegressionCV(cv=folds).fit(X, y, sample_weight=w)


def test_a_spent_time_budget_is_a_warning_naming_max_time():
    X, y = _synthetic(seed=5)
    with pytest.warns(ConvergenceWarning, match="max_time"):
        clf = ShineLogisticRegressionCV(max_time=0.0).fit(X, y)
    assert clf.hoag_result_.status == 2 and not clf.hoag_result_.success


def test_a_small_pairs_budget_that_cuts_maxcor_says_so():
    X, y = _synthetic(seed=5)
    tiny = 5 * 30 * 8 * (X.shape[1] + 1) / 2**20 * 0.02  # three pairs of the 30
    with pytest.warns(UserWarning, match="pairs_memory_mb.*maxcor=30"):
        ShineLogisticRegressionCV(cv=5, maxcor=30, pairs_memory_mb=tiny).fit(X, y)


def test_a_huge_first_step_does_not_end_converged_at_the_start():
    X, y = _synthetic(seed=6)
    prob = LogisticProblem(X[:200], y[:200], X[200:], y[200:], fit_intercept=True)
    ref = hoag(prob, [4.0])
    res = hoag(prob, [4.0], first_step=20.0)
    assert abs(res.alpha[0] - 4.0) > 1.0
    assert res.alpha[0] == pytest.approx(ref.alpha[0], abs=1e-2)


def test_writing_to_the_callbacks_x_changes_nothing():
    X, y = _synthetic(seed=7)
    prob = LogisticProblem(X[:200], y[:200], X[200:], y[200:])
    ref = hoag(prob, [0.0], max_iter=6, tol=0, value_tol=0)

    def vandal(record):
        record.x[:] = 1e3

    res = hoag(prob, [0.0], max_iter=6, tol=0, value_tol=0, callback=vandal)
    np.testing.assert_array_equal(res.alpha, ref.alpha)


# -- clear errors ------------------------------------------------------------------

def test_bad_arguments_of_the_engine_are_clear_errors():
    X, y = _synthetic()
    prob = LogisticProblem(X[:200], y[:200], X[200:], y[200:])
    with pytest.raises(TypeError, match="BilevelProblem"):
        hoag("logistic")
    with pytest.raises(ValueError, match="one label per row"):
        hoag(prob, heldout=(X[:10], y[:5]))
    with pytest.raises(ValueError, match="pair \\(X, y\\)"):
        hoag(prob, heldout=(X[:10], y[:10], y[:10]))
    with pytest.raises(ValueError, match="n_points"):
        grid_search(prob, n_points=0)
    with pytest.raises(ValueError, match="low < high"):
        random_search(prob, bounds=(5, -5))


def test_split_errors_say_what_to_fix():
    import sklearn

    X, y = _synthetic()
    with pytest.raises(ValueError, match="pass groups="):
        ShineLogisticRegressionCV(cv=GroupKFold(3)).fit(X, y)
    with pytest.raises(ValueError, match="not a \\(train, validation\\) pair"):
        ShineLogisticRegressionCV(cv=[(np.arange(200), np.arange(200, 300), None)]).fit(X, y)
    y1 = y.copy()
    y1[0] = 2  # a one-member class: a fold's training part misses it, and that is fine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (scikit-learn's splitter warns)
        clf = ShineLogisticRegressionCV(cv=5).fit(X, y1)
    assert list(clf.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match="1 member"):
        ShineLogisticRegressionCV(cv=5).fit(X[:6], np.array([0, 0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="tuple"):
        ShineLogisticRegressionCV(C_bounds=np.array([1e-3, 1e3])).fit(X, y)
    # A generator of splits with metadata routing on is not used up by the routing.
    gen = ((tr, va) for tr, va in StratifiedKFold(3).split(X, y))
    with sklearn.config_context(enable_metadata_routing=True):
        ShineLogisticRegressionCV(cv=gen).fit(X, y)
