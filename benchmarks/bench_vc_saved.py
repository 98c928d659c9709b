"""Saved statistics of a model with many levels per group: peak memory, size, times.

    python benchmarks/bench_vc_saved.py --groups 2 --levels 10000 --repeats 3 \\
        [--dask 2 [--distributed]] [--padded] [--limit-gb 12]

Each run is a new Python process: ``bench_vc.synthetic(groups, levels, 3)``, ``y ~ x``
with a random intercept and ``vc_formula={"c": "0 + C(level)"}`` (REML), fitted; its
statistics gathered (``GroupArrays.from_statistics(stats, ragged=True)``: what ``dmixed
fit --stats-dir`` saves), saved (``save_statistics``), loaded (``load_statistics``) and
refitted.  It prints the process's peak resident memory (``ru_maxrss``) after the fit,
after the save and after the load and refit, the directory's bytes, the save / load
times and the refit's llf against the fit's.  ``--dask N``: the rows as N partitions
(``dd.from_pandas``), statistics gathered; ``--distributed``: kept on an in-process
cluster of two single-threaded workers (``engine="distributed"``) and gathered ragged
from them.  ``--padded``: gather padded (``ragged=False``, the former path).
``--limit-gb``: the child's address-space limit; a child that fails is reported.
``--model crossed`` / ``crossed-wide``: the crossed models of ``bench_vc_memory.py``
(``bench_vc_crossed.crossed``, ``vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"}``),
saved crossed (format 5), or padded with ``--padded`` (format 3, the former path).
Also the results directory's bytes and save time (``save_state``: unpadded, format 2
or 3; padded, format 1, with ``--padded``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import dmixed
from bench_vc import synthetic
from dmixed.engines.local import statistics_from_arrays
from dmixed.stats.checkpoint import GroupArrays, load_statistics, save_statistics
groups, levels, parts = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
distributed, ragged, limit = sys.argv[5] == "1", sys.argv[6] == "1", float(sys.argv[7])
model_name = sys.argv[8]
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (int(limit * 2**30), int(limit * 2**30)))
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if model_name == "synthetic":
    data, vc = synthetic(groups, levels), {"c": "0 + C(level)"}
else:
    from bench_vc_crossed import crossed
    data = crossed(groups, levels, wide=model_name == "crossed-wide")
    vc = {"a": "0 + C(a)", "b": "0 + C(b)"}
kw = {}
if parts:
    import dask.dataframe as dd
    data = dd.from_pandas(data, npartitions=parts)
if distributed:
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           dashboard_address="127.0.0.1:0")
    kw = {"client": Client(cluster), "engine": "distributed"}
model = dmixed.MixedLM.from_formula("y ~ x", data=data, groups="g", re_formula="1", vc_formula=vc)
stats = model.statistics(**kw)
res = model.fit(reml=True, **({"client": kw["client"]} if kw else {}))
out = {"fit_mb": rss()}
d = Path(tempfile.mkdtemp()) / "stats"
t = time.perf_counter()
arrays = GroupArrays.from_statistics(stats, ragged=ragged)
save_statistics(arrays, d, {})
out["save_s"] = time.perf_counter() - t
out["save_mb"] = rss()
out["bytes"] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
del arrays
t = time.perf_counter()
back, manifest = load_statistics(d)
out["load_s"] = time.perf_counter() - t
out["format"] = manifest["format_version"]
refit = dmixed.MixedLM.from_statistics(statistics_from_arrays(back), model.spec).fit(reml=True)
out["refit_mb"] = rss()
out["llf"] = res.llf
out["llf_rel_diff"] = abs(refit.llf - res.llf) / abs(res.llf)
out["params_max_rel_diff"] = float(abs((refit.params - res.params) / res.params).max())
# the results directory: unpadded (format 2 or 3), or padded with --padded (format 1)
import dataclasses
import numpy as np
from dmixed.io import save_state
state = res.to_state()
if not ragged:
    state = dataclasses.replace(
        state, blup=np.asarray(state.blup), blup_cov=np.asarray(state.blup_cov)
    )
t = time.perf_counter()
save_state(state, d.parent / "results", "")
out["results_save_s"] = time.perf_counter() - t
out["results_bytes"] = sum(f.stat().st_size for f in (d.parent / "results").iterdir())
shutil.rmtree(d.parent)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--levels", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dask", type=int, default=0)
    ap.add_argument("--distributed", action="store_true")
    ap.add_argument("--padded", action="store_true")
    ap.add_argument("--limit-gb", type=float, default=0.0)
    ap.add_argument(
        "--model", choices=["synthetic", "crossed", "crossed-wide"], default="synthetic"
    )
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    args = [a.groups, a.levels, a.dask, int(a.distributed), int(not a.padded), a.limit_gb, a.model]
    for _ in range(a.repeats):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, here, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=here,
        )
        if proc.returncode:
            print(json.dumps({"failed": proc.stderr.strip().splitlines()[-1:]}))
        else:
            print(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
