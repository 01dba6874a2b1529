"""Benchmark configurations: a TOML schema checked before anything runs.

A configuration has three tables::

    [benchmark]          datasets, schemes, seeds (required); fit_intercept, max_time, out
    [datasets.NAME]      loader (default NAME), test_size, max_time, the loader's parameters
    [schemes.NAME]       method ("hoag", "grid", "random", "sklearn-cv"), label, its parameters

Every key is checked against what it may be (unknown keys are rejected with the
list of valid ones and the closest match), every value against its type and
range, and a ``hoag`` scheme's settings by :class:`~hoag_shine.HoagOptions`
itself. :func:`run_settings` resolves what one (dataset, scheme, seed) run is
made with; its hash tells a finished run from one whose settings changed.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
import tomllib
from pathlib import Path

from ._params import (Instance, Interval, InvalidParameterError, Options, Pair, check_unknown,
                      validate_params)
from .outer import HoagOptions

__all__ = ["ConfigError", "load_config", "parse_seeds", "run_settings", "settings_hash",
           "METHODS", "LOADERS"]


class ConfigError(ValueError):
    """A benchmark configuration (or a command-line choice) that cannot be run."""


METHODS = ("hoag", "grid", "random", "sklearn-cv")

#: Loaders and the parameters each takes (beyond the split's).
LOADERS = {
    "20news": (), "20news-multiclass": (), "real-sim": (), "breast-cancer": (), "digits": (),
    "synthetic": ("n_samples", "n_features", "density", "noise", "random_state"),
}

_REAL, _INT = numbers.Real, numbers.Integral
_POS = Interval(_REAL, 0, None, closed="neither")
_POS_INT = Interval(_INT, 1, None)
_SEEDS = [Instance(list, name="a list of seeds"), Instance(str, name="a range such as '0-9'"),
          Interval(_INT, 0, None)]

_BENCHMARK = {
    "datasets": [Instance(list, name="a list of dataset names")],
    "schemes": [Instance(list, name="a list of scheme names")],
    "seeds": _SEEDS,
    "fit_intercept": [Options(True, False)],
    "max_time": [_POS],
    "out": [Instance(str, name="a folder path")],
}

_DATASET = {
    "loader": [Options(*LOADERS)],
    "test_size": [Interval(_REAL, 0, 1, closed="neither")],
    "max_time": [_POS],
    "n_samples": [Interval(_INT, 2, 10_000_000)],
    "n_features": [Interval(_INT, 1, 10_000_000)],
    "density": [Interval(_REAL, 0, 1, closed="right")],
    "noise": [Interval(_REAL, 0, None)],
    "random_state": [Interval(_INT, 0, None)],
}

_COMMON = {"method": [Options(*METHODS)], "label": [Instance(str, name="a string")]}

_SEARCH = {
    **_COMMON,
    "n_points": [_POS_INT],
    "bounds": [Pair(Interval(_REAL))],
    "tol": [_POS],
    "maxcor": [_POS_INT],
    "max_inner_iter": [_POS_INT],
    "max_time": [_POS],
}

_SCHEMES = {
    "hoag": {**_COMMON, "alpha0": [Interval(_REAL)], "penalty": [Options("per-class", "shared")],
             **{k: ["no_validation"] for k in HoagOptions.names()}},
    "grid": _SEARCH,
    "random": {**_SEARCH, "random_state": [Interval(_INT, 0, None)]},
    "sklearn-cv": {**_COMMON, "Cs": [_POS_INT], "cv": [Interval(_INT, 2, None)], "tol": [_POS],
                   "max_iter": [_POS_INT],
                   "scoring": [Options("neg_log_loss", "accuracy", "roc_auc")]},
}


def _check_table(table, allowed, where):
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r}.")
    try:
        check_unknown(table, allowed, what=f"key in {where}")
        validate_params(allowed, table)
    except InvalidParameterError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_hoag_scheme(name, scheme):
    settings = {k: v for k, v in scheme.items() if k in HoagOptions.names()}
    if "bounds" in settings and isinstance(settings["bounds"], list):
        settings["bounds"] = tuple(settings["bounds"])
    try:
        HoagOptions.make(**settings)
    except (InvalidParameterError, ValueError, TypeError) as exc:
        raise ConfigError(f"[schemes.{name}]: {exc}") from None


def _read_toml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"no benchmark configuration at {path}.")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a TOML file (e.g. {path}/quick.toml).")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}.") from None


def load_config(path) -> dict:
    """Read a benchmark configuration and check all of it.

    Returns
    -------
    config : dict
        The TOML tables, with ``benchmark["seeds"]`` as a list of ints and
        ``"_path"`` the file it came from.

    Raises
    ------
    ConfigError
        With one sentence saying what is wrong and where.
    """
    path = Path(path)
    config = _read_toml(path)
    check_unknown_top = set(config) - {"benchmark", "datasets", "schemes"}
    if check_unknown_top:
        raise ConfigError(f"{path}: unknown table(s) {sorted(check_unknown_top)}; a "
                          "configuration has [benchmark], [datasets.NAME] and [schemes.NAME].")
    bench = config.get("benchmark")
    if bench is None:
        raise ConfigError(f"{path}: a [benchmark] table is required.")
    _check_table(bench, _BENCHMARK, f"{path}: [benchmark]")
    for key in ("datasets", "schemes", "seeds"):
        if key not in bench:
            raise ConfigError(f"{path}: [benchmark] needs a '{key}' entry.")
    bench["seeds"] = parse_seeds(bench["seeds"])
    schemes = config.setdefault("schemes", {})
    for name in [*bench["datasets"], *bench["schemes"], *schemes, *config.get("datasets", {})]:
        _check_name(path, name)
    for name in bench["schemes"]:
        if name not in schemes:
            raise ConfigError(f"{path}: scheme {name!r} is listed but has no [schemes.{name}].")
    for name, scheme in schemes.items():
        method = scheme.get("method") if isinstance(scheme, dict) else None
        if method not in METHODS:
            raise ConfigError(f"{path}: [schemes.{name}] method must be one of "
                              f"{', '.join(METHODS)}; got {method!r}.")
        _check_table(scheme, _SCHEMES[method], f"{path}: [schemes.{name}]")
        if method == "hoag":
            _check_hoag_scheme(name, scheme)
    datasets = config.setdefault("datasets", {})
    for name in bench["datasets"]:
        dataset_spec(config, name)
    for name, entry in datasets.items():
        _check_table(entry, _DATASET, f"{path}: [datasets.{name}]")
        loader = entry.get("loader", name)
        extra = set(entry) - {"loader", "test_size", "max_time"} - set(LOADERS.get(loader, ()))
        if extra:
            raise ConfigError(f"{path}: [datasets.{name}] loader {loader!r} takes no "
                              f"parameter {sorted(extra)[0]!r}; it takes "
                              f"{list(LOADERS.get(loader, ())) or 'none'}.")
    config["_path"] = str(path)
    return config


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _check_name(path, name):
    """Dataset and scheme names become file names: letters, digits, ``_ . + -``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(f"{path}: {name!r} cannot name a dataset or scheme: use letters, "
                          "digits and _ . + - (it becomes part of file names under --out).")


def dataset_spec(config, name):
    """``(loader, params)`` of a dataset: ``[datasets.NAME]`` may name its ``loader``
    (default: NAME itself), the ``test_size`` of its split, a ``max_time`` that
    overrides the benchmark's, and the loader's parameters."""
    entry = config.get("datasets", {}).get(name, {})
    params = {k: v for k, v in entry.items() if k not in ("loader", "test_size", "max_time")}
    loader = entry.get("loader", name)
    if loader not in LOADERS:
        raise ConfigError(f"Unknown dataset {name!r}: give it a [datasets.{name}] entry with a "
                          f"'loader' among {', '.join(LOADERS)}, or use one of those names.")
    return loader, params


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_seeds(value) -> list[int]:
    """Seeds from a list, an int, or a string such as ``"0-9"`` or ``"0,3,5"``.

    Duplicates are dropped (first occurrence kept).

    Raises
    ------
    ConfigError
        For anything that is not non-negative integers or increasing ranges.
    """
    parts = value if isinstance(value, list) else [value]
    seeds = []
    for part in parts:
        if isinstance(part, bool):
            raise ConfigError(f"seeds must be non-negative integers; got {part!r}.")
        if isinstance(part, numbers.Integral):
            seeds.append(int(part))
            continue
        if not isinstance(part, str):
            raise ConfigError(f"seeds must be non-negative integers or ranges such as '0-9'; "
                              f"got {part!r}.")
        for item in part.split(","):
            item = item.strip()
            match = _RANGE.match(item)
            if match:
                lo, hi = int(match[1]), int(match[2])
                if lo > hi:
                    raise ConfigError(f"seed range {item!r} runs backwards; write it as "
                                      f"'{hi}-{lo}'.")
                seeds.extend(range(lo, hi + 1))
            elif item.isdigit():
                seeds.append(int(item))
            else:
                raise ConfigError(f"{item!r} is not a seed: use non-negative integers, "
                                  "ranges such as '0-9', or lists such as '0,2,5'.")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"seeds must be non-negative; got {seeds}.")
    if not seeds:
        raise ConfigError(f"no seeds in {value!r}; use e.g. '0-9' or '0,1,2'.")
    return list(dict.fromkeys(seeds))


def run_settings(config, dataset, scheme, seed) -> dict:
    """Everything one run is made with: the dataset entry, the scheme, the seed and
    the benchmark settings that reach it (JSON-serialisable)."""
    bench = config["benchmark"]
    entry = config.get("datasets", {}).get(dataset, {})
    return {
        "dataset": dataset, "dataset_settings": dict(entry), "scheme": scheme,
        "scheme_settings": dict(config["schemes"][scheme]), "seed": int(seed),
        "fit_intercept": bench.get("fit_intercept", False),
        "max_time": entry.get("max_time", bench.get("max_time")),
    }


def settings_hash(settings: dict) -> str:
    """A short, stable hash of :func:`run_settings`."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
