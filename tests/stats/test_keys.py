"""Group keys: one dtype per kind, and statsmodels' sorted order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.errors import DataError
from dmixed.stats.keys import (
    LEARNED_KEYS,
    PARTITION_WHERE,
    check_key_kind,
    conform_keys,
    hashed_bits,
    key_dtype,
    key_values,
    learned,
    order_distinct,
    settled_keys,
    settled_kind,
    settled_labels,
    sorted_codes,
    text_codes,
)


def test_key_dtypes_per_kind():
    assert key_values(np.array([1, 2])).dtype == np.int64
    assert key_values(pd.array(["a", "b"], dtype="string")).dtype == object
    assert key_dtype(pd.CategoricalDtype(["a", "b"])) is object
    assert key_dtype(pd.CategoricalDtype([1, 2])) is np.int64
    assert key_dtype(pd.Int32Dtype()) is np.int64
    assert key_dtype(pd.BooleanDtype()) is bool
    assert key_dtype(np.dtype("datetime64[ns]")) == np.dtype("datetime64[ns]")


def test_distinct_keys_sort_as_rows_do():
    for keys in (np.array([5, -3, 9, 0]), np.array(["b", "a", "c"], dtype=object)):
        codes, labels = sorted_codes(np.concatenate([keys, keys]))
        order = order_distinct(keys)
        np.testing.assert_array_equal(order.labels, labels)
        np.testing.assert_array_equal(order.position, codes[: keys.size])
        assert not order.repeated
    assert order_distinct(np.array([1, 2, 1])).repeated
    assert order_distinct(np.array(["a", "a"], dtype=object)).repeated


def test_integer_keys_ordered_by_table_or_sort_alike():
    """Integer keys over a small range are ordered through a table (no sort), wider ones
    by ``argsort``: the same sorted labels and positions as a sort, repeats reported."""
    rng = np.random.default_rng(1)
    cases = [
        rng.permutation(1000)[:700],  # a dense range with gaps: the table
        (rng.permutation(200) - 100).astype(np.int8),  # ... negative keys, int8
        np.array([2**64 - 1, 2**64 - 5, 2**64 - 2], dtype=np.uint64),
        rng.choice(2**40, 500, replace=False),  # a wide range: the sort
    ]
    for keys in cases:
        order = order_distinct(keys)
        np.testing.assert_array_equal(order.labels, np.sort(keys))
        assert order.labels.dtype == keys.dtype
        np.testing.assert_array_equal(order.labels[order.position], keys)
        assert order.position.dtype == np.int64 and not order.repeated
        assert order_distinct(np.concatenate([keys, keys[:1]])).repeated
    empty = order_distinct(np.array([], dtype=np.int64))
    assert empty.labels.size == 0 and not empty.repeated


def test_integer_keys_numbered_as_pandas_does():
    """The table over a small range of integer keys (sorted_codes' fast path) gives
    pandas' sorted factorization, for every integer dtype and at the dtype's limits."""
    rng = np.random.default_rng(0)
    cases = [
        rng.integers(0, 50, 300),
        rng.integers(-20, 20, 300).astype(np.int8),
        np.array([-128, 127, 0, 127], dtype=np.int8),
        np.array([2**64 - 1, 2**64 - 3, 2**64 - 1], dtype=np.uint64),
        np.array([-(2**63), -(2**63) + 5, -(2**63)], dtype=np.int64),
        np.array([2**63 - 1, 2**63 - 2], dtype=np.int64),
        np.array([7], dtype=np.uint16),
        np.array([0, 10**12, 5]),  # a wide range: the hashing path
    ]
    for keys in cases:
        codes, labels = sorted_codes(keys)
        ref_codes, ref_labels = pd.factorize(pd.Series(keys), sort=True)
        np.testing.assert_array_equal(codes, ref_codes)
        assert codes.dtype == np.int64
        np.testing.assert_array_equal(labels, np.asarray(ref_labels))
        assert labels.dtype == np.asarray(ref_labels).dtype, keys.dtype


@settings(max_examples=80)
@given(
    dtype=st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint64"]),
    n_keys=st.integers(1, 60),
    repeats=st.integers(1, 4),
    at=st.sampled_from(["zero", "low", "high", "middle"]),
    drop_one=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_key_of_a_range_numbered_as_pandas_does(dtype, n_keys, repeats, at, drop_one, seed):
    """Keys that fill their range (ids ``lo … hi`` in any order, each repeated; at zero,
    at the dtype's limits or in between), with one key of the middle dropped or not
    (the running count's path): pandas' sorted factorization, and codes that never
    share memory with the keys given."""
    info = np.iinfo(np.dtype(dtype))
    n_keys = min(n_keys, int(info.max) - int(info.min) + 1)
    lo = {
        "zero": 0,
        "low": int(info.min),
        "high": int(info.max) - n_keys + 1,
        "middle": int(info.min) // 2 + int(info.max) // 2,
    }[at]
    lo = min(max(lo, int(info.min)), int(info.max) - n_keys + 1)
    values = np.arange(n_keys, dtype=object) + lo
    if drop_one and n_keys >= 3:
        values = np.delete(values, n_keys // 2)
    rng = np.random.default_rng(seed)
    keys = rng.permutation(np.repeat(np.array(values.tolist(), dtype=dtype), repeats))
    codes, labels = sorted_codes(keys)
    ref_codes, ref_labels = pd.factorize(pd.Series(keys), sort=True)
    np.testing.assert_array_equal(codes, ref_codes)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(labels, np.asarray(ref_labels))
    assert labels.dtype == keys.dtype
    assert not np.shares_memory(codes, keys)
    assert codes.flags.writeable and codes.flags.c_contiguous  # as bincount reads them


def test_int64_keys_from_zero_are_their_own_codes_copied():
    """Ids 0 … G−1 as int64 (in any order) are their codes, a copy: a caller's group
    column is never changed through the codes."""
    keys = np.array([2, 0, 1, 1, 2, 0], dtype=np.int64)
    codes, labels = sorted_codes(keys)
    np.testing.assert_array_equal(codes, keys)
    np.testing.assert_array_equal(labels, [0, 1, 2])
    codes[0] = 1
    np.testing.assert_array_equal(keys, [2, 0, 1, 1, 2, 0])


def test_conform_keys_casts_numbers_and_refuses_another_kind():
    """Numbers of another numeric dtype are cast; text where the collection holds
    numbers, or numbers where it holds text, is refused naming the column."""
    ints = key_values(np.array([3, 1, 3]))
    out = conform_keys(ints, np.float64, "g")
    assert out.dtype == np.float64 and out.tolist() == [3.0, 1.0, 3.0]
    assert conform_keys(ints, np.int64, "g") is ints
    text = key_values(np.array(["3", "1"]))
    assert conform_keys(text, object, "g") is text
    with pytest.raises(DataError, match=r"'g' holds text .* holds numbers \(int64\)"):
        conform_keys(text, np.int64, "g")
    with pytest.raises(DataError, match=r"'g' holds numbers \(int64\) .* holds text"):
        conform_keys(ints, object, "g")


def test_a_hint_replaces_the_closing_advice_and_the_kinds_are_kept():
    """Only a caller that knows why the kinds differ words what to do instead; the
    error carries the two dtypes for such a caller."""
    ints = key_values(np.array([3, 1, 3]))
    with pytest.raises(DataError) as plain:
        conform_keys(ints, object, "g")
    assert str(plain.value).endswith("give the column one type in every file")
    assert "categorize" not in str(plain.value)
    assert plain.value.key_kinds == (np.dtype(np.int64), np.dtype(object))
    with pytest.raises(DataError) as hinted:
        check_key_kind(ints.dtype, object, "g", PARTITION_WHERE, hint="do this instead")
    assert str(hinted.value).endswith("two groups, or two groups one; do this instead")
    assert "every file" not in str(hinted.value)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ((np.int64(1), "a"), (1, "a")),
        ((1.0, "a"), (1, "a")),
        ((True, np.str_("b")), (1, "b")),
        (((np.float32(2.5),), "a"), ((2.5,), "a")),
    ],
)
def test_equal_object_keys_get_one_spelling(one, other):
    """Keys that compare equal (one group for pandas) come out spelled alike, so a hash
    of their text (pandas' ``hash_array`` of objects) puts them in one bucket."""
    assert one == other
    keys = key_values(pd.Series([one, other, "z"], dtype=object))
    assert keys.dtype == object and keys[0] == keys[1] and str(keys[0]) == str(keys[1])
    hashed = pd.util.hash_array(keys, categorize=False)
    assert hashed[0] == hashed[1]
    assert keys[2] == "z"


def test_hashed_bits_spell_equal_floats_alike():
    """Float keys equal as pandas groups them (``-0.0`` and ``0.0``; every NaN) have
    one bit pattern; other floats keep theirs, integers and objects are returned."""
    nan_payload = np.array([0x7FF8000000000001], dtype=np.uint64).view(np.float64)[0]
    keys = np.array([0.0, -0.0, np.nan, -np.nan, nan_payload, 1.5, -2.0])
    bits = hashed_bits(keys)
    assert bits.dtype == np.uint64
    assert bits[0] == bits[1] and len(set(bits[2:5].tolist())) == 1
    np.testing.assert_array_equal(bits[5:], keys[5:].view(np.uint64))
    assert np.signbit(keys[1])  # the caller's keys untouched
    ints = np.arange(3)
    assert hashed_bits(ints) is ints


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(0, 300),
    dtype=st.sampled_from(["int64", "int32", "int8", "uint64", "uint16"]),
    spread=st.sampled_from([1, 2, 5, 10**6]),  # every id, gaps, a wide range: the sort
    offset=st.sampled_from([0, 1, -50, 10**12]),
    repeat=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_owned_keys_order_as_keys_not_owned(n, dtype, spread, offset, repeat, seed):
    """``order_distinct(keys, owned=True)`` (the keys' memory reused) gives the labels,
    positions and repeats of ``order_distinct(keys)``, value for value and dtype for
    dtype, whatever the keys' range and type."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    span = min(max(n * spread, 1), int(info.max) - int(info.min))
    n = min(n, span)
    base = int(np.clip(offset, info.min, info.max - span))
    keys = (rng.choice(span, n, replace=False) + base).astype(dtype)
    if repeat and n:
        keys = np.concatenate([keys, keys[-1:]])
    want = order_distinct(keys.copy())
    got = order_distinct(keys.copy(), owned=True)
    assert got.repeated == want.repeated
    for a, b in ((got.labels, want.labels), (got.position, want.position)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    if not want.repeated:
        np.testing.assert_array_equal(want.labels[want.position], keys)


def test_learned_keys_keep_numbers_in_their_numeric_dtype():
    """Where the collection's key kind is learned from the data (a categorical of unknown
    categories), numbers keep their own numeric dtype (never objects); text as it is;
    booleans refused as any kind other than text (with the kinds kept)."""
    assert learned(LEARNED_KEYS) and LEARNED_KEYS == np.dtype(object)
    assert not learned(np.dtype(object)) and not learned(np.int64) and not learned(object)
    ints = key_values(np.array([3, 1, 3]))
    assert conform_keys(ints, LEARNED_KEYS, "g") is ints and ints.dtype == np.int64
    floats = key_values(np.array([3.0, 0.5]))
    assert conform_keys(floats, LEARNED_KEYS, "g") is floats and floats.dtype == np.float64
    text = key_values(np.array(["3", "1"]))
    assert conform_keys(text, LEARNED_KEYS, "g") is text
    with pytest.raises(DataError) as refused:
        conform_keys(key_values(np.array([True, False])), LEARNED_KEYS, "g")
    assert refused.value.key_kinds == (np.dtype(bool), np.dtype(object))


def test_settled_kind_of_integers_and_floats_is_float64():
    """Keys of a learned kind meeting: integers with floats float64 (either way round),
    one kind as it is, text with numbers refused."""
    i8, f8, obj = np.dtype(np.int64), np.dtype(np.float64), np.dtype(object)
    assert settled_kind(i8, np.array([1, 2]), "g") == i8
    assert settled_kind(i8, np.array([1.5]), "g") == f8
    assert settled_kind(f8, np.array([1, 2]), "g") == f8
    assert settled_kind(obj, np.array(["a"], dtype=object), "g") == obj
    for held, keys in ((i8, np.array(["a"], dtype=object)), (obj, np.array([1]))):
        with pytest.raises(DataError, match="'g' holds"):
            settled_kind(held, keys, "g")


def test_settled_labels_give_the_values_kind():
    """The labels of a learned pass in the dtype of the values' keys: integers int64
    (uint64 past its range), integers with floats float64, text as it is; text with
    numbers refused."""
    got = settled_labels(np.array([1, 5, 9], dtype=object), "g")
    assert got.dtype == np.int64 and got.tolist() == [1, 5, 9]
    got = settled_labels(np.array([2**63, 2**64 - 1], dtype=object), "g")
    assert got.dtype == np.uint64 and got.tolist() == [2**63, 2**64 - 1]
    got = settled_labels(np.array([1, 2.5, 3.0], dtype=object), "g")
    assert got.dtype == np.float64 and got.tolist() == [1.0, 2.5, 3.0]
    text = np.array(["a", "b"], dtype=object)
    assert settled_labels(text, "g") is text
    ints = np.array([1, 2])
    assert settled_labels(ints, "g") is ints
    for mixed in ([1, "a"], [1.5, "a"]):
        with pytest.raises(DataError, match=r"'g' holds numbers \((int64|float64)\) in some "):
            settled_labels(np.array(mixed, dtype=object), "g")


def test_settled_keys_cast_integers_to_float64_only_where_exact():
    """Integers within ±2**53 as float64; beyond, refused naming the column; int64 with
    uint64 settle as float64."""
    f8 = np.dtype(np.float64)
    assert settled_kind(np.dtype(np.int64), np.array([1], dtype=np.uint64), "g") == f8
    np.testing.assert_array_equal(
        settled_keys(np.array([-(2**53), 2**53]), f8, "g"), [-(2.0**53), 2.0**53]
    )
    for keys in (np.array([2**53 + 1]), np.array([-(2**53) - 1]), np.array([2**63], np.uint64)):
        with pytest.raises(DataError, match="the group column 'g' holds integers beyond"):
            settled_keys(keys, f8, "g")


def test_learned_object_keys_of_several_types_are_refused_as_the_plain_column():
    """Object keys of ints and text under a learned kind: the plain column's refusal;
    one type (text, tuples) kept."""
    with pytest.raises(
        DataError, match=r"column 'g' holds values of several Python types \(int, str\)"
    ):
        conform_keys(np.array([1, "1"], dtype=object), LEARNED_KEYS, "g")
    with pytest.raises(DataError, match=r"several Python types \(float, str\)"):
        conform_keys(np.array([1.5, "a"], dtype=object), LEARNED_KEYS, "g")
    text = np.array(["a", "b"], dtype=object)
    assert conform_keys(text, LEARNED_KEYS, "g") is text
    pairs = np.empty(2, dtype=object)
    pairs[:] = [(1, "a"), (2, "b")]
    assert conform_keys(pairs, LEARNED_KEYS, "g") is pairs


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 400),
    dtype=st.sampled_from(["int64", "int32", "int8", "uint64", "uint32", "uint8"]),
    gaps=st.sampled_from([1, 2, 3]),  # the range's share left out: the table's running count
    offset=st.sampled_from([0, 1, -50, 2**40]),
    owned=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_integer_keys_over_a_range_with_gaps_order_as_a_sort(n, dtype, gaps, offset, owned, seed):
    """Keys over a small range with ids missing (the table's running count, written in
    place) get the sorted labels of a sort in the keys' dtype and int64 positions, the
    keys not owned left as they were."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    span = min(n * gaps, int(info.max) - int(info.min))
    n = max(1, min(n, span - 1))  # at least one id of the range missing
    base = int(np.clip(offset, info.min, info.max - span))
    keys = (rng.choice(span, n, replace=False) + base).astype(dtype)
    given_keys = keys.copy()
    order = order_distinct(keys, owned=owned)
    assert order.labels.dtype == keys.dtype and order.position.dtype == np.int64
    np.testing.assert_array_equal(order.labels, np.sort(given_keys))
    np.testing.assert_array_equal(order.position, np.argsort(np.argsort(given_keys)))
    assert not order.repeated
    if not owned:
        np.testing.assert_array_equal(keys, given_keys)


@pytest.mark.parametrize("owned", [True, False])
def test_owned_keys_over_a_range_with_gaps_take_only_the_table_and_the_labels(owned):
    """The table's running count is made in place, and owned int64 keys take their codes
    over their offsets: beyond the keys and the result, the driver's assembly holds the
    table of the range and its bool mask at most (fresh memory on every refit at 2M
    groups)."""
    import tracemalloc

    rng = np.random.default_rng(5)
    n, span = 1_000_000, 1_100_000
    keys = rng.choice(span, n, replace=False).astype(np.int64) + 7
    given_keys = keys.copy()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        order = order_distinct(keys, owned=owned)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    table = 9 * (span + 1)  # int64 running count and the bool mask of present keys
    result = 8 * n * (1 if owned else 2)  # labels, and positions where not owned
    assert current - start <= result + (1 << 20)
    assert peak - start <= table + result + (1 << 20)
    assert not order.repeated
    np.testing.assert_array_equal(order.labels, np.sort(given_keys))
    np.testing.assert_array_equal(order.position, np.argsort(np.argsort(given_keys)))


def test_owned_read_only_keys_are_ordered_not_overwritten():
    keys = np.array([3, 0, 2, 5, 0], dtype=np.int64)
    keys.flags.writeable = False
    before = keys.copy()
    got = order_distinct(keys, owned=True)
    want = order_distinct(before.copy())
    np.testing.assert_array_equal(got.position, want.position)
    np.testing.assert_array_equal(keys, before)


def test_owned_read_only_keys_off_zero_are_ordered_not_overwritten():
    keys = np.array([13, 10, 12, 15, 10], dtype=np.int64)
    keys.flags.writeable = False
    got = order_distinct(keys, owned=True)
    want = order_distinct(keys.copy())
    np.testing.assert_array_equal(got.position, want.position)
    np.testing.assert_array_equal(keys, [13, 10, 12, 15, 10])


#: text keys whose order differs by width or by plane: Arrow's byte order must be Python's
TEXT_KEYS = ["b", "a", "", "é", "\uffff", "\U0001f600", "a", "Z", "z", "ä", "b"]
TEXT_DTYPES = ["str", pd.ArrowDtype(pa.large_string())]


@pytest.mark.parametrize("dtype", TEXT_DTYPES, ids=["str", "arrow"])
def test_text_codes_are_sorted_codes_of_the_keys_as_objects(dtype):
    column = pd.Series(TEXT_KEYS, dtype=dtype)
    codes, labels = text_codes(column)
    want_codes, want_labels = sorted_codes(np.array(TEXT_KEYS, dtype=object))
    assert codes.dtype == np.int64 and labels.dtype == object
    np.testing.assert_array_equal(codes, want_codes)
    assert labels.tolist() == want_labels.tolist() == sorted(set(TEXT_KEYS))
    assert all(type(v) is str for v in labels)


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(["a", None, "b"], dtype="str"),  # missing: numbered as before
        pd.Series(["b", "a"], dtype=object),  # a Python object a row: numbered as before
        pd.Series(["a", None, "b"], dtype=object),
        pd.Series(["a", np.nan], dtype=object),
        pd.Series(["a", 1], dtype=object),  # several types: refused or classed as before
        pd.Series([b"a", b"b"], dtype=object),
        pd.Series([1, 2]),
        pd.Series(pd.Categorical(["a", None], categories=["a", "b"])),
        pd.Series(pd.Categorical([2, 1])),
        pd.Series([], dtype="str"),
    ],
)
def test_text_codes_leave_other_columns_to_sorted_codes(column):
    assert text_codes(column) is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=4),
        min_size=1,
        max_size=30,
    )
)
def test_text_codes_match_sorted_codes_for_any_text(keys):
    want_codes, want_labels = sorted_codes(np.array(keys, dtype=object))
    for column in (pd.Series(keys, dtype="str"), pd.Series(keys, dtype="category")):
        codes, labels = text_codes(column)
        np.testing.assert_array_equal(codes, want_codes)
        assert labels.tolist() == want_labels.tolist()


def test_text_codes_of_a_column_read_in_chunks():
    column = pd.concat(
        [pd.Series(["b", "é"], dtype="str"), pd.Series(["a", "b"], dtype="str")],
        ignore_index=True,
    )
    codes, labels = text_codes(column)
    np.testing.assert_array_equal(codes, [1, 2, 0, 1])
    assert labels.tolist() == ["a", "b", "é"]


def _arrow_dictionary(*chunks):
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array(chunks)))


@pytest.mark.parametrize(
    "column",
    [
        # categories no row holds, in an order that is not the keys' order
        pd.Series(pd.Categorical(TEXT_KEYS, categories=["zz", *sorted(set(TEXT_KEYS))[::-1]])),
        pd.Series(TEXT_KEYS, dtype="str").astype("category"),
        pd.Series(pd.Categorical(TEXT_KEYS, categories=sorted(set(TEXT_KEYS)), ordered=True)),
        # Arrow dictionaries: one a chunk; in the second an entry twice (both used) and
        # one no row holds
        _arrow_dictionary(
            pa.array(TEXT_KEYS[:4]).dictionary_encode(),
            pa.DictionaryArray.from_arrays(
                pa.array([0, 1, 2, 3, 4, 5, 6, 8], "int32"),
                pa.array([*TEXT_KEYS[4:], "unused", TEXT_KEYS[4]]),
            ),
        ),
    ],
    ids=["categories-unused", "str-categories", "ordered", "arrow-dictionary"],
)
def test_text_codes_of_categorical_keys_are_sorted_codes_of_their_values(column):
    keys = column.astype(object).to_numpy()
    codes, labels = text_codes(column)
    want_codes, want_labels = sorted_codes(keys)
    np.testing.assert_array_equal(codes, want_codes)
    assert labels.tolist() == want_labels.tolist()
    assert labels.tolist() == sorted(set(keys))
