"""How good is SHINE's inverse-Hessian estimate on 20news, along a HOAG path?

Follows the path of log-penalties given on the command line with the engine's
inner solver (NumPy L-BFGS, memory 30, warm and exactly shifted memory,
tolerance schedule 1e-2 * 0.6**k) and, at each point, compares the SHINE
backward vector ``z = B grad_x g`` (``B`` the L-BFGS inverse estimate) with
``H^{-1} grad_x g`` solved by conjugate gradient to 1e-10:

* the relative error of ``z`` in the energy norm ``||z - z*||_H / ||z*||_H``;
* the hypergradient SHINE gives, the one CG gives at the same inexact ``x``,
  and the one at the exact inner solution.

    python benchmarks/shine_accuracy.py --seed 0 --path 0,-2,-4.6,-5.3,-5.7

Needs the 20news cache (see README, "Data").
"""

import argparse
import warnings

import numpy as np

from hoag_shine import LogisticProblem
from hoag_shine._utils import single_thread_blas
from hoag_shine.datasets import load_dataset, paper_split
from hoag_shine.hypergrad import conjugate_gradient
from hoag_shine.inner import minimize_lbfgs_numpy


@single_thread_blas
def build_parser():
    """The command line of this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the split")
    ap.add_argument("--path", default="0,-2,-4.6,-5.3,-5.7", help="log-penalties, in order")
    ap.add_argument("--eps0", type=float, default=1e-2, help="first inner tolerance")
    ap.add_argument("--decay", type=float, default=0.6,
                    help="factor of the inner tolerance per step")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    warnings.simplefilter("ignore")
    X, y = load_dataset("20news")
    X_tr, y_tr, X_val, y_val, _, _ = paper_split(X, y, args.seed)
    prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
    path = [float(a) for a in args.path.split(",")]
    x, memory, a_old = prob.initial_x(), None, None
    norm0 = float(np.linalg.norm(prob.inner_value_grad(x, np.array([path[0]]))[1]))
    print("| log-penalty | inner iterations | SHINE energy error | hypergradient: SHINE | "
          "CG at the same x | exact solution |")
    print("|---|---|---|---|---|---|")
    for k, a in enumerate(path):
        alpha = np.array([a])
        if memory is not None:
            memory = memory.copy()
            memory.shift(prob.penalty_weights(alpha) - prob.penalty_weights(np.array([a_old])))
        f = lambda v, alpha=alpha: prob.inner_value_grad(v, alpha)  # noqa: E731
        eps = args.eps0 * args.decay**k
        res = minimize_lbfgs_numpy(f, x, tol=eps * norm0, maxcor=30, max_iter=1000,
                                   memory=memory)
        x, memory, a_old = res.x, res.memory, a
        _, v, g_alpha = prob.outer_value_grad(x, alpha)
        hessp = prob.inner_hessp(x, alpha)
        z_cg, _, _ = conjugate_gradient(hessp, v, rtol=1e-10, init=None, max_iter=5000)
        z_shine = memory.inv_hvp(v)
        d = z_shine - z_cg
        err = np.sqrt(d @ hessp(d)) / np.sqrt(z_cg @ hessp(z_cg))
        x_star = minimize_lbfgs_numpy(f, x, tol=1e-9 * norm0, maxcor=30, max_iter=5000).x
        v_star = prob.outer_value_grad(x_star, alpha)[1]
        z_star, _, _ = conjugate_gradient(prob.inner_hessp(x_star, alpha), v_star, rtol=1e-10, init=None,
                           max_iter=5000)
        hg = lambda xx, z: float((g_alpha - prob.inner_cross(xx, alpha, z))[0])  # noqa: E731
        print(f"| {a:g} | {res.nit} | {err:.2f} | {hg(x, z_shine):.2f} | {hg(x, z_cg):.2f} | "
              f"{hg(x_star, z_star):.2f} |", flush=True)


if __name__ == "__main__":
    main()
