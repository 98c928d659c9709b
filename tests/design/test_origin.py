"""dmixed.design.origin: the partition and the file a data error comes from."""

from __future__ import annotations

import pickle

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed.design.origin import in_partition, located, partition_files, piece_file
from dmixed.errors import DataError


def _files(tmp_path, n: int = 3) -> list[str]:
    files = []
    for i in range(n):
        path = str(tmp_path / f"p{i}.parquet")
        pd.DataFrame({"g": np.arange(4) + 4 * i, "y": np.linspace(0, 1, 4)}).to_parquet(path)
        files.append(path)
    return files


def test_in_partition_words_the_partition_once_and_keeps_what_it_names():
    err = in_partition(DataError("column 'y' holds text"), 3)
    assert str(err) == "partition 3 of the Dask DataFrame: column 'y' holds text"
    again = in_partition(err, 5, "/d/c.parquet")  # the partition named first is kept
    assert str(again) == (
        "partition 3 of the Dask DataFrame (file /d/c.parquet): column 'y' holds text"
    )
    assert in_partition(again, 3, "/d/other.parquet") is again
    unknown = in_partition(DataError("it has no column(s) 'f'"), None)
    assert str(unknown) == "a partition of the Dask DataFrame: it has no column(s) 'f'"


def test_an_error_of_all_the_rows_is_not_worded_for_a_partition():
    """The refusal of the prior weights' span (all the rows', found in one partition)
    is kept as the fit of all the rows words it."""
    from dmixed.stats.standardize import weights_span_error

    err = weights_span_error("w", 60.0)
    assert in_partition(err, 3, "/d/c.parquet") is err
    assert str(err).startswith("the prior weights in column 'w' are too far apart")


def test_the_partition_and_column_survive_pickling():
    raw = DataError("column 'y' holds numbers (int64) where the model reads text")
    raw.column = "y"
    err = pickle.loads(pickle.dumps(in_partition(raw, 2)))
    assert (err.partition, err.file, err.column) == (2, None, "y")
    assert err.detail == str(raw)


def test_files_of_parquet_partitions_through_fused_steps(tmp_path):
    files = _files(tmp_path)
    ddf = dd.read_parquet(files)
    assert partition_files(ddf) == files
    assert partition_files(ddf.assign(z=ddf.y * 2)[["z", "g"]]) == files
    assert partition_files(ddf[ddf.y > 0.5]) == files
    opt = ddf.optimize()
    graph = dict(opt.__dask_graph__())
    assert piece_file({k: graph[k] for k in opt.__dask_keys__()[1:2]}) == files[1]
    memory = dd.from_pandas(pd.DataFrame({"y": np.arange(6.0)}), npartitions=2)
    assert partition_files(memory) == [None, None]


def test_located_names_the_file_and_where_a_type_came_from(tmp_path):
    files = _files(tmp_path)
    ddf = dd.read_parquet(files)
    raw = DataError("column 'y' holds text (string) where the model reads numbers")
    raw.column = "y"
    err = located(in_partition(raw, 2), ddf)
    assert str(err).startswith(f"partition 2 of the Dask DataFrame (file {files[2]}): column 'y'")
    assert f"declares float64, the type in {files[0]}" in str(err)
    plain = located(in_partition(DataError("it has no column(s) 'f'"), 1), ddf)
    assert (
        str(plain)
        == f"partition 1 of the Dask DataFrame (file {files[1]}): it has no column(s) 'f'"
    )
    nowhere = DataError("no data")
    assert located(nowhere, ddf) is nowhere


@pytest.mark.parametrize("in_scope", [False, True])
def test_a_column_absent_from_the_first_file_is_named_with_the_files(tmp_path, in_scope):
    """Dask took the columns from the first file, which lacks 'x': the refusal said
    "unknown column 'x'" or, with an array named x in the caller's scope, "'x' of the
    caller's scope is a ndarray, not a function", naming neither file."""
    import dmixed

    rng = np.random.default_rng(0)
    b = pd.DataFrame({"y": rng.normal(size=40), "x": rng.normal(size=40), "g": np.arange(40) % 4})
    b.drop(columns="x").to_parquet(tmp_path / "a.parquet", index=False)
    b.to_parquet(tmp_path / "b.parquet", index=False)
    ddf = dd.read_parquet(sorted(str(p) for p in tmp_path.iterdir()))
    scope = {"x": np.arange(3.0)} if in_scope else {}
    with pytest.raises(DataError) as info:
        dmixed.mixedlm("y ~ x", ddf, groups="g", eval_env=scope)
    message = str(info.value)
    assert message.startswith(
        f"the data has no column 'x': Dask took the columns from the first Parquet file, "
        f"{tmp_path / 'a.parquet'}, which lacks it, but the files' columns differ "
        f"('x' is in {tmp_path / 'b.parquet'})"
    ), message


def test_a_column_no_file_has_keeps_the_formulas_message(tmp_path):
    import dmixed

    frame = pd.DataFrame({"y": np.arange(8.0), "g": np.arange(8) % 2})
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    with pytest.raises(dmixed.FormulaError, match="unknown column 'x'"):
        dmixed.mixedlm("y ~ x", dd.read_parquet(tmp_path), groups="g", eval_env={})


def test_reader_options_not_bound_as_kwargs_fall_back_to_the_files_name():
    """A read task of Dask's CSV reader whose options are not bound as ``kwargs`` gives
    None (not known), not {}: the separator then comes from the file's name (a tab for
    ``.tsv``), as before options were read from the graph."""
    import functools
    import types

    from dask.dataframe.io.csv import _read_csv

    from dmixed.design.file_schemas import csv_read_options
    from dmixed.design.origin import reader_options

    bare = types.SimpleNamespace(func=functools.partial(_read_csv), args=())
    assert reader_options(bare) is None
    assert csv_read_options(reader_options(bare), "data/part0.tsv") == {"sep": "\t"}
    bound = types.SimpleNamespace(func=functools.partial(_read_csv, kwargs={"sep": ";"}))
    assert reader_options(bound) == {"sep": ";"}
