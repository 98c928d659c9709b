"""Exactness where the random design is close to singular within groups: the reported
ℓ of fits against ℓ in 40 digits at the reported point.

Run:  python benchmarks/bench_centred.py [--tree PATH]

Two designs of tests/_centred.py (30 groups, a random intercept of sd 7,500): a slope on
a column constant within each group but for ``1e-6·N(0, 1)`` per row, and one group's
slope varying (sd 1) among constant ones.  Each is fitted by ``lbfgs`` and the default
method with the dmixed of ``--tree`` (default: this checkout), and the fit's reported
ℓ is printed beside the exact ℓ at its estimates (tests/_centred.py's ``mp_llf``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=str(ROOT), help="the checkout whose dmixed fits")
    args = ap.parse_args()
    sys.path.insert(0, args.tree)
    import dmixed

    spec = importlib.util.spec_from_file_location("centred_designs", ROOT / "tests" / "_centred.py")
    designs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(designs)
    print("dmixed", dmixed.__file__)
    cases = {"delta=1e-6": {"delta": 1e-6}, "one varying group": {"odd": 4, "seed": 3}}
    for name, kwargs in cases.items():
        y, exog, g, z = designs.near_constant(**kwargs)
        model = dmixed.MixedLM(y, exog, g, exog_re=z)
        for method in ("lbfgs", None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = model.fit(method=method) if method else model.fit()
            lmat = np.linalg.cholesky(np.asarray(res.cov_re) / res.scale)
            exact = designs.mp_llf(y, exog, g, z, lmat)
            print(
                f"{name:18s} {method or 'default':8s} converged={res.converged} "
                f"reported={res.llf:.10f} exact={exact:.10f} off={res.llf - exact:.3e}"
            )


if __name__ == "__main__":
    main()
