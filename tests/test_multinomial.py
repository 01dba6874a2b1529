import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp

from hoag_shine import MultinomialLogisticProblem, hoag, hypergradient


def _data(n=150, p=6, K=3, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    if sparse:
        X = sp.csr_matrix(X * (rng.random((n, p)) < 0.5))
    W = rng.standard_normal((p, K))
    scores = np.asarray(X @ W) + 1.5 * rng.standard_normal((n, K))
    y = np.array(["a", "b", "c", "d"])[:K][np.argmax(scores, axis=1)]
    return X[:100], y[:100], X[100:], y[100:]


def _fd(f, x, h=1e-6):
    out = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        out[j] = (f(x + e) - f(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("penalty", ["per-class", "shared"])
@pytest.mark.parametrize("sparse", [False, True])
def test_derivatives_match_finite_differences(fit_intercept, penalty, sparse):
    prob = MultinomialLogisticProblem(*_data(sparse=sparse), fit_intercept=fit_intercept,
                                      penalty=penalty)
    assert prob.n_hyper == (3 if penalty == "per-class" else 1)
    rng = np.random.default_rng(1)
    x = 0.3 * rng.standard_normal(prob.n_params)
    a = rng.uniform(-1, 1, prob.n_hyper)
    np.testing.assert_allclose(prob.inner_value_grad(x, a)[1],
                               _fd(lambda v: prob.inner_value_grad(v, a)[0], x), rtol=1e-6,
                               atol=1e-6)
    v = rng.standard_normal(prob.n_params)
    fd = (prob.inner_value_grad(x + 1e-6 * v, a)[1]
          - prob.inner_value_grad(x - 1e-6 * v, a)[1]) / 2e-6
    np.testing.assert_allclose(prob.inner_hessp(x, a)(v), fd, rtol=1e-5, atol=1e-6)
    z = rng.standard_normal(prob.n_params)
    np.testing.assert_allclose(prob.inner_cross(x, a, z),
                               _fd(lambda b: prob.inner_value_grad(x, b)[1] @ z, a), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(prob.outer_value_grad(x, a)[1],
                               _fd(lambda v: prob.outer_value_grad(v, a)[0], x), rtol=1e-6,
                               atol=1e-6)


def test_values_against_an_independent_formula():
    X_tr, y_tr, X_val, y_val = _data()
    prob = MultinomialLogisticProblem(X_tr, y_tr, X_val, y_val, fit_intercept=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(prob.n_params)
    W = x[:18].reshape(6, 3)
    b = np.r_[0.0, x[18:]]
    Z = X_tr @ W + b
    yi = np.searchsorted(["a", "b", "c"], y_tr)
    a = np.array([0.1, -0.4, 0.7])
    expected = sum(logsumexp(Z[i]) - Z[i, yi[i]] for i in range(len(yi)))
    expected += 0.5 * sum(np.exp(a[k]) * W[:, k] @ W[:, k] for k in range(3))
    assert prob.inner_value_grad(x, a)[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("penalty", ["per-class", "shared"])
@pytest.mark.parametrize("method", ["exact", "cg"])
def test_hypergradient_matches_finite_differences_per_coordinate(penalty, method):
    X_tr, y_tr, X_val, y_val = _data(seed=3)
    prob = MultinomialLogisticProblem(X_tr, y_tr, X_val, y_val, fit_intercept=True,
                                      penalty=penalty)
    a = np.linspace(-1.0, 0.5, prob.n_hyper)

    def outer(alpha):  # independent inner solve: Newton's method on the dense Hessian
        x = np.zeros(prob.n_params)
        for _ in range(50):
            g = prob.inner_value_grad(x, alpha)[1]
            if np.linalg.norm(g) < 1e-11:
                break
            x = x - np.linalg.solve(prob.inner_hessian(x, alpha), g)
        assert np.linalg.norm(prob.inner_value_grad(x, alpha)[1]) < 1e-10
        return prob.outer_value_grad(x, alpha)[0]

    _, grad = hypergradient(prob, a, method=method, inner_tol=1e-12)
    fd = _fd(outer, a, h=1e-4)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7 * np.abs(fd).max())


def test_hoag_per_class_runs_and_decreases_the_validation_loss():
    prob = MultinomialLogisticProblem(*_data(n=400, p=20, K=4, seed=4), penalty="per-class")
    res = hoag(prob, np.zeros(4), hypergradient="shine", max_iter=20)
    assert res.alpha.shape == (4,) and res.trace[0]["alpha"].shape == (4,)
    assert res.fun < res.trace[0]["outer_value"]


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_with_penalty_shares_the_data_and_agrees_at_equal_penalties(fit_intercept):
    per_class = MultinomialLogisticProblem(*_data(seed=2), fit_intercept=fit_intercept,
                                           penalty="per-class")
    shared = per_class.with_penalty("shared")
    assert shared.n_hyper == 1 and per_class.n_hyper == 3 and shared.X_train is per_class.X_train
    assert per_class.with_penalty("per-class").n_hyper == 3
    x = np.random.default_rng(0).standard_normal(per_class.n_params)
    v_pc, g_pc = per_class.inner_value_grad(x, np.full(3, 0.7))
    v_sh, g_sh = shared.inner_value_grad(x, np.array([0.7]))
    assert v_sh == pytest.approx(v_pc, rel=1e-14)
    np.testing.assert_allclose(g_sh, g_pc, rtol=1e-14)
    # The per-class penalties differ: the shared problem's stays as it was.
    v_other = per_class.inner_value_grad(x, np.array([0.7, 0.7, 3.0]))[0]
    assert v_other > v_pc and shared.inner_value_grad(x, np.array([0.7]))[0] == v_sh
    with pytest.raises(ValueError, match="penalty must be"):
        per_class.with_penalty("per-feature")


def test_a_result_as_x0_carries_the_pairs_from_a_shared_penalty_to_per_class():
    from hoag_shine.inner import LbfgsMemory
    from hoag_shine.outer import HoagResult

    prob = MultinomialLogisticProblem(*_data(n=400, p=20, K=4, seed=4), penalty="per-class",
                                      fit_intercept=True)
    first = hoag(prob.with_penalty("shared"), [0.0], max_iter=5)
    ((mem, at),) = first.memory
    assert isinstance(mem, LbfgsMemory) and len(mem) > 0 and at.shape == (1,)
    a = first.alpha[0] + np.array([0.3, -0.2, 0.1, 0.0])

    def start(memory):
        return HoagResult(x=first.x, memory=memory)

    kw = dict(max_iter=1, eps0=1e-6)
    cold = hoag(prob, a, x0=first.x, **kw)
    # (the shared penalty's alpha stands for the same penalty on every class)
    warm = hoag(prob, a, x0=start([(mem.copy(), at)]), **kw)
    # Pairs said to be at another penalty are shifted wrongly: a worse start.
    wrong = hoag(prob, a, x0=start([(mem.copy(), at + 2.0)]), **kw)
    assert warm.trace[0]["inner_iter"] < wrong.trace[0]["inner_iter"]
    # A run started from the result works on copies of its pairs: the result is not
    # changed (a second run from it takes the same path), the new result has its own.
    v = np.random.default_rng(0).standard_normal(prob.n_params)
    before = mem.inv_hvp(v)
    again = hoag(prob, a, x0=first, **kw)
    np.testing.assert_array_equal(first.memory[0][0].inv_hvp(v), before)
    assert again.memory[0][0] is not mem
    twice = hoag(prob, a, x0=first, **kw)
    assert twice.trace[0]["inner_iter"] == again.trace[0]["inner_iter"]
    np.testing.assert_array_equal(twice.alpha, again.alpha)
    assert warm.trace[0]["outer_value"] == pytest.approx(cold.trace[0]["outer_value"],
                                                         rel=1e-6)
    with pytest.raises(ValueError, match="one \\(memory, alpha\\) per problem"):
        hoag(prob, a, x0=start([]), max_iter=1)
    with pytest.raises(TypeError, match="LbfgsMemory"):
        hoag(prob, a, x0=start([("pairs", a)]), max_iter=1)
    with pytest.raises(ValueError, match="parameters"):
        hoag(prob, a, x0=start([(LbfgsMemory(3, 7), a)]), max_iter=1)


def test_errors():
    X_tr, y_tr, X_val, y_val = _data()
    with pytest.raises(ValueError, match="at least two classes"):
        MultinomialLogisticProblem(X_tr, ["a"] * 100, X_val, y_val)
    with pytest.raises(ValueError, match="penalty must be"):
        MultinomialLogisticProblem(X_tr, y_tr, X_val, y_val, penalty="per-feature")
    with pytest.raises(ValueError, match="not among the training classes"):
        MultinomialLogisticProblem(X_tr, y_tr, X_val, np.r_[y_val[:-1], ["z"]])
