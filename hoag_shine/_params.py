"""Declarative checks of settings: one table of constraints, one validation pass.

The outer loop's settings (:class:`~hoag_shine.outer.HoagOptions`) and the
estimators' constructor parameters are described by dicts ``name -> list of
constraints``, in the spirit of scikit-learn's ``_parameter_constraints``
(whose machinery is private to scikit-learn): a value is valid when it meets
one constraint of its list. :func:`validate_params` checks a whole dict and
raises :class:`InvalidParameterError` (a ``ValueError`` and a ``TypeError``)
with a sentence that names the parameter, what it got and what it accepts.
"""

from __future__ import annotations

import difflib
import math
import numbers

__all__ = ["InvalidParameterError", "Interval", "Options", "Instance", "Callable", "Pair",
           "validate_params", "check_unknown"]


class InvalidParameterError(ValueError, TypeError):
    """A setting of the wrong type, outside its range, or not finite."""


class Interval:
    """A real (or integer) number in a range; never NaN or infinite unless allowed.

    Parameters
    ----------
    kind : {numbers.Real, numbers.Integral}
    low, high : float or None
        Bounds (``None``: unbounded on that side).
    closed : {"both", "left", "right", "neither"}
    allow_inf : bool
        Whether ``inf`` (within the range) is accepted.
    """

    def __init__(self, kind, low=None, high=None, *, closed="both", allow_inf=False):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed
        self.allow_inf = allow_inf

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not self.allow_inf):
            return False
        lo_ok = (self.low is None or v > self.low
                 or (v == self.low and self.closed in ("both", "left")))
        hi_ok = (self.high is None or v < self.high
                 or (v == self.high and self.closed in ("both", "right")))
        return lo_ok and hi_ok

    def __str__(self):
        what = "an int" if self.kind is numbers.Integral else "a finite real number"
        if self.low is None and self.high is None:
            return what
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{what} in the range {left}{lo}, {hi}{right}"


class Options:
    """One of a set of values (strings, booleans)."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, value) -> bool:
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)

    def __str__(self):
        return "one of " + ", ".join(repr(v) for v in self.values)


class Instance:
    """An instance of the given type(s)."""

    def __init__(self, *types, name=None):
        self.types, self.name = types, name

    def accepts(self, value) -> bool:
        return isinstance(value, self.types) and not (
            isinstance(value, bool) and bool not in self.types)

    def __str__(self):
        return self.name or "an instance of " + " or ".join(t.__name__ for t in self.types)


class Callable:
    """Any callable."""

    def accepts(self, value) -> bool:
        return callable(value)

    def __str__(self):
        return "a callable"


class Pair:
    """A pair ``(low, high)`` of finite numbers with ``low < high`` (and each valid)."""

    def __init__(self, item: Interval):
        self.item = item

    def accepts(self, value) -> bool:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return False
        return all(self.item.accepts(v) for v in value) and value[0] < value[1]

    def __str__(self):
        return (f"a tuple (min, max) of two numbers with min < max, each {self.item} (an "
                "array is not a tuple: write (lo, hi))")


def _accepts(constraint, value) -> bool:
    if constraint is None:
        return value is None
    return constraint.accepts(value)


def validate_params(constraints: dict, params: dict, *, owner: str = "") -> None:
    """Check every entry of ``params`` against its list of constraints.

    Raises
    ------
    InvalidParameterError
        For the first parameter that meets none of its constraints.
    """
    for name, value in params.items():
        allowed = constraints.get(name)
        if allowed is None or "no_validation" in allowed:
            continue
        if not any(_accepts(c, value) for c in allowed):
            what = " or ".join("None" if c is None else str(c) for c in allowed)
            where = f" ({owner})" if owner else ""
            raise InvalidParameterError(f"{name} must be {what}; got {value!r}{where}.")


def check_unknown(names, known, *, what="setting") -> None:
    """Reject names not in ``known``, suggesting the closest known one."""
    unknown = [n for n in names if n not in known]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InvalidParameterError(
        f"Unknown {what} {name!r}.{hint} Valid ones: {', '.join(sorted(known))}.")


def parameter_docs(doc: str, names) -> str:
    """The entries of ``names`` (in that order) in the numpydoc ``Parameters`` section
    of ``doc``, as they stand there (one source for settings documented twice)."""
    lines = doc.expandtabs().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries, current = {}, None
    for line in lines[start:]:
        stripped = line.strip()
        if stripped and len(line) - len(line.lstrip()) == indent:
            if set(stripped) <= set("-") or stripped in ("Returns", "Attributes", "Notes"):
                break
            current = stripped.split(" :")[0].split(":")[0].strip()
            entries[current] = [line]
        elif current is not None:
            entries[current].append(line)
    missing = [n for n in names if n not in entries]
    if missing:
        raise KeyError(f"no documentation for {missing}")
    return "\n".join("\n".join(entries[n]).rstrip() for n in names) + "\n"
