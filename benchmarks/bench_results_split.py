"""The results of a warm in-process fit, split: the covariance of the estimates, the
BLUPs (kernel and map), the record, the labels, and what a first read costs.

Run:  PYTHONPATH=<tree> python benchmarks/bench_results_split.py [--groups 200 2000 20000]
          [--kind arrays formula] [--repeat 30]

For ``bench_core``'s model (groups of 10 rows, ``y ~ x1 + x2``, random intercept and slope
on x1, REML), the arguments of ``MixedLMResults.from_fit`` are taken from a warm fit and
each piece is then run ``--repeat`` times on them: the median thread CPU time (ms) and
the Python and C calls (``sys.setprofile`` events) of one run.  ``results + bse`` is
what a fit spends there when ``bse`` alone is read (the benchmarks against the peers);
``+ every field`` reads every field of the record besides (the BLUPs in the model's
coordinates, the fit log, ...); ``fitted values`` and ``random effects`` are the first
reads of ``fittedvalues`` and of one group's BLUPs on fresh results.  Runs on any tree
(the pieces are those of main's ``results.fit_record``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
from bench_core import dmixed_arrays, dmixed_formula, frame, make

from dmixed.design import ModelNames
from dmixed.io import ResultsState
from dmixed.results import fit_record
from dmixed.results.covariance import covariance_of_estimates
from dmixed.results.results import MixedLMResults


def fit_arguments(kind: str, n_groups: int) -> dict:
    """The keyword arguments of ``MixedLMResults.from_fit`` in a warm fit."""
    y, x, z, g = make(n_groups)
    df = frame(y, x, g)
    seen: dict = {}
    original = MixedLMResults.from_fit.__func__

    def spy(cls, **kwargs):
        seen.update(kwargs)
        return original(cls, **kwargs)

    MixedLMResults.from_fit = classmethod(spy)
    try:
        for _ in range(2):
            dmixed_arrays(y, x, z, g) if kind == "arrays" else dmixed_formula(df)
    finally:
        MixedLMResults.from_fit = classmethod(original)
    return seen


def pieces(kw: dict) -> dict:
    """The pieces to time, by name."""
    model, stats, coords = kw["model"], kw["stats"], kw["coords"]
    prof, opt, layout = kw["prof"], kw["optimize_result"], stats.layout
    at_zero = layout.boundary_mask(list(opt.boundary), use_sqrt=False)

    def covariance():
        return covariance_of_estimates(
            kw["hessian"],
            k=model.k_fe + layout.n_params,
            k_fe=model.k_fe,
            at_zero=at_zero,
            conditional=float(prof.scale) * prof.a_inv,
            cov_fe=kw["cov_fe"],
            free=kw["free"],
        )

    cov_opt = covariance()
    lam = coords.lam(kw["packed"], model.use_sqrt, stats.fit_layout)
    blup_std, cond_std = stats.engine.random_effects(lam, prof.w)

    def every_field():
        state = MixedLMResults.from_fit(**kw).to_state()
        return [getattr(state, f.name) for f in dataclasses.fields(ResultsState)]

    return {
        "results + bse": lambda: MixedLMResults.from_fit(**kw).bse,
        "results + bse + every field": every_field,
        "covariance of the estimates": covariance,
        "its map to the model's coordinates": lambda: coords.covariance(cov_opt),
        "BLUPs: kernel": lambda: stats.engine.random_effects(lam, prof.w),
        "BLUPs: map": lambda: coords.blups(blup_std, cond_std),
        "fit log map": lambda: (
            coords.llf_all([e["llf"] for e in opt.history], 1, True),
            coords.from_opt_all([e["params"] for e in opt.history], opt.use_sqrt),
        ),
        "estimates mapped back": lambda: fit_record.mapped_back(
            coords, layout.unpack(kw["packed"], model.use_sqrt)[0], prof
        ),
        "labels (names, param_names)": lambda: (
            ModelNames.from_model(model),
            model.param_names(),
        ),
        "fitted values (first read)": lambda: MixedLMResults.from_fit(**kw).fittedvalues,
        "random effects (one group)": lambda: next(
            iter(MixedLMResults.from_fit(**kw).random_effects.values())
        ),
    }


def calls(func) -> int:
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        func()
    finally:
        sys.setprofile(None)
    return count


def median_ms(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.thread_time()
        func()
        times.append(time.thread_time() - t0)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[200, 2000, 20000])
    parser.add_argument("--kind", nargs="+", default=["arrays", "formula"])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    import dmixed

    print(f"dmixed from {dmixed.__file__}")
    for n_groups in args.groups:
        for kind in args.kind:
            kw = fit_arguments(kind, n_groups)
            print(f"{kind} {10 * n_groups} rows ({n_groups} groups): ms (median), calls")
            for name, func in pieces(kw).items():
                func()
                ms = median_ms(func, args.repeat)
                print(f"  {name:36s} {ms:8.3f} {calls(func):7d}")


if __name__ == "__main__":
    main()
