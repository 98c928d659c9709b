"""Typed job options (``dmixed/job.py``): one pydantic model for job files and flags.

Every option is checked before any data is read: booleans only as YAML booleans,
integers only as integers in range, enumerations by their names, unknown keys refused
with their close matches; each problem one line naming the file or the flag.
"""

from __future__ import annotations

import re

import pytest

from dmixed.job import (
    MAXITER_LIMIT,
    Job,
    JobError,
    build_parser,
    job_from,
    parse_vc,
    read_job_file,
    saved_model,
)


def _job_file(tmp_path, text: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "line, needles",
    [
        ('quiet: "no"', ["key 'quiet': got 'no' (text)", "true or false"]),
        ("quiet: no", []),  # YAML 1.1: unquoted no is a boolean
        ('allow_nonconverged: "false"', ["key 'allow_nonconverged': got 'false' (text)"]),
        ("allow_nonconverged: 1", ["got 1 (an integer)", "true or false"]),
        ("maxiter: abc", ["key 'maxiter': got 'abc' (text)", f"from 1 to {MAXITER_LIMIT}"]),
        ("maxiter: -5", ["got -5 (an integer)", "a whole number from 1"]),
        ("maxiter: 0", ["got 0"]),
        ("maxiter: 2.5", ["got 2.5 (a number)"]),
        ("maxiter: true", ["got True (a boolean)"]),
        (f"maxiter: {MAXITER_LIMIT + 1}", [f"got {MAXITER_LIMIT + 1}"]),
        ("maxiter: 1000", []),
        ("method: bayes", ["key 'method': got 'bayes'", "reml or ml"]),
        ("method: ML", []),
        ("missing: skip", ["raise or drop"]),
        ("cov_fe: sandwich", ["hessian or conditional"]),
        ("format: feather", ["parquet or csv"]),
        ("groups: 2020", ["got 2020 (an integer)", "quote a number"]),
        ("data: [a.parquet, 5]", ["key 'data'", "a list of them"]),
        ("vc_formula: {cls: 5}", ["key 'vc_formula'", "mapping of name: formula"]),
        ("formula: ''", ["key 'formula': the text is empty"]),
        ("formla: y ~ x", ["unknown key 'formla' (did you mean 'formula'", "allowed keys: data"]),
        ("maxiters: 5", ["did you mean 'maxiter'"]),
        ("cluster: {kind: local, cluster: {preload: [x.py]}}", ["undocumented", "'preload'"]),
        ("cluster: {kind: local, clients: {}}", ["key 'cluster'", "['clients']"]),
    ],
)
def test_job_file_values_are_checked_by_type(tmp_path, line, needles):
    path = _job_file(tmp_path, line + "\n")
    if not needles:
        read_job_file(path)
        return
    with pytest.raises(JobError) as info:
        read_job_file(path)
    message = str(info.value)
    assert info.value.status == 2
    assert message.startswith(f"job file {path}: ")
    for needle in needles:
        assert needle in message, message
    assert len(message.splitlines()) == 1


def test_several_problems_one_line_each(tmp_path):
    path = _job_file(tmp_path, 'quiet: "no"\nmaxiter: abc\nmethd: ml\n')
    with pytest.raises(JobError) as info:
        read_job_file(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"job file {path}: ") for line in lines)


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--maxiter", "-5"], "--maxiter: got -5 (an integer); allowed: a whole number from 1"),
        (["--maxiter", "0"], "--maxiter: got 0"),
        (["--vc", "a=0 + C(a)", "--groups", ""], "--groups: the text is empty"),
    ],
)
def test_flags_follow_the_same_rules(flags, needle):
    args = build_parser().parse_args(["fit", *flags])
    values = {k: getattr(args, k, None) for k in Job.keys()}
    with pytest.raises(JobError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        job_from({}, values, ())


def test_flags_override_a_checked_job_file(tmp_path):
    path = _job_file(tmp_path, "maxiter: 10\nmethod: ML\nquiet: true\n")
    job = job_from(read_job_file(path), {"maxiter": 20, "quiet": None}, ())
    assert (job.maxiter, job.method, job.quiet) == (20, "ml", True)


def test_missing_required_options_name_flag_and_key():
    with pytest.raises(JobError, match=r"--stats-dir \(job key stats_dir\)"):
        job_from({}, {}, ("stats_dir",))


def test_flag_choices_come_from_the_model():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["fit", "--method", "bayes"])
    assert Job.choices("method") == ("reml", "ml")
    with pytest.raises(KeyError):
        Job.choices("maxiter")


def test_flags_take_enumerations_in_any_case_as_job_files_do():
    """One rule for both: ``method: REML`` in a job file and ``--method REML``."""
    from dmixed.job import build_parser

    args = build_parser().parse_args(["fit", "--method", "ML", "--missing", "Drop"])
    assert (args.method, args.missing) == ("ml", "drop")


def test_re_formula_help_says_what_runs_with_vc(capsys):
    """The help said the default was '1'; with --vc the fit has no group intercept."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: '1', a random intercept, without --vc; with --vc none" in text


@pytest.mark.parametrize(
    "text, key",
    [
        ("formula: y ~ x\ngroups: g\nformula: y ~ x + z\n", "formula"),
        ("vc_formula:\n  a: 0 + C(c)\n  a: 0 + z\n", "a"),
    ],
)
def test_a_key_given_twice_in_a_job_file_is_refused(tmp_path, text, key):
    """YAML kept the last of them without a word (one component dropped, say)."""
    with pytest.raises(JobError, match=f"found key '{key}' twice") as info:
        read_job_file(_job_file(tmp_path, text))
    assert info.value.status == 2


def test_a_variance_component_named_twice_by_flags_is_refused():
    assert parse_vc(["a=0 + C(c)", " b = 0 + z"]) == {"a": "0 + C(c)", "b": "0 + z"}
    with pytest.raises(JobError, match="variance component 'a' twice") as info:
        parse_vc(["a=0 + C(c)", "a = 0 + z"])
    assert info.value.status == 2


def _update_job(**values) -> Job:
    base = {"stats_dir": "S", "data": "b.parquet", "output": "U"}
    return job_from({**base, **values}, {}, (), "update")


def test_update_refuses_a_job_of_another_model_and_takes_missing_drop():
    """An update job's formula, re_formula or weights were silently ignored (the saved
    model fitted); ``missing: drop`` was refused though the message suggested it."""
    from types import SimpleNamespace

    saved = {"formula": "y ~ x", "groups": "g", "re_formula": None, "weights": None}
    spec = SimpleNamespace(missing="raise")
    assert _update_job().missing is None  # default: the saved statistics'
    assert saved_model(_update_job(formula="y ~ x", groups="g"), spec, saved) is spec
    job = _update_job(formula="y ~ 1", weights="w")
    with pytest.raises(JobError, match=r"job's model differs.*formula: 'y ~ 1', saved 'y ~ x'"):
        saved_model(job, spec, saved)
    with pytest.raises(JobError, match=r"missing: 'raise', saved"):
        saved_model(_update_job(missing="raise"), SimpleNamespace(missing="drop"), saved)


def test_update_compares_the_parsed_model_not_its_text():
    """A job written ``y~x`` was refused against the saved ``y ~ x`` (keys compared as
    text); the same terms in any spacing or order are the saved model, other terms are
    refused naming the key."""
    from types import SimpleNamespace

    saved = {
        "formula": "y ~ x + C(site)",
        "groups": "g",
        "re_formula": None,
        "vc_formula": {"sub": "0 + C(sub)"},
        "weights": None,
    }
    spec = SimpleNamespace(missing="raise")
    same = _update_job(
        formula="y~C( site )+x",
        groups="g",
        re_formula="0",  # no random effects beside the components: the saved default
        vc_formula={"sub": "C(sub) - 1"},
    )
    assert saved_model(same, spec, saved) is spec
    for key, value, needle in [
        ("formula", "y ~ x", "formula: 'y ~ x', saved 'y ~ x + C(site)'"),
        ("formula", "z ~ x + C(site)", "formula: 'z ~ x + C(site)'"),
        ("re_formula", "1", "re_formula: '1', saved None"),
        ("vc_formula", {"sub": "0 + C(sub) + z"}, "vc_formula: {'sub': '0 + C(sub) + z'}"),
        ("vc_formula", {"other": "0 + C(sub)"}, "vc_formula: {'other'"),
    ]:
        with pytest.raises(JobError, match=re.escape(needle)):
            saved_model(_update_job(**{key: value}), spec, saved)


BOMB = "".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x"]\n',
        *(
            f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
            for a, b in zip("abcdef", "bcdefg", strict=True)
        ),
        "formula: *g\n",
    ]
)


@pytest.mark.parametrize(
    "text, needle",
    [
        (BOMB, "found the anchor &a: anchors and aliases are not allowed"),
        ("formula: &f y ~ x\ngroups: g\n", "found the anchor &f"),
        ("base: &b {formula: y ~ x}\n<<: *b\n", "found the anchor &b"),
    ],
    ids=["billion-laughs", "anchor", "merge"],
)
def test_yaml_anchors_and_aliases_are_refused_in_job_files(tmp_path, text, needle):
    """Twelve lines of aliases made a value of 9^7 items, printed whole in the refusal:
    a 25 MB message, 540 MB of memory."""
    with pytest.raises(JobError, match=needle) as info:
        read_job_file(_job_file(tmp_path, text))
    assert info.value.status == 2 and len(str(info.value)) < 1000


def test_a_refused_value_is_shown_cut_short(tmp_path):
    """A value of a megabyte was echoed whole in its refusal."""
    text = "formula: [" + ", ".join(["xxxxxxxxxx"] * 100_000) + "]\n"
    cut = r"'formula': got \['xxxxxxxxxx', .*, \.\.\.\] \(a list\)"
    with pytest.raises(JobError, match=cut) as info:
        read_job_file(_job_file(tmp_path, text))
    assert len(str(info.value)) < 2000
