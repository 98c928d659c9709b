"""One chain of the Dask data pass in one process: CPU seconds, or one pass for a profiler.

Run:  MALLOC_TRIM_THRESHOLD_=65536 OPENBLAS_NUM_THREADS=1 \\
      python benchmarks/bench_chain.py [--dir /tmp/bd20] [--parts 8] [--repeat 4]
      valgrind --tool=callgrind python benchmarks/bench_chain.py --parts N --once

The first ``--parts`` partitions of ``dd.read_parquet(--dir)`` (the data of
``bench_dask.py``), fitted as ``y ~ x1 + x2 + x3`` with a random intercept and slope on
x1, are read and summed by ``dmixed.engines.dask.partials.chain_partials`` as one chain
of a fit does it (its direct Parquet reads where this dmixed has them), with the
workers' malloc settings, two buckets; exchange ``auto`` (as fits run) and ``partials``
(never routing).  Prints the CPU medians of ``--repeat`` passes after a warm one.  With
``--once``: one pass, exchange ``partials``, nothing timed (run it under ``valgrind``
with two values of ``--parts`` and subtract, so that the imports and the start cancel).
Runs on older trees too (set ``PYTHONPATH`` to one), for a before/after in turn.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bd20", help="Parquet data (see bench_dask.py)")
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args()

    import dask.dataframe as dd
    import numba  # noqa: F401 - loaded, as in a worker that ran a chain before

    import dmixed
    from dmixed.engines.dask.graph import chain_recipes, project_columns
    from dmixed.engines.dask.partials import chain_partials
    from dmixed.engines.dask.pieces import Pieces
    from dmixed.engines.dask.tuning import tune_malloc
    from dmixed.stats.packed import PackedLayout

    tune_malloc()
    ddf = dd.read_parquet(args.dir)
    spec = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1").spec
    (chain,) = chain_recipes(project_columns(ddf, spec), 1)
    chain = Pieces(chain.items[: args.parts])
    extra = {}
    try:  # this session's direct reads; absent in older trees
        from dmixed.engines.dask.parquet_direct import parquet_reads

        extra = {"reads": parquet_reads(chain, spec)}
    except ImportError:
        pass
    packed = PackedLayout(2, 5)

    def run(mode: str) -> None:
        chain_partials(chain, spec, None, packed, 2, np.dtype("int64"), None, mode, **extra)

    print(f"dmixed from {dmixed.__file__}; direct reads: {bool(extra.get('reads'))}")
    if args.once:
        run("partials")
        return
    cpu: dict[str, list[float]] = {"auto": [], "partials": []}
    for _ in range(args.repeat + 1):
        for mode, runs in cpu.items():
            start = time.process_time()
            run(mode)
            runs.append(time.process_time() - start)
    for mode, runs in cpu.items():
        kept = np.array(runs[1:]) * 1e3
        print(
            f"exchange {mode:8s}: CPU {np.median(kept):7.0f} ms a chain of {args.parts} "
            f"partitions (min {kept.min():.0f}, max {kept.max():.0f})"
        )


if __name__ == "__main__":
    main()
