"""Fits of prior weights spread far apart: where the fit stops converging or starting.

Run:  python benchmarks/bench_weight_span.py [--exponents 50 52 ... 125] [--re "1 + x1" "1"]

Half the rows of ``make_data`` (40 groups, seed 3; the rows chosen at random, seed 0)
weighted ``2^k`` times the others, in process, ``y ~ x1 + x2`` with each random-effects
formula: per ``k`` the outcome (``converged``, ``not converged``, or the error's class and
the first words of its message) and ℓ.  Weights more than ``2^128`` apart are refused
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

DEFAULT_EXPONENTS = [50, 52, 53, 54, 55, 56, 58, 60, 64, 70, 80, 100, 110, 115, 120, 125]


def outcome(df, k: int, re_formula: str) -> str:
    heavy = np.random.default_rng(0).random(len(df)) < 0.5
    data = df.assign(w=np.where(heavy, df["w"] * 2.0**k, df["w"]))
    model = dmixed.mixedlm("y ~ x1 + x2", data, groups="g", re_formula=re_formula, weights="w")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit()
    except Exception as exc:  # the outcome is what is printed
        return f"{type(exc).__name__}: {str(exc)[:60]}"
    state = "converged" if res.converged else "not converged"
    return f"{state}, llf {res.llf:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exponents", type=int, nargs="+", default=DEFAULT_EXPONENTS)
    parser.add_argument("--re", nargs="+", default=["1 + x1", "1"])
    args = parser.parse_args()
    df = make_data(n_groups=40, max_size=15, vc_sd=0.6, n_sub=5, seed=3)
    for re_formula in args.re:
        print(f"re_formula {re_formula!r}")
        for k in args.exponents:
            print(f"  2^{k}: {outcome(df, k, re_formula)}", flush=True)


if __name__ == "__main__":
    main()
