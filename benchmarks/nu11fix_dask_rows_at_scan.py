"""Thread CPU and wall time of a Dask fit refused for too few rows: a Decimal column
that ``dd.from_pandas`` turned into text, one level per row (600 rows, 3 partitions,
Dask's local scheduler).  Run once per checkout with ``PYTHONPATH`` naming it."""

from __future__ import annotations

import decimal
import time
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd

import dmixed


def main() -> None:
    rng = np.random.default_rng(7)
    n = 600
    x = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "y": x + rng.normal(size=n),
            "g": rng.integers(0, 20, n),
            "dec": [decimal.Decimal(f"{v:.2f}") for v in x * 1000 + 1e6],
        }
    )
    ddf = dd.from_pandas(df, npartitions=3)
    warnings.simplefilter("ignore")
    t0, c0 = time.perf_counter(), time.thread_time()
    stage = "model build"
    try:
        model = dmixed.mixedlm("y ~ dec", ddf, groups="g")
        stage = "fit"
        model.fit()
        where = "fitted"
    except dmixed.errors.DataError as exc:
        where = f"refused at the {stage}: {str(exc)[:40]}"
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    print(f"{dmixed.__file__}: wall {wall:.2f} s, thread CPU {cpu:.2f} s: {where}")


if __name__ == "__main__":
    main()
