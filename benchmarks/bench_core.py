"""Core (in-process) benchmark: dmixed against mixedlm-rs and statsmodels, one core.

Run:  python benchmarks/bench_core.py [--quick] [--out benchmarks/out/core.json]

Everything runs on ONE core (BLAS threads and mixedlm-rs's rayon pool pinned to 1 before
numpy is imported), so the figures compare algorithms, not thread counts: unpinned,
mixedlm-rs runs part of each fit from 20k groups on on a rayon pool of one thread per
CPU (RESULTS.md, thirteenth session).  Parts:

1. peers: the same synthetic data (groups of 10 rows, random intercept and slope on x1,
   ``y ~ x1 + x2``) at 2k, 20k, 200k and 2M rows, fitted from the formula on a pandas
   frame by dmixed, by mixedlm-rs (Rust core, statsmodels' API) and, at the small sizes,
   by statsmodels: REML, standard errors included (every fit reads ``bse``).  Each
   peer's estimates are checked against dmixed's first (``llf``, fixed effects and
   ``cov_re`` to 1e-6 relative); then the fits run warm (one untimed fit each) and
   interleaved (dmixed, mixedlm-rs, statsmodels, dmixed, ...); median, min and max of
   each, and the ratio of the peer's median to dmixed's.  The same with array input
   (``MixedLM(endog, exog, groups, exog_re)``: no formula) for dmixed and mixedlm-rs.
2. first fit in a fresh process: a subprocess builds the data, then times ``import
   dmixed`` + one formula fit (the first), and then warm fits; the difference is what a
   fresh process costs (import, compiled kernels loaded from numba's cache).
3. scaling: 10^3 … 10^6 groups of 10 rows (array input); time per fit, per data pass,
   per optimizer step (engine round trip), and evaluation counts.

mixedlm-rs and statsmodels are benchmark dependencies (the ``bench`` extra), never
dmixed's.  lme4 runs in part 1 when ``Rscript`` with lme4 is installed
(``benchmarks/_lme4.py``: one warm R process, ``lmer(y ~ x1 + x2 + (1 + x1 | g))``, each
fit timed inside R so the pipe to R is not counted), interleaved with the others; its
``llf`` and fixed effects are checked against dmixed's like the other peers'.  Prints
tables and writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import os

#: the thread pools pinned to one thread (numpy's BLAS, numba, mixedlm-rs's rayon)
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")
for _var in ONE_THREAD:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _lme4 import Lme4  # noqa: E402
from _report import write_report  # noqa: E402

import dmixed  # noqa: E402

FORMULA, RE_FORMULA = "y ~ x1 + x2", "~x1"
#: relative agreement of a peer's estimates with dmixed's, checked before timing
AGREE_RTOL = 1e-6


def make(n_groups: int, size: int = 10, seed: int = 0):
    """Random intercept (sd 1) and slope on x1 (sd 0.5), 3 fixed effects, noise sd 1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    n = g.size
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    b = rng.normal(size=(n_groups, 2)) * [1.0, 0.5]
    y = x @ [1.0, 2.0, 3.0] + b[g, 0] + b[g, 1] * x[:, 1] + rng.normal(size=n)
    return y, x, x[:, :2].copy(), g


def frame(y, x, g) -> pd.DataFrame:
    return pd.DataFrame({"y": y, "x1": x[:, 1], "x2": x[:, 2], "g": g})


# -- one fit of each peer: formula (pandas frame) or arrays; standard errors read --------


def dmixed_formula(df):
    res = dmixed.MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA).fit()
    res.bse  # noqa: B018 - standard errors included
    return res


def dmixed_arrays(y, x, z, g):
    res = dmixed.MixedLM(y, x, g, exog_re=z).fit(reml=True)
    res.bse  # noqa: B018
    return res


def rs_formula(df):
    import mixedlm_rs

    res = mixedlm_rs.MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA).fit()
    res.bse  # noqa: B018 - mixedlm-rs computes the variance parameters' SEs on first access
    return res


def rs_arrays(y, x, z, g):
    import mixedlm_rs

    res = mixedlm_rs.MixedLM(y, x, g, exog_re=z).fit(reml=True)
    res.bse  # noqa: B018
    return res


def sm_formula(df):
    from statsmodels.regression.mixed_linear_model import MixedLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA).fit()
        res.bse  # noqa: B018
    return res


def agreement(ref, other) -> dict:
    """Relative differences of llf, fixed effects and cov_re (statsmodels' API): the
    largest difference of an array over its largest entry."""

    def rel(a, b):
        a, b = np.ravel(np.asarray(a, dtype=float)), np.ravel(np.asarray(b, dtype=float))
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))

    return {
        "llf": rel(ref.llf, other.llf),
        "fe_params": rel(ref.fe_params, other.fe_params),
        "cov_re": rel(ref.cov_re, other.cov_re),
    }


def timed(f) -> tuple[float, float]:
    """One call of ``f``: its wall time and the process's CPU time (``time.process_time``:
    every thread of the process, so a peer's thread pool is charged in full), in seconds.
    A call that returns a dict with ``seconds`` (lme4, timed inside R) is counted by it."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = f()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    inner = out.get("seconds") if isinstance(out, dict) else None
    return (wall, cpu) if inner is None else (float(inner), float(inner))


def summary(walls: list[float], cpus: list[float]) -> dict:
    """Median, min, max and count of the wall times; median of the CPU times."""
    return {
        "median": float(np.median(walls)),
        "min": min(walls),
        "max": max(walls),
        "n": len(walls),
        "cpu_median": float(np.median(cpus)),
    }


def interleaved(funcs: dict, repeats: int) -> dict:
    """Warm (one untimed call each), then ``repeats`` rounds of one call each in turn
    (:func:`timed`: wall and CPU time; on a loaded machine the CPU time leaves out the
    time other processes took the core, which the wall time of a 7 ms fit is mostly
    made of: RESULTS.md, thirteenth session).

    Each round takes the peers in a random order (seeded: the same rounds every run),
    so each peer follows each other one about equally often: a fit right after
    statsmodels' (hundreds of ms of Python) finds the caches cold and took 0.7-0.9 ms more
    at 2k rows than after any other peer (RESULTS.md, eleventh session), which a fixed
    order charged to whichever peer came after statsmodels every time."""
    for f in funcs.values():
        f()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in funcs}
    order = list(funcs.items())
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for j in rng.permutation(len(order)):
            k, f = order[j]
            times[k].append(timed(f))
    return {k: summary([w for w, _ in v], [c for _, c in v]) for k, v in times.items()}


LME4_FORMULA = "y ~ x1 + x2 + (1 + x1 | g)"


def lme4_agreement(ref, fit: dict) -> dict:
    """llf and fixed effects of an lme4 fit (``_lme4.Lme4.fit``) against dmixed's."""
    fe = np.asarray(ref.fe_params, dtype=float)
    return {
        "llf": abs(ref.llf - fit["llf"]) / abs(ref.llf),
        "fe_params": float(np.max(np.abs(fe - np.asarray(fit["fe"]))) / np.max(np.abs(fe))),
    }


def peer_run(n_groups: int, repeats: int, with_sm: bool, r: Lme4 | None = None) -> dict:
    y, x, z, g = make(n_groups, seed=1)
    df = frame(y, x, g)
    ref = dmixed_formula(df)
    checks = {"mixedlm-rs": agreement(ref, rs_formula(df))}
    checks["dmixed arrays"] = agreement(ref, dmixed_arrays(y, x, z, g))
    checks["mixedlm-rs arrays"] = agreement(ref, rs_arrays(y, x, z, g))
    funcs = {"dmixed": lambda: dmixed_formula(df), "mixedlm-rs": lambda: rs_formula(df)}
    if with_sm:
        checks["statsmodels"] = agreement(ref, sm_formula(df))
        funcs["statsmodels"] = lambda: sm_formula(df)
    if r is not None:
        r.load("core", df, factors=["g"])
        checks["lme4"] = lme4_agreement(ref, r.fit("core", LME4_FORMULA))
        funcs["lme4"] = lambda: r.fit("core", LME4_FORMULA)
    for name, d in checks.items():
        if not max(d.values()) <= AGREE_RTOL:
            # reported, not refused (statsmodels stops a little short of the optimum)
            shown = ", ".join(f"{k} {v:.1e}" for k, v in d.items())
            print(f"  note: {name} differs from dmixed (relative): {shown}")
    formula = interleaved(funcs, repeats)
    arrays = interleaved(
        {
            "dmixed": lambda: dmixed_arrays(y, x, z, g),
            "mixedlm-rs": lambda: rs_arrays(y, x, z, g),
        },
        repeats,
    )
    return {
        "groups": n_groups,
        "rows": int(y.size),
        "llf": float(ref.llf),
        "n_evals": int(ref.n_evals),
        "agreement": checks,
        "formula": formula,
        "arrays": arrays,
        "ratio_formula": formula["mixedlm-rs"]["median"] / formula["dmixed"]["median"],
        "ratio_arrays": arrays["mixedlm-rs"]["median"] / arrays["dmixed"]["median"],
        "cpu_ratio_formula": formula["mixedlm-rs"]["cpu_median"] / formula["dmixed"]["cpu_median"],
        "cpu_ratio_arrays": arrays["mixedlm-rs"]["cpu_median"] / arrays["dmixed"]["cpu_median"],
        **(
            {"ratio_lme4": formula["lme4"]["median"] / formula["dmixed"]["median"]}
            if "lme4" in formula
            else {}
        ),
    }


def print_peer(row: dict) -> None:
    def cell(t: dict) -> str:
        return f"{1e3 * t['median']:9.1f} ({1e3 * t['min']:.1f}-{1e3 * t['max']:.1f})"

    for path in ("formula", "arrays"):
        times = row[path]
        sm, lme = times.get("statsmodels"), times.get("lme4")
        print(
            f"{row['rows']:>9} {path:>8} {cell(times['dmixed']):>26} "
            f"{cell(times['mixedlm-rs']):>26} {row['ratio_' + path]:6.2f}x"
            f" (CPU {row['cpu_ratio_' + path]:.2f}x)"
            + (f"   statsmodels {1e3 * sm['median']:.0f} ms" if sm else "")
            + (f"   lme4 {cell(lme)} = {row['ratio_lme4']:.1f}x" if lme else "")
        )


_FRESH = """
import os, sys, time, json
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
import numpy as np, pandas as pd
{make}
y, x, z, g = make({groups}, seed=1)
df = pd.DataFrame({{"y": y, "x1": x[:, 1], "x2": x[:, 2], "g": g}})
t0 = time.perf_counter()
import dmixed
t1 = time.perf_counter()
def fit():
    r = dmixed.MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="~x1").fit()
    r.bse
fit()
t2 = time.perf_counter()
warm = []
for _ in range({repeats}):
    s = time.perf_counter(); fit(); warm.append(time.perf_counter() - s)
print(json.dumps({{"import": t1 - t0, "first": t2 - t1, "warm": float(np.median(warm))}}))
"""


def fresh_process(n_groups: int, runs: int, repeats: int = 5) -> dict:
    """``import dmixed`` and the first fit in fresh processes, against warm fits."""
    source = inspect.getsource(make)
    code = _FRESH.format(make=source, groups=n_groups, repeats=repeats)
    out = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first = float(np.median([o["import"] + o["first"] for o in out]))
    warm = float(np.median([o["warm"] for o in out]))
    return {
        "groups": n_groups,
        "rows": 10 * n_groups,
        "runs": out,
        "import_seconds": float(np.median([o["import"] for o in out])),
        "first_fit_seconds": float(np.median([o["first"] for o in out])),
        "import_plus_first_seconds": first,
        "warm_fit_seconds": warm,
        "excess_seconds": first - warm,
    }


def fit_dmixed(y, x, z, g) -> dict:
    t0 = time.perf_counter()
    res = dmixed.MixedLM(y, x, g, exog_re=z).fit(reml=True)
    total = time.perf_counter() - t0
    return {
        "seconds": total,
        "data_pass_seconds": res.data_pass_seconds,
        "n_evals": res.n_evals,
        "n_iter": res.n_iter,
        "llf": res.llf,
        "converged": res.converged,
    }


def time_step(y, x, z, g, repeats: int = 5) -> float:
    """Median seconds of one engine round trip (value + score) at a fixed θ."""
    model = dmixed.MixedLM(y, x, g, exog_re=z)
    stats = model.statistics()
    lam = stats.layout.lam(np.array([0.9, 0.1, 0.5]), True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats.engine.step(lam, 2)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=7, help="timed fits of each peer per size")
    ap.add_argument("--out", default="benchmarks/out/core.json")
    args = ap.parse_args()
    report: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "threads": 1,
        "dmixed": dmixed.__file__,
    }
    try:
        import mixedlm_rs

        report["mixedlm_rs"] = mixedlm_rs.__version__
    except ImportError:
        sys.exit("mixedlm-rs is not installed: pip install -e '.[bench]'")

    sizes = [200, 2_000] if args.quick else [200, 2_000, 20_000, 200_000]
    repeats = 3 if args.quick else args.repeats
    print("peers: groups of 10 rows, y ~ x1 + x2, random intercept + slope on x1, REML, SEs")
    print("warm, interleaved; median (min-max) ms; ratio = mixedlm-rs / dmixed (wall, CPU)")
    print(f"{'rows':>9} {'input':>8} {'dmixed':>26} {'mixedlm-rs':>26} {'ratio':>7}")
    report["peers"] = []
    r = Lme4() if Lme4.available() else None
    report["lme4"] = "run" if r is not None else "not installed (Rscript with lme4)"
    try:
        for n_groups in sizes:
            # statsmodels at the small sizes only (seconds per fit beyond)
            reps = repeats if n_groups < 200_000 else max(3, repeats - 2)
            small = n_groups <= (200 if args.quick else 2_000)
            row = peer_run(n_groups, reps, with_sm=small, r=r)
            report["peers"].append(row)
            print_peer(row)
    finally:
        if r is not None:
            r.close()

    print("\nfirst fit in a fresh process (import dmixed + formula fit) against a warm fit")
    report["fresh"] = []
    for n_groups in [200] if args.quick else [200, 20_000]:
        row = fresh_process(n_groups, runs=2 if args.quick else 3)
        report["fresh"].append(row)
        print(
            f"{row['rows']:>9} rows: import {row['import_seconds']:.3f} s, first fit "
            f"{row['first_fit_seconds']:.3f} s, warm fit {row['warm_fit_seconds']:.3f} s: "
            f"{row['excess_seconds']:.3f} s more (goal <= 0.5 s)"
        )

    sizes = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5, 10**6]
    report["scaling"] = []
    print("\nscaling: groups of 10 rows, array input, random intercept + slope, REML, SEs")
    print(f"{'groups':>9} {'rows':>10} {'fit s':>8} {'pass s':>8} {'step ms':>8} {'evals':>6}")
    for n_groups in sizes:
        data = make(n_groups, seed=1)
        fit = fit_dmixed(*data)
        step = time_step(*data)
        row = {"groups": n_groups, "rows": int(data[0].size), "step_seconds": step, **fit}
        report["scaling"].append(row)
        print(
            f"{n_groups:>9} {row['rows']:>10} {fit['seconds']:>8.3f} "
            f"{fit['data_pass_seconds']:>8.3f} {1e3 * step:>8.2f} {fit['n_evals']:>6}"
        )
        del data

    print()
    write_report(args.out, report)


if __name__ == "__main__":
    main()
