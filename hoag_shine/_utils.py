"""Small internal helpers."""

from __future__ import annotations

import functools

from threadpoolctl import threadpool_limits


def single_thread_blas(func):
    """Run ``func`` with BLAS limited to one thread.

    The solvers here make many level-1 BLAS calls (dots, axpys on vectors of
    the problem's size) between sparse products. Waking BLAS threads for each
    costs more than they gain: on the 2-core benchmark machine, one L-BFGS
    forward pass on 20news took 7 s with two BLAS threads and 0.25 s with one.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper
