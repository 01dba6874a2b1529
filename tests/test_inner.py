
import numpy as np
import pytest
from scipy.optimize import LbfgsInvHessProduct, minimize
from sklearn.exceptions import ConvergenceWarning

from hoag_shine import LbfgsMemory, LogisticProblem, minimize_lbfgs
from hoag_shine.inner.solvers import _first_step, minimize_lbfgs_numpy
from conftest import make_classification_data, ref_logistic_solution, split


def _random_pairs(n=8, m=5, seed=0):
    """Pairs from a random SPD quadratic, so every curvature is positive."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    H = B @ B.T + n * np.eye(n)
    S = rng.standard_normal((m, n))
    return S, S @ H, H


def _dense_bfgs_inverse(S, Y, h0, D=None):
    """Inverse BFGS matrix by explicit rank-two updates, oldest pair first, from the
    initial matrix ``h0 * I`` (``h0 * diag(D)`` with ``D``)."""
    n = S.shape[1]
    Hinv = h0 * (np.eye(n) if D is None else np.diag(D))
    for s, y in zip(S, Y):
        rho = 1.0 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        Hinv = V.T @ Hinv @ V + rho * np.outer(s, s)
    return Hinv


def test_two_loop_equals_dense_bfgs_updates():
    S, Y, _ = _random_pairs()
    mem = LbfgsMemory(10)
    for s, y in zip(S, Y):
        assert mem.append(s, y)
    v = np.random.default_rng(3).standard_normal(S.shape[1])
    gamma = (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
    for h0, expected_h0 in [(None, gamma), (1.0, 1.0), (0.37, 0.37)]:
        expected = _dense_bfgs_inverse(S, Y, expected_h0) @ v
        np.testing.assert_allclose(mem.inv_hvp(v, h0=h0), expected, rtol=1e-10, atol=1e-12)


def test_two_loop_equals_scipy_operator():
    S, Y, _ = _random_pairs(n=12, m=7, seed=1)
    mem = LbfgsMemory(7)
    for s, y in zip(S, Y):
        mem.append(s, y)
    v = np.random.default_rng(0).standard_normal(12)
    np.testing.assert_allclose(mem.inv_hvp(v, h0=1.0), LbfgsInvHessProduct(S, Y) @ v,
                               rtol=1e-12)
    np.testing.assert_array_equal(mem.s, S)
    np.testing.assert_array_equal(mem.y, Y)


def test_memory_keeps_newest_and_skips_bad_curvature():
    S, Y, _ = _random_pairs(m=6)
    mem = LbfgsMemory(4)
    for s, y in zip(S, Y):
        mem.append(s, y)
    assert len(mem) == 4
    np.testing.assert_array_equal(mem.s, S[2:])
    assert not mem.append(S[0], -Y[0])
    assert not mem.append(S[0], np.zeros_like(S[0]))
    assert mem.n_skipped == 2 and len(mem) == 4
    with pytest.raises(ValueError, match="maxlen"):
        LbfgsMemory(0)


def test_shift_gives_pairs_of_the_shifted_quadratic():
    S, Y, H = _random_pairs(n=6, m=4)
    mem = LbfgsMemory(4)
    for s, y in zip(S, Y):
        mem.append(s, y)
    delta = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.0])
    mem.shift(delta)
    np.testing.assert_allclose(mem.y, S @ (H + np.diag(delta)), rtol=1e-12)


def _logistic(seed=0):
    X, y = make_classification_data(200, 15, seed=seed)
    return LogisticProblem(*split(X, y, 150), fit_intercept=True), X[:150], y[:150]


def test_pairs_are_the_runs_iterates_and_gradients():
    prob, _, _ = _logistic()
    alpha = np.array([-1.0])
    f = lambda x: prob.inner_value_grad(x, alpha)
    res = minimize_lbfgs(f, np.zeros(prob.n_params), tol=1e-8, maxcor=50)
    # An independent SciPy run with the same settings, recording its iterates.
    iterates = [np.zeros(prob.n_params)]

    def record(intermediate_result):
        iterates.append(intermediate_result.x.copy())

    minimize(f, iterates[0], jac=True, method="L-BFGS-B", callback=record,
             options={"maxcor": 50, "maxiter": res.nit, "gtol": 0.0, "ftol": 0.0})
    iterates = np.array(iterates[: res.nit + 1])
    grads = np.array([f(x)[1] for x in iterates])
    assert len(res.memory) == res.nit  # every step kept (memory larger than the run)
    np.testing.assert_allclose(res.memory.s, np.diff(iterates, axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.memory.y, np.diff(grads, axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(res.x, iterates[-1])  # the last accepted step is included


def test_solution_and_stopping_test():
    prob, X, y = _logistic()
    alpha = np.array([0.5])
    res = minimize_lbfgs(lambda x: prob.inner_value_grad(x, alpha), np.zeros(prob.n_params),
                         tol=1e-6, maxcor=30)
    assert res.success and res.grad_norm <= 1e-6
    assert np.linalg.norm(prob.inner_value_grad(res.x, alpha)[1]) <= 1e-6
    np.testing.assert_allclose(res.x, ref_logistic_solution(X, y, 0.5, True), rtol=1e-6, atol=1e-7)
    assert len(res.memory) == min(30, res.nit)
    # Warm start at the solution: nothing to do.
    again = minimize_lbfgs(lambda x: prob.inner_value_grad(x, alpha), res.x, tol=1e-6)
    assert again.nit == 0 and again.nfev == 1 and again.success
    # A loose tolerance stops earlier.
    loose = minimize_lbfgs(lambda x: prob.inner_value_grad(x, alpha), np.zeros(prob.n_params),
                           tol=1.0)
    assert loose.grad_norm <= 1.0 and loose.nit < res.nit


def test_iteration_cap_warns_with_the_knob():
    prob, _, _ = _logistic()
    with pytest.warns(ConvergenceWarning, match="max_inner_iter"):
        res = minimize_lbfgs(lambda x: prob.inner_value_grad(x, np.array([-3.0])),
                             np.zeros(prob.n_params), tol=1e-12, max_iter=3)
    assert res.nit == 3 and not res.success


@pytest.mark.parametrize("kind", ["logistic", "ridge"])
@pytest.mark.parametrize("alpha", [-3.0, 0.0, 2.0])
def test_numpy_lbfgs_reaches_scipys_minimiser(kind, alpha):
    from hoag_shine import RidgeProblem
    from hoag_shine.inner import minimize_lbfgs_numpy

    X, y = make_classification_data(300, 40, seed=1, noise=1.0)
    if kind == "ridge":
        y = (X @ np.random.default_rng(0).standard_normal(40)
             + np.random.default_rng(1).standard_normal(300))
        prob = RidgeProblem(*split(X, y, 200), fit_intercept=True)
    else:
        prob = LogisticProblem(*split(X, y, 200), fit_intercept=True)
    a = np.array([alpha])
    f = lambda x: prob.inner_value_grad(x, a)
    ref = minimize_lbfgs(f, np.zeros(prob.n_params), tol=1e-7)
    res = minimize_lbfgs_numpy(f, np.zeros(prob.n_params), tol=1e-7)
    assert res.success and res.grad_norm <= 1e-7
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-5, atol=1e-6 * np.abs(ref.x).max())
    # Started from its own final memory, the solver finishes at once from there.
    again = minimize_lbfgs_numpy(f, res.x, tol=1e-7, memory=res.memory.copy())
    assert again.nit == 0


def test_numpy_lbfgs_warm_memory_saves_iterations():
    from hoag_shine.inner import minimize_lbfgs_numpy

    prob, _, _ = _logistic()
    a0, a1 = np.array([-2.0]), np.array([-1.5])
    first = minimize_lbfgs_numpy(lambda x: prob.inner_value_grad(x, a0),
                                 np.zeros(prob.n_params), tol=1e-8)
    cold = minimize_lbfgs_numpy(lambda x: prob.inner_value_grad(x, a1), first.x, tol=1e-8)
    mem = first.memory.copy()
    mem.shift(prob.penalty_weights(a1) - prob.penalty_weights(a0))
    warm = minimize_lbfgs_numpy(lambda x: prob.inner_value_grad(x, a1), first.x, tol=1e-8,
                                memory=mem)
    assert warm.success and cold.success
    np.testing.assert_allclose(warm.x, cold.x, rtol=1e-5, atol=1e-7)
    assert warm.nit < cold.nit


@pytest.mark.parametrize("delta", [0.7, -0.3, "array"])
def test_shift_curvatures_and_products_match_a_fresh_memory(delta):
    # shift() updates s.y and y.y from cached scalars when delta is constant;
    # the result must equal a memory built from the shifted pairs directly,
    # and the dense BFGS inverse of those pairs.
    S, Y, H = _random_pairs(n=7, m=5, seed=3)
    d = np.linspace(0.1, 0.9, 7) if delta == "array" else np.full(7, delta)
    mem = LbfgsMemory(5)
    for s, y in zip(S, Y):
        mem.append(s, y)
    kept = mem.copy()
    mem.shift(d)
    mem.shift(d)  # twice: the second shift reuses the cached s.s
    fresh = LbfgsMemory(5)
    for s, y in zip(S, Y + 2 * d * S):
        fresh.append(s, y)
    np.testing.assert_allclose(mem.y, fresh.y, rtol=1e-13)
    np.testing.assert_allclose(mem.s, fresh.s, rtol=1e-13)
    assert mem.gamma() == pytest.approx(fresh.gamma(), rel=1e-12)
    v = np.arange(7.0)
    Hinv = _dense_bfgs_inverse(S, Y + 2 * d * S, fresh.gamma())
    np.testing.assert_allclose(mem.inv_hvp(v), Hinv @ v, rtol=1e-10)
    # The copy taken before is untouched (it has its own storage).
    np.testing.assert_array_equal(kept.y, Y)


def test_known_starting_evaluation_saves_one_and_changes_nothing():
    from hoag_shine.inner import minimize_lbfgs_numpy

    prob, _, _ = _logistic()
    a = np.array([-1.0])
    x0 = np.full(prob.n_params, 0.1)
    calls = []

    def f(x):
        calls.append(1)
        return prob.inner_value_grad(x, a)

    for solve in (minimize_lbfgs, minimize_lbfgs_numpy):
        calls.clear()
        plain = solve(f, x0, tol=1e-6)
        n_plain = len(calls)
        calls.clear()
        known = solve(f, x0, tol=1e-6, fg0=prob.inner_value_grad(x0, a))
        assert len(calls) == n_plain - 1
        np.testing.assert_array_equal(known.x, plain.x)
        assert known.nit == plain.nit


def _dense_bfgs_inverse_metric(S, Y, D):
    """Inverse BFGS matrix with the initial matrix gamma * D (gamma = s.y / y.D.y of
    the newest pair), by explicit rank-two updates."""
    gamma = (S[-1] @ Y[-1]) / (Y[-1] @ (D * Y[-1]))
    return _dense_bfgs_inverse(S, Y, gamma, D)


def _close(actual, desired, rtol):
    """Equal up to ``rtol`` in norm, and in each entry's head (rows kept apart), the
    tail compared in its own scale: single precision is exact to ~1e-7 of a vector's
    norm, not of each of its entries."""
    actual, desired = np.atleast_2d(actual), np.atleast_2d(desired)
    for a, d in zip(actual, desired):
        for part in (slice(None, -2), slice(-2, None)):
            err = np.linalg.norm(a[part] - d[part])
            assert err <= rtol * np.linalg.norm(d[part]), (err, np.linalg.norm(d[part]))


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("scale", [1.0, 1e-100, 1e100])
def test_memory_with_a_diagonal_matches_dense_updates_in_both_precisions(dtype, rtol, scale):
    # Pairs of a quadratic whose coordinates have wildly different scales (a constant
    # head, a short tail, as coefficients and intercepts), a diagonal guess D: the
    # two-loop product must equal the dense BFGS matrix built from gamma * D, before
    # and after an exact shift (delta zero on the tail, as for an unpenalised
    # intercept), in double and in single precision, at any data scale. A shift moves
    # D with the penalty, D <- 1 / (1/D + delta): the shifted memory is the memory the
    # new quadratic would have given, started with the moved guess.
    n, m = 120, 6
    S, Y, H = _random_pairs(n=n, m=m, seed=4)
    scales = np.ones(n)
    scales[-2:] = 1e-3  # the tail
    S, Y = S * scales * scale, Y / (scales * scale)  # a quadratic in rescaled coordinates
    D = np.full(n, 2.0 * scale**2)
    D[-2:] = 5e-6 * scale**2
    mem = LbfgsMemory(m, n, diag=D, dtype=dtype)
    for s, y in zip(S, Y):
        assert mem.append(s, y)
    v = np.random.default_rng(5).standard_normal(n) / (scales * scale)
    _close(mem.inv_hvp(v), _dense_bfgs_inverse_metric(S, Y, D) @ v, rtol)
    # s and y come back in the original coordinates.
    _close(mem.s, S, rtol)
    _close(mem.y, Y, rtol)

    def moved(*deltas):
        return 1.0 / (1.0 / D + sum(deltas))

    delta = np.full(n, 0.3 / scale**2)
    delta[-2:] = 0.0
    mem.shift(delta)
    Ys = Y + delta * S
    _close(mem.y, Ys, rtol)
    np.testing.assert_allclose(mem.diag, moved(delta), rtol=1e-12)
    _close(mem.inv_hvp(v), _dense_bfgs_inverse_metric(S, Ys, moved(delta)) @ v, rtol)
    fresh = LbfgsMemory(m, n, diag=moved(delta), dtype=dtype)
    for s, y in zip(S, Ys):
        fresh.append(s, y)
    _close(mem.inv_hvp(v), fresh.inv_hvp(v), rtol)
    # A per-coordinate delta (no constant head) goes through whole passes; so does a
    # periodic one (one penalty per class: coefficients interleaved by class) whose
    # last head entry equals the first.
    delta2 = np.linspace(0.1, 0.5, n) / scale**2
    mem.shift(delta2)
    _close(mem.inv_hvp(v),
           _dense_bfgs_inverse_metric(S, Ys + delta2 * S, moved(delta, delta2)) @ v, rtol)
    delta3 = np.tile([0.2, 0.05, 0.3], n // 3) / scale**2
    delta3[-2:] = 0.0
    mem.checkpoint()
    mem.shift(delta3)
    _close(mem.inv_hvp(v), _dense_bfgs_inverse_metric(
        S, Ys + (delta2 + delta3) * S, moved(delta, delta2, delta3)) @ v, rtol)
    # A rolled-back trial returns the diagonal too.
    assert mem.rollback()
    np.testing.assert_allclose(mem.diag, moved(delta, delta2), rtol=1e-12)
    _close(mem.inv_hvp(v),
           _dense_bfgs_inverse_metric(S, Ys + delta2 * S, moved(delta, delta2)) @ v, rtol)


def test_truncate_keeps_the_newest_pairs_and_releases_the_rest():
    S, Y, _ = _random_pairs(n=10, m=6, seed=2)
    mem = LbfgsMemory(6, 10, dtype=np.float32)
    for s, y in zip(S, Y):
        mem.append(s, y)
    assert mem.nbytes == 6 * 2 * 10 * 4
    mem.truncate(2)
    assert len(mem) == 2 and mem.nbytes == 2 * 2 * 10 * 4
    np.testing.assert_allclose(mem.s, S[-2:], rtol=1e-6)
    fresh = LbfgsMemory(6, 10)
    for s, y in zip(S[-2:], Y[-2:]):
        fresh.append(s, y)
    v = np.arange(10.0)
    np.testing.assert_allclose(mem.inv_hvp(v), fresh.inv_hvp(v), rtol=1e-5)
    for s, y in zip(S, Y):  # it grows back to maxlen
        mem.append(s, y)
    assert len(mem) == 6
    with pytest.raises(ValueError, match="dtype"):
        LbfgsMemory(3, dtype=np.int64)


def test_plan_pairs_fits_the_budget():
    from hoag_shine.inner import plan_pairs

    n = 2_600_000  # 20 classes x 130,000 features
    # binary 20news, 5 folds: double precision with room for a trial's pairs
    assert tuple(plan_pairs(130_000, 30, 5, 1024)) == (np.float64, 30, True, False)
    # 20 classes, one split: single precision, with or without room for a rollback
    assert tuple(plan_pairs(n, 30, 1, 1024)) == (np.float32, 30, False, False)
    assert tuple(plan_pairs(n, 30, 1, 1800)) == (np.float32, 30, True, False)
    # 20 classes, 5 folds: the folds at rest spill to disk
    assert tuple(plan_pairs(n, 30, 5, 1024)) == (np.float32, 30, False, True)
    plan = plan_pairs(n, 30, 5, 100)
    assert plan.maxcor * 8 * n <= 100 * 2**20 < (plan.maxcor + 1) * 8 * n and plan.spill
    assert plan_pairs(n, 30, 5, 1).maxcor == 1
    assert not plan_pairs(n, 30, 1, 100).spill  # one memory is always in use


def test_spill_and_read_back_are_exact():
    S, Y, _ = _random_pairs(n=11, m=5, seed=8)
    for dtype in (np.float64, np.float32):
        mem = LbfgsMemory(4, 11, diag=np.linspace(1.0, 3.0, 11), dtype=dtype)
        for s, y in zip(S[:4], Y[:4]):
            mem.append(s, y)
        v = np.arange(11.0)
        ref, ref_y = mem.inv_hvp(v), mem.y
        mem.spill()
        assert mem.nbytes == 0 and len(mem) == 4
        np.testing.assert_array_equal(mem.inv_hvp(v), ref)  # read back on use
        assert mem.nbytes > 0
        mem.spill()
        mem.shift(np.full(11, 0.25))
        np.testing.assert_allclose(mem.y, ref_y + 0.25 * S[:4], rtol=1e-6)
        mem.spill()
        assert mem.append(S[4], Y[4])  # appends read back first too
        np.testing.assert_allclose(mem.s, S[1:], rtol=1e-6)


def test_rollback_returns_to_the_checkpoint():
    # A trial run (shift, then new pairs beyond maxlen) rolled back gives the memory
    # of before, exactly; committed, the newest maxlen pairs.
    S, Y, _ = _random_pairs(n=9, m=8, seed=6)
    for dtype in (np.float64, np.float32):
        mem = LbfgsMemory(4, 9, diag=np.linspace(1.0, 2.0, 9), dtype=dtype)
        for s, y in zip(S[:4], Y[:4]):
            mem.append(s, y)
        before_s, before_y = mem.s, mem.y
        v = np.arange(9.0)
        before = mem.inv_hvp(v)
        mem.checkpoint()
        mem.shift(np.full(9, 0.4))
        for s, y in zip(S[4:], Y[4:] + 0.4 * S[4:]):
            mem.append(s, y)
        assert len(mem) == 4
        np.testing.assert_allclose(mem.s, S[4:], rtol=1e-6)
        assert mem.rollback() and not mem.rollback()
        np.testing.assert_allclose(mem.s, before_s, rtol=1e-12)
        np.testing.assert_allclose(mem.y, before_y, rtol=1e-6 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(mem.inv_hvp(v), before, rtol=1e-5)
        assert mem.nbytes == 4 * 2 * 9 * np.dtype(dtype).itemsize  # the trial's freed
        mem.checkpoint()
        for s, y in zip(S[4:6], Y[4:6]):
            mem.append(s, y)
        mem.commit()
        np.testing.assert_allclose(mem.s, np.vstack([S[2:4], S[4:6]]), rtol=1e-6)
        assert mem.nbytes == 4 * 2 * 9 * np.dtype(dtype).itemsize


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_shift_without_a_diagonal_at_extreme_scales_keeps_every_pair(scale):
    # Steps of 1e100, curvatures of 1e-200 and a penalty change of 1e-200 (or the
    # reverse): the cached curvatures must not overflow (delta**2 s.s would) and
    # drop pairs.
    S, Y, _ = _random_pairs(n=10, m=5, seed=7)
    S, Y = S * scale, Y / scale
    delta = np.full(10, 0.5 / scale**2)
    mem = LbfgsMemory(5)
    for s, y in zip(S, Y):
        mem.append(s, y)
    mem.shift(delta)
    assert len(mem) == 5 and mem.n_skipped == 0
    fresh = LbfgsMemory(5)
    for s, y in zip(S, Y + delta * S):
        fresh.append(s, y)
    v = np.arange(10.0) / scale
    np.testing.assert_allclose(mem.inv_hvp(v), fresh.inv_hvp(v), rtol=1e-10)


def test_diagonal_metric_with_a_periodic_head_is_not_taken_for_constant():
    # One penalty per class makes the diagonal guess periodic over the coefficients
    # (interleaved by class) with a short tail of intercepts: v.Dv and the scaling
    # must use every entry, not the first entry as a constant head.
    from hoag_shine.inner import DiagonalMetric as _Diag

    diag = np.tile([1.0, 3.0, 7.0], 40)
    diag[-2:] = 0.5
    v = np.random.default_rng(0).standard_normal(diag.size)
    d = _Diag(diag)
    assert d.quad(v, v @ v) == pytest.approx(v @ (diag * v), rel=1e-12)
    assert d.quad_inv(v, v @ v) == pytest.approx(v @ (v / diag), rel=1e-12)
    q = v.copy()
    d.scale(q, 2.0)
    np.testing.assert_allclose(q, 2.0 * diag * v, rtol=1e-14)


def test_memory_dots_use_one_blas_and_match_numpys_to_the_last_bit():
    """The two-loop recursion's dots go to the BLAS its axpys use (SciPy's): with one
    thread they give NumPy's dot bit for bit (so no solver path changed), in both
    precisions, and an empty tail is 0."""
    from threadpoolctl import threadpool_limits

    from hoag_shine.inner.memory import _dot

    rng = np.random.default_rng(3)
    with threadpool_limits(limits=1, user_api="blas"):
        for n in (1, 17, 1000, 40_001):
            a = rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
            b = rng.standard_normal(n)
            assert _dot(a, b) == float(a @ b)
            a32, b32 = a.astype(np.float32), b.astype(np.float32)
            assert _dot(a32, b32) == float(a32 @ b32)
    assert _dot(np.zeros(0), np.zeros(0)) == 0.0
    # without a thread limit the product is the same (to rounding)
    n = 3000
    mem = LbfgsMemory(5, n)
    S = rng.standard_normal((5, n))
    A = np.diag(rng.uniform(1.0, 3.0, n))
    for s in S:
        mem.append(s, A @ s)
    v = rng.standard_normal(n)
    with threadpool_limits(limits=1, user_api="blas"):
        one = mem.inv_hvp(v)
    np.testing.assert_allclose(mem.inv_hvp(v), one, rtol=1e-12)


def test_unpickled_pairs_are_aligned_and_give_the_same_product():
    """Pairs sent to a dask worker arrive as raw buffers at any byte: unpickled, the
    rows are aligned again and the product is the original's bit for bit."""
    from conftest import loads_misaligned

    rng = np.random.default_rng(5)
    n = 1001
    mem = LbfgsMemory(4, n)
    for _ in range(4):
        s = rng.standard_normal(n)
        mem.append(s, 2.0 * s + 0.1 * rng.standard_normal(n))
    back = loads_misaligned(mem)
    assert all(back.store.S[i].flags.aligned and back.store.Y[i].flags.aligned
               for i in back.store.slots)
    v = rng.standard_normal(n)
    np.testing.assert_array_equal(mem.inv_hvp(v), back.inv_hvp(v))


def _quadratic(n=30, seed=0):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    A = B @ B.T / n + np.diag(np.logspace(0, 3, n))
    b = rng.standard_normal(n)
    return A, b, lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b)


@pytest.mark.parametrize("scale, newton", [(1e3, True), (1e-3, False)])
def test_first_step_of_an_empty_memory_is_the_newton_step_along_the_guess(scale, newton):
    """A diagonal guess ``scale`` times the inverse Hessian's diagonal: too long, the
    first trial is shortened to the exact minimum along ``d = -h0 g`` (closed form on
    a quadratic) and accepted at once; too short, the guessed step is tried first."""
    A, b, f = _quadratic()
    h0 = scale / np.diag(A)
    x0 = np.ones(len(b))
    g0 = A @ x0 - b
    d = -h0 * g0
    t_exact = -(g0 @ d) / (d @ A @ d)
    points, first = [], []

    def recorded(x):
        points.append(x.copy())
        return f(x)

    def stop_after_one(x):
        first.append((x.copy(), len(points)))
        raise StopIteration

    minimize_lbfgs_numpy(recorded, x0, tol=1e-12, h0=h0, callback=stop_after_one)
    # the start, the probe (a small fraction of the guessed step), the first trial
    np.testing.assert_array_equal(points[0], x0)
    np.testing.assert_allclose(points[1], x0 + 1e-3 * d, rtol=1e-12)
    trial = x0 + (t_exact if newton else 1.0) * d
    np.testing.assert_allclose(points[2], trial, rtol=1e-7, atol=1e-10)
    if newton:  # accepted at once, far below where halving the guess would stop
        x1, n_calls = first[0]
        assert n_calls == 3
        np.testing.assert_allclose(x1, trial, rtol=1e-7, atol=1e-10)
        assert f(x1)[0] < min(f(x0 + 0.5 ** k * d)[0] for k in range(1, 8))


def test_first_step_keeps_the_guess_without_positive_curvature():
    f = lambda x: (-0.5 * x @ x, -x)  # noqa: E731  (concave: no Newton step)
    x = np.ones(3)
    g = f(x)[1]
    assert _first_step(f, x, -g, g, 0.7) == 0.7
    flat = lambda v: (0.0, np.zeros_like(v))  # noqa: E731  (no curvature at all)
    assert _first_step(flat, x, np.ones(3), np.zeros(3), 0.5) == 0.5
