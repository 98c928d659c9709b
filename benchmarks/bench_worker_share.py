"""One worker's share of a 2-worker Dask data pass, in one process: thread CPU and page faults.

Run:  MALLOC_TRIM_THRESHOLD_=65536 OPENBLAS_NUM_THREADS=1 \\
      python benchmarks/bench_worker_share.py [--dir /tmp/bd20] [--repeat 4]

The data of ``bench_dask.py`` (``y ~ x1 + x2 + x3``, random intercept and slope on x1)
is split into the fit's two chains.  The second chain runs once, untimed, and its
partial of bucket 0 is pickled, as the other worker sends it.  Then, ``--repeat`` times
after a warm pass, what the first worker does: its chain
(``dmixed.engines.dask.partials.chain_partials``, exchange ``partials``), the other
partial unpickled (received), bucket 0's combine (``combine_converted``) and its held
block (``to_block(held=True)``), the last pass's block released after the chain as a
warm worker releases the last fit's.  Prints each stage's thread CPU (ms) and minor page
faults, the bytes sent, and the medians of the totals.  Runs on older trees too (set
``PYTHONPATH`` to one), for a before/after in turn.
"""

from __future__ import annotations

import argparse
import pickle
import resource
import time

import numpy as np


def _now() -> tuple[float, int]:
    return time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bd20", help="Parquet data (see bench_dask.py)")
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()

    import dask.dataframe as dd
    import numba  # noqa: F401 - loaded, as in a worker that ran a chain before

    import dmixed
    from dmixed.engines.dask import combine
    from dmixed.engines.dask.blocks import to_block
    from dmixed.engines.dask.graph import chain_recipes, project_columns
    from dmixed.engines.dask.parquet_direct import parquet_reads
    from dmixed.engines.dask.partials import chain_partials
    from dmixed.engines.dask.tuning import tune_malloc
    from dmixed.stats.packed import PackedLayout

    tune_malloc()
    ddf = dd.read_parquet(args.dir)
    spec = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1").spec
    mine, theirs = chain_recipes(project_columns(ddf, spec), 2)
    packed = PackedLayout(2, 5)

    def chain(recipe):
        reads = parquet_reads(recipe, spec)
        return chain_partials(
            recipe, spec, None, packed, 2, np.dtype("int64"), None, "partials", reads
        )

    other = chain(theirs)
    sent = pickle.dumps((other[0][0], other[2]), protocol=5)
    del other
    print(f"dmixed from {dmixed.__file__}; bucket 0's partial sent: {len(sent) / 1e6:.1f} MB")
    totals = []
    block = None
    for i in range(args.repeat + 1):
        stages: dict[str, tuple[float, int]] = {}

        def mark(name: str, start: tuple[float, int], stages=stages) -> None:
            end = _now()
            stages[name] = ((end[0] - start[0]) * 1e3, end[1] - start[1])

        start = _now()
        out = chain(mine)
        mark("chain", start)
        block = None  # noqa: F841 - the last pass's block, released here
        start = _now()
        received = pickle.loads(sent)
        mark("receive", start)
        start = _now()
        target = combine.target_map(4, 2, out[2], received[1])
        summed = combine.combine_converted(target, packed, (), (out[0][0], out[2]), received)
        mark("combine", start)
        start = _now()
        block = to_block(summed, packed, None, target, None, held=True)  # noqa: F841
        mark("block", start)
        del out, received, summed
        total = (sum(v[0] for v in stages.values()), sum(v[1] for v in stages.values()))
        line = ", ".join(f"{k} {v[0]:.0f} ms / {v[1]} faults" for k, v in stages.items())
        print(f"{'warm' if i == 0 else i}: {line}; total {total[0]:.0f} ms / {total[1]}")
        if i:
            totals.append(total)
    cpu = np.median([t[0] for t in totals])
    faults = np.median([t[1] for t in totals])
    print(f"median total: CPU {cpu:.0f} ms, {faults:.0f} minor faults")


if __name__ == "__main__":
    main()
