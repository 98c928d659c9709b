"""Seconds per ``dmixed.mixedlm(formula, df, groups="g")`` (the spec's build and the
design of the rows) on a 2000-row frame, warm, for one formula.

Run:  python benchmarks/bench_spec_build.py FORMULA [--checkout DIR] [--calls]

Prints the median of 7 rounds of 20 builds, in milliseconds; with ``--calls`` the
Python function calls per build instead (cProfile's count: repeatable on a loaded
machine).  For an A/B run it alternately with ``PYTHONPATH`` set to each checkout
(``--checkout`` asserts which ``dmixed`` was imported).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

import dmixed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formula")
    ap.add_argument("--checkout", default="")
    ap.add_argument("--calls", action="store_true")
    args = ap.parse_args()
    assert dmixed.__file__.startswith(args.checkout), dmixed.__file__
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "g": rng.integers(0, 100, size=n),
        }
    )
    dmixed.mixedlm(args.formula, df, groups="g")  # warm
    if args.calls:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        for _ in range(20):
            dmixed.mixedlm(args.formula, df, groups="g")
        profile.disable()
        print(pstats.Stats(profile).total_calls // 20)
        return
    times = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(20):
            dmixed.mixedlm(args.formula, df, groups="g")
        times.append((time.perf_counter() - t) / 20)
    print(f"{statistics.median(times) * 1e3:.3f}")


if __name__ == "__main__":
    main()
