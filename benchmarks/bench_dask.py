"""Out-of-core benchmark: a Parquet data set fitted on a 2-worker LocalCluster.

Run:  python benchmarks/bench_dask.py [--rows 50_000_000] [--groups 1_000_000]
                                      [--files 50] [--workers 2] [--dir benchmarks/out/data]
                                      [--repeat 2] [--worker-env]

1. Generates the data once (kept in ``--dir``; regenerated if the sizes differ):
   ``--files`` Parquet files, rows of every group spread over many files (each row's
   group is drawn at random), random intercept and slope on x1, 3 fixed effects.
2. Peer: a plain pyarrow scan of the same columns (``pyarrow.dataset(...).to_table``),
   in this run, in a child process, twice before the fits and twice after them (the
   cluster closed); the best of the four runs counts.  The same scan streamed
   (``to_batches``, each batch dropped) is timed the same way and its ratio printed
   too: it does not fault in the table's pages (2 GB at 50M rows), so its time grows
   with the rows as the fit's reads do, where the table's grows faster.  The table
   scan also runs once before every fit and once after the last (the cluster idle), in
   one long-lived child process kept warm as the workers are (:class:`WarmScanner`):
   each fit is divided by the mean of the scans on either side of it, so that drift in
   the machine's speed over minutes moves both sides of the ratio alike; the median of
   these ratios over the fits after the first is printed with the rest.
3. Fit: ``dmixed.mixedlm("y ~ x1 + x2 + x3", dd.read_parquet(dir), groups="g",
   re_formula="1 + x1").fit(client=client)`` on a LocalCluster with ``--workers``
   single-threaded worker processes, REML, standard errors included; ``--repeat`` times
   on the same cluster, each from the data, the better counting (as for the scan).
   With ``--persist`` the collection is persisted on the workers first (not timed) and
   the fits read it from worker memory.  With ``--worker-env`` the workers start with
   the environment the command line's embedded cluster gives its own
   (``dmixed.cluster.WORKER_ENV``: Arrow's allocator keeps the pages it frees, which a
   running worker cannot switch on); without it, as a user's own LocalCluster would.
   Besides the better fit, the median of the fits after the first is printed.
4. After the tasks of the better fit, where its time after the chains goes
   (:func:`tail_split`): to the first optimizer round trip, the round trips, and the
   driver's work after the last task.
5. With ``--floor``, the fit's own chains of partitions (same cluster, same tasks) run
   twice more doing less: only reading their partitions (as the chains read them:
   straight to numpy where they read Parquet directly, else into pandas), then also
   building the design matrices.  The statistics, their combine and the optimization come on top
   of these; the ratio of these floors to the scan says what part of the goal is left
   for them.

Prints the wall times (whole fit, data pass, per optimizer step), the CPU seconds of the
driver and of the workers in the data pass and in the optimization (``client.run`` at
the fit's start, at the engine's ``data pass done`` log line and at its end), the ratio
of the whole fit to the scan, the tasks of the better fit by kind (from distributed's
task stream: the chains, the combine, the optimizer's steps and Hessians), and the peak
resident memory of every process, twice: sampled every 0.1 s (driver, scheduler,
workers, nannies) and the kernel's exact peak (``ru_maxrss``) of the driver and of every
worker; writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
from _report import write_report


def generate(directory: str, rows: int, groups: int, files: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = os.path.join(directory, "_params.json")
    params = {"rows": rows, "groups": groups, "files": files, "seed": seed}
    if os.path.exists(marker):
        with open(marker) as fh:
            if json.load(fh) == params:
                return
    os.makedirs(directory, exist_ok=True)
    for f in os.listdir(directory):
        os.remove(os.path.join(directory, f))
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(groups, 2)) * [1.0, 0.5]
    per_file = rows // files
    t0 = time.perf_counter()
    for i in range(files):
        n = per_file if i < files - 1 else rows - per_file * (files - 1)
        g = rng.integers(0, groups, n)
        x = rng.normal(size=(n, 3))
        y = 1.0 + x @ [2.0, 3.0, -1.0] + b[g, 0] + b[g, 1] * x[:, 0] + rng.normal(size=n)
        table = pa.table({"g": g, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y})
        pq.write_table(
            table, os.path.join(directory, f"part-{i:04d}.parquet"), row_group_size=1_000_000
        )
    with open(marker, "w") as fh:
        json.dump(params, fh)
    print(f"generated {rows:,} rows in {files} files in {time.perf_counter() - t0:.1f} s")


def local_cluster(n_workers: int, memory_limit: str, worker_env: bool = False):
    """A LocalCluster of ``n_workers`` single-threaded worker processes on loopback;
    with ``worker_env``, the workers get the environment the command line's embedded
    cluster gives its own (:data:`dmixed.cluster.WORKER_ENV`, where this process's
    environment does not set it)."""
    from distributed import LocalCluster

    env = None
    if worker_env:
        from dmixed.cluster import WORKER_ENV

        env = {k: os.environ.get(k, v) for k, v in WORKER_ENV.items()}
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        host="127.0.0.1",
        dashboard_address=None,
        env=env,
    )


class WarmScanner:
    """The peer's table scan (``pyarrow.dataset`` of ``columns``, ``to_table``) in one
    long-lived child process, run on request: warm like the fits' workers (its imports
    done, its allocator holding the pages of the scans before), so that a scan between
    two fits pays no process start and no first touch of fresh memory (which costs
    seconds a GiB on this VM after a while idle).  ``threads``: Arrow's CPU and I/O
    thread pools set to that many (the fit's number of workers); None: Arrow's defaults.
    Three scans run at the start, untimed."""

    def __init__(self, directory: str, columns: list[str], threads: int | None = None) -> None:
        pools = (
            f"pa.set_cpu_count({threads}); pa.set_io_thread_count({threads})\n" if threads else ""
        )
        code = (
            "import sys, time, pyarrow as pa, pyarrow.dataset as ds\n"
            + pools
            + "for _ in sys.stdin:\n"
            "    t0 = time.perf_counter()\n"
            f"    n = ds.dataset({directory!r}, format='parquet').to_table("
            f"columns={columns!r}).num_rows\n"
            "    print(time.perf_counter() - t0, n, flush=True)\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3):
            self.scan()

    def scan(self) -> float:
        """Seconds of one scan."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline().split()[0])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


class PeakRSS:
    """Samples the resident memory of this process and its descendants."""

    def __init__(self, interval: float = 0.1, skip: str | None = None) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.skip = skip  # processes whose command line holds this are not sampled
        self.peak: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = self._psutil.Process()
        while not self._stop.is_set():
            for proc in [me, *me.children(recursive=True)]:
                try:
                    cmdline = proc.cmdline()
                    if self.skip is not None and any(self.skip in a for a in cmdline):
                        continue
                    rss = proc.memory_info().rss
                    name = " ".join(cmdline[-2:]) or proc.name()
                except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                    continue
                if rss > self.peak.get(proc.pid, ("", 0))[1]:
                    self.peak[proc.pid] = (name[-60:], rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _own_usage() -> tuple[float, int]:
    """``(CPU seconds, peak resident bytes)`` of this process so far (all its threads;
    ``ru_maxrss`` is the kernel's exact peak, in KiB on Linux)."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime, use.ru_maxrss * 1024


class PhaseCPU(logging.Handler):
    """CPU seconds of the driver and of every worker over one fit, split at the
    engine's ``data pass done`` log line (data pass / optimization and standard errors).

    The split is read where the driver logs the end of the data pass (after the blocks
    are built and gathered), by ``client.run`` on every worker: CPU time, unlike wall
    time, counts only what these processes ran, which the other load on the machine
    distorts less.
    """

    def __init__(self, client) -> None:
        super().__init__(logging.DEBUG)
        self.client = client
        self.marks: list[tuple[float, float]] = []  # (driver, workers) CPU seconds

    def mark(self) -> None:
        workers = self.client.run(_own_usage)
        self.marks.append((_own_usage()[0], sum(cpu for cpu, _ in workers.values())))

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("data pass done"):
            self.mark()

    def phases(self) -> dict[str, dict[str, float]]:
        """``{"data_pass": {"driver": s, "workers": s}, "optimization": {...}}``."""
        (d0, w0), (d1, w1), (d2, w2) = self.marks[-3:]
        return {
            "data_pass": {"driver": d1 - d0, "workers": w1 - w0},
            "optimization": {"driver": d2 - d1, "workers": w2 - w1},
        }


def task_times(records: list[dict], t0: float) -> dict[str, dict[str, float]]:
    """Per kind of task (its function's name) in a task stream: how many, seconds of
    compute summed over the workers, and the span from the first start to the last end
    (seconds from ``t0``, the fit's start in ``time.time()``)."""
    from dask.utils import key_split

    spans = [
        (key_split(r["key"]), s["start"], s["stop"])
        for r in records
        for s in r["startstops"]
        if s["action"] == "compute" and s["start"] >= t0  # the stream may hold the fit before
    ]
    out: dict[str, dict[str, float]] = {}
    for name, start, stop in sorted(spans, key=lambda x: x[1]):
        entry = out.setdefault(name, {"count": 0, "seconds": 0.0, "first": start - t0})
        entry["count"] += 1
        entry["seconds"] += stop - start
        entry["last_end"] = max(entry.get("last_end", 0.0), stop - t0)
    return out


def idle_seconds(
    records: list[dict], wall0: float, seconds: float, busy_spans: list | tuple = ()
) -> float:
    """Seconds of the fit (``wall0`` to ``wall0 + seconds``, ``time.time()``) in which no
    worker computed a task: the fit's serial part (the driver's own work, the graph's
    submission, the scheduler's turns and the transfers that no computation overlaps),
    whatever the worker count.  The union of the tasks' compute spans, clipped to the
    fit, taken from its wall.  ``busy_spans``: further ``(start, stop)`` spans counted
    as busy (:class:`DirectCalls`: the optimizer's round trips run as direct calls to
    the workers, which the task stream does not see)."""
    spans = sorted(
        (max(start, wall0), min(stop, wall0 + seconds))
        for start, stop in [
            *(
                (s["start"], s["stop"])
                for r in records
                for s in r["startstops"]
                if s["action"] == "compute"
            ),
            *busy_spans,
        ]
        if stop > wall0 and start < wall0 + seconds
    )
    busy, end = 0.0, wall0
    for start, stop in spans:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return seconds - busy


class DirectCalls:
    """The wall spans (``time.time()``) of the optimizer's round trips that the engine
    runs as direct calls to the workers (:func:`dmixed.engines.dask.direct_calls.run_recorded`,
    as :mod:`dmixed.engines.dask.evaluator` calls it): the workers compute in them, but
    no task of the scheduler's stream covers them.  A context manager: the engine's
    name is wrapped while it is open; ``spans`` holds one ``(start, stop)`` a call and
    ``stages`` its stages' number."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.stages: list[int] = []
        self._wrapped = None

    def __enter__(self) -> DirectCalls:
        from dmixed.engines.dask import evaluator

        wrapped = self._wrapped = evaluator.run_recorded

        def timed(client, recorder, *args, **kwargs):
            start = time.time()
            try:
                return wrapped(client, recorder, *args, **kwargs)
            finally:
                self.spans.append((start, time.time()))
                self.stages.append(len(recorder.stages))

        evaluator.run_recorded = timed
        return self

    def __exit__(self, *exc) -> None:
        from dmixed.engines.dask import evaluator

        evaluator.run_recorded = self._wrapped


#: Task kinds of the data pass's reads (one of them per fit) and of the optimizer's
#: round trips (each a map over the blocks' evaluators), by their keys' names.
CHAIN_TASKS = ("chain_partials", "resident_chain_partials", "partition_partials")
ROUND_TRIP_TASKS = (
    "block_steps",
    "block_step",
    "block_hessian",
    "block_hessian_at",
    "block_hessian_random_effects",
    "block_random_effects",
    "block_next_step",
    "block_next_hessian",
    "block_moments",
)


def busy_seconds(records: list[dict], t0: float, start: float) -> float:
    """Seconds after ``start`` (from ``t0``, as :func:`task_times`) during which some
    worker was computing a task (the union of the tasks' compute spans): the rest of
    that time the workers waited on the driver, the scheduler or a transfer."""
    spans = sorted(
        (max(s["start"] - t0, start), s["stop"] - t0)
        for r in records
        for s in r["startstops"]
        if s["action"] == "compute" and s["start"] >= t0 and s["stop"] - t0 > start
    )
    busy, end = 0.0, start
    for lo, hi in spans:
        if hi > end:
            busy += hi - max(lo, end)
            end = hi
    return busy


def tail_split(tasks: dict[str, dict[str, float]], fit: float) -> dict[str, float] | None:
    """Where the fit's time after its chains goes (seconds, from :func:`task_times`):
    ``chains`` (the last chain's end), ``to_optimizer`` (from there to the first
    optimizer round trip's first task: exchange, combine, blocks, evaluators),
    ``optimizer`` (from there to the last round trip's last task: starts, Newton steps,
    Hessians, BLUPs) and ``after`` (from there to the fit's end: the driver's results).
    None without chain tasks."""
    chains = [t["last_end"] for name, t in tasks.items() if name in CHAIN_TASKS]
    trips = [t for name, t in tasks.items() if name in ROUND_TRIP_TASKS and name != "block_moments"]
    if not chains or not trips:
        return None
    end = max(chains)
    first = min(t["first"] for t in trips)
    last = max(t["last_end"] for t in trips)
    return {
        "chains": end,
        "to_optimizer": first - end,
        "optimizer": last - first,
        "after": fit - last,
    }


def _floor_chain(pieces, reads, spec=None) -> int:
    """Read a chain's partitions as the fit's data pass does (straight to numpy where
    it reads Parquet directly), and (with ``spec``) build their design matrices; no
    statistics.  Runs on a worker."""
    from dmixed.engines.dask.partials import chain_frames, partition_rows
    from dmixed.engines.dask.tuning import tune_malloc

    tune_malloc()  # the fit's chains do the same first
    rows = 0
    for frame in chain_frames(pieces, reads):
        if spec is not None:
            partition_rows(frame, spec, None)
        rows += len(next(iter(frame.values()))) if isinstance(frame, dict) else len(frame)
    return rows


def floor(client, ddf, model, repeat: int = 2) -> dict[str, float]:
    """Seconds (the better of ``repeat`` runs) of the fit's own chains doing less: only
    reading their partitions into pandas, then also building the design matrices.  What
    the data pass costs before any statistic is computed, on the same cluster."""
    from dmixed.design.columnar import columns_design_applies
    from dmixed.engines.dask.graph import chain_recipes, project_columns
    from dmixed.engines.dask.parquet_direct import parquet_reads

    n_chains = int(sum(client.nthreads().values()))
    chains = chain_recipes(project_columns(ddf, model.spec), n_chains)
    direct = columns_design_applies(model.spec)  # as the data pass's graph decides
    reads = [parquet_reads(c, model.spec) if direct else None for c in chains]
    out = {}
    for name, spec in (("read", None), ("read_design", model.spec)):
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            tasks = [
                client.submit(_floor_chain, c, r, spec, pure=False)
                for c, r in zip(chains, reads, strict=True)
            ]
            client.gather(tasks)
            runs.append(time.perf_counter() - t0)
        out[name] = min(runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="6GiB", help="per worker")
    ap.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "distributed", "local"],
        help="where the optimizer steps run (dmixed.engine)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="fits on the same cluster (each from the data); the better counts, as for the scan",
    )
    ap.add_argument(
        "--persist",
        action="store_true",
        help="persist the collection on the workers first (not timed) and fit that: "
        "the data pass then reads worker memory, not Parquet",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also time the fit's chains reading the partitions only, and reading them "
        "and building the design matrices (no statistics): the floor of the data pass",
    )
    ap.add_argument(
        "--worker-env",
        action="store_true",
        help="start the workers with the environment of the command line's embedded "
        "cluster (dmixed.cluster.WORKER_ENV: Arrow's allocator keeps the pages it frees)",
    )
    ap.add_argument("--dir", default="benchmarks/out/data")
    ap.add_argument("--out", default="benchmarks/out/dask.json")
    args = ap.parse_args()

    generate(args.dir, args.rows, args.groups, args.files)
    columns = ["g", "x1", "x2", "x3", "y"]

    import dask
    import dask.dataframe as dd
    from distributed import Client, get_task_stream

    import dmixed

    # peer: a plain pyarrow scan of the same columns, in a child process so that the
    # table it materializes does not count in this process's peak memory; and the same
    # scan streamed (record batches read and dropped, no table kept), which does not
    # fault in the table's pages and so grows with the rows as the fit's reads do
    def scan_code(stream: bool) -> str:
        read = (
            f"n = sum(b.num_rows for b in ds.dataset({args.dir!r}, format='parquet')"
            f".to_batches(columns={columns!r}))\n"
            if stream
            else f"n = ds.dataset({args.dir!r}, format='parquet').to_table(columns={columns!r})"
            ".num_rows\n"
        )
        return (
            "import sys, time, pyarrow.dataset as ds\n"
            "t0 = time.perf_counter()\n" + read + "print(time.perf_counter() - t0, n)\n"
        )

    def run_scan(stream: bool = False) -> tuple[float, int]:
        out = subprocess.run(
            [sys.executable, "-c", scan_code(stream)], capture_output=True, text=True, check=True
        ).stdout.split()
        return float(out[0]), int(out[1])

    # the scan runs twice before the fits and twice after (the cluster closed): the
    # better of the four counts. This machine's speed drifts by 2-3x over minutes, and a
    # scan that only ran before the fits could land in a slow spell the fits missed.
    scans_before = [run_scan() for _ in range(2)]
    streams_before = [run_scan(True) for _ in range(2)]
    with (
        PeakRSS(skip="pyarrow.dataset") as rss,
        local_cluster(args.workers, args.memory_limit, args.worker_env) as cluster,
        Client(cluster) as client,
    ):
        fits = []
        persisted = None
        if args.persist:
            from distributed import wait

            persisted = client.persist(dd.read_parquet(args.dir))
            wait(persisted)
        cpu = PhaseCPU(client)
        # a warm table scan before every fit and after the last: each fit is compared
        # with the scans on either side of it, so that the machine's drift (2-3x over
        # minutes here) moves both sides of a ratio alike
        scanner = WarmScanner(args.dir, columns)
        interleaved = [scanner.scan()]
        dmixed_log = logging.getLogger("dmixed")
        dmixed_log.addHandler(cpu)
        dmixed_log.setLevel(logging.DEBUG)
        for _ in range(max(1, args.repeat)):
            ddf = dd.read_parquet(args.dir) if persisted is None else persisted
            cpu.mark()
            t0, wall0 = time.perf_counter(), time.time()
            model = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1")
            spec_seconds = time.perf_counter() - t0
            with dask.config.set({"dmixed.engine": args.engine}), get_task_stream(client) as ts:
                res = model.fit(client=client)
            wall = time.perf_counter() - t0
            cpu.mark()
            tasks = task_times(ts.data, wall0)
            split = tail_split(tasks, wall) if tasks else None
            if split is not None:  # the workers' busy time after the chains
                split["busy_after_chains"] = busy_seconds(ts.data, wall0, split["chains"])
            fits.append((wall, spec_seconds, res, model, tasks, cpu.phases(), split))
            interleaved.append(scanner.scan())
            print(
                f"  fit {fits[-1][0]:.2f} s (data pass {res.data_pass_seconds:.2f} s, "
                f"{res.n_evals} evaluations); CPU s driver / workers: data pass "
                f"{fits[-1][5]['data_pass']['driver']:.2f} / "
                f"{fits[-1][5]['data_pass']['workers']:.2f}, optimization "
                f"{fits[-1][5]['optimization']['driver']:.2f} / "
                f"{fits[-1][5]['optimization']['workers']:.2f}"
            )
        dmixed_log.removeHandler(cpu)
        scanner.close()
        fit, spec_seconds, res, model, tasks, _, tail = min(fits, key=lambda f: f[0])
        stats = model.statistics(client=client)
        lam = stats.layout.lam(res.packed_params, True)
        steps = []
        for _ in range(5):
            t1 = time.perf_counter()
            stats.engine.step(lam, stats.layout.k_re)
            steps.append(time.perf_counter() - t1)
        engine = type(stats.engine).__name__
        floors = floor(client, dd.read_parquet(args.dir), model) if args.floor else None
        worker_peaks = {w: usage[1] for w, usage in client.run(_own_usage).items()}
    driver_peak = _own_usage()[1]
    scans_after = [run_scan() for _ in range(2)]
    streams_after = [run_scan(True) for _ in range(2)]
    streams = [t for t, _ in streams_before + streams_after]
    stream = min(streams)
    scans = [t for t, _ in scans_before + scans_after]
    scan_rows = scans_before[0][1]
    scan = min(scans)
    print(
        f"pyarrow scan of {scan_rows:,} rows x {len(columns)} columns: {scan:.2f} s "
        f"(runs before the fits: {', '.join(f'{t:.2f}' for t in scans[:2])} s; "
        f"after: {', '.join(f'{t:.2f}' for t in scans[2:])} s)"
    )
    print(
        f"the same scan streamed (batches dropped, no table kept): {stream:.2f} s (runs "
        f"before the fits: {', '.join(f'{t:.2f}' for t in streams[:2])} s; after: "
        f"{', '.join(f'{t:.2f}' for t in streams[2:])} s)"
    )
    step = float(np.median(steps))
    optimization = fit - spec_seconds - res.data_pass_seconds
    peaks = sorted(rss.peak.values(), key=lambda v: -v[1])
    warm_median = float(np.median([f[0] for f in fits[1:]])) if len(fits) > 1 else None
    # fit i against the mean of the scans just before and just after it
    pair_ratios = [f[0] / (0.5 * (interleaved[i] + interleaved[i + 1])) for i, f in enumerate(fits)]
    warm_pairs = pair_ratios[1:] if len(pair_ratios) > 1 else pair_ratios
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": res.nobs,
        "groups": res.n_groups,
        "files": args.files,
        "workers": args.workers,
        "engine_option": args.engine,
        "persisted": bool(args.persist),
        "worker_env": bool(args.worker_env),
        "scan_seconds": scan,
        "scan_runs_seconds": scans,
        "stream_scan_seconds": stream,
        "stream_scan_runs_seconds": streams,
        "fit_seconds": fit,
        "fit_runs_seconds": [f[0] for f in fits],
        "fit_warm_median_seconds": warm_median,
        "fit_runs_cpu_seconds": [f[5] for f in fits],
        "data_pass_runs_seconds": [f[2].data_pass_seconds for f in fits],
        "spec_seconds": spec_seconds,
        "data_pass_seconds": res.data_pass_seconds,
        "optimization_seconds": optimization,
        "step_seconds": step,
        "engine": engine,
        "n_evals": res.n_evals,
        "fit_over_scan": fit / scan,
        "fit_over_stream_scan": fit / stream,
        "interleaved_scan_runs_seconds": interleaved,
        "fit_over_neighbour_scans": pair_ratios,
        "fit_over_neighbour_scans_warm_median": float(np.median(warm_pairs)),
        "llf": res.llf,
        "fe_params": res.fe_params.tolist(),
        "floor_seconds": floors,
        "task_times": tasks,
        "peak_rss_bytes": [{"process": n, "bytes": b} for n, b in peaks],
        "max_rss_bytes": {"driver": driver_peak, "workers": worker_peaks},
    }
    print(
        f"fit (spec + data pass + optimization + SEs): {fit:.2f} s "
        f"= {fit / scan:.2f} x the scan (goal <= 2); runs: "
        + ", ".join(f"{f[0]:.2f}" for f in fits)
        + " s"
    )
    print(f"  the better fit = {fit / stream:.2f} x the streamed scan")
    if warm_median is not None:
        print(
            f"  median of the fits after the first (numba's first compile and the "
            f"workers' first touch of their memory left out): {warm_median:.2f} s "
            f"= {warm_median / scan:.2f} x the scan, {warm_median / stream:.2f} x the streamed scan"
        )
    print(
        "  each fit over the mean of the warm table scans run just before and just after it: "
        + ", ".join(f"{r:.2f}" for r in pair_ratios)
        + f" (scans {', '.join(f'{t:.2f}' for t in interleaved)} s); median after the "
        f"first {np.median(warm_pairs):.2f}, best {min(pair_ratios):.2f}"
    )
    print(
        f"  model spec {spec_seconds:.2f} s, data pass {res.data_pass_seconds:.2f} s, "
        f"optimization and standard errors {optimization:.2f} s: "
        f"{res.n_evals} evaluations, one step {1e3 * step:.1f} ms ({engine})"
    )
    if tasks:
        print("  tasks of the better fit (count, compute seconds summed over workers, span):")
        for name, t in tasks.items():
            print(
                f"    {name:28s} {t['count']:4d} {t['seconds']:7.2f} s  "
                f"{t['first']:6.2f} - {t['last_end']:6.2f} s"
            )
    report["tail_seconds"] = tail
    if tail is not None:
        print(
            f"  after the chains ({tail['chains']:.2f} s): {fit - tail['chains']:.2f} s = "
            f"{tail['to_optimizer']:.2f} to the first optimizer round trip (exchange, "
            f"combine, blocks, evaluators) + {tail['optimizer']:.2f} round trips (starts, "
            f"Newton, Hessians, BLUPs) + {tail['after']:.2f} after the last task; some "
            f"task computing {tail['busy_after_chains']:.2f} s of it"
        )
    if floors is not None:
        print(
            f"  floor: chains only reading the partitions {floors['read']:.2f} s "
            f"= {floors['read'] / scan:.2f} x the scan; reading and building the design "
            f"matrices {floors['read_design']:.2f} s = {floors['read_design'] / scan:.2f} x"
        )
    print("peak RSS per process (sampled every 0.1 s):")
    for name, b in peaks:
        print(f"  {b / 2**30:6.2f} GiB  {name}")
    print(
        f"peak RSS (the kernel's ru_maxrss): driver {driver_peak / 2**30:.2f} GiB; workers "
        + ", ".join(f"{b / 2**30:.2f}" for b in worker_peaks.values())
        + " GiB"
    )
    write_report(args.out, report)


if __name__ == "__main__":
    main()
