"""The kernels an out-of-core fit's evaluator runs on its block, thread CPU per call.

Run:  PYTHONPATH=<tree> python benchmarks/bench_dask_block_kernels.py [--groups 500000]
                                                                      [--repeat 9]

One worker's block of ``bench_dask.py``'s fit (``y ~ x1 + x2 + x3``, random intercept
and slope on x1: ``r = 2``, ``p + 1 = 5``; 500,000 groups of 20 rows, random
statistics), held as the bucket's root makes it (chunks of ``GROUP_CHUNK`` groups);
the compiled kernels (``DMIXED_KERNELS=numba``, numba loaded as on a worker that ran a
chain), BLAS on one thread.  Each of ``step`` (``step_contributions``), ``hessian``
(``hessian_contributions``, the 3 parameters of an unstructured ``Ψ``), ``blups``
(``random_effects_block``) and ``moments`` (``moment_contributions``) called once warm,
then ``--repeat`` times interleaved; prints min and median thread CPU in ms, and a
digest of the four results' bytes (equal between trees where their arithmetic is).
Where the tree has it, also ``hessian+blups``
(``kernels.compiled.hessian_random_effects``, the last round trip's one pass), checked
equal bit for bit to ``hessian`` and ``blups`` (outside the digest).
Runs on older trees too: set ``PYTHONPATH`` to each tree in turn, in one shell loop.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["DMIXED_KERNELS"] = "numba"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()

    import numba  # noqa: F401 - loaded, as on a worker

    import dmixed
    from dmixed import kernels

    rng = np.random.default_rng(0)
    g, r, k = args.groups, 2, 5
    z = np.stack([np.ones((g, 20)), rng.normal(size=(g, 20))], axis=-1)
    xy = rng.normal(size=(g, 20, k))
    block = kernels.StatsBlock(np.einsum("gia,gib->gab", z, z), np.einsum("gia,gix->gax", z, xy))
    lam = np.array([[0.8, 0.0], [0.1, 0.5]])
    basis = np.zeros((3, r, r))
    basis[0, 0, 0] = basis[2, 1, 1] = 1.0
    basis[1, 0, 1] = basis[1, 1, 0] = 1.0
    w = np.array([-0.1, -0.2, 0.3, 0.1, 1.0])
    calls = {
        "step": lambda: kernels.step_contributions(block, lam, r),
        "hessian": lambda: kernels.hessian_contributions(block, lam, basis, w),
        "blups": lambda: kernels.random_effects_block(block, lam, w),
        "moments": lambda: kernels.moment_contributions(block),
    }
    fused = getattr(kernels.compiled, "hessian_random_effects", None)
    digest = hashlib.sha256()
    for call in calls.values():
        out = call()
        fields = out if isinstance(out, tuple) else [getattr(out, f) for f in vars(out)]
        for value in fields:
            digest.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())
    if fused is not None:
        fields, blup, cov = fused(block.chunks(), lam, basis, w, block.n_groups)
        hs = kernels.hessian_contributions(block, lam, basis, w)
        ref = [getattr(hs, f) for f in vars(hs)] + list(kernels.random_effects_block(block, lam, w))
        same = all(np.array_equal(a, b) for a, b in zip([*fields, blup, cov], ref, strict=True))
        print(f"hessian+blups in one pass equal bit for bit to the two calls: {same}")
        calls["hessian+blups"] = lambda: fused(block.chunks(), lam, basis, w, block.n_groups)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeat):
        for name, call in calls.items():
            start = time.thread_time()
            call()
            times[name].append(time.thread_time() - start)
    print(f"dmixed from {dmixed.__file__}; {g:,} groups; digest {digest.hexdigest()[:16]}")
    for name, runs in times.items():
        ms = np.array(runs) * 1e3
        print(f"  {name:13s} min {ms.min():7.1f}  median {np.median(ms):7.1f} ms")


if __name__ == "__main__":
    main()
