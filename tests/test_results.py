"""Results files: atomic writers, the user's umask, the reader."""

import os
import stat

import numpy as np
import pytest

from hoag_shine.results import COLUMNS, atomic_write_csv, atomic_write_text, read_results


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_csv(tmp_path / "a.csv", [])
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    for name in ("a.csv", "b.json"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
    assert not list(tmp_path.glob(".tmp-*"))


def test_read_results_round_trip_and_errors(tmp_path):
    row = {c: "" for c in COLUMNS}
    row.update(dataset="d", scheme="s", label="S", seed=0, iteration=0, time=1.5, alpha=-2.0,
               log_C=2.0, validation_loss=3.0, heldout_loss="nan", forward_time=1.0,
               backward_time=0.5, inner_iter=4, n_hvp=0, accepted=True, alphas="-2")
    atomic_write_csv(tmp_path / "results.csv", [row])
    cols = read_results(tmp_path)
    assert cols["scheme"][0] == "s" and cols["time"][0] == 1.5 and cols["accepted"][0]
    assert np.isnan(cols["heldout_loss"][0])
    with pytest.raises(FileNotFoundError, match="hoag-shine bench"):
        read_results(tmp_path / "nothing")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a benchmark results file"):
        read_results(tmp_path / "bad.csv")
