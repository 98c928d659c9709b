"""The compiled passes over text keys' bytes: hash, check against representatives,
append."""

from __future__ import annotations

import numpy as np
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


def test_first_mismatch_finds_a_string_unlike_its_representative():
    reps = ["ab", "", "é"]
    rep_offsets, rep_data = _buffers(reps, np.int64)
    offsets, data = _buffers(["", "ab", "é", "ab"], np.int32)
    col = np.array([1, 0, 2, 0])
    assert text_keys.first_mismatch(offsets, data, col, rep_offsets, rep_data) == -1
    for wrong, row in [([1, 0, 2, 1], 3), ([0, 0, 2, 0], 0), ([1, 2, 2, 0], 1)]:
        got = text_keys.first_mismatch(offsets, data, np.array(wrong), rep_offsets, rep_data)
        assert got == row
    # a prefix of the representative is another key
    offsets, data = _buffers(["a"], np.int32)
    assert text_keys.first_mismatch(offsets, data, np.array([0]), rep_offsets, rep_data) == 0


def test_appended_strings_become_the_next_representatives():
    offsets, data = _buffers(["x", "", "yé", "zz"], np.int32)
    rep_offsets = np.zeros(5, dtype=np.int64)
    rep_offsets[:2] = [0, 1]
    rep_data = np.zeros(16, dtype=np.uint8)
    rep_data[0] = ord("q")
    text_keys.append_strings(offsets, data, np.array([2, 1, 3]), rep_offsets, rep_data, 1)
    got = [bytes(rep_data[rep_offsets[c] : rep_offsets[c + 1]]).decode() for c in range(4)]
    assert got == ["q", "yé", "", "zz"]
