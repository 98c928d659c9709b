"""Exactness at size: 2M rows in 200k groups, random intercept and slope, REML.

Run:  python benchmarks/bench_exact.py [--groups 200000] [--size 10] [--out ...]

1. dmixed's fit of the data, then statsmodels' ``MixedLM.loglike`` (an independent
   evaluation, row by row over the groups in float64) at dmixed's estimates: the two
   log-likelihoods must agree to ~1e-9 relative (lme4 is not on this machine; the check
   is that the reported llf is the likelihood at the reported parameters, the issue's
   second requirement, at the headline size).
2. The same data with columns like real ones: the covariate as a timestamp (1.7e9 plus
   the original in seconds) and the response as revenue (1e6 plus the original): the
   fit must be the first one mapped back exactly (slope, Ψ → AΨA', the same llf: a
   shift changes neither the scale nor the REML Jacobian), in the first fit's units.

Prints the figures and writes them as JSON (``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _report import write_report  # noqa: E402

import dmixed  # noqa: E402


def make(n_groups: int, size: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    n = g.size
    x1 = rng.normal(size=n)
    b0 = rng.normal(0, 1.0, n_groups)[g]
    b1 = rng.normal(0, 0.5, n_groups)[g]
    y = 1.0 + 0.5 * x1 + b0 + b1 * x1 + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "g": g})


def fit(df: pd.DataFrame):
    model = dmixed.MixedLM.from_formula("y ~ x1", df, groups="g", re_formula="1 + x1")
    t0 = time.perf_counter()
    res = model.fit()
    return res, time.perf_counter() - t0


def statsmodels_llf(df: pd.DataFrame, res) -> tuple[float, float]:
    """statsmodels' REML log-likelihood at dmixed's estimates (and its time)."""
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = MixedLM.from_formula("y ~ x1", df, groups="g", re_formula="1 + x1")
        sm.reml = True
        sm.fe_pen = sm.cov_pen = None  # what MixedLM.fit sets before loglike runs
        params = MixedLMParams.from_components(
            np.asarray(res.fe_params), cov_re=np.asarray(res.cov_re) / res.scale
        )
        t0 = time.perf_counter()
        llf = float(sm.loglike(params, profile_fe=False))
    return llf, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/out/exact.json")
    args = ap.parse_args()
    df = make(args.groups, args.size)
    res, secs = fit(df)
    sm_llf, sm_secs = statsmodels_llf(df, res)
    rel = abs(res.llf - sm_llf) / abs(sm_llf)
    print(f"{len(df)} rows, {args.groups} groups: dmixed fit {secs:.2f} s, llf {res.llf:.10f}")
    print(f"statsmodels loglike at dmixed's estimates ({sm_secs:.1f} s): {sm_llf:.10f}")
    print(f"relative difference: {rel:.2e}")
    shift_t, shift_y = 1.7e9, 1e6
    real = df.assign(x1=shift_t + df["x1"], y=shift_y + df["y"])
    res2, secs2 = fit(real)
    # x1' = x1 + a: the slope and its variance unchanged, Ψ' = A⁻¹ Ψ A⁻ᵀ with
    # A = [[1, a], [0, 1]] (tests/test_invariance.py); compared in correlation units of Ψ'
    a_inv = np.linalg.inv(np.array([[1.0, shift_t], [0.0, 1.0]]))
    want = a_inv @ np.asarray(res.cov_re) @ a_inv.T
    cov2 = np.asarray(res2.cov_re)
    d = np.sqrt(np.diag(want))
    rel_cov = float(np.max(np.abs(cov2 - want) / np.outer(d, d)))
    slope_rel = abs(res2.fe_params.iloc[1] - res.fe_params.iloc[1]) / float(res.bse_fe.iloc[1])
    llf_diff = abs(res2.llf - res.llf)
    print(
        f"timestamps near {shift_t:.1e}, revenue near {shift_y:.0e}: fit {secs2:.2f} s; "
        f"slope off by {slope_rel:.1e} SE, Ψ off by {rel_cov:.1e} (correlation units), "
        f"llf off by {llf_diff:.1e}; converged {res2.converged}"
    )
    write_report(
        args.out,
        {
            "rows": len(df),
            "groups": args.groups,
            "fit_seconds": secs,
            "llf": res.llf,
            "statsmodels_llf_at_estimates": sm_llf,
            "relative_difference": rel,
            "shifted_fit_seconds": secs2,
            "shifted_slope_error_in_se": slope_rel,
            "shifted_cov_re_error_correlation_units": rel_cov,
            "shifted_llf_difference": llf_diff,
        },
    )


if __name__ == "__main__":
    main()
