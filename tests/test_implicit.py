"""Implicit layers: Broyden's secant conditions, the exact backward against finite
differences, SHINE with OPA against the exact adjoint, the classifier's contract."""

import warnings

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from hoag_shine.implicit import (BACKWARDS, DEQClassifier, EquilibriumLayer, LowRankInverse,
                                 TanhLayer, adjoint, broyden, deq_gradient)

OPTIONS = dict(forward_tol=1e-12, forward_max_iter=200, memory=40, backward_tol=1e-12,
               refine_iter=5, fallback_ratio=1.8)


def _problem(seed=0, n=6, p=5, d=4, K=3, norm=0.7):
    rng = np.random.default_rng(seed)
    layer = TanhLayer()
    params = layer.init_params(p, d, rng, norm)
    params["b"] = 0.1 * rng.standard_normal(d)
    readout = (rng.standard_normal((d, K)), 0.1 * rng.standard_normal(K))
    x = rng.standard_normal((n, p))
    Y = np.eye(K)[rng.integers(0, K, n)]
    return layer, params, readout, x, Y


def _loss(layer, params, readout, x, Y):
    res = broyden(lambda z: z - layer.f(z, x, params), np.zeros((len(x), params["W"].shape[0])),
                  tol=1e-14, max_iter=500)
    logits = res.z @ readout[0] + readout[1]
    return -np.mean(np.sum(Y * log_softmax(logits, axis=1), axis=1))


def test_tanh_layer_products_match_finite_differences():
    layer, params, _, x, _ = _problem()
    rng = np.random.default_rng(1)
    z, v = rng.standard_normal((len(x), 4)), rng.standard_normal((len(x), 4))
    h = 1e-6
    # v^T df/dz, row by row, against central differences
    num = np.zeros_like(z)
    for j in range(z.shape[1]):
        e = np.zeros_like(z)
        e[:, j] = h
        num[:, j] = np.sum(v * (layer.f(z + e, x, params) - layer.f(z - e, x, params)), 1) / (2 * h)
    np.testing.assert_allclose(layer.vjp_z(z, x, params, v), num, rtol=1e-7, atol=1e-9)
    grads = layer.vjp_params(z, x, params, v)
    for name in ("W", "U", "b"):
        num = np.zeros_like(params[name])
        for idx in np.ndindex(num.shape):
            up = {k: a.copy() for k, a in params.items()}
            dn = {k: a.copy() for k, a in params.items()}
            up[name][idx] += h
            dn[name][idx] -= h
            num[idx] = np.sum(v * (layer.f(z, x, up) - layer.f(z, x, dn))) / (2 * h)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-9)


def test_broyden_solves_the_fixed_point_and_meets_its_secant_condition():
    layer, params, _, x, _ = _problem(n=8)
    g = lambda z: z - layer.f(z, x, params)  # noqa: E731
    z0 = np.zeros((len(x), 4))
    res = broyden(g, z0, tol=1e-12, max_iter=100)
    assert res.success and np.max(np.abs(g(res.z))) < 1e-10
    # The last update makes B y = s hold exactly (machine precision), per sample.
    inv = LowRankInverse(len(x), 4, memory=10)
    z, gz = z0, g(z0)
    for _ in range(5):
        z_new = z - inv.matvec(gz)
        s, y = z_new - z, g(z_new) - gz
        inv.secant(s, y)
        np.testing.assert_allclose(inv.matvec(y), s, rtol=1e-12, atol=1e-15)
        z, gz = z_new, g(z_new)
    # and the adjoint update, B^T q = a
    rng = np.random.default_rng(2)
    a, q = rng.standard_normal((len(x), 4)), rng.standard_normal((len(x), 4))
    inv.adjoint_secant(a, q)
    np.testing.assert_allclose(inv.rmatvec(q), a, rtol=1e-12, atol=1e-14)


def test_exact_backward_gradient_equals_finite_differences_of_the_loss():
    layer, params, readout, x, Y = _problem()
    grads, _, info = deq_gradient(layer, params, readout, x, Y, "exact", OPTIONS)
    assert info["forward_ok"]
    h = 1e-6
    for name in ("W", "U", "b"):
        for idx in list(np.ndindex(params[name].shape))[:12]:
            up = {k: a.copy() for k, a in params.items()}
            dn = {k: a.copy() for k, a in params.items()}
            up[name][idx] += h
            dn[name][idx] -= h
            num = (_loss(layer, up, readout, x, Y) - _loss(layer, dn, readout, x, Y)) / (2 * h)
            assert grads[name][idx] == pytest.approx(num, rel=1e-6, abs=1e-10)


def test_with_opa_shine_tends_to_the_exact_adjoint_as_the_forward_tightens():
    layer, params, readout, x, Y = _problem(seed=3, n=5, d=6, norm=0.9)
    opts = dict(OPTIONS)
    cosines = []
    for tol in (1e-2, 1e-4, 1e-7, 1e-10):
        opts["forward_tol"] = tol
        g_shine, _, _ = deq_gradient(layer, params, readout, x, Y, "shine-opa", opts)
        g_exact, _, _ = deq_gradient(layer, params, readout, x, Y, "exact", opts)
        a = np.concatenate([g_shine[k].ravel() for k in ("W", "U", "b")])
        b = np.concatenate([g_exact[k].ravel() for k in ("W", "U", "b")])
        cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cosines[-1] > 0.999 and cosines[-1] >= cosines[0]
    # Without OPA the estimate is not taught the outer direction.
    opts["forward_tol"] = 1e-10
    plain, _, _ = deq_gradient(layer, params, readout, x, Y, "shine", opts)
    a = np.concatenate([plain[k].ravel() for k in ("W", "U", "b")])
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) < cosines[-1]


def test_strategies_fallback_and_refine():
    layer, params, readout, x, Y = _problem(seed=4)
    fwd_g = lambda z: z - layer.f(z, x, params)  # noqa: E731
    res = broyden(fwd_g, np.zeros((len(x), 4)), tol=1e-10)
    rng = np.random.default_rng(5)
    w = rng.standard_normal((len(x), 4))
    vjp = lambda v: layer.vjp_z(res.z, x, params, v)  # noqa: E731
    exact = adjoint("exact", w, vjp=vjp, tol=1e-12).u
    np.testing.assert_allclose(exact - vjp(exact), w, atol=1e-10)  # (I - J)^T u = w
    jf = adjoint("jacobian-free", w).u
    np.testing.assert_array_equal(jf, w)
    shine = adjoint("shine", w, inverse=res.inverse).u
    refined = adjoint("shine-refine", w, vjp=vjp, inverse=res.inverse, refine_iter=5).u
    assert np.linalg.norm(refined - exact) <= np.linalg.norm(shine - exact)
    fb = adjoint("shine-fallback", w, inverse=res.inverse, ratio=1e-3)  # every sample falls back
    assert fb.n_fallback == len(x)
    np.testing.assert_array_equal(fb.u, w)
    with pytest.raises(ValueError, match="Unknown backward"):
        adjoint("newton", w)
    assert set(BACKWARDS) >= {"exact", "shine", "jacobian-free", "shine-fallback", "refine"}


def test_a_layer_given_as_callables():
    W = np.array([[0.3, -0.2], [0.1, 0.4]])
    layer = EquilibriumLayer(lambda z, x, p: np.tanh(z @ p["W"].T + x),
                             lambda z, x, p, v: (v * (1 - np.tanh(z @ p["W"].T + x) ** 2)) @ p["W"],
                             lambda z, x, p, v: {"W": (v * (1 - np.tanh(z @ p["W"].T + x) ** 2)).T @ z})
    x = np.array([[0.5, -1.0], [2.0, 0.1]])
    res = broyden(lambda z: z - layer.f(z, x, {"W": W}), np.zeros((2, 2)), tol=1e-12)
    np.testing.assert_allclose(res.z, np.tanh(res.z @ W.T + x), atol=1e-11)
    with pytest.raises(TypeError, match="callable"):
        EquilibriumLayer(None, None, None)


def test_bad_input_and_a_map_that_is_not_a_contraction():
    X, y = load_digits(return_X_y=True)
    X = X[:200] / 16
    y = y[:200]
    with pytest.raises(ValueError):
        DEQClassifier().fit(np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y)
    with pytest.raises(ValueError):
        DEQClassifier().fit(X, y[:10])
    with pytest.raises(ValueError, match="backward"):
        DEQClassifier(backward="newton").fit(X, y)
    # ||W|| = 4 and a tiny Broyden budget: the forward pass does not converge
    with pytest.warns(ConvergenceWarning, match="forward_max_iter"):
        clf = DEQClassifier(spectral_norm=4.0, init="orthogonal", forward_max_iter=3,
                            max_iter=2, random_state=0).fit(X * 20, y)
    assert not clf.forward_converged_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_shine_trains_as_well_as_exact_on_digits_and_its_backward_is_cheaper():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16, y, test_size=0.3, random_state=0,
                                              stratify=y)
    fits = {b: DEQClassifier(backward=b, max_iter=8, random_state=0).fit(X_tr, y_tr)
            for b in ("exact", "shine")}
    acc = {b: f.score(X_te, y_te) for b, f in fits.items()}
    assert acc["shine"] >= acc["exact"] - 0.02 and acc["exact"] > 0.9
    bwd = {b: np.median(f.history_["backward_time"]) for b, f in fits.items()}
    assert bwd["shine"] < bwd["exact"] / 3  # (>= 10x in benchmarks/deq.py, on a quiet machine)
    proba = fits["shine"].predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(fits["shine"].predict_log_proba(X_te)), proba, rtol=1e-10)


@parametrize_with_checks([DEQClassifier(max_iter=5, random_state=0)])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
