"""The numbers of the out-of-core fit of ``bench_fit_anatomy.py``, to compare two trees.

Run:  cd /tmp && PYTHONPATH=<tree> python <tree>/benchmarks/bd20_fit_numbers.py
          --dir /tmp/bd20 --out FILE [--against FILE] [--fits 2]

Fits ``y ~ x1 + x2 + x3`` with a random intercept and slope on ``x1`` (REML) on a local
cluster of two single-threaded workers (``bench_dask.local_cluster``), ``--fits`` times,
and writes the last fit's ``llf``, ``fe_params``, ``bse``, ``cov_re``, ``scale``, the
number of iterations and the first BLUPs (full precision) to ``--out`` as JSON; with
``--against`` (another tree's file), prints the largest relative difference of each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import dask.dataframe as dd
import numpy as np
from distributed import Client

import dmixed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dask import local_cluster  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--against")
    ap.add_argument("--fits", type=int, default=2)
    args = ap.parse_args()
    with local_cluster(2, "8GiB", True) as cluster, Client(cluster) as client:
        for _ in range(args.fits):
            model = dmixed.mixedlm(
                "y ~ x1 + x2 + x3", dd.read_parquet(args.dir), groups="g", re_formula="1 + x1"
            )
            res = model.fit(client=client)
        re = res.random_effects
        first = np.asarray(re.iloc[:5] if hasattr(re, "iloc") else list(re.values())[:5])
        numbers = {
            "llf": float(res.llf),
            "fe_params": np.asarray(res.fe_params, dtype=float).tolist(),
            "bse": np.asarray(res.bse, dtype=float).tolist(),
            "cov_re": np.asarray(res.cov_re, dtype=float).ravel().tolist(),
            "scale": float(res.scale),
            "blups": np.asarray(first, dtype=float).ravel().tolist(),
        }
    print(f"dmixed from {dmixed.__file__}: llf {numbers['llf']!r}")
    with open(args.out, "w") as f:
        json.dump(numbers, f)
    if args.against:
        with open(args.against) as f:
            other = json.load(f)
        for key, value in numbers.items():
            a, b = np.asarray(value, dtype=float), np.asarray(other[key], dtype=float)
            rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
            print(f"  {key:10s} largest relative difference {rel:.2e}")


if __name__ == "__main__":
    main()
