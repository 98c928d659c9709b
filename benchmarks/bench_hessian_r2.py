"""The last round trip's worker call at r = 2, thread CPU: the Hessian sums with the BLUPs.

Run:  PYTHONPATH=<tree> python benchmarks/bench_hessian_r2.py [--dir /tmp/bd20]
                                                                [--repeat 11] [--cache FILE]

One worker's block of the out-of-core fit of ``bench_fit_anatomy.py`` (``y ~ x1 + x2 +
x3``, random intercept and slope on ``x1``: ``r = 2``, ``k = p + 1 = 5``): the groups
``g < G/2`` of the Parquet data set (about half of them, as one of two workers holds),
their ``Z'Z`` and ``Z'[X y]`` summed here with ``np.bincount`` and held as a
:class:`~dmixed.kernels.StatsBlock` (chunks of ``GROUP_CHUNK`` groups, as a worker holds
its block); kept in ``--cache`` (an ``.npz``) for the next run.  Then, BLAS on one thread
and numba loaded (as on a worker), thread CPU of, alternated ``--repeat`` times:

- ``hessian+blups numba``: :func:`dmixed.kernels.compiled.hessian_random_effects` (with
  ``upper``, as :func:`~dmixed.engines.dask.ahead.block_hessian_random_effects` calls it)
  with ``DMIXED_NATIVE=numpy``: the numba pass main runs;
- ``hessian+blups C``: the same call with the extension (where this tree has it);
- ``moments``: :func:`dmixed.kernels.moment_contributions` of the block.

Prints medians and minima in ms, the load average, and the largest relative difference of
the two passes' Hessian sums (each field to its largest entry) and whether their BLUPs and
covariances are equal bit for bit.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["DMIXED_KERNELS"] = "numba"

import argparse  # noqa: E402
import glob  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def worker_block(directory: str, cache: str):
    """``(zz (G, 2, 2), zxy (G, 2, 5))`` of the groups ``g < G/2`` of ``directory``."""
    if os.path.exists(cache):
        with np.load(cache) as f:
            return f["zz"], f["zxy"]
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(directory, "*.parquet")))
    cols = ["g", "x1", "x2", "x3", "y"]
    parts = [pq.read_table(f, columns=cols) for f in files]
    g = np.concatenate([p.column("g").to_numpy() for p in parts])
    half = (int(g.max()) + 1) // 2
    keep = g < half
    g = g[keep]
    x = {c: np.concatenate([p.column(c).to_numpy() for p in parts])[keep] for c in cols[1:]}
    z = [np.ones_like(x["x1"]), x["x1"]]
    xy = [np.ones_like(x["x1"]), x["x1"], x["x2"], x["x3"], x["y"]]
    zz = np.empty((half, 2, 2))
    zxy = np.empty((half, 2, 5))
    for a in range(2):
        for c in range(2):
            zz[:, a, c] = np.bincount(g, z[a] * z[c], minlength=half)
        for j in range(5):
            zxy[:, a, j] = np.bincount(g, z[a] * xy[j], minlength=half)
    np.savez(cache, zz=zz, zxy=zxy)
    return zz, zxy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bd20")
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--cache", default="/tmp/bd20_worker_block.npz")
    args = ap.parse_args()

    import numba  # noqa: F401 - loaded, as on a worker

    import dmixed
    from dmixed import kernels
    from dmixed.kernels import compiled, native

    zz, zxy = worker_block(args.dir, args.cache)
    block = kernels.StatsBlock(zz, zxy)
    n = block.n_groups
    lam = np.array([[0.9, 0.0], [0.2, 0.4]])
    basis = np.zeros((3, 2, 2))
    basis[0, 0, 0] = basis[2, 1, 1] = 1.0
    basis[1, 0, 1] = basis[1, 1, 0] = 1.0
    w = np.array([-0.5, -1.0, -0.3, 0.2, 1.0])

    def fused():
        return compiled.hessian_random_effects(
            block.chunks(), lam, basis, w, block.spans.edges, upper=True
        )

    def with_native(choice: str):
        def call():
            os.environ[native.ENV_VAR] = choice
            try:
                return fused()
            finally:
                del os.environ[native.ENV_VAR]

        return call

    calls = {"hessian+blups numba": with_native("numpy")}
    if hasattr(native.extension(), "moments_r2"):
        calls["hessian+blups C"] = with_native("auto")
    calls["moments"] = lambda: kernels.moment_contributions(block)
    outs = {name: call() for name, call in calls.items()}  # warm (numba compiles or loads)
    if "hessian+blups C" in outs:
        (f1, b1, c1), (f2, b2, c2) = outs["hessian+blups numba"], outs["hessian+blups C"]
        rel = max(float(np.abs(x - y).max() / np.abs(x).max()) for x, y in zip(f1, f2, strict=True))
        same = np.array_equal(b1, b2) and np.array_equal(c1, c2)
        print(f"Hessian sums, C against numba: {rel:.2e} relative; BLUPs, cov equal: {same}")
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeat):
        for name, call in calls.items():
            start = time.thread_time()
            call()
            times[name].append(time.thread_time() - start)
    print(f"dmixed from {dmixed.__file__}; {n:,} groups; load {os.getloadavg()[0]:.2f}")
    for name, runs in times.items():
        ms = np.array(runs) * 1e3
        print(f"  {name:20s} median {np.median(ms):7.1f}  min {ms.min():7.1f} ms")


if __name__ == "__main__":
    main()
