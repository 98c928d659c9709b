"""Saved statistics held crossed (``dmixed/stats/checkpoint.py`` format 5,
``crossed_stats.py``): components sharing rows are saved, loaded and merged slot by slot
and co-occurrence by co-occurrence, never padded; padded (format 3) directories of such
models still load and merge."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed import CheckpointError
from dmixed.engines.local import statistics_from_arrays
from dmixed.engines.vc_crossed import CrossedVCEngine
from dmixed.files import file_sha256
from dmixed.model import MixedLM
from dmixed.stats import checkpoint
from dmixed.stats.checkpoint import GroupArrays, load_statistics, merge, save_statistics
from tests.engines.test_vc_crossed import CROSSED, crossed_data
from tests.stats.test_checkpoint_ragged import _assert_same_fit, _assert_same_ragged

FORMULA = "y ~ x"
KW = {"groups": "g", "re_formula": "1", "vc_formula": CROSSED}
CONTINUOUS = {**KW, "vc_formula": {"a": "0 + C(a)", "ax": "0 + C(a):x2"}}


def _arrays(df, kw=KW, like: GroupArrays | None = None, spec=None) -> GroupArrays:
    """Statistics of ``df`` held crossed (``spec``: the whole data's, so that batches
    number the components' columns alike, as ``dmixed update`` does)."""
    std = None if like is None else like.columns
    model = (
        MixedLM.from_formula(FORMULA, data=df, **kw)
        if spec is None
        else MixedLM.from_spec(spec, df)
    )
    stats = model.statistics(standardization=std)
    assert isinstance(stats.engine, CrossedVCEngine)
    return GroupArrays.from_statistics(stats, ragged=True)


def _refit(arrays: GroupArrays, spec):
    return MixedLM.from_statistics(statistics_from_arrays(arrays), spec).fit()


def _assert_same_cross(got: GroupArrays, want: GroupArrays) -> None:
    _assert_same_ragged(got, want)
    for name in ("group", "s", "t", "value"):
        np.testing.assert_array_equal(getattr(got.cross, name), getattr(want.cross, name))


def _assert_same_dense(got: GroupArrays, want: GroupArrays, tol: float = 1e-12) -> None:
    a, b = got.padded(), want.padded()
    for x, y in ((a.zz, b.zz), (a.zxy, b.zxy)):
        np.testing.assert_allclose(x, y, rtol=0, atol=tol * np.abs(y).max())
    for t_got, t_want in zip(a.slot_cols, b.slot_cols, strict=True):
        np.testing.assert_array_equal(t_got, t_want)


def _size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


@pytest.mark.parametrize("kw", [KW, CONTINUOUS], ids=["crossed", "continuous"])
def test_crossed_round_trip_is_exact_and_refits_the_same(tmp_path, kw):
    df = crossed_data(seed=2)
    model = MixedLM.from_formula(FORMULA, data=df, **kw)
    ref = model.fit()
    arrays = _arrays(df, kw)
    assert arrays.zz.size == 0 and arrays.cross.size > 0
    save_statistics(arrays, tmp_path / "s", {})
    back, manifest = load_statistics(tmp_path / "s")
    assert manifest["format_version"] == checkpoint.CROSSED_FORMAT_VERSION == 5
    assert manifest["storage"] == checkpoint.CROSSED
    assert manifest["n_cross"] == back.cross.size
    _assert_same_cross(back, arrays)
    _assert_same_dense(back, GroupArrays.from_statistics(model.statistics()), tol=0.0)
    assert isinstance(statistics_from_arrays(back).engine, CrossedVCEngine)
    _assert_same_fit(_refit(back, model.spec), ref)
    save_statistics(arrays.padded(), tmp_path / "p", {})  # format 3: what it was
    assert _size(tmp_path / "s") < _size(tmp_path / "p")
    _assert_same_fit(_refit(load_statistics(tmp_path / "p")[0], model.spec), ref)


def _halves(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two batches sharing groups and some of their levels (new levels of old groups)."""
    rng = np.random.default_rng(1)
    old = (df["g"].astype(int) < 9) & (rng.uniform(size=len(df)) < 0.6)
    return df[old], df[~old]


def test_merge_of_crossed_halves_equals_the_padded_merge_and_fits_as_the_whole(tmp_path):
    df = crossed_data(seed=3)
    a, b = _halves(df)
    whole = MixedLM.from_formula(FORMULA, data=df, **KW)
    old = _arrays(a, spec=whole.spec)
    new = _arrays(b, like=old, spec=whole.spec)
    merged = merge(old, new)
    assert merged.cross is not None and merged.zz.size == 0
    _assert_same_dense(merged, merge(old.padded(), new.padded()), tol=1e-14)
    # a padded (format 3) saved half and a crossed new one: merged crossed, the same sums
    _assert_same_dense(merge(old.padded(), new), merged, tol=1e-14)
    assert merge(old.padded(), new).cross is not None
    save_statistics(merged, tmp_path / "m", {})
    back = load_statistics(tmp_path / "m")[0]
    _assert_same_cross(back, merged)
    _assert_same_fit(_refit(back, whole.spec), whole.fit(), rtol=1e-8)


def test_merge_of_a_new_batch_in_another_columns_map():
    """Each batch chose its own map: the co-occurrences are converted exactly."""
    df = crossed_data(seed=3)
    a, b = _halves(df)
    old = _arrays(a, CONTINUOUS)
    new = _arrays(b.assign(x2=8 * b["x2"], y=4 * b["y"] + 30), CONTINUOUS)
    assert new.columns != old.columns
    _assert_same_dense(merge(old, new), merge(old.padded(), new.padded()))


def test_update_from_dask_equals_the_fit_of_all_rows(tmp_path):
    """What ``dmixed fit --stats-dir`` then ``dmixed update`` do, on Dask: statistics of
    the first batch (kept on no cluster: gathered crossed) saved, loaded, added to the
    second batch's in the saved map, refitted: the fit of all rows."""
    df = crossed_data(seed=4).sample(frac=1.0, random_state=0).reset_index(drop=True)
    a, b = _halves(df)
    whole = MixedLM.from_formula(FORMULA, data=df, **KW)
    with dask.config.set(scheduler="sync"):
        first = MixedLM.from_spec(whole.spec, dd.from_pandas(a, npartitions=3))
        save_statistics(GroupArrays.from_statistics(first.statistics(), ragged=True), tmp_path, {})
        old = load_statistics(tmp_path)[0]
        second = MixedLM.from_spec(whole.spec, dd.from_pandas(b, npartitions=2))
        stats = second.statistics(standardization=old.columns)
        assert isinstance(stats.engine, CrossedVCEngine)
        new = GroupArrays.from_statistics(stats, ragged=True)
    _assert_same_fit(_refit(merge(old, new), whole.spec), whole.fit(), rtol=1e-8)


def _reseal_cross(d: Path, change) -> None:
    """Edit the co-occurrence file and rewrite its sha256 and the manifest's."""
    file = d / "cross/part-00000.parquet"
    change(pd.read_parquet(file)).to_parquet(file, index=False)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["cross_parts"][0]["sha256"] = file_sha256(file)
    manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    "a co-occurrence file changed": (
        lambda d: (
            pd.read_parquet(d / "cross/part-00000.parquet")
            .assign(value=0.0)
            .to_parquet(d / "cross/part-00000.parquet", index=False)
        ),
        "cross/part-00000.parquet was changed or damaged after dmixed wrote it",
    ),
    "a co-occurrence file deleted": (
        lambda d: (d / "cross/part-00000.parquet").unlink(),
        "cross/part-00000.parquet is missing",
    ),
    "columns out of order, resealed": (
        lambda d: _reseal_cross(d, lambda f: f.assign(s=f["t"], t=f["s"])),
        "columns are not s < t",
    ),
    "a slot not held, resealed": (
        lambda d: _reseal_cross(d, lambda f: f.assign(group=f["group"].max())),
        "damaged statistics",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_crossed_statistics_are_refused_naming_the_file(tmp_path, damage):
    d = tmp_path / "stats"
    save_statistics(_arrays(crossed_data(seed=2)), d, {})
    load_statistics(d)  # intact
    change, message = DAMAGE[damage]
    change(d)
    with pytest.raises(CheckpointError, match=message):
        load_statistics(d)


def _zero_cooccurrences(n_groups: int = 8, seed: int = 0) -> pd.DataFrame:
    """``a`` crossed with ``b``, every (a, b) cell two rows with ``x2`` = +1 and −1: the
    co-occurrences of ``C(a)`` and ``C(b):x2`` share rows but sum to exactly zero."""
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.arange(25), np.arange(3), indexing="ij")
    a, b = np.repeat(a.ravel(), 2), np.repeat(b.ravel(), 2)
    df = pd.concat(
        [pd.DataFrame({"g": g, "a": a, "b": b, "x2": np.tile([1.0, -1.0], 75)}) for g in range(8)],
        ignore_index=True,
    )
    g = df["g"].to_numpy()
    df["x"] = rng.normal(size=len(df))
    df["y"] = (
        df["x"]
        + rng.normal(size=n_groups)[g]
        + rng.normal(size=(n_groups, 25))[g, df["a"]]
        + 0.5 * rng.normal(size=(n_groups, 3))[g, df["b"]] * df["x2"]
        + rng.normal(size=len(df))
    )
    return df


ZERO = {**KW, "vc_formula": {"a": "0 + C(a)", "bx": "0 + C(b):x2"}}


def test_saved_statistics_keep_the_elimination_when_cooccurrences_sum_to_zero(tmp_path):
    """The rows share slots of ``a`` and ``bx`` (the fit eliminates ``a`` alone), their
    sums are zero (none written): loaded, the statistics eliminate ``a`` alone again,
    and refit to the same parameters; merged halves keep it too."""
    df = _zero_cooccurrences()
    model = MixedLM.from_formula(FORMULA, data=df, **ZERO)
    stats = model.statistics()
    assert stats.engine.crossed.diag_comps == (0,)
    arrays = GroupArrays.from_statistics(stats, ragged=True)
    assert arrays.cross.size == 0 and arrays.cross.diagonal == (0,)
    save_statistics(arrays, tmp_path / "s", {})
    back, manifest = load_statistics(tmp_path / "s")
    assert manifest["cross_diagonal"] == [0]
    loaded = statistics_from_arrays(back)
    assert loaded.engine.crossed.diag_comps == (0,)
    back.cross.diagonal = None  # as before: chosen from the non-zero sums alone
    assert statistics_from_arrays(back).engine.crossed.diag_comps == (0, 1)
    ref = model.fit()
    refit = MixedLM.from_statistics(loaded, model.spec).fit()
    assert refit.llf == ref.llf
    np.testing.assert_array_equal(refit.params, ref.params)
    first, second = df[df["g"] < 4], df[df["g"] >= 4]
    old = _arrays(first, ZERO, spec=model.spec)
    merged = merge(old, _arrays(second, ZERO, like=old, spec=model.spec))
    assert merged.cross.diagonal == (0,)
    assert statistics_from_arrays(merged).engine.crossed.diag_comps == (0,)


def _reseal_manifest(d: Path, diagonal) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["cross_diagonal"] = diagonal
    manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("diagonal", "message"),
    [([3], "names no component"), ([1, 0], "not sorted distinct"), ([], "not sorted distinct")],
)
def test_a_bad_saved_elimination_is_refused(tmp_path, diagonal, message):
    d = tmp_path / "stats"
    save_statistics(_arrays(crossed_data(seed=2)), d, {})
    _reseal_manifest(d, diagonal)
    with pytest.raises(CheckpointError, match=message):
        load_statistics(d)


def test_a_saved_elimination_of_components_sharing_rows_is_refused(tmp_path):
    arrays = _arrays(crossed_data(seed=2))
    arrays.cross.diagonal = (0, 1)  # a and b share rows: no such elimination
    with pytest.raises(ValueError, match="share rows"):
        statistics_from_arrays(arrays)
