"""How good is an L-BFGS inverse-Hessian estimate in a given direction?

SHINE replaces ``H^{-1} b`` by the L-BFGS estimate applied to ``b``. This module
measures the quality of that estimate against the exact inverse Hessian at
the final iterate, for a prescribed direction (the one OPA is told about), a
Krylov direction (``H`` times the last step: L-BFGS knows it by construction)
and a random one. It reproduces the right panel of the SHINE paper's Figure 2.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ._utils import single_thread_blas
from .datasets import load_dataset
from .inner import minimize_lbfgs_numpy
from .problems import LogisticProblem

__all__ = ["inversion_quality", "inversion_experiment"]

DIRECTIONS = ("prescribed", "krylov", "random")


def inversion_quality(memory, H, direction):
    """Norm ratio and cosine between the L-BFGS and the exact ``H^{-1} direction``.

    Parameters
    ----------
    memory : LbfgsMemory
    H : ndarray of shape (n, n)
        The exact Hessian.
    direction : ndarray of shape (n,)

    Returns
    -------
    ratio : float
        ``||H_lbfgs^{-1} d|| / ||H^{-1} d||``.
    cosine : float
        Cosine similarity of the two vectors.
    """
    approx = memory.inv_hvp(direction)
    exact = np.linalg.solve(H, direction)
    na, ne = np.linalg.norm(approx), np.linalg.norm(exact)
    return float(na / ne), float(approx @ exact / (na * ne))


@single_thread_blas
def inversion_experiment(*, dataset="breast-cancer", n_train=113, alpha=1.0, n_runs=100,
                         memory=60, tol=1e-6, opa_freq=5, random_state=0, data_home=None):
    """Run the inversion-quality experiment, with and without OPA.

    Each run draws a training subset of ``n_train`` samples and a random
    prescribed direction ``v`` (standing for the outer gradient), minimises the
    L2-regularised logistic loss at log-penalty ``alpha`` from zero with the
    NumPy L-BFGS (memory ``memory``, ``||grad|| <= tol``), once with OPA
    along ``v`` every ``opa_freq`` iterations and once without, and measures
    the estimate at the final iterate in three directions.

    Returns
    -------
    results : dict
        ``results[opa][kind]`` (``opa`` in ``{"opa", "no-opa"}``, ``kind`` in
        ``DIRECTIONS``) is an array of shape (n_runs, 2): ratio and cosine per
        run.
    """
    X, y = load_dataset(dataset, data_home=data_home)
    rng = np.random.default_rng(random_state)
    a = np.array([float(alpha)])
    out = {k: {d: [] for d in DIRECTIONS} for k in ("opa", "no-opa")}
    for run in range(int(n_runs)):
        X_tr, _, y_tr, _ = train_test_split(X, y, train_size=n_train, stratify=y,
                                            random_state=int(rng.integers(2**31 - 1)))
        prob = LogisticProblem(X_tr, y_tr, X_tr[:2], y_tr[:2])
        v = rng.standard_normal(prob.n_params)
        r = rng.standard_normal(prob.n_params)
        for key, opa in (("opa", (lambda x: v, opa_freq)), ("no-opa", None)):
            res = minimize_lbfgs_numpy(lambda x: prob.inner_value_grad(x, a),
                                       np.zeros(prob.n_params), tol=tol, maxcor=memory,
                                       max_iter=10_000, opa=opa)
            H = prob.inner_hessian(res.x, a)
            s_last = res.memory.s[-1]
            for kind, d in (("prescribed", v), ("krylov", H @ s_last), ("random", r)):
                out[key][kind].append(inversion_quality(res.memory, H, d))
    return {k: {d: np.array(vals) for d, vals in per.items()} for k, per in out.items()}
