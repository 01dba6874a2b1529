import warnings

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.exceptions import ConvergenceWarning

from hoag_shine import LogisticProblem, RidgeProblem, hoag, tolerance_schedule
from hoag_shine.outer import TRACE_FIELDS
from conftest import make_classification_data, ref_logistic_outer, ref_ridge, split


def _ridge_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 30))
    w = rng.standard_normal(30) * (rng.random(30) < 0.3)
    y = X @ w + 2.0 * rng.standard_normal(120)
    return split(X, y, 70)


@pytest.mark.parametrize("step_rule,inner_solver",
                         [("secant", "numpy"), ("secant", "scipy"), ("hoag", "scipy")])
def test_hoag_cg_finds_closed_form_ridge_optimum(step_rule, inner_solver):
    # (HOAG's own rule grows its step by 5% per success until it oscillates
    # around the optimum: it meets tol=1e-6 only by luck of the inner noise.)
    data = _ridge_data()
    grad = lambda a: ref_ridge(*data, a, False)[1]
    alpha_star = brentq(grad, -5, 8, xtol=1e-12)  # interior root of the closed form
    assert -4 < alpha_star < 7
    prob = RidgeProblem(*data)
    # HOAG's own schedule (tight from the start, slowly tightening) to converge
    # to 1e-6; the default schedule is checked below at its usual tolerance.
    res = hoag(prob, [0.0], hypergradient="cg", max_iter=100, tol=1e-6, value_tol=0,
               step_rule=step_rule, inner_solver=inner_solver, eps0=1e-3, decay=0.9,
               first_step=1.0)
    assert res.success, res.message
    # (HOAG's rule ends where its halved steps stall in the flat bottom: 1e-3 from the
    # root either side, as the inner noise goes; 2.2017 -> 2.2027 or 2.2007)
    assert res.alpha[0] == pytest.approx(alpha_star, abs=2e-3 if step_rule == "hoag" else 1e-3)
    assert res.fun == pytest.approx(ref_ridge(*data, alpha_star, False)[0], rel=1e-5)


@pytest.mark.parametrize("method", ["cg", "shine", "shine-refine"])
def test_hoag_default_schedule_finds_closed_form_ridge_optimum(method):
    # Default schedule (loose first solves, decay 0.6), secant step, and the
    # stopping tests gated on inner tolerance <= stop_eps=1e-6.
    data = _ridge_data()
    alpha_star = brentq(lambda a: ref_ridge(*data, a, False)[1], -5, 8, xtol=1e-12)
    res = hoag(RidgeProblem(*data), [0.0], hypergradient=method, max_iter=60, tol=1e-3,
               value_tol=0, stop_eps=1e-6)
    assert res.success, res.message
    assert res.alpha[0] == pytest.approx(alpha_star, abs=1e-3)
    assert res.fun == pytest.approx(ref_ridge(*data, alpha_star, False)[0], rel=1e-6)
    accepted = [r for r in res.trace if r["accepted"]]
    assert accepted[-1]["eps"] <= 1e-6


def test_stop_eps_defers_an_early_stop_to_tight_solves():
    # stop_eps=1 never defers (every tolerance is <= 1): the stop on tol comes while
    # the inner tolerance is loose. With stop_eps=1e-6 the schedule jumps to 1e-6 at
    # that point, the accepted point is solved again there and the search goes on.
    data = _ridge_data()
    alpha_star = brentq(lambda a: ref_ridge(*data, a, False)[1], -5, 8, xtol=1e-12)
    kw = dict(hypergradient="cg", max_iter=60, tol=1e-3, value_tol=0, polish_tol=0)
    early = hoag(RidgeProblem(*data), [0.0], stop_eps=1.0, **kw)
    gated = hoag(RidgeProblem(*data), [0.0], stop_eps=1e-6, **kw)
    assert early.success and gated.success
    assert early.trace[-1]["eps"] > 1e-5
    assert abs(gated.alpha[0] - alpha_star) < 1e-4
    eps = np.array([r["eps"] for r in gated.trace])
    n = len(early.trace)
    # Same path until the early stop; then one jump of the schedule, at which
    # the last accepted point is solved again (same alpha, tighter solve).
    np.testing.assert_array_equal(eps[:n], [r["eps"] for r in early.trace])
    assert eps[n] <= 1e-6 < eps[n - 1]
    np.testing.assert_array_equal(gated.trace[n]["alpha"], early.alpha)
    assert np.all(np.diff(eps) <= 0)
    # The default does not gate: the same as stop_eps=1.
    default = hoag(RidgeProblem(*data), [0.0], **kw)
    np.testing.assert_array_equal(default.alpha, early.alpha)


def test_a_stop_is_polished_by_refined_hypergradients():
    # SHINE's noisy hypergradients inflate the secant curvature near the optimum: its
    # steps shrink below tol far from it. After the stop, the answer is polished
    # (refined hypergradients, tight solves, their own curvature) to the closed-form
    # optimum; without polishing it stays where the noise stopped it.
    data = _ridge_data()
    alpha_star = brentq(lambda a: ref_ridge(*data, a, False)[1], -5, 8, xtol=1e-12)
    kw = dict(hypergradient="shine", max_iter=60, tol=1e-2, value_tol=1e-4)
    res = hoag(RidgeProblem(*data), [0.0], **kw)
    assert res.success and res.stop.reason.converged
    assert abs(res.alpha[0] - alpha_star) < 1e-4
    assert res.trace[-1]["n_hvp"] > 0 and res.trace[-1]["eps"] <= 1e-6  # refined, tight
    rough = hoag(RidgeProblem(*data), [0.0], polish_tol=0, **kw)
    assert rough.nit < res.nit and abs(rough.alpha[0] - alpha_star) > 1e-4
    assert all(r["n_hvp"] == 0 for r in rough.trace)
    plain = hoag(RidgeProblem(*data), [0.0], hypergradient="cg", max_iter=3)
    assert plain.time == plain.trace[-1]["time"]
    with pytest.raises(ValueError, match="stop_eps"):
        hoag(RidgeProblem(*data), [0.0], stop_eps=0.0)


@pytest.mark.parametrize("method", ["shine", "cg", "shine-refine"])
@pytest.mark.parametrize("step_rule", ["secant", "hoag"])
def test_hoag_logistic_reaches_grid_best(method, step_rule):
    X, y = make_classification_data(300, 40, seed=2, noise=2.0)
    data = split(X, y, 200)
    grid = np.arange(-6, 6.001, 0.02)
    values = [ref_logistic_outer(*data, a, False) for a in grid]
    best = min(values)
    assert grid[0] < grid[np.argmin(values)] < grid[-1]  # interior optimum
    prob = LogisticProblem(*data)
    res = hoag(prob, [0.0], hypergradient=method, max_iter=40, step_rule=step_rule)
    assert res.fun <= 1.01 * best
    # The returned value is the outer loss of the returned x.
    assert res.fun == pytest.approx(prob.outer_value_grad(res.x, res.alpha)[0], rel=1e-12)


@pytest.mark.parametrize("method", ["jacobian-free", "shine", "truncated-cg"])
def test_hoag_runs_on_sparse_data_and_records_trace(method):
    X, y = make_classification_data(400, 200, seed=5, density=0.05)
    X_tr, y_tr, X_val, y_val = split(X, y, 300)
    prob = LogisticProblem(X_tr, y_tr, X_val[:50], y_val[:50], fit_intercept=True)
    res = hoag(prob, [1.0], hypergradient=method, max_iter=8, tol=0, value_tol=0,
               heldout=(X_val[50:], y_val[50:]))
    assert res.nit == len(res.trace) == 8
    cols = res.trace_columns()
    assert set(cols) == set(TRACE_FIELDS)
    assert np.all(np.diff(cols["time"]) > 0)
    assert np.all(np.isfinite(cols["heldout_value"]))
    for r in res.trace:
        assert r["time"] >= r["forward_time"] + r["backward_time"] - 1e-12 or r["iteration"] == 0
        assert r["alpha"].shape == (1,)
    # The held-out value is the loss on the held-out rows of the iterate's x.
    last = res.trace[-1]
    if last["accepted"]:
        assert last["heldout_value"] == pytest.approx(
            prob.data_loss(res.x, X_val[50:], y_val[50:]), rel=1e-12)
    if method in ("shine", "jacobian-free"):
        assert cols["n_hvp"].sum() == 0


def test_heldout_is_never_used():
    X, y = make_classification_data(200, 20, seed=3)
    X_tr, y_tr, X_val, y_val = split(X, y, 150)
    prob = LogisticProblem(X_tr, y_tr, X_val[:25], y_val[:25])
    a = hoag(prob, [0.0], max_iter=6, tol=0)
    b = hoag(prob, [0.0], max_iter=6, tol=0, heldout=(X_val[25:], y_val[25:]))
    np.testing.assert_array_equal(a.trace_columns()["alpha"], b.trace_columns()["alpha"])
    assert np.isnan(a.trace_columns()["heldout_value"]).all()


def test_rejected_step_is_undone():
    X, y = make_classification_data(300, 40, seed=2, noise=2.0)
    prob = LogisticProblem(*split(X, y, 200))
    res = hoag(prob, [4.0], hypergradient="cg", max_iter=30, tol=0, step_growth=0.6,
               step_rule="hoag", polish_tol=0)
    tr = res.trace
    rejected = [i for i, r in enumerate(tr) if not r["accepted"]]
    assert rejected, "this setting (fast step growth) must provoke a rejection"
    for i in rejected:
        if i + 2 >= len(tr):
            continue
        base = next(tr[j] for j in range(i - 1, -1, -1) if tr[j]["accepted"])
        assert tr[i]["step_size"] == pytest.approx(0.5 * tr[i - 1]["step_size"], rel=1e-12)
        # The last accepted point is solved again, at a tighter tolerance ...
        np.testing.assert_array_equal(tr[i + 1]["alpha"], base["alpha"])
        assert tr[i + 1]["accepted"] and tr[i + 1]["eps"] < tr[i]["eps"] < base["eps"]
        # ... and the retry steps from it along its new hypergradient, with the halved
        # step size, or shorter: within half the rejected move.
        move = tr[i + 2]["alpha"] - base["alpha"]
        halved = -tr[i + 1]["step_size"] * tr[i + 1]["hypergradient"]
        trust = 0.5 * np.max(np.abs(tr[i]["alpha"] - base["alpha"]))
        expected = halved * min(1.0, trust / np.max(np.abs(halved)))
        np.testing.assert_allclose(move, expected, rtol=1e-10)
    # The result is the last accepted point.
    last_accepted = [r for r in tr if r["accepted"]][-1]
    np.testing.assert_array_equal(res.alpha, last_accepted["alpha"])


def test_bounds_callback_and_budget():
    X, y = make_classification_data(200, 20, seed=3)
    prob = LogisticProblem(*split(X, y, 150))
    res = hoag(prob, [0.0], bounds=(-0.5, 0.5), max_iter=30)
    assert np.all(np.abs(res.trace_columns()["alpha"]) <= 0.5)

    seen = []

    def cb(r):
        seen.append(r.iteration)
        if r.iteration == 2:
            raise StopIteration

    res = hoag(prob, [0.0], callback=cb, max_iter=30)
    assert seen == [0, 1, 2] and res.nit == 3 and "callback" in res.message
    res = hoag(prob, [0.0], max_time=0.0, max_iter=30)
    assert res.nit == 1 and "max_time" in res.message


def test_hoag_input_errors():
    X, y = make_classification_data(60, 5, seed=0)
    prob = LogisticProblem(*split(X, y, 40))
    with pytest.raises(ValueError, match="outside the bounds"):
        hoag(prob, [20.0])
    with pytest.raises(ValueError, match="length 1"):
        hoag(prob, [0.0, 1.0])
    with pytest.raises(ValueError, match="Unknown hypergradient"):
        hoag(prob, [0.0], hypergradient="newton")
    with pytest.raises(ValueError, match="tol_schedule"):
        hoag(prob, [0.0], tol_schedule="linear")
    with pytest.raises(ValueError, match="lower < upper"):
        hoag(prob, [0.0], bounds=(1.0, -1.0))


def test_max_iter_without_convergence_warns():
    X, y = make_classification_data(200, 20, seed=3)
    prob = LogisticProblem(*split(X, y, 150))
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        hoag(prob, [6.0], max_iter=2, tol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        hoag(prob, [6.0], max_iter=2, tol=0, value_tol=0)  # a fixed budget: no warning


def test_tolerance_schedules():
    assert tolerance_schedule("exponential", eps0=1e-2, decay=0.5)(3) == pytest.approx(1.25e-3)
    assert tolerance_schedule("quadratic", eps0=1e-2)(1) == pytest.approx(2.5e-3)
    assert tolerance_schedule("cubic", eps0=1e-2)(1) == pytest.approx(1.25e-3)
    assert tolerance_schedule("exact")(0) == 1e-12
    assert tolerance_schedule("exponential")(10_000) == 1e-12
    with pytest.raises(ValueError, match="decay"):
        tolerance_schedule("exponential", decay=1.5)


def test_folds_minimise_the_sum_of_validation_losses():
    folds = [_ridge_data(seed) for seed in (1, 2, 3)]
    total_grad = lambda a: sum(ref_ridge(*d, a, False)[1] for d in folds)
    alpha_star = brentq(total_grad, -5, 8, xtol=1e-12)
    problems = [RidgeProblem(*d) for d in folds]
    res = hoag(problems, [0.0], hypergradient="cg", max_iter=100, tol=1e-6, value_tol=0,
               n_jobs=2)
    assert res.alpha[0] == pytest.approx(alpha_star, abs=1e-3)
    assert isinstance(res.x, list) and len(res.x) == 3
    # With exact inner solves, value and hypergradient are the sums over the folds.
    first = hoag(problems, [0.0], hypergradient="exact", tol_schedule="exact",
                 max_iter=1, tol=0).trace[0]
    assert first["outer_value"] == pytest.approx(sum(ref_ridge(*d, 0.0, False)[0] for d in folds),
                                                 rel=1e-9)
    assert first["hypergradient"][0] == pytest.approx(total_grad(0.0), rel=1e-7)
    with pytest.raises(ValueError, match="heldout"):
        hoag(problems, [0.0], heldout=lambda x: 0.0)


@pytest.mark.parametrize("first_step", [0.5, 1.0, 3.0])
def test_first_step_length(first_step):
    X, y = make_classification_data(200, 20, seed=3)
    prob = LogisticProblem(*split(X, y, 150))
    res = hoag(prob, [0.0], max_iter=2, tol=0, first_step=first_step, bounds=(-10, 10))
    assert abs(res.trace[1]["alpha"][0] - res.trace[0]["alpha"][0]) == pytest.approx(first_step)
    with pytest.raises(ValueError, match="first_step"):
        hoag(prob, [0.0], first_step=0.0)


@pytest.mark.parametrize("ratio", [1.2, 3.0])
def test_max_step_ratio_bounds_each_move_by_the_last_accepted_one(ratio):
    # From a far too weak penalty the secant steps want to grow: each move from
    # the last accepted point is at most `ratio` times the last accepted move.
    X, y = make_classification_data(200, 20, seed=3)
    prob = LogisticProblem(*split(X, y, 150))
    res = hoag(prob, [-9.0], max_iter=15, tol=0, value_tol=0, first_step=0.2, max_step=10.0,
               max_step_ratio=ratio, bounds=(-10, 10))
    base, last, moves = res.trace[0]["alpha"], None, []
    for r in res.trace[1:]:
        move = float(np.max(np.abs(r["alpha"] - base)))
        if move == 0:  # the last accepted point solved again after a rejection
            continue
        if last is not None:
            assert move <= ratio * last * (1 + 1e-12)
            moves.append(move / last)
        if r["accepted"]:
            base, last = r["alpha"], move
    assert max(moves) > 0.9 * ratio  # the bound was active, not just respected
    with pytest.raises(ValueError, match="max_step_ratio"):
        hoag(prob, [0.0], max_step_ratio=0.0)


def test_value_tol_stops_once_the_outer_value_settles():
    X, y = make_classification_data(300, 20, seed=4, noise=2.0)
    prob = LogisticProblem(*split(X, y, 200))
    res = hoag(prob, [3.0], hypergradient="cg", max_iter=40, tol=0, value_tol=1e-3, patience=3,
               stop_eps=None, polish_tol=0)
    assert res.success and "value_tol" in res.message and res.nit < 40
    # Check the observed criterion from the trace: the last accepted value after each
    # iteration; it never held before the stop.
    last, accepted = None, []
    for r in res.trace:
        last = r["outer_value"] if r["accepted"] else last
        accepted.append(last)
    assert all(accepted[k - 3] - accepted[k] > 1e-3 * abs(accepted[k])
               for k in range(3, len(accepted) - 1))
    if "patience" in res.message:
        assert accepted[-4] - accepted[-1] <= 1e-3 * abs(accepted[-1])
    full = hoag(prob, [3.0], hypergradient="cg", max_iter=12, tol=0, value_tol=0)
    assert full.nit == 12
    with pytest.raises(ValueError, match="patience"):
        hoag(prob, [0.0], patience=0)
    with pytest.raises(ValueError, match="value_tol"):
        hoag(prob, [0.0], value_tol=-1.0)


def test_predicted_decrease_stops_after_two_flat_points():
    from hoag_shine import HoagOptions
    from hoag_shine.outer.steps import Point
    from hoag_shine.outer.stopping import StoppingRule, StopReason

    rule = StoppingRule(HoagOptions(tol=0, value_tol=1e-3, patience=50))
    base = Point(alpha=np.zeros(1), value=100.0, value_c=100.0, grad=np.zeros(1), eps=1e-2)
    step = np.array([0.5])
    assert rule.check(step, base, predicted=None) == (None, False)  # no secant model yet
    assert rule.check(step, base, predicted=0.05) == (None, False)  # one flat point
    assert rule.check(step, base, predicted=0.5) == (None, False)  # not flat: count reset
    assert rule.check(step, base, predicted=0.09) == (None, False)
    stop, tighten = rule.check(step, base, predicted=0.1)
    assert stop is StopReason.PREDICTED and not tighten
    # A rejected iteration (no prediction) neither counts nor resets.
    rule = StoppingRule(HoagOptions(tol=0, value_tol=1e-3, patience=50))
    rule.check(step, base, predicted=0.05)
    rule.check(None, base, predicted=None)
    assert rule.check(step, base, predicted=0.05)[0] is not None
    # value_tol=0 disables it.
    rule = StoppingRule(HoagOptions(tol=0, value_tol=0))
    assert all(rule.check(step, base, predicted=0.0) == (None, False) for _ in range(3))


def test_a_rejected_trial_within_tol_is_a_step_stop():
    """A trial that moved alpha by at most tol and was rejected stops the loop as an
    accepted step of that length would: no point within tol along the descent
    direction is better than the accepted one."""
    from hoag_shine import HoagOptions
    from hoag_shine.outer.steps import Point, StepRule
    from hoag_shine.outer.stopping import StoppingRule, StopReason

    base = Point(alpha=np.zeros(1), value=100.0, value_c=100.0, grad=np.ones(1), eps=1e-2)
    rule = StoppingRule(HoagOptions(tol=0.01, value_tol=0))
    assert rule.check(None, base, rejected=0.02) == (None, False)  # a longer trial: go on
    assert rule.check(None, base, rejected=0.01) == (StopReason.STEP, False)
    assert StoppingRule(HoagOptions(tol=0, value_tol=0)).check(None, base, rejected=1e-9) \
        == (None, False)  # tol=0 disables it
    # The step rule measures the rejected move (max-norm) and forgets it on acceptance.
    opts = HoagOptions()
    steps = StepRule(opts, np.full(2, -10.0), np.full(2, 10.0))
    steps.point, steps.L = Point(np.zeros(2), 1.0, 1.0, np.array([1.0, -3.0]), 1e-2), 100.0
    trial = steps.next_alpha()
    steps.reject()
    assert steps.rejected == pytest.approx(np.max(np.abs(trial))) == pytest.approx(0.03)
    assert steps.refresh and steps.step is None


def test_a_loop_ends_on_a_rejected_trial_within_tol():
    # SHINE's hypergradients with a fast step growth: near the optimum a trial of
    # 0.03 (under tol) is rejected, and the loop ends there, at the last accepted
    # point (without the rule it solved two more points, 0.003 from it).
    X, y = make_classification_data(300, 40, seed=3, noise=1.0)
    prob = LogisticProblem(*split(X, y, 200))
    tol = 0.05
    res = hoag(prob, [4.0], hypergradient="shine", max_iter=60, tol=tol, value_tol=0,
               step_growth=0.6, step_rule="hoag", polish_tol=0)
    tr = res.trace
    assert not tr[-1]["accepted"], "this setting must end on a rejected trial"
    base = [r for r in tr if r["accepted"]][-1]
    np.testing.assert_array_equal(res.alpha, base["alpha"])
    assert res.stop.reason.name == "STEP" and res.success
    assert np.max(np.abs(tr[-1]["alpha"] - base["alpha"])) <= tol
    # No rejected trial before the last moved by at most tol.
    for i, r in enumerate(tr[:-1]):
        if not r["accepted"]:
            before = [b for b in tr[:i] if b["accepted"]][-1]
            assert np.max(np.abs(r["alpha"] - before["alpha"])) > tol


def test_rewording_every_message_changes_no_result(monkeypatch):
    # Stops are values; words are made from them once. Replacing every message by
    # nonsense leaves every decision (and so every result) as it was.
    import warnings

    import hoag_shine.outer.loop as loop
    import hoag_shine.outer.stopping as stopping
    import hoag_shine.outer.tune as tune
    from hoag_shine import ShineLogisticRegressionCV

    X, y = make_classification_data(150, 6, seed=3)
    prob = LogisticProblem(X[:100], y[:100], X[100:], y[100:], fit_intercept=True)

    def runs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = hoag(prob, [0.0], max_iter=30)
            b = hoag(prob, [0.0], bounds=(-0.5, 0.5), max_iter=30)
            c = hoag(prob, [0.0], max_iter=2, tol=0)
            est = ShineLogisticRegressionCV(cv=3, C_bounds=(1e-3, 1e3)).fit(X, y)
        return [(r.alpha, r.status, r.nit, r.stop.reason) for r in (a, b, c)], est.C_

    before = runs()
    for module in (loop, stopping, tune):
        monkeypatch.setattr(module, "describe", lambda *a, **k: "reworded")
    monkeypatch.setattr(stopping, "_failure_text", lambda stop: "reworded")
    after = runs()
    for (a1, s1, n1, r1), (a2, s2, n2, r2) in zip(before[0], after[0]):
        np.testing.assert_array_equal(a1, a2)
        assert (s1, n1, r1) == (s2, n2, r2)
    assert before[1] == after[1]


def test_stops_are_values_and_bound_warnings_carry_the_side():
    from hoag_shine.outer import BoundWarning, StopReason

    X, y = make_classification_data(150, 6, seed=3)
    prob = LogisticProblem(X[:100], y[:100], X[100:], y[100:], fit_intercept=True)
    with pytest.warns(BoundWarning) as record:
        res = hoag(prob, [0.0], bounds=(-0.5, 0.5), max_iter=30)
    assert res.stop.reason is StopReason.BOUND and res.status == 4
    w = record[0].message
    assert w.side == "lower" and w.bounds_name == "bounds" and list(w.sides) == [-1]
    assert res.stop.sides.tolist() == [-1]
    # The estimator says it in its own terms: C = exp(-alpha), so the lower bound of
    # alpha is the upper bound of C.
    from hoag_shine import ShineLogisticRegressionCV

    with pytest.warns(BoundWarning) as record:
        ShineLogisticRegressionCV(cv=3, C_bounds=(np.exp(-0.5), np.exp(0.5))).fit(X, y)
    w = [r.message for r in record if isinstance(r.message, BoundWarning)][0]
    assert w.side == "upper" and w.bounds_name == "C_bounds" and "C_bounds=(" in str(w)


@pytest.mark.parametrize("small", [True, False])
def test_a_stop_check_refines_by_at_most_its_cap(small):
    """The end game refines backward vectors by CG: small problems (polished to machine
    precision) up to 100 iterations, larger ones (where each is a pass over the data)
    up to 50; and the refined hypergradient is nearer the exact one than SHINE's."""
    from hoag_shine import HoagOptions
    from hoag_shine.hypergrad import Exact, compute_hypergradient
    from hoag_shine.inner import plan_pairs
    from hoag_shine.outer.fold import Fold

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 150)) * np.logspace(0, 3, 150)  # ill-conditioned
    y = (X[:, :5].sum(axis=1) + rng.standard_normal(400) > 0).astype(int)
    problem = LogisticProblem(X[:300], y[:300], X[300:], y[300:])
    alpha, eps = np.array([-4.0]), 1e-6
    options = HoagOptions()
    fold = Fold(problem, alpha, None, options, plan_pairs(problem.n_params, 30), None)
    fold.forward(alpha, eps)
    shine = fold.accept(alpha, eps).grad
    fold.refine_from_now(newton=small)
    grad, n_hvp = fold.refine(alpha, 1e-14)
    cap = 100 if small else 50
    # (not converged to 1e-14 on this conditioning: the cap binds; one more product
    # for the warm start's residual)
    assert n_hvp == cap + 1
    exact = compute_hypergradient(problem, fold.solution(), alpha, Exact(), eps=0).grad
    assert abs(grad[0] - exact[0]) < abs(shine[0] - exact[0])
