"""Peak memory of a fit with many levels per group, one fresh process per fit.

    python benchmarks/bench_vc_memory.py --trees base=/tmp/base new=. --groups 2 \\
        --levels 10000 --repeats 3 [--dask 2 [--distributed]] [--limit-gb 12]

Each run is a new Python process that imports dmixed from the tree given, builds
``bench_vc.synthetic(groups, levels, 3)`` and fits ``y ~ x`` with a random intercept and
``vc_formula={"c": "0 + C(level)"}`` (REML), then reads one group's
``random_effects_cov``.  It prints the process's peak resident memory (``ru_maxrss``)
before the fit, after it, and after that lookup, and the fit's time; the trees run in
turn (A, B, A, B, ...).  ``--dask N``: the same rows as a Dask DataFrame of N partitions
(``dd.from_pandas``), fitted on Dask's local scheduler (the statistics gathered), or with
``--distributed`` on an in-process cluster of two single-threaded workers
(``LocalCluster(processes=False)``, so the workers' memory is the process's) with
``engine="distributed"``.  ``--limit-gb``: the child's address-space limit
(``RLIMIT_AS``); a child that fails (out of memory) is reported as such.

``--model crossed`` / ``crossed-wide``: ``bench_vc_crossed.crossed(groups, levels)``
(each group's ``levels`` levels of ``a`` crossed with 5 of ``b``; ``-wide``: only group
0 has ``levels``, the others ``levels // 10``) with ``vc_formula={"a": "0 + C(a)", "b":
"0 + C(b)"}``.  Also printed: the MB the data pass's tasks sent to the bucket nodes
(its exchange line), the MB of statistics held on the workers (``--distributed``: the
pickled size of the evaluators, what a worker holds and would send) and the time of a
second, warm fit in the same process (``from_formula`` + ``fit``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import dmixed
from bench_vc import synthetic
limit = float(sys.argv[7])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (int(limit * 2**30), int(limit * 2**30)))
import logging, pickle
sent = []
class Sent(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("exchange:"):
            sent.append(record.args[2])
logging.getLogger("dmixed").addHandler(Sent())
logging.getLogger("dmixed").setLevel(logging.INFO)
model_name = sys.argv[8]
if model_name == "synthetic":
    data = synthetic(int(sys.argv[3]), int(sys.argv[4]))
    vc = {"c": "0 + C(level)"}
else:
    from bench_vc_crossed import crossed
    data = crossed(int(sys.argv[3]), int(sys.argv[4]), wide=model_name == "crossed-wide")
    vc = {"a": "0 + C(a)", "b": "0 + C(b)"}
frame = data
parts, distributed = int(sys.argv[5]), sys.argv[6] == "1"
kw = {}
if parts:
    import dask.dataframe as dd
    data = dd.from_pandas(data, npartitions=parts)
if distributed:
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           dashboard_address="127.0.0.1:0")
    kw = {"client": Client(cluster), "engine": "distributed"}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
model = dmixed.MixedLM.from_formula("y ~ x", data=data, groups="g", re_formula="1", vc_formula=vc)
held = 0.0
if kw:
    stats = model.statistics(**kw)
    blocks = getattr(stats.engine, "blocks", [])
    if blocks:
        sizes = kw["client"].gather(kw["client"].map(lambda e: len(pickle.dumps(e)), blocks))
        held = sum(sizes) / 1e6
res = model.fit(reml=True, **({"client": kw["client"]} if kw else {}))
seconds = time.perf_counter() - t
fitted = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
again = dmixed.MixedLM.from_formula("y ~ x", data=data, groups="g", re_formula="1", vc_formula=vc)
again.fit(reml=True, **kw)
warm = time.perf_counter() - t
cov = res.random_effects_cov[res.group_labels[0]]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_mb": before / 1024, "fit_mb": fitted / 1024, "peak_mb": peak / 1024,
                  "seconds": seconds, "warm": warm, "held_mb": held,
                  "sent_mb": sent[0] if sent else 0.0,
                  "llf": res.llf, "cov_shape": list(cov.shape), "evals": res.n_evals}))
"""


def run_one(
    tree: str,
    groups: int,
    levels: int,
    parts: int = 0,
    distributed: bool = False,
    limit=0.0,
    model: str = "synthetic",
) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            os.path.abspath(tree),
            here,
            str(groups),
            str(levels),
            str(parts),
            "1" if distributed else "0",
            str(limit),
            model,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{tree}: failed ({last[:200]})", file=sys.stderr)
        return {"failed": last[:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=["new=."], help="NAME=PATH ...")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--levels", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dask", type=int, default=0, help="partitions (0: pandas)")
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--limit-gb", type=float, default=0.0)
    parser.add_argument(
        "--model", choices=["synthetic", "crossed", "crossed-wide"], default="synthetic"
    )
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.trees)
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, path in trees.items():
            runs[name].append(
                run_one(
                    path,
                    args.groups,
                    args.levels,
                    args.dask,
                    args.distributed,
                    args.limit_gb,
                    args.model,
                )
            )
    source = f"Dask, {args.dask} partitions" if args.dask else "pandas"
    if args.distributed:
        source += ", statistics on 2 in-process workers"
    print(
        f"{args.model}: {args.groups} groups x {args.levels} levels ({source}), "
        f"{args.repeats} processes each"
    )
    print(
        "| tree | peak RSS MB after the fit (min-max) | after one group's random_effects_cov "
        "| before the fit | fit s (min-max) | warm fit s (min-max) | sent MB | held MB "
        "| evals | llf |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in runs.items():
        failed = [r["failed"] for r in rs if "failed" in r]
        rs = [r for r in rs if "failed" not in r]
        if failed:
            print(f"| {name} | failed {len(failed)}x: {failed[0]} | | | | | | | | |")
        if not rs:
            continue
        fit = [r["fit_mb"] for r in rs]
        secs = [r["seconds"] for r in rs]
        warm = [r["warm"] for r in rs]
        print(
            f"| {name} | {statistics.median(fit):.0f} ({min(fit):.0f}-{max(fit):.0f}) "
            f"| {statistics.median(r['peak_mb'] for r in rs):.0f} "
            f"| {statistics.median(r['before_mb'] for r in rs):.0f} "
            f"| {statistics.median(secs):.2f} ({min(secs):.2f}-{max(secs):.2f}) "
            f"| {statistics.median(warm):.3f} ({min(warm):.3f}-{max(warm):.3f}) "
            f"| {rs[0]['sent_mb']:.2f} | {rs[0]['held_mb']:.2f} "
            f"| {rs[0]['evals']} | {rs[0]['llf']:.10f} |"
        )


if __name__ == "__main__":
    main()
