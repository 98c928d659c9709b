"""Bytes the Dask data pass's tasks route to the bucket nodes with a variance component.

    python benchmarks/bench_vc_exchange.py [TREE] [--groups 120] [--levels 120]

Imports dmixed from ``TREE`` (default: the installed one), shuffles
``bench_vc.synthetic(groups, levels)``, reads it as 4 ``dd.from_map`` partitions and runs
the data pass of ``y ~ x`` with ``re_formula="1"``, ``vc_formula={"c": "0 + C(level)"}``
with rows routed (``dmixed.exchange="rows"``) on the synchronous scheduler; prints the
pass's exchange line (tasks, MB sent) and its time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings


class Parts:
    """Partition ``i``: every 4th row from ``i`` (every group in every partition)."""

    def __init__(self, df, n: int) -> None:
        self.df, self.n = df, n

    def __call__(self, i: int):
        return self.df.iloc[i :: self.n].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tree", nargs="?", default=None)
    ap.add_argument("--groups", type=int, default=120)
    ap.add_argument("--levels", type=int, default=120)
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, os.path.abspath(args.tree))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_vc
    import dask
    import dask.dataframe as dd

    import dmixed

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("dmixed").setLevel(logging.INFO)
    data = bench_vc.synthetic(args.groups, args.levels).sample(frac=1.0, random_state=0)
    data = data.reset_index(drop=True)
    ddf = dd.from_map(Parts(data, 4), range(4), meta=data.iloc[:0], enforce_metadata=False)
    config = {"dmixed.exchange": "rows", "scheduler": "sync"}
    with dask.config.set(config), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        model = dmixed.MixedLM.from_formula(
            "y ~ x", data=ddf, groups="g", re_formula="1", vc_formula={"c": "0 + C(level)"}
        )
        model.statistics()
    print(f"statistics {time.perf_counter() - t:.2f} s ({dmixed.__file__})")


if __name__ == "__main__":
    main()
