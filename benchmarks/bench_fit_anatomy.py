"""Where a warm out-of-core fit's time goes: its stages, a chain's parts, the kernels.

Runs ``--fits`` fits (``y ~ x1 + x2 + x3``, random intercept and slope on ``x1``) of a
Parquet data set on a local cluster of ``--workers`` single-threaded worker processes
(bench_dask's), in the dmixed on ``PYTHONPATH``, and prints for the fits after the first
two (warm):

- per fit, in ms from the fit's start (the task stream, ``distributed.get_task_stream``,
  on this host's clock): the first chain's start, the first and last chain's end, the
  last ``combined_block``'s end, the last moment sums' end, the first optimizer task's
  start and the last optimizer task's end; then their medians;
- per worker and fit, wall and thread CPU of a chain's parts, measured inside the worker
  by wrapping (``Client.run``) the chain's body
  (:func:`dmixed.engines.dask.partials.accumulate_frames`), its Parquet reads
  (:func:`~dmixed.engines.dask.parquet_direct.read_columns`), its compiled column sweep
  (:meth:`~dmixed.engines.dask.combine.GroupAccumulator.add_columns`) and its end
  (:meth:`~dmixed.engines.dask.combine.GroupAccumulator.result`); medians;
- wall and thread CPU of the evaluator's kernels inside the workers
  (:class:`~dmixed.engines.local.LocalEngine`'s ``step``, ``hessian`` and ``moments``,
  and :func:`~dmixed.engines.dask.ahead.block_hessian_random_effects`): medians, to
  set against ``bench_dask_block_kernels.py``'s calls alone in one process;
- with ``--reads``, before the cluster starts: the same columns read in this process
  as a chain reads them (``ParquetFile.read``, one thread, the first half of the
  files) and as the peer scan does (``pyarrow.dataset`` over all the files, with and
  without ``use_threads``), best of 4, wall and process CPU.

With ``--tasks`` the optimizer's round trips run as tasks (``direct_calls.ENABLED`` off),
so its stages are in the task stream; by default they are direct calls to the workers
(:mod:`dmixed.engines.dask.direct_calls`), which the task stream does not see: the optimizer's
columns are then empty and the fit's wall is that of a default fit.

    python benchmarks/bench_fit_anatomy.py --dir DATA [--fits 8] [--workers 2] [--reads] [--tasks]

The wrappers add two clock reads a call; they are installed in the workers only, and
the fit's results are those of an unwrapped fit.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

import dask.dataframe as dd
from dask.utils import key_split
from distributed import Client, get_task_stream

import dmixed
from dmixed.engines.dask import direct_calls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dask import local_cluster  # noqa: E402

COLUMNS = ["y", "x1", "x2", "x3", "g"]
STAGES = (
    ("chain_start", "chain_partials", min, 0),
    ("chain_end_first", "chain_partials", min, 1),
    ("chain_end_last", "chain_partials", max, 1),
    ("combined_end", "combined_block", max, 1),
    ("moments_end", "block_moments", max, 1),
    ("optimizer_start", "block_steps", min, 0),
    # the last stage of a chained point: a secant step's (next_point's), or the first
    # step's chained on the starts' round trip
    ("optimizer_end", ("block_next_hessian", "block_first_next", "block_first_last"), max, 1),
)


def _install() -> bool:
    """Wrap the chain's parts and the evaluator's kernels in this worker: each call
    appends ``(name, wall s, thread CPU s)`` to a list kept on the ``builtins`` module
    (one list a process, read and emptied by :func:`_taken`)."""
    import builtins

    from dmixed.engines import local
    from dmixed.engines.dask import ahead, combine, next_point, partials

    log: list = []
    builtins.dmixed_anatomy = log  # type: ignore[attr-defined]

    def wrap(name, func):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            out = func(*args, **kwargs)
            log.append((name, time.perf_counter() - wall, time.thread_time() - cpu))
            return out

        return timed

    partials.read_columns = wrap("read", partials.read_columns)
    partials.accumulate_frames = wrap("chain", partials.accumulate_frames)
    acc = combine.GroupAccumulator
    acc.add_columns = wrap("sweep", acc.add_columns)
    acc.result = wrap("chain end", acc.result)
    for name in ("step", "hessian", "moments"):
        setattr(local.LocalEngine, name, wrap(name, getattr(local.LocalEngine, name)))
    both = wrap("hessian+blups", ahead.block_hessian_random_effects)
    ahead.block_hessian_random_effects = next_point.block_hessian_random_effects = both
    return True


def _taken() -> list:
    import builtins

    log = builtins.dmixed_anatomy  # type: ignore[attr-defined]
    out = list(log)
    log.clear()
    return out


def _reads(directory: str) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(directory, "*.parquet")))
    half = files[: max(1, len(files) // 2)]

    def chain_read() -> None:
        for path in half:
            with pq.ParquetFile(path, pre_buffer=False) as file:
                file.read(columns=COLUMNS, use_threads=False)

    def scan(threads: bool):
        return lambda: ds.dataset(files, format="parquet").to_table(
            columns=COLUMNS, use_threads=threads
        )

    for name, call in (
        (f"ParquetFile.read, {len(half)} files, one thread", chain_read),
        (f"dataset scan, {len(files)} files, use_threads=True", scan(True)),
        (f"dataset scan, {len(files)} files, use_threads=False", scan(False)),
    ):
        best = None
        for _ in range(4):
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            got = (time.perf_counter() - wall, time.process_time() - cpu)
            best = got if best is None or got[0] < best[0] else best
        print(f"read  {name:48s} wall {best[0] * 1e3:6.0f} ms  process CPU {best[1] * 1e3:6.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--fits", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reads", action="store_true")
    ap.add_argument("--tasks", action="store_true", help="the optimizer's round trips as tasks")
    args = ap.parse_args()
    if args.tasks:
        direct_calls.ENABLED = False
    if args.reads:
        _reads(args.dir)
    stages, parts = [], {}
    with (
        local_cluster(args.workers, "8GiB", True) as cluster,
        Client(cluster) as client,
    ):
        client.run(_install)
        for i in range(args.fits):
            t0, p0 = time.time(), time.perf_counter()
            with get_task_stream(client) as ts:
                model = dmixed.mixedlm(
                    "y ~ x1 + x2 + x3", dd.read_parquet(args.dir), groups="g", re_formula="1 + x1"
                )
                model.fit(client=client)
                # before the task stream's records are fetched (at its exit), which is not the fit
                wall = (time.perf_counter() - p0) * 1e3
            taken = client.run(_taken)
            if i < 2:
                continue
            spans: dict = {}
            for rec in ts.data:
                prefix = key_split(rec["key"])
                for ss in rec["startstops"]:
                    if ss["action"] == "compute":
                        span = ((ss["start"] - t0) * 1e3, (ss["stop"] - t0) * 1e3)
                        spans.setdefault(prefix, []).append(span)
            row = {"fit": wall}
            for name, prefixes, pick, end in STAGES:
                names = (prefixes,) if isinstance(prefixes, str) else prefixes
                got = [span for prefix in names for span in spans.get(prefix, ())]
                row[name] = pick(s[end] for s in got) if got else float("nan")
            stages.append(row)
            print("fit " + " ".join(f"{k} {v:.0f}" for k, v in row.items()), flush=True)
            for calls in taken.values():
                sums: dict = {}
                for name, w, c in calls:
                    acc = sums.setdefault(name, [0.0, 0.0, 0])
                    acc[0] += w
                    acc[1] += c
                    acc[2] += 1
                for name, (w, c, n) in sums.items():
                    per = name in ("read", "sweep", "chain", "chain end")
                    parts.setdefault(name, []).append((w, c) if per else (w / n, c / n))
    keys = list(stages[0])
    print("median " + " ".join(f"{k} {statistics.median(r[k] for r in stages):.0f}" for k in keys))
    for name, vals in parts.items():
        unit = "a chain" if name in ("read", "sweep", "chain", "chain end") else "a call"
        print(
            f"worker {name:14s} wall {statistics.median(v[0] for v in vals) * 1e3:6.1f} ms"
            f"  thread CPU {statistics.median(v[1] for v in vals) * 1e3:6.1f} ms ({unit},"
            f" median of {len(vals)})"
        )


if __name__ == "__main__":
    main()
