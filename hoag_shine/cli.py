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
    from .benchmark import parse_seeds
    from .perf import format_report, run_perf, save_report

    seeds = parse_seeds(args.seeds) if args.seeds else None
    yardsticks = args.yardsticks or Path(args.out).parent / f"yardsticks_{args.dataset}.json"
    try:
        report = run_perf(args.results, dataset=args.dataset, seeds=seeds,
                          data_home=args.data_home, yardsticks=yardsticks,
                          scaling=args.scaling, progress=_err)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"hoag-shine perf: {exc}") from None
    report["command"] = "hoag-shine perf " + " ".join(sys.argv[2:])
    print(format_report(report))
    history = save_report(report, args.out)
    print(f"\nrecord: {args.out} (appended to {history})")


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
