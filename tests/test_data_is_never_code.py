"""Nothing read from a file, a job, saved results or statistics, or the command line is
ever code (DESIGN.md §12): every formula is checked node by node before anything is
evaluated, whatever its source, and a payload that would run code is refused with
nothing run."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import dmixed
from dmixed import cli
from dmixed.io.results_dir import ESTIMATES_SHA256, estimates_sha256
from dmixed.stats import checkpoint

from ._synth import make_data

#: one payload of each class the whitelist must stop ({m}: a file the payload creates)
PAYLOADS = {
    "Q-extra-argument": "Q('x1', __import__('os').system('touch {m}'))",
    "builtin-call": "np.log(x2) + open('{m}', 'w')",
    "dunder-chain": "x1.__class__.__init__.__globals__['os'].system('touch {m}')",
    "lambda": "(lambda: open('{m}', 'w'))()",
    "comprehension": "[open('{m}', 'w') for _ in [0]]",
    "subscript-call": "np.__dict__['load']('{m}')",
    "keyword-argument": "C(x1, levels=open('{m}', 'w'))",
}
LOCAL_THREADS = {"kind": "local", "cluster": {"processes": False, "n_workers": 1}}


def _main(args, cwd) -> int:
    """``dmixed ARGS`` in this process (stdout/stderr captured), its exit status."""
    return _main_stderr(args, cwd)[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Data, a results directory and a statistics directory of a fit of it."""
    d = tmp_path_factory.mktemp("never-code")
    df = make_data(n_groups=30, seed=5)
    df.to_parquet(d / "A.parquet", index=False)
    df.to_parquet(d / "B.parquet", index=False)
    (d / "cluster.yaml").write_text(yaml.safe_dump(LOCAL_THREADS))
    args = ["fit", "--data", "A.parquet", "--formula", "y ~ x1", "--groups", "g"]
    args += ["--cluster", "cluster.yaml", "--output", "res", "--stats-dir", "stats", "--quiet"]
    assert _main(args, d) == 0
    return d


def _main_stderr(args, cwd) -> tuple[int, str]:
    """``dmixed ARGS`` in this process: its exit status and what it printed on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = _main_quiet_stdout(args, cwd)
    return code, err.getvalue()


def _main_quiet_stdout(args, cwd) -> int:
    log = logging.getLogger("dmixed")
    saved = log.handlers[:], log.level, log.propagate
    here = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(io.StringIO()):
            return cli.main([str(a) for a in args])
    finally:
        os.chdir(here)
        log.handlers[:] = saved[0]
        log.level, log.propagate = saved[1], saved[2]


def times_two(x):
    """A function of this module's scope (the scope that runs the command line here): a
    formula from the command line or a job file may still not call it."""
    return 2 * x


@pytest.mark.parametrize("term", ["times_two(x1)", "round(x1)", "print(x1)"])
def test_functions_of_the_callers_scope_or_builtins_are_refused_from_files(saved, tmp_path, term):
    """The Python API finds functions in the caller's scope (tests/design/test_scope.py);
    a formula of the command line or a job file never does, even when run in a process
    that has the function, and says why."""
    base = ["fit", "--data", saved / "A.parquet", "--groups", "g", "--quiet"]
    base += ["--cluster", saved / "cluster.yaml", "--output", tmp_path / "out"]
    job = {"formula": f"y ~ {term}", "data": str(saved / "A.parquet"), "groups": "g"}
    job.update(output=str(tmp_path / "out"), cluster=str(saved / "cluster.yaml"), quiet=True)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    name = term.split("(")[0]
    for args in (base + ["--formula", f"y ~ {term}"], ["fit", "--job", "job.yaml"]):
        code, err = _main_stderr(args, tmp_path)
        assert code == 2
        assert f"unknown function {name}()" in err
        assert "never from a file, a job, saved results or the command line" in err
    assert not (tmp_path / "out").exists()


def _marker(tmp_path: Path, name: str) -> Path:
    return tmp_path / f"ran-{name}"


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_command_line_and_job_file_formulas_run_nothing(saved, tmp_path, name):
    m = _marker(tmp_path, name)
    term = PAYLOADS[name].format(m=m)
    base = ["fit", "--data", saved / "A.parquet", "--groups", "g", "--quiet"]
    base += ["--cluster", saved / "cluster.yaml", "--output", tmp_path / "out"]
    for extra in (
        ["--formula", f"y ~ {term}"],
        ["--formula", "y ~ x1", "--re-formula", f"1 + {term}"],
        ["--formula", "y ~ x1", "--vc", f"c=0 + {term}"],
    ):
        assert _main(base + extra, tmp_path) == 2
    for job in (
        {"formula": f"y ~ {term}"},
        {"formula": "y ~ x1", "re_formula": f"1 + {term}"},
        {"formula": "y ~ x1", "vc_formula": {"c": f"0 + {term}"}},
    ):
        job.update(data=str(saved / "A.parquet"), groups="g", output=str(tmp_path / "out"))
        job.update(cluster=str(saved / "cluster.yaml"), quiet=True)
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
        assert _main(["fit", "--job", "job.yaml"], tmp_path) == 2
    assert not m.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_saved_results_with_an_edited_formula_run_nothing(saved, tmp_path, name):
    import shutil

    m = _marker(tmp_path, name)
    res = tmp_path / "res"
    shutil.copytree(saved / "res", res)
    path = res / "estimates.json"
    state = json.loads(path.read_text())
    text = json.dumps(state).replace('"y ~ x1"', json.dumps("y ~ " + PAYLOADS[name].format(m=m)))
    assert text != json.dumps(state)
    path.write_text(text)
    with pytest.raises(dmixed.DmixedError):
        dmixed.load(res)
    assert _main(["show", res], tmp_path) in (2, 3)
    assert not m.exists()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_saved_statistics_with_an_edited_formula_run_nothing(saved, tmp_path, name):
    """The manifest is re-sealed (its own sha256 recomputed), so the formula itself, not
    the checksum, is what is refused."""
    import shutil

    m = _marker(tmp_path, name)
    stats = tmp_path / "stats"
    shutil.copytree(saved / "stats", stats)
    path = stats / "manifest.json"
    manifest = json.loads(path.read_text())
    text = json.dumps(manifest).replace('"y ~ x1"', json.dumps("y ~ " + PAYLOADS[name].format(m=m)))
    assert text != json.dumps(manifest)
    manifest = json.loads(text)
    manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    path.write_text(json.dumps(manifest))
    args = ["update", "--stats-dir", stats, "--data", saved / "B.parquet", "--quiet"]
    args += ["--cluster", saved / "cluster.yaml", "--output", tmp_path / "out"]
    assert _main(args, tmp_path) in (2, 3)
    assert not m.exists()


def test_a_hanging_formula_in_saved_results_is_refused_without_evaluating(saved, tmp_path):
    import shutil

    res = tmp_path / "res"
    shutil.copytree(saved / "res", res)
    path = res / "estimates.json"
    path.write_text(path.read_text().replace('"y ~ x1"', '"y ~ x1 + I(9**9**9**9)"'))
    with pytest.raises(dmixed.DmixedError):
        dmixed.load(res)


def test_saved_results_marking_names_of_code_load_only_with_them_given(saved, tmp_path):
    """A results directory may list names of the code that fitted it (never the code):
    an edited list reaches nothing unless the user passes exactly those names."""
    import shutil

    m = _marker(tmp_path, "marked")
    res = tmp_path / "res"
    shutil.copytree(saved / "res", res)
    path = res / "estimates.json"
    state = json.loads(path.read_text())
    state["model"]["spec"]["caller_names"] = ["os"]
    state["model"]["spec"]["formula"] = f"y ~ x1 + os.system('touch {m}')"
    state[ESTIMATES_SHA256] = estimates_sha256(state)  # an edit that knows the format
    path.write_text(json.dumps(state))
    with pytest.raises(dmixed.CheckpointError, match="code is never read from a file"):
        dmixed.load(res)
    with pytest.raises(dmixed.CheckpointError, match=r"lacks \['os'\]"):
        dmixed.load(res, eval_env={"times_two": times_two})
    code, err = _main_stderr(["show", res], tmp_path)
    assert code in (2, 3) and "code is never read from a file" in err
    assert not m.exists()


class _Connected(Exception):
    """Raised by the test's stand-in for :func:`dmixed.cluster.connect`."""


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_command_line_formulas_are_refused_before_a_cluster_starts(
    saved, tmp_path, monkeypatch, fmt
):
    """A formula that would run code, or that names a column the data lacks, is refused
    with the first file's column names before any cluster is started or reached (an
    unreachable scheduler is not waited for); a good formula goes on to the cluster."""
    import dmixed.cluster

    called = []

    def connect(*args, **kwargs):
        called.append(args)
        raise _Connected

    monkeypatch.setattr(dmixed.cluster, "connect", connect)
    data = saved / "A.parquet"
    if fmt == "csv":
        data = tmp_path / "A.csv"
        pd.read_parquet(saved / "A.parquet").to_csv(data, index=False)
    base = ["fit", "--data", data, "--groups", "g", "--quiet", "--output", tmp_path / "out"]
    base += ["--cluster", "tcp://127.0.0.1:1"]
    m = _marker(tmp_path, "early")
    for extra in (
        ["--formula", f"y ~ {PAYLOADS['builtin-call'].format(m=m)}"],
        ["--formula", "y ~ x1", "--re-formula", f"1 + {PAYLOADS['lambda'].format(m=m)}"],
        ["--formula", "y ~ x1", "--vc", f"c=0 + {PAYLOADS['dunder-chain'].format(m=m)}"],
    ):
        code, err = _main_stderr(base + extra, tmp_path)
        assert code == 2, err
    code, err = _main_stderr(base + ["--formula", "y ~ xx1"], tmp_path)
    assert code == 2 and "unknown column 'xx1'" in err and "'x1'" in err
    assert not m.exists()
    assert not (tmp_path / "out").exists()
    assert not called
    _main_stderr(base + ["--formula", "y ~ x1"], tmp_path)  # the stand-in's error: any status
    assert called


def test_hive_partitioned_parquet_columns_are_left_to_the_read(saved, tmp_path, monkeypatch):
    """Files under ``key=value`` folders: Dask adds the key as a column, which the first
    file's schema lacks, so a formula naming it is not refused before the read."""
    import dmixed.cluster

    called = []

    def connect(*args, **kwargs):
        called.append(args)
        raise _Connected

    monkeypatch.setattr(dmixed.cluster, "connect", connect)
    (tmp_path / "site=1").mkdir()
    shutil.copy(saved / "A.parquet", tmp_path / "site=1" / "A.parquet")
    args = ["fit", "--data", "site=1/A.parquet", "--groups", "g", "--quiet"]
    args += ["--formula", "y ~ x1 + site", "--output", tmp_path / "out"]
    _main_stderr(args, tmp_path)
    assert called


#: formulas that would compute without bound (memory, time) or write into a column
#: that other terms read, each refused before anything is evaluated
UNBOUNDED = [
    'y ~ x1 + I(f"{1:>200000000}")',
    "y ~ x1 + I(1 << 10**9)",
    "y ~ x1 + I((1 << 1000) << 1000 << 1000)",
    "y ~ x1 + np.add(x1, 5, out=x1)",
    "y ~ x1 + x1.clip(0, 1, inplace=True)",
    "y ~ x1 + exp.at(x1, 0)",
    "y ~ x1 + I(abs(9 ** 1024) ** 1024)",
    "y ~ x1 + I(np.little_endian << 1024)",
]


@pytest.mark.parametrize("formula", UNBOUNDED)
def test_saved_results_with_an_unbounded_formula_are_refused_before_evaluating(
    saved, tmp_path, formula, monkeypatch
):
    """Re-sealed saved results (``dmixed.load``, ``dmixed show``) and the command line
    refuse the formula with an error naming it, before formulaic evaluates anything
    (every evaluation is recorded and refused here)."""
    import formulaic.materializers.base as materializer_base

    evaluated = []

    def no_evaluation(expr, *args, **kwargs):
        evaluated.append(expr)
        raise AssertionError(f"{expr!r} evaluated")

    monkeypatch.setattr(materializer_base, "stateful_eval", no_evaluation)
    res = tmp_path / "res"
    shutil.copytree(saved / "res", res)
    path = res / "estimates.json"
    state = json.loads(path.read_text().replace('"y ~ x1"', json.dumps(formula)))
    state[ESTIMATES_SHA256] = estimates_sha256(state)
    path.write_text(json.dumps(state))
    with pytest.raises(dmixed.DmixedError) as e:
        dmixed.load(res)
    assert formula in str(e.value)
    code, err = _main_stderr(["show", res], tmp_path)
    assert code in (2, 3) and formula in err
    base = ["fit", "--data", saved / "A.parquet", "--groups", "g", "--quiet"]
    base += ["--cluster", saved / "cluster.yaml", "--output", tmp_path / "out"]
    code, err = _main_stderr([*base, "--formula", formula], tmp_path)
    assert code == 2 and formula in err
    assert not (tmp_path / "out").exists()
    assert evaluated == []
