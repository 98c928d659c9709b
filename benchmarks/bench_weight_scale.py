"""The prior weights' scale in the statistics: what it costs, and that it changes nothing
for weights near 1.

Run:  PYTHONPATH=<tree> python benchmarks/bench_weight_scale.py [--rows 2000000]
      PYTHONPATH=<tree> python benchmarks/bench_weight_scale.py --digest

1. (default) The in-process weighted data pass (``model.statistics()``, random intercept
   and slope, 20 rows a group) of ``--rows`` rows, and the scale's own cost: choosing
   it from the first rows (:func:`dmixed.stats.standardize.weight_scale`, what
   ``Standardization.choose`` and the check of every later partition each compute
   once); the best of ``--repeat`` runs, interleaved.
2. (``--digest``) A sha256 of ``params``, ``bse``, ``llf``, ``scale``, ``cov_params()``
   and ``bse_re`` of ten fits (weighted and not, ML and REML, one through Dask): run
   under two trees and compare the lines (bit for bit where they are equal).
"""

from __future__ import annotations

import argparse
import hashlib
import time
import warnings

import numpy as np
import pandas as pd

import dmixed


def make(n_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_rows // 20), 20)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    b = rng.normal(size=(g.max() + 1, 2))
    w = rng.uniform(0.5, 2.0, g.size)
    y = 1 + 0.5 * x1 - x2 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=g.size) / np.sqrt(w)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g, "w": w})


def costs(rows: int, repeat: int) -> None:
    from dmixed.stats.standardize import SAMPLE_ROWS, weight_scale

    df = make(rows)
    w = df["w"].to_numpy()
    passes, scales = [], []
    for _ in range(repeat):
        # a new model each time: a model keeps its statistics
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1", weights="w")
        t0 = time.perf_counter()
        model.statistics()
        passes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        weight_scale(w)
        scales.append(time.perf_counter() - t0)
    best_pass, best_scale = min(passes), min(scales)
    print(f"rows {rows}, sample rows {min(rows, SAMPLE_ROWS)}")
    print(f"weighted data pass, best of {repeat}: {best_pass * 1e3:.1f} ms")
    print(f"weight_scale of the sample, best of {repeat}: {best_scale * 1e3:.3f} ms")
    print(f"two of them (choose + check) / pass: {2 * best_scale / best_pass:.2%}")


def digests() -> None:
    rng = np.random.default_rng(7)
    df = make(2000, seed=7)
    df["sub"] = rng.integers(0, 4, len(df))
    df["w10"] = df["w"] * 1e10
    cases = [
        ("weighted slope", dict(re_formula="1 + x1", weights="w")),
        ("weighted vc", dict(re_formula="1", vc_formula={"sub": "0 + C(sub)"}, weights="w")),
        ("weights x 1e10", dict(re_formula="1 + x1", weights="w10")),
        ("unweighted slope", dict(re_formula="1 + x1")),
        ("dask weighted", dict(re_formula="1 + x1", weights="w")),
    ]
    for name, kw in cases:
        data = df
        if name.startswith("dask"):
            import dask.dataframe as dd

            data = dd.from_pandas(df, npartitions=3)
        for reml in (True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import dask

                with dask.config.set(scheduler="synchronous"):
                    res = dmixed.mixedlm("y ~ x1 + x2", data, groups="g", **kw).fit(reml=reml)
            h = hashlib.sha256()
            values = (res.params, res.bse, res.llf, res.scale, res.cov_params(), res.bse_re)
            for v in values:
                h.update(np.ascontiguousarray(np.asarray(v, dtype=np.float64)).tobytes())
            print(f"{name:18s} reml={reml!s:5s} {h.hexdigest()[:16]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--digest", action="store_true")
    args = parser.parse_args()
    print(f"dmixed from {dmixed.__file__}")
    if args.digest:
        digests()
    else:
        costs(args.rows, args.repeat)


if __name__ == "__main__":
    main()
