"""A/B of two checkouts on the driver's own work in an out-of-core fit.

Run:  python benchmarks/bench_driver_ab.py BASE_TREE [--rounds 3] [--fits 2]
                                           [--dir /tmp/bd20] [--workers 2] [--profile N]

``BASE_TREE`` is another checkout (a worktree of main); this checkout is the other
version.  The data set is :mod:`bench_dask`'s (``--dir``, generated there).  For each of
``--rounds`` rounds the two versions run in turn (the order alternating from round to
round), each in a child process with ``PYTHONPATH`` set to its tree: a 2-worker
LocalCluster as :mod:`bench_dask` makes it, one warm fit, then ``--fits`` fits of
``y ~ x1 + x2 + x3`` with a random intercept and slope on x1 (REML, standard errors).
Per fit the child reports:

- the driver thread's CPU seconds (``time.thread_time``) and wall seconds from
  ``fit()`` to the data pass's graph handed to the client (the first
  ``Client._graph_to_futures`` of the fit: building the graph and everything before
  it), and the wall seconds from ``fit()`` to the first chain task's start (task
  stream);
- the driver thread's CPU seconds over the whole fit;
- the client's blocking requests to the scheduler (``Client.sync`` calls, by the
  function's name: ``scheduler_info`` shows as ``_update_scheduler_info``);
- the fit's wall seconds and its ``params``, ``llf`` and ``bse`` (their bytes hashed:
  the two versions must agree bit for bit).

With ``--profile N`` the child also writes a cProfile of its last fit's driver thread
and prints its ``N`` functions of most cumulative time.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import time

from _report import ab_parser, ooc_fit, run_child

HERE = os.path.dirname(os.path.abspath(__file__))
#: the options a child is given as they are
CHILD_ARGS = ("dir", "fits", "workers", "profile", "profile_dir")


def child(args) -> None:
    import cProfile
    import io
    import pstats

    import numpy as np
    from bench_dask import CHAIN_TASKS, local_cluster, task_times
    from distributed import Client, get_task_stream
    from distributed.client import Client as ClientClass

    import dmixed

    syncs: collections.Counter = collections.Counter()
    submitted: list[tuple[float, float]] = []
    original_sync = ClientClass.sync
    original_submit = ClientClass._graph_to_futures

    def counted_sync(self, func, *a, **kw):
        syncs[getattr(func, "__name__", repr(func))] += 1
        return original_sync(self, func, *a, **kw)

    def marked_submit(self, *a, **kw):
        submitted.append((time.thread_time(), time.perf_counter()))
        return original_submit(self, *a, **kw)

    ClientClass.sync = counted_sync
    ClientClass._graph_to_futures = marked_submit
    out = {"dmixed": os.path.dirname(dmixed.__file__), "fits": []}
    with local_cluster(args.workers, "6GiB") as cluster, Client(cluster) as client:

        def fit():
            return ooc_fit(client, args.dir)

        fit()  # warm: compiled kernels loaded on the workers
        for i in range(args.fits):
            syncs.clear()
            submitted.clear()
            profiler = cProfile.Profile() if args.profile and i == args.fits - 1 else None
            c0, t0, wall0 = time.thread_time(), time.perf_counter(), time.time()
            with get_task_stream(client) as ts:
                if profiler is not None:
                    profiler.enable()
                res = fit()
                if profiler is not None:
                    profiler.disable()
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            tasks = task_times(ts.data, wall0)
            chains = [t["first"] for name, t in tasks.items() if name in CHAIN_TASKS]
            digest = hashlib.sha256()
            for arr in (res.params, res.bse):
                digest.update(np.ascontiguousarray(np.asarray(arr, dtype=np.float64)).tobytes())
            digest.update(np.float64(res.llf).tobytes())
            out["fits"].append(
                {
                    "wall": wall,
                    "driver_cpu": cpu,
                    "to_submit_cpu": submitted[0][0] - c0 if submitted else None,
                    "to_submit_wall": submitted[0][1] - t0 if submitted else None,
                    "to_first_chain": min(chains) if chains else None,
                    "syncs": dict(syncs),
                    "digest": digest.hexdigest()[:16],
                    "llf": res.llf,
                }
            )
            if profiler is not None:
                path = os.path.join(args.profile_dir, f"driver_{os.getpid()}.prof")
                profiler.dump_stats(path)
                text = io.StringIO()
                stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
                stats.print_stats(args.profile)
                out["profile"] = text.getvalue()
                out["profile_path"] = path
    ClientClass.sync = original_sync
    ClientClass._graph_to_futures = original_submit
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = ab_parser(__doc__, fits=2)
    ap.add_argument("--profile", type=int, default=0, help="functions of the profile shown")
    ap.add_argument("--profile-dir", default="/tmp")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k in CHILD_ARGS]
    versions = {"base": os.path.abspath(args.base), "this": os.path.dirname(HERE)}
    got: dict[str, list] = {name: [] for name in versions}
    for i in range(args.rounds):
        order = list(versions) if i % 2 == 0 else list(versions)[::-1]
        for name in order:
            load = os.getloadavg()[0]
            res = run_child(__file__, versions[name], argv)
            for f in res["fits"]:
                got[name].append(f)
                print(
                    f"round {i} {name:4s} load {load:.2f} fit {f['wall']:.2f} s, driver CPU "
                    f"{f['driver_cpu']:.3f} s; to the data pass's submission: CPU "
                    f"{f['to_submit_cpu']:.3f} s, wall {f['to_submit_wall']:.3f} s; to the "
                    f"first chain task {f['to_first_chain']:.3f} s; scheduler requests "
                    f"{sum(f['syncs'].values())} {f['syncs']}; results {f['digest']}"
                )
            if "profile" in res:
                print(f"--- profile of {name} ({res['profile_path']}) ---\n{res['profile']}")
    print(f"load after: {os.getloadavg()}")
    for name, fits in got.items():
        best = {
            key: min(f[key] for f in fits)
            for key in ("wall", "driver_cpu", "to_submit_cpu", "to_submit_wall", "to_first_chain")
        }
        requests = sorted(sum(f["syncs"].values()) for f in fits)
        digests = sorted({f["digest"] for f in fits})
        print(f"{name}: least {best}; scheduler requests {requests}; results {digests}")


if __name__ == "__main__":
    main()
