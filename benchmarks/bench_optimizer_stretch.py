"""The optimizer's stretch of warm Dask fits, accounted stage by stage.

Runs ``--fits`` fits (``y ~ x1 + x2 + x3``, random intercept and slope on ``x1``, REML)
of a Parquet data set on a local cluster of ``--workers`` single-threaded worker
processes (bench_dask's), in the dmixed on ``PYTHONPATH``, and prints for the fits after
the first two (warm), from the moment sums on the driver
(:func:`dmixed.engines.dask.evaluator.collect_evaluators`' return, as the data pass calls
it) to the fit's return:

- the stretch's wall time, and the thread CPU of the driver's threads over its three
  parts: before the optimizer's round trip, during it, and after its last reply (the
  results);
- per stage of the round trip (one direct call per worker,
  :mod:`dmixed.engines.dask.direct_calls`) and worker: the stage function's wall and
  thread CPU inside the worker (the ``run`` handler's call of it), the time from the
  driver's request to the worker's start (``req``), from the worker's end to the
  driver's receipt of the answer (``reply``), and the driver's event-loop thread CPU
  over the stage (both workers' calls);
- their medians.

The driver's wrappers time :func:`dmixed.engines.dask.evaluator.collect_evaluators` (as
:mod:`~dmixed.engines.dask.data_pass` holds it) and ``send_recv`` (as
:mod:`~dmixed.engines.dask.direct_calls` holds it); the workers' wrap distributed's
``run`` handler (``distributed.worker.run``).  They add a few clock reads a call; the
fit's results are those of an unwrapped fit.

    python benchmarks/bench_optimizer_stretch.py --dir DATA [--fits 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import dask.dataframe as dd
from distributed import Client

import dmixed
from dmixed.engines.dask import data_pass, direct_calls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dask import local_cluster  # noqa: E402


def _thread_cpus() -> dict:
    """Thread CPU seconds of each of this process's threads, by name."""
    out = {}
    for t in threading.enumerate():
        try:
            out[t.name] = time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (OSError, TypeError, ValueError):
            pass
    return out


def _task_threads_cpu() -> float:
    """Thread CPU seconds of this worker's task threads (distributed names them
    ``…Dask-Default-Threads-…``), where the stages run."""
    return sum(v for k, v in _thread_cpus().items() if "Dask-Default-Threads" in k)


def _install_workers() -> bool:
    """Wrap the ``run`` handler in this worker: each stage's function name, the
    handler's wall span and its task threads' CPU over it (the stage function's)
    kept in a list on ``builtins`` (read and emptied by :func:`_taken`)."""
    import builtins

    import distributed.worker as dw
    from distributed.protocol import pickle

    if hasattr(builtins, "dmixed_stretch"):
        return True
    log: list = []
    builtins.dmixed_stretch = log  # type: ignore[attr-defined]
    handler = dw.run

    async def run(server, comm, function, args=(), kwargs=None, wait=True):
        name = None
        if args:
            payload = pickle.loads(args)
            if isinstance(payload, tuple) and len(payload) == 4 and callable(payload[1]):
                name = payload[1].__name__
        if name is None:
            return await handler(server, comm, function, args, kwargs, wait)
        before = _task_threads_cpu()
        start = time.time()
        out = await handler(server, comm, function, args, kwargs, wait)
        end = time.time()
        cpu = _task_threads_cpu() - before
        log.append((name, start, end, cpu))
        return out

    dw.run = run
    return True


def _taken() -> list:
    import builtins

    log = builtins.dmixed_stretch  # type: ignore[attr-defined]
    out = list(log)
    log.clear()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--fits", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    marks: dict = {}
    sends: list = []
    collect = data_pass.collect_evaluators

    def collected(*a, **k):
        out = collect(*a, **k)
        marks["moments"] = (time.time(), _thread_cpus())
        return out

    data_pass.collect_evaluators = collected
    send_recv = direct_calls.send_recv
    loop_cpu = time.thread_time

    async def timed_send_recv(comm, **msg):
        start, c0 = time.time(), loop_cpu()
        out = await send_recv(comm, **msg)
        sends.append((start, time.time(), c0, loop_cpu()))
        return out

    direct_calls.send_recv = timed_send_recv
    rows: list = []
    stages: dict = {}
    with (
        local_cluster(args.workers, "8GiB", True) as cluster,
        Client(cluster) as client,
    ):
        client.run(_install_workers)
        for i in range(args.fits):
            marks.clear()
            sends.clear()
            model = dmixed.mixedlm(
                "y ~ x1 + x2 + x3", dd.read_parquet(args.dir), groups="g", re_formula="1 + x1"
            )
            res = model.fit(client=client)
            end, end_cpus = time.time(), _thread_cpus()
            taken = client.run(_taken)
            if i == 0:
                print(f"llf {res.llf!r} n_evals {res.n_evals} n_iter {res.n_iter}", flush=True)
            if i < 2 or "moments" not in marks or not sends:
                continue
            t0, cpus0 = marks["moments"]
            calls = sorted(
                (rec for recs in taken.values() for rec in recs if rec[2] >= t0),
                key=lambda rec: rec[1],
            )
            sends.sort()
            per = args.workers
            first_send, last_reply = sends[0][0], max(s[1] for s in sends)
            row = {
                "stretch": end - t0,
                "to first call": first_send - t0,
                "round trip": last_reply - first_send,
                "after last reply": end - last_reply,
            }
            print(" ".join(f"{k} {v * 1e3:.1f}" for k, v in row.items()), flush=True)
            rows.append((row, {k: v - cpus0.get(k, 0.0) for k, v in end_cpus.items()}))
            for s in range(min(len(sends), len(calls)) // per):
                got = calls[s * per : (s + 1) * per]
                asked = sends[s * per : (s + 1) * per]
                name = got[0][0]
                req = max(c[1] for c in got) - min(a[0] for a in asked)
                reply = max(a[1] for a in asked) - max(c[2] for c in got)
                loop = max(a[3] for a in asked) - min(a[2] for a in asked)
                slowest = max(c[2] - c[1] for c in got)
                cpu = max(c[3] for c in got)
                stages.setdefault((s, name), []).append((slowest, cpu, req, reply, loop))
    print("median over", len(rows), "warm fits, ms:")
    for key in rows[0][0]:
        print(f"  {key:18s} {statistics.median(r[0][key] for r in rows) * 1e3:7.1f}")
    names = set().union(*(r[1] for r in rows))
    for name in sorted(names):
        cpu = statistics.median(r[1].get(name, 0.0) for r in rows) * 1e3
        if cpu >= 0.05:
            print(f"  driver thread {name!r} CPU over the stretch {cpu:.1f}")
    print("  stage (slowest worker): wall, thread CPU; req, reply (the slower); driver loop CPU")
    for (s, name), vals in sorted(stages.items()):
        med = [statistics.median(v[j] for v in vals) * 1e3 for j in range(5)]
        print(
            f"  {s} {name:28s} wall {med[0]:6.1f} cpu {med[1]:6.1f}  req {med[2]:5.1f}"
            f" reply {med[3]:5.1f}  loop {med[4]:5.1f}"
        )


if __name__ == "__main__":
    main()
