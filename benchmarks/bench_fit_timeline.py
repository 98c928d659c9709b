"""The driver's turns around the round trips of warm Dask fits, fit by fit.

Runs ``--fits`` fits (``y ~ x1 + x2 + x3``, random intercept and slope on ``x1``) of a
Parquet data set on a local cluster of ``--workers`` single-threaded worker processes
(bench_dask's), in the dmixed on ``PYTHONPATH``, with a warm pyarrow scan of the data
before each fit (as the plain loops of RESULTS.md).  Per fit it records, with the wall
clock of this host (the driver's and the workers' are one):

- every ``Client.map`` call that names its keys (``key=``: the optimizer's round trips,
  :func:`dmixed.engines.dask.placement.call_keys`) and every ``Client.gather``, on the
  driver;
- the tasks' compute start and end on the workers (``distributed.get_task_stream``).

and prints per fit, in milliseconds:

- ``dp→rt1``: from the end of the last task before the first round trip (the data
  pass's last: a block, a summary or moment sums) to that round trip's submission;
- ``dp→run1``: from the end of that last task to the first round trip's first task's
  start on a worker: what the workers wait between the data pass and the optimizer
  (the driver's turn ``dp→rt1`` and the first ``sub→run``);
- ``sub→run``: from a round trip's submission to its first task's start on a worker
  (median over the fit's round trips): the scheduler's turn, and the client's batching
  of messages (``BatchedSend``) where a release was queued just before;
- ``rt1``: from the first round trip's submission to the end of its gather (the
  driver's work between them, if longer than the workers', counts here);
- ``work1``: from the first round trip's first task's start to its last task's end on the
  workers (their compute, slowed where the driver's work shares their cores);
- ``turn``: from the end of a round trip's gather to the next one's submission (median:
  the driver's own work between round trips);
- ``idle``: from the last task of a round trip to the first of the next (median: what
  the workers wait);
- the fit's wall time and round trips.

    python benchmarks/bench_fit_timeline.py --dir DATA [--fits 6] [--workers 2]

Nothing here is dmixed's API beyond ``dmixed.mixedlm`` and the public key names of the
round trips' tasks; it runs the same on any tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

import dask.dataframe as dd
from distributed import Client, get_task_stream

import dmixed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dask import local_cluster  # noqa: E402

COLUMNS = ["y", "x1", "x2", "x3", "g"]

SCAN = (
    "import sys, pyarrow.dataset as ds\n"
    "for line in sys.stdin:\n"
    "    ds.dataset(line.strip(), format='parquet').to_table(columns={cols!r})\n"
    "    print('ok', flush=True)\n"
)


class Recorder:
    """The driver's keyed ``Client.map`` calls and ``Client.gather`` calls of one
    client, timed (``time.time``)."""

    def __init__(self, client) -> None:
        self.events: list[tuple] = []
        map_, gather = client.map, client.gather

        def timed_map(func, *args, **kwargs):
            keys = kwargs.get("key")
            if isinstance(keys, list):
                self.events.append(("map", time.time(), {str(k[0]) for k in keys}))
            return map_(func, *args, **kwargs)

        def timed_gather(*args, **kwargs):
            start = time.time()
            futures = args[0] if args else kwargs.get("futures", ())
            names = {_name(f.key) for f in futures if hasattr(f, "key")}
            try:
                return gather(*args, **kwargs)
            finally:
                self.events.append(("gather", start, time.time(), names))

        client.map, client.gather = timed_map, timed_gather

    def round_trips(self) -> list[tuple[float, float, set]]:
        """``(submission, gather end, key names)`` of each round trip: its first keyed
        map after the previous one's gather, to the gather of its tasks after it (a
        gather of other tasks between, the data pass's, is not the round trip's)."""
        trips: list = []
        current = None
        for event in self.events:
            if event[0] == "map":
                if current is None:
                    current = [event[1], None, set()]
                current[2] |= event[2]
            elif current is not None and event[3] & current[2]:
                current[1] = event[2]
                trips.append(tuple(current))
                current = None
        return trips


def _name(key) -> str:
    return str(key[0]) if isinstance(key, tuple) else str(key)


def _compute_span(task: dict) -> tuple[float, float]:
    spans = [s for s in task["startstops"] if s["action"] == "compute"]
    return min(s["start"] for s in spans), max(s["stop"] for s in spans)


def fit_timeline(trips: list, tasks: list) -> dict:
    """The per-fit figures of the module's docstring, in ms."""
    by_trip: list[list] = [[] for _ in trips]
    others = []
    names = [t[2] for t in trips]
    for task in tasks:
        if not any(s["action"] == "compute" for s in task["startstops"]):
            continue
        span = _compute_span(task)
        name = _name(task["key"])
        for i, trip_names in enumerate(names):
            if name in trip_names:
                by_trip[i].append(span)
                break
        else:
            others.append(span)
    first_submit = trips[0][0]
    before = [stop for start, stop in others if stop <= first_submit]
    ms = 1e3
    sub_run = [
        min(s for s, _ in spans) - t[0] for t, spans in zip(trips, by_trip, strict=True) if spans
    ]
    turn = [trips[i + 1][0] - trips[i][1] for i in range(len(trips) - 1)]
    idle = [
        min(s for s, _ in by_trip[i + 1]) - max(e for _, e in by_trip[i])
        for i in range(len(trips) - 1)
        if by_trip[i] and by_trip[i + 1]
    ]
    run1 = min(s for s, _ in by_trip[0]) if by_trip[0] else float("nan")
    return {
        "dp_rt1": (first_submit - max(before)) * ms if before else float("nan"),
        "dp_run1": (run1 - max(before)) * ms if before else float("nan"),
        "sub_run": statistics.median(sub_run) * ms,
        "sub_run_rt1": sub_run[0] * ms,
        "rt1": (trips[0][1] - first_submit) * ms,
        "work1": (max(e for _, e in by_trip[0]) - run1) * ms if by_trip[0] else float("nan"),
        "turn": statistics.median(turn) * ms if turn else float("nan"),
        "idle": statistics.median(idle) * ms if idle else float("nan"),
        "trips": len(trips),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="the Parquet data set (bench_dask's)")
    parser.add_argument("--fits", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GiB")
    args = parser.parse_args()
    warnings.simplefilter("ignore", dmixed.DmixedWarning)
    scan = subprocess.Popen(
        [sys.executable, "-c", SCAN.format(cols=COLUMNS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def warm_scan() -> None:
        assert scan.stdin is not None and scan.stdout is not None
        scan.stdin.write(args.dir + "\n")
        scan.stdin.flush()
        scan.stdout.readline()

    print("dmixed", dmixed.__file__, "load", os.getloadavg(), flush=True)
    rows = []
    with (
        local_cluster(args.workers, args.memory_limit, True) as cluster,
        Client(cluster) as client,
    ):
        recorder = Recorder(client)
        for i in range(args.fits + 1):  # the first fit warms the workers: not counted
            warm_scan()
            recorder.events.clear()
            model = dmixed.mixedlm(
                "y ~ x1 + x2 + x3", dd.read_parquet(args.dir), groups="g", re_formula="1 + x1"
            )
            with get_task_stream(client) as stream:
                start = time.perf_counter()
                res = model.fit(client=client, engine="distributed")
                wall = time.perf_counter() - start
            line = fit_timeline(recorder.round_trips(), stream.data)
            line["wall"] = wall * 1e3
            print(
                f"fit {i}: wall {line['wall']:.0f}  dp→rt1 {line['dp_rt1']:.1f}  "
                f"dp→run1 {line['dp_run1']:.1f}  rt1 {line['rt1']:.1f}  "
                f"work1 {line['work1']:.1f}  "
                f"sub→run rt1 {line['sub_run_rt1']:.1f} median {line['sub_run']:.1f}  "
                f"turn {line['turn']:.1f}  idle {line['idle']:.1f}  trips {line['trips']}  "
                f"llf {res.llf!r}",
                flush=True,
            )
            if i:
                rows.append(line)
            del res, model
    scan.stdin.close()
    summary = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        "median  " + "  ".join(f"{k} {v:.1f}" for k, v in summary.items()),
        "load",
        os.getloadavg(),
    )


if __name__ == "__main__":
    main()
