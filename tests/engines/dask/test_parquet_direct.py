"""dmixed.engines.dask.parquet_direct: chains read plain Parquet partitions with pyarrow
straight to numpy, and the statistics are those of Dask's pandas frames bit for bit."""

from __future__ import annotations

import os

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dmixed
import dmixed.engines.dask.graph as graph_module
import dmixed.engines.dask.parquet_direct as parquet_direct
from dmixed.engines.dask.graph import chain_recipes, project_columns
from dmixed.engines.dask.parquet_direct import numpy_columns, parquet_reads, read_columns
from dmixed.engines.dask.partials import chain_partials
from dmixed.engines.dask.pieces import compute_piece
from dmixed.engines.dask.routing import Router
from dmixed.errors import DataError, DroppedRowsWarning
from dmixed.kernels.term_table import as_packed
from dmixed.stats.packed import PackedLayout

FORMULA = "y ~ x1 + x2"
RE = "1 + x1"


def _frame(n: int = 1200, groups: int = 90, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n) + 50.0
    b = rng.normal(size=(groups, 2))
    y = 1e3 + 2 * x1 - x2 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=n)
    return pd.DataFrame({"g": g, "x1": x1, "x2": x2, "y": y, "s": np.array(["a", "b"])[g % 2]})


def _write(df: pd.DataFrame, path, n_files: int, row_group_size: int = 100) -> None:
    path.mkdir(exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), n_files)):
        table = pa.Table.from_pandas(df.iloc[rows], preserve_index=False)
        pq.write_table(table, path / f"part-{i:03d}.parquet", row_group_size=row_group_size)


def _chain(ddf):
    spec = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE).spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    return spec, recipe


@pytest.mark.parametrize("split_row_groups", [False, True])
def test_reads_are_the_frames_columns(tmp_path, split_row_groups):
    _write(_frame(), tmp_path / "d", 3)
    ddf = dd.read_parquet(tmp_path / "d", split_row_groups=split_row_groups)
    spec, recipe = _chain(ddf)
    reads = parquet_reads(recipe, spec)
    assert reads is not None and all(item is not None for item in reads.items)
    for item, (graph, out_key, _) in zip(reads.items, recipe.items, strict=True):
        frame = compute_piece(graph, out_key)
        columns = read_columns(item)
        assert set(columns) == {"g", "x1", "x2", "y"}
        for name, values in columns.items():
            expected = frame[name].to_numpy()
            assert values.dtype == expected.dtype
            np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize(
    "how",
    [
        {"filters": [("x1", ">", 0)]},
        {"index": "g"},
        {"dtype_backend": "pyarrow"},
        {"dtype_backend": "numpy_nullable"},
    ],
)
def test_not_plain_reads_are_computed_by_dask(tmp_path, how):
    _write(_frame(), tmp_path / "d", 3)
    ddf = dd.read_parquet(tmp_path / "d", **how)
    if "index" in how:
        ddf = ddf.reset_index()
    spec, recipe = _chain(ddf)
    assert parquet_reads(recipe, spec) is None


def test_hive_partitions_and_float32_are_computed_by_dask(tmp_path):
    df = _frame()
    df.to_parquet(tmp_path / "hive", partition_cols=["s"])
    spec, recipe = _chain(dd.read_parquet(tmp_path / "hive"))
    assert parquet_reads(recipe, spec) is None
    _write(df.assign(x2=df["x2"].astype(np.float32)), tmp_path / "f32", 2)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "f32"))
    assert parquet_reads(recipe, spec) is None


def _partials(recipe, spec, reads):
    packed = PackedLayout(2, 4)  # r = 2; [X y]: Intercept, x1, x2, y
    return chain_partials(
        recipe, spec, None, packed, 2, np.dtype(np.int64), None, "partials", reads
    )


def _assert_same_partials(got, want):
    """Two chains' partials: the same map, keys equal, the sums to 1e-12 relative."""
    (parts_a, glob_a, std_a, _, _), (parts_b, glob_b, std_b, _, _) = got, want
    assert std_a == std_b
    np.testing.assert_allclose(glob_a, glob_b, rtol=1e-12)
    # (a partial's sums about its groups' shifts, where it carries them, aside)
    for (keys_a, values_a, *_), (keys_b, values_b, *_) in zip(parts_a, parts_b, strict=True):
        np.testing.assert_array_equal(keys_a, keys_b)
        np.testing.assert_allclose(as_packed(values_a), as_packed(values_b), rtol=1e-12)


def _assert_identical(a, b) -> None:
    (parts_a, glob_a, std_a, _, _), (parts_b, glob_b, std_b, _, _) = a, b
    assert std_a == std_b
    np.testing.assert_array_equal(glob_a, glob_b)
    for (keys_a, values_a, *_), (keys_b, values_b, *_) in zip(parts_a, parts_b, strict=True):
        np.testing.assert_array_equal(keys_a, keys_b)
        np.testing.assert_array_equal(values_a, values_b)


@pytest.mark.parametrize("n_files", [1, 2, 5])
def test_statistics_bit_for_bit(tmp_path, n_files):
    """The chain's partial from the direct reads is the one from Dask's frames (one
    file: a partition per row group)."""
    _write(_frame(), tmp_path / "d", n_files)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d", split_row_groups=n_files == 1))
    reads = parquet_reads(recipe, spec)
    assert reads is not None
    _assert_identical(_partials(recipe, spec, reads), _partials(recipe, spec, None))


def test_file_unlike_the_schema_falls_back(tmp_path):
    """A file with nulls where the collection's meta says float64: its frame (NaN, rows
    dropped by the missing-value policy) is computed by Dask."""
    df = _frame()
    _write(df, tmp_path / "d", 3)
    part = df.iloc[np.array_split(np.arange(len(df)), 3)[1]]
    x1 = pa.array(part["x1"].to_numpy(), mask=np.arange(len(part)) % 9 == 0)
    table = pa.Table.from_pandas(part, preserve_index=False).set_column(1, "x1", x1)
    pq.write_table(table, tmp_path / "d" / "part-001.parquet")
    ddf = dd.read_parquet(tmp_path / "d")
    spec = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE, missing="drop").spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    reads = parquet_reads(recipe, spec)
    assert read_columns(reads.items[1]) is None and read_columns(reads.items[0]) is not None
    _assert_identical(_partials(recipe, spec, reads), _partials(recipe, spec, None))


def _fit(data, **kw):
    return dmixed.mixedlm(FORMULA, data, groups="g", re_formula=RE, **kw).fit()


@pytest.mark.parametrize("n_files", [1, 2, 5])
def test_fit_does_not_depend_on_the_split(tmp_path, n_files, monkeypatch):
    """The fit from Parquet files read directly is the fit of Dask's frames (identical)
    and of the pandas frame (to 1e-10), however the rows are split into files."""
    df = _frame()
    _write(df, tmp_path / "d", n_files)
    with dask.config.set(scheduler="sync"):
        res = _fit(dd.read_parquet(tmp_path / "d"))
        monkeypatch.setattr(graph_module, "parquet_reads", lambda recipe, spec: None)
        through_frames = _fit(dd.read_parquet(tmp_path / "d"))
    assert res.llf == through_frames.llf
    np.testing.assert_array_equal(res.params, through_frames.params)
    np.testing.assert_array_equal(res.bse, through_frames.bse)
    ref = _fit(df.drop(columns="s"))
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-8)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)


def test_file_lacking_a_column_is_left_to_dask(tmp_path):
    """Dask takes the columns from the first file; a later file without one is read by
    Dask's reader, whose error dmixed words (tests/engines/dask/test_checks.py)."""
    df = _frame()
    _write(df, tmp_path / "d", 2)
    pq.write_table(
        pa.Table.from_pandas(df.drop(columns="x2"), preserve_index=False),
        tmp_path / "d" / "part-001.parquet",
    )
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d"))
    reads = parquet_reads(recipe, spec)
    assert read_columns(reads.items[0]) is not None
    assert read_columns(reads.items[1]) is None


@pytest.mark.parametrize("direct", [True, False])
def test_sweep_of_columns_with_values_not_finite(tmp_path, monkeypatch, direct, swept):
    """Partitions summed from their columns by the compiled sweep (direct reads or
    Dask's frames), a NaN in the second partition's third chunk: the rows before its
    chunk are swept, the rest dropped by the design's missing-value policy; the
    partial is the design's path's (``DMIXED_KERNELS=numpy``) to 1e-12, and the fit
    is pandas' on the rows left."""
    df = _frame(n=8000, groups=300)
    df.loc[[4000 + 2 * 1024 + 5, 4000 + 3 * 1024 + 1], "x2"] = np.nan
    _write(df, tmp_path / "d", 2, row_group_size=4000)
    ddf = dd.read_parquet(tmp_path / "d")
    spec = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE, missing="drop").spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    reads = parquet_reads(recipe, spec) if direct else None
    assert (reads is not None) == direct
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    got = _partials(recipe, spec, reads)
    assert swept == [4000, 2 * 1024]  # the second swept to its NaN's chunk
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    want = _partials(recipe, spec, reads)
    _assert_same_partials(got, want)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    with (
        dask.config.set(scheduler="sync"),
        pytest.warns(DroppedRowsWarning, match="dropped 2 rows"),
    ):
        res = _fit(ddf, missing="drop")
    ref = _fit(df.drop(columns="s").dropna())
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-10, atol=1e-12)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)


@pytest.mark.parametrize("direct", [True, False])
def test_sweep_of_partitions_sorted_by_group(tmp_path, monkeypatch, direct):
    """Rows sorted by group: every partition brings keys beyond the accumulator's
    range, which grows while the sweep adds the partition; the partial is the design's
    path's (``DMIXED_KERNELS=numpy``) to 1e-12."""
    df = _frame(n=6000, groups=1500).sort_values("g", kind="stable", ignore_index=True)
    _write(df, tmp_path / "d", 4, row_group_size=1500)
    ddf = dd.read_parquet(tmp_path / "d")
    spec, recipe = _chain(ddf)
    reads = parquet_reads(recipe, spec) if direct else None
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    got = _partials(recipe, spec, reads)
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    want = _partials(recipe, spec, reads)
    _assert_same_partials(got, want)


@pytest.mark.parametrize("direct", [True, False])
def test_sweep_of_integer_and_float32_columns(tmp_path, monkeypatch, direct, swept):
    """Integer and float32 columns are swept as their float64 values (every partition
    through the sweep); the partial is the design's path's to 1e-12."""
    df = _frame(n=4000, groups=300)
    df = df.assign(x1=np.round(df["x1"] * 10).astype(np.int64), x2=df["x2"].astype(np.float32))
    _write(df, tmp_path / "d", 2, row_group_size=2000)
    ddf = dd.read_parquet(tmp_path / "d")
    spec, recipe = _chain(ddf)
    reads = parquet_reads(recipe, spec) if direct else None
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    got = _partials(recipe, spec, reads)
    assert swept == [2000, 2000]
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    want = _partials(recipe, spec, reads)
    _assert_same_partials(got, want)


def _cut_short(path, how: str) -> None:
    """``path`` (a Parquet file) cut short: at half its size (its footer gone), or with
    the second half of its body left out before an intact footer (the column chunks it
    lists there lie past the file's end)."""
    data = path.read_bytes()
    if how == "end":
        path.write_bytes(data[: len(data) // 2])
        return
    footer = int.from_bytes(data[-8:-4], "little") + 8  # the footer, its length, "PAR1"
    path.write_bytes(data[: len(data) // 2] + data[-footer:])


def test_reads_go_through_one_buffer_of_read_buffer_bytes(tmp_path, monkeypatch):
    """The chain opens each file without pre-buffering and reads its column chunks
    through a buffer of READ_BUFFER bytes, not each chunk whole."""
    _write(_frame(), tmp_path / "d", 2)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d"))
    reads = parquet_reads(recipe, spec)
    assert reads is not None
    opened = []
    real = pq.ParquetFile

    def spy(path, **options):
        opened.append(options)
        return real(path, **options)

    monkeypatch.setattr(pq, "ParquetFile", spy)
    for item in reads.items:
        assert read_columns(item) is not None
    assert opened == [{"pre_buffer": False, "buffer_size": parquet_direct.READ_BUFFER}] * 2


@pytest.mark.parametrize("split_row_groups", [False, True])
def test_chunks_larger_than_the_buffer_read_whole(tmp_path, monkeypatch, split_row_groups):
    """Column chunks many times the read buffer (refilled for each part of a chunk):
    the columns of Dask's frames and the statistics bit for bit; cut short, a
    DataError naming the partition and the file."""
    monkeypatch.setattr(parquet_direct, "READ_BUFFER", 512)
    _write(_frame(n=6000), tmp_path / "d", 3, row_group_size=1500)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d", split_row_groups=split_row_groups))
    reads = parquet_reads(recipe, spec)
    assert reads is not None
    for item, (graph, out_key, _) in zip(reads.items, recipe.items, strict=True):
        frame = compute_piece(graph, out_key)
        for name, values in read_columns(item).items():
            np.testing.assert_array_equal(values, frame[name].to_numpy())
    _assert_identical(_partials(recipe, spec, reads), _partials(recipe, spec, None))
    _cut_short(tmp_path / "d" / "part-001.parquet", "body")
    with pytest.raises(DataError, match=r"part-001\.parquet.*cut short"):
        _partials(recipe, spec, reads)


@pytest.mark.parametrize("how", ["end", "body"])
def test_file_cut_short_after_the_plan_is_a_clear_error(tmp_path, how):
    """A file cut short between the driver's plan and the chain's read: a DataError
    naming the partition and the file, never values read from what is left."""
    _write(_frame(), tmp_path / "d", 3, row_group_size=100)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d"))
    reads = parquet_reads(recipe, spec)
    assert reads is not None
    _cut_short(tmp_path / "d" / "part-001.parquet", how)
    with pytest.raises(DataError, match=r"partition 1 .*part-001\.parquet.*cut short"):
        _partials(recipe, spec, reads)


def test_file_replaced_after_the_plan_is_read_as_it_is_now(tmp_path):
    """A file replaced (another file renamed over it) between the plan and the read,
    with the same columns: the chain reads the new file, as Dask's reader would."""
    df = _frame()
    _write(df, tmp_path / "d", 3)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d"))
    reads = parquet_reads(recipe, spec)
    other = _frame(n=500, seed=11)
    pq.write_table(pa.Table.from_pandas(other, preserve_index=False), tmp_path / "new.parquet")
    os.replace(tmp_path / "new.parquet", tmp_path / "d" / "part-001.parquet")
    got = read_columns(reads.items[1])
    np.testing.assert_array_equal(got["x1"], other["x1"].to_numpy())
    _assert_identical(_partials(recipe, spec, reads), _partials(recipe, spec, None))


def test_file_with_fewer_row_groups_after_the_plan_is_a_clear_error(tmp_path):
    """A file split by row groups, rewritten with fewer of them after the plan: a
    DataError naming the file."""
    df = _frame()
    _write(df, tmp_path / "d", 1, row_group_size=300)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d", split_row_groups=True))
    reads = parquet_reads(recipe, spec)
    assert reads is not None and reads.items[-1][1] == (3,)
    _write(df, tmp_path / "d", 1, row_group_size=1200)
    with pytest.raises(DataError, match=r"part-000\.parquet.*cut short"):
        _partials(recipe, spec, reads)


@pytest.mark.parametrize("how", ["gone", "end", "body"])
def test_file_changed_after_the_plan_is_a_clear_error_where_dask_reads_it(tmp_path, how):
    """Where the chain has Dask's reader compute the piece (a float32 column), a file
    gone or cut short between the plan and the read: the DataError of a direct read,
    naming the partition and the file, not pyarrow's bare OSError."""
    df = _frame()
    _write(df.assign(x2=df["x2"].astype(np.float32)), tmp_path / "d", 3)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d"))
    assert parquet_reads(recipe, spec) is None
    path = tmp_path / "d" / "part-001.parquet"
    if how == "gone":
        path.unlink()
    else:
        _cut_short(path, how)
    with pytest.raises(DataError, match=r"partition 1 .*part-001\.parquet.*cut short"):
        _partials(recipe, spec, None)


def _numpy_owned(a: np.ndarray) -> bool:
    """Whether ``a``'s memory is numpy's own (a view of an array that owns it), not a
    view of a buffer of another library."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base is None


@pytest.mark.parametrize("exchange", ["rows", "auto"])
def test_routed_rows_of_direct_reads_are_copies(tmp_path, monkeypatch, exchange):
    """Rows a chain buffers for routing from direct reads are held in numpy's own memory
    (not views of pyarrow's buffers, which the next reads would then not reuse), and
    the chain's output is the one from Dask's frames, bit for bit."""
    df = _frame(n=6000, groups=3000)
    _write(df, tmp_path / "d", 3, row_group_size=1000)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d"))
    reads = parquet_reads(recipe, spec)
    taken = []
    take = Router.take_columns

    def spy(self, keys, columns, plan, std):
        taken.append([keys, *columns])
        return take(self, keys, columns, plan, std)

    monkeypatch.setattr(Router, "take_columns", spy)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")  # the sweep, whatever the rows
    packed = PackedLayout(2, 4)
    args = (spec, None, packed, 2, np.dtype(np.int64), None, exchange)
    direct = chain_partials(recipe, *args, reads)
    assert taken and all(_numpy_owned(a) for arrays in taken for a in arrays)
    taken.clear()
    through_frames = chain_partials(recipe, *args, None)
    assert taken
    _assert_identical(direct, through_frames)
    for a, b in zip(direct[3], through_frames[3], strict=True):
        assert (a is None) == (b is None)
        for piece_a, piece_b in zip(a or [], b or [], strict=True):
            np.testing.assert_array_equal(piece_a.keys, piece_b.keys)
            np.testing.assert_array_equal(piece_a.cols, piece_b.cols)


def _text_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with its group keys as text (``"u<int>"``, some empty or non-ASCII)."""
    labels = np.array(["", "é", "日本", "a\0b"] + [f"u{i}" for i in range(200)], dtype=object)
    return df.assign(g=labels[df["g"].to_numpy() % labels.size])


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string()])
def test_text_group_keys_are_read_as_arrow_strings(tmp_path, arrow_type):
    df = _text_frame(_frame())
    path = tmp_path / "d"
    path.mkdir()
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.set_column(0, "g", table.column("g").cast(arrow_type))
    pq.write_table(table, path / "part-000.parquet", row_group_size=300)
    spec, recipe = _chain(dd.read_parquet(path, split_row_groups=True))
    reads = parquet_reads(recipe, spec)
    assert reads is not None and all(item is not None for item in reads.items)
    for item, (graph, out_key, _) in zip(reads.items, recipe.items, strict=True):
        columns = read_columns(item)
        keys = columns["g"]
        assert isinstance(keys, pa.StringArray)  # no Python string a row
        frame = compute_piece(graph, out_key)
        assert keys.to_pylist() == frame["g"].tolist()
        numpy = numpy_columns(columns)
        assert numpy["g"].dtype == object and numpy["g"].tolist() == frame["g"].tolist()
        np.testing.assert_array_equal(numpy["x1"], columns["x1"])


def test_text_keys_with_nulls_or_a_dictionary_are_computed_by_dask(tmp_path):
    df = _text_frame(_frame())
    for name, table in [
        ("nulls", pa.Table.from_pandas(df.assign(g=df["g"].where(df.index % 7 > 0)))),
        ("dict", pa.Table.from_pandas(df.assign(g=df["g"].astype("category")))),
    ]:
        path = tmp_path / name
        path.mkdir()
        pq.write_table(table, path / "part-000.parquet")
        ddf = dd.read_parquet(path)
        spec = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE, missing="drop").spec
        recipes = chain_recipes(project_columns(ddf, spec), 1)
        reads = None if recipes is None else parquet_reads(recipes[0], spec)
        items = [] if reads is None else [i for i in reads.items if i is not None]
        assert all(read_columns(item) is None for item in items)


def test_text_columns_other_than_the_groups_are_computed_by_dask(tmp_path):
    df = _frame()
    _write(df, tmp_path / "d", 2)
    ddf = dd.read_parquet(tmp_path / "d")
    spec = dmixed.mixedlm("y ~ x1 + s", ddf, groups="g", re_formula=RE).spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    assert parquet_reads(recipe, spec) is None  # the predictor s is text


@pytest.mark.parametrize("exchange", ["partials", "auto", "rows"])
@pytest.mark.parametrize("n_files", [1, 3])
def test_text_key_statistics_bit_for_bit(tmp_path, n_files, exchange):
    """A chain's partial (and routed rows) of text keys read as Arrow are those from
    Dask's frames, whichever exchange the chain makes."""
    _write(_text_frame(_frame()), tmp_path / "d", n_files)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d", split_row_groups=n_files == 1))
    reads = parquet_reads(recipe, spec)
    assert reads is not None

    def partials(reads):
        packed = PackedLayout(2, 4)
        return chain_partials(recipe, spec, None, packed, 2, object, None, exchange, reads)

    got, want = partials(reads), partials(None)
    (parts_a, glob_a, std_a, routed_a, _), (parts_b, glob_b, std_b, routed_b, _) = got, want
    assert std_a == std_b
    np.testing.assert_array_equal(glob_a, glob_b)
    for (keys_a, values_a, *_), (keys_b, values_b, *_) in zip(parts_a, parts_b, strict=True):
        assert keys_a.dtype == keys_b.dtype == object
        assert keys_a.tolist() == keys_b.tolist()
        np.testing.assert_array_equal(as_packed(values_a), as_packed(values_b))
    for bucket_a, bucket_b in zip(routed_a, routed_b, strict=True):
        assert (bucket_a is None) == (bucket_b is None)
        for rows_a, rows_b in zip(bucket_a or [], bucket_b or [], strict=True):
            assert rows_a.keys.dtype == rows_b.keys.dtype == object
            assert rows_a.keys.tolist() == rows_b.keys.tolist()
            np.testing.assert_array_equal(rows_a.cols, rows_b.cols)


# ---------------------------------------------------------------------------
# Designs built from a pandas frame (factors, weights, variance components)
# ---------------------------------------------------------------------------


def _factor_frame() -> pd.DataFrame:
    """:func:`_frame` with an integer factor ``k`` (used in ``C()``), a second one
    ``v`` for a variance component and positive weights ``w``."""
    df = _frame()
    rng = np.random.default_rng(7)
    k = rng.integers(0, 40, len(df))
    return df.assign(
        k=k,
        v=rng.integers(0, 4, len(df)),
        w=rng.uniform(0.5, 2.0, len(df)),
        y=df["y"] + 0.3 * (k % 5),
    )


#: (formula, keywords of mixedlm, the columns each read must hold)
FRAME_MODELS = [
    ("y ~ x1 + C(k)", {"re_formula": RE}, {"y", "x1", "k", "g"}),
    ("y ~ x1 + C(k)", {"weights": "w"}, {"y", "x1", "k", "g", "w"}),
    ("y ~ x1", {"vc_formula": {"v": "0 + C(v)"}}, {"y", "x1", "v", "g"}),
]


@pytest.mark.parametrize("model", FRAME_MODELS, ids=["factor", "weights", "vc"])
@pytest.mark.parametrize("pandas_files", [False, True])
def test_frame_designs_read_every_column_they_use(tmp_path, model, pandas_files):
    """Where the design is built from a pandas frame, each partition is read with
    pyarrow too: every column the spec uses (the groups, the weights and a variance
    component's column included, not the others), the values of Dask's frame.  Files
    pandas wrote (their row labels in the metadata: Dask's index ``[None]``) too."""
    formula, kw, expect = model
    df = _factor_frame()
    if pandas_files:
        (tmp_path / "d").mkdir()
        for i, rows in enumerate(np.array_split(np.arange(len(df)), 3)):
            df.iloc[rows].to_parquet(tmp_path / "d" / f"part-{i}.parquet")
    else:
        _write(df, tmp_path / "d", 3)
    ddf = dd.read_parquet(tmp_path / "d")
    spec = dmixed.mixedlm(formula, ddf, groups="g", **kw).spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    reads = parquet_reads(recipe, spec)
    assert reads is not None and all(item is not None for item in reads.items)
    for item, (graph, out_key, _) in zip(reads.items, recipe.items, strict=True):
        frame = compute_piece(graph, out_key)
        columns = read_columns(item)
        assert list(columns) == list(frame.columns)  # the frame's columns, in its order
        assert set(columns) == expect
        for name, values in columns.items():
            expected = frame[name].to_numpy()
            assert values.dtype == expected.dtype
            np.testing.assert_array_equal(values, expected)


def _frame_fit(data, formula, kw):
    return dmixed.mixedlm(formula, data, groups="g", **kw).fit()


@pytest.mark.parametrize("model", FRAME_MODELS, ids=["factor", "weights", "vc"])
def test_frame_design_fit_is_the_fit_of_dasks_frames(tmp_path, model, monkeypatch):
    """A fit whose design is built from pandas frames of the direct reads is the fit of
    Dask's frames, bit for bit, and the in-process fit's (to 1e-10)."""
    formula, kw, _ = model
    df = _factor_frame()
    _write(df, tmp_path / "d", 4)
    with dask.config.set(scheduler="sync"):
        res = _frame_fit(dd.read_parquet(tmp_path / "d"), formula, kw)
        monkeypatch.setattr(graph_module, "parquet_reads", lambda recipe, spec: None)
        through_frames = _frame_fit(dd.read_parquet(tmp_path / "d"), formula, kw)
    assert res.llf == through_frames.llf
    np.testing.assert_array_equal(res.params, through_frames.params)
    np.testing.assert_array_equal(res.bse, through_frames.bse)
    ref = _frame_fit(df.drop(columns="s"), formula, kw)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8, atol=1e-10)
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)


def test_frame_with_a_computed_column_is_read_by_dask(tmp_path, monkeypatch):
    """A column computed on the collection (``assign``) is not in the files: those
    pieces are not plain reads, Dask computes them, and the fit is the in-process
    fit of the same frame."""
    df = _factor_frame()
    _write(df, tmp_path / "d", 3)
    ddf = dd.read_parquet(tmp_path / "d")
    ddf = ddf.assign(x3=ddf["x1"] * 2.0 + ddf["k"])
    spec = dmixed.mixedlm("y ~ x3 + C(k)", ddf, groups="g").spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    reads = parquet_reads(recipe, spec)
    assert reads is None or all(item is None for item in reads.items)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm("y ~ x3 + C(k)", ddf, groups="g").fit()
    local = df.drop(columns="s").assign(x3=df["x1"] * 2.0 + df["k"])
    ref = dmixed.mixedlm("y ~ x3 + C(k)", local, groups="g").fit()
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8, atol=1e-10)
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)


@pytest.mark.parametrize("n_files", [1, 3, 7])
def test_text_keys_read_as_arrow_take_the_columns_design(tmp_path, n_files, monkeypatch):
    """Text keys read as Arrow with no null: each partition's design is built from its
    columns (no frame, no missing-value scan of the keys), the same matrices, keys and
    codes as ``transform`` of Dask's frame of it; the fit's statistics unchanged."""
    from dmixed.design.spec import ModelSpec
    from dmixed.engines.dask.partials import partition_design, partition_rows

    _write(_text_frame(_frame()), tmp_path / "d", n_files)
    spec, recipe = _chain(dd.read_parquet(tmp_path / "d", split_row_groups=n_files == 1))
    reads = parquet_reads(recipe, spec)
    assert reads is not None and all(item is not None for item in reads.items)
    frames = [compute_piece(graph, out_key) for graph, out_key, _ in recipe.items]
    want = [spec.transform(frame) for frame in frames]

    def refused(*args, **kwargs):
        raise AssertionError("transform called")

    monkeypatch.setattr(ModelSpec, "transform", refused)
    for item, frame, dm_want in zip(reads.items, frames, want, strict=True):
        columns = read_columns(item)
        dm = partition_design(columns, spec)
        for name in ("endog", "exog", "exog_re"):
            np.testing.assert_array_equal(getattr(dm, name), getattr(dm_want, name))
        assert dm.groups.dtype == object and dm.groups.tolist() == frame["g"].tolist()
        codes, labels = dm.first_numbered()
        np.testing.assert_array_equal(codes, pd.factorize(frame["g"].to_numpy(object))[0])
        assert labels[codes].tolist() == frame["g"].tolist()
        (_, keys, _), _ = partition_rows(read_columns(item), spec, None)
        assert keys.dtype == object and keys.tolist() == frame["g"].tolist()


def test_text_keys_with_nulls_still_dropped_or_refused(tmp_path):
    """A None key (Arrow null): the partition is Dask's frame, whose missing keys are
    dropped with ``missing="drop"`` and refused otherwise, as before."""
    df = _text_frame(_frame())
    df = df.assign(g=df["g"].where(df.index % 7 > 0))
    _write(df, tmp_path / "d", 3)
    ddf = dd.read_parquet(tmp_path / "d")
    with pytest.raises(DataError, match="missing"):
        dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE).fit()
    kept = df[df["g"].notna()]
    with pytest.warns(DroppedRowsWarning):
        got = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE, missing="drop").fit()
    assert got.nobs == len(kept)
    _write(kept, tmp_path / "k", 3)
    full = dmixed.mixedlm(FORMULA, dd.read_parquet(tmp_path / "k"), groups="g", re_formula=RE)
    # (the kept rows in other files: the sums added in another order)
    np.testing.assert_allclose(full.fit().llf, got.llf, rtol=1e-12)
