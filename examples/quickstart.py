"""Quickstart: the same linear mixed model fitted in-process and as a batch job on Dask.

1. Simulates 2,000 groups of 1 to 40 rows (random intercept and a random slope on x1,
   correlated) and writes them as 4 Parquet files, each group's rows spread over the
   files.
2. Fits ``y ~ x1 + x2 + x3`` with ``re_formula="1 + x1"`` by REML in-process from a
   pandas DataFrame, as one would with statsmodels, and prints the summary.
3. Runs the batch job ``dmixed fit`` on the Parquet files on an embedded local Dask
   cluster (2 worker processes on this machine, no cluster needed), which writes a
   results directory, then loads it and checks it against the in-process fit.

Run:  python examples/quickstart.py [output directory, default examples/out/quickstart]
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import dmixed
from dmixed.cli import main as dmixed_command


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/out/quickstart")
    rng = np.random.default_rng(12345)

    # 2,000 groups of 1 to 40 rows each.
    n_groups = 2000
    sizes = rng.integers(1, 41, size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    n = g.size

    # Three fixed-effect covariates.
    x = rng.normal(size=(n, 3))

    # Random intercept and random slope on x1, correlated.
    cov_re = np.array([[1.0, 0.3], [0.3, 0.5]])
    b = rng.multivariate_normal(np.zeros(2), cov_re, size=n_groups)

    y = 0.5 + x @ np.array([1.0, -0.5, 0.25]) + b[g, 0] + b[g, 1] * x[:, 0] + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "g": g})

    # -- 1. the data as Parquet files, rows in random order (groups spread over files) --------
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shuffled = df.sample(frac=1.0, random_state=1)
    for i, rows in enumerate(np.array_split(np.arange(n), 4)):
        shuffled.iloc[rows].to_parquet(data_dir / f"part-{i}.parquet", index=False)

    # -- 2. in-process, from pandas ----------------------------------------------------------
    model = dmixed.mixedlm("y ~ x1 + x2 + x3", df, groups="g", re_formula="1 + x1")
    res = model.fit(reml=True)
    print(res.summary())

    # -- 3. the batch job on an embedded local Dask cluster ----------------------------------
    status = dmixed_command(
        [
            "fit",
            "--data",
            str(data_dir / "*.parquet"),
            "--formula",
            "y ~ x1 + x2 + x3",
            "--groups",
            "g",
            "--re-formula",
            "1 + x1",
            "--output",
            str(out / "results"),
            "--quiet",
        ]
    )
    if status != 0:
        sys.exit(status)
    job = dmixed.load(out / "results")
    print(f"batch job: {job.nobs} rows, {job.n_groups} groups, llf {job.llf:.6f}")
    np.testing.assert_allclose(job.fe_params, res.fe_params, rtol=1e-8)
    np.testing.assert_allclose(job.cov_re, res.cov_re, rtol=1e-8)
    assert abs(job.llf - res.llf) <= 1e-8 * abs(res.llf)
    print(f"the batch job's estimates equal the in-process fit; results in {out / 'results'}")


if __name__ == "__main__":  # worker processes of the local cluster re-import this file
    main()
