"""Per-replicate time of ``bootstrap(n)`` of whichever dmixed is imported: for an A/B
between two versions in separate processes (``PYTHONPATH`` chooses the version).

Run:  PYTHONPATH=<checkout> python benchmarks/bench_bootstrap_replicate.py GROUPS SIZE N

Model: ``bench_core.make`` (random intercept and slope on x1), REML; one untimed
``bootstrap(2)`` first, then ``bootstrap(N)``: the median/min/max of
``replicate_seconds`` and the set-up.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from bench_core import make  # noqa: E402

import dmixed  # noqa: E402


def main() -> None:
    groups, size, n = (int(a) for a in sys.argv[1:4])
    y, x, z, g = make(groups, size=size, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        fit = dmixed.MixedLM(y, x, g, exog_re=z).fit()
        fit.bootstrap(2, seed=0)
        boot = fit.bootstrap(n, seed=1)
    per = boot.replicate_seconds
    print(
        f"{dmixed.__file__}: per replicate median {np.median(per):.4f} s "
        f"({per.min():.4f}-{per.max():.4f}), set-up {boot.seconds - per.sum():.3f} s"
    )


if __name__ == "__main__":
    main()
