import functools
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from hoag_shine import ShineLogisticRegressionCV
from conftest import central_difference, make_classification_data, ref_logistic_outer


@parametrize_with_checks([ShineLogisticRegressionCV(hypergradient="shine"),
                          ShineLogisticRegressionCV(hypergradient="cg", cv=3)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _predefined(n_train, n_val):
    return PredefinedSplit(np.r_[np.full(n_train, -1), np.zeros(n_val, dtype=int)])


@pytest.mark.parametrize("hypergradient", ["shine", "cg"])
def test_predefined_split_matches_hoag_optimum_and_sklearn(hypergradient):
    X, y = make_classification_data(260, 25, seed=7, noise=2.0)
    X_tr, y_tr, X_val, y_val = X[:180], y[:180], X[180:], y[180:]
    # HOAG's optimum, independently: root of the finite-difference derivative of
    # the validation loss of Newton-solved inner problems.
    outer = lambda a: ref_logistic_outer(X_tr, y_tr, X_val, y_val, a, False)
    dg = lambda a: central_difference(outer, a, h=1e-4)
    grid = np.arange(-6, 6.01, 0.25)
    i = int(np.argmin([outer(a) for a in grid]))
    assert 0 < i < len(grid) - 1
    alpha_star = brentq(dg, grid[i - 1], grid[i + 1], xtol=1e-8)

    clf = ShineLogisticRegressionCV(hypergradient=hypergradient, cv=_predefined(180, 80),
                                    refit=False, fit_intercept=False, max_iter=60, tol=1e-4)
    clf.fit(X, y)
    assert clf.alpha_ == pytest.approx(alpha_star, abs=0.02)
    assert clf.C_ == pytest.approx(np.exp(-clf.alpha_), rel=1e-12)
    # The validation loss at the chosen C is the optimal one to within 1e-4.
    assert outer(clf.alpha_) <= outer(alpha_star) * (1 + 1e-4)
    ref = LogisticRegression(C=clf.C_, fit_intercept=False, tol=1e-12, max_iter=10000)
    ref.fit(X_tr, y_tr)
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-4, atol=1e-6 * np.abs(ref.coef_).max())
    assert clf.intercept_.tolist() == [0.0]


@functools.lru_cache(maxsize=None)
def _breast_cancer_grid(seed):
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.3, random_state=seed,
                                                stratify=y)
    sc = StandardScaler().fit(X_tr)
    X_tr, X_val = sc.transform(X_tr), sc.transform(X_val)

    b = np.where(y_val == 1, 1.0, -1.0)

    def loss(clf):
        return np.logaddexp(0, -b * clf.decision_function(X_val)).sum()

    def val_loss(C):
        return loss(LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X_tr, y_tr))

    best = min(val_loss(C) for C in np.exp(np.arange(-6, 6.001, 0.02)))
    return X_tr, y_tr, X_val, y_val, loss, best


@pytest.mark.parametrize("hypergradient",
                         ["shine", "shine-opa", "shine-refine", "cg", "truncated-cg",
                          "jacobian-free", "exact"])
@pytest.mark.parametrize("seed", [0, 1])
def test_breast_cancer_validation_loss_within_one_percent_of_grid(hypergradient, seed):
    """The loss on data the model was not fitted on, at the chosen C, is within 1%
    of the best over a fine grid of C (same training and validation parts)."""
    X_tr, y_tr, X_val, y_val, loss, best = _breast_cancer_grid(seed)
    clf = ShineLogisticRegressionCV(hypergradient=hypergradient, refit=False,
                                    cv=_predefined(len(y_tr), len(y_val)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(np.vstack([X_tr, X_val]), np.r_[y_tr, y_val])
    assert loss(clf) <= 1.01 * best


def test_labels_history_and_predictions():
    X, y = make_classification_data(200, 8, seed=2, labels=("spam", "ham"))
    clf = ShineLogisticRegressionCV(random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["ham", "spam"])
    assert set(clf.predict(X)) <= {"ham", "spam"} and clf.score(X, y) > 0.8
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-12)
    # predict_proba agrees with the decision function's sign and with scikit-learn's formula.
    d = clf.decision_function(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-d)), rtol=1e-12)
    assert set(clf.history_) >= {"C", "alpha", "validation_loss", "hypergradient", "time",
                                 "inner_iter", "n_hvp", "accepted"}
    assert len(clf.history_["C"]) == clf.n_iter_
    assert clf.coef_.shape == (1, 8) and clf.intercept_.shape == (1,)
    # refit=True: coef_ is the full-data fit at C_.
    ref = LogisticRegression(C=clf.C_, tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-4, atol=1e-7)


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = make_classification_data(120, 3, seed=1)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    clf = ShineLogisticRegressionCV(random_state=0).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c"])


def test_kfold_parallel_equals_serial():
    X, y = make_classification_data(240, 10, seed=3, noise=1.5)
    a = ShineLogisticRegressionCV(cv=3, n_jobs=1, C0=1e-3).fit(X, y)
    b = ShineLogisticRegressionCV(cv=3, n_jobs=2, C0=1e-3).fit(X, y)
    assert a.alpha_ == b.alpha_
    np.testing.assert_array_equal(a.coef_, b.coef_)
    # From a far too strong penalty, the outer loop made progress.
    assert a.C_ > 1e-1
    assert a.hoag_result_.fun < 0.9 * a.history_["validation_loss"][0]


def test_bad_input_messages():
    X, y = make_classification_data(60, 4, seed=0)
    clf = ShineLogisticRegressionCV()
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, y)
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X, np.zeros(60))
    with pytest.raises(ValueError, match="penalty_groups applies to binary targets"):
        ShineLogisticRegressionCV(penalty_groups=[0, 1, 0, 1]).fit(X, np.arange(60) % 3)
    with pytest.raises(ValueError, match="one group per feature"):
        ShineLogisticRegressionCV(penalty_groups=[0, 1]).fit(X, y)
    with pytest.raises(ValueError, match="multi_class_C must be"):
        ShineLogisticRegressionCV(multi_class_C="each").fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, np.linspace(0, 1, 60))
    with pytest.raises(ValueError, match="validation part of split 0 misses the class"):
        ShineLogisticRegressionCV(cv=_predefined(50, 10)).fit(X, np.r_[y[:50], np.zeros(10)])
    with pytest.raises(ValueError, match="Too few samples"):
        ShineLogisticRegressionCV().fit(X[:3], [0, 1, 0])
    with pytest.raises(ValueError, match="C0=.*outside C_bounds"):
        ShineLogisticRegressionCV(C0=1e6, C_bounds=(1e-3, 1e3)).fit(X, y)
    with pytest.raises(ValueError, match="Unknown hypergradient 'newton'"):
        ShineLogisticRegressionCV(hypergradient="newton").fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        ShineLogisticRegressionCV(validation_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError, match="cross-validation split failed"):
        ShineLogisticRegressionCV(cv=40).fit(X, y)


def test_outer_non_convergence_is_a_warning():
    X, y = make_classification_data(200, 8, seed=2)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        ShineLogisticRegressionCV(max_iter=2, tol=1e-9, random_state=0).fit(X, y)


def test_verbose_logs_each_outer_iteration(capsys):
    X, y = make_classification_data(150, 5, seed=1)
    clf = ShineLogisticRegressionCV(verbose=1, max_iter=3, tol=0, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    assert err.count("hoag it ") == clf.n_iter_ == 3
    ShineLogisticRegressionCV(max_iter=3, tol=0, random_state=0).fit(X, y)
    assert "hoag it" not in capsys.readouterr().err  # quiet by default, handler removed


def _three_classes(seed=0, n=450, p=12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    scores = X @ rng.standard_normal((p, 3)) + 1.5 * rng.standard_normal((n, 3))
    return X, np.array(["red", "green", "blue"])[np.argmax(scores, axis=1)]


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_multiclass_shared_C_matches_sklearn_multinomial(fit_intercept):
    X, y = _three_classes()
    clf = ShineLogisticRegressionCV(cv=_predefined(300, 150), refit=False,
                                    fit_intercept=fit_intercept, random_state=0).fit(X, y)
    assert isinstance(clf.C_, float) and clf.coef_.shape == (3, 12)
    ref = LogisticRegression(C=clf.C_, fit_intercept=fit_intercept, tol=1e-12,
                             max_iter=10000).fit(X[:300], y[:300])
    np.testing.assert_array_equal(clf.classes_, ref.classes_)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-4,
                               atol=1e-7)
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    # Coefficients agree exactly up to the softmax's common shift of the intercepts.
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-4, atol=1e-6)


def test_multiclass_per_class_C_and_binary_per_group_C():
    X, y = _three_classes(seed=1)
    clf = ShineLogisticRegressionCV(multi_class_C="per-class", random_state=0).fit(X, y)
    assert clf.C_.shape == (3,) and clf.alpha_.shape == (3,)
    assert clf.history_["C"].shape == (clf.n_iter_, 3)
    assert clf.predict_proba(X).shape == (450, 3) and clf.score(X, y) > 0.6
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X),
                               rtol=1e-12)
    Xb, yb = make_classification_data(300, 6, seed=4)
    clf = ShineLogisticRegressionCV(penalty_groups=[0, 0, 1, 1, 2, 2], random_state=0)
    clf.fit(Xb, yb)
    assert clf.C_.shape == (3,) and clf.coef_.shape == (1, 6)
