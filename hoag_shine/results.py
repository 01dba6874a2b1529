"""Benchmark results on disk: the columns, atomic writers and the reader.

The benchmark runner writes each finished run as its own CSV file, atomically
(a temporary file renamed into place), and concatenates them into
``results.csv``; plotting and the performance report read them back. Files
are created with the permissions the user's umask gives (``0666 & ~umask``),
as ``open()`` would.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["COLUMNS", "ALPHA_COLUMNS", "atomic_write_csv", "atomic_write_text", "read_results",
           "read_rows", "write_run", "read_run"]

COLUMNS = (
    "dataset", "scheme", "label", "seed", "iteration", "time", "alpha", "log_C",
    "validation_loss", "heldout_loss", "forward_time", "backward_time", "inner_iter",
    "n_hvp", "accepted", "n_hyper",
)

#: The long table of every hyperparameter (one row per iteration and hyperparameter).
ALPHA_COLUMNS = ("dataset", "scheme", "seed", "iteration", "index", "alpha")

#: Columns that results written before they existed may lack (read as 1).
OPTIONAL_COLUMNS = ("n_hyper",)

_TEXT_COLUMNS = ("dataset", "scheme", "label")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write, *, newline=None):
    """Write through ``write(file)`` into a temporary file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not "*.csv": a run killed mid-write leaves this file behind, and nothing
    # that lists the finished runs may take it for one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; follow the umask instead
        with os.fdopen(fd, "w", newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_csv(path, rows, columns=COLUMNS):
    """Write ``rows`` (dicts) as a CSV file with a header, atomically."""
    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    _atomic_write(path, write, newline="")


def atomic_write_text(path, text: str):
    """Write ``text`` to ``path`` atomically."""
    _atomic_write(path, lambda f: f.write(text))


def read_rows(path) -> list[dict]:
    """The rows of a CSV file, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_results(path):
    """Read a results CSV (or a benchmark folder) into a dict of numpy columns."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"No results at {path}; run 'hoag-shine bench' first.")
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path} holds no results.")
    missing = set(COLUMNS) - set(OPTIONAL_COLUMNS) - set(rows[0])
    if missing:
        raise ValueError(f"{path} is not a benchmark results file (missing {sorted(missing)}).")
    cols = {}
    for c in COLUMNS:
        if c not in rows[0]:  # an optional column (checked above): one hyperparameter
            cols[c] = np.ones(len(rows))
            continue
        vals = [r.get(c, "") for r in rows]
        if c in _TEXT_COLUMNS:
            cols[c] = np.array(vals, dtype=object)
        elif c == "accepted":
            cols[c] = np.array([v == "True" for v in vals])
        else:
            cols[c] = np.array([float(v) if v not in ("", "nan") else np.nan for v in vals])
    return cols


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_run(path, rows, alpha_rows, settings, settings_hash):
    """Write one finished run: its rows (``path``), its hyperparameters' long table
    (``path`` with ``.alphas.csv``) and, last, a record (``.json``) of the settings
    it was made with and of the files' checksums. A run is finished only when
    :func:`read_run` finds all three consistent."""
    path = Path(path)
    alphas = path.with_suffix(".alphas.csv")
    atomic_write_csv(path, rows)
    atomic_write_csv(alphas, alpha_rows, ALPHA_COLUMNS)
    meta = {"settings_hash": settings_hash, "settings": settings, "rows": len(rows),
            "sha256": _sha256(path), "alphas_sha256": _sha256(alphas)}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, default=str))


def read_run(path, settings_hash=None):
    """The rows of a finished run, or why it is not finished.

    Returns
    -------
    rows, alpha_rows, reason : list, list, str or None
        ``reason`` is ``None`` for a finished run made with ``settings_hash``
        (when given); otherwise it says what is missing, changed or damaged,
        and the rows are empty.
    """
    path = Path(path)
    meta_path = path.with_suffix(".json")
    alphas = path.with_suffix(".alphas.csv")
    if not meta_path.exists():
        return [], [], "not run yet" if not path.exists() else "unfinished (no record)"
    try:
        meta = json.loads(meta_path.read_text())
        if _sha256(path) != meta["sha256"] or _sha256(alphas) != meta["alphas_sha256"]:
            return [], [], "damaged (its files changed since it finished)"
        rows, alpha_rows = read_rows(path), read_rows(alphas)
    except (OSError, ValueError, KeyError, csv.Error) as exc:
        return [], [], f"unreadable ({exc})"
    if len(rows) != meta.get("rows") or (rows and tuple(rows[0]) != COLUMNS):
        return [], [], "incomplete"
    if settings_hash is not None and meta.get("settings_hash") != settings_hash:
        return [], [], "made with other settings"
    return rows, alpha_rows, None
