"""CPU milliseconds of :func:`dmixed.stats.keys.key_values` on a partition's group keys,
against its body without the respelling of equal object keys (``astype(object)`` only),
interleaved in one process: text keys (the check that they are all text) and tuple
keys (factorized, each distinct key respelled once); and ``pd.factorize`` of the keys
alone, the per-row part (finding the distinct keys) of what ``key_values`` adds.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/bench_key_spelling.py
[ROWS] [GROUPS]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from dmixed.stats.keys import key_values


def plain(groups) -> np.ndarray:
    """``key_values`` without the respelling (the body before it)."""
    keys = np.asarray(groups)
    return keys.astype(object) if keys.dtype.kind not in "iufbMm" else keys


def factorized(keys) -> None:
    """``pd.factorize`` of the keys, as ``key_values`` runs it (NaN a key)."""
    pd.factorize(keys, use_na_sentinel=False)


def best_ms(fn, keys, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn(keys)
        times.append(time.process_time() - t0)
    return 1e3 * min(times)


def main(rows: int, groups: int) -> None:
    ids = np.random.default_rng(0).integers(0, groups, rows)
    kinds = {
        "text": [f"g{i}" for i in ids],
        "tuple": [(int(i), "a") if i % 2 else (np.int64(i), "a") for i in ids],
    }
    print(f"rows {rows}, groups {groups}: CPU ms, best of 7 (plain / key_values / factorize)")
    for kind, values in kinds.items():
        keys = np.empty(rows, dtype=object)
        keys[:] = values
        runs = [
            (best_ms(plain, keys), best_ms(key_values, keys), best_ms(factorized, keys))
            for _ in range(3)
        ]
        shown = "  ".join(f"{a:.1f} / {b:.1f} / {c:.1f}" for a, b, c in runs)
        print(f"{kind:6s} {shown}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5_000,
    )
