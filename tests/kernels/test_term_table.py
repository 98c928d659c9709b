"""The chain's compiled table of terms against the numpy reference (to 1e-12 relative),
whatever the split of the rows into calls."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.kernels.compiled import CACHE_LINE
from dmixed.kernels.groups import ChunkSpans
from dmixed.kernels.rows import live_terms, prepare_rows
from dmixed.kernels.term_jit import COLUMNS_CHUNK
from dmixed.kernels.term_table import (
    BUFFER_USES,
    ColumnPlan,
    TermRows,
    TermTable,
    add_rows_into,
    as_packed,
    hash_buckets,
    held_columns,
    key_codes,
    key_range,
    merge_term_rows,
)
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import Standardization


def _data(rng, n: int, n_groups: int, p: int, r: int, offset: float, weighted: bool):
    """Rows of ``p`` fixed effects (intercept first), ``Z̃`` the first ``r`` of them
    (the intercept and slopes, as a random slope model), shifted by ``offset``."""
    x = np.column_stack([np.ones(n)] + [offset + rng.normal(size=n) for _ in range(p - 1)])
    exog = np.asfortranarray(x)
    y = offset + rng.normal(size=n)
    ztilde = np.asfortranarray(x[:, :r])
    codes = rng.integers(0, n_groups, n)
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    std = Standardization.choose(y, exog, ztilde, (0, 0), [])
    return codes, y, exog, ztilde, weights, std


def _abs_scale(codes, n_groups, y, exog, ztilde, weights, std) -> np.ndarray:
    """Per packed column and group, the sum of the terms' magnitudes: the scale that
    rounding errors of the sums are relative to."""
    rows = prepare_rows(y, exog, ztilde, weights, std)
    out = np.zeros((rows.layout.width, n_groups))
    src = [np.abs(s) for s in rows.sources]
    for c, t in enumerate(rows.column_term):
        term = rows.terms[t]
        if term[0] in ("count", "zero"):
            w = np.full(codes.size, 1.0 if term[0] == "count" else 0.0)
        else:  # ("col", u) or ("prod", u, v): |u| or |u v|
            w = src[term[1]] * (src[term[2]] if term[0] == "prod" else 1.0)
        scale = 1.0 if rows.scales is None else rows.scales[c]
        out[c] = np.bincount(codes, weights=w, minlength=n_groups) * scale
    return out


def _shuffled_codes(rng, n_groups: int, least: int) -> np.ndarray:
    """Group codes of ``least`` to 5 rows a group, in a shuffled order."""
    codes = np.repeat(np.arange(n_groups), rng.integers(least, 6, n_groups))
    rng.shuffle(codes)
    return codes


def _timestamp_rows(rng, codes: np.ndarray, n_groups: int) -> tuple:
    """``(y, exog, z, std)`` of rows of ``codes``: an intercept, a timestamp near 1.7e9
    spread between groups (3e7 s) and by ~1 s within them, and a plain column; a random
    intercept and slope on the timestamp."""
    n = codes.size
    t = 1.7e9 + 3e7 * rng.random(n_groups)[codes] + rng.normal(size=n)
    x2, y = rng.normal(size=n), rng.normal(size=n)
    exog = np.asfortranarray(np.column_stack([np.ones(n), t, x2]))
    z = np.asfortranarray(exog[:, :2])
    return y, exog, z, Standardization.choose(y, exog, z)


@pytest.fixture
def compiled_rows(monkeypatch):
    monkeypatch.setenv("DMIXED_KERNELS", "numba")


@settings(max_examples=40)
@given(
    n=st.integers(1, 400),
    n_groups=st.integers(1, 50),
    p=st.integers(2, 4),
    r=st.integers(2, 3),
    offset=st.sampled_from([0.0, 3.0, 1e6]),
    weighted=st.booleans(),
    cuts=st.lists(st.floats(0, 1), max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_table_equals_the_numpy_reference_whatever_the_split(
    n, n_groups, p, r, offset, weighted, cuts, seed
):
    r = min(r, p)
    rng = np.random.default_rng(seed)
    codes, y, exog, ztilde, weights, std = _data(rng, n, n_groups, p, r, offset, weighted)
    width = kernels.packed_width(r, p + 1)
    want = np.zeros((width, n_groups))
    want_glob = kernels.accumulate_packed_into(
        want, codes, y, exog, ztilde, weights, std, compiled=False
    )
    got = np.zeros((width, n_groups))
    table = TermTable()
    bounds = sorted({0, n, *(int(c * n) for c in cuts)})
    gram = np.zeros_like(want_glob["xyxy"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            w = None if weights is None else weights[a:b]
            args = (y[a:b], exog[a:b], ztilde[a:b], w, std)
            assert table.applies(b - a, r, std, ())
            gram += table.add(got, codes[a:b], *args)["xyxy"]
    table.flush(got)
    scale = _abs_scale(codes, n_groups, y, exog, ztilde, weights, std)
    assert np.all(np.abs(got - want) <= 1e-12 * scale)
    np.testing.assert_allclose(gram, want_glob["xyxy"], rtol=1e-12, atol=1e-12 * n)


def test_plan_change_and_growth_flush_the_table(compiled_rows):
    """A call whose plan differs (a column all ones here) or whose accumulator is wider
    first adds the table's sums into the accumulator."""
    rng = np.random.default_rng(3)
    codes, y, exog, ztilde, _, std = _data(rng, 300, 20, 3, 2, 5.0, False)
    ones = exog.copy(order="F")
    ones[:100, 2] = 1.0  # the plan of these rows has a column of ones
    want = np.zeros((kernels.packed_width(2, 4), 30))
    kernels.accumulate_packed_into(want[:, :20], codes, y, ones, ztilde, std=std, compiled=False)
    got = np.zeros_like(want)
    table = TermTable()
    table.add(got[:, :20], codes[:100], y[:100], ones[:100], ztilde[:100], std=std)
    table.add(got[:, :20], codes[100:200], y[100:200], ones[100:200], ztilde[100:200], std=std)
    assert np.any(got != 0)  # the first plan's sums were flushed at the change
    table.add(got, codes[200:], y[200:], ones[200:], ztilde[200:], std=std)  # wider
    table.flush(got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


@settings(max_examples=40)
@given(
    n_groups=st.integers(1, 40),
    extra=st.integers(0, 30),
    shift=st.integers(0, 30),
    permute=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_grow_moves_the_rows_with_the_accumulators_columns(n_groups, extra, shift, permute, seed):
    """Growing the table with its accumulator (the columns shifted, or each moved to a
    column of its own) and flushing it gives the flush of the table as it was, with
    the columns moved the same way: nothing flushed at the growth."""
    rng = np.random.default_rng(seed)
    codes, y, exog, ztilde, _, std = _data(rng, 200, n_groups, 3, 2, 5.0, False)
    width, size = kernels.packed_width(2, 4), n_groups + extra + shift
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        before = np.zeros((width, n_groups))
        table = TermTable()
        table.add(before, codes, y, exog, ztilde, std=std)
        flat = np.zeros((width, n_groups))
        other = TermTable()
        other.add(np.zeros((width, n_groups)), codes, y, exog, ztilde, std=std)
        other.flush(flat)
        to = rng.permutation(size)[:n_groups] if permute else shift
        assert table.grow(n_groups, size, to)
        assert not table.flushed and np.all(before == 0)  # still the table's, not flushed
        got = np.zeros((width, size))
        table.flush(got)
    want = np.zeros((width, size))
    want[:, to if permute else np.arange(n_groups) + shift] = flat
    np.testing.assert_array_equal(got, want)


def test_grow_of_a_table_not_the_accumulators_is_left_to_a_flush(compiled_rows):
    rng = np.random.default_rng(5)
    codes, y, exog, ztilde, _, std = _data(rng, 50, 10, 3, 2, 0.0, False)
    table = TermTable()
    assert table.grow(10, 20)  # nothing held: nothing to move
    table.add(np.zeros((kernels.packed_width(2, 4), 10)), codes, y, exog, ztilde, std=std)
    assert not table.grow(12, 20)  # rows for another accumulator: the caller flushes
    with pytest.raises(ValueError, match="cannot move"):
        table.grow(10, 15, 6)
    with pytest.raises(ValueError, match="cannot move"):
        table.grow(10, 15, np.array([0, 15]))


def test_a_table_keeps_a_column_of_zeros_only_where_a_packed_column_reads_it(compiled_rows):
    """A random slope's plan reads no zero term: its table, and the parts it splits into,
    hold its live terms only (9 columns for four fixed effects), and the router's
    estimate counts those; a slope of all zeros makes zero terms, whose packed columns
    read the table's last column, kept zero.  Either way the packed sums are the
    reference's (to 1e-12), the zero ones exactly zero."""
    rng = np.random.default_rng(11)
    codes, y, exog, ztilde, _, std = _data(rng, 400, 30, 4, 2, 0.0, False)
    width = kernels.packed_width(2, 5)
    table = TermTable()
    acc = np.zeros((width, 30))
    table.add(acc, codes, y, exog, ztilde, std=std)
    assert (
        table.table.shape[1] == 9 == len(live_terms(prepare_rows(y, exog, ztilde, None, std).terms))
    )
    assert table.row_bytes(y, exog, ztilde, std=std) == 9 * 8
    rows, parts = table.split_seen(0, 2)
    assert all(p.rows.shape[1] == 9 and p.columns.max() < 9 for p in parts)
    columns, plan, cstd = _column_rows(rng, 300, 3, 0.0, [-1, 0, 1, 2], [-1, 0])
    swept = TermTable()
    swept.add_columns(
        np.zeros((kernels.packed_width(2, 4), 20)), rng.integers(0, 20, 300), columns, plan, cstd
    )
    assert swept.table.shape[1] == len(swept.plan[0])  # no column of zeros
    flat = ztilde.copy(order="F")
    flat[:, 1] = 0.0  # a slope of zeros: its products are zero terms
    std = Standardization.choose(y, exog, flat, (0, 0), [])
    zeroed = TermTable()
    got = np.zeros((width, 30))
    zeroed.add(got, codes, y, exog, flat, std=std)
    live = zeroed.table.shape[1] - 1
    assert live == len(zeroed.plan[0]) and not zeroed.table[:, live].any()
    assert zeroed.row_bytes(y, exog, flat, std=std) == (live + 1) * 8
    zeroed.flush(got)
    want = np.zeros_like(got)
    kernels.accumulate_packed_into(want, codes, y, exog, flat, std=std, compiled=False)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert np.array_equal(got == 0, want == 0)


def test_reference_kept_for_components_within_sums_and_numpy(monkeypatch):
    std = Standardization.identity(2, 1)
    table = TermTable()
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    assert not table.applies(10**6, 3, None, (2,))  # variance components
    within = Standardization.choose(np.ones(4), np.ones((4, 2)), np.ones((4, 1)), (0, 0), [])
    assert not table.applies(10**6, 1, within, ())  # the intercept's within-group sums
    assert table.applies(10**6, 2, std, ())
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert not table.applies(10**6, 2, std, ())


def test_codes_outside_the_accumulator_are_refused(compiled_rows):
    rng = np.random.default_rng(5)
    codes, y, exog, ztilde, _, std = _data(rng, 20, 5, 2, 2, 0.0, False)
    codes[0] = 4
    acc = np.zeros((kernels.packed_width(2, 3), 4))
    with pytest.raises(ValueError, match="codes must be in 0 … 3"):
        TermTable().add(acc, codes, y, exog, ztilde, std=std)


@pytest.mark.parametrize("bad", [-1, 40])
def test_sweep_refuses_codes_outside_the_accumulator(bad, compiled_rows):
    rng = np.random.default_rng(9)
    n = 2 * COLUMNS_CHUNK + 5
    columns, plan, std = _column_rows(rng, n, 2, 0.0, [-1, 0, 1], [-1, 0])
    codes = rng.integers(0, 40, n)
    codes[COLUMNS_CHUNK + 3] = bad
    acc = np.zeros((kernels.packed_width(2, 3), 40))
    with pytest.raises(ValueError, match="codes must be in 0"):
        TermTable().add_columns(acc, codes, columns, plan, std)


@pytest.mark.parametrize("mode", ["numpy", "numba"])
def test_add_rows_into_is_numpys_fancy_add(mode, monkeypatch):
    """The combine's adds by position: the same sums bit for bit, compiled or not."""
    monkeypatch.setenv("DMIXED_KERNELS", mode)
    rng = np.random.default_rng(4)
    base = rng.normal(size=(50, 6)) * 10.0 ** rng.integers(-8, 8, (50, 6))
    base[3] = -0.0
    rows = rng.permutation(50)[:30]
    values = rng.normal(size=(30, 6)) * 10.0 ** rng.integers(-8, 8, (30, 6))
    out = base.copy()
    add_rows_into(out, rows, values)
    expected = base.copy()
    expected[rows] += values
    np.testing.assert_array_equal(out, expected)
    assert np.array_equal(np.signbit(out), np.signbit(expected))
    add_rows_into(out, rows[:0], values[:0])  # nothing to add
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="rows must be in"):
        add_rows_into(out, np.array([50]), values[:1])
    with pytest.raises(ValueError, match="values of shape"):
        add_rows_into(out, rows, values[:, :5])


@pytest.mark.parametrize("n_buckets", [1, 2, 3])
@pytest.mark.parametrize("n_groups", [0, 1, 37])
def test_split_rows_are_the_packed_rows_by_bucket(n_buckets, n_groups, compiled_rows):
    """Each bucket's term rows, times their factors, are the packed rows
    :meth:`TermTable.flush` adds to those accumulator columns, bit for bit and in the
    order of the rows; the map's scales are not 1 here (shifted, spread columns)."""
    rng = np.random.default_rng(6)
    codes, y, exog, ztilde, _, std = _data(rng, 400, 40, 4, 2, 3.0, False)
    exog[:, 1] *= 1e3
    ztilde = np.asfortranarray(exog[:, :2])
    std = Standardization.choose(y, exog, ztilde, (0, 0), [])
    acc = np.zeros((kernels.packed_width(2, 5), 40))
    table = TermTable()
    table.add(acc, codes, y, exog, ztilde, std=std)
    assert table.plan[2] is not None  # scales other than 1
    rows = np.sort(rng.choice(40, n_groups, replace=False))
    bucket = rng.integers(0, n_buckets, n_groups)
    flushed = np.zeros_like(acc)
    copy.deepcopy(table).flush(flushed)
    want = flushed[:, rows].T
    order, parts = table.split_rows(rows, bucket, n_buckets)
    assert sorted(order.tolist()) == list(range(n_groups))
    lo = 0
    for b, part in enumerate(parts):
        mine = np.flatnonzero(bucket == b)  # in the rows' order
        np.testing.assert_array_equal(order[lo : lo + len(part)], mine)
        np.testing.assert_array_equal(part.packed(), want[mine])
        np.testing.assert_array_equal(np.asarray(part), want[mine])
        np.testing.assert_array_equal(part.column(0), want[mine, 0])
        assert part.shape == want[mine].shape and part.nbytes == part.rows.nbytes
        lo += len(part)
    assert not table.pending
    with pytest.raises(RuntimeError, match="given away"):
        table.add(acc, codes, y, exog, ztilde, std=std)


@pytest.mark.parametrize("n_buckets", [1, 2, 3, 4, 8, 16, 40])
@pytest.mark.parametrize("base", [0, 17, -(2**62), 2**62 - 100])
@pytest.mark.parametrize("n_groups", [0, 1, 37])
def test_split_seen_is_split_rows_of_the_groups_seen(n_buckets, base, n_groups, compiled_rows):
    """The groups seen (count not zero), their int64 keys' buckets and the move in one
    pass over the count column: the rows and parts of :meth:`TermTable.split_rows` of
    ``flatnonzero(counts != 0)`` and :func:`hash_buckets` of ``row + base``, bit for
    bit, negative and large keys included."""
    rng = np.random.default_rng(8)
    codes, y, exog, ztilde, _, std = _data(rng, 300, 40, 3, 2, 0.0, False)
    present = rng.choice(40, n_groups, replace=False)
    keep = np.isin(codes, present)
    codes, y = codes[keep], y[keep]
    exog, ztilde = np.asfortranarray(exog[keep]), np.asfortranarray(ztilde[keep])
    acc = np.zeros((kernels.packed_width(2, 4), 40))
    table = TermTable()
    table.add(acc, codes, y, exog, ztilde, std=std)
    twin = copy.deepcopy(table)
    seen = np.flatnonzero(twin.counts() != 0)
    bucket = hash_buckets(seen + np.int64(base), n_buckets)
    order, want = twin.split_rows(seen, bucket, n_buckets)
    rows, parts = table.split_seen(base, n_buckets)
    np.testing.assert_array_equal(rows, seen[order])
    assert rows.dtype == np.int64 and len(parts) == n_buckets == len(want)
    for got, ref in zip(parts, want, strict=True):
        np.testing.assert_array_equal(got.rows, ref.rows)
        np.testing.assert_array_equal(got.columns, ref.columns)
        np.testing.assert_array_equal(got.factors, ref.factors)
    assert not table.pending


def _splitmix_buckets(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """The buckets of int64 ``keys`` as :func:`hash_buckets` documents them (splitmix64's
    finalizer of the key's bits, modulo ``n_buckets``), in numpy: the test's own."""
    u = keys.astype(np.int64).view(np.uint64).copy()
    with np.errstate(over="ignore"):
        u ^= u >> np.uint64(30)
        u *= np.uint64(0xBF58476D1CE4E5B9)
        u ^= u >> np.uint64(27)
        u *= np.uint64(0x94D049BB133111EB)
        u ^= u >> np.uint64(31)
    return (u % np.uint64(n_buckets)).astype(np.int64)


_I64 = np.iinfo(np.int64)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_groups=st.integers(1, 200),
    seen=st.sampled_from([0.0, 0.01, 0.5, 1.0]),
    n_buckets=st.one_of(st.sampled_from([4, 8, 16, 32, 64]), st.integers(1, 64)),
    base=st.one_of(
        st.integers(_I64.min, _I64.max),
        st.sampled_from([_I64.max, _I64.min, _I64.max - 3, _I64.min + 1, 0, -1]),
    ),
    p=st.integers(1, 4),
    r=st.integers(1, 2),
    weighted=st.booleans(),
    odd=st.booleans(),
)
def test_split_seen_equals_a_numpy_reference(
    seed, n_groups, seen, n_buckets, base, p, r, weighted, odd, compiled_rows
):
    """:meth:`TermTable.split_seen` (of a power of two from 4, one pass:
    :func:`~dmixed.kernels.term_jit.split_seen_many`) against a reference of the test's
    own in numpy: the rows with a count not zero, stably sorted by their keys' buckets
    (splitmix64 of ``row + base``, int64 wrapping), each bucket's rows of the table,
    bit for bit, order included; all, none, 1% or half the groups seen, empty buckets,
    keys at the int64 limits, weights, a NaN and a -0.0 among the terms and counts."""
    rng = np.random.default_rng(seed)
    r = min(r, p)
    codes, y, exog, ztilde, w, std = _data(rng, 3 * n_groups, n_groups, p, r, 0.0, weighted)
    # none seen: every group added, then every count set to zero (a table held, no
    # group seen in it)
    present = rng.choice(n_groups, int(round((seen or 1.0) * n_groups)), replace=False)
    keep = np.isin(codes, present)
    codes, y = codes[keep], y[keep]
    exog, ztilde = np.asfortranarray(exog[keep]), np.asfortranarray(ztilde[keep])
    w = None if w is None else w[keep]
    table = TermTable()
    table.add(
        np.zeros((kernels.packed_width(r, p + 1), n_groups)), codes, y, exog, ztilde, w, std=std
    )
    if not table.pending:
        return
    held = table.table_rows()
    if seen == 0.0:
        table.counts()[:] = 0.0
    if odd:  # a NaN and a -0.0 in the terms; a NaN count (seen) and a -0.0 one (not)
        held[rng.integers(0, held.shape[0]), -1] = np.nan
        held[rng.integers(0, held.shape[0]), 0] = -0.0
        table.counts()[rng.integers(0, held.shape[0])] = np.nan
        table.counts()[rng.integers(0, held.shape[0])] = -0.0
    before = held.copy()
    want_rows = np.flatnonzero(table.counts() != 0)
    bucket = _splitmix_buckets(want_rows + np.int64(base), n_buckets)
    want_rows = want_rows[np.argsort(bucket, kind="stable")]
    sizes = np.bincount(bucket, minlength=n_buckets)
    shifted = None if table.flushed else table.shifted

    rows, parts = table.split_seen(base, n_buckets)

    assert rows.dtype == np.int64 and rows.tobytes() == want_rows.tobytes()
    assert len(parts) == n_buckets and not table.pending
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for b, part in enumerate(parts):
        want = before[want_rows[starts[b] : starts[b + 1]]]
        assert part.rows.dtype == want.dtype and part.rows.shape == want.shape
        assert part.rows.tobytes() == want.tobytes()
        assert part.shifted is shifted
    assert all(np.array_equal(p.columns, parts[0].columns) for p in parts)
    assert all(np.array_equal(p.factors, parts[0].factors) for p in parts)


def test_split_rows_refuses_rows_out_of_order(compiled_rows):
    rng = np.random.default_rng(7)
    codes, y, exog, ztilde, _, std = _data(rng, 50, 10, 2, 2, 0.0, False)
    table = TermTable()
    table.add(np.zeros((kernels.packed_width(2, 4), 10)), codes, y, exog, ztilde, std=std)
    with pytest.raises(ValueError, match="increasing"):
        table.split_rows(np.array([3, 2]), np.zeros(2, int), 1)


def test_term_rows_of_another_plan_are_not_the_same_plan():
    rows = np.zeros((3, 4))
    a = TermRows(rows, np.array([0, 1, 3]), np.array([1.0, 0.5, 1.0]))
    assert a.same_plan(TermRows(rows.copy(), np.array([0, 1, 3]), np.array([1.0, 0.5, 1.0])))
    assert not a.same_plan(TermRows(rows, np.array([0, 2, 3]), np.array([1.0, 0.5, 1.0])))
    assert not a.same_plan(TermRows(rows, np.array([0, 1, 3]), np.array([1.0, 0.25, 1.0])))
    assert not a.same_plan(TermRows(np.zeros((3, 5)), np.array([0, 1, 3]), a.factors))
    assert as_packed(rows) is rows
    np.testing.assert_array_equal(as_packed(a), np.zeros((3, 3)))


def _column_rows(rng, n: int, n_raw: int, offset: float, x_of, z_of):
    """Raw columns about ``offset`` and the map chosen from the design they make (its
    shifts and power-of-two scales)."""
    columns = [offset + rng.normal(size=n) * 10.0 ** rng.integers(-3, 4) for _ in range(n_raw)]
    plan = ColumnPlan(tuple(x_of), tuple(z_of))
    y, exog, ztilde = plan.matrices(columns)
    xi = x_of.index(-1) if -1 in x_of[:-1] else -1
    zi = z_of.index(-1) if -1 in z_of else -1
    std = Standardization.choose(y, exog, ztilde, (xi, zi), [])
    return columns, plan, std


@st.composite
def _plans(draw):
    """A raw column count and which of them (−1: ones) each column of ``[X y]`` and
    ``Z`` is: an intercept in either or both (without, the sweep does not apply),
    ``Z``'s slopes drawn from the raw."""
    n_raw = draw(st.integers(1, 4))
    raw = list(range(n_raw))
    slopes = draw(st.lists(st.sampled_from(raw), min_size=0, max_size=3, unique=True))
    y = draw(st.sampled_from(raw))
    x_ones, z_ones = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    x_of = ([-1] if x_ones else []) + [c for c in slopes if c != y] + [y]
    # a slope in Z: a random intercept alone gets the within-group sums (the design's)
    z_slopes = draw(st.lists(st.sampled_from(raw), min_size=1, max_size=2, unique=True))
    z_of = ([-1] if z_ones else []) + z_slopes
    return n_raw, x_of, z_of


@settings(max_examples=15)
@given(
    n=st.integers(1, 3 * COLUMNS_CHUNK),
    n_groups=st.integers(1, 60),
    plan=_plans(),
    offset=st.sampled_from([0.0, 3.0, 1e6]),
    cuts=st.lists(st.floats(0, 1), max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_sweep_of_columns_equals_the_numpy_reference(n, n_groups, plan, offset, cuts, seed):
    """:meth:`TermTable.add_columns` against the numpy reference of the matrices the
    columns make (1e-12 relative), whatever the split into calls; its per-group terms
    are :meth:`TermTable.add`'s bit for bit."""
    n_raw, x_of, z_of = plan
    rng = np.random.default_rng(seed)
    columns, plan, std = _column_rows(rng, n, n_raw, offset, x_of, z_of)
    codes = rng.integers(0, n_groups, n)
    y, exog, ztilde = plan.matrices(columns)
    width = kernels.packed_width(len(z_of), len(x_of))
    want = np.zeros((width, n_groups))
    want_glob = kernels.accumulate_packed_into(
        want, codes, y, exog, ztilde, None, std, compiled=False
    )
    got, by_design = np.zeros_like(want), np.zeros_like(want)
    table, design_table = TermTable(), TermTable()
    gram = np.zeros_like(want_glob["xyxy"])
    bounds = sorted({0, n, *(int(c * n) for c in cuts)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            assert table.applies_columns(b - a, len(z_of), std)
            done, sums = table.add_columns(got, codes[a:b], [c[a:b] for c in columns], plan, std)
            assert done == b - a and sums["n"] == b - a
            gram += sums["xyxy"]
            design_table.add(by_design, codes[a:b], y[a:b], exog[a:b], ztilde[a:b], None, std)
    table.flush(got)
    design_table.flush(by_design)
    np.testing.assert_array_equal(got, by_design)
    scale = _abs_scale(codes, n_groups, y, exog, ztilde, None, std)
    assert np.all(np.abs(got - want) <= 1e-12 * scale)
    xy = np.column_stack([exog, y])
    shifted = (xy - np.append(std.x_shift, std.y_shift)) / np.append(std.x_scale, std.y_scale)
    gram_scale = np.abs(shifted).T @ np.abs(shifted)
    assert np.all(np.abs(gram - want_glob["xyxy"]) <= 1e-12 * gram_scale)


@settings(max_examples=30)
@given(
    n=st.integers(1, 3 * COLUMNS_CHUNK),
    n_groups=st.integers(1, 50),
    base=st.integers(-(2**61), 2**61),
    seed=st.integers(0, 2**32 - 1),
)
def test_sweep_of_keys_less_a_base_equals_the_sweep_of_codes(n, n_groups, base, seed):
    """Group keys with the key of table row 0 (``base``) sum as their codes do, bit for
    bit: the table and the global sums."""
    rng = np.random.default_rng(seed)
    columns, plan, std = _column_rows(rng, n, 3, 7.0, [-1, 0, 1, 2], [-1, 0])
    codes = rng.integers(0, n_groups, n)
    width = kernels.packed_width(2, 4)
    by_codes, by_keys = np.zeros((width, n_groups)), np.zeros((width, n_groups))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        table, keyed = TermTable(), TermTable()
        want = table.add_columns(by_codes, codes, columns, plan, std)
        got = keyed.add_columns(by_keys, codes + np.int64(base), columns, plan, std, base)
    table.flush(by_codes)
    keyed.flush(by_keys)
    np.testing.assert_array_equal(by_keys, by_codes)
    assert got[0] == want[0] == n
    for name in want[1]:
        np.testing.assert_array_equal(got[1][name], want[1][name])


def test_sweep_of_keys_refuses_a_key_outside_the_table(compiled_rows):
    """A key less the base outside the table's rows: the sweep's error."""
    columns, plan, std = _column_rows(np.random.default_rng(3), 10, 3, 1.0, [-1, 0, 1, 2], [-1, 0])
    acc = np.zeros((kernels.packed_width(2, 4), 4))
    keys = np.arange(100, 110, dtype=np.int64)
    with pytest.raises(ValueError, match="codes must be in"):
        TermTable().add_columns(acc, keys, columns, plan, std, 101)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, COLUMNS_CHUNK - 1, COLUMNS_CHUNK, 2 * COLUMNS_CHUNK + 7])
def test_sweep_stops_before_the_chunk_of_a_value_not_finite(bad, row, compiled_rows):
    """The rows before the chunk holding the value are summed, nothing from it on."""
    rng = np.random.default_rng(11)
    n, n_groups = 3 * COLUMNS_CHUNK, 40
    columns, plan, std = _column_rows(rng, n, 3, 5.0, [-1, 0, 1, 2], [-1, 0])
    columns[2][row] = bad
    codes = rng.integers(0, n_groups, n)
    got = np.zeros((kernels.packed_width(2, 4), n_groups))
    table = TermTable()
    done, sums = table.add_columns(got, codes, columns, plan, std)
    table.flush(got)
    assert done == row - row % COLUMNS_CHUNK and sums["n"] == done
    y, exog, ztilde = plan.matrices([c[:done] for c in columns])
    want = np.zeros_like(got)
    want_glob = kernels.accumulate_packed_into(want, codes[:done], y, exog, ztilde, None, std)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sums["xyxy"], want_glob["xyxy"], rtol=1e-12, atol=1e-9)


def test_sweep_left_to_the_design_without_intercepts_or_compiled_pass(monkeypatch):
    rng = np.random.default_rng(2)
    _, _, with_ones = _column_rows(rng, 50, 2, 3.0, [-1, 0, 1], [-1, 0])
    _, _, no_ones = _column_rows(rng, 50, 2, 3.0, [0, 1], [0])
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    table = TermTable()
    assert table.applies_columns(10**6, 2, with_ones)
    assert not table.applies_columns(10**6, 1, no_ones)  # its column sums: the design's
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert not table.applies_columns(10**6, 2, with_ones)


def test_sweep_refuses_columns_unlike_the_codes(compiled_rows):
    rng = np.random.default_rng(6)
    columns, plan, std = _column_rows(rng, 30, 2, 0.0, [-1, 0, 1], [-1, 0])
    acc = np.zeros((kernels.packed_width(2, 3), 5))
    codes = rng.integers(0, 5, 30)
    with pytest.raises(ValueError, match="float64 of 30 rows"):
        TermTable().add_columns(acc, codes, [columns[0], columns[1][:20]], plan, std)


def _merge_parts(rng, sizes: list[int], universe: int, n_terms: int, width: int):
    """Parts of term rows of one plan over increasing keys of ``−7 … universe−8``: a plan
    whose packed columns repeat terms, scaled by powers of two (the count's too)."""
    columns = rng.integers(0, n_terms, width)
    factors = 2.0 ** rng.integers(-6, 6, width)
    keys, parts = [], []
    for size in sizes:
        ids = np.sort(rng.choice(universe, size=min(size, universe), replace=False)) - 7
        rows = rng.standard_normal((ids.size, n_terms)) * 10.0 ** rng.integers(-8, 8, (ids.size, 1))
        rows.flat[::7] = -0.0
        keys.append(ids.astype(np.int64))
        parts.append(TermRows(rows, columns, factors))
    return keys, parts


@settings(max_examples=40)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=4),
    universe=st.integers(1, 120),
    chunk=st.sampled_from([1, 3, 16, 4096]),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_term_rows_is_the_add_by_position_then_expanded(sizes, universe, chunk, seed):
    """The parts' rows added by key into the evaluators' chunks, compiled and numpy, are
    the parts' rows added by position (:func:`add_rows_into`, from zero, in the parts'
    order) and then expanded (:meth:`TermRows.column`), bit for bit (signed zeros too),
    whatever the parts' sizes (empty ones among them), overlaps and chunking."""
    rng = np.random.default_rng(seed)
    n_terms, width = 5, 9
    keys, parts = _merge_parts(rng, sizes, universe, n_terms, width)
    entries = rng.permutation(width)[: int(rng.integers(1, width + 1))]
    union = np.unique(np.concatenate(keys))
    table = np.zeros((union.size, n_terms))
    for k, part in zip(keys, parts, strict=True):
        add_rows_into(table, np.searchsorted(union, k), part.rows)
    summed = TermRows(table, parts[0].columns, parts[0].factors)
    want = np.array([summed.column(int(c)) for c in entries]).reshape(entries.size, -1)
    for mode in ("numba", "numpy"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DMIXED_KERNELS", mode)
            merged, counts, chunks = merge_term_rows(keys, parts, entries, chunk)
        np.testing.assert_array_equal(merged, union)
        np.testing.assert_array_equal(counts, summed.column(0))
        assert len(chunks) == max(1, -(-union.size // chunk))
        assert all(c.flags.c_contiguous and c.shape[0] == entries.size for c in chunks)
        got = np.concatenate(chunks, axis=1)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def _two_runs(rng, relation: str, size: int, n_terms: int):
    """Two runs of increasing keys: the same keys (``"same"``), the first's keys with
    one left out of the second or one added to it (``"drop"``, ``"add"``: at the start,
    inside or at the end), one empty (``"empty0"``, ``"empty1"``), both empty
    (``"none"``); keys up to int64's largest; rows with signed zeros, NaN-free."""
    top = np.iinfo(np.int64).max
    base = np.sort(rng.choice(4 * size + 8, size=size, replace=False)).astype(np.int64)
    if rng.integers(2):  # keys that end at int64's largest (the kernels' end marker)
        base = base - base[-1] + top if size else base
    k0, k1 = base, base.copy()
    if relation in ("drop", "add") and size:
        at = int(rng.choice([0, size // 2, size - 1]))
        if relation == "drop":
            k1 = np.delete(base, at)
        else:  # a key the first run lacks, next to position ``at``
            spare = np.setdiff1d(np.arange(base[0] - 1, base[-1]), base)
            new = base[0] - 1 if at == 0 or not spare.size else spare[-1 if at else 0]
            k1 = np.sort(np.append(base, new))
    elif relation == "empty0":
        k0 = base[:0]
    elif relation == "empty1":
        k1 = base[:0]
    elif relation == "none":
        k0 = k1 = base[:0]

    def rows(n: int) -> np.ndarray:
        out = rng.standard_normal((n, n_terms)) * 10.0 ** rng.integers(-8, 8, (n, 1))
        out.flat[:: int(rng.integers(2, 6))] = -0.0
        out.flat[1 :: int(rng.integers(3, 9))] = 0.0
        return out

    return (k0, k1), (rows(k0.size), rows(k1.size))


@settings(max_examples=60)
@given(
    relation=st.sampled_from(["same", "drop", "add", "empty0", "empty1", "none"]),
    size=st.integers(0, 70),
    chunk=st.sampled_from([1, 3, 16, 4096]),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_of_two_runs_is_the_general_merge(relation, size, chunk, seed):
    """The kernel of two runs writes what the general kernel of any number of runs does,
    bit for bit (signed zeros too): keys the same, one key apart either way, one or both
    runs empty, keys up to int64's largest; and so does :func:`merge_term_rows` of the
    two parts, compiled (the two runs' kernel) and numpy."""
    from dmixed.kernels.term_jit import merge_rows, merge_two_rows, merged_count

    rng = np.random.default_rng(seed)
    n_terms, width = 6, 9
    keys, rows = _two_runs(rng, relation, size, n_terms)
    columns = rng.integers(0, n_terms, width)
    factors = 2.0 ** rng.integers(-6, 6, width)
    entries = rng.permutation(width)[: int(rng.integers(1, width + 1))]
    cols = np.ascontiguousarray(columns[entries])
    facs = np.ascontiguousarray(factors[entries])
    total = merged_count(keys)
    assert total == np.union1d(*keys).size
    got = []
    for run in ("general", "two"):
        out = np.full(total * cols.size, np.nan)
        merged, counts = np.full(total, -1, dtype=np.int64), np.full(total, np.nan)
        edges = ChunkSpans.cut(total, chunk).edges
        args = (cols, facs, int(columns[0]), float(factors[0]), edges, out, merged, counts)
        if run == "general":
            merge_rows(keys, rows, *args)
        else:
            merge_two_rows(keys[0], keys[1], rows[0], rows[1], *args)
        got.append((out, merged, counts))
    out, merged, counts = got[1]
    assert not np.isnan(out).any() and not np.isnan(counts).any()  # every entry written
    for a, b in zip(*got, strict=True):
        np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))  # bits
    np.testing.assert_array_equal(got[1][1], np.union1d(*keys))
    parts = [TermRows(r, columns, factors) for r in rows]
    for mode in ("numba", "numpy"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DMIXED_KERNELS", mode)
            merged, counts, chunks = merge_term_rows(list(keys), parts, entries, chunk)
        np.testing.assert_array_equal(merged, got[0][1])
        np.testing.assert_array_equal(counts.view(np.int64), got[0][2].view(np.int64))
        flat = np.concatenate([c.reshape(-1) for c in chunks]) if total else np.empty(0)
        np.testing.assert_array_equal(flat.view(np.int64), got[0][0].view(np.int64))


@pytest.mark.parametrize("mode", ["numba", "numpy"])
def test_merge_term_rows_refuses_keys_out_of_order(mode, monkeypatch):
    """Keys not increasing within a part (repeated, or out of order): None, nothing
    merged (the caller adds such parts by position)."""
    monkeypatch.setenv("DMIXED_KERNELS", mode)
    rng = np.random.default_rng(2)
    keys, parts = _merge_parts(rng, [6, 5], 20, 4, 6)
    entries = np.arange(6)
    for bad in (keys[1][[0, 2, 1, 3, 4]], np.append(keys[1][:4], keys[1][3])):
        assert merge_term_rows([keys[0], bad], parts, entries, 4) is None


def _splitmix_buckets(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """The reference: splitmix64's finalizer in numpy's uint64 arithmetic (wrapping)."""
    u = np.ascontiguousarray(keys).view(f"u{keys.dtype.itemsize}").astype(np.uint64)
    u ^= u >> np.uint64(30)
    u *= np.uint64(0xBF58476D1CE4E5B9)
    u ^= u >> np.uint64(27)
    u *= np.uint64(0x94D049BB133111EB)
    u ^= u >> np.uint64(31)
    return (u % np.uint64(n_buckets)).astype(np.int64)


@settings(max_examples=60)
@given(
    dtype=st.sampled_from(["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]),
    n=st.integers(0, 300),
    n_buckets=st.integers(1, 70),
    seed=st.integers(0, 2**32 - 1),
)
def test_hash_buckets_is_the_splitmix_finalizer_modulo(dtype, n, n_buckets, seed):
    """Compiled, every integer width, the extremes among the keys, powers of two and
    other bucket counts: the finalizer of the keys' zero-extended bits modulo the
    buckets, as numpy's wrapping uint64 arithmetic computes it."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    keys = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
    keys[:2] = [info.min, info.max][: min(n, 2)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        got = hash_buckets(keys, n_buckets)
    assert got is not None and got.dtype == np.int64
    np.testing.assert_array_equal(got, _splitmix_buckets(keys, n_buckets))


@pytest.mark.parametrize("keys", [np.arange(5.0), np.array(["a", "b"], dtype=object)])
def test_hash_buckets_left_to_the_caller(keys, monkeypatch):
    """Keys that are not integers, or a pass that does not run compiled: None."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    assert hash_buckets(keys, 2) is None
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert hash_buckets(np.arange(5), 2) is None


@settings(max_examples=60)
@given(
    n=st.integers(1, 300),
    span=st.sampled_from([10, 2**40, 2**62]),
    base=st.integers(-(2**62), 2**62),
    seed=st.integers(0, 2**32 - 1),
)
def test_key_codes_are_the_range_and_the_differences(n, span, base, seed):
    """Compiled: the keys' minimum and maximum, and their differences from ``base``
    wherever the keys lie within 2**62 of it (as numpy's int64 subtraction)."""
    rng = np.random.default_rng(seed)
    keys = base + rng.integers(-span, span, size=n, dtype=np.int64, endpoint=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        got = key_codes(keys, base)
    assert got is not None
    lo, hi, codes = got
    assert (lo, hi) == (int(keys.min()), int(keys.max()))
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, keys - base)


@pytest.mark.parametrize(
    "keys", [np.arange(5, dtype=np.int32), np.arange(5, dtype=np.uint64), np.arange(5.0)]
)
def test_key_codes_left_to_the_caller(keys, monkeypatch):
    """Keys that are not int64, or a pass that does not run compiled: None."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    assert key_codes(keys, 0) is None
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert key_codes(np.arange(5), 0) is None


@settings(max_examples=60)
@given(
    n=st.integers(1, 300),
    span=st.sampled_from([10, 2**40, 2**62]),
    base=st.integers(-(2**62), 2**62),
    seed=st.integers(0, 2**32 - 1),
)
def test_key_range_is_the_minimum_and_maximum(n, span, base, seed):
    """Compiled: the int64 keys' minimum and maximum."""
    rng = np.random.default_rng(seed)
    keys = base + rng.integers(-span, span, size=n, dtype=np.int64, endpoint=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        assert key_range(keys) == (int(keys.min()), int(keys.max()))


@pytest.mark.parametrize(
    "keys",
    [np.arange(5, dtype=np.int32), np.arange(5, dtype=np.uint64), np.arange(5.0), np.arange(0)],
)
def test_key_range_left_to_the_caller(keys, monkeypatch):
    """Keys that are not int64 or none, or a pass that does not run compiled: None."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    assert key_range(keys) is None
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert key_range(np.arange(5)) is None


@pytest.mark.parametrize("choice", ["numba", "numpy"])
@pytest.mark.parametrize(
    "dtype", [np.int64, np.uint64, np.float64, np.int32, object], ids=lambda d: str(d)
)
@settings(max_examples=20)
@given(
    n=st.integers(0, 3000),
    bad=st.sampled_from([None, np.nan, np.inf, -np.inf]),
    seed=st.integers(0, 2**32 - 1),
)
def test_held_columns_are_copies_checked_finite(choice, dtype, n, bad, seed):
    """Compiled and numpy alike: copies of the keys and columns (no memory shared with
    them), or None where a value is not finite."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 1000, n).astype(dtype)
    columns = [rng.normal(size=n) for _ in range(3)]
    if bad is not None and n:
        columns[int(rng.integers(3))][int(rng.integers(n))] = bad
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", choice)
        got = held_columns(keys, columns)
    if bad is not None and n:
        assert got is None
        return
    assert got is not None
    held_keys, held = got
    assert held_keys.dtype == keys.dtype
    np.testing.assert_array_equal(held_keys, keys)
    assert not np.shares_memory(held_keys, keys) or not n
    for h, c in zip(held, columns, strict=True):
        assert h.dtype == np.float64 and h.shape == c.shape
        np.testing.assert_array_equal(h, c)
        assert not np.shares_memory(h, c) or not n


def test_held_columns_without_keys_hold_the_columns_alone():
    columns = [np.arange(5.0), np.ones(5)]
    keys, held = held_columns(None, columns)
    assert keys is None
    for got, want in zip(held, columns, strict=True):
        np.testing.assert_array_equal(got, want)
        assert not np.shares_memory(got, want)
    assert held_columns(None, [np.array([1.0, np.nan])]) is None


def test_held_columns_refuse_columns_unlike_the_keys():
    with pytest.raises(ValueError, match="float64 of 4 rows"):
        held_columns(np.arange(4), [np.zeros(3)])
    with pytest.raises(ValueError, match="float64 of 4 rows"):
        held_columns(np.arange(4), [np.zeros(4, dtype=np.float32)])


def test_table_buffer_reuses_a_buffer_no_array_views(kept_buffers):
    """A buffer is handed out again, zeroed, once nothing views it; never while a view
    of it (a part of a chain's partials) lives; small tables are fresh arrays."""
    first = kept_buffers.table_buffer((100, 10), zeroed=True, use="table")
    assert first.shape == (100, 10) and first.flags.c_contiguous and not first.any()
    address = first.ctypes.data
    part = first[:30]  # a view given away, as split_rows' parts
    first[:] = 7.0
    del first
    busy = kept_buffers.table_buffer((100, 10), zeroed=True, use="table")
    assert busy.ctypes.data != address and not busy.any()
    del part
    again = kept_buffers.table_buffer((90, 10), zeroed=True, use="table")
    assert again.ctypes.data == address and again.shape == (90, 10) and not again.any()
    other = busy.ctypes.data
    del busy
    unset = kept_buffers.table_buffer((50, 10), zeroed=False, use="table")
    assert unset.shape == (50, 10) and unset.ctypes.data == other
    small = kept_buffers.table_buffer((10, 10), zeroed=True, use="table")  # 800 bytes: not kept
    assert not small.any() and kept_buffers.kept_table_buffers() == 2


def test_table_buffer_keeps_at_most_reuse_kept(kept_buffers):
    """A list of REUSE_KEPT buffers no array views drops the first for a new one;
    buffers in use do not count (their arrays hold the memory anyway) and are not
    handed out; let go, the first are dropped down to REUSE_KEPT at the next request."""
    n = kept_buffers.REUSE_KEPT
    idle = [kept_buffers.table_buffer((200, 10), zeroed=False, use="table") for _ in range(n)]
    addresses = [a.ctypes.data for a in idle]
    del idle
    extra = kept_buffers.table_buffer((400, 10), zeroed=True, use="table")  # none fits
    assert kept_buffers.kept_table_buffers() == n and extra.ctypes.data not in addresses
    held = [kept_buffers.table_buffer((200, 10), zeroed=False, use="table") for _ in range(n - 1)]
    assert sorted(h.ctypes.data for h in held) == sorted(addresses[1:])  # the first dropped
    for h in held:
        h[:] = 3.0
    more = kept_buffers.table_buffer((200, 10), zeroed=True, use="table")  # all in use
    assert kept_buffers.kept_table_buffers() == n + 1 and not more.any()
    assert all((h == 3.0).all() for h in held)
    address = extra.ctypes.data
    del extra
    assert kept_buffers.table_buffer((400, 10), zeroed=True, use="table").ctypes.data == address
    del held, more, h
    again = kept_buffers.table_buffer((200, 10), zeroed=False, use="table")
    assert kept_buffers.kept_table_buffers() == n and again.ctypes.data != addresses[1]


def test_table_buffer_keeps_at_most_reuse_max_bytes(kept_buffers, monkeypatch):
    """Buffers no array views make room for a new one within REUSE_MAX_BYTES (the new
    one counted), buffers in use within REUSE_ALL_BYTES in all; one larger than
    REUSE_MAX_BYTES is not kept; buffers let go since are dropped, the first first,
    down to REUSE_MAX_BYTES at the next request."""
    # (each buffer holds a cache line more than its array: table_buffer aligns it)
    monkeypatch.setattr(kept_buffers, "REUSE_MAX_BYTES", 40_000 + 2 * CACHE_LINE)
    monkeypatch.setattr(kept_buffers, "REUSE_ALL_BYTES", 64_000 + 3 * CACHE_LINE)
    first = kept_buffers.table_buffer((300, 10), zeroed=True, use="table")  # 24 kB
    second = kept_buffers.table_buffer((200, 10), zeroed=True, use="table")  # 16 kB: 40 kB in all
    assert kept_buffers.kept_table_buffers() == 2
    del first
    # 32 kB: first (no array views it) dropped; second, in use, kept (48 kB in all)
    third = kept_buffers.table_buffer((400, 10), zeroed=True, use="table")
    assert kept_buffers.kept_table_buffers() == 2 and not third.any()
    # 24 kB with both in use: 72 kB in all, so second (the first in use) dropped
    fourth = kept_buffers.table_buffer((300, 10), zeroed=True, use="table")
    assert kept_buffers.kept_table_buffers() == 2 and not fourth.any()
    assert (second == 0.0).all()  # still its array's memory
    huge = kept_buffers.table_buffer((600, 10), zeroed=False, use="table")  # 48 kB: never kept
    assert huge.shape == (600, 10) and kept_buffers.kept_table_buffers() == 2
    address = fourth.ctypes.data
    del third, fourth  # 56 kB no array views: third dropped at the next request
    again = kept_buffers.table_buffer((200, 10), zeroed=True, use="table")
    assert again.ctypes.data == address and kept_buffers.kept_table_buffers() == 1


def test_table_buffer_hands_a_buffer_out_for_its_own_use_only(kept_buffers):
    """A merge never gets a free table's memory (the next data pass's table would get
    fresh pages instead), nor a table a free merge's; each gets its own use's."""
    table = kept_buffers.table_buffer((200, 10), zeroed=True, use="table")
    taddress = table.ctypes.data
    del table  # free: the chain's rows all moved out
    merged = kept_buffers.table_buffer((100, 10), zeroed=False, use="merge")
    maddress = merged.ctypes.data
    assert maddress != taddress and kept_buffers.kept_table_buffers() == 2
    spill = kept_buffers.table_buffer((100, 10), zeroed=False, use="spill")  # merged held
    assert spill.ctypes.data not in (taddress, maddress)
    del spill, merged
    assert kept_buffers.table_buffer((200, 10), zeroed=True, use="table").ctypes.data == taddress
    assert kept_buffers.table_buffer((90, 10), zeroed=False, use="merge").ctypes.data == maddress
    assert kept_buffers.kept_table_buffers() == 3
    with pytest.raises(ValueError, match="use must be one of"):
        kept_buffers.table_buffer((200, 10), zeroed=True, use="tables")


def test_table_buffer_keeps_a_held_merge_beside_reuse_kept_idle_buffers(kept_buffers):
    """As on a worker of 1M groups: idle buffers fill all but one of REUSE_KEPT's
    places (the partitions' held columns, two chains' tables, a spill) and the last
    result holds its merge; the refit's merge is kept beside them, the held one too,
    and the fit after, once that result is gone, gets the held one's memory (main
    and a count of buffers in use dropped the held merge, so that every refit's
    merge was fresh pages)."""
    n = kept_buffers.REUSE_KEPT
    idle = [kept_buffers.table_buffer((20, 10), zeroed=False, use="held") for _ in range(n - 4)]
    idle += [kept_buffers.table_buffer((40, 10), zeroed=True, use="table") for _ in range(2)]
    idle.append(kept_buffers.table_buffer((30, 10), zeroed=False, use="spill"))
    last = kept_buffers.table_buffer((500, 10), zeroed=False, use="merge")  # the result's
    held = last.ctypes.data
    del idle  # the fit's data pass done
    assert kept_buffers.kept_table_buffers() == n
    refit = kept_buffers.table_buffer((500, 10), zeroed=False, use="merge")
    assert refit.ctypes.data != held and kept_buffers.kept_table_buffers() == n + 1
    del last  # the user lets the last result go
    again = kept_buffers.table_buffer((500, 10), zeroed=False, use="merge")
    assert again.ctypes.data == held and kept_buffers.kept_table_buffers() == n + 1
    # both let go: one idle buffer more than REUSE_KEPT, the first dropped
    del refit, again
    kept_buffers.table_buffer((20, 10), zeroed=False, use="held")
    assert kept_buffers.kept_table_buffers() == n


def test_table_buffer_serves_a_refit_while_the_last_result_holds_its_merge(
    kept_buffers, monkeypatch
):
    """A refit's merged rows while the last fit's result still holds its own (a
    buffer in use): the new buffer is kept beside it, and the fit after, once that
    result is gone, takes its memory, no fresh allocation (main dropped the buffer in
    use to make room, so that every refit's merge was fresh pages)."""
    import tracemalloc

    table_bytes, merge_bytes = 16_000 + CACHE_LINE, 20_000 + CACHE_LINE
    monkeypatch.setattr(kept_buffers, "REUSE_MAX_BYTES", table_bytes + merge_bytes)
    monkeypatch.setattr(kept_buffers, "REUSE_ALL_BYTES", 4 * merge_bytes, raising=False)
    results: list = []
    for fit in range(4):
        table = kept_buffers.table_buffer((200, 10), zeroed=True, use="table")
        tracemalloc.start()
        try:
            merged = kept_buffers.table_buffer((250, 10), zeroed=False, use="merge")
            fresh = tracemalloc.get_traced_memory()[0] >= 20_000
        finally:
            tracemalloc.stop()
        del table  # the chains' table, free once merged
        merged[:] = fit
        results.append(merged)  # the new result, then the last one let go
        del merged
        if len(results) > 1:
            results.pop(0)
        assert fresh == (fit < 2), fit
    assert kept_buffers.kept_table_buffers() == 3 and (results[0] == 3).all()


def test_table_buffer_drops_its_own_uses_buffers_first(kept_buffers, monkeypatch):
    """Results held one after another (each keeps its merged rows): every new merge's
    buffer is kept beside those in use (they do not count toward REUSE_KEPT) until
    REUSE_ALL_BYTES, then takes the place of an earlier merge's, the first first, and
    never of a free table's or spill's, which later passes get again."""
    merges = 4  # merge buffers REUSE_ALL_BYTES holds beside the table's and the spill's
    monkeypatch.setattr(
        kept_buffers,
        "REUSE_ALL_BYTES",
        16_000 + 8_000 + merges * 12_000 + (2 + merges) * CACHE_LINE,
    )
    table = kept_buffers.table_buffer((200, 10), zeroed=True, use="table")  # 16 kB
    spill = kept_buffers.table_buffer((100, 10), zeroed=False, use="spill")  # 8 kB
    addresses = (table.ctypes.data, spill.ctypes.data)
    del table, spill
    held = []
    for _ in range(merges + 3):
        held.append(kept_buffers.table_buffer((150, 10), zeroed=False, use="merge"))  # 12 kB
        held[-1][:] = len(held)
        assert kept_buffers.kept_table_buffers() == min(len(held), merges) + 2
    assert (
        kept_buffers.table_buffer((200, 10), zeroed=True, use="table").ctypes.data == addresses[0]
    )
    assert (
        kept_buffers.table_buffer((100, 10), zeroed=False, use="spill").ctypes.data == addresses[1]
    )
    for i, h in enumerate(held):  # the dropped ones' arrays keep their values
        assert (h == i + 1).all()
    del h
    address = held.pop().ctypes.data  # the last result let go: its memory the next merge's
    last = kept_buffers.table_buffer((150, 10), zeroed=False, use="merge")
    assert last.ctypes.data == address
    assert kept_buffers.kept_table_buffers() == merges + 2


def test_table_buffer_is_numpys_without_keeping(kept_buffers):
    """Outside a process that keeps tables (the driver, in-process Dask), numpy arrays
    of their own (a view of one, on a cache line), nothing kept."""
    kept_buffers.keep_table_buffers(False)
    got = kept_buffers.table_buffer((10_000, 10), zeroed=True, use="table")
    assert got.base is not None and got.base.base is None and got.flags.c_contiguous
    assert not got.any() and kept_buffers.kept_table_buffers() == 0


@pytest.mark.parametrize("keeping", [False, True])
@pytest.mark.parametrize("use", BUFFER_USES)
def test_table_buffers_start_on_a_cache_line(kept_buffers, keeping, use):
    """Every buffer, fresh or handed out again, starts on a cache line, its rows where
    the sweep's prefetches expect them (:func:`~dmixed.kernels.term_jit.row_prefetches`)."""
    kept_buffers.keep_table_buffers(keeping)
    for rows, width in [(3000, 10), (2999, 11), (5, 3), (4000, 16), (2000, 7)]:
        got = kept_buffers.table_buffer((rows, width), zeroed=True, use=use)
        assert got.shape == (rows, width) and got.flags.c_contiguous and not got.any()
        assert got.ctypes.data % CACHE_LINE == 0
        got[:] = 1.0
        del got


def test_split_rows_of_a_reused_table_are_those_of_a_fresh_one(kept_buffers, compiled_rows):
    """Two tables in turn, the second in the first's memory (dirty from its moved
    rows): the parts are those of tables in fresh memory, bit for bit."""
    got: dict = {}
    address: dict = {}
    for keeping in (False, True):
        kept_buffers.keep_table_buffers(keeping)
        for seed in (1, 2):
            rng = np.random.default_rng(seed)
            codes, y, exog, ztilde, _, std = _data(rng, 500, 60, 4, 2, 3.0, False)
            acc = np.zeros((kernels.packed_width(2, 5), 60))
            table = TermTable()
            table.add(acc, codes, y, exog, ztilde, std=std)
            address[keeping, seed] = table.table.ctypes.data
            rows = np.flatnonzero(table.counts() != 0)
            _, parts = table.split_rows(rows, rng.integers(0, 2, rows.size), 2)
            got[keeping, seed] = [np.asarray(p).copy() for p in parts]
            del table, parts  # the first's memory free for the second
    assert address[True, 2] == address[True, 1]
    for seed in (1, 2):
        for mine, ref in zip(got[True, seed], got[False, seed], strict=True):
            np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("mode", ["numba", "numpy"])
def test_merge_term_rows_of_a_reused_buffer_are_those_of_a_fresh_one(kept_buffers, mode):
    """Merges in turn where buffers are kept: the second in the first's memory once
    nothing views it (dirty with the first's sums), never while a chunk of the first
    lives; the chunks are those of a merge in fresh memory, bit for bit."""
    from dmixed.kernels import term_table

    rng = np.random.default_rng(5)
    runs = [_merge_parts(rng, [300, 250, 280], 300, 5, 9) for _ in range(3)]  # 300 keys
    entries = np.array([4, 0, 7, 2, 8, 1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", mode)
        term_table.keep_table_buffers(False)
        want = [merge_term_rows(keys, parts, entries, 64)[2] for keys, parts in runs]
        term_table.keep_table_buffers(True)
        first = merge_term_rows(*runs[0], entries, 64)[2]
        held = first[0].ctypes.data
        assert kept_buffers.kept_table_buffers() == 1
        second = merge_term_rows(*runs[1], entries, 64)[2]  # the first's chunks live
        assert second[0].ctypes.data != held and kept_buffers.kept_table_buffers() == 2
        got = [[c.copy() for c in first], [c.copy() for c in second]]
        del first
        third = merge_term_rows(*runs[2], entries, 64)[2]  # in the first's memory
        assert third[0].ctypes.data == held
        got.append(third)
    for mine, ref in zip(got, want, strict=True):
        for a, b in zip(mine, ref, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("protocol", [4, 5])
def test_term_rows_pickled_in_pieces_are_the_same_rows(kept_buffers, monkeypatch, protocol):
    """A TermRows sent to another process goes as row pieces of at most
    MOVED_PIECE_BYTES (out of band with protocol 5: views, no copy) and comes back the
    same rows bit for bit, joined in a kept buffer of its own use where buffers are
    kept; one piece comes back as it went."""
    import pickle

    monkeypatch.setattr(kept_buffers, "MOVED_PIECE_BYTES", 2000)  # 25 rows of 10
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((110, 10))
    rows[3, 4] = -0.0
    part = kept_buffers.TermRows(rows[:103], np.arange(14) % 10, 2.0 ** np.arange(14))
    buffers: list = []
    if protocol == 5:
        data = pickle.dumps(part, protocol=protocol, buffer_callback=buffers.append)
        sizes = [b.raw().nbytes for b in buffers]
        assert sizes[:5] == [2000, 2000, 2000, 2000, 240]  # the rows' pieces
    else:
        data = pickle.dumps(part, protocol=protocol)
    for _ in range(2):  # the second in the first's memory, once nothing views it
        got = pickle.loads(data, buffers=buffers or None)
        np.testing.assert_array_equal(got.rows, rows[:103])
        np.testing.assert_array_equal(np.signbit(got.rows), np.signbit(rows[:103]))
        np.testing.assert_array_equal(got.columns, part.columns)
        np.testing.assert_array_equal(got.factors, part.factors)
        assert got.rows.flags.c_contiguous and kept_buffers.kept_table_buffers() == 1
        del got
    small = kept_buffers.TermRows(rows[:20], part.columns, part.factors)
    back = pickle.loads(pickle.dumps(small, protocol=protocol))
    np.testing.assert_array_equal(back.rows, rows[:20])
    empty = kept_buffers.TermRows(rows[:0], part.columns, part.factors)
    assert pickle.loads(pickle.dumps(empty, protocol=protocol)).rows.shape == (0, 10)


def test_the_sweep_keeps_each_groups_slope_about_its_first_value():
    """A random intercept and a slope (the plan's :class:`ShiftTerms`): the sweep's table
    keeps every group's first slope value and the sums about it, two calls adding to
    one table, as :func:`~dmixed.kernels.shifts.part_of_rows` makes them of all the
    rows (the same differences and products in the same order)."""
    from dmixed.kernels import shifts

    rng = np.random.default_rng(5)
    n_groups = 50
    codes = _shuffled_codes(rng, n_groups, 1)
    n = codes.size
    t = 1.7e9 + 3e7 * rng.random(n_groups)[codes] + rng.normal(size=n)
    x2, y = rng.normal(size=n), rng.normal(size=n)
    exog = np.column_stack([np.ones(n), t, x2])
    std = Standardization.choose(y, exog, exog[:, :2].copy())
    plan = ColumnPlan(x_of=(-1, 0, 1, 2), z_of=(-1, 0))
    columns = [t, x2, y]
    table = TermTable(keep_shifts=True)
    acc = np.zeros((PackedLayout(2, 4).width, n_groups))
    half = n // 2
    for rows in (slice(0, half), slice(half, n)):
        table.add_columns(acc, codes[rows], [c[rows] for c in columns], plan, std)
    assert table.shifted is not None
    off = TermTable()  # (keep_shifts off: the plain table)
    off.add_columns(np.zeros_like(acc), codes, columns, plan, std)
    assert off.shifted is None and off.table.shape[1] < table.table.shape[1]
    got = table.shifted.part(np.arange(n_groups), table.table[:n_groups])
    want = shifts.rows_part(np.arange(n_groups), codes, y, exog, exog[:, :2], None, std)
    assert got.layout == want.layout
    for name in ("count", "first", "dsum", "dgram", "dxy", "xsum"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got.first, want.first)


@pytest.mark.parametrize("ones", [False, True])
def test_the_sweep_of_weighted_rows_keeps_their_weighted_sums_about_the_shifts(ones, compiled_rows):
    """Weighted rows (:meth:`TermTable.add`, two calls into one table): the table keeps
    every group's first slope value and the weighted sums about it (``Σw``, ``Σw δ``,
    ``Σw δδ'``, ``Σw δa``, ``Σw a``), as :func:`~dmixed.kernels.shifts.rows_part` makes
    them of the weighted rows; weights of 1 keep the unweighted table's sums bit for
    bit (their plan is the unweighted one's)."""
    from dmixed.kernels import shifts

    rng = np.random.default_rng(6)
    n_groups = 50
    codes = _shuffled_codes(rng, n_groups, 1)
    n = codes.size
    y, exog, z, std = _timestamp_rows(rng, codes, n_groups)
    w = np.ones(n) if ones else rng.uniform(0.25, 4.0, n)
    table = TermTable(keep_shifts=True)
    acc = np.zeros((PackedLayout(2, 4).width, n_groups))
    half = n // 2
    for rows in (slice(0, half), slice(half, n)):
        table.add(acc, codes[rows], y[rows], exog[rows], z[rows], w[rows], std)
    assert table.shifted is not None
    got = table.shifted.part(np.arange(n_groups), table.table[:n_groups])
    want = shifts.rows_part(np.arange(n_groups), codes, y, exog, z, w, std)
    assert got.layout == want.layout
    np.testing.assert_array_equal(got.first, want.first)
    np.testing.assert_array_equal(got.count, want.count)
    for name in ("wsum", "dsum", "dgram", "dxy", "xsum"):
        a, b = getattr(got, name), getattr(want, name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    if ones:
        plain = TermTable(keep_shifts=True)
        for rows in (slice(0, half), slice(half, n)):
            plain.add(np.zeros_like(acc), codes[rows], y[rows], exog[rows], z[rows], None, std)
        assert plain.shifted == table.shifted
        np.testing.assert_array_equal(plain.table, table.table)


def test_a_plan_change_hands_the_flushed_tables_sums_about_the_shifts_over(compiled_rows):
    """Weighted rows whose first call's weights are all 1 (the unweighted plan) and the
    next call's not (the weighted plan): the change flushes the first table, and
    ``on_flush`` gets it while its :attr:`TermTable.shifted` is still its own, so the
    two tables' sums about the shifts, added by key, are :func:`rows_part`'s of all
    the rows (none dropped at the change)."""
    from dmixed.kernels import shifts

    rng = np.random.default_rng(6)
    n_groups = 50
    codes = _shuffled_codes(rng, n_groups, 2)
    n = codes.size
    y, exog, z, std = _timestamp_rows(rng, codes, n_groups)
    half = n // 2
    w = np.concatenate([np.ones(half), rng.uniform(0.5, 2.0, n - half)])
    keys = np.arange(n_groups)
    handed = []

    def keep(table: TermTable) -> None:
        assert table.shifted is not None and table.table is not None
        seen = np.flatnonzero(table.table[:n_groups, table.shifted.count] != 0)
        handed.append(table.shifted.part(keys[seen], table.table[seen]))

    table = TermTable(keep_shifts=True, on_flush=keep)
    acc = np.zeros((PackedLayout(2, 4).width, n_groups))
    for rows in (slice(0, half), slice(half, n)):
        table.add(acc, codes[rows], y[rows], exog[rows], z[rows], w[rows], std)
    assert table.flushed and len(handed) == 1  # the plan changed once
    np.testing.assert_array_equal(handed[0].wsum, handed[0].count)  # unweighted plan
    assert table.shifted is not None
    seen = np.flatnonzero(table.table[:n_groups, table.shifted.count] != 0)
    got = shifts.merge_parts([*handed, table.shifted.part(keys[seen], table.table[seen])])
    want = shifts.rows_part(keys, codes, y, exog, z, w, std)
    assert got is not None and want is not None
    got = got.of_keys(keys)
    np.testing.assert_array_equal(got.count, want.count)
    for name in ("wsum", "dsum", "dgram", "dxy", "xsum"):
        a, b = getattr(got, name), getattr(want, name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    assert table.flush(acc) and len(handed) == 2  # the caller's flush hands it too
    assert not table.flush(acc) and len(handed) == 2  # nothing pending: nothing handed


@pytest.mark.parametrize("keep_shifts", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_routers_row_estimate_is_the_tables_row(keep_shifts, weighted, compiled_rows):
    """:meth:`TermTable.row_bytes` (what the exchange's router weighs a partial's row
    at) is the width of the table :meth:`TermTable.add` makes of such rows: with the
    sums about the groups' shifts where the table keeps them, weighted or not (an
    estimate of 10 columns for a table of 16 once picked partials where rows were
    fewer bytes)."""
    rng = np.random.default_rng(12)
    n_groups, n = 40, 600
    codes = rng.integers(0, n_groups, n)
    y, exog, z, std = _timestamp_rows(rng, codes, n_groups)
    w = rng.uniform(0.25, 4.0, n) if weighted else None
    table = TermTable(keep_shifts=keep_shifts)
    table.add(np.zeros((PackedLayout(2, 4).width, n_groups)), codes, y, exog, z, w, std)
    assert (table.shifted is not None) == keep_shifts
    assert table.row_bytes(y, exog, z, w, std) == 8 * table.table.shape[1]


def test_release_idle_buffers_drops_those_no_array_views(kept_buffers):
    """The buffers no array views are dropped (their bytes returned), those still in
    use (a held result's merged rows) stay listed and keep their values; a later
    request of their use is fresh memory, kept again."""
    held = kept_buffers.table_buffer((200, 10), zeroed=False, use="merge")
    held[:] = 3.0
    for use in ("table", "spill", "held"):
        kept_buffers.table_buffer((300, 10), zeroed=True, use=use)  # let go at once
    assert kept_buffers.kept_table_buffers() == 4
    dropped = kept_buffers.release_idle_buffers()
    slack = CACHE_LINE - 8  # each buffer's room to start its array on a cache line
    assert dropped == 3 * (8 * 300 * 10 + slack)
    assert kept_buffers.kept_table_buffers() == 1 and (held == 3.0).all()
    assert kept_buffers.release_idle_buffers() == 0  # the one in use stays
    del held
    assert kept_buffers.release_idle_buffers() == 8 * 200 * 10 + slack
    assert kept_buffers.kept_table_buffers() == 0


@settings(max_examples=30)
@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=3),
    universe=st.integers(1, 90),
    chunk=st.sampled_from([1, 2, 7, 16, 4096]),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_chunks_are_the_chunk_spans_cut(sizes, universe, chunk, seed):
    """The chunks :func:`merge_term_rows` writes (compiled and numpy) are those of
    :meth:`ChunkSpans.cut` of the merged keys, the block's own cut (no keys: one chunk
    of none; fewer keys than ``chunk``: one chunk; an uneven last chunk)."""
    rng = np.random.default_rng(seed)
    keys, parts = _merge_parts(rng, sizes, universe, 4, 6)
    entries = np.arange(6)
    for mode in ("numba", "numpy"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DMIXED_KERNELS", mode)
            merged, _, chunks = merge_term_rows(keys, parts, entries, chunk)
        spans = ChunkSpans.cut(merged.size, chunk)
        assert [c.shape[1] for c in chunks] == np.diff(spans.edges).tolist()


def _merge_with_edges(name: str, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run compiled merge ``name`` of two runs of 5 keys (7 merged) by ``edges`` into
    views of larger arrays, whose tails a write past the views would change; return the
    three parents."""
    from dmixed.kernels.term_jit import merge_rows, merge_two_rows

    keys = (np.arange(5, dtype=np.int64), np.arange(2, 7, dtype=np.int64))
    rows = (np.ones((5, 3)), np.ones((5, 3)))
    cols, facs = np.arange(3, dtype=np.int64), np.ones(3)
    big_m, big_c, big_o = np.full(12, -1, dtype=np.int64), np.full(12, -7.0), np.full(40, -7.0)
    args = (cols, facs, 0, 1.0, edges, big_o[:21], big_m[:7], big_c[:7])
    if name == "merge_rows":
        merge_rows(keys, rows, *args)
    else:
        merge_two_rows(keys[0], keys[1], rows[0], rows[1], *args)
    return big_m, big_c, big_o


@pytest.mark.parametrize("name", ["merge_rows", "merge_two_rows"])
@pytest.mark.parametrize(
    ("edges", "why"),
    [
        (np.array([0, 4]), "end at 4, not at the 7"),
        (np.array([1, 7]), "start at 1, not at 0"),
        (np.array([0, 9, 7]), "go down from 9 to 7"),
        (np.array([0, 3, 1, 7]), "go down from 3 to 1"),
        (np.array([], dtype=np.int64), "is empty"),
        (np.array([[0, 7]]), "1-D integer"),
        (np.array([0.0, 7.0]), "1-D integer"),
    ],
)
def test_merge_kernels_refuse_edges_that_are_not_edges_of_the_keys(name, edges, why):
    """The compiled merges write without bounds checks: chunk edges that are empty, not
    1-D integers, not from 0 to the merged keys or that go down (a write past ``merged``,
    ``counts`` and ``out``, or keys dropped) are refused, naming ``edges``, before any
    write."""
    with pytest.raises(ValueError, match="edges") as caught:
        _merge_with_edges(name, edges)
    assert why in str(caught.value)


@pytest.mark.parametrize("name", ["merge_rows", "merge_two_rows"])
def test_merge_kernels_write_inside_their_arrays_by_good_edges(name):
    """Good edges (an empty chunk among them) write every merged key and nothing past
    the arrays."""
    big_m, big_c, big_o = _merge_with_edges(name, np.array([0, 3, 3, 7], dtype=np.int64))
    assert big_m[:7].tolist() == list(range(7))
    assert (big_m[7:] == -1).all() and (big_c[7:] == -7.0).all() and (big_o[21:] == -7.0).all()


@pytest.mark.parametrize("name", ["merge_rows", "merge_two_rows"])
@pytest.mark.parametrize(("short", "why"), [("counts", "counts holds 6"), ("out", "out holds 20")])
def test_merge_kernels_refuse_counts_or_out_too_small_for_the_keys(name, short, why):
    """``counts`` and ``out`` shorter than the merged keys need are refused before any
    write (the compiled merges would write past them)."""
    from dmixed.kernels.term_jit import merge_rows, merge_two_rows

    keys = (np.arange(5, dtype=np.int64), np.arange(2, 7, dtype=np.int64))
    rows = (np.ones((5, 3)), np.ones((5, 3)))
    cols, facs = np.arange(3, dtype=np.int64), np.ones(3)
    big_c, big_o = np.full(12, -7.0), np.full(40, -7.0)
    counts = big_c[:6] if short == "counts" else big_c[:7]
    out = big_o[:20] if short == "out" else big_o[:21]
    edges = np.array([0, 7], dtype=np.int64)
    args = (cols, facs, 0, 1.0, edges, out, np.full(7, -1, dtype=np.int64), counts)
    with pytest.raises(ValueError, match=why):
        if name == "merge_rows":
            merge_rows(keys, rows, *args)
        else:
            merge_two_rows(keys[0], keys[1], rows[0], rows[1], *args)
    assert (big_c == -7.0).all() and (big_o == -7.0).all()


def test_checked_edges_refuses_unsigned_edges_past_int64():
    from dmixed.kernels.compiled import checked_edges

    with pytest.raises(ValueError, match="edges reach"):
        checked_edges(np.array([0, 4, 2**63 + 5], dtype=np.uint64))
    assert checked_edges(np.array([0, 4, 9], dtype=np.uint64)).tolist() == [0, 4, 9]
