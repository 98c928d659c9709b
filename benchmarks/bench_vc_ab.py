"""Variance components, this tree against a base tree: fits from a Dask DataFrame (local
scheduler) and in process, or the in-process data pass with and without the component.

    python benchmarks/bench_vc_ab.py [--base DIR] [--rounds 5] [--parts 2 4] [--data-pass]
        [--distributed] [--statsmodels]

The issue's synthetic case (120 groups × 120 levels × 3 rows, ``vc_formula`` ``0 +
C(level)``, ``bench_vc.synthetic``).  Each round runs one subprocess per side, in turn
(A, B, A, B …): it fits once untimed (warm), then times ``from_formula`` + ``fit`` (REML)
of the Dask DataFrame of every ``--parts`` (Dask's local scheduler; with
``--distributed`` a local cluster of two single-threaded worker processes, the statistics
kept on the workers, ``engine="distributed"``) and of the pandas DataFrame.  With
``--data-pass`` it times instead, warm, the median of 7 interleaved runs of the data pass
(``statistics_from_rows``) and of the design (``from_formula``) of the model with the
component and without it (``re_formula="1"`` only).  ``--base DIR``:
a directory holding the base's ``dmixed`` package (``git archive REV dmixed | tar -x -C
DIR``), put first on ``PYTHONPATH``; ``--also NAME=DIR`` adds more such trees.  Prints,
per case and side, the median (min–max) of the rounds, the evaluations and optimizer
methods, and the llf difference between sides; ``--statsmodels`` times statsmodels' fit
of the pandas DataFrame once per round, after the trees (a subprocess).
BLAS is pinned to one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vc  # noqa: E402

#: the model, as the children fit it
SM_KW = dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(level)"})

CHILD = """
import json, sys, time, warnings
import dask.dataframe as dd
sys.path.insert(0, sys.argv[1])
import bench_vc
import dmixed
parts = [int(p) for p in sys.argv[2].split(",")]
data = bench_vc.synthetic(120, 120)
kw = dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(level)"})
out = {}
fit_kw = {}
if sys.argv[3] == "distributed":  # two worker processes; the statistics stay on them
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0")
    fit_kw = dict(client=Client(cluster, set_as_default=False), engine="distributed")
def fit(frame):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.MixedLM.from_formula("y ~ x", data=frame, **kw)
        res = model.fit(reml=True, **(fit_kw if frame is not data else {}))
    return time.perf_counter() - t, res
cases = [("pandas", data)]
cases += [(f"dask {p} parts", dd.from_pandas(data, npartitions=p)) for p in parts]
for name, frame in cases:
    fit(frame)  # warm
    t, res = fit(frame)
    out[name] = {"seconds": t, "evals": int(res.n_evals), "methods": list(res.optimizer_methods),
                 "llf": float(res.llf), "file": dmixed.__file__}
print(json.dumps(out))
"""

DATA_PASS_CHILD = """
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np
import bench_vc
import dmixed
from dmixed.engines.local import statistics_from_rows
data = bench_vc.synthetic(120, 120)
kws = {"with vc": dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(level)"}),
       "without": dict(groups="g", re_formula="1")}
warnings.simplefilter("ignore")
models = {k: dmixed.MixedLM.from_formula("y ~ x", data=data, **kw) for k, kw in kws.items()}
jobs = {}
for k, kw in kws.items():
    jobs[f"data pass {k}"] = lambda m=models[k]: statistics_from_rows(m.rows)
    jobs[f"design {k}"] = lambda kw=kw: dmixed.MixedLM.from_formula("y ~ x", data=data, **kw)
times = {name: [] for name in jobs}
for name, job in jobs.items():
    job()  # warm
for _ in range(7):
    for name, job in jobs.items():
        t = time.perf_counter()
        job()
        times[name].append(time.perf_counter() - t)
print(json.dumps({name: {"seconds": float(np.median(v)), "evals": 0, "methods": [],
                         "llf": 0.0} for name, v in times.items()}))
"""


def run_side(
    base: str | None, parts: list[int], data_pass: bool = False, distributed: bool = False
) -> dict:
    env = os.environ.copy()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    if base:
        env["PYTHONPATH"] = base + os.pathsep + env.get("PYTHONPATH", "")
    here = os.path.dirname(os.path.abspath(__file__))
    child = DATA_PASS_CHILD if data_pass else CHILD
    where = "distributed" if distributed else "local"
    args = [sys.executable, "-c", child, here, ",".join(map(str, parts)), where]
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd="/tmp", check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--parts", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--data-pass", action="store_true")
    ap.add_argument("--distributed", action="store_true", help="Dask fits on 2 worker processes")
    ap.add_argument(
        "--statsmodels", action="store_true", help="statsmodels' fit once per round, in turn"
    )
    ap.add_argument("--also", nargs="*", default=[], metavar="NAME=DIR", help="more trees")
    args = ap.parse_args()
    sides = {"new": None} | ({"base": args.base} if args.base else {})
    sides |= dict(item.split("=", 1) for item in args.also)
    runs: dict = {side: [] for side in sides}
    sm_times = []
    for _ in range(args.rounds):
        for side, tree in sides.items():
            runs[side].append(run_side(tree, args.parts, args.data_pass, args.distributed))
        if args.statsmodels:
            sm = bench_vc.fit_statsmodels(bench_vc.synthetic(120, 120), "y ~ x", SM_KW, 600.0)
            sm_times.append(np.nan if sm is None else sm["seconds"])
    if sm_times:
        print(
            f"statsmodels (pandas, one fit per round): {np.median(sm_times):.2f} s "
            f"({min(sm_times):.2f}–{max(sm_times):.2f})"
        )
    print("| case | side | s (median, min–max) | evals | methods | llf − new's |")
    print("|---|---|---:|---:|---|---:|")
    for case in runs["new"][0]:
        for side in sides:
            times = [r[case]["seconds"] for r in runs[side]]
            last = runs[side][-1][case]
            gap = last["llf"] - runs["new"][-1][case]["llf"]
            print(
                f"| {case} | {side} | {np.median(times):.4f} ({min(times):.4f}–{max(times):.4f})"
                f" | {last['evals']} | {'+'.join(last['methods'])} | {gap:.1e} |"
            )


if __name__ == "__main__":
    main()
