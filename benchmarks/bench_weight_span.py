"""Fits of prior weights spread far apart: where the fit stops converging or starting.

Run:  python benchmarks/bench_weight_span.py [--exponents 40 44 ... 125] [--re "1 + x1" "1"]
      [--spanning]

Half the rows of ``make_data`` (40 groups, seed 3; the rows chosen at random, seed 0)
weighted ``2^k`` times the others, in process, ``y ~ x1 + x2`` with each random-effects
formula: per ``k`` the outcome (``converged``, ``not converged``, or the error's class and
the first words of its message) and ℓ, and the weights' span (log2 of the largest over the
smallest: ``k`` plus the ``w`` column's own).  Weights more than ``2^53`` apart are refused
(:func:`dmixed.stats.standardize.check_weights_range`); below that every span is taken.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dmixed  # noqa: E402
from tests._synth import make_data  # noqa: E402

DEFAULT_EXPONENTS = [40, 44, 46, 48, 49, 50, 51, 52, 53, 54, 55, 60, 70, 100, 120, 125]


def outcome(df, k: int, re_formula: str, spanning: bool = False) -> str:
    heavy = np.random.default_rng(0).random(len(df)) < 0.5
    if spanning:  # every row of a group with fewer than two heavy rows made heavy
        few = df.assign(h=heavy).groupby("g")["h"].transform("sum").to_numpy() < 2
        heavy = heavy | few
    data = df.assign(w=np.where(heavy, df["w"] * 2.0**k, df["w"]))
    span = np.log2(data["w"].max()) - np.log2(data["w"].min())
    return f"span 2^{span:.2f}: {fitted(data, re_formula)}"


def fitted(data, re_formula: str) -> str:
    """The outcome of the fit of ``data`` (see the module)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = dmixed.mixedlm(
                "y ~ x1 + x2", data, groups="g", re_formula=re_formula, weights="w"
            ).fit()
    except Exception as exc:  # the outcome is what is printed
        return f"{type(exc).__name__}: {str(exc)[:60]}"
    state = "converged" if res.converged else "not converged"
    return f"{state}, llf {res.llf:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exponents", type=int, nargs="+", default=DEFAULT_EXPONENTS)
    parser.add_argument("--re", nargs="+", default=["1 + x1", "1"])
    parser.add_argument(
        "--spanning",
        action="store_true",
        help="make heavy every row of a group with fewer than two heavy rows (the heavy "
        "rows then span every group's random-effects columns)",
    )
    args = parser.parse_args()
    df = make_data(n_groups=40, max_size=15, vc_sd=0.6, n_sub=5, seed=3)
    for re_formula in args.re:
        print(f"re_formula {re_formula!r}")
        for k in args.exponents:
            print(f"  2^{k}: {outcome(df, k, re_formula, args.spanning)}", flush=True)


if __name__ == "__main__":
    main()
