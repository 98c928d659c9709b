"""What an in-process fit's per-group kernels cost without numba, against what the ledger
charges for them, and how many repeated fits rent numpy before numba is bought.

Run:  python benchmarks/bench_rent_fits.py [--groups 20000 200000 2000000] [--r 1 2 3]
                                           [--rounds 5] [--repeat-groups 20000 200000]
                                           [--repeat-fits 40] [--tree .]

Three parts, each in its own fresh process (one BLAS thread, ``--tree`` first on the
import path), on ``bench_core.make(G, seed=1)`` fitted by arrays (``bench_core``'s
``dmixed_arrays``: REML, standard errors read), with ``exog_re`` the intercept (r = 1),
the intercept and x1 (r = 2) or all three columns of ``exog`` (r = 3):

1. The charge: ``DMIXED_KERNELS=auto`` with numba never bought (``LOAD_NS`` set to
   infinity in that process), one warm fit's addition to
   :data:`~dmixed.kernels.compiled.LEDGER` and the calls of
   :func:`~dmixed.kernels.compiled.backend` it made (kernel, groups, r, answer).
2. The saving: warm fits with ``DMIXED_KERNELS=numpy`` against ``numba``, interleaved
   (the first round untimed), medians over ``--rounds`` rounds of the thread's CPU time
   and of the wall-clock time.  ``numpy`` runs what ``auto`` runs while numba is not
   loaded (the lean Newton steps of :mod:`dmixed.fit.lean`, the C extension's sums),
   ``numba`` what it runs once numba is loaded; r = 3 is not fitted at 2M groups (a
   fit of numpy takes tens of seconds there, and one fit's estimate buys numba at once).
3. The rent: ``--repeat-fits`` fits of ``auto`` in a fresh process (``--repeat-groups``,
   r = 2), the fit after which numba was loaded, and the total time.

Writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

from _report import tree_env, write_report

_HERE = os.path.dirname(os.path.abspath(__file__))

_SETUP = """
import json, os, sys, time
import numpy as np
sys.path.insert(1, {here!r})
import bench_core
import dmixed
from dmixed.kernels import compiled


def data(n_groups, r):
    y, x, z, g = bench_core.make(n_groups, seed=1)
    return y, x, {{1: x[:, :1].copy(), 2: z, 3: x.copy()}}[r], g
"""

_CHARGE = (
    _SETUP
    + """
compiled.LOAD_NS = float("inf")
calls = []
backend = compiled.backend


def counted(n_groups, r, kernel="step"):
    before = compiled.LEDGER["owed_ns"]
    got = backend(n_groups, r, kernel)
    calls.append([kernel, n_groups, r, got, compiled.LEDGER["owed_ns"] - before])
    return got


compiled.backend = counted
out = {{}}
for n_groups, r in {configs!r}:
    args = data(n_groups, r)
    bench_core.dmixed_arrays(*args)
    calls.clear()
    before = compiled.LEDGER["owed_ns"]
    bench_core.dmixed_arrays(*args)
    out[f"{{n_groups}} {{r}}"] = {{
        "charged_ns": compiled.LEDGER["owed_ns"] - before,
        "calls": list(calls),
    }}
assert "numba" not in sys.modules
print(json.dumps(out))
"""
)

_SAVING = (
    _SETUP
    + """
out = {{}}
for n_groups, r in {configs!r}:
    args = data(n_groups, r)
    got = {{"numpy": {{"cpu": [], "wall": []}}, "numba": {{"cpu": [], "wall": []}}}}
    for round_ in range({rounds} + 1):
        for kernels in ("numpy", "numba"):
            os.environ["DMIXED_KERNELS"] = kernels
            c0, t0 = time.thread_time(), time.perf_counter()
            res = bench_core.dmixed_arrays(*args)
            c1, t1 = time.thread_time(), time.perf_counter()
            if round_:
                got[kernels]["cpu"].append(c1 - c0)
                got[kernels]["wall"].append(t1 - t0)
            got[kernels]["n_evals"] = res.n_evals
    out[f"{{n_groups}} {{r}}"] = {{
        k: {{"cpu": float(np.median(v["cpu"])), "wall": float(np.median(v["wall"])),
             "n_evals": v["n_evals"]}}
        for k, v in got.items()
    }}
print(json.dumps(out))
"""
)

_REPEAT = (
    _SETUP
    + """
args = data({groups}, 2)
times, bought = [], None
for i in range({fits}):
    t0 = time.perf_counter()
    bench_core.dmixed_arrays(*args)
    times.append(time.perf_counter() - t0)
    if bought is None and "numba" in sys.modules:
        bought = i + 1
print(json.dumps({{"bought_after_fit": bought, "total": sum(times), "times": times}}))
"""
)


def _run(code: str, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    ap.add_argument("--r", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat-groups", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--repeat-fits", type=int, default=40)
    ap.add_argument("--tree", default=os.path.dirname(_HERE))
    ap.add_argument("--skip", nargs="*", default=[], choices=["charge", "saving", "repeat"])
    ap.add_argument("--out", default="benchmarks/out/rent_fits.json")
    args = ap.parse_args()
    env = tree_env(args.tree)
    env.pop("DMIXED_KERNELS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as installed
    configs = [(g, r) for r in args.r for g in args.groups if not (r >= 3 and g > 200_000)]
    report: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "args": vars(args),
    }
    if "charge" not in args.skip:
        charge = _run(_CHARGE.format(here=_HERE, configs=configs), env)
        report["charge"] = charge
        for key, got in charge.items():
            print(f"groups, r = {key}: charged {got['charged_ns'] / 1e6:.1f} ms a fit")
    if "saving" not in args.skip:
        saving = _run(_SAVING.format(here=_HERE, configs=configs, rounds=args.rounds), env)
        report["saving"] = saving
        for key, got in saving.items():
            n_groups = int(key.split()[0])
            np_, nb = got["numpy"], got["numba"]
            print(
                f"groups, r = {key}: numpy {np_['cpu'] * 1e3:.1f} ms cpu "
                f"({np_['wall'] * 1e3:.1f} wall, {np_['n_evals']} evals), numba "
                f"{nb['cpu'] * 1e3:.1f} ms cpu ({nb['wall'] * 1e3:.1f} wall, "
                f"{nb['n_evals']} evals): saved "
                f"{(np_['cpu'] - nb['cpu']) / n_groups * 1e9:.0f} ns a group (cpu)"
            )
    if "repeat" not in args.skip:
        report["repeat"] = {}
        for n_groups in args.repeat_groups:
            code = _REPEAT.format(here=_HERE, groups=n_groups, fits=args.repeat_fits)
            got = _run(code, env)
            report["repeat"][n_groups] = got
            print(
                f"{n_groups} groups, r = 2, {args.repeat_fits} fits: numba loaded after fit "
                f"{got['bought_after_fit']}, total {got['total']:.2f} s"
            )
    write_report(args.out, report)


if __name__ == "__main__":
    main()
