"""Scaling of an out-of-core fit with the number of Dask workers: fit ÷ scan, same threads.

Run:  python benchmarks/bench_scaling.py [--rows 100_000_000] [--groups 200000,2000000]
                                         [--files 128] [--workers 1,2,4,8,16]
                                         [--exchange auto] [--repeat 5] [--dir /tmp/scaling]

On a many-core machine the default is the series of issue 16 (1–16 workers); on 2 cores
use ``--rows 5000000 --files 16 --workers 1,2``.  For every number of groups:

1. generates the data once per size (``--files`` Parquet files, each row's group drawn
   at random, so every group's rows are spread over all files; random intercept and
   slope on x1, 3 fixed effects), with a process pool;
2. for every ``W`` in ``--workers``: a LocalCluster of ``W`` single-threaded worker
   processes; one untimed fit (warm-up), then ``--repeat`` rounds of, interleaved, a
   warm pyarrow scan of the same columns with ``W`` threads (``bench_dask.WarmScanner``:
   one long-lived child process, so the scan pays no process start and no first touch
   of fresh memory, as the warm workers do not) before each fit and after the last, and
   the fit
   (``dmixed.mixedlm("y ~ x1 + x2 + x3", dd.read_parquet(dir), groups="g",
   re_formula="1 + x1").fit(client=...)``, REML, standard errors included) under each
   exchange of ``--exchange`` (Dask config ``dmixed.exchange``), only the last fit of
   each exchange kept (a fit's model and results keep its statistics on the workers);
3. records per ``W`` and exchange the median, min and max of the fit, of the scan and of
   the fit over the mean of the scans just before and after it, the data pass, the
   bytes the data pass's tasks sent to the bucket nodes (from the engine's
   ``exchange:`` log line), the efficiency against 1 worker (``fit(1) / (W · fit(W))``,
   medians), the fits' tasks by kind (median compute seconds
   summed over the workers, and when the last one ended), the CPU seconds of the driver
   and of the workers in the data pass and in the optimization (medians; see
   ``bench_dask.PhaseCPU``) and one optimizer step at the
   optimum timed on the driver against its longest block (the difference: the round
   trip's latency), the parts of the scaling model in ``RESULTS.md``.

Writes the JSON (``--out``) after every step, so a cut-off run keeps what it measured.
BLAS is pinned to one thread in this process and the workers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
from multiprocessing import Pool

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
from bench_dask import (  # noqa: E402
    DirectCalls,
    PhaseCPU,
    WarmScanner,
    idle_seconds,
    local_cluster,
    task_times,
)

COLUMNS = ["g", "x1", "x2", "x3", "y"]


def _gen_file(job: tuple) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory, i, n, groups = job
    rng = np.random.default_rng(1000 + i)
    b = np.random.default_rng(0).normal(size=(groups, 2)) * [1.0, 0.5]
    g = rng.integers(0, groups, n)
    x = rng.normal(size=(n, 3))
    y = 1.0 + x @ [2.0, 3.0, -1.0] + b[g, 0] + b[g, 1] * x[:, 0] + rng.normal(size=n)
    table = pa.table({"g": g, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y})
    pq.write_table(table, os.path.join(directory, f"part-{i:04d}.parquet"), row_group_size=1 << 20)


def generate(directory: str, rows: int, groups: int, files: int) -> float:
    """The data set (kept when its parameters match); seconds spent."""
    marker = os.path.join(directory, "_params.json")
    params = {"rows": rows, "groups": groups, "files": files}
    if os.path.exists(marker):
        with open(marker) as fh:
            if json.load(fh) == params:
                return 0.0
    os.makedirs(directory, exist_ok=True)
    for f in os.listdir(directory):
        os.remove(os.path.join(directory, f))
    t0 = time.perf_counter()
    per_file = rows // files
    jobs = [
        (directory, i, per_file if i < files - 1 else rows - per_file * (files - 1), groups)
        for i in range(files)
    ]
    with Pool(min(files, os.cpu_count() or 1)) as pool:
        pool.map(_gen_file, jobs)
    with open(marker, "w") as fh:
        json.dump(params, fh)
    return time.perf_counter() - t0


class ExchangeLog(logging.Handler):
    """Keeps the figures of the engine's last ``exchange:`` log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: dict | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("exchange:"):
            rows, partials, mb = record.args[:3]
            self.last = {"tasks_routing_rows": rows, "tasks_sending_partials": partials}
            self.last["bytes"] = int(round(mb * 1e6))
            self.last["why"] = record.args[3] if len(record.args) > 3 else ""


def fit_once(directory: str, client, exchange: str, log: ExchangeLog, cpu=None) -> dict:
    import dask
    import dask.dataframe as dd
    from distributed import get_task_stream

    import dmixed

    if cpu is not None:
        cpu.mark()
    t0, wall0, thread0 = time.perf_counter(), time.time(), time.thread_time()
    with (
        dask.config.set({"dmixed.exchange": exchange}),
        get_task_stream(client) as ts,
        DirectCalls() as direct,
    ):
        model = dmixed.mixedlm(
            "y ~ x1 + x2 + x3", dd.read_parquet(directory), groups="g", re_formula="1 + x1"
        )
        res = model.fit(client=client)
    seconds = time.perf_counter() - t0
    thread = time.thread_time() - thread0
    if cpu is not None:
        cpu.mark()
    return {
        "cpu": None if cpu is None else cpu.phases(),
        "driver_thread_cpu": thread,
        "no_task_running": idle_seconds(ts.data, wall0, seconds),
        # the optimizer's round trips as direct calls (no task: the workers compute in
        # them, the driver waits): counted as busy here
        "no_task_or_direct_call": idle_seconds(ts.data, wall0, seconds, direct.spans),
        "direct_call_seconds": sum(b - a for a, b in direct.spans),
        "direct_round_trips": len(direct.spans),
        "seconds": seconds,
        "data_pass": res.data_pass_seconds,
        "llf": res.llf,
        "n_evals": res.n_evals,
        "exchange": log.last,
        "tasks": task_times(ts.data, wall0),
        "model": model,
        "res": res,
    }


def step_round_trip(client, fit: dict, repeat: int = 5) -> dict:
    """One optimizer step at the fit's optimum, ``repeat`` times: the driver's wall time
    (median) and the longest block's compute (from the task stream); their difference
    is the round trip's latency (scheduling, transfer, the driver's sum)."""
    from distributed import get_task_stream

    stats = fit["model"].statistics(client=client)
    lam = stats.layout.lam(fit["res"].packed_params, True)
    walls, longest = [], []
    for _ in range(repeat):
        t0, wall0 = time.perf_counter(), time.time()
        with get_task_stream(client) as ts:
            stats.engine.step(lam, stats.layout.k_re)
        walls.append(time.perf_counter() - t0)
        spans = [
            s["stop"] - s["start"]
            for r in ts.data
            for s in r["startstops"]
            if s["action"] == "compute" and s["start"] >= wall0
        ]
        longest.append(max(spans, default=0.0))
    wall, block = float(np.median(walls)), float(np.median(longest))
    engine = type(stats.engine).__name__
    if engine != "DaskEngine":  # gathered: the step runs in this process, no round trip
        block = wall
    return {
        "engine": engine,
        "step_seconds": wall,
        "block_seconds": block,
        "latency_seconds": wall - block,
    }


def _task_medians(fits: list[dict]) -> dict:
    """Per kind of task, the median over the fits of its compute seconds (summed over
    the workers) and of its span's end (seconds from the fit's start)."""
    kinds = sorted({k for f in fits for k in f["tasks"]})
    out = {}
    for k in kinds:
        found = [f["tasks"][k] for f in fits if k in f["tasks"]]
        out[k] = {
            "count": found[0]["count"],
            "seconds": float(np.median([t["seconds"] for t in found])),
            "last_end": float(np.median([t["last_end"] for t in found])),
        }
    return out


def _stats(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": min(values), "max": max(values)}


def series(args, directory: str, groups: int, report: dict, save) -> None:
    from distributed import Client

    log = ExchangeLog()
    logging.getLogger("dmixed").addHandler(log)
    logging.getLogger("dmixed").setLevel(logging.INFO)
    base: dict[str, float] = {}
    for workers in args.workers:
        with local_cluster(workers, args.memory_limit) as cluster, Client(cluster) as client:
            fit_once(directory, client, args.exchange[0], log)  # warm-up, not timed
            cpu = PhaseCPU(client)
            logging.getLogger("dmixed").addHandler(cpu)
            logging.getLogger("dmixed").setLevel(logging.DEBUG)
            runs: dict[str, list[dict]] = {e: [] for e in args.exchange}
            # each fit against the mean of the warm scans just before and after it: the
            # machine's drift moves both sides of the ratio alike
            ratios: dict[str, list[float]] = {e: [] for e in args.exchange}
            scanner = WarmScanner(directory, COLUMNS, workers)
            scans = [scanner.scan()]
            for _ in range(args.repeat):
                for exchange in args.exchange:
                    runs[exchange].append(fit_once(directory, client, exchange, log, cpu))
                    # only the last fit's model and results live on (a user's refit):
                    # each earlier one's statistics would stay on the workers
                    for fit in (f for fits in runs.values() for f in fits[:-1]):
                        fit.pop("model", None)
                        fit.pop("res", None)
                    scans.append(scanner.scan())
                    neighbours = (scans[-2] + scans[-1]) / 2
                    ratios[exchange].append(runs[exchange][-1]["seconds"] / neighbours)
            scanner.close()
            logging.getLogger("dmixed").removeHandler(cpu)
            trip = step_round_trip(client, runs[args.exchange[-1]][-1])
        for exchange, fits in runs.items():
            fit = [f["seconds"] for f in fits]
            median = float(np.median(fit))
            base.setdefault(exchange, median * workers)  # the first W of the series
            entry = {
                "groups": groups,
                "workers": workers,
                "exchange": exchange,
                "fit_seconds": _stats(fit),
                "scan_seconds": _stats(scans),
                "fit_over_scan": _stats(ratios[exchange]),
                "data_pass_seconds": _stats([f["data_pass"] for f in fits]),
                "exchanged": fits[-1]["exchange"],
                "efficiency_vs_first": base[exchange] / workers / median,
                "llf": fits[-1]["llf"],
                "n_evals": fits[-1]["n_evals"],
                "tasks": _task_medians(fits),
                # the driver's main thread (dmixed's client code: graph, assembly,
                # the optimizer), not the IO loop's housekeeping that the process's
                # CPU above holds too (RESULTS.md, drv2m-s55)
                "driver_thread_cpu": _stats([f["driver_thread_cpu"] for f in fits]),
                "no_task_running": _stats([f["no_task_running"] for f in fits]),
                "no_task_or_direct_call": _stats([f["no_task_or_direct_call"] for f in fits]),
                "direct_call_seconds": _stats([f["direct_call_seconds"] for f in fits]),
                "direct_round_trips": fits[-1]["direct_round_trips"],
                "cpu_seconds": {
                    phase: {
                        who: float(np.median([f["cpu"][phase][who] for f in fits]))
                        for who in ("driver", "workers")
                    }
                    for phase in ("data_pass", "optimization")
                },
                "step": trip,
            }
            report["series"].append(entry)
            save()
            print(
                f"{groups:>9,} groups  W={workers:2d} {exchange:8s} fit {median:6.2f} s "
                f"scan {entry['scan_seconds']['median']:5.2f} s  fit/scan "
                f"{entry['fit_over_scan']['median']:5.2f} "
                f"({entry['fit_over_scan']['min']:.2f}-{entry['fit_over_scan']['max']:.2f})  "
                f"eff {entry['efficiency_vs_first']:.2f}  exchanged {entry['exchanged']}",
                flush=True,
            )
            cpu_s = entry["cpu_seconds"]
            print(
                f"    CPU s (median) driver / workers: data pass "
                f"{cpu_s['data_pass']['driver']:.2f} / {cpu_s['data_pass']['workers']:.2f}, "
                f"optimization {cpu_s['optimization']['driver']:.2f} / "
                f"{cpu_s['optimization']['workers']:.2f}",
                flush=True,
            )
            print(
                f"    driver main thread CPU {entry['driver_thread_cpu']['median']:.3f} s, "
                f"no task running {entry['no_task_running']['median']:.3f} s "
                f"({entry['no_task_running']['min']:.3f}-{entry['no_task_running']['max']:.3f}), "
                f"of it in {entry['direct_round_trips']} direct-call round trip(s) "
                f"{entry['direct_call_seconds']['median']:.3f} s; neither "
                f"{entry['no_task_or_direct_call']['median']:.3f} s",
                flush=True,
            )
            print(
                f"    one step ({trip['engine']}) {1e3 * trip['step_seconds']:.1f} ms (longest "
                f"block "
                f"{1e3 * trip['block_seconds']:.1f} ms); tasks (median compute s, end s): "
                + ", ".join(
                    f"{k} {t['count']}x {t['seconds']:.2f} @{t['last_end']:.2f}"
                    for k, t in entry["tasks"].items()
                    if t["seconds"] >= 0.01
                ),
                flush=True,
            )
    logging.getLogger("dmixed").removeHandler(log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--groups", default="200000,2000000")
    ap.add_argument("--files", type=int, default=128)
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--exchange", default="auto", help="comma-separated: auto, partials, rows")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--memory-limit", default="7GiB", help="per worker")
    ap.add_argument("--dir", default="/tmp/scaling")
    ap.add_argument("--out", default="benchmarks/out/scaling.json")
    args = ap.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    args.exchange = args.exchange.split(",")

    import dask
    import distributed
    import pyarrow

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "cpus": os.cpu_count(),
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "pyarrow": pyarrow.__version__,
            "dask": dask.__version__,
            "distributed": distributed.__version__,
        },
        "series": [],
    }

    def save() -> None:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)

    for groups in [int(g) for g in args.groups.split(",")]:
        directory = os.path.join(args.dir, f"g{groups}")
        seconds = generate(directory, args.rows, groups, args.files)
        print(f"data: {args.rows:,} rows, {groups:,} groups, {args.files} files ({seconds:.1f} s)")
        series(args, directory, groups, report, save)


if __name__ == "__main__":
    main()
