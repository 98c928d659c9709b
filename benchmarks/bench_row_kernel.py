"""The chain's compiled per-row pass against the numpy reference, and its costs.

Run:  python benchmarks/bench_row_kernel.py [--rows 1250000] [--groups 1000000]
                                            [--parts 4] [--repeat 5]

1. A chain: ``--parts`` partitions of ``--rows`` rows (random intercept and slope on x1,
   ``y ~ x1 + x2 + x3``, standardized columns, groups drawn at random) added into one
   ``GroupAccumulator`` of ``--groups`` groups, then its partial in 2 buckets; CPU time
   of this process, with the numpy reference (``DMIXED_KERNELS=numpy``: one ``bincount``
   per term into the column-major accumulator) and the compiled table
   (``DMIXED_KERNELS=numba``: ``kernels.term_table.TermTable``), interleaved, warm (one
   untimed round), medians with min and max over ``--repeat`` rounds.  The largest
   difference between the two partials relative to each column's largest sum is
   printed too.
2. In fresh processes: the import of the generated kernel's module (numba), the first
   call with an empty disk cache (generate + compile) and with the cache filled (load),
   and ``import dmixed`` (which must not import numba).

Writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from _report import write_report

FRESH = """
import time
t0 = time.perf_counter()
from dmixed.kernels import term_jit
t1 = time.perf_counter()
import numpy as np
k = term_jit.term_kernel((("count",), ("col", 0), ("prod", 0, 1), ("prod", 1, 1)))
k(np.zeros(3, dtype=np.int64), np.zeros((1, 4)), np.ones(3), np.ones(3))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _data(rows: int, groups: int, seed: int):
    from dmixed.stats.standardize import Standardization

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) + 3.0
    exog = np.asfortranarray(np.column_stack([np.ones(rows), x]))
    y = rng.normal(size=rows) + 10.0
    z = np.asfortranarray(exog[:, :2])
    codes = rng.integers(0, groups, rows)
    return codes, y, exog, z, Standardization.choose(y, exog, z, (0, 0), [])


def _chain(parts, std, kernels_env: str) -> list:
    """A chain's accumulator over ``parts``, then its partial in 2 buckets."""
    from types import SimpleNamespace

    from dmixed import kernels
    from dmixed.engines.dask.combine import GroupAccumulator

    os.environ["DMIXED_KERNELS"] = kernels_env
    acc = GroupAccumulator(kernels.packed_width(2, 5), np.int64)
    for codes, y, exog, z in parts:
        acc.add(codes, SimpleNamespace(endog=y, exog=exog, weights=None), z, std)
    return acc.result(2)


def _fresh_process() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "DMIXED_KERNEL_CACHE": cache}
        runs = []
        for _ in range(2):  # empty cache, then filled
            out = subprocess.run(
                [sys.executable, "-c", FRESH], env=env, check=True, capture_output=True, text=True
            )
            runs.append([float(v) for v in out.stdout.split()])
    t0 = time.perf_counter()
    code = "import sys, dmixed; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    return {
        "import_numba_s": runs[1][0],
        "first_call_compile_s": runs[0][1],
        "first_call_cached_s": runs[1][1],
        "import_dmixed_process_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_250_000)
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/out/row_kernel.json")
    args = ap.parse_args()
    data = [_data(args.rows, args.groups, seed) for seed in range(args.parts)]
    std = data[0][4]
    parts = [d[:4] for d in data]
    times: dict[str, list[float]] = {"numpy": [], "numba": []}
    out = {}
    for round_ in range(args.repeat + 1):  # the first round is not counted (warm-up)
        for name in times:
            t0 = time.process_time()
            out[name] = _chain(parts, std, name)
            if round_:
                times[name].append(time.process_time() - t0)
    want = np.concatenate([v for _, v in out["numpy"]])
    got = np.concatenate([v for _, v in out["numba"]])
    scale = np.abs(want).max(axis=0) + 1e-300
    max_rel = float(np.max(np.abs(got - want) / scale))
    rows = args.rows * args.parts
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "args": vars(args),
        "max_rel_diff": max_rel,
    }
    print(f"{args.parts} partitions of {args.rows:,} rows into {args.groups:,} groups, CPU:")
    for name, ts in times.items():
        med = float(np.median(ts))
        report[name] = {"median_s": med, "min_s": min(ts), "max_s": max(ts)}
        print(
            f"  {name:9s} {1e3 * med:7.1f} ms ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}) "
            f"= {1e9 * med / rows:5.1f} ns a row"
        )
    print(f"  numpy / compiled: {report['numpy']['median_s'] / report['numba']['median_s']:.2f}")
    print(f"  largest difference / the column's largest sum: {max_rel:.1e}")
    report["fresh"] = _fresh_process()
    for key, value in report["fresh"].items():
        print(f"  {key}: {value:.3f} s")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
