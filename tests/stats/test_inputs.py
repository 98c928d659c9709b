"""Content identity of inputs (``dmixed/stats/inputs.py``): a rewrite is seen even with
the same size and time stamp, for Parquet (its footer), other files (their bytes or
ends) and fsspec URLs (what the store reports)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dmixed.errors import DataError
from dmixed.stats import inputs
from dmixed.stats.checkpoint import input_fingerprint
from dmixed.stats.inputs import local_identity, remote_identity, same_content


def _rewrite_keeping_size_and_mtime(path: Path, write) -> None:
    """``write(path)``, then the old time stamp back (``os.utime``, as ``cp -p`` or
    ``rsync -t`` would); the size must be unchanged for the test to mean anything."""
    st = path.stat()
    write(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"g": np.arange(200) % 7, "x": rng.normal(size=200)})


def test_a_parquet_file_rewritten_with_the_same_size_and_mtime_is_seen(tmp_path):
    path = tmp_path / "a.parquet"
    _frame(1).to_parquet(path, index=False, compression=None)
    before = input_fingerprint([str(path)])
    assert before[0]["content"].startswith("parquet-footer-sha256:")
    # other values of the same fixed-width, uncompressed columns: the same size
    _rewrite_keeping_size_and_mtime(
        path, lambda p: _frame(2).to_parquet(p, index=False, compression=None)
    )
    after = input_fingerprint([str(path)])
    assert (after[0]["size"], after[0]["mtime_ns"]) == (before[0]["size"], before[0]["mtime_ns"])
    assert after != before
    assert input_fingerprint([str(path)]) == after  # and stable


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_same_size_rewrite_within_a_command_is_not_read_from_the_footer_cache(
    tmp_path, keep_mtime
):
    """A command reads each footer once (``footers_read_once``), keyed on the file's
    version: a file rewritten with the same size within the command (a later time
    stamp, or the old one put back) gives its new footer, not the one read before."""
    import time

    path = tmp_path / "a.parquet"
    _frame(1).to_parquet(path, index=False, compression=None)
    with inputs.footers_read_once():
        before = input_fingerprint([str(path)])
        st = path.stat()
        # the status change time comes from the kernel's coarse clock (a tick): the
        # rewrite is a tick later than the first write, as it is between two commands
        time.sleep(0.05)
        if keep_mtime:
            _rewrite_keeping_size_and_mtime(
                path, lambda p: _frame(2).to_parquet(p, index=False, compression=None)
            )
        else:
            _frame(2).to_parquet(path, index=False, compression=None)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert path.stat().st_size == st.st_size
        after = input_fingerprint([str(path)])
        assert after[0]["content"] != before[0]["content"]
        assert after[0]["content"] == local_identity(str(path), st.st_size)
    assert input_fingerprint([str(path)]) == after  # what a fresh read gives


def test_a_command_stats_each_input_once_for_its_fingerprint_and_once_a_row_count(
    tmp_path, monkeypatch
):
    """Within a command (``footers_read_once``) the fingerprint stats each file once
    (its stat gives the footer cache the file's version) and a row count once (its
    size and version from one stat), as many stats as without the version key."""
    path = str(tmp_path / "a.parquet")
    _frame(1).to_parquet(path, index=False)
    calls: list[str] = []
    real = os.stat

    def counting(p, *args, **kwargs):
        if str(p) == path:
            calls.append(str(p))
        return real(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    with inputs.footers_read_once():
        input_fingerprint([path])
        assert len(calls) == 1
        assert inputs.parquet_row_count(path) == 200
        assert len(calls) == 2
        assert inputs.parquet_row_count(path) == 200  # a hit: one stat, no read
        assert len(calls) == 3


def test_parquet_identity_reads_only_the_footer(tmp_path, monkeypatch):
    path = tmp_path / "a.parquet"
    _frame(1).to_parquet(path, index=False)
    monkeypatch.setattr(inputs, "HASH_WHOLE_FILE_BYTES", 0)
    raw = bytearray(path.read_bytes())
    raw[8] ^= 0xFF  # inside the first data page: the footer is the same
    path.write_bytes(bytes(raw))
    footer_only = local_identity(str(path), path.stat().st_size)
    _frame(1).to_parquet(path, index=False)
    assert local_identity(str(path), path.stat().st_size) == footer_only


def test_a_csv_file_rewritten_with_the_same_size_and_mtime_is_seen(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("g,x\n1,0.5\n2,0.25\n")
    before = input_fingerprint([str(path)])
    assert before[0]["content"].startswith("sha256:")
    _rewrite_keeping_size_and_mtime(path, lambda p: p.write_text("g,x\n1,0.5\n2,0.75\n"))
    assert input_fingerprint([str(path)]) != before


def test_a_large_other_file_is_identified_by_its_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "HASH_WHOLE_FILE_BYTES", 1000)
    monkeypatch.setattr(inputs, "EDGE_BYTES", 100)
    path = tmp_path / "big.csv"
    path.write_bytes(b"a" * 5000)
    first = local_identity(str(path), 5000)
    assert first.startswith("edges-sha256:")
    path.write_bytes(b"a" * 4999 + b"b")  # the last byte
    assert local_identity(str(path), 5000) != first
    path.write_bytes(b"a" * 2500 + b"b" + b"a" * 2499)  # the middle: not seen (documented)
    assert local_identity(str(path), 5000) == first


@pytest.fixture
def memory_store():
    fs = fsspec.filesystem("memory")
    root = "/dmixed-test-inputs"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_a_url_is_identified_by_what_its_store_reports(memory_store):
    fs, root = memory_store
    fs.pipe(f"{root}/a.parquet", b"1234")
    fs.pipe(f"{root}/b.parquet", b"5678")
    one = remote_identity(f"memory://{root}/a.parquet")
    both = remote_identity(f"memory://{root}/*.parquet")
    assert one.startswith("store-sha256:") and both != one
    assert remote_identity(f"memory://{root}") == both  # the directory: the same objects
    assert remote_identity(f"memory://{root}/*.parquet") == both  # stable
    fs.pipe(f"{root}/b.parquet", b"5679")  # rewritten: the store's record changes
    assert remote_identity(f"memory://{root}/*.parquet") != both
    fs.pipe(f"{root}/c.parquet", b"0")  # one more object behind the glob
    assert remote_identity(f"memory://{root}/*.parquet") != both
    fp = input_fingerprint([f"memory://{root}/a.parquet"])
    assert fp[0]["path"] == f"memory://{root}/a.parquet" and fp[0]["content"] == one


def test_a_url_that_matches_nothing_is_refused(memory_store):
    fs, root = memory_store
    fs.mkdir(root)
    with pytest.raises(FileNotFoundError, match="no input file matches"):
        remote_identity(f"memory://{root}/*.parquet")
    with pytest.raises(FileNotFoundError):
        remote_identity(f"memory://{root}/absent.parquet")


def test_same_content_sees_copies_under_other_names_not_other_rows_of_one_footer(tmp_path):
    """A copy of an included file counted its rows twice; two Parquet files of other
    values share a footer without column statistics, so a footer alone is not enough."""
    for name, values in (("a", [1.0, 2.0]), ("b", [3.0, 4.0])):
        table = pa.table({"y": values})
        pq.write_table(
            table, tmp_path / f"{name}.parquet", compression="none", write_statistics=False
        )
    shutil.copy(tmp_path / "a.parquet", tmp_path / "a_copy.parquet")
    (tmp_path / "c.csv").write_text("y\n1\n")
    shutil.copy(tmp_path / "c.csv", tmp_path / "c_copy.csv")
    files = sorted(map(str, tmp_path.iterdir()))
    recs = {Path(r["path"]).name: r for r in input_fingerprint(files)}
    assert recs["a.parquet"]["content"] == recs["b.parquet"]["content"]  # one footer
    pairs = same_content([recs["b.parquet"], recs["a_copy.parquet"]], [recs["a.parquet"]])
    assert pairs == [(recs["a_copy.parquet"]["path"], recs["a.parquet"]["path"])]
    # within the new inputs, and a whole-file hash needs no second read
    pairs = same_content([recs["c.csv"], recs["c_copy.csv"]], [])
    assert pairs == [(recs["c_copy.csv"]["path"], recs["c.csv"]["path"])]
    # the included file gone: a footer cannot tell a copy from other rows
    (tmp_path / "a.parquet").unlink()
    assert same_content([recs["a_copy.parquet"]], [recs["a.parquet"]]) == []
    assert same_content([recs["a.parquet"]], [recs["a.parquet"]]) == []  # the same path


def test_repeated_inputs_sees_one_file_given_twice_by_two_names(tmp_path, monkeypatch):
    """``fit --data 'd/*.parquet' d/a.parquet`` (or ``d/a.parquet ./d/a.parquet``) read
    a.parquet twice, its rows counted twice; a copy is named with its original."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    _frame(1).to_parquet("d/a.parquet", index=False)
    _frame(2).to_parquet("d/b.parquet", index=False)
    shutil.copy("d/b.parquet", "b_copy.parquet")
    files = ["d/a.parquet", "d/b.parquet", "./d/a.parquet", "b_copy.parquet"]
    recs = input_fingerprint(files)
    a, b, copy = (str(tmp_path / p) for p in ("d/a.parquet", "d/b.parquet", "b_copy.parquet"))
    assert inputs.repeated_inputs(recs) == [a, f"{b} (the content of {copy})"]
    assert inputs.repeated_inputs(input_fingerprint(files[:2])) == []
    assert inputs.repeated_inputs(input_fingerprint(files[:1]), recs[:1]) == [a]


def test_copies_said_to_hold_no_rows_are_not_repeated_inputs(tmp_path, monkeypatch):
    """A copy is left out where ``holds_rows`` says it holds no rows (it counts nothing
    twice); a path given twice is still named, and ``holds_rows`` is asked of copies
    only."""
    monkeypatch.chdir(tmp_path)
    _frame(1).iloc[:0].to_parquet("e1.parquet", index=False)
    shutil.copy("e1.parquet", "e2.parquet")
    _frame(2).to_parquet("b.parquet", index=False)
    shutil.copy("b.parquet", "b_copy.parquet")
    recs = input_fingerprint(["e1.parquet", "e2.parquet", "b.parquet", "b_copy.parquet"])
    asked: list[str] = []

    def holds(path: str) -> bool:
        asked.append(path)
        return not path.endswith(("e1.parquet", "e2.parquet"))

    b, b_copy = str(tmp_path / "b.parquet"), str(tmp_path / "b_copy.parquet")
    assert inputs.repeated_inputs(recs, holds_rows=holds) == [f"{b_copy} (the content of {b})"]
    assert sorted(asked) == sorted([str(tmp_path / "e2.parquet"), b_copy])
    again = input_fingerprint(["e1.parquet", "./e1.parquet"])
    assert inputs.repeated_inputs(again, holds_rows=holds) == [str(tmp_path / "e1.parquet")]


def test_an_included_input_changed_since_is_named_as_changed(tmp_path):
    """Rows appended to a file already in the statistics (``update --data`` of it
    again): still refused (its earlier rows are counted and the new ones cannot be told
    from them), but said to have changed, not to be the same rows again."""
    path = tmp_path / "a.parquet"
    _frame(1).to_parquet(path, index=False)
    included = input_fingerprint([str(path)])
    assert inputs.repeated_inputs(included, included) == [str(path)]
    pd.concat([_frame(1), _frame(2)]).to_parquet(path, index=False)
    (again,) = inputs.repeated_inputs(input_fingerprint([str(path)]), included)
    assert again.startswith(f"{path} (changed since it was added")
    assert "a file of its own" in again


def test_input_format_is_each_files_and_a_file_of_neither_kind_is_named(tmp_path):
    """A stray text file sorting first in a directory of CSV files made them all be read
    as Parquet (the first file's suffix decided); now every file's name or magic does."""
    frame = pd.DataFrame({"y": [1.0, 2.0]})
    frame.to_csv(tmp_path / "b.csv", index=False)
    frame.to_parquet(tmp_path / "c.parquet")
    frame.to_parquet(tmp_path / "part-0")  # Parquet without a suffix: its magic says
    (tmp_path / "a_notes.txt").write_text("written by hand\n")
    csv, parquet, bare, text = (
        str(tmp_path / n) for n in ("b.csv", "c.parquet", "part-0", "a_notes.txt")
    )
    assert inputs.input_format([csv, csv.replace("b.csv", "B.CSV")]) == "csv"
    assert inputs.input_format([bare, parquet]) == "parquet"
    assert inputs.input_format(["s3://bucket/dataset"]) == "parquet"  # a store's directory
    with pytest.raises(DataError, match=f"{text} is neither a Parquet file .* nor a CSV file"):
        inputs.input_format([text, csv])
    with pytest.raises(
        DataError, match=f"mixes Parquet files \\({bare}\\) and CSV files \\({csv}\\)"
    ):
        inputs.input_format([bare, csv, parquet])
    assert inputs.input_format([text, csv], given="csv") == "csv"  # the user's word for it
    with pytest.raises(
        DataError, match=f"{bare} is a Parquet file, but the input's format is given as csv"
    ):
        inputs.input_format([csv, bare], given="csv")


def test_an_included_input_is_said_changed_only_where_both_identities_are_known():
    """A content identity missing on one side (a URL whose store's package is not
    installed then or now) tells nothing: the input is named as given again, not as
    changed; one known on both sides that differs is named as changed."""
    url = "s3://bucket/a.parquet"
    then = [{"path": url, "size": None, "mtime_ns": None, "content": "etag:1"}]
    now = [{"path": url, "size": None, "mtime_ns": None, "content": None}]
    assert inputs.repeated_inputs(now, then) == [url]
    assert inputs.repeated_inputs(then, now) == [url]
    other = [{"path": url, "size": None, "mtime_ns": None, "content": "etag:2"}]
    (again,) = inputs.repeated_inputs(other, then)
    assert again.startswith(f"{url} (changed since it was added")


def test_same_content_of_parquet_files_includes_their_hive_partition_keys(tmp_path):
    """Files of one bytes under ``region=eu/`` and ``region=us/`` are rows of two
    regions (the Parquet reader adds ``region`` from the path), not one file's rows
    twice; the same keys under another folder, or CSV files (their reader adds no
    keys), are copies."""
    lake = tmp_path / "lake"
    for where in ("region=eu", "region=us", "other/region=eu"):
        (lake / where).mkdir(parents=True)
        _frame(1).to_parquet(lake / where / "part-0.parquet", index=False)
        (lake / where / "part-0.csv").write_text("y\n1\n")
    files = sorted(str(p) for p in lake.rglob("part-0.*"))
    recs = input_fingerprint(files)
    path = {str(Path(r["path"]).relative_to(lake)): r["path"] for r in recs}
    assert inputs.hive_keys(path["other/region=eu/part-0.parquet"]) == ("region=eu",)
    # other/region=eu sorts first; region=us is no copy of a Parquet file
    assert same_content(recs, []) == [
        (path["region=eu/part-0.csv"], path["other/region=eu/part-0.csv"]),
        (path["region=eu/part-0.parquet"], path["other/region=eu/part-0.parquet"]),
        (path["region=us/part-0.csv"], path["other/region=eu/part-0.csv"]),
    ]
    # nor of the included statistics' files (update)
    eu, us = (
        [r for r in recs if r["path"] == path[f"{k}/part-0.parquet"]]
        for k in ("region=eu", "region=us")
    )
    assert same_content(us, eu) == []


def test_hive_keys_are_decoded_as_the_parquet_reader_decodes_them(tmp_path):
    """pyarrow reads ``region=e%20u/`` and ``region=e u/`` as the one key ``e u``: one
    file's bytes under both are one file's rows twice (the review found them read twice,
    1,200 observations of 600 rows)."""
    lake = tmp_path / "lake"
    for where in ("region=e%20u", "region=e u", "region=e%2Fu"):
        (lake / where).mkdir(parents=True)
        _frame(1).to_parquet(lake / where / "a.parquet", index=False)
    assert inputs.hive_keys(str(lake / "region=e%20u" / "a.parquet")) == ("region=e u",)
    assert inputs.hive_keys(str(lake / "region=e%2Fu" / "a.parquet")) == ("region=e/u",)
    assert inputs.hive_key_names(str(lake / "k%20x=1" / "a.parquet")) == ("k x",)
    esc, plain = str(lake / "region=e%20u" / "a.parquet"), str(lake / "region=e u" / "a.parquet")
    read = pd.read_parquet(lake)
    assert sorted(read["region"].astype(str).unique()) == ["e u", "e/u"]  # the reader's keys
    recs = input_fingerprint([esc, plain])
    assert same_content(recs, []) == [(esc, plain)]  # (fingerprints sort the paths)


def test_one_file_through_a_link_is_one_file_whatever_keys_its_paths_give(tmp_path):
    """``alias -> lake/region=eu``: ``alias/a.parquet`` gives no key and
    ``lake/region=eu/a.parquet`` gives ``region=eu``, yet they are one file: its paths
    are resolved before its identity is decided (the reader failed with a bare
    ``'region'``)."""
    (tmp_path / "lake" / "region=eu").mkdir(parents=True)
    real = tmp_path / "lake" / "region=eu" / "a.parquet"
    _frame(1).to_parquet(real, index=False)
    (tmp_path / "alias").symlink_to(tmp_path / "lake" / "region=eu")
    linked = str(tmp_path / "alias" / "a.parquet")
    recs = input_fingerprint([linked, str(real)])
    assert same_content(recs, []) == [(str(real), linked)]
    # and against the statistics' files (update)
    assert same_content(recs[1:], recs[:1]) == [(str(real), linked)]


def test_only_hive_keys_the_model_reads_tell_copies_apart(tmp_path):
    """One file under ``run=1/`` and ``run=2/`` was read as rows of two runs even by a
    model that reads no ``run``: its rows counted twice.  Keys the model reads (given as
    ``read_keys``) tell such files apart; others do not."""
    for run in ("run=1", "run=2"):
        (tmp_path / run).mkdir()
        _frame(1).to_parquet(tmp_path / run / "a.parquet", index=False)
    one, two = (str(tmp_path / f"run={k}" / "a.parquet") for k in (1, 2))
    recs = input_fingerprint([one, two])
    assert same_content(recs, [], {"y", "x", "g"}) == [(two, one)]
    assert same_content(recs, [], {"y", "x", "g", "run"}) == []
    assert same_content(recs, []) == []  # not known: every key counts
    assert inputs.repeated_inputs(recs, [], None, {"g"}) == [f"{two} (the content of {one})"]
    assert same_content(recs[1:], recs[:1], {"g"}) == [(two, one)]  # update


def test_already_included_names_unchanged_and_copied_inputs_only(tmp_path, monkeypatch):
    """``update --skip-included``: an included file given again unchanged (a new time
    stamp alone) and a copy of an included file are left out; a new file, an included
    file whose rows changed, and a copy of another new file are not."""
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(("a", "b", "c", "new")):
        _frame(i).to_parquet(f"{name}.parquet", index=False)
    included = input_fingerprint(["a.parquet", "b.parquet", "c.parquet"])
    os.utime("a.parquet", ns=(0, 10**18))  # touched: the same rows
    _frame(9).to_parquet("c.parquet", index=False)  # rewritten: other rows
    shutil.copy("b.parquet", "b_copy.parquet")
    shutil.copy("new.parquet", "new_copy.parquet")
    names = ["a", "b", "c", "new", "b_copy", "new_copy"]
    recs = input_fingerprint([f"{n}.parquet" for n in names])
    path = {n: str(tmp_path / f"{n}.parquet") for n in names}
    assert inputs.already_included(recs, included) == {
        path["a"]: "",
        path["b"]: "",
        path["b_copy"]: f"the content of {path['b']}",
    }
    assert inputs.already_included(recs, []) == {}


def _rec(path, content, mtime=1, size=10) -> dict:
    return {"path": path, "size": size, "mtime_ns": mtime, "content": content}


def test_same_inputs_match_by_content_where_it_proves_the_rows():
    """Inputs are the saved ones under other paths where their identity says so: a
    whole-file sha256 (any time stamp); a footer with size and time stamp, under the
    same Hive keys, only where the user says the folder was moved (a file of other rows
    may share them: the review's wrong fit); a URL only as recorded."""
    footer, whole = "parquet-footer-sha256:aa", "sha256:bb"
    saved = [_rec("/d/region=eu/a.parquet", footer), _rec("/d/b.csv", whole)]
    moved = [_rec("/e/region=eu/a.parquet", footer), _rec("/e/b.csv", whole, mtime=7)]
    assert not inputs.same_inputs(moved, saved)  # a footer is not the rows
    assert inputs.same_inputs(moved, saved, moved=True)
    assert inputs.moved_inputs(moved, saved) == [
        ("/e/region=eu/a.parquet", "/d/region=eu/a.parquet")
    ]
    assert inputs.same_inputs([saved[0], moved[1]], saved)  # a whole-file hash is
    assert inputs.same_inputs(saved, saved) and inputs.moved_inputs(saved, saved) == []
    # a saved file given at its own path is not also elsewhere
    assert inputs.moved_inputs([saved[0], moved[0]], saved) == []
    assert (
        inputs.retimed_copies([saved[0], retimed_a := _rec(moved[0]["path"], footer, 2)], saved)
        == []
    )
    assert inputs.retimed_copies([retimed_a], saved) == [(retimed_a["path"], saved[0]["path"])]
    assert inputs.retimed_copies(moved, saved) == []
    retimed = [_rec("/e/region=eu/a.parquet", footer, mtime=2), _rec("/e/b.csv", whole)]
    assert not inputs.same_inputs(retimed, saved, moved=True)
    assert inputs.moved_inputs(retimed, saved) == []
    assert inputs.retimed_copies(retimed, saved) == [
        ("/e/region=eu/a.parquet", "/d/region=eu/a.parquet")
    ]
    other_keys = [_rec("/d/region=us/a.parquet", footer), _rec("/d/b.csv", whole)]
    assert not inputs.same_inputs(other_keys, saved, moved=True)
    assert inputs.moved_inputs(other_keys, saved) == []
    assert not inputs.same_inputs([_rec("/d/b.csv", whole, size=11)], [_rec("/d/b.csv", whole)])
    url = "s3://bucket/a.parquet"
    remote = [_rec(url, "store-sha256:cc", None, None)]
    assert inputs.same_inputs(remote, remote)
    assert not inputs.same_inputs([_rec("s3://other/a.parquet", "store-sha256:cc")], remote)
    assert not inputs.same_inputs(moved[:1], saved, moved=True)  # a saved file not given


def test_update_takes_a_saved_file_moved_for_the_saved_one_only_when_told(tmp_path, monkeypatch):
    """``update`` of a moved folder's saved file added its rows a second time: with its
    saved path gone, no byte comparison found it.  The same test as ``fit --stats-dir``
    (:func:`inputs.moved_inputs`) now finds it: refused by :func:`repeated_inputs`,
    and left out by :func:`already_included` only with ``moved`` (``--moved-inputs``)."""
    monkeypatch.chdir(tmp_path)
    os.mkdir("data")
    _frame(1).to_parquet("data/a.parquet", index=False)
    included = input_fingerprint(["data/a.parquet"])
    os.rename("data", "moved")
    recs = input_fingerprint(["moved/a.parquet"])
    path, saved = str(tmp_path / "moved" / "a.parquet"), str(tmp_path / "data" / "a.parquet")
    why = f"{inputs.MOVED_WHY} {saved}"
    assert inputs.repeated_inputs(recs, included) == [f"{path} ({why})"]
    assert inputs.already_included(recs, included) == {}
    assert inputs.already_included(recs, included, moved=True) == {path: why}
    os.utime("moved/a.parquet", ns=(1, 1))  # a new time stamp: not the saved file moved
    recs = input_fingerprint(["moved/a.parquet"])
    assert inputs.repeated_inputs(recs, included) == []
    assert inputs.already_included(recs, included, moved=True) == {}
