"""Per-group results at many groups: statsmodels' dict of BLUPs against one DataFrame.

Run:  python benchmarks/bench_results.py [--groups 200000] [--repeat 5]

Fits a random-intercept model on groups of 5 rows, then times (median of ``--repeat``
fresh results objects each): reaching ``res.random_effects`` (statsmodels' dict), one
lookup in it, every lookup (the whole dict made), and ``res.random_effects_frame()``.
The eager build that ``random_effects`` used to do (one Series per group) is timed in
the same run as the reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

import dmixed


def timed(func) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(args.groups), 5)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=len(g))})
    df["y"] = 1 + df.x + rng.normal(size=args.groups)[g] + rng.normal(size=len(g))
    res = dmixed.mixedlm("y ~ x", df, groups="g").fit()
    state = res.to_state()
    names = list(res.names.exog_re_names)

    def eager() -> dict:
        return {
            label: pd.Series(state.blup[gi, : len(names)], index=names)
            for gi, label in enumerate(state.group_labels)
        }

    rows = {"attribute": [], "one lookup": [], "every lookup": [], "frame": [], "eager": []}
    key = state.group_labels[args.groups // 2]
    for _ in range(args.repeat):
        fresh = dmixed.MixedLMResults.from_state(state)
        rows["attribute"].append(timed(lambda r=fresh: r.random_effects))
        rows["one lookup"].append(timed(lambda r=fresh: r.random_effects[key]))
        rows["every lookup"].append(timed(lambda r=fresh: list(r.random_effects.values())))
        rows["frame"].append(timed(fresh.random_effects_frame))
        rows["eager"].append(timed(eager))
    print(f"{args.groups} groups, median of {args.repeat} (min, max), ms")
    for what, times in rows.items():
        ms = [1000 * t for t in times]
        print(f"  {what:<14} {statistics.median(ms):10.2f}  ({min(ms):.2f}, {max(ms):.2f})")


if __name__ == "__main__":
    main()
