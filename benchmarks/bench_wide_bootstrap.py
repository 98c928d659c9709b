"""Thread CPU of a wide random-slope fit and of its bootstrap replicates (gather-s54).

``python benchmarks/bench_wide_bootstrap.py P N CASE [OUT]`` with ``PYTHONPATH`` at the
tree to measure, BLAS on one thread (``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``):
builds and fits the model twice (the first fit pays the per-process Hessian gather
positions), then times ``bootstrap(N, seed=1)``; CASE ``x1``: 3000 rows, 150 groups,
``y ~ x0 + … + x{P−1}``, ``re_formula="1 + x1"``; ``x12``/``cb``: the first 3000 rows of
``/tmp/s54/nu9/wide.parquet`` with 200 columns, ``C(a) + C(b) + C(a):x1`` and
``re_formula`` ``0 + x1 + x2`` or ``1 + C(b)``.  With OUT, the fit's estimates and the
replicate table are saved there (``fit.npy``, ``table.npy``) for comparing two trees.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import dmixed


def frame_and_model(case: str, p: int) -> tuple[pd.DataFrame, str, dict]:
    """The data, formula and ``re_formula`` of ``case``."""
    if case == "x1":
        rng = np.random.default_rng(1)
        n, g = 3000, 150
        df = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i}" for i in range(p)])
        df["g"] = rng.integers(0, g, n)
        b0, b1 = rng.normal(size=g), rng.normal(size=g)
        df["y"] = df.x0 + 0.5 * df.x1 + b0[df.g] + 0.3 * b1[df.g] * df.x1 + rng.normal(size=n)
        formula = "y ~ " + " + ".join(f"x{i}" for i in range(p))
        return df, formula, {"re_formula": "1 + x1"}
    df = pd.read_parquet("/tmp/s54/nu9/wide.parquet").iloc[:3000]
    formula = "y ~ " + " + ".join(f"x{i}" for i in range(200)) + " + C(a) + C(b) + C(a):x1"
    return df, formula, {"re_formula": {"cb": "1 + C(b)", "x12": "0 + x1 + x2"}[case]}


def main() -> None:
    p, n, case = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    out = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    warnings.simplefilter("ignore")
    df, formula, kw = frame_and_model(case, p)
    t = time.thread_time()
    dmixed.mixedlm(formula, df, groups="g", **kw).fit()
    first = time.thread_time() - t
    t = time.thread_time()
    fit = dmixed.mixedlm(formula, df, groups="g", **kw).fit()
    again = time.thread_time() - t
    t = time.thread_time()
    boot = fit.bootstrap(n, seed=1)
    per = (time.thread_time() - t) / n
    print(
        f"{dmixed.__file__} case={case} P={p}: first fit {first:.3f} s, fit {again:.3f} s, "
        f"{per:.3f} s a replicate (thread CPU)"
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        numbers = [fit.fe_params.to_numpy(float), [fit.llf], np.ravel(fit.cov_re), fit.bse]
        np.save(out / "fit.npy", np.concatenate([np.asarray(x, float) for x in numbers]))
        np.save(out / "table.npy", boot.replicates.to_numpy(dtype=np.float64))


if __name__ == "__main__":
    main()
