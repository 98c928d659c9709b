"""The compiled passes over text keys' bytes: hash, check against representatives,
append."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmixed.kernels import text_keys


@pytest.fixture(autouse=True)
def _compiled(monkeypatch):
    monkeypatch.setenv("DMIXED_KERNELS", "numba")


def _buffers(strings: list[str], dtype) -> tuple[np.ndarray, np.ndarray]:
    raw = [s.encode() for s in strings]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in raw])]).astype(dtype)
    return offsets, np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8)


def _fnv(b: bytes) -> int:
    h = 14695981039346656037
    for c in b:
        h = ((h ^ c) * 1099511628211) % 2**64
    return h - 2**64 if h >= 2**63 else h


STRINGS = ["", "a", "ab", "abc", "é", "日本", "a\0b", "g123"]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_hashes_are_fnv1a_of_the_bytes(dtype):
    got = text_keys.string_hashes(*_buffers(STRINGS, dtype))
    assert got is not None and got.dtype == np.int64
    assert got.tolist() == [_fnv(s.encode()) for s in STRINGS]


def test_no_hash_where_the_pass_does_not_run_compiled(monkeypatch):
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert text_keys.string_hashes(*_buffers(STRINGS, np.int32)) is None


def _reps(strings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Representatives as :func:`text_keys.append_strings` writes them."""
    offsets, data = _buffers(strings, np.int64)
    n = len(strings)
    heads = np.zeros((n, 2), dtype=np.int64)
    rep_offsets = np.zeros(n + 1, dtype=np.int64)
    rep_data = np.zeros(max(1, int(offsets[-1])), dtype=np.uint8)
    rows = np.arange(n, dtype=np.int64)
    text_keys.append_strings(offsets, data, rows, heads, rep_offsets, rep_data, 0)
    return heads, rep_offsets, rep_data


def test_first_mismatch_finds_a_string_unlike_its_representative():
    # lengths either side of the 8 bytes kept with the length, and keys that differ
    # only after them
    reps = ["ab", "", "é", "abcdefgh", "abcdefghij", "abcdefghik"]
    heads, rep_offsets, rep_data = _reps(reps)
    rows = ["", "ab", "é", "ab", "abcdefghik", "abcdefgh", "abcdefghij"]
    offsets, data = _buffers(rows, np.int32)
    col = np.array([1, 0, 2, 0, 5, 3, 4])
    assert text_keys.first_mismatch(offsets, data, col, heads, rep_offsets, rep_data) == -1
    for row, wrong in [(3, 1), (0, 0), (1, 2), (4, 4), (6, 5), (5, 4), (2, 0)]:
        bad = col.copy()
        bad[row] = wrong
        assert text_keys.first_mismatch(offsets, data, bad, heads, rep_offsets, rep_data) == row
    # a prefix of the representative, or the representative and a NUL, is another key
    offsets, data = _buffers(["a", "ab\0"], np.int32)
    for row in (0, 1):
        one = (offsets[row : row + 2] - offsets[row], data[offsets[row] :])
        assert text_keys.first_mismatch(*one, np.array([0]), heads, rep_offsets, rep_data) == 0


def test_appended_strings_become_the_next_representatives():
    offsets, data = _buffers(["x", "", "yé", "zz", "0123456789"], np.int32)
    heads = np.zeros((6, 2), dtype=np.int64)
    rep_offsets = np.zeros(7, dtype=np.int64)
    rep_offsets[:2] = [0, 1]
    heads[0] = [1, ord("q")]
    rep_data = np.zeros(32, dtype=np.uint8)
    rep_data[0] = ord("q")
    rows = np.array([2, 1, 3, 4])
    text_keys.append_strings(offsets, data, rows, heads, rep_offsets, rep_data, 1)
    got = [bytes(rep_data[rep_offsets[c] : rep_offsets[c + 1]]).decode() for c in range(5)]
    assert got == ["q", "yé", "", "zz", "0123456789"]
    want = [int.from_bytes(s.encode()[:8].ljust(8, b"\0"), "little", signed=True) for s in got]
    assert heads[:5, 0].tolist() == [len(s.encode()) for s in got]
    assert heads[:5, 1].tolist() == want


def test_hash_columns_number_hashes_in_order_of_first_appearance():
    rng = np.random.default_rng(3)
    # more distinct hashes than a first table holds at half load: grown (rehashed) in
    # the middle of a call and between calls; repeats within and across calls
    distinct = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    batches = [distinct[rng.integers(0, m, 3000)] for m in (10, 1500, 5000, 5000)]
    table = text_keys.HashColumns()
    got, firsts = [], []
    for batch in batches:
        before = len(table)
        col, first = table.lookup(batch)
        got.append(col)
        np.testing.assert_array_equal(col[first], before + np.arange(first.size))
        firsts.append(first)
    codes, uniq = pd.factorize(np.concatenate(batches))
    np.testing.assert_array_equal(np.concatenate(got), codes)
    assert len(table) == len(uniq)
