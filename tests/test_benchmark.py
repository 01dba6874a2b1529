import csv
"""The benchmark runner on multiclass data: per-class schemes and the scikit-learn baseline."""

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegressionCV

from hoag_shine.benchmark import load_config, run_benchmark, run_scheme
from hoag_shine.results import read_results
from hoag_shine.datasets import load_dataset, paper_split

MULTICLASS = """
[benchmark]
datasets = ["digits"]
schemes = ["shine", "shared", "sklearn-cv"]
seeds = [0]
fit_intercept = true

[datasets.digits]
loader = "digits"
test_size = 0.5
max_time = 1e-9         # overrides the benchmark's: each HOAG run stops after one iteration

[schemes.shine]
method = "hoag"
hypergradient = "shine"
max_iter = 4

[schemes.shared]
method = "hoag"
hypergradient = "cg"
penalty = "shared"
max_iter = 3

[schemes.sklearn-cv]
method = "sklearn-cv"
Cs = 3
cv = 3
"""


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_dataset("digits")
    return paper_split(X[:600], y[:600], 0, test_size=0.5)


def test_per_class_hoag_records_every_penalty(digits_split):
    rows = run_scheme(digits_split, {"method": "hoag", "hypergradient": "shine", "max_iter": 4},
                      fit_intercept=True)
    assert len(rows) == 4
    for r in rows:
        alphas = np.array(r["alphas"], dtype=float)
        assert alphas.shape == (10,)
        assert r["alpha"] == pytest.approx(alphas.mean(), abs=1e-12)
    assert rows[0]["alphas"] == [0.0] * 10
    assert rows[-1]["validation_loss"] < rows[0]["validation_loss"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the reference's default parameters
def test_sklearn_baseline_heldout_is_the_summed_cross_entropy(digits_split):
    X_tr, y_tr, _, _, X_ho, y_ho = digits_split
    [row] = run_scheme(digits_split, {"method": "sklearn-cv", "Cs": 3, "cv": 3},
                       fit_intercept=True)
    ref = LogisticRegressionCV(Cs=3, cv=3, tol=1e-4, max_iter=1000, scoring="neg_log_loss")
    ref.fit(X_tr, y_tr)
    scores = X_ho @ ref.coef_.T + ref.intercept_  # independent of predict_log_proba
    expected = float(np.sum(logsumexp(scores, axis=1) - scores[np.arange(len(y_ho)), y_ho]))
    assert row["heldout_loss"] == pytest.approx(expected, rel=1e-6)
    assert row["alpha"] == pytest.approx(-np.log(np.ravel(ref.C_)[0]))


def test_multiclass_config_end_to_end(tmp_path):
    path = tmp_path / "mc.toml"
    path.write_text(MULTICLASS)
    cols = read_results(run_benchmark(load_config(path), tmp_path / "out"))
    assert set(cols["scheme"]) == {"shine", "shared", "sklearn-cv"}
    shared = cols["n_hyper"][cols["scheme"] == "shared"]
    assert np.all(shared == 1)
    assert len(shared) == 1 and np.sum(cols["scheme"] == "shine") == 1  # max_time honoured
    assert cols["n_hyper"][cols["scheme"] == "shine"][0] == 10
    # The long table holds every penalty, one per row; the mean is the alpha column.
    with open(tmp_path / "out" / "alphas.csv", newline="") as f:
        long = [r for r in csv.DictReader(f) if r["scheme"] == "shine"]
    assert sorted(int(r["index"]) for r in long) == list(range(10))
    assert np.mean([float(r["alpha"]) for r in long]) == pytest.approx(
        cols["alpha"][cols["scheme"] == "shine"][0], rel=1e-9)
    assert np.all(np.isfinite(cols["heldout_loss"]))
