"""Grid and random search against independent solves."""

import numpy as np
import pytest

from hoag_shine import LogisticProblem, grid_search, random_search
from hoag_shine.outer import TRACE_FIELDS
from conftest import make_classification_data, ref_logistic_outer, split


@pytest.fixture
def data():
    X, y = make_classification_data(220, 15, seed=6, noise=1.5)
    return split(X, y, 150)


def test_grid_search_values_match_newton_solves(data):
    prob = LogisticProblem(*data)
    res = grid_search(prob, 5, bounds=(-4.0, 4.0), tol=1e-10)
    alphas = [r["alpha"][0] for r in res.trace]
    np.testing.assert_allclose(alphas, np.linspace(4, -4, 5))  # strongest penalty first
    ref = [ref_logistic_outer(*data, a, False) for a in alphas]
    np.testing.assert_allclose(res.trace_columns()["outer_value"], ref, rtol=1e-7)
    assert res.alpha[0] == alphas[int(np.argmin(ref))]
    assert res.fun == pytest.approx(min(ref), rel=1e-7)
    assert set(res.trace[0]) == set(TRACE_FIELDS)


def test_random_search_is_seeded_and_records_the_best_so_far(data):
    prob = LogisticProblem(*data)
    X_ho, y_ho = data[2], data[3]
    a = random_search(prob, 6, random_state=3, heldout=(X_ho, y_ho))
    b = random_search(prob, 6, random_state=3)
    np.testing.assert_array_equal(a.trace_columns()["alpha"], b.trace_columns()["alpha"])
    values = a.trace_columns()["outer_value"]
    accepted = a.trace_columns()["accepted"]
    # "accepted" marks a new best; the held-out value is the best point's.
    best_so_far = np.minimum.accumulate(values)
    np.testing.assert_array_equal(accepted[1:], values[1:] < best_so_far[:-1])
    assert a.trace[-1]["heldout_value"] == pytest.approx(prob.data_loss(a.x, X_ho, y_ho),
                                                         rel=1e-12)
    assert a.fun == values.min()


def test_grid_search_budget_and_callback(data):
    prob = LogisticProblem(*data)
    res = grid_search(prob, 10, max_time=0.0)
    assert res.nit == 1 and "max_time" in res.message

    def stop(record):
        if record["iteration"] == 1:
            raise StopIteration

    assert grid_search(prob, 10, callback=stop).nit == 2
    with pytest.raises(ValueError, match="one hyperparameter"):
        grid_search(LogisticProblem(*data, penalty_groups=np.arange(15) % 2), 3)
