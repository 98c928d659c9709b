"""Seconds per ``dmixed.mixedlm(formula, df, groups="g")`` (the spec's build and the
design of the rows) on a 2000-row frame, warm, for one formula.

Run:  python benchmarks/bench_spec_build.py FORMULA [--checkout DIR] [--calls]
      python benchmarks/bench_spec_build.py --wide 50,100,300 [--factors both] [--rounds 5]

Prints the median of 7 rounds of 20 builds, in milliseconds; with ``--calls`` the
Python function calls per build instead (cProfile's count: repeatable on a loaded
machine).  For an A/B run it alternately with ``PYTHONPATH`` set to each checkout
(``--checkout`` asserts which ``dmixed`` was imported).

``--wide``: the spec of ``y ~ x0 + ... + x{w-1}`` (``--factors yes``: ``+ C(a) + C(b)``,
3 and 4 levels; ``both``: with and without) for each width w on a 2000-row frame, by
``dmixed.design.build_spec`` against patsy's ``dmatrices`` (the peer: statsmodels'
design) in the same process, alternated; one line per case: width, factors, then the
median over ``--rounds`` of each one's thread CPU time per build in milliseconds (one
build of each before, not timed).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

import dmixed


def _wide_frame(width: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(width)})
    df["y"] = rng.normal(size=n)
    df["g"] = rng.integers(0, 100, size=n)
    df["a"] = rng.choice(["p", "q", "r"], size=n)
    df["b"] = rng.choice(["u", "v", "w", "z"], size=n)
    return df


def wide(widths: list[int], factors: str, rounds: int) -> None:
    """Print, per width and factors, the medians of dmixed's and patsy's build."""
    import patsy

    from dmixed.design import build_spec

    print("width factors dmixed_ms patsy_ms", flush=True)
    for width in widths:
        df = _wide_frame(width)
        for with_factors in {"yes": [True], "no": [False], "both": [False, True]}[factors]:
            formula = "y ~ " + " + ".join(f"x{i}" for i in range(width))
            formula += " + C(a) + C(b)" if with_factors else ""
            builds = {
                "dmixed": lambda f=formula, d=df: build_spec(d, f, "g"),
                "patsy": lambda f=formula, d=df: patsy.dmatrices(f, d),
            }
            times: dict[str, list[float]] = {k: [] for k in builds}
            for build in builds.values():
                build()  # (warm)
            for _ in range(rounds):
                for name, build in builds.items():
                    t = time.thread_time()
                    build()
                    times[name].append(time.thread_time() - t)
            dm, pa = (statistics.median(times[k]) * 1e3 for k in builds)
            print(f"{width} {'yes' if with_factors else 'no'} {dm:.1f} {pa:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formula", nargs="?")
    ap.add_argument("--checkout", default="")
    ap.add_argument("--calls", action="store_true")
    ap.add_argument("--wide", default="", help="widths, comma-separated")
    ap.add_argument("--factors", choices=["yes", "no", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    assert dmixed.__file__.startswith(args.checkout), dmixed.__file__
    if args.wide:
        wide([int(w) for w in args.wide.split(",")], args.factors, args.rounds)
        return
    if args.formula is None:
        ap.error("a formula, or --wide")
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
