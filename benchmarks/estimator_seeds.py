"""The user's protocol over several test splits: estimator_speed.py's rows, seed by seed.

One run times every row of every seed (each fit in a fresh process, as in
``estimator_speed.py``) and prints one line per seed and the ratios' geometric
means and ranges, so that a change is judged on every split, not on one::

    python benchmarks/estimator_seeds.py --seeds 0-9 --rows shine-cv5,shine-cv5-j2,lrcv-j2 \
        --out runs/seeds

Each seed's figures are written to ``OUT/seed<k>.json`` as soon as it is done (an
interrupted run loses no finished seed). ``--resume`` reuses a seed's file only
when it was made by the same code (a fingerprint of the package's and this
directory's sources), dataset, rows and parameters; anything else is run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import estimator_speed  # noqa: E402

import hoag_shine  # noqa: E402

#: (numerator, denominator) rows of the printed ratios
RATIOS = (("shine-cv5", "lrcv"), ("shine-cv5-j2", "lrcv-j2"), ("shine-cv5-j2", "lrcv-j2-1blas"),
          ("shine-cv5", "shine-cv5-j2"))


def code_fingerprint() -> str:
    """A hash of the sources that make the figures: the package and the benchmarks."""
    h = hashlib.sha256()
    roots = [Path(hoag_shine.__file__).parent, Path(__file__).parent]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def parse_seeds(text) -> list:
    """``"0-9"``, ``"0,3,5"`` or a mix: the seeds, in order."""
    seeds = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds += list(range(int(a), int(b) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seed in {text!r}")
    return seeds


def _key(args, rows, seed, code):
    return dict(dataset=args.dataset, seed=seed, rows=rows, params=args.params,
                test_size=args.test_size, code=code)


def run_seed(args, rows, seed, code):
    """The figures of one seed: from its file when ``--resume`` finds a matching one."""
    path = Path(args.out) / f"seed{seed}.json" if args.out else None
    key = _key(args, rows, seed, code)
    if args.resume and path is not None and path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            print(f"seed {seed}: reused {path}", flush=True)
            return stored["results"]
    results = estimator_speed.run(args.dataset, seed, rows, args.data_home, args.test_size,
                                  1, args.params, args.row_timeout)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(key=key, results=results), indent=1))
        tmp.replace(path)  # (a file is whole or absent)
    return results


def format_summary(rows, by_seed) -> str:
    """One line per seed (times, C_ and test log-loss of each row), then the ratios."""
    head = "| seed | " + " | ".join(f"{r} (s)" for r in rows) + " | " + " | ".join(
        f"{r} C_ / log-loss" for r in rows) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(rows))]
    for seed, res in by_seed.items():
        times = [f"{res[r]['time']:.2f}" if r in res else "-" for r in rows]
        fits = [f"{np.median(res[r]['C']):.4g} / {res[r]['log_loss']:.4f}" if r in res else "-"
                for r in rows]
        lines.append(f"| {seed} | " + " | ".join(times + fits) + " |")
    lines.append("")
    for a, b in RATIOS:
        ratios = [res[a]["time"] / res[b]["time"] for res in by_seed.values()
                  if a in res and b in res]
        if ratios:
            lines.append(f"{a} / {b} fit time over {len(ratios)} seeds: geometric mean "
                         f"{np.exp(np.mean(np.log(ratios))):.3f}, range {min(ratios):.3f}-"
                         f"{max(ratios):.3f}")
    for r in rows:
        times = [res[r]["time"] for res in by_seed.values() if r in res]
        if times:
            lines.append(f"{r}: total {sum(times):.1f} s, median {np.median(times):.2f} s")
    return "\n".join(lines)


def build_parser():
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    estimator_speed.add_protocol_arguments(parser)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-9"),
                        help="seeds of the test splits: '0-9', '0,3,5' (default 0-9)")
    parser.add_argument("--rows", default="shine-cv5,shine-cv5-j2,lrcv-j2",
                        help=f"comma-separated rows among {', '.join(estimator_speed.ROWS)}")
    parser.add_argument("--out", help="folder for one JSON file per seed")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the seeds in --out made by the same code and settings")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in estimator_speed.ROWS]
    if unknown:
        raise SystemExit(f"estimator_seeds.py: unknown rows {unknown}; choose among "
                         f"{', '.join(estimator_speed.ROWS)}")
    if args.resume and not args.out:
        raise SystemExit("estimator_seeds.py: --resume needs --out (where the seeds' files are)")
    by_seed, code = {}, code_fingerprint()  # (hashed once: the sources of this run)
    for seed in args.seeds:
        try:
            by_seed[seed] = run_seed(args, rows, seed, code)
        except (OSError, ValueError) as exc:  # (missing data: one line, not a traceback)
            raise SystemExit(f"estimator_seeds.py: {exc}") from None
        done = ", ".join(f"{r} {by_seed[seed][r]['time']:.2f} s" for r in rows
                         if r in by_seed[seed])
        print(f"seed {seed}: {done}", flush=True)
    print(f"{args.dataset}, seeds {args.seeds[0]}-{args.seeds[-1]} "
          f"({args.test_size:g} stratified test split each)\n")
    print(format_summary(rows, by_seed))


if __name__ == "__main__":
    main()
