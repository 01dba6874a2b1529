"""A scikit-learn classifier around an equilibrium (DEQ) layer, trained by mini-batch Adam."""

from __future__ import annotations

import numbers
import time
import warnings

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._params import Interval, Options, validate_params
from .backward import BACKWARDS, adjoint
from .broyden import broyden
from .layer import TanhLayer

__all__ = ["DEQClassifier", "deq_gradient"]


def _forward(layer, params, x, options, outer=None):
    """The equilibrium state of the rows of ``x`` (Broyden from zero; with ``outer``,
    ``(readout, labels)``, OPA along the loss's gradient)."""
    g = lambda z: z - layer.f(z, x, params)  # noqa: E731
    opa = None
    if outer is not None:
        (A, c), Y = outer

        def outer_grad(z):
            return (softmax(z @ A + c, axis=1) - Y) @ A.T / len(x)

        opa = (outer_grad, lambda z, a: a - layer.vjp_z(z, x, params, a))
    return broyden(g, np.zeros((x.shape[0], params["W"].shape[0])), tol=options["forward_tol"],
                   max_iter=options["forward_max_iter"], memory=options["memory"], opa=opa)


def deq_gradient(layer, params, readout, x, Y, backward, options):
    """Loss (mean cross-entropy), the gradients of the layer's parameters and of the
    read-out, and what the forward and backward passes cost, for one batch.

    ``options``: ``forward_tol``, ``forward_max_iter``, ``memory``, ``backward_tol``,
    ``refine_iter``, ``fallback_ratio``.
    """
    A, c = readout
    t0 = time.perf_counter()
    fwd = _forward(layer, params, x, options,
                   outer=((A, c), Y) if backward == "shine-opa" else None)
    t1 = time.perf_counter()
    z = fwd.z
    logp = log_softmax(z @ A + c, axis=1)
    loss = float(-np.sum(Y * logp) / len(x))
    # The backward pass: from the loss to the gradients (the loss is neither pass's).
    t_loss = time.perf_counter()
    R = (np.exp(logp) - Y) / len(x)  # d loss / d logits
    # (the derivative at z*, once: f(z*) = z* - g(z*), from the forward pass)
    vjp_z, vjp_params = layer.linearize(z, x, params, fz=z - fwd.g)
    res = adjoint(backward, R @ A.T, vjp=vjp_z, inverse=fwd.inverse, tol=options["backward_tol"],
                  refine_iter=options["refine_iter"], ratio=options["fallback_ratio"])
    grads = vjp_params(res.u)
    t2 = time.perf_counter()
    info = dict(loss=loss, forward_time=t1 - t0, backward_time=t2 - t_loss,
                forward_iter=fwd.n_iter, forward_ok=fwd.success, n_vjp=res.n_vjp + fwd.n_vjp,
                n_fallback=res.n_fallback)
    return grads, (z.T @ R, R.sum(axis=0)), info


class DEQClassifier(ClassifierMixin, BaseEstimator):
    """A deep-equilibrium classifier: ``z* = tanh(W z* + U x + b)``, softmax of ``z* A + c``.

    The hidden state is the fixed point of the layer, found per sample by
    Broyden's method; the gradient of the loss in ``(W, U, b)`` needs the adjoint
    of the fixed point, which ``backward`` computes (see
    :mod:`hoag_shine.implicit.backward`): exactly by GMRES, or from the forward
    pass's Broyden inverse (SHINE), its refinements, or not at all
    (Jacobian-Free). Trained by mini-batch Adam on the mean cross-entropy.

    Parameters
    ----------
    hidden_size : int, default=32
        Dimension of the equilibrium state.
    backward : {"exact", "shine", "shine-opa", "shine-fallback", "shine-refine", \
"refine", "jacobian-free"}, default="shine"
        How the backward pass gets the adjoint.
    spectral_norm : float, default=0.9
        Bound on ``||W||_2`` (at initialisation and after every update): below 1
        the layer is a contraction; near 1 its Jacobian's spectral radius may be
        near 1, where Jacobian-Free degrades.
    max_iter : int, default=50
        Epochs.
    batch_size : int, default=64
    learning_rate : float, default=1e-2
        Adam's step size.
    alpha : float, default=1e-4
        L2 penalty on the weights (``W``, ``U``, ``A``).
    tol : float, default=1e-4
        Training stops when the epoch's loss has not decreased by more than
        ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=5
    forward_tol : float, default=1e-4
        Relative residual of the Broyden forward pass.
    forward_max_iter : int, default=50
        Broyden iterations per forward pass.
    memory : int, default=30
        Rank-one terms of the Broyden inverse estimate.
    backward_tol : float, default=1e-8
        Relative residual of ``backward="exact"``'s GMRES.
    refine_iter : int, default=5
        GMRES iterations of ``backward="shine-refine"``.
    fallback_ratio : float, default=1.8
        ``backward="shine-fallback"``: SHINE's adjoint is replaced by
        Jacobian-Free's where it is longer than this times the outer gradient.
    random_state : int, RandomState instance or None, default=None
    callback : callable, default=None
        ``callback(info)`` for every batch, before its update: the batch's
        ``loss``, times, ``forward_iter``, ``n_vjp``, the layer's gradient
        ``grads`` (``W``, ``U``, ``b``) as the backward computed it, and the
        ``params``, ``readout``, ``x``, ``Y`` it was computed at.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    params_ : dict of ndarray
        ``W``, ``U``, ``b`` of the layer, ``A``, ``c`` of the read-out.
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        Mean training loss per epoch.
    history_ : dict of list
        Per batch: ``loss``, ``forward_time`` (the fixed-point solve),
        ``backward_time`` (from the loss to the parameters' gradients: the
        adjoint and the products), ``forward_iter``, ``n_vjp``, ``n_fallback``.
    forward_converged_ : bool
        Whether every forward pass of the training reached ``forward_tol``.
    n_features_in_ : int
    """

    _parameter_constraints = {
        "hidden_size": [Interval(numbers.Integral, 1, None)],
        "backward": [Options(*BACKWARDS)],
        "spectral_norm": [Interval(numbers.Real, 0, None, closed="neither")],
        "init": [Options("gaussian", "orthogonal")],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None)],
        "tol": [Interval(numbers.Real, 0, None)],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None)],
        "forward_tol": [Interval(numbers.Real, 0, 1, closed="neither")],
        "forward_max_iter": [Interval(numbers.Integral, 1, None)],
        "memory": [Interval(numbers.Integral, 1, None)],
        "backward_tol": [Interval(numbers.Real, 0, 1, closed="neither")],
        "refine_iter": [Interval(numbers.Integral, 1, None)],
        "fallback_ratio": [Interval(numbers.Real, 0, None, closed="neither")],
        "random_state": ["no_validation"],
        "callback": ["no_validation"],
    }

    def __init__(self, *, hidden_size=32, backward="shine", spectral_norm=0.9, init="gaussian",
                 max_iter=50,
                 batch_size=64, learning_rate=1e-2, alpha=1e-4, tol=1e-4, n_iter_no_change=5,
                 forward_tol=1e-4, forward_max_iter=50, memory=30, backward_tol=1e-8,
                 refine_iter=5, fallback_ratio=1.8, random_state=None, callback=None):
        self.hidden_size = hidden_size
        self.backward = backward
        self.spectral_norm = spectral_norm
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.forward_tol = forward_tol
        self.forward_max_iter = forward_max_iter
        self.memory = memory
        self.backward_tol = backward_tol
        self.refine_iter = refine_iter
        self.fallback_ratio = fallback_ratio
        self.random_state = random_state
        self.callback = callback

    def _options(self):
        return {k: getattr(self, k) for k in ("forward_tol", "forward_max_iter", "memory",
                                              "backward_tol", "refine_iter",
                                              "fallback_ratio")}

    def fit(self, X, y):
        """Train on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : DEQClassifier
        """
        validate_params(self._parameter_constraints, self.get_params(deep=False),
                        owner=type(self).__name__)
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("This solver needs samples of at least 2 classes in the data, but "
                             f"the data contains only one class: {self.classes_[0]!r}.")
        rng = check_random_state(self.random_state)
        Y = np.eye(len(self.classes_))[yi]
        layer = TanhLayer()
        params = layer.init_params(X.shape[1], self.hidden_size, rng, self.spectral_norm,
                                   self.init)
        params["A"] = rng.standard_normal((self.hidden_size, len(self.classes_))) * 0.1
        params["c"] = np.zeros(len(self.classes_))
        self._train(layer, params, X, Y, rng)
        self.params_ = params
        return self

    def _train(self, layer, params, X, Y, rng):
        adam = _Adam(params, self.learning_rate)
        self.loss_curve_, self.forward_converged_ = [], True
        self.history_ = {k: [] for k in ("loss", "forward_time", "backward_time",
                                         "forward_iter", "n_vjp", "n_fallback")}
        best, stale, options = np.inf, 0, self._options()
        for epoch in range(self.max_iter):
            order, losses = rng.permutation(X.shape[0]), []
            for start in range(0, X.shape[0], self.batch_size):
                idx = order[start:start + self.batch_size]
                grads, (dA, dc), info = deq_gradient(
                    layer, params, (params["A"], params["c"]), X[idx], Y[idx], self.backward,
                    options)
                self._record(info, losses, params, X[idx], Y[idx], grads)
                grads.update(A=dA, c=dc)
                for k in ("W", "U", "A"):
                    grads[k] = grads[k] + self.alpha * params[k]
                adam.step(params, grads)
                _project(params, self.spectral_norm)
            self.loss_curve_.append(float(np.mean(losses)))
            self.n_iter_ = epoch + 1
            if self.loss_curve_[-1] > best - self.tol:
                stale += 1
            else:
                best, stale = min(best, self.loss_curve_[-1]), 0
            if stale >= self.n_iter_no_change:
                break
        else:
            warnings.warn(f"DEQClassifier: max_iter={self.max_iter} epochs ran out before the "
                          f"training loss settled (tol={self.tol}); increase max_iter.",
                          ConvergenceWarning, stacklevel=3)
        if not self.forward_converged_:
            warnings.warn(
                f"DEQClassifier: some forward passes did not reach forward_tol="
                f"{self.forward_tol} within forward_max_iter={self.forward_max_iter} Broyden "
                "iterations (the layer may not be a contraction: lower spectral_norm, or raise "
                "forward_max_iter / forward_tol); their gradients are inexact.",
                ConvergenceWarning, stacklevel=3)

    def _record(self, info, losses, params, x, Y, grads):
        if not np.isfinite(info["loss"]):
            raise FloatingPointError(
                "DEQClassifier: the training loss is not finite (diverging updates); lower "
                "learning_rate or spectral_norm.")
        losses.append(info["loss"])
        self.forward_converged_ &= info["forward_ok"]
        for k in self.history_:
            self.history_[k].append(info[k])
        if self.callback is not None:
            self.callback(dict(info, params=params, readout=(params["A"], params["c"]),
                               x=x, Y=Y, grads=grads))

    def decision_function(self, X):
        """Logits ``z* A + c``, shape (n_samples, n_classes) (two classes: the
        second column minus the first)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        p = self.params_
        fwd = _forward(TanhLayer(), p, X, self._options())
        if not fwd.success:
            warnings.warn(f"DEQClassifier: the forward pass of {int((~fwd.converged).sum())} "
                          f"samples did not reach forward_tol={self.forward_tol} within "
                          f"forward_max_iter={self.forward_max_iter}; raise forward_max_iter.",
                          ConvergenceWarning, stacklevel=2)
        logits = fwd.z @ p["A"] + p["c"]
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        d = self.decision_function(X)
        return softmax(np.c_[np.zeros_like(d), d] if d.ndim == 1 else d, axis=1)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, without underflow."""
        d = self.decision_function(X)
        return log_softmax(np.c_[np.zeros_like(d), d] if d.ndim == 1 else d, axis=1)

    def predict(self, X):
        """Predicted labels."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _project(params, bound):
    """``W`` scaled back to spectral norm ``bound`` when it is above."""
    norm = np.linalg.norm(params["W"], 2)
    if norm > bound:
        params["W"] *= bound / norm


class _Adam:
    """Adam (Kingma & Ba) on a dict of arrays, in place."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, beta1, beta2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        self.t += 1
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            m_hat = self.m[k] / (1 - self.b1 ** self.t)
            v_hat = self.v[k] / (1 - self.b2 ** self.t)
            params[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
