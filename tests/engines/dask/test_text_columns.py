"""Text group keys mapped to a chain's columns by a hash of their bytes: the same
columns, labels and partials as the exact path, and the exact path wherever the hashes
of two keys collide."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.design import DesignMatrices
from dmixed.engines.dask import text_columns
from dmixed.engines.dask.combine import GroupAccumulator
from dmixed.engines.dask.routing import DistinctKeys
from dmixed.engines.dask.text_columns import TextColumns, text_buffers
from dmixed.errors import DroppedRowsWarning

# short keys from a few characters (ASCII, accented, CJK, NUL): empty strings, keys
# that are prefixes of each other and repeats are frequent
TEXT = st.text(alphabet=st.sampled_from(["a", "b", "é", "日", "\0"]), max_size=4)
BATCHES = st.lists(st.lists(TEXT, min_size=1, max_size=60), min_size=1, max_size=5)


def _objects(keys: list[str]) -> np.ndarray:
    out = np.empty(len(keys), dtype=object)
    out[:] = keys
    return out


def _rows(keys: np.ndarray, seed: int) -> tuple[DesignMatrices, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = keys.size
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    dm = DesignMatrices(rng.normal(size=n), x, x.copy(), [], [], keys, None, 0)
    return dm, x.copy()


def _partials(batches: list[np.ndarray], exact: bool, n_buckets: int = 2) -> tuple:
    """A chain's partials of the batches (random rows, the same for both paths), and
    whether its keys were still mapped by their hashes at the end."""
    acc = GroupAccumulator(kernels.packed_width(2, 3), object)
    if exact:
        acc.text = None
    for seed, keys in enumerate(batches):
        dm, zt = _rows(keys, seed)
        acc.add(keys, dm, zt)
    hashed = acc.text is not None
    return acc.result(n_buckets), hashed


def _assert_same_partials(got: list, want: list) -> None:
    for (gk, gv), (wk, wv) in zip(got, want, strict=True):
        assert gk.dtype == wk.dtype == object
        assert gk.tolist() == wk.tolist()  # the same groups in the same order
        np.testing.assert_array_equal(gv, wv)  # bit for bit


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setenv("DMIXED_KERNELS", "numba")


@settings(max_examples=60, deadline=None)
@given(batches=BATCHES)
def test_columns_and_labels_are_the_exact_paths(batches):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        text = TextColumns()
        cols = [text.columns(_objects(b)) for b in batches]
    # the exact path numbers new keys in order of first appearance, partition by partition
    codes, uniq = pd.factorize(_objects([k for b in batches for k in b]))
    assert all(c is not None for c in cols)
    np.testing.assert_array_equal(np.concatenate(cols), codes)
    assert text.keys().tolist() == list(uniq)


@settings(max_examples=30, deadline=None)
@given(batches=BATCHES, n_buckets=st.integers(1, 3))
def test_partials_are_the_exact_paths_bit_for_bit(batches, n_buckets):
    batches = [_objects(b) for b in batches]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        got, hashed = _partials(batches, exact=False, n_buckets=n_buckets)
        want, _ = _partials(batches, exact=True, n_buckets=n_buckets)
    assert hashed
    _assert_same_partials(got, want)


@pytest.mark.parametrize("from_batch", [0, 1, 2])
def test_a_collision_of_hashes_takes_the_exact_path(compiled, monkeypatch, from_batch):
    rng = np.random.default_rng(1)
    batches = [_objects([f"k{v}" for v in rng.integers(0, 40, 200)]) for _ in range(3)]
    want, _ = _partials(batches, exact=True)
    real = text_columns.string_hashes
    calls = []

    def colliding(offsets, data):
        calls.append(1)
        hashes = real(offsets, data)
        return hashes if len(calls) <= from_batch else np.zeros_like(hashes)

    monkeypatch.setattr(text_columns, "string_hashes", colliding)
    got, hashed = _partials(batches, exact=False)
    assert not hashed and len(calls) == from_batch + 1  # left at the first collision
    _assert_same_partials(got, want)


def test_keys_that_are_not_all_text_take_the_exact_path(compiled):
    batches = [_objects(["a", "b", "a"]), np.array(["b", b"a", "c"], dtype=object)]
    want, _ = _partials(batches, exact=True)
    got, hashed = _partials(batches, exact=False)
    assert not hashed
    _assert_same_partials(got, want)


@pytest.mark.parametrize(
    "keys",
    [
        [None, "a"],
        [b"a", "a"],
        ["a", 1],
        [("a",), "a"],
        ["\ud800"],  # no UTF-8 form
        [],
    ],
)
def test_no_buffers_for_keys_that_are_not_all_str(keys):
    assert text_buffers(_objects(keys)) is None


def test_buffers_are_the_utf8_bytes():
    offsets, data = text_buffers(_objects(["", "é", "ab", ""]))
    assert offsets.tolist() == [0, 0, 2, 4, 4]
    assert bytes(data[:4]) == "éab".encode()
    offsets, data = text_buffers(_objects(["", ""]))
    assert offsets.tolist() == [0, 0, 0] and data.size == 0


def test_text_keys_are_counted_by_their_hashes(compiled):
    seen = DistinctKeys()
    seen.add(_objects(["a", "", "é"]))
    seen.add(_objects(["", "b", "ab", "a"]))
    assert seen.hashes is not None and seen.count == 5


def _text_fit(path, monkeypatch, exact: bool, **options) -> tuple:
    """A Dask fit of the Parquet files ``path`` in chains (in process) with the chains'
    text keys by hash (or, ``exact``, the hash made unavailable: the exact path), and
    how many partitions the hash path mapped."""
    import dask
    import dask.dataframe as dd

    import dmixed

    checked = []
    real = text_columns.first_mismatch

    def counting(*args):
        checked.append(1)
        return real(*args)

    monkeypatch.setattr(text_columns, "first_mismatch", counting)
    if exact:
        monkeypatch.setattr(text_columns, "string_hashes", lambda offsets, data: None)
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        ddf = dd.read_parquet(path)
        model = dmixed.mixedlm("y ~ x", ddf, groups="g", re_formula="1 + x", **options)
        dropping = "missing" in options
        with pytest.warns(DroppedRowsWarning) if dropping else contextlib.nullcontext():
            res = model.fit()
    monkeypatch.undo()
    return res, len(checked)


@pytest.mark.parametrize(
    "dtype", ["object", "string[python]", "string[pyarrow]", "category", "missing"]
)
def test_a_dask_fit_of_text_keys_is_the_exact_paths(compiled, monkeypatch, tmp_path, dtype):
    rng = np.random.default_rng(7)
    n = 900
    labels = np.array(["", "é", "g1", "g10", "g100", "日本", "a\0b"] + [f"k{i}" for i in range(40)])
    code = rng.integers(0, labels.size, n)
    g = pd.Series(labels[code], dtype=object)
    options = {}
    if dtype == "missing":
        g[::50] = None  # rows without a group, dropped
        options["missing"] = "drop"
    elif dtype != "object":
        g = g.astype(dtype)
    x = rng.normal(size=n)
    u, b = rng.normal(size=(2, labels.size))
    y = x + u[code] + b[code] * x + 0.5 * rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    for part in range(3):  # three files: partitions a chain reads one after the other
        df.iloc[part * 300 : (part + 1) * 300].to_parquet(tmp_path / f"part.{part}.parquet")
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    got, checked = _text_fit(tmp_path, monkeypatch, exact=False, **options)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    want, _ = _text_fit(tmp_path, monkeypatch, exact=True, **options)
    assert checked > 0  # the hash path ran
    np.testing.assert_array_equal(got.params, want.params)
    assert got.llf == want.llf
    assert list(got.random_effects) == list(want.random_effects)


def _arrow(keys: np.ndarray, sliced: bool):
    """The keys as an Arrow ``string`` array (a slice of a longer one: offset not 0)."""
    if not sliced:
        return pa.array(list(keys), type=pa.string())
    return pa.array(["pad", *keys, "pad"], type=pa.string()).slice(1, keys.size)


@settings(max_examples=40, deadline=None)
@given(batches=BATCHES, sliced=st.booleans())
def test_arrow_keys_map_as_their_python_strings(batches, sliced):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        want, got = TextColumns(), TextColumns()
        for b in batches:
            keys = _objects(b)
            np.testing.assert_array_equal(got.columns(_arrow(keys, sliced)), want.columns(keys))
    assert got.keys().dtype == object and got.keys().tolist() == want.keys().tolist()


@pytest.mark.parametrize("collide", [False, True])
def test_partials_of_arrow_keys_are_the_exact_paths(compiled, monkeypatch, collide):
    rng = np.random.default_rng(3)
    batches = [_objects([f"k{v}" for v in rng.integers(0, 40, 200)]) for _ in range(3)]
    want, _ = _partials(batches, exact=True)
    if collide:  # the second batch's hashes collide: the exact path from there on
        real, calls = text_columns.string_hashes, []

        def colliding(offsets, data):
            calls.append(1)
            hashes = real(offsets, data)
            return hashes if len(calls) < 2 else np.zeros_like(hashes)

        monkeypatch.setattr(text_columns, "string_hashes", colliding)
    acc = GroupAccumulator(kernels.packed_width(2, 3), object)
    for seed, keys in enumerate(batches):
        dm, zt = _rows(keys, seed)
        acc.add(_arrow(keys, seed % 2 == 1), dm, zt)
    assert (acc.text is None) == collide
    _assert_same_partials(acc.result(2), want)


def test_arrow_keys_are_counted_and_sized_as_their_python_strings(compiled):
    from dmixed.engines.dask.routing import PendingRows, RoutedRows, key_bytes
    from dmixed.kernels.term_table import ColumnPlan

    rng = np.random.default_rng(4)
    keys = _objects([f"k{v}" for v in rng.integers(0, 500, 2000)])
    arrow = _arrow(keys, sliced=True)
    counted = [DistinctKeys(), DistinctKeys()]
    counted[0].add(keys)
    counted[1].add(arrow)
    assert counted[0].count == counted[1].count == np.unique(keys).size
    assert key_bytes(arrow) == key_bytes(keys)
    plan = ColumnPlan(x_of=(-1, 0, 1), z_of=(-1, 0))
    assert RoutedRows.columns_bytes(arrow, plan) == RoutedRows.columns_bytes(keys, plan)
    columns = [rng.normal(size=keys.size) for _ in range(2)]
    sent = PendingRows(arrow, None, None, None, columns, plan).routed()
    assert sent.keys.dtype == object and sent.keys.tolist() == keys.tolist()
