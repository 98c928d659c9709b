"""Small in-process timings for interleaved A/B runs of two checkouts.

Run:  python benchmarks/bench_micro.py [--groups 100000] [--step-groups 300000]

Prints the best of several runs, in one process, BLAS on one thread: the data pass of a
random-slope model (``MixedLM(...).statistics()``, array input, groups of 10 rows), one
optimizer step (``engine.step``) and one Hessian round trip (``engine.hessian``).  Run it
from each checkout's own environment, alternately, to compare two versions on this
machine, whose wall times swing ±10 % between runs minutes apart.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from bench_core import make  # noqa: E402

import dmixed  # noqa: E402


def best(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--step-groups", type=int, default=300_000)
    args = ap.parse_args()
    y, x, z, g = make(args.groups)
    for _ in range(2):  # warm up
        dmixed.MixedLM(y, x, g, exog_re=z).statistics()
    pass_ms = best(lambda: dmixed.MixedLM(y, x, g, exog_re=z).statistics(), 7)
    y, x, z, g = make(args.step_groups)
    stats = dmixed.MixedLM(y, x, g, exog_re=z).statistics()
    lam = np.array([[1.0, 0.0], [0.2, 0.5]])
    w = np.array([-1.0, -2.0, -3.0, 1.0])
    step_ms = best(lambda: stats.engine.step(lam, 2), 9)
    hess_ms = best(lambda: stats.engine.hessian(lam, stats.layout.basis(), w), 5)
    print(
        f"{dmixed.__file__}: data pass {pass_ms:.1f} ms ({args.groups} groups), "
        f"step {step_ms:.2f} ms, Hessian {hess_ms:.2f} ms ({args.step_groups} groups)"
    )


if __name__ == "__main__":
    main()
