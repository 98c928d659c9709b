"""Crossed subjects × items in one group: lme4's ``y ~ x + (1 | subj) + (1 | item)``.

    python benchmarks/bench_crossed.py [--rows 20000] [--subjects 2000] [--items 2000]
        [--repeats 1] [--slope] [--statsmodels]

Written as statsmodels writes it: one group holding every row, ``vc_formula={"subj":
"0 + C(subj)", "item": "0 + C(item)"}`` (with ``--slope`` the subject component is
``0 + C(subj):x``).  Each subject sees about ``rows / subjects`` random items, so the
item block eliminated against the subjects' border is sparse.  Whole fits (REML), the
CPU and wall seconds of each, the llf and the variance components; with
``--statsmodels`` one statsmodels fit of the same model (minutes from a few thousand
levels).  BLAS pinned to one thread.
"""

from __future__ import annotations

import argparse
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import dmixed  # noqa: E402


def rows(n: int, subjects: int, items: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows: random (subject, item) pairs, a by-subject slope and item intercepts."""
    rng = np.random.default_rng(seed)
    subj, item = rng.integers(0, subjects, n), rng.integers(0, items, n)
    x = rng.normal(size=n)
    slope, icpt = 0.5 * rng.normal(size=subjects), rng.normal(size=items)
    y = 1.0 + 0.5 * x + slope[subj] * x + icpt[item] + rng.normal(size=n)
    return pd.DataFrame(dict(y=y, x=x, subj=subj, item=item, one=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--subjects", type=int, default=2000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--slope", action="store_true", help="the subject component C(subj):x")
    ap.add_argument("--statsmodels", action="store_true", help="one statsmodels fit too")
    args = ap.parse_args()
    df = rows(args.rows, args.subjects, args.items)
    vc = {"subj": "0 + C(subj):x" if args.slope else "0 + C(subj)", "item": "0 + C(item)"}
    print(f"rows {args.rows}, {args.subjects} subjects x {args.items} items, vc {vc}")
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        res = dmixed.mixedlm("y ~ x", df, groups="one", vc_formula=vc).fit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"dmixed      wall {wall:8.2f} s  cpu {cpu:8.2f} s", end="")
        print(f"  llf {res.llf:.10f}  vcomp {res.vcomp}")
    if args.statsmodels:
        import statsmodels.formula.api as smf

        wall, cpu = time.perf_counter(), time.process_time()
        ref = smf.mixedlm("y ~ x", df, groups="one", vc_formula=vc).fit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"statsmodels wall {wall:8.2f} s  cpu {cpu:8.2f} s", end="")
        print(f"  llf {ref.llf:.10f}  vcomp {ref.vcomp}")


if __name__ == "__main__":
    main()
