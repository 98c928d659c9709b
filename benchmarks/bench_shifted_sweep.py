"""Thread CPU of one compiled column sweep (``TermTable.add_columns``), with and
without the sums about the groups' shifts (``keep_shifts``): 5M rows into 1M groups,
integer keys in range mode, ``y ~ x1 + … + xNX`` with ``Z = [1, x1]``.

    python benchmarks/bench_shifted_sweep.py [--repeat 6] [--nx 3] [--shifts] [--fresh]

Prints the table's width and the best of the repeats after the first (which compiles
or loads the kernel).  Buffers are kept for later tables as in a Dask worker unless
``--fresh`` (benchmarks/RESULTS.md, lossy-s44).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dmixed.kernels.term_table import ColumnPlan, TermTable, keep_table_buffers
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import Standardization


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--nx", type=int, default=3)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--shifts", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    if not args.fresh:
        keep_table_buffers(True)
    rng = np.random.default_rng(0)
    base = 10**9
    keys = rng.integers(0, args.groups, args.rows).astype(np.int64) + base
    xs = [rng.normal(size=args.rows) + 3] + [rng.normal(size=args.rows) for _ in range(args.nx - 1)]
    y = 1 + xs[0] + rng.normal(size=args.rows)
    plan = ColumnPlan(x_of=tuple([-1, *range(args.nx + 1)]), z_of=(-1, 0))
    exog = np.column_stack([np.ones(1000)] + [x[:1000] for x in xs])
    std = Standardization.choose(y[:1000], exog, exog[:, :2].copy())
    acc = np.zeros((PackedLayout(2, args.nx + 2).width, args.groups))
    times, width = [], 0
    for _ in range(args.repeat):
        table = TermTable(keep_shifts=args.shifts)
        t0 = time.thread_time()
        table.add_columns(acc, keys, [*xs, y], plan, std, base)
        times.append(time.thread_time() - t0)
        width = table.table.shape[1]
        table.flush(acc)
    shown = " ".join(f"{1e3 * t:.0f}" for t in times)
    print(f"shifts {args.shifts} width {width} best {1e3 * min(times[1:]):.1f} ms ({shown})")


if __name__ == "__main__":
    main()
