"""Saving and loading results: round trip, atomicity."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import CheckpointError, MixedLM
from dmixed.io import load_state, save_state
from dmixed.io.results_dir import ESTIMATES_SHA256, estimates_sha256
from dmixed.io.state import MEMORY_ONLY
from dmixed.stats import columns

from .._synth import design, make_data, vc_dict
from ._positional import as_numbered


@pytest.fixture(scope="module")
def res():
    df = make_data(n_groups=30, vc_sd=0.5, seed=4)
    endog, exog, exog_re, groups = design(df)
    return MixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=vc_dict(df)).fit(), exog


def test_round_trip(tmp_path, res):
    fit, exog = res
    fit.save(tmp_path / "out")
    files = sorted(os.listdir(tmp_path / "out"))
    # the fit holds its component structured: its random effects are saved ragged
    assert files == [
        "estimates.json",
        "random_effects.parquet",
        "random_effects_slots.parquet",
        "summary.txt",
    ]
    back = dmixed.load(tmp_path / "out")
    assert back.llf == fit.llf
    assert back.converged == fit.converged
    np.testing.assert_array_equal(back.fe_params, fit.fe_params)
    np.testing.assert_array_equal(back.cov_re, fit.cov_re)
    np.testing.assert_array_equal(back.vcomp, fit.vcomp)
    np.testing.assert_array_equal(back.bse, fit.bse)
    np.testing.assert_array_equal(back.cov_params(), fit.cov_params())
    assert back.fit_history == json.loads(json.dumps(fit.fit_history))
    assert str(back.summary()) == str(fit.summary())
    np.testing.assert_array_equal(back.predict(exog=exog), fit.predict(exog=exog))
    for key in list(fit.random_effects)[:5]:
        np.testing.assert_array_equal(back.random_effects[key], fit.random_effects[key])
        # stored as the lower triangle, which the fit's covariances are made of
        pd.testing.assert_frame_equal(
            back.random_effects_cov[key], fit.random_effects_cov[key], check_exact=True
        )
    estimates = json.loads((tmp_path / "out" / "estimates.json").read_text())
    assert estimates["format"] == "dmixed-results"
    assert "numpy" in estimates["versions"]
    pickle.loads(pickle.dumps(back))


def test_save_replaces_an_old_result_and_leaves_no_temporaries(tmp_path, res):
    fit, _ = res
    fit.save(tmp_path / "out")
    fit.save(tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_interrupted_save_leaves_the_previous_result(tmp_path, res, monkeypatch):
    fit, _ = res
    fit.save(tmp_path / "out")
    before = (tmp_path / "out" / "estimates.json").read_text()
    from dmixed.io import results_dir as io

    def boom(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(io, "random_effects_table", boom)
    with pytest.raises(KeyboardInterrupt):
        fit.save(tmp_path / "out")
    assert (tmp_path / "out" / "estimates.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_refuses_to_replace_a_foreign_directory(tmp_path, res):
    fit, _ = res
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.csv").write_text("x\n1\n")
    with pytest.raises(FileExistsError, match="not a dmixed results directory"):
        fit.save(foreign)
    assert (foreign / "precious.csv").exists()


def test_a_rewrite_refuses_a_directory_holding_a_file_dmixed_did_not_write(tmp_path, res):
    """Rewriting a results directory deleted every file in it: notes, the input read."""
    fit, _ = res
    out = tmp_path / "out"
    fit.save(out)
    (out / "notes.txt").write_text("mine\n")
    before = (out / "estimates.json").read_text()
    with pytest.raises(FileExistsError, match=r"holds .*notes\.txt, which dmixed did not write"):
        fit.save(out)
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / "estimates.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary left


def test_a_rewrite_replaces_what_dmixed_wrote_there(tmp_path, res):
    """The tables estimates.json lists, its summary and a bootstrap's table go; a table
    of a name dmixed writes that this directory's estimates.json does not list stays."""
    fit, _ = res
    out = tmp_path / "out"
    fit.save(out)
    (out / dmixed.io.results_dir.BOOTSTRAP_FILE).write_bytes(b"replicates")
    fit.save(out)
    assert dmixed.io.results_dir.BOOTSTRAP_FILE not in os.listdir(out)
    (out / "random_effects_cov.parquet").write_bytes(b"not listed")  # a ragged fit's has none
    with pytest.raises(FileExistsError, match="random_effects_cov.parquet"):
        fit.save(out)


def test_a_rewrite_keeps_tools_hidden_files_untouched(tmp_path, res):
    """``.DS_Store`` or ``.ipynb_checkpoints`` in --output stopped every rewrite as a
    file dmixed did not write; they are carried into the rewritten directory."""
    fit, _ = res
    out = tmp_path / "out"
    fit.save(out)
    (out / ".DS_Store").write_bytes(b"finder")
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "a.ipynb").write_text("{}")
    fit.save(out)
    assert (out / ".DS_Store").read_bytes() == b"finder"
    assert (out / ".ipynb_checkpoints" / "a.ipynb").read_text() == "{}"
    assert dmixed.load(out).llf == fit.llf
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary, no old copy left


KILLED_BOOTSTRAP_SAVE = """
import sys
from pathlib import Path
from dmixed.files import sibling_path
sibling_path(Path(sys.argv[1]), "tmp").write_bytes(b"PAR1 half written")
"""


def test_a_killed_bootstrap_saves_temporary_does_not_stop_a_rewrite(tmp_path, res):
    """A bootstrap save killed before its rename left ``.bootstrap.parquet.tmp-HOST-PID-``
    in the results directory and every later rewrite was refused: it is dmixed's own,
    swept (its writer is gone) by the next rewrite."""
    import subprocess
    import sys

    fit, _ = res
    out = tmp_path / "out"
    fit.save(out)
    table = out / dmixed.io.results_dir.BOOTSTRAP_FILE
    subprocess.run([sys.executable, "-c", KILLED_BOOTSTRAP_SAVE, str(table)], check=True)
    assert any(n.startswith(".bootstrap.parquet.tmp-") for n in os.listdir(out))
    fit.save(out)
    assert not any(n.startswith(".") for n in os.listdir(out))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no estimates.json"):
        dmixed.load(tmp_path)
    Path(tmp_path / "estimates.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a dmixed results directory.s estimates.json"):
        dmixed.load(tmp_path)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("foreign", "foreign exists and is not a dmixed results directory (no estimates.json)"),
        ("a_file", "a_file exists and is a file, not a dmixed results directory"),
        ("a_file/out", "a_file/out cannot be created: {root}/a_file is a file"),
        ("a_file/out/deeper", "a_file/out/deeper cannot be created: {root}/a_file is a file"),
    ],
)
def test_save_refusals_are_dmixed_errors_naming_the_path(tmp_path, res, target, needle):
    """A save over a file or under one raised NotADirectoryError or FileExistsError
    ("[Errno 17] File exists"), not a DmixedError; now PathExistsError (still a
    FileExistsError) naming the path and why, before anything is written."""
    fit, _ = res
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "precious.csv").write_text("x\n1\n")
    (tmp_path / "a_file").write_text("x\n")
    before = _listing(tmp_path)
    with pytest.raises(dmixed.PathExistsError) as info:
        fit.save(tmp_path / target)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, dmixed.DmixedError)
    assert needle.format(root=tmp_path) in str(info.value)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("missing", "it does not exist"),
        ("a_file", "it is a file"),
        ("empty", "no estimates.json)"),
    ],
)
def test_load_of_no_results_directory_is_a_dmixed_error_naming_it(tmp_path, target, why):
    """``dmixed.load`` of a missing directory raised a bare FileNotFoundError."""
    (tmp_path / "a_file").write_text("x\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(dmixed.PathNotFoundError) as info:
        dmixed.load(tmp_path / target)
    assert isinstance(info.value, FileNotFoundError)
    assert f"{tmp_path / target} is not a dmixed results directory ({why}" in str(info.value)


def test_formula_results_predict_new_data_after_loading(tmp_path):
    df = make_data(n_groups=30, vc_sd=0.5, seed=3)
    df["cat"] = np.where(df.x2 > 0.3, "hi", np.where(df.x2 < -0.3, "lo", "mid"))
    fit = dmixed.mixedlm(
        "y ~ x1 + C(cat, Treatment('mid')) + np.log(w)",
        df,
        groups="g",
        re_formula="1 + x1",
        vc_formula={"sub": "0 + C(sub)"},
    ).fit()
    fit.save(tmp_path / "r")
    back = dmixed.load(tmp_path / "r")
    new = df.drop(columns=["y"]).iloc[:25]  # no response needed to predict
    for include_random in (False, True):
        np.testing.assert_allclose(
            back.predict(new, include_random=include_random),
            fit.predict(new, include_random=include_random),
            rtol=1e-13,
        )
    np.testing.assert_allclose(fit.predict(df, include_random=True), fit.fittedvalues, rtol=1e-12)
    # a group the fit never saw gets the population prediction (warned)
    unseen = new.assign(g=10_000)
    with pytest.warns(dmixed.UnseenGroupsWarning, match="25 of 25 rows"):
        np.testing.assert_allclose(
            back.predict(unseen, include_random=True), back.predict(unseen), rtol=1e-13
        )
    # a fixed-effect level the fit never saw is an error naming the column
    with pytest.raises(ValueError, match="cat"):
        back.predict(new.assign(cat="unknown"))


def test_state_round_trip(tmp_path, res):
    fit, _ = res
    state = fit.to_state()
    save_state(state, tmp_path / "s", "text")
    assert (tmp_path / "s" / "summary.txt").read_text() == "text"
    back = load_state(tmp_path / "s")
    assert set(vars(back)) == set(vars(state))
    for name, value in vars(state).items():
        if name in MEMORY_ONLY:  # prediction's digits, not saved
            assert getattr(back, name) is None, name
        elif name == "history":
            assert back.history == json.loads(json.dumps(value))
        elif name == "vc_slot_cols":
            for a, b in zip(back.vc_slot_cols, value, strict=True):
                np.testing.assert_array_equal(a, b)
        elif name == "blup":  # ragged after a fit with a structured component
            np.testing.assert_array_equal(back.blup, np.asarray(value))
        elif isinstance(value, np.ndarray) and name != "blup_cov":
            np.testing.assert_array_equal(getattr(back, name), value, err_msg=name)
        elif isinstance(value, float) and np.isnan(value):  # e.g. final_rise not computed
            assert np.isnan(getattr(back, name)), name
        elif name != "blup_cov":
            assert getattr(back, name) == value, name
    np.testing.assert_array_equal(back.blup_cov, np.asarray(state.blup_cov))


def test_damaged_directory_is_a_checkpoint_error(tmp_path, res):
    fit, _ = res
    fit.save(tmp_path / "out")
    table = tmp_path / "out" / "random_effects.parquet"
    pd.read_parquet(table).iloc[1:].to_parquet(table, index=False)
    with pytest.raises(CheckpointError, match="29 groups in random_effects.parquet, 30"):
        dmixed.load(tmp_path / "out")
    fit.save(tmp_path / "out")
    _edit_estimates(tmp_path / "out", lambda doc: doc["estimates"].pop("llf"))
    with pytest.raises(CheckpointError, match="damaged dmixed results directory: KeyError"):
        dmixed.load(tmp_path / "out")


def test_row_digests_load_as_saved_and_a_damaged_record_is_refused(tmp_path, res):
    """The row digests the likelihood-ratio tests compare load as saved; a record that
    is not a mapping of names to digests is a damaged directory, not a later error."""
    fit, _ = res
    fit.save(tmp_path / "out")
    assert fit.row_digests and dmixed.load(tmp_path / "out").row_digests == fit.row_digests
    _edit_estimates(tmp_path / "out", lambda doc: doc["model"].update(row_digests=["y"]))
    with pytest.raises(CheckpointError, match="row_digests in estimates.json is a list"):
        dmixed.load(tmp_path / "out")


def test_the_optimizer_record_is_saved_and_older_directories_load(tmp_path, res):
    """``res.optimizer`` (settings, start, outcome, log) survives saving; a directory
    written before the record's settings were saved loads with the default settings."""
    fit, _ = res
    fit.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out").optimizer
    rec = fit.optimizer
    assert back.settings() == rec.settings()
    np.testing.assert_array_equal(back.initial, rec.initial)
    np.testing.assert_array_equal(back.packed, fit.packed_params)
    assert (back.initial_llf, back.llf, back.grad_norm) == (
        rec.initial_llf,
        fit.llf,
        rec.grad_norm,
    )
    assert (back.methods, back.n_iter, back.n_evals) == (
        fit.optimizer_methods,
        fit.n_iter,
        fit.n_evals,
    )
    assert rec.initial_llf <= rec.llf
    as_numbered(tmp_path / "out", 3)  # as dmixed wrote it then
    doc_path = tmp_path / "out" / "estimates.json"
    doc = json.loads(doc_path.read_text())
    for key in ("optimizer_settings", "initial_params", "initial_llf", "grad_norm"):
        del doc["fit"][key]
    _before_sha256(doc)  # nor its own sha256, nor the keys added after it
    doc_path.write_text(json.dumps(doc))
    old = dmixed.load(tmp_path / "out")
    assert old.optimizer.settings() == dmixed.fit.summary.DEFAULTS.settings()
    assert old.optimizer.initial.size == 0 and np.isnan(old.optimizer.initial_llf)
    assert old.llf == fit.llf


def test_iterations_made_are_counted_as_the_fit_counted_them_in_older_directories(tmp_path, res):
    """``n_iter`` counted the fit log's final entry (the point the iterations ended at) as
    one more iteration; a directory written so loads with the iterations made."""
    fit, _ = res
    assert fit.n_iter == len(fit.fit_history) - 1 == fit.fit_history[-1]["iteration"]
    fit.save(tmp_path / "out")
    assert dmixed.load(tmp_path / "out").n_iter == fit.n_iter

    def as_written_before(doc):
        doc["fit"]["n_iter"] = len(doc["fit"]["history"])
        doc["fit"]["history"][-1]["iteration"] = len(doc["fit"]["history"])

    _edit_estimates(tmp_path / "out", as_written_before)
    old = dmixed.load(tmp_path / "out")
    assert old.n_iter == old.optimizer.n_iter == fit.n_iter
    assert old.fit_history[-1]["iteration"] == fit.n_iter
    assert old.fit_history == fit.fit_history
    assert old.llf == fit.llf


def test_a_corrupt_estimates_file_is_a_checkpoint_error(tmp_path, res):
    fit, _ = res
    fit.save(tmp_path / "out")
    (tmp_path / "out" / "estimates.json").write_text('{"format": "dmixed-res')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        dmixed.load(tmp_path / "out")


def _edit_estimates(out: Path, change, reseal: bool = True) -> None:
    """Change estimates.json; ``reseal``: record the changed document's own sha256, as
    an edit that knows the format would (so that the checks behind it are reached)."""
    doc = json.loads((out / "estimates.json").read_text())
    change(doc)
    if reseal:
        doc[ESTIMATES_SHA256] = estimates_sha256(doc)
    (out / "estimates.json").write_text(json.dumps(doc))


def test_an_edited_estimates_file_is_refused_by_its_own_sha256(tmp_path, res):
    """An edited llf and fixed effect were shown and loaded (only the tables had a
    sha256); a directory written before the key was added loads unverified."""
    fit, _ = res
    fit.save(tmp_path / "out")
    as_numbered(tmp_path / "out", 3)  # as dmixed wrote it then

    def edit(doc):
        doc["estimates"]["llf"] = -1.0

    _edit_estimates(tmp_path / "out", edit, reseal=False)
    with pytest.raises(CheckpointError, match=r"estimates.json was changed or damaged"):
        dmixed.load(tmp_path / "out")
    # a directory written before the key (format < 4, no fit key added after it)
    _edit_estimates(tmp_path / "out", _before_sha256, reseal=False)
    assert dmixed.load(tmp_path / "out").llf == -1.0


def _before_sha256(doc: dict) -> None:
    """``doc`` as dmixed wrote it before it recorded its own sha256."""
    doc.pop(ESTIMATES_SHA256)
    doc["fit"].pop("resolution_edge")
    doc["fit"].pop("final_rise")


def test_an_estimates_file_without_its_sha256_is_refused_naming_it(tmp_path, res):
    """Deleting ``estimates_sha256`` turned its check off: an edited estimate was shown
    with exit 0.  Every dmixed that wrote such a document recorded it."""
    fit, _ = res
    out = tmp_path / "out"
    fit.save(out)

    def edit(doc):
        doc.pop(ESTIMATES_SHA256)
        doc["estimates"]["llf"] = -1.0

    _edit_estimates(out, edit, reseal=False)
    with pytest.raises(CheckpointError, match=r"estimates\.json has no estimates_sha256") as info:
        dmixed.load(out)
    assert str(out / "estimates.json") in str(info.value)
    # a format written only since the sha256 was, without the fit keys added later
    _edit_estimates(
        out, lambda doc: (_before_sha256_keys(doc), doc.update(format_version=4)), False
    )
    with pytest.raises(CheckpointError, match="has no estimates_sha256"):
        dmixed.load(out)


def _before_sha256_keys(doc: dict) -> None:
    doc["fit"].pop("resolution_edge", None)
    doc["fit"].pop("final_rise", None)


@pytest.mark.parametrize(
    "text, why",
    [
        ('"format_version": ' + "1" * 5000, "a number of more digits"),
        ('"deep": ' + "[" * 100_000 + "]" * 100_000, "nested deeper"),
        ('"format_version": "2"', "format_version is '2', not a whole number"),
    ],
    ids=["bigint", "deep", "text"],
)
def test_an_estimates_file_json_cannot_hold_is_a_checkpoint_error_naming_it(
    tmp_path, res, text, why
):
    """A 5000-digit integer or 100000 nested arrays ended the command as a bug in dmixed
    (ValueError, RecursionError)."""
    fit, _ = res
    out = tmp_path / "out"
    fit.save(out)
    file = out / "estimates.json"
    # in place of the one format_version (or before it: the deep arrays)
    key = '"format_version": '
    kept = "" if text.startswith(key) else key
    file.write_text(
        re.sub(
            key + r"\d+",
            lambda _: text + (", " + kept + "1" if kept else ""),
            file.read_text(),
            count=1,
        )
    )
    with pytest.raises(CheckpointError, match=why) as info:
        dmixed.load(out)
    assert str(file) in str(info.value) and len(str(info.value)) < 1000


def _drop_last(key: str):
    return lambda doc: doc["estimates"].update({key: doc["estimates"][key][:-1]})


WRONG_SHAPES = {
    # name: (edit of estimates.json, what the error must say)
    "params": (_drop_last("params"), r"params of shape \(6,\), \(7,\) expected"),
    "param_names": (_drop_last("param_names"), r"param_names of shape \(6,\), \(7,\)"),
    "cov_params": (_drop_last("cov_params"), r"cov_params of shape \(6, 7\), \(7, 7\)"),
    "a_inv": (_drop_last("a_inv"), r"a_inv of shape \(2, 3\), \(3, 3\)"),
    "packed_params": (_drop_last("packed_params"), r"packed_params of shape \(3,\), \(4,\)"),
    "exog_names": (
        lambda doc: doc["model"].update(exog_names=doc["model"]["exog_names"][:-1]),
        r"fe_params of shape \(2,\), \(3,\) expected",
    ),
    "nobs": (
        lambda doc: doc["estimates"].update(nobs=doc["estimates"]["nobs"] + 1),
        "group sizes summing to",
    ),
    "vc_slot_widths": (
        lambda doc: doc["estimates"].update(vc_slot_widths=[9]),
        "damaged dmixed results directory: (KeyError|ValueError)",  # padded | ragged
    ),
}


def _set(key: str, value):
    return lambda doc: doc["estimates"].update({key: value})


WRONG_VALUES = {
    "scale-text": (_set("scale", "abc"), "scale is 'abc', not a number"),
    "scale-null": (_set("scale", None), "scale is None, not a number"),
    "scale-negative": (_set("scale", -5.0), "scale is -5.0"),
    "llf-text": (_set("llf", "x"), "llf is 'x', not a number"),
}


@pytest.mark.parametrize("case", sorted(WRONG_VALUES))
def test_results_with_values_no_fit_writes_are_refused_on_load(tmp_path, res, case):
    """A tester's edits of estimates.json that loaded (a negative scale) or failed
    later with exit 1 (a scale of text)."""
    fit, _ = res
    fit.save(tmp_path / "out")
    change, message = WRONG_VALUES[case]
    _edit_estimates(tmp_path / "out", change)
    with pytest.raises(CheckpointError, match=message):
        dmixed.load(tmp_path / "out")


@pytest.mark.parametrize("case", sorted(WRONG_SHAPES))
def test_results_with_wrong_shapes_are_refused_on_load(tmp_path, res, case):
    """``dmixed.load`` used to accept these and fail later, in ``summary()``."""
    fit, _ = res
    fit.save(tmp_path / "out")
    change, message = WRONG_SHAPES[case]
    _edit_estimates(tmp_path / "out", change)
    with pytest.raises(CheckpointError, match=message):
        dmixed.load(tmp_path / "out")


def test_a_changed_random_effects_file_is_refused_by_its_sha256(tmp_path, res):
    fit, _ = res
    fit.save(tmp_path / "out")
    doc = json.loads((tmp_path / "out/estimates.json").read_text())
    assert len(doc["files"]["random_effects.parquet"]["sha256"]) == 64
    table = tmp_path / "out/random_effects.parquet"
    frame = pd.read_parquet(table)
    first = next(c for c in frame.columns if c.startswith("re["))
    frame.assign(**{first: 2 * frame[first]}).to_parquet(table, index=False)
    with pytest.raises(CheckpointError, match="random_effects.parquet was changed or damaged"):
        dmixed.load(tmp_path / "out")
    table.unlink()
    with pytest.raises(CheckpointError, match="random_effects.parquet cannot be read"):
        dmixed.load(tmp_path / "out")


def _odd_named_fit():
    """A fit whose random effects are named with a comma, brackets, a quote and the name
    of the table's own ``group`` column."""
    rng = np.random.default_rng(3)
    n, k = 600, 40
    g = rng.integers(0, k, n)
    z = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    exog_re = pd.DataFrame(z, columns=["a,b", "[x]", 'q"t', "group"])
    y = (z * rng.normal(size=(k, 4))[g]).sum(axis=1) + rng.normal(size=n)
    exog = pd.DataFrame({"const": np.ones(n), "x": rng.normal(size=n)})
    return MixedLM(y, exog, g, exog_re=exog_re).fit()


def test_saved_random_effects_are_named_by_the_effects(tmp_path):
    """``random_effects.parquet`` numbered its columns (``re[0]``, ``cov[1,0]``): a user
    reading it saw no names.  They are the effects' names, as ``random_effects`` labels
    them, each a JSON string, so names with commas, brackets or quotes (or the name
    ``group``) give columns that differ and read back exactly."""
    fit = _odd_named_fit()
    fit.save(tmp_path / "out")
    table = pd.read_parquet(tmp_path / "out" / "random_effects.parquet")
    q = ['"a,b"', '"[x]"', '"q\\"t"', '"group"']
    assert list(table.columns) == [
        "group",
        "group_size",
        *(f"re[{a}]" for a in q),
        *(f"cov[{q[a]},{q[b]}]" for a in range(4) for b in range(a + 1)),
    ]
    groups = table["group"].tolist()
    np.testing.assert_array_equal(
        table['re["[x]"]'], [fit.random_effects[g]["[x]"] for g in groups]
    )
    np.testing.assert_array_equal(
        table['cov["q\\"t","a,b"]'], [fit.random_effects_cov[g].loc['q"t', "a,b"] for g in groups]
    )
    back = dmixed.load(tmp_path / "out")
    np.testing.assert_array_equal(back.to_state().blup, fit.to_state().blup)
    np.testing.assert_array_equal(back.to_state().blup_cov, fit.to_state().blup_cov)


def test_directories_of_numbered_columns_still_load_with_the_same_numbers(tmp_path, res):
    """A directory written before the columns were named (``re[0]``, ``cov[1,0]``,
    ``vc_column[0][0]``; formats 1 to 6) loads as before: the same arrays, bit for bit."""
    fit, _ = res
    for version, out in ((1, tmp_path / "padded"), (6, tmp_path / "odd")):
        source = fit if version == 1 else _odd_named_fit()
        source.save(out)
        as_numbered(out, version)
        table = pd.read_parquet(out / "random_effects.parquet")
        assert "re[0]" in table.columns and not any('"' in c for c in table.columns)
        back = dmixed.load(out).to_state()
        state = source.to_state()
        for name in ("blup", "blup_cov"):
            np.testing.assert_array_equal(getattr(back, name), getattr(state, name))
        for a, b in zip(back.vc_slot_cols, state.vc_slot_cols, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_directory_whose_named_columns_are_missing_is_refused(tmp_path, res):
    """Numbered columns in a directory of format 7 (which names them) are a damaged
    directory, named, not numbers read by position."""
    fit, _ = res
    fit.save(tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "estimates.json").read_text())
    as_numbered(tmp_path / "out", doc["format_version"])
    with pytest.raises(CheckpointError, match=r"damaged dmixed results directory: KeyError"):
        dmixed.load(tmp_path / "out")


def test_results_saved_before_digests_were_recorded_still_load(tmp_path, res):
    fit, _ = res
    fit.save(tmp_path / "out")
    _edit_estimates(tmp_path / "out", lambda doc: doc.pop("files"))
    assert dmixed.load(tmp_path / "out").llf == fit.llf


def test_a_fit_with_held_parameters_keeps_its_information_criteria(tmp_path):
    """Parameters held by ``fit(free=...)`` are not counted by aic/bic (statsmodels), and
    a saved result keeps that, with their zero standard errors."""
    df = make_data(n_groups=30, seed=5)
    endog, exog, exog_re, groups = design(df)
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    fit = model.fit(reml=False, start_params=[1.0, 0.0, 1.0], free=[1, 0, 1])
    assert fit.df_modelwc == len(fit.params)
    assert fit.aic == pytest.approx(-2 * (fit.llf - len(fit.params)), rel=1e-14)
    assert fit.bse[exog.shape[1] + 1] == 0
    fit.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    assert (back.aic, back.bic, back.df_modelwc) == (fit.aic, fit.bic, fit.df_modelwc)
    np.testing.assert_array_equal(back.bse, fit.bse)


@pytest.mark.parametrize("factor", [1.0, 1e200, 1e-200])
def test_results_of_weights_in_any_unit_round_trip(tmp_path, factor):
    """Weights near 1e±200: ``cov_params``' covariance entries (about 1e∓400) under- or
    overflow, but the covariance of ``[β, s_w θ]`` and the weights' scale are saved
    (format version 4, which older versions refuse), so the loaded standard errors are
    the fit's; weights near 1 are saved as before, without them."""
    df = make_data(n_groups=30, vc_sd=0.5, seed=5)
    df["w"] = factor * np.random.default_rng(5).uniform(0.5, 2.0, len(df))
    fit = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1", weights="w").fit()
    fit.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    estimates = json.loads((tmp_path / "out" / "estimates.json").read_text())
    assert estimates["format_version"] == dmixed.io.results_dir.NAMED_COLUMNS_FORMAT_VERSION == 7
    if factor == 1.0:
        assert "cov_params_weighted" not in estimates["estimates"]
    else:
        assert estimates["estimates"]["weight_scale"] == fit.to_state().weight_scale != 1
    for what in ("bse", "bse_re", "bse_fe", "fe_params"):
        values = np.asarray(getattr(fit, what))
        assert np.isfinite(values).all() and (values != 0).all(), what
        np.testing.assert_array_equal(np.asarray(getattr(back, what)), values)
    assert back.llf == fit.llf and back.scale == fit.scale


#: attributes of results a reload does not have as the fit has them, by design: the
#: model and its data (None, or the fitted rows), the fit's keyword arguments (empty),
#: and the optimizer's record (an object compared in its own test above)
_NOT_RELOADED = {
    "model",
    "fitted_model",
    "fittedvalues",
    "resid",
    "fit_options",
    "optimizer",
    "hessv",  # the Hessian of the model at the estimates: loaded results have no model
}
#: methods of no argument compared too
_RELOADED_CALLS = (
    "cov_params",
    "conf_int",
    "random_effects_frame",
    "random_effects_var",
    "varcorr",
    "summary_frame",
)


def _state(obj) -> dict:
    """What a saved object holds: its pickled state where its class says what that is
    (a spec leaves out the caches it fills as it is used), else its attributes."""
    if type(obj).__getstate__ is not object.__getstate__:
        return obj.__getstate__()
    return vars(obj)


def _assert_same(got, want, name: str) -> None:
    """``got`` is ``want``'s type and holds the same values bit for bit."""
    assert type(got) is type(want), f"{name}: {type(got).__name__}, {type(want).__name__}"
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True, obj=name)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
    elif hasattr(want, "keys") and hasattr(want, "__getitem__"):  # by group
        assert list(got.keys()) == list(want.keys()), name
        for key in want.keys():
            _assert_same(got[key], want[key], f"{name}[{key!r}]")
    elif dataclasses.is_dataclass(want) or isinstance(want, dmixed.MixedLMParams):
        assert _state(got).keys() == _state(want).keys(), name
        for key, value in _state(want).items():
            _assert_same(getattr(got, key), value, f"{name}.{key}")
    elif isinstance(want, float) and np.isnan(want):
        assert np.isnan(got), name
    else:
        assert got == want, name


@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("kind", ["arrays", "formula"])
def test_reloaded_results_have_every_attribute_of_the_fit(tmp_path, kind, q):
    """Every attribute (and method of no argument) of loaded results has the type and
    the bytes of the fitted results': ndarrays for a model of ndarrays, pandas objects
    by name for a formula, and the random effects' covariances bit for bit."""
    rng = np.random.default_rng(40 + q)
    groups = np.repeat(np.arange(25), rng.integers(4, 13, 25))
    exog = np.column_stack([np.ones(groups.size), rng.normal(size=(groups.size, 3))])
    effects = rng.normal(size=(25, 3)) * [1.0, 0.5, 0.4]
    endog = exog @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=groups.size)
    endog += (exog[:, :q] * effects[groups, :q]).sum(axis=1)
    df = pd.DataFrame({"y": endog, "x1": exog[:, 1], "x2": exog[:, 2], "x3": exog[:, 3]})
    df["g"] = groups
    re = ["1", "1 + x1", "1 + x1 + x2"][q - 1]
    if kind == "arrays":
        model = MixedLM(endog, exog, groups, exog_re=exog[:, :q].copy())
    else:
        model = dmixed.mixedlm("y ~ x1 + x2 + x3", df, groups="g", re_formula=re)
    fit = model.fit()
    fit.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    # names statsmodels has and dmixed refuses (NotOfferedError, an AttributeError) are
    # listed by dir() but are no attributes: hasattr is False for them
    names = [
        n for n in dir(fit) if not n.startswith("_") and n not in _NOT_RELOADED and hasattr(fit, n)
    ]
    for name in names:
        want = getattr(fit, name)
        if not callable(want) or isinstance(want, (np.ndarray, pd.Series, pd.DataFrame)):
            _assert_same(getattr(back, name), want, name)
    for name in _RELOADED_CALLS:
        _assert_same(getattr(back, name)(), getattr(fit, name)(), f"{name}()")


#: tuple group keys of each kind of parts: group i's key
TUPLE_KEYS = {
    "ints": lambda i: (i % 4, i),
    "floats": lambda i: (i / 4, float(i)),  # 2.0 stays a float
    "text": lambda i: (f"a{i % 4}", f"b{i}"),
    "mixed": lambda i: (i, f"s{i % 4}", i / 2, i % 3 == 0, None),
    "numpy": lambda i: (np.int64(i), np.float64(i / 2), np.bool_(i % 2)),
}


def _tuple_keyed_fit(keys):
    df = make_data(n_groups=12, seed=6)
    labels = np.empty(len(df), dtype=object)
    labels[:] = [keys(int(g)) for g in df.g]
    df["g"] = labels
    return df, dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1").fit()


def _typed(labels) -> list:
    return [tuple((type(p).__name__, p) for p in key) for key in labels]


@pytest.mark.parametrize("kind", sorted(TUPLE_KEYS))
def test_tuple_labels_round_trip_with_their_parts_types(tmp_path, kind):
    """Tuple group labels: mixed parts raised pyarrow's ArrowInvalid, and tuples of one
    type came back as arrays (lookups by the tuple failed).  They are saved as the JSON
    of their parts (format 5): the labels, their parts' types, lookups and predictions
    come back as the fit had them (numpy scalars as their Python values)."""
    df, fit = _tuple_keyed_fit(TUPLE_KEYS[kind])
    fit.save(tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "estimates.json").read_text())
    assert doc["format_version"] == dmixed.io.results_dir.NAMED_COLUMNS_FORMAT_VERSION == 7
    assert doc["estimates"]["group_label_form"] == "tuple-json"
    back = dmixed.load(tmp_path / "r")
    expected = [
        tuple(p.item() if isinstance(p, np.generic) else p for p in k) for k in fit.group_labels
    ]
    assert _typed(back.group_labels) == _typed(expected)
    for key in list(fit.random_effects)[:3]:
        np.testing.assert_array_equal(back.random_effects[key], fit.random_effects[key])
        pd.testing.assert_frame_equal(back.random_effects_cov[key], fit.random_effects_cov[key])
    new = df.drop(columns=["y"]).iloc[:20]
    np.testing.assert_array_equal(
        back.predict(new, include_random=True), fit.predict(new, include_random=True)
    )
    back.save(tmp_path / "again")  # loaded labels save again
    assert _typed(dmixed.load(tmp_path / "again").group_labels) == _typed(expected)


@pytest.mark.parametrize(
    "part, why",
    [
        (Decimal("1.5"), "holding a part of type Decimal"),
        ((1, 2), "holding a nested tuple"),
        (float("nan"), "holding NaN"),
        (b"b", "holding a part of type bytes"),
    ],
    ids=["Decimal", "nested", "NaN", "bytes"],
)
def test_tuple_labels_a_directory_cannot_hold_are_refused_before_writing(tmp_path, part, why):
    """Tuples holding a part JSON does not hold exactly are refused at save, naming the
    labels' kind and what they hold, before anything is written."""
    _, fit = _tuple_keyed_fit(lambda i: (i, part) if i == 0 else (i, 0.5))
    with pytest.raises(dmixed.DataError, match=rf"group labels are tuples \(such as .*\) {why}"):
        fit.save(tmp_path / "r")
    assert os.listdir(tmp_path) == []  # no directory, no temporary


def test_labels_parquet_does_not_hold_are_refused_before_writing(tmp_path):
    """Labels of a type Parquet does not hold raised pyarrow's own error from inside the
    save: refused naming their type, before anything is written."""
    _, fit = _tuple_keyed_fit(lambda i: (i,))
    state = fit.to_state()
    labels = np.empty(len(state.group_labels), dtype=object)
    labels[:] = [Opaque(i) for i in range(len(labels))]
    odd = dataclasses.replace(state, group_labels=labels)
    with pytest.raises(dmixed.DataError, match=r"group labels \(Opaque, such as .*\) cannot be"):
        save_state(odd, tmp_path / "r", "")
    assert os.listdir(tmp_path) == []


class Opaque:
    """A hashable label that is neither text nor a number (Parquet holds no such value)."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __hash__(self) -> int:
        return self.i


def test_labels_saved_in_a_form_this_version_does_not_read_are_refused(tmp_path):
    """A ``group_label_form`` this dmixed does not know (a newer writer's) is refused as a
    damaged directory, never read as labels of text."""
    _, fit = _tuple_keyed_fit(TUPLE_KEYS["ints"])
    fit.save(tmp_path / "r")
    file = tmp_path / "r" / "estimates.json"
    doc = json.loads(file.read_text())
    doc["estimates"]["group_label_form"] = "tuple-msgpack"
    doc[ESTIMATES_SHA256] = estimates_sha256(doc)
    file.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="'tuple-msgpack', a form this dmixed does not read"):
        dmixed.load(tmp_path / "r")


def test_tuple_labels_of_directories_before_format_5_load_as_tuples(tmp_path):
    """Directories written before tuple labels had a form of their own hold each tuple
    as a Parquet list cell, which read back as an array: lookups by the tuple failed
    (``KeyError``, or ``TypeError: unhashable``).  They are tuples again."""
    keys = np.empty(3, dtype=object)
    keys[:] = [(0, 1), (0, 2), (1, 1)]
    pd.DataFrame({columns.GROUP: keys, "x": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "t.parquet")
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert isinstance(table[columns.GROUP].iloc[0], np.ndarray)  # as pyarrow reads them
    labels = dmixed.io.results_dir.loaded_labels(table, {})
    assert list(labels) == [(0, 1), (0, 2), (1, 1)]
    assert all(type(p) is int for key in labels for p in key)
    assert dict(zip(labels, range(3), strict=True))[(0, 2)] == 1


def _named_frame() -> pd.DataFrame:
    rng = np.random.default_rng(52)
    n, k = 300, 20
    g = rng.integers(0, k, n)
    return pd.DataFrame(
        {
            "y": rng.normal(size=k)[g] + rng.normal(size=n),
            "x1": rng.normal(size=n),
            "my x": rng.normal(size=n),
            "a": rng.choice(["lo", "mid", "hi"], n),
            "g": g,
        }
    )


@pytest.mark.parametrize(
    ("formula", "version"),
    [
        ("y ~ x1 + my_x", 1),
        ("y ~ C(a) + x1", 1),  # (statsmodels' order is formulaic's here)
        ("y ~ x1 + C(a)", 6),
        ('y ~ x1 + Q("my x")', 6),  # (formulaic spells it Q('my x'))
    ],
)
def test_names_earlier_versions_rebuild_otherwise_are_saved_as_a_newer_format(
    tmp_path, monkeypatch, formula, version
):
    """Columns in statsmodels' order where formulaic's differs, or a text literal spelled
    as the formula writes it, were saved in a format that earlier versions read and
    then failed on with a message about unrelated contrasts: such results are format
    6 (or later: every directory is format 7 since it names its random effects' columns),
    which those versions refuse as written by a newer dmixed."""
    df = _named_frame().rename(columns={"my x": "my_x"}) if "my_x" in formula else _named_frame()
    fit = dmixed.mixedlm(formula, df, groups="g").fit()
    fit.save(tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "estimates.json").read_text())
    assert doc["format_version"] == dmixed.io.results_dir.NAMED_COLUMNS_FORMAT_VERSION >= 6
    as_numbered(tmp_path / "r", version)  # as format 6 wrote it
    back = dmixed.load(tmp_path / "r")
    assert list(back.fe_params.index) == list(fit.fe_params.index)
    np.testing.assert_array_equal(back.fe_params.to_numpy(), fit.fe_params.to_numpy())
    monkeypatch.setattr(dmixed.io.results_dir, "FORMAT_VERSION", 5)  # an earlier reader
    if version == 6:
        with pytest.raises(CheckpointError, match=r"estimates.json was written by a newer"):
            dmixed.load(tmp_path / "r")
    else:
        dmixed.load(tmp_path / "r")


def test_a_vc_formula_in_statsmodels_order_is_saved_as_a_newer_format(tmp_path, monkeypatch):
    """A VC formula whose columns statsmodels orders otherwise than formulaic
    (``0 + x1 + C(a)``: ``C(a)`` first) is saved as format 6, which earlier versions
    refuse as written by a newer dmixed rather than failing on the names."""
    vc = {"m": "0 + x1 + C(a)"}
    fit = dmixed.mixedlm(
        "y ~ my_x", _named_frame().rename(columns={"my x": "my_x"}), groups="g", vc_formula=vc
    ).fit()
    assert list(fit.model.spec.vc_column_names[0]) == ["C(a)[hi]", "C(a)[lo]", "C(a)[mid]", "x1"]
    fit.save(tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "estimates.json").read_text())
    assert doc["format_version"] == dmixed.io.results_dir.NAMED_COLUMNS_FORMAT_VERSION
    back = dmixed.load(tmp_path / "r")
    np.testing.assert_array_equal(back.vcomp, fit.vcomp)
    monkeypatch.setattr(dmixed.io.results_dir, "FORMAT_VERSION", 5)  # an earlier reader
    with pytest.raises(CheckpointError, match=r"estimates.json was written by a newer"):
        dmixed.load(tmp_path / "r")


def test_a_saved_spec_not_rebuilt_names_the_file_the_formula_and_why(tmp_path):
    fit = dmixed.mixedlm("y ~ x1 + C(a)", _named_frame(), groups="g").fit()
    fit.save(tmp_path / "r")

    def reorder(doc):
        names = doc["model"]["spec"]["exog_names"]
        doc["model"]["spec"]["exog_names"] = [names[0], names[-1], *names[1:-1]]

    _edit_estimates(tmp_path / "r", reorder)
    with pytest.raises(CheckpointError) as err:
        dmixed.load(tmp_path / "r")
    words = str(err.value)
    assert str(tmp_path / "r" / "estimates.json") in words
    assert "of formula 'y ~ x1 + C(a)', the same columns in another order" in words

    def rename(doc):
        doc["model"]["spec"]["exog_names"][-1] = "x9"

    fit.save(tmp_path / "s")
    _edit_estimates(tmp_path / "s", rename)
    with pytest.raises(CheckpointError, match=r"saved 'x9', which it does not rebuild; it re"):
        dmixed.load(tmp_path / "s")


def test_a_source_tree_not_installed_saves_and_names_its_version(
    tmp_path, res, monkeypatch, capsys
):
    """Run from a source tree on the path (no package record), a fit still saves, and the
    saved versions and ``dmixed --version`` say the version is unknown, not a made-up
    number (``importlib.metadata`` raised ``PackageNotFoundError`` here before)."""
    import importlib.metadata

    from dmixed.job import build_parser

    real = importlib.metadata.version

    def version(name):
        if name == "dmixed":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.delattr(dmixed, "__version__", raising=False)  # the cached value
    fit, _ = res
    fit.save(tmp_path / "out")
    estimates = json.loads((tmp_path / "out" / "estimates.json").read_text())
    assert estimates["versions"]["dmixed"] == "unknown (not installed)"
    assert dmixed.__version__ == "unknown (not installed)"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == "dmixed unknown (not installed)"
    monkeypatch.delattr(dmixed, "__version__", raising=False)


def test_results_saved_naming_a_one_column_spline_with_its_index_still_load(tmp_path):
    """Results saved when a spline of one column was named ``bs(x, df=1, degree=1)[0]``
    (it is now ``bs(x, df=1, degree=1)``, as patsy and statsmodels name it) load under
    the names they were saved under, and predict as they did."""
    df = _named_frame()
    fit = dmixed.mixedlm(
        "y ~ bs(x1, df=1, degree=1) + my_x", df.rename(columns={"my x": "my_x"}), groups="g"
    ).fit()
    name = "bs(x1, df=1, degree=1)"
    assert list(fit.fe_params.index) == ["Intercept", name, "my_x"]
    fit.save(tmp_path / "r")

    def earlier(doc: dict) -> None:  # the names as those versions saved them
        def old(text: str) -> str:
            return ":".join(f + "[0]" if f == name else f for f in text.split(":"))

        def respelled(node, under_state: bool = False):
            if isinstance(node, dict):
                return {
                    (k if under_state else old(k)): respelled(v, under_state or k == "stateful")
                    for k, v in node.items()
                }
            if isinstance(node, list):
                return [respelled(v, under_state) for v in node]
            return old(node) if isinstance(node, str) and not under_state else node

        for key in ("model", "estimates"):
            doc[key] = respelled(doc[key])

    _edit_estimates(tmp_path / "r", earlier)
    assert f'"{name}[0]"' in (tmp_path / "r" / "estimates.json").read_text()
    back = dmixed.load(tmp_path / "r")
    assert list(back.fe_params.index) == ["Intercept", f"{name}[0]", "my_x"]
    np.testing.assert_array_equal(back.fe_params.to_numpy(), fit.fe_params.to_numpy())
    rows = df.rename(columns={"my x": "my_x"}).iloc[:25]
    np.testing.assert_array_equal(np.asarray(back.predict(rows)), np.asarray(fit.predict(rows)))


def test_results_of_centres_earlier_versions_refuse_are_a_newer_format(tmp_path, monkeypatch):
    """``0 + C(c) + ts`` with ts near 1.7e9 is read about a centre that versions
    before format 8 refuse as "malformed saved centres": its results are saved as
    format 8, which those versions refuse as written by a newer dmixed; ``ts*C(c)``
    (centred by those versions too) is saved as format 7.  Both load back."""
    rng = np.random.default_rng(4)
    n = 300
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "ts": 1.7e9 + rng.uniform(0, 2e5, n),
            "c": rng.choice(list("abc"), n),
            "g": np.arange(n) % 30,
        }
    )
    for formula, version in [("y ~ 0 + C(c) + ts", 8), ("y ~ ts * C(c)", 7)]:
        fit = dmixed.mixedlm(formula, df, groups="g").fit()
        assert fit.model.spec.centres, formula
        fit.save(tmp_path / str(version))
        doc = json.loads((tmp_path / str(version) / "estimates.json").read_text())
        assert doc["format_version"] == version, formula
        back = dmixed.load(tmp_path / str(version))
        np.testing.assert_array_equal(back.fe_params.to_numpy(), fit.fe_params.to_numpy())
    monkeypatch.setattr(dmixed.io.results_dir, "FORMAT_VERSION", 7)  # an earlier reader
    with pytest.raises(CheckpointError, match=r"estimates.json was written by a newer"):
        dmixed.load(tmp_path / "8")
    dmixed.load(tmp_path / "7")
