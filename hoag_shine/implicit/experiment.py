"""The SHINE paper's DEQ comparison in miniature: backward strategies of an equilibrium
classifier, trained on the same data, seeds and settings.

Per strategy and seed: the backward and forward time per batch (median), the
cosine between the strategy's parameter gradient and the exact one at the same
point (every ``probe_every`` batches, along training), test accuracy and
log-loss at the end, and the training time (the probes' exact gradients not
counted). Two regimes: a contraction (``||W||_2 <= 0.9``, Gaussian) and a
Jacobian with spectral radius near 1 (``W`` a scaled orthogonal matrix of norm
0.99), where Jacobian-Free's identity is a poor inverse.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

from .classifier import DEQClassifier, deq_gradient
from .layer import TanhLayer

__all__ = ["REGIMES", "STRATEGIES", "deq_datasets", "run_deq", "summarize_deq"]

STRATEGIES = ("exact", "shine", "shine-fallback", "shine-refine", "shine-opa", "jacobian-free")

#: name -> DEQClassifier settings of the regime.
REGIMES = {
    "contraction": dict(spectral_norm=0.9, init="gaussian"),
    "near 1": dict(spectral_norm=0.99, init="orthogonal"),
}


def deq_datasets():
    """name -> (X, y): scikit-learn's digits (pixels scaled to [0, 1]) and a larger
    generated set (6,000 x 40, four classes)."""
    X, y = load_digits(return_X_y=True)
    Xg, yg = make_classification(n_samples=6000, n_features=40, n_informative=24,
                                 n_redundant=8, n_classes=4, n_clusters_per_class=2,
                                 class_sep=1.0, random_state=0)
    return {"digits": (X / 16.0, y), "generated": (Xg / np.abs(Xg).max(), yg)}


def _flat(grads):
    return np.concatenate([np.ravel(grads[k]) for k in ("W", "U", "b")])


def run_deq(X, y, strategy, seed, regime, *, max_iter=15, probe_every=5, hidden_size=32):
    """One training run; a dict of its figures."""
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=seed,
                                              stratify=y)
    cosines, probe_time = [], [0.0]
    layer = TanhLayer()
    counter = [0]

    def probe(info):
        counter[0] += 1
        if counter[0] % probe_every:
            return
        t0 = time.perf_counter()
        exact, _, _ = deq_gradient(layer, info["params"], info["readout"], info["x"], info["Y"],
                                   "exact", clf._options())
        a, b = _flat(info["grads"]), _flat(exact)
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300)))
        probe_time[0] += time.perf_counter() - t0

    clf = DEQClassifier(backward=strategy, hidden_size=hidden_size, max_iter=max_iter,
                        tol=0.0, random_state=seed, callback=probe, **REGIMES[regime])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        clf.fit(X_tr, y_tr)
        train_time = time.perf_counter() - t0 - probe_time[0]
        proba = clf.predict_proba(X_te)
    h = clf.history_
    return dict(strategy=strategy, seed=seed, regime=regime,
                backward_ms=1e3 * float(np.median(h["backward_time"])),
                forward_ms=1e3 * float(np.median(h["forward_time"])),
                cosine=float(np.median(cosines)) if cosines else np.nan, cosines=cosines,
                accuracy=float(accuracy_score(y_te, clf.classes_[np.argmax(proba, 1)])),
                log_loss=float(log_loss(y_te, proba, labels=clf.classes_)),
                train_time=float(train_time), forward_ok=bool(clf.forward_converged_),
                n_fallback=int(np.sum(h["n_fallback"])),
                warnings=sorted({type(w.message).__name__ for w in caught}))


def summarize_deq(rows):
    """Median (over seeds) of each figure per (dataset, regime, strategy)."""
    out = {}
    for r in rows:
        out.setdefault((r["dataset"], r["regime"], r["strategy"]), []).append(r)
    table = []
    for (dataset, regime, strategy), runs in out.items():
        med = {k: float(np.median([r[k] for r in runs])) for k in
               ("backward_ms", "forward_ms", "cosine", "accuracy", "log_loss", "train_time")}
        table.append(dict(dataset=dataset, regime=regime, strategy=strategy, n=len(runs),
                          accuracy_mean=float(np.mean([r["accuracy"] for r in runs])), **med))
    return table
