"""The pairs' memory budget (``pairs_memory_mb``): single precision and spilling
change how the pairs are stored, not what the outer loop finds."""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from hoag_shine import LogisticProblem, ShineLogisticRegressionCV, hoag
from hoag_shine.inner import PairPlan, default_maxcor, plan_pairs
from hoag_shine.outer import HoagOptions
from hoag_shine.outer.folds import Fold
from conftest import make_classification_data


def _folds(n_folds=3):
    X, y = make_classification_data(300, 40, seed=3)
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=0)
    return [LogisticProblem(X[tr], y[tr], X[va], y[va], fit_intercept=True)
            for tr, va in cv.split(X, y)]


def _budgets(problems, maxcor=30):
    """Budgets (MB) that give each storage plan."""
    F, n = len(problems), problems[0].n_params
    mb = lambda b: b / 2**20  # noqa: E731
    return {"float64": 1024.0,
            "float32": mb(F * maxcor * 8 * n) * 1.01,  # single, no room for rollback
            "spill": mb(F * maxcor * 8 * n) * 0.99}


def test_budgets_pick_the_plans():
    problems = _folds()
    n = problems[0].n_params
    plans = {k: plan_pairs(n, 30, 3, b) for k, b in _budgets(problems).items()}
    assert plans["float64"] == (np.float64, 30, True, False)
    assert plans["float32"] == (np.float32, 30, False, False)
    assert plans["spill"] == (np.float32, 30, False, True)


def test_default_memory_is_30_pairs_where_double_precision_fits_and_15_beyond():
    problems = _folds()
    F, n = len(problems), problems[0].n_params
    fits = 2.5 * F * 30 * 16 * n / 2**20  # 30 pairs per fold, a trial's room, double
    assert default_maxcor(n, F, fits) == 30 and default_maxcor(n, F, 0.99 * fits) == 15
    assert plan_pairs(n, None, F, 0.99 * fits).maxcor == 15
    assert HoagOptions().maxcor is None and ShineLogisticRegressionCV().maxcor is None
    for budget, m in ((fits, 30), (0.99 * fits, 15)):
        auto = hoag(problems, pairs_memory_mb=budget, max_iter=4)
        asked = hoag(problems, pairs_memory_mb=budget, max_iter=4, maxcor=m)
        assert all(mem.maxlen == m for mem, _ in auto.memory)
        np.testing.assert_array_equal([r["alpha"] for r in auto.trace],
                                      [r["alpha"] for r in asked.trace])


def test_spilling_changes_nothing_and_single_precision_little():
    problems = _folds()
    budgets = _budgets(problems)
    runs = {k: hoag(problems, pairs_memory_mb=b, max_iter=30, tol=1e-3, maxcor=30)
            for k, b in budgets.items()}
    assert all(r.success for r in runs.values())  # (answers compared where they converged)
    # Spilled pairs are read back exactly: the very same path as in memory.
    a32 = [r["alpha"] for r in runs["float32"].trace]
    a_spill = [r["alpha"] for r in runs["spill"].trace]
    np.testing.assert_array_equal(np.array(a_spill), np.array(a32))
    # Single precision moves the hypergradients by rounding only: the same answer.
    assert runs["float32"].alpha[0] == pytest.approx(runs["float64"].alpha[0], abs=2e-2)
    assert runs["float32"].fun == pytest.approx(runs["float64"].fun, rel=1e-4)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("alpha0", [3.0, 9.0])
def test_parked_folds_follow_the_same_path(alpha0):
    # With value_tol=0 the loop stops on the step: from 3 after a rejected step, from 9
    # after the stop check's probe and conjugate-gradient refinements (end game). The
    # spilling plan parks every fold's vectors on disk between its uses: the path,
    # values, hypergradients and solutions are those of the in-memory plan, bit for bit.
    problems = _folds()
    budgets = _budgets(problems)
    runs = {k: hoag(problems, np.array([alpha0]), pairs_memory_mb=budgets[k], max_iter=30,
                    tol=1e-4, value_tol=0.0, maxcor=30) for k in ("float32", "spill")}
    trace = {k: r.trace for k, r in runs.items()}
    assert not all(r["accepted"] for r in trace["spill"]) or sum(
        r["n_hvp"] for r in trace["spill"]) > 0  # the paths this test is about
    for key in ("alpha", "outer_value", "hypergradient", "accepted", "inner_iter", "n_hvp"):
        np.testing.assert_array_equal([r[key] for r in trace["spill"]],
                                      [r[key] for r in trace["float32"]])
    for a, b in zip(runs["spill"].x, runs["float32"].x):
        np.testing.assert_array_equal(a, b)


def test_park_writes_the_vectors_once_and_reads_them_back_shared():
    problem = _folds(2)[0]
    plan = PairPlan(np.dtype(np.float32), 5, False, True)
    fold = Fold(problem, np.array([0.0]), None, HoagOptions(), plan)
    fold.forward(np.array([0.0]), 1e-3)
    fold.accept(np.array([0.0]), 1e-3)  # parks: accepted x is the trial's own x
    st = fold.state
    assert st.x is None and st.jac is None and st.z is None
    assert fold.trial.x is None and fold.memory.nbytes == 0
    fold.unpark()
    assert st.x is fold.trial.x and st.jac is fold.trial.jac  # shared as they were
    x = st.x.copy()
    fold.park()
    fold.unpark()
    np.testing.assert_array_equal(st.x, x)
    no_spill = Fold(problem, np.array([0.0]), None, HoagOptions(), plan._replace(spill=False))
    no_spill.park()  # nothing to do unless the plan spills
    assert no_spill.state.x is not None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_single_precision_hypergradient_matches_double():
    # At the same point, with the same inner solve, SHINE from single-precision pairs
    # equals SHINE from double-precision pairs to single precision.
    problems = _folds(2)
    big, small = 1024.0, _budgets(problems)["spill"]
    g = {}
    for key, b in (("f64", big), ("f32", small)):
        res = hoag(problems, np.array([0.5]), pairs_memory_mb=b, max_iter=1, maxcor=30)
        g[key] = res.trace[0]["hypergradient"]
    np.testing.assert_allclose(g["f32"], g["f64"], rtol=1e-4)


def test_estimator_takes_the_budget():
    X, y = make_classification_data(200, 20, seed=1)
    n = 21
    tiny = 5 * 30 * 8 * n / 2**20 * 0.5  # spills, with fewer pairs in use
    ref = ShineLogisticRegressionCV(cv=5, maxcor=30).fit(X, y)
    est = ShineLogisticRegressionCV(cv=5, maxcor=30, pairs_memory_mb=tiny).fit(X, y)
    assert np.log(est.C_) == pytest.approx(np.log(ref.C_), abs=0.1)
    with pytest.raises(ValueError, match="pairs_memory_mb"):
        ShineLogisticRegressionCV(pairs_memory_mb=0).fit(X, y)
    assert HoagOptions().pairs_memory_mb == 1024


def test_spill_files_are_closed_without_resource_warnings():
    import gc
    import warnings

    from hoag_shine._utils import SpillFile

    problems = _folds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hoag(problems, pairs_memory_mb=_budgets(problems)["spill"], max_iter=4, maxcor=30)
        del res
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    spill = SpillFile()
    with pytest.raises(RuntimeError, match="nothing was written"):
        spill.read()
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    spill.write([a, np.array([1, 2])])
    back = spill.read()
    np.testing.assert_array_equal(back[0], a)
    assert back[0].dtype == np.float32 and back[1].tolist() == [1, 2]
    spill.close()
    assert not spill.holds


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_result_with_spilled_pairs_pickles_with_them():
    import pickle

    problems = _folds()
    res = hoag(problems, pairs_memory_mb=_budgets(problems)["spill"], max_iter=3, maxcor=30)
    mem, _ = res.memory[1]
    assert mem.nbytes == 0  # spilled: on disk
    v = np.random.default_rng(0).standard_normal(problems[1].n_params)
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.memory[1][0].inv_hvp(v), mem.inv_hvp(v))
    np.testing.assert_array_equal(back.alpha, res.alpha)


def test_a_large_final_fit_keeps_its_pairs_in_single_precision(monkeypatch):
    """The final fit of a problem of SINGLE_PAIRS_MIN_PARAMS parameters or more stores
    its pairs in single precision (within a budget double precision fits): it meets
    the same tolerance, at the solution a tight solve finds."""
    import warnings

    import hoag_shine.outer.loop as loop
    from hoag_shine.datasets import make_sparse_classification
    from hoag_shine.inner import SINGLE_PAIRS_MIN_PARAMS
    from hoag_shine.outer.tune import final_fit

    X, y = make_sparse_classification(400, SINGLE_PAIRS_MIN_PARAMS, density=0.01,
                                      random_state=0)
    problem = LogisticProblem(X, y, X[:1], y[:1], fit_intercept=True)
    alpha = np.array([-2.0])
    dtypes = []
    memory_class = loop.LbfgsMemory

    def record(*args, **kwargs):
        dtypes.append(np.dtype(kwargs.get("dtype", np.float64)))
        return memory_class(*args, **kwargs)

    monkeypatch.setattr(loop, "LbfgsMemory", record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no warning that it stopped above the tolerance)
        x32 = final_fit(problem, None, alpha, HoagOptions(), 1e-6)
    assert dtypes == [np.dtype(np.float32)]
    exact = loop.fit_inner(problem, alpha, tol=1e-11, solver="scipy", max_iter=20_000).x
    assert np.linalg.norm(x32 - exact) <= 1e-3 * np.linalg.norm(exact)
    # (a smaller problem keeps double precision)
    small = LogisticProblem(X[:, :500], y, X[:1, :500], y[:1], fit_intercept=True)
    final_fit(small, None, alpha, HoagOptions(), 1e-6)
    assert dtypes[-1] == np.dtype(np.float64)
    # (and pairs_precision="double" keeps double precision for the large one)
    final_fit(problem, None, alpha, HoagOptions(pairs_precision="double"), 1e-6)
    assert dtypes[-1] == np.dtype(np.float64)


def test_pairs_precision_auto_is_single_from_ten_thousand_parameters():
    from hoag_shine.datasets import make_sparse_classification
    from hoag_shine.inner import SINGLE_PAIRS_MIN_PARAMS, single_precision

    n = SINGLE_PAIRS_MIN_PARAMS
    assert single_precision("auto", n) and not single_precision("auto", n - 1)
    assert single_precision("single", 10) and not single_precision("double", 10**7)
    # single=True skips double precision where it would fit, keeping the rollback.
    assert plan_pairs(n, 30, 5, 1024.0) == (np.float64, 30, True, False)
    assert plan_pairs(n, 30, 5, 1024.0, single=True) == (np.float32, 30, True, False)
    # The folds' memories follow it: a problem of n parameters (n - 1 features and
    # the intercept) and one of fewer.
    X, y = make_sparse_classification(300, n - 1, density=0.02, random_state=0)
    for n_features, precision, dtype in ((n - 1, "auto", np.float32),
                                         (n - 1, "double", np.float64),
                                         (500, "auto", np.float64),
                                         (500, "single", np.float32)):
        folds = [LogisticProblem(X[:200, :n_features], y[:200], X[200:, :n_features], y[200:],
                                 fit_intercept=True),
                 LogisticProblem(X[100:, :n_features], y[100:], X[:100, :n_features], y[:100],
                                 fit_intercept=True)]
        res = hoag(folds, [-1.0], max_iter=2, pairs_precision=precision)
        assert all(mem.dtype == dtype for mem, _ in res.memory), (n_features, precision)
    with pytest.raises(ValueError, match="pairs_precision"):
        ShineLogisticRegressionCV(pairs_precision="half").fit(X[:, :5].toarray(), y)
