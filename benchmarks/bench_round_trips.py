"""The optimizer's round trips of a Dask fit, trees side by side.

For each tree given (a checkout of dmixed), in turn, ``--rounds`` times: a child process
with ``PYTHONPATH`` set to it starts a local cluster of ``--workers`` single-threaded
worker processes (as bench_dask's), makes the statistics of a Parquet data set once
(``y ~ x1 + x2 + x3``, random intercept and slope on ``x1``, engine
``"distributed"``: kept on the workers), then times ``--fits`` fits from those cached
statistics (no data pass: the optimizer's round trips, the Hessian and the BLUPs of
every group) and ``--steps`` single optimizer steps (``engine.step``).  Prints per tree
and round the best and median fit and step, and the fits' llf (the same bits in every
tree is the check that nothing moved).

    python benchmarks/bench_round_trips.py --dir DATA TREE_A TREE_B [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, warnings
import numpy as np, dask, dask.dataframe as dd
from distributed import Client, LocalCluster
import dmixed

def main():
    directory = sys.argv[1]
    n_workers, fits, steps = (int(a) for a in sys.argv[2:5])
    warnings.simplefilter("ignore", dmixed.DmixedWarning)
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with dask.config.set({"dmixed.engine": "distributed"}):
            model = dmixed.mixedlm("y ~ x1 + x2 + x3", dd.read_parquet(directory), groups="g",
                                   re_formula="1 + x1")
            res = model.fit(client=client)  # the data pass, and a warm fit
            times, cpu = [], []
            for _ in range(fits):
                workers0 = sum(client.run(time.process_time).values())
                t0, c0 = time.perf_counter(), time.process_time()
                res = model.fit(client=client)
                times.append(time.perf_counter() - t0)
                driver = time.process_time() - c0
                workers = sum(client.run(time.process_time).values()) - workers0
                cpu.append((driver, workers))
            stats = model.statistics(client=client)
            lam = stats.layout.lam(res.packed_params, True)
            step = []
            for _ in range(steps):
                t0 = time.perf_counter()
                stats.engine.step(lam, stats.layout.k_re)
                step.append(time.perf_counter() - t0)
    print(json.dumps({"file": dmixed.__file__, "fits": times, "steps": step, "llf": repr(res.llf),
                      "cpu": cpu,
                      "groups": int(res.n_groups), "evals": int(res.n_evals)}))

if __name__ == "__main__":
    main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--dir", required=True, help="a Parquet data set of bench_dask's columns")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fits", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    for r in range(args.rounds):
        for tree in args.trees:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
            load = os.getloadavg()[0]
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        args.dir,
                        str(args.workers),
                        str(args.fits),
                        str(args.steps),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            got = json.loads(out)
            fits, steps = sorted(got["fits"]), sorted(got["steps"])
            driver = sorted(c[0] for c in got["cpu"])
            workers = sorted(c[1] for c in got["cpu"])
            print(
                f"round {r} {tree}: load {load:.1f}; fit from statistics best "
                f"{fits[0]:.3f} s, median {fits[len(fits) // 2]:.3f} s; step best "
                f"{1e3 * steps[0]:.1f} ms, median {1e3 * steps[len(steps) // 2]:.1f} ms; "
                f"CPU a fit, median: driver (with the scheduler) "
                f"{driver[len(driver) // 2]:.3f} s, workers {workers[len(workers) // 2]:.3f} s; "
                f"{got['groups']} groups, {got['evals']} evaluations, llf {got['llf']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
