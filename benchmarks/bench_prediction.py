"""Prediction with standard errors against the predictions alone, at many groups.

Run:  python benchmarks/bench_prediction.py [--groups 200000] [--size 5] [--repeat 7]

Fits ``y ~ x`` with a random intercept and slope on ``x`` (groups of ``--size`` rows),
then times on the fitted frame, interleaved (predict, get_prediction, predict, ...),
warm (one untimed run of each first), the median of ``--repeat`` with min and max:
``predict(df, include_random=True)`` against
``get_prediction(df, include_random=True).summary_frame()`` (which includes reading
the per-group ``Z'X`` from the fit's statistics and the cross terms ``M_i Z_i'X_i``,
timed alone too), and the same two without ``include_random``.  Wall and CPU time
(``time.process_time``: this process, all threads) of each call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

import dmixed
from dmixed.results.prediction_error import conditional_cross


def timed(func) -> tuple[float, float]:
    """Wall and CPU (this process, all threads) seconds of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(args.groups), args.size)
    x = rng.normal(size=len(g))
    b = rng.normal(size=(args.groups, 2)) * [1.0, 0.5]
    y = 1 + x + b[g, 0] + b[g, 1] * x + rng.normal(size=len(g))
    df = pd.DataFrame({"g": g, "x": x, "y": y})
    res = dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1 + x").fit()
    stats = res.model.statistics()
    cases = {
        "predict, include_random": lambda: res.predict(df, include_random=True),
        "get_prediction, include_random": lambda: res.get_prediction(
            df, include_random=True
        ).summary_frame(),
        "cross terms alone": lambda: conditional_cross(res.to_state(), stats),
        "predict, fixed": lambda: res.predict(df),
        "get_prediction, fixed": lambda: res.get_prediction(df).summary_frame(),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for func in cases.values():
        func()  # warm
    for _ in range(args.repeat):
        for what, func in cases.items():
            times[what].append(timed(func))
    print(f"{args.groups} groups of {args.size} rows, median of {args.repeat} (min, max), ms")
    for what, ts in times.items():
        for kind, col in (("wall", 0), ("cpu", 1)):
            ms = [1000 * t[col] for t in ts]
            print(
                f"  {what:32s} {kind} {statistics.median(ms):9.1f} ({min(ms):.1f}, {max(ms):.1f})"
            )
    for kind in ("include_random", "fixed"):
        for clock, col in (("wall", 0), ("cpu", 1)):
            a = statistics.median(t[col] for t in times[f"get_prediction, {kind}"])
            b = statistics.median(t[col] for t in times[f"predict, {kind}"])
            print(f"  get_prediction / predict, {kind}, {clock}: {a / b:.2f}")


if __name__ == "__main__":
    main()
