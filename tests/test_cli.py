"""The ``dmixed`` command as a batch job: run as a subprocess, as cron/Airflow/SLURM would.

Fits are run as ``python -m dmixed ...`` with ``cwd=tmp_path``.  Most of them use one
Dask scheduler and two workers started once per module as subprocesses on 127.0.0.1
(``--cluster scheduler.json`` or ``--cluster tcp://...``); only the end-to-end test
starts the embedded ``LocalCluster`` (no ``--cluster``), since that costs seconds.
Every new interpreter costs ~2 s of imports, so the matrix of configuration errors and
the refusals of saved statistics call ``cli.main`` in this process (same code path,
same exit status and stderr), with one subprocess per exit status and for ``--help``.

One data set for the whole module: random intercept (sd 30) and slope on x1 plus a
subgroup variance component, split into ``A.parquet`` (groups 0-59, the first 60 % of
each group's rows, subgroup "c" held back in every 4th group) and ``B.parquet`` (the
other rows of groups 0-59 and the new groups 60-79).  With intercept sd 30 the
optimizer needs more than one iteration, so ``--maxiter 1`` does not converge.

Tests that find bugs in dmixed fail with a message that starts with "dmixed bug:".
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import py_compile
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import dmixed
from dmixed import cli
from dmixed.files import directory_lock

from ._dask_processes import scheduler_and_workers
from ._interrupts import signal_on_import
from ._synth import make_data, make_nested_ids

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FORMULA = "y ~ x1 + x2"
MODEL = ["--formula", FORMULA, "--groups", "g", "--re-formula", "1 + x1"]
VC = ["--vc", "sub=0 + C(sub)"]
RTOL = 1e-8
COMPARED = ("fe_params", "cov_re", "vcomp", "scale", "llf", "bse")
RESULT_FILES = ["estimates.json", "random_effects.parquet", "summary.txt"]
# the Dask engine's data-pass line (model.fit's "data pass: N rows ..." is logged for an
# in-process pass too; reused statistics log "statistics reused (no data pass)")
DATA_PASS_LINE = re.compile(r"data pass: \d+ partitions")


# --------------------------------------------------------------------------------------
# data, processes and helpers
# --------------------------------------------------------------------------------------


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = make_data(n_groups=80, seed=7, intercept_sd=30.0, slope_sd=0.7, vc_sd=0.8, max_size=30)
    old = df["g"] < 60
    pos = df.groupby("g").cumcount()
    size = df.groupby("g")["y"].transform("size")
    held_back = (df["g"] % 4 == 0) & (df["sub"] == "c")
    in_a = old & (pos < np.ceil(0.6 * size)) & ~held_back
    return df[in_a].reset_index(drop=True), df[~in_a].reset_index(drop=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frame_a, frame_b = _frames()
    d = tmp_path_factory.mktemp("data")
    frame_a.to_parquet(d / "A.parquet", index=False)
    frame_b.to_parquet(d / "B.parquet", index=False)
    return SimpleNamespace(
        dir=d,
        A=d / "A.parquet",
        B=d / "B.parquet",
        frame_a=frame_a,
        frame_b=frame_b,
        full=pd.concat([frame_a, frame_b], ignore_index=True),
    )


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A scheduler and two single-thread workers as separate processes, listening on
    127.0.0.1 only (the scheduler runs whatever its clients send)."""
    with scheduler_and_workers(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


def run(*args, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m dmixed ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "dmixed", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstderr:\n{proc.stderr}"
    return proc


def in_process_fit(frame: pd.DataFrame, vc: bool = False, reml: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm(
            FORMULA,
            frame,
            groups="g",
            re_formula="1 + x1",
            vc_formula={"sub": "0 + C(sub)"} if vc else None,
        )
        return model.fit(reml=reml)


def assert_same_fit(res, ref, rtol: float = RTOL) -> None:
    for name in COMPARED:
        np.testing.assert_allclose(
            np.asarray(getattr(res, name), dtype=float),
            np.asarray(getattr(ref, name), dtype=float),
            rtol=rtol,
            atol=0,
            err_msg=name,
        )
    assert res.nobs == ref.nobs
    assert res.n_groups == ref.n_groups


#: How far ``update``'s estimates may lie from those of the fit of all rows from scratch:
#: ``update`` starts from the last fit's estimates, the fit from scratch from moment
#: estimates, and their routes (Newton steps, or a quasi-Newton method and the Newton
#: polish) stop at one optimum within the optimizer's tests, which bound the rise of ℓ
#: left and the gradient: along the likelihood's flattest direction the estimates of two
#: routes differ by up to a few 1e-8 (relative), as fits from scratch by the two routes
#: do (benchmarks/RESULTS.md, small2-s49).
ROUTE_RTOL = 1e-7


def assert_same_optimum(upd, ref) -> None:
    """``update`` (``upd``) at the optimum of the fit from scratch (``ref``): ℓ no lower
    than its ℓ but for rounding, the estimates within :data:`ROUTE_RTOL`."""
    assert upd.llf >= ref.llf - 1e-12 * abs(ref.llf), (upd.llf, ref.llf)
    assert_same_fit(upd, ref, rtol=ROUTE_RTOL)


def result_dirs(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def hidden_leftovers(parent: Path, name: str) -> list[str]:
    """Temporaries of the atomic write of ``parent/name`` (``.name.tmp-*``, ``.name.old-*``)."""
    return sorted(p for p in os.listdir(parent) if p.startswith(f".{name}."))


# --------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------


def test_fit_end_to_end_on_the_embedded_local_cluster(data, tmp_path):
    proc = ok(run("fit", "--data", data.A, data.B, *MODEL, "--output", "out", cwd=tmp_path))
    # stdout: the path of the results, nothing else; progress on stderr
    assert proc.stdout.splitlines() == [str(tmp_path / "out")]
    assert "(local)" in proc.stderr and "connected to tls://127.0.0.1:" in proc.stderr
    assert DATA_PASS_LINE.search(proc.stderr)
    assert "iteration 1 (" in proc.stderr and "final, after " in proc.stderr
    assert result_dirs(tmp_path / "out") == RESULT_FILES
    assert hidden_leftovers(tmp_path, "out") == []
    assert "Mixed Linear Model Regression Results" in (tmp_path / "out/summary.txt").read_text()
    res = dmixed.load(tmp_path / "out")
    assert res.converged and res.method == "REML"
    assert_same_fit(res, in_process_fit(data.full))


def test_stray_csv_value_is_named_once_with_its_line(tmp_path):
    """One stray value in a column of numbers of a later CSV file: the message named
    the file twice (the culprit's path, then the partition's) and advised only to give
    the column one kind of values in every file."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(15), 12)
    frame = pd.DataFrame({"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "g": g})
    (tmp_path / "in").mkdir()
    for k in range(3):
        part = frame.iloc[k * 60 : (k + 1) * 60].astype({"x": object})
        if k == 1:
            part.iloc[49, 1] = "n/a?"  # line 51 (the header is line 1)
        part.to_csv(tmp_path / f"in/part{k}.csv", index=False)
    args = ("fit", "--data", "in", "--formula", "y ~ x", "--groups", "g", "--quiet")
    proc = run_in_process(*args, "--output", "o", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("part1.csv") == 2, proc.stderr  # the path, then the line
    assert "line 51 of part1.csv (counting one line per record) holds 'n/a?'" in proc.stderr
    assert "correct that line (an empty field is a missing value)" in proc.stderr
    assert "na_values" not in proc.stderr and not (tmp_path / "o").exists()


def test_stray_csv_value_of_a_declared_column_in_one_file_names_its_line(tmp_path):
    """One CSV file (one partition) with text in k, a column of numbers of the formula:
    the message named no file, column or line ("a part of the input")."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(15), 12)
    frame = pd.DataFrame(
        {"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "k": g % 4, "g": g}
    ).astype({"k": object})
    frame.iloc[100, 2] = "oops"  # line 102 (the header is line 1)
    (tmp_path / "in").mkdir()
    frame.to_csv(tmp_path / "in/a.csv", index=False)
    args = ("fit", "--data", "in", "--formula", "y ~ x + k", "--groups", "g", "--quiet")
    proc = run_in_process(*args, "--output", "o", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "a.csv: column 'k' line 102 (counting one line per record) holds 'oops'" in (
        proc.stderr
    ), proc.stderr
    assert "a part of the input" not in proc.stderr and not (tmp_path / "o").exists()


def test_fit_refuses_one_file_given_twice(data, tmp_path):
    """``--data 'DIR/*.parquet' DIR/A.parquet`` read A twice, its rows counted twice, as
    ``update`` refuses (the fingerprints' absolute paths: ``./`` is the same file)."""
    pattern = str(data.dir / "*.parquet")
    again = f"{data.dir}/./A.parquet"
    for files in ((pattern, str(data.A)), (str(data.A), again)):
        proc = run_in_process("fit", "--data", *files, *MODEL, "--output", "out", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert f"1 input(s) given twice: {data.A};" in proc.stderr
        assert not (tmp_path / "out").exists()


def test_repeated_data_flags_add_their_inputs(data, tmp_path):
    """``--data A --data B`` fitted B alone (argparse's store kept the last), exit 0."""
    for command in ("fit", "update"):
        args = cli.build_parser().parse_args([command, "--data", "a", "b", "--data", "c"])
        assert args.data == ["a", "b", "c"]
    # the whole command reads both: the same file twice is refused
    again = f"{data.dir}/./A.parquet"
    args = ("fit", "--data", data.A, "--data", again, *MODEL, "--output", "out")
    proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"1 input(s) given twice: {data.A};" in proc.stderr


def test_fit_of_csv_files_whole_numbers_in_one_decimals_in_another(data, scheduler, tmp_path):
    """A column of whole numbers in the first CSV file (int64) and decimals in the next
    was refused (Dask infers the type from the first file); Parquet's mix was read as
    numbers.  The fit is the in-process fit of the same rows."""
    a, b = data.frame_a.copy(), data.frame_b
    a["x1"] = a["x1"].round()  # written as 3, not 3.0
    (tmp_path / "d").mkdir()
    a.astype({"x1": int}).to_csv(tmp_path / "d/a.csv", index=False)
    b.to_csv(tmp_path / "d/b.csv", index=False)
    args = ("fit", "--data", "d", *MODEL, "--cluster", scheduler.file, "--output", "out")
    ok(run_in_process(*args, cwd=tmp_path))
    ref = in_process_fit(pd.concat([a, b], ignore_index=True))
    assert_same_fit(dmixed.load(tmp_path / "out"), ref)


def _csv_case(d: Path, data, case: str) -> list:
    """Writes the input of a bad-CSV ``case`` into ``d``; returns the flags it adds."""
    a, b = data.frame_a.head(100).copy(), data.frame_b.head(100).copy()
    (d / "in").mkdir()
    if case == "column_twice":
        text = a.to_csv(index=False).replace("x1,x2", "x1,x1", 1)
        (d / "in/a.csv").write_text(text)
    elif case == "missing_value":
        b.loc[40, "x1"] = np.nan  # line 42 of b.csv: the header, then rows 0..40
        a.to_csv(d / "in/a.csv", index=False)
        b.to_csv(d / "in/b.csv", index=False)
    elif case in ("text_in_numbers", "late_text_in_numbers"):
        frame = b if case == "text_in_numbers" else data.full.head(1200)
        frame = frame.astype({"x1": object})
        row = 5 if case == "text_in_numbers" else 1100  # past the rows Dask reads types from
        frame.loc[row, "x1"] = "abc"
        frame.to_csv(d / "in/b.csv", index=False)
    elif case == "number_like_text_in_response":
        # one '1,5' makes the whole column text, its other values reading as numbers
        frame = a.astype({"y": object})
        frame.loc[4, "y"] = "1,5"
        frame.to_csv(d / "in/a.csv", index=False)
    elif case == "number_like_text_in_weights":
        frame = a.astype({"w": object})
        frame.loc[4, "w"] = "1,5"
        frame.to_csv(d / "in/a.csv", index=False)
        b.to_csv(d / "in/b.csv", index=False)
        return ["--weights", "w"]
    elif case == "not_parquet":
        a.to_parquet(d / "in/a.parquet", index=False)
        (d / "in/b.parquet").write_text("g,x1\n1,2\n")
    return []


# case -> (exit status, what stderr says)
CSV_CASES = {
    "column_twice": (3, ["in/a.csv: the header names column 'x1' twice (columns 2 and 3)"]),
    "missing_value": (
        3,
        [
            "missing values in column 'x1'",
            "in/b.csv line 42 holds no value (first missing value in column 'x1'): ",
        ],
    ),
    "text_in_numbers": (
        3,
        ["column 'x1' holds text", "in/b.csv line 7 holds 'abc' (first text in column 'x1'): "],
    ),
    "late_text_in_numbers": (
        3,
        [
            "in/b.csv: column 'x1' holds str values",
            "line 1102 of b.csv (counting one line per record) holds 'abc'",
        ],
    ),
    "number_like_text_in_response": (
        3,
        ["error: in/a.csv line 6 holds '1,5' (first text in column 'y'): ", "(such as '1,5')"],
    ),
    "number_like_text_in_weights": (
        3,
        ["error: in/a.csv line 6 holds '1,5' (first text in column 'w'): ", "reads weights"],
    ),
    "not_parquet": (3, ["in/b.parquet is not a Parquet file"]),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_input_files_are_named_with_the_line(data, scheduler, tmp_path, case):
    """A column named twice in a CSV header was renamed ``x1.1`` and the fit ran; a
    missing value, or text where numbers are read, was refused without its file and
    line (text: exit 2, or a dtype table); a text file among Parquet files was refused
    without its name; text in the weights column was refused without its file and line."""
    flags = _csv_case(tmp_path, data, case)
    args = ("fit", "--data", "in", *MODEL, *flags, "--cluster", scheduler.file, "--quiet")
    proc = run_in_process(*args, "--stats-dir", "st", "--output", "o", cwd=tmp_path)
    status, needles = CSV_CASES[case]
    assert proc.returncode == status, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["in"]


@pytest.mark.parametrize(
    ("data_arg", "flag", "path"),
    [
        ("in", "--output", "in/out"),
        ("in", "--stats-dir", "in/deeper/st"),
        ("in/*", "--stats-dir", "in/st"),
        ("*/*.parquet", "--output", "in/o.parquet"),
    ],
)
def test_output_or_statistics_inside_the_input_are_refused(data, tmp_path, data_arg, flag, path):
    """Results or statistics written inside an input directory (or one an input glob
    reads) would be read as data by the next job."""
    (tmp_path / "in").mkdir()
    shutil.copy2(data.A, tmp_path / "in/A.parquet")
    targets = {"--output": "o", flag: path}
    args = ("fit", "--data", data_arg, *MODEL, *(a for kv in targets.items() for a in kv))
    proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{flag} {path} is inside the input {data_arg!r}" in proc.stderr
    assert os.listdir(tmp_path / "in") == ["A.parquet"]


def test_tsv_files_are_read_tab_separated(data, scheduler, tmp_path):
    """``*.tsv`` was read comma-separated: one column named 'g\\tx1\\t...'."""
    (tmp_path / "d").mkdir()
    data.frame_a.to_csv(tmp_path / "d/a.tsv", sep="\t", index=False)
    data.frame_b.to_csv(tmp_path / "d/b.csv", index=False)
    args = ("fit", "--data", "d", *MODEL, "--cluster", scheduler.file, "--output", "out")
    ok(run_in_process(*args, cwd=tmp_path))
    assert_same_fit(dmixed.load(tmp_path / "out"), in_process_fit(data.full))


def _labelled(frame: pd.DataFrame, text_groups) -> pd.DataFrame:
    out = frame.astype({"g": object})
    mask = out["g"].isin(text_groups)
    out.loc[mask, "g"] = "g" + out.loc[mask, "g"].astype(str)
    return out


def test_csv_labels_do_not_depend_on_how_rows_fall_into_files(data, scheduler, tmp_path):
    """Group keys that look like integers in one file and are text in another were
    refused (or, split otherwise, read as integers here and text there); they are text
    wherever one value is not a plain integer, whatever the split, and integers only
    where every value of every file is one."""
    frame = _labelled(data.full, {7})  # one group of text keys among integer ones
    first = frame["g"].map(lambda g: g != "g7")
    for name, parts in {"split": [frame[first], frame[~first]], "one": [frame]}.items():
        (tmp_path / name).mkdir()
        for i, part in enumerate(parts):
            part.to_csv(tmp_path / name / f"{i}.csv", index=False)
        args = ("fit", "--data", name, *MODEL, "--cluster", scheduler.file)
        ok(run_in_process(*args, "--output", f"out_{name}", cwd=tmp_path))
    split, one = (dmixed.load(tmp_path / f"out_{n}") for n in ("split", "one"))
    assert list(split.random_effects) == list(one.random_effects)
    assert {type(k) for k in split.random_effects} == {str}
    data.frame_a.to_csv(tmp_path / "ints.csv", index=False)
    args = ("fit", "--data", "ints.csv", *MODEL, "--cluster", scheduler.file, "--output", "oi")
    ok(run_in_process(*args, cwd=tmp_path))
    keys = list(dmixed.load(tmp_path / "oi").random_effects)
    assert all(isinstance(k, (int, np.integer)) for k in keys)


def test_parquet_of_a_pandas_categorical_group_fits_as_the_plain_files(data, scheduler, tmp_path):
    """Parquet written from a pandas categorical group column (a dictionary column,
    which Dask reads as a categorical of unknown categories) was refused as numbers
    where text was declared; it fits as the same files written plain, bit for bit,
    integer labels."""
    for name, frame in {"dict": data.full.astype({"g": "category"}), "plain": data.full}.items():
        (tmp_path / name).mkdir()
        half = len(frame) // 2
        frame.iloc[:half].to_parquet(tmp_path / name / "0.parquet")
        frame.iloc[half:].to_parquet(tmp_path / name / "1.parquet")
        args = ("fit", "--data", name, *MODEL, "--cluster", scheduler.file, "--quiet")
        ok(run_in_process(*args, "--output", f"out_{name}", cwd=tmp_path))
    got, want = (dmixed.load(tmp_path / f"out_{n}") for n in ("dict", "plain"))
    for name in COMPARED:
        np.testing.assert_array_equal(
            np.asarray(getattr(got, name)), np.asarray(getattr(want, name))
        )
    assert list(got.random_effects) == list(want.random_effects)
    assert all(isinstance(k, (int, np.integer)) for k in got.random_effects)


def test_update_of_csv_keeps_the_label_types_of_the_saved_statistics(data, scheduler, tmp_path):
    """Saved text keys ("g7" among them): new CSV rows whose keys are all integers are
    read as text (the keys of the saved groups they continue); saved integer keys: new
    rows with a text key are refused, naming the column, file and line."""
    text = _labelled(data.full, {7})
    early = data.full["g"] < 40  # "g7" among the saved groups, integers only in new.csv
    old, new = text[early], text[~early]
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    common = ("--cluster", scheduler.file, "--quiet")
    ok(
        run_in_process(
            "fit",
            "--data",
            "old.csv",
            *MODEL,
            *common,
            "--stats-dir",
            "S",
            "--output",
            "o1",
            cwd=tmp_path,
        )
    )
    ok(
        run_in_process(
            "update",
            "--stats-dir",
            "S",
            "--data",
            "new.csv",
            *common,
            "--output",
            "o2",
            cwd=tmp_path,
        )
    )
    ok(
        run_in_process(
            "fit", "--data", "old.csv", "new.csv", *MODEL, *common, "--output", "o3", cwd=tmp_path
        )
    )
    updated, scratch = dmixed.load(tmp_path / "o2"), dmixed.load(tmp_path / "o3")
    assert sorted(updated.random_effects) == sorted(scratch.random_effects)
    assert_same_fit(updated, scratch, rtol=1e-6)

    data.frame_a.to_csv(tmp_path / "ints.csv", index=False)
    _labelled(data.frame_b, {70}).to_csv(tmp_path / "more.csv", index=False)
    ok(
        run_in_process(
            "fit",
            "--data",
            "ints.csv",
            *MODEL,
            *common,
            "--stats-dir",
            "SI",
            "--output",
            "o4",
            cwd=tmp_path,
        )
    )
    before = (tmp_path / "SI/manifest.json").read_bytes()
    proc = run_in_process(
        "update", "--stats-dir", "SI", "--data", "more.csv", *common, "--output", "o5", cwd=tmp_path
    )
    line = 2 + int(np.flatnonzero(data.frame_b["g"].to_numpy() == 70)[0])
    assert proc.returncode == 3, proc.stderr
    assert "the labels of column 'g' in the saved statistics are integers" in proc.stderr
    assert f"more.csv line {line} holds 'g70'" in proc.stderr
    assert (tmp_path / "SI/manifest.json").read_bytes() == before
    assert not (tmp_path / "o5").exists()


def test_update_of_csv_after_float_group_keys_takes_the_equal_integers(data, scheduler, tmp_path):
    """An update from Parquet whose group keys are float64 saves float64 keys; a later
    update from CSV of the same whole-number keys was refused as "text" (the saved type
    made the CSV column be read as text).  They are now read as integers and meet the
    saved keys by value, as keys of two numeric dtypes meet anywhere (whole float keys
    after integer ones keep the integer type): the fit equals one of all the rows.  A
    CSV key that is text is refused naming the saved type, the file, line and value."""
    early = data.full["g"] < 30
    late = data.full["g"] >= 50
    first, floats, ints = data.full[early], data.full[~early & ~late], data.full[late]
    first.to_parquet(tmp_path / "first.parquet", index=False)
    floats.assign(g=floats["g"].astype(float)).to_parquet(tmp_path / "f.parquet", index=False)
    ints.to_csv(tmp_path / "ints.csv", index=False)
    common = ("--cluster", scheduler.file, "--quiet")
    fit = ("fit", "--data", "first.parquet", *MODEL, *common, "--stats-dir", "S", "--output")
    ok(run_in_process(*fit, "o1", cwd=tmp_path))
    upd = ("update", "--stats-dir", "S", *common, "--data")
    ok(run_in_process(*upd, "f.parquet", "--output", "o2", cwd=tmp_path))
    ok(run_in_process(*upd, "ints.csv", "--output", "o3", cwd=tmp_path))
    want = in_process_fit(data.full)
    assert_same_fit(dmixed.load(tmp_path / "o3"), want, rtol=1e-6)

    ok(run_in_process(*fit[:-3], "--stats-dir", "T", "--output", "p1", cwd=tmp_path))
    ok(run_in_process(*upd[:2], "T", *upd[3:], "f.parquet", "--output", "p2", cwd=tmp_path))
    _labelled(ints, {60}).to_csv(tmp_path / "text.csv", index=False)
    before = (tmp_path / "T/manifest.json").read_bytes()
    proc = run_in_process(*upd[:2], "T", *upd[3:], "text.csv", "--output", "p3", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "holds text" not in proc.stderr
    # whole float keys after integer keys keep the integer type (saved as integers)
    assert "the labels of column 'g' in the saved statistics are integers" in proc.stderr
    line = 2 + int(np.flatnonzero(ints["g"].to_numpy() == 60)[0])
    assert f"text.csv line {line} holds 'g60'" in proc.stderr
    assert (tmp_path / "T/manifest.json").read_bytes() == before


def test_update_of_csv_keys_written_as_floats_after_float_group_keys(data, scheduler, tmp_path):
    """Whole-number keys written ``28.0`` (pandas writes a float column so) after
    float64 keys were saved were refused, saying update reads whole numbers: they are
    now read as float64 and the fit equals one of all the rows.  A key float64 cannot
    hold as written (2**53 + 1) is refused naming the column, file, line and value."""
    early = data.full["g"] < 30
    late = data.full["g"] >= 50
    first, floats, rest = data.full[early], data.full[~early & ~late], data.full[late]
    first.to_parquet(tmp_path / "first.parquet", index=False)
    floats.assign(g=floats["g"].astype(float)).to_parquet(tmp_path / "f.parquet", index=False)
    rest.assign(g=rest["g"].astype(float)).to_csv(tmp_path / "dot0.csv", index=False)
    assert ".0," in (tmp_path / "dot0.csv").read_text()  # the keys as pandas writes them
    common = ("--cluster", scheduler.file, "--quiet")
    fit = ("fit", "--data", "first.parquet", *MODEL, *common, "--stats-dir", "S", "--output")
    ok(run_in_process(*fit, "o1", cwd=tmp_path))
    upd = ("update", "--stats-dir", "S", *common, "--data")
    ok(run_in_process(*upd, "f.parquet", "--output", "o2", cwd=tmp_path))
    before = (tmp_path / "S/manifest.json").read_bytes()
    huge = rest.assign(g=rest["g"].astype(object))
    huge.iloc[3, huge.columns.get_loc("g")] = "9007199254740993.0"
    huge.to_csv(tmp_path / "huge.csv", index=False)
    proc = run_in_process(*upd, "huge.csv", "--output", "o3", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "column 'g'" in proc.stderr
    assert "huge.csv line 5 holds '9007199254740993.0'" in proc.stderr
    assert (tmp_path / "S/manifest.json").read_bytes() == before
    ok(run_in_process(*upd, "dot0.csv", "--output", "o4", cwd=tmp_path))
    assert_same_fit(dmixed.load(tmp_path / "o4"), in_process_fit(data.full), rtol=1e-6)


def test_update_of_csv_keys_written_as_floats_after_integer_group_keys(data, scheduler, tmp_path):
    """Integer keys saved, new keys written ``28.0`` (pandas' CSV of a column that once
    held a missing value) were refused as "text" while the same keys as float64 Parquet
    were taken: CSV now reads them as float64, as the README says integer and float keys
    meet, and the update equals the update from Parquet and the fit of all the rows.  A
    key that is neither is refused naming it, not the first ``28.0`` before it."""
    early = data.full["g"] < 40
    first, rest = data.full[early], data.full[~early]
    first.to_parquet(tmp_path / "first.parquet", index=False)
    rest.assign(g=rest["g"].astype(float)).to_csv(tmp_path / "dot0.csv", index=False)
    rest.assign(g=rest["g"].astype(float)).to_parquet(tmp_path / "f.parquet", index=False)
    assert ".0," in (tmp_path / "dot0.csv").read_text()
    common = ("--cluster", scheduler.file, "--quiet")
    fit = ("fit", "--data", "first.parquet", *MODEL, *common, "--output")
    for stats in ("S", "P", "T"):
        ok(run_in_process(*fit, f"o{stats}", "--stats-dir", stats, cwd=tmp_path))
    upd = ("update", *common, "--data")
    ok(run_in_process(*upd, "dot0.csv", "--stats-dir", "S", "--output", "u1", cwd=tmp_path))
    ok(run_in_process(*upd, "f.parquet", "--stats-dir", "P", "--output", "u2", cwd=tmp_path))
    from_csv, from_parquet = dmixed.load(tmp_path / "u1"), dmixed.load(tmp_path / "u2")
    assert_same_fit(from_csv, from_parquet, rtol=1e-10)
    assert_same_optimum(from_csv, in_process_fit(data.full))

    text = rest.assign(g=rest["g"].astype(float).astype(object))
    text.iloc[5, text.columns.get_loc("g")] = "g60"
    text.to_csv(tmp_path / "text.csv", index=False)
    before = (tmp_path / "T/manifest.json").read_bytes()
    proc = run_in_process(*upd, "text.csv", "--stats-dir", "T", "--output", "u3", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "the labels of column 'g' in the saved statistics are integers" in proc.stderr
    assert "text.csv line 7 holds 'g60'" in proc.stderr
    assert (tmp_path / "T/manifest.json").read_bytes() == before


def _key_dtype(out: Path) -> np.dtype:
    return pd.read_parquet(out / "random_effects.parquet")["group"].dtype


def test_csv_keys_written_as_floats_in_one_file_fit_as_their_update(data, scheduler, tmp_path):
    """CSV keys ``7`` in two files and ``7.0`` (an export turned float) in a third:
    ``fit`` of the three read the column as text (every group twice) while ``fit`` of
    two and ``update`` with the third met them as one group.  One rule now: both are
    the fit of the integer keys, integer keys in ``random_effects.parquet``."""
    half = len(data.full) // 2  # rows of every group in each part
    rows = data.full.sample(frac=1.0, random_state=3)
    rows.iloc[:half].to_csv(tmp_path / "a.csv", index=False)
    late = rows.iloc[half:]
    late.assign(g=late["g"].astype(float)).to_csv(tmp_path / "b.csv", index=False)
    assert ".0," in (tmp_path / "b.csv").read_text()
    common = ("--cluster", scheduler.file, "--quiet")
    ok(
        run_in_process(
            "fit",
            "--data",
            "a.csv",
            *MODEL,
            *common,
            "--stats-dir",
            "S",
            "--output",
            "o1",
            cwd=tmp_path,
        )
    )
    ok(
        run_in_process(
            "update", "--stats-dir", "S", "--data", "b.csv", *common, "--output", "o2", cwd=tmp_path
        )
    )
    ok(
        run_in_process(
            "fit", "--data", "a.csv", "b.csv", *MODEL, *common, "--output", "o3", cwd=tmp_path
        )
    )
    updated, scratch = dmixed.load(tmp_path / "o2"), dmixed.load(tmp_path / "o3")
    want = in_process_fit(data.full)
    assert scratch.n_groups == updated.n_groups == want.n_groups
    assert list(scratch.random_effects) == list(updated.random_effects) == list(want.random_effects)
    assert_same_fit(scratch, want, rtol=1e-10)  # the same statistics, a cold start each
    assert_same_optimum(updated, scratch)  # warm started: where the optimizer stops
    assert updated.llf == pytest.approx(scratch.llf, rel=1e-12, abs=0)
    assert _key_dtype(tmp_path / "o2") == _key_dtype(tmp_path / "o3") == np.int64


def test_float_group_keys_meeting_integer_keys_keep_the_integer_type(data, scheduler, tmp_path):
    """A float64 Parquet file of the same whole-number keys turned the saved integer
    keys of ``update`` into float64 (``random_effects.parquet``'s ``group`` too) while a
    fit of the files kept int64; and a fit of an int64 file with a float64 file holding
    ``3.5`` took it for the group 3.  Whole floats keep the integer type now, a key
    that is not whole beside integers is refused naming the file, where the int64 file
    comes first in name order; the other order is asserted too (float64 keys)."""
    early = data.full["g"] < 40
    first, rest = data.full[early], data.full[~early]
    first.to_parquet(tmp_path / "a.parquet", index=False)
    rest.assign(g=rest["g"].astype(float)).to_parquet(tmp_path / "b.parquet", index=False)
    common = ("--cluster", scheduler.file, "--quiet")
    ok(
        run_in_process(
            "fit",
            "--data",
            "a.parquet",
            *MODEL,
            *common,
            "--stats-dir",
            "S",
            "--output",
            "o1",
            cwd=tmp_path,
        )
    )
    ok(
        run_in_process(
            "update",
            "--stats-dir",
            "S",
            "--data",
            "b.parquet",
            *common,
            "--output",
            "o2",
            cwd=tmp_path,
        )
    )
    ok(
        run_in_process(
            "fit",
            "--data",
            "a.parquet",
            "b.parquet",
            *MODEL,
            *common,
            "--output",
            "o3",
            cwd=tmp_path,
        )
    )
    assert _key_dtype(tmp_path / "o2") == _key_dtype(tmp_path / "o3") == np.int64
    updated = dmixed.load(tmp_path / "o2")
    assert all(isinstance(k, (int, np.integer)) for k in updated.random_effects)
    assert_same_optimum(updated, dmixed.load(tmp_path / "o3"))

    half = rest.assign(g=rest["g"].astype(float))
    half.iloc[2, half.columns.get_loc("g")] = 3.5
    half.to_parquet(tmp_path / "c.parquet", index=False)
    proc = run_in_process(
        "fit", "--data", "a.parquet", "c.parquet", *MODEL, *common, "--output", "o4", cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    assert "c.parquet" in proc.stderr and "3.5" in proc.stderr and "'g'" in proc.stderr
    assert not (tmp_path / "o4").exists()

    # Dask takes the column's type from the first file in name order (a documented
    # limit): with the float64 file first, the same rows give float64 keys, and 3.5 is
    # a group of its own
    (tmp_path / "b.parquet").rename(tmp_path / "0b.parquet")
    (tmp_path / "c.parquet").rename(tmp_path / "0c.parquet")
    for name, out in (("0b.parquet", "o5"), ("0c.parquet", "o6")):
        args = ("fit", "--data", name, "a.parquet", *MODEL, *common, "--output", out)
        ok(run_in_process(*args, cwd=tmp_path))
        assert _key_dtype(tmp_path / out) == np.float64
    assert_same_optimum(dmixed.load(tmp_path / "o5"), dmixed.load(tmp_path / "o3"))
    assert 3.5 in set(dmixed.load(tmp_path / "o6").random_effects)


def test_csv_factor_levels_written_as_floats_keep_pandas_names(scheduler, tmp_path):
    """A ``C()`` column written ``1.0``, ``2.0`` had its levels read as integers,
    ``C(site)[T.2]``, while pandas (``pd.read_csv``), statsmodels and the Python API
    name them ``C(site)[T.2.0]``.  Only the group column's whole numbers become
    integers; a ``C()`` column keeps pandas' float64 levels and names."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "g": rng.integers(0, 20, 400),
            "x": rng.normal(size=400),
            "site": rng.integers(1, 4, 400).astype(float),
            "y": rng.normal(size=400),
        }
    )
    frame.to_csv(tmp_path / "a.csv", index=False)
    assert "2.0" in (tmp_path / "a.csv").read_text()
    model = ["--formula", "y ~ x + C(site)", "--groups", "g"]
    args = ("fit", "--data", "a.csv", *model, "--cluster", scheduler.file, "--quiet")
    ok(run_in_process(*args, "--output", "o", cwd=tmp_path))
    fitted = dmixed.load(tmp_path / "o")
    want = dmixed.mixedlm("y ~ x + C(site)", pd.read_csv(tmp_path / "a.csv"), groups="g")
    assert list(fitted.fe_params.index) == list(want.exog_names)
    assert "C(site)[T.2.0]" in fitted.fe_params.index


def test_a_header_only_csv_first_does_not_decide_the_other_files_types(data, tmp_path):
    """A header-only CSV file given first beside a file with rows made every column
    text (Dask takes the types from the first file): the other file's numbers were
    refused as text, the file with numbers named.  The fit now equals the file's alone,
    and an error of the data does not name the file without rows as unlike the others."""
    data.frame_a.to_csv(tmp_path / "a.csv", index=False)
    data.frame_a.head(0).to_csv(tmp_path / "hdr.csv", index=False)
    ok(run_in_process("fit", "--data", "hdr.csv", "a.csv", *MODEL, "--output", "o", cwd=tmp_path))
    assert_same_fit(dmixed.load(tmp_path / "o"), in_process_fit(data.frame_a), rtol=1e-10)
    bad = data.frame_a.astype({"x2": object})
    bad.iloc[4, bad.columns.get_loc("x2")] = "n/a?"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    proc = run_in_process(
        "fit", "--data", "hdr.csv", "bad.csv", *MODEL, "--output", "p", cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    assert "bad.csv" in proc.stderr and "'n/a?'" in proc.stderr
    assert "hdr.csv" not in proc.stderr


def test_a_stray_text_file_in_a_csv_directory_is_named_not_read_as_parquet(data, tmp_path):
    """``README.txt`` sorting first in a directory of CSV files made the whole directory
    be read as Parquet ("cannot read parquet data"); now the stray file is named."""
    (tmp_path / "d").mkdir()
    data.frame_a.to_csv(tmp_path / "d/a.csv", index=False)
    (tmp_path / "d/README.txt").write_text("exported from the warehouse\n")
    args = ("fit", "--data", "d", *MODEL, "--stats-dir", "S", "--output", "out")
    proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert "d/README.txt is neither a Parquet file" in proc.stderr
    assert "parquet data" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["d"]  # no output, statistics or lock


@pytest.fixture(scope="module")
def ab_result(data, scheduler, tmp_path_factory):
    """``fit --data A B --cluster scheduler.json``: its run and results directory."""
    d = tmp_path_factory.mktemp("ab")
    proc = ok(
        run(
            "fit",
            "--data",
            data.A,
            data.B,
            *MODEL,
            "--cluster",
            scheduler.file,
            "--output",
            "out",
            cwd=d,
        )
    )
    return SimpleNamespace(proc=proc, dir=d, out=d / "out")


@pytest.mark.parametrize("how", ["scheduler_file", "address"])
def test_fit_on_a_running_scheduler(data, scheduler, ab_result, tmp_path, how):
    if how == "scheduler_file":
        proc, out = ab_result.proc, ab_result.out
    else:
        out = tmp_path / "out"
        proc = ok(
            run(
                "fit",
                "--data",
                data.A,
                data.B,
                *MODEL,
                "--cluster",
                scheduler.address,
                "--output",
                "out",
                cwd=tmp_path,
            )
        )
    assert f"connected to {scheduler.address} ({how})" in proc.stderr
    assert f"on cluster {scheduler.address}" in proc.stderr  # the data pass ran there
    assert proc.stdout.strip() == str(out)
    assert_same_fit(dmixed.load(out), in_process_fit(data.full))


def test_yaml_job_file_with_vc_mapping_and_ml_and_flags_overriding_keys(data, scheduler, tmp_path):
    job = {
        "data": [str(data.A), str(data.B)],
        "formula": FORMULA,
        "groups": "g",
        "re_formula": "1 + x1",
        "vc_formula": {"sub": "0 + C(sub)"},
        "method": "ML",  # case-insensitive
        "cluster": scheduler.file,
        "output": "from_job",
        "maxiter": 1,  # overridden below: with 1 iteration the fit does not converge
        "quiet": True,
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    proc = ok(
        run("fit", "--job", "job.yaml", "--maxiter", "500", "--output", "from_flag", cwd=tmp_path)
    )
    assert proc.stdout.strip() == str(tmp_path / "from_flag")
    assert not (tmp_path / "from_job").exists()
    assert "iteration" not in proc.stderr  # quiet: true in the job file
    res = dmixed.load(tmp_path / "from_flag")
    assert res.converged and res.method == "ML" and not res.reml
    assert list(res.names.vc_names) == ["sub"]
    assert_same_fit(res, in_process_fit(data.full, vc=True, reml=False))


# --------------------------------------------------------------------------------------
# bad configurations: each with its own message and exit status
# --------------------------------------------------------------------------------------


def _corrupt_data_pages(frame: pd.DataFrame, path: Path) -> None:
    """A Parquet file whose footer is intact (its schema reads) but whose first data
    page header of every column is garbage: it fails only when the rows are read."""
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        path,
        compression="none",
        row_group_size=len(frame) // 3,
    )
    meta = pq.ParquetFile(path).metadata
    raw = bytearray(path.read_bytes())
    for rg in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            off = meta.row_group(rg).column(c).data_page_offset
            raw[off : off + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    pq.read_schema(path)  # the footer still reads


def run_in_process(*args, cwd, warns: bool = False) -> SimpleNamespace:
    """``cli.main(ARGS)`` in this process with ``cwd`` as working directory: the same
    exit status, stdout and stderr as the command, without 2 s of imports per run.
    Restores the working directory and the "dmixed" logger that ``main`` reconfigures.
    With ``warns``, dmixed's warnings are expected (the command prints them on stderr,
    where the caller looks for them); otherwise they are errors, as in every test."""
    log = logging.getLogger("dmixed")
    saved = log.handlers[:], log.level, log.propagate
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            if warns:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("always", dmixed.DmixedWarning)
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code
    finally:
        os.chdir(here)
        log.handlers[:] = saved[0]
        log.level, log.propagate = saved[1], saved[2]
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _bad_cases(d: Path, data, scheduler) -> dict[str, list[str]]:
    """name -> arguments; writes the files the cases need into ``d``."""
    files = {
        "unknown_key.yaml": "data: A.parquet\nformla: y ~ x1\n",
        "invalid.yaml": "formula: [y ~ x1\ngroups: g\n",
        "method.yaml": "method: bayes\n",
        "check_nobs.yaml": "check_nobs: maybe\n",
        "list.yaml": "- data: a.parquet\n",
        "vc.yaml": "vc_formula: 0 + C(sub)\n",
        "unreachable.yaml": "kind: address\naddress: tcp://127.0.0.1:1\nclient:\n  timeout: 2s\n",
        "bad_kind.yaml": "kind: kubernetess\n",
        "bad_keys.yaml": "kind: local\nclients: {timeout: 1s}\n",
        "slurm.yaml": "kind: slurm\ncluster:\n  cores: 1\n  memory: 1GB\n",
        # issue 15: strings are not booleans, text is not a number, a range is a range
        "typed.yaml": f"data: {data.A}\nformula: {FORMULA}\ngroups: g\noutput: o\n"
        'quiet: "no"\nallow_nonconverged: "false"\n',
        # checked before any data is read: the data file does not exist (else exit 3)
        "maxiter.yaml": "data: absent.parquet\nformula: y ~ x1\ngroups: g\noutput: o\n"
        "maxiter: abc\n",
        "preload.yaml": "cluster:\n  kind: local\n  cluster:\n    n_workers: 1\n"
        "    preload: [evil.py]\n",
        "tls_files.yaml": "kind: address\naddress: tls://127.0.0.1:1\nsecurity:\n"
        "  tls_ca_file: nope-ca.pem\n  tls_client_cert: nope.pem\n  tls_client_key: nope.pem\n"
        "client: {timeout: 2s}\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "garbage.parquet").write_bytes(np.random.default_rng(0).bytes(5000))
    (d / "foreign").mkdir()
    (d / "foreign/precious.txt").write_text("not written by dmixed")
    (d / "truncated").mkdir()
    (d / "truncated/manifest.json").write_text('{"format": "dmixed-statistics", "form')
    csv = data.full.head(400).copy()
    csv["x2"] = csv["x2"].astype(object)
    csv.loc[390, "x2"] = "oops"  # past the rows dask infers the types from
    csv.to_csv(d / "late_text.csv", index=False)
    holes = data.frame_a.copy()
    holes.loc[[3, 7], "x1"] = np.nan
    holes.to_parquet(d / "holes.parquet", index=False)
    _corrupt_data_pages(data.full, d / "pages.parquet")
    early = data.full.head(400).copy()
    early["x2"] = early["x2"].astype(object)
    early.loc[1, "x2"] = "oops"  # among the rows dask infers the types from: text
    early.to_csv(d / "early_text.csv", index=False)
    inf = data.frame_a.copy()
    inf.loc[4, "y"] = np.inf
    inf.to_parquet(d / "inf.parquet", index=False)
    data.full.head(0).to_csv(d / "header_only.csv", index=False)
    (d / "empty.csv").write_bytes(b"")
    data.full.head(0).to_parquet(d / "schema_only.parquet", index=False)
    text_groups = data.frame_b.assign(g=data.frame_b["g"].map("g{}".format))
    text_groups.to_parquet(d / "text_groups.parquet", index=False)
    data.frame_a.to_parquet(d / "numbers.parquet", index=False)
    # numbers written as text in both files, one word among them in the second
    data.frame_a.assign(x1=data.frame_a["x1"].astype(str)).to_parquet(d / "digits.parquet")
    word = data.frame_b.assign(x1=data.frame_b["x1"].astype(str))
    word.loc[5, "x1"] = "abc"
    word.to_parquet(d / "word.parquet", index=False)
    # a column of text in one file, numbers in the others
    text_column = data.frame_b.assign(x1=data.frame_b["x1"].astype(str))
    text_column.loc[5, "x1"] = "n/a"
    text_column.to_parquet(d / "text_column.parquet", index=False)
    fit = ["fit", "--data", str(data.A), *MODEL, "--output", "o", "--quiet"]
    cases = {
        "unknown_job_key": ["fit", "--job", "unknown_key.yaml"],
        "invalid_yaml": ["fit", "--job", "invalid.yaml"],
        "job_not_a_mapping": ["fit", "--job", "list.yaml"],
        "job_file_missing": ["fit", "--job", "absent.yaml"],
        "bad_method_in_job": [*fit, "--job", "method.yaml"],
        "vc_formula_not_a_mapping": [*fit, "--job", "vc.yaml"],
        "bad_method_flag": [*fit, "--method", "bayes"],
        "bad_check_nobs_in_job": [*fit, "--job", "check_nobs.yaml"],
        "bad_check_nobs_flag": [*fit, "--check-nobs", "maybe"],
        "bad_vc_flag": [*fit, "--vc", "0 + C(sub)"],
        "missing_required": ["fit", "--data", str(data.A), "--formula", FORMULA, "--output", "o"],
        "unknown_column": [
            "fit",
            "--data",
            str(data.A),
            "--formula",
            "y ~ x1 + xx2",
            "--groups",
            "g",
            "--output",
            "o",
            "--quiet",
            "--cluster",
            scheduler.file,
        ],
        "no_data_file": ["fit", "--data", "missing.parquet", *MODEL, "--output", "o"],
        "garbage_parquet": ["fit", "--data", "garbage.parquet", *MODEL, "--output", "o"],
        "corrupt_data_pages": [
            "fit",
            "--data",
            "pages.parquet",
            *MODEL,
            "--output",
            "o",
            "--quiet",
            "--cluster",
            scheduler.file,
        ],
        "unreachable_scheduler": [*fit, "--cluster", "unreachable.yaml"],
        "bad_cluster_kind": [*fit, "--cluster", "bad_kind.yaml"],
        "unknown_cluster_key": [*fit, "--cluster", "bad_keys.yaml"],
        "cluster_spec_unrecognized": [*fit, "--cluster", "cluster.txt"],
        "scheduler_file_missing": [*fit, "--cluster", "absent.json"],
        "update_without_statistics": [
            "update",
            "--stats-dir",
            "none",
            "--data",
            str(data.B),
            "--output",
            "o",
        ],
        "strings_as_booleans": ["fit", "--job", "typed.yaml"],
        "maxiter_text_in_job": ["fit", "--job", "maxiter.yaml"],
        "maxiter_negative_flag": [*fit, "--maxiter", "-5"],
        "maxiter_zero_flag": [*fit, "--maxiter", "0"],  # no fit: the API's maxiter=0
        "cluster_preload_in_job": [*fit, "--job", "preload.yaml"],
        "tls_without_certificates": [*fit, "--cluster", "tls://127.0.0.1:1"],
        "tls_certificate_missing": [*fit, "--cluster", "tls_files.yaml"],
        # the output check comes first: garbage.parquet would be exit 3
        "output_not_written_by_dmixed": ["fit", "--data", "garbage.parquet", *MODEL]
        + ["--output", "foreign"],
        "output_under_a_file": ["fit", "--data", "garbage.parquet", *MODEL]
        + ["--output", "garbage.parquet/o"],
        "update_without_stats_dir": ["update", "--data", str(data.B), "--output", "o"],
        "truncated_manifest": ["update", "--stats-dir", "truncated", "--data", str(data.B)]
        + ["--output", "o"],
        "csv_column_of_two_types": ["fit", "--data", "late_text.csv", *MODEL, "--output", "o"]
        + ["--quiet", "--cluster", scheduler.file],
        "missing_values_in_words_of_the_cli": ["fit", "--data", "holes.parquet", *MODEL]
        + ["--output", "o", "--quiet", "--cluster", scheduler.file],
        "text_in_numbers_in_words_of_the_cli": ["fit", "--data", "early_text.csv", *MODEL]
        + ["--output", "o", "--quiet", "--cluster", scheduler.file],
        "infinite_values": ["fit", "--data", "inf.parquet", *MODEL]
        + ["--output", "o", "--quiet", "--cluster", scheduler.file],
        "header_only_csv": ["fit", "--data", "header_only.csv", *MODEL]
        + ["--output", "o", "--quiet", "--cluster", scheduler.file],
        "empty_csv": ["fit", "--data", "empty.csv", *MODEL, "--output", "o", "--quiet"],
        "schema_only_parquet": ["fit", "--data", "schema_only.parquet", *MODEL]
        + ["--output", "o", "--quiet", "--cluster", scheduler.file],
        "text_groups_in_one_file": ["fit", "--data", "text_groups.parquet", "numbers.parquet"]
        + [*MODEL, "--output", "o", "--quiet", "--cluster", scheduler.file],
        "text_among_numbers_in_one_file": ["fit", "--data", "digits.parquet", "word.parquet"]
        + [*MODEL, "--output", "o", "--quiet", "--cluster", scheduler.file],
        "text_column_in_one_file": ["fit", "--data", "numbers.parquet", "text_column.parquet"]
        + [*MODEL, "--output", "o", "--quiet", "--cluster", scheduler.file],
        "show_no_results": ["show", "absent"],
        "help_fit": ["fit", "--help"],
        "help_update": ["update", "--help"],
    }
    if importlib.util.find_spec("dask_jobqueue") is None:
        cases["slurm_without_dask_jobqueue"] = [*fit, "--cluster", "slurm.yaml"]
    return cases


# name -> (exit status, substrings of stderr)
BAD = {
    "unknown_job_key": (
        2,
        ["job file unknown_key.yaml: unknown key 'formla'", "did you mean 'formula'", "allowed"],
    ),
    "invalid_yaml": (2, ["invalid.yaml is not valid YAML"]),
    "job_not_a_mapping": (2, ["list.yaml must be a mapping of option: value"]),
    "job_file_missing": (2, ["cannot read job file absent.yaml"]),
    "bad_method_in_job": (2, ["method.yaml: key 'method': got 'bayes'", "reml or ml"]),
    "vc_formula_not_a_mapping": (2, ["key 'vc_formula'", "a mapping of name: formula"]),
    "bad_method_flag": (2, ["argument --method: invalid choice: 'bayes'"]),
    "bad_check_nobs_in_job": (2, ["key 'check_nobs': got 'maybe'", "raise or ignore"]),
    "bad_check_nobs_flag": (2, ["argument --check-nobs: invalid choice: 'maybe'"]),
    "bad_vc_flag": (2, ["--vc expects NAME=FORMULA, got '0 + C(sub)'"]),
    "missing_required": (2, ["missing required option(s): --groups"]),
    "unknown_column": (2, ["unknown column 'xx2'", "close matches", "'x2'"]),
    "no_data_file": (3, ["no such input file", "missing.parquet"]),
    "garbage_parquet": (3, ["cannot read parquet data", "garbage.parquet"]),
    "corrupt_data_pages": (3, ["pages.parquet"]),
    "unreachable_scheduler": (5, ["could not reach the Dask scheduler", "127.0.0.1:1", "2s"]),
    "bad_cluster_kind": (2, ["'kind' must be one of", "'kubernetess'"]),
    "unknown_cluster_key": (2, ["unknown key(s) ['clients'] in cluster config"]),
    "cluster_spec_unrecognized": (2, ["neither a scheduler address"]),
    "scheduler_file_missing": (2, ["scheduler file absent.json does not exist"]),
    "update_without_statistics": (
        2,
        ["none is not a dmixed statistics directory (it does not exist)"],
    ),
    "slurm_without_dask_jobqueue": (2, ["'slurm'", "dask-jobqueue", "not installed"]),
    # issue 15
    "strings_as_booleans": (
        2,
        [
            "job file typed.yaml: key 'quiet': got 'no' (text); allowed: true or false",
            "key 'allow_nonconverged': got 'false' (text)",
        ],
    ),
    "maxiter_text_in_job": (2, ["maxiter.yaml: key 'maxiter': got 'abc'", "from 1 to"]),
    "maxiter_negative_flag": (2, ["--maxiter: got -5 (an integer); allowed: a whole number"]),
    "maxiter_zero_flag": (2, ["--maxiter: got 0 (an integer); allowed: a whole number from 1"]),
    "cluster_preload_in_job": (2, ["preload.yaml: key 'cluster'", "undocumented", "'preload'"]),
    "tls_without_certificates": (2, ["--cluster", "tls://127.0.0.1:1 needs TLS certificates"]),
    # the certificate path is relative to the config file, and shown resolved
    "tls_certificate_missing": (2, ["'security': tls_ca_file", "nope-ca.pem does not exist"]),
    "output_not_written_by_dmixed": (
        2,
        ["--output foreign exists and is not a dmixed results directory", "choose another"],
    ),
    "output_under_a_file": (2, ["--output garbage.parquet/o cannot be created"]),
    "update_without_stats_dir": (2, ["missing required option(s): --stats-dir"]),
    "truncated_manifest": (3, ["truncated/manifest.json", "not valid JSON"]),
    "csv_column_of_two_types": (
        3,
        ["late_text.csv", "column 'x2' holds str values", "float64", "'oops'"],
    ),
    # bad values are bad data (3), as unreadable ones are
    "missing_values_in_words_of_the_cli": (
        3,
        ["missing values in column 'x1' (2 rows: in ", "holes.parquet)", "--missing drop"],
    ),
    "text_in_numbers_in_words_of_the_cli": (
        3,
        [
            "column 'x2' holds text (such as 'oops')",
            "correct the input: column 'x2' must hold a number (or an empty field) in every row",
            "early_text.csv line 3 holds 'oops'",
        ],
    ),
    "infinite_values": (3, ["infinite values in column 'y' (1 row)"]),
    # named before the data pass (which said "data is empty (0 rows)", naming no file)
    "header_only_csv": (3, ["no rows: header_only.csv holds only a header"]),
    # Dask's reader said "An error occurred while calling the read_csv method ..."
    "empty_csv": (3, ["empty.csv is an empty file (no header, no rows)"]),
    # named before the data pass (which said "no data: the Dask DataFrame has no rows
    # (after dropping missing values)", naming no file, where no row had been dropped)
    "schema_only_parquet": (3, ["no rows: schema_only.parquet holds no rows (a schema only)"]),
    # the partition's file, which holds text (another guess named the file of numbers)
    "text_groups_in_one_file": (3, ["error: ", "text_groups.parquet: the group column 'g'"]),
    # the refusal is decided on the whole data's levels: the file holding the word is
    # sought then (it named no file)
    "text_among_numbers_in_one_file": (
        3,
        ["error: ", "/word.parquet: column 'x1' holds text (such as 'abc') among "],
    ),
    # the file named once, with one type name (the reader's type of that file was
    # added after it in another line)
    "text_column_in_one_file": (
        3,
        ["error: ", "/text_column.parquet: column 'x1' holds text (", "give the column one"],
    ),
    "show_no_results": (2, ["absent is not a dmixed results directory"]),
}
# problems reported one line each (several lines for several problems)
SEVERAL_PROBLEMS = {"strings_as_booleans": 2}
# argparse's usage errors: its own format (usage line, then the error)
ARGPARSE_ERRORS = {"bad_method_flag", "bad_check_nobs_flag"}
# run as `python -m dmixed` (one per exit status, and --help); the others through
# cli.main in this process: same code path, without the imports of a new interpreter
AS_PROCESS = {"unknown_job_key", "garbage_parquet", "unreachable_scheduler", "help_fit"}
# cases where dmixed misbehaves (the failing assertion says how)
KNOWN_BUGS = {"corrupt_data_pages"}


@pytest.fixture(scope="module")
def bad_runs(data, scheduler, tmp_path_factory):
    """Every bad-configuration case, run once: the subprocesses concurrently, the
    in-process ones meanwhile."""
    d = tmp_path_factory.mktemp("bad")
    cases = _bad_cases(d, data, scheduler)

    def in_dir(fn, args):
        return fn(*args, cwd=d)

    with concurrent.futures.ThreadPoolExecutor(len(AS_PROCESS)) as pool:
        futures = {n: pool.submit(in_dir, run, a) for n, a in cases.items() if n in AS_PROCESS}
        out = {n: in_dir(run_in_process, a) for n, a in cases.items() if n not in AS_PROCESS}
        out.update({n: f.result() for n, f in futures.items()})
    out["_dir"] = d
    return out


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configuration_exit_status_and_message(bad_runs, case):
    if case not in bad_runs:
        pytest.skip("dask-jobqueue is installed: the missing-library case cannot be run")
    proc = bad_runs[case]
    status, needles = BAD[case]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (
        f"{'dmixed bug: ' if case in KNOWN_BUGS else ''}{case}: exit "
        f"{proc.returncode}, expected {status}; stderr:\n{proc.stderr}"
    )
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in {proc.stderr!r}"
    if case not in ARGPARSE_ERRORS:  # argparse's own usage error
        assert any(line.startswith("dmixed: error: ") for line in proc.stderr.splitlines())
    assert proc.stdout == ""  # no results path
    assert not (bad_runs["_dir"] / "o").exists()
    assert "--stats_dir" not in proc.stderr and 'missing="drop"' not in proc.stderr
    assert "pd." not in proc.stderr  # what to change in the input, not a pandas call
    assert "Dask DataFrame" not in proc.stderr  # the files the user gave, not ours
    if case == "text_groups_in_one_file":  # not the file of numbers as the culprit too
        assert "numbers.parquet" not in proc.stderr, proc.stderr
    if case == "text_among_numbers_in_one_file":
        assert "digits.parquet" not in proc.stderr, proc.stderr
    if case == "text_column_in_one_file":
        assert proc.stderr.count("text_column.parquet") == 1, proc.stderr
        assert "large_string" not in proc.stderr, proc.stderr


def test_an_unreachable_scheduler_is_waited_for_the_configured_client_timeout(
    data, scheduler, tmp_path, monkeypatch
):
    """The command gives up on an unreachable scheduler after the cluster file's client
    timeout (``client: {timeout: 2s}``), not distributed's default: the timeout the
    client is given is the configured one (the wait itself is distributed's; a timed
    assertion failed under load), and the refusal is the command's error (exit 5)."""
    import distributed

    args = _bad_cases(tmp_path, data, scheduler)["unreachable_scheduler"]
    given = []

    def unreachable(*a, **kwargs):
        given.append(kwargs.get("timeout"))
        raise OSError("Timed out trying to connect to tcp://127.0.0.1:1 after 2 s")

    monkeypatch.setattr(distributed, "Client", unreachable)
    proc = run_in_process(*args, cwd=tmp_path)
    assert given == ["2s"]
    status, needles = BAD["unreachable_scheduler"]
    assert proc.returncode == status, proc.stderr
    assert all(needle in proc.stderr for needle in needles), proc.stderr
    assert "within 2s" in proc.stderr


@pytest.mark.parametrize("case", sorted(set(BAD) - ARGPARSE_ERRORS))
def test_errors_are_one_line_on_stderr(bad_runs, case):
    """cli.py: "Errors are one line on stderr" (batch logs, cron mail)."""
    if case not in bad_runs:
        pytest.skip("dask-jobqueue is installed")
    proc = bad_runs[case]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    n = SEVERAL_PROBLEMS.get(case, 1)
    assert len(lines) == n and all(line.startswith("dmixed: error: ") for line in lines), (
        f"dmixed bug: the error of case {case} is {len(lines)} lines:\n{proc.stderr}"
    )


def test_help_lists_every_option(bad_runs):
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.choices and "fit" in a.choices).choices
    for command in ("fit", "update"):
        proc = bad_runs[f"help_{command}"]
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.split())
        options = [s for a in commands[command]._actions for s in a.option_strings]
        assert len(options) >= 10
        for option in options:
            assert option in text, f"{option} missing from `dmixed {command} --help`"
    text = " ".join(bad_runs["help_fit"].stdout.split())
    for flag in (
        "--job",
        "--data",
        "--format",
        "--output",
        "--cluster",
        "--stats-dir",
        "--allow-nonconverged",
        "--cov-fe",
        "--check-nobs",
        "--maxiter",
        "--quiet",
        "--formula",
        "--groups",
        "--re-formula",
        "--vc",
        "--weights",
        "--method",
        "--missing",
    ):
        assert flag in text, flag
    for key in cli.Job.keys():  # every job-file key is named (storage_options has no flag)
        assert key in text, f"job key {key} not in `dmixed fit --help`"


# --------------------------------------------------------------------------------------
# convergence
# --------------------------------------------------------------------------------------


def test_not_converged_exits_4_without_output_unless_allowed(data, scheduler, tmp_path):
    common = [
        "fit",
        "--data",
        data.A,
        data.B,
        *MODEL,
        "--maxiter",
        "1",
        "--cluster",
        scheduler.file,
    ]
    proc = run(*common, "--output", "out", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "did not converge" in proc.stderr and "--allow-nonconverged" in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()
    assert hidden_leftovers(tmp_path, "out") == []

    proc = ok(run(*common, "--allow-nonconverged", "--output", "out", cwd=tmp_path))
    assert proc.stdout.strip() == str(tmp_path / "out")
    res = dmixed.load(tmp_path / "out")
    assert not res.converged
    assert "Converged: No" in " ".join((tmp_path / "out/summary.txt").read_text().split())
    # the iterations reported are those made (maxiter bounds each method in turn, as in
    # statsmodels), as the in-process fit counts them: the final point was counted as
    # one more ("iteration 4 (final)", n_iter 4 after one BFGS, L-BFGS and CG iteration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dmixed.mixedlm(FORMULA, data.full, groups="g", re_formula="1 + x1").fit(maxiter=1)
    made = [h["method"] for h in ref.fit_history[:-1]]
    logged = re.findall(r"(?m)^dmixed: iteration (\d+) \((\w+)\)", proc.stderr)
    assert logged == [(str(i), m) for i, m in enumerate(made, 1)], proc.stderr
    assert res.n_iter == ref.n_iter == len(made) == len(res.fit_history) - 1
    assert res.fit_history[-1]["method"] == "final"
    counts = ", ".join(f"{m} {made.count(m)}" for m in dict.fromkeys(made))
    assert f"dmixed: final, after {len(made)} iterations ({counts}): " in proc.stderr


def test_unidentifiable_model_is_refused_unless_check_nobs_ignore(scheduler, tmp_path):
    """Every group of one row: exit 2 naming the check and the way out; with
    ``--check-nobs ignore`` it is fitted, the fixed effects' standard errors from
    sigma^2 (X'V^-1 X)^-1 (the Hessian is singular there), with a warning."""
    df = make_data(n_groups=300, seed=3)
    df = df.assign(g=np.arange(len(df)))  # every row its own group
    df.to_parquet(tmp_path / "ones.parquet", index=False)
    common = ["fit", "--data", "ones.parquet", "--formula", FORMULA, "--groups", "g"]
    common += ["--quiet", "--cluster", scheduler.file, "--output", "o"]
    proc = run_in_process(*common, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "every group of 'g' has one row" in proc.stderr
    assert "--check-nobs ignore" in proc.stderr
    assert not (tmp_path / "o").exists()
    proc = run_in_process(
        *common, "--check-nobs", "ignore", "--allow-nonconverged", cwd=tmp_path, warns=True
    )
    assert proc.returncode == 0, proc.stderr
    # the warning as one line of the command's own, not Python's "file:line: Category"
    warned = [line for line in proc.stderr.splitlines() if "conditional" in line]
    assert warned and all(line.startswith("dmixed: warning: ") for line in warned), proc.stderr
    assert "SingularHessianWarning" not in proc.stderr and ".py:" not in proc.stderr
    res = dmixed.load(tmp_path / "o")
    conditional = np.sqrt(res.scale * np.diag(res.to_state().a_inv))
    np.testing.assert_allclose(res.bse_fe, conditional, rtol=1e-12)


def saved_files(directory: Path) -> dict[str, bytes]:
    """The bytes of every file under ``directory``, by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_refused_fit_leaves_no_statistics_for_an_update(scheduler, tmp_path):
    """A fit refused by the check of observations against random effects (exit 2) wrote
    its statistics to --stats-dir all the same, and a later ``update`` built on them."""
    df = make_data(n_groups=300, seed=3)
    df.assign(g=np.arange(len(df))).to_parquet(tmp_path / "ones.parquet", index=False)
    df.iloc[:50].to_parquet(tmp_path / "more.parquet", index=False)
    cluster = ["--cluster", scheduler.file, "--quiet"]
    fit = ["fit", "--data", "ones.parquet", "--formula", FORMULA, "--groups", "g", *cluster]
    proc = run_in_process(*fit, "--stats-dir", "S", "--output", "o", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "every group of 'g' has one row" in proc.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "S").exists()
    assert hidden_leftovers(tmp_path, "S") == [] and hidden_leftovers(tmp_path, "o") == []
    update = ["update", "--stats-dir", "S", "--data", "more.parquet", "--output", "u", *cluster]
    proc = run_in_process(*update, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "S is not a dmixed statistics directory (it does not exist)" in proc.stderr
    assert not (tmp_path / "u").exists() and not (tmp_path / "S").exists()


def test_failed_fit_or_update_leaves_saved_statistics_unchanged(data, scheduler, tmp_path):
    """A rerun of ``fit`` on its saved statistics that fails (not converged, exit 4)
    rewrote their last_fit.json; a failing ``update`` leaves them as they were too."""
    common = ["--cluster", scheduler.file, "--quiet", "--stats-dir", "S"]
    fit = ("fit", "--data", data.A, *MODEL, *common)
    ok(run_in_process(*fit, "--output", "F", cwd=tmp_path))
    before = saved_files(tmp_path / "S")
    assert "manifest.json" in before and "last_fit.json" in before
    # (warns: the optimizer's retries are warned of)
    proc = run_in_process(*fit, "--maxiter", "1", "--output", "F1", cwd=tmp_path, warns=True)
    assert proc.returncode == 4, proc.stderr
    assert saved_files(tmp_path / "S") == before
    update = ("update", "--data", data.B, *common, "--maxiter", "1", "--output", "U")
    proc = run_in_process(*update, cwd=tmp_path, warns=True)
    assert proc.returncode == 4, proc.stderr
    assert saved_files(tmp_path / "S") == before
    assert not (tmp_path / "F1").exists() and not (tmp_path / "U").exists()
    assert hidden_leftovers(tmp_path, "S") == []


def test_exit_status_of_a_data_error_is_decided_by_its_class(
    data, scheduler, tmp_path, monkeypatch
):
    """Bad values of the input (``BadValuesError``) exit 3, whatever their words; the
    other data errors, a model that asks the impossible of good data, exit 2, whatever
    theirs."""
    data.frame_a.assign(x1=np.nan).to_parquet(tmp_path / "holes.parquet", index=False)
    fit = ["fit", "--data", "holes.parquet", *MODEL, "--output", "o", "--quiet"]
    fit += ["--cluster", scheduler.file]
    proc = run_in_process(*fit, "--missing", "drop", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # no row left: bad data
    assert "no rows left after dropping rows with missing values" in proc.stderr
    data.frame_a.to_parquet(tmp_path / "holes.parquet", index=False)
    for exc, status in [
        (dmixed.BadValuesError("the values of column 'x1' are unusable"), cli.EXIT_DATA),
        (dmixed.DataError("missing values in the model: column 'x1' is not numeric"), 2),
    ]:

        def read_data(*args, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(cli, "read_data", read_data)
        proc = run_in_process(*fit, cwd=tmp_path)
        assert proc.returncode == status, proc.stderr
        assert proc.stderr == f"dmixed: error: {exc}\n"
        assert not (tmp_path / "o").exists()


def test_a_model_build_stalled_on_paused_workers_exits_5_naming_the_read(
    client, tmp_path, monkeypatch
):
    """``dmixed fit`` reads the data's first values on the cluster while it builds the
    model (an integer column of the formula: its reference), before the data pass: with
    every worker reported paused and that read not moving, the command exits 5 with
    ``WorkersPausedError`` after ``dmixed.paused-workers-timeout`` (was: a wait for
    ever, the read outside the bounded waits)."""
    from dmixed import cluster
    from dmixed.engines.dask import progress

    from .engines.dask.test_progress import _RELEASE, _STARTED, _blocked, _paused_roster

    df = make_data(n_groups=6, min_size=5, max_size=5, seed=3)
    df["days"] = np.arange(len(df), dtype=np.int64)
    df.to_parquet(tmp_path / "d.parquet", index=False)
    ddf = dd.from_map(
        lambda i: _blocked(df.iloc[i * 10 : (i + 1) * 10]), range(3), meta=df.iloc[:0]
    )
    _STARTED.clear()
    _RELEASE.clear()

    @contextlib.contextmanager
    def connect(*args, **kwargs):
        with client.as_current():
            yield client

    monkeypatch.setattr(cluster, "connect", connect)  # the in-process cluster
    monkeypatch.setattr(cli, "read_data", lambda *a, **k: (ddf, [str(tmp_path / "d.parquet")]))
    monkeypatch.setattr(progress, "ask_workers", _paused_roster(client, 2))
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    releaser = threading.Timer(20, _RELEASE.set)  # on a build that never ends
    releaser.start()
    fit = ["fit", "--data", "d.parquet", "--formula", "y ~ x1 + days", "--groups", "g"]
    try:
        with dask.config.set({"dmixed.paused-workers-timeout": "0.1s"}):
            proc = run_in_process(*fit, "--output", "o", "--quiet", cwd=tmp_path)
    finally:
        _RELEASE.set()
        releaser.cancel()
    assert proc.returncode == 5, proc.stderr
    assert "reading the first values" in proc.stderr and "paused" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------
# checkpoints (--stats-dir)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpointed(data, scheduler, tmp_path_factory):
    """A first run with --stats-dir on private copies of the data files."""
    d = tmp_path_factory.mktemp("checkpoint")
    for f in (data.A, data.B):
        shutil.copy2(f, d / f.name)
    args = ["fit", "--data", "A.parquet", "B.parquet", *MODEL, *VC, "--cluster", scheduler.file]
    proc = ok(run(*args, "--stats-dir", "stats", "--output", "out1", cwd=d))
    return SimpleNamespace(dir=d, args=args, first=proc)


def test_stats_dir_refuses_lossy_groups_naming_them_the_column_and_what_to_do(scheduler, tmp_path):
    """Three 2-row groups whose timestamps (about 1.7e9) differ by 1e-3 take sums about
    their means, which saved statistics do not hold: ``fit --stats-dir`` and ``update``
    refuse them naming the groups, the column and what to do, and write nothing; the
    fit without ``--stats-dir`` runs."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 8, size=60)
    sizes[:3] = 2
    g = np.repeat(np.arange(60), sizes)
    ts = 1.7e9 + rng.uniform(0, 1e5, 60)[g] + rng.uniform(0, 1e3, g.size)
    for k in range(3):
        ts[g == k] = 1.7e9 + 5e4 * k + np.array([0.0, 1e-3])
    x = rng.normal(size=g.size)
    y = 3 + 0.5 * x + rng.normal(0, 2, 60)[g] + rng.normal(size=g.size)
    frame = pd.DataFrame({"y": y, "x": x, "ts": ts, "g": g})
    frame[g >= 20].to_parquet(tmp_path / "old.parquet", index=False)
    frame[g < 20].to_parquet(tmp_path / "new.parquet", index=False)
    model = ["--formula", "y ~ x + ts", "--groups", "g", "--re-formula", "1 + ts", "--quiet"]
    model += ["--cluster", scheduler.file]
    fit = ["fit", *model, "--data", "old.parquet", "new.parquet", "--output", "o"]
    proc = run_in_process(*fit, "--stats-dir", "s", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    named = "dmixed: error: 3 group(s) (0, 1, 2) have the random-effects column 'ts' nearly "
    assert proc.stderr.startswith(named) and proc.stderr.count("\n") == 1, proc.stderr
    assert "; fit without --stats-dir (a fit of the rows keeps those sums)" in proc.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "o").exists()
    ok(run_in_process(*fit, cwd=tmp_path, warns=True))  # a variance on the boundary
    first = ["fit", *model, "--data", "old.parquet", "--output", "o2", "--stats-dir", "s"]
    ok(run_in_process(*first, cwd=tmp_path, warns=True))
    saved = (tmp_path / "s/manifest.json").read_bytes()
    update = ["update", "--data", "new.parquet", "--stats-dir", "s", "--output", "o2"]
    proc = run_in_process(*update, "--quiet", "--cluster", scheduler.file, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(named) and proc.stderr.count("\n") == 1, proc.stderr
    assert "; fit all the data with `dmixed fit` without --stats-dir" in proc.stderr
    assert (tmp_path / "s/manifest.json").read_bytes() == saved


def test_stats_dir_first_run_saves_statistics(checkpointed):
    d = checkpointed.dir
    assert "saved statistics to stats" in checkpointed.first.stderr
    assert DATA_PASS_LINE.search(checkpointed.first.stderr)
    # the fit after the data pass said "statistics reused (no data pass)"
    assert "no data pass" not in checkpointed.first.stderr
    assert "fitting the statistics of the model's earlier data pass: " in (
        checkpointed.first.stderr
    )
    manifest = json.loads((d / "stats/manifest.json").read_text())
    # the variance component is held structured: saved ragged, with its slot files
    assert manifest["storage"] == "ragged" and manifest["format_version"] == 4
    listing = ["groups", "last_fit.json", "manifest.json", "slots"]
    assert sorted(os.listdir(d / "stats")) == listing
    assert os.listdir(d / "stats/groups") == ["part-00000.parquet"]
    assert os.listdir(d / "stats/slots") == ["part-00000.parquet"]
    assert manifest["format"] == "dmixed-statistics"
    assert [i["path"] for i in manifest["inputs"]] == [str(d / "A.parquet"), str(d / "B.parquet")]
    assert manifest["n_groups"] == 80 and len(manifest["digest"]) == 64
    assert hidden_leftovers(d, "stats") == []  # no lock file outlives its job


@pytest.mark.parametrize(
    ("output", "stats_dir", "message"),
    [
        ("both", "both", "--output and --stats-dir are the same directory"),
        ("out", "out/st", "--stats-dir out/st is inside --output out"),
        ("st/out", "st", "--output st/out is inside --stats-dir st"),
    ],
)
def test_output_and_stats_dir_one_inside_the_other_are_refused_up_front(
    checkpointed, tmp_path, output, stats_dir, message
):
    """A --stats-dir inside --output was deleted when the results replaced it (exit 0),
    or refused after the whole fit; the same directory failed after the data pass."""
    for f in ("A.parquet", "B.parquet"):
        shutil.copy2(checkpointed.dir / f, tmp_path / f)
    proc = run_in_process(
        *checkpointed.args, "--stats-dir", stats_dir, "--output", output, cwd=tmp_path
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert "data pass" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["A.parquet", "B.parquet"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("flag", ["--output", "--stats-dir"])
def test_a_directory_that_cannot_be_created_is_refused_before_the_data_pass(
    data, scheduler, tmp_path, monkeypatch, flag
):
    """``--stats-dir /proc/st`` waited an hour for a lock it could never make, and
    ``--output /proc/nope`` failed with a raw FileNotFoundError after the whole fit
    (root passes ``os.access`` there): both are refused up front, naming the path."""
    monkeypatch.setenv("DMIXED_LOCK_TIMEOUT", "2")
    targets = {"--output": "o", "--stats-dir": "st", flag: "/proc/dmixed-nope/x"}
    args = ["fit", "--data", data.A, *MODEL, "--cluster", scheduler.file]
    proc = run_in_process(*args, *(a for kv in targets.items() for a in kv), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"dmixed: error: {flag} /proc/dmixed-nope/x cannot be created")
    assert len(proc.stderr.splitlines()) == 1 and "data pass" not in proc.stderr
    assert os.listdir(tmp_path) == []


def test_rerun_reuses_saved_statistics(checkpointed):
    d = checkpointed.dir
    proc = ok(run(*checkpointed.args, "--stats-dir", "stats", "--output", "out2", cwd=d))
    assert "reusing saved statistics from stats (no data pass)" in proc.stderr
    assert "fitting the statistics the model was built from (no data pass)" in proc.stderr
    assert "data pass: " not in proc.stderr.split("reusing saved statistics")[1]
    assert not DATA_PASS_LINE.search(proc.stderr), proc.stderr
    assert "VC prepass" not in proc.stderr
    assert "connected to" not in proc.stderr  # no cluster is started for a reuse
    assert_same_fit(dmixed.load(d / "out2"), dmixed.load(d / "out1"), rtol=1e-12)


def test_rerun_with_the_formulas_spelled_otherwise_reuses_saved_statistics(checkpointed):
    """The digest hashes the formulas' text: ``y~x2+x1`` was refused against statistics
    saved by ``y ~ x1 + x2``; the same terms are the same job (as ``update`` reads them)."""
    d = checkpointed.dir
    args = _replace(checkpointed.args, "--formula", "y~x2+x1")
    args = _replace(args, "--re-formula", "x1+1")
    proc = run_in_process(*args, "--stats-dir", "stats", "--output", "respelled", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert "reusing saved statistics from stats (no data pass)" in proc.stderr
    assert_same_fit(dmixed.load(d / "respelled"), dmixed.load(d / "out1"), rtol=1e-12)


def test_rerun_does_not_read_the_data(checkpointed, monkeypatch):
    """A rerun that reuses the statistics must not read the data (its fingerprint reads
    only each Parquet file's footer)."""

    def no_data_pass(*args, **kwargs):
        raise AssertionError("dmixed bug: a rerun with reusable statistics reads the data")

    monkeypatch.setattr(cli, "read_data", no_data_pass)
    d = checkpointed.dir
    proc = run_in_process(*checkpointed.args, "--stats-dir", "stats", "--output", "out3", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert "reusing saved statistics" in proc.stderr


def test_a_moved_data_folder_reuses_its_saved_statistics(data, scheduler, tmp_path, monkeypatch):
    """Saved statistics were matched to their inputs by path: the same files in a moved
    or renamed data folder were refused as other data (exit 2, "input files not among
    the saved ones").  Files of the saved content identity, size and modification time
    under another path are refused by default, saying so once per file and naming
    --moved-inputs (a file of other rows may share a footer and time stamp: taken for
    the saved one, the fit reported was the saved data's); with it they are the saved
    input (no data pass, the same fit).  A copy that did not keep its time stamps and a
    file rewritten at its saved path with its time stamp kept are refused, saying why."""
    (tmp_path / "data").mkdir()
    for f in (data.A, data.B):
        shutil.copy2(f, tmp_path / "data" / f.name)
    model = [*MODEL, *VC, "--cluster", scheduler.file, "--stats-dir", "st"]

    def fit(folder: str, output: str, *flags: str):
        files = [f"{folder}/A.parquet", f"{folder}/B.parquet"]
        return run_in_process(
            "fit", "--data", *files, *model, "--output", output, *flags, cwd=tmp_path
        )

    assert fit("data", "o1").returncode == 0
    saved = os.stat(tmp_path / "data" / "A.parquet").st_mtime_ns
    (tmp_path / "data").rename(tmp_path / "moved")
    shutil.copytree(tmp_path / "moved", tmp_path / "kept")  # (copy2: time stamps kept)
    proc = fit("moved", "o_refused")
    assert proc.returncode == 2 and not (tmp_path / "o_refused").exists()
    moved_a = str(tmp_path / "moved" / "A.parquet")
    assert f"{moved_a} (saved as {tmp_path / 'data' / 'A.parquet'})" in proc.stderr
    assert "--moved-inputs (moved_inputs: true)" in proc.stderr
    assert proc.stderr.count(moved_a) == 1, proc.stderr  # listed once

    def no_data_pass(*args, **kwargs):
        raise AssertionError("dmixed bug: statistics of moved files were not reused")

    with monkeypatch.context() as m:
        m.setattr(cli, "read_data", no_data_pass)
        for folder in ("moved", "kept"):
            proc = fit(folder, f"o_{folder}", "--moved-inputs")
            assert proc.returncode == 0, proc.stderr
            assert "reusing saved statistics from st (no data pass)" in proc.stderr
            back = dmixed.load(tmp_path / f"o_{folder}")
            assert_same_fit(back, dmixed.load(tmp_path / "o1"), rtol=1e-12)
    (tmp_path / "fresh").mkdir()
    for name in ("A.parquet", "B.parquet"):
        shutil.copy(tmp_path / "moved" / name, tmp_path / "fresh" / name)
        os.utime(tmp_path / "fresh" / name, ns=(saved + 10**9, saved + 10**9))
    proc = fit("fresh", "o_fresh", "--moved-inputs")
    assert proc.returncode == 2 and not (tmp_path / "o_fresh").exists()
    assert "but whose modification time is not" in proc.stderr
    fresh_a = str(tmp_path / "fresh" / "A.parquet")
    assert proc.stderr.count(fresh_a) == 1, proc.stderr  # not again as "not among the saved"
    assert f"{tmp_path / 'fresh' / 'A.parquet'} (saved as {tmp_path / 'data' / 'A.parquet'})" in (
        proc.stderr
    )
    shutil.copytree(tmp_path / "moved", tmp_path / "data")
    other = data.frame_a.assign(y=data.frame_a["y"] + 1.0)
    other.to_parquet(tmp_path / "data" / "A.parquet", index=False)
    os.utime(tmp_path / "data" / "A.parquet", ns=(saved, saved))
    proc = fit("data", "o_changed")
    assert proc.returncode == 2 and not (tmp_path / "o_changed").exists()
    assert "input files changed (" in proc.stderr and "content" in proc.stderr


def test_update_of_a_moved_folders_saved_file_adds_no_rows_twice(data, scheduler, tmp_path):
    """``update`` with a saved file of a moved data folder was accepted and counted its
    rows twice (nobs doubled): it found saved files by path or by bytes compared with
    the saved path, gone after the move.  It now uses ``fit --stats-dir``'s test of a
    saved file moved: refused by default (with or without --skip-included: the file may
    hold other rows), left out as included under --skip-included --moved-inputs."""
    (tmp_path / "data").mkdir()
    shutil.copy2(data.A, tmp_path / "data" / "A.parquet")
    common = ["--cluster", scheduler.file, "--stats-dir", "st", "--quiet"]
    fit = ["fit", "--data", "data/A.parquet", *MODEL, *common, "--output", "o1"]
    assert run_in_process(*fit, cwd=tmp_path).returncode == 0
    manifest = (tmp_path / "st" / "manifest.json").read_bytes()
    (tmp_path / "data").rename(tmp_path / "moved")
    update = ["update", "--data", "moved/A.parquet", *common, "--output", "o2"]
    for flags in ([], ["--skip-included"], ["--moved-inputs"]):
        proc = run_in_process(*update, *flags, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "already included in the statistics of st" in proc.stderr
        assert not (tmp_path / "o2").exists()
    assert "--skip-included --moved-inputs" in proc.stderr
    proc = run_in_process(*update, "--skip-included", "--moved-inputs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to add" in proc.stderr and not (tmp_path / "o2").exists()
    assert (tmp_path / "st" / "manifest.json").read_bytes() == manifest


def test_rerun_of_statistics_kept_on_the_cluster_equals_the_first_fit(
    data, scheduler, tmp_path, monkeypatch
):
    """A first fit whose statistics stayed on the workers holds the variance component
    structured there, as saved statistics are when read back: the rerun equals it, to
    the order the blocks' sums are added in (the estimates to 1e-10; the standard
    errors, through the inverse Hessian, to 1e-8: which worker's sums arrive first is up
    to the scheduler, and that order alone moved a standard error by 2.05e-9 relative)."""
    for f in (data.A, data.B):
        shutil.copy2(f, tmp_path / f.name)
    monkeypatch.setenv("DASK_DMIXED__ENGINE", "distributed")
    args = ["fit", "--data", "A.parquet", "B.parquet", *MODEL, *VC, "--cluster", scheduler.file]
    first = ok(run(*args, "--stats-dir", "stats", "--output", "out1", cwd=tmp_path))
    assert "statistics kept on the cluster" in first.stderr
    proc = ok(run(*args, "--stats-dir", "stats", "--output", "out2", cwd=tmp_path))
    assert "reusing saved statistics from stats (no data pass)" in proc.stderr
    rerun, res = dmixed.load(tmp_path / "out2"), dmixed.load(tmp_path / "out1")
    assert_same_fit(rerun, res, rtol=1e-8)
    np.testing.assert_allclose(rerun.params, res.params, rtol=1e-10)
    np.testing.assert_allclose(rerun.llf, res.llf, rtol=1e-12)


def test_input_rewritten_with_the_same_size_and_mtime_is_refused(checkpointed):
    """An input replaced by other bytes of the same size, its time stamp set back
    (``os.utime``, ``cp -p``, ``rsync -t``): the saved statistics are not of it."""
    d = checkpointed.dir
    path = d / "A.parquet"
    original, st = path.read_bytes(), path.stat()
    before = (d / "stats/manifest.json").read_bytes()
    try:
        path.write_bytes(b"\0" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        proc = run_in_process(*checkpointed.args, "--stats-dir", "stats", "--output", "out4", cwd=d)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert proc.returncode == 2, proc.stderr
    assert "digest does not match" in proc.stderr
    assert f"input files changed (content): {path}" in proc.stderr, proc.stderr
    assert not (d / "out4").exists()
    assert (d / "stats/manifest.json").read_bytes() == before


def _damage_statistics(stats: Path, damage: str) -> str:
    """Damage a copy of a statistics directory; the name of the file the error names."""
    if damage == "half the rows of a part":
        part = stats / "groups/part-00000.parquet"
        frame = pd.read_parquet(part)
        frame.iloc[: len(frame) // 2].to_parquet(part, index=False)
        return "part-00000.parquet"
    if damage == "a part deleted":
        (stats / "groups/part-00000.parquet").unlink()
        return "part-00000.parquet"
    manifest = stats / "manifest.json"
    if damage == "manifest truncated":
        manifest.write_bytes(manifest.read_bytes()[:200])
    else:  # "rows in manifest"
        doc = json.loads(manifest.read_text())
        doc["n"] += 100
        manifest.write_text(json.dumps(doc, indent=1))
    return "manifest.json"


DAMAGES = ["half the rows of a part", "a part deleted", "manifest truncated", "rows in manifest"]


@pytest.mark.parametrize("command", ["fit", "update"])
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_statistics_are_refused_naming_the_file(checkpointed, tmp_path, command, damage):
    """A rerun (fit) and an update refuse damaged statistics with exit 2 or 3 and one
    line naming the file; before, a changed row count or half a part file gave exit 0
    and wrong estimates, a deleted part "No objects to concatenate"."""
    d = checkpointed.dir
    stats = tmp_path / "stats"
    shutil.copytree(d / "stats", stats)
    named = _damage_statistics(stats, damage)
    if command == "fit":  # the same inputs (their absolute paths are in the digest)
        args = [d / a if a.endswith(".parquet") else a for a in checkpointed.args]
        args += ["--stats-dir", "stats", "--output", "out"]
    else:
        new = make_data(n_groups=5, seed=31, intercept_sd=30.0, slope_sd=0.7, vc_sd=0.8)
        new.assign(g=new["g"] + 2000).to_parquet(tmp_path / "C.parquet", index=False)
        cluster = checkpointed.args[checkpointed.args.index("--cluster") :][:2]
        args = ["update", "--stats-dir", "stats", "--data", "C.parquet", "--output", "out"]
        args += cluster
    proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode in (2, 3), (
        f"dmixed bug: damaged statistics ({damage}) exit {proc.returncode}:\n{proc.stderr}"
    )
    lines = proc.stderr.strip().splitlines()
    assert named in lines[-1] and "statistics" in lines[-1], proc.stderr
    assert not (tmp_path / "out").exists()


def _without_vc(args: list[str]) -> list[str]:
    i = args.index("--vc")
    return args[:i] + args[i + 2 :]


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2 :]]


@pytest.mark.parametrize("change", ["formula", "re_formula", "vc_formula"])
def test_changed_model_is_refused(checkpointed, change):
    d = checkpointed.dir
    args = {
        "formula": _replace(checkpointed.args, "--formula", "y ~ x1"),
        "re_formula": _replace(checkpointed.args, "--re-formula", "1"),
        "vc_formula": _without_vc(checkpointed.args),
    }[change]
    before = (d / "stats/manifest.json").read_bytes()
    proc = run_in_process(*args, "--stats-dir", "stats", "--output", "changed", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert "digest does not match" in proc.stderr and "--stats-dir" in proc.stderr
    # what differs is named, with the saved value; the input files are the same
    saved = json.loads((d / "stats/manifest.json").read_text())["spec"][change]
    assert f"this job: {change} " in proc.stderr and f"saved {saved!r}" in proc.stderr
    assert "input files" not in proc.stderr, proc.stderr
    assert not (d / "changed").exists()
    assert (d / "stats/manifest.json").read_bytes() == before
    assert hidden_leftovers(d, "stats") == []  # the refused job's lock was left behind


def test_changed_input_file_is_refused(checkpointed):
    d = checkpointed.dir
    path = d / "B.parquet"
    st = path.stat()
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touch
        proc = run_in_process(
            *checkpointed.args, "--stats-dir", "stats", "--output", "touched", cwd=d
        )
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert proc.returncode == 2, proc.stderr
    assert "digest does not match" in proc.stderr
    assert f"this job: input files changed (modification time): {path})" in proc.stderr
    assert not (d / "touched").exists()


def test_statistics_of_other_input_files_name_them(checkpointed, tmp_path):
    """A --stats-dir whose digest does not match said only that: the files given and
    not saved, and saved and not given, are named."""
    d = checkpointed.dir
    # other rows (a copy keeping B's bytes and time stamp is B moved: --moved-inputs)
    other = pd.read_parquet(d / "B.parquet")
    other[other.columns[0]] = other[other.columns[0]] + 1.0  # its footer's statistics too
    other.to_parquet(tmp_path / "B2.parquet", index=False)
    args = [str(tmp_path / "B2.parquet") if a == "B.parquet" else a for a in checkpointed.args]
    proc = run_in_process(*args, "--stats-dir", "stats", "--output", "other", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert f"input files not among the saved ones: {tmp_path / 'B2.parquet'}" in proc.stderr
    assert f"saved input files not given: {d / 'B.parquet'}" in proc.stderr, proc.stderr
    assert "formula" not in proc.stderr.split("this job:")[1], proc.stderr


def test_statistics_of_fewer_files_point_to_update(checkpointed, tmp_path):
    """A fit given the saved files unchanged and one more was refused with "remove that
    directory": ``dmixed update`` adds the new file's rows to the saved statistics, so
    the refusal says so; where a saved file is not given, the old remedy stays."""
    d = checkpointed.dir
    more = pd.read_parquet(d / "B.parquet")
    more[more.columns[0]] = more[more.columns[0]][::-1].to_numpy()  # other content
    more.to_parquet(tmp_path / "C.parquet", index=False)
    i = checkpointed.args.index("B.parquet")
    args = [*checkpointed.args[: i + 1], str(tmp_path / "C.parquet"), *checkpointed.args[i + 1 :]]
    proc = run_in_process(*args, "--stats-dir", "stats", "--output", "other", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert f"input files not among the saved ones: {tmp_path / 'C.parquet'}" in proc.stderr
    assert "`dmixed update --stats-dir stats --data NEW_FILES ...` adds the rows" in proc.stderr
    assert "remove that directory" not in proc.stderr, proc.stderr
    # with this job's data: the update of the flags given, not a bare --skip-included
    named = re.search(r"`(dmixed update [^`]*--skip-included)` leaves out", proc.stderr)
    assert named, proc.stderr
    assert " --data " in named[1] and f" {tmp_path / 'C.parquet'} " in named[1]
    assert " --stats-dir stats " in named[1] and " --output other " in named[1]
    without_b = [a for a in args if a != "B.parquet"]
    proc = run_in_process(*without_b, "--stats-dir", "stats", "--output", "other", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert "remove that directory or choose another --stats-dir" in proc.stderr, proc.stderr
    assert "dmixed update" not in proc.stderr, proc.stderr


def _edited_statistics(src: Path, dst: Path, edit) -> Path:
    """A copy of the statistics directory ``src`` whose manifest ``edit`` changed (its
    sha256 updated, as an older dmixed would have written it)."""
    from dmixed.stats.checkpoint import MANIFEST_SHA256, manifest_sha256

    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    edit(doc)
    doc[MANIFEST_SHA256] = manifest_sha256(doc)
    (dst / "manifest.json").write_text(json.dumps(doc, indent=1))
    return dst


def test_digest_differences_name_raw_values_and_what_was_not_recorded(checkpointed, tmp_path):
    """The digest mismatch listed ``re_formula None, saved None`` beside a changed
    vc_formula (an absent re_formula means the random intercept, or none beside
    variance components), called a key an older manifest lacks "changed", and a
    fingerprint without content "changed (content)".  Now only keys of different values
    are listed, and what the saved statistics do not record is said to be so."""
    d = checkpointed.dir

    def older(doc):
        doc["digest"] = "0" * 16  # of another job
        doc["spec"]["re_formula"] = None
        del doc["spec"]["missing"]  # not recorded then
        for i in doc["inputs"]:
            if i["path"].endswith("B.parquet"):
                i["content"] = None

    stats = _edited_statistics(d / "stats", tmp_path / "stats", older)
    args = _without_vc(checkpointed.args)
    args = args[: args.index("--re-formula")] + args[args.index("--re-formula") + 2 :]
    proc = run_in_process(*args, "--stats-dir", str(stats), "--output", "o", cwd=d)
    assert proc.returncode == 2, proc.stderr
    said = proc.stderr.split("this job:")[1]
    assert "vc_formula not given, saved {'sub': '0 + C(sub)'}" in said, proc.stderr
    assert "re_formula" not in said, proc.stderr
    assert "missing 'raise', saved: not recorded" in said, proc.stderr
    assert f"input files whose content was not recorded, so not compared: {d / 'B.parquet'}" in said
    assert "changed" not in said, proc.stderr
    assert not (d / "o").exists()


def test_a_default_re_formula_is_not_given_in_a_digest_mismatch(checkpointed):
    """A job without --re-formula against statistics saved with one said "re_formula
    None"; it now says "not given", as the rest of the message does."""
    d = checkpointed.dir
    args = checkpointed.args
    saved = args[args.index("--re-formula") + 1]
    args = args[: args.index("--re-formula")] + args[args.index("--re-formula") + 2 :]
    proc = run_in_process(*args, "--stats-dir", "stats", "--output", "o", cwd=d)
    assert proc.returncode == 2, proc.stderr
    said = proc.stderr.split("this job:")[1]
    assert f"re_formula not given, saved {saved!r}" in said, proc.stderr
    assert "None" not in said, proc.stderr
    assert not (d / "o").exists()


def test_digest_differences_show_a_long_formula_cut(checkpointed, tmp_path):
    """A formula of thousands of terms was printed whole, twice, in the digest
    mismatch's line; it is shown by its ends and its length."""
    d = checkpointed.dir
    long = "y ~ " + " + ".join(f"I(x1 + {i})" for i in range(300))

    def longer(doc):
        doc["digest"] = "0" * 16  # of another job
        doc["spec"]["formula"] = long

    stats = _edited_statistics(d / "stats", tmp_path / "stats", longer)
    proc = run_in_process(*checkpointed.args, "--stats-dir", str(stats), "--output", "o", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert f"saved {long[:200]!r} ... {long[-200:]!r} ({len(long)} characters)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1]) < 1500, proc.stderr


# --------------------------------------------------------------------------------------
# incremental fits (dmixed update)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def incremental(data, scheduler, tmp_path_factory):
    """fit A with --stats-dir, update with B; and fit A + B from scratch."""
    d = tmp_path_factory.mktemp("incremental")
    for f in (data.A, data.B):
        shutil.copy2(f, d / f.name)
    cluster = ["--cluster", scheduler.file]
    fit_a = ok(
        run(
            "fit",
            "--data",
            "A.parquet",
            *MODEL,
            *VC,
            *cluster,
            "--stats-dir",
            "S",
            "--output",
            "FA",
            cwd=d,
        )
    )
    update = ok(
        run("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U", *cluster, cwd=d)
    )
    scratch = ok(
        run(
            "fit", "--data", "A.parquet", "B.parquet", *MODEL, *VC, *cluster, "--output", "F", cwd=d
        )
    )
    return SimpleNamespace(dir=d, fit_a=fit_a, update=update, scratch=scratch, cluster=cluster)


def test_update_data_has_new_groups_more_rows_and_new_vc_levels(data):
    a, b = data.frame_a, data.frame_b
    assert set(b["g"]) - set(a["g"]), "B has new groups"
    assert set(b["g"]) & set(a["g"]), "B has more rows of old groups"
    pairs_a = set(zip(a["g"], a["sub"], strict=True))
    new_pairs = {(g, s) for g, s in zip(b["g"], b["sub"], strict=True) if g in set(a["g"])}
    assert new_pairs - pairs_a, "some old group gets a subgroup (VC column) it did not have"
    assert set(b["sub"]) <= set(a["sub"])  # the spec (levels) is the one built on A


def test_update_equals_fit_from_scratch(incremental):
    d = incremental.dir
    assert incremental.update.stdout.strip() == str(d / "U")
    assert DATA_PASS_LINE.search(incremental.update.stderr)  # a pass over B only
    upd, ref = dmixed.load(d / "U"), dmixed.load(d / "F")
    assert upd.converged and ref.converged
    assert_same_optimum(upd, ref)
    assert upd.nobs == len(pd.read_parquet(d / "A.parquet")) + len(pd.read_parquet(d / "B.parquet"))
    assert upd.n_groups == 80
    np.testing.assert_array_equal(upd.group_labels, ref.group_labels)
    np.testing.assert_array_equal(upd.group_sizes, ref.group_sizes)
    k = upd.k_re  # BLUPs of the random intercept and slope (the VC slots may be permuted)
    np.testing.assert_allclose(
        upd.to_state().blup[:, :k], ref.to_state().blup[:, :k], rtol=1e-6, atol=1e-8
    )
    manifest = json.loads((d / "S/manifest.json").read_text())
    assert sorted(Path(i["path"]).name for i in manifest["inputs"]) == ["A.parquet", "B.parquet"]
    assert manifest["n_groups"] == 80 and manifest["n"] == upd.nobs


def test_update_reports_the_rows_dropped_of_all_its_inputs(data, scheduler, tmp_path):
    """After ``update``, estimates.json said ``n_dropped`` 0 though rows of both inputs
    were dropped for missing values: it is that of a fit of all of them from scratch."""
    for name, frame in (("A", data.frame_a), ("B", data.frame_b)):
        frame = frame.copy()
        frame.loc[frame.index % 9 == 2, "x2"] = np.nan
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    common = [*MODEL, "--missing", "drop", "--cluster", scheduler.file, "--quiet"]
    ok(run_in_process("fit", "--data", "A.parquet", *common, "--stats-dir", "S", "--output",
                      "FA", cwd=tmp_path, warns=True))  # fmt: skip
    upd = ["--stats-dir", "S", "--data", "B.parquet", "--output", "U"]
    ok(run_in_process("update", *upd, "--cluster", scheduler.file, "--quiet", cwd=tmp_path,
                      warns=True))  # fmt: skip
    ok(run_in_process("fit", "--data", "A.parquet", "B.parquet", *common, "--output", "F",
                      cwd=tmp_path, warns=True))  # fmt: skip
    dropped = [
        json.loads((tmp_path / d / "estimates.json").read_text())["estimates"]["n_dropped"]
        for d in ("FA", "U", "F")
    ]
    assert dropped[2] == sum((f.index % 9 == 2).sum() for f in (data.frame_a, data.frame_b))
    assert 0 < dropped[0] < dropped[1] == dropped[2]


def test_update_takes_the_optimizer_route_of_a_fit_from_scratch(scheduler, tmp_path):
    """``update`` starts from the last fit's estimates, and a given start made the fit
    take the quasi-Newton method (BFGS, 10 iterations here) where the fit of the same
    rows from scratch takes Newton steps from its moment estimates (3): a given start
    now takes the route of moment estimates, Newton steps first."""
    rng = np.random.default_rng(2)
    g, x1 = rng.integers(0, 120, 3000), rng.normal(size=3000)
    slope = rng.normal(0, 0.3, 120)[g] * x1
    y = 1 + 0.5 * x1 + rng.normal(size=120)[g] + slope + rng.normal(size=3000)
    frame = pd.DataFrame({"y": y, "x1": x1, "g": g})
    frame.iloc[:1800].to_parquet(tmp_path / "A.parquet", index=False)
    frame.iloc[1800:].to_parquet(tmp_path / "B.parquet", index=False)
    model = ["--formula", "y ~ x1", "--groups", "g", "--re-formula", "1 + x1"]
    common = [*model, "--cluster", scheduler.file, "--quiet"]
    fit_a = ("fit", "--data", "A.parquet", *common, "--stats-dir", "S", "--output", "FA")
    ok(run_in_process(*fit_a, cwd=tmp_path))
    update = ("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U")
    ok(run_in_process(*update, "--cluster", scheduler.file, "--quiet", cwd=tmp_path))
    scratch = ("fit", "--data", "A.parquet", "B.parquet", *common, "--output", "F")
    ok(run_in_process(*scratch, cwd=tmp_path))
    upd, ref = dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F")
    assert ref.optimizer_methods == ["newton"]
    assert upd.optimizer_methods == ref.optimizer_methods
    assert upd.optimizer.n_iter <= ref.optimizer.n_iter
    assert_same_optimum(upd, ref)


def test_second_update_with_the_same_data_is_refused(incremental):
    d = incremental.dir
    before = {p: (d / "S" / p).read_bytes() for p in ("manifest.json", "last_fit.json")}
    u_before = (d / "U/estimates.json").read_bytes()
    proc = run_in_process(
        "update",
        "--stats-dir",
        "S",
        "--data",
        "B.parquet",
        "--output",
        "U",
        *incremental.cluster,
        cwd=d,
    )
    assert proc.returncode == 2, proc.stderr
    assert "already included" in proc.stderr and "B.parquet" in proc.stderr
    assert {p: (d / "S" / p).read_bytes() for p in before} == before
    assert hidden_leftovers(d, "S") == []  # the refused update's lock was left behind
    assert (d / "U/estimates.json").read_bytes() == u_before


def test_update_with_a_copy_of_an_included_file_is_refused(incremental, tmp_path):
    """A byte-identical copy under another name was accepted, its rows counted twice."""
    d = incremental.dir
    before = (d / "S/manifest.json").read_bytes()
    copy = tmp_path / "copy_of_B.parquet"
    shutil.copy(d / "B.parquet", copy)
    args = ("update", "--stats-dir", "S", "--data", str(copy), "--output", "U2")
    proc = run_in_process(*args, *incremental.cluster, cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert f"{copy} (the content of {d / 'B.parquet'})" in proc.stderr
    assert (d / "S/manifest.json").read_bytes() == before and not (d / "U2").exists()


def test_nightly_update_of_a_growing_glob_skips_the_included_files(incremental, tmp_path):
    """The README's nightly job (a data glob and a stats_dir) failed on the second
    night: ``fit --job`` pointed to ``update``, and ``update --job`` with the same glob
    refused yesterday's files (exit 2).  ``skip_included`` (``--skip-included``) leaves
    them out, naming them: the estimates are the fit of all files from scratch, and a
    retry with nothing new changes nothing and exits 0.  The default still refuses."""
    d = tmp_path
    (d / "lake").mkdir()
    shutil.copy2(incremental.dir / "A.parquet", d / "lake/A.parquet")
    job = {
        "data": "lake/*.parquet",
        "formula": FORMULA,
        "groups": "g",
        "re_formula": "1 + x1",
        "vc_formula": {"sub": "0 + C(sub)"},
        "cluster": incremental.cluster[1],
        "output": "results",
        "stats_dir": "results.stats",
    }
    (d / "job.yaml").write_text(yaml.safe_dump(job))
    ok(run_in_process("fit", "--job", "job.yaml", "--quiet", cwd=d))  # night 1
    shutil.copy2(incremental.dir / "B.parquet", d / "lake/B.parquet")  # a new file
    # the fit's refusal names the update of this very job (it left out --job)
    refused = run_in_process("fit", "--job", "job.yaml", cwd=d)
    assert refused.returncode == 2, refused.stderr
    assert "`dmixed update --job job.yaml --skip-included` leaves out" in refused.stderr
    refused = run_in_process("update", "--job", "job.yaml", cwd=d)
    assert refused.returncode == 2 and "1 input(s) already included" in refused.stderr
    proc = ok(run_in_process("update", "--job", "job.yaml", "--skip-included", cwd=d))
    assert f"skipping 1 input(s) already included in the statistics of {d}" in proc.stderr
    assert str(d / "lake/A.parquet") in proc.stderr
    assert_same_optimum(dmixed.load(d / "results"), dmixed.load(incremental.dir / "F"))
    manifest = json.loads((d / "results.stats/manifest.json").read_text())
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["A.parquet", "B.parquet"]
    # a retried night (the key in the job file): nothing to add, nothing written
    job.update(skip_included=True, quiet=True)
    (d / "job.yaml").write_text(yaml.safe_dump(job))
    written = {p: p.read_bytes() for p in d.glob("results*/**/*") if p.is_file()}
    proc = ok(run_in_process("update", "--job", "job.yaml", cwd=d))
    assert "all 2 input(s) are already included" in proc.stderr and proc.stdout == ""
    assert {p: p.read_bytes() for p in written} == written
    # rows appended to an included file are still refused, skipped or not
    frame = pd.read_parquet(d / "lake/B.parquet")
    pd.concat([frame, frame.head(5)]).to_parquet(d / "lake/B.parquet", index=False)
    proc = run_in_process("update", "--job", "job.yaml", cwd=d)
    assert proc.returncode == 2 and "B.parquet (changed since it was added" in proc.stderr


def test_update_names_saved_inputs_gone_from_its_data(incremental, tmp_path):
    """A file already in the statistics deleted from the nightly glob: ``update
    --skip-included`` said only "all 1 input(s) are already included ... nothing to
    add" (exit 0) while the results go on counting the deleted rows; ``fit`` of the same
    glob names it ("saved input files not given").  Update names it too, with what its
    rows become and what to do, and goes on (exit 0: the update asked is exact for the
    rows the statistics hold).  An input the data does not name, or one moved within
    it, is not gone."""
    d = tmp_path
    (d / "lake").mkdir()
    for name in ("A.parquet", "B.parquet"):
        shutil.copy2(incremental.dir / name, d / "lake" / name)
    common = ("--cluster", incremental.cluster[1], "--stats-dir", "S", "--quiet")
    ok(
        run_in_process(
            "fit", "--data", "lake/*.parquet", *MODEL, *VC, *common, "--output", "O", cwd=d
        )
    )
    (d / "lake/B.parquet").unlink()
    update = ("update", "--skip-included", *common, "--output", "U")
    proc = ok(run_in_process(*update, "--data", "lake/*.parquet", cwd=d))
    assert (
        "warning: 1 input(s) whose rows the statistics of S count are gone from --data "
        f"lake/*.parquet: {d / 'lake/B.parquet'}; their rows stay counted" in proc.stderr
    ), proc.stderr
    assert "fit the remaining files with `dmixed fit` and a new --stats-dir" in proc.stderr
    assert "all 1 input(s) are already included" in proc.stderr
    # through a link to the folder: its saved files are those of the folder linked
    os.symlink("lake", d / "L")
    proc = ok(run_in_process(*update, "--data", "L/**", cwd=d))
    assert f"gone from --data L/**: {d / 'lake/B.parquet'}; their" in proc.stderr, proc.stderr
    proc = ok(run_in_process(*update, "--data", "lake/A.parquet", cwd=d))
    assert "gone" not in proc.stderr, proc.stderr
    os.rename(d / "lake/A.parquet", d / "lake/A2.parquet")  # its time stamp kept
    proc = ok(run_in_process(*update, "--moved-inputs", "--data", "lake/A*.parquet", cwd=d))
    assert "gone" not in proc.stderr and "all 1 input(s) are already included" in proc.stderr


@pytest.mark.parametrize("twice", ["the same path", "a copy"])
def test_update_given_one_new_file_twice_says_given_twice(incremental, tmp_path, twice):
    """``update --data new.parquet new.parquet`` (or a file and its copy) said "already
    included in the statistics of S" of a file they do not hold: it is given twice."""
    d = incremental.dir
    before = (d / "S/manifest.json").read_bytes()
    new = tmp_path / "new.parquet"
    rows = pd.read_parquet(d / "B.parquet").assign(g=lambda f: f["g"] + 500)
    rows.to_parquet(new, index=False)
    second = new
    if twice == "a copy":
        second = tmp_path / "new_copy.parquet"
        shutil.copy(new, second)
    args = ("update", "--stats-dir", "S", "--data", str(new), str(second), "--output", "U3")
    proc = run_in_process(*args, *incremental.cluster, cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert "1 input(s) given twice" in proc.stderr and "already included" not in proc.stderr
    assert "reading them twice would count their rows twice" in proc.stderr
    assert (d / "S/manifest.json").read_bytes() == before and not (d / "U3").exists()


def test_output_closed_early_is_silent(monkeypatch, tmp_path):
    """``dmixed show out/ | head -1``: the reader closing the pipe is not an error
    (was "dmixed: error: [Errno 32] Broken pipe", exit 5 "cluster cannot be
    reached"): no message, exit 141 as a command killed by SIGPIPE.  The handler is
    reached in process, as a pipe read in a test may take all the output first."""

    def closed(_dir):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "run_show", closed)
    monkeypatch.setattr(cli.os, "dup2", lambda *a: None)  # keep pytest's stdout
    proc = run_in_process("show", "anywhere", cwd=tmp_path)
    assert proc.returncode == 141 and proc.stderr == ""


def _fit_update_and_scratch(where, common: list, cluster: str) -> None:
    """``fit`` of A.parquet into the statistics S (results FA), ``update`` of S with
    B.parquet (results U), and ``fit`` of both files from scratch (results F)."""
    fit_a = ("fit", "--data", "A.parquet", *common, "--stats-dir", "S", "--output", "FA")
    ok(run_in_process(*fit_a, cwd=where))
    update = ("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U")
    ok(run_in_process(*update, "--cluster", cluster, "--quiet", cwd=where))
    scratch = ("fit", "--data", "A.parquet", "B.parquet", *common, "--output", "F")
    ok(run_in_process(*scratch, cwd=where))


def test_update_with_text_group_keys_where_the_saved_are_numbers_is_refused(incremental):
    """New rows whose group column is text, saved integer groups: "a bug in dmixed"
    (TypeError sorting the union of keys); now a data error naming the column and both
    types, the statistics untouched."""
    d = incremental.dir
    before = (d / "S/manifest.json").read_bytes()
    new = pd.read_parquet(d / "B.parquet").head(30)
    new["g"] = new["g"].astype(str)
    new.to_parquet(d / "B_text.parquet", index=False)
    args = ("update", "--stats-dir", "S", "--data", "B_text.parquet", "--output", "U3")
    proc = run_in_process(*args, *incremental.cluster, cwd=d)
    assert proc.returncode == 3, proc.stderr
    assert "'g' holds text" in proc.stderr and "numbers (int64)" in proc.stderr
    assert (d / "S/manifest.json").read_bytes() == before and not (d / "U3").exists()


def test_update_from_an_unusable_last_fit_starts_from_moments_naming_the_file(
    data, scheduler, tmp_path
):
    """``last_fit.json`` edited to finite but absurd estimates: exit 2 "the fit cannot
    start ... check start_params", the file not named.  It is a warm start only (the
    statistics are intact, the optimum does not depend on it): the fit now starts from
    moment estimates, one warning names the file, and the result is the fit of all the
    rows; the file is rewritten with the new estimates."""
    for f in (data.A, data.B):
        shutil.copy2(f, tmp_path / f.name)
    common = ["--cluster", scheduler.file, "--quiet"]
    ok(run_in_process("fit", "--data", "A.parquet", *MODEL, *VC, *common, "--stats-dir", "S",
                      "--output", "FA", cwd=tmp_path))  # fmt: skip
    record = tmp_path / "S" / "last_fit.json"
    n_params = len(json.loads(record.read_text())["packed_params"])
    absurd = [1e8] + [-50.0] * (n_params - 1)
    record.write_text(json.dumps({"packed_params": absurd, "method": "REML", "llf": 0}))
    proc = ok(run_in_process("update", "--stats-dir", "S", "--data", "B.parquet", "--output",
                             "U", *common, cwd=tmp_path))  # fmt: skip
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmixed: warning: "), proc.stderr
    assert os.path.join("S", "last_fit.json") in lines[0] and "moment estimates" in lines[0]
    assert "start_params" not in lines[0]
    upd = dmixed.load(tmp_path / "U")
    assert_same_optimum(upd, in_process_fit(data.full, vc=True))
    saved = json.loads(record.read_text())["packed_params"]
    np.testing.assert_array_equal(saved, upd.packed_params)


def test_update_with_a_text_factor_of_saved_number_levels_says_what_the_model_reads(
    scheduler, tmp_path
):
    """A variance component ``C(cls)`` of an integer column, new rows holding ``cls``
    as text: refused as before, but the message said the model "reads numbers" from
    ``cls``; it reads factor labels that are numbers, and says so, naming the file and
    the column and what it found."""
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame(
        {"g": rng.integers(0, 30, n), "x": rng.normal(size=n), "cls": rng.integers(0, 3, n)}
    )
    df["y"] = df.x + rng.normal(size=30)[df.g] + rng.normal(size=(30, 3))[df.g, df.cls]
    df["y"] += rng.normal(size=n)
    df.iloc[:200].to_parquet(tmp_path / "A.parquet", index=False)
    df.iloc[200:].astype({"cls": str}).to_parquet(tmp_path / "B.parquet", index=False)
    common = ["--cluster", scheduler.file, "--quiet"]
    model = ["--formula", "y ~ x", "--groups", "g", "--vc", "cls=0 + C(cls)"]
    ok(run_in_process("fit", "--data", "A.parquet", *model, *common, "--stats-dir", "S",
                      "--output", "FA", cwd=tmp_path))  # fmt: skip
    before = (tmp_path / "S/manifest.json").read_bytes()
    proc = run_in_process("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U",
                          *common, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "B.parquet" in proc.stderr and "reads numbers" not in proc.stderr
    assert (
        "column 'cls' holds text (string) where the model reads factor labels that are "
        "numbers (the column is a factor, inside C(), whose levels are numbers"
    ) in proc.stderr
    assert (tmp_path / "S/manifest.json").read_bytes() == before and not (tmp_path / "U").exists()


def test_update_missing_drop_is_the_fit_of_all_rows_with_missing_drop(data, scheduler, tmp_path):
    """New rows with a missing value: update said "pass --missing drop", which it did not
    take; now it does, and the saved statistics are then those of ``--missing drop``."""
    b = data.frame_b.copy()
    b.loc[b.index[:3], "x1"] = np.nan
    data.frame_a.to_parquet(tmp_path / "A.parquet", index=False)
    b.to_parquet(tmp_path / "B.parquet", index=False)
    common = [*MODEL, "--cluster", scheduler.file, "--quiet"]
    fit_a = ("fit", "--data", "A.parquet", *common, "--stats-dir", "S", "--output", "FA")
    ok(run_in_process(*fit_a, cwd=tmp_path))
    update = ("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U")
    proc = run_in_process(*update, "--cluster", scheduler.file, "--quiet", cwd=tmp_path)
    assert proc.returncode == 3 and "--missing drop" in proc.stderr, proc.stderr
    proc = run_in_process(
        *update, "--missing", "drop", "--cluster", scheduler.file, cwd=tmp_path, warns=True
    )
    assert proc.returncode == 0, proc.stderr
    ref = in_process_fit(pd.concat([data.frame_a, b], ignore_index=True).dropna())
    assert_same_optimum(dmixed.load(tmp_path / "U"), ref)
    assert json.loads((tmp_path / "S/manifest.json").read_text())["spec"]["missing"] == "drop"


def test_update_takes_new_nested_levels_of_new_and_old_groups(scheduler, tmp_path):
    """New groups bring their own levels of a nested component (and an old group one
    never seen): refused ("levels not seen when the model spec was built"); now the
    fit of all rows, and the saved spec is that fit's."""
    make_nested_ids(range(20), size=6).to_parquet(tmp_path / "A.parquet", index=False)
    new = [
        make_nested_ids(range(20, 30), seed=1, size=6),  # new groups, their own ids
        make_nested_ids([3], ids=[7], seed=2, size=6),  # an old group, an id never seen
    ]
    pd.concat(new, ignore_index=True).to_parquet(tmp_path / "B.parquet", index=False)
    model = ["--formula", "y ~ x", "--groups", "g", "--re-formula", "1", "--vc", "id=0 + C(id)"]
    common = [*model, "--cluster", scheduler.file, "--quiet"]
    _fit_update_and_scratch(tmp_path, common, scheduler.file)
    upd, ref = dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F")
    assert upd.converged and ref.converged and upd.n_groups == 30
    assert_same_fit(upd, ref)
    saved = json.loads((tmp_path / "S/manifest.json").read_text())["spec"]
    assert "03-7" in saved["levels"]["id"] and "29-2" in saved["levels"]["id"]


def test_update_refusing_a_new_factor_level_says_to_refit(scheduler, tmp_path):
    """A new level of a ``C()`` factor of the fixed part stops ``update`` (exit 3, a
    documented limit), and the message said only "levels not seen when the model spec
    was built": it names the column and the level and says to refit with ``dmixed fit``;
    the statistics are left as they were."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"g": rng.integers(0, 30, 600), "x": rng.normal(size=600), "y": rng.normal(size=600)}
    )
    frame["site"] = np.array(["a", "b"])[rng.integers(0, 2, 600)]
    frame.iloc[:400].to_parquet(tmp_path / "A.parquet", index=False)
    frame.iloc[400:].assign(site=["a", "zzz"] * 100).to_parquet(tmp_path / "B.parquet")
    model = ["--formula", "y ~ x + C(site)", "--groups", "g"]
    common = [*model, "--cluster", scheduler.file, "--quiet"]
    fit_a = ("fit", "--data", "A.parquet", *common, "--stats-dir", "S", "--output", "FA")
    ok(run_in_process(*fit_a, cwd=tmp_path))
    before = (tmp_path / "S/manifest.json").read_bytes()
    update = ("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U")
    proc = run_in_process(*update, "--cluster", scheduler.file, "--quiet", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    line = proc.stderr.strip()
    assert len(proc.stderr.splitlines()) == 1 and line.startswith("dmixed: error: "), line
    assert "`dmixed update` cannot add new levels of column 'site': " in line
    assert line.count("zzz") == 1, line  # the level named once (it was listed twice)
    assert "refit all the data with `dmixed fit`" in line and "S removed first" in line
    assert (tmp_path / "S/manifest.json").read_bytes() == before and not (tmp_path / "U").exists()


def test_update_lists_new_nested_levels_in_the_order_of_a_scratch_fit(scheduler, tmp_path):
    """An old group's new level of a variance component that sorts before its old ones
    came last in ``random_effects[g]`` after update (values equal by name), first in a
    fit of all rows from scratch; the vc frame likewise."""
    make_nested_ids(range(12), ids=range(1, 4), size=6).to_parquet(tmp_path / "A.parquet")
    new = [
        make_nested_ids([3], ids=[0], seed=2, size=6),  # an old group, a level sorting first
        make_nested_ids([12, 13], ids=[2, 0], seed=1, size=6),  # new groups
    ]
    pd.concat(new, ignore_index=True).to_parquet(tmp_path / "B.parquet", index=False)
    model = ["--formula", "y ~ x", "--groups", "g", "--re-formula", "1", "--vc", "id=0 + C(id)"]
    _fit_update_and_scratch(
        tmp_path, [*model, "--cluster", scheduler.file, "--quiet"], scheduler.file
    )
    upd, ref = dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F")
    assert_same_fit(upd, ref)
    for g in (3, 12, 0):
        mine, scratch = upd.random_effects[g], ref.random_effects[g]
        assert list(mine.index) == list(scratch.index), (g, list(mine.index))
        np.testing.assert_allclose(mine.to_numpy(), scratch.to_numpy(), rtol=1e-6, atol=1e-8)
        assert list(upd.random_effects_cov[g].index) == list(scratch.index)
    frames = [r.random_effects_frame(vc=True) for r in (upd, ref)]
    pd.testing.assert_frame_equal(
        frames[0].drop(columns="value"), frames[1].drop(columns="value"), check_dtype=False
    )


def test_update_takes_rows_holding_one_level_of_a_factor(scheduler, tmp_path):
    """A day's rows may all hold one level of a fixed-effects factor: alone their
    design is rank deficient, with the saved rows it is not.  The rank is checked on
    the sum (was refused: "column(s) ['C(sex)[T.M]'] are all zero")."""
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {"g": rng.integers(0, 40, n), "x": rng.normal(size=n), "sex": rng.choice(["F", "M"], n)}
    )
    df["y"] = df.x + (df.sex == "M") + rng.normal(size=40)[df.g] + rng.normal(size=n)
    df.iloc[:300].to_parquet(tmp_path / "A.parquet", index=False)
    df.iloc[300:].assign(sex="F").to_parquet(tmp_path / "B.parquet", index=False)
    common = ["--formula", "y ~ x + C(sex)", "--groups", "g", "--cluster", scheduler.file]
    common += ["--quiet"]
    _fit_update_and_scratch(tmp_path, common, scheduler.file)
    assert_same_fit(dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F"))


def test_update_takes_fewer_new_rows_than_the_model_has_parameters(scheduler, tmp_path):
    """Six new rows of groups already saved, for a model of 3 fixed effects and 3
    covariance parameters: refused ("too few rows: 6 rows for 3 fixed effects and 3
    covariance parameters"), the new rows counted alone.  The count is the sum's: the
    fit of all rows."""
    rng = np.random.default_rng(0)
    n = 406
    df = pd.DataFrame(
        {"g": np.r_[rng.integers(0, 40, n - 6), [0, 0, 1, 1, 2, 2]], "x": rng.normal(size=n)}
    )
    df["w"] = rng.uniform(1, 2, n)
    slopes = 1 + 0.7 * rng.normal(size=40)
    df["y"] = slopes[df.g] * df.x + rng.normal(size=40)[df.g] + 0.5 * rng.normal(size=n)
    df.iloc[:400].to_parquet(tmp_path / "A.parquet", index=False)
    df.iloc[400:].to_parquet(tmp_path / "B.parquet", index=False)
    common = ["--formula", "y ~ x + w", "--groups", "g", "--re-formula", "1 + x"]
    common += ["--cluster", scheduler.file, "--quiet"]
    _fit_update_and_scratch(tmp_path, common, scheduler.file)
    upd, ref = dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F")
    assert upd.nobs == ref.nobs == 406
    assert_same_fit(upd, ref)


def test_update_takes_the_method_from_its_job_file(incremental, data):
    """``dmixed update --job J`` with ``method: ml`` in J must fit by ML; main() resets
    the method to "as the saved fit" whenever --method is not on the command line."""
    d = incremental.dir
    shutil.copytree(d / "S", d / "S_ml")
    extra = make_data(n_groups=10, seed=99, intercept_sd=30.0, slope_sd=0.7, vc_sd=0.8)
    extra["g"] += 1000  # new groups
    extra.to_parquet(d / "C.parquet", index=False)
    job = {"stats_dir": "S_ml", "data": "C.parquet", "output": "U_ml", "method": "ml"}
    (d / "update_ml.yaml").write_text(yaml.safe_dump(job))
    proc = run_in_process("update", "--job", "update_ml.yaml", *incremental.cluster, cwd=d)
    assert proc.returncode == 0, proc.stderr
    method = dmixed.load(d / "U_ml").method
    assert method == "ML", f"dmixed bug: update --job with method: ml fitted by {method}"


def test_fit_of_all_data_after_update_reuses_the_statistics(incremental):
    """After `update`, S holds the statistics of A + B for this model: a `fit` job over
    A + B with the same model should reuse them (or at least not call them foreign)."""
    d = incremental.dir
    proc = run_in_process(
        "fit",
        "--data",
        "A.parquet",
        "B.parquet",
        *MODEL,
        *VC,
        *incremental.cluster,
        "--stats-dir",
        "S",
        "--output",
        "F2",
        cwd=d,
    )
    assert proc.returncode == 0 and "reusing saved statistics" in proc.stderr, (
        "dmixed bug: run_update stores digest(spec.to_dict(), old_inputs + new_inputs) while "
        "run_fit compares digest(model options, sorted inputs): after an update the saved "
        f"statistics never match a fit job; exit {proc.returncode}:\n{proc.stderr}"
    )
    assert_same_fit(dmixed.load(d / "F2"), dmixed.load(d / "F"))


def _read_until(stream, needle: str) -> str:
    """Lines of ``stream`` up to the first containing ``needle`` (or to its end)."""
    seen = []
    for line in iter(stream.readline, ""):
        seen.append(line)
        if needle in line:
            break
    return "".join(seen)


def test_concurrent_updates_of_one_stats_dir_lose_nothing(data, scheduler, tmp_path):
    """Three ``dmixed update`` runs on one --stats-dir at once, each with new rows: all
    three inputs end up in the statistics and in the last results (before: every run
    exited 0 and only one input was kept).  The test holds the directory's lock until
    all three wait for it, so they certainly overlap; they then run one after another."""
    cluster = ["--cluster", scheduler.file]
    shutil.copy2(data.A, tmp_path / "A.parquet")
    ok(run("fit", "--data", "A.parquet", *MODEL, *VC, *cluster, "--stats-dir", "S", "--output",
           "FA", cwd=tmp_path))  # fmt: skip
    rows = {"A.parquet": len(data.frame_a)}
    groups = set(data.frame_a["g"])
    for i in (1, 2, 3):
        new = make_data(n_groups=6, seed=40 + i, intercept_sd=30.0, slope_sd=0.7, vc_sd=0.8)
        new = pd.concat([new.assign(g=new["g"] + 1000 * i), data.frame_b.iloc[i::7]])
        new.to_parquet(tmp_path / f"C{i}.parquet", index=False)
        rows[f"C{i}.parquet"] = len(new)
        groups |= set(new["g"])
    procs = []
    with directory_lock(tmp_path / "S", kind="statistics", timeout=60):
        for i in (1, 2, 3):
            args = ["update", "--stats-dir", "S", "--data", f"C{i}.parquet", "--output", f"U{i}"]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dmixed", *args, *cluster],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        waited = [_read_until(p.stderr, "waiting for") for p in procs]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, before, (_, err) in zip(procs, waited, outs, strict=True):
        assert p.returncode == 0, f"exit {p.returncode}\n{before}{err}"
        assert f"waiting for {tmp_path / '.S.lock'}" in before, before
    manifest = json.loads((tmp_path / "S/manifest.json").read_text())
    assert sorted(Path(i["path"]).name for i in manifest["inputs"]) == sorted(rows), (
        "dmixed bug: concurrent updates lost inputs"
    )
    assert manifest["n"] == sum(rows.values())
    results = sorted((dmixed.load(tmp_path / f"U{i}") for i in (1, 2, 3)), key=lambda r: r.nobs)
    nobs = [r.nobs for r in results]
    assert len(set(nobs)) == 3, f"dmixed bug: two updates read the same statistics: {nobs}"
    last = results[-1]  # the last update's results hold every input
    assert (last.nobs, last.n_groups) == (sum(rows.values()), len(groups))


# --------------------------------------------------------------------------------------
# reliability: killed jobs, reruns
# --------------------------------------------------------------------------------------


def _content(path: Path) -> dict:
    """What a results directory says, without what changes from run to run (times)."""
    state = json.loads((path / "estimates.json").read_text())
    state.pop("created")
    state.pop("estimates_sha256")  # of the rest, times included
    for key in ("fit_seconds", "data_pass_seconds"):
        state["fit"].pop(key)
    for entry in state["fit"]["history"]:
        entry.pop("elapsed")
    table = pd.read_parquet(path / "random_effects.parquet")
    return {
        "state": state,
        "random_effects": table.to_dict(orient="list"),
        "summary": (path / "summary.txt").read_text(),
    }


def _close(a, b, rtol: float = 1e-12) -> bool:
    """Equal structure and strings, numbers equal to ``rtol``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= rtol * max(abs(a), abs(b)) or a == b
    return a == b


def _which_result(out: Path, refs: dict[str, dict]) -> str:
    """'absent', or the name of the complete reference result ``out`` holds."""
    if not out.exists():
        return "absent"
    assert result_dirs(out) == RESULT_FILES, f"partial results directory: {result_dirs(out)}"
    content = _content(out)
    dmixed.load(out)
    for name, ref in refs.items():
        if _close(content["state"]["estimates"], ref["state"]["estimates"]) and _close(
            content["random_effects"], ref["random_effects"]
        ):
            return name
    raise AssertionError("the results directory holds none of the complete results")


def _jobs(data, scheduler) -> dict[str, list]:
    cluster = ["--cluster", scheduler.file]
    return {
        "AB": ["fit", "--data", data.A, data.B, *MODEL, *cluster, "--output", "out"],
        "A": ["fit", "--data", data.A, *MODEL, *cluster, "--output", "out"],
    }


@pytest.fixture(scope="module")
def a_result(data, scheduler, tmp_path_factory):
    """Job "A" (``fit --data A``) run once: its results directory and how long it took."""
    d = tmp_path_factory.mktemp("a")
    t0 = time.monotonic()
    ok(run(*_jobs(data, scheduler)["A"], cwd=d))
    return SimpleNamespace(out=d / "out", seconds=time.monotonic() - t0)


def test_rerunning_a_finished_job_is_idempotent(data, scheduler, a_result, tmp_path):
    shutil.copytree(a_result.out, tmp_path / "out")  # job "A" ran here and finished
    proc = ok(run(*_jobs(data, scheduler)["A"], cwd=tmp_path))
    assert proc.stdout.strip() == str(tmp_path / "out")
    assert _content(tmp_path / "out") == _content(a_result.out)
    assert os.listdir(tmp_path) == ["out"]


def _kill_loop(tmp_path, data, scheduler, ab_result, a_result, n_kills, seed, targeted):
    """With result "AB" in ``out``, start fits of the other data into ``out`` and SIGKILL
    them (with their process group) at random moments; after each kill ``out`` must be
    absent or one complete result."""
    jobs = _jobs(data, scheduler)
    shutil.copytree(ab_result.out, tmp_path / "out")
    refs = {"AB": _content(ab_result.out), "A": _content(a_result.out)}
    assert not _close(refs["AB"]["state"]["estimates"], refs["A"]["state"]["estimates"])
    rng = random.Random(seed)
    seen, leftovers = [], []
    state = "AB"
    for _ in range(n_kills):
        new = "A" if state in ("AB", "absent") else "AB"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmixed", *map(str, jobs[new])],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if targeted else subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        if targeted:
            # aim at the write window: just after the optimizer's last progress line
            final = threading.Event()

            def watch(stream=proc.stderr, final=final):
                for line in stream:
                    if "final, after " in line:
                        final.set()
                final.set()

            thread = threading.Thread(target=watch, daemon=True)
            thread.start()
            final.wait(120)
            time.sleep(rng.uniform(0.0, 0.2))
        else:
            time.sleep(rng.uniform(0.5, max(0.6, min(4.0, 1.2 * a_result.seconds))))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if targeted:
            thread.join(30)
            proc.stderr.close()
        before, state = state, _which_result(tmp_path / "out", refs)
        assert state in ("absent", before, new), (before, new, state)
        seen.append((new, state))
        junk = hidden_leftovers(tmp_path, "out")
        leftovers.append(len(junk))
        # temporaries are hidden siblings (.out.tmp-*, .out.old-*), never "out" itself
        assert all(j.startswith((".out.tmp-", ".out.old-")) for j in junk), junk
    # what the kills left behind is hidden junk that dmixed does not read
    assert [p for p in os.listdir(tmp_path) if not p.startswith(".")] in ([], ["out"])
    return seen, leftovers


def test_killed_job_leaves_the_previous_complete_output_or_none(
    data, scheduler, ab_result, a_result, tmp_path
):
    seen, leftovers = _kill_loop(
        tmp_path, data, scheduler, ab_result, a_result, 5, seed=1, targeted=False
    )
    print(f"kills (new data, out afterwards): {seen}; hidden leftovers: {leftovers}")
    if (tmp_path / "out").exists():
        assert _which_result(
            tmp_path / "out", {"AB": _content(ab_result.out), "A": _content(a_result.out)}
        ) in ("A", "AB")


@pytest.mark.slow
def test_killed_in_the_write_window_many_times(data, scheduler, ab_result, a_result, tmp_path):
    seen, leftovers = _kill_loop(
        tmp_path, data, scheduler, ab_result, a_result, 20, seed=2, targeted=True
    )
    print(f"kills (new data, out afterwards): {seen}; hidden leftovers: {leftovers}")


def run_signalled(tmp_path, moment: str, signal_name: str, args, sigint_default=True):
    """``python -m dmixed *args`` in ``tmp_path`` sent ``signal_name`` when ``moment``
    is imported (:func:`signal_on_import`); ``sigint_default``: the command starts with
    SIGINT's default disposition, as from a terminal (a background job of a shell
    without job control starts with it ignored)."""
    return subprocess.run(
        [sys.executable, "-m", "dmixed", *args],
        cwd=tmp_path,
        env=signal_on_import(tmp_path, moment, signal_name),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if sigint_default
        else None,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "moment",
    ["worker:distributed", "dmixed.model", "worker:pyarrow.parquet"],
    ids=["while-workers-start", "cluster-up-lock-held", "in-the-data-pass"],
)
def test_sigterm_ends_the_command_as_ctrl_c_does(data, tmp_path, moment):
    """SIGTERM, what SLURM, PBS, Kubernetes and systemd send at a time limit or a
    cancel, ended the command at once: the statistics' lock file stayed beside the
    directory, the embedded cluster's semaphores were reported leaked, and it exited
    143 saying nothing.  It now takes Ctrl-C's path, at any moment: the cluster closed,
    nothing written, no lock file, one line naming the signal, exit status 128 + 15.
    The signal is sent to the command only, as ``kill PID`` and Kubernetes send it."""
    args = ["fit", "--data", str(data.A), *MODEL, "--output", "out/R", "--stats-dir", "out/S"]
    proc = run_signalled(tmp_path, moment, "SIGTERM", args, sigint_default=False)
    assert proc.returncode == 143, f"dmixed bug: exit {proc.returncode}\n{proc.stderr}"
    assert proc.stderr.splitlines()[-1] == "dmixed: error: terminated (SIGTERM)", proc.stderr
    assert "leaked" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert os.listdir(tmp_path / "out") == []  # no results, statistics or lock file


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_the_cluster_starts_is_held_and_ends_the_command(data, tmp_path):
    """A SIGINT while the embedded cluster's workers started was ignored, and lost: the
    job ran to its end, wrote new results and exited 0.  It is now held until the
    cluster is up and then ends the command as a Ctrl-C does: exit 130, one line, the
    earlier results as they were, no statistics, no worker process left."""
    import psutil

    first = run("fit", "--data", str(data.A), *MODEL, "--output", "out/R", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "R").iterdir()}
    args = ["fit", "--data", str(data.A), *MODEL, "--output", "out/R", "--stats-dir", "out/S"]
    proc = run_signalled(tmp_path, "worker:distributed", "SIGINT", args)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines()[-1] == "dmixed: error: interrupted", proc.stderr
    assert "Traceback" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "R").iterdir()} == before
    assert sorted(os.listdir(tmp_path / "out")) == ["R"]  # no statistics, no lock file
    hook = str(tmp_path / "hook")
    left = []
    for other in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if hook in other.environ().get("PYTHONPATH", ""):
                left.append(other.pid)
    assert left == [], f"worker processes left: {left}"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_once_the_cluster_is_up_leaves_the_earlier_outputs(data, tmp_path):
    """A single SIGINT once the embedded cluster has started (the moment of "connected
    to") ends the command: exit 130, one line, the earlier results as they were and
    no statistics written.  The signal is the command's own handler's from the end of
    the start on (:func:`dmixed.cluster.interrupts_ignored` gives it back there)."""
    first = run("fit", "--data", str(data.A), *MODEL, "--output", "out/R", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "R").iterdir()}
    args = ["fit", "--data", str(data.A), *MODEL, "--output", "out/R", "--stats-dir", "out/S"]
    proc = run_signalled(tmp_path, "dmixed.model", "SIGINT", args)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == [
        proc.stderr.splitlines()[0],  # dmixed: connected to ...
        "dmixed: error: interrupted",
    ], proc.stderr
    assert proc.stderr.startswith("dmixed: connected to "), proc.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "R").iterdir()} == before
    assert sorted(os.listdir(tmp_path / "out")) == ["R"]  # no statistics, no lock file


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", ["worker:pyarrow.parquet", "worker:dmixed.kernels.rows"])
def test_an_interrupted_data_pass_prints_only_the_commands_lines(
    data, tmp_path, moment, signal_name
):
    """An interrupt while the embedded cluster's workers run the data pass printed
    distributed's records of the close before the one line: the scheduler's broadcasts
    to closed workers, futures whose exception was never retrieved, the workers'
    heartbeats cut by their own close (tracebacks), their running tasks cancelled.
    Now every line on stderr is the command's."""
    shutil.copy2(data.A, tmp_path / "A.parquet")
    for part in range(3):  # work in flight on both workers when the signal comes
        more = data.full.assign(g=data.full["g"] + 1000 * (part + 1))
        more.to_parquet(tmp_path / f"more{part}.parquet", index=False)
    args = ["fit", "--data", "A.parquet", "more0.parquet", "more1.parquet", "more2.parquet"]
    proc = run_signalled(tmp_path, moment, signal_name, [*args, *MODEL, "--output", "out"])
    status, line = {"SIGINT": (130, "interrupted"), "SIGTERM": (143, "terminated (SIGTERM)")}[
        signal_name
    ]
    assert proc.returncode == status, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"dmixed: error: {line}", proc.stderr
    assert all(x.startswith("dmixed: ") for x in proc.stderr.splitlines()), proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_command_gives_back_the_sigterm_handler_it_found(monkeypatch, tmp_path):
    """The command handles SIGTERM while it runs (``cli.main``), and only then: the
    Python API called after it keeps the handler it had."""
    during = []
    monkeypatch.setattr(cli, "run_show", lambda path: during.append(signal.getsignal(15)) or 0)
    for found in (signal.SIG_DFL, lambda signum, frame: None):
        previous = signal.signal(signal.SIGTERM, found)
        try:
            assert run_in_process("show", "out", cwd=tmp_path).returncode == 0
            assert signal.getsignal(signal.SIGTERM) is found
        finally:
            signal.signal(signal.SIGTERM, previous)
    assert len(during) == 2 and all(callable(h) and h is not found for h in during)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(cli.Terminated):
            during[0](signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_sigterm_while_the_arguments_are_read_is_a_termination(monkeypatch, tmp_path):
    """Exit status 143 and its line, not Ctrl-C's 130 "interrupted"."""
    real = cli.build_parser

    def build_parser():
        os.kill(os.getpid(), signal.SIGTERM)
        return real()

    monkeypatch.setattr(cli, "build_parser", build_parser)
    proc = run_in_process("show", "out", cwd=tmp_path)
    assert proc.returncode == 143 and proc.stderr == "dmixed: error: terminated (SIGTERM)\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_sigterm_does_not_break_into_the_cleanup_of_the_first(monkeypatch, tmp_path):
    """The cleanup the first SIGTERM starts runs to its end under more of them, and the
    handler it leaves meanwhile is neither the default nor SIG_IGN (which worker
    processes started meanwhile would inherit)."""
    cleaned = []

    def show(path):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            handler = signal.getsignal(signal.SIGTERM)
            cleaned.append(callable(handler))
        return 0

    monkeypatch.setattr(cli, "run_show", show)
    found = signal.getsignal(signal.SIGTERM)
    proc = run_in_process("show", "out", cwd=tmp_path)
    assert proc.returncode == 143 and proc.stderr == "dmixed: error: terminated (SIGTERM)\n"
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is found


class _SwallowsExceptions:
    """Freed at once, it runs the SIGTERM handler in ``__del__``, whose exceptions
    Python cannot pass on (only reports them, "Exception ignored in"), as a signal that
    lands in ``distributed``'s garbage-collection callback is run."""

    def __del__(self):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)


def _lost_sigterm() -> None:
    _SwallowsExceptions()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("when", ["before the outputs", "after the last commit"])
def test_a_sigterm_lost_in_a_callback_still_ends_the_update(
    data, scheduler, monkeypatch, tmp_path, when
):
    """A SIGTERM whose exception was raised inside a callback that swallows exceptions
    was lost: "Exception ignored in ... Terminated", and the update wrote its output
    and exited 0.  The signal is recorded: the next commit point (before the results,
    the statistics or the last fit's record are moved into place) ends the command, or,
    after the last, its exit: status 143, its one line, and before the outputs nothing
    written and the statistics as they were."""
    shutil.copy2(data.A, tmp_path / "A.parquet")
    shutil.copy2(data.B, tmp_path / "B.parquet")
    common = ["--cluster", scheduler.file, "--quiet"]
    ok(run_in_process("fit", "--data", "A.parquet", *MODEL, "--stats-dir", "S", "--output",
                      "FA", *common, cwd=tmp_path))  # fmt: skip
    saved = {p.name: p.read_bytes() for p in (tmp_path / "S").iterdir() if p.is_file()}
    if when == "before the outputs":
        fit = dmixed.MixedLM.fit
        monkeypatch.setattr(dmixed.MixedLM, "fit", lambda *a, **k: _lost_sigterm() or fit(*a, **k))
    else:
        remember = cli.remember_fit
        monkeypatch.setattr(cli, "remember_fit", lambda *a: remember(*a) or _lost_sigterm())
    found = signal.getsignal(signal.SIGTERM)
    proc = run_in_process("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U",
                          *common, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr == "dmixed: error: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is found
    if when == "before the outputs":
        assert not (tmp_path / "U").exists() and proc.stdout == ""
        now = {p.name: p.read_bytes() for p in (tmp_path / "S").iterdir() if p.is_file()}
        assert now == saved
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries


class _SwallowsInterrupt:
    """Freed at once, it runs the SIGINT handler in ``__del__``, whose exceptions Python
    cannot pass on, as a Ctrl-C that lands in ``distributed``'s garbage-collection
    callback (or in a weak reference's callback of ``importlib``'s module locks) is run."""

    def __del__(self):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)


def _lost_sigint() -> None:
    _SwallowsInterrupt()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("when", ["before the outputs", "after the last commit"])
def test_a_ctrl_c_lost_in_a_callback_still_ends_the_fit(
    data, scheduler, monkeypatch, tmp_path, when
):
    """A Ctrl-C whose ``KeyboardInterrupt`` was raised inside a callback that swallows
    exceptions was lost: "Exception ignored in: GCDiagnosis._gc_callback", and the fit
    wrote its results and exited 0.  SIGINT now has the command's handler, which
    records it: the next commit point ends the command, or, after the last, its exit:
    status 130, its one line, before the outputs nothing written (the statistics are
    saved only once the fit has succeeded); the handler found is given back."""
    if when == "before the outputs":
        fit = dmixed.MixedLM.fit
        monkeypatch.setattr(dmixed.MixedLM, "fit", lambda *a, **k: _lost_sigint() or fit(*a, **k))
    else:
        remember = cli.remember_fit
        monkeypatch.setattr(cli, "remember_fit", lambda *a: remember(*a) or _lost_sigint())
    found = signal.getsignal(signal.SIGINT)
    reported: list = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    proc = run_in_process("fit", "--data", data.A, *MODEL, "--stats-dir", "S", "--output", "R",
                          "--cluster", scheduler.file, "--quiet", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "dmixed: error: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is found and reported == []
    if when == "before the outputs":
        # no results, no statistics (written only after a fit that succeeded), and no
        # temporaries
        assert os.listdir(tmp_path) == [] and proc.stdout == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_command_gives_back_the_sigint_handler_it_found(monkeypatch, tmp_path):
    """The command's SIGINT handler is set while it runs only; a SIGINT ignored when it
    starts (a shell's background job) stays ignored; a second SIGINT is only noted, so
    the cleanup the first starts runs to its end."""
    during = []
    monkeypatch.setattr(cli, "run_show", lambda path: during.append(signal.getsignal(2)) or 0)
    for found in (signal.default_int_handler, signal.SIG_IGN, lambda signum, frame: None):
        previous = signal.signal(signal.SIGINT, found)
        try:
            assert run_in_process("show", "out", cwd=tmp_path).returncode == 0
            assert signal.getsignal(signal.SIGINT) is found
        finally:
            signal.signal(signal.SIGINT, previous)
    assert during[1] is signal.SIG_IGN
    assert all(callable(h) and h is not signal.default_int_handler for h in during[::2])
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            during[0](signal.SIGINT, None)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # noted, not raised
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_ctrl_c_after_one_lost_in_a_callback_raises(monkeypatch, tmp_path):
    """After a Ctrl-C lost in a callback, the next Ctrl-C raises again: it was only noted,
    and a command with no commit point ahead ran on to its end.  A second Ctrl-C during
    the cleanup of one that was raised is still only noted."""
    reported: list = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    seen: list = []

    def body(path):
        _lost_sigint()
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        except KeyboardInterrupt:
            seen.append("raised")
            try:
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # during the cleanup
            except KeyboardInterrupt:
                seen.append("cleanup broken into")
            raise
        seen.append("ran on")
        return 0

    monkeypatch.setattr(cli, "run_show", body)
    found = signal.getsignal(signal.SIGINT)
    proc = run_in_process("show", "out", cwd=tmp_path)
    assert seen == ["raised"] and reported == []
    assert proc.returncode == 130 and proc.stderr == "dmixed: error: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is found


# --------------------------------------------------------------------------------------
# examples/: job file, cron wrapper, SLURM script, Airflow DAG
# --------------------------------------------------------------------------------------


def test_example_job_file_documents_every_key_and_parses():
    path = EXAMPLES / "jobs/example_job.yaml"
    lines = path.read_text().splitlines()
    for key in cli.Job.keys():
        at = [i for i, line in enumerate(lines) if re.match(rf"^#? ?{key}:", line)]
        assert at, f"{key} not in example_job.yaml"
        above = lines[at[0] - 1] if at[0] else ""
        assert above.startswith("#") or " # " in lines[at[0]], f"{key} is not explained"
    cli.read_job_file(str(path))  # valid YAML, no unknown keys
    args = cli.build_parser().parse_args(["fit", "--job", str(path)])
    job = cli.make_job(args, args.required)  # valid values, required options present
    assert job.vc_formula and job.output and job.cluster and job.method in ("reml", "ml")


def test_example_job_file_says_what_the_command_does(tmp_path, data):
    """The example said that ``format`` is chosen "from the first file's suffix" (each
    file's own is, a stray file sorting first decides nothing) and that missing values
    under ``missing: raise`` fail "with exit status 2" (a null exits 3)."""
    text = (EXAMPLES / "jobs/example_job.yaml").read_text()
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert "first file" not in comment
    assert "by default each file's own, by its suffix or content" in comment
    said = re.search(r'"raise" \(default: the job fails with exit status (\d+)', comment)
    assert said, comment
    holes = data.full.head(60).copy()
    holes.loc[3, "x1"] = np.nan
    holes.to_parquet(tmp_path / "holes.parquet", index=False)
    proc = run_in_process(
        "fit",
        "--data",
        "holes.parquet",
        *MODEL,
        "--missing",
        "raise",
        "--output",
        "o",
        cwd=tmp_path,
    )
    assert "missing values in column 'x1'" in proc.stderr, proc.stderr
    assert proc.returncode == int(said[1]) == cli.EXIT_DATA, proc.stderr


def _wrapper_env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DMIXED_LOCK_DIR"] = str(tmp_path / "locks")
    env.update(extra)
    return env


def test_cron_example_is_valid_and_the_wrapper_skips_overlapping_runs(tmp_path):
    script = EXAMPLES / "cron/dmixed-cron.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    entries = [
        line
        for line in (EXAMPLES / "cron/crontab").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" not in line.split()[0]
    ]
    assert entries
    for entry in entries:
        fields = entry.split()
        assert len(fields) > 5 and "dmixed-cron.sh" in entry
        for f in fields[:5]:
            assert re.fullmatch(r"[\d*/,\-]+", f), f
    job = tmp_path / "nightly.yaml"
    job.write_text("output: out\n")
    # a stub "dmixed" shows what the wrapper runs
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "dmixed").write_text('#!/bin/sh\necho "ran: $* in $PWD"\nexit 4\n')
    (stub / "dmixed").chmod(0o755)
    env = _wrapper_env(tmp_path, PATH=f"{stub}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(script), str(job), "--quiet"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 4, proc.stderr  # dmixed's exit status is passed on
    assert f"ran: fit --job {job.name} --quiet in {tmp_path}" in proc.stdout
    # while another run holds the lock, the wrapper exits at once without running dmixed
    lock = tmp_path / "locks" / "nightly.lock"
    assert lock.exists()
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = subprocess.run(
            [str(script), str(job)], env=env, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 0, proc.stderr
    assert "ran:" not in proc.stdout and "still running" in proc.stderr


def test_cron_wrapper_runs_update_when_it_comes_first(tmp_path):
    """A nightly job over a growing glob runs ``dmixed update`` (its job file with
    ``skip_included: true``): the wrapper ran only ``fit``."""
    job = tmp_path / "nightly.yaml"
    job.write_text("output: out\n")
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "dmixed").write_text('#!/bin/sh\necho "ran: $* in $PWD"\n')
    (stub / "dmixed").chmod(0o755)
    env = _wrapper_env(tmp_path, PATH=f"{stub}{os.pathsep}{os.environ['PATH']}")
    script = str(EXAMPLES / "cron/dmixed-cron.sh")
    proc = subprocess.run(
        [script, "update", str(job), "--quiet"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert f"ran: update --job {job.name} --quiet in {tmp_path}" in proc.stdout
    crontab = (EXAMPLES / "cron/crontab").read_text()
    assert re.search(r"^[^#].*dmixed-cron\.sh update \S+\.yaml", crontab, re.M)
    # a fit line of the same job beside the update line was refused every night (exit 2)
    # once its glob had grown: each job file has one active line
    jobs = re.findall(r"^[^#].*dmixed-cron\.sh (?:update )?(\S+\.yaml)", crontab, re.M)
    assert len(jobs) == len(set(jobs)), jobs
    example = yaml.safe_load((EXAMPLES / "jobs/example_job.yaml").read_text())
    assert example["skip_included"] is True and example["stats_dir"]


@pytest.mark.slow
def test_cron_wrapper_runs_a_real_job(data, scheduler, tmp_path):
    job = {
        "data": [str(data.A)],
        "formula": FORMULA,
        "groups": "g",
        "cluster": scheduler.file,
        "output": "results/latest",
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    proc = subprocess.run(
        [str(EXAMPLES / "cron/dmixed-cron.sh"), str(tmp_path / "job.yaml"), "--quiet"],
        env=_wrapper_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(str(tmp_path / "results/latest"))
    assert dmixed.load(tmp_path / "results/latest").converged


def test_slurm_example_is_valid_bash_with_real_flags():
    script = EXAMPLES / "slurm/fit.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert text.startswith("#!/bin/bash")
    assert re.search(r"^#SBATCH --ntasks=\d+", text, re.M)
    joined = text.replace("\\\n", " ")  # continuation lines
    assert re.search(r"^\s*dask scheduler .*--scheduler-file", joined, re.M)
    assert re.search(r"^\s*srun .*dask worker .*--scheduler-file", joined, re.M)
    assert re.search(r"dmixed fit .*--cluster \"\$SCHED_FILE\"", joined)
    # `dmixed fit --cluster` takes a scheduler file by its .json suffix
    assert re.search(r"^SCHED_FILE=.*\.json\"?$", text, re.M)


def _fake_srun(bin_dir: Path) -> None:
    """srun stand-in: runs the command --ntasks times here; SIGTERM stops them all."""
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        "n=1\n"
        "while [[ $1 == -* ]]; do\n"
        "  case $1 in --ntasks=*) n=${1#--ntasks=};; esac\n"
        "  shift\n"
        "done\n"
        "pids=()\n"
        'for ((i = 0; i < n; i++)); do "$@" & pids+=($!); done\n'
        "trap 'kill -TERM \"${pids[@]}\" 2>/dev/null; wait' TERM\n"
        "wait\n"
    )
    (bin_dir / "srun").chmod(0o755)


@pytest.mark.slow
def test_slurm_script_runs_locally(data, tmp_path):
    """The batch script with a stand-in srun and SLURM's environment, on loopback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_srun(bin_dir)
    job = {"data": str(data.A), "formula": FORMULA, "groups": "g", "output": "results"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        SLURM_JOB_ID="4242",
        SLURM_NTASKS="3",
        SLURM_CPUS_PER_TASK="1",
        SLURM_MEM_PER_CPU="2000",
        SLURM_SUBMIT_DIR=str(tmp_path),
        DMIXED_INTERFACE="lo",
    )
    proc = subprocess.Popen(
        ["bash", str(EXAMPLES / "slurm/fit.sbatch"), "job.yaml"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the script left running
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    assert "dmixed fit exited with status 0" in out
    assert not (tmp_path / "dask-scheduler-4242.json").exists()
    assert dmixed.load(tmp_path / "results").converged


def test_airflow_example_compiles_and_imports_only_with_airflow(tmp_path):
    path = EXAMPLES / "airflow/dmixed_dag.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "dag.pyc"), doraise=True)
    text = path.read_text()
    assert "dmixed" in text and "fit" in text and "--job" in text
    if importlib.util.find_spec("airflow") is None:
        pytest.skip("Airflow is not installed: the DAG is only compiled")
    spec = importlib.util.spec_from_file_location("dmixed_dag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.dag is not None and "dmixed_fit" in module.dag.task_ids


def test_relative_paths_in_a_job_file_are_relative_to_the_job_file(tmp_path, monkeypatch):
    from dmixed.cli import build_parser, make_job

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": ["in/a.parquet", "/abs/b.parquet", "s3://bucket/c.parquet"],
                "formula": "y ~ x1",
                "groups": "g",
                "output": "out",
                "stats_dir": "stats",
                "cluster": "../scheduler.json",
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["fit", "--job", "jobs/job.yaml", "--stats-dir", "mine"])
    job = make_job(args, args.required)
    assert job.data == [str(jobs / "in/a.parquet"), "/abs/b.parquet", "s3://bucket/c.parquet"]
    assert job.output == str(jobs / "out")
    assert job.cluster == str(jobs / "../scheduler.json")
    assert job.stats_dir == "mine"  # a flag stays relative to where the command runs


def test_relative_paths_in_a_job_files_cluster_mapping(tmp_path, monkeypatch):
    """The files a job's ``cluster:`` mapping names are relative to the job file too."""
    from dmixed.cli import build_parser, make_job

    jobs = tmp_path / "jobs"
    (jobs / "tls").mkdir(parents=True)
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (jobs / "tls" / name).write_text("")
    cluster = {
        "kind": "address",
        "address": "tls://10.0.0.5:8786",
        "security": {
            "tls_ca_file": "tls/ca.pem",
            "tls_client_cert": "tls/client.pem",
            "tls_client_key": "tls/client-key.pem",
            "require_encryption": True,
        },
    }
    (jobs / "job.yaml").write_text(yaml.safe_dump({"cluster": cluster}))
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["fit", "--job", "jobs/job.yaml"])
    job = make_job(args, ())
    security = job.cluster["security"]
    assert security["tls_ca_file"] == str(jobs / "tls/ca.pem")
    assert security["tls_client_key"] == str(jobs / "tls/client-key.pem")
    assert security["require_encryption"] is True


# --------------------------------------------------------------------------------------
# messages a batch user can act on (issue 15), --version, show
# --------------------------------------------------------------------------------------


def test_quiet_data_error_on_worker_processes_is_one_line(data, tmp_path):
    """A data error raised on a worker of the embedded cluster: one line, no worker
    traceback ("Compute Failed ... Traceback"), with --quiet."""
    holes = data.frame_a.copy()
    holes.loc[5, "x1"] = np.nan
    holes.to_parquet(tmp_path / "holes.parquet", index=False)
    job = {"cluster": {"kind": "local", "cluster": {"n_workers": 1, "processes": True}}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    proc = run(
        "fit", "--job", "job.yaml", "--data", "holes.parquet", *MODEL, "--output", "o", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == [  # the file holding them was not named
        f"dmixed: error: missing values in column 'x1' (1 row: in {tmp_path / 'holes.parquet'}); "
        "pass --missing drop (job file: missing: drop) to drop them"
    ], proc.stderr


def test_dropped_rows_warning_is_one_clean_line(data, scheduler, tmp_path):
    holes = data.frame_a.copy()
    holes.loc[[2, 4], "x2"] = np.nan
    holes.to_parquet(tmp_path / "holes.parquet", index=False)
    proc = run_in_process(
        "fit", "--data", "holes.parquet", *MODEL, "--missing", "drop", "--output", "o",
        "--quiet", "--cluster", scheduler.file, cwd=tmp_path, warns=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["dmixed: warning: dropped 2 rows with missing values"]
    assert dmixed.load(tmp_path / "o").nobs == len(holes) - 2


@pytest.mark.parametrize(
    "bad",
    ["text", "no column", "no model column", "text first", "no column first", "no groups first"],
)
def test_a_bad_file_of_several_is_exit_3_naming_it_no_lock_left(data, scheduler, tmp_path, bad):
    """One file holding text where the others hold numbers, or lacking a column: the
    message named the column only, the exit status was 2 and ``.S.lock`` stayed beside
    a statistics directory never written.  Text in the first file (whose types Dask
    takes) and numbers in the others was fitted as a factor, silently.  A file lacking
    every column of the model began the message with pandas' KeyError ("None of
    [Index([...])] are in the [columns]").  The first file (whose columns Dask takes)
    lacking a column: "unknown column", exit status 2, no file named."""
    (tmp_path / "in").mkdir()
    shutil.copy(data.A, tmp_path / "in/a.parquet")
    frame = {
        "text": data.frame_b.astype({"y": str}),
        "no column": data.frame_b.drop(columns="x2"),
        "no model column": pd.DataFrame({"other": [1.0, 2.0]}),
        "text first": data.frame_b.astype({"x2": str}),
        "no column first": data.frame_b.drop(columns="x2"),
        "no groups first": data.frame_b.drop(columns="g"),
    }[bad]
    frame.to_parquet(tmp_path / "in/b.parquet", index=False)
    if bad.endswith(" first"):
        os.rename(tmp_path / "in/b.parquet", tmp_path / "in/0.parquet")
    proc = run_in_process(
        "fit", "--data", "in", *MODEL, "--output", "o", "--stats-dir", "S", "--quiet",
        "--cluster", scheduler.file, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    if bad == "text first":
        other = os.path.join("in", "a.parquet")
        first = os.path.abspath(os.path.join(tmp_path, other))
        assert f"{first}: column 'x2' holds numbers (float64) where the model reads text" in (
            proc.stderr
        )
        assert proc.stderr.count(other) == 1, proc.stderr  # named once, with its type
        return
    if bad in ("no column first", "no groups first"):
        absent = "x2" if bad == "no column first" else "g"
        assert f"in {os.path.join('in', '0.parquet')}: no column '{absent}'" in proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
        return
    assert len(proc.stderr.splitlines()) == 1 and "None of" not in proc.stderr, proc.stderr
    if bad == "text":
        assert proc.stderr.count(os.path.join("in", "b.parquet")) == 1, proc.stderr
        assert "'y' holds text" in proc.stderr
    else:  # the partition's message names the file and the columns, once
        assert f"{tmp_path / 'in' / 'b.parquet'}: it has no column(s) [" in proc.stderr
        assert "'x2'" in proc.stderr and "; in " not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_damaged_warm_start_of_update_is_exit_3_naming_the_file(incremental, tmp_path):
    shutil.copytree(incremental.dir / "S", tmp_path / "S")
    last = tmp_path / "S/last_fit.json"
    last.write_text(last.read_text()[:20])
    extra = pd.read_parquet(incremental.dir / "B.parquet").head(40).assign(g=lambda f: f.g + 1000)
    extra.to_parquet(tmp_path / "C.parquet", index=False)
    proc = run_in_process(
        "update", "--stats-dir", "S", "--data", "C.parquet", "--output", "U", "--quiet",
        *incremental.cluster, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "S/last_fit.json is damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "U").exists()


def test_the_subprocesses_run_the_dmixed_of_this_tree(tmp_path):
    """The CLI tests that run ``python -m dmixed`` test this tree's code even where the
    interpreter has another copy of dmixed installed (tests/conftest.py sets PYTHONPATH)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import dmixed; print(dmixed.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == Path(dmixed.__file__).resolve()
    assert Path(dmixed.__file__).resolve().parents[1] == Path(REPO).resolve()


def test_version():
    proc = run_in_process("--version", cwd=REPO)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"dmixed {importlib.metadata.version('dmixed')}"


def test_show_prints_the_saved_summary(ab_result):
    proc = run_in_process("show", ab_result.out, cwd=ab_result.dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == str(dmixed.load(ab_result.out).summary()) + "\n"
    assert "Mixed Linear Model Regression Results" in proc.stdout


def test_show_of_a_damaged_results_directory_is_exit_3(ab_result, tmp_path):
    shutil.copytree(ab_result.out, tmp_path / "out")
    estimates = tmp_path / "out/estimates.json"
    estimates.write_text(estimates.read_text()[:100])
    proc = run_in_process("show", "out", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "out/estimates.json" in proc.stderr and "not valid JSON" in proc.stderr
    # dmixed's own errors are said in words, without Python's class names
    assert "Error:" not in proc.stderr
    proc = run_in_process("show", "absent", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dmixed: error: absent is not a dmixed results directory")


def test_every_exit_status_is_documented_in_help_and_readme():
    statuses = cli.EXIT_STATUSES
    assert {0, 1, 2, 3, 4, 5} <= set(statuses)
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.choices and "fit" in a.choices).choices
    readme = " ".join((REPO / "README.md").read_text().split())
    for help_text in (parser.format_help(), *(c.format_help() for c in commands.values())):
        text = "".join(help_text.split())  # argparse wraps lines, also at hyphens
        for code, meaning in statuses.items():
            assert "".join(f"{code} {meaning}".split()) in text, (code, help_text)
    for code in statuses:
        assert re.search(rf"\b{code} [a-z(]", readme.split("Exit status")[-1]), code
    assert "dmixed show" in readme and "dmixed --version" in readme


@pytest.mark.parametrize(
    "message, line",
    [
        (
            "partition 2 of the Dask DataFrame (file /d/c.parquet): column 'y' holds text",
            "/d/c.parquet: column 'y' holds text",
        ),
        (
            "a partition of the Dask DataFrame (file /d/c.parquet): it has no column(s) 'f'",
            "/d/c.parquet: it has no column(s) 'f'",
        ),
        (
            "partition 3 of the Dask DataFrame: column 'y' holds text",
            "partition 3 of the input (as Dask splits its files): column 'y' holds text",
        ),
        (
            "a partition of the Dask DataFrame: column 'y' holds text",
            "a part of the input: column 'y' holds text",
        ),
        (
            "missing values in column 'x' (2 rows: in partitions 0, 4 of the Dask DataFrame)",
            "missing values in column 'x' (2 rows: in partitions 0, 4 of the input (as Dask "
            "splits its files))",
        ),
        ("no data: the Dask DataFrame has no rows", "no data: the input has no rows"),
        (
            "partition 2 of the Dask DataFrame (file /d/x (2).parquet): column 'y' holds text",
            "/d/x (2).parquet: column 'y' holds text",
        ),
    ],
)
def test_a_partitions_error_is_worded_for_the_input_files(monkeypatch, tmp_path, message, line):
    """Errors of the library's Dask DataFrame ("partition 0 of the Dask DataFrame") in
    the words of the command's input: the file where it is known, else the partition
    of the input files."""

    def fails(path):
        raise dmixed.errors.BadValuesError(message)

    monkeypatch.setattr(cli, "run_show", fails)
    proc = run_in_process("show", "out", cwd=tmp_path)
    assert proc.returncode != 0 and proc.stderr == f"dmixed: error: {line}\n"


@pytest.mark.parametrize("name", ["x (2).parquet", "a) b.parquet", "c (d.parquet", "(e).parquet"])
@pytest.mark.parametrize("number", [2, None])
def test_a_partitions_file_is_named_whole_whatever_its_name_holds(
    monkeypatch, tmp_path, name, number
):
    """A file's name holding parentheses is named whole (it was cut at its first ")")."""
    from dmixed.design.origin import in_partition

    file = f"/d/{name}"
    err = in_partition(dmixed.errors.BadValuesError("column 'y' holds text"), number, file)

    def fails(path):
        raise err

    monkeypatch.setattr(cli, "run_show", fails)
    proc = run_in_process("show", "out", cwd=tmp_path)
    assert proc.stderr == f"dmixed: error: {file}: column 'y' holds text\n"


def test_library_warnings_are_one_line_and_hidden_under_quiet(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with cli.warnings_as_lines(quiet=True):
            warnings.warn("a pandas detail\nover two lines", FutureWarning, stacklevel=1)
            warnings.warn("dropped 3 rows", dmixed.DroppedRowsWarning, stacklevel=1)
        with cli.warnings_as_lines(quiet=False):
            warnings.warn("a pandas detail\nover two lines", FutureWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == [
        "dmixed: warning: dropped 3 rows",
        "dmixed: warning: FutureWarning: a pandas detail over two lines",
    ]


def test_job_choices_are_the_librarys_options():
    from dmixed.design.missing import MISSING_OPTIONS
    from dmixed.stats import CHECK_NOBS_OPTIONS

    assert set(cli.Job.choices("missing")) == set(MISSING_OPTIONS)
    assert set(cli.Job.choices("check_nobs")) == set(CHECK_NOBS_OPTIONS)


def _update_args(checkpointed, tmp_path, stats: str, seed: int = 41) -> list:
    new = make_data(n_groups=5, seed=seed, intercept_sd=30.0, slope_sd=0.7, vc_sd=0.8)
    new.assign(g=new["g"] + 3000 + seed).to_parquet(tmp_path / f"N{seed}.parquet", index=False)
    cluster = checkpointed.args[checkpointed.args.index("--cluster") :][:2]
    return ["update", "--stats-dir", stats, "--data", f"N{seed}.parquet", *cluster]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_update_ended_between_its_results_and_its_statistics_is_made_whole_by_a_rerun(
    checkpointed, tmp_path, monkeypatch
):
    """What exit statuses 130 and 143 say: each directory whole or as it was; the
    update's results written, its statistics the old ones, until it is run again."""
    from dmixed.stats import checkpoint

    shutil.copytree(checkpointed.dir / "stats", tmp_path / "stats")
    before = (tmp_path / "stats" / "manifest.json").read_text()
    args = [*_update_args(checkpointed, tmp_path, "stats"), "--output", "out"]

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as patched:
        patched.setattr(checkpoint, "save_statistics", terminated)
        proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines()[-1] == "dmixed: error: terminated (SIGTERM)"
    assert (tmp_path / "stats" / "manifest.json").read_text() == before
    ended = json.loads((tmp_path / "out" / "estimates.json").read_text())
    assert hidden_leftovers(tmp_path, "stats") == hidden_leftovers(tmp_path, "out") == []
    proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "stats" / "manifest.json").read_text())
    assert any("N41.parquet" in i["path"] for i in manifest["inputs"])
    again = json.loads((tmp_path / "out" / "estimates.json").read_text())
    assert again["estimates"]["llf"] == ended["estimates"]["llf"]
    assert again["estimates"]["params"] == ended["estimates"]["params"]
    help_text = " ".join(cli.build_parser().format_help().split())
    assert "nothing written" not in help_text and "until it is run again" in help_text


def test_a_statistics_directory_named_by_a_symbolic_link_is_written_through_it(
    checkpointed, tmp_path
):
    """The link is not replaced by a new directory (an update through it was lost for
    the directory it names, and the link became a directory of its own)."""
    shutil.copytree(checkpointed.dir / "stats", tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    args = _update_args(checkpointed, tmp_path, "link")
    proc = run_in_process(*args, "--output", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link").is_symlink()
    manifest = json.loads((tmp_path / "real" / "manifest.json").read_text())
    assert any("N41.parquet" in json.dumps(i) for i in manifest["inputs"])
    assert not [p for p in os.listdir(tmp_path) if ".old-" in p or ".tmp-" in p]


def test_a_damaged_warm_start_is_named(checkpointed, tmp_path):
    shutil.copytree(checkpointed.dir / "stats", tmp_path / "stats")
    for bad in ('{"packed_params": "x"}', '{"packed_params": [1e308]}', "[1, 2]"):
        (tmp_path / "stats" / "last_fit.json").write_text(bad)
        args = [*_update_args(checkpointed, tmp_path, "stats"), "--output", "out"]
        proc = run_in_process(*args, cwd=tmp_path)
        assert proc.returncode == 3, proc.stderr
        assert "last_fit.json is damaged" in proc.stderr


def test_a_job_file_that_is_not_text_is_named(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00formula")
    proc = run_in_process("fit", "--job", "bin.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "bin.yaml is not UTF-8 text" in proc.stderr


# --------------------------------------------------------------------------------------
# dmixed bootstrap
# --------------------------------------------------------------------------------------


def test_bootstrap_of_saved_statistics_reads_no_data(checkpointed, monkeypatch):
    """``dmixed bootstrap``: the fit of the saved statistics and its replicate table
    (``bootstrap.parquet`` in the results), the replicates of the Python API's
    ``bootstrap`` with the same seed, without reading the data."""
    from dmixed.engines.local import statistics_from_arrays
    from dmixed.results.bootstrap import BOOTSTRAP_FILE, BootstrapResults
    from dmixed.stats import checkpoint

    def no_data_pass(*args, **kwargs):
        raise AssertionError("dmixed bug: a bootstrap reads the data")

    monkeypatch.setattr(cli, "read_data", no_data_pass)
    d = checkpointed.dir
    args = ["bootstrap", "--stats-dir", "stats", "--replicates", "4", "--seed", "3"]
    proc = run_in_process(*args, "--output", "boot", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert "bootstrap: 4 replicates (4 converged)" in proc.stderr
    assert sorted(os.listdir(d / "boot")) == sorted([*os.listdir(d / "out1"), BOOTSTRAP_FILE])
    assert hidden_leftovers(d / "boot", BOOTSTRAP_FILE) == []
    assert_same_fit(dmixed.load(d / "boot"), dmixed.load(d / "out1"), rtol=1e-10)
    table = BootstrapResults.load(d / "boot" / BOOTSTRAP_FILE)
    arrays, manifest = checkpoint.load_statistics(d / "stats")
    spec = dmixed.design.ModelSpec.from_dict(manifest["spec"])
    model = dmixed.MixedLM.from_statistics(statistics_from_arrays(arrays), spec)
    ref = model.fit().bootstrap(4, seed=3)
    pd.testing.assert_frame_equal(table.replicates, ref.replicates, rtol=1e-9)
    pd.testing.assert_series_equal(table.estimate, ref.estimate, rtol=1e-9)
    missing = run_in_process("bootstrap", "--stats-dir", "stats", "--output", "b2", cwd=d)
    assert missing.returncode == 2 and "--replicates" in missing.stderr


def test_update_of_nanosecond_timestamps_is_the_exact_fit(scheduler, tmp_path):
    """int64 nanoseconds (about 1.7e18, rounded to 256 as float64) as a covariate: the
    saved statistics and ``update`` read them about the saved spec's integer reference,
    on worker processes, without a warning; the fit is that of ``t − 1.7e18`` computed
    exactly (:mod:`dmixed.design.references`)."""
    rng = np.random.default_rng(0)
    g = rng.integers(0, 30, 400)
    k = rng.integers(0, 10**6, g.size) * 1000
    y = 2e-9 * k + rng.normal(size=30)[g] + rng.normal(size=g.size)
    base = 1_700_000_000_000_000_000
    df = pd.DataFrame({"y": y, "t": np.int64(base) + k, "g": g})
    df.iloc[:250].to_parquet(tmp_path / "A.parquet", index=False)
    df.iloc[250:].to_parquet(tmp_path / "B.parquet", index=False)
    common = ["--formula", "y ~ t", "--groups", "g", "--cluster", scheduler.file, "--quiet"]
    _fit_update_and_scratch(tmp_path, common, scheduler.file)
    ref = dmixed.mixedlm("y ~ t", df.assign(t=k), groups="g").fit()
    for out in ("U", "F"):
        res = dmixed.load(tmp_path / out)
        assert res.fe_params["t"] == pytest.approx(ref.fe_params["t"], rel=1e-10)
        assert res.bse_fe["t"] == pytest.approx(ref.bse_fe["t"], rel=1e-10)
        assert res.llf == pytest.approx(ref.llf, rel=1e-12)
    saved = json.loads((tmp_path / "S/manifest.json").read_text())["spec"]
    assert saved["references"] == {"t": int(df["t"].iloc[0])}


@pytest.mark.parametrize("absent", ["x2", "sub"])
def test_update_with_a_file_lacking_a_model_column_is_exit_3_naming_it(
    incremental, tmp_path, absent
):
    """New rows lacking a column of the saved model: 'column(s) not found in the data',
    exit status 2 (a bad configuration), no file named; lacking a variance component's
    column, pandas' bare KeyError ("dmixed: error: 'sub'")."""
    shutil.copytree(incremental.dir / "S", tmp_path / "S")
    before = {p.name: p.read_bytes() for p in (tmp_path / "S").iterdir() if p.is_file()}
    extra = pd.read_parquet(incremental.dir / "B.parquet").head(40).drop(columns=absent)
    extra.to_parquet(tmp_path / "C.parquet", index=False)
    proc = run_in_process(
        "update", "--stats-dir", "S", "--data", "C.parquet", "--output", "U", "--quiet",
        *incremental.cluster, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert f"in C.parquet: no column '{absent}'" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "U").exists()
    after = {p.name: p.read_bytes() for p in (tmp_path / "S").iterdir() if p.is_file()}
    assert after == before


@pytest.mark.parametrize(
    "saved, added", [(2.0**60, 2.0**68), (1.0, 2.0**130)], ids=["within_a_step", "past_a_step"]
)
def test_update_of_weights_a_scale_step_away_is_the_fit_from_scratch(
    data, scheduler, tmp_path, saved, added
):
    """Saved statistics of rows weighted ``saved`` times their weights (the weights'
    scale 1), new rows weighted ``added`` times theirs (scale 2^128: one step away,
    converted exactly).  Within a step of each other (2^60 and 2^68): ``update`` is the
    fit of all rows from scratch.  Past it (1 and 2^130): the fit from scratch refuses,
    naming the weights column; ``update`` added them (the saved statistics did not keep
    their weights' span), and now refuses with the same error, the statistics
    untouched."""
    for name, frame, factor in [("A", data.frame_a, saved), ("B", data.frame_b, added)]:
        frame.assign(w=frame["w"] * factor).to_parquet(tmp_path / f"{name}.parquet", index=False)
    common = [*MODEL, "--weights", "w", "--cluster", scheduler.file, "--quiet"]
    if added / saved < 2.0**128:
        _fit_update_and_scratch(tmp_path, common, scheduler.file)
        assert_same_optimum(dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F"))
        return
    fit_a = ("fit", "--data", "A.parquet", *common, "--stats-dir", "S", "--output", "FA")
    ok(run_in_process(*fit_a, cwd=tmp_path))
    before = (tmp_path / "S/manifest.json").read_bytes()
    scratch = ("fit", "--data", "A.parquet", "B.parquet", *common, "--output", "F")
    refused = run_in_process(*scratch, cwd=tmp_path)
    assert refused.returncode == cli.EXIT_DATA and "column 'w' are too far apart" in refused.stderr
    update = ("update", "--stats-dir", "S", "--data", "B.parquet", "--output", "U")
    proc = run_in_process(*update, "--cluster", scheduler.file, "--quiet", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (refused.returncode, refused.stderr)
    assert (tmp_path / "S/manifest.json").read_bytes() == before
    assert not (tmp_path / "U").exists()


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ([0.0], "weights column 'w' has 1 zero value; weights must be positive"),
        ([-1.0], "weights column 'w' has 1 negative value; weights must be positive"),
        ([np.nan], "missing values in column 'w'"),
        ([np.inf], "column 'w'"),
        ([1e-150, 1e150], "the prior weights in column 'w' are too far apart"),
        ([2.0**-30, 2.0**30], "the prior weights in column 'w' are too far apart"),
    ],
    ids=["zero", "negative", "nan", "inf", "span_997", "span_60"],
)
def test_every_weight_error_is_bad_data(data, scheduler, tmp_path, weights, words):
    """Weights that cannot be used (not positive, missing, infinite, or more than 2^53
    apart) are values of the input, whatever the model: exit status 3, as the README's
    exit statuses say (a span was 2, zero and missing weights 3)."""
    w = np.ones(len(data.frame_a))
    w[: len(weights)] = weights
    data.frame_a.assign(w=w).to_parquet(tmp_path / "w.parquet", index=False)
    fit = ["fit", "--data", "w.parquet", *MODEL, "--weights", "w", "--output", "o", "--quiet"]
    proc = run_in_process(*fit, "--cluster", scheduler.file, cwd=tmp_path)
    assert proc.returncode == cli.EXIT_DATA, proc.stderr
    assert words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "o").exists()


def test_update_of_weights_in_an_extreme_unit(data, scheduler, tmp_path):
    """Weights near 1e150 (scaled by 2^512 in the saved statistics): ``update`` with new
    rows in the same unit is the fit of all rows from scratch; new rows whose weights
    are 2^300 times larger again (two steps of the weights' scale away, which the saved
    unit cannot hold) are refused as the fit of all the rows from scratch refuses them
    (exit status 3, bad values of the input, and the same message naming the weights
    column; were: "in another unit" for the partition), the statistics untouched."""
    frames = {"A": data.frame_a, "B": data.frame_b}
    for name, frame in frames.items():
        frame.assign(w=frame["w"] * 1e150).to_parquet(tmp_path / f"{name}.parquet", index=False)
    common = [*MODEL, "--weights", "w", "--cluster", scheduler.file, "--quiet"]
    _fit_update_and_scratch(tmp_path, common, scheduler.file)
    manifest = json.loads((tmp_path / "S/manifest.json").read_text())
    assert manifest["standardization"]["weight_scale"] == 2.0**512
    updated, scratch = dmixed.load(tmp_path / "U"), dmixed.load(tmp_path / "F")
    assert_same_optimum(updated, scratch)
    assert np.isfinite(np.asarray(updated.bse_re)).all() and (updated.bse_re > 0).all()
    before = (tmp_path / "S/manifest.json").read_bytes()
    far = data.frame_b.head(40).assign(g=lambda d: d["g"] + 5000)
    far.assign(w=far["w"] * 1e150 * 2.0**300).to_parquet(tmp_path / "C.parquet", index=False)
    args = ("update", "--stats-dir", "S", "--data", "C.parquet", "--output", "U2", "--quiet")
    proc = run_in_process(*args, "--cluster", scheduler.file, cwd=tmp_path)
    scratch = ("fit", "--data", "A.parquet", "C.parquet", *common, "--output", "F2")
    refused = run_in_process(*scratch, cwd=tmp_path)
    assert refused.returncode == cli.EXIT_DATA and "column 'w' are too far apart" in refused.stderr
    assert (proc.returncode, proc.stderr) == (refused.returncode, refused.stderr)
    assert (tmp_path / "S/manifest.json").read_bytes() == before
    assert not (tmp_path / "U2").exists()


def test_copies_of_files_without_rows_are_not_inputs_given_twice(data, scheduler, tmp_path):
    """Writers leave part files of a schema only, alike byte for byte: they count no
    row twice, so a directory holding them beside data fits (was refused as "input(s)
    given twice", exit 2), and a directory of nothing else is refused for holding no
    rows (exit 3); a copy of a file with rows is still refused."""
    import pandas as pd

    d = tmp_path / "parts"
    d.mkdir()
    shutil.copy2(data.A, d / "part-0.parquet")
    empty = pd.read_parquet(data.A).iloc[:0]
    for name in ("part-1.parquet", "part-2.parquet"):
        empty.to_parquet(d / name, index=False)
    assert (d / "part-1.parquet").read_bytes() == (d / "part-2.parquet").read_bytes()
    cluster = ["--cluster", scheduler.file]
    proc = run_in_process("fit", "--data", "parts", *MODEL, *cluster, "--output", "O", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    only = tmp_path / "only"
    only.mkdir()
    for name in ("part-1.parquet", "part-2.parquet"):
        shutil.copy2(d / name, only / name)
    proc = run_in_process("fit", "--data", "only", *MODEL, *cluster, "--output", "P", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "hold no rows" in proc.stderr and "given twice" not in proc.stderr
    shutil.copy2(data.A, d / "part-3.parquet")
    proc = run_in_process("fit", "--data", "parts", *MODEL, *cluster, "--output", "Q", cwd=tmp_path)
    assert proc.returncode == 2 and "(the content of" in proc.stderr, proc.stderr


def test_a_timestamp_column_in_a_formula_is_bad_data_naming_the_file(data, scheduler, tmp_path):
    """A Parquet timestamp or date32 column in a formula exited 2 ("bad configuration")
    with "unsupported dtype", naming no file and no remedy; README's exit 3 (data that
    cannot be used).  As the groups, a date is a label and fits."""
    frame = data.frame_a.copy()
    frame["ts"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="s")
    frame["d"] = pd.Series(
        (frame["ts"] + pd.to_timedelta(frame["g"], unit="D")).dt.date, dtype="date32[day][pyarrow]"
    )
    (tmp_path / "lake").mkdir()
    frame.to_parquet(tmp_path / "lake/a.parquet", index=False)
    cluster = ["--cluster", scheduler.file]
    for column, words in (("ts", "timestamps"), ("d", "dates")):
        args = ("fit", "--data", "lake", "--formula", f"y ~ {column}", "--groups", "g")
        proc = run_in_process(*args, *cluster, "--output", "O", cwd=tmp_path)
        assert proc.returncode == cli.EXIT_DATA, proc.stderr
        line = f"dmixed: error: {tmp_path / 'lake/a.parquet'}: column {column!r} holds {words} ("
        assert line in proc.stderr
        assert "convert the column to a number first" in proc.stderr
    proc = run_in_process(
        "fit",
        "--data",
        "lake",
        "--formula",
        "y ~ x1",
        "--groups",
        "d",
        *cluster,
        "--output",
        "O",
        cwd=tmp_path,
    )
    ok(proc)


@pytest.mark.parametrize("empty_name", ["part-0.parquet", "part-2.parquet"])
def test_a_schema_only_file_declaring_another_type_is_not_the_inputs_schema(
    data, scheduler, tmp_path, empty_name
):
    """A 0-row file declaring ``x1`` as ``string`` that sorted first had Dask read
    ``x1`` as text, and the file with the rows was blamed for holding numbers (exit 3);
    sorting last it was read.  It adds no rows: in either order the fit is that of the
    file with the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "lake").mkdir()
    shutil.copy2(data.A, tmp_path / "lake/part-1.parquet")
    schema = pq.read_schema(data.A)
    empty = schema.set(schema.get_field_index("x1"), pa.field("x1", pa.string()))
    pq.write_table(empty.empty_table(), tmp_path / "lake" / empty_name)
    args = ("fit", "--data", "lake", *MODEL, "--cluster", scheduler.file)
    ok(run_in_process(*args, "--output", "O", cwd=tmp_path))
    assert_same_fit(dmixed.load(tmp_path / "O"), in_process_fit(data.frame_a))


def test_recursive_glob_reads_a_hive_tree(data, scheduler, tmp_path):
    """``--data 'lake/**/*.parquet'`` was "no such input file(s)" (exit 3) and
    ``'lake/**'`` named a folder as "neither a Parquet file": ``**`` descends into the
    folders, as in fsspec and Spark, and their Hive keys are read as the folder's are."""
    for where, src in (("lake/region=eu/day=1", data.A), ("lake/region=us/day=2", data.B)):
        (tmp_path / where).mkdir(parents=True)
        shutil.copy2(src, tmp_path / where / "part-0.parquet")
    (tmp_path / "lake/_SUCCESS").write_bytes(b"")
    fit = ("fit", "--groups", "g", "--cluster", scheduler.file, "--quiet")
    fit = (*fit, "--formula", "y ~ x1 + C(region)")
    ok(run_in_process(*fit, "--data", "lake", "--output", "O", cwd=tmp_path))
    ref = dmixed.load(tmp_path / "O")
    assert ref.nobs == len(data.full)
    for i, pattern in enumerate(("lake/**/*.parquet", "lake/**", "lake/*/**/part-*.parquet")):
        ok(run_in_process(*fit, "--data", pattern, "--output", f"R{i}", cwd=tmp_path))
        assert_same_fit(dmixed.load(tmp_path / f"R{i}"), ref, rtol=1e-12)


def test_hive_partitions_of_identical_files_are_not_inputs_given_twice(data, scheduler, tmp_path):
    """``region=eu/part-0.parquet`` and ``region=us/part-0.parquet`` of one bytes hold
    rows of two regions (the reader adds ``region`` from the path): fit, with and
    without --stats-dir, and update with ``region=fr`` were refused as "input(s) given
    twice" (exit 2).  The same file under another folder of one key is still a copy, and
    so are they to a model that does not read the key (only the keys a model reads
    tell such files apart)."""
    for where in ("lake/region=eu", "lake/region=us", "new/region=fr"):
        (tmp_path / where).mkdir(parents=True)
        shutil.copy2(data.A, tmp_path / where / "part-0.parquet")
    cluster = ["--cluster", scheduler.file]
    fit = ("fit", "--data", "lake", "--groups", "g", *cluster)
    ok(run_in_process(*fit, "--formula", "y ~ x1 + C(region)", "--output", "O", cwd=tmp_path))
    assert "C(region)[T.us]" in dmixed.load(tmp_path / "O").fe_params.index
    # a model that does not read the key reads one file's rows twice
    proc = run_in_process(*fit, "--formula", "y ~ x1", "--output", "Q", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "given twice" in proc.stderr
    # update reads the saved model's keys: (eu, b) is new to the statistics' (eu, a),
    # (us, a) and (us, b), and no new level
    three = ("two/region=eu/day=a", "two/region=us/day=a", "two/region=us/day=b")
    for where in (*three, "more/region=eu/day=b"):
        (tmp_path / where).mkdir(parents=True)
        shutil.copy2(data.A, tmp_path / where / "part-0.parquet")
    fit = ("fit", "--data", "two", "--groups", "g", *cluster)
    formula = "y ~ x1 + C(region) + C(day)"
    ok(
        run_in_process(
            *fit, "--formula", formula, "--stats-dir", "S", "--output", "P", cwd=tmp_path
        )
    )
    assert dmixed.load(tmp_path / "P").nobs == 3 * len(data.frame_a)
    update = ("update", "--stats-dir", "S", *cluster)
    ok(run_in_process(*update, "--data", "more", "--output", "U", cwd=tmp_path))
    assert dmixed.load(tmp_path / "U").nobs == 4 * len(data.frame_a)
    # a copy of an included file under other folders of the same keys
    (tmp_path / "copy/region=eu/day=a").mkdir(parents=True)
    shutil.copy2(data.A, tmp_path / "copy/region=eu/day=a/part-0.parquet")
    proc = run_in_process(*update, "--data", "copy", "--output", "V", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"(the content of {tmp_path / 'two/region=eu/day=a/part-0.parquet'})" in proc.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--data", ""], "--data: the path is empty; allowed: a path, glob or URL"),
        (["--data", "a.parquet", ""], "--data: the path is empty (item 2 of 2); allowed: "),
        (["--data", "a.parquet", "--stats-dir", ""], "--stats-dir: the path is empty; "),
    ],
)
def test_an_empty_path_is_named_as_empty(tmp_path, args, line):
    """``--data ''`` said "--data: got [''] (a list)": a flag's values are a list, and
    the list was not what was wrong.  The empty path is named, with its place."""
    proc = run_in_process("fit", *args, *MODEL, "--output", "o", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"dmixed: error: {line}"), proc.stderr
    assert "(a list)" not in proc.stderr


def test_a_formula_of_more_terms_than_the_files_rows_is_refused_before_its_parse(
    tmp_path, monkeypatch
):
    """A job of 60,000 distinct terms on 400 rows was parsed (time and memory growing with
    the square of its terms) before "too few rows"; the Parquet footers' rows are read
    first for a formula of many terms."""
    import dmixed.design.build as build

    def parse(*args, **kwargs):
        raise AssertionError("parsed after the early refusal")

    monkeypatch.setattr(build, "parse_formula", parse)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"y": rng.normal(size=40), "x1": rng.normal(size=40), "g": np.arange(40) % 4}
    )
    frame.to_parquet(tmp_path / "a.parquet")
    frame.assign(y=frame["y"] + 1).to_parquet(tmp_path / "b.parquet")
    formula = "y ~ " + " + ".join(f"I(x1+{k})" for k in range(2000))
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump({"data": ["a.parquet", "b.parquet"], "formula": formula, "groups": "g"})
    )
    proc = run_in_process("fit", "--job", "job.yaml", "--output", "o", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "too few rows: at most 80 rows for at least 2001 fixed effects" in proc.stderr
    assert "refused before its design is built" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        ("y ~ I(abs(x1).real)", "the attribute .real is not allowed: of a computed value"),
        ("y ~ x1.real", "unknown column 'x1.real': 'x1' is a column, but a formula reads no"),
    ],
)
def test_an_attribute_read_is_refused_alike_from_a_job_file_and_the_flag(tmp_path, formula, words):
    """``I(abs(x1).real)`` passed the checker and failed at evaluation with pandas'
    AttributeError; now the checker refuses it, from a job file as from ``--formula``."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"y": rng.normal(size=40), "x1": rng.normal(size=40), "g": np.arange(40) % 4}
    )
    frame.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump({"data": "a.parquet", "formula": formula, "groups": "g"})
    )
    by_job = run_in_process("fit", "--job", "job.yaml", "--output", "o", cwd=tmp_path)
    by_flag = run_in_process(
        "fit",
        "--data",
        "a.parquet",
        "--formula",
        formula,
        "--groups",
        "g",
        "--output",
        "o",
        cwd=tmp_path,
    )
    for proc in (by_job, by_flag):
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "AttributeError" not in proc.stderr, proc.stderr
    assert by_job.stderr == by_flag.stderr
    assert not (tmp_path / "o").exists()


def test_text_in_two_files_of_numbers_is_named_with_one_type_and_full_paths(tmp_path):
    """Text in a numeric column of two files among five: the partition's error named one
    file in full with the type ``string``, the schema's line the other as given with
    ``large_string[pyarrow]``.  Both now name the file in full and the type ``string``."""
    rng = np.random.default_rng(4)
    (tmp_path / "in").mkdir()
    for name in "abcde":
        frame = pd.DataFrame(
            {"y": rng.normal(size=30), "x": rng.normal(size=30), "g": np.arange(30) % 3}
        )
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name in "ce":
            text = [str(v) for v in frame["x"]]
            text[3] = "abc"
            table = table.set_column(1, "x", pa.array(text, pa.large_string()))
        pq.write_table(table, tmp_path / "in" / f"{name}.parquet")
    files = [f"in/{name}.parquet" for name in "abcde"]
    proc = run_in_process(
        "fit",
        "--data",
        *files,
        "--formula",
        "y ~ x",
        "--groups",
        "g",
        "--output",
        "o",
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "large_string" not in proc.stderr and "[pyarrow]" not in proc.stderr, proc.stderr
    named = re.findall(r"(\S+\.parquet): column 'x' holds text \((\w+)\)", proc.stderr)
    assert {os.path.basename(p) for p, _ in named} == {"c.parquet", "e.parquet"}, proc.stderr
    assert all(os.path.isabs(p) and t == "string" for p, t in named), named


def test_a_first_file_of_text_that_a_spline_reads_is_named_not_a_good_file(tmp_path):
    """``bs(x, ...)`` over three files, the one that sorts first holding ``x`` as text:
    the message named a good file ("b.parquet: column 'x' holds numbers (float64) where
    the model reads text") though the spline reads numbers, as ``update`` says.  It now
    names the text file, the column, its type and what the model reads; nothing is
    written."""
    rng = np.random.default_rng(6)
    (tmp_path / "in").mkdir()
    for name in "abc":
        frame = pd.DataFrame(
            {"y": rng.normal(size=40), "x": rng.uniform(0, 10, 40), "g": np.arange(40) % 4}
        )
        if name == "a":
            frame["x"] = frame["x"].astype(str)
        frame.to_parquet(tmp_path / "in" / f"{name}.parquet", index=False)
    proc = run_in_process(
        "fit", "--data", "in/*.parquet", "--formula",
        "y ~ bs(x, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10)",
        "--groups", "g", "--output", "o", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    bad = os.path.abspath(tmp_path / "in" / "a.parquet")
    assert f"{bad}: column 'x' holds text (" in proc.stderr, proc.stderr
    assert "where the model reads numbers" in proc.stderr, proc.stderr
    assert "b.parquet" not in proc.stderr and "c.parquet" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_statistics_and_results_of_statsmodels_order_are_a_newer_format(data, scheduler, tmp_path):
    """``y ~ x1 + C(sub)``: statsmodels puts ``C(sub)`` first, formulaic after ``x1``.
    The fixed effects come out in statsmodels' order; the statistics and results are
    saved in the formats that earlier versions refuse as newer (they would rebuild
    the names in the other order and fail on them); a rerun reuses the statistics."""
    import statsmodels.formula.api as smf

    model = ["--formula", "y ~ x1 + C(sub)", "--groups", "g"]
    args = ["fit", "--data", data.A, *model, "--cluster", scheduler.file, "--quiet"]
    ok(run_in_process(*args, "--stats-dir", "st", "--output", "o1", cwd=tmp_path))
    manifest = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert manifest["format_version"] == 7
    estimates = json.loads((tmp_path / "o1" / "estimates.json").read_text())
    assert estimates["format_version"] >= 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x1 + C(sub)", data.frame_a, groups=data.frame_a["g"]).fit()
    first = dmixed.load(tmp_path / "o1")
    assert list(first.fe_params.index) == list(ref.fe_params.index)
    proc = ok(run_in_process(*args[:-1], "--stats-dir", "st", "--output", "o2", cwd=tmp_path))
    assert "reusing saved statistics" in proc.stderr
    again = dmixed.load(tmp_path / "o2")
    np.testing.assert_array_equal(again.fe_params.to_numpy(), first.fe_params.to_numpy())


@pytest.mark.parametrize("files", [["one.csv"], ["one.csv", "two.csv"]], ids=["one", "two"])
def test_a_formula_column_no_input_file_has_names_the_files(data, tmp_path, files):
    """A formula's column absent from every input file was refused naming the files only
    where one file of several lacked it; with one file (or all lacking it) no file was
    named.  Now each file is named, as there; the status stays 2 (the formula's column,
    a configuration error) and nothing is read further or written."""
    for name, frame in zip(files, (data.frame_a, data.frame_b), strict=False):
        frame.drop(columns="x2").to_csv(tmp_path / name, index=False)
    proc = run_in_process(
        "fit", "--data", *files, *MODEL, "--output", "out", "--quiet", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "unknown column 'x2'" in proc.stderr
    for name in files:
        assert f"in {name}: no column 'x2'" in proc.stderr
    assert not (tmp_path / "out").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _files_and_times(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def saved_stats(data, scheduler, tmp_path):
    """This test's own statistics (fit A with ``--stats-dir S``, results in ``FA``),
    in ``tmp_path``: no other test writes them."""
    shutil.copy2(data.A, tmp_path / "A.parquet")
    cluster = ["--cluster", scheduler.file]
    ok(
        run(
            "fit", "--data", "A.parquet", *MODEL, *VC, *cluster,
            "--stats-dir", "S", "--output", "FA", cwd=tmp_path,
        )
    )  # fmt: skip
    return SimpleNamespace(dir=tmp_path, cluster=cluster)


@pytest.mark.parametrize("kind", ["schema_only.parquet", "header_only.csv", "two_empty"])
def test_an_update_without_new_rows_changes_nothing_and_writes_nothing(data, saved_stats, kind):
    """An update whose new files hold no rows (a scheduled run on a day without data)
    exited 3, as if the data were bad; it is now a no-op: exit 0, one line saying so,
    and nothing written: the statistics and an existing ``--output`` unchanged (bytes
    and times), no new ``--output`` folder made, nothing fitted."""
    d = saved_stats.dir
    empty = data.frame_b.iloc[:0]
    if kind == "two_empty":
        names = ["e1.parquet", "e2.parquet"]
        empty.to_parquet(d / "e1.parquet", index=False)
        empty.to_parquet(d / "e2.parquet", index=True)
    else:
        names = [kind]
        if kind.endswith(".csv"):
            empty.to_csv(d / kind, index=False)
        else:
            empty.to_parquet(d / kind, index=False)
    entries = sorted(p.name for p in d.iterdir())
    before = {name: _files_and_times(d / name) for name in ("S", "FA")}
    for out in ("FA", "FA_day2"):
        proc = run_in_process(
            "update", "--stats-dir", "S", "--data", *names, "--output", out, "--quiet",
            *saved_stats.cluster, cwd=d,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == (
            f"dmixed: no new rows in {', '.join(names)}; the saved statistics are "
            f"unchanged and nothing was written to {out}\n"
        )
        assert {name: _files_and_times(d / name) for name in ("S", "FA")} == before
        assert sorted(p.name for p in d.iterdir()) == entries


def _lacking_x1(frame, path):
    frame.iloc[:0].drop(columns="x1").to_csv(path, index=False)


def _x1_as_text(frame, path):
    empty = frame.iloc[:0]
    empty.assign(x1=empty["x1"].astype(str)).to_parquet(path, index=False)


@pytest.mark.parametrize(
    ("name", "write", "said"),
    [
        ("other.csv", _lacking_x1, "in other.csv: no column 'x1'"),
        ("text.parquet", _x1_as_text, "in text.parquet: column 'x1' is string, not a number"),
    ],
    ids=["header-lacks-a-column", "schema-of-text-numbers"],
)
def test_an_update_without_rows_checks_the_new_files_columns(data, saved_stats, name, write, said):
    """A new file without rows whose header lacks a column the saved model reads, or a
    schema-only Parquet file whose numeric column is declared as text (``x1: string``),
    was taken as a day without new rows (exit 0); it is refused as a file with rows
    would be, naming the file and the column (and its type), and nothing is written."""
    d = saved_stats.dir
    write(data.frame_b, d / name)
    before = _files_and_times(d / "S")
    proc = run_in_process(
        "update", "--stats-dir", "S", "--data", name, "--output", "U", "--quiet",
        *saved_stats.cluster, cwd=d,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert said in proc.stderr
    assert _files_and_times(d / "S") == before
    assert not (d / "U").exists()


def test_a_zero_byte_csv_is_refused_by_fit_and_update_alike(data, saved_stats, tmp_path):
    """A 0-byte CSV file holds no header, so its columns cannot be checked against the
    model: ``fit`` refuses it beside other files, naming it, and ``update`` does the same
    (not taken as a day without new rows)."""
    data.frame_a.to_csv(tmp_path / "a.csv", index=False)
    (tmp_path / "zero.csv").write_bytes(b"")
    proc = run_in_process(
        "fit", "--data", "a.csv", "zero.csv", *MODEL, "--output", "o", "--quiet", cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    assert "zero.csv is an empty file (no header, no rows)" in proc.stderr
    before = _tree(tmp_path / "S")
    proc = run_in_process(
        "update", "--stats-dir", "S", "--data", "zero.csv", "--output", "U", "--quiet",
        *saved_stats.cluster, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "zero.csv is an empty file (no header, no rows)" in proc.stderr
    assert _tree(tmp_path / "S") == before and not (tmp_path / "U").exists()


def test_stats_dir_and_update_carry_a_near_lossy_groups_centred_sums(tmp_path):
    """A group weighted 1e9 whose slope column is nearly constant within it (near
    lossy: tests/_near_lossy.py) is saved by ``fit --stats-dir`` with its sums about its
    mean (format version 8) and kept by ``update``: the updated fit's llf is the fit of
    all the rows (it was thousands of units off from the plain sums, with a warning of
    7e-6 relative)."""
    from ._near_lossy import near_lossy_frame

    frame = near_lossy_frame(1e9)
    frame[frame["g"] < 16].to_parquet(tmp_path / "old.parquet", index=False)
    frame[frame["g"] >= 16].to_parquet(tmp_path / "new.parquet", index=False)
    model = ["--formula", "y ~ x1", "--groups", "g", "--re-formula", "1 + x1"]
    model += ["--weights", "w", "--quiet"]
    first = ["fit", *model, "--data", "old.parquet", "--output", "o", "--stats-dir", "s"]
    ok(run_in_process(*first, cwd=tmp_path, warns=True))  # Ψ singular, the optimizer
    manifest = json.loads((tmp_path / "s/manifest.json").read_text())
    assert manifest["format_version"] == 8 and manifest["n_centred"] == 1
    update = ["update", "--data", "new.parquet", "--stats-dir", "s", "--output", "o"]
    proc = run_in_process(*update, "--quiet", cwd=tmp_path, warns=True)
    ok(proc)
    assert "PrecisionWarning" not in proc.stderr, proc.stderr
    got = json.loads((tmp_path / "o/estimates.json").read_text())["estimates"]["llf"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        want = dmixed.MixedLM.from_formula(
            "y ~ x1", frame, groups="g", re_formula="1 + x1", weights="w"
        ).fit()
    assert got == pytest.approx(want.llf, rel=1e-10, abs=0.0)


def test_a_rewrite_of_the_output_never_deletes_an_input_or_a_file_of_the_user(data, tmp_path):
    """Data read from ``out/input.parquet`` with ``--output out``: the rewrite deleted it
    and every other file there (exit 0).  Refused before any work, naming the file."""
    out = tmp_path / "out"
    in_process_fit(data.full).save(out)
    before = (out / "estimates.json").read_text()
    shutil.copy(data.A, out / "input.parquet")
    # even under a name dmixed writes there itself
    shutil.copy(data.B, out / "random_effects.parquet.csv")
    job = out / "job.yaml"
    job.write_text(f"data: {data.A}\n")
    for args, needle in [
        (["--data", "out/input.parquet"], "the input out/input.parquet lies inside --output out"),
        (["--data", "out/*.parquet"], "--output out is inside the input 'out/*.parquet'"),
        (["--job", "out/job.yaml"], "the job file out/job.yaml lies inside --output out"),
        (["--data", data.A], "--output out holds out/input.parquet (and 2 more), which dmixed"),
    ]:
        proc = run_in_process("fit", *args, *MODEL, "--output", "out", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
    assert sorted(os.listdir(out)) == sorted(
        [*RESULT_FILES, "input.parquet", "random_effects.parquet.csv", "job.yaml"]
    )
    assert (out / "estimates.json").read_text() == before


@pytest.mark.parametrize("command", ["show", "update"])
@pytest.mark.parametrize(
    "text, why",
    [
        ("1" * 5000, "holds a number of more digits than dmixed ever writes"),
        ("[" * 100_000 + "]" * 100_000, "holds arrays or objects nested deeper"),
    ],
    ids=["bigint", "deep"],
)
def test_saved_json_python_cannot_parse_is_a_checkpoint_error_naming_the_file(
    data, tmp_path, command, text, why
):
    """A 5000-digit integer or 100000 nested arrays in estimates.json or manifest.json
    ended ``show`` and ``update`` with exit 1 ("a bug in dmixed") and a raw ValueError
    or RecursionError, naming no file."""
    if command == "show":
        in_process_fit(data.full).save(tmp_path / "out")
        file, args = tmp_path / "out/estimates.json", ["show", "out"]
    else:
        (tmp_path / "st").mkdir()
        file = tmp_path / "st/manifest.json"
        file.write_text('{"format": "dmixed-statistics", "format_version": 8}')
        args = ["update", "--stats-dir", "st", "--data", data.B, "--output", "o"]
    file.write_text(file.read_text().replace("{", '{"x": ' + text + ", ", 1))
    proc = run_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert f"{file.relative_to(tmp_path)} is not a dmixed" in proc.stderr and why in proc.stderr
    assert len(proc.stderr) < 2000


def test_an_lme4_formula_is_refused_with_dmixeds_flags(tmp_path):
    """``(x1 | g)`` in --formula: exit 2 and one line naming --groups and --re-formula."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"y": rng.normal(size=40), "x1": rng.normal(size=40), "g": np.arange(40) % 4}
    )
    frame.to_parquet(tmp_path / "a.parquet")
    proc = run_in_process(
        "fit",
        "--data",
        "a.parquet",
        "--formula",
        "y ~ x1 + (x1 | g)",
        "--groups",
        "g",
        "--output",
        "o",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--formula 'y ~ x1' --groups g --re-formula '1 + x1'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_job_with_a_backquoted_bar_column_fits_and_a_vc_bar_term_is_explained(tmp_path):
    """The review found a job's ``(`x|1`)`` refused as lme4's term and a bar term in a
    job's vc_formula advised re_formula: the first fits, the second names vc_formula."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {"y": rng.normal(size=60), "x1": rng.normal(size=60), "g": np.arange(60) % 6}
    )
    frame["x|1"] = rng.normal(size=60)
    frame.to_parquet(tmp_path / "a.parquet")
    job = {"data": "a.parquet", "formula": "y ~ x1 + (`x|1`)", "groups": "g", "output": "o"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    proc = run_in_process("fit", "--job", "job.yaml", cwd=tmp_path, warns=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o").exists()
    job = {**job, "formula": "y ~ x1", "vc_formula": {"c": "0 + (1 | x1)"}, "output": "o2"}
    (tmp_path / "job2.yaml").write_text(yaml.safe_dump(job))
    proc = run_in_process("fit", "--job", "job2.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "vc_formula={'c': '0 + C(x1)'}" in proc.stderr, proc.stderr
    assert "--re-formula" not in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_an_update_never_deletes_an_input_or_a_users_file_in_the_stats_dir(data, saved_stats):
    """``update --data S/new.parquet --stats-dir S`` deleted the input and every other
    file of the user's there (exit 0): refused before any work, naming the file, and
    nothing written; hidden files (``.DS_Store``) are allowed and kept."""
    d = saved_stats.dir
    shutil.copy(data.B, d / "S" / "new.parquet")
    (d / "S" / ".DS_Store").write_bytes(b"finder")
    before = _files_and_times(d / "S")
    update = ["update", "--stats-dir", "S", "--output", "U", *saved_stats.cluster]
    proc = run_in_process(*update, "--data", "S/new.parquet", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert "the input S/new.parquet lies inside --stats-dir S" in proc.stderr
    shutil.move(d / "S" / "new.parquet", d / "new.parquet")
    (d / "S" / "notes.txt").write_text("mine\n")
    before = _files_and_times(d / "S")
    proc = run_in_process(*update, "--data", "new.parquet", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert "--stats-dir S holds S/notes.txt, which dmixed did not write" in proc.stderr
    assert _files_and_times(d / "S") == before and not (d / "U").exists()
    (d / "S" / "notes.txt").unlink()
    ok(run_in_process(*update, "--data", "new.parquet", "--quiet", cwd=d))
    assert (d / "S" / ".DS_Store").read_bytes() == b"finder"
    assert ".DS_Store" in os.listdir(d / "S") and "new.parquet" not in os.listdir(d / "S")


def test_commands_that_only_read_the_stats_dir_allow_a_users_file_there(saved_stats):
    """A file of the user's (and the job file) in ``--stats-dir`` made ``bootstrap`` and
    a rerun of the same fit, which only read the statistics, exit 2: both run and
    leave the directory's files as they were; ``update``, which replaces it, refuses."""
    d = saved_stats.dir
    (d / "S" / "README.txt").write_text("mine\n")
    job = {"data": str(d / "A.parquet"), "stats_dir": str(d / "S"), "output": str(d / "F2")}
    model = dict(zip(MODEL[::2], MODEL[1::2], strict=True))
    job |= {k[2:].replace("-", "_"): v for k, v in model.items()}
    job |= {"vc_formula": {"sub": "0 + C(sub)"}, "cluster": saved_stats.cluster[1]}
    (d / "S" / "job.yaml").write_text(yaml.safe_dump(job))
    before = _files_and_times(d / "S")
    common = ("--quiet",)
    ok(run_in_process("fit", "--job", "S/job.yaml", *common, cwd=d))
    boot = ("bootstrap", "--stats-dir", "S", "--replicates", "2", "--seed", "1")
    ok(run_in_process(*boot, "--output", "B", *common, cwd=d, warns=True))
    after = _files_and_times(d / "S")
    assert {k: v for k, v in after.items() if k != "last_fit.json"} == {
        k: v for k, v in before.items() if k != "last_fit.json"
    }
    assert (d / "F2" / "estimates.json").exists() and (d / "B" / "estimates.json").exists()
    proc = run_in_process(
        "update", "--stats-dir", "S", "--data", "A.parquet", "--output", "U",
        *saved_stats.cluster, cwd=d,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--stats-dir S holds S/README.txt (and 1 more), which dmixed did not" in proc.stderr
    proc = run_in_process("update", "--job", "S/job.yaml", cwd=d)
    assert proc.returncode == 2, proc.stderr
    assert "the job file S/job.yaml lies inside --stats-dir /" in proc.stderr
    assert _files_and_times(d / "S") == after and not (d / "U").exists()


def test_a_jobs_cluster_config_of_aliases_is_refused_quickly(data, tmp_path):
    """A job file (aliases refused) naming a cluster config of nine aliases of nine
    aliases (429 bytes, 9^7 items) took 12 s and 1.15 GB to print it: refused, exit 2,
    in a short message naming the file."""
    from .test_cluster import BOMB

    (tmp_path / "c.yaml").write_text(BOMB)
    job = {"data": str(data.A), "formula": "y ~ x1", "groups": "g", "output": "o"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**job, "cluster": "c.yaml"}))
    proc = run_in_process("fit", "--job", "job.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "c.yaml is not valid YAML: found the anchor &a0" in proc.stderr
    assert len(proc.stderr) < 1000 and not (tmp_path / "o").exists()


def test_a_refusal_of_saved_statistics_names_their_directory(
    data, scheduler, tmp_path, monkeypatch
):
    """A fit of saved statistics refused for the sums themselves (``DataError`` with
    ``of_statistics``: their plain sums give no ``X'V⁻¹X`` at the estimate) names the
    statistics directory, exit 3 (it named no file or directory)."""
    from dmixed.model import MixedLM

    common = ("--cluster", scheduler.file, "--quiet")
    fit = ("fit", "--data", str(data.A), *MODEL, *common, "--stats-dir", "S")
    ok(run_in_process(*fit, "--output", "o1", cwd=tmp_path))

    def refused(self, *args, **kwargs):
        err = dmixed.DataError("X'V^-1 X at the estimate is not positive definite")
        err.of_statistics = True
        raise err

    monkeypatch.setattr(MixedLM, "fit", refused)
    proc = run_in_process(*fit, "--output", "o2", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "the statistics in S: X'V^-1 X at the estimate" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "status"), [(["show", "no-such-dir"], "error"), (["fit", "--help"], 0)]
)
def test_main_in_process_gives_the_logger_back(args, status, caplog):
    """``cli.main`` called from a program (a scheduler's Python task) sets the ``dmixed``
    logger for its own lines on stderr, and gives it back as it found it on return, on
    an error and on argparse's ``SystemExit`` alike: the program's log lines still reach
    its own handlers (here ``caplog``'s, on the root logger)."""
    log = logging.getLogger("dmixed")
    before = log.handlers[:], log.level, log.propagate
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = cli.main(args)
        except SystemExit as exc:
            code = exc.code
    assert code != 0 if status == "error" else code == 0
    assert (log.handlers[:], log.level, log.propagate) == before
    with caplog.at_level(logging.INFO, logger="dmixed"):
        log.info("after the command")
    assert "after the command" in caplog.text


def _sum_interaction_part(seed: int, groups: np.ndarray) -> pd.DataFrame:
    """Rows of ``y ~ 0 + C(a, Sum):C(b)`` with y near 1e4, 20 per group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(groups, 20)
    a = rng.choice(list("pqrs"), g.size)
    b = rng.choice(list("uvw"), g.size)
    y = 1e4 + 0.5 * (a == "q") - 0.3 * (b == "v") + rng.normal(size=groups.size)[g - groups[0]]
    return pd.DataFrame({"y": y + rng.normal(size=g.size), "a": a, "b": b, "g": g})


def test_statistics_an_earlier_version_saved_unshifted_for_a_newly_shifted_design_are_refused(
    tmp_path, monkeypatch
):
    """``y ~ 0 + C(a, Sum):C(b)`` with y near 1e4: versions before this one found no
    columns giving one there (only indicator codings), so they saved the statistics of
    the response unshifted, which lose about 1e-9 of the llf.  Such statistics (written
    here under that earlier rule) are refused by ``update`` and by a rerun of ``fit``,
    naming the manifest, saying an earlier version wrote them without the shift and to
    rebuild them with ``dmixed fit``: adding this version's shifted statistics to them
    kept the loss silently."""
    import inspect

    from dmixed.design import centres, references

    _sum_interaction_part(1, np.arange(30)).to_parquet(tmp_path / "A.parquet", index=False)
    _sum_interaction_part(2, np.arange(30, 60)).to_parquet(tmp_path / "B.parquet", index=False)
    (tmp_path / "cluster.yaml").write_text(
        yaml.safe_dump({"kind": "local", "cluster": {"processes": False, "n_workers": 1}})
    )
    model = ["--formula", "y ~ 0 + C(a, Sum):C(b)", "--groups", "g", "--method", "ml"]
    common = [*model, "--cluster", "cluster.yaml", "--quiet"]
    fit = ["fit", "--data", "A.parquet", *common, "--stats-dir", "S"]
    rule = centres.constant_weights

    def earlier_rule(spec, earlier=False):
        if "earlier" in inspect.signature(rule).parameters:
            return rule(spec, earlier=True)
        return rule(spec)

    with monkeypatch.context() as m:
        m.setattr(centres, "constant_weights", earlier_rule)
        m.setattr(references, "constant_weights", earlier_rule)
        ok(run_in_process(*fit, "--output", "o1", cwd=tmp_path))
    saved = json.loads((tmp_path / "S" / "manifest.json").read_text())
    assert "x_ones" not in saved["standardization"]
    assert saved["standardization"]["y_shift"] == 0.0
    update = ["update", "--stats-dir", "S", "--data", "B.parquet", "--output", "o2"]
    for args in (update + ["--cluster", "cluster.yaml", "--quiet"], [*fit, "--output", "o3"]):
        proc = run_in_process(*args, cwd=tmp_path)
        assert proc.returncode == 3, proc.stderr
        said = proc.stderr
        assert os.path.join("S", "manifest.json") in said, said
        assert "written by an earlier version of dmixed" in said, said
        assert "did not shift the response for this design" in said, said
        assert "`dmixed fit` with a new statistics directory" in said, said
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
