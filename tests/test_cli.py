import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hoag_shine.benchmark import load_config, parse_seeds, plan_runs
from hoag_shine.results import COLUMNS, read_results
from hoag_shine.cli import main
from hoag_shine.plotting import summarize

TINY = """
[benchmark]
datasets = ["tiny"]
schemes = ["shine", "cg", "grid", "random", "sklearn-cv"]
seeds = [0, 1]
fit_intercept = false

[datasets.tiny]
loader = "synthetic"
n_samples = 600
n_features = 200
density = 0.05
random_state = 0

[schemes.shine]
method = "hoag"
hypergradient = "shine"
decay = 0.78
max_iter = 6

[schemes.cg]
label = "HOAG (CG)"
method = "hoag"
hypergradient = "cg"
max_iter = 6

[schemes.grid]
method = "grid"
n_points = 4

[schemes.random]
method = "random"
n_points = 4

[schemes.sklearn-cv]
method = "sklearn-cv"
Cs = 3
cv = 3
"""


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_bench_end_to_end_and_resume(tiny_config, tmp_path, capsys):
    out = tmp_path / "out"
    main(["bench", "--config", str(tiny_config), "--out", str(out)])
    printed = capsys.readouterr()
    assert "10 runs planned, 0 already done" in printed.err

    assert "| tiny | HOAG (CG) |" in printed.out
    assert (out / "convergence.png").stat().st_size > 10_000
    assert (out / "benchmark.json").exists() and (out / "summary.md").exists()
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 5 and all(float(r["n_seeds"]) == 2 for r in summary)
    with open(out / "alphas.csv", newline="") as f:
        alphas = list(csv.DictReader(f))
    assert len(alphas) == sum(1 for _ in open(out / "results.csv")) - 1  # one C each
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    keys = {(r["scheme"], r["seed"]) for r in rows}
    assert len(keys) == 10
    per_run = {}
    for r in rows:
        per_run.setdefault((r["scheme"], r["seed"]), []).append(r)
    assert len(per_run[("shine", "0")]) == 6 and len(per_run[("grid", "1")]) == 4
    assert len(per_run[("sklearn-cv", "0")]) == 1
    for r in per_run[("shine", "0")]:
        assert float(r["log_C"]) == -float(r["alpha"])
        assert float(r["heldout_loss"]) > 0 and float(r["time"]) > 0
    # Times are cumulative within a run.
    t = [float(r["time"]) for r in per_run[("cg", "1")]]
    assert t == sorted(t)

    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    main(["bench", "--config", str(tiny_config), "--out", str(out), "--seeds", "0-2",
          "--schemes", "shine", "grid"])
    printed = capsys.readouterr()
    assert "6 runs planned, 4 already done, 2 to run" in printed.err
    for p, m in stamp.items():
        assert p.stat().st_mtime_ns == m  # finished runs are not redone


def test_killed_run_leaves_readable_files_and_resumes(tiny_config, tmp_path):
    config = tiny_config.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5]")
    tiny_config.write_text(config)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hoag_shine.cli", "bench", "--config", str(tiny_config),
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = out / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = list(runs.glob("*.json"))  # a run's record is written last
    assert 3 <= len(finished) < 30, "the kill must land mid-benchmark"
    # A write cut by the kill leaves only a temporary file, never a *.csv.
    assert all(p.suffix == ".part" for p in runs.iterdir() if p.name.startswith(".tmp-"))
    for p in finished:  # every recorded run is complete
        with open(p.with_suffix(".csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and tuple(rows[0]) == COLUMNS
    # Resuming completes the rest.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(finished)} already done" in done.stderr
    assert len(list(runs.glob("*.json"))) == 30
    assert len(read_results(out)["scheme"]) > 30


def test_plot_command_and_summary(tiny_config, tmp_path, capsys):
    out = tmp_path / "out"
    main(["bench", "--config", str(tiny_config), "--out", str(out), "--schemes", "shine", "grid",
          "--n-jobs", "2"])
    fig = tmp_path / "fig.png"
    main(["plot", str(out / "results.csv"), "-o", str(fig)])
    assert fig.stat().st_size > 10_000
    assert "median time to 1%" in capsys.readouterr().out
    # Summary: the target is 1% above the best held-out loss seen on each seed.
    cols = read_results(out)
    rows = {r["scheme"]: r for r in summarize(cols)}
    for s in ("shine", "grid"):
        reached, times = 0, []
        for seed in (0, 1):
            m = cols["seed"] == seed
            best = np.nanmin(cols["heldout_loss"][m])
            mm = m & (cols["scheme"] == s)
            hit = np.flatnonzero(cols["heldout_loss"][mm] <= 1.01 * best)
            reached += hit.size > 0
            times.append(cols["time"][mm][hit[0]] if hit.size else np.inf)
        assert rows[s]["n_reached"] == reached and rows[s]["n_seeds"] == 2
        assert rows[s]["median_time_to_target"] == np.median(times)


def _fails(capsys, argv, match):
    """The command exits non-zero with one line on stderr matching ``match``."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert __import__("re").search(match, err), err
    return err


def test_config_and_argument_errors(tmp_path, tiny_config, capsys):
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="not a seed"):
        parse_seeds(",")
    with pytest.raises(ValueError, match="no seeds"):
        parse_seeds([])
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('method = "grid"', 'method = "bayes"'))
    with pytest.raises(ValueError, match="method must be one of"):
        load_config(bad)
    bad.write_text(TINY.replace('loader = "synthetic"', 'loader = "mnist"'))
    with pytest.raises(ValueError, match="Unknown dataset 'tiny'"):
        load_config(bad)
    _fails(capsys, ["bench", "--config", str(tiny_config), "--out", str(tmp_path / "o"),
                    "--schemes", "nope"], "Unknown scheme 'nope'")
    _fails(capsys, ["bench", "--config", "does-not-exist.toml"], "no configuration")
    _fails(capsys, ["plot", str(tmp_path / "nothing")], "No results")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "hoag_shine"
                                         / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configurations_load(path):
    config = load_config(path)
    runs = plan_runs(config)
    assert runs and {s for _, s, _ in runs} == set(config["benchmark"]["schemes"])


PERF = """
[benchmark]
datasets = ["synthetic"]
schemes = ["shine", "hoag-cg", "sklearn-cv"]
seeds = [0]
fit_intercept = false

[schemes.shine]
method = "hoag"
hypergradient = "shine"
max_iter = 5

[schemes.hoag-cg]
method = "hoag"
hypergradient = "cg"
max_iter = 5

[schemes.sklearn-cv]
method = "sklearn-cv"
Cs = 3
cv = 2
"""


def test_perf_command_caches_the_grids_and_retimes_the_floor(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "perf.toml"
    cfg.write_text(PERF)
    res = tmp_path / "res"
    main(["bench", "--config", str(cfg), "--out", str(res)])
    out = tmp_path / "perf" / "perf.json"
    main(["perf", "--results", str(res), "--dataset", "synthetic", "--out", str(out)])
    text = capsys.readouterr().out
    assert "| shine | " in text and "HOAG (CG) / SHINE time to target" in text
    cache = tmp_path / "perf" / "yardsticks_synthetic.json"
    first = __import__("json").loads(out.read_text())
    assert set(__import__("json").loads(cache.read_text())) == {"0"}
    assert first["reachable_seeds"] in ([0], [])
    # The floor's fit, timed again until it beats LogisticRegressionCV's loss.
    sk = first["sklearn"]
    assert 0 < first["yardsticks"]["0"]["sklearn_floor"] < np.inf
    assert sk["median_floor_ratio"] == pytest.approx(
        first["yardsticks"]["0"]["sklearn_floor"] / sk["per_seed"][0][1])
    assert "no search beats it" in text
    # A second run reads the grid from the cache (the yardstick is not
    # computed again) but times the floor afresh.
    import hoag_shine.perf

    def fail(*args, **kwargs):
        raise AssertionError("the cached yardstick was recomputed")

    monkeypatch.setattr(hoag_shine.perf, "yardstick", fail)
    main(["perf", "--results", str(res), "--dataset", "synthetic", "--out", str(out)])
    second = __import__("json").loads(out.read_text())
    st1, st2 = first["yardsticks"]["0"], second["yardsticks"]["0"]
    assert st1["best"] == st2["best"] and st1["target"] == st2["target"]
    assert 0 < st2["floor"] < np.inf
    assert len((tmp_path / "perf" / "perf_history.jsonl").read_text().splitlines()) == 2


def test_bad_command_lines_are_one_line_errors(tmp_path, tiny_config, capsys):
    out = str(tmp_path / "o")
    _fails(capsys, ["inversion", "--alpha", "nan"], "finite number")
    _fails(capsys, ["inversion", "--alpha", "1e6"], "within")
    _fails(capsys, ["plot", out, "--target", "-1"], "must be > 0")
    _fails(capsys, ["plot", out, "--target", "nan"], "finite number")
    _fails(capsys, ["bench", "--config", str(tiny_config), "--out", out, "--seeds", ""],
           "not a seed")
    huge = tmp_path / "huge.toml"
    huge.write_text(TINY.replace("n_samples = 600", "n_samples = 1000000000000000"))
    _fails(capsys, ["bench", "--config", str(huge), "--out", out], "n_samples")
    sneaky = tmp_path / "sneaky.toml"
    sneaky.write_text(TINY.replace('"shine", "cg"', '"shine/..", "cg"')
                      .replace("[schemes.shine]", '[schemes."shine/.."]'))
    _fails(capsys, ["bench", "--config", str(sneaky), "--out", out], "cannot name")
    assert not (tmp_path / "runs").exists()


def test_version_and_config_paths_from_anywhere(tmp_path, capsys, monkeypatch):
    import hoag_shine

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and hoag_shine.__version__ in capsys.readouterr().out
    # README writes configs/quick.toml; away from the clone the shipped one is found.
    from hoag_shine.cli import _find_config

    monkeypatch.chdir(tmp_path)
    assert _find_config("configs/schedule.toml").name == "schedule.toml"
    assert _find_config("schedule").name == "schedule.toml"


def test_offline_download_is_one_line(tmp_path, capsys, monkeypatch):
    import urllib.error

    import sklearn.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sklearn.datasets, "fetch_20newsgroups_vectorized", offline)
    from hoag_shine.datasets import load_dataset

    with pytest.raises(OSError, match="no network"):
        load_dataset("20news", data_home=tmp_path, download=True)


def test_the_runs_warnings_are_summarised_once(tmp_path, capsys):
    cfg = tmp_path / "capped.toml"
    cfg.write_text(TINY.replace("max_iter = 6", "max_iter = 6\nmax_inner_iter = 2"))
    out = tmp_path / "out"
    main(["bench", "--config", str(cfg), "--out", str(out), "--schemes", "shine", "--seeds",
          "0"])
    err = capsys.readouterr().err
    # counted once, by kind, every one in a log: not interleaved with the progress
    assert "warnings: " in err and "ConvergenceWarning" in err
    assert "max_inner_iter" not in err and "max_inner_iter" in (out / "warnings.log").read_text()
