"""Milliseconds of the compiled passes over a partition's int64 group keys that the
data pass runs (:func:`dmixed.kernels.term_table.key_range` and
:func:`~dmixed.kernels.term_table.key_codes`), and a digest of what they return.

Run from the repository root: ``PYTHONPATH=TREE python benchmarks/bench_key_pass.py
[ROWS] [GROUPS] [REPEAT]`` (default 1 250 000 rows, keys drawn from 1 000 000 groups,
best of 201 calls of each, interleaved); run it against two checkouts alternately to
compare them (the digest must be the same).  Keys in random order and sorted, as a
partition holds them; the first calls compile or load numba's cached code and are not
timed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

os.environ["DMIXED_KERNELS"] = "numba"

import numpy as np  # noqa: E402

import dmixed  # noqa: E402
from dmixed.kernels.term_table import key_codes, key_range  # noqa: E402


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_250_000
    groups = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 201
    rng = np.random.default_rng(0)
    shuffled = rng.integers(0, groups, size=rows, dtype=np.int64) * 7 + 3
    digest = hashlib.sha256()
    print(f"{dmixed.__file__}: {rows} int64 keys of {groups} groups, best of {repeat}")
    for name, keys in (("random", shuffled), ("sorted", np.sort(shuffled))):
        base = int(keys[0])
        lo, hi, codes = key_codes(keys, base)
        digest.update(np.array([lo, hi], dtype=np.int64).tobytes() + codes.tobytes())
        digest.update(np.array(key_range(keys), dtype=np.int64).tobytes())
        best = {"key_range": np.inf, "key_codes": np.inf}
        for _ in range(repeat):
            t0 = time.perf_counter()
            key_range(keys)
            t1 = time.perf_counter()
            key_codes(keys, base)
            t2 = time.perf_counter()
            best["key_range"] = min(best["key_range"], t1 - t0)
            best["key_codes"] = min(best["key_codes"], t2 - t1)
        shown = ", ".join(f"{k} {1e3 * v:.3f} ms" for k, v in best.items())
        print(f"  {name}: {shown}")
    print(f"  digest {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
