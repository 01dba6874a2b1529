"""Implicit models: the SHINE paper's DEQ comparison in miniature (``hoag-shine deq``).

For each data set (digits, a generated 6,000 x 40 set), regime (a contraction;
a Jacobian of spectral radius near 1) and backward strategy, 5 seeds: backward
and forward time per batch, the cosine of the parameter gradient with the exact
one along training, test accuracy and log-loss, training time. Each finished run
is written to ``OUT/runs/*.json`` (an interrupted benchmark keeps them; a run is
redone when its settings changed), then the table and the figure.

    python benchmarks/deq.py --out results/deq            # or: hoag-shine deq
    python benchmarks/deq.py --datasets digits --seeds 0-1 --strategies shine,exact
"""

from hoag_shine.cli import main

if __name__ == "__main__":
    import sys

    main(["deq", *sys.argv[1:]])
