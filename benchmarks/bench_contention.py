"""What N processes at once do to a chain's cost: the many-core machine's memory and a
chain of the data pass run side by side, without Dask.

Run:  python benchmarks/bench_contention.py [--procs 1,4,8,16] [--dir DATA --parts 8]

1. Memory alone, ``--procs`` processes at once (each started together by a barrier):
   a copy of 1 GB (GB/s a process, counting the bytes read and written), and 6.25M
   rows added at random into a private table of 2M × 16 and of 200k × 16 float64 (a
   chain's table of terms at 2M and 200k groups) and in sorted order (ns a row); the
   median over the processes.
2. With ``--dir``: ``--procs`` copies of ``bench_chain_pieces.py --dir DATA --parts
   PARTS`` at once (the same chain of the first ``--parts`` partitions in each): the
   median and the largest over the copies of the chain's thread CPU and of each piece.

Thread CPU counts the cycles a process stalls on memory, so a chain that slows with
more processes beside it shows the machine's shared memory, not a busy core.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from multiprocessing import get_context

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _scatter():
    import numba

    @numba.njit(cache=True, nogil=True)
    def scatter(codes, table, vals):  # pragma: no cover - compiled
        for i in range(codes.size):
            g = codes[i]
            v = vals[i]
            for c in range(table.shape[1]):
                table[g, c] += v * c

    return scatter


def _memory(args: tuple) -> dict:
    seed, barrier = args
    scatter = _scatter()
    rng = np.random.default_rng(seed)
    src = np.ones(1 << 27)
    dst = np.zeros_like(src)
    dst += 1.0  # pages touched before the timed copy
    codes = rng.integers(0, 2_000_000, 6_250_000)
    vals = rng.normal(size=codes.size)
    wide = np.empty((2_000_000, 16))
    wide.fill(0.0)
    narrow = np.empty((200_000, 16))
    narrow.fill(0.0)
    scatter(codes[:10], wide, vals[:10])  # compiled (or loaded) before the barrier
    out = {}
    barrier.wait()
    t0 = time.perf_counter()
    np.copyto(dst, src)
    out["copy GB/s"] = 2 * src.nbytes / 1e9 / (time.perf_counter() - t0)
    for name, table, keys in [
        ("random 2M ns", wide, codes),
        ("random 200k ns", narrow, codes % 200_000),
        ("sorted 2M ns", wide, np.sort(codes)),
    ]:
        barrier.wait()
        t0 = time.perf_counter()
        scatter(keys, table, vals)
        out[name] = 1e9 * (time.perf_counter() - t0) / keys.size
    return out


def memory(procs: int) -> dict:
    ctx = get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(procs)
        with ctx.Pool(procs) as pool:
            got = pool.map(_memory, [(i, barrier) for i in range(procs)])
    return {k: float(np.median([g[k] for g in got])) for k in got[0]}


def chains(procs: int, directory: str, parts: int, repeat: int) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "bench_chain_pieces.py"), "--dir", directory]
    cmd += ["--parts", str(parts), "--repeat", str(repeat)]
    runs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(procs)
    ]
    outs = [r.communicate()[0] for r in runs]
    pieces: dict[str, list[float]] = {}
    for out in outs:
        chain = re.search(r"thread CPU ([0-9.]+) s", out)
        if chain is None:
            raise RuntimeError(f"bench_chain_pieces.py printed no chain:\n{out[-2000:]}")
        pieces.setdefault("chain", []).append(1e3 * float(chain.group(1)))
        for m in re.finditer(r"^  (\S+)\s+([0-9.]+) ms$", out, re.M):
            pieces.setdefault(m.group(1), []).append(float(m.group(2)))
    return {k: (statistics.median(v), max(v)) for k, v in pieces.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="1,4,8,16")
    ap.add_argument("--dir", help="Parquet data of bench_scaling.py or bench_dask.py")
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    counts = [int(p) for p in args.procs.split(",")]
    for n in counts:
        got = memory(n)
        print(f"N={n:2d} memory: " + "  ".join(f"{k} {v:.1f}" for k, v in got.items()), flush=True)
    if args.dir:
        for n in counts:
            got = chains(n, args.dir, args.parts, args.repeat)
            print(
                f"N={n:2d} chain of {args.parts} partitions, ms (median / max over the copies): "
                + "; ".join(f"{k} {med:.0f} / {top:.0f}" for k, (med, top) in got.items()),
                flush=True,
            )


if __name__ == "__main__":
    main()
