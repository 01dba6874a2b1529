"""Command line: ``hoag-shine bench | plot | inversion | perf``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]

_REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _find_config(name):
    """A config path as given, else under ./configs or the checkout's configs/."""
    p = Path(name)
    if p.exists():
        return p
    for base in (Path("configs"), _REPO_CONFIGS):
        for cand in (base / name, base / f"{name}.toml"):
            if cand.exists():
                return cand
    raise SystemExit(f"hoag-shine: no configuration {name!r} (looked in ., ./configs and "
                     f"{_REPO_CONFIGS}).")


def _err(msg):
    print(msg, file=sys.stderr, flush=True)


def _bench(args):
    from .benchmark import load_config, parse_seeds, run_benchmark
    from .plotting import format_summary, plot_convergence, summarize

    config = load_config(_find_config(args.config))
    out = Path(args.out or config["benchmark"].get("out", "results/" + Path(args.config).stem))
    seeds = parse_seeds(args.seeds) if args.seeds else None
    try:
        results = run_benchmark(
            config, out, datasets=args.datasets, schemes=args.schemes, seeds=seeds,
            n_jobs=args.n_jobs, data_home=args.data_home, download=args.download, progress=_err,
        )
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise SystemExit(f"hoag-shine bench: {exc}") from None
    figure = out / "convergence.png"
    plot_convergence(results, figure, title=Path(config["_path"]).name)
    table = format_summary(summarize(results))
    (out / "summary.md").write_text(table + "\n")
    print(table)
    print(f"\nresults: {results}\nfigure:  {figure}\nsummary: {out / 'summary.md'}")


def _plot(args):
    from .plotting import format_summary, plot_convergence, summarize

    try:
        plot_convergence(args.results, args.output, title=args.title)
        print(format_summary(summarize(args.results, rel_target=args.target)))
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"hoag-shine plot: {exc}") from None
    print(f"\nfigure: {args.output}")


def _inversion(args):
    import numpy as np

    from .diagnostics import inversion_experiment
    from .plotting import plot_inversion

    try:
        res = inversion_experiment(dataset=args.dataset, n_runs=args.runs, alpha=args.alpha,
                                   memory=args.memory, tol=args.tol, opa_freq=args.opa_freq,
                                   n_train=args.n_train, data_home=args.data_home)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"hoag-shine inversion: {exc}") from None
    plot_inversion(res, args.output, title=f"{args.dataset}: {args.n_train} samples, "
                   f"alpha={args.alpha:g}, memory {args.memory}, {args.runs} runs")
    print("| direction | OPA | median norm ratio | median cosine |")
    print("|---|---|---|---|")
    for key in ("opa", "no-opa"):
        for kind, vals in res[key].items():
            ratio, cos = np.median(vals, axis=0)
            print(f"| {kind} | {'yes' if key == 'opa' else 'no'} | {ratio:.4f} | {cos:.4f} |")
    print(f"\nfigure: {args.output}")


def _perf(args):
    import json
    import time

    import numpy as np

    from .benchmark import read_results
    from .datasets import load_dataset, paper_split
    from .perf import floor_time, nnz_scaling, peak_memory_mb, perf_report, yardstick
    from .problems import LogisticProblem

    try:
        cols = read_results(args.results)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"hoag-shine perf: {exc}") from None
    keep = cols["dataset"] == args.dataset
    cols = {k: v[keep] for k, v in cols.items()}
    seeds = sorted({int(s) for s in cols["seed"]})
    if args.seeds:
        from .benchmark import parse_seeds

        seeds = [s for s in parse_seeds(args.seeds) if s in seeds]
    if not seeds:
        raise SystemExit(f"hoag-shine perf: no {args.dataset} runs in {args.results}.")
    X, y = load_dataset(args.dataset, data_home=args.data_home)
    # The grid part of a yardstick (best, target, validation optimum) depends
    # on the data only: it is cached per seed, written after each one. The
    # floor is a timing: it is measured again in every run.
    cache_path = Path(args.yardsticks or Path(args.out).parent / f"yardsticks_{args.dataset}.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    sticks = {}
    for seed in seeds:
        split = paper_split(X, y, seed)
        X_tr, y_tr, X_val, y_val, X_ho, y_ho = split
        prob = LogisticProblem(X_tr, y_tr, X_val, y_val)
        heldout = lambda v: prob.data_loss(v, X_ho, y_ho)  # noqa: E731
        t0 = time.perf_counter()
        if str(seed) in cache:
            st = dict(cache[str(seed)])
            st["floor"], st["floor_iterations"] = floor_time(
                prob, st["best_alpha"], heldout, st["target"])
        else:
            m = (cols["seed"] == seed) & np.isfinite(cols["heldout_loss"])
            center = float(cols["alpha"][m][np.argmin(cols["heldout_loss"][m])])
            st = yardstick(split, round(center, 1))
            cache[str(seed)] = {k: v for k, v in st.items() if k not in ("floor", "grid")}
            tmp = cache_path.with_suffix(".tmp")
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_path)
        sk = (cols["scheme"] == "sklearn-cv") & (cols["seed"] == seed)
        if sk.any():
            # The same cold fit, until it beats LogisticRegressionCV's final loss.
            st["sklearn_floor"] = floor_time(prob, st["best_alpha"], heldout,
                                             float(cols["heldout_loss"][sk][-1]))[0]
        sticks[seed] = st
        _err(f"seed {seed}: best {st['best']:.2f} at log-lambda {st['best_alpha']:.1f}, "
             f"validation optimum {st['validation_best_alpha']:.1f} "
             f"(held-out there {st['heldout_at_validation_best']:.4f} x best), "
             f"floor {st['floor']:.2f}s ({time.perf_counter() - t0:.0f}s)")
    cols["seed"] = cols["seed"].astype(int)
    report = perf_report(cols, sticks)
    report["yardsticks"] = {str(k): {kk: vv for kk, vv in v.items() if kk != "grid"}
                            for k, v in sticks.items()}
    report["peak_memory_mb"] = peak_memory_mb()
    if args.scaling:
        _err("nnz scaling: synthetic sets of 1e4, 1e5, 1e6 rows ...")
        report["nnz_scaling"] = nnz_scaling()
    report["command"] = "hoag-shine perf " + " ".join(sys.argv[2:])
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def fmt(v):
        return "never" if not np.isfinite(v) else f"{v:.2f}"

    per = report["per_scheme"]
    print(f"Performance on {args.dataset}, seeds {seeds[0]}-{seeds[-1]} "
          f"(results: {args.results}; bench command: hoag-shine bench --config "
          f"configs/fig1_20news.toml)")
    print(f"median floor (cold L-BFGS fit at the best log-lambda): "
          f"{report['median_floor']:.2f}s")
    reach = report["reachable_seeds"]
    print(f"seeds whose validation optimum is within 1% of the best held-out loss: "
          f"{len(reach)}/{len(seeds)} {reach} (elsewhere a search that converges on the "
          "validation loss ends above the target)")
    print("| scheme | seeds reaching 1.01 x best | of the reachable | "
          "median time to target (s) | / floor |")
    print("|---|---|---|---|---|")
    for s, r in per.items():
        print(f"| {s} | {r['n_reached']}/{r['n_seeds']} | "
              f"{r['n_reached_of_reachable']}/{len(reach)} | {fmt(r['median_time_to_target'])} | "
              f"{fmt(r['median_time_to_target'] / report['median_floor'])} |")
    for key, label in (("shine_over_floor", "SHINE time to target / floor (target <= 1.0)"),
                       ("cg_over_shine", "HOAG (CG) / SHINE time to target (target >= 2)"),
                       ("grid_over_shine", "grid search / SHINE time to target (target >= 5)"),
                       ("random_over_shine",
                        "random search / SHINE time to target (target >= 5)")):
        if key in report:
            print(f"{label}: {fmt(report[key])}")
    if "sklearn" in report:
        sk = report["sklearn"]
        print(f"LogisticRegressionCV: SHINE ends lower on {sk['shine_lower_final']}/{len(seeds)}"
              f" seeds; time for SHINE to beat its final loss / its time: "
              f"{sk['median_time_ratio']:.3f} (target <= 0.05)")
        if "median_floor_ratio" in sk:
            print(f"  the same for a cold fit at the best log-lambda (no search beats it): "
                  f"{sk['median_floor_ratio']:.3f}")
    if "shine" in per:
        print(f"SHINE backward / forward time per outer step (median): "
              f"{per['shine']['median_backward_over_forward']:.4f} (target <= 0.01)")
    print(f"peak resident memory of this process: {report['peak_memory_mb']:.0f} MB "
          "(target <= 1024)")
    if "nnz_scaling" in report:
        sc = report["nnz_scaling"]
        print(f"cost vs nnz: exponent {sc['exponent_inner_iteration']:.2f} per inner iteration, "
              f"{sc['exponent_outer_step']:.2f} per outer step (nnz {sc['nnz']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=float)
    out.write_text(text)
    with open(out.parent / "perf_history.jsonl", "a") as f:
        f.write(json.dumps(report, default=float) + "\n")
    print(f"\nrecord: {out} (appended to {out.parent / 'perf_history.jsonl'})")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hoag-shine",
        description="Hyperparameter optimisation by hypergradient descent: benchmarks and plots.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="run a benchmark configuration (default: quick)")
    b.add_argument("--config", default="quick.toml",
                   help="TOML file, or a name in configs/ (default: quick.toml)")
    b.add_argument("--datasets", nargs="+", help="subset of the configuration's datasets")
    b.add_argument("--schemes", nargs="+", help="subset of the configuration's schemes")
    b.add_argument("--seeds", help="e.g. 0-9 or 0,2,5 (default: the configuration's)")
    b.add_argument("--out", help="output folder (default: the configuration's 'out')")
    b.add_argument("--n-jobs", type=int, default=1,
                   help="(dataset, seed) groups run in parallel; 1 keeps timings faithful")
    b.add_argument("--data-home", help="dataset cache (default: $HOAG_SHINE_DATA or "
                   "~/hoag_shine_data)")
    b.add_argument("--download", action="store_true",
                   help="allow downloading missing 20news / real-sim files")
    b.set_defaults(func=_bench)

    p = sub.add_parser("plot", help="plot a results CSV (or folder) and print its summary")
    p.add_argument("results", help="results.csv or the benchmark's output folder")
    p.add_argument("-o", "--output", default="convergence.png", help="figure file")
    p.add_argument("--target", type=float, default=0.01,
                   help="relative target above the best held-out loss (default 0.01)")
    p.add_argument("--title")
    p.set_defaults(func=_plot)
    f = sub.add_parser("perf", help="yardstick (best, target, floor per seed) and the "
                       "performance ratios of a benchmark run")
    f.add_argument("--results", default="results/fig1_20news",
                   help="benchmark results (CSV or folder)")
    f.add_argument("--dataset", default="20news")
    f.add_argument("--seeds", help="subset, e.g. 0-4")
    f.add_argument("--scaling", action="store_true",
                   help="also measure the cost per outer step against nnz(X) (1e4-1e6 rows)")
    f.add_argument("--data-home")
    f.add_argument("--out", default="results/perf.json")
    f.add_argument("--yardsticks", help="cache of the per-seed grids (default: "
                   "yardsticks_DATASET.json beside --out); floors are always re-timed")
    f.set_defaults(func=_perf)

    i = sub.add_parser("inversion",
                       help="quality of the L-BFGS inverse with and without OPA (Fig. 2)")
    i.add_argument("--dataset", default="breast-cancer")
    i.add_argument("--runs", type=int, default=100)
    i.add_argument("--n-train", type=int, default=113)
    i.add_argument("--alpha", type=float, default=1.0, help="log-penalty")
    i.add_argument("--memory", type=int, default=60)
    i.add_argument("--tol", type=float, default=1e-6)
    i.add_argument("--opa-freq", type=int, default=5)
    i.add_argument("--data-home")
    i.add_argument("-o", "--output", default="inversion.png")
    i.set_defaults(func=_inversion)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
