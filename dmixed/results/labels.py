"""The index of parameter names that the estimates' pandas objects share.

Under pandas 3 ``pd.Index(list_of_str)`` infers pandas' ``str`` dtype and converts the
names to an Arrow array: 70–100 µs for six names, and ~0.27 ms inside a fit (cold
caches after the optimizer; benchmarks/RESULTS.md, thirteenth session), where a view
of an index already made costs under 1 µs.  The same names recur in every fit of the
same model, so one index is kept per tuple of names and each caller gets its own view
(a view has its own ``name``: a caller that renames its index changes no other).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pandas as pd

__all__ = ["label_index"]


@functools.lru_cache(maxsize=64)
def _made(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names))


def label_index(names: Sequence[str]) -> pd.Index:
    """``pd.Index(names)`` (pandas' inferred dtype, no name), as a fresh view of an
    index kept for these names (the last 64 tuples of names)."""
    return _made(tuple(names)).view()
