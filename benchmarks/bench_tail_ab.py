"""A/B of two checkouts on the out-of-core fit's part after the data pass's chains.

Run:  python benchmarks/bench_tail_ab.py BASE_TREE [--rounds 3] [--fits 2]
                                         [--dir /tmp/bd20] [--workers 2]

``BASE_TREE`` is another checkout (a worktree of main); this checkout is the other
version.  The data set is :mod:`bench_dask`'s (``--dir``, generated there).  For each of
``--rounds`` rounds, the two versions run in turn (the order alternating from round to
round), each in a child process with ``PYTHONPATH`` set to its tree: a 2-worker
LocalCluster as :mod:`bench_dask` makes it, one warm fit, then ``--fits`` fits of
``y ~ x1 + x2 + x3`` with a random intercept and slope on x1 (REML, standard errors).
Per fit the child reports the wall time, the split after the chains
(:func:`bench_dask.tail_split`: to the first optimizer round trip, the round trips, after
the last task), the driver's round trips of the optimizer (``DaskEngine._round_trip``
calls), the driver's waits and gathers on the cluster from the end of the data pass's
wait for its blocks (``distributed.wait`` and ``Client.gather`` calls of the main
thread: the round trips after the chains) and its main thread's CPU seconds over the
same span, the tasks by kind, the CPU seconds of the driver and of the workers after the
engine's ``data pass done`` line (the optimization and the results), the evaluations
and ℓ.  The parent prints each fit and, per version, the best of each figure.
"""

from __future__ import annotations

import json
import logging
import os
import time

from _report import ab_parser, ooc_fit, run_child

HERE = os.path.dirname(os.path.abspath(__file__))


def count_after_chains(data_pass) -> dict:
    """Count the main thread's ``distributed.wait`` and ``Client.gather`` calls from the
    end of the data pass's wait for its blocks (``data_pass.wait_for`` with ``"data
    pass"``), and note its CPU time there; the dict is reset by setting ``"on"`` False."""
    import threading

    import distributed

    seen = {"on": False, "wait": 0, "gather": 0, "cpu": 0.0}
    main = threading.get_ident()
    wait_for, wait, gather = data_pass.wait_for, distributed.wait, distributed.Client.gather

    def marked_wait_for(client, futures, *args, **kwargs):
        out = wait_for(client, futures, *args, **kwargs)
        if (args[1] if len(args) > 1 else kwargs.get("what")) == "data pass":
            seen.update(on=True, wait=0, gather=0, cpu=time.thread_time())
        return out

    def counted(name, call):
        def inner(*args, **kwargs):
            if seen["on"] and threading.get_ident() == main:
                seen[name] += 1
            return call(*args, **kwargs)

        return inner

    data_pass.wait_for = marked_wait_for
    distributed.wait = counted("wait", wait)
    distributed.Client.gather = counted("gather", gather)
    return seen


def child(args) -> None:
    from bench_dask import PhaseCPU, local_cluster, tail_split, task_times
    from distributed import Client, get_task_stream

    import dmixed
    from dmixed.engines.dask import data_pass, evaluator

    trips = [0]
    original = evaluator.DaskEngine._round_trip

    def counted(self, submit, kwargs):
        trips[0] += 1
        return original(self, submit, kwargs)

    evaluator.DaskEngine._round_trip = counted
    seen = count_after_chains(data_pass)
    out = {"dmixed": os.path.dirname(dmixed.__file__), "fits": []}
    with local_cluster(args.workers, "6GiB") as cluster, Client(cluster) as client:

        def fit():
            return ooc_fit(client, args.dir)

        fit()  # warm: compiled kernels loaded on the workers
        cpu = PhaseCPU(client)
        log = logging.getLogger("dmixed")
        log.addHandler(cpu)
        log.setLevel(logging.DEBUG)
        for _ in range(args.fits):
            trips[0] = 0
            cpu.mark()
            t0, wall0 = time.perf_counter(), time.time()
            with get_task_stream(client) as ts:
                res = fit()
            wall = time.perf_counter() - t0
            main_cpu = time.thread_time() - seen["cpu"]
            seen["on"] = False
            cpu.mark()
            tasks = task_times(ts.data, wall0)
            out["fits"].append(
                {
                    "wall": wall,
                    "tail": tail_split(tasks, wall),
                    "round_trips": trips[0],
                    "after_chains": {
                        "waits": seen["wait"],
                        "gathers": seen["gather"],
                        "main_thread_cpu": main_cpu,
                    },
                    "tasks": {k: v["count"] for k, v in tasks.items() if k != "getitem"},
                    "cpu": cpu.phases(),
                    "n_evals": res.n_evals,
                    "llf": res.llf,
                    "bse": res.bse.tolist(),
                }
            )
        log.removeHandler(cpu)
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = ab_parser(__doc__, fits=2)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    this = os.path.dirname(HERE)
    versions = {"base": os.path.abspath(args.base), "this": this}
    got: dict[str, list] = {name: [] for name in versions}
    print(f"load before: {os.getloadavg()}")
    for i in range(args.rounds):
        order = list(versions) if i % 2 == 0 else list(versions)[::-1]
        for name in order:
            res = run_child(
                __file__,
                versions[name],
                ["--dir", args.dir, "--fits", str(args.fits), "--workers", str(args.workers)],
            )
            for f in res["fits"]:
                got[name].append(f)
                nan = float("nan")
                t = f["tail"] or {}
                print(
                    f"round {i} {name:4s} fit {f['wall']:.2f} s; after chains: to optimizer "
                    f"{t.get('to_optimizer', nan):.2f}, round trips "
                    f"{t.get('optimizer', nan):.2f}, after {t.get('after', nan):.2f}"
                    f" s; {f['round_trips']} optimizer round trips, {f['n_evals']} evaluations; "
                    f"after the chains {f['after_chains']['waits']} waits, "
                    f"{f['after_chains']['gathers']} gathers, main thread CPU "
                    f"{f['after_chains']['main_thread_cpu']:.3f} s; "
                    f"CPU s after the data pass: driver {f['cpu']['optimization']['driver']:.2f}, "
                    f"workers {f['cpu']['optimization']['workers']:.2f}; llf {f['llf']!r}"
                )
    print(f"load after: {os.getloadavg()}")
    for name, fits in got.items():
        tails = [f["tail"] for f in fits if f["tail"]]
        after = [t["to_optimizer"] + t["optimizer"] + t["after"] for t in tails]
        split = (
            f"{min(after):.2f} s (to optimizer {min(t['to_optimizer'] for t in tails):.2f}, "
            f"round trips {min(t['optimizer'] for t in tails):.2f}, after "
            f"{min(t['after'] for t in tails):.2f})"
            if tails
            else "- (no chain or no optimizer round trip in the task stream)"
        )
        print(
            f"{name}: best fit {min(f['wall'] for f in fits):.2f} s; best after chains "
            f"{split}; optimizer round trips "
            f"{sorted({f['round_trips'] for f in fits})}; CPU s after the data pass, least: "
            f"driver {min(f['cpu']['optimization']['driver'] for f in fits):.2f}, workers "
            f"{min(f['cpu']['optimization']['workers'] for f in fits):.2f}; after the chains "
            f"waits {sorted({f['after_chains']['waits'] for f in fits})}, gathers "
            f"{sorted({f['after_chains']['gathers'] for f in fits})}, main thread CPU "
            f"{min(f['after_chains']['main_thread_cpu'] for f in fits):.3f} s; tasks "
            f"{fits[-1]['tasks']}"
        )
    base, this_ = got["base"][-1], got["this"][-1]
    same = base["llf"] == this_["llf"] and base["bse"] == this_["bse"]
    print(f"llf and standard errors identical: {same}")


if __name__ == "__main__":
    main()
