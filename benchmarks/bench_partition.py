"""Where one partition's time goes in the data pass, in one process (no cluster).

Run:  python benchmarks/bench_partition.py [--dir /tmp/bdata50] [--parts 10] [--repeat 3]
      MALLOC_TRIM_THRESHOLD_=65536 python benchmarks/bench_partition.py [--tune-malloc]

For the first ``--parts`` partitions of ``dd.read_parquet(--dir)`` (the data of
``bench_dask.py``), fitted as ``y ~ x1 + x2 + x3`` with a random intercept and slope on
x1, it times each stage of a chain (``dmixed.engines.dask.partials.chain_partials``), wall
and CPU time of the process (all its threads), and prints the medians per partition
over ``--repeat`` passes (the first pass, with cold memory, is left out when there are
several):

- ``read``: the partition computed from its graph piece, as a chain does (Parquet read and
  conversion to pandas), and a plain ``pyarrow.parquet.read_table`` of the same file and
  columns for comparison;
- ``direct``: the partition's columns read with pyarrow straight to numpy, as a chain
  does for plain Parquet reads (``parquet_direct.read_columns``);
- ``design``: the model's design matrices (``partials.partition_rows``: from the numpy
  columns where ``design.columnar.columns_design`` applies), and ``transform``: the
  same matrices through ``ModelSpec.transform`` (the pandas frame's checks), as before;
- ``sums``: the per-group sums into the chain's accumulator (``combine.GroupAccumulator.add``)
  in the chain's column map (chosen from its first partition, included);
- minor page faults per partition;
- once per pass, the chain's partial taken from its accumulator (``result``).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; set it as above to see
the workers' memory behaviour, and ``--tune-malloc`` to apply what the workers apply
(``dmixed.engines.dask.tuning.tune_malloc``).  Also prints the time to build the chains' graph
pieces for the whole collection.  Writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import time

import numpy as np
from _report import write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bdata50", help="Parquet data (see bench_dask.py)")
    ap.add_argument("--parts", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tune-malloc", action="store_true")
    ap.add_argument("--out", default="benchmarks/out/partition.json")
    args = ap.parse_args()

    import dask.dataframe as dd
    import pyarrow.parquet as pq

    import dmixed
    from dmixed.engines.dask.combine import GroupAccumulator
    from dmixed.engines.dask.graph import chain_recipes, project_columns
    from dmixed.engines.dask.parquet_direct import parquet_reads, read_columns
    from dmixed.engines.dask.partials import partition_rows, partition_standardization
    from dmixed.engines.dask.pieces import compute_piece
    from dmixed.engines.dask.tuning import tune_malloc
    from dmixed.stats.packed import PackedLayout

    if args.tune_malloc:
        tune_malloc()
    ddf = dd.read_parquet(args.dir)
    model = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1")
    spec = model.spec
    projected = project_columns(ddf, spec)
    t0 = time.perf_counter()
    (chain,) = chain_recipes(projected, 1)
    pieces_seconds = time.perf_counter() - t0
    items = chain.items[: args.parts]
    reads = parquet_reads(chain, spec)
    direct = (reads.items if reads is not None else [None] * len(chain))[: args.parts]
    files = sorted(f for f in os.listdir(args.dir) if f.endswith(".parquet"))[: len(items)]
    columns = list(projected.columns)
    key_dtype = np.dtype(projected[spec.group_name].dtype)
    packed = PackedLayout(2, 5)

    stages: dict[str, list[float]] = {
        k: [] for k in ("read", "pyarrow", "direct", "design", "transform", "sums")
    }
    cpu: dict[str, list[float]] = {k: [] for k in stages}
    faults: list[float] = []
    extract: list[tuple[float, float]] = []
    for rep in range(max(1, args.repeat)):
        acc = GroupAccumulator(packed.width, key_dtype)
        std = None  # the chain's column map, chosen from its first partition (timed in sums)
        times: dict[str, list[float]] = {k: [] for k in stages}
        cpus: dict[str, list[float]] = {k: [] for k in stages}
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for (graph, out_key, _), name, read in zip(items, files, direct, strict=True):
            t, c = time.perf_counter(), time.process_time()
            pdf = compute_piece(graph, out_key)
            times["read"].append(time.perf_counter() - t)
            cpus["read"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            pq.read_table(os.path.join(args.dir, name), columns=columns).to_pandas()
            times["pyarrow"].append(time.perf_counter() - t)
            cpus["pyarrow"].append(time.process_time() - c)
            source = pdf
            if read is not None:
                t, c = time.perf_counter(), time.process_time()
                source = read_columns(read)
                times["direct"].append(time.perf_counter() - t)
                cpus["direct"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            (dm, keys, ztilde), _ = partition_rows(source, spec, None)
            times["design"].append(time.perf_counter() - t)
            cpus["design"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            spec.transform(pdf)
            times["transform"].append(time.perf_counter() - t)
            cpus["transform"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            if std is None:
                std = partition_standardization(dm, spec)
            acc.add(keys.astype(key_dtype, copy=False), dm, ztilde, std)
            times["sums"].append(time.perf_counter() - t)
            cpus["sums"].append(time.process_time() - c)
        pass_faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / len(items)
        t, c = time.perf_counter(), time.process_time()
        parts = acc.result(2)  # the chain's partial, split for two buckets (once per chain)
        extract.append((time.perf_counter() - t, time.process_time() - c))
        if rep == 0 and args.repeat > 1:
            continue  # cold memory: every first pass is slower on this kind of machine
        for k in stages:
            stages[k].extend(times[k])
            cpu[k].extend(cpus[k])
        faults.append(pass_faults)

    medians = {k: float(np.median(v)) * 1000 for k, v in stages.items() if v}
    cpu_medians = {k: float(np.median(v)) * 1000 for k, v in cpu.items() if v}
    rows = len(pdf)
    ns = 1e6 / rows  # ms per partition -> ns per row
    print(
        f"{len(items)} partitions of {rows:,} rows from {args.dir}; medians per partition, "
        "wall and CPU of this process (all its threads), and CPU per row:"
    )
    labels = {
        "read": "read through Dask (graph piece)",
        "pyarrow": "pyarrow read_table + to_pandas",
        "direct": "read straight to numpy (chains)",
        "design": "design matrices (chains)",
        "transform": "design via transform (before)",
        "sums": "per-group sums",
    }
    for k, label in labels.items():
        if k not in medians:
            continue
        print(
            f"  {label:33s} {medians[k]:7.1f} ms  CPU {cpu_medians[k]:7.1f} ms "
            f"({cpu_medians[k] * ns:5.1f} ns a row)"
        )
    print(f"  minor page faults                 {np.median(faults):9.0f}")
    groups_seen = sum(len(keys) for keys, _ in parts)
    result_ms = [1e3 * float(np.median([e[i] for e in extract])) for i in (0, 1)]
    print(
        f"the chain's partial of {groups_seen:,} groups (once per chain): "
        f"{result_ms[0]:.1f} ms, CPU {result_ms[1]:.1f} ms"
    )
    print(f"graph pieces for all {projected.npartitions} partitions: {pieces_seconds:.3f} s")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dir": args.dir,
        "partitions_timed": len(items),
        "rows_per_partition": rows,
        "malloc_trim_threshold_env": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "tune_malloc": bool(args.tune_malloc),
        "median_ms": medians,
        "median_cpu_ms": cpu_medians,
        "groups_seen": groups_seen,
        "partial_ms": result_ms,
        "minor_faults_per_partition": float(np.median(faults)),
        "pieces_seconds": pieces_seconds,
        "npartitions": int(projected.npartitions),
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
