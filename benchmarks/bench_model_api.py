"""The model-level API (loglike, score, hessian) against statsmodels' on the same model.

Run:  python benchmarks/bench_model_api.py [--groups 2000] [--repeats 5]

A random-slope model of array input (groups of 10 rows, ``bench_core.make``), REML,
``use_sqrt=True``.  For each of ``loglike(packed)``, ``score(packed)`` and
``hessian(params)`` at one random point: the largest deviation of dmixed's value from
statsmodels' (relative to statsmodels' largest entry), and the times of one call of
each, warm (one untimed call first; dmixed's first call makes the data pass, not
timed), interleaved (dmixed, statsmodels, dmixed, …), median with min and max of
``--repeats``, BLAS on one thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import statsmodels.regression.mixed_linear_model as smlm  # noqa: E402
from bench_core import make  # noqa: E402

import dmixed  # noqa: E402


def timed(func) -> float:
    t0 = time.perf_counter()
    func()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    y, x, z, g = make(args.groups)
    ref = smlm.MixedLM(y, x, g, exog_re=z)
    ref.reml, ref.cov_pen, ref.fe_pen, ref._freepat, ref._cov_sing = True, None, None, None, 0
    ours = dmixed.MixedLM(y, x, g, exog_re=z)
    lmat = np.array([[0.9, 0.0], [0.1, 0.4]])
    packed = np.array([0.9, 0.1, 0.4])
    fe, _ = ref.get_fe_params(lmat @ lmat.T, np.zeros(0))
    sm_pa = smlm.MixedLMParams.from_components(fe, cov_re=lmat @ lmat.T)
    pa = dmixed.MixedLMParams.from_components(fe, cov_re=lmat @ lmat.T)
    runs = {  # name: (dmixed, statsmodels)
        "loglike": (lambda: ours.loglike(packed), lambda: ref.loglike(packed)),
        "score": (lambda: ours.score(packed), lambda: ref.score(packed)),
        "hessian": (lambda: ours.hessian(pa)[0], lambda: ref.hessian(sm_pa)[0]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (run_ours, run_ref) in runs.items():
            a, b = np.asarray(run_ref()), np.asarray(run_ours())  # warm, and the values
            dev = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
            t_ours, t_ref = [], []
            for _ in range(args.repeats):
                t_ours.append(timed(run_ours))
                t_ref.append(timed(run_ref))
            med_o, med_r = np.median(t_ours), np.median(t_ref)
            print(
                f"{name:8s} deviation {dev:.1e}  dmixed {med_o:8.2f} ms "
                f"[{min(t_ours):.2f}, {max(t_ours):.2f}]  statsmodels {med_r:9.2f} ms "
                f"[{min(t_ref):.2f}, {max(t_ref):.2f}]  ratio {med_r / med_o:6.1f}"
            )


if __name__ == "__main__":
    main()
