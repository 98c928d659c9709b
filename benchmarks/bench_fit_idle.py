"""Where a warm Dask fit has no task running: its wall clock cut into consecutive parts.

Runs ``--fits`` warm fits (``y ~ x1 + x2 + x3``, random intercept and slope on ``x1``;
one more first, to warm the workers, not counted) of a Parquet data set on a local
cluster of ``--workers`` single-threaded worker processes (bench_dask's, with the
embedded cluster's worker environment), a warm pyarrow scan before each.  Per fit it
prints, in seconds, from the task stream (``distributed.get_task_stream``) and the
driver's calls of three engine functions, timed where the engine calls them
(``time.time``: the driver's and the workers' clocks are one on one host):

- ``start``: from the fit's start (the model's spec included) to the first chain's
  start on a worker (the graph's construction, its submission, the scheduler's turn);
- ``chains``: from there to the last chain's end (the data pass's reads);
- ``exchange``: from there to the last ``combined_block``'s start (the last chain's
  share moved to the other bucket's worker, the owners' tasks, their turns);
- ``combine``: that block's compute;
- ``evaluators``: from its end to the end of the last block summary, evaluator or moment
  sums task;
- ``driver``: from there to the optimizer's first round trip (the driver's
  :func:`~dmixed.engines.dask.blocks.assemble_blocks`, of which ``assemble`` is the
  wall and ``assemble_cpu`` the main thread's CPU, and
  :func:`~dmixed.engines.dask.evaluator.collect_evaluators`);
- ``round_trips``: the optimizer's round trips run as direct calls
  (:func:`~dmixed.engines.dask.direct_calls.run_recorded`: no task in the stream; the
  workers compute inside them) and ``trips`` their number;
- ``end``: from the last round trip's end to the fit's return (the results);
- ``no_task`` (bench_dask's ``idle_seconds``) and ``neither`` (with the direct calls
  counted as busy).

    MIMALLOC_PURGE_DELAY=-1 python benchmarks/bench_fit_idle.py --dir DATA [--fits 4]
        [--keep-results]

With ``--keep-results`` every fit's result and model stay alive until the end, as
bench_dask.py keeps them: each fit then allocates its arrays in fresh memory instead
of the last fit's freed memory (fresh pages to fault in, on the workers too).

Nothing here is dmixed's API beyond ``dmixed.mixedlm`` and the engine's public
functions named above; it runs the same on any tree that has them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from math import nan

import dask.dataframe as dd
from bench_dask import WarmScanner, idle_seconds, local_cluster
from distributed import Client, get_task_stream

import dmixed
from dmixed.engines.dask import data_pass, evaluator

PARTS = (
    "start",
    "chains",
    "exchange",
    "combine",
    "evaluators",
    "driver",
    "assemble",
    "assemble_cpu",
    "round_trips",
    "end",
    "no_task",
    "neither",
)


class Spans:
    """``(name, start, stop, main thread CPU)`` of the calls of the engine functions
    wrapped (:meth:`wrap`) while the instance lives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float, float]] = []

    def wrap(self, module, name: str) -> None:
        func = getattr(module, name)

        def timed(*args, **kwargs):
            start, cpu = time.time(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.calls.append((name, start, time.time(), time.thread_time() - cpu))

        setattr(module, name, timed)

    def of(self, name: str) -> list[tuple[float, float, float]]:
        return [(a, b, c) for n, a, b, c in self.calls if n == name]


def _computes(records: list[dict]) -> list[tuple[str, float, float]]:
    out = []
    for r in records:
        key = r["key"][0] if isinstance(r["key"], tuple) else r["key"]
        for s in r["startstops"]:
            if s["action"] == "compute":
                out.append((str(key), s["start"], s["stop"]))
    return out


def fit_parts(records: list[dict], spans: Spans, wall0: float, wall1: float) -> dict:
    """The parts of the module's docstring, in seconds."""
    tasks = _computes(records)
    chains = [(a, b) for k, a, b in tasks if k.startswith("chain_partials")]
    blocks = [(a, b) for k, a, b in tasks if k.startswith("combined_block")]
    made = [
        b for k, _, b in tasks if k.startswith(("block_summary", "make_evaluator", "block_moments"))
    ]
    trips = spans.of("run_recorded") or [(nan, nan, nan)]  # none: run as tasks
    assemble = spans.of("assemble_blocks")
    last_chain = max(b for _, b in chains)
    last_block = max(blocks)
    ready = max(made, default=last_block[1])
    return {
        "start": min(a for a, _ in chains) - wall0,
        "chains": last_chain - min(a for a, _ in chains),
        "exchange": last_block[0] - last_chain,
        "combine": last_block[1] - last_block[0],
        "evaluators": ready - last_block[1],
        "driver": trips[0][0] - ready,
        "assemble": sum(b - a for a, b, _ in assemble),
        "assemble_cpu": sum(c for _, _, c in assemble),
        "round_trips": sum(b - a for a, b, _ in trips),
        "trips": len(spans.of("run_recorded")),
        "end": wall1 - trips[-1][1],
        "no_task": idle_seconds(records, wall0, wall1 - wall0),
        "neither": idle_seconds(
            records, wall0, wall1 - wall0, [(a, b) for a, b, _ in spans.of("run_recorded")]
        ),
        "wall": wall1 - wall0,
    }


def keep_freed() -> None:
    """glibc's ``mallopt``: large blocks from the heap, not ``mmap`` (freed, they are
    reused, not returned: no page faults on the next fit's arrays), and the heap's top
    kept (M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    if not (libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, (1 << 31) - 1)):
        raise RuntimeError("mallopt refused")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="the Parquet data set (bench_dask's)")
    parser.add_argument("--fits", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GiB")
    parser.add_argument(
        "--keep-freed",
        action="store_true",
        help="this process only (not the workers): glibc keeps freed memory for reuse "
        "(mallopt M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB), as the environment "
        "MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ would for every process",
    )
    parser.add_argument(
        "--keep-results",
        action="store_true",
        help="keep every fit's result and model alive until the end (as bench_dask.py "
        "does), not freed before the next fit",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.keep_freed:
        keep_freed()
    warnings.simplefilter("ignore", dmixed.DmixedWarning)
    spans = Spans()
    spans.wrap(data_pass, "assemble_blocks")
    spans.wrap(evaluator, "run_recorded")
    print("dmixed", dmixed.__file__, "load", os.getloadavg(), flush=True)
    rows = []
    kept: list = []  # --keep-results: every fit's result and model
    with (
        local_cluster(args.workers, args.memory_limit, True) as cluster,
        Client(cluster) as client,
    ):
        scanner = WarmScanner(args.dir, ["g", "x1", "x2", "x3", "y"])
        for i in range(args.fits + 1):
            scanner.scan()
            spans.calls.clear()
            wall0 = time.time()
            model = dmixed.mixedlm(
                "y ~ x1 + x2 + x3", dd.read_parquet(args.dir), groups="g", re_formula="1 + x1"
            )
            with get_task_stream(client) as stream:
                res = model.fit(client=client)
            parts = fit_parts(stream.data, spans, wall0, time.time())
            print(
                f"fit {i}: wall {parts['wall']:.3f}  "
                + "  ".join(f"{k} {parts[k]:.3f}" for k in PARTS)
                + f"  trips {parts['trips']}  llf {res.llf!r}  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if i:
                rows.append(parts)
            if args.keep_results:
                kept.append((res, model))
        scanner.close()
    print(
        "median  "
        + "  ".join(f"{k} {statistics.median(r[k] for r in rows):.3f}" for k in ("wall", *PARTS)),
        "load",
        os.getloadavg(),
    )


if __name__ == "__main__":
    main()
