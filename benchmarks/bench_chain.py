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

With ``--where`` the chain (exchange ``auto``) runs elsewhere, to compare its cost in
a Dask worker with its cost in a plain process: ``main`` (this process's main thread),
``thread`` (a thread of this process, as a worker's task runs), ``worker`` (worker 0
of a LocalCluster of 2 single-threaded worker processes, as ``bench_dask.py`` starts,
the other idle) and ``workers`` (the next ``--parts`` partitions on worker 1 at the
same time, as a fit's two chains run).  Prints the medians of ``--repeat`` chains after
a warm one: the CPU seconds of the chain's thread (user and system), of its whole
process, its minor page faults, the huge pages faulted in on the whole machine meanwhile
(both chains' with ``workers``) and the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bd20", help="Parquet data (see bench_dask.py)")
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--where", choices=["main", "thread", "worker", "workers"])
    ap.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="with --where: seconds idle before each chain (memory freed that long ago "
        "is no longer backed in a virtual machine that reports free pages to its host)",
    )
    args = ap.parse_args()
    if args.where is not None:
        where(args)
        return

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


def chain_usage(directory: str, first: int, parts: int) -> dict:
    """Run the chain of partitions ``first`` to ``first + parts`` of ``directory`` (as
    :func:`main`'s, exchange ``auto``) on this thread; what it cost this thread and
    this process, and where dmixed was imported from."""
    import dask.dataframe as dd

    import dmixed
    from dmixed.engines.dask.graph import chain_recipes, project_columns
    from dmixed.engines.dask.parquet_direct import parquet_reads
    from dmixed.engines.dask.partials import chain_partials
    from dmixed.engines.dask.pieces import Pieces
    from dmixed.engines.dask.tuning import tune_malloc
    from dmixed.stats.keys import key_dtype
    from dmixed.stats.packed import PackedLayout

    tune_malloc()  # as the fit's chains do first
    ddf = dd.read_parquet(directory)
    spec = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1").spec
    (chain,) = chain_recipes(project_columns(ddf, spec), 1)
    chain = Pieces(chain.items[first : first + parts])
    reads = parquet_reads(chain, spec)
    huge0 = huge_page_faults()
    thread0, proc0 = resource.getrusage(resource.RUSAGE_THREAD), time.process_time()
    wall0 = time.perf_counter()
    keys = key_dtype(ddf.dtypes[spec.group_name])  # int64, or object for text keys
    chain_partials(chain, spec, None, PackedLayout(2, 5), 2, keys, reads=reads)
    wall = time.perf_counter() - wall0
    thread1, proc1 = resource.getrusage(resource.RUSAGE_THREAD), time.process_time()
    return {
        "user": thread1.ru_utime - thread0.ru_utime,
        "system": thread1.ru_stime - thread0.ru_stime,
        "process": proc1 - proc0,
        "faults": thread1.ru_minflt - thread0.ru_minflt,
        "huge": huge_page_faults() - huge0,
        "wall": wall,
        "dmixed": dmixed.__file__,
    }


def huge_page_faults() -> int:
    """Transparent huge pages faulted in so far on this machine, by every process
    (``thp_fault_alloc`` of ``/proc/vmstat``; 0 where it cannot be read): 2 MB each,
    zeroed by the kernel."""
    try:
        with open("/proc/vmstat") as fh:
            for line in fh:
                if line.startswith("thp_fault_alloc "):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def where(args) -> None:
    """``--where``: the chain's cost where it runs (see the module)."""
    runs: dict[str, list[dict]] = {}
    job = (args.dir, 0, args.parts)
    if args.where in ("main", "thread"):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            for _ in range(args.repeat + 1):
                time.sleep(args.gap)
                got = pool.submit(chain_usage, *job) if args.where == "thread" else None
                runs.setdefault(args.where, []).append(
                    chain_usage(*job) if got is None else got.result()
                )
    else:
        from bench_dask import local_cluster
        from distributed import Client

        with local_cluster(2, "6GiB") as cluster, Client(cluster) as client:
            w0, w1 = sorted(client.scheduler_info()["workers"])
            for _ in range(args.repeat + 1):
                time.sleep(args.gap)
                tasks = {"worker 0": client.submit(chain_usage, *job, pure=False, workers=[w0])}
                if args.where == "workers":
                    later = (args.dir, args.parts, args.parts)
                    tasks["worker 1"] = client.submit(chain_usage, *later, pure=False, workers=[w1])
                for name, task in tasks.items():
                    runs.setdefault(name, []).append(task.result())
    print(f"load average {os.getloadavg()[0]:.2f}; chains of {args.parts} partitions")
    for name, got in runs.items():
        kept = got[1:]  # after a warm one
        med = {k: float(np.median([r[k] for r in kept])) for k in kept[0] if k != "dmixed"}
        print(
            f"{name:9s}: thread CPU {med['user'] + med['system']:.3f} s (user "
            f"{med['user']:.3f}, system {med['system']:.3f}); process CPU "
            f"{med['process']:.3f} s; {med['faults']:.0f} minor faults; {med['huge']:.0f} huge "
            f"pages faulted in on the machine; wall {med['wall']:.3f} s "
            f"(dmixed from {got[0]['dmixed']})"
        )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
