"""Thread CPU of a block's lossy check as the data pass makes it where no group is
lossy (the common case: one check of every chunk; main asks ``lossy_mask(nobs)``, this
branch ``lossy_mask(nobs, CENTRED_DETERMINANT)``) on 1,000,000 ordinary groups of 10
rows, a random intercept and slope.  Run under each tree's PYTHONPATH, alternated
(``$MAIN``: a checkout of main, ``$BRANCH``: this branch's)::

    for p in $MAIN $BRANCH $MAIN $BRANCH; do
        (cd /tmp && PYTHONPATH=$p python $BRANCH/benchmarks/xts_lossy_check.py)
    done
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import dmixed
from dmixed import kernels
from dmixed.kernels import StatsBlock


def main() -> None:
    rng = np.random.default_rng(0)
    g = 1_000_000
    nobs = np.full(g, 10)
    x = rng.normal(size=(g, 10))
    zz = np.empty((g, 2, 2))  # per group, as StatsBlock takes them
    zz[:, 0, 0] = nobs
    zz[:, 0, 1] = zz[:, 1, 0] = x.sum(axis=1)
    zz[:, 1, 1] = (x**2).sum(axis=1)
    zxy = rng.normal(size=(g, 2, 3))
    stats = StatsBlock(zz, zxy)
    bound = getattr(kernels, "CENTRED_DETERMINANT", None)  # None on main
    args = (nobs,) if bound is None else (nobs, bound)
    times = []
    for _ in range(9):
        t0 = time.thread_time()
        found = stats.lossy_mask(*args)
        times.append(time.thread_time() - t0)
    assert found is None
    print(
        f"{dmixed.__file__}: median {statistics.median(times) * 1e3:.1f} ms thread CPU "
        f"(min {min(times) * 1e3:.1f}) of 9"
    )


if __name__ == "__main__":
    main()
