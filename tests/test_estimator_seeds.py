"""benchmarks/estimator_seeds.py: the user's protocol over several splits, resumed only
from figures of the same code and settings."""

import json

import pytest

from conftest import load_benchmark

seeds_bench = load_benchmark("benchmarks/estimator_seeds.py")


def test_seeds_parse():
    assert seeds_bench.parse_seeds("0-3") == [0, 1, 2, 3]
    assert seeds_bench.parse_seeds("0,3,5-6") == [0, 3, 5, 6]
    with pytest.raises(Exception, match="no seed"):
        seeds_bench.parse_seeds(",")


def test_each_seed_is_kept_and_resumed_only_when_fresh(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_run(dataset, seed, rows, *args):
        calls.append(seed)
        return {r: {"time": 1.0 + seed + (r == "lrcv"), "C": [2.0], "log_loss": 0.1}
                for r in rows}

    monkeypatch.setattr(seeds_bench.estimator_speed, "run", fake_run)
    argv = ["--dataset", "breast-cancer", "--seeds", "0-1", "--rows", "shine-cv5,lrcv",
            "--out", str(tmp_path)]
    seeds_bench.main(argv)
    out = capsys.readouterr().out
    assert calls == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0.json", "seed1.json"]
    # ratios 1/2 and 2/3: geometric mean sqrt(1/3)
    assert "shine-cv5 / lrcv fit time over 2 seeds: geometric mean 0.577, range 0.500-0.667" in out
    seeds_bench.main(argv + ["--resume"])
    assert calls == [0, 1]  # both reused
    # another code (or settings) is run again, not served from the files
    stored = json.loads((tmp_path / "seed1.json").read_text())
    stored["key"]["code"] = "something else"
    (tmp_path / "seed1.json").write_text(json.dumps(stored))
    seeds_bench.main(argv + ["--resume"])
    assert calls == [0, 1, 1]
    seeds_bench.main(argv[:-2] + ["--out", str(tmp_path), "--resume", "--params", '{"tol": 0.1}'])
    assert calls == [0, 1, 1, 0, 1]


def test_seeds_refuse_unknown_rows_and_resume_without_folder():
    with pytest.raises(SystemExit, match="unknown rows"):
        seeds_bench.main(["--rows", "shine-cv5,nope"])
    with pytest.raises(SystemExit, match="--resume needs --out"):
        seeds_bench.main(["--resume"])


def test_code_fingerprint_sees_the_package(tmp_path, monkeypatch):
    before = seeds_bench.code_fingerprint()
    assert before == seeds_bench.code_fingerprint()
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(seeds_bench.hoag_shine, "__file__", str(pkg / "__init__.py"))
    one = seeds_bench.code_fingerprint()
    (pkg / "__init__.py").write_text("x = 2\n")
    assert seeds_bench.code_fingerprint() != one != before


def test_params_add_to_or_replace_a_shine_rows_settings():
    estimator_speed = load_benchmark("benchmarks/estimator_speed.py")
    y = [0, 1] * 10
    est = estimator_speed._estimator("shine-cv5-j2", y, 0, None, {"cv": 10, "maxcor": 7})
    assert (est.cv, est.n_jobs, est.maxcor) == (10, 2, 7)
    est = estimator_speed._estimator("shine-cv5", y, 0, None, None)
    assert (est.cv, est.n_jobs) == (5, None)
