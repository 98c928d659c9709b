"""A/B of two checkouts on the out-of-core fit's hand-off from the data pass's blocks.

Run:  python benchmarks/bench_block_handoff.py BASE_TREE [--rounds 3] [--fits 3]
                                               [--dir /tmp/bd20] [--workers 2]

``BASE_TREE`` is another checkout (a worktree of main); this checkout is the other
version.  The data set is :mod:`bench_dask`'s (``--dir``, generated there).  For each of
``--rounds`` rounds the two versions run in turn (the order alternating from round to
round), each in a child process with ``PYTHONPATH`` set to its tree: a 2-worker
LocalCluster as :mod:`bench_dask` makes it, one warm fit, then ``--fits`` fits of
``y ~ x1 + x2 + x3`` with a random intercept and slope on x1 (REML, standard errors).
Per fit, from distributed's task stream: on each worker, the wait from the end of its
block (``combined_block``) to the start of its evaluator (``make_evaluator``); the
wait from the last block's end to the first optimizer task (:data:`bench_dask.
ROUND_TRIP_TASKS`); the time after the last optimizer task (the driver's results);
the fit's wall time; and a digest of the results' bytes (``params``, ``bse``,
``cov_re``, ``llf``, every group's BLUPs and their conditional variances, the group
labels: the two versions must agree bit for bit).  The parent prints each fit and the medians.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time

from _report import ab_parser, ooc_fit, run_child

HERE = os.path.dirname(os.path.abspath(__file__))


def digest(res) -> str:
    """SHA-256 (first 16 hex digits) of the results' estimates, BLUPs, their conditional
    variances and the group labels."""
    import numpy as np

    h = hashlib.sha256()
    blups, variances = res.random_effects_frame(), res.random_effects_var()
    for values in (res.params, res.bse, res.cov_re, res.llf, blups, variances):
        h.update(np.ascontiguousarray(np.asarray(values, dtype=np.float64)).tobytes())
    h.update(np.ascontiguousarray(np.asarray(res.group_labels)).tobytes())
    return h.hexdigest()[:16]


def child(args) -> None:
    from bench_dask import ROUND_TRIP_TASKS, local_cluster
    from dask.utils import key_split
    from distributed import Client, get_task_stream

    fits = []
    with local_cluster(args.workers, "6GiB") as cluster, Client(cluster) as client:

        def fit():
            return ooc_fit(client, args.dir)

        fit()  # warm: compiled kernels loaded on the workers
        for _ in range(args.fits):
            load, t0, start = os.getloadavg()[0], time.time(), time.perf_counter()
            with get_task_stream(client) as ts:
                res = fit()
            wall = time.perf_counter() - start
            spans = [
                (key_split(r["key"]), s["start"] - t0, s["stop"] - t0, r["worker"])
                for r in ts.data
                for s in r["startstops"]
                if s["action"] == "compute" and s["start"] >= t0
            ]
            block_end = {w: stop for name, _, stop, w in spans if name == "combined_block"}
            # the moment sums are the data pass's last tasks (the start's), as in bench_dask
            optimizer = [
                (a, b)
                for name, a, b, _ in spans
                if name in ROUND_TRIP_TASKS and name != "block_moments"
            ]
            fits.append(
                {
                    "load": load,
                    "wall": wall,
                    "block_to_evaluator": [
                        a - block_end[w]
                        for name, a, _, w in spans
                        if name == "make_evaluator" and w in block_end
                    ],
                    "block_to_optimizer": min(a for a, _ in optimizer) - max(block_end.values()),
                    "after": wall - max(b for _, b in optimizer),
                    "digest": digest(res),
                }
            )
    print("RESULT " + json.dumps(fits))


def main() -> None:
    ap = ab_parser(__doc__, fits=3)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    argv = [f"--fits={args.fits}", f"--workers={args.workers}", f"--dir={args.dir}"]
    versions = {"base": os.path.abspath(args.base), "this": os.path.dirname(HERE)}
    got: dict[str, list] = {name: [] for name in versions}
    for i in range(args.rounds):
        for name in list(versions) if i % 2 == 0 else list(versions)[::-1]:
            for f in run_child(__file__, versions[name], argv):
                got[name].append(f)
                gaps = " ".join(f"{1e3 * g:.0f}" for g in f["block_to_evaluator"])
                print(
                    f"round {i} {name:4s} load {f['load']:.2f} fit {f['wall']:.2f} s; block → "
                    f"evaluator {gaps} ms; last block → first optimizer task "
                    f"{f['block_to_optimizer']:.3f} s; after the last optimizer task "
                    f"{f['after']:.3f} s; results {f['digest']}"
                )
    print(f"load after: {os.getloadavg()}")
    for name, fits in got.items():
        gaps = [g for f in fits for g in f["block_to_evaluator"]]
        print(
            f"{name}: medians: block → evaluator {1e3 * statistics.median(gaps):.1f} ms, "
            f"last block → first optimizer task "
            f"{statistics.median(f['block_to_optimizer'] for f in fits):.3f} s, after "
            f"{statistics.median(f['after'] for f in fits):.3f} s, fit "
            f"{statistics.median(f['wall'] for f in fits):.2f} s; results "
            f"{sorted({f['digest'] for f in fits})}"
        )


if __name__ == "__main__":
    main()
