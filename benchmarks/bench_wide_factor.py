"""CPU time and peak memory of a fit with a fixed factor of many levels (widefe-s61).

``python benchmarks/bench_wide_factor.py LEVELS ROWS ENTRY`` with ``PYTHONPATH`` at the
tree to measure and BLAS on one thread (``OPENBLAS_NUM_THREADS=1``), one fresh process a
run (interleave two trees' runs on a loaded host).  The data: ``ROWS`` rows of
``y ~ x1 + C(store)`` with ``LEVELS`` stores and a random intercept by customer
(``ROWS // 10`` customers), seed 0.  ENTRY ``formula`` (``dmixed.mixedlm``),
``arrays`` (``dmixed.MixedLM`` of a dense treatment-coded ``exog``) or ``peer``
(mixedlm-rs's ``from_formula``, where installed).  Prints the process CPU seconds of
building the model and of the fit with ``bse``, the wall time, ``llf`` and the peak
resident memory.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import pandas as pd

FORMULA = "y ~ x1 + C(store)"


def frame(rows: int, levels: int, seed: int = 0) -> pd.DataFrame:
    """The rows of the model (see the module)."""
    rng = np.random.default_rng(seed)
    customers = max(rows // 10, 1)
    cust = rng.integers(0, customers, rows)
    store = rng.integers(0, levels, rows)
    x1 = rng.standard_normal(rows)
    u = 0.7 * rng.standard_normal(customers)
    s = 0.5 * rng.standard_normal(levels)
    y = 1.0 + 0.5 * x1 + u[cust] + s[store] + rng.standard_normal(rows)
    return pd.DataFrame({"y": y, "x1": x1, "store": store.astype(str).astype(object), "cust": cust})


def main() -> None:
    levels, rows, entry = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    df = frame(rows, levels)
    t0, w0 = time.process_time(), time.perf_counter()
    if entry == "peer":
        import mixedlm_rs

        res = mixedlm_rs.MixedLM.from_formula(FORMULA, df, groups="cust").fit()
        t1 = t0
    else:
        import dmixed

        if entry == "formula":
            model = dmixed.mixedlm(FORMULA, df, groups="cust")
        else:
            dummies = pd.get_dummies(df["store"], drop_first=True).to_numpy(dtype=np.float64)
            exog = np.column_stack([np.ones(rows), df["x1"].to_numpy(), dummies])
            model = dmixed.MixedLM(df["y"].to_numpy(), exog, df["cust"].to_numpy())
        t1 = time.process_time()
        res = model.fit()
        np.asarray(res.bse_fe)
    t2 = time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{entry} levels={levels} rows={rows} model {t1 - t0:.2f} s fit+bse {t2 - t1:.2f} s "
        f"wall {time.perf_counter() - w0:.2f} s llf {float(res.llf)!r} peak {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
