"""Crossed variance components: the crossed engine against the dense path, and lme4.

    python benchmarks/bench_vc_crossed.py [--repeats 5] [--dense-repeats 5] [--no-lme4]

Models (``y ~ x``, groups ``g``, ``re_formula="1"``, ``vc_formula={"a": "0 + C(a)",
"b": "0 + C(b)"}``: within each group every level of ``a`` crossed with every level of
``b``, one row per cell; lme4's ``y ~ x + (1 | g) + (1 | g:a) + (1 | g:b)``):

- balanced: ``G`` groups × ``A`` levels of ``a`` × 5 levels of ``b``;
- unbalanced: one group with ``A`` levels of ``a``, the others ``A / 10``;
- many small groups: 20,000 groups × 5 levels of ``a`` × 3 of ``b``, a random 80 % of
  the cells (groups of several border widths).

In one process, warm (one untimed fit of each), whole fits (``from_formula`` + ``fit``,
REML) interleaved: crossed (this tree), dense (the same tree with the crossed engine
and its data pass switched off: the path every crossed model took before), lme4 (one
warm R process, ``benchmarks/_lme4.py``, timed inside R).  Median (min–max).  The dense
path's repeats stop after ``--dense-budget`` seconds in all (it costs minutes per fit at
200 levels).  BLAS pinned to one thread.
"""

from __future__ import annotations

import argparse
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _lme4 import Lme4  # noqa: E402
from bench_vc import Lme4Model, lme4_gaps  # noqa: E402

import dmixed  # noqa: E402
import dmixed.engines.local as engines_local  # noqa: E402

KW = dict(groups="g", re_formula="1", vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"})
LME4 = Lme4Model(
    "y ~ x + (1 | g) + (1 | g:a) + (1 | g:b)",
    ["g", "a", "b"],
    {"g:a (Intercept)": ("vc", 0), "g:b (Intercept)": ("vc", 1), "g (Intercept)": ("re", 0, 0)},
)


def crossed(groups: int, levels: int, b_levels: int = 5, wide: bool = False, seed: int = 0):
    """Rows of ``groups`` groups, each crossing its levels of ``a`` with ``b_levels``
    levels of ``b`` (one row per cell); with ``wide`` only group 0 has ``levels``
    levels of ``a``, the others ``levels // 10``."""
    rng = np.random.default_rng(seed)
    n_a = np.full(groups, levels)
    if wide:
        n_a[1:] = max(2, levels // 10)
    g = np.repeat(np.arange(groups), n_a * b_levels)
    a = np.concatenate([np.repeat(np.arange(m), b_levels) for m in n_a])
    b = np.concatenate([np.tile(np.arange(b_levels), m) for m in n_a])
    x = rng.standard_normal(g.size)
    y = (
        1.0
        + 0.5 * x
        + rng.standard_normal(groups)[g]
        + 0.7 * rng.standard_normal((groups, levels))[g, a]
        + 0.5 * rng.standard_normal((groups, b_levels))[g, b]
        + rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "x": x, "g": g, "a": a, "b": b})


def fit(data, dense: bool):
    """A whole fit, on the dense path when ``dense`` (the crossed engine switched off)."""
    saved = engines_local.crossed_vc, engines_local.crossed_statistics
    if dense:
        engines_local.crossed_vc = lambda zz, layout: []
        engines_local.crossed_statistics = lambda *args: None
    try:
        t = time.perf_counter()
        res = dmixed.MixedLM.from_formula("y ~ x", data=data, **KW).fit(reml=True)
        return time.perf_counter() - t, res
    finally:
        engines_local.crossed_vc, engines_local.crossed_statistics = saved


def cell(times) -> str:
    if not times:
        return "—"
    return f"{np.median(times):.3f} ({min(times):.3f}–{max(times):.3f})"


def run_model(name, data, r, args) -> None:
    fit(data, False)  # warm
    if r is not None:
        r.load("d", data, factors=LME4.factors)
        r.fit("d", LME4.formula)
    crossed_t, dense_t, lme = [], [], []
    dense_res = res = None
    spent = 0.0
    for i in range(args.repeats):
        t, res = fit(data, False)
        crossed_t.append(t)
        if i < args.dense_repeats and spent < args.dense_budget:
            t, dense_res = fit(data, True)
            dense_t.append(t)
            spent += t
        if r is not None:
            lme.append(r.fit("d", LME4.formula))
    lt = [f["seconds"] for f in lme]
    gaps = lme4_gaps(res, lme[-1], LME4) if lme else ("—",) * 3
    d_llf = "—" if dense_res is None else f"{res.llf - dense_res.llf:.1e}"
    d_par = (
        "—"
        if dense_res is None
        else f"{np.max(np.abs(res.params - dense_res.params) / np.abs(dense_res.params)):.1e}"
    )

    def ratio(x):
        return f"{np.median(x) / np.median(crossed_t):.1f}"

    print(
        f"| {name} | {res.nobs} | {len(res.group_labels)} | {cell(crossed_t)} | "
        f"{res.n_evals} {'+'.join(res.optimizer_methods)} | {cell(dense_t)} | "
        f"{'—' if dense_res is None else dense_res.n_evals} "
        f"{'' if dense_res is None else '+'.join(dense_res.optimizer_methods)} | "
        f"{ratio(dense_t) if dense_t else '—'} | {cell(lt)} | {ratio(lt) if lt else '—'} | "
        f"{d_llf} | {d_par} | {' | '.join(gaps)} |",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dense-repeats", type=int, default=5)
    ap.add_argument("--dense-budget", type=float, default=900.0)
    ap.add_argument("--no-lme4", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    models = {
        "balanced 60 × 200 × 5": crossed(60, 200),
        "balanced 60 × 50 × 5": crossed(60, 50),
        "unbalanced 60 groups, one × 200 × 5, 59 × 20 × 5": crossed(60, 200, wide=True),
        "many groups: 20,000 × 5 × 3, 80 % of the cells": crossed(20000, 5, 3)
        .sample(frac=0.8, random_state=1)
        .reset_index(drop=True),
    }
    r = None if args.no_lme4 or not Lme4.available() else Lme4()
    print(
        "| model | rows | groups | crossed s | evals | dense s | evals | dense ÷ crossed "
        "| lme4 s | lme4 ÷ crossed | llf − dense's | max rel. Δ params vs dense "
        "| max |Δβ|/SE vs lme4 | max rel. Δ var. vs lme4 | llf − lme4's |"
    )
    print("|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for name, data in models.items():
            if args.only in name:
                run_model(name, data, r, args)
    finally:
        if r is not None:
            r.close()


if __name__ == "__main__":
    main()
