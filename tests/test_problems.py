import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from hoag_shine import LogisticProblem, RidgeProblem
from conftest import make_classification_data, make_word_counts, split


def _fd_grad(f, x, h=1e-6):
    out = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        out[j] = (f(x + e) - f(x - e)) / (2 * h)
    return out


PROBLEMS = [LogisticProblem, RidgeProblem]


def _make(cls, sparsity, fit_intercept, groups=None):
    density = None if sparsity == "dense" else 0.4
    X, y = make_classification_data(80, 6, seed=3, density=density)
    if cls is RidgeProblem:
        rng = np.random.default_rng(0)
        y = np.asarray(X @ rng.standard_normal(6)).ravel() + 0.1 * rng.standard_normal(80)
    return cls(*split(X, y, 50), fit_intercept=fit_intercept, penalty_groups=groups)


@pytest.mark.parametrize("cls", PROBLEMS)
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("groups", [None, [0, 1, 1, 2, 0, 2]])
def test_derivatives_match_finite_differences(cls, sparsity, fit_intercept, groups):
    prob = _make(cls, sparsity, fit_intercept, groups)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(prob.n_params)
    alpha = rng.uniform(-1, 1, prob.n_hyper)

    value, grad = prob.inner_value_grad(x, alpha)
    np.testing.assert_allclose(grad, _fd_grad(lambda v: prob.inner_value_grad(v, alpha)[0], x),
                               rtol=1e-6, atol=1e-6)
    v = rng.standard_normal(prob.n_params)
    Hv = prob.inner_hessp(x, alpha)(v)
    fd = (prob.inner_value_grad(x + 1e-6 * v, alpha)[1]
          - prob.inner_value_grad(x - 1e-6 * v, alpha)[1]) / 2e-6
    np.testing.assert_allclose(Hv, fd, rtol=1e-5, atol=1e-6)
    # Matrix input gives the columns' products.
    V = rng.standard_normal((prob.n_params, 3))
    np.testing.assert_allclose(prob.inner_hessp(x, alpha)(V)[:, 1],
                               prob.inner_hessp(x, alpha)(V[:, 1]), rtol=1e-12)
    # Cross term: d/dalpha of (grad_x h . z).
    z = rng.standard_normal(prob.n_params)
    cross = prob.inner_cross(x, alpha, z)
    fd_cross = _fd_grad(lambda a: prob.inner_value_grad(x, a)[1] @ z, alpha)
    np.testing.assert_allclose(cross, fd_cross, rtol=1e-6, atol=1e-8)
    assert cross.shape == (prob.n_hyper,)
    # Outer gradient.
    g, gx, ga = prob.outer_value_grad(x, alpha)
    np.testing.assert_allclose(gx, _fd_grad(lambda v: prob.outer_value_grad(v, alpha)[0], x),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ga, np.zeros(prob.n_hyper))


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_logistic_values_independent_formula(fit_intercept):
    X, y = make_classification_data(40, 4, seed=0, labels=("neg", "pos"))
    prob = LogisticProblem(*split(X, y, 30), fit_intercept=fit_intercept)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(prob.n_params)
    alpha = np.array([0.3])
    b = np.where(y[:30] == "pos", 1.0, -1.0)
    m = X[:30] @ x[:4] + (x[4] if fit_intercept else 0.0)
    expected = np.sum(np.log1p(np.exp(-b * m))) + 0.5 * np.exp(0.3) * x[:4] @ x[:4]
    assert prob.inner_value_grad(x, alpha)[0] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(prob.classes_, ["neg", "pos"])


@pytest.mark.parametrize("cls", PROBLEMS)
def test_sparse_and_dense_agree(cls):
    Xd = _make(cls, "dense", True)
    Xs = cls(sp.csc_matrix(Xd.X_train), Xd.y_train, sp.coo_matrix(Xd.X_val), Xd.y_val,
             fit_intercept=True)
    x = np.linspace(-1, 1, Xd.n_params)
    a = np.array([0.5])
    for m in ("inner_value_grad", "outer_value_grad"):
        for u, v in zip(getattr(Xd, m)(x, a), getattr(Xs, m)(x, a)):
            np.testing.assert_allclose(u, v, rtol=1e-12)


def test_logistic_no_overflow_for_huge_margins():
    X = np.array([[1.0], [-1.0], [2.0]])
    y = np.array([1, 0, 0])
    prob = LogisticProblem(X, y, X, y, fit_intercept=True)
    x = np.array([1e4, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = prob.inner_value_grad(x, np.array([0.0]))
        Hv = prob.inner_hessp(x, np.array([0.0]))(np.ones(2))
        g = prob.outer_value_grad(-x, np.array([0.0]))[0]
    # The third sample has margin 2e4 on the wrong side: its loss is 2e4.
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(Hv))
    assert value == pytest.approx(2e4 + 0.5 * 1e8, rel=1e-12)
    assert g == pytest.approx(1e4 + 1e4, rel=1e-12)


def test_label_errors():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="exactly two classes"):
        LogisticProblem(X, [1, 1, 1, 1], X, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="exactly two classes"):
        LogisticProblem(X, [0, 1, 2, 1], X, [0, 1, 2, 1])
    with pytest.raises(ValueError, match="not among the training classes"):
        LogisticProblem(X, [0, 1, 0, 1], X, [0, 1, 3, 1])


def test_input_errors():
    X = np.ones((4, 2))
    y = [0, 1, 0, 1]
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LogisticProblem(bad, y, X, y)
    with pytest.raises(ValueError, match="features"):
        LogisticProblem(X, y, np.ones((4, 3)), y)
    with pytest.raises(ValueError, match="rows"):
        LogisticProblem(X, [0, 1, 0], X, y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        RidgeProblem(X, [0.0, np.inf, 1.0, 2.0], X, [0.0, 1.0, 1.0, 2.0])
    prob = LogisticProblem(X, y, X, y)
    with pytest.raises(ValueError, match="length 1"):
        prob.inner_value_grad(np.zeros(2), prob.check_alpha([0.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        prob.check_alpha([np.nan])
    with pytest.raises(ValueError, match="every group"):
        LogisticProblem(X, y, X, y, penalty_groups=[0, 2])
    with pytest.raises(ValueError, match="one entry per feature"):
        LogisticProblem(X, y, X, y, penalty_groups=[0, 1, 1])


def test_penalty_weights_shift_is_hessian_change():
    prob = _make(LogisticProblem, "dense", True, groups=[0, 1, 1, 2, 0, 2])
    x = np.linspace(-1, 1, prob.n_params)
    a0, a1 = np.array([0.1, -0.5, 1.0]), np.array([0.4, -1.0, 0.0])
    v = np.arange(prob.n_params, dtype=float)
    diff = prob.inner_hessp(x, a1)(v) - prob.inner_hessp(x, a0)(v)
    np.testing.assert_allclose(diff, (prob.penalty_weights(a1) - prob.penalty_weights(a0)) * v,
                               rtol=1e-12, atol=1e-12)
    assert prob.penalty_weights(a1)[-1] == 0.0  # the intercept is not penalised


@pytest.mark.parametrize("cls", PROBLEMS + ["multinomial"])
@pytest.mark.parametrize("fit_intercept", [False, True])
def test_value_grad_update_equals_a_fresh_evaluation(cls, fit_intercept):
    # A warm-started inner solve at a new alpha starts from the previous
    # evaluation moved by the penalty's change; it must be what a pass over
    # the data gives.
    if cls == "multinomial":
        from hoag_shine import MultinomialLogisticProblem

        X, y = make_classification_data(80, 6, seed=3, density=0.4)
        y = np.digitize(np.asarray(X[:, 0].todense()).ravel(), [-0.1, 0.1])
        prob = MultinomialLogisticProblem(*split(X, y, 50), fit_intercept=fit_intercept)
    else:
        prob = _make(cls, "sparse", fit_intercept, groups=[0, 1, 1, 2, 0, 2])
    rng = np.random.default_rng(2)
    x = rng.standard_normal(prob.n_params)
    a0, a1 = rng.uniform(-2, 1, prob.n_hyper), rng.uniform(-6, 1, prob.n_hyper)
    value, grad = prob.inner_value_grad_update(x, *prob.inner_value_grad(x, a0), a0, a1)
    direct_value, direct_grad = prob.inner_value_grad(x, a1)
    np.testing.assert_allclose(value, direct_value, rtol=1e-13)
    np.testing.assert_allclose(grad, direct_grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dense", [False, True])
def test_a_pickled_problem_leaves_its_transposes_behind_and_computes_the_same(dense):
    """What a worker process or a dask worker receives: the data once, without the
    transposes (made again there, a dense one as a view), and products bit for bit."""
    import copy
    import pickle

    from hoag_shine import MultinomialLogisticProblem

    rng = np.random.default_rng(0)
    X = sp.random(300, 200, density=0.05, format="csr", random_state=0)
    X = X.toarray() if dense else X
    y3 = rng.integers(0, 3, 300)
    y2 = (y3 > 0).astype(int)
    made = [
        (LogisticProblem(X[:200], y2[:200], X[200:], y2[200:], fit_intercept=True),
         np.array([-1.0])),
        (RidgeProblem(X[:200], y3[:200] * 1.0, X[200:], y3[200:] * 1.0), np.array([0.5])),
        (MultinomialLogisticProblem(X[:200], y3[:200], X[200:], y3[200:]),
         np.array([-1.0, 0.0, 1.0])),
    ]
    for prob, alpha in made:
        blob = pickle.dumps(prob)
        back = pickle.loads(blob)
        assert "_XT_train" not in prob.__getstate__()
        if not dense:  # the transpose is a copy of the data's size: left behind
            state = dict(prob.__getstate__(), _XT_train=prob._XT_train)
            assert len(blob) < 0.75 * len(pickle.dumps(state))
        else:  # made again as a view of the data, as at construction
            assert np.shares_memory(back._XT_train, back.X_train)
        x = rng.standard_normal(prob.n_params)
        for a, b in zip(prob.inner_value_grad(x, alpha), back.inner_value_grad(x, alpha)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(prob.outer_value_grad(x, alpha), back.outer_value_grad(x, alpha)):
            np.testing.assert_array_equal(a, b)
        shallow = copy.copy(prob)  # (with_penalty's copy shares the data and transposes)
        assert shallow._XT_train is prob._XT_train and shallow.X_train is prob.X_train


def test_an_unpickled_problem_realigns_arrays_that_arrive_at_any_byte():
    """Buffers received from another machine (dask's raw frames) can start at any
    byte; NumPy's products over misaligned arrays round differently. Unpickled, a
    problem's arrays are aligned again and its gradient is the original's bit for bit."""
    import scipy.sparse as sp

    from conftest import loads_misaligned

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 30)) * 10.0 ** rng.uniform(-3, 3, 30)
    y = (X[:, 0] > 0).astype(int)
    for data in (X, sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))):
        prob = LogisticProblem(data[:150], y[:150], data[150:], y[150:], fit_intercept=True,
                               feature_offset=np.asarray(data[:150].mean(axis=0)).ravel())
        back = loads_misaligned(prob)
        arrays = [back.y_train, back.feature_offset]
        arrays += ([back.X_train.data, back.X_train.indices] if sp.issparse(data)
                   else [back.X_train])
        assert all(a.flags.aligned for a in arrays)
        x = rng.standard_normal(prob.n_params)
        alpha = np.array([-1.0])
        np.testing.assert_array_equal(prob.inner_value_grad(x, alpha)[1],
                                      back.inner_value_grad(x, alpha)[1])


def test_preconditioner_guess_is_the_mean_of_the_coarse_and_jacobi_guesses_on_sparse_data():
    X, y = make_word_counts()
    alpha = np.array([-np.log(10.0)])
    sparse = LogisticProblem(X, y, X[:1], y[:1], fit_intercept=True)
    d = sparse.preconditioner_guess(alpha)
    expected = np.sqrt(sparse.scale_guess(alpha) * sparse.jacobi_guess(alpha))
    np.testing.assert_allclose(d, expected, rtol=1e-14)
    assert np.ptp(d[:-1]) > 0  # one entry per feature, unlike the coarse guess
    assert np.ptp(sparse.inverse_hessian_guess(alpha)[:-1]) == 0
    dense = LogisticProblem(X.toarray(), y, X[:1].toarray(), y[:1], fit_intercept=True)
    np.testing.assert_array_equal(dense.preconditioner_guess(alpha),
                                  dense.inverse_hessian_guess(alpha))


@pytest.mark.parametrize("C", [1.0, 10.0, 100.0])
def test_fit_inner_stops_in_the_metric_it_is_given_near_sklearn(C):
    from sklearn.linear_model import LogisticRegression
    from hoag_shine.outer import fit_inner

    X, y = make_word_counts()
    prob = LogisticProblem(X, y, X[:1], y[:1], fit_intercept=True)
    alpha = np.array([-np.log(C)])
    d = prob.preconditioner_guess(alpha)
    res = fit_inner(prob, alpha, tol=1e-6, solver="numpy", metric=d)
    g0 = prob.inner_value_grad(prob.initial_x(), alpha)[1]
    g = prob.inner_value_grad(res.x, alpha)[1]
    assert res.success
    assert np.sqrt(g @ (d * g)) <= 1e-6 * np.sqrt(g0 @ (d * g0))
    assert np.isclose(prob.gradient_scale(alpha, d), np.sqrt(g0 @ (d * g0)))
    # the same model as scikit-learn's (penalty weight exp(alpha) = 1 / C), solved tightly
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(X, y)
    x_ref = np.r_[ref.coef_.ravel(), ref.intercept_]
    assert np.linalg.norm(res.x - x_ref) <= 1e-4 * np.linalg.norm(x_ref)
