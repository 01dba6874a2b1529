"""The outer loop's settings: one object, one default each, validated once."""

import ast
import dataclasses
import inspect
import pathlib

import numpy as np
import pytest
from sklearn.model_selection import PredefinedSplit

import hoag_shine
from hoag_shine import HoagOptions, LogisticProblem, ShineLogisticRegressionCV, ShineRidgeCV, hoag
from hoag_shine._params import InvalidParameterError
from conftest import make_classification_data

PACKAGE = pathlib.Path(hoag_shine.__file__).parent


def test_estimators_share_every_default_with_hoag():
    defaults = HoagOptions()
    for est in (ShineLogisticRegressionCV(), ShineRidgeCV()):
        params = est.get_params()
        for name in HoagOptions.names():
            if name == "bounds":
                continue
            assert params[name] == getattr(defaults, name), (type(est).__name__, name)
    # hoag's keyword settings are the options' fields and nothing else.
    assert "maxcor" in HoagOptions.names() and "memory" not in HoagOptions.names()


def test_estimator_with_defaults_follows_the_hoag_path():
    X, y = make_classification_data(300, 12, seed=11, noise=1.5)
    n_train = 200
    cv = PredefinedSplit(np.r_[np.full(n_train, -1), np.zeros(len(y) - n_train, dtype=int)])
    clf = ShineLogisticRegressionCV(cv=cv, refit=False).fit(X, y)
    # (the estimator centres the features on the training part's means, implicitly)
    prob = LogisticProblem(X[:n_train], y[:n_train], X[n_train:], y[n_train:],
                           fit_intercept=True,
                           feature_offset=X[:n_train].T @ np.full(n_train, 1.0 / n_train))
    res = hoag(prob)
    path = np.array([r["alpha"][0] for r in res.trace])
    assert len(path) > 3 and res.scan is not None
    np.testing.assert_array_equal(clf.history_["alpha"], path)
    np.testing.assert_array_equal(clf.history_["C"], np.exp(-path))
    assert clf.alpha_ == res.alpha[0]
    # Without the scan, the data-scaled default given explicitly is the same start.
    plain = hoag(prob, scan=False)
    again = hoag(prob, prob.default_alpha())
    assert again.scan is None
    np.testing.assert_array_equal([r["alpha"][0] for r in again.trace],
                                  [r["alpha"][0] for r in plain.trace])


def test_options_object_and_keywords_are_the_same_settings():
    X, y = make_classification_data(200, 10, seed=3)
    prob = LogisticProblem(X[:150], y[:150], X[150:], y[150:])
    opts = HoagOptions(hypergradient="cg", max_iter=5, tol=0, value_tol=0)
    a = hoag(prob, [0.0], options=opts)
    b = hoag(prob, [0.0], hypergradient="cg", max_iter=5, tol=0, value_tol=0)
    np.testing.assert_array_equal(a.trace_columns()["alpha"], b.trace_columns()["alpha"])
    # Keywords replace single settings of an options object.
    c = hoag(prob, [0.0], options=opts, max_iter=3)
    assert c.nit == 3 and c.options.hypergradient == "cg"
    assert opts.replace(max_iter=3) == c.options


@pytest.mark.parametrize("settings,match", [
    ({"max_itr": 3}, "Did you mean 'max_iter'"),
    ({"maxiter": 3}, "max_iter"),
    ({"tol": float("nan")}, "tol must be"),
    ({"tol": -1.0}, "tol must be"),
    ({"max_iter": 2.7}, "max_iter must be an int"),
    ({"max_iter": 0}, "max_iter"),
    ({"warm_memory": "yes"}, "warm_memory must be one of True, False"),
    ({"eps0": 1.0}, "eps0"),
    ({"decay": 0.0}, "decay"),
    ({"bounds": (np.nan, 2.0)}, "bounds must be finite"),
    ({"bounds": (1.0, -1.0)}, "lower < upper"),
    ({"max_inner_iter": 0}, "max_inner_iter"),
    ({"hypergradient": "newton"}, "Unknown hypergradient 'newton'"),
    ({"hypergradient": "cg", "hypergradient_params": {"max_iters": 3}}, "Invalid parameters"),
    ({"hypergradient": "shine-opa", "inner_solver": "scipy"}, "inner_solver='numpy'"),
    ({"max_time": -1.0}, "max_time"),
])
def test_every_setting_is_validated_once_with_a_sentence(settings, match):
    with pytest.raises((ValueError, TypeError), match=match):
        HoagOptions.make(**settings)
    X, y = make_classification_data(60, 4, seed=0)
    prob = LogisticProblem(X[:40], y[:40], X[40:], y[40:])
    with pytest.raises(InvalidParameterError, match=match):
        hoag(prob, [0.0], **settings)


def test_options_are_frozen():
    opts = HoagOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.tol = 1.0


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_layout_boundaries():
    cli = _imports(PACKAGE / "cli.py")
    assert not any("problems" in n or "datasets" in n for n in cli), cli
    est = {n for n in _imports(PACKAGE / "estimators.py") if n.startswith(".")}
    assert est <= {".outer", ".outer.tune", ".problems", "._params", "._utils", "._cv"}, est
    plotting = {n for n in _imports(PACKAGE / "plotting.py") if n.startswith(".")}
    assert ".benchmark" not in plotting


def _code_start(node):
    """The first line of a function's code, after its docstring."""
    body = node.body
    doc = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
           and isinstance(body[0].value.value, str))
    return body[1].lineno if doc and len(body) > 1 else body[0].lineno


def test_no_function_body_over_60_lines_and_no_class_over_250():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - _code_start(node) + 1 > 60:
                    long.append(f"{path.name}:{node.name}")
            elif isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 250:
                long.append(f"class {path.name}:{node.name}")
    assert not long, long


def test_the_estimators_hold_no_tuning_logic():
    # They validate, split and call the tuning module: no outer loop or inner fit.
    calls = {node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
             for node in ast.walk(ast.parse((PACKAGE / "estimators.py").read_text()))
             if isinstance(node, ast.Call)}
    assert not calls & {"hoag", "run_hoag", "fit_inner", "search_penalty", "final_fit"}, calls


def test_no_decision_reads_a_message():
    # No code tests the text of a message (an exception's or a stop's): a `... in
    # str(exc)` or `... in message` comparison.
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn))
                                                     for op in node.ops):
                right = ast.unparse(node.comparators[0])
                if "message" in right or right.startswith("str("):
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders


def test_hoag_signature_is_small():
    params = inspect.signature(hoag).parameters
    assert list(params)[:2] == ["problem", "alpha0"]
    assert len(params) <= 7
