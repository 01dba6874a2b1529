"""Command line: ``hoag-shine bench | plot | inversion | perf | deq`` (parsing and printing only).

Every error is one line on stderr and a non-zero exit status; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from importlib import resources
from pathlib import Path

__all__ = ["main", "build_parser"]


class CliError(Exception):
    """An error the command line reports in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        raise CliError(f"{message} (see '{self.prog} --help')")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _finite_float(low=None, high=None, positive=False):
    """An argparse type: a finite number (within ``[low, high]``, ``> 0``)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} must be within [{low}, {high}]")
        return value
    return parse


def _need_matplotlib():
    """Before any work: the figures need the ``bench`` extra."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CliError("this command draws figures, which need matplotlib: pip install "
                       "'hoag_shine[bench]'.") from None


def _output_file(path):
    """``path``, its folder created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _find_config(name):
    """A config path as given, else under ./configs, else one shipped with the package
    (by its name, or by the file name of a path such as ``configs/quick.toml``)."""
    p = Path(name)
    if p.exists():
        return p
    candidates = (name, f"{name}.toml", p.name, f"{p.name}.toml")
    for cand in candidates:
        if (Path("configs") / cand).exists():
            return Path("configs") / cand
    shipped = resources.files("hoag_shine") / "configs"
    for cand in candidates:
        if (shipped / cand).is_file():
            return Path(str(shipped / cand))
    names = sorted(f.name for f in shipped.iterdir() if f.name.endswith(".toml"))
    raise CliError(f"no configuration {name!r} (looked in ., ./configs and the shipped ones: "
                   f"{', '.join(names)}).")


def _err(msg):
    print(msg, file=sys.stderr, flush=True)


class _Progress:
    """The benchmark's progress on stderr: a bar (runs done, elapsed, estimated time
    left) on a terminal; one line per finished run otherwise."""

    def __init__(self):
        self.bar = None

    def __call__(self, event, **info):
        if event == "note":
            self._write(info["message"])
        elif event == "plan":
            self._write(f"{info['total']} runs planned, {info['done']} already done, "
                        f"{info['total'] - info['done']} to run -> {info['out']}")
            if sys.stderr.isatty():
                from tqdm import tqdm

                self.bar = tqdm(total=info["total"], initial=info["done"], unit="run",
                                file=sys.stderr, dynamic_ncols=True)
        elif event == "run":
            line = (f"{info['dataset']} {info['scheme']} seed {info['seed']}: "
                    f"{info['elapsed']:.1f}s, final held-out loss {info['heldout']:.4f}")
            if self.bar is not None:
                self.bar.set_postfix_str(line, refresh=False)
                self.bar.update(1)
            else:
                _err(line)

    def _write(self, message):
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            _err(message)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _bench(args):
    from .benchmark import load_config, parse_seeds, run_benchmark
    from .plotting import (SUMMARY_COLUMNS, format_summary, plot_convergence, summarize,
                           summary_rows)
    from .results import atomic_write_csv, atomic_write_text

    _need_matplotlib()
    config = load_config(_find_config(args.config))
    out = Path(args.out or config["benchmark"].get("out", "results/" + Path(args.config).stem))
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.scheduler and args.backend != "dask":
        raise CliError("--scheduler is a dask scheduler's address: use it with --backend dask.")
    progress = _Progress()
    try:
        results = run_benchmark(
            config, out, datasets=args.datasets, schemes=args.schemes, seeds=seeds,
            n_jobs=args.n_jobs, backend=args.backend, scheduler=args.scheduler,
            data_home=args.data_home, download=args.download, progress=progress)
    finally:
        progress.close()
    figure = out / "convergence.png"
    plot_convergence(results, figure)
    rows = summarize(results)
    table = format_summary(rows)
    atomic_write_text(out / "summary.md", table + "\n")
    atomic_write_csv(out / "summary.csv", summary_rows(rows), SUMMARY_COLUMNS)
    print(table)
    if args.schemes:
        print("\nnote: the target is relative to each seed's best held-out loss among the "
              "schemes run here (--schemes), not among all of the configuration's.")
    print(f"\nresults: {results} (hyperparameters: {out / 'alphas.csv'})\nfigure:  {figure}\n"
          f"summary: {out / 'summary.md'}, {out / 'summary.csv'}")


def _plot(args):
    _need_matplotlib()
    from .plotting import format_summary, plot_convergence, summarize

    plot_convergence(args.results, _output_file(args.output), title=args.title,
                     rel_target=args.target)
    print(format_summary(summarize(args.results, rel_target=args.target),
                         rel_target=args.target))
    print(f"\nfigure: {args.output}")


def _inversion(args):
    import numpy as np

    _need_matplotlib()
    from .diagnostics import inversion_experiment
    from .plotting import plot_inversion

    output = _output_file(args.output)
    res = inversion_experiment(dataset=args.dataset, n_runs=args.runs, alpha=args.alpha,
                               memory=args.memory, tol=args.tol, opa_freq=args.opa_freq,
                               n_train=args.n_train, data_home=args.data_home)
    plot_inversion(res, output, title=f"{args.dataset}: {args.n_train} samples, "
                   f"log-penalty {args.alpha:g}, memory {args.memory}, {args.runs} runs")
    print("| direction | OPA | median norm ratio | median cosine |")
    print("|---|---|---|---|")
    for key in ("opa", "no-opa"):
        for kind, vals in res[key].items():
            ratio, cos = np.median(vals, axis=0)
            print(f"| {kind} | {'yes' if key == 'opa' else 'no'} | {ratio:.4f} | {cos:.4f} |")
    print(f"\nfigure: {args.output}")


def _perf(args):
    from .config import parse_seeds
    from .perf import format_report, run_perf, save_report

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    yardsticks = args.yardsticks or Path(args.out).parent / f"yardsticks_{args.dataset}.json"
    report = run_perf(args.results, dataset=args.dataset, seeds=seeds,
                      data_home=args.data_home, yardsticks=yardsticks,
                      scaling=args.scaling, progress=_err)
    report["command"] = "hoag-shine perf " + " ".join(sys.argv[2:])
    print(format_report(report))
    history = save_report(report, args.out)
    print(f"\nrecord: {args.out} (appended to {history})")


def _version():
    from . import __version__

    return __version__


def build_parser():
    parser = _Parser(
        prog="hoag-shine",
        description="Hyperparameter optimisation by hypergradient descent: benchmarks and plots.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_bench, _add_plot, _add_perf, _add_inversion, _add_deq):
        add(sub)
    return parser


def _add_bench(sub):
    b = sub.add_parser("bench", help="run a benchmark configuration (default: quick)")
    b.add_argument("--config", default="quick.toml",
                   help="TOML file, or the name of a shipped one (quick, fig1_20news, ...)")
    b.add_argument("--datasets", nargs="+", help="subset of the configuration's datasets")
    b.add_argument("--schemes", nargs="+", help="subset of the configuration's schemes")
    b.add_argument("--seeds", help="e.g. 0-9 or 0,2,5 (default: the configuration's)")
    b.add_argument("--out", help="output folder (default: the configuration's 'out')")
    b.add_argument("--n-jobs", type=_positive_int, default=1,
                   help="(dataset, seed) groups run in parallel; 1 keeps timings faithful")
    b.add_argument("--backend", help="joblib backend for parallel groups (loky, threading, "
                   "multiprocessing, dask, ...); default: in process with --n-jobs 1, loky "
                   "otherwise")
    b.add_argument("--scheduler", help="address of a dask scheduler (with --backend dask; "
                   "default: a local cluster of --n-jobs workers)")
    b.add_argument("--data-home", help="dataset cache (default: $HOAG_SHINE_DATA or "
                   "~/hoag_shine_data)")
    b.add_argument("--download", action="store_true",
                   help="allow downloading missing 20news / real-sim files")
    b.set_defaults(func=_bench)


def _add_plot(sub):
    p = sub.add_parser("plot", help="plot a results CSV (or folder) and print its summary")
    p.add_argument("results", help="results.csv or the benchmark's output folder")
    p.add_argument("-o", "--output", default="convergence.png", help="figure file")
    p.add_argument("--target", type=_finite_float(positive=True), default=0.01,
                   help="relative target above the best held-out loss (default 0.01: 1%%)")
    p.add_argument("--title", help="figure title (default: the datasets and seeds)")
    p.set_defaults(func=_plot)


def _add_perf(sub):
    f = sub.add_parser("perf", help="yardstick (best, target, floor per seed) and the "
                       "performance ratios of a benchmark run")
    f.add_argument("--results", default="results/fig1_20news",
                   help="benchmark results (CSV or folder)")
    f.add_argument("--dataset", default="20news",
                   help="the dataset the results were made on (default 20news)")
    f.add_argument("--seeds", help="subset, e.g. 0-4")
    f.add_argument("--scaling", action="store_true",
                   help="also measure the cost per outer step against nnz(X) (1e4-1e6 rows)")
    f.add_argument("--data-home", help="dataset cache (default: $HOAG_SHINE_DATA, "
                   "~/hoag_shine_data, or scikit-learn's ~/scikit_learn_data)")
    f.add_argument("--out", default="results/perf.json",
                   help="where the report is written (default results/perf.json)")
    f.add_argument("--yardsticks", help="cache of the per-seed grids (default: "
                   "yardsticks_DATASET.json beside --out); floors are always re-timed")
    f.set_defaults(func=_perf)


def _add_inversion(sub):
    i = sub.add_parser("inversion",
                       help="quality of the L-BFGS inverse with and without OPA (Fig. 2)")
    i.add_argument("--dataset", default="breast-cancer",
                   help="the problem (default breast-cancer, as in the SHINE paper)")
    i.add_argument("--runs", type=_positive_int, default=100,
                   help="random training subsets (default 100)")
    i.add_argument("--n-train", type=_positive_int, default=113,
                   help="training samples per run (default 113)")
    i.add_argument("--alpha", type=_finite_float(-50.0, 50.0), default=1.0,
                   help="log-penalty of the inner problem (default 1), within [-50, 50]")
    i.add_argument("--memory", type=_positive_int, default=60,
                   help="L-BFGS memory (default 60)")
    i.add_argument("--tol", type=_finite_float(positive=True), default=1e-6,
                   help="inner gradient tolerance (default 1e-6)")
    i.add_argument("--opa-freq", type=_positive_int, default=5,
                   help="inner iterations between two OPA pairs (default 5)")
    i.add_argument("--data-home", help="dataset cache (as for bench)")
    i.add_argument("-o", "--output", default="inversion.png",
                   help="figure file (its folder is created)")
    i.set_defaults(func=_inversion)


def _add_deq(sub):
    d = sub.add_parser("deq", help="implicit models: backward strategies of an equilibrium "
                       "classifier (the SHINE paper's DEQ comparison in miniature)")
    d.add_argument("--datasets", default="digits,generated",
                   help="comma-separated, among digits and generated (default both)")
    d.add_argument("--regimes", default="contraction,near 1",
                   help="comma-separated, among 'contraction' and 'near 1' (default both)")
    d.add_argument("--strategies", default=None,
                   help="comma-separated backward strategies (default: all six)")
    d.add_argument("--seeds", default="0-4", help="e.g. 0-4 (default) or 0,2")
    d.add_argument("--epochs", type=_positive_int, default=15,
                   help="training epochs per run (default 15)")
    d.add_argument("--out", default="results/deq",
                   help="output folder: runs/*.json, summary.md, deq.png (default results/deq)")
    d.set_defaults(func=_deq)


def _deq(args):
    _need_matplotlib()
    from .config import parse_seeds
    from .implicit.experiment import REGIMES, STRATEGIES, deq_datasets
    from .plotting import plot_deq

    def pick(text, known, what):
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in known]
        if unknown or not items:
            raise CliError(f"unknown {what} {unknown or text!r}; choose among {list(known)}.")
        return items

    data = deq_datasets()
    datasets = pick(args.datasets, data, "dataset")
    regimes = pick(args.regimes, REGIMES, "regime")
    strategies = pick(args.strategies or ",".join(STRATEGIES), STRATEGIES, "strategy")
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    rows = _deq_runs(out, data, datasets, regimes, strategies, seeds, args.epochs)
    table = _deq_table(rows)
    (out / "summary.md").write_text(table + "\n")
    plot_deq(rows, _output_file(out / "deq.png"))
    print(table)
    print(f"\nruns: {out / 'runs'}\nsummary: {out / 'summary.md'}\nfigure: {out / 'deq.png'}")


def _deq_runs(out, data, datasets, regimes, strategies, seeds, epochs):
    """Every (dataset, regime, strategy, seed) run: read back when done with the same
    settings, else run and written atomically."""
    import json

    from .implicit.experiment import run_deq
    from .results import atomic_write_text

    (out / "runs").mkdir(parents=True, exist_ok=True)
    rows, todo = [], [(d, g, s, k) for d in datasets for g in regimes for s in strategies
                      for k in seeds]
    for i, (d, g, s, k) in enumerate(todo):
        settings = dict(dataset=d, regime=g, strategy=s, seed=k, epochs=epochs)
        path = out / "runs" / f"{d}__{g.replace(' ', '-')}__{s}__seed{k}.json"
        if path.exists():
            try:
                row = json.loads(path.read_text())
                if row.get("settings") == settings:
                    rows.append(row)
                    continue
            except (ValueError, OSError):
                pass  # (damaged: run again)
        X, y = data[d]
        row = dict(run_deq(X, y, s, k, g, max_iter=epochs), dataset=d, settings=settings)
        atomic_write_text(path, json.dumps(row))
        rows.append(row)
        _err(f"[{i + 1}/{len(todo)}] {d} {g} {s} seed {k}: accuracy {row['accuracy']:.4f}, "
             f"backward {row['backward_ms']:.2f} ms, cosine {row['cosine']:.3f}")
    return rows


def _deq_table(rows):
    from .implicit.experiment import summarize_deq

    lines = ["| data set | regime | backward | backward (ms/batch) | exact / it | forward (ms) | "
             "cosine to exact | test accuracy | test log-loss | training (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    table = summarize_deq(rows)
    exact = {(t["dataset"], t["regime"]): t["backward_ms"] for t in table
             if t["strategy"] == "exact"}
    for t in table:
        ratio = exact.get((t["dataset"], t["regime"]), np.nan) / t["backward_ms"]
        lines.append(f"| {t['dataset']} | {t['regime']} | {t['strategy']} | "
                     f"{t['backward_ms']:.2f} | {ratio:.1f}x | {t['forward_ms']:.2f} | "
                     f"{t['cosine']:.3f} | {t['accuracy']:.4f} | {t['log_loss']:.4f} | "
                     f"{t['train_time']:.1f} |")
    n = max(t["n"] for t in table)
    lines.append(f"\nMedians over {n} seeds; exact / it: the exact backward's time over this "
                 "one's.")
    return "\n".join(lines)


def main(argv=None):
    """Run the command line; errors end it with one line on stderr and status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except KeyboardInterrupt:
        _err("hoag-shine: interrupted; finished runs are kept, the same command resumes.")
        raise SystemExit(130) from None
    except (CliError, ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        if debug:
            raise
        command = next((a for a in argv if not a.startswith("-")), "")
        _err(f"hoag-shine{' ' + command if command else ''}: {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
