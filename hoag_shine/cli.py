"""Command line: ``hoag-shine bench | plot``."""

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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
