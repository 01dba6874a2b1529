import numpy as np
import pytest

from hoag_shine import LogisticProblem, hoag
from hoag_shine.diagnostics import inversion_experiment, inversion_quality
from hoag_shine.inner import LbfgsMemory, minimize_lbfgs_numpy
from conftest import make_classification_data, split


def test_opa_pairs_satisfy_the_secant_equation():
    X, y = make_classification_data(200, 30, seed=0)
    prob = LogisticProblem(*split(X, y, 150))
    a = np.array([0.0])
    v = np.random.default_rng(0).standard_normal(prob.n_params)
    inserted = []

    class Recording(LbfgsMemory):
        # The solvers append through the no-copy _append.
        def _append(self, s, y, ss=None):
            added = super()._append(s, y, ss)
            if added and self._opa_next:
                inserted.append((self.copy(), np.array(s), np.array(y)))
            return added

    mem = Recording(60, prob.n_params)
    mem._opa_next = False

    def direction(x):
        mem._opa_next = True  # the next pair appended is the OPA pair
        return v

    orig_append = mem._append

    def append(s, y, ss=None):
        added = orig_append(s, y, ss)
        mem._opa_next = False
        return added

    mem._append = append
    res = minimize_lbfgs_numpy(lambda x: prob.inner_value_grad(x, a), np.zeros(prob.n_params),
                               tol=1e-6, memory=mem, opa=(direction, 3))
    assert res.n_opa == len(inserted) >= 3
    for snapshot, e, yv in inserted:
        # The newest pair of a BFGS memory is reproduced exactly: H_new y = e.
        np.testing.assert_allclose(snapshot.inv_hvp(yv), e, rtol=1e-8, atol=1e-12)
        # And it is a real secant pair of the objective: y = grad(x + e) - grad(x).
        assert e @ yv > 0


def test_inversion_quality_of_exact_memory_is_perfect():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((5, 5))
    H = B @ B.T + 5 * np.eye(5)
    mem = LbfgsMemory(10)
    # BFGS updates along a full set of H-conjugate steps (H's eigenvectors) of a
    # quadratic rebuild its exact inverse.
    for s in np.linalg.eigh(H)[1].T:
        mem.append(s, H @ s)
    d = rng.standard_normal(5)
    ratio, cos = inversion_quality(mem, H, d)
    assert ratio == pytest.approx(1.0, rel=1e-10) and cos == pytest.approx(1.0, rel=1e-12)


def test_opa_makes_the_prescribed_direction_exact_on_breast_cancer():
    res = inversion_experiment(n_runs=25, random_state=0)
    cos_opa = np.median(res["opa"]["prescribed"][:, 1])
    cos_plain = np.median(res["no-opa"]["prescribed"][:, 1])
    assert cos_opa >= 0.99
    assert cos_opa > cos_plain
    # The Krylov direction (H times the last step) is exact with or without OPA.
    assert np.median(res["no-opa"]["krylov"][:, 1]) > 0.999


def test_shine_opa_in_hoag_needs_the_numpy_solver():
    X, y = make_classification_data(300, 40, seed=2, noise=2.0)
    prob = LogisticProblem(*split(X, y, 200))
    res = hoag(prob, [0.0], hypergradient="shine-opa", max_iter=15)
    assert np.isfinite(res.fun)
    with pytest.raises(ValueError, match="inner_solver='numpy'"):
        hoag(prob, [0.0], hypergradient="shine-opa", inner_solver="scipy")
