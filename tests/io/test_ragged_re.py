"""Random effects saved ragged (format 2), and padded directories (format 1) still load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import CheckpointError
from dmixed.io import load_state, save_state
from dmixed.io.ragged_re import component_prior, ragged_random_effects, slots_table
from dmixed.io.results_dir import NAMED_COLUMNS_FORMAT_VERSION
from dmixed.stats.blup_cov import RaggedBlup, RaggedCov

from .._synth import make_data
from ._positional import as_numbered

KW = {"groups": "g", "re_formula": "1 + x1", "vc_formula": {"sub": "0 + C(sub)"}}


@pytest.fixture(scope="module")
def fit():
    df = make_data(n_groups=25, vc_sd=0.6, n_sub=5, seed=8)
    res = dmixed.MixedLM.from_formula("y ~ x1 + x2", data=df, **KW).fit()
    assert isinstance(res.to_state().blup_cov, RaggedCov)
    return res


def _assert_same_random_effects(back, state) -> None:
    for name in ("blup", "blup_cov"):
        a, b = getattr(back, name), getattr(state, name)
        assert type(a) is type(b), name
        for field in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))
    for a, b in zip(back.vc_slot_cols, state.vc_slot_cols, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ragged_round_trip_is_exact(tmp_path, fit):
    """Saved ragged and loaded back: the same arrays, bit for bit (nothing padded)."""
    state = fit.to_state()
    save_state(state, tmp_path / "s", "text")
    doc = json.loads((tmp_path / "s" / "estimates.json").read_text())
    assert doc["format_version"] == NAMED_COLUMNS_FORMAT_VERSION
    assert doc["estimates"]["random_effects_form"] == "ragged"
    table = pd.read_parquet(tmp_path / "s" / "random_effects.parquet")
    assert not any(c.startswith("cov[") or c.startswith("vc_column") for c in table.columns)
    assert {'re["g"]', 're["x1"]', 'cov_root["x1","g"]'} <= set(table.columns)
    _assert_same_random_effects(load_state(tmp_path / "s"), state)
    as_numbered(tmp_path / "s", 2)  # as format 2 wrote it: re[0], cov_root[1,0], w[0]
    _assert_same_random_effects(load_state(tmp_path / "s"), state)
    fit.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    group = fit.group_labels[2]
    np.testing.assert_array_equal(back.random_effects_cov[group], fit.random_effects_cov[group])
    np.testing.assert_array_equal(back.random_effects[group], fit.random_effects[group])


def test_padded_directories_still_load(tmp_path, fit):
    """A directory with the padded columns (format 1, what earlier versions wrote)
    loads as before."""
    state = fit.to_state()
    padded = dataclasses.replace(
        state, blup=np.asarray(state.blup), blup_cov=np.asarray(state.blup_cov)
    )
    save_state(padded, tmp_path / "old", "text")
    doc = json.loads((tmp_path / "old" / "estimates.json").read_text())
    assert "random_effects_form" not in doc["estimates"]
    as_numbered(tmp_path / "old", 1)
    back = load_state(tmp_path / "old")
    np.testing.assert_array_equal(back.blup, np.asarray(state.blup))
    np.testing.assert_allclose(back.blup_cov, np.asarray(state.blup_cov), rtol=1e-14, atol=1e-16)


def test_a_changed_slots_table_is_refused(tmp_path, fit):
    fit.save(tmp_path / "out")
    path = tmp_path / "out" / "random_effects_slots.parquet"
    frame = pd.read_parquet(path)
    frame.loc[0, "delta"] += 1.0
    frame.to_parquet(path, index=False)
    with pytest.raises(CheckpointError, match="random_effects_slots.parquet was changed"):
        dmixed.load(tmp_path / "out")
    path.unlink()
    with pytest.raises(CheckpointError, match="random_effects_slots.parquet"):
        dmixed.load(tmp_path / "out")


def test_tables_that_do_not_fit_are_refused(fit):
    state = fit.to_state()
    slots = slots_table(state)
    table = pd.DataFrame({"re[0]": [0.0], "re[1]": [0.0]})
    with pytest.raises(ValueError, match="outside the groups"):
        ragged_random_effects(table, slots, 2, state.vc_slot_widths, [1.0])
    with pytest.raises(ValueError, match="prior variances"):
        ragged_random_effects(table, slots.iloc[:0], 2, state.vc_slot_widths, [])


def test_component_prior_is_one_number_per_component():
    cov = RaggedCov(
        np.zeros((1, 1, 1)),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros((0, 1)),
        np.zeros(0),
        np.array([2.0, 2.0, 3.0]),
    )
    assert component_prior(cov, (2, 1)) == [2.0, 3.0]
    with pytest.raises(ValueError, match="different prior"):
        component_prior(cov, (1, 2))


def test_blups_and_covariances_on_other_slots_are_refused(fit):
    state = fit.to_state()
    blup = state.blup
    other = RaggedBlup(blup.re, blup.group[1:], blup.pos[1:], blup.value[1:], blup.r)
    with pytest.raises(ValueError, match="different slots"):
        slots_table(dataclasses.replace(state, blup=other))


@pytest.mark.parametrize("ragged", [True, False])
def test_a_slot_naming_no_column_of_its_component_is_refused(tmp_path, fit, ragged):
    """A slot table entry past the component's columns (a directory edited and its
    sha256 recomputed) is refused when read, not an IndexError on first use."""
    state = fit.to_state()
    if not ragged:
        state = dataclasses.replace(
            state, blup=np.asarray(state.blup), blup_cov=np.asarray(state.blup_cov)
        )
    n_cols = len(state.names.vc_column_names[0])
    slot_cols = [t.copy() for t in state.vc_slot_cols]
    slot_cols[0][0, 0] = n_cols
    save_state(dataclasses.replace(state, vc_slot_cols=slot_cols), tmp_path / "s", "text")
    with pytest.raises(CheckpointError, match="variance component"):
        load_state(tmp_path / "s")
