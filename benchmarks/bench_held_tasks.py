"""Tasks the Dask scheduler still knows after fits whose results were dropped, with
Python's cyclic garbage collector off, then after one collection.

Run from the repository root: ``PYTHONPATH=TREE python benchmarks/bench_held_tasks.py
[--engine distributed|auto|local] [--fits 6] [--read]``.  Two Parquet datasets are
written to a temporary directory: ``many`` (240 000 rows, 5000 groups, 8 files) and
``two`` (60 000 rows, 2 groups, 4 files; its fits fall back from a Cholesky of the
information matrix that fails in floating point).  On a LocalCluster of two
single-threaded worker processes, each dataset is fitted ``--fits`` times
(``y ~ x1 + x2``, random intercept and slope on ``x1``); after each fit its results are
dropped (``--read``: after reading ``random_effects`` and ``random_effects_cov`` of a
group and ``summary()``), and the scheduler's task count and the workers' held keys are
printed.  Nothing of a dropped fit should stay: each count is 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import warnings

import numpy as np
import pandas as pd


def frame(seed: int, n: int, groups: int) -> pd.DataFrame:
    """A random intercept and slopes model's rows, with nested cells of noise."""
    r = np.random.default_rng(seed)
    g = r.integers(0, groups, n)
    x1 = r.normal(size=n) * 2
    x2 = r.normal(size=n)
    b0, b1, b2 = r.normal(size=groups), r.normal(size=groups) * 0.5, r.normal(size=groups) * 0.3
    y = 1 + 0.5 * x1 - x2 + b0[g] + b1[g] * x1 + b2[g] * x2 + r.normal(size=n)
    c = r.integers(0, 4, n)
    y += r.normal(size=(groups, 4))[g, c] * 0.7
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def write(path: str, df: pd.DataFrame, files: int) -> None:
    os.makedirs(path)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), files)):
        df.iloc[rows].reset_index(drop=True).to_parquet(f"{path}/part.{i:03d}.parquet")


def counts(client) -> tuple[int, int]:
    """(tasks the scheduler knows, keys the workers hold)."""
    tasks = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    held = sum(client.run(lambda dask_worker: len(dask_worker.data)).values())
    return tasks, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="distributed")
    ap.add_argument("--fits", type=int, default=6)
    ap.add_argument("--read", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("DMIXED_KERNELS", "numba")
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import dmixed

    warnings.simplefilter("ignore")
    env = {"DMIXED_KERNELS": os.environ["DMIXED_KERNELS"]}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    print(f"{dmixed.__file__}: engine {args.engine}, {args.fits} fits a dataset")
    with tempfile.TemporaryDirectory() as tmp:
        write(f"{tmp}/many", frame(0, 240_000, 5000), 8)
        write(f"{tmp}/two", frame(1, 60_000, 2), 4)
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, env=env) as cl,
            Client(cl) as client,
            dask.config.set({"dmixed.engine": args.engine}),
        ):
            gc.collect()
            gc.disable()
            for name in ("many", "two"):
                out = []
                for _ in range(args.fits):
                    data = dd.read_parquet(f"{tmp}/{name}")
                    res = dmixed.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="1 + x1").fit(
                        client=client
                    )
                    if args.read:
                        key = res.group_labels[0]
                        res.random_effects[key], res.random_effects_cov[key], res.summary()
                    del res
                    time.sleep(1.2)  # releases reach the scheduler in their own time
                    out.append(counts(client))
                print(f"  {name}: (tasks, held keys) after each fit {out}", flush=True)
            gc.enable()
            gc.collect()
            time.sleep(1.5)
            print(f"  after gc.collect(): {counts(client)}")


if __name__ == "__main__":
    main()
