"""The kernels generated per product plan."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from dmixed.kernels import term_jit
from dmixed.kernels.compiled import CACHE_LINE

TERMS = (("count",), ("col", 0), ("prod", 0, 1), ("prod", 1, 1))


def test_generated_kernel_adds_every_term_into_its_row(tmp_path, monkeypatch):
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 7, 500)
    u, v = rng.normal(size=(2, 500))
    table = np.full((7, 4), 2.0)  # added into, not overwritten
    term_jit.term_kernel(TERMS)(codes, table, u, v)
    for t, w in enumerate([np.ones(500), u, u * v, v * v]):
        np.testing.assert_allclose(table[:, t], 2.0 + np.bincount(codes, w, 7), rtol=1e-13)
    assert term_jit.term_kernel(TERMS) is term_jit.term_kernel(TERMS)  # once a process
    (module,) = [f for f in os.listdir(tmp_path) if f.endswith(".py")]
    with open(tmp_path / module) as fh:
        assert fh.read() == term_jit.kernel_source(TERMS)


def test_kernel_source_writes_each_term_out():
    source = term_jit.kernel_source(TERMS)
    assert "row[0] += 1.0" in source and "row[2] += v0 * v1" in source
    assert "cache=True" in source
    assert f"prefetch_row(table, codes[i + {term_jit.PREFETCH_DISTANCE}])" in source


AHEAD = term_jit.PREFETCH_DISTANCE


@pytest.mark.parametrize("n", [0, 1, AHEAD, 3 * AHEAD + 1])
def test_prefetching_changes_no_sum(n, tmp_path, monkeypatch):
    """The rows' prefetch (rows ahead of the loop, none past the last) leaves every sum
    as the plain loop makes it: each group's rows added in row order, bit for bit."""
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    rng = np.random.default_rng(n)
    codes = rng.integers(0, 5, n)
    u, v = rng.normal(size=(2, n)) * 1e3
    table = np.zeros((5, 4))
    term_jit.term_kernel(TERMS)(codes, table, u, v)
    expected = np.zeros((5, 4))
    for i in range(n):  # the loop without prefetching, in row order
        expected[codes[i]] += [1.0, u[i], u[i] * v[i], v[i] * v[i]]
    assert np.array_equal(table, expected)


def test_the_row_is_prefetched_for_reading_into_the_second_level(tmp_path, monkeypatch):
    """The hint is a read of locality 2 (``prefetcht1``), both of the row's lines: the
    write hint (``prefetchw``, into the first level) held the loop at half its speed
    with a million groups."""
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    kernel = term_jit.term_kernel(TERMS)
    kernel(np.zeros(3, dtype=np.int64), np.zeros((1, 4)), np.ones(3), np.ones(3))
    (ir_text,) = kernel.inspect_llvm().values()
    calls = [line for line in ir_text.splitlines() if "call void @llvm.prefetch" in line]
    assert calls and len(calls) % 2 == 0  # the row's first and last entries (unrolled)
    assert all(line.rstrip().endswith("i32 0, i32 2, i32 1)") for line in calls)


def test_a_fresh_process_loads_the_kernel_from_the_disk_cache(tmp_path):
    code = (
        "import numpy as np\n"
        "from dmixed.kernels import term_jit\n"
        "k = term_jit.term_kernel((('count',), ('col', 0)))\n"
        "k(np.zeros(3, dtype=np.int64), np.zeros((1, 2)), np.ones(3))\n"
        "print(sum(k.stats.cache_hits.values()))\n"
    )
    env = {**os.environ, term_jit.CACHE_ENV: str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == "0"  # compiled
    assert second.stdout.strip() == "1"  # loaded from the disk cache


def test_a_damaged_disk_cache_is_compiled_again(tmp_path):
    """numba's index and data files of a generated kernel cut short (a full disk, a
    killed process): the next process compiles the kernel again instead of failing
    in numba's unpickling."""
    code = (
        "import numpy as np\n"
        "from dmixed.kernels import term_jit\n"
        "k = term_jit.term_kernel((('count',), ('col', 0)))\n"
        "t = np.zeros((1, 2))\n"
        "k(np.zeros(3, dtype=np.int64), t, np.ones(3))\n"
        "print(t.tolist())\n"
    )
    env = {**os.environ, term_jit.CACHE_ENV: str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    cached = [p for p in (tmp_path / "__pycache__").iterdir() if p.suffix in (".nbi", ".nbc")]
    assert {p.suffix for p in cached} == {".nbi", ".nbc"}
    for path in cached:
        path.write_bytes(path.read_bytes()[:20])
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == first.stdout.strip() == "[[3.0, 3.0]]"


@pytest.mark.parametrize("width", range(1, 41))
def test_row_prefetches_ask_for_every_line_a_row_touches(width):
    """On a table that starts on a cache line, every line of every row is the first
    entry's, the last's or one of :func:`row_prefetches`' entries', and each of those
    entries is, for some row, the only one of them in its line."""
    per_line = CACHE_LINE // 8
    middle = term_jit.row_prefetches(width)
    needed = set()
    for g in range(per_line):  # every row start a line can hold
        first = width * g

        def line(c, first=first):
            return (first + c) // per_line

        touched = {line(c) for c in range(width)}
        assert touched <= {line(0), line(width - 1)} | {line(c) for c in middle}
        needed |= {c for c in middle if line(c) not in (line(0), line(width - 1))}
    assert set(middle) == needed
    assert all(0 < c < width - 1 for c in middle)


def test_a_plain_tables_rows_are_asked_for_as_before():
    """A table of up to ten entries, or sixteen (a row in two lines), asks for no
    middle line: those kernels' sources are what they were."""
    for width in [*range(1, 11), 16]:
        assert term_jit.row_prefetches(width) == ()
    terms = (("count",), ("col", 0), ("prod", 0, 0), ("col", 1), ("prod", 0, 1))
    assert "prefetch_entry" not in term_jit.kernel_source(terms)


def test_a_wide_rows_middle_line_is_asked_for_and_changes_no_sum(tmp_path, monkeypatch):
    """Eleven entries (a row in three lines where it starts late in one; the last the
    table's column of zeros, nothing added to it): entry 8 is asked for too; the sums
    are the plain loop's, bit for bit."""
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    terms = (("count",), *[("col", u) for u in range(5)], *[("prod", u, u) for u in range(4)])
    terms += (("zero",),)
    assert term_jit.row_prefetches(len(terms)) == (8,)
    source = term_jit.kernel_source(terms)
    assert f"prefetch_entry(table, codes[i + {AHEAD}], 8)" in source
    assert "row[10]" not in source
    rng = np.random.default_rng(2)
    n, groups = 3 * AHEAD + 5, 9
    codes = rng.integers(0, groups, n)
    s = rng.normal(size=(5, n)) * 1e3
    table = np.zeros((groups, len(terms)))
    term_jit.term_kernel(terms)(codes, table, *s)
    expected = np.zeros_like(table)
    for i in range(n):
        expected[codes[i], : len(terms) - 1] += [1.0, *s[:, i], *(s[:4, i] * s[:4, i])]
    assert np.array_equal(table, expected)


COLUMN_TERMS = (("count",), ("col", 0), ("prod", 0, 0), ("col", 1), ("prod", 0, 1))


def _ragged_codes(rng, n_groups: int) -> np.ndarray:
    """Codes of groups of 0 to 3 rows, a few of hundreds, shuffled."""
    sizes = rng.integers(0, 4, n_groups)
    sizes[rng.choice(n_groups, min(3, n_groups), replace=False)] = rng.integers(200, 900)
    codes = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(codes)
    return codes


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("base", [0, -(2**40), 2**40])
def test_the_column_sweep_is_bincounts_sums_bit_for_bit(seed, base, tmp_path, monkeypatch):
    """Every table entry of :func:`term_jit.columns_kernel` is 0 plus its group's values
    in row order: ``np.bincount``'s sums bit for bit, for random and ragged codes (groups
    of no rows left zero) over several chunks, as codes or as keys less a base."""
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    rng = np.random.default_rng(seed)
    n_groups = 3000
    for codes in (
        rng.integers(0, n_groups, 3 * term_jit.COLUMNS_CHUNK + 17),
        _ragged_codes(rng, n_groups),
    ):
        n = codes.size
        c0, c1 = rng.normal(size=(2, n)) * 10.0 ** rng.integers(-3, 4, (2, n))
        shift = np.array([0.5, -2.0])
        kernel = term_jit.columns_kernel(COLUMN_TERMS, (0, 1), (-1, 0, 1), 2)
        table = np.zeros((n_groups, len(COLUMN_TERMS)))
        gram = np.zeros((3, 3))
        done = kernel(codes + np.int64(base), table, gram, shift, np.int64(base), c0, c1)
        assert done == n
        u, v = c0 - shift[0], c1 - shift[1]
        for t, w in enumerate([np.ones(n), u, u * u, v, u * v]):
            assert np.array_equal(table[:, t], np.bincount(codes, w, n_groups))


@pytest.mark.parametrize("bad", [-1, 3000])
def test_the_column_sweep_raises_on_a_code_outside_the_table(bad, tmp_path, monkeypatch):
    """A code below 0 or past the table's last row is refused by the sweep."""
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 3000, 2 * term_jit.COLUMNS_CHUNK)
    codes[term_jit.COLUMNS_CHUNK + 5] = bad
    c0, c1 = rng.normal(size=(2, codes.size))
    kernel = term_jit.columns_kernel(COLUMN_TERMS, (0, 1), (-1, 0, 1), 2)
    table = np.zeros((3000, len(COLUMN_TERMS)))
    with pytest.raises(ValueError, match="codes must be in 0"):
        kernel(codes, table, np.zeros((3, 3)), np.zeros(2), np.int64(0), c0, c1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_the_column_sweep_stops_at_the_chunk_of_a_value_not_finite(bad, tmp_path, monkeypatch):
    """The chunk holding a value that is not finite, and every row after it, are left
    out: the table is bincount's of the chunks before, the sweep returns their rows."""
    monkeypatch.setenv(term_jit.CACHE_ENV, str(tmp_path))
    rng = np.random.default_rng(2)
    chunk = term_jit.COLUMNS_CHUNK
    codes = rng.integers(0, 500, 3 * chunk)
    c0, c1 = rng.normal(size=(2, codes.size))
    c1[2 * chunk + 9] = bad
    kernel = term_jit.columns_kernel(COLUMN_TERMS, (0, 1), (-1, 0, 1), 2)
    table = np.zeros((500, len(COLUMN_TERMS)))
    assert kernel(codes, table, np.zeros((3, 3)), np.zeros(2), np.int64(0), c0, c1) == 2 * chunk
    head = slice(0, 2 * chunk)
    assert np.array_equal(table[:, 0], np.bincount(codes[head], None, 500).astype(float))
    assert np.array_equal(table[:, 4], np.bincount(codes[head], c0[head] * c1[head], 500))


def _split_reference(table, count_col, base):
    """The rows seen (count not zero) and each one's bucket of two (its key's hash)."""
    seen = np.flatnonzero(table[:, count_col] != 0.0)
    bucket = np.zeros(seen.size, dtype=np.int64)
    term_jit.hash_buckets((seen + np.int64(base)).view(np.uint64), 2, bucket)
    return seen, bucket


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 1000])
@pytest.mark.parametrize("n_buckets", [3, 4, 16])
@pytest.mark.parametrize("base", [0, -(2**62), 2**62 - 5000])
def test_split_seen_many_moves_each_buckets_rows_in_order(rows, n_buckets, base):
    """:func:`term_jit.split_seen_many`: bucket 0's rows moved forward in the table, the
    others' copied into their regions of the spill (each as large as
    :func:`term_jit.bucket_sizes` says: every table row's bucket), each in row order and
    bit for bit, the rows without a count left out; the spill untouched past each
    region's rows (its last row aside, no bucket's)."""
    rng = np.random.default_rng(rows + n_buckets)
    width = 9
    table = rng.normal(size=(rows, width)) * 1e3
    table[:, 0] = rng.integers(0, 3, rows)  # the count column: about a third zero
    every = np.zeros(rows, dtype=np.int64)
    term_jit.hash_buckets((np.arange(rows) + np.int64(base)).view(np.uint64), n_buckets, every)
    room = np.zeros(n_buckets, dtype=np.int64)
    term_jit.bucket_sizes(np.int64(base), rows, n_buckets, room)
    assert np.array_equal(room, np.bincount(every, minlength=n_buckets))
    starts = np.concatenate([[0], np.cumsum(room)]).astype(np.int64)
    seen = np.flatnonzero(table[:, 0] != 0.0)
    want = [seen[every[seen] == b] for b in range(n_buckets)]
    spill = np.full((rows - starts[1] + 1, width), np.nan)
    found = np.full(rows, -1, dtype=np.int64)
    fill = np.zeros(n_buckets, dtype=np.int64)
    work = table.copy()
    term_jit.split_seen_many(work, 0, np.int64(base), n_buckets, spill, starts, fill, found)
    assert np.array_equal(fill, [w.size for w in want])
    assert np.array_equal(work[: fill[0]], table[want[0]])
    assert np.array_equal(found[: fill[0]], want[0])
    for b in range(1, n_buckets):
        lo = starts[b] - starts[1]
        assert np.array_equal(spill[lo : lo + fill[b]], table[want[b]])
        assert np.isnan(spill[lo + fill[b] : starts[b + 1] - starts[1]]).all()
        assert np.array_equal(found[starts[b] : starts[b] + fill[b]], want[b])


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 1000])
@pytest.mark.parametrize("only", [None, 0, 1])
@pytest.mark.parametrize("base", [0, -(2**62), 2**62 - 5000])
def test_split_seen_two_moves_each_buckets_rows_in_order(rows, only, base):
    """:func:`term_jit.split_seen_two`: bucket 0's rows moved forward in the table,
    bucket 1's copied into the spill, each in row order and bit for bit, the rows
    without a count left out; all rows in one bucket too; the spill untouched past its
    rows and one row more."""
    rng = np.random.default_rng(rows)
    width = 9
    table = rng.normal(size=(rows, width)) * 1e3
    table[:, 0] = rng.integers(0, 3, rows)  # the count column: about a third zero
    seen, bucket = _split_reference(table, 0, base)
    if only is not None:  # the other bucket's rows not seen
        table[seen[bucket != only], 0] = 0.0
        seen, bucket = _split_reference(table, 0, base)
    want0, want1 = table[seen[bucket == 0]], table[seen[bucket == 1]]
    spill = np.full((rows, width), np.nan)
    found = np.full((2, rows), -1, dtype=np.int64)
    work = table.copy()
    n0, n1 = term_jit.split_seen_two(work, 0, np.int64(base), spill, found[0], found[1])
    assert (n0, n1) == (want0.shape[0], want1.shape[0])
    assert np.array_equal(work[:n0], want0) and np.array_equal(spill[:n1], want1)
    assert np.array_equal(found[0, :n0], seen[bucket == 0])
    assert np.array_equal(found[1, :n1], seen[bucket == 1])
    assert np.isnan(spill[n1 + 1 :]).all()
    if only is not None:
        assert (n0 if only == 1 else n1) == 0
