"""Gathering results through the scheduler or straight from the workers.

A local cluster of ``--workers`` single-threaded worker processes (as bench_dask's);
each worker holds one array of ``--mb`` MB (the BLUPs and their covariances of half a
million groups of a random-slope model are 24 MB) and one small array (the step sums'
size); ``client.gather`` of all of them, ``direct=False`` (distributed's default from a
driver: the scheduler fetches them and forwards them) and ``direct=True`` (the driver
fetches them from the workers), interleaved, ``--reps`` times each; prints the median
and the best of each.

With ``--fit DIR`` (a Parquet data set of bench_dask's columns), the same within
dmixed's fit instead: the statistics of ``y ~ x1 + x2 + x3`` with a random intercept and
slope on ``x1`` made once and kept on the workers, then fits from them (the optimizer's
round trips, the Hessian, every group's BLUPs) and single steps, with the client's
``direct_to_workers`` None (dmixed's choice: straight from the workers on a loopback
cluster) and False (through the scheduler) in turn; the fits' llf printed for each.

    python benchmarks/bench_gather_direct.py [--workers 2] [--mb 24] [--reps 15]
    python benchmarks/bench_gather_direct.py --fit DIR [--reps 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _array(n_bytes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=max(1, n_bytes // 8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mb", type=float, default=24.0)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--fit", default=None, help="a Parquet data set: time dmixed's fits")
    args = ap.parse_args()

    from distributed import Client, LocalCluster, wait

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        if args.fit is not None:
            _fits(client, args.fit, args.reps)
            return
        workers = sorted(client.scheduler_info()["workers"])
        kinds = {"large": int(args.mb * 1e6), "small": 800}
        held = {}
        for kind, n_bytes in kinds.items():
            held[kind] = [
                client.submit(_array, n_bytes, i, workers=[w], pure=False)
                for i, w in enumerate(workers)
            ]
            wait(held[kind])
        times: dict = {(k, d): [] for k in kinds for d in (False, True)}
        for kind in kinds:
            for direct in (False, True):  # warm: connections opened
                client.gather(held[kind], direct=direct)
        for _ in range(args.reps):
            for kind in kinds:
                for direct in (False, True):
                    t0 = time.perf_counter()
                    client.gather(held[kind], direct=direct)
                    times[(kind, direct)].append(time.perf_counter() - t0)
        print(f"{args.workers} workers, {args.mb:g} MB and 800 B per worker, {args.reps} reps")
        for (kind, direct), ts in times.items():
            how = "direct   " if direct else "scheduler"
            print(
                f"  {kind:5s} {how}: median {1e3 * np.median(ts):7.2f} ms, "
                f"best {1e3 * min(ts):7.2f} ms"
            )


def _fits(client, directory: str, reps: int) -> None:
    import dask
    import dask.dataframe as dd

    import dmixed

    with dask.config.set({"dmixed.engine": "distributed"}):
        model = dmixed.mixedlm(
            "y ~ x1 + x2 + x3", dd.read_parquet(directory), groups="g", re_formula="1 + x1"
        )
        res = model.fit(client=client)  # the data pass, and a warm fit
        stats = model.statistics(client=client)
        lam = stats.layout.lam(res.packed_params, True)
        fits: dict = {None: [], False: []}
        steps: dict = {None: [], False: []}
        llf = {}
        for _ in range(reps):
            for direct in (None, False):
                client.direct_to_workers = direct
                t0 = time.perf_counter()
                llf[direct] = model.fit(client=client).llf
                fits[direct].append(time.perf_counter() - t0)
                for _ in range(4):
                    t0 = time.perf_counter()
                    stats.engine.step(lam, stats.layout.k_re)
                    steps[direct].append(time.perf_counter() - t0)
        client.direct_to_workers = None
    print(f"{res.n_groups} groups, fits from the statistics kept on the workers, {reps} reps")
    for direct in (None, False):
        how = "direct   " if direct is None else "scheduler"
        f, s = fits[direct], steps[direct]
        print(
            f"  {how}: fit median {np.median(f):.3f} s, best {min(f):.3f} s; step median "
            f"{1e3 * np.median(s):.1f} ms, best {1e3 * min(s):.1f} ms; llf {llf[direct]!r}"
        )


if __name__ == "__main__":
    main()
