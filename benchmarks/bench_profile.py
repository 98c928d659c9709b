"""Profile-likelihood intervals (``confint``) against the fit they come from.

Run:  python benchmarks/bench_profile.py [--repeats 5] [--old]

Cases: lme4's sleepstudy (``Reaction ~ Days + (Days | Subject)``, REML, 180 rows, 18
subjects; tests/data/sleepstudy.csv) and two 300-group models of tests/_synth.py's
``make_data(n_groups=300, vc_sd=0.6, seed=21)`` (5,991 rows): ``y ~ x1 + x2`` with a
random intercept and slope on x1 ("slope"), and the same with a nested subgroup
component ``sub`` ("slope+vc").  REML fits (lme4's default; the profile refits by ML
from the statistics, as lme4).

Per repeat, interleaved: ``fit`` = ``MixedLM.from_formula(...).fit()`` (design, data
pass, optimization), ``refit`` = ``fit()`` again on that model (its statistics cached:
the optimization alone), ``confint`` = ``res.confint()`` (every interval: SDs,
correlations, σ, β).  Warm (one untimed round), median (min–max) of ``--repeats``,
BLAS on one thread.  ``--old`` also times, once, the variance-only intervals of the
previous implementation (``dmixed.inference.ProfileLikelihood.interval`` per variance).

For instruction counts:  ``valgrind --tool=callgrind python benchmarks/bench_profile.py
--only CASE MODE N`` runs one warm fit and confint of case CASE (0, 1, 2: the order
above), then N fresh fits, each followed by a confint when MODE is ``confint``; the
difference between N = 0 and N = 3 runs, ÷ 3, is a fit (MODE ``fit``) or a fit and a
confint.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dmixed  # noqa: E402
from dmixed.inference import ProfileLikelihood  # noqa: E402
from tests._synth import make_data  # noqa: E402


def cases() -> dict:
    sleep = pd.read_csv(ROOT / "tests" / "data" / "sleepstudy.csv")
    synth = make_data(n_groups=300, vc_sd=0.6, seed=21)
    slope = dict(groups="g", re_formula="1 + x1")
    return {
        "sleepstudy": ("Reaction ~ Days", sleep, dict(groups="Subject", re_formula="1 + Days")),
        "300 groups, slope": ("y ~ x1 + x2", synth, slope),
        "300 groups, slope+vc": (
            "y ~ x1 + x2",
            synth,
            dict(slope, vc_formula={"sub": "0 + C(sub)"}),
        ),
    }


def one_round(formula, data, kw) -> dict:
    t0 = time.perf_counter()
    model = dmixed.MixedLM.from_formula(formula, data, **kw)
    res = model.fit()
    t1 = time.perf_counter()
    model.fit()
    t2 = time.perf_counter()
    res.confint()
    t3 = time.perf_counter()
    return {"fit": t1 - t0, "refit": t2 - t1, "confint": t3 - t2}


def only(case: str, mode: str, n: str) -> None:
    formula, data, kw = list(cases().values())[int(case)]
    res = dmixed.MixedLM.from_formula(formula, data, **kw).fit()
    res.confint()  # warm
    for _ in range(int(n)):
        res = dmixed.MixedLM.from_formula(formula, data, **kw).fit()
        if mode == "confint":
            res.confint()


def summary(values) -> str:
    v = np.asarray(values) * 1000
    return f"{np.median(v):.1f} ({v.min():.1f}–{v.max():.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--old", action="store_true")
    ap.add_argument("--only", nargs=3, metavar=("CASE", "MODE", "N"))
    args = ap.parse_args()
    if args.only:
        only(*args.only)
        return
    print("| case | fit ms | refit ms | confint ms | confint ÷ fit | confint ÷ refit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (formula, data, kw) in cases().items():
        one_round(formula, data, kw)  # warm
        rounds = [one_round(formula, data, kw) for _ in range(args.repeats)]
        col = {k: [r[k] for r in rounds] for k in rounds[0]}
        ratio_fit = np.array(col["confint"]) / np.array(col["fit"])
        ratio_refit = np.array(col["confint"]) / np.array(col["refit"])
        print(
            f"| {name} | {summary(col['fit'])} | {summary(col['refit'])} | "
            f"{summary(col['confint'])} | {np.median(ratio_fit):.2f} "
            f"({ratio_fit.min():.2f}–{ratio_fit.max():.2f}) | {np.median(ratio_refit):.2f} "
            f"({ratio_refit.min():.2f}–{ratio_refit.max():.2f}) |"
        )
        if args.old:
            res = dmixed.MixedLM.from_formula(formula, data, **kw).fit()
            names = list(res.names.exog_re_names) + list(res.names.vc_names)
            t0 = time.perf_counter()
            for which in names:
                ProfileLikelihood(res, which).interval(0.05)
            print(
                f"|   previous variance-only intervals, once | | | "
                f"{(time.perf_counter() - t0) * 1000:.0f} | | |"
            )


if __name__ == "__main__":
    main()
