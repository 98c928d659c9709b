"""Padded variance components: the moment start and Newton steps, two trees alternated.

    python benchmarks/bench_vc_start.py BASE_TREE BRANCH_TREE [--rounds 3] [--fits 3]

200 schools × 10 classrooms × 20 pupils (40,000 rows; ``y ~ x``, groups ``school``,
``re_formula="1"``), the variance components:

- nested: ``classroom`` alone (held structured);
- crossed: ``classroom`` and ``rater`` (3 levels, crossed with the classrooms within
  the school, an effect of sd 0.1): 1 + 10 + 3 padded slots, held padded;
- padded3: ``classroom``, ``rater`` and ``r3`` (2 levels, no effect): 16 padded slots,
  still held padded.

Each round runs, for every model, one process per tree (``PYTHONPATH`` set to it, its
``dmixed.__file__`` checked), alternated: one untimed fit, then ``--fits`` fits of the
same model (the statistics of its data pass reused: the optimization alone, thread CPU
time) and ``--fits`` fits of a new model each (data pass included, process CPU time).
Medians over the rounds; the llf and methods of each tree's last fit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd

MODELS = {
    "nested": {"classroom": "0 + C(classroom)"},
    "crossed": {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)"},
    "padded3": {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)", "r3": "0 + C(r3)"},
}


def frame(seed: int = 7) -> pd.DataFrame:
    """The schools' pupils: a school effect (sd 1), a classroom effect (sd 0.7), a
    rater effect within the school (sd 0.1: the crossed model's optimum is interior),
    a unit residual; ``r3`` drawn with no effect (its variance ends at zero)."""
    rng = np.random.default_rng(seed)
    n_schools, n_class, n_pupils = 200, 10, 20
    school = np.repeat(np.arange(n_schools), n_class * n_pupils)
    classroom = np.tile(np.repeat(np.arange(n_class), n_pupils), n_schools)
    x = rng.normal(size=school.size)
    y = (
        1.0
        + 0.5 * x
        + rng.normal(size=n_schools)[school]
        + rng.normal(0.0, 0.7, size=(n_schools, n_class))[school, classroom]
        + rng.normal(size=school.size)
    )
    rater = rng.integers(0, 3, school.size)
    y += rng.normal(0.0, 0.1, size=(n_schools, 3))[school, rater]
    r3 = np.random.default_rng(seed + 1).integers(0, 2, school.size)
    return pd.DataFrame(
        {"school": school, "classroom": classroom, "rater": rater, "r3": r3, "x": x, "y": y}
    )


def worker(model: str, fits: int) -> None:
    """One tree's fits of ``model`` (this process's ``dmixed``), as one JSON line."""
    import warnings

    import dmixed

    warnings.simplefilter("ignore")
    df = frame()
    kw = dict(groups="school", re_formula="1", vc_formula=MODELS[model])
    m = dmixed.mixedlm("y ~ x", df, **kw)
    m.fit()
    fit_only = []
    for _ in range(fits):
        t = time.thread_time()
        res = m.fit()
        fit_only.append(time.thread_time() - t)
    whole = []
    for _ in range(fits):
        t = time.process_time()
        dmixed.mixedlm("y ~ x", df, **kw).fit()
        whole.append(time.process_time() - t)
    out = {
        "fit_only": fit_only,
        "whole": whole,
        "llf": res.llf,
        "methods": res.optimizer_methods,
        "file": dmixed.__file__,
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("branch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fits", type=int, default=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.fits)
        return
    trees = {"base": os.path.abspath(args.base), "branch": os.path.abspath(args.branch)}
    got: dict = {}
    for _ in range(args.rounds):
        for model in MODELS:
            for name, tree in trees.items():
                cmd = [sys.executable, os.path.abspath(__file__), "x", "x", "--worker", model]
                cmd += ["--fits", str(args.fits)]
                env = dict(os.environ, PYTHONPATH=tree)
                proc = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, cwd="/tmp", check=True
                )
                one = json.loads(proc.stdout.strip().splitlines()[-1])
                if not one["file"].startswith(tree):
                    raise SystemExit(f"{name} imported {one['file']}, not {tree}")
                rec = got.setdefault((model, name), {"fit_only": [], "whole": []})
                rec["fit_only"] += one["fit_only"]
                rec["whole"] += one["whole"]
                rec["llf"], rec["methods"] = one["llf"], one["methods"]
    print(f"load: {os.getloadavg()}")
    for (model, name), rec in got.items():
        print(
            f"{model:8s} {name:6s} n={len(rec['fit_only'])} "
            f"fit only {statistics.median(rec['fit_only']):.3f} s thread CPU, "
            f"new model {statistics.median(rec['whole']):.3f} s process CPU, "
            f"llf {rec['llf']!r} {rec['methods']}"
        )


if __name__ == "__main__":
    main()
