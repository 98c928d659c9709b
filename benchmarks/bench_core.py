"""Core (in-process) benchmark: dmixed against statsmodels, and scaling with groups.

Run:  python benchmarks/bench_core.py [--quick] [--out benchmarks/out/core.json]

Everything runs on ONE core (BLAS threads pinned to 1 before numpy is imported), so
the figures compare algorithms, not thread counts.  Three parts:

1. peer ratio: the same synthetic data (random intercept and slope on x1, 3 fixed
   effects, groups of 10 rows) fitted by dmixed and by statsmodels in this run,
   REML, standard errors included; prints both times and the ratio.
2. scaling: 10^3 … 10^6 groups of 10 rows, random intercept and slope, REML; time per
   fit, per data pass, per optimizer step (engine round trip), and step counts.
3. the headline case: 2M rows in 200k groups, random-slope REML with standard errors.

Prints a table and writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402

import dmixed  # noqa: E402


def make(n_groups: int, size: int = 10, seed: int = 0):
    """Random intercept (sd 1) and slope on x1 (sd 0.5), 3 fixed effects, noise sd 1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    n = g.size
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    b = rng.normal(size=(n_groups, 2)) * [1.0, 0.5]
    y = x @ [1.0, 2.0, 3.0] + b[g, 0] + b[g, 1] * x[:, 1] + rng.normal(size=n)
    return y, x, x[:, :2].copy(), g


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
        "fe_params": res.fe_params.tolist(),
        "bse_fe": res.bse_fe.tolist(),
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


def fit_statsmodels(y, x, z, g) -> dict:
    from statsmodels.regression.mixed_linear_model import MixedLM

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MixedLM(y, x, g, exog_re=z).fit(reml=True)
    return {
        "seconds": time.perf_counter() - t0,
        "llf": float(res.llf),
        "fe_params": np.asarray(res.fe_params).tolist(),
        "converged": bool(res.converged),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--out", default="benchmarks/out/core.json")
    args = ap.parse_args()
    report: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "threads": 1,
    }

    peer_groups = 1_000 if args.quick else 10_000
    data = make(peer_groups)
    dm = fit_dmixed(*data)
    sm = fit_statsmodels(*data)
    ratio = sm["seconds"] / dm["seconds"]
    report["peer"] = {
        "groups": peer_groups,
        "rows": int(data[0].size),
        "dmixed": dm,
        "statsmodels": sm,
        "speedup": ratio,
    }
    print(f"peer: {peer_groups} groups x 10 rows, random slope REML with SEs")
    print(f"  dmixed      {dm['seconds']:9.3f} s  llf {dm['llf']:.6f}")
    print(f"  statsmodels {sm['seconds']:9.3f} s  llf {sm['llf']:.6f}")
    print(f"  speed-up    {ratio:9.1f} x")

    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    report["scaling"] = []
    print("\nscaling: groups of 10 rows, random intercept + slope, REML, SEs")
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

    if not args.quick:
        data = make(200_000, seed=2)
        t0 = time.perf_counter()
        fit = fit_dmixed(*data)
        wall = time.perf_counter() - t0
        report["headline"] = {"groups": 200_000, "rows": 2_000_000, "wall_seconds": wall, **fit}
        print(
            f"\nheadline: 2M rows, 200k groups, random-slope REML with SEs: {wall:.2f} s "
            f"(goal <= 3 s), data pass {fit['data_pass_seconds']:.2f} s, "
            f"{fit['n_evals']} evaluations"
        )

    print()
    write_report(args.out, report)


if __name__ == "__main__":
    main()
