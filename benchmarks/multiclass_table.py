"""The README's multiclass table from a benchmark's results (final held-out loss per scheme,
against LogisticRegressionCV's on the same seed).

    hoag-shine bench --config multiclass --datasets digits
    python benchmarks/multiclass_table.py results/multiclass --dataset digits
"""

import argparse

import numpy as np

from hoag_shine.results import read_results


def build_parser():
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="folder of a `hoag-shine bench` run (its results)")
    parser.add_argument("--dataset", default="digits", help="the dataset whose rows to tabulate")
    parser.add_argument("--reference", default="sklearn-cv",
                        help="the scheme every other is compared with, seed by seed")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cols = read_results(args.results)
    keep = cols["dataset"] == args.dataset
    cols = {k: v[keep] for k, v in cols.items()}
    final = {}
    for i, key in enumerate(zip(cols["scheme"], cols["seed"])):
        final[key] = i  # the last row of each run
    seeds = sorted({s for _, s in final})
    schemes = list(dict.fromkeys(cols["scheme"]))
    ref = {s: cols["heldout_loss"][final[(args.reference, s)]] for s in seeds}
    print(f"| scheme ({args.dataset}) | final held-out loss (median) | vs {args.reference} "
          "(median, range) | lower than it on | final validation loss | run time (s) |")
    print("|---|---|---|---|---|---|")
    for sch in schemes:
        idx = [final[(sch, s)] for s in seeds if (sch, s) in final]
        h = cols["heldout_loss"][idx]
        ratio = h / np.array([ref[s] for s in seeds if (sch, s) in final])
        val = np.asarray(cols["validation_loss"][idx], dtype=float)
        label = cols["label"][idx[0]]
        # (grid, random and scikit-learn runs record no validation loss: a dash)
        val_text = f"{np.median(val[np.isfinite(val)]):.1f}" if np.isfinite(val).any() else "-"
        print(f"| {label} | {np.median(h):.2f} | {np.median(ratio):.3f} ({ratio.min():.3f}-"
              f"{ratio.max():.3f}) | {int(np.sum(ratio < 1))}/{len(idx)} | "
              f"{val_text} | {np.median(cols['time'][idx]):.1f} |")


if __name__ == "__main__":
    main()
