import functools

import joblib
import warnings

import numpy as np
from threadpoolctl import threadpool_limits
import pytest
import scipy.sparse as sp
from scipy.optimize import brentq
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, PredefinedSplit, train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from hoag_shine import ShineLogisticRegressionCV, ShineRidgeCV
from conftest import (central_difference, make_classification_data, make_word_counts,
                      ref_logistic_outer, ref_ridge)


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
                                    refit=False, fit_intercept=False, max_iter=60, tol=1e-4,
                                    value_tol=0)
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
@functools.lru_cache(maxsize=None)
def _breast_cancer_grid(seed):
    """Training and validation parts and the best validation loss over a fine grid of C
    (scikit-learn's fits, one BLAS thread: two fight for the cores), once per seed."""
    with threadpool_limits(limits=1):
        return _grid(seed)


def _grid(seed):
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

    coarse = np.arange(-6, 6.001, 0.25)
    a0 = coarse[int(np.argmin([val_loss(np.exp(a)) for a in coarse]))]
    best = min(val_loss(np.exp(a)) for a in np.arange(a0 - 0.25, a0 + 0.2501, 0.02))
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
    with joblib.parallel_config(backend="threading"):  # folds in two threads
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
    with pytest.raises(ValueError, match="training part of split 0 holds one class only"):
        ShineLogisticRegressionCV(cv=_predefined(50, 10)).fit(X, np.r_[np.zeros(50), y[50:]])
    with pytest.raises(ValueError, match="Too few samples"):
        ShineLogisticRegressionCV(cv="holdout").fit(X[:3], [0, 1, 0])
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
    import logging
    import threading

    X, y = make_classification_data(150, 5, seed=1)
    clf = ShineLogisticRegressionCV(verbose=1, max_iter=3, tol=0, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    assert err.count("iteration ") == clf.n_iter_ == 3 and " C=[" in err  # C, not alpha
    ShineLogisticRegressionCV(max_iter=3, tol=0, random_state=0).fit(X, y)
    assert "iteration" not in capsys.readouterr().err  # quiet by default
    # Verbose fits in threads leave the package logger as they found it.
    logger = logging.getLogger("hoag_shine")
    level = logger.level
    threads = [threading.Thread(target=ShineLogisticRegressionCV(verbose=1, max_iter=3,
                                                                   tol=0).fit, args=(X, y))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    capsys.readouterr()
    assert logger.level == level and not logger.handlers


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
    # Two stages: one shared C first (its records repeat it for every class), then
    # one per class from there, ending no worse on the folds than the shared C alone.
    shared = ShineLogisticRegressionCV(random_state=0).fit(X, y)
    n_first = shared.n_iter_
    first = clf.history_["C"][:n_first]
    np.testing.assert_array_equal(first, np.repeat(shared.history_["C"][:, None], 3, axis=1))
    assert np.all(np.isnan(clf.history_["hypergradient"][:n_first]))
    assert np.all(np.isfinite(clf.history_["hypergradient"][n_first][clf.history_["accepted"][
        n_first]]))
    np.testing.assert_allclose(clf.history_["C"][n_first], shared.C_, rtol=1e-12)
    assert np.all(np.diff(clf.history_["time"]) >= 0)
    assert clf.best_score_ >= shared.best_score_ - 1e-9
    assert clf.hoag_result_.alpha.shape == (3,)
    # One time budget for both stages, named as the user gave it.
    quick = ShineLogisticRegressionCV(multi_class_C="per-class", random_state=0,
                                      max_time=1e-3).fit(X, y)
    assert quick.hoag_result_.status == 2 and "max_time=0.001s" in quick.hoag_result_.message
    Xb, yb = make_classification_data(300, 6, seed=4)
    clf = ShineLogisticRegressionCV(penalty_groups=[0, 0, 1, 1, 2, 2], random_state=0)
    clf.fit(Xb, yb)
    assert clf.C_.shape == (3,) and clf.coef_.shape == (1, 6)


def test_per_class_stage_that_does_not_help_keeps_the_shared_C(monkeypatch):
    # A per-class stage ending above the shared stage's validation loss (forced here)
    # is not used: the shared C for every class, its solutions, and a message.
    import hoag_shine.outer.tune as tune_module

    real = tune_module.run_hoag

    def worse_second_stage(problems, alpha0=None, **kw):
        res = real(problems, alpha0, **kw)
        if problems[0].n_hyper > 1:
            res.update(alpha=res.alpha + np.arange(res.alpha.size), fun=res.fun + 1.0)
        return res

    X, y = _three_classes(seed=1)
    shared = ShineLogisticRegressionCV(random_state=0).fit(X, y)
    monkeypatch.setattr(tune_module, "run_hoag", worse_second_stage)
    clf = ShineLogisticRegressionCV(multi_class_C="per-class", random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.C_, np.full(3, shared.C_), rtol=1e-12)
    assert "kept" in clf.hoag_result_.message
    assert clf.best_score_ == pytest.approx(shared.best_score_, rel=1e-12)
    np.testing.assert_allclose(clf.coef_, shared.coef_, rtol=1e-9, atol=1e-12)


# -- ShineRidgeCV ---------------------------------------------------------------

def _regression_data(n=200, p=15, seed=0, noise=3.0, offset=40.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) @ np.diag(np.linspace(0.2, 3, p)) + 1.5
    y = X @ rng.standard_normal(p) + offset + noise * rng.standard_normal(n)
    return X, y


@parametrize_with_checks([ShineRidgeCV(), ShineRidgeCV(hypergradient="cg", cv=3)])
def test_ridge_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("hypergradient", ["shine", "cg"])
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_ridge_predefined_split_matches_closed_form_and_sklearn(hypergradient, fit_intercept,
                                                                sparse):
    X, y = _regression_data(p=60, seed=0, noise=10.0)
    X_tr, y_tr, X_val, y_val = X[:140], y[:140], X[140:], y[140:]
    # The closed-form optimum: root of the closed-form hypergradient.
    dg = lambda a: ref_ridge(X_tr, y_tr, X_val, y_val, a, fit_intercept)[1]  # noqa: E731
    grid = np.arange(-6, 8.01, 0.5)
    signs = np.sign([dg(a) for a in grid])
    i = int(np.flatnonzero((signs[:-1] < 0) & (signs[1:] > 0))[0])
    alpha_star = brentq(dg, grid[i], grid[i + 1], xtol=1e-10)

    reg = ShineRidgeCV(hypergradient=hypergradient, cv=_predefined(140, 60), refit=False,
                       fit_intercept=fit_intercept, max_iter=60, tol=1e-5, value_tol=0)
    reg.fit(sp.csr_matrix(X) if sparse else X, y)
    assert reg.log_alpha_ == pytest.approx(alpha_star, abs=0.02)
    assert reg.alpha_ == pytest.approx(np.exp(reg.log_alpha_), rel=1e-12)
    ref = Ridge(alpha=reg.alpha_, fit_intercept=fit_intercept, solver="cholesky").fit(X_tr, y_tr)
    np.testing.assert_allclose(reg.coef_, ref.coef_, rtol=1e-6, atol=1e-6 * np.abs(ref.coef_).max())
    assert reg.intercept_ == pytest.approx(ref.intercept_, rel=1e-6, abs=1e-8)
    np.testing.assert_allclose(reg.predict(X_val), ref.predict(X_val), rtol=1e-6, atol=1e-6)


def test_ridge_kfold_matches_the_grid_of_summed_fold_errors():
    X, y = _regression_data(n=300, seed=2, noise=6.0)
    folds = list(KFold(5).split(X))

    def cv_error(alpha):
        return sum(0.5 * np.sum((Ridge(alpha=alpha).fit(X[tr], y[tr]).predict(X[va]) - y[va]) ** 2)
                   for tr, va in folds)

    grid = np.exp(np.arange(-6, 8.01, 0.05))
    errors = [cv_error(a) for a in grid]
    assert 0 < np.argmin(errors) < len(grid) - 1
    for hypergradient in ("shine", "cg", "jacobian-free"):
        # Defaults stop once the validation error settles (value_tol=3e-4 over
        # 5 iterations): within 0.1%. Without that test, within 0.01%.
        reg = ShineRidgeCV(hypergradient=hypergradient, cv=5).fit(X, y)
        assert cv_error(reg.alpha_) <= min(errors) * (1 + 1e-3), hypergradient
        tight = ShineRidgeCV(hypergradient=hypergradient, cv=5, value_tol=0).fit(X, y)
        assert cv_error(tight.alpha_) <= min(errors) * (1 + 1e-4), hypergradient
        # refit=True: the final model is the full-data ridge at alpha_.
        ref = Ridge(alpha=reg.alpha_).fit(X, y)
        np.testing.assert_allclose(reg.coef_, ref.coef_, rtol=1e-6,
                                   atol=1e-6 * np.abs(ref.coef_).max())


@pytest.mark.parametrize("hypergradient", ["shine", "cg"])
def test_ridge_per_group_penalties_beat_the_shared_one(hypergradient):
    # Eight informative features and eight pure-noise ones: the noise group
    # deserves a much stronger penalty than the signal group.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 16))
    y = X @ np.r_[rng.standard_normal(8), np.zeros(8)] + rng.standard_normal(120)
    groups = np.repeat([0, 1], 8)

    def solve(log_alpha):  # closed form on the 40 training rows
        lam = np.exp(log_alpha)[groups]
        return np.linalg.solve(X[:40].T @ X[:40] + np.diag(lam), X[:40].T @ y[:40])

    def val(log_alpha):
        r = X[40:] @ solve(log_alpha) - y[40:]
        return 0.5 * r @ r

    grid = np.arange(-6, 10.01, 0.1)
    best_2d = min(val(np.array([a, b])) for a in grid for b in grid)
    best_shared = min(val(np.array([a, a])) for a in grid)
    reg = ShineRidgeCV(cv=_predefined(40, 80), refit=False, penalty_groups=groups,
                       fit_intercept=False, hypergradient=hypergradient)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    assert reg.alpha_.shape == (2,) and reg.history_["alpha"].shape == (reg.n_iter_, 2)
    assert reg.log_alpha_[1] > reg.log_alpha_[0] + 5
    assert val(reg.log_alpha_) <= 1.001 * best_2d < 0.9 * best_shared
    np.testing.assert_allclose(reg.coef_, solve(reg.log_alpha_), rtol=1e-6, atol=1e-9)


def test_ridge_bad_input_messages():
    X, y = _regression_data(n=60, p=4)
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        ShineRidgeCV().fit(bad, y)
    with pytest.raises(ValueError, match="alpha0=.*outside alpha_bounds"):
        ShineRidgeCV(alpha0=1e9, alpha_bounds=(1e-3, 1e3)).fit(X, y)
    with pytest.raises(ValueError, match="one group per feature"):
        ShineRidgeCV(penalty_groups=[0, 1]).fit(X, y)
    with pytest.raises(ValueError, match="could not convert|numeric"):
        ShineRidgeCV().fit(X, np.array(["a"] * 60))
    with pytest.raises(ValueError, match="training part would be empty"):
        ShineRidgeCV(cv="holdout", validation_fraction=0.9).fit(X[:2], y[:2])
    with pytest.raises(ValueError, match="cross-validation split failed"):
        ShineRidgeCV(cv=100).fit(X, y)


def test_the_final_fit_on_sparse_data_is_preconditioned_apart_from_the_search(
        monkeypatch):
    """The final fit solves and measures in ``preconditioner_guess`` (sparse: the mean of
    the coarse and Jacobi guesses), and its answer is scikit-learn's at the same ``C``."""
    from hoag_shine.outer import tune as tune_module

    X, y = make_word_counts(300, 800)
    seen = []
    real = tune_module.fit_inner

    def spy(problem, alpha, **kw):
        seen.append((problem, alpha, kw.get("metric")))
        return real(problem, alpha, **kw)

    monkeypatch.setattr(tune_module, "fit_inner", spy)
    est = ShineLogisticRegressionCV(cv=3, final_tol=1e-8).fit(X, y)
    problem, alpha, metric = seen[0]
    assert problem.X_train.shape[0] == 300  # the final fit, on all the rows
    np.testing.assert_allclose(metric, np.sqrt(problem.scale_guess(alpha)
                                               * problem.jacobi_guess(alpha)))
    assert np.ptp(metric[:-1]) > 0 and np.ptp(problem.inverse_hessian_guess(alpha)[:-1]) == 0
    ref = LogisticRegression(C=float(np.ravel(est.C_)[0]), tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-4, atol=1e-6 * np.abs(ref.coef_).max())
