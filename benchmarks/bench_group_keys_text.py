"""CPU seconds of reading back the group keys that Dask's ``from_pandas`` turned into
text (``restored_values``: on the driver, once per ``select_columns`` of such a
collection, once in ``from_formula`` and once in each prediction).

Run from the repository root, once per tree to compare:
``PYTHONPATH=<tree> python benchmarks/bench_group_keys_text.py [ROWS] [GROUPS]``.
"""

from __future__ import annotations

import sys
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dmixed.design.partitions import restored_values

KEYS = {"bytes": lambda i: f"g{i}".encode(), "tuple": lambda i: (i % 4, f"g{i}")}


def main(rows: int, groups: int) -> None:
    ids = np.random.default_rng(0).integers(0, groups, rows)
    for kind, key in KEYS.items():
        g = np.empty(rows, dtype=object)
        g[:] = [key(int(i)) for i in ids]
        with dask.config.set({"dataframe.convert-string": True}):
            ddf = dd.from_pandas(pd.DataFrame({"g": g, "y": ids * 1.0}), npartitions=8)
        times = []
        for _ in range(3):
            t = time.process_time()
            restored_values(ddf, ["g", "y"], "g")
            times.append(time.process_time() - t)
        best = min(times)
        print(f"{kind} rows={rows} groups={groups}: restored_values {best:.3f} s CPU (best of 3)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3])) if len(sys.argv) > 2 else main(1_000_000, 100_000)
