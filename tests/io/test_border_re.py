"""Random effects of crossed variance components saved unpadded (format 3)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import CheckpointError
from dmixed.io import load_state, save_state
from dmixed.io.border_re import COV_TABLE, crossed_random_effects, crossed_tables
from dmixed.io.results_dir import NAMED_COLUMNS_FORMAT_VERSION
from dmixed.stats.blup_cov import RaggedBlup
from dmixed.stats.border_cov import BorderCov
from tests.engines.test_vc_crossed import CROSSED, crossed_data
from tests.io._positional import as_numbered

CASES = {
    "crossed": ("1", CROSSED),
    "no_exog_re": (None, CROSSED),
    "continuous": ("1", {"a": "0 + C(a)", "ax": "0 + C(a):x2"}),
}


def _fit(case: str):
    re_formula, vc = CASES[case]
    model = dmixed.MixedLM.from_formula(
        "y ~ x", data=crossed_data(seed=1), groups="g", re_formula=re_formula, vc_formula=vc
    )
    res = model.fit()
    state = res.to_state()
    assert isinstance(state.blup, RaggedBlup) and isinstance(state.blup_cov, BorderCov)
    return res, state


def _bytes(path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


@pytest.mark.parametrize("case", sorted(CASES))
def test_crossed_round_trip_is_exact(tmp_path, case):
    """Saved unpadded and loaded back: the same covariances, BLUPs and slot tables, bit
    for bit; smaller than the padded directory (format 1, which still loads)."""
    res, state = _fit(case)
    save_state(state, tmp_path / "s", "text")
    doc = json.loads((tmp_path / "s" / "estimates.json").read_text())
    assert doc["format_version"] == NAMED_COLUMNS_FORMAT_VERSION
    assert doc["estimates"]["random_effects_form"] == "crossed"
    table = pd.read_parquet(tmp_path / "s" / "random_effects.parquet")
    assert not any(c.startswith("cov[") for c in table.columns)
    back = load_state(tmp_path / "s")
    assert isinstance(back.blup_cov, BorderCov)
    np.testing.assert_array_equal(back.blup_cov.dense(), state.blup_cov.dense())
    np.testing.assert_array_equal(np.asarray(back.blup), np.asarray(state.blup))
    for a, b in zip(back.vc_slot_cols, state.vc_slot_cols, strict=True):
        np.testing.assert_array_equal(a, b)
    as_numbered(tmp_path / "s", 3)  # as format 3 wrote it: re[0]
    np.testing.assert_array_equal(
        np.asarray(load_state(tmp_path / "s").blup), np.asarray(state.blup)
    )
    padded = dataclasses.replace(
        state, blup=np.asarray(state.blup), blup_cov=state.blup_cov.dense()
    )
    save_state(padded, tmp_path / "old", "text")
    assert _bytes(tmp_path / "s") < _bytes(tmp_path / "old")
    as_numbered(tmp_path / "old", 1)
    np.testing.assert_array_equal(load_state(tmp_path / "old").blup_cov, padded.blup_cov)
    res.save(tmp_path / "out")
    loaded = dmixed.load(tmp_path / "out")
    for group in res.group_labels[:2]:
        np.testing.assert_array_equal(
            loaded.random_effects_cov[group], res.random_effects_cov[group]
        )


def test_a_changed_factor_table_is_refused(tmp_path):
    res, _ = _fit("crossed")
    res.save(tmp_path / "out")
    path = tmp_path / "out" / COV_TABLE
    frame = pd.read_parquet(path)
    frame.loc[0, "value"] += 1.0
    frame.to_parquet(path, index=False)
    with pytest.raises(CheckpointError, match=f"{COV_TABLE} was changed"):
        dmixed.load(tmp_path / "out")


def test_factor_rows_that_do_not_fit_are_refused():
    _, state = _fit("crossed")
    slots, cov = crossed_tables(state)
    table = pd.DataFrame({"re[0]": np.asarray(state.blup.re)[:, 0]})
    widths, prior = state.vc_slot_widths, [1.0, 1.0]
    crossed_random_effects(table, slots, cov, 1, widths, prior)  # intact
    wide = cov.assign(k=cov["k"] + 100)
    with pytest.raises(ValueError, match="outside its group's border"):
        crossed_random_effects(table, slots, wide, 1, widths, prior)
    unlisted = cov.assign(pos=np.where(cov["pos"] > 0, 1 + cov["pos"] % 3, 0), group=0)
    with pytest.raises(ValueError, match="covariance factor"):
        crossed_random_effects(table, slots, unlisted, 1, widths, prior)
    with pytest.raises(ValueError, match="prior variances"):
        crossed_random_effects(table, slots, cov, 1, widths, [1.0])


def test_every_file_a_crossed_save_writes_is_named_in_the_readme(tmp_path):
    """The README's results directory and the command line's listing name every file
    a save with crossed components writes."""
    from pathlib import Path

    res, state = _fit("crossed")
    save_state(state, tmp_path / "s", "text")
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    listing = readme.split("The results directory (")[1].split(")")[0]
    for name in sorted(p.name for p in (tmp_path / "s").iterdir()):
        assert f"`{name}`" in readme, name
        assert f"`{name}`" in listing, name
