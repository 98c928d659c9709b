"""The input of a batch job (dmixed/input_data.py): what is refused before the data
pass, how CSV label columns are typed, and where an offending CSV value is."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from dmixed.input_data import (
    NAMED_FILES,
    check_input,
    column_names,
    csv_culprit,
    csv_header,
    input_files,
    label_types,
    parquet_rows,
    read_data,
    refuse_inside_inputs,
    saved_inputs_gone,
)
from dmixed.job import EXIT_DATA, Job, JobError


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("data", "output", "refused"),
    [
        ("*.parquet", "out", False),  # results beside the files the glob reads
        ("d/*.parquet", "out", False),
        ("d/*.parquet", "d/out.parquet", True),  # the glob would read it
        ("*/*.parquet", "d", True),  # files written in d would match
        ("d", "d/sub/out", True),
        ("d", "dd", False),
        (["a.parquet", "d"], "d/out", True),
        ("d/**/*.parquet", "d/x/out", True),  # ** reads every folder below d
        ("d/**", "d/out", True),
        ("d/**/*.parquet", "e/out", False),
    ],
)
def test_targets_inside_the_input(tmp_path, monkeypatch, data, output, refused):
    monkeypatch.chdir(tmp_path)
    os.mkdir("d")
    job = Job(data=data, output=output)
    if refused:
        with pytest.raises(JobError, match="is inside the input") as err:
            refuse_inside_inputs(job)
        assert err.value.status == 2
    else:
        refuse_inside_inputs(job)


def test_saved_inputs_gone_are_those_the_data_would_list(tmp_path, monkeypatch):
    """A saved input deleted from the folder the data reads is gone; one of another
    folder (an update given a day's new files) is not looked for, nor one found under
    another path (a copy of its content)."""
    monkeypatch.chdir(tmp_path)
    os.mkdir("d")
    (tmp_path / "d/kept.csv").write_text("y\n1\n")

    def rec(path, content):
        return {"path": str(tmp_path / path), "size": 4, "mtime_ns": 1, "content": content}

    saved = [rec("d/kept.csv", "sha256:k"), rec("d/gone.csv", "sha256:g"), rec("e/old.csv", "x")]
    saved.append(rec("d/moved.csv", "sha256:m"))
    inputs = [rec("d/kept.csv", "sha256:k"), rec("d/renamed.csv", "sha256:m")]
    assert saved_inputs_gone("d/*.csv", inputs, saved) == [str(tmp_path / "d/gone.csv")]
    assert saved_inputs_gone(["d"], inputs, saved) == [str(tmp_path / "d/gone.csv")]
    assert saved_inputs_gone("d/kept.csv", inputs[:1], saved) == []


def test_saved_inputs_gone_through_a_link_to_the_folder(tmp_path, monkeypatch):
    """Statistics fitted through ``L -> real`` (``--data 'L/**'``) and updated with
    ``--data 'real/**'`` after a saved file was deleted: the update took ``real``'s
    files for the saved ones but named none gone, the paths compared as text."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("real/day=1")
    os.symlink("real", "L")
    (tmp_path / "real/day=1/a.csv").write_text("y\n1\n")

    def rec(path):
        return {"path": str(tmp_path / path), "size": 4, "mtime_ns": 1, "content": path}

    saved = [rec("L/day=1/a.csv"), rec("L/day=2/b.csv")]
    gone = [str(tmp_path / "L/day=2/b.csv")]
    assert saved_inputs_gone("real/**", [rec("real/day=1/a.csv")], saved) == gone
    assert saved_inputs_gone("real", [rec("real/day=1/a.csv")], saved) == gone
    saved = [rec("real/day=1/a.csv"), rec("real/day=2/b.csv")]
    gone = [str(tmp_path / "real/day=2/b.csv")]
    assert saved_inputs_gone("L/**/*.csv", [rec("L/day=1/a.csv")], saved) == gone


def test_a_saved_file_the_data_does_not_list_is_not_gone_from_it(tmp_path, monkeypatch):
    """A file of ``_x/`` given by name beside ``--data 'real/**'`` and deleted was named
    "gone from --data real/**", which never reads ``_x/`` (nor does ``real``)."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("real/_x")

    def rec(path):
        return {"path": str(tmp_path / path), "size": 4, "mtime_ns": 1, "content": path}

    saved = [rec("real/_x/c.csv"), rec("real/.h.csv")]
    for data in ("real/**", "real", "real/*.csv", "real/**/*.csv"):
        assert saved_inputs_gone(data, [], saved) == [], data
    assert saved_inputs_gone("real/_x/*.csv", [], saved) == [str(tmp_path / "real/_x/c.csv")]


def test_a_url_ending_in_a_recursive_glob_is_refused_naming_what_reads(tmp_path):
    """fsspec's ``URL/**`` lists the folders too, which the Parquet reader refused with
    a long message of Dask's ("points to a directory"); the folder or ``**/*.parquet``
    read the files."""
    url = f"file://{tmp_path}/h/**"
    with pytest.raises(
        JobError, match=r"give the folder, .*/h, or its files, .*/h/\*\*/\*.parquet"
    ):
        input_files(Job(data=url))


def test_label_types_are_integers_only_where_every_value_is_a_plain_one(tmp_path):
    a = _write(tmp_path / "a.csv", "g,h,k,m\n7,-3,007,1\n12,0,8,\n")
    b = _write(tmp_path / "b.tsv", "g\th\tk\tm\n5\t4\t9\t2\n")
    assert label_types([a, b], ["g", "h", "k", "m"], None) == {
        "g": "int",
        "h": "int",
        "k": "text",  # 007 is a label, not 7
        "m": "text",  # a missing value is not an integer
    }
    c = _write(tmp_path / "c.csv", "g,h,k,m\nx7,1,1,1\n")
    assert label_types([a, c], ["g"], None) == {"g": "text"}


def test_label_types_are_one_rule_for_numbers_written_as_floats(tmp_path, monkeypatch):
    """CSV labels ``7`` in one file and ``7.0`` in another were text in a fit (two
    groups) and float64 in an update (one group): one rule now, in one read of the
    files: numbers some written as floats are "whole" (int64) where all are whole and
    below 2**53, "float" where one is not whole; a leading zero, a missing value or a
    word makes text; a number beyond 2**53 beside floats is refused, named."""
    import dask.dataframe as dd

    a = _write(tmp_path / "a.csv", "g,h,k,m,n,p\n28.0,1.5,3,1e3,x,07\n7,2.5,4,1,,7\n")
    b = _write(tmp_path / "b.csv", "g,h,k,m,n,p\n-0.0,2,5,-2.0e+1,y,8\n")
    reads = []
    read_csv = dd.read_csv  # every read of the files goes through Dask's
    monkeypatch.setattr(dd, "read_csv", lambda *a, **k: reads.append(1) or read_csv(*a, **k))
    assert label_types([a, b], ["g", "h", "k", "m", "n", "p"], None) == {
        "g": "whole",
        "h": "float",
        "k": "int",
        "m": "whole",
        "n": "text",
        "p": "text",  # 07 is a label, not 7
    }
    assert len(reads) == 1
    huge = _write(tmp_path / "huge.csv", "g\n28.0\n9007199254740993\n")
    with pytest.raises(JobError, match=r"huge.csv line 3 holds '9007199254740993'") as err:
        label_types([huge], ["g"], None)
    assert err.value.status == 3 and "column 'g'" in str(err.value)


def test_label_numbers_written_as_pandas_reads_them(tmp_path):
    """``7.`` and ``.5``, which ``pd.read_csv`` reads as numbers, made a label column
    text (``7`` and ``7.`` two groups): they are numbers now, as every other spelling
    pandas reads; plain integers of 16 digits or more are still judged by value."""
    a = _write(tmp_path / "a.csv", "g,h,k,m\n7,1,.5,12345678901234567\n7.,-.25,1,2\n")
    assert label_types([a], ["g", "h", "k", "m"], None) == {
        "g": "whole",
        "h": "float",
        "k": "float",
        "m": "int",
    }
    assert pd.read_csv(a)[["g", "h", "k"]].dtypes.map(lambda t: t.kind).tolist() == ["f"] * 3


def test_label_columns_asked_in_another_order_than_the_files(tmp_path):
    """`y ~ C(c) + x` grouped by g, with g before c in the header, failed every CSV fit
    (Dask: "Order of columns does not match")."""
    a = _write(tmp_path / "a.csv", "g,c,x,y\n1,a,0.5,1\n2,b,1.5,2\n")
    assert label_types([a], ["c", "g"], None) == {"c": "text", "g": "int"}
    job = Job(data=a, formula="y ~ C(c) + x", groups="g", output=str(tmp_path / "out"))
    df = read_data(job)[0].compute()
    assert df["c"].tolist() == ["a", "b"] and df["g"].tolist() == [1, 2]


def test_pandas_missing_tokens_are_labels_in_label_columns_only(tmp_path):
    """A group or C() level called NA, null, N/A or nan was read as missing (pandas'
    default tokens); in a label column only an empty field is missing, in a numeric
    column the tokens still are."""
    text = "g,site,x,y\nNA,null,1,2\nnull,N/A,NA,3\nnan,NA,2,\n,a,3,4\n"
    a = _write(tmp_path / "a.csv", text)
    job = Job(data=a, formula="y ~ x + C(site)", groups="g", output=str(tmp_path / "out"))
    df = read_data(job)[0].compute()
    assert df["g"].tolist()[:3] == ["NA", "null", "nan"] and df["g"].isna().tolist()[3]
    assert df["site"].tolist() == ["null", "N/A", "NA", "a"]
    assert df["x"].isna().tolist() == [False, True, False, False]
    assert df["y"].isna().tolist() == [False, False, True, False]
    assert label_types([a], ["g", "site"], None) == {"g": "text", "site": "text"}
    assert csv_culprit([a], "g", lambda s: s.isna().to_numpy(), label=True) == (
        f"{a} line 5 holds no value"
    )


def test_the_first_offending_value_is_named_by_file_and_line(tmp_path):
    a = _write(tmp_path / "a.csv", "g,x\n1,2.5\n2,3\n")
    b = _write(tmp_path / "b.tsv", "g\tx\n1\t4\n2\t\n3\tabc\n")
    assert csv_culprit([a, b], "x", lambda s: s.isna().to_numpy()) == f"{b} line 3 holds no value"

    def text(s):
        return (s.notna() & ~s.str.fullmatch(r"[0-9.]+").fillna(False).astype(bool)).to_numpy()

    assert csv_culprit([a, b], "x", text) == f"{b} line 4 holds 'abc'"
    assert csv_culprit([a], "x", text) is None


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    assert csv_header(_write(tmp_path / "a.tsv", "g\tx,y\n1\t2\n")) == ["g", "x,y"]
    with pytest.raises(JobError, match=r"a\.csv: the header names column 'x' twice"):
        csv_header(_write(tmp_path / "a.csv", "x,g,x\n1,2,3\n"))


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"a.csv": ""}, r"a\.csv is an empty file \(no header, no rows\)"),
        ({"a.csv": "\n\n"}, r"a\.csv is an empty file"),
        ({"a.csv": "y,g\n1,2\n", "b.csv": ""}, r"b\.csv is an empty file"),
        ({"a.csv": "y,g\n"}, r"no rows: .*a\.csv holds only a header"),
        ({"a.csv": "y,g\n\n", "b.tsv": "y\tg\n"}, r"no rows: .*a\.csv, .*b\.tsv hold only"),
    ],
)
def test_empty_csv_files_are_named_before_dask_reads_them(tmp_path, files, match):
    """Dask's reader said "An error occurred while calling the read_csv method
    registered to the pandas backend ... No columns to parse from file", naming no
    file; a header alone left the data pass to say "data is empty"."""
    paths = [_write(tmp_path / name, text) for name, text in files.items()]
    job = Job(data=paths, output=str(tmp_path / "out"))
    with pytest.raises(JobError, match=match) as err:
        read_data(job)
    assert err.value.status == 3
    assert "read_csv method" not in str(err.value)


def test_a_file_with_rows_among_header_only_ones_is_read(tmp_path):
    a = _write(tmp_path / "a.csv", "y,g\n")
    b = _write(tmp_path / "b.csv", "\ny,g\n1.5,2\n")
    ddf, _ = read_data(Job(data=[a, b], output=str(tmp_path / "out")))
    assert len(ddf.compute()) == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("n_files", [NAMED_FILES, NAMED_FILES + 37])
def test_many_files_without_rows_are_named_in_one_short_line(tmp_path, fmt, n_files):
    """An input whose files all hold no rows names its first few files and how many
    more, not thousands of paths in one line."""
    import pandas as pd

    paths = []
    for i in range(n_files):
        path = tmp_path / f"part{i:03d}.{fmt}"
        if fmt == "csv":
            path.write_text("y,g\n")
        else:
            pd.DataFrame(
                {"y": pd.Series([], dtype=float), "g": pd.Series([], dtype=int)}
            ).to_parquet(path, index=False)
        paths.append(str(path))
    job = Job(data=paths, output=str(tmp_path / "out"))
    with pytest.raises(JobError, match="no rows") as err:
        check_input(job, paths)
    assert err.value.status == 3
    message = str(err.value)
    assert all(p in message for p in paths[:NAMED_FILES])
    assert not any(p in message for p in paths[NAMED_FILES:])
    assert (f"and {n_files - NAMED_FILES} more" in message) == (n_files > NAMED_FILES)


@pytest.mark.parametrize("cut", ["last_bytes", "half"])
def test_a_truncated_parquet_file_is_named_in_full_as_maybe_truncated(tmp_path, monkeypatch, cut):
    """A Parquet file cut short was "not a Parquet file (it does not start and end with
    PAR1)", by the path as given (other errors print it in full): it may be a Parquet
    file cut short or damaged."""
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    os.mkdir("lake")
    pd.DataFrame({"g": [1, 2, 3], "y": [1.0, 2.0, 3.0]}).to_parquet("lake/a.parquet")
    raw = (tmp_path / "lake/a.parquet").read_bytes()
    (tmp_path / "lake/b.parquet").write_bytes(
        raw[:-3] if cut == "last_bytes" else raw[: len(raw) // 2]
    )
    job = Job(data="lake", output=str(tmp_path / "out"))
    with pytest.raises(JobError) as info:
        check_input(job, ["lake/a.parquet", "lake/b.parquet"])
    assert info.value.status == EXIT_DATA
    assert str(info.value).startswith(
        f"cannot read parquet data: {tmp_path / 'lake/b.parquet'} is not a Parquet file or "
        "is truncated or damaged (it does not start and end with PAR1)"
    )


def test_a_hive_key_also_stored_in_the_files_as_another_type_is_named(tmp_path):
    """``region=eu/`` files that also store ``region`` as ``large_string`` (pandas 3's
    ``df["region"] = "eu"; df.to_parquet(...)``) gave pyarrow's "Unable to merge: Field
    region has incompatible types", naming no file: the column, the folder, a file and
    both types are named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = tmp_path / "lake"
    for region in ("eu", "us"):
        (lake / f"region={region}").mkdir(parents=True)
        table = pa.table(
            {"g": [1, 2], "y": [1.0, 2.0], "region": pa.array([region] * 2, pa.large_string())}
        )
        pq.write_table(table, lake / f"region={region}/p.parquet")
    job = Job(data=str(lake), formula="y ~ C(region)", groups="g", output=str(tmp_path / "out"))
    with pytest.raises(JobError) as info:
        read_data(job)
    assert info.value.status == EXIT_DATA
    message = str(info.value)
    assert "Unable to merge" not in message
    assert (
        f"column 'region' is a Hive partition key of {lake} (its region=... folders, "
        "read as string)" in message
    )
    assert f"(such as {lake / 'region=eu/p.parquet'}) as large_string" in message


def test_parquet_files_of_other_hive_keys_are_refused_naming_them(tmp_path):
    """``lake/region=eu/a.parquet`` beside ``plain/b.parquet`` (or a link to a
    ``region=eu`` folder): the reader failed with a bare ``'region'`` (exit 2); the
    files and their keys are named (exit 3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"g": [1, 2], "y": [1.0, 2.0]})
    for where in ("lake/region=eu", "plain", "runs/run=1"):
        (tmp_path / where).mkdir(parents=True)
    pq.write_table(table, tmp_path / "lake/region=eu/a.parquet")
    pq.write_table(pa.table({"g": [3, 4], "y": [1.0, 3.0]}), tmp_path / "plain/b.parquet")
    pq.write_table(pa.table({"g": [5, 6], "y": [2.0, 3.0]}), tmp_path / "runs/run=1/c.parquet")
    for other in ("plain/b.parquet", "runs/run=1/c.parquet"):
        files = [str(tmp_path / "lake/region=eu/a.parquet"), str(tmp_path / other)]
        job = Job(data=files, formula="y ~ 1", groups="g", output=str(tmp_path / "out"))
        with pytest.raises(JobError) as info:
            read_data(job)
        assert info.value.status == EXIT_DATA
        message = str(info.value)
        assert "other Hive partition folders" in message
        assert f"{tmp_path / 'lake/region=eu/a.parquet'} (keys region)" in message
        assert str(tmp_path / other) in message


def test_model_names_holds_every_column_a_model_may_read():
    from dmixed.input_data import model_names

    model = {
        "formula": 'y ~ x1 + np.log(x2) + Q("my col") + C(region)',
        "groups": "g",
        "re_formula": "1 + t",
        "vc_formula": {"s": "0 + C(run)"},
        "weights": "w",
    }
    names = model_names(model)
    assert {"y", "x1", "x2", "my col", "region", "g", "t", "run", "w"} <= names
    assert "day" not in names


@pytest.mark.parametrize(
    "given", [["f10", "f9"], ["f9", "f10"], ["f10", "empty", "f9"], ["f9", "f10", "empty"]]
)
def test_the_columns_checked_are_those_of_the_parquet_file_dask_reads_first(tmp_path, given):
    """Files whose columns differ: ``column_names`` (the formulas' check before a cluster
    is started) took the first file with rows in the order given, while Dask sorts the
    files naturally (``f9`` before ``f10``) and takes the columns from its first: given
    ``f10`` (with ``z``) first, ``z`` passed the check and Dask's read had no ``z``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"g": [1, 2, 3], "x": [1.0, 2.0, 3.0], "y": [0.5, 1.5, 1.0]})
    pq.write_table(table.append_column("z", pa.array([1.0, 0.0, 1.0])), tmp_path / "f10.parquet")
    pq.write_table(table, tmp_path / "f9.parquet")
    # a schema-only file sorting before both, declaring z too: not the input's columns
    empty = table.append_column("z", pa.array([1.0, 0.0, 1.0])).schema.empty_table()
    pq.write_table(empty, tmp_path / "empty.parquet")
    files = [str(tmp_path / f"{name}.parquet") for name in given]
    job = Job(data=files, formula="y ~ x", groups="g", output=str(tmp_path / "out"))
    read = read_data(job, files)[0]
    assert set(read.columns) == {"g", "x", "y"}
    assert column_names(job, files, "parquet") == set(read.columns)


def test_parquet_order_is_dasks_for_relative_and_absolute_paths_together(tmp_path, monkeypatch):
    """Dask makes local paths absolute (fsspec) before its natural sort: ``d/f9`` given
    relative and ``/…/d/f10`` absolute are read f9 first, where a sort of the strings as
    given put the absolute path first.  The order is Dask's own file list."""
    import random

    import dask.dataframe as dd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dmixed.input_data import dask_parquet_order

    names = ["f10", "f9", "F2", "a_b", "a-b", "f1", "sub/f0", "x.10", "x.9", "b", "zz"]
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for i, name in enumerate(names):
        pq.write_table(pa.table({"i": [i]}), tmp_path / "d" / f"{name}.parquet")
    monkeypatch.chdir(tmp_path)
    rng = random.Random(0)
    for _ in range(5):
        files = [os.path.join("d", f"{n}.parquet") for n in names]
        rng.shuffle(files)
        files = [os.path.abspath(f) if rng.random() < 0.5 else f for f in files]
        files[0], files[1] = os.path.abspath(files[0]), os.path.relpath(files[1])
        dask_order = [names[i] for i in dd.read_parquet(files).compute()["i"]]
        ours = [os.path.relpath(f, "d")[: -len(".parquet")] for f in dask_parquet_order(files)]
        assert ours == dask_order


def test_a_commands_parquet_footers_are_read_once(tmp_path, monkeypatch):
    """The fingerprint of the inputs reads each local Parquet file's footer; the row
    counts that leave files without rows out of the read (``read_data``) read every
    footer again from disk (~55 µs a file, 2,000 tiny files: +0.09 s).  Within one
    command they come from the footers the fingerprint read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dmixed.stats.checkpoint import input_fingerprint
    from dmixed.stats.inputs import footers_read_once

    table = pa.table({"g": [1, 2, 3], "x": [1.0, 2.0, 3.0], "y": [0.5, 1.5, 1.0]})
    files = []
    for i in range(6):
        files.append(str(tmp_path / f"part-{i}.parquet"))
        pq.write_table(table if i % 3 else table.schema.empty_table(), files[-1])
    job = Job(data=files, formula="y ~ x", groups="g", output=str(tmp_path / "out"))
    from_disk = []
    read_metadata = pq.read_metadata

    def counting(where, *args, **kwargs):
        if isinstance(where, (str, os.PathLike)):
            from_disk.append(str(where))
        return read_metadata(where, *args, **kwargs)

    monkeypatch.setattr(pq, "read_metadata", counting)
    with footers_read_once():
        input_fingerprint(files)
        # the formula's check of its terms against the rows too (parquet_rows)
        assert parquet_rows(files, "parquet") == 12
        read = read_data(job, files)[0]
    assert from_disk == []
    assert len(read.compute()) == 12  # the four files with rows, and only they
