"""The cost of reading integer columns about a reference (dmixed.design.references).

    python benchmarks/bench_ints.py --trees base=/tmp/base new=. --callgrind
    python benchmarks/bench_ints.py --trees base=/tmp/base new=. [--rounds 5]
    python benchmarks/bench_ints.py --trees base=/tmp/base new=. --dask [--rounds 5]

``base``: an older copy of the package (``git archive <commit> dmixed | tar -x -C DIR``),
imported by ``PYTHONPATH``.  Three frames of 2,000 groups of 10 rows, ``y ~ t + x``
with a random intercept (REML, standard errors read), alike but for the column ``t``:

- ``float``: ``t`` float64 (a normal float fit: the change must cost nothing here);
- ``int64``: ``t = k·1000`` int64, within 2**53 (no reference taken);
- ``int64-big``: ``t = 1.7e18 + k·1000`` int64 nanoseconds (the new path: read about
  its reference, exactly; the base rounds it, with a PrecisionWarning).

``--callgrind``: instructions per fit (``from_formula`` + ``fit`` + ``bse``; 3 fits
counted by ``valgrind --tool=callgrind`` inside ``functools.reduce``).  Default: each
round runs one subprocess per tree in turn (A, B, A, B ...); the child times 7 fits of
each frame, warm (one untimed fit each), by wall time, and reports the medians; printed
per tree and frame the median (min-max) over the rounds.  ``--dask``: the same with the
fit of a Dask frame of 8 partitions on a distributed client of two in-process workers
(the warnings' relay reads the scheduler's events once per fit).  BLAS is pinned to one
thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from _report import callgrind_instructions, tree_env

SETUP = """
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np, pandas as pd
import dmixed
warnings.simplefilter("ignore")

def frame(kind, groups=2000, per=10, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    k = rng.integers(0, 10**6, g.size) * 1000
    x = rng.standard_normal(g.size)
    y = 2e-9 * k + x + rng.standard_normal(groups)[g] + rng.standard_normal(g.size)
    t = {"float": k.astype(np.float64), "int64": k.astype(np.int64),
         "int64-big": np.int64(1_700_000_000_000_000_000) + k}[kind]
    return pd.DataFrame({"y": y, "t": t, "x": x, "g": g})

KINDS = ("float", "int64", "int64-big")

def fit(data, **kw):
    res = dmixed.MixedLM.from_formula("y ~ t + x", data, groups="g").fit(**kw)
    res.bse
    return res
"""

TIMED = """
frames = {k: frame(k) for k in KINDS}
dask_mode = sys.argv[2] == "dask"
kw = {}
if dask_mode:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           dashboard_address=None)
    client = Client(cluster)
    frames = {k: dd.from_pandas(v, npartitions=8).persist() for k, v in frames.items()}
    kw = {"client": client}
times = {k: [] for k in KINDS}
for k in KINDS:
    fit(frames[k], **kw)
for _ in range(7):
    for k in KINDS:
        t0 = time.perf_counter()
        fit(frames[k], **kw)
        times[k].append(time.perf_counter() - t0)
print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))
"""

COUNTED = """
import functools
data = frame(sys.argv[3])
def one(*_):
    return fit(data)
one()
functools.reduce(one, range(3), None)
"""


def _env(tree: str) -> dict:
    return tree_env(tree, hash_seed="0")


def timed(tree: str, mode: str) -> dict:
    args = [sys.executable, "-c", SETUP + TIMED, os.path.abspath(tree), mode]
    out = subprocess.run(args, capture_output=True, text=True, env=_env(tree), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def counted(tree: str, kind: str) -> float:
    """Instructions per fit (3 fits counted by callgrind)."""
    argv = [os.path.abspath(tree), "counted", kind]
    return callgrind_instructions(SETUP + COUNTED, argv, _env(tree)) / 3


KINDS = ("float", "int64", "int64-big")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--dask", action="store_true")
    args = ap.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees)
    if args.callgrind:
        print("| t | " + " | ".join(f"{name} instructions per fit" for name in trees) + " |")
        print("|---|" + "---:|" * len(trees))
        for kind in KINDS:
            cells = [f"{counted(tree, kind) / 1e6:.2f} M" for tree in trees.values()]
            print(f"| {kind} | " + " | ".join(cells) + " |")
        return
    mode = "dask" if args.dask else "local"
    runs: dict = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(timed(tree, mode))
    print(f"| t ({mode}) | " + " | ".join(f"{name} ms" for name in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for kind in KINDS:
        cells = []
        for name in trees:
            ms = 1e3 * np.array([r[kind] for r in runs[name]])
            cells.append(f"{np.median(ms):.1f} ({ms.min():.1f}-{ms.max():.1f})")
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
