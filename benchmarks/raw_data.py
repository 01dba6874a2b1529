"""Raw data, as users pass it: the answer against the best of a fine grid over the bounds.

For each case (data sets that ship with scikit-learn, raw, and made ones with
offsets and one rescaled column), both estimators are fitted with their defaults
on fixed folds (5, stratified for the classifier), and the cross-validated loss at
their answer is computed independently: scikit-learn's ``LogisticRegression``
(Newton-Cholesky, ``tol=1e-10``: exact Newton steps, where lbfgs to that tolerance
stopped short on raw data and took ~0.5 s a fit; on the same folds, the features
centred on the whole data:
the same models, since an offset is absorbed by the unpenalised intercept) or the
closed-form ridge solution per fold. It is compared with the best loss of a log
grid over the bounds (step 0.5, then 0.05 around its best), and the time with
``LogisticRegressionCV`` / ``RidgeCV`` on the same folds (one BLAS thread, both).

    python benchmarks/raw_data.py                 # every case, a Markdown table
    python benchmarks/raw_data.py --cases wine,diabetes
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from scipy.special import logsumexp
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from hoag_shine import ShineLogisticRegressionCV, ShineRidgeCV

BOUNDS = (-12.0, 12.0)  # the estimators' default bounds, as log C / log alpha


def _synthetic(seed=0, n=400, p=10):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.standard_normal(n) > 0).astype(int)
    return X, y


def _regression(seed=0, n=300, p=10):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    return X, X @ rng.standard_normal(p) + 3.0 * rng.standard_normal(n)


def cases():
    """name -> (kind, X, y)."""
    bc = load_breast_cancer(return_X_y=True)
    wine = load_wine(return_X_y=True)
    digits = load_digits(return_X_y=True)  # pixels 0-16, as shipped
    diab = load_diabetes(return_X_y=True)
    Xs, ys = _synthetic()
    Xr, yr = _regression()
    big = Xs.copy()
    big[:, 3] *= 100.0
    bigr = Xr.copy()
    bigr[:, 3] *= 1e4
    return {
        "breast-cancer": ("logistic", *bc),
        "wine": ("logistic", *wine),
        "digits (0-16)": ("logistic", *digits),
        "synthetic": ("logistic", Xs, ys),
        "synthetic + 100": ("logistic", Xs + 100.0, ys),
        "synthetic + 2024": ("logistic", Xs + 2024.0, ys),
        "synthetic, one column x100": ("logistic", big, ys),
        "synthetic, a zero column": ("logistic", np.c_[Xs, np.zeros(len(ys))], ys),
        "diabetes": ("ridge", *diab),
        "breast-cancer (ridge)": ("ridge", bc[0], bc[1].astype(float)),
        "regression, one column x1e4": ("ridge", bigr, yr),
        "regression + 1000": ("ridge", Xr + 1000.0, yr),
    }


def logistic_cv_loss(X, y, C, folds):
    """Mean validation log-loss per sample at ``C``, by scikit-learn's fits."""
    Xc = X - X.mean(axis=0)
    classes = np.unique(y)
    total = 0.0
    for tr, va in folds:
        m = LogisticRegression(C=C, tol=1e-10, max_iter=1000,
                               solver="newton-cholesky").fit(Xc[tr], y[tr])
        scores = m.decision_function(Xc[va])
        if scores.ndim == 1:
            scores = np.c_[np.zeros_like(scores), scores]
        idx = np.searchsorted(classes, y[va])
        total += float(np.sum(logsumexp(scores, axis=1) - scores[np.arange(len(va)), idx]))
    return total / len(y)


def ridge_cv_loss(X, y, alpha, folds):
    """Mean squared validation error at ``alpha``, closed form per fold."""
    total = 0.0
    for tr, va in folds:
        mu, ym = X[tr].mean(axis=0), y[tr].mean()
        A = X[tr] - mu
        w = np.linalg.solve(A.T @ A + alpha * np.eye(X.shape[1]), A.T @ (y[tr] - ym))
        total += float(np.sum((y[va] - ym - (X[va] - mu) @ w) ** 2))
    return total / len(y)


def grid_best(loss):
    """Best of a log grid over the bounds: step 0.5, then 0.05 around its best."""
    coarse = np.arange(BOUNDS[0], BOUNDS[1] + 1e-9, 0.5)
    values = [loss(np.exp(a)) for a in coarse]
    a0 = coarse[int(np.argmin(values))]
    fine = np.arange(max(a0 - 0.5, BOUNDS[0]), min(a0 + 0.5, BOUNDS[1]) + 1e-9, 0.05)
    fine_values = [loss(np.exp(a)) for a in fine]
    k = int(np.argmin(fine_values))
    return float(fine_values[k]), float(np.exp(fine[k]))


def run_case(name, kind, X, y):
    X = np.asarray(X, dtype=float)
    splitter = StratifiedKFold(5) if kind == "logistic" else KFold(5)
    folds = list(splitter.split(X, y))
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if kind == "logistic":
            est = ShineLogisticRegressionCV(cv=folds).fit(X, y)
            answer = float(np.ravel(est.C_)[0])
        else:
            est = ShineRidgeCV(cv=folds).fit(X, y)
            answer = float(est.alpha_)
        t_ours = time.perf_counter() - t0
        ours_warned = list(caught)  # (scikit-learn's own warnings below are not ours)
        t0 = time.perf_counter()
        if kind == "logistic":
            LogisticRegressionCV(cv=folds, scoring="neg_log_loss", max_iter=1000).fit(X, y)
        else:
            RidgeCV(alphas=np.exp(np.arange(-12, 12.5, 1.0)), cv=folds).fit(X, y)
        t_ref = time.perf_counter() - t0
    loss = ((lambda C: logistic_cv_loss(X, y, C, folds)) if kind == "logistic"
            else (lambda a: ridge_cv_loss(X, y, a, folds)))
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = loss(answer)
        best, at = grid_best(loss)
    kinds = sorted({type(w.message).__name__ for w in ours_warned})
    return dict(case=name, kind=kind, answer=answer, loss=ours, best=best, best_at=at,
                excess=100.0 * (ours / best - 1.0), time=t_ours, ref_time=t_ref,
                warnings=kinds)


def format_table(rows):
    lines = ["| case | estimator | C_ / alpha_ | CV loss | grid best (at) | excess | "
             "fit (s) | sklearn CV (s) | our warnings |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        est = "ShineLogisticRegressionCV" if r["kind"] == "logistic" else "ShineRidgeCV"
        lines.append(
            f"| {r['case']} | {est} | {r['answer']:.4g} | {r['loss']:.5g} | "
            f"{r['best']:.5g} ({r['best_at']:.3g}) | {r['excess']:+.2f}% | {r['time']:.2f} | "
            f"{r['ref_time']:.2f} | {', '.join(r['warnings']) or '-'} |")
    worst = max(r["excess"] for r in rows)
    lines.append(f"\nworst excess over the grid's best: {worst:+.2f}% (target: <= 0.5%)")
    return "\n".join(lines)


def build_parser():
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated subset of the case names")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    todo = cases()
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",")]
        unknown = [c for c in wanted if c not in todo]
        if unknown:
            raise SystemExit(f"unknown case(s) {unknown}; choose among {sorted(todo)}")
        todo = {c: todo[c] for c in wanted}
    rows = []
    for name, (kind, X, y) in todo.items():
        rows.append(run_case(name, kind, X, y))
        r = rows[-1]
        print(f"{name}: {r['answer']:.4g}, excess {r['excess']:+.2f}%, {r['time']:.2f} s",
              file=sys.stderr, flush=True)
    print(format_table(rows))


if __name__ == "__main__":
    main()
