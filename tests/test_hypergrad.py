import numpy as np
import pytest

from hoag_shine import LogisticProblem, RidgeProblem, get_strategy, hypergradient
from hoag_shine.hypergrad import STRATEGIES, HypergradientStrategy
from conftest import (central_difference, make_classification_data, ref_logistic_outer,
                      ref_ridge, split)

EXACT_IN_THE_LIMIT = [
    ("exact", {}),
    ("cg", {}),
    ("shine-refine", {"max_iter": 1000}),
]


@pytest.mark.parametrize("method,params", EXACT_IN_THE_LIMIT)
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("alpha", [-6.0, -2.0, 0.0, 4.0])
def test_logistic_hypergradient_matches_finite_differences(
        logistic_data, method, params, fit_intercept, alpha):
    X_tr, y_tr, X_val, y_val = logistic_data
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val, fit_intercept=fit_intercept)
    value, grad = hypergradient(prob, [alpha], method=method, inner_tol=1e-11, **params)
    ref = lambda a: ref_logistic_outer(X_tr, y_tr, X_val, y_val, a, fit_intercept)
    fd = central_difference(ref, alpha, h=1e-4)
    assert value == pytest.approx(ref(alpha), rel=1e-8)
    assert grad.shape == (1,)
    assert grad[0] == pytest.approx(fd, rel=1e-4, abs=1e-8 * abs(value))


@pytest.mark.parametrize("method,params", EXACT_IN_THE_LIMIT)
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("alpha", [-3.0, 0.0, 2.0])
def test_ridge_hypergradient_matches_closed_form(sparsity, method, params, fit_intercept, alpha):
    density = None if sparsity == "dense" else 0.4
    X, _ = make_classification_data(90, 8, seed=4, density=density)
    rng = np.random.default_rng(4)
    y = np.asarray(X @ rng.standard_normal(8)).ravel() + rng.standard_normal(90) + 3.0
    X_tr, y_tr, X_val, y_val = split(X, y, 60)
    prob = RidgeProblem(X_tr, y_tr, X_val, y_val, fit_intercept=fit_intercept)
    value, grad = hypergradient(prob, [alpha], method=method, inner_tol=1e-13, **params)
    ref_value, ref_grad, _ = ref_ridge(X_tr, y_tr, X_val, y_val, alpha, fit_intercept)
    assert value == pytest.approx(ref_value, rel=1e-10)
    assert grad[0] == pytest.approx(ref_grad, rel=1e-8, abs=1e-12)


def test_approximate_strategies_report_their_cost(logistic_data):
    prob = LogisticProblem(*logistic_data)
    costs = {}
    for name in STRATEGIES:
        value, grad, hg, inner = hypergradient(prob, [-1.0], method=name, inner_tol=1e-6,
                                               return_result=True)
        costs[name] = hg.n_hvp
        assert hg.time >= 0 and np.isfinite(grad).all()
    assert costs["exact"] == prob.n_params
    assert costs["shine"] == costs["jacobian-free"] == 0
    assert 0 < costs["truncated-cg"] <= 6  # five iterations (+ one residual product)
    assert costs["cg"] > 0


def test_jacobian_free_and_shine_are_what_they_claim(logistic_data):
    prob = LogisticProblem(*logistic_data)
    _, _, jf, inner = hypergradient(prob, [0.0], method="jacobian-free", return_result=True)
    np.testing.assert_array_equal(jf.z, jf.grad_x)
    _, _, sh, inner = hypergradient(prob, [0.0], method="shine", return_result=True)
    np.testing.assert_allclose(sh.z, inner.memory.inv_hvp(sh.grad_x), rtol=1e-12)
    # SHINE is an approximation: not the exact z, but a descent-consistent one.
    _, _, ex, _ = hypergradient(prob, [0.0], method="exact", return_result=True)
    cos = sh.z @ ex.z / np.linalg.norm(sh.z) / np.linalg.norm(ex.z)
    assert 0.5 < cos < 1 - 1e-6


def test_shine_refine_cap_schedule():
    s = get_strategy("shine-refine")
    assert s.cap(1e-2) == 0 and s.cap(1e-6) == 10 and s.cap(1e-8) == 100
    assert get_strategy("shine-refine", max_iter=7).cap(1e-2) == 7


def test_unknown_strategy_and_bad_params():
    with pytest.raises(ValueError, match="Unknown hypergradient method 'newton'"):
        get_strategy("newton")
    with pytest.raises(ValueError, match="Invalid parameters"):
        get_strategy("cg", maxiter=3)
    inst = get_strategy("truncated-cg", max_iter=2)
    assert isinstance(inst, HypergradientStrategy) and get_strategy(inst) is inst


def test_exact_refuses_large_problems(logistic_data):
    prob = LogisticProblem(*logistic_data)
    with pytest.raises(ValueError, match="small problems"):
        hypergradient(prob, [0.0], method="exact", max_params=3)
