"""What the in-process fit's compiled per-row pass saves, and what loading numba costs.

Run:  python benchmarks/bench_rent_numba.py [--groups 20000 100000 200000] [--rounds 21]
                                            [--load-groups 2000 20000] [--load-runs 5]

The two figures of :mod:`dmixed.kernels.compiled`'s ledger for the per-row pass
(:data:`~dmixed.kernels.compiled.ROWS_SAVED_NS`, :data:`~dmixed.kernels.compiled.LOAD_NS`):

1. The saving: one in-process data pass
   (:func:`dmixed.engines.local.statistics_from_rows`) of the formula model of
   ``bench_core`` (10 rows a group, random intercept and slope) with
   ``DMIXED_KERNELS=numpy`` against ``numba``, interleaved, warm (the first round
   untimed), wall-clock medians over ``--rounds`` rounds, in ns per row: once with the C
   extension (``DMIXED_NATIVE=auto``: the numpy side is its one pass over the rows) and
   once without it (``DMIXED_NATIVE=numpy``: a ``bincount`` per term).
2. The load: in fresh processes (bytecode cached, as an installed package has it), the
   first fit's excess over a warm one with ``DMIXED_KERNELS=numba`` minus the same with
   ``numpy``, the two alternated, medians over ``--load-runs`` pairs.

Writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

import numpy as np
from _report import write_report

_HERE = os.path.dirname(os.path.abspath(__file__))

_SAVING = """
import json, os, sys, time
import numpy as np
import pandas as pd
sys.path.insert(0, {here!r})
import bench_core
import dmixed
from dmixed.design.references import column_references
from dmixed.engines.local import statistics_from_rows
out = {{}}
for n_groups in {groups!r}:
    y, x, _, g = bench_core.make(n_groups, seed=1)
    df = bench_core.frame(y, x, g)
    model = dmixed.mixedlm(bench_core.FORMULA, df, groups="g", re_formula=bench_core.RE_FORMULA)
    spec = model.spec
    args = (model.rows, None, spec.intercept_columns(), column_references(spec))
    times = {{"numpy": [], "numba": []}}
    for round_ in range({rounds}):
        for kernels in times:
            os.environ["DMIXED_KERNELS"] = kernels
            t0 = time.perf_counter()
            statistics_from_rows(*args)
            if round_:
                times[kernels].append(time.perf_counter() - t0)
    out[n_groups] = {{k: float(np.median(v)) for k, v in times.items()}}
print(json.dumps(out))
"""

_FIRST = """
import json, sys, time
import numpy as np
sys.path.insert(0, {here!r})
import bench_core
y, x, _, g = bench_core.make({groups}, seed=1)
df = bench_core.frame(y, x, g)
import dmixed
def fit():
    dmixed.mixedlm(bench_core.FORMULA, df, groups="g", re_formula=bench_core.RE_FORMULA).fit().bse
t0 = time.perf_counter()
fit()
first = time.perf_counter() - t0
warm = []
for _ in range(5):
    t0 = time.perf_counter()
    fit()
    warm.append(time.perf_counter() - t0)
print(json.dumps({{"excess": first - float(np.median(warm))}}))
"""


def _env(**extra: str) -> dict:
    env = os.environ.copy()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as installed
    env.update(extra)
    return env


def _run(code: str, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, nargs="+", default=[20_000, 100_000, 200_000])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--load-groups", type=int, nargs="+", default=[2_000, 20_000])
    ap.add_argument("--load-runs", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/out/rent_numba.json")
    args = ap.parse_args()
    report: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "args": vars(args),
        "saved_ns_per_row": {},
        "load_seconds": {},
    }
    code = _SAVING.format(here=_HERE, groups=args.groups, rounds=args.rounds)
    for native in ("auto", "numpy"):
        got = _run(code, _env(DMIXED_NATIVE=native))
        saved = {}
        for n_groups, t in got.items():
            saved[n_groups] = (t["numpy"] - t["numba"]) / (10 * int(n_groups)) * 1e9
            print(
                f"DMIXED_NATIVE={native}, {10 * int(n_groups):,} rows: numpy "
                f"{t['numpy'] * 1e3:.1f} ms, numba {t['numba'] * 1e3:.1f} ms, "
                f"saved {saved[n_groups]:.2f} ns a row"
            )
        report["saved_ns_per_row"][native] = saved
    # bytecode written before the timed runs
    subprocess.run([sys.executable, "-c", "import dmixed, numba"], env=_env(), check=True)
    for n_groups in args.load_groups:
        code = _FIRST.format(here=_HERE, groups=n_groups)
        pairs = []
        for _ in range(args.load_runs):
            excess = {k: _run(code, _env(DMIXED_KERNELS=k))["excess"] for k in ("numba", "numpy")}
            pairs.append(excess["numba"] - excess["numpy"])
        report["load_seconds"][n_groups] = pairs
        print(
            f"{10 * n_groups:,} rows: loading numba and the fit's kernels "
            f"{np.median(pairs):.3f} s (median; {min(pairs):.3f}–{max(pairs):.3f})"
        )
    write_report(args.out, report)


if __name__ == "__main__":
    main()
