"""Adding partial statistics by group key: the map-side combine of the Dask data pass
(group keys → columns of one accumulator) and the combine between tasks (no cluster)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.design import DesignMatrices
from dmixed.engines.dask import blocks, combine
from dmixed.engines.dask.blocks import block_dense, combined_block, to_block
from dmixed.engines.dask.combine import GroupAccumulator
from dmixed.errors import DataError
from dmixed.kernels.term_table import TermRows
from dmixed.stats import keys as stats_keys
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import Standardization


def _rows(keys: np.ndarray, rng: np.random.Generator) -> tuple[DesignMatrices, np.ndarray]:
    n = keys.size
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    dm = DesignMatrices(
        endog=rng.normal(size=n),
        exog=x,
        exog_re=x.copy(),
        vc_cols=[],
        vc_vals=[],
        groups=keys,
        weights=None,
        n_dropped=0,
    )
    return dm, x.copy()


def _expected(keys: np.ndarray, dms: list) -> pd.DataFrame:
    """Packed statistics of all rows at once, by group key."""
    codes, uniq = pd.factorize(keys)
    y = np.concatenate([d.endog for d in dms])
    x = np.concatenate([d.exog for d in dms])
    packed, _ = kernels.accumulate_packed(codes, len(uniq), y, x, x)
    return pd.DataFrame(packed, index=pd.Index(np.asarray(uniq, dtype=keys.dtype)))


def _accumulated(acc: GroupAccumulator, n_buckets: int) -> pd.DataFrame:
    parts = acc.result(n_buckets)
    keys = np.concatenate([k for k, _ in parts])
    values = np.concatenate([v for _, v in parts])
    assert len(set(keys.tolist())) == keys.size  # every group once, in one bucket
    return pd.DataFrame(values, index=pd.Index(keys))


def _assert_one_pass(acc: GroupAccumulator, batches: list, rng, n_buckets: int) -> None:
    """Add the batches of keys (with random rows) into ``acc``; its partial equals the
    statistics of all rows at once."""
    dms = []
    for keys in batches:
        dm, zt = _rows(keys, rng)
        acc.add(keys, dm, zt)
        dms.append(dm)
    got = _accumulated(acc, n_buckets)
    want = _expected(np.concatenate(batches), dms)
    got = got.loc[want.index]
    assert len(got) == len(want)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-12)


KEYS = st.sampled_from(
    ["dense", "offset", "negative", "sparse", "string", "jumps", "unsigned", "small-unsigned"]
)


def _draw_keys(kind: str, rng: np.random.Generator, n: int, step: int) -> np.ndarray:
    if kind == "dense":
        return rng.integers(0, 40, n)
    if kind == "offset":  # ranges that move up and down from one partition to the next
        return rng.integers(0, 30, n) + 1000 + 37 * ((-1) ** step) * step
    if kind == "negative":
        return rng.integers(-50, 5, n)
    if kind == "sparse":  # far too wide for a range: the hash table
        return rng.choice(np.array([3, 2**40, -(2**50), 7 * 10**12]), n)
    if kind == "unsigned":  # ids above 2**63: neither wrapped nor a range
        return rng.choice(np.array([2**63 + 5, 2**64 - 1, 7, 2**63], dtype=np.uint64), n)
    if kind == "small-unsigned":
        return rng.integers(0, 40, n).astype(np.uint64)
    if kind == "jumps":  # a range first, then a key that makes the range too wide
        return rng.integers(0, 20, n) + (0 if step < 2 else 10**9)
    return np.array([f"k{v}" for v in rng.integers(0, 30, n)], dtype=object)


@settings(max_examples=60)
@given(
    kind=KEYS,
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=6),
    n_buckets=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_accumulator_equals_one_pass_over_all_rows(kind, sizes, n_buckets, seed):
    rng = np.random.default_rng(seed)
    key_dtype = {"string": object, "unsigned": np.uint64, "small-unsigned": np.uint64}.get(
        kind, np.int64
    )
    acc = GroupAccumulator(kernels.packed_width(2, 3), key_dtype)
    batches = [_draw_keys(kind, rng, n, step) for step, n in enumerate(sizes)]
    _assert_one_pass(acc, batches, rng, n_buckets)


@settings(max_examples=30)
@given(
    kind=KEYS,
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=6),
    n_buckets=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_accumulator_with_the_compiled_table_equals_one_pass(kind, sizes, n_buckets, seed):
    # the rows go to the compiled table of terms, flushed into the accumulator whenever
    # its columns move (growth, range → lookup → hash table) and at the result
    rng = np.random.default_rng(seed)
    key_dtype = {"string": object, "unsigned": np.uint64, "small-unsigned": np.uint64}.get(
        kind, np.int64
    )
    acc = GroupAccumulator(kernels.packed_width(2, 3), key_dtype)
    acc.MIN_RANGE = 16
    batches = [_draw_keys(kind, rng, n, step) for step, n in enumerate(sizes)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        _assert_one_pass(acc, batches, rng, n_buckets)


@settings(max_examples=30)
@given(
    kind=st.sampled_from(["dense", "offset", "negative", "sparse", "jumps"]),
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=6),
    n_buckets=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_raw_columns_swept_by_key_equal_their_codes_sweep(kind, sizes, n_buckets, seed):
    """Raw columns of int64 keys, swept less the range's base (the range grown from
    the keys' range alone), give the partial the sweep of their codes gives, bit for
    bit: whatever growth, lookup or hash table the keys lead to."""
    from dmixed.kernels.term_table import ColumnPlan

    rng = np.random.default_rng(seed)
    plan = ColumnPlan(x_of=(-1, 0, 1, 2), z_of=(-1, 0))
    std = Standardization.choose(
        rng.normal(size=50), np.column_stack([np.ones(50), rng.normal(size=(50, 2))]),
        np.column_stack([np.ones(50), rng.normal(size=50)]), (0, 0), [],
    )  # fmt: skip
    batches = [
        (_draw_keys(kind, rng, n, step), [5.0 + rng.normal(size=n) for _ in range(3)])
        for step, n in enumerate(sizes)
    ]
    out = []
    for keyed in (True, False):
        acc = GroupAccumulator(kernels.packed_width(2, 4), np.int64)
        acc.MIN_RANGE = 16
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DMIXED_KERNELS", "numba")
            if not keyed:  # the codes' way: no range pass, every key coded first
                mp.setattr(combine, "key_range", lambda keys: None)
            sums = [acc.add_columns(keys, cols, plan, std) for keys, cols in batches]
            parts = [(k, np.asarray(v)) for k, v, *_ in acc.result(n_buckets)]
        out.append((sums, parts))
    (sums, parts), (want_sums, want_parts) = out
    for got, want in zip(sums, want_sums, strict=True):
        assert (got is None) == (want is None)  # a random slope constant within groups
        if got is None:
            continue
        assert got[0] == want[0]
        for name in want[1]:
            np.testing.assert_array_equal(got[1][name], want[1][name])
    for (keys, values), (want_keys, want_values) in zip(parts, want_parts, strict=True):
        np.testing.assert_array_equal(keys, want_keys)
        np.testing.assert_array_equal(values, want_values)


def test_accumulator_after_a_plan_change_in_the_compiled_table(monkeypatch):
    # the first batch's slope is all ones (another product plan): its sums go into the
    # accumulator at the change, and the partial is taken from both
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    rng = np.random.default_rng(4)
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
    batches = [rng.integers(0, 30, 50), rng.integers(0, 30, 60)]
    dms = []
    for step, keys in enumerate(batches):
        dm, zt = _rows(keys, rng)
        if step == 0:
            dm.exog[:, 1] = zt[:, 1] = 1.0
        acc.add(keys, dm, zt)
        dms.append(dm)
    assert acc.terms.flushed
    got = _accumulated(acc, 2)
    want = _expected(np.concatenate(batches), dms)
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-12)


def test_dense_integer_keys_use_a_range_and_wide_ones_a_hash_table():
    rng = np.random.default_rng(1)
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
    keys = rng.integers(10_000, 20_000, 5_000)
    acc.add(keys, *_rows(keys, rng))
    assert acc.ranged  # no hashing for dense integer ids
    assert acc.acc.shape[1] < 2 * 10_000
    keys = np.array([2**45, 10_001])
    acc.add(keys, *_rows(keys, rng))
    assert not acc.ranged  # a range up to 2**45 would not fit in memory
    out = _accumulated(acc, 2)
    assert out.loc[2**45, 0] == 1
    assert out[0].sum() == 5_002


@settings(max_examples=40)
@given(
    stride=st.sampled_from([3, 16, 101]),
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=6),
    n_buckets=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_thin_integer_keys_through_the_lookup_equal_one_pass(stride, sizes, n_buckets, seed):
    # keys that fill 1/stride of their range (a bucket's share of ids): the lookup
    # (MIN_RANGE lowered so that these few keys leave the range), some partitions
    # reaching below and above the keys seen so far, the last one far away (hash table)
    rng = np.random.default_rng(seed)
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
    acc.MIN_RANGE = 16
    batches = []
    for step, n in enumerate(sizes):
        shift = 0 if step < len(sizes) - 1 or step == 0 else 10**12
        batches.append(rng.integers(-5, 40, n) * stride + 7 * step + shift)
    _assert_one_pass(acc, batches, rng, n_buckets)


def test_thin_integer_keys_use_a_lookup_as_wide_as_the_groups():
    rng = np.random.default_rng(2)
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
    keys = rng.integers(0, 40_000, 30_000) * 16 + 3  # one bucket of 16: 640k ids wide
    acc.add(keys, *_rows(keys, rng))
    assert acc.lookup is not None and not acc.ranged
    assert acc.acc.shape[1] == np.unique(keys).size  # the groups seen, not the range
    more = rng.integers(0, 40_000, 30_000) * 16 + 3
    acc.add(more, *_rows(more, rng))
    assert acc.lookup is not None
    far = np.array([2**45])
    acc.add(far, *_rows(far, rng))  # a lookup up to 2**45 would not fit: hash table
    assert acc.lookup is None and not acc.ranged
    out = _accumulated(acc, 2)
    assert set(out.index) == set(np.concatenate([keys, more, far]).tolist())
    assert out.loc[2**45, 0] == 1 and out[0].sum() == 60_001


@settings(max_examples=40)
@given(
    span=st.integers(40, 400),
    sizes=st.lists(st.integers(30, 300), min_size=1, max_size=8),
    base=st.sampled_from([0, -1000, 10**12]),
    n_buckets=st.integers(1, 4),
    columns=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_keys_thin_at_first_then_dense_equal_one_pass(span, sizes, base, n_buckets, columns, seed):
    """Keys of a range their first partition samples thinly (a lookup), later ones
    fill (back to the range, the table's rows moved with their columns): the partial is
    that of all rows at once, through the design's rows or the columns' sweep."""
    from dmixed.kernels.term_table import ColumnPlan

    rng = np.random.default_rng(seed)
    batches = [base + rng.integers(0, span, n) for n in sizes]
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
    acc.MIN_RANGE = 16
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        if not columns:
            _assert_one_pass(acc, batches, rng, n_buckets)
            return
        # the columns' sweep against the same sweep of all rows at once (a range
        # from the start): the same sums in the same order
        plan = ColumnPlan(x_of=(-1, 0, 1), z_of=(-1, 0))
        std = Standardization.identity(3, 2)
        raws = [[rng.normal(size=keys.size) for _ in range(3)] for keys in batches]
        for keys, cols in zip(batches, raws, strict=True):
            # None: a partition of one row a group (the rank-one form, left to the design)
            assume(acc.add_columns(keys, cols, plan, std) is not None)
        whole = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
        every = [np.concatenate([c[j] for c in raws]) for j in range(3)]
        assert whole.add_columns(np.concatenate(batches), every, plan, std) is not None
        want = _accumulated(whole, n_buckets)
        seen = np.unique(np.concatenate(batches))
        if 2 * seen.size >= seen[-1] - seen[0] + 1 and seen.size > 2 * max(sizes):
            assert acc.ranged  # dense at the end: swept by key again
        got = _accumulated(acc, n_buckets)
    np.testing.assert_array_equal(got.loc[want.index].to_numpy(), want.to_numpy())


def test_a_chain_of_thin_samples_of_dense_keys_ends_in_the_range():
    # the first partition holds a third of the keys (a lookup), the second fills more
    # than half of their range: the range again, its rows moved, no flush
    rng = np.random.default_rng(6)
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64)
    first = rng.integers(0, 600_000, 100_000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        dms = []
        for keys in (first, rng.integers(0, 600_000, 400_000), rng.integers(0, 600_000, 5)):
            dm, zt = _rows(keys, rng)
            acc.add(keys, dm, zt)
            dms.append(dm)
            if keys is first:
                assert acc.lookup is not None and not acc.ranged
            else:
                assert acc.ranged and acc.lookup is None
        assert not acc.terms.flushed  # the partial is still the table's rows
        got = _accumulated(acc, 2)
    keys = np.concatenate([d.groups for d in dms])
    want = _expected(keys, dms)
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-12)


@settings(max_examples=60)
@given(data=st.data())
def test_combine_by_position_is_the_hash_table_sum(data):
    """Integer keys that fill their range are added by position in it, with the same
    sums bit for bit as the hash table (same order of addition); sparse keys, keys near
    the int64 limits and non-integer keys keep the hash table."""
    dtype = data.draw(st.sampled_from([np.int64, np.int32, np.uint64, np.uint16]))
    signed = np.dtype(dtype).kind == "i"
    lo = data.draw(st.integers(-1000 if signed else 0, 1000))
    universe = data.draw(st.integers(1, 120))
    stride = data.draw(st.sampled_from([1, 2, 9]))  # 9: range 9x the keys, hash table
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    parts = []
    for _ in range(data.draw(st.integers(2, 4))):
        ids = rng.choice(universe, size=int(rng.integers(0, universe + 1)), replace=False)
        values = rng.standard_normal((ids.size, 5))
        values[:, 0] = rng.integers(1, 9, ids.size)  # row counts
        parts.append(((lo + stride * ids).astype(dtype), values))
    keys, sums = combine.combine_partials(*parts)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(combine, "DENSE_COMBINE_SPAN", 0)  # the hash table only
        ref_keys, ref_sums = combine.combine_partials(*parts)
    assert keys.dtype == ref_keys.dtype == np.dtype(dtype)
    mine, ref = np.argsort(keys), np.argsort(ref_keys)
    np.testing.assert_array_equal(keys[mine], ref_keys[ref])
    np.testing.assert_array_equal(sums[mine], ref_sums[ref])  # bit for bit
    every = np.concatenate([p[0] for p in parts])
    np.testing.assert_array_equal(keys[mine], np.unique(every))


def test_combine_keeps_the_hash_table_where_positions_do_not_fit():
    near_limit = [np.array([2**62 - 1, 2**62], dtype=np.int64)]
    assert combine.dense_key_range(near_limit) is None
    sparse = [np.arange(10) * 100]
    assert combine.dense_key_range(sparse) is None
    assert combine.dense_key_range([np.arange(10) * 4]) == (0, 37)
    strings = np.array(["a", "b"], dtype=object)
    assert combine.dense_key_range([strings]) is None
    keys, sums = combine.combine_partials(
        (strings, np.array([[1.0, 2.0], [2.0, 5.0]])), (strings[:1], np.array([[3.0, 1.0]]))
    )
    assert dict(zip(keys, sums[:, 1], strict=True)) == {"a": 3.0, "b": 5.0}


def test_target_map_is_the_one_chosen_from_most_rows():
    """Partials are converted to the map chosen from the most rows (the first such
    task's, whatever order the tasks finished in), not to a first task's map chosen from
    a partition of one row; the identity when no task had rows."""
    from dmixed.stats.standardize import Standardization

    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(500), rng.normal(5000.0, 300.0, 500)])
    y, z = rng.normal(size=500), x[:, :1]
    one, few, many, many2 = (
        Standardization.choose(y[:n], x[:n], z[:n], (0, 0)) for n in (1, 20, 500, 500)
    )
    assert (one.sample_rows, few.sample_rows, many.sample_rows) == (1, 20, 500)
    assert one.x_scale[1] != many.x_scale[1]  # the one-row map scales by the value
    assert combine.target_map(2, 1, None, one, few, many) is many
    assert combine.target_map(2, 1, many2, None, many) is many2  # ties: the first
    assert combine.target_map(2, 1, None, None) == Standardization.identity(2, 1)


@settings(max_examples=30)
@given(first=st.floats(-300, 300), second=st.floats(-300, 300), spread=st.floats(0, 4))
def test_checked_target_judges_the_weights_of_all_partitions_as_one(first, second, spread):
    """The weights' span over every task's map (each only its own rows') is judged as
    the rows read at once are (:func:`~dmixed.stats.standardize.check_weights_range`):
    refused naming the column exactly when the data's span is wider than 2^53."""
    from dmixed.errors import DataError
    from dmixed.stats.standardize import WEIGHT_SPAN_LOG2, check_weights_range, log2_range

    rng = np.random.default_rng(4)
    w = [2.0 ** (c + spread * rng.uniform(-1, 1, 40)) for c in (first, second)]
    maps = [
        Standardization.choose(np.zeros(40), np.ones((40, 1)), np.ones((40, 1)), weights=v)
        .with_weights(v)
        for v in w
    ]  # fmt: skip
    whole = log2_range(np.concatenate(w))
    wide = whole[1] - whole[0] > WEIGHT_SPAN_LOG2
    for chosen in (None, maps[0]):
        if wide:
            with pytest.raises(DataError, match="column 'w' are too far apart"):
                combine.checked_target(1, 1, "w", chosen, None, *maps)
            with pytest.raises(DataError, match="column 'w' are too far apart"):
                check_weights_range("w", whole)
        else:
            got = combine.checked_target(1, 1, "w", chosen, None, *maps)
            assert got == (chosen or combine.target_map(1, 1, *maps))
            assert got.weight_span == whole  # kept with saved statistics


def test_checked_target_judges_the_given_maps_rows_with_the_partitions():
    """A given map (``update``: the saved statistics') holds the span of the saved rows'
    weights: the partitions' rows are judged with them, as a fit of all the rows judges
    them (the partitions alone are within a step), and the map returned holds the span
    of all of them."""
    from dmixed.errors import DataError

    rows = [np.array([1.0, 2.0]), np.array([2.0**120, 2.0**130])]
    maps = [
        Standardization.choose(np.zeros(2), np.ones((2, 1)), np.ones((2, 1)), weights=v)
        .with_weights(v)
        for v in rows
    ]  # fmt: skip
    assert combine.checked_target(1, 1, "w", maps[0], maps[0]).weight_span == (0.0, 1.0)
    with pytest.raises(DataError, match="column 'w' are too far apart"):
        combine.checked_target(1, 1, "w", maps[0], None, maps[1])
    got = combine.checked_target(1, 1, "w", maps[1], None, maps[1])
    assert got == maps[1] and got.weight_span == (120.0, 130.0)


def _term_parts(rng, packed, n_parts: int, universe: int, factors: np.ndarray):
    """Partials of term rows (the chains' form) over keys of ``0 … universe−1``: a plan
    whose packed columns repeat terms and use the zero column."""
    n_terms = packed.width - 3  # fewer terms than packed columns, the last all zeros
    columns = rng.integers(0, n_terms, packed.width)
    columns[0], columns[-1] = 0, n_terms - 1
    parts = []
    for _ in range(n_parts):
        ids = np.sort(rng.choice(universe, size=int(rng.integers(1, universe + 1)), replace=False))
        rows = rng.standard_normal((ids.size, n_terms)) * 10.0 ** rng.integers(-6, 6, (ids.size, 1))
        rows[:, 0] = rng.integers(1, 9, ids.size)  # row counts
        rows[:, -1] = 0.0
        parts.append((ids.astype(np.int64), TermRows(rows, columns, factors)))
    return parts


@pytest.mark.parametrize("n_parts", [1, 2, 3])
@pytest.mark.parametrize("case", ["dense", "sparse", "not powers of two", "two plans", "converted"])
def test_term_rows_combine_as_their_packed_rows(n_parts, case):
    """Partials of term rows add up, and make a held block, bit for bit as their packed
    rows do: as term rows where :func:`combine_terms` applies (one plan, factors powers
    of two, keys filling their range, no conversion), expanded first where not."""
    rng = np.random.default_rng(n_parts)
    packed = PackedLayout(2, 4)
    factors = 2.0 ** rng.integers(-9, 9, packed.width)
    factors[0] = 1.0
    if case == "not powers of two":
        factors[3] = 0.3
    parts = _term_parts(rng, packed, n_parts, 40, factors)
    if case == "sparse":
        parts = [(keys * 1000, rows) for keys, rows in parts]
    if case == "two plans" and n_parts > 1:
        keys, rows = parts[-1]
        parts[-1] = (keys, TermRows(rows.rows, rows.columns, factors * 2.0))
    target = Standardization.identity(3, 2)
    maps = [None] * n_parts
    if case == "converted":
        maps[0] = Standardization(
            np.zeros(3), np.array([1.0, 2.0, 4.0]), 0.0, 1.0, np.zeros(2), np.array([1.0, 2.0]),
            -1, -1, np.zeros(0), 10,
        )  # fmt: skip
    pairs = [(part, m) for part, m in zip(parts, maps, strict=True)]
    plain = [((keys, rows.packed()), m) for (keys, rows), m in pairs]
    got = combine.combine_converted(target, packed, (), *pairs)
    want = combine.combine_converted(target, packed, (), *plain)
    held_terms = case == "dense" or (n_parts == 1 and case in ("sparse", "two plans"))
    assert isinstance(got[1], TermRows) == held_terms
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(np.asarray(got[1]), want[1])
    np.testing.assert_array_equal(got[2], want[2])
    block = to_block(got, packed, held=True)
    ref = to_block(want, packed, held=True)
    np.testing.assert_array_equal(block.nobs, ref.nobs)
    for a, b in zip(block_dense(block), block_dense(ref), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(block_dense(to_block(got, packed)), block_dense(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def _same_blocks(got, want) -> None:
    """Every field of two blocks equal, bit for bit."""
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.labels.dtype == want.labels.dtype
    np.testing.assert_array_equal(got.nobs, want.nobs)
    for a, b in zip(block_dense(got), block_dense(want), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
    for a, b in zip(got.stats.chunks(), want.stats.chunks(), strict=True):
        assert a[0].shape == b[0].shape and a[1].shape == b[1].shape
    for name in ("xyxy", "within", "n", "n_dropped", "sum_log_weights"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def _both_blocks(packed: PackedLayout, func, items: list) -> tuple:
    """A bucket root's block of ``items`` (``combined_block``, held) and the block
    ``to_block`` makes of ``func``'s combine of them."""
    target = Standardization.identity(3, 2)
    conv = (target, packed, ())
    block_args = {"packed": packed, "standardization": target, "held": True}
    got = combined_block(block_args, func, *conv, *items)
    return got, to_block(func(*conv, *items), **block_args)


@pytest.fixture
def merges(monkeypatch):
    """Counts the merges of a held block straight into the kernels' layout."""
    calls = []
    original = blocks.merge_term_rows

    def counted(*args):
        got = original(*args)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(blocks, "merge_term_rows", counted)
    return calls


@pytest.mark.parametrize("mode", ["numba", "numpy"])
@pytest.mark.parametrize("n_parts", [1, 2, 3])
@pytest.mark.parametrize("levels", [1, 2])
def test_a_bucket_root_merges_term_rows_as_the_combine_and_block(
    mode, n_parts, levels, merges, monkeypatch
):
    """A held block of the chains' term rows (keys increasing, as a chain held by range
    sends them) is made in one merge, and is the block of the combine and then
    ``to_block`` bit for bit: keys, row counts, every entry of every chunk, the
    correction; at the root of one level of combines or of two (its children the
    combines' term rows), an empty partial (a bucket's owner) among the parts."""
    monkeypatch.setenv("DMIXED_KERNELS", mode)
    rng = np.random.default_rng(n_parts + 10 * levels)
    packed = PackedLayout(2, 4)
    factors = 2.0 ** rng.integers(-9, 9, packed.width)
    parts = _term_parts(rng, packed, n_parts, 40, factors)
    empty = ((np.empty(0, dtype=np.int64), np.empty((0, packed.width))), None)
    pairs = [(part, None) for part in parts] + [empty]
    func, items = combine.combine_converted, pairs
    if levels == 2:
        conv = (Standardization.identity(3, 2), packed, ())
        func = combine.combine_exact
        halves = [pairs[i : i + 2] for i in range(0, len(pairs), 2)]
        items = [combine.combine_converted(*conv, *half) for half in halves]
    got, want = _both_blocks(packed, func, items)
    assert merges == [True]
    _same_blocks(got, want)


@pytest.mark.parametrize("case", ["out of order", "not powers of two", "uint64", "plain"])
def test_a_bucket_root_left_to_the_combine_where_it_cannot_merge(case, merges):
    """Keys out of order in a part (a chain that looked its keys up), factors not powers
    of two, unsigned keys past int64, packed rows: the combine and ``to_block`` as
    before."""
    rng = np.random.default_rng(7)
    packed = PackedLayout(2, 4)
    factors = 2.0 ** rng.integers(-9, 9, packed.width)
    if case == "not powers of two":
        factors[3] = 0.3
    parts = _term_parts(rng, packed, 2, 40, factors)
    if case == "out of order":
        keys, rows = parts[0]
        order = rng.permutation(keys.size)
        parts[0] = (keys[order], TermRows(rows.rows[order], rows.columns, rows.factors))
    if case == "uint64":
        parts = [(keys.astype(np.uint64) + np.uint64(2**63), rows) for keys, rows in parts]
    if case == "plain":
        parts = [(keys, rows.packed()) for keys, rows in parts]
    got, want = _both_blocks(packed, combine.combine_converted, [(p, None) for p in parts])
    assert merges == ([False] if case == "out of order" else [])
    _same_blocks(got, want)


def test_a_bucket_root_of_sparse_keys_merges_them_in_key_order(merges):
    """Integer keys spread thinly over their range (which the combine adds through a
    hash table, in the order the keys first appear): merged, in increasing key order,
    every group's sums bit for bit the combine's."""
    rng = np.random.default_rng(11)
    packed = PackedLayout(2, 4)
    factors = 2.0 ** rng.integers(-9, 9, packed.width)
    parts = [(keys * 1000, rows) for keys, rows in _term_parts(rng, packed, 3, 40, factors)]
    got, want = _both_blocks(packed, combine.combine_converted, [(p, None) for p in parts])
    assert merges == [True]
    order = np.argsort(want.labels)
    np.testing.assert_array_equal(got.labels, want.labels[order])
    np.testing.assert_array_equal(got.nobs, want.nobs[order])
    for a, b in zip(block_dense(got), block_dense(want), strict=True):
        np.testing.assert_array_equal(a, b[order])


@settings(max_examples=40)
@given(
    dtype=st.sampled_from(["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]),
    n=st.integers(0, 200),
    n_buckets=st.integers(1, 9),
    mode=st.sampled_from(["numba", "numpy"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_bucket_of_integers_is_pandas_hash(dtype, n, n_buckets, mode, seed):
    """Integer keys' buckets, compiled or not: ``pd.util.hash_array`` modulo the buckets
    (the buckets every process agrees on, whichever pass it runs)."""
    info = np.iinfo(dtype)
    keys = np.random.default_rng(seed).integers(
        info.min, info.max, size=n, dtype=dtype, endpoint=True
    )
    want = (pd.util.hash_array(keys, categorize=False) % np.uint64(n_buckets)).astype(np.int64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", mode)
        got = combine.bucket_of(keys, n_buckets)
    np.testing.assert_array_equal(got, want)


def test_bucket_of_a_whole_float_is_its_integers():
    """A whole float key (``3.0``, ``-0.0``, ``2.0**40``) goes to the bucket of the int64
    key it equals (keys of a categorical of unknown categories are int64 in one chain
    and float64 in another); fractional floats as the integers of their bits."""
    ints = np.array([3, 10, 0, 2**40, -7, 2**62 + 2048, 2**63 - 1024, -(2**63)], dtype=np.int64)
    floats = ints.astype(float)
    floats[2] = -0.0
    fractional = np.array([0.5, -2.25, 1e300])
    for n_buckets in (2, 5, 8):
        want = combine.bucket_of(ints, n_buckets)
        np.testing.assert_array_equal(combine.bucket_of(floats, n_buckets), want)
        mixed = np.concatenate([floats, fractional])
        got = combine.bucket_of(mixed, n_buckets)
        np.testing.assert_array_equal(got[: ints.size], want)
        bits = stats_keys.hashed_bits(fractional)
        frac_want = (pd.util.hash_array(bits, categorize=False) % np.uint64(n_buckets)).astype(
            np.int64
        )
        np.testing.assert_array_equal(got[ints.size :], frac_want)


def test_learned_accumulator_keys_in_the_first_keys_dtype_and_floats_after_ints():
    """An accumulator of keys whose kind is learned from the data: the first keys settle
    it (int64, in range mode as a numeric column's); floats after integers make it
    float64 with the sums of the integer keys kept (3 and 3.0 one group)."""
    acc = combine.GroupAccumulator(1, stats_keys.LEARNED_KEYS)
    ints = acc.conform(np.array([1, 3, 3]), "g")
    assert ints.dtype == np.int64 and acc.key_dtype == np.int64 and acc.ranged
    assert acc.conform(np.array([5]), "g").dtype == np.int64
    floats = acc.conform(np.array([3.0, 0.5]), "g")
    assert floats.dtype == np.float64 and acc.key_dtype == np.float64 and not acc.ranged
    assert acc.conform(np.array([7]), "g").dtype == np.float64
    with pytest.raises(DataError, match="'g' holds"):
        acc.conform(np.array(["a"], dtype=object), "g")


def _raw_bits_hash(values, *args, **kwargs):
    """``pd.util.hash_array`` as pandas before 3 hashed floats: their raw bits, so that
    ``-0.0`` and ``0.0`` (and NaNs of other bits) hashed apart."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = values.view(f"u{values.dtype.itemsize}")
    return _PANDAS_HASH(values, *args, **kwargs)


_PANDAS_HASH = pd.util.hash_array


@settings(max_examples=40)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=60),
    n_buckets=st.integers(2, 9),
    mode=st.sampled_from(["numba", "numpy"]),
)
def test_bucket_of_floats_does_not_depend_on_pandas_float_hash(values, n_buckets, mode):
    """Float keys' buckets are those of their bits, ``-0.0`` spelled ``0.0`` and every
    NaN one NaN (keys equal as pandas groups them share a bucket), whatever pandas'
    own hash of floats does with them (pandas before 3 hashed the raw bits): a driver
    and workers with different pandas route rows alike.  Whole floats within ±2**62 go
    to the buckets of the integers they equal."""
    keys = np.array([*values, 0.0, -0.0, np.nan, -np.nan], dtype=np.float64)
    canonical = np.where(np.isnan(keys), np.nan, keys + 0.0)  # -0.0 + 0.0 is 0.0
    want = (
        _PANDAS_HASH(canonical.view(np.uint64), categorize=False) % np.uint64(n_buckets)
    ).astype(np.int64)
    with np.errstate(invalid="ignore"):
        whole = (keys == np.trunc(keys)) & (np.abs(keys) < 2.0**62)
    ints = keys[whole].astype(np.int64)
    want[whole] = (_PANDAS_HASH(ints, categorize=False) % np.uint64(n_buckets)).astype(np.int64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", mode)
        mp.setattr(pd.util, "hash_array", _raw_bits_hash)
        got = combine.bucket_of(keys, n_buckets)
        signed = combine.bucket_of(np.concatenate([keys, -keys]), n_buckets)
    np.testing.assert_array_equal(got, want)
    both = np.concatenate([keys, -keys])
    for alike in (both == 0, np.isnan(both)):
        assert len(set(signed[alike].tolist())) == 1


def test_accumulator_keeps_the_sums_about_the_shifts_of_a_plan_change(monkeypatch):
    """A weighted chain whose first batch's weights are all 1 (the compiled table's
    unweighted plan) and whose next batch's are not (the weighted plan): the partial's
    sums about the groups' shifts hold every row of both batches (the table flushed at
    the change included), as :func:`~dmixed.kernels.shifts.rows_part` of all the rows."""
    from dmixed.kernels import shifts

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    rng = np.random.default_rng(6)
    n_groups = 40
    keys = np.repeat(np.arange(n_groups), rng.integers(2, 6, n_groups))
    rng.shuffle(keys)
    n = keys.size
    t = 1.7e9 + 3e7 * rng.random(n_groups)[keys] + rng.normal(size=n)
    x = np.column_stack([np.ones(n), t])
    y = rng.normal(size=n)
    std = Standardization.choose(y, x, x)
    half = n // 2
    w = np.concatenate([np.ones(half), rng.uniform(0.5, 2.0, n - half)])
    acc = GroupAccumulator(kernels.packed_width(2, 3), np.int64, keep_shifts=True)
    for rows in (slice(0, half), slice(half, n)):
        dm = DesignMatrices(
            endog=y[rows], exog=x[rows], exog_re=x[rows].copy(), vc_cols=[], vc_vals=[],
            groups=keys[rows], weights=w[rows], n_dropped=0,
        )  # fmt: skip
        acc.add(keys[rows], dm, x[rows].copy(), std)
    assert acc.terms.flushed  # the plan changed
    parts = acc.result(2)
    assert all(len(p) == 4 for p in parts)  # every bucket with its groups' sums
    got = shifts.merge_parts([p[3] for p in parts])
    uniq = np.arange(n_groups)
    want = shifts.rows_part(uniq, keys, y, x, x, w, std)
    assert got is not None and want is not None
    got = got.of_keys(uniq)
    assert got is not None
    np.testing.assert_array_equal(got.count, want.count)
    for name in ("wsum", "dsum", "dgram", "dxy", "xsum"):
        a, b = getattr(got, name), getattr(want, name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_combine_partials_of_int_and_float_keys_meet_as_float64_or_are_refused():
    """Partials whose keys are int64 and float64 (a learned key kind): added as float64
    keys, an integer and its whole float one group; integers beyond ±2**53 with floats
    refused (the column named at the driver)."""
    ints = (np.array([1, 5], dtype=np.int64), np.array([[1.0, 2.0], [1.0, 3.0]]))
    floats = (np.array([5.0, 0.5]), np.array([[2.0, 7.0], [1.0, 1.0]]))
    keys, values = combine.combine_partials(ints, floats)
    assert keys.dtype == np.float64
    got = dict(zip(keys.tolist(), values.tolist(), strict=True))
    assert got == {1.0: [1.0, 2.0], 5.0: [3.0, 10.0], 0.5: [1.0, 1.0]}
    big = (np.array([2**62 + 1], dtype=np.int64), np.array([[1.0, 1.0]]))
    with pytest.raises(DataError) as refused:
        combine.combine_partials(big, floats)
    assert refused.value.unnamed_keys
    named = stats_keys.named_keys_error(refused.value, "g")
    assert "the group column 'g' holds integers beyond" in str(named)


def test_learned_accumulator_refuses_integers_beyond_2_53_after_other_integers():
    """An accumulator of learned int64 keys given uint64 keys past 2**63: float64, their
    one dtype, would not hold them exactly (``astype`` would wrap to int64): refused
    naming the column; uint64 keys within 2**53 make the keys float64."""
    acc = GroupAccumulator(3, stats_keys.LEARNED_KEYS)
    acc.conform(np.array([-4, 7], dtype=np.int64), "g")
    with pytest.raises(DataError, match="the group column 'g' holds integers beyond"):
        acc.conform(np.array([2**63 + 5], dtype=np.uint64), "g")
    got = acc.conform(np.array([9], dtype=np.uint64), "g")
    assert got.dtype == np.float64 and acc.key_dtype == np.float64


@pytest.fixture
def numba_kept_buffers(kept_buffers, monkeypatch):
    """:func:`kept_buffers` (tests/conftest.py) with the compiled kernels chosen."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    return kept_buffers


def _chain(r: int, seed: int) -> list:
    """A chain of three partitions of rows of ``r`` random-design columns (the intercept
    first) in one accumulator, with a map whose random design starts with the intercept;
    its partials in two buckets."""
    rng = np.random.default_rng(seed)
    std = Standardization.choose(
        rng.normal(size=50), np.column_stack([np.ones(50), rng.normal(size=50)]),
        np.column_stack([np.ones(50), rng.normal(size=50)])[:, :r], (0, 0), [],
    )  # fmt: skip
    acc = GroupAccumulator(kernels.packed_width(r, 3), np.int64)
    for _ in range(3):
        keys = rng.integers(0, 40, 60)
        dm, zt = _rows(keys, rng)
        dm = dataclasses.replace(dm, exog_re=dm.exog_re[:, :r].copy())
        acc.add(keys, dm, zt[:, :r].copy(), std)
    return [(k, np.asarray(v)) for k, v, *_ in acc.result(2)]


@pytest.mark.parametrize("r", [1, 2])
def test_the_design_route_hands_back_the_idle_kept_buffers(numba_kept_buffers, r):
    kept_buffers = numba_kept_buffers
    """A chain whose rows take the design matrices' route (a random intercept: the
    within-group sums) drops the kept buffers no array views before its sums, whose
    temporaries do not come from them, and keeps those in use (a held result's merged
    rows); a chain of the compiled table (a random slope) keeps them for its tables.
    Its partials are those of a process that keeps none, bit for bit."""
    kept_buffers.keep_table_buffers(False)
    want = _chain(r, 3)
    kept_buffers.keep_table_buffers(True)
    held = kept_buffers.table_buffer((500, 10), zeroed=False, use="merge")
    kept_buffers.table_buffer((500, 10), zeroed=True, use="held")  # let go at once: idle
    assert kept_buffers.kept_table_buffers() == 2
    got = _chain(r, 3)
    if r == 1:
        assert kept_buffers.kept_table_buffers() == 1  # the merged rows in use only
    else:
        assert kept_buffers.kept_table_buffers() >= 2  # the idle one still there
    for (gk, gv), (wk, wv) in zip(got, want, strict=True):
        np.testing.assert_array_equal(gk, wk)
        np.testing.assert_array_equal(gv, wv)
    del held


@pytest.mark.parametrize("mode", ["numba", "numpy"])
def test_a_merged_bucket_root_is_cut_by_the_chunk_size_set_when_it_runs(mode, merges, monkeypatch):
    """The merged block's chunks are of ``GROUP_CHUNK`` groups as it is set when the
    merge runs (a tuned or patched setting), not as it was at import: the spans of
    :meth:`ChunkSpans.cut <dmixed.kernels.groups.ChunkSpans.cut>` at that size, every
    chunk as the combine's block."""
    monkeypatch.setenv("DMIXED_KERNELS", mode)
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 7)
    rng = np.random.default_rng(5)
    packed = PackedLayout(2, 4)
    factors = 2.0 ** rng.integers(-9, 9, packed.width)
    parts = _term_parts(rng, packed, 2, 40, factors)
    got, want = _both_blocks(packed, combine.combine_converted, [(p, None) for p in parts])
    assert merges == [True]
    n_groups = got.stats.n_groups
    assert n_groups > 7
    want_edges = kernels.groups.ChunkSpans.cut(n_groups, 7).edges
    np.testing.assert_array_equal(got.stats.spans.edges, want_edges)
    _same_blocks(got, want)


def test_an_accumulator_is_freed_with_its_last_reference():
    """An accumulator and its compiled table make no reference cycle: a chain's sums
    are freed when the chain drops them, not at the collector's next full pass."""
    import gc
    import weakref

    enabled = gc.isenabled()
    gc.disable()
    try:
        acc = GroupAccumulator(4, np.dtype(np.int64))
        ref = weakref.ref(acc)
        del acc
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


def test_a_table_flushed_after_its_accumulator_raises():
    """The compiled table reaches its accumulator through a weak reference: flushed
    after the accumulator is gone, it raises rather than drop its side sums."""
    acc = GroupAccumulator(4, np.dtype(np.int64))
    keep = acc.terms.on_flush
    del acc
    with pytest.raises(RuntimeError, match="after its accumulator was freed"):
        keep(None)
