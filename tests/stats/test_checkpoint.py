"""Saved statistics (``dmixed/stats/checkpoint.py``): merge by group key, save/load, atomicity.

``merge(stats(A), stats(B))`` must be the statistics of ``A ∪ B`` up to the order of
each group's variance-component slots (merge keeps the slots a group had and appends
new ones; a data pass assigns them afresh).  It is checked three ways: block by block
after putting every group's slots in column order, by the log-likelihood and score at
fixed parameters, and by fitting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmixed import CheckpointError, CheckpointMismatch, DataError, DmixedWarning, PrecisionWarning
from dmixed.design import build_spec
from dmixed.design.centres import constant_weights
from dmixed.engines.local import LocalEngine, statistics_from_arrays
from dmixed.fit.profiled import ProfiledObjective
from dmixed.model import MixedLM
from dmixed.stats import checkpoint
from dmixed.stats.checkpoint import (
    GroupArrays,
    digest,
    expand_inputs,
    input_fingerprint,
    lists_file,
    load_statistics,
    merge,
    read_manifest,
    save_statistics,
)

from .._synth import make_data

FORMULA = "y ~ x1 + x2"
MODELS = {
    # slope + two categorical components + one numeric component, weighted
    "slope+vc": dict(
        re_formula="1 + x1",
        vc_formula={"sub": "0 + C(sub)", "t": "0 + C(t)", "num": "0 + x2"},
        weights="w",
    ),
    # variance components only: no exog_re at all (statsmodels' convention)
    "vc-only": dict(vc_formula={"sub": "0 + C(sub)"}),
    # random intercept, no components
    "intercept": dict(),
}


def _frame(seed: int, n_groups: int = 40, str_keys: bool = False) -> pd.DataFrame:
    df = make_data(n_groups=n_groups, max_size=15, vc_sd=0.6, n_sub=5, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    df["t"] = rng.choice(["u", "v", "w"], size=len(df))
    if str_keys:
        df["g"] = [f"k{v:03d}" for v in df["g"]]
    return df


def _split(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random rows to A and B: some groups only in A, some only in B, the others in both
    (so a shared group can have subgroups, i.e. VC columns, in only one half)."""
    rng = np.random.default_rng(seed)
    groups = df["g"].unique()
    where = dict(zip(groups, rng.choice(["A", "B", "both"], size=len(groups)), strict=True))
    side = df["g"].map(where).to_numpy()
    to_a = np.where(side == "both", rng.random(len(df)) < 0.5, side == "A")
    return df[to_a].reset_index(drop=True), df[~to_a].reset_index(drop=True)


def _spec(df: pd.DataFrame, model: str):
    return build_spec(df, FORMULA, "g", **MODELS[model])


def _stats(spec, frame: pd.DataFrame, like: GroupArrays | None = None) -> GroupArrays:
    """Statistics of ``frame``; in the columns' map of ``like`` when given (statistics
    to be merged must share it, as ``dmixed update`` does with the saved map)."""
    std = None if like is None else like.columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixedLM.from_spec(spec, frame)
        return GroupArrays.from_statistics(model.statistics(standardization=std))


def _canonical(arrays: GroupArrays, i: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Group i's statistics with its VC slots in (component, column) order, unused
    slots dropped (after checking that they are all zero)."""
    q = arrays.layout.k_re
    keys, coords, offset = [("re", j) for j in range(q)], list(range(q)), q
    unused = []
    for comp, table in enumerate(arrays.slot_cols):
        for s in range(table.shape[1]):
            col = int(table[i, s])
            if col >= 0:
                keys.append((comp, col))
                coords.append(offset + s)
            else:
                unused.append(offset + s)
        offset += table.shape[1]
    assert not np.any(arrays.zz[i][unused]) and not np.any(arrays.zxy[i][unused])
    order = sorted(range(len(keys)), key=lambda k: (str(keys[k][0]), keys[k][1]))
    idx = np.asarray([coords[k] for k in order], dtype=int)
    return [keys[k] for k in order], arrays.zz[i][np.ix_(idx, idx)], arrays.zxy[i][idx]


def assert_same_statistics(got: GroupArrays, want: GroupArrays, rtol: float = 1e-12) -> None:
    assert list(got.labels) == list(want.labels)
    np.testing.assert_array_equal(got.nobs, want.nobs)
    assert got.layout.k_re == want.layout.k_re and got.layout.k_vc == want.layout.k_vc
    assert got.glob.n == want.glob.n
    # centred columns: entries near zero are compared on the matrix's own scale
    xy_scale = np.abs(want.glob.xyxy).max(initial=1.0)
    np.testing.assert_allclose(got.glob.xyxy, want.glob.xyxy, rtol=0, atol=rtol * xy_scale)
    np.testing.assert_allclose(got.glob.sum_log_weights, want.glob.sum_log_weights, rtol=rtol)
    assert (got.glob.within is None) == (want.glob.within is None)
    if want.glob.within is not None:  # the within-group sums merged exactly (Chan)
        w_scale = np.abs(want.glob.within).max(initial=1.0)
        np.testing.assert_allclose(got.glob.within, want.glob.within, rtol=0, atol=rtol * w_scale)
    for i in range(len(want.labels)):
        k_got, zz_got, zxy_got = _canonical(got, i)
        k_want, zz_want, zxy_want = _canonical(want, i)
        assert k_got == k_want, f"group {want.labels[i]}: slots {k_got} != {k_want}"
        scale = max(np.abs(zz_want).max(initial=0), np.abs(zxy_want).max(initial=0), 1.0)
        np.testing.assert_allclose(zz_got, zz_want, rtol=0, atol=rtol * scale)
        np.testing.assert_allclose(zxy_got, zxy_want, rtol=0, atol=rtol * scale)


def _llf_and_score(arrays: GroupArrays, packed: np.ndarray, reml: bool):
    obj = ProfiledObjective(
        LocalEngine(arrays.zz, arrays.zxy), arrays.glob, arrays.layout, reml, use_sqrt=True
    )
    ev = obj.evaluate(packed)
    return ev.llf, ev.score


def _fit(arrays: GroupArrays, spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MixedLM.from_statistics(statistics_from_arrays(arrays), spec).fit()


# --------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_merge_of_two_halves_equals_the_statistics_of_the_whole(model, seed):
    df = _frame(seed, str_keys=seed % 2 == 0)
    a, b = _split(df, seed)
    spec = _spec(df, model)
    whole = _stats(spec, df)
    merged = merge(_stats(spec, a, whole), _stats(spec, b, whole))
    assert_same_statistics(merged, whole)
    # same likelihood and score at fixed parameters, REML and ML
    rng = np.random.default_rng(seed)
    for _ in range(3):
        packed = rng.uniform(0.2, 1.5, whole.layout.n_params)
        for reml in (True, False):
            llf_m, score_m = _llf_and_score(merged, packed, reml)
            llf_w, score_w = _llf_and_score(whole, packed, reml)
            assert llf_m == pytest.approx(llf_w, rel=1e-12)
            np.testing.assert_allclose(score_m, score_w, rtol=1e-9, atol=1e-9 * abs(llf_w))


def test_the_split_exercises_new_groups_and_new_vc_columns_of_old_groups():
    """The data of the merge tests have what makes merge non-trivial."""
    df = _frame(1)
    a, b = _split(df, 1)
    spec = _spec(df, "slope+vc")
    sa = _stats(spec, a)
    sb = _stats(spec, b, sa)
    assert set(sb.labels) - set(sa.labels) and set(sa.labels) - set(sb.labels)
    shared = sorted(set(sa.labels) & set(sb.labels))
    assert shared
    ia = {k: i for i, k in enumerate(sa.labels)}
    ib = {k: i for i, k in enumerate(sb.labels)}
    c = spec.vc_names.index("sub")

    def columns(arrays, i):
        return set(arrays.slot_cols[c][i][arrays.slot_cols[c][i] >= 0])

    new_cols = [g for g in shared if columns(sb, ib[g]) - columns(sa, ia[g])]
    assert new_cols, "some shared group has a subgroup only in B"
    merged = merge(sa, sb)
    assert merged.layout.vc_widths[c] >= max(sa.layout.vc_widths[c], sb.layout.vc_widths[c])
    i = list(merged.labels).index(new_cols[0])
    assert columns(merged, i) == columns(sa, ia[new_cols[0]]) | columns(sb, ib[new_cols[0]])


@pytest.mark.parametrize("model", ["slope+vc", "vc-only"])
def test_fits_from_merged_and_from_whole_statistics_agree(model):
    df = _frame(5)
    a, b = _split(df, 5)
    spec = _spec(df, model)
    whole = _stats(spec, df)
    res_m = _fit(merge(_stats(spec, a, whole), _stats(spec, b, whole)), spec)
    res_w = _fit(whole, spec)
    assert res_m.converged and res_w.converged
    assert res_m.llf == pytest.approx(res_w.llf, rel=1e-10)
    np.testing.assert_allclose(res_m.fe_params, res_w.fe_params, rtol=1e-7)
    np.testing.assert_allclose(res_m.vcomp, res_w.vcomp, rtol=1e-6)


def test_merge_is_symmetric_and_associative():
    df = _frame(6, n_groups=30)
    rng = np.random.default_rng(6)
    part = rng.integers(0, 3, len(df))
    spec = _spec(df, "slope+vc")
    whole = _stats(spec, df)
    p0, p1, p2 = (_stats(spec, df[part == k].reset_index(drop=True), whole) for k in range(3))
    assert_same_statistics(merge(p1, p0), merge(p0, p1))
    assert_same_statistics(merge(merge(p0, p1), p2), whole)
    assert_same_statistics(merge(p2, merge(p1, p0)), whole)


def test_merge_of_disjoint_groups_concatenates_them():
    df = _frame(7)
    spec = _spec(df, "slope+vc")
    a = df[df["g"] < 20].reset_index(drop=True)
    b = df[df["g"] >= 20].reset_index(drop=True)
    whole = _stats(spec, df)
    merged = merge(_stats(spec, b, whole), _stats(spec, a, whole))
    assert list(merged.labels) == sorted(df["g"].unique())
    assert_same_statistics(merged, whole)


def test_merge_refuses_statistics_of_another_model():
    df = _frame(8)
    slope = _stats(_spec(df, "slope+vc"), df)
    intercept = _stats(_spec(df, "intercept"), df)
    with pytest.raises(CheckpointMismatch, match="different model"):
        merge(slope, intercept)
    other_fe = _stats(build_spec(df, "y ~ x1", "g", **MODELS["slope+vc"]), df)
    with pytest.raises(CheckpointMismatch):
        merge(slope, other_fe)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_merge_converts_statistics_in_another_columns_map(model):
    df = _frame(9)
    # columns as real data has them: revenue near 1e6, timestamps near 1.7e9
    df = df.assign(y=df["y"] + 1e6, x1=1.7e9 + 1e3 * df["x1"])
    a, b = _split(df, 9)
    spec = _spec(df, model)
    whole = _stats(spec, df)
    sa, sb = _stats(spec, a), _stats(spec, b)
    assert sa.columns != sb.columns  # each chose its own shifts from its first rows
    merged = merge(sa, sb)
    assert merged.columns == sa.columns
    assert_same_statistics(merged, _stats(spec, df, sa), rtol=1e-11)
    packed = np.random.default_rng(9).uniform(0.2, 1.5, whole.layout.n_params)
    # the same likelihood up to the maps' Jacobian: compare fits instead
    res_m, res_w = _fit(merged, spec), _fit(whole, spec)
    assert res_m.llf == pytest.approx(res_w.llf, rel=1e-10)
    np.testing.assert_allclose(res_m.fe_params, res_w.fe_params, rtol=1e-7)
    del packed


# --------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------


def _assert_round_trip(arrays: GroupArrays, back: GroupArrays) -> None:
    assert list(back.labels) == list(arrays.labels)
    np.testing.assert_array_equal(back.nobs, arrays.nobs)
    # stored as the lower triangle and mirrored on load
    np.testing.assert_array_equal(np.tril(back.zz), np.tril(arrays.zz))
    np.testing.assert_allclose(back.zz, arrays.zz, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(back.zxy, arrays.zxy)
    assert len(back.slot_cols) == len(arrays.slot_cols)
    for t_back, t in zip(back.slot_cols, arrays.slot_cols, strict=True):
        np.testing.assert_array_equal(t_back, t)
    assert back.layout == arrays.layout
    np.testing.assert_array_equal(back.glob.xyxy, arrays.glob.xyxy)
    assert back.glob.n == arrays.glob.n
    assert back.glob.sum_log_weights == arrays.glob.sum_log_weights


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("str_keys", [False, True], ids=["int-keys", "str-keys"])
def test_save_load_round_trip(tmp_path, model, str_keys):
    df = _frame(9, str_keys=str_keys)
    spec = _spec(df, model)
    arrays = _stats(spec, df)
    save_statistics(arrays, tmp_path / "stats", {"digest": "abc", "spec": spec.to_dict()})
    back, manifest = load_statistics(tmp_path / "stats")
    _assert_round_trip(arrays, back)
    assert manifest["format"] == "dmixed-statistics" and manifest["digest"] == "abc"
    assert manifest["n_groups"] == len(arrays.labels)
    assert read_manifest(tmp_path / "stats") == manifest
    llf = _fit(arrays, spec).llf
    assert _fit(back, spec).llf == llf  # the same fit from the saved statistics


def test_save_load_over_several_files(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "GROUPS_PER_FILE", 7)
    df = _frame(10, n_groups=40)
    spec = _spec(df, "slope+vc")
    arrays = _stats(spec, df)
    save_statistics(arrays, tmp_path / "stats", {})
    files = sorted(os.listdir(tmp_path / "stats/groups"))
    assert files == [f"part-{i:05d}.parquet" for i in range(6)]
    back, _ = load_statistics(tmp_path / "stats")
    _assert_round_trip(arrays, back)


def test_a_rewrite_of_statistics_refuses_a_users_file_and_keeps_hidden_ones(tmp_path):
    """Rewriting a statistics directory deleted every file in it (the new data being
    added, notes): refused, naming the file; ``last_fit.json`` and hidden entries are
    not the user's to lose (the first is dmixed's, the second carried)."""
    df = _frame(10, n_groups=12)
    arrays = _stats(_spec(df, "slope+vc"), df)
    d = tmp_path / "stats"
    save_statistics(arrays, d, {})
    (d / "last_fit.json").write_text("{}")
    (d / ".DS_Store").write_bytes(b"finder")
    save_statistics(arrays, d, {})
    assert (d / ".DS_Store").read_bytes() == b"finder"
    (d / "d3.parquet").write_bytes(b"data")
    with pytest.raises(FileExistsError, match=r"holds .*d3\.parquet, which dmixed did not"):
        save_statistics(arrays, d, {})
    assert (d / "d3.parquet").read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == ["stats"]


def test_merged_statistics_round_trip(tmp_path):
    df = _frame(11)
    a, b = _split(df, 11)
    spec = _spec(df, "slope+vc")
    sa = _stats(spec, a)
    merged = merge(sa, _stats(spec, b, sa))
    save_statistics(merged, tmp_path / "s", {})
    back, _ = load_statistics(tmp_path / "s")
    _assert_round_trip(merged, back)
    assert back.columns == merged.columns == sa.columns
    assert not back.columns.is_identity()  # scaled: the map was saved


def test_statistics_of_format_version_1_are_refused_with_a_rebuild_message(tmp_path):
    df = _frame(12)
    spec = _spec(df, "intercept")
    save_statistics(_stats(spec, df), tmp_path / "s", {})
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["standardization"]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format version 1.*rebuild"):
        load_statistics(tmp_path / "s")


def test_read_manifest_refuses_what_is_not_a_statistics_directory(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="not a dmixed statistics directory \\(no manifest.json\\)"
    ):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "dmixed-results"}))
    with pytest.raises(ValueError, match="not a dmixed statistics directory.s manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": "dmixed-statistics", "format_version": 99})
    )
    with pytest.raises(ValueError, match="newer dmixed"):
        read_manifest(tmp_path)


# --------------------------------------------------------------------------------------
# damaged or edited directories: refused naming the file
# --------------------------------------------------------------------------------------


def _edit_manifest(d: Path, change, reseal: bool = False) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    change(manifest)
    if reseal:  # an edit that also rewrites the manifest's own sha256
        manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _edit_part(d: Path, i: int, change) -> None:
    file = d / f"groups/part-{i:05d}.parquet"
    change(pd.read_parquet(file)).to_parquet(file, index=False)


def _scale_zz(frame: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in frame.columns if c.startswith("zz[")]
    return frame.assign(**{c: 2 * frame[c] for c in cols})


def _scale_xyxy(m: dict) -> None:
    m["xyxy"] = [[2 * v for v in row] for row in m["xyxy"]]


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _format_2(m: dict) -> None:
    m["format_version"] = 2
    del m["parts"], m[checkpoint.MANIFEST_SHA256]


DAMAGE = {
    # name: (damage, what the error must say)
    "rows in manifest": (
        lambda d: _edit_manifest(d, lambda m: m.update(n=m["n"] + 10)),
        "manifest.json was changed after dmixed wrote it",
    ),
    "rows in manifest, resealed": (
        lambda d: _edit_manifest(d, lambda m: m.update(n=m["n"] + 10), reseal=True),
        "stats holds damaged statistics: the groups' counts sum to \\d+ rows, the manifest "
        "says \\d+",
    ),
    "cross-products scaled": (
        lambda d: _edit_manifest(d, _scale_xyxy),
        "manifest.json was changed after dmixed wrote it",
    ),
    "cross-products scaled, resealed": (
        lambda d: _edit_manifest(d, _scale_xyxy, reseal=True),
        "per-group cross-products do not add up to \\[X y\\]'\\[X y\\]",
    ),
    "half the rows of a part": (
        lambda d: _edit_part(d, 0, lambda f: f.iloc[: len(f) // 2]),
        "part-00000.parquet holds 3 groups, .*manifest.json says 7",
    ),
    "a part's blocks scaled": (
        lambda d: _edit_part(d, 1, _scale_zz),
        "part-00001.parquet was changed or damaged after dmixed wrote it \\(its sha256",
    ),
    "a part deleted": (
        lambda d: (d / "groups/part-00002.parquet").unlink(),
        "part-00002.parquet is missing \\(1 of the 6 part files",
    ),
    "a part added": (
        lambda d: (d / "groups/part-00009.parquet").write_bytes(
            (d / "groups/part-00001.parquet").read_bytes()
        ),
        "part-00009.parquet is not one of the part files listed",
    ),
    "a part truncated": (
        lambda d: _truncate(d / "groups/part-00003.parquet"),
        "part-00003.parquet cannot be read as Parquet",
    ),
    "manifest truncated": (
        lambda d: _truncate(d / "manifest.json"),
        "manifest.json is not a dmixed statistics directory's manifest.json: not valid JSON",
    ),
    "format version 2": (
        lambda d: _edit_manifest(d, _format_2),
        "format version 2, written without checksums.*rebuild",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_statistics_are_refused_naming_the_file(tmp_path, monkeypatch, damage):
    """Every edit or damage a rerun or ``dmixed update`` used to accept (a changed row
    count, scaled cross-products, a part with half its rows: exit 0, wrong estimates)
    or failed on obscurely (a deleted part: "No objects to concatenate")."""
    monkeypatch.setattr(checkpoint, "GROUPS_PER_FILE", 7)
    df = _frame(10, n_groups=40)
    spec = _spec(df, "slope+vc")
    d = tmp_path / "stats"
    save_statistics(_stats(spec, df), d, {"spec": spec.to_dict()})
    load_statistics(d)  # intact
    change, message = DAMAGE[damage]
    change(d)
    with pytest.raises(CheckpointError, match=message):
        load_statistics(d)


def test_the_manifest_records_every_part_and_its_own_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "GROUPS_PER_FILE", 16)
    df = _frame(10, n_groups=40)
    arrays = _stats(_spec(df, "intercept"), df)
    save_statistics(arrays, tmp_path / "s", {})
    manifest = read_manifest(tmp_path / "s")
    assert manifest["format_version"] == checkpoint.PADDED_FORMAT_VERSION == 3
    assert [p["groups"] for p in manifest["parts"]] == [16, 16, 8]
    assert sum(p["n"] for p in manifest["parts"]) == manifest["n"] == len(df)
    for p in manifest["parts"]:
        data = (tmp_path / "s" / p["file"]).read_bytes()
        assert p["bytes"] == len(data)
        assert p["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest[checkpoint.MANIFEST_SHA256] == checkpoint.manifest_sha256(manifest)


# --------------------------------------------------------------------------------------
# atomic replace
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_statistics():
    df = _frame(12)
    spec = _spec(df, "slope+vc")
    a, _ = _split(df, 12)
    return _stats(spec, df), _stats(spec, a)


def _siblings(path: Path) -> list[str]:
    return sorted(os.listdir(path.parent))


def test_save_replaces_older_statistics_without_leftovers(tmp_path, two_statistics):
    first, second = two_statistics
    save_statistics(first, tmp_path / "stats", {"digest": "first"})
    save_statistics(second, tmp_path / "stats", {"digest": "second"})
    back, manifest = load_statistics(tmp_path / "stats")
    assert manifest["digest"] == "second"
    _assert_round_trip(second, back)
    assert _siblings(tmp_path / "stats") == ["stats"]


def test_save_into_an_empty_directory(tmp_path, two_statistics):
    (tmp_path / "stats").mkdir()
    save_statistics(two_statistics[0], tmp_path / "stats", {})
    assert read_manifest(tmp_path / "stats")["n_groups"] == len(two_statistics[0].labels)


def test_save_never_replaces_a_directory_dmixed_did_not_write(tmp_path, two_statistics):
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats/thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a dmixed statistics directory"):
        save_statistics(two_statistics[0], tmp_path / "stats", {})
    assert (tmp_path / "stats/thesis.tex").read_text() == "precious"
    assert _siblings(tmp_path / "stats") == ["stats"]


def test_failed_save_keeps_the_previous_statistics(tmp_path, two_statistics, monkeypatch):
    first, second = two_statistics
    save_statistics(first, tmp_path / "stats", {"digest": "first"})

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        save_statistics(second, tmp_path / "stats", {"digest": "second"})
    monkeypatch.undo()
    back, manifest = load_statistics(tmp_path / "stats")
    assert manifest["digest"] == "first"
    _assert_round_trip(first, back)
    assert _siblings(tmp_path / "stats") == ["stats"]  # the temporary was removed


def test_interrupted_rename_never_exposes_a_partial_directory(
    tmp_path, two_statistics, monkeypatch
):
    """A failure between moving the old directory away and moving the new one in never
    leaves a partial ``stats``: the old statistics are put back, whole."""
    first, second = two_statistics
    save_statistics(first, tmp_path / "stats", {"digest": "first"})
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the rename of the new directory into place
            raise OSError("killed")
        return real_rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", rename)
    import dmixed.files

    monkeypatch.setattr(dmixed.files.os, "rename", rename)
    with pytest.raises(OSError, match="killed"):
        save_statistics(second, tmp_path / "stats", {"digest": "second"})
    monkeypatch.undo()
    assert read_manifest(tmp_path / "stats")["digest"] == "first"
    assert not [p for p in _siblings(tmp_path / "stats") if p.startswith(".stats.old-")]


KILLED_WRITER = """
import os, pickle, sys
from dmixed import files
from dmixed.stats import checkpoint
arrays = pickle.load(open(sys.argv[1], "rb"))
files.replace_dir = lambda *args, **kwargs: os._exit(9)  # killed just before the rename
checkpoint.save_statistics(arrays, sys.argv[2], {"digest": "killed"})
"""


def test_a_killed_save_leaves_no_lasting_temporaries(tmp_path, two_statistics):
    """A writer killed mid-save (SIGKILL, OOM killer, node failure) leaves its hidden
    temporary behind; it must never be read, and the next save should clear it instead
    of letting one such directory (a full copy of the statistics) pile up per kill."""
    first, second = two_statistics
    save_statistics(first, tmp_path / "stats", {"digest": "first"})
    (tmp_path / "arrays.pkl").write_bytes(pickle.dumps(second))
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", KILLED_WRITER, "arrays.pkl", "stats"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 9, proc.stderr
    assert read_manifest(tmp_path / "stats")["digest"] == "first"  # never the killed one
    save_statistics(second, tmp_path / "stats", {"digest": "rerun"})  # the rerun
    assert read_manifest(tmp_path / "stats")["digest"] == "rerun"
    leftovers = [p for p in _siblings(tmp_path / "stats") if p.startswith(".stats.")]
    assert not leftovers, (
        f"dmixed bug: temporaries of killed writers are never removed: {leftovers}"
    )


# --------------------------------------------------------------------------------------
# inputs: fingerprint, digest, expansion
# --------------------------------------------------------------------------------------


def test_digest_follows_model_and_input_files(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    a.write_bytes(b"1234")
    b.write_bytes(b"5678")
    model = {"formula": "y ~ x", "groups": "g"}
    base = digest(model, input_fingerprint([str(a), str(b)]))
    assert digest(model, input_fingerprint([str(b), str(a)])) == base  # order of inputs
    assert digest({**model, "formula": "y ~ x + z"}, input_fingerprint([str(a), str(b)])) != base
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touch
    assert digest(model, input_fingerprint([str(a), str(b)])) != base
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digest(model, input_fingerprint([str(a), str(b)])) == base
    a.write_bytes(b"12345")  # another size
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digest(model, input_fingerprint([str(a), str(b)])) != base
    a.write_bytes(b"1234")  # the same size and time stamp, another content
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digest(model, input_fingerprint([str(a), str(b)])) == base
    a.write_bytes(b"1235")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digest(model, input_fingerprint([str(a), str(b)])) != base


def test_fingerprint_of_a_url_whose_store_is_not_installed_is_its_name(tmp_path, monkeypatch):
    """The reader then says which package is missing."""

    def not_installed(url, storage_options=None):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(checkpoint, "remote_identity", not_installed)
    a = tmp_path / "a.parquet"
    a.write_bytes(b"1234")
    fp = input_fingerprint([str(a), "s3://bucket/x.parquet"])
    assert fp[0]["path"] == str(a) and fp[1] == {
        "path": "s3://bucket/x.parquet",
        "size": None,
        "mtime_ns": None,
        "content": None,
    }


def test_expand_inputs_globs_lists_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("b.parquet", "a.parquet", "c.csv"):
        Path(name).write_bytes(b"x")
    assert expand_inputs("*.parquet") == ["a.parquet", "b.parquet"]
    assert expand_inputs(["c.csv", "*.parquet"]) == ["c.csv", "a.parquet", "b.parquet"]
    assert expand_inputs("s3://bucket/*.parquet") == ["s3://bucket/*.parquet"]
    assert expand_inputs("missing.parquet") == ["missing.parquet"]  # reported by the reader


def test_expand_inputs_of_a_dataset_directory_skips_markers_and_hidden_files(tmp_path):
    """Spark, Dask and Hadoop write ``_SUCCESS``, ``_metadata``/``_common_metadata`` and
    hidden ``.crc`` files beside the parts; Parquet readers skip names starting with
    ``_`` or ``.``.  ``expand_inputs`` lists them as data files, so ``dmixed fit --data
    dir/`` on such a directory fails with exit 3 ("Parquet file size is 0 bytes")."""
    d = tmp_path / "dataset"
    (d / "year=2025").mkdir(parents=True)
    pd.DataFrame({"y": [1.0]}).to_parquet(d / "year=2025/part-0.parquet")
    pd.DataFrame({"y": [2.0]}).to_parquet(d / "part-1.parquet")
    (d / "_SUCCESS").write_bytes(b"")
    (d / ".part-1.parquet.crc").write_bytes(b"crc")
    (d / "year=2025/.part-0.parquet.crc").write_bytes(b"crc")
    got = [str(Path(p).relative_to(d)) for p in expand_inputs(str(d))]
    assert got == ["part-1.parquet", "year=2025/part-0.parquet"], (
        f"dmixed bug: expand_inputs({d.name}/) lists non-data files: {got}"
    )


def test_expand_inputs_of_a_recursive_glob_lists_the_files_below(tmp_path, monkeypatch):
    """``--data 'h/**/*.parquet'`` over a Hive tree was "no such input file(s)" and
    ``'h/**'`` named the folder ``h/year=2026`` as "neither a Parquet file": ``**`` was
    ``*``.  As in fsspec and Spark it descends into every folder below it; what it
    reaches is read as a dataset directory's files are (no folders, markers or side
    files)."""
    monkeypatch.chdir(tmp_path)
    for where in ("h/year=2026/month=1", "h/year=2026/month=2", "h/_temporary"):
        Path(where).mkdir(parents=True)
    for name in (
        "h/year=2026/month=1/part-0.parquet",
        "h/year=2026/month=2/part-0.parquet",
        "h/_temporary/part-9.parquet",
        "h/year=2026/_SUCCESS",
        "h/year=2026/month=1/.part-0.parquet.crc",
    ):
        Path(name).write_bytes(b"x")
    parts = ["h/year=2026/month=1/part-0.parquet", "h/year=2026/month=2/part-0.parquet"]
    assert expand_inputs("h/**/*.parquet") == parts
    assert expand_inputs("h/**") == parts == expand_inputs("h")
    assert expand_inputs("h/**/month=2/*.parquet") == parts[1:]
    assert expand_inputs("h/**/*.csv") == ["h/**/*.csv"]  # none: named by the caller


def test_a_recursive_glob_lists_what_the_folder_lists_through_links(tmp_path, monkeypatch):
    """``**`` followed links to folders (``glob.glob``) where a folder input does not
    (``Path.rglob``): ``'lake/**'`` read ``other/``'s files through ``lake/day=2 ->
    ../other`` that ``lake`` did not, and a link to a folder above listed one file 41
    times, refused as "40 input(s) given twice".  One walk lists both, not entering
    links to folders; a link to a file is a file of the folder."""
    monkeypatch.chdir(tmp_path)
    for where in ("lake/day=1/x", "other"):
        Path(where).mkdir(parents=True)
    for name in ("lake/day=1/part-0.parquet", "other/b.parquet", "other/c.parquet"):
        Path(name).write_bytes(b"x")
    os.symlink("../other", "lake/day=2")
    os.symlink("../..", "lake/day=1/x/up")  # a loop
    os.symlink("../../other/c.parquet", "lake/day=1/c.parquet")
    files = ["lake/day=1/c.parquet", "lake/day=1/part-0.parquet"]
    assert expand_inputs("lake") == files
    assert expand_inputs("lake/**") == files
    assert expand_inputs("lake/**/*.parquet") == files
    assert expand_inputs("lake/*/**") == files
    # a link named above the walk is entered, as the folder it names is
    assert expand_inputs("lake/day=2/**") == ["lake/day=2/b.parquet", "lake/day=2/c.parquet"]


def test_a_recursive_glob_reads_the_marker_folders_it_names(tmp_path, monkeypatch):
    """``'lake/_*/**/*.parquet'`` named ``_x`` on purpose, yet listed nothing ("no such
    input file(s)") where ``'lake/_*/*.parquet'`` reads ``lake/_x``'s files: a ``_``
    or ``.`` component is read where the pattern names it, skipped where ``**`` or a
    folder would reach it."""
    monkeypatch.chdir(tmp_path)
    for where in ("lake/_x/day=1/_tmp", "lake/day=1"):
        Path(where).mkdir(parents=True)
    for name in (
        "lake/_x/a.parquet",
        "lake/_x/day=1/b.parquet",
        "lake/_x/day=1/_tmp/c.parquet",
        "lake/day=1/_part.parquet",
        "lake/day=1/d.parquet",
    ):
        Path(name).write_bytes(b"x")
    assert expand_inputs("lake/_*/*.parquet") == ["lake/_x/a.parquet"]
    assert expand_inputs("lake/_*/**/*.parquet") == [
        "lake/_x/a.parquet",
        "lake/_x/day=1/b.parquet",
    ]
    assert expand_inputs("lake/**/_part.parquet") == ["lake/day=1/_part.parquet"]
    assert expand_inputs("lake/**/_*/*.parquet") == ["lake/_x/a.parquet"]
    assert expand_inputs("lake/**") == ["lake/day=1/d.parquet"] == expand_inputs("lake")


@pytest.mark.parametrize(
    ("item", "path", "listed"),
    [
        ("d/*.parquet", "d/a.parquet", True),
        ("d/*.parquet", "d/x/a.parquet", False),
        ("d/*.parquet", "d/.h.parquet", False),  # glob.glob: a . name where named only
        ("d/.*.parquet", "d/.h.parquet", True),
        ("d/*.parquet", "d/_h.parquet", True),  # glob.glob reads _ names
        ("d/**/*.parquet", "d/x/y/a.parquet", True),
        ("d/**/*.parquet", "d/a.parquet", True),  # ** is also no folder
        ("d/**/*.parquet", "d/_x/a.parquet", False),  # as the folder d
        ("d/**", "d/_x/a.parquet", False),
        ("d/**/*.parquet", "d/x/_a.parquet", False),
        ("d/_*/**/*.parquet", "d/_x/a.parquet", True),  # named
        ("d/**/_a.parquet", "d/x/_a.parquet", True),
        ("d", "d/x/a.parquet", True),
        ("d", "d/_temporary/a.parquet", False),  # side files: not read
        ("d", "d/x/.a.parquet.crc", False),
        ("d/a.parquet", "d/a.parquet", True),
        ("d/a.parquet", "d/b.parquet", False),
        ("file:///d/*.parquet", "d/a.parquet", False),
        # links: L -> d, d/s -> e (a folder below is not entered, a named one is)
        ("L/**", "d/x/a.parquet", True),
        ("d/**", "L/x/a.parquet", True),
        ("L", "d/x/a.parquet", True),
        ("d/*.parquet", "L/a.parquet", True),
        ("L/a.parquet", "d/a.parquet", True),
        ("d/**", "d/s/a.parquet", False),
        ("d", "d/s/a.parquet", False),
        ("d/s/**", "d/s/a.parquet", True),
        ("d/*/a.parquet", "d/s/a.parquet", True),  # glob.glob enters it
    ],
)
def test_lists_file(tmp_path, monkeypatch, item, path, listed):
    """Whether an input would list a saved file (gone now): as :func:`expand_inputs`
    lists, with links to folders resolved on both sides."""
    monkeypatch.chdir(tmp_path)
    for where in ("d/x", "e"):
        os.makedirs(where)
    os.symlink("d", "L")
    os.symlink("../e", "d/s")
    assert lists_file(item, str(tmp_path / path)) is listed


# --------------------------------------------------------------------------------------
# prior weights scaled in the statistics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["slope+vc", "intercept"])
def test_statistics_of_scaled_weights_are_saved_as_format_6_and_fit_alike(tmp_path, model):
    """Weights near 1e150 (scaled by 2^512 in the statistics): saved as format version
    6, which older versions refuse rather than read without the scale; loaded, the same
    fit.  Weights near 1 keep the format of their storage."""
    df = _frame(12)
    spec = build_spec(df, FORMULA, "g", **{**MODELS[model], "weights": "w"})
    heavy = df.assign(w=df["w"] * 1e150)
    for frame, version in [(df, None), (heavy, checkpoint.WEIGHTED_FORMAT_VERSION)]:
        arrays = _stats(spec, frame)
        target = tmp_path / f"stats{version}"
        save_statistics(arrays, target, {"spec": spec.to_dict()})
        back, manifest = load_statistics(target)
        if version is None:
            assert manifest["format_version"] < checkpoint.WEIGHTED_FORMAT_VERSION
            assert "weight_scale" not in manifest["standardization"]
        else:
            assert manifest["format_version"] == version
            assert manifest["standardization"]["weight_scale"] == 2.0**512
        assert back.columns == arrays.columns
        assert _fit(back, spec).llf == _fit(arrays, spec).llf


def test_merged_statistics_of_scaled_weights_are_the_whole_statistics():
    """``update``'s merge: both halves in the saved map (the first half's), weights near
    1e150 in both."""
    df = _frame(13).assign(w=lambda d: d["w"] * 1e150)
    spec = _spec(df, "slope+vc")
    a, b = _split(df, 13)
    first = _stats(spec, a)
    assert first.columns.weight_scale == 2.0**512
    merged = merge(first, _stats(spec, b, like=first), "g")
    whole = _stats(spec, df, like=first)
    assert_same_statistics(merged, whole)


def test_statistics_whose_weights_straddle_a_scale_step_are_converted_when_merged():
    """Two batches whose weights' geometric means lie on either side of a step of the
    weights' scale (2^62 and 2^66 times ordinary weights: scales 1 and 2^128) chose
    maps of different weight scales.  Their statistics differ by that power of two
    (every column times its root, Σ log w by n log of it), exactly: merged, they are the
    statistics of all the rows in the first batch's map, and the same fit."""
    df = _frame(14)
    spec = build_spec(df, FORMULA, "g", **{**MODELS["slope+vc"], "weights": "w"})
    a, b = _split(df, 14)
    a, b = a.assign(w=a["w"] * 2.0**62), b.assign(w=b["w"] * 2.0**66)
    first, second = _stats(spec, a), _stats(spec, b)
    assert (first.columns.weight_scale, second.columns.weight_scale) == (1.0, 2.0**128)
    merged = merge(first, second, "g")
    whole = _stats(spec, pd.concat([a, b], ignore_index=True), like=first)
    assert merged.columns.weight_scale == 1.0
    assert_same_statistics(merged, whole)
    assert _fit(merged, spec).llf == pytest.approx(_fit(whole, spec).llf, rel=1e-10)
    assert merged.columns.weight_span == _stats(spec, pd.concat([a, b])).columns.weight_span


def _halves_a_step_apart(seed: int, factor: float):
    """Weighted statistics of a first half (ordinary weights: scale 1) and of a second
    half whose weights are ``factor`` times heavier, in the first half's map (as
    ``update`` computes new rows' statistics), and both halves' rows."""
    df = _frame(seed)
    spec = build_spec(df, FORMULA, "g", **{**MODELS["slope+vc"], "weights": "w"})
    a, b = _split(df, seed)
    b = b.assign(w=b["w"] * factor)
    first = _stats(spec, a)
    return spec, first, _stats(spec, b, like=first), pd.concat([a, b], ignore_index=True)


def test_merge_refuses_weights_wider_than_a_step_as_the_fit_of_all_rows():
    """A second batch whose weights lie a scale step (2^128) above the first's, so that
    all the rows' weights are more than 2^128 apart: a fit of all the rows refuses them,
    naming the weights column; the merge converted and added them.  Now it refuses with
    the same error (the saved statistics keep their weights' span)."""
    spec, first, second, both = _halves_a_step_apart(15, 2.0**130)
    assert (first.columns.weight_scale, second.columns.weight_scale) == (1.0, 1.0)
    with pytest.raises(DataError) as scratch:
        _stats(spec, both)
    assert "'w'" in str(scratch.value)
    with pytest.raises(DataError) as merged:
        merge(first, second, "g", weights="w")
    assert str(merged.value) == str(scratch.value)


def test_saved_weight_span_is_kept_and_merged(tmp_path):
    """The span of the prior weights (log2 of the lightest and heaviest) is saved with the
    statistics and read back; merged, it is the span of all the rows, and a batch that
    widens it past a step is refused after a save and load as before it."""
    spec, first, second, both = _halves_a_step_apart(16, 2.0**20)
    save_statistics(first, tmp_path / "S", {"spec": spec.to_dict()})
    back, manifest = load_statistics(tmp_path / "S")
    assert manifest["weight_span"] == list(first.columns.weight_span)
    assert back.columns.weight_span == first.columns.weight_span
    merged = merge(back, second, "g", weights="w")
    assert merged.columns.weight_span == _stats(spec, both).columns.weight_span
    assert _fit(merged, spec).llf == pytest.approx(_fit(_stats(spec, both), spec).llf, rel=1e-10)
    far = _stats(spec, both.assign(w=both["w"] * 2.0**110), like=first)
    with pytest.raises(DataError, match="column 'w' are too far apart"):
        merge(back, far, "g", weights="w")


def test_statistics_saved_without_a_weight_span_take_rows_within_their_scale(tmp_path):
    """Statistics saved before the span was (no ``weight_span`` in the manifest) load
    and fit as before.  Rows added to them are taken while every new weight is within
    2^±64 of the saved weights' scale (the scale's own band, where the saved rows' first
    weights were: all the rows then within 2^128 of each other); beyond it refused,
    naming the weights column and what to do.  The merged span stays unknown."""
    spec, first, second, _ = _halves_a_step_apart(17, 2.0**30)
    save_statistics(first, tmp_path / "S", {"spec": spec.to_dict()})
    _edit_manifest(tmp_path / "S", lambda m: m.pop("weight_span"), reseal=True)
    old, _ = load_statistics(tmp_path / "S")
    assert old.columns.weight_span is None
    assert _fit(old, spec).llf == _fit(first, spec).llf
    merged = merge(old, second, "g", weights="w")
    assert merged.columns.weight_span is None
    assert_same_statistics(merged, merge(first, second, "g", weights="w"))
    _, _, far, _ = _halves_a_step_apart(17, 2.0**70)
    with pytest.raises(DataError, match="column 'w'.*no span.*rebuild"):
        merge(old, far, "g", weights="w")


# --------------------------------------------------------------------------------------
# names earlier versions rebuild otherwise
# --------------------------------------------------------------------------------------


def test_statistics_of_names_earlier_versions_rebuild_otherwise_are_format_7(tmp_path, monkeypatch):
    """A model whose columns are in statsmodels' order where formulaic's differs
    (``x1 + C(t)``: ``C(t)`` first) is saved as format version 7, which earlier
    versions refuse as written by a newer dmixed rather than failing on the names;
    the same statistics of a model they rebuild keep their storage's format."""
    df = _frame(12)
    for formula, newer in [("y ~ x1 + C(t)", True), ("y ~ C(t) + x1", False)]:
        spec = build_spec(df, formula, "g")
        assert spec.names_need_this_version() is newer
        arrays = _stats(spec, df)
        target = tmp_path / f"stats{newer}"
        save_statistics(
            arrays, target, {"spec": spec.to_dict()}, newer_names=spec.names_need_this_version()
        )
        back, manifest = load_statistics(target)
        want = checkpoint.NAMES_FORMAT_VERSION if newer else checkpoint.PADDED_FORMAT_VERSION
        assert manifest["format_version"] == want
        assert _fit(back, spec).llf == _fit(arrays, spec).llf
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.WEIGHTED_FORMAT_VERSION)
    with pytest.raises(ValueError, match="newer dmixed"):
        load_statistics(tmp_path / "statsTrue")
    load_statistics(tmp_path / "statsFalse")


def test_statistics_of_a_one_column_spline_are_format_7(tmp_path, monkeypatch):
    """A spline of one column is named as patsy names it (``bs(x1, df=1, degree=1)``),
    where earlier versions named it ``bs(x1, df=1, degree=1)[0]`` (and refused it
    inside another expression): its statistics are saved as format version 7, which
    those versions refuse as written by a newer dmixed rather than fail on the names;
    a spline of several columns is named as before."""
    df = _frame(12)
    for formula, newer in [
        ("y ~ bs(x1, df=1, degree=1) + x2", True),
        ("y ~ np.exp(bs(x1, df=1, degree=1)) + x2", True),
        ("y ~ bs(x1, df=3) + x2", False),
    ]:
        spec = build_spec(df, formula, "g")
        assert spec.names_need_this_version() is newer
        target = tmp_path / f"stats{len(formula)}"
        save_statistics(
            _stats(spec, df),
            target,
            {"spec": spec.to_dict()},
            newer_names=spec.names_need_this_version(),
        )
        manifest = load_statistics(target)[1]
        want = checkpoint.NAMES_FORMAT_VERSION if newer else checkpoint.PADDED_FORMAT_VERSION
        assert manifest["format_version"] == want


def test_merge_meets_integer_and_float_keys_where_exact():
    """Saved float64 keys and new int64 keys (or the other way round) are one group
    where they are equal, as keys of two numeric dtypes meet anywhere: saved integers
    keep their type where the new floats are whole (they became float64, so an update's
    ``random_effects.parquet`` changed type where a fit of the files did not), else
    float64 (:func:`dmixed.stats.keys.settled_kind`); integers float64 cannot hold
    exactly are refused naming the column instead of merged as floats."""
    df = _frame(1)
    a, b = _split(df, 1)
    spec = _spec(df, "slope+vc")
    whole = _stats(spec, df)
    sa, sb = _stats(spec, a, whole), _stats(spec, b, whole)
    floats = dataclasses.replace(sa, labels=np.asarray(sa.labels, dtype=np.float64))
    for old, new, want in ((floats, sb, np.float64), (sb, floats, sb.labels.dtype)):
        merged = merge(old, new)
        assert merged.labels.dtype == want
        assert_same_statistics(merged, dataclasses.replace(whole, labels=whole.labels.astype(want)))
    halves = dataclasses.replace(floats, labels=floats.labels + 0.5)
    assert merge(sb, halves).labels.dtype == np.float64  # 3.5 is no integer's group
    huge = dataclasses.replace(sb, labels=np.asarray(sb.labels, dtype=np.int64) + 2**60)
    with pytest.raises(DataError, match="the group column 'site'.*±2\\*\\*53"):
        merge(floats, huge, "site")


# --------------------------------------------------------------------------------------
# groups near lossy: the centred forms where kept, a warning where not
# --------------------------------------------------------------------------------------


def _near_model(engine: str, frame: pd.DataFrame | None = None):
    """(model, spec) of the near-lossy frame (tests/_near_lossy.py, weight 1e9) in
    process or on Dask (3 partitions, sync scheduler)."""
    import dask.dataframe as dd

    from .._near_lossy import NEAR_KW, near_lossy_frame

    frame = near_lossy_frame(1e9) if frame is None else frame
    spec = build_spec(frame, "y ~ x1", "g", re_formula="1 + x1", weights="w")
    if engine == "local":
        return MixedLM.from_spec(spec, frame), spec
    data = dd.from_pandas(frame, npartitions=3)
    return MixedLM.from_formula("y ~ x1", data, **NEAR_KW), spec


def _near_params(model) -> np.ndarray:
    """Packed parameters (no fixed effects) of ``model``'s fit (the frame's random
    effects are perfectly correlated: a BoundaryWarning and a SingularHessianWarning
    are expected, no other)."""
    from dmixed.errors import BoundaryWarning, SingularHessianWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        warnings.simplefilter("ignore", SingularHessianWarning)
        res = model.fit()
    return res.params_object.get_packed(use_sqrt=False, has_fe=False)


def _loglike(arrays: GroupArrays, spec, packed) -> float:
    return MixedLM.from_statistics(statistics_from_arrays(arrays), spec).loglike(packed)


#: loaded or merged statistics of the near-lossy frame fit within this of the reference
#: (relative; the direct fits' NEAR_RTOL of tests/fit/test_objective.py)
LOADED_RTOL = 1e-10


def _reference_error(model, res) -> float:
    """``res.llf`` less the extended-precision ℓ of ``model``'s rows at ``res``'s
    estimates (tests/_dense.py), relative to the latter."""
    from .._dense import dense_model_of

    cov_re = np.asarray(res.cov_re, dtype=np.float64)
    ref = dense_model_of(model).evaluate(
        np.asarray(res.fe_params), cov_re, np.zeros(0), res.scale, res.reml
    )[0]
    return (res.llf - ref) / abs(ref)


def _fit_recorded(arrays: GroupArrays, spec):
    """(fit of ``arrays``, its dmixed warnings)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", DmixedWarning)
        res = MixedLM.from_statistics(statistics_from_arrays(arrays), spec).fit()
    return res, [w.message for w in seen]


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_near_lossy_statistics_saved_carry_their_centred_sums(tmp_path, engine):
    """A group near lossy (below ``CENTRED_DETERMINANT``, not refused as a lossy one)
    is saved with its sums about its mean (format version
    :data:`~dmixed.stats.checkpoint.CENTRED_FORMAT_VERSION`), without an in-process
    ``W``: loaded, the fit is at the reference (:data:`LOADED_RTOL`) with no precision
    warning.  Before, the plain sums alone left ℓ 5945 (made in process) and 0.82
    (made on Dask) units off, with a warning of 7e-6 relative."""
    import dask

    with dask.config.set(scheduler="sync"):
        model, spec = _near_model(engine)
        stats = model.statistics()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DmixedWarning)
            arrays = GroupArrays.from_statistics(stats)
    assert arrays.glob.within is None
    assert arrays.centred is not None and list(arrays.centred.positions) == [0]
    save_statistics(arrays, tmp_path / "stats", {})
    back, manifest = load_statistics(tmp_path / "stats")
    assert manifest["format_version"] == checkpoint.CENTRED_FORMAT_VERSION
    assert back.glob.within is None and list(back.centred.positions) == [0]
    local, _ = _near_model("local")
    res, seen = _fit_recorded(back, spec)
    assert abs(_reference_error(local, res)) <= LOADED_RTOL
    assert not [w for w in seen if isinstance(w, PrecisionWarning)], seen


def test_ordinary_statistics_are_saved_as_before(tmp_path):
    """Statistics without groups near lossy carry no centred sums and keep their
    format version (byte for byte the files they were)."""
    df = _frame(3)
    spec = build_spec(df, FORMULA, "g", re_formula="1 + x1", weights="w")
    arrays = _stats(spec, df)
    assert arrays.centred is None
    save_statistics(arrays, tmp_path / "stats", {})
    manifest = read_manifest(tmp_path / "stats")
    assert manifest["format_version"] == checkpoint.PADDED_FORMAT_VERSION
    assert checkpoint.CENTRED_PARTS not in manifest
    assert not (tmp_path / "stats" / "centred").exists()


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_near_lossy_statistics_of_an_older_format_load_and_warn_honestly(tmp_path, engine):
    """Statistics saved before they could carry the centred sums (their plain sums,
    format version 3) still load; their fit's precision check charges the plain
    group's own rounding: a PrecisionWarning naming the cause whose bound on the llf
    covers its error (before: "7e-06 relative", 5945 units off)."""
    import re

    import dask

    with dask.config.set(scheduler="sync"):
        model, spec = _near_model(engine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DmixedWarning)
            arrays = GroupArrays.from_statistics(model.statistics())
    old = dataclasses.replace(arrays, centred=None)  # as statistics saved before
    save_statistics(old, tmp_path / "stats", {})
    back, manifest = load_statistics(tmp_path / "stats")
    assert manifest["format_version"] == checkpoint.PADDED_FORMAT_VERSION
    local, _ = _near_model("local")
    res, seen = _fit_recorded(back, spec)  # fitted, as before: never refused
    said = [str(w) for w in seen if "round the fit beyond" in str(w)]
    assert said, [str(w) for w in seen]
    if "no worst-case bound" in said[-1]:  # the rounding may be all of X'V^-1 X
        return
    bound = float(re.search(r"the llf may be off by up to ([0-9.e+-]+)", said[-1]).group(1))
    error = abs(_reference_error(local, res)) * abs(res.llf)
    assert error > 1e-3  # the plain sums are off: the case the warning is for
    assert bound >= error, (bound, error)


@pytest.mark.parametrize("weight", [1e3, 1e6, 1e9, 1e11, 1e13])
@pytest.mark.parametrize("spread", [1.0, 10.0])
def test_plain_sums_of_an_older_format_never_understate_their_error(tmp_path, weight, spread):
    """Statistics of the near-lossy frame saved without their centred sums (format 3),
    group 0 weighted 1e3 to 1e13 with ``x1``'s spread 1 or 10 times ``NEAR_SPREAD``:
    the fit cannot start, or its llf is within 1e-6 units of the reference, or a
    PrecisionWarning says no bound holds, or its bound on the llf covers its error
    (before: weight 1e11 and spread 10 left ℓ 1.15 units off where the warning said
    "up to 0.03")."""
    import re

    from dmixed.errors import StartError

    from .._near_lossy import NEAR_SPREAD, near_lossy_frame

    frame = near_lossy_frame(weight, spread * NEAR_SPREAD)
    model, spec = _near_model("local", frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        arrays = GroupArrays.from_statistics(model.statistics())
    save_statistics(dataclasses.replace(arrays, centred=None), tmp_path / "stats", {})
    back, manifest = load_statistics(tmp_path / "stats")
    assert manifest["format_version"] == checkpoint.PADDED_FORMAT_VERSION
    try:
        res, seen = _fit_recorded(back, spec)
    except StartError:
        return
    error = abs(_reference_error(model, res) * res.llf)
    if any("no worst-case bound" in str(w) for w in seen):
        return
    said = [str(w) for w in seen if "off by up to" in str(w)]
    bounds = [float(re.search(r"off by up to ([0-9.e+-]+)", w).group(1)) for w in said]
    assert error <= 1e-6 or max(bounds, default=0.0) >= error, (error, said)


def _claim_covers(model, res, seen) -> tuple[bool, float, list[str]]:
    """Whether ``res``'s llf is within 1e-6 units of the reference, or a
    PrecisionWarning says that no worst-case bound holds, or a bound it states on the
    llf covers the error: (covered, error, what the warnings said)."""
    import re

    error = abs(_reference_error(model, res) * res.llf)
    said = [str(w) for w in seen if isinstance(w, PrecisionWarning)]
    if error <= 1e-6 or any("no worst-case bound" in w for w in said):
        return True, error, said
    found = (
        re.search(r"llf (?:may be off )?by (?:up to |about )?([0-9.]+(?:e[+-]?[0-9]+)?)", w)
        for w in said
    )
    bounds = [float(m.group(1)) for m in found if m]
    return max(bounds, default=0.0) >= error, error, said


def _heavy_fit(weight: float, spread: float, source: str):
    """(model, fit, its dmixed warnings) of the near-lossy frame with group 0 weighted
    ``weight`` and ``x1`` spread ``spread`` × ``NEAR_SPREAD``: from statistics without
    centred sums (``"old"``, as format 3 holds them), with them where the group is near
    lossy (``"fmt8"``, as format 8 holds them) or from the rows in process
    (``"rows"``)."""
    from .._near_lossy import NEAR_SPREAD, near_lossy_frame

    model, spec = _near_model("local", near_lossy_frame(weight, spread * NEAR_SPREAD))
    if source == "rows":
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", DmixedWarning)
            res = model.fit()
        return model, res, [w.message for w in seen]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        arrays = GroupArrays.from_statistics(model.statistics())
    if source == "old":
        arrays = dataclasses.replace(arrays, centred=None)
    res, said = _fit_recorded(arrays, spec)
    return model, res, said


@pytest.mark.parametrize("source", ["old", "rows"])
@pytest.mark.parametrize("spread", [100.0, 300.0, 1000.0])
def test_a_heavy_group_above_the_near_lossy_bound_never_understates_its_error(spread, source):
    """Group 0 weighted 1e13 with ``x1``'s spread 100 to 1000 × ``NEAR_SPREAD`` (scaled
    determinant 7e-4 to 0.07, above the near-lossy bound): ``X'V⁻¹X`` is a remainder
    some 1e13 times smaller than the totals, and the group's plain conditional rounds
    its ``log det`` by ℓ 0.16, 0.14 and 0.014 units, from statistics without centred
    sums and from the rows alike.  The precision check charges the group
    (``heavy_bounds``) and says that no worst-case bound holds; before, the only claim
    was the factor's "up to 0.002" (or "about 0.004")."""
    model, res, seen = _heavy_fit(1e13, spread, source)
    covered, error, said = _claim_covers(model, res, seen)
    assert covered, (error, said)
    assert error > 1e-3  # the case is what it was: an error the check must state


@pytest.mark.parametrize("spread", [1.0, 3.0, 10.0])
def test_a_heavy_group_with_its_centred_sums_never_understates_its_error(spread):
    """Group 0 weighted 1e13 and near lossy (spread 1 to 10 × ``NEAR_SPREAD``), its
    centred sums held without ``W`` (format 8): its mean part, most of the totals,
    cancels in ``X'V⁻¹X`` and leaves ℓ 0.011 to 0.014 units off, where the only claim
    was the start's "about 0.003".  ``centred_rounding`` charges it: the claim covers
    the error (here: no worst-case bound holds)."""
    model, res, seen = _heavy_fit(1e13, spread, "fmt8")
    covered, error, said = _claim_covers(model, res, seen)
    assert covered, (error, said)
    assert error > 1e-3


#: the one point of the grid whose claim the compiled kernels' sums break: 0.0068 llf
#: units off under a smaller bound (the same before uncharged-s57); recorded in RESULTS
_NUMBA_UNCOVERED = {(1e9, 3.0)}


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("weight", [1e3, 1e5, 1e7, 1e9, 1e11, 1e12, 1e13])
@pytest.mark.parametrize("spread", [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0])
def test_plain_sums_of_any_weight_and_spread_never_understate_their_error(
    weight, spread, kernels, monkeypatch, request
):
    """The near-lossy frame over weights 1e3 to 1e13 and spreads 1 to 1000 ×
    ``NEAR_SPREAD`` (the whole grid: 49 fits of 310 rows), fitted from statistics
    without centred sums, with each kernel path pinned (``auto`` picks by size and by
    what it has measured, so a whole run may take either): the fit cannot start, or is
    refused naming the cause, or its claim covers its error (:func:`_claim_covers`; main
    left 1e13 × 100, 300 and 1000 uncovered).  With the compiled kernels 1e9 × 3 is not
    covered (a known gap, strict xfail)."""
    from dmixed.errors import StartError

    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    if kernels == "numba" and (weight, spread) in _NUMBA_UNCOVERED:
        request.applymarker(
            pytest.mark.xfail(
                strict=True, reason="the compiled sums' rounding exceeds the plain-sums bound"
            )
        )

    try:
        model, res, seen = _heavy_fit(weight, spread, "old")
    except (StartError, DataError):
        return
    covered, error, said = _claim_covers(model, res, seen)
    assert covered, (weight, spread, error, said)


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_near_lossy_groups_keep_their_centred_sums_for_the_bootstrap(engine):
    """The bootstrap's arrays (``centred=True``) keep the sums about their means of the
    groups near lossy, with no lossy group among them: ℓ from the arrays is the
    model's, to the last digit (the plain sums were thousands of units off)."""
    import dask

    with dask.config.set(scheduler="sync"):
        model, spec = _near_model(engine)
        packed = _near_params(model)
        stats = model.statistics()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DmixedWarning)
            arrays = GroupArrays.from_statistics(stats, centred=True)
        want = model.loglike(packed)
    assert arrays.centred is not None
    assert 0 in np.asarray(arrays.labels)[arrays.centred.positions]
    assert _loglike(arrays, spec, packed) == want


@pytest.mark.parametrize("span", [False, True])
def test_near_lossy_statistics_merged_keep_their_centred_sums(span):
    """``dmixed update`` merges statistics gathered as saved: a group near lossy whose
    rows are all in one batch keeps that batch's centred sums, and one whose rows span
    both batches their exact merge (Chan's): the merged fit is at the reference
    (:data:`LOADED_RTOL`), with no precision warning."""
    from .._near_lossy import near_lossy_frame

    frame = near_lossy_frame(1e9)
    whole_model, spec = _near_model("local", frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DmixedWarning)
        whole = GroupArrays.from_statistics(whole_model.statistics())
        if span:  # every group's rows in both batches
            old_rows, new_rows = frame.iloc[::2], frame.iloc[1::2]
        else:
            old_rows, new_rows = frame[frame["g"] < 16], frame[frame["g"] >= 16]
        old, new = (
            GroupArrays.from_statistics(
                MixedLM.from_spec(spec, rows).statistics(standardization=whole.columns)
            )
            for rows in (old_rows, new_rows)
        )
    merged = merge(old, new)
    assert merged.centred is not None and list(merged.centred.positions) == [0]
    res, seen = _fit_recorded(merged, spec)
    assert abs(_reference_error(whole_model, res)) <= LOADED_RTOL
    assert not [w for w in seen if isinstance(w, PrecisionWarning)], seen


@pytest.mark.parametrize("cut", [1, 9])
def test_a_few_ordinary_rows_of_a_near_lossy_group_merge_exactly(cut):
    """``dmixed update`` where one batch holds a few rows of the heavy group (1 of its
    10, ordinary there: no centred sums) and the other the rest (near lossy, centred):
    the few rows' sums about their own mean are formed from their plain sums and
    merged by Chan's update, so the merged fit is at the reference
    (:data:`LOADED_RTOL`) with no precision warning (before: the plain sums, ℓ 7.75
    and 0.0018 units off, warned)."""
    from .._near_lossy import near_lossy_frame

    frame = near_lossy_frame(1e9)
    whole_model, spec = _near_model("local", frame)
    heavy = np.flatnonzero(frame["g"].to_numpy() == 0)
    rest = frame[frame["g"] != 0]
    batches = [
        pd.concat([frame.iloc[part], rest[rest["g"] % 2 == i]])
        for i, part in enumerate((heavy[:cut], heavy[cut:]))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)  # each batch's own gathering
        warnings.simplefilter("error", DmixedWarning)
        whole = GroupArrays.from_statistics(whole_model.statistics())
        old, new = (
            GroupArrays.from_statistics(
                MixedLM.from_spec(spec, rows).statistics(standardization=whole.columns)
            )
            for rows in batches
        )
    merged = merge(old, new)
    assert merged.centred is not None and list(merged.centred.positions) == [0]
    res, seen = _fit_recorded(merged, spec)
    assert abs(_reference_error(whole_model, res)) <= LOADED_RTOL
    assert not [w for w in seen if isinstance(w, PrecisionWarning)], seen


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_ordinary_small_groups_are_gathered_without_a_precision_warning(engine):
    """Ordinary groups of 1 to 3 rows (x ~ N(0, 1), a random slope) include, by chance,
    some below ``CENTRED_DETERMINANT``; one of thousands loses no digit that matters,
    so statistics gathered to be saved or merged say nothing, as on main."""
    import dask
    import dask.dataframe as dd

    import dmixed
    from tests._near_lossy import small_groups_frame

    frame = small_groups_frame()
    data = frame if engine == "local" else dd.from_pandas(frame, npartitions=3, sort=False)
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("error", DmixedWarning)
        model = dmixed.MixedLM.from_formula("y ~ x", data, groups="g", re_formula="1 + x")
        stats = model.statistics()
        arrays = GroupArrays.from_statistics(stats)
    assert arrays.centred is None and arrays.glob.within is None


def test_one_row_batches_of_a_near_lossy_group_merge_exactly():
    """Group 0 of the near-lossy frame (weight 1e9) split 1 + 1 + 8 rows over three
    batches, merged in that order: the first merge forms both one-row sides' sums
    about their means (``C = D = 0``), so the merged statistics hold the group's
    centred sums and the REML fit is at the reference as 8 + 1 + 1's (before: neither
    side held them, the group kept its plain sums and the fit was refused)."""
    from dmixed.stats.checkpoint_merge import merge

    from .._near_lossy import near_lossy_frame

    frame = near_lossy_frame(1e9)
    whole_model, spec = _near_model("local", frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        whole = GroupArrays.from_statistics(whole_model.statistics())
        g0 = np.flatnonzero(frame.g.to_numpy() == 0)
        other = frame[frame.g != 0]
        errors = {}
        for cuts in ([1, 2], [8, 9]):
            batches = [
                pd.concat([frame.iloc[rows], other[other.g % 3 == i]])
                for i, rows in enumerate(np.split(g0, cuts))
            ]
            parts = [
                GroupArrays.from_statistics(
                    MixedLM.from_spec(spec, b).statistics(standardization=whole.columns)
                )
                for b in batches
            ]
            merged = merge(merge(parts[0], parts[1]), parts[2])
            assert merged.centred is not None and 0 in list(merged.centred.positions)
            res, seen = _fit_recorded(merged, spec)
            assert not [w for w in seen if isinstance(w, PrecisionWarning)], seen
            errors[tuple(cuts)] = abs(_reference_error(whole_model, res) * res.llf)
    assert max(errors.values()) <= 1e-6, errors


def test_rows_dropped_for_missing_values_are_saved_and_added_in_a_merge(tmp_path):
    """The rows dropped for missing values were not in saved statistics: a fit from
    saved or merged ones (``dmixed update``) reported none.  They are saved with the
    statistics and added in a merge, as the statistics of all the rows count them."""
    df = _frame(13)
    df.loc[df.index % 7 == 3, "x1"] = np.nan
    a, b = _split(df, 13)
    spec = build_spec(df, FORMULA, "g", missing="drop", **MODELS["slope+vc"])
    whole, sa = _stats(spec, df), _stats(spec, a)
    merged = merge(sa, _stats(spec, b, sa))
    assert whole.n_dropped == int(df["x1"].isna().sum()) > sa.n_dropped > 0
    assert merged.n_dropped == whole.n_dropped
    save_statistics(merged, tmp_path / "s", {})
    back, _ = load_statistics(tmp_path / "s")
    assert back.n_dropped == whole.n_dropped
    assert statistics_from_arrays(back).n_dropped == whole.n_dropped


def test_statistics_of_centres_earlier_versions_refuse_are_a_newer_format(tmp_path, monkeypatch):
    """``0 + t + ts`` (``t`` text: a factor) and ``t + t:ts`` with ts near 1.7e9 are
    read about a centre that versions before format 9 refuse as "malformed saved
    centres": their statistics are saved as format version 9, which those versions
    refuse as written by a newer dmixed; ``ts*t`` (centred by those versions too) is
    saved as before.  Each reads back to the same fit."""
    df = _frame(12)
    df["ts"] = 1.7e9 + np.random.default_rng(4).uniform(0, 2e5, len(df))
    for formula, newer in [
        ("y ~ 0 + t + ts", True),
        ("y ~ t + t:ts", True),
        ("y ~ ts * t", False),
    ]:
        spec = build_spec(df, formula, "g")
        assert spec.centres, formula
        assert spec.centres_need_this_version() is newer, formula
        arrays = _stats(spec, df)
        target = tmp_path / f"stats{len(formula)}"
        save_statistics(
            arrays,
            target,
            {"spec": spec.to_dict()},
            newer_centres=spec.centres_need_this_version(),
        )
        back, manifest = load_statistics(target)
        assert (manifest["format_version"] == checkpoint.CENTRES_FORMAT_VERSION) is newer
        assert _fit(back, spec).llf == _fit(arrays, spec).llf
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.CENTRED_FORMAT_VERSION)
    with pytest.raises(ValueError, match="newer dmixed"):
        load_statistics(tmp_path / f"stats{len('y ~ 0 + t + ts')}")
    load_statistics(tmp_path / f"stats{len('y ~ ts * t')}")


def test_statistics_of_a_shifted_response_without_an_intercept_are_a_newer_format(
    tmp_path, monkeypatch
):
    """``y ~ 0 + t`` (``t`` text: its indicators give one in every row) with y near 1e6:
    the statistics shift y as beside an intercept and record the columns that make the
    constant (``x_ones``); they are saved as format version 10, which versions before
    it (which would map the estimates back without the shift) refuse as written by a
    newer dmixed, and read back to the same fit as ``y ~ t``'s."""
    df = _frame(12)
    df["y"] = df["y"] + 1e6
    spec = build_spec(df, "y ~ 0 + t", "g")
    arrays = _stats(spec, df)
    assert arrays.columns.x_ones.any() and arrays.columns.y_shift != 0.0
    save_statistics(arrays, tmp_path / "s", {"spec": spec.to_dict()})
    back, manifest = load_statistics(tmp_path / "s")
    assert manifest["format_version"] == checkpoint.SHIFTED_RESPONSE_FORMAT_VERSION == 10
    with_intercept = build_spec(df, "y ~ t", "g")
    ref = _fit(_stats(with_intercept, df), with_intercept).llf
    assert _fit(back, spec).llf == _fit(arrays, spec).llf
    assert abs(_fit(back, spec).llf - ref) <= 1e-12 * abs(ref)
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.CENTRES_FORMAT_VERSION)
    with pytest.raises(ValueError, match="newer dmixed"):
        load_statistics(tmp_path / "s")


@pytest.mark.parametrize("bad", ["other", "intercept", "unshifted"])
def test_saved_constant_weights_that_are_not_the_specs_are_refused(tmp_path, bad):
    """The weights ``x_ones`` (the columns that make the constant, beside which y was
    shifted) are read from the manifest and the estimates mapped back through them:
    ones that are not the saved spec's (edited, its checksum rewritten) would give
    wrong fixed effects at the same likelihood, so they are refused, naming the file
    and field; the spec's own pass."""
    df = _frame(12)
    df["y"] = df["y"] + 1e6
    spec = build_spec(df, "y ~ 0 + t", "g")
    save_statistics(_stats(spec, df), tmp_path / "s", {"spec": spec.to_dict()})
    weights = constant_weights(spec)
    back, _ = load_statistics(tmp_path / "s")
    checkpoint.check_constant_weights(back, weights, tmp_path / "s")  # the spec's own
    file = tmp_path / "s" / "manifest.json"
    manifest = json.loads(file.read_text())
    std = manifest["standardization"]
    if bad == "other":
        std["x_ones"] = [2.0] * len(std["x_ones"])
    elif bad == "unshifted":
        del std["x_ones"]
    manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    file.write_text(json.dumps(manifest))
    back, _ = load_statistics(tmp_path / "s")
    if bad == "intercept":  # the same x_ones, checked against a spec with an intercept
        weights = constant_weights(build_spec(df, "y ~ t", "g"))
    field = "y_shift" if bad == "unshifted" else "x_ones"
    with pytest.raises(CheckpointError, match=rf"manifest\.json: standardization\.{field}"):
        checkpoint.check_constant_weights(back, weights, tmp_path / "s")


def _two_factors(offset: float) -> pd.DataFrame:
    df = _frame(12)
    df["s"] = np.random.default_rng(5).choice(["p", "q"], size=len(df))
    df["y"] = df["y"] + offset
    return df


def test_statistics_shifted_beside_weights_only_this_version_finds_are_a_newer_format(
    tmp_path, monkeypatch
):
    """``y ~ 0 + C(t, Sum):C(s)`` gives one only by this version's rules (a Sum coding
    in an interaction): with y near 1e6 its statistics hold the shift (``x_ones``) and
    are saved as format version 11, which earlier versions (that would refuse the
    weights as not the design's) refuse as written by a newer dmixed; near zero they
    are not shifted and keep the format earlier versions read.  ``y ~ 0 +
    C(t):C(s)`` (indicators, shifted by earlier versions too) keeps format 10.  Each
    manifest says whether this version chose the shift (:data:`SHIFT_RULE`), and each
    passes the check of its own spec's weights."""
    from dmixed.design.centres import shift_needs_this_version

    written = {}
    for rhs in ("0 + C(t, Sum):C(s)", "0 + C(t):C(s)"):
        for offset in (1e6, 0.0):
            df = _two_factors(offset)
            spec = build_spec(df, f"y ~ {rhs}", "g")
            newer = shift_needs_this_version(spec)
            assert newer is ("Sum" in rhs)
            target = tmp_path / f"s{len(written)}"
            arrays = _stats(spec, df)
            assert bool(arrays.columns.x_ones.any()) is (offset != 0.0)
            save_statistics(arrays, target, {"spec": spec.to_dict()}, newer_shift=newer)
            back, manifest = load_statistics(target)
            checkpoint.check_constant_weights(
                back,
                constant_weights(spec),
                target,
                manifest=manifest,
                newer=newer,
            )
            assert (checkpoint.SHIFT_RULE in manifest) is newer
            written[rhs, offset] = manifest["format_version"], target
    assert written["0 + C(t, Sum):C(s)", 1e6][0] == checkpoint.SHIFTED_CODINGS_FORMAT_VERSION == 11
    assert written["0 + C(t):C(s)", 1e6][0] == checkpoint.SHIFTED_RESPONSE_FORMAT_VERSION == 10
    assert written["0 + C(t, Sum):C(s)", 0.0][0] < checkpoint.SHIFTED_RESPONSE_FORMAT_VERSION
    assert written["0 + C(t):C(s)", 0.0][0] < checkpoint.SHIFTED_RESPONSE_FORMAT_VERSION
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.SHIFTED_RESPONSE_FORMAT_VERSION)
    with pytest.raises(ValueError, match="newer dmixed"):
        load_statistics(written["0 + C(t, Sum):C(s)", 1e6][1])
    for key in [("0 + C(t):C(s)", 1e6), ("0 + C(t, Sum):C(s)", 0.0), ("0 + C(t):C(s)", 0.0)]:
        load_statistics(written[key][1])


@pytest.mark.parametrize(
    "rhs", ["0 + C(t, Sum):C(s)", "0 + C(t, [[1, 1, 0], [0, 1, 1], [1, 0, 1]]):C(s)"]
)
def test_statistics_saved_under_an_earlier_versions_weights_are_refused_saying_so(
    tmp_path, monkeypatch, rhs
):
    """Statistics of a design that gives one only by this version's rules (a Sum
    coding, or a user's coding without a constant column, in an interaction) written
    under the rules of earlier versions (the response near 1e6 not shifted, no
    ``x_ones``, no :data:`SHIFT_RULE`) are refused naming the manifest, saying an
    earlier version wrote them and to rebuild them."""
    from dmixed.design import centres, references
    from dmixed.design.centres import shift_needs_this_version

    df = _two_factors(1e6)
    spec = build_spec(df, f"y ~ {rhs}", "g")
    rule = centres.constant_weights
    with monkeypatch.context() as m:
        m.setattr(references, "constant_weights", lambda s: rule(s, earlier=True))
        arrays = _stats(spec, df)
    assert not arrays.columns.x_ones.size and arrays.columns.y_shift == 0.0
    save_statistics(arrays, tmp_path / "s", {"spec": spec.to_dict()})
    back, manifest = load_statistics(tmp_path / "s")
    assert shift_needs_this_version(spec)
    with pytest.raises(CheckpointError, match="written by an earlier version of dmixed") as info:
        checkpoint.check_constant_weights(
            back,
            constant_weights(spec),
            tmp_path / "s",
            manifest=manifest,
            newer=True,
        )
    assert str(tmp_path / "s" / "manifest.json") in str(info.value)
    assert "`dmixed fit` with a new statistics directory" in str(info.value)
