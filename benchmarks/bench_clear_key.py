"""Thread CPU time of a block's coarse lossy check (``StatsBlock.lossy_masks`` over its
chunks at ``CENTRED_DETERMINANT``) against what ``StatsBlock.lossy_mask``'s kept clear
bound costs to key on the group sizes' values: ``np.array_equal`` of ``nobs`` with the
kept copy (each ask), and the copy (once, when a bound is found clear).  Medians of 7.

Run: ``PYTHONPATH=. python benchmarks/bench_clear_key.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from dmixed import kernels
from dmixed.kernels.conditionals import CENTRED_DETERMINANT


def _median_time(f: Callable[[], object], n: int = 7) -> float:
    out = []
    for _ in range(n):
        start = time.thread_time()
        f()
        out.append(time.thread_time() - start)
    return float(np.median(out))


def _one(rng: np.random.Generator, g: int, r: int) -> str:
    zmat = rng.normal(size=(g, 20, r))
    zmat[:, :, 0] = 1.0
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    block = kernels.StatsBlock.from_entry_major(zz, np.zeros((r, r + 2, g)))
    nobs = np.full(g, 20, dtype=np.int64)
    kept = nobs.copy()
    check = _median_time(lambda: list(block.lossy_masks(nobs, CENTRED_DETERMINANT)))
    equal = _median_time(lambda: np.array_equal(nobs, kept))
    copy = _median_time(nobs.copy)
    return (
        f"G={g} r={r}: check {check * 1e6:.0f} us, array_equal {equal * 1e6:.1f} us, "
        f"copy {copy * 1e6:.1f} us, check / array_equal {check / equal:.0f}"
    )


def main() -> None:
    rng = np.random.default_rng(0)
    for g, r in [(62_500, 2), (62_500, 3), (1_000, 2)]:
        print(_one(rng, g, r))


if __name__ == "__main__":
    main()
