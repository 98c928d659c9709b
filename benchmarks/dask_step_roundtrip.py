"""Per-step round trip of the Dask engine vs the in-process engine on the same statistics.

Measures what ``dmixed.engines.dask.AUTO_LOCAL_MAX_VALUES`` rests on: the time of one
optimizer step (``engine.step(Λ, q)``) with the statistics kept on the workers of a
local cluster (``client.map`` over the blocks + gather + sum) against a
:class:`~dmixed.engines.local.LocalEngine` holding the gathered statistics, for
10^3 … 10^6 groups of a random-slope model (r = 2, p = 4 unless told otherwise).

    python benchmarks/dask_step_roundtrip.py [--workers 2] [--r 2] [--p 4] [--reps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _stats(seed: int, g: int, r: int, k: int):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(g, 3 * r, r))
    zz = np.einsum("gia,gib->gab", z, z)
    zxy = rng.normal(size=(g, r, k))
    return zz, zxy


def _evaluator(seed: int, g: int, r: int, k: int, tune: bool):
    from dmixed.engines.dask.tuning import tune_malloc
    from dmixed.engines.local import LocalEngine

    if tune:
        tune_malloc()  # as the engine does on its workers
    return LocalEngine(*_stats(seed, g, r, k))


def _median_time(fn, reps: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--r", type=int, default=2)
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--groups", type=str, default="1e3,1e4,1e5,1e6")
    ap.add_argument("--no-tune", action="store_true", help="leave the workers' malloc as is")
    args = ap.parse_args()

    from distributed import Client, LocalCluster, wait

    from dmixed.engines.dask import DaskEngine
    from dmixed.engines.local import LocalEngine

    r, k = args.r, args.p + 1
    lam = np.linalg.cholesky(np.eye(r) + 0.3)
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        n_blocks = args.workers * args.threads
        print(f"{args.workers} workers x {args.threads} threads, r={r}, p={args.p}")
        print(f"{'groups':>9} {'values':>11} {'distributed (s)':>16} {'local (s)':>10}")
        for g in (int(float(x)) for x in args.groups.split(",")):
            sizes = [len(c) for c in np.array_split(np.arange(g), n_blocks)]
            futures = [
                client.submit(_evaluator, i, s, r, k, not args.no_tune, pure=False)
                for i, s in enumerate(sizes)
            ]
            wait(futures)
            eng = DaskEngine(client, futures, [None] * len(futures), np.arange(g))
            t_dist = _median_time(lambda e=eng: e.step(lam, r), args.reps)
            parts = [_stats(i, s, r, k) for i, s in enumerate(sizes)]
            local = LocalEngine(
                np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            )
            t_local = _median_time(lambda e=local: e.step(lam, r), args.reps)
            print(f"{g:>9} {g * r * (r + k):>11} {t_dist:>16.4f} {t_local:>10.4f}")
            eng.close()
            del local, parts


if __name__ == "__main__":
    main()
