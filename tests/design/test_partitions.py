"""Partition checks: a partition without a used column, an empty one without columns,
and the projection Dask's readers take themselves."""

from __future__ import annotations

import os
import threading

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed.design.dtypes import CATEGORICAL, NUMERIC, NUMERIC_LEVELS
from dmixed.design.partitions import (
    check_column_kinds,
    checked_partition,
    cluster_waits,
    compute_with,
    lost_futures,
    restored_values,
    select_columns,
    tuples_or_text,
    warn_text_keys,
)
from dmixed.errors import DataError, TextConversionWarning


def test_checked_partition():
    pdf = pd.DataFrame({"y": [1.0, 2.0], "g": [1, 2], "x": [0.5, 0.1]})
    pd.testing.assert_frame_equal(checked_partition(pdf, ["g", "y"]), pdf[["g", "y"]])
    empty = checked_partition(pd.DataFrame(), ["g", "y"], {"number": 4})
    assert list(empty.columns) == ["g", "y"] and len(empty) == 0
    with pytest.raises(DataError, match=r"partition 4 of the Dask .* no column\(s\) 'f'"):
        checked_partition(pdf, ["y", "f"], {"number": 4})
    with pytest.raises(DataError, match=r"^a partition .*'f'"):
        checked_partition(pdf.iloc[:0], ["y", "f"])  # rows or columns: not empty


def test_column_kinds_of_a_partition():
    """Text where the model reads numbers, or numbers where it reads text (a file unlike
    the first), is refused naming the column and the type; types of one kind, columns
    all missing and object columns pass."""
    pdf = pd.DataFrame(
        {
            "x": np.array([1, 2], dtype=np.int32),  # the model read float64
            "f": pd.array(["a", "b"], dtype="string[pyarrow]"),
            "c": pd.Categorical(["u", "v"]),
            "n": [np.nan, np.nan],  # all missing in this file
            "o": np.array([1, "a"], dtype=object),
            "s": np.array([0.5, 2.0]),
        }
    )
    kinds = {"x": NUMERIC, "f": CATEGORICAL, "c": CATEGORICAL, "n": CATEGORICAL, "o": NUMERIC}
    check_column_kinds(pdf, {**kinds, "absent": NUMERIC})
    with pytest.raises(
        DataError, match=r"^column 'f' holds text \(string\) where the model reads numbers$"
    ) as exc:
        check_column_kinds(pdf, {"f": NUMERIC})
    assert exc.value.column == "f"
    # a column of numbers inside C() is read as factor labels, not as numbers
    with pytest.raises(DataError) as exc:
        check_column_kinds(pdf, {"f": NUMERIC_LEVELS})
    assert exc.value.column == "f"
    assert "reads numbers" not in str(exc.value)
    assert str(exc.value).startswith(
        "column 'f' holds text (string) where the model reads factor labels that are "
        "numbers (the column is a factor, inside C(), whose levels are numbers"
    )
    with pytest.raises(
        DataError, match=r"column 's' holds numbers \(float64\) where the model reads text"
    ):
        check_column_kinds(pdf, {"s": CATEGORICAL})


@pytest.mark.parametrize("kind", [NUMERIC, CATEGORICAL])
def test_a_partition_of_timestamps_is_refused_where_the_model_reads_numbers_or_text(kind):
    """A file whose column holds timestamps (or durations) where the model's other data
    hold numbers or text: ``dmixed update`` read one night's epoch seconds written as
    ``timestamp[ns]`` as nanoseconds (1.7e18) and saved them into the statistics; a
    column of such values all missing is let through, as other all-missing columns."""
    pdf = pd.DataFrame(
        {
            "ts": pd.to_datetime([1.7e9, 1.7e9 + 60], unit="s"),
            "d": pd.to_timedelta([1, 2], unit="s"),
            "gone": pd.to_datetime([None, None]),
        }
    )
    for c in ("ts", "d"):
        with pytest.raises(DataError, match=rf"^column '{c}' holds values of type") as exc:
            check_column_kinds(pdf, {c: kind})
        assert exc.value.column == c
    check_column_kinds(pdf, {"gone": kind})


def test_select_columns_where_dask_does_not_check(tmp_path):
    pdf = pd.DataFrame({"y": [1.0, 2.0, 3.0], "g": [1, 2, 2], "x": [0.5, 0.1, 0.2]})
    pdf.to_parquet(tmp_path / "d.parquet")
    on_disk = select_columns(dd.read_parquet(tmp_path / "d.parquet"), ["y", "g"])
    assert type(on_disk.expr).__name__ == "Projection"  # taken by the reader
    delayed = dd.from_delayed([dask.delayed(pdf)], meta=pdf.iloc[:0], verify_meta=False)
    checked = select_columns(delayed, ["y", "g"])
    assert type(checked.expr).__name__ == "MapPartitions"
    pd.testing.assert_frame_equal(checked.compute(scheduler="sync"), pdf[["y", "g"]])
    with pytest.raises(DataError, match="column.*not found.*'z'"):
        select_columns(delayed, ["y", "z"])
    assert lost_futures(delayed) == []


def test_select_columns_in_the_collections_order(tmp_path):
    # asked out of the file's order, the columns come in the collection's order: the
    # reader takes the projection itself and no partition's columns are reordered
    # (a reorder copies every column of a partition)
    pdf = pd.DataFrame({"g": [1, 2, 2], "x": [0.5, 0.1, 0.2], "y": [1.0, 2.0, 3.0]})
    pdf.to_parquet(tmp_path / "d.parquet")
    selected = select_columns(dd.read_parquet(tmp_path / "d.parquet"), ["y", "g"])
    assert list(selected.columns) == ["g", "y"]
    assert type(selected.expr.simplify()).__name__.startswith("ReadParquet")
    pd.testing.assert_frame_equal(
        selected.compute(scheduler="sync").reset_index(drop=True), pdf[["g", "y"]]
    )
    every = select_columns(dd.read_parquet(tmp_path / "d.parquet"), ["y", "x", "g"])
    assert list(every.columns) == ["g", "x", "y"]
    assert type(every.expr.simplify()).__name__.startswith("ReadParquet")


@pytest.mark.parametrize("on", ["in process", "client"])
@pytest.mark.parametrize("blocksize", [None, 2000], ids=["a partition a file", "blocks"])
def test_csv_group_column_of_numbers_in_one_file_and_text_in_another(
    tmp_path, request, on, blocksize
):
    """Dask's raw ``ValueError`` (a table of types) deep in the fit becomes dmixed's
    error naming the column, what it holds, the file and the file Dask took the type
    from."""
    import dmixed

    rng = np.random.default_rng(0)
    n = 200
    numbers = pd.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.integers(0, 10, n)}
    )
    text = numbers.assign(g=[f"s{k}" for k in rng.integers(0, 10, n)])
    numbers.to_csv(tmp_path / "a.csv", index=False)
    text.to_csv(tmp_path / "b.csv", index=False)
    ddf = dd.read_csv([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], blocksize=blocksize)
    kw = {"client": request.getfixturevalue("client")} if on == "client" else {}
    with pytest.raises(dmixed.BadValuesError) as exc:
        dmixed.mixedlm("y ~ x", ddf, groups="g").fit(**kw)
    message = str(exc.value)
    assert f"(file {tmp_path / 'b.csv'})" in message, message
    assert "column 'g' holds str values where its first rows gave int64" in message
    assert f"the type in {tmp_path / 'a.csv'}" in message
    assert "Mismatched dtypes" not in message and "\n" not in message


def _csv_files(tmp_path, column: str, line: int, value: str, file: int = 2) -> list[str]:
    """Three CSV files of one model's columns; ``line`` of file ``file`` (the header
    is line 1) holds ``value`` in ``column``."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(15), 12)
    frame = pd.DataFrame({"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "g": g})
    paths = []
    for k in range(3):
        part = frame.iloc[k * 60 : (k + 1) * 60].astype({column: object})
        if k == file:
            part.iloc[line - 2, part.columns.get_loc(column)] = value
        paths.append(str(tmp_path / f"part{k}.csv"))
        part.to_csv(paths[-1], index=False)
    return paths


@pytest.mark.parametrize("dtype", ["float64", "Float64"])
def test_csv_value_that_the_declared_dtype_cannot_take_is_named_with_file_and_line(tmp_path, dtype):
    """``dd.read_csv(..., dtype={"y": "float64"})`` over a file with one text value in
    ``y`` let pandas' bare ``ValueError`` (no file, no line, no DmixedError) out of the
    fit."""
    import dmixed

    paths = _csv_files(tmp_path, "y", 5, "oops")
    ddf = dd.read_csv(paths, dtype={"y": dtype})
    with dask.config.set(scheduler="synchronous"), pytest.raises(dmixed.BadValuesError) as exc:
        dmixed.mixedlm("y ~ x", ddf, groups="g").fit()
    message = str(exc.value)
    assert f"partition 2 of the Dask DataFrame (file {paths[2]})" in message, message
    assert "column 'y' line 5 (counting one line per record) holds 'oops'" in message, message
    assert "na_values=['oops']" in message and "dtype=str" in message, message
    assert exc.value.column == "y" and exc.value.line == 5


def test_value_error_of_other_code_with_the_parser_words_is_not_translated(tmp_path):
    """Only pandas' CSV parser's conversion errors become a BadValuesError; the same
    words raised by other code of the graph propagate unchanged."""
    import dmixed

    def fail(pdf):
        if len(pdf) and pdf["g"].iloc[0] >= 10:
            raise ValueError("could not convert string to float: 'oops'")
        return pdf

    ddf = dd.read_csv(_csv_files(tmp_path, "y", 5, "1.5")).map_partitions(fail)
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError) as exc:
        dmixed.mixedlm("y ~ x", ddf, groups="g").fit()
    assert not isinstance(exc.value, dmixed.DmixedError)
    assert str(exc.value) == "could not convert string to float: 'oops'"


def test_csv_stray_text_in_a_column_of_numbers_names_its_line_and_a_fix(tmp_path):
    """A stray value (a missing-value marker) in a column of numbers was named with
    its file but not its line, and the only advice was to give the column one kind of
    values in every file."""
    import dmixed

    paths = _csv_files(tmp_path, "x", 51, "n/a?", file=1)
    with dask.config.set(scheduler="synchronous"), pytest.raises(dmixed.BadValuesError) as exc:
        dmixed.mixedlm("y ~ x", dd.read_csv(paths), groups="g").fit()
    message = str(exc.value)
    assert f"(file {paths[1]})" in message, message
    assert "line 51 of part1.csv (counting one line per record) holds 'n/a?'" in message
    assert "correct that line, or pass na_values=['n/a?'] to read_csv" in message, message
    assert exc.value.line == 51


def _one_csv(tmp_path, cells: dict, rows: int = 180, name: str = "a.csv") -> str:
    """One CSV file of a model's columns (y, x, k: an integer, g); ``cells`` maps
    ``(column, line)`` (the header is line 1) to the text that line holds there."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(rows // 12), 12)
    frame = pd.DataFrame(
        {"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "k": g % 5, "g": g}
    ).astype(object)
    for (column, line), text in cells.items():
        frame.iloc[line - 2, frame.columns.get_loc(column)] = text
    path = str(tmp_path / name)
    frame.to_csv(path, index=False)
    return path


def _fit_error(ddf, formula: str = "y ~ x"):
    import dmixed

    with dask.config.set(scheduler="synchronous"), pytest.raises(dmixed.BadValuesError) as exc:
        dmixed.mixedlm(formula, ddf, groups="g").fit()
    return exc.value


def test_csv_value_the_dtype_cannot_take_in_one_file_is_named_with_its_line(tmp_path):
    """One CSV file (one partition, whose number the error does not carry): the error
    named neither file, column nor line."""
    path = _one_csv(tmp_path, {("x", 102): "oops"})
    err = _fit_error(dd.read_csv(path, dtype={"x": "float64"}))
    assert f"(file {path})" in str(err), err
    assert "column 'x' line 102 (counting one line per record) holds 'oops'" in str(err)
    assert (err.column, err.line) == ("x", 102)


@pytest.mark.parametrize("dtype", ["int64", "Int64"])
def test_integer_column_of_the_formula_with_text_is_named_with_its_line(tmp_path, dtype):
    """``dtype={"k": "int64"}`` (or ``Int64``) and a text value in k, a column of the
    formula: the first read of the model (k's first value) let pandas' bare
    ``ValueError`` out."""
    path = _one_csv(tmp_path, {("k", 40): "oops"})
    err = _fit_error(dd.read_csv(path, dtype={"k": dtype}), "y ~ x + k")
    assert "column 'k' line 40 (counting one line per record) holds 'oops'" in str(err), err
    assert (err.column, err.line) == ("k", 40)


def test_csv_value_in_two_columns_is_named_in_the_failing_partition(tmp_path):
    """The same text in two columns declared float64: the error of the partition holding
    y's named x's line in another partition (the first in the file)."""
    path = _one_csv(tmp_path, {("x", 52): "oops", ("y", 152): "oops"})
    ddf = dd.read_csv(path, dtype={"x": "float64", "y": "float64"}, blocksize=1500, sample=1000)
    with dask.config.set(scheduler="synchronous"):
        failing = [i for i in range(ddf.npartitions) if _raises(ddf.partitions[i])]
    assert len(failing) == 2, failing  # x's line, then y's
    err = _located(ddf, failing[1])
    assert (err.column, err.line) == ("y", 152), err


def _raises(part) -> bool:
    try:
        part.compute()
    except ValueError:
        return True
    return False


def _located(ddf, number: int):
    from dmixed.design.partitions import compute_located

    with dask.config.set(scheduler="synchronous"), pytest.raises(Exception) as exc:
        compute_located([ddf.partitions[number]], ddf, partition=number)
    return exc.value


def test_csv_value_in_two_columns_of_one_partition_is_named_as_the_first(tmp_path):
    """Where the partition holds the value in two columns, the one named is worded as
    the first such value, not stated flatly as the one that failed."""
    path = _one_csv(tmp_path, {("x", 52): "oops", ("y", 60): "oops"})
    err = _fit_error(dd.read_csv(path, dtype={"x": "float64", "y": "float64"}))
    message = str(err)
    assert "the first such value is in column 'x', line 52" in message, message


def test_csv_value_with_a_backslash_is_found_and_shown_as_it_is(tmp_path):
    """pandas shows the field by its repr (``'a\\\\b'``); taken as it was, with the
    backslash doubled, it matched no field and the advice showed the repr's text."""
    path = _one_csv(tmp_path, {("x", 30): "a\\b"})
    err = _fit_error(dd.read_csv(path, dtype={"x": "float64"}))
    assert err.value == "a\\b" and (err.column, err.line) == ("x", 30), err
    assert "the value 'a\\b' to the type" in str(err), err
    assert "na_values=['a\\\\b']" in str(err), err  # Python source for the field


class _Named:
    """A key whose text is its name alone: unequal keys of one name become one text."""

    def __init__(self, name: str, number: int) -> None:
        self.name, self.number = name, number

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        return isinstance(other, _Named) and (self.name, self.number) == (other.name, other.number)

    def __hash__(self) -> int:
        return hash((self.name, self.number))


def test_group_keys_that_dask_made_one_text_are_refused_naming_the_column():
    """Group keys are read back from the text Dask made of them: keys that are not equal
    but became one text cannot be, and are refused (never one group of two)."""
    keys = pd.Series([_Named("a", 1), _Named("a", 2), _Named("b", 1)] * 4, dtype=object)
    frame = pd.DataFrame({"g": keys, "y": np.arange(12.0)})
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(DataError, match=r"groups column 'g' .* same text 'a'"):
        restored_values(ddf, ["g", "y"], "g")
    assert restored_values(ddf, ["g", "y"]) is ddf  # not the groups: the text stays


def test_group_keys_of_every_pandas_frame_of_a_collection_are_restored():
    """A collection of several ``dd.from_pandas`` frames (``dd.concat``) holds the keys
    of each: the rows of a frame other than the first once lost their group (read as
    missing, "missing values in column 'g'", or dropped with ``missing="drop"``)."""
    key = np.empty(12, dtype=object)
    key[:] = [(i % 3, "a") for i in range(6)] + [(i % 3, "b") for i in range(6)]
    frame = pd.DataFrame({"g": key, "y": np.arange(12.0)})
    with dask.config.set({"dataframe.convert-string": True}):
        parts = [dd.from_pandas(frame.iloc[:6], npartitions=2), dd.from_pandas(frame.iloc[6:], 2)]
    with dask.config.set(scheduler="sync"):
        restored = restored_values(dd.concat(parts), ["g", "y"], "g").compute()
    assert restored["g"].tolist() == frame["g"].tolist()


def test_group_keys_that_arrow_reads_as_lists_are_restored_as_tuples():
    """Tuples of numbers: pandas types the map of Arrow text by its values, and Arrow
    reads tuples as lists, so the keys came back as arrays ("nested values", refused as
    a Parquet list column).  They are the pandas frame's tuples, missing ones missing."""
    key = np.empty(12, dtype=object)
    key[:] = [(i % 3, i % 2) for i in range(11)] + [None]
    frame = pd.DataFrame({"g": key, "y": np.arange(12.0)})
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    with dask.config.set(scheduler="sync"):
        restored = restored_values(ddf, ["g", "y"], "g").compute()
    assert restored["g"].dtype == object
    assert restored["g"].iloc[:11].tolist() == frame["g"].iloc[:11].tolist()
    assert all(type(v) is tuple for v in restored["g"].iloc[:11])
    assert restored["g"].iloc[11] is None


def test_a_renamed_column_is_read_back_from_the_pandas_column_of_its_old_name():
    """``rename(columns={"g": "old", "h": "g"})`` once read the text of ``h`` back through
    the keys of the pandas frame's ``g`` (every group missing), then was left as text
    (the tuples' text as labels, silently).  A renamed column is followed to the pandas
    column it comes from (``rename`` and ``df.columns = ...``), and read as it holds it."""
    g, h = np.empty(6, dtype=object), np.empty(6, dtype=object)
    g[:], h[:] = [b"a", b"b", b"c"] * 2, [(1, "x"), (2, "y"), (3, "z")] * 2
    frame = pd.DataFrame({"g": g, "h": h, "y": np.arange(6.0)})
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(frame, npartitions=2)
    renamed = ddf.rename(columns={"g": "old", "h": "g"})
    relabelled = ddf.copy()
    relabelled.columns = ["old", "g", "y"]
    with dask.config.set(scheduler="sync"):
        for made in (renamed, relabelled):
            restored = restored_values(made, ["g", "y"], "g").compute()
            assert restored["g"].tolist() == frame["h"].tolist()
            assert all(type(v) is tuple for v in restored["g"])


def _tuple_parts() -> list[pd.DataFrame]:
    keys = np.empty(9, dtype=object)
    keys[:] = [(i % 3, f"k{i}") for i in range(9)]
    frame = pd.DataFrame({"g": keys, "y": np.arange(9.0), "s": [f"s{i}" for i in range(9)]})
    return [frame.iloc[i::3] for i in range(3)]


@pytest.mark.parametrize("source", ["from_map", "from_delayed"])
def test_tuple_keys_of_pandas_frames_dask_made_text_are_read_from_below_the_conversion(source):
    """``dd.from_map`` and ``dd.from_delayed`` of frames holding tuple keys: Dask's own
    step (``ArrowStringConversion``) turns them into text; the groups column is read
    from below that step (the tuples), its other text columns stay Dask's text."""
    parts = _tuple_parts()
    with dask.config.set({"dataframe.convert-string": True}):
        if source == "from_map":
            ddf = dd.from_map(lambda p: p, parts)
        else:
            ddf = dd.from_delayed([dask.delayed(lambda p: p)(p) for p in parts], meta=parts[0])
    assert ddf["g"].dtype != object  # Dask's text
    restored = restored_values(ddf, ["g", "y", "s"], "g")
    with dask.config.set(scheduler="sync"):
        got = restored.compute()
        again = restored_values(restored, ["g", "y", "s"], "g").compute()  # idempotent
    expected = pd.concat(parts)
    assert got["g"].tolist() == expected["g"].tolist() == again["g"].tolist()
    assert all(type(v) is tuple for v in got["g"])
    assert got["s"].dtype == ddf["s"].dtype and got["s"].tolist() == expected["s"].tolist()
    assert restored_values(ddf, ["g", "y"], None) is ddf  # not the groups: the text stays


def test_tuples_or_text_is_dasks_text_but_for_tuples():
    """A partition's groups column: tuples kept as they are; text, and values of one
    other kind, as Dask's conversion gives them; several kinds refused as in process."""
    dtype = pd.StringDtype("pyarrow")
    tuples = pd.Series([(1, "a"), (2.5, "b"), None], dtype=object, name="raw")
    kept = tuples_or_text(tuples, dtype, "g")
    assert kept.name == "g" and kept.dtype == object and kept.tolist() == tuples.tolist()
    for values in (pd.Series(["a", None, "c"], dtype=object), pd.Series([b"a", b"b"])):
        pd.testing.assert_series_equal(
            tuples_or_text(values, dtype, "g"), values.astype(dtype).rename("g")
        )
    mixed = pd.Series([(1, "a"), "b"], dtype=object)
    with pytest.raises(DataError, match=r"column 'g' holds values of several .*str, tuple"):
        tuples_or_text(mixed, dtype, "g")


def test_text_that_reads_as_tuples_warns_where_dask_may_have_made_it(tmp_path):
    """Keys of text ``'(…)'`` that may be Dask's text of tuples it could not read back
    (a persisted collection; a filter after Dask's conversion) warn, naming the column
    and how to keep tuples; a reader's text, and other text, do not."""
    labels = np.array(["(0, 'a')", "(1, 'b')"], dtype=object)
    frame = pd.DataFrame({"g": pd.Series(labels, dtype=object).repeat(2), "y": np.arange(4.0)})
    keys = np.empty(4, dtype=object)
    keys[:] = [(0, "a"), (0, "a"), (1, "b"), (1, "b")]
    tuples = frame.assign(g=keys)
    with dask.config.set({"dataframe.convert-string": True}):
        made = dd.from_pandas(frame.reset_index(drop=True), npartitions=2)
        parts = dd.from_map(lambda p: p, [tuples.iloc[:2], tuples.iloc[2:]])
    with dask.config.set(scheduler="sync"):
        persisted = made.persist()
    frame.to_parquet(tmp_path / "t.parquet")
    read = dd.read_parquet(tmp_path / "t.parquet")
    text = r"groups column 'g' reached the fit as text that reads as tuples \(such as "
    for ddf, where in ((persisted, "persisted"), (parts[parts.y > 0], "changes the rows")):
        with pytest.warns(TextConversionWarning, match=text + r".*" + where) as rec:
            warn_text_keys(ddf, labels, "g")
        message = str(rec[0].message)
        assert rec[0].filename == __file__  # the caller's line, not dmixed's
        assert "dataframe.convert-string': False" in message
        assert "pd.factorize(df['g'])[0]" in message
    warn_text_keys(read, labels, "g")  # the file's own text
    warn_text_keys(made[made.y > 0], labels, "g")  # the pandas frame's own text
    text_parts = dd.from_map(lambda p: p, [frame.iloc[:2].astype({"g": str}), frame.iloc[2:]])
    warn_text_keys(text_parts[text_parts.y > 0], labels, "g")  # text before Dask's step
    warn_text_keys(persisted, np.array(["a", "(b)"], dtype=object), "g")
    warn_text_keys(persisted, np.array(["(b)", "a"], dtype=object), "g")
    tuples = np.empty(2, dtype=object)
    tuples[:] = [(0, "a"), (1, "b")]
    warn_text_keys(persisted, tuples, "g")


def test_text_in_parentheses_that_no_tuple_writes_does_not_warn():
    """Labels of the data's own in parentheses (``'(site 3)'``, ``'(0)'``), which ``str``
    of no tuple gives, are not warned of on a persisted collection; a tuple's text of one
    part, or none, is."""
    frame = pd.DataFrame({"g": ["(site 1)", "(site 2)"], "y": [0.0, 1.0]})
    with dask.config.set(scheduler="sync"):
        persisted = dd.from_pandas(frame, npartitions=1).persist()
    for own in (["(site 1)", "(site 2)"], ["(0)", "(1)"], ["()", "(x)"]):
        warn_text_keys(persisted, np.array(own, dtype=object), "g")
    for made in (["(0,)", "(1,)"], ["()", "(1,)"], ["(0, 'a')", "('b', None)"]):
        with pytest.warns(TextConversionWarning, match="persisted"):
            warn_text_keys(persisted, np.array(made, dtype=object), "g")


@pytest.mark.parametrize(
    ("formula", "kw"),
    [("y ~ p", {}), ("y ~ C(p):x + p", {}), ("y ~ x + p", {"re_formula": "~C(p)"})],
)
def test_decimals_dask_made_text_read_outside_C_are_refused_as_in_process(formula, kw):
    """``dd.from_pandas`` turns an ``object`` column of Decimals into text: ``y ~ p`` fit
    one level per price (a factor of text), where the pandas frame is refused.  The
    pandas frame behind the collection gives the Decimals, refused alike; inside
    ``C()`` only, the levels are Dask's text (``C(p)[T.14.99]``), which warns."""
    import decimal

    import dmixed
    from dmixed.errors import BadValuesError

    rng = np.random.default_rng(0)
    prices = [decimal.Decimal(p) for p in ("9.99", "14.99", "19.99", "24.99")]
    frame = pd.DataFrame({"g": np.arange(80) % 8, "x": rng.normal(size=80)})
    frame["y"] = frame["x"] + rng.normal(size=80)
    frame["p"] = pd.Series([prices[i % 4] for i in range(80)], dtype=object)
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(frame, npartitions=2)
    for data in (frame, ddf):
        with pytest.raises(BadValuesError, match=r"column 'p' holds decimal numbers"):
            dmixed.mixedlm(formula, data, groups="g", **kw)
    with pytest.warns(TextConversionWarning, match=r"object column 'p' \(Decimal values\)"):
        dmixed.mixedlm("y ~ C(p) + x", ddf, groups="g")


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_design_read_in_a_fits_waits_runs_on_the_users_scheduler(client, scheduler):
    """Inside :func:`cluster_waits` a read of the design (``client`` None) runs where
    ``dask.compute`` would: a ``dask.config.set(scheduler=...)`` of a user's wins over
    the default distributed client (not waited for there); with no such setting, on the
    client, waited for."""
    waited: list[str] = []
    here = threading.get_ident()
    task = dask.delayed(threading.get_ident, pure=False)()
    with client.as_current(), cluster_waits(lambda c, futures, what: waited.append(what)):
        with dask.config.set(scheduler=scheduler):
            (ran,) = compute_with([task], what="reading the first values")
        assert waited == []
        if scheduler == "sync":
            assert ran == here
        (ran,) = compute_with([task], what="reading the first rows")
    assert waited == ["reading the first rows"] and ran != here


def _int_files(tmp_path, cells: dict, sep: str = ",", decimal: str = ".") -> list[str]:
    """Three CSV files of a model's columns (y, x, k: integers, g: integers) written
    with ``sep`` and ``decimal``; ``cells`` maps ``(file, column, line)`` (the header is
    line 1) to the text that line of that file holds there."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(15), 12)
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=15)[g] + rng.normal(size=g.size),
            "x": rng.normal(size=g.size),
            "k": rng.integers(0, 5, size=g.size) + rng.integers(0, 4, size=15)[g],
            "g": g,
        }
    )
    paths = []
    for number in range(3):
        part = frame.iloc[number * 60 : (number + 1) * 60]
        paths.append(str(tmp_path / f"part{number}.csv"))
        part.to_csv(paths[-1], index=False, sep=sep, decimal=decimal)
    for (number, column, line), text in cells.items():
        with open(paths[number]) as fh:
            rows = fh.read().splitlines()
        fields = rows[line - 1].split(sep)
        fields[rows[0].split(sep).index(column)] = text
        rows[line - 1] = sep.join(fields)
        with open(paths[number], "w") as fh:
            fh.write("\n".join(rows) + "\n")
    return paths


def _field(path: str, line: int, column: str, sep: str = ",") -> str:
    """The text of ``column`` at ``line`` of ``path``, as the file holds it."""
    with open(path) as fh:
        rows = fh.read().splitlines()
    return rows[line - 1].split(sep)[rows[0].split(sep).index(column)]


@pytest.mark.parametrize(
    ("column", "formula"), [("k", "y ~ x + k"), ("g", "y ~ x"), ("k", "k ~ x")]
)
def test_csv_missing_value_in_a_column_declared_int64_is_named_with_its_line(
    tmp_path, column, formula
):
    """``dd.read_csv(..., dtype={"k": "int64"})`` over an empty field of k (a term, the
    groups, the response) in the last file let pandas' bare ``ValueError: Integer column
    has NA values in column 2`` out of the fit; the fixes it now gives fit."""
    import dmixed

    paths = _int_files(tmp_path, {(2, column, 37): ""})
    err = _fit_error(dd.read_csv(paths, dtype={column: "int64"}), formula)
    message = str(err)
    assert f"partition 2 of the Dask DataFrame (file {paths[2]})" in message, message
    expected = f"column {column!r} line 37 (counting one line per record) holds an empty field"
    assert expected in message, message
    assert (err.column, err.line) == (column, 37) and _field(paths[2], 37, column) == ""
    assert f"dtype={{{column!r}: 'Int64'}}" in message and "missing='drop'" in message
    for dtype in ("Int64", "float64"):  # the fixes given
        with dask.config.set(scheduler="synchronous"), pytest.warns(UserWarning, match="dropped"):
            res = dmixed.mixedlm(
                formula, dd.read_csv(paths, dtype={column: dtype}), groups="g", missing="drop"
            ).fit()
        assert res.nobs == 179


def test_csv_missing_value_token_in_an_int64_column_is_shown(tmp_path):
    """A missing-value token other than an empty field (``NA``) is shown as the file
    holds it."""
    paths = _int_files(tmp_path, {(1, "k", 12): "NA"})
    err = _fit_error(dd.read_csv(paths, dtype={"k": "int64"}), "y ~ x + k")
    assert f"(file {paths[1]})" in str(err), err
    assert "column 'k' line 12 (counting one line per record) holds 'NA'" in str(err), err


def test_csv_with_semicolons_names_the_line_of_a_value_the_dtype_cannot_take(tmp_path):
    """A file read with ``sep=";"``: the field's line was searched for with commas as the
    separator, and the error named no line."""
    paths = _int_files(tmp_path, {(1, "x", 9): "oops"}, sep=";")
    err = _fit_error(dd.read_csv(paths, sep=";", dtype={"x": "float64"}))
    assert f"(file {paths[1]})" in str(err), err
    assert "column 'x' line 9 (counting one line per record) holds 'oops'" in str(err), err
    assert _field(paths[1], 9, "x", ";") == "oops"


def test_csv_with_semicolons_names_the_line_of_stray_text(tmp_path):
    """Stray text in a column of numbers of a ``sep=";"`` file: no line was named."""
    paths = _int_files(tmp_path, {(2, "x", 51): "n/a?"}, sep=";")
    err = _fit_error(dd.read_csv(paths, sep=";"))
    assert "line 51 of part2.csv (counting one line per record) holds 'n/a?'" in str(err), err
    assert err.line == 51


def test_csv_with_semicolons_and_an_empty_integer_field_names_its_line(tmp_path):
    paths = _int_files(tmp_path, {(2, "k", 40): ""}, sep=";")
    err = _fit_error(dd.read_csv(paths, sep=";", dtype={"k": "int64"}), "y ~ x + k")
    assert (err.column, err.line) == ("k", 40), err


@pytest.mark.parametrize("dtype", [{"x": "float64"}, {}])
def test_csv_with_a_decimal_comma_names_the_field_that_is_no_number(tmp_path, dtype):
    """``decimal=","``: pandas, converting again without the mark, names the column's
    first field (``'1,29...'``, a number), not the failing one; without ``dtype=``,
    every field with a comma was taken for text.  The field named is the one that is no
    number under that mark."""
    paths = _int_files(tmp_path, {(2, "x", 12): "1,2,3"}, sep=";", decimal=",")
    err = _fit_error(
        dd.read_csv(paths, sep=";", decimal=",", **({"dtype": dtype} if dtype else {}))
    )
    assert f"(file {paths[2]})" in str(err), err
    assert err.line == 12 and err.value == "1,2,3", err
    assert "na_values=['1,2,3']" in str(err), err


def _with_lines(path: str, lines: dict[int, str]) -> None:
    """Put each text of ``lines`` into ``path`` as the line of that number (1: the
    header), the lines after it moved down, in order of their numbers."""
    with open(path) as fh:
        rows = fh.read().splitlines()
    for line, text in sorted(lines.items()):
        rows.insert(line - 1, text)
    with open(path, "w") as fh:
        fh.write("\n".join(rows) + "\n")


@pytest.mark.parametrize("blocksize", [None, 1000])
def test_csv_blank_line_before_an_empty_integer_field_is_not_named(tmp_path, blocksize):
    """A blank line, which read_csv skips, was taken for the empty field of the int64
    column k: the error named the blank line, within one partition and within a block
    of a file read in several."""
    paths = _int_files(tmp_path, {(0, "k", 44): ""})
    _with_lines(paths[0], {40: ""})  # the empty field is now on line 45
    ddf = dd.read_csv(paths[0], dtype={"k": "int64"}, blocksize=blocksize)
    assert (ddf.npartitions > 1) == (blocksize is not None)
    err = _fit_error(ddf, "y ~ x + k")
    assert (err.column, err.line) == ("k", 45), err
    assert "column 'k' line 45 (counting one line per record) holds an empty field" in str(err)
    with open(paths[0]) as fh:
        assert fh.read().splitlines()[39] == "" and _field(paths[0], 45, "k") == ""


def test_csv_blank_line_read_as_a_row_is_named(tmp_path):
    """With ``skip_blank_lines=False`` a blank line is a row of missing values: it is the
    field pandas fails on, and it is named."""
    paths = _int_files(tmp_path, {(0, "k", 44): ""})
    _with_lines(paths[0], {40: ""})
    ddf = dd.read_csv(paths[0], dtype={"k": "int64"}, skip_blank_lines=False)
    err = _fit_error(ddf, "y ~ x + k")
    assert (err.column, err.line) == ("k", 40), err


@pytest.mark.parametrize("dtype", [{"x": "float64"}, {}])
def test_csv_read_with_comments_names_no_line(tmp_path, dtype):
    """``comment="#"``: the fields of a commented line were searched as values and its
    line named ('# note' at line 21, the stray 'oops' at line 41).  read_csv drops a
    commented line and cuts a line at an inline comment, so no line is named: the file
    and the fix are."""
    paths = _int_files(tmp_path, {(1, "x", 40): "oops"})
    _with_lines(paths[1], {21: "# note,a,b,c"})
    err = _fit_error(dd.read_csv(paths, comment="#", **({"dtype": dtype} if dtype else {})))
    assert getattr(err, "line", None) is None and " line " not in str(err), err
    assert paths[1] in str(err) or "part1.csv" in str(err), err
    assert "oops" in str(err), err


def test_csv_missing_value_token_of_na_values_in_an_int64_column_is_named(tmp_path):
    """``keep_default_na=False, na_values=["-"]``: pandas' ``cannot convert float NaN to
    integer`` (no column named) came out bare; the first '-' of the integer columns
    that dtype= names is found."""
    paths = _int_files(tmp_path, {(1, "k", 40): "-", (1, "k", 50): ""})
    ddf = dd.read_csv(paths, dtype={"k": "int64"}, keep_default_na=False, na_values=["-"])
    err = _fit_error(ddf, "y ~ x + k")
    assert (err.column, err.line) == ("k", 40), err
    assert "column 'k' line 40 (counting one line per record) holds '-'" in str(err), err
    assert f"(file {paths[1]})" in str(err), err


def test_tsv_read_with_a_tab_names_the_line(tmp_path):
    paths = _int_files(tmp_path, {(2, "k", 30): ""}, sep="\t")
    tsv = [p.replace(".csv", ".tsv") for p in paths]
    for p, q in zip(paths, tsv, strict=True):
        os.rename(p, q)
    err = _fit_error(dd.read_csv(tsv, sep="\t", dtype={"k": "int64"}), "y ~ x + k")
    assert (err.column, err.line) == ("k", 30) and f"(file {tsv[2]})" in str(err), err
