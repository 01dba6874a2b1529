"""The estimators' splits: the splitter, its parameters (metadata routing), the checks."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn import get_config
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit, check_cv
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing

from ._params import InvalidParameterError

__all__ = ["check_splits", "make_cv", "metadata_router", "split_params"]


def make_cv(cv, y, classifier, validation_fraction=0.2, random_state=None):
    """The splitter: 5 folds by default (stratified for a classifier), ``"holdout"``
    for one split of ``validation_fraction``, or what ``cv`` says."""
    if isinstance(cv, str):
        if cv != "holdout":
            raise InvalidParameterError(
                f"cv must be None, an int, a splitter, an iterable of splits or "
                f"'holdout'; got {cv!r}.")
        n_val = int(np.ceil(validation_fraction * len(y)))
        n_min = len(np.unique(y)) if classifier else 1
        if len(y) - n_val < n_min or (classifier and n_val < n_min):
            raise ValueError(
                f"Too few samples ({len(y)}) for a validation split of validation_fraction="
                f"{validation_fraction}: the training part would be empty"
                + (" or miss a class" if classifier else "")
                + ". Provide more data or change validation_fraction.")
        split = StratifiedShuffleSplit if classifier else ShuffleSplit
        return split(n_splits=1, test_size=n_val, random_state=random_state)
    if cv is not None and not isinstance(cv, numbers.Integral) and not hasattr(cv, "split"):
        if not hasattr(cv, "__iter__"):
            raise InvalidParameterError(
                f"cv must be None, an int, a splitter, an iterable of (train, validation) "
                f"index pairs or 'holdout'; got {type(cv).__name__}.")
        cv = [_pair(split, k) for k, split in enumerate(cv)]
    if cv is None:  # 5 folds, fewer on tiny data (RidgeCV's default, leave-one-out, fits 2)
        cv = min(5, len(y)) if not classifier else 5
    return check_cv(cv, y, classifier=classifier)


def metadata_router(estimator):
    """How ``fit``'s metadata are routed: ``sample_weight`` to the estimator,
    ``groups`` (and other split parameters) to the splitter."""
    router = MetadataRouter(owner=type(estimator).__name__).add_self_request(estimator)
    cv = estimator.cv
    # (an iterable of splits has no parameters to route, and a generator would be used
    # up by check_cv here)
    if cv is None or isinstance(cv, numbers.Integral) or hasattr(cv, "split"):
        router.add(splitter=check_cv(5 if cv is None else cv),
                   method_mapping=MethodMapping().add(caller="fit", callee="split"))
    return router


def split_params(estimator, sample_weight, params):
    """The parameters of ``cv.split``: routed when metadata routing is on, else
    ``groups`` only (as scikit-learn's search estimators accept it)."""
    if get_config().get("enable_metadata_routing", False):
        routed = process_routing(estimator, "fit", sample_weight=sample_weight, **params)
        return dict(routed.splitter.split) if "splitter" in routed else {}
    unknown = set(params) - {"groups"}
    if unknown:
        raise ValueError(
            f"fit() got unexpected parameter(s) {sorted(unknown)}; without metadata "
            "routing only groups is passed to the splitter (enable routing with "
            "sklearn.set_config(enable_metadata_routing=True) to route others).")
    return {k: v for k, v in params.items() if v is not None}


def check_splits(cv, X, y, classifier, params):
    """The splits of ``cv``, checked: indices in range, non-empty parts, and (for a
    classifier) two classes or more in each training part."""
    try:
        splits = [_pair(split, k, n=len(y)) for k, split in enumerate(cv.split(X, y, **params))]
    except ValueError as exc:
        raise ValueError(f"The cross-validation split failed: {exc} Fix: "
                         f"{_split_hint(cv, y, classifier, params)}.") from None
    if not splits:
        raise ValueError("cv gave no split; give at least one (train, validation) pair.")
    n = len(y)
    for k, (train, val) in enumerate(splits):
        for part, idx in (("training", train), ("validation", val)):
            if len(idx) == 0:
                raise ValueError(f"The {part} part of split {k} is empty; provide more "
                                 "data or change the split.")
            if not np.issubdtype(idx.dtype, np.integer) or idx.min() < -n or idx.max() >= n:
                raise ValueError(f"The {part} part of split {k} holds indices that are not "
                                 f"integers in [0, {n}); cv must index the rows of X.")
        if classifier and len(np.unique(y[train])) < 2:
            raise ValueError(
                f"The training part of split {k} holds one class only; each training "
                "part needs two classes or more. Use a stratified splitter, more data, "
                "or fewer folds.")
    return splits


def _pair(split, k, n=None):
    """One split as a ``(train, validation)`` pair of index arrays."""
    try:
        train, val = split
    except (TypeError, ValueError):
        raise ValueError(f"split {k} of cv is not a (train, validation) pair of index arrays "
                         f"(got {type(split).__name__} of length "
                         f"{len(split) if hasattr(split, '__len__') else '?'})") from None
    return np.asarray(train), np.asarray(val)


def _split_hint(cv, y, classifier, params) -> str:
    """What to change when ``cv.split`` refused the data, from what it needs."""
    routing = getattr(cv, "get_metadata_routing", None)
    wants_groups = False
    if routing is not None:
        requests = getattr(routing(), "split", None)
        wants_groups = bool(requests is not None and requests.requests.get("groups"))
    if wants_groups and params.get("groups") is None:
        return f"{type(cv).__name__} splits by groups: pass groups=... to fit"
    if wants_groups:
        return ("give one group label per sample, with more distinct groups than "
                f"{type(cv).__name__} has splits")
    n_splits = getattr(cv, "n_splits", None)
    if classifier and n_splits is not None:
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() < n_splits:
            return (f"the smallest class has {counts.min()} member(s), fewer than the "
                    f"{n_splits} splits: use fewer splits (cv=...) or more data per class")
    if n_splits is not None and len(y) < n_splits:
        return f"{len(y)} samples cannot make {n_splits} splits: use fewer splits"
    return "check cv's parameters (e.g. random_state, test_size) against the data"
