"""Vector hyperparameters: one penalty per group of features (binary logistic, ridge)."""

import numpy as np
import pytest

from hoag_shine import LogisticProblem, RidgeProblem, hoag, hypergradient
from conftest import make_classification_data, split

GROUPS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 3, 3])


def _ridge_closed_form(X_tr, y_tr, X_val, y_val, alpha, groups):
    lam = np.exp(alpha)[groups]
    K = X_tr.T @ X_tr + np.diag(lam)
    w = np.linalg.solve(K, X_tr.T @ y_tr)
    r = X_val @ w - y_val
    grad = np.empty(len(alpha))
    for g in range(len(alpha)):
        dw = -np.linalg.solve(K, np.where(groups == g, lam * w, 0.0))
        grad[g] = r @ (X_val @ dw)
    return 0.5 * r @ r, grad


@pytest.mark.parametrize("method", ["exact", "cg"])
def test_ridge_per_group_matches_closed_form(method):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 10))
    y = X @ rng.standard_normal(10) + rng.standard_normal(120)
    data = split(X, y, 80)
    alpha = np.array([-1.0, 0.5, 2.0, 0.0])
    prob = RidgeProblem(*data, penalty_groups=GROUPS)
    value, grad = hypergradient(prob, alpha, method=method, inner_tol=1e-13)
    ref_value, ref_grad = _ridge_closed_form(*data, alpha, GROUPS)
    assert value == pytest.approx(ref_value, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("method", ["exact", "cg"])
@pytest.mark.parametrize("one_per_feature", [False, True])
def test_logistic_per_group_matches_finite_differences(method, one_per_feature):
    X, y = make_classification_data(160, 10, seed=5, noise=1.5)
    groups = np.arange(10) if one_per_feature else GROUPS
    prob = LogisticProblem(*split(X, y, 110), penalty_groups=groups, fit_intercept=True)
    alpha = np.linspace(-1.5, 1.5, prob.n_hyper)
    _, grad = hypergradient(prob, alpha, method=method, inner_tol=1e-12)

    def outer(a):
        return hypergradient(prob, a, method="jacobian-free", inner_tol=1e-13)[0]

    h = 1e-4
    fd = np.array([(outer(alpha + h * e) - outer(alpha - h * e)) / (2 * h)
                   for e in np.eye(prob.n_hyper)])
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


def test_hoag_vector_bounds_and_trace():
    X, y = make_classification_data(300, 10, seed=6, noise=1.5)
    prob = LogisticProblem(*split(X, y, 200), penalty_groups=GROUPS)
    lo, hi = np.array([-2.0, -2.0, -2.0, 0.5]), np.array([2.0, 2.0, 2.0, 3.0])
    res = hoag(prob, np.full(4, 1.0), bounds=(lo, hi), hypergradient="cg", max_iter=15)
    alphas = res.trace_columns()["alpha"]
    assert alphas.shape == (res.nit, 4)
    assert np.all(alphas >= lo - 1e-12) and np.all(alphas <= hi + 1e-12)
    assert res.fun < res.trace[0]["outer_value"]
