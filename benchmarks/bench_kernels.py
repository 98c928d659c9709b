"""Per-group kernels: numpy against the compiled (numba) ones.

Run:  python benchmarks/bench_kernels.py [--sizes 20000 200000 2000000] [--rs 1 2 3]
                                         [--kernels step hessian blups]
                                         [--repeat 7] [--json out.json]

For each kernel (``step``: ``kernels.step_contributions``, the optimizer's per-step
sums; ``hessian``: ``kernels.hessian_contributions`` for the ``r(r+1)/2`` parameters of
an unstructured ``Ψ``; ``blups``: ``kernels.random_effects_block``), each number of
groups and each ``r`` (random-effects dimension, all of them ``exog_re``; ``p + 1 =
4``): one call on the same statistics by the two implementations
(``DMIXED_KERNELS=numpy`` / ``numba``), warm (one untimed call each), interleaved
(numpy, numba, numpy, ...), median with min/max, BLAS on one thread.  Then, each in a
fresh process: the compile cost (first call of each kernel and ``r`` with an empty numba
cache directory, then with the cache filled by that run), ``import dmixed`` alone and
``import dmixed`` followed by ``import numba``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402

from dmixed import kernels  # noqa: E402

K = 4  # columns of [X y]


def make_block(n_groups: int, r: int, seed: int = 0) -> tuple[kernels.StatsBlock, np.ndarray]:
    """Statistics of groups of 1–9 rows with ``r`` random-effect columns, and a Λ."""
    rng = np.random.default_rng(seed)
    zz = np.zeros((n_groups, r, r))
    zxy = np.zeros((n_groups, r, K))
    rows = rng.integers(1, 10, n_groups)
    for n_i in range(1, 10):  # one batch per group size: no (G, 9, r) array
        sel = np.flatnonzero(rows == n_i)
        z = rng.normal(size=(sel.size, n_i, r))
        z[:, :, 0] = 1.0
        xy = rng.normal(size=(sel.size, n_i, K))
        zz[sel] = np.einsum("gia,gib->gab", z, z)
        zxy[sel] = np.einsum("gia,gib->gab", z, xy)
    lam = np.tril(0.3 * rng.normal(size=(r, r))) + np.eye(r)
    return kernels.StatsBlock(zz, zxy), lam


def unstructured_basis(r: int) -> np.ndarray:
    """``E_j`` (m, r, r) of the ``r(r+1)/2`` entries of an unstructured ``Ψ``."""
    basis = np.zeros((r * (r + 1) // 2, r, r))
    for j, (a, c) in enumerate(zip(*np.tril_indices(r), strict=True)):
        basis[j, a, c] = basis[j, c, a] = 1.0
    return basis


def call(kernel: str, block, lam) -> None:
    """One call of ``kernel`` (``step``, ``hessian`` or ``blups``) on ``block``."""
    r = lam.shape[0]
    w = np.r_[np.linspace(-1.0, 1.0, K - 1), 1.0]
    if kernel == "step":
        kernels.step_contributions(block, lam, r)
    elif kernel == "hessian":
        kernels.hessian_contributions(block, lam, unstructured_basis(r), w)
    else:
        kernels.random_effects_block(block, lam, w)


def time_call(kernel: str, block, lam, which: str) -> float:
    os.environ["DMIXED_KERNELS"] = which
    t0 = time.perf_counter()
    call(kernel, block, lam)
    return time.perf_counter() - t0


def evaluations(kernel: str, sizes, rs, repeat: int) -> list[dict]:
    rows = []
    for n_groups in sizes:
        for r in rs:
            block, lam = make_block(n_groups, r)
            for which in ("numpy", "numba"):  # warm
                time_call(kernel, block, lam, which)
            times: dict[str, list[float]] = {"numpy": [], "numba": []}
            for _ in range(repeat):
                for which in ("numpy", "numba"):
                    times[which].append(time_call(kernel, block, lam, which))
            row = {"kernel": kernel, "groups": n_groups, "r": r}
            for which, ts in times.items():
                row[which] = {
                    "median_ms": 1e3 * statistics.median(ts),
                    "min_ms": 1e3 * min(ts),
                    "max_ms": 1e3 * max(ts),
                }
            row["speedup"] = row["numpy"]["median_ms"] / row["numba"]["median_ms"]
            rows.append(row)
            print(
                f"{kernel:>7} G={n_groups:>8} r={r}: numpy {row['numpy']['median_ms']:9.2f} ms "
                f"[{row['numpy']['min_ms']:.2f}, {row['numpy']['max_ms']:.2f}]  "
                f"numba {row['numba']['median_ms']:8.2f} ms "
                f"[{row['numba']['min_ms']:.2f}, {row['numba']['max_ms']:.2f}]  "
                f"× {row['speedup']:.2f}",
                flush=True,
            )
    return rows


_FIRST_CALL = """
import os, time, sys
sys.path.insert(0, {bench!r})
from bench_kernels import call, make_block
os.environ["DMIXED_KERNELS"] = "numba"
out = []
for r in (1, 2, 3):
    block, lam = make_block(1000, r)
    for kernel in ("step", "hessian", "blups"):
        t0 = time.perf_counter()
        call(kernel, block, lam)
        out.append(time.perf_counter() - t0)
print(*out)
"""


def _run(code: str, env: dict) -> list[float]:
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return [float(v) for v in res.stdout.split()]


def first_calls(repeat: int) -> dict:
    """First call of each kernel (step, hessian, blups) per r = 1, 2, 3 (numba import +
    compile or cache load), in fresh processes: 9 figures, r-major."""
    bench = os.path.dirname(os.path.abspath(__file__))
    code = _FIRST_CALL.format(bench=bench)
    out: dict[str, list[list[float]]] = {"cold_cache": [], "warm_cache": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out["cold_cache"].append(_run(code, env))
            out["warm_cache"].append(_run(code, env))
    return {
        key: [statistics.median(run[i] for run in runs) for i in range(9)]
        for key, runs in out.items()
    }


def import_times(repeat: int) -> dict:
    """``import dmixed`` and ``import dmixed; import numba``, fresh processes, interleaved."""
    probes = {
        "dmixed": "import time; t=time.perf_counter(); import dmixed; "
        "import sys; assert 'numba' not in sys.modules; print(time.perf_counter()-t)",
        "dmixed+numba": "import time; t=time.perf_counter(); import dmixed; import numba; "
        "print(time.perf_counter()-t)",
    }
    times: dict[str, list[float]] = {k: [] for k in probes}
    for _ in range(repeat):
        for key, code in probes.items():
            times[key].extend(_run(code, dict(os.environ)))
    return {k: {"median_s": statistics.median(v), "min_s": min(v)} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    ap.add_argument("--rs", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--kernels", nargs="+", default=["step", "hessian", "blups"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    report: dict = {
        "evaluations": [
            row
            for kernel in args.kernels
            for row in evaluations(kernel, args.sizes, args.rs, args.repeat)
        ]
    }
    report["first_call_s"] = first_calls(max(3, args.repeat // 2))
    print("first call (s; step, hessian, blups at r = 1, then r = 2, r = 3):")
    print(report["first_call_s"])
    report["import"] = import_times(args.repeat)
    print("import:", report["import"])
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
