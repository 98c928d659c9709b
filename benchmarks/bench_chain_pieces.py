"""Where one chain's thread CPU goes: its pieces timed by name, and the rank-one check.

Run:  MALLOC_TRIM_THRESHOLD_=65536 python benchmarks/bench_chain_pieces.py [--dir /tmp/bd20]
                                         [--parts 8] [--repeat 4]

1. The chain of ``bench_chain.py`` (the first ``--parts`` partitions of ``--dir``,
   ``y ~ x1 + x2 + x3`` with a random intercept and slope on x1, exchange ``auto``) on
   this thread, with the functions below wrapped so that each call adds the thread CPU
   it took (``time.thread_time``) to its name's total; the medians over ``--repeat``
   chains after a warm one.  The pieces nest (a sweep inside ``add_columns`` inside
   ``ColumnSweep.add``); what ``accumulate_frames`` spends outside ``ColumnSweep.add``
   and ``GroupAccumulator.result`` is mostly the reads.  With ``MALLOC_TRIM_THRESHOLD_``
   set, ``tune_malloc`` keeps glibc's and the tables' memory as a Dask worker's nanny
   has it; without it the fresh pages of each chain count too.
2. The rank-one check of one partition's rows (its first ``--parts``' keys as the
   accumulator codes them, the random design's x1: ``_rank_one_columns`` of
   ``engines/dask/combine.py``), and of the same rows with x1 replaced by a value per
   group (a group-level slope, constant within groups: the check reads every row).
3. In process: ``kernels.rows.wants_rank_one_within`` (which ``plain_statistics`` and
   ``accumulate_packed_into`` call with ``rank_one``) on rows drawn at random, ``[1,
   x1]`` against ``[1, a value per group]``, at several sizes.
4. With ``--kernels`` (this tree only): on one partition's rows (the first file), the
   chain's generated sweep (``term_jit.columns_kernel`` of the plan) into a table of
   1.125M rows (the codes as read) and of 1,000 rows (codes modulo 1,000: a table in
   the cache); the in-process pass's C sums (``c_sums.term_sums``) of the same terms,
   codes as read and sorted; and the C ``constant_within`` of a value per group against
   the check it replaced (the first 256 rows, then all: numpy).
Runs on older trees too (set ``PYTHONPATH`` to one), for a before/after in turn.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import inspect
import os
import sys
import time

import numpy as np

PIECES = [
    ("dmixed.engines.dask.partials", "accumulate_frames"),
    ("dmixed.engines.dask.partials", "ColumnSweep.add"),
    ("dmixed.engines.dask.partials", "ColumnSweep._route"),
    ("dmixed.engines.dask.combine", "GroupAccumulator.add_columns"),
    ("dmixed.engines.dask.combine", "GroupAccumulator._columns"),
    ("dmixed.engines.dask.combine", "GroupAccumulator._lookup_columns"),
    ("dmixed.engines.dask.combine", "GroupAccumulator._grow"),
    ("dmixed.engines.dask.combine", "GroupAccumulator._flush"),
    ("dmixed.engines.dask.combine", "_rank_one_columns"),
    ("dmixed.kernels.term_table", "TermTable.add_columns"),
    ("dmixed.engines.dask.combine", "GroupAccumulator.result"),
    ("dmixed.kernels.term_table", "TermTable.split_seen"),
    ("dmixed.kernels.term_table", "TermTable._moved"),
]


def wrap(spent: collections.Counter, module: str, name: str) -> None:
    """Replace ``module.name`` (a function or ``Class.method``) by a wrapper adding the
    thread CPU of each call to ``spent[name]``."""
    mod = importlib.import_module(module)
    owner_name, _, attr = name.rpartition(".")
    owner = getattr(mod, owner_name) if owner_name else mod
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.thread_time() - start

    setattr(owner, attr, timed)


def rank_one_check(directory: str, repeat: int) -> dict:
    """Thread CPU (ms, median of ``repeat``) of the rank-one check of one partition's
    rows, x1 as it is and x1 constant within groups."""
    import pyarrow.parquet as pq

    from dmixed.engines.dask import combine
    from dmixed.kernels.term_table import ColumnPlan

    files = sorted(f for f in os.listdir(directory) if f.endswith(".parquet"))
    table = pq.read_table(os.path.join(directory, files[0]), columns=["x1", "g"])
    keys = table.column("g").to_numpy().astype(np.int64)
    x1 = np.ascontiguousarray(table.column("x1").to_numpy(), dtype=np.float64)
    per_group = np.random.default_rng(0).normal(size=int(keys.max()) + 1)[keys]
    plan = ColumnPlan(x_of=(-1, 0, 1), z_of=(-1, 0))

    class Std:  # what the check reads of the map: column 0 of Z the intercept
        z_intercept = 0

    width = int(keys.max()) + 1
    # by name, as section 1 wraps the pieces: the chain's own check, whatever its tree
    check = getattr(combine, "_rank_one_columns")  # noqa: B009
    extra = (width,) if len(inspect.signature(check).parameters) == 5 else ()
    out = {}
    for label, col in (("x1 varying", x1), ("x1 constant within groups", per_group)):
        runs = []
        for _ in range(repeat + 1):
            start = time.thread_time()
            got = check(Std, keys, [col], plan, *extra)
            runs.append(time.thread_time() - start)
        out[label] = (got, 1e3 * float(np.median(runs[1:])))
    return out


def in_process_check(repeat: int) -> list[str]:
    """Thread CPU (µs, median of ``repeat``) of ``wants_rank_one_within`` in process."""
    from dmixed.kernels import rows
    from dmixed.stats.standardize import Standardization

    bound = "n_groups" in inspect.signature(rows.wants_rank_one_within).parameters
    lines = []
    for n, g in ((2_000, 200), (200_000, 20_000), (1_000_000, 200_000), (1_250_000, 1_000_000)):
        rng = np.random.default_rng(1)
        codes = rng.integers(0, g, n).astype(np.int64)
        x = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=(n, 2))]))
        y = rng.normal(size=n)
        level = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=g)[codes]]))
        std = Standardization.choose(y, x, x[:, :2], (0, 0))
        got = []
        for z in (x[:, :2], level):
            extra = ((), g) if bound else ()
            runs = []
            for _ in range(repeat + 1):
                start = time.thread_time()
                rows.wants_rank_one_within(std, codes, z, *extra)
                runs.append(time.thread_time() - start)
            got.append(1e6 * float(np.median(runs[1:])))
        lines.append(
            f"{n:>9,} rows, {g:>9,} groups: x1 {got[0]:8.1f} µs, per group {got[1]:8.1f} µs"
        )
    return lines


def old_check(codes: np.ndarray, cols: list) -> bool:
    """The rank-one check before ``constant_within``: the first 256 rows, then all."""
    for end in (256, None):
        c = codes[:end]
        rep = np.empty(int(c.max()) + 1)
        for col in cols:
            part = col[:end]
            rep[c] = part
            if not (rep[c] == part).all():
                return False
    return True


def kernels_on_a_partition(directory: str, repeat: int) -> list[str]:
    """Thread CPU (ms, medians of ``repeat``) of the kernels of section 4."""
    import pyarrow.parquet as pq

    from dmixed.kernels import native, term_jit

    files = sorted(f for f in os.listdir(directory) if f.endswith(".parquet"))
    table = pq.read_table(os.path.join(directory, files[0]), columns=["x1", "x2", "x3", "y", "g"])
    cols = [np.ascontiguousarray(table.column(c).to_numpy()) for c in ("x1", "x2", "x3", "y")]
    keys = table.column("g").to_numpy().astype(np.int64)
    terms = (("count",), ("col", 0), ("prod", 0, 0), ("col", 1), ("col", 2), ("col", 3))
    terms += (("prod", 0, 1), ("prod", 0, 2), ("prod", 0, 3))
    sweep = term_jit.columns_kernel(terms, (0, 1, 2, 3), (-1, 0, 1, 2, 3), 4)
    ext = native.extension()
    pairs = [(0, -1), (1, -1), (1, 1), (2, -1), (3, -1), (4, -1), (1, 2), (1, 3), (1, 4)]
    sources = [np.ones(keys.size), *cols]
    rows = 1_125_000
    per_group = np.random.default_rng(0).normal(size=rows)[keys]

    def median_ms(fn, *args) -> float:
        fn(*args)
        runs = []
        for _ in range(repeat):
            start = time.thread_time()
            fn(*args)
            runs.append(time.thread_time() - start)
        return 1e3 * float(np.median(runs))

    lines = []
    for label, codes, size in (
        ("codes as read, 1.125M-row table", keys, rows),
        ("codes modulo 1,000, 1,000-row table", keys % 1000, 1000),
    ):
        out, gram = np.zeros((size, len(terms) + 1)), np.zeros((5, 5))
        ms = median_ms(sweep, codes, out, gram, np.zeros(4), *cols)
        lines.append(f"column sweep, {label}: {ms:.2f} ms")
    if ext is not None:
        for label, codes in (("codes as read", keys), ("codes sorted", np.sort(keys))):
            out = np.zeros((len(pairs), rows))
            ms = median_ms(ext.term_sums, codes, sources, pairs, rows, out)
            lines.append(f"c_sums.term_sums, {label}: {ms:.2f} ms")
        ms = median_ms(ext.constant_within, keys, [per_group], rows)
        lines.append(f"constant_within in C, a value per group: {ms:.2f} ms")
    ms = median_ms(old_check, keys, [per_group])
    lines.append(f"the old check (256 rows, then all; numpy), a value per group: {ms:.2f} ms")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bd20", help="Parquet data (see bench_dask.py)")
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--kernels", action="store_true", help="section 4 (this tree only)")
    args = ap.parse_args()
    from bench_chain import chain_usage

    spent: collections.Counter = collections.Counter()
    for module, name in PIECES:
        try:
            wrap(spent, module, name)
        except AttributeError:  # not in this tree
            pass
    runs = []
    for _ in range(args.repeat + 1):
        spent.clear()
        usage = chain_usage(args.dir, 0, args.parts)
        runs.append((usage, dict(spent)))
    kept = runs[1:]
    print(f"load average {os.getloadavg()[0]:.2f}; dmixed from {runs[0][0]['dmixed']}")
    cpu = [u["user"] + u["system"] for u, _ in kept]
    print(f"chain of {args.parts} partitions: thread CPU {np.median(cpu):.3f} s (median)")
    for _, name in PIECES:
        if name in kept[-1][1]:
            ms = 1e3 * float(np.median([s.get(name, 0.0) for _, s in kept]))
            print(f"  {name:32s} {ms:7.1f} ms")
    for label, (got, ms) in rank_one_check(args.dir, 2 * args.repeat).items():
        print(f"rank-one check of one partition, {label}: {ms:.2f} ms (answer {got})")
    print("wants_rank_one_within in process (thread CPU, median):")
    for line in in_process_check(4 * args.repeat):
        print("  " + line)
    if args.kernels:
        print("one partition's kernels (thread CPU, median):")
        for line in kernels_on_a_partition(args.dir, 4 * args.repeat):
            print("  " + line)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
