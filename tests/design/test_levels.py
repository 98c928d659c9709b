"""Levels found as arrays (integers), by Arrow (text) or from codes (categoricals), and
values numbered among sorted levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.design.levels import (
    PACKED_TEXT_BYTES,
    UNKNOWN_CODE,
    categorical_codes,
    categorical_levels,
    coded_integers,
    coded_text,
    hashed_coded_text,
    level_codes,
    level_positions,
    packed_coded_text,
    present_levels,
    sorted_integers,
    sorted_levels,
    text_array,
    text_order,
    unique_values,
)
from tests._synth import QUICK


def _no_index():
    raise AssertionError("the levels' object index was asked for")


DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64]


@settings(max_examples=60, **QUICK)
@given(
    st.sampled_from(DTYPES),
    st.integers(0, 200),
    st.sampled_from([3, 300, 10**6]),  # a narrow range (bitmap) or a wide one (unique)
    st.integers(0, 2**32),
)
def test_sorted_integers_are_the_sorted_levels(dtype, n, spread, seed):
    """``sorted_integers(v).tolist()`` is ``sorted_levels`` of the values as Python ints,
    for every integer dtype, at the ends of its range too (no overflow of offsets)."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    starts = [int(info.min), 0, int(info.max) - min(spread, int(info.max) - int(info.min))]
    low = starts[int(rng.integers(0, 3))]
    high = min(low + spread, info.max)
    values = rng.integers(low, high, n, dtype=dtype, endpoint=True)
    found = sorted_integers(values)
    assert found.tolist() == sorted_levels(values.tolist())
    levels, codes = coded_integers(values)  # (codes where found by the bitmap)
    assert levels.tolist() == found.tolist()
    if codes is not None:
        assert codes.dtype == np.int64
        assert codes.tolist() == level_positions(levels.astype(values.dtype), values).tolist()


def test_sorted_integers_beyond_int64():
    values = np.array([2**64 - 1, 2**63 + 5, 2**64 - 1, 3], dtype=np.uint64)
    assert sorted_integers(values).tolist() == [3, 2**63 + 5, 2**64 - 1]


@settings(max_examples=60, **QUICK)
@given(
    st.sampled_from(["int", "contiguous", "wide", "float", "bool"]),
    st.integers(1, 50),
    st.integers(0, 300),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_level_positions_are_the_search_and_membership(kind, n_levels, n, unknown, seed):
    """Each value's position among the sorted levels (``searchsorted``) where it is a
    level, ``UNKNOWN_CODE`` where not (``isin``), whichever way the positions are found:
    levels that are every integer of a range, integers of a narrow range (a table),
    integers of a wide range, floats and booleans (a search)."""
    rng = np.random.default_rng(seed)
    if kind == "contiguous":
        levels = np.arange(n_levels, dtype=np.int64) - 7
    elif kind == "int":
        levels = np.unique(rng.integers(-40, 60, n_levels))
    elif kind == "wide":
        levels = np.unique(rng.integers(-(2**50), 2**50, n_levels))
    elif kind == "float":
        levels = np.unique(rng.standard_normal(n_levels).round(2))
    else:
        levels = np.array([False, True][: min(n_levels, 2)])
    values = levels[rng.integers(0, levels.size, n)]
    if unknown and n:
        other = np.array([levels.max() + 1, levels.min() - 1], dtype=levels.dtype)
        if kind in ("int", "float"):
            other = np.r_[other, (levels[:1] + levels[-1:]) / 2 + 0.5].astype(levels.dtype)
        values[rng.random(n) < 0.2] = rng.choice(other)
    got = level_positions(levels, values)
    known = np.isin(values, levels)
    want = np.where(known, np.searchsorted(levels, values), UNKNOWN_CODE)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_level_positions_of_no_levels_or_values(dtype):
    levels = np.array([1, 5], dtype=dtype)
    assert level_positions(levels, np.zeros(0, dtype=dtype)).size == 0
    np.testing.assert_array_equal(
        level_positions(levels[:0], np.array([1], dtype=dtype)), [UNKNOWN_CODE]
    )


TEXT_DTYPES = {
    "str": lambda v: pd.Series(pd.array(v, dtype="str")),
    "string[pyarrow]": lambda v: pd.Series(pd.array(v, dtype="string[pyarrow]")),
    "arrow string": lambda v: pd.Series(pd.array(v, dtype=pd.ArrowDtype(pa.string()))),
    "arrow large_string": lambda v: pd.Series(pd.array(v, dtype=pd.ArrowDtype(pa.large_string()))),
    "chunked": lambda v: pd.Series(
        pd.arrays.ArrowExtensionArray(
            pa.chunked_array(
                [pa.array(v[: len(v) // 2], pa.string()), pa.array(v[len(v) // 2 :], pa.string())]
            )
        )
    ),
}


@settings(max_examples=60, **QUICK)
@given(
    st.sampled_from(sorted(TEXT_DTYPES)),
    st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=40),
    st.lists(st.text(max_size=4), max_size=10),
)
def test_text_levels_found_and_numbered_by_arrow_as_by_python(dtype, values, extra):
    """Arrow-backed text: ``coded_text``'s levels are ``sorted_levels`` of the distinct
    values (Python's order of any code points, missing values left out; of the rows
    kept, where some are) and its codes Python's look-up of the values among them (-1
    missing, -2 a value only in rows not kept); the codes looked up by Arrow among other
    levels equal those of Python's look-up, missing (-1) and unknown (-2) included."""
    s = TEXT_DTYPES[dtype](values)
    coded = coded_text(s)
    found = coded.levels.to_pylist()
    assert found == sorted_levels(unique_values(s))
    assert coded.codes.dtype == np.int64
    assert coded.codes.tolist() == level_codes(s, found).tolist()
    levels = sorted(set(found) | set(extra[: len(extra) // 2]))
    # (no object index of the levels: none text, without levels)
    arrow = level_codes(s, levels, _no_index if levels else None, lambda: text_array(levels))
    assert arrow.tolist() == level_codes(s, levels).tolist()
    kept = np.arange(len(s)) % 3 != 1  # the levels of the rows kept; every row coded
    coded = coded_text(s, kept)
    found = coded.levels.to_pylist()
    assert found == sorted_levels(unique_values(s[kept]))
    assert coded.codes.tolist() == level_codes(s, found).tolist()


@settings(max_examples=200, **QUICK)
@given(
    st.sampled_from(["", "s", "é", "student-", "\x00", "z" * 12]),
    st.integers(0, 17),
    st.lists(st.one_of(st.none(), st.text("ab\x00é€𝄞z", max_size=6)), max_size=40),
    st.sampled_from([pa.string(), pa.large_string()]),
    st.booleans(),
    st.booleans(),
)
def test_packed_text_codes_equal_hashed(prefix, width, values, type_, sliced, with_kept):
    """``packed_coded_text`` (values of at most 16 bytes as numbers, sorted in one word
    each or in two) gives ``hashed_coded_text``'s levels and codes, and is taken for
    every such column (None only where a value is longer): values of one length (read
    at a stride) or not, shorter and longer than 8 bytes, shared prefixes, NUL bytes,
    non-ASCII, empty text, missing values, slices, chunks, the levels of the rows
    kept."""
    text = [None if v is None else prefix + (v.ljust(width, "a") if width else v) for v in values]
    arr = pa.array(text, type_)
    if sliced and len(arr) > 1:
        arr = arr.slice(1)
    chunked = pa.chunked_array([arr[: len(arr) // 2], arr[len(arr) // 2 :]], type_)
    kept = np.arange(len(arr)) % 3 != 1 if with_kept else None
    packed = packed_coded_text(chunked, kept)
    hashed = hashed_coded_text(chunked, kept)
    sizes = [len(v.encode()) for v in arr.to_pylist() if v is not None]
    assert (packed is None) == (not sizes or max(sizes) > PACKED_TEXT_BYTES)
    if packed is not None:
        assert packed.levels.type == hashed.levels.type
        assert packed.levels.to_pylist() == hashed.levels.to_pylist()
        assert packed.codes.dtype == np.int64
        assert packed.codes.tolist() == hashed.codes.tolist()


@pytest.mark.parametrize(
    ("values", "sorts"),
    [
        (["student-10002", "student-10000", "student-10002", "student-32210"], 0),
        ([f"student-{i:05d}" for i in range(40)] + ["student-1", None, "student-"], 0),
        (["\x00" * 16, "z" * 16, "\x00" * 15 + "a", "z" * 16, "m" * 9, "m" * 9 + "\x00"], 1),
        (["\x00" * 8, "\xff" * 4, "\x00" * 8, "a"], 1),
    ],
)
def test_packed_text_in_one_word_or_two(values, sorts, monkeypatch):
    """Values of 9–16 bytes that differ only in their last bytes are sorted in one word
    (no ``lexsort``); values whose numbers span more than a word, with the length and
    position, in two (one ``lexsort``); both as ``hashed_coded_text`` codes them."""
    calls = []
    lexsort = np.lexsort
    monkeypatch.setattr(np, "lexsort", lambda keys: calls.append(1) or lexsort(keys))
    chunked = pa.chunked_array([pa.array(values, pa.string())])
    packed = packed_coded_text(chunked)
    assert len(calls) == sorts
    hashed = hashed_coded_text(chunked)
    assert packed.levels.to_pylist() == hashed.levels.to_pylist()
    assert packed.codes.tolist() == hashed.codes.tolist()


def test_text_of_chunks_with_their_own_dictionaries():
    """Chunks whose dictionary encodings differ (one chunk all missing) are coded
    together."""
    chunked = pa.chunked_array([pa.array([None, None], pa.string()), pa.array(["b", "a", "b"])])
    coded = coded_text(pd.Series(pd.arrays.ArrowExtensionArray(chunked)))
    assert coded.levels.to_pylist() == ["a", "b"]
    assert coded.codes.tolist() == [-1, -1, 1, 0, 1]


def test_text_of_other_columns_is_not_found_by_arrow():
    """Columns that are not Arrow text keep Python's paths (None), and levels that are not
    all text are looked up by Python (``text_array`` None)."""
    assert coded_text(pd.Series(np.array(["b", "a"], dtype=object), dtype=object)) is None
    assert coded_text(pd.Series([1, 2])) is None
    assert coded_text(pd.Series(pd.Categorical(["b", "a"]))) is None
    assert text_array([1, "a"]) is None and text_array([1, 2]) is None
    s = pd.Series(pd.array(["a", "b", None], dtype="str"))
    assert level_codes(s, [1, "a"], text=lambda: text_array([1, "a"])).tolist() == [1, -2, -1]


@settings(max_examples=60, **QUICK)
@given(
    st.sampled_from(["int ascending", "int declared", "float", "text"]),
    st.booleans(),
    st.integers(0, 60),
    st.integers(0, 2**32),
)
def test_present_levels_are_the_categorical_levels(kind, ordered, n, seed):
    """The levels of a pandas categorical found from its codes (``present_levels``) and
    its categories present (``unique_values``) are those of the sort and search they
    replace: the categories present (``numpy.unique`` of the codes) through
    ``categorical_levels`` — for ascending integers (no sort), integers declared in any
    order, floats and text, ordered or not, unused categories and missing values."""
    rng = np.random.default_rng(seed)
    pool = {
        "int ascending": np.arange(-5, 25) * 3,
        "int declared": rng.permutation(np.arange(-5, 25) * 3),
        "float": rng.permutation(np.linspace(-2, 2, 30)),
        "text": np.array([f"v{i}" for i in rng.permutation(30)], dtype=object),
    }[kind]
    declared = pool[: int(rng.integers(1, 31))]
    codes = rng.integers(-1, len(declared), n)
    s = pd.Series(pd.Categorical.from_codes(codes, categories=declared, ordered=ordered))
    present = np.unique(codes[codes >= 0])
    expected = categorical_levels(s.dtype, declared[present].tolist())
    assert present_levels(s) == expected
    assert unique_values(s) == s.dtype.categories[present].tolist()


@pytest.mark.parametrize(
    "categories, values",
    [
        ([3, 10, 20], [20, 3, None, 10]),  # every category present, ascending
        ([20, 3, 10], [20, 3, 10, 3]),  # declared out of order (levels sorted)
        (["b", "a", "c"], ["c", None, "a", "b"]),  # text, declared order
        ([3, 10, 20], [20, 3, 3]),  # a category absent
    ],
)
def test_categorical_codes_are_those_of_the_look_up(categories, values):
    """A categorical's own codes are its level codes where its levels are its categories
    in declared order (else None: looked up)."""
    s = pd.Series(pd.Categorical(values, categories=categories))
    levels = present_levels(s)
    codes = categorical_codes(s, levels)
    index = pd.Index(np.asarray(levels, dtype=object))
    pos, raw = index.get_indexer(s.cat.categories.astype(object)), s.cat.codes.to_numpy()
    want = np.where(raw < 0, -1, np.where(pos[raw] < 0, UNKNOWN_CODE, pos[raw]))
    if codes is None:
        assert levels != categories
    else:  # (the look-up's object index not made)
        assert codes.dtype == np.int64 and codes.tolist() == want.tolist()
        assert level_codes(s, levels, _no_index).tolist() == want.tolist()
    assert level_codes(s, levels).tolist() == want.tolist()


@settings(max_examples=80, **QUICK)
@given(
    st.sampled_from(["", "s", "pre-", "é"]),
    st.lists(st.text(max_size=12), max_size=40, unique=True),
    st.sampled_from([pa.string(), pa.large_string()]),
    st.booleans(),
)
def test_text_order_is_pythons_order(prefix, values, type_, sliced):
    """``text_order`` sorts distinct text as Python does (any code points, NUL bytes,
    a prefix shared by every value, an Arrow slice), or gives None (values too long)."""
    arr = pa.array([prefix + v for v in values], type_)
    if sliced and len(arr) > 1:
        arr = arr.slice(1)
    order = text_order(arr)
    if order is not None:
        assert arr.take(order).to_pylist() == sorted(arr.to_pylist())
