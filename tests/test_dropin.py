"""ShineLogisticRegressionCV / ShineRidgeCV as drop-ins: weights, routing, CV defaults,
scores, several targets."""

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.exceptions import ConvergenceWarning
from scipy.optimize import brentq
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (GroupKFold, KFold, PredefinedSplit, StratifiedKFold,
                                     cross_validate)

from hoag_shine import (LogisticProblem, MultinomialLogisticProblem, RidgeProblem,
                        ShineLogisticRegressionCV, ShineRidgeCV, hypergradient)
from conftest import central_difference, make_classification_data


def _weights(n, seed=0):
    return np.random.default_rng(seed).integers(1, 4, size=n).astype(float)


@pytest.mark.parametrize("kind", ["logistic", "ridge", "multinomial"])
@pytest.mark.parametrize("sparse", [False, True])
def test_weighted_hypergradient_matches_finite_differences(kind, sparse):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((90, 6))
    if sparse:
        X = sp.csr_matrix(X * (rng.random(X.shape) < 0.6))
    w = rng.uniform(0.2, 3.0, size=90)
    if kind == "ridge":
        y = np.asarray(X @ rng.standard_normal(6)).ravel() + rng.standard_normal(90)
        make = lambda: RidgeProblem(X[:60], y[:60], X[60:], y[60:], fit_intercept=True,  # noqa
                                    sample_weight=w[:60], sample_weight_val=w[60:])
    elif kind == "logistic":
        y = (np.asarray(X @ rng.standard_normal(6)).ravel() + rng.standard_normal(90) > 0)
        make = lambda: LogisticProblem(X[:60], y[:60], X[60:], y[60:], fit_intercept=True,  # noqa
                                       sample_weight=w[:60], sample_weight_val=w[60:])
    else:
        y = np.argmax(np.asarray(X @ rng.standard_normal((6, 3))) + rng.standard_normal((90, 3)),
                      axis=1)
        make = lambda: MultinomialLogisticProblem(  # noqa: E731
            X[:60], y[:60], X[60:], y[60:], fit_intercept=True, penalty="shared",
            sample_weight=w[:60], sample_weight_val=w[60:])
    prob = make()
    a = np.array([0.3])
    value, grad = hypergradient(prob, a, method="exact", inner_tol=1e-12)
    fd = central_difference(lambda t: hypergradient(prob, np.array([t]), method="exact",
                                                    inner_tol=1e-12)[0], 0.3, h=1e-4)
    assert grad[0] == pytest.approx(fd, rel=1e-5, abs=1e-8)
    # The outer value is the weighted validation loss of the inner solution.
    _, _, _, inner = hypergradient(prob, a, method="exact", inner_tol=1e-12, return_result=True)
    assert value == pytest.approx(prob.data_loss(inner.x, X[60:], y[60:],
                                                 sample_weight=w[60:]), rel=1e-12)


def test_integer_weights_are_repeated_rows_in_the_problem():
    X, y = make_classification_data(80, 5, seed=2)
    w = _weights(80)
    rep = np.repeat(np.arange(80), w.astype(int))
    a = np.array([-0.5])
    pw = LogisticProblem(X[:50], y[:50], X[50:], y[50:], fit_intercept=True,
                         sample_weight=w[:50], sample_weight_val=w[50:])
    r_tr, r_va = rep[rep < 50], rep[rep >= 50]
    pr = LogisticProblem(X[r_tr], y[r_tr], X[r_va], y[r_va], fit_intercept=True)
    x = np.random.default_rng(0).standard_normal(pw.n_params)
    for f in ("inner_value_grad", "outer_value_grad"):
        for u, v in zip(getattr(pw, f)(x, a), getattr(pr, f)(x, a)):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    v = np.arange(pw.n_params, dtype=float)
    np.testing.assert_allclose(pw.inner_hessp(x, a)(v), pr.inner_hessp(x, a)(v), rtol=1e-12)
    assert pw.default_alpha() == pytest.approx(pr.default_alpha(), rel=1e-12)


@pytest.mark.parametrize("Est", [ShineLogisticRegressionCV, ShineRidgeCV])
def test_estimator_integer_weights_equal_repeated_rows(Est):
    X, y = make_classification_data(150, 6, seed=4, noise=1.5)
    if Est is ShineRidgeCV:
        y = X @ np.arange(6.0) + np.random.default_rng(0).standard_normal(150)
    w = _weights(150, seed=3)
    rep = np.repeat(np.arange(150), w.astype(int))
    # The same splits, each repeated row on the side of its original.
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    folds_rep = [(np.flatnonzero(np.isin(rep, tr)), np.flatnonzero(np.isin(rep, va)))
                 for tr, va in folds]
    kw = dict(tol=1e-4, value_tol=0, max_iter=60)
    weighted = Est(cv=folds, **kw).fit(X, y, sample_weight=w)
    repeated = Est(cv=folds_rep, **kw).fit(X[rep], y[rep])
    assert weighted.alpha_ == pytest.approx(repeated.alpha_, abs=1e-3)
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(weighted.scores_, repeated.scores_, rtol=1e-3)


def test_class_weight_refit_equals_sklearn():
    X, y = make_classification_data(200, 6, seed=5, noise=1.0)
    y = np.where(np.arange(200) % 4 == 0, 1 - y, y)  # make the classes unequal in size
    for cw in ("balanced", {0: 1.0, 1: 3.0}):
        clf = ShineLogisticRegressionCV(class_weight=cw, cv=3).fit(X, y)
        ref = LogisticRegression(C=clf.C_, class_weight=cw, tol=1e-12, max_iter=10_000)
        ref.fit(X, y)
        np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(clf.intercept_, ref.intercept_, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="class_weight names classes"):
        ShineLogisticRegressionCV(class_weight={7: 2.0}).fit(X, y)


def test_cv_none_is_five_stratified_folds():
    X, y = make_classification_data(200, 6, seed=6, noise=1.5)
    a = ShineLogisticRegressionCV().fit(X, y)
    b = ShineLogisticRegressionCV(cv=StratifiedKFold(5)).fit(X, y)
    np.testing.assert_array_equal(a.history_["alpha"], b.history_["alpha"])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.scores_.shape == (5,)
    yr = X @ np.ones(6)
    ra, rb = ShineRidgeCV().fit(X, yr), ShineRidgeCV(cv=KFold(5)).fit(X, yr)
    assert ra.alpha_ == rb.alpha_ and ra.scores_.shape == (5,)
    # The old single hold-out stays available.
    h = ShineLogisticRegressionCV(cv="holdout", random_state=0).fit(X, y)
    assert h.scores_.shape == (1,)


def test_scores_are_the_folds_validation_loss_at_C():
    X, y = make_classification_data(180, 5, seed=7, noise=1.5)
    folds = list(StratifiedKFold(3).split(X, y))
    clf = ShineLogisticRegressionCV(cv=folds, refit=False, tol=1e-4, value_tol=0).fit(X, y)
    expected = []
    for tr, va in folds:
        ref = LogisticRegression(C=clf.C_, tol=1e-12, max_iter=10_000).fit(X[tr], y[tr])
        p = ref.predict_proba(X[va])[np.arange(len(va)), y[va]]
        expected.append(np.mean(np.log(p)))
    np.testing.assert_allclose(clf.scores_, expected, rtol=1e-4)
    assert clf.best_score_ == pytest.approx(np.mean(clf.scores_))


def test_groups_through_routing_equal_explicit_splits():
    X, y = make_classification_data(160, 5, seed=8, noise=1.5)
    groups = np.arange(160) // 8
    explicit = list(GroupKFold(4).split(X, y, groups))
    a = ShineLogisticRegressionCV(cv=explicit).fit(X, y)
    b = ShineLogisticRegressionCV(cv=GroupKFold(4)).fit(X, y, groups=groups)
    np.testing.assert_array_equal(a.history_["alpha"], b.history_["alpha"])
    with sklearn.config_context(enable_metadata_routing=True):
        c = ShineLogisticRegressionCV(cv=GroupKFold(4)).fit(X, y, groups=groups)
        np.testing.assert_array_equal(a.history_["alpha"], c.history_["alpha"])
        # cross_validate routes sample_weight to fit once it is requested.
        w = _weights(160)
        est = (ShineLogisticRegressionCV(cv=3).set_fit_request(sample_weight=True)
               .set_score_request(sample_weight=True))
        out = cross_validate(est, X, y, cv=2, params={"sample_weight": w})
        assert out["test_score"].shape == (2,)
    with pytest.raises(ValueError, match="groups"):
        ShineLogisticRegressionCV(cv=GroupKFold(4)).fit(X, y)
    with pytest.raises(ValueError, match="unexpected parameter"):
        ShineLogisticRegressionCV().fit(X, y, foo=1)


def _ridge_closed_form_root(A, B, Y_tr, Y_val, cols):
    """The root of the closed-form hypergradient of the summed validation error."""
    p = A.shape[1]

    def grad(a):
        lam = np.exp(a)
        K = A.T @ A + lam * np.eye(p)
        total = 0.0
        for t in cols:
            wt = np.linalg.solve(K, A.T @ Y_tr[:, t])
            r = B @ wt - Y_val[:, t]
            total += r @ (B @ -np.linalg.solve(K, lam * wt))
        return total

    grid = np.arange(-6, 12, 0.5)
    g = np.array([grad(a) for a in grid])
    i = int(np.flatnonzero((g[:-1] < 0) & (g[1:] > 0))[0])
    return brentq(grad, grid[i], grid[i + 1], xtol=1e-10)


@pytest.mark.parametrize("per_target", [False, True])
def test_multi_output_ridge_matches_closed_forms(per_target):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 30))
    Y = np.column_stack([X @ (scale * rng.standard_normal(30)) + rng.standard_normal(120)
                         for scale in (0.5, 0.1)])
    cv = PredefinedSplit(np.r_[np.full(80, -1), np.zeros(40, dtype=int)])
    reg = ShineRidgeCV(cv=cv, fit_intercept=False, alpha_per_target=per_target, tol=1e-5,
                       value_tol=0, max_iter=60, refit=False, hypergradient="cg").fit(X, Y)
    A, B = X[:80], X[80:]
    if per_target:
        assert reg.alpha_.shape == (2,) and len(reg.history_) == 2
        for t in range(2):
            root = _ridge_closed_form_root(A, B, Y[:80], Y[80:], [t])
            assert np.log(reg.alpha_[t]) == pytest.approx(root, abs=0.02)
        assert np.log(reg.alpha_[1] / reg.alpha_[0]) > 1  # the weaker signal's is larger
    else:
        root = _ridge_closed_form_root(A, B, Y[:80], Y[80:], [0, 1])
        assert isinstance(reg.alpha_, float)
        assert np.log(reg.alpha_) == pytest.approx(root, abs=0.02)
    alphas = np.broadcast_to(reg.alpha_, (2,))
    for t in range(2):
        ref = Ridge(alpha=alphas[t], fit_intercept=False, solver="cholesky").fit(A, Y[:80, t])
        np.testing.assert_allclose(reg.coef_[t], ref.coef_, rtol=1e-6, atol=1e-9)
    assert reg.coef_.shape == (2, 30) and reg.predict(X).shape == (120, 2)
    assert reg.intercept_.shape == (2,)


def test_n_jobs_threads_only_with_a_chosen_backend(monkeypatch):
    import joblib

    import hoag_shine.outer.workers as folds

    made = []
    real = folds.Parallel

    def spy(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(folds, "Parallel", spy)
    X, y = make_classification_data(120, 4, seed=1)
    ShineLogisticRegressionCV(cv=3, n_jobs=2).fit(X, y)
    assert made == []  # joblib's default backend: the folds run in this thread
    with joblib.parallel_config(backend="sequential"):
        ShineLogisticRegressionCV(cv=3, n_jobs=2).fit(X, y)
    assert made == []  # sequential: no pool
    with joblib.parallel_config(backend="threading", n_jobs=2):
        ShineLogisticRegressionCV(cv=3).fit(X, y)
    assert made == [{"n_jobs": 2}]  # one pool for the whole fit


def test_dropin_details_as_scikit_learn_has_them():
    import time

    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    # balanced class weights count the samples' weights (as compute_class_weight does)
    check_sample_weight_equivalence_on_dense_data(
        "ShineLogisticRegressionCV", ShineLogisticRegressionCV(class_weight="balanced"))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = X @ rng.standard_normal(4) + rng.standard_normal(60)
    reg = ShineRidgeCV().fit(X, y)
    assert type(reg.intercept_) is np.float64
    col = ShineRidgeCV().fit(X, y[:, None])  # y of shape (n, 1): 1-d outputs, as RidgeCV
    assert col.coef_.shape == (4,) and col.predict(X).shape == (60,)
    two = ShineRidgeCV(alpha_per_target=True).fit(X, np.c_[y, -y + 1])
    assert np.shape(two.best_score_) == (2,) and two.scores_.shape == (5, 2)
    ShineRidgeCV().fit(X[:3], y[:3])  # tiny data: as many folds as rows
    # An unreachable final_tol stops when the objective stalls, saying so.
    Xb = rng.standard_normal((800, 200))  # (beyond the small fits polished by Newton steps)
    yb = Xb[:, 0] + rng.standard_normal(800) > 0
    t0 = time.perf_counter()
    with pytest.warns(ConvergenceWarning, match="floating point.*Increase final_tol"):
        ShineLogisticRegressionCV(final_tol=1e-18, cv=3, C0=1.0).fit(Xb, yb)
    assert time.perf_counter() - t0 < 30
