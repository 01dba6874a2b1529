"""The benchmark command as a user meets it: validated configs, honest resume, file modes,
figures, backends."""

import os
import stat

import numpy as np
import pytest

from hoag_shine.cli import main
from hoag_shine.plotting import plot_convergence, scheme_styles
from hoag_shine.results import read_results
from test_cli import TINY, _fails

SMALL = TINY.replace('schemes = ["shine", "cg", "grid", "random", "sklearn-cv"]',
                     'schemes = ["shine", "grid"]').replace("n_samples = 600", "n_samples = 300")


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def _run(capsys, argv):
    main(argv)
    return capsys.readouterr()


@pytest.mark.parametrize("edit,match", [
    (("max_time = 5", "max_tme = 5"), r"max_tme.*Did you mean 'max_time'"),
    (("max_iter = 6", "max_iterr = 6"), r"max_iterr.*max_iter"),
    (("n_points = 4", "n_point = 4", 1), r"n_point.*n_points"),
    (("n_samples = 300", "n_sample = 300"), r"n_sample"),
    (("seeds = [0, 1]", 'seeds = "0-1-2"'), r"not a seed"),
    (("seeds = [0, 1]", "seeds = [0, -1]"), r"seed"),
    (("seeds = [0, 1]", "seeds = [0, 1.5]"), r"seed"),
    (("decay = 0.78", "decay = 7.8"), r"decay"),
    (("n_points = 4", "n_points = 0", 1), r"n_points"),
    (("[benchmark]", "[benchmark"), r"not valid TOML"),
])
def test_bad_configs_fail_before_anything_runs(tmp_path, capsys, edit, match):
    old, new, *count = edit
    cfg = tmp_path / "bad.toml"
    cfg.write_text(SMALL.replace(old, new, *count) if "max_time" not in old else
                   SMALL.replace("fit_intercept = false", "fit_intercept = false\n" + new))
    out = tmp_path / "out"
    _fails(capsys, ["bench", "--config", str(cfg), "--out", str(out)], match)
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("argv,match", [
    (["bench", "--seeds", "a-b"], "not a seed"),
    (["bench", "--seeds", "-1"], "seed"),
    (["bench", "--seeds", "0-2-4"], "not a seed"),
    (["bench", "--seeds", "1.5"], "not a seed"),
    (["bench", "--n-jobs", "0"], "at least 1"),
    (["inversion", "--runs", "0"], "at least 1"),
    (["bench", "--scheduler", "tcp://x:1"], "--backend dask"),
    (["nope"], "invalid choice"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, small, argv, match):
    if argv[0] == "bench":
        argv = argv + ["--config", str(small), "--out", str(tmp_path / "o")]
    _fails(capsys, argv, match)


def test_config_that_is_a_folder(tmp_path, capsys):
    _fails(capsys, ["bench", "--config", str(tmp_path)], "is a folder")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError):
        main(["--debug", "bench", "--config", str(tmp_path)])


def test_resume_reruns_changed_truncated_and_missing_runs(tmp_path, capsys, small):
    out = tmp_path / "out"
    argv = ["bench", "--config", str(small), "--out", str(out)]
    assert "4 runs planned, 0 already done" in _run(capsys, argv).err
    assert "4 runs planned, 4 already done" in _run(capsys, argv).err
    # A scheme's setting changes: its runs are done again, the others kept.
    small.write_text(SMALL.replace("max_iter = 6", "max_iter = 3"))
    err = _run(capsys, argv).err
    assert "rerunning 2 run(s) made with other settings" in err
    assert "4 runs planned, 2 already done" in err
    cols = read_results(out)
    assert cols["iteration"][cols["scheme"] == "shine"].max() <= 2
    # A truncated run file counts as not done; its partial rows never reach results.
    victim = out / "runs" / "tiny__grid__seed1.csv"
    lines = victim.read_text().splitlines(keepends=True)
    victim.write_text("".join(lines[:-2]))
    err = _run(capsys, argv).err
    assert "rerunning 1 run(s) damaged" in err and "4 runs planned, 3 already done" in err
    cols = read_results(out)
    m = (cols["scheme"] == "grid") & (cols["seed"] == 1)
    assert m.sum() == 4
    # A run whose record is gone is unfinished.
    (out / "runs" / "tiny__shine__seed0.json").unlink()
    assert "rerunning 1 run(s) unfinished" in _run(capsys, argv).err


def test_duplicated_seeds_and_schemes_run_once(tmp_path, capsys, small):
    out = tmp_path / "out"
    err = _run(capsys, ["bench", "--config", str(small), "--out", str(out), "--seeds", "0,0",
                        "--schemes", "grid", "grid"]).err
    assert "1 runs planned" in err
    cols = read_results(out)
    assert len(cols["scheme"]) == 4


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_output_files_follow_the_umask(tmp_path, capsys, small, umask):
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        _run(capsys, ["bench", "--config", str(small), "--out", str(out), "--seeds", "0"])
    finally:
        os.umask(old)
    files = [out / n for n in ("results.csv", "alphas.csv", "benchmark.json", "summary.md",
                               "summary.csv", "convergence.png")]
    files += list((out / "runs").iterdir())
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_figures_keep_colours_and_draw_at_most_six_curves_a_panel(tmp_path):
    from matplotlib.colors import to_rgba

    schemes = ["hoag-cg", "shine", "shine-tight", "shine-refine", "jacobian-free",
               "truncated-cg", "hoag-paper", "shine-paper", "grid", "random", "sklearn-cv",
               "extra-1", "extra-2"]
    styles = scheme_styles(schemes)
    shipped = schemes[:11]
    assert len({to_rgba(styles[s][0]) for s in shipped}) == len(shipped)
    # A scheme's colour does not depend on which others are drawn.
    for subset in (["shine"], ["grid", "shine"], ["extra-2", "shine", "hoag-cg"]):
        for s in subset:
            assert scheme_styles(subset)[s] == styles[s]
    rows = []
    rng = np.random.default_rng(0)
    for s in schemes:
        for seed in range(6):
            for it in range(4):
                rows.append(dict(dataset="d", scheme=s, label=s, seed=seed, iteration=it,
                                 time=0.1 * (it + 1), heldout_loss=100 + rng.random() * 5))
    cols = {k: np.array([r[k] for r in rows], dtype=object if k in ("dataset", "scheme",
                                                                     "label") else float)
            for k in rows[0]}
    fig = plot_convergence(cols, tmp_path / "f.png")
    drawn = {}
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if "target" not in ln.get_label()]
        assert len(lines) <= 6
        drawn.update({ln.get_label(): ln for ln in lines})
        assert ax.get_yscale() == "log" and "lower is better" in ax.get_ylabel()
        assert "6 seeds" in ax.get_title()
    assert set(drawn) == set(schemes)
    for s in schemes:
        assert to_rgba(drawn[s].get_color()) == to_rgba(styles[s][0])
    one = {k: v[:4] for k, v in cols.items()}  # one seed: "1 seed", not "1 seeds"
    fig = plot_convergence(one, tmp_path / "g.png")
    assert "1 seed" in fig.texts[0].get_text() and "1 seeds" not in fig.texts[0].get_text()


def test_library_never_switches_the_matplotlib_backend(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    rows = dict(dataset=np.array(["d"] * 3, dtype=object), scheme=np.array(["s"] * 3, dtype=object),
                label=np.array(["s"] * 3, dtype=object), seed=np.zeros(3),
                iteration=np.arange(3.0), time=np.array([0.1, 0.2, 0.3]),
                heldout_loss=np.array([3.0, 2.0, 1.0]))
    plot_convergence(rows, tmp_path / "f.png")
    assert matplotlib.get_backend() == before


def test_dask_backend_gives_the_serial_results(tmp_path, capsys, small):
    pytest.importorskip("dask.distributed")
    serial, dask = tmp_path / "serial", tmp_path / "dask"
    _run(capsys, ["bench", "--config", str(small), "--out", str(serial)])
    _run(capsys, ["bench", "--config", str(small), "--out", str(dask), "--backend", "dask",
                  "--n-jobs", "2"])
    a, b = read_results(serial), read_results(dask)
    for c in ("dataset", "scheme", "seed", "iteration", "alpha", "validation_loss",
              "heldout_loss", "inner_iter", "accepted"):
        np.testing.assert_array_equal(a[c], b[c])
    with open(dask / "benchmark.json") as f:
        assert '"backend": "dask"' in f.read()
