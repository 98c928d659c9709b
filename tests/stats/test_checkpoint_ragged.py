"""Saved statistics held ragged (``dmixed/stats/checkpoint.py`` format 4,
``checkpoint_slots.py``, ``ragged_stats.py``): structured variance components are saved,
loaded and merged slot by slot, never padded; padded (format 3) directories still load."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed import CheckpointError
from dmixed.engines.local import statistics_from_arrays
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.files import file_sha256
from dmixed.model import MixedLM
from dmixed.stats import checkpoint
from dmixed.stats.checkpoint import GroupArrays, load_statistics, merge, save_statistics
from dmixed.stats.ragged_stats import RaggedArrays

from .._synth import make_data

FORMULA = "y ~ x1 + x2"
KW = {"groups": "g", "re_formula": "1 + x1", "vc_formula": {"sub": "0 + C(sub)"}}
WEIGHTED = {**KW, "re_formula": "1", "weights": "w"}


def _frame(seed: int = 5, n_groups: int = 30) -> pd.DataFrame:
    df = make_data(n_groups=n_groups, max_size=15, vc_sd=0.6, n_sub=6, seed=seed)
    return df.assign(w=np.random.default_rng(seed).uniform(0.5, 2.0, len(df)))


def _model(df, kw=KW) -> MixedLM:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MixedLM.from_formula(FORMULA, data=df, **kw)


def _arrays(model: MixedLM, ragged: bool = True, like: GroupArrays | None = None):
    std = None if like is None else like.columns
    return GroupArrays.from_statistics(model.statistics(standardization=std), ragged=ragged)


def _refit(arrays: GroupArrays, spec):
    return MixedLM.from_statistics(statistics_from_arrays(arrays), spec).fit()


def _assert_same_fit(res, ref, rtol: float = 1e-10) -> None:
    for name in ("params", "bse", "fe_params", "vcomp"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=rtol)
    np.testing.assert_allclose([res.llf, res.scale], [ref.llf, ref.scale], rtol=rtol)


def _assert_same_ragged(got: GroupArrays, want: GroupArrays) -> None:
    assert got.ragged is not None and want.ragged is not None
    for field in dataclasses.fields(RaggedArrays):
        np.testing.assert_array_equal(
            getattr(got.ragged, field.name), getattr(want.ragged, field.name), err_msg=field.name
        )
    for t_got, t_want in zip(got.slot_cols, want.slot_cols, strict=True):
        np.testing.assert_array_equal(t_got, t_want)
    assert list(got.labels) == list(want.labels) and got.layout == want.layout
    np.testing.assert_array_equal(got.nobs, want.nobs)
    np.testing.assert_array_equal(got.glob.xyxy, want.glob.xyxy)


@pytest.mark.parametrize("kw", [KW, WEIGHTED], ids=["slope", "weighted"])
def test_ragged_round_trip_is_exact_and_refits_the_same(tmp_path, kw):
    df = _frame()
    model = _model(df, kw)
    ref = model.fit()
    arrays = _arrays(model)
    assert arrays.zz.size == 0 and arrays.ragged is not None
    save_statistics(arrays, tmp_path / "s", {"spec": model.spec.to_dict()})
    back, manifest = load_statistics(tmp_path / "s")
    assert manifest["format_version"] == checkpoint.RAGGED_FORMAT_VERSION == 4
    assert manifest["storage"] == checkpoint.RAGGED
    assert manifest["n_slots"] == back.ragged.d.size  # every slot is held here
    assert not any(c.startswith("vc_column") for c in pd.read_parquet(tmp_path / "s/groups"))
    _assert_same_ragged(back, arrays)
    stats = statistics_from_arrays(back)
    assert isinstance(stats.engine, StructuredVCEngine)
    _assert_same_fit(_refit(back, model.spec), ref)


def test_padded_format_3_still_loads_and_refits_the_same(tmp_path):
    """Statistics of a structured model saved padded (what earlier versions wrote)."""
    df = _frame()
    model = _model(df)
    ref = model.fit()
    save_statistics(_arrays(model, ragged=False), tmp_path / "s", {})
    back, manifest = load_statistics(tmp_path / "s")
    assert manifest["format_version"] == 3 and "storage" not in manifest
    assert back.ragged is None and back.zz.shape[1] == back.layout.r
    _assert_same_fit(_refit(back, model.spec), ref)


def test_ragged_over_several_files(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "GROUPS_PER_FILE", 7)
    arrays = _arrays(_model(_frame()))
    save_statistics(arrays, tmp_path / "s", {})
    manifest = checkpoint.read_manifest(tmp_path / "s")
    assert len(manifest["slot_parts"]) > 3 and len(manifest["parts"]) > 3
    _assert_same_ragged(load_statistics(tmp_path / "s")[0], arrays)


def _reseal_slots(d: Path, change) -> None:
    """Edit a slot file and rewrite its sha256 and the manifest's: only the content
    checks can see it."""
    file = d / "slots/part-00000.parquet"
    change(pd.read_parquet(file)).to_parquet(file, index=False)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["slot_parts"][0]["sha256"] = file_sha256(file)
    manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(d: Path, change) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    change(manifest)
    manifest[checkpoint.MANIFEST_SHA256] = checkpoint.manifest_sha256(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))


def _scale_d(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(d=2 * frame["d"])


DAMAGE = {
    "a slot file changed": (
        lambda d: _scale_d(pd.read_parquet(d / "slots/part-00000.parquet")).to_parquet(
            d / "slots/part-00000.parquet", index=False
        ),
        "slots/part-00000.parquet was changed or damaged after dmixed wrote it",
    ),
    "a slot file deleted": (
        lambda d: (d / "slots/part-00001.parquet").unlink(),
        "slots/part-00001.parquet is missing",
    ),
    "a slot file added": (
        lambda d: (d / "slots/part-00099.parquet").write_bytes(
            (d / "slots/part-00000.parquet").read_bytes()
        ),
        "slots/part-00099.parquet is not one of the part files listed",
    ),
    "a slot's pos out of its component, resealed": (
        lambda d: _reseal_slots(d, lambda f: f.assign(pos=f["pos"] + 1000)),
        "damaged statistics: a slot's pos is outside its component's columns",
    ),
    "slots repeated, resealed": (
        lambda d: _reseal_slots(d, lambda f: f.assign(group=0)),
        "not sorted by \\(group, pos\\) without repeats",
    ),
    "storage padded in a format-4 manifest, resealed": (
        lambda d: _edit_manifest(d, lambda m: m.update(storage="padded")),
        "format version 4 with storage 'padded'",
    ),
    "slot count in the manifest, resealed": (
        lambda d: _edit_manifest(d, lambda m: m.update(n_slots=m["n_slots"] + 1)),
        "slots in the slot files, n_slots",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_ragged_statistics_are_refused_naming_the_file(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(checkpoint, "GROUPS_PER_FILE", 40)
    d = tmp_path / "stats"
    save_statistics(_arrays(_model(_frame())), d, {})
    load_statistics(d)  # intact
    change, message = DAMAGE[damage]
    change(d)
    with pytest.raises(CheckpointError, match=message):
        load_statistics(d)


def _halves(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two batches sharing groups and some of their levels (new levels of old groups)."""
    rng = np.random.default_rng(1)
    old = (df["g"] < 20) & (rng.uniform(size=len(df)) < 0.6)
    return df[old], df[~old]


def test_merge_of_ragged_halves_equals_the_padded_merge_and_fits_as_the_whole(tmp_path):
    df = _frame(n_groups=30)
    a, b = _halves(df)
    spec = _model(df).spec
    old = _arrays(_model(a))
    new = _arrays(_model(b), like=old)
    merged = merge(old, new)
    assert merged.ragged is not None and merged.zz.size == 0
    padded = merge(old.padded(), new.padded())
    zz, zxy = merged.ragged.dense()
    np.testing.assert_allclose(zz, padded.zz, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(zxy, padded.zxy, rtol=1e-14, atol=1e-12)
    for t_got, t_want in zip(merged.slot_cols, padded.slot_cols, strict=True):
        np.testing.assert_array_equal(t_got, t_want)
    # a padded (older) saved half and a ragged new one: merged ragged, the same sums
    mixed = merge(old.padded(), new)
    _assert_same_ragged(mixed, merged)
    save_statistics(merged, tmp_path / "m", {})
    back = load_statistics(tmp_path / "m")[0]
    _assert_same_ragged(back, merged)
    whole = _model(df).fit()
    _assert_same_fit(_refit(back, spec), whole, rtol=1e-8)


def test_merge_of_a_new_batch_in_another_columns_map():
    """Each batch chose its own map: the ragged one is converted exactly."""
    df = _frame(n_groups=30)
    a, b = _halves(df)
    old = _arrays(_model(a))
    b = b.assign(x1=64 * b["x1"] + 500, y=8 * b["y"] + 300)  # not the same model:
    new = _arrays(_model(b))  # its own map, for this check of the addition alone
    assert new.columns != old.columns
    got = merge(old, new)
    want = merge(old.padded(), new.padded())
    zz, zxy = got.ragged.dense()
    scale = np.abs(want.zz).max()
    np.testing.assert_allclose(zz, want.zz, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(zxy, want.zxy, rtol=1e-12, atol=1e-12 * np.abs(want.zxy).max())


def test_two_groups_of_10000_levels_save_and_load_ragged(tmp_path):
    """r = 10,001: the padded form would be 2 × 10,001² values (1.6 GB)."""
    rng = np.random.default_rng(0)
    g = np.repeat([0, 1], 30_000)
    level = np.tile(np.repeat(np.arange(10_000), 3), 2)
    df = pd.DataFrame({"g": g, "level": level, "x1": rng.standard_normal(g.size)})
    df["y"] = (
        rng.standard_normal(2)[g] + 0.7 * rng.standard_normal(20_000)[g * 10_000 + level]
    ) + rng.standard_normal(g.size)
    kw = {"groups": "g", "re_formula": "1", "vc_formula": {"c": "0 + C(level)"}}
    model = MixedLM.from_formula("y ~ x1", data=df, **kw)
    ref = model.fit()
    arrays = _arrays(model)
    assert arrays.layout.r == 10_001
    save_statistics(arrays, tmp_path / "s", {})
    size = sum(f.stat().st_size for f in (tmp_path / "s").rglob("*") if f.is_file())
    assert size < 20 * 2**20
    back = load_statistics(tmp_path / "s")[0]
    _assert_same_ragged(back, arrays)
    _assert_same_fit(_refit(back, model.spec), ref)


@pytest.mark.parametrize("engine", ["local", "distributed"])
def test_statistics_from_dask_saved_ragged_refit_the_same(tmp_path, client, engine):
    """Gathered, or kept on the workers (gathered ragged block by block)."""
    df = _frame().sample(frac=1.0, random_state=2).reset_index(drop=True)
    ddf = dd.from_pandas(df, npartitions=3)
    with dask.config.set({"dmixed.engine": engine}):
        model = MixedLM.from_formula(FORMULA, data=ddf, **KW)
        stats = model.statistics(client=client)
        assert stats.engine.collapsed_vc
        res = model.fit(client=client)
        arrays = GroupArrays.from_statistics(stats, ragged=True)
    assert arrays.ragged is not None
    save_statistics(arrays, tmp_path / "s", {})
    back = load_statistics(tmp_path / "s")[0]
    _assert_same_ragged(back, arrays)
    _assert_same_fit(_refit(back, model.spec), res)
    _assert_same_fit(_refit(back, model.spec), _model(df).fit())
