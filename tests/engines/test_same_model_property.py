"""Same data, same model, on every engine (issue 14), as a property test.

Random frames whose groups, plain terms and ``C()`` terms are columns of every kind
users have (object str, ``str``, categoricals of text and of numbers, Arrow strings,
nullable Int64 / boolean with missing values, Decimal objects, bool, int8..uint64 with
values at the ends of their ranges, uint64 >= 2**63, objects mixing 5 and '5'), cut into
random partitions (``dd.from_pandas`` of shuffled rows, or ``dd.from_delayed`` of
random slices, empty ones included).  Both engines must give the same fixed-effect
names, factor levels, group labels, estimates (1e-10 relative) and warnings, or refuse
with the same error and message.  Where a numeric-looking column is a plain term and
becomes a factor (categoricals of numbers, numeric text), both warn
(``NumericFactorWarning``).
"""

from __future__ import annotations

import decimal

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from .._synth import QUICK
from .same_model import assert_same_model, assert_same_refusal, fit_recording

N_ROWS = 160
N_GROUPS = 8

INT_RANGES = {
    "int8": (np.int8, -(2**7), 2**7 - 1),
    "int16": (np.int16, -(2**15), 2**15 - 1),
    "int32": (np.int32, -(2**31), 2**31 - 1),
    "int64": (np.int64, -(2**63), 2**63 - 1),
    "uint8": (np.uint8, 0, 2**8 - 1),
    "uint16": (np.uint16, 0, 2**16 - 1),
    "uint32": (np.uint32, 0, 2**32 - 1),
    "uint64": (np.uint64, 0, 2**64 - 1),
    "uint64>=2**63": (np.uint64, 2**63, 2**64 - 1),
    "Int64": ("Int64", -(2**63), 2**63 - 1),
    "arrow-int64": (pd.ArrowDtype(pa.int64()), -(2**63), 2**63 - 1),
}
LABEL_KINDS = [
    "object-str",
    "str",
    "category",
    "numeric-category",
    "arrow-string",
    "arrow-large_string",
    "numeric-text",
    "mixed-object",
]
NUMBER_KINDS = ["Decimal", "Int64-NA", "object-numbers"]
TWO_LEVEL_KINDS = ["bool", "boolean-NA", "object-bool"]
GROUP_KINDS = [*LABEL_KINDS, "Decimal", "object-numbers", *INT_RANGES]
TERM_KINDS = LABEL_KINDS + NUMBER_KINDS + TWO_LEVEL_KINDS + list(INT_RANGES)
#: the values of numeric categories, numeric text and Int64
NUMERIC_LEVELS = [5, 15, 25, 35, 100, 7, 250, 1000, 12, 60]
#: kinds that are factors, with a warning, when used as plain terms
NUMERIC_FACTORS = {"numeric-category", "numeric-text"}
#: kinds that Dask's string conversion would turn into text (not the same data)
OBJECT_KINDS = {"Decimal", "object-numbers", "object-bool", "mixed-object"}


def _int_pool(kind: str, k: int, plain: bool, rng) -> list[int]:
    """k distinct integers of the kind: its two ends and values between (small ones for
    plain terms, where they are numbers)."""
    _, lo, hi = INT_RANGES[kind]
    if plain:
        return sorted({max(lo, 0) + int(v) for v in rng.choice(40, k, replace=False)})
    inner = [int(lo + (hi - lo) * f) for f in rng.uniform(0, 1, max(k - 2, 0))]
    return list(dict.fromkeys([lo, hi, *inner]))


def _labels(k: int, rng) -> list[str]:
    return [f"{c}{i}" for i, c in enumerate(rng.choice(list("abcdefghij"), k, replace=False))]


def column(kind: str, k: int, plain: bool, rng) -> pd.Series:
    """N_ROWS values of one kind drawn from k levels (two for the two-level kinds)."""
    na = kind.endswith("-NA")
    if kind in TWO_LEVEL_KINDS:
        pool: list = [True, False]
    elif kind in INT_RANGES:
        pool = _int_pool(kind, k, plain, rng)
    elif kind in ("numeric-category", "numeric-text", "Int64-NA"):
        pool = [int(v) for v in rng.choice(NUMERIC_LEVELS, k, replace=False)]
    elif kind == "Decimal":
        pool = [decimal.Decimal(f"{v}.99") for v in rng.choice(30, k, replace=False)]
    elif kind == "object-numbers":
        pool = [1, 2.5, np.int64(3), np.float32(0.5), decimal.Decimal("4.25")][:k]
    elif kind == "mixed-object":
        pool = [5, "5", *range(6, 6 + k)][: max(k, 2)]
    else:
        pool = _labels(k, rng)
    values = np.empty(len(pool), dtype=object)
    values[:] = pool
    col = pd.Series(values[rng.integers(0, len(pool), N_ROWS)], dtype=object)
    if na:
        col[rng.uniform(size=N_ROWS) < 0.1] = None
    return _as_kind(col, kind, pool, rng)


def _as_kind(col: pd.Series, kind: str, pool: list, rng) -> pd.Series:
    if kind in INT_RANGES:
        return col.astype(INT_RANGES[kind][0])
    if kind in ("category", "numeric-category"):
        return pd.Series(pd.Categorical(col, categories=list(rng.permutation(pool))))
    if kind == "numeric-text":
        return col.astype(str).astype("str")
    as_dtype = {
        "str": "str",
        "arrow-string": pd.ArrowDtype(pa.string()),
        "arrow-large_string": pd.ArrowDtype(pa.large_string()),
        "Int64-NA": "Int64",
        "boolean-NA": "boolean",
        "bool": bool,
    }
    return col.astype(as_dtype[kind]) if kind in as_dtype else col


@st.composite
def cases(draw):
    """(frame, formula, kinds by role, how to partition) of one example."""
    group_kind = draw(st.sampled_from(GROUP_KINDS))
    terms = draw(
        st.lists(
            st.tuples(st.sampled_from(TERM_KINDS), st.sampled_from(["plain", "C"])),
            max_size=2,
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = column(group_kind, N_GROUPS, False, rng)
    group_no = pd.Index(groups.astype(str).unique()).get_indexer(groups.astype(str))
    x = rng.normal(size=N_ROWS)
    effect = 2.0 * rng.normal(size=N_GROUPS + 2)
    frame = pd.DataFrame({"y": 1.0 + 0.5 * x + effect[group_no] + rng.normal(size=N_ROWS)})
    frame["x"] = x
    frame["g"] = groups
    rhs = ["x"]
    for i, (kind, role) in enumerate(terms):
        frame[f"t{i}"] = column(kind, int(rng.integers(2, 5)), role == "plain", rng)
        rhs.append(f"t{i}" if role == "plain" else f"C(t{i})")
    layout = draw(st.sampled_from(["from_pandas", "from_delayed"]))
    nparts = draw(st.integers(1, 8))
    return frame, "y ~ " + " + ".join(rhs), group_kind, terms, layout, nparts, rng


def to_dask(frame: pd.DataFrame, layout: str, nparts: int, rng, kinds):
    """The Dask collection of the shuffled rows: equal partitions, or random slices."""
    frame = frame.iloc[rng.permutation(len(frame))]
    convert = not (set(kinds) & OBJECT_KINDS)
    with dask.config.set({"dataframe.convert-string": convert}):
        if layout == "from_pandas":
            return dd.from_pandas(frame, npartitions=nparts, sort=False)
        cuts = np.sort(rng.integers(0, len(frame) + 1, nparts - 1))
        pieces = np.split(np.arange(len(frame)), cuts)
        parts = [dask.delayed(frame.iloc[p].copy()) for p in pieces]
        return dd.from_delayed(parts, meta=frame.iloc[:0], verify_meta=False)


@settings(max_examples=60, **QUICK)
@given(case=cases())
def test_same_model_from_random_frames(case):
    frame, formula, group_kind, terms, layout, nparts, rng = case
    kinds = [group_kind, *(k for k, _ in terms)]
    ddf = to_dask(frame, layout, nparts, rng, kinds)
    kw = {"groups": "g", "missing": "drop"}
    local, remote = fit_recording(frame, formula, **kw), fit_recording(ddf, formula, **kw)
    if "mixed-object" in kinds:  # keys of mixed Python types: refused
        assert local.error is not None, "mixing 5 and '5' was not refused in process"
    if local.error is not None or remote.error is not None:
        assert_same_refusal(local, remote)
        return
    assert_same_model(local, remote)
    assert local.warnings == remote.warnings
    if any(k in NUMERIC_FACTORS and role == "plain" for k, role in terms):
        assert any(w.startswith("NumericFactorWarning") for w in local.warnings), local.warnings
