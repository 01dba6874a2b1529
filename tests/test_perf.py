import numpy as np
import pytest

from hoag_shine import LogisticProblem, hypergradient
from hoag_shine.datasets import make_sparse_classification, paper_split
from hoag_shine.perf import floor_time, nnz_scaling, perf_report, yardstick


@pytest.fixture(scope="module")
def split():
    X, y = make_sparse_classification(3000, 400, density=0.03, noise=1.0, random_state=0)
    return paper_split(X, y, 0)


def test_yardstick_finds_the_grid_best_and_a_floor(split):
    # Centre the search off the optimum on purpose: the grid must grow to find it.
    st = yardstick(split, center=1.5, width=0.5)
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
    alphas = np.array([a for a, _, _ in st["grid"]])
    # Independent check of the grid values with the public hypergradient function.
    for a, v, val in st["grid"][:: max(1, len(st["grid"]) // 4)]:
        x = hypergradient(prob, [a], method="jacobian-free", inner_tol=1e-10,
                          return_result=True)[3].x
        assert prob.data_loss(x, X_ho, y_ho) == pytest.approx(v, rel=1e-5)
        assert prob.data_loss(x, X_val, y_val) == pytest.approx(val, rel=1e-5)
    assert alphas.min() < st["best_alpha"] < alphas.max()  # interior after growing
    assert st["best"] == min(v for _, v, _ in st["grid"])
    assert st["target"] == pytest.approx(1.01 * st["best"])
    assert 0 < st["floor"] < np.inf and st["floor_iterations"] > 0
    # The validation optimum of the grid, and the held-out loss there.
    val_alpha, h_there, _ = min(st["grid"], key=lambda r: r[2])
    assert alphas.min() < st["validation_best_alpha"] == val_alpha < alphas.max()
    assert st["heldout_at_validation_best"] == pytest.approx(h_there / st["best"])
    assert st["reachable"] == (h_there <= st["target"])


def test_floor_time_is_the_time_to_the_target_of_a_cold_fit(split):
    X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
    heldout = lambda x: prob.data_loss(x, X_ho, y_ho)  # noqa: E731
    x_star = hypergradient(prob, [0.0], method="jacobian-free", inner_tol=1e-10,
                           return_result=True)[3].x
    at_x0 = heldout(prob.initial_x())
    # A target the starting point already meets is reached at once; one below
    # the optimum never is; one half-way is reached after some iterations.
    assert floor_time(prob, 0.0, heldout, at_x0 + 1, repeats=1)[0] == pytest.approx(0, abs=0.05)
    assert floor_time(prob, 0.0, heldout, heldout(x_star) - 1, repeats=1)[0] == np.inf
    t, nit = floor_time(prob, 0.0, heldout, 0.5 * (at_x0 + heldout(x_star)), repeats=2)
    assert 0 < t < np.inf and nit > 0


def test_perf_report_ratios():
    # Two seeds, hand-made traces: the figures are computed from them exactly.
    rows = []

    def run(scheme, seed, times, losses):
        for i, (t, h) in enumerate(zip(times, losses)):
            rows.append((scheme, seed, t, h, 0.1, 0.001))

    run("shine", 0, [1, 2, 3], [120, 101.5, 100])
    run("shine", 1, [1, 2, 4], [130, 105, 100.5])
    run("hoag-cg", 0, [2, 4, 6], [120, 110, 101])
    run("hoag-cg", 1, [2, 4, 8], [130, 110, 100.9])
    run("grid", 0, [5, 10], [150, 130])
    run("grid", 1, [5, 10], [150, 130])
    run("sklearn-cv", 0, [40], [104])
    run("sklearn-cv", 1, [40], [104])
    cols = {k: np.array(v, dtype=object if k == "scheme" else float)
            for k, v in zip(("scheme", "seed", "time", "heldout_loss", "forward_time",
                             "backward_time"), zip(*rows))}
    sticks = {0: dict(target=101.0, floor=1.5), 1: dict(target=101.0, floor=2.5, reachable=False)}
    rep = perf_report(cols, sticks)
    assert rep["reachable_seeds"] == [0]
    assert rep["per_scheme"]["shine"]["n_reached_of_reachable"] == 1
    assert rep["per_scheme"]["shine"]["time_to_target"] == [3.0, 4.0]
    assert rep["per_scheme"]["hoag-cg"]["time_to_target"] == [6.0, 8.0]
    assert rep["median_floor"] == 2.0
    assert rep["shine_over_floor"] == pytest.approx(3.5 / 2.0)
    assert rep["cg_over_shine"] == pytest.approx(7.0 / 3.5)
    assert rep["grid_over_shine"] == np.inf and rep["per_scheme"]["grid"]["n_reached"] == 0
    # SHINE gets below 104 at t=3 and t=4 (seed 1: 105 at t=2 is not below).
    assert rep["sklearn"]["shine_lower_final"] == 2
    assert rep["sklearn"]["median_time_ratio"] == pytest.approx(np.median([2 / 40, 4 / 40]))
    assert rep["per_scheme"]["shine"]["median_backward_over_forward"] == pytest.approx(0.01)
    assert "median_floor_ratio" not in rep["sklearn"]
    # With the time a cold fit at the answer needs to beat scikit-learn's loss.
    sticks[0]["sklearn_floor"], sticks[1]["sklearn_floor"] = 0.4, 1.2
    rep = perf_report(cols, sticks)
    assert rep["sklearn"]["floor_ratio_per_seed"] == pytest.approx([0.01, 0.03])
    assert rep["sklearn"]["median_floor_ratio"] == pytest.approx(0.02)


def test_nnz_scaling_small():
    sc = nnz_scaling(n_rows=(2000, 8000), n_features=2000, nnz_per_row=10, max_iter=2)
    assert len(sc["nnz"]) == 2 and sc["nnz"][1] > 3 * sc["nnz"][0]
    assert all(t > 0 for t in sc["time_per_inner_iteration"])
    assert np.isfinite(sc["exponent_inner_iteration"])
