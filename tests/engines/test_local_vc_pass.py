"""The in-process data pass of variance components against the dense padded pass, on
random data frames through the formula design."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.engines.local import statistics_from_rows
from dmixed.errors import DroppedRowsWarning
from dmixed.kernels import accumulate_statistics, dense_random_design
from dmixed.stats.keys import sorted_codes
from dmixed.stats.slots import assign_vc_slots, lookup_vc_slots, slot_table
from tests._synth import QUICK


def _frame(seed: int, kind: str, nested: bool, missing: bool, balanced=False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, n_groups = 150, 7
    g = rng.integers(0, n_groups, n)
    level = rng.integers(0, 5, n) + (10 * g if nested else 0)
    if balanced:  # every group has every level (rows in any order): a full grid of pairs
        grid = rng.permutation(n)[: n_groups * 5]
        g[grid], level[grid] = np.divmod(np.arange(n_groups * 5), 5)
    other = rng.integers(0, 3, n)
    frame = pd.DataFrame(
        {
            "y": rng.standard_normal(n) + 100.0,
            "x": rng.standard_normal(n),
            "w": np.where(g == 0, 0.0, rng.uniform(0.5, 2.0, n)),  # group 0: no entries
            "g": g,
            "other": other,
        }
    )
    if kind == "str":
        frame["lev"] = [f"L{v}" for v in level]
    elif kind == "category":
        frame["lev"] = pd.Categorical(level)
    else:
        frame["lev"] = level
    if missing:
        frame.loc[frame.index[::17], "lev"] = None
    return frame


def _dense_reference(rows, std):
    codes, labels = sorted_codes(rows.groups)
    widths, slots = [], []
    for cols, vals in zip(rows.vc_cols, rows.vc_vals, strict=True):  # sorted keys, searched
        keys, pair_slots, width = assign_vc_slots(codes, cols, vals)
        ncols = int(cols.max()) + 1 if cols.size else 0
        widths.append(width)
        slots.append(lookup_vc_slots(codes, cols, vals, keys, pair_slots, ncols))
    zt = dense_random_design(rows.exog_re, slots, rows.vc_vals, widths)
    st_ = accumulate_statistics(
        codes, len(labels), rows.endog, rows.exog, zt, rows.weights, std, widths
    )
    return st_["zz"], st_["zxy"]


def _close(a, b, rtol=1e-12):
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-300)
    assert a.shape == b.shape
    assert np.abs(a - b).max(initial=0.0) <= rtol * scale


COMPONENTS = {
    "one": {"c": "0 + C(lev)"},
    "two": {"c": "0 + C(lev)", "o": "0 + C(other)"},
    "weighted": {"c": "0 + C(lev):w"},
    "continuous": {"c": "0 + w"},
}


@settings(max_examples=20, **QUICK)
@given(
    st.integers(0, 10**6),
    st.sampled_from(["int", "str", "category"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(sorted(COMPONENTS)),
    st.sampled_from(["1", "1 + x", "0"]),
    st.booleans(),
)
def test_data_pass_equals_the_dense_pass(seed, kind, nested, missing, which, re_formula, full):
    """Every statistic of the pass (structured or dense, one pass or two) equals the
    dense padded pass over the same rows (its slots by sorted keys, searched) to 1e-12
    relative, and the slot tables are those keys'; ``full``: every group has every
    level, where not nested."""
    frame = _frame(seed, kind, nested, missing, balanced=full and not nested)
    kw = {} if re_formula == "0" else {"re_formula": re_formula}
    uses_lev = missing and "lev" in " ".join(COMPONENTS[which].values())
    dropped = pytest.warns(DroppedRowsWarning) if uses_lev else contextlib.nullcontext()
    with dropped:
        model = dmixed.MixedLM.from_formula(
            "y ~ x",
            groups="g",
            vc_formula=COMPONENTS[which],
            data=frame,
            missing="drop" if missing else "raise",
            **kw,
        )
    stats = statistics_from_rows(model.rows)
    zz, zxy = _dense_reference(model.rows, stats.standardization)
    got_zz, got_zxy = stats.engine.gather()
    _close(got_zz, zz)
    _close(got_zxy, zxy)
    codes, labels = sorted_codes(model.rows.groups)
    for cols, vals, table in zip(
        model.rows.vc_cols, model.rows.vc_vals, stats.vc_slot_cols, strict=True
    ):
        keys, pair_slots, width = assign_vc_slots(codes, cols, vals)
        ncols = max(int(cols.max()) + 1 if cols.size else 0, 1)
        np.testing.assert_array_equal(
            table, slot_table(keys, pair_slots, ncols, width, len(labels))
        )


def _grid_frame(seed: int, groups: int, levels: int, size: int, order: str) -> pd.DataFrame:
    """Every group with every level, ``size`` rows each: rows sorted by group then level
    (every cell's rows in turn), or shuffled; ``w`` zero in group 0 (no entries there
    for ``C(lev):w``)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), levels * size)
    lev = np.tile(np.repeat(np.arange(levels), size), groups)
    n = g.size
    frame = pd.DataFrame(
        {
            "y": rng.standard_normal(n) * 3.0 + 50.0,
            "x": rng.standard_normal(n),
            "w": np.where(g == 0, 0.0, rng.uniform(0.5, 2.0, n)),
            "g": g,
            "lev": lev,
            "other": rng.integers(0, 3, n),
        }
    )
    if order == "shuffled":
        frame = frame.iloc[rng.permutation(n)].reset_index(drop=True)
    return frame


def _plain(rows):
    """The rows with every component's entries as a plain (writable, strided) array."""
    return dataclasses.replace(rows, vc_vals=[np.array(v) for v in rows.vc_vals])


@settings(max_examples=20, **QUICK)
@given(
    st.integers(0, 10**6),
    st.integers(2, 4),
    st.integers(3, 6),
    st.integers(2, 5),
    st.sampled_from(["sorted", "shuffled"]),
    st.sampled_from(sorted(COMPONENTS)),
    st.sampled_from(["1", "1 + x", "0"]),
    st.booleans(),
)
def test_data_pass_of_a_grid_is_the_dense_pass(
    seed, groups, levels, size, order, which, re_formula, weighted
):
    """Balanced grids, rows in order of their cells or not (the per-cell sums row by row
    of the cells, or by ``bincount``): the dense padded pass's statistics to 1e-12, and
    the entries of an indicator held as one value broadcast give the statistics of the
    same entries written out, bit for bit."""
    frame = _grid_frame(seed, groups, levels, size, order)
    kw = {} if re_formula == "0" else {"re_formula": re_formula}
    if weighted:
        frame["pw"] = np.random.default_rng(seed).uniform(0.5, 2.0, len(frame))
        kw["weights"] = "pw"
    model = dmixed.MixedLM.from_formula(
        "y ~ x", groups="g", vc_formula=COMPONENTS[which], data=frame, **kw
    )
    stats = statistics_from_rows(model.rows)
    zz, zxy = _dense_reference(model.rows, stats.standardization)
    got_zz, got_zxy = stats.engine.gather()
    _close(got_zz, zz)
    _close(got_zxy, zxy)
    plain = statistics_from_rows(_plain(model.rows))
    assert plain.standardization == stats.standardization
    for mine, ref in zip(stats.engine.gather(), plain.engine.gather(), strict=True):
        np.testing.assert_array_equal(mine, ref)
    np.testing.assert_array_equal(stats.glob.xyxy, plain.glob.xyxy)


@pytest.mark.parametrize("kind", ["int", "str", "category"])
@pytest.mark.parametrize("which", ["one", "two", "weighted"])
@pytest.mark.parametrize("seed", [0, 1])
def test_data_pass_with_the_compiled_numbering_is_numpys(kind, which, seed, monkeypatch):
    """A nested component (60 groups, 3 levels of its own each) numbered by the compiled
    sweep (``DMIXED_KERNELS=numba``; taken) gives the statistics and slot tables of
    numpy's numbering, bit for bit."""
    pytest.importorskip("numba")
    from dmixed.kernels import slots_jit

    rng = np.random.default_rng(seed)
    n = 400
    frame = _frame(seed, "int", nested=False, missing=False).sample(n, replace=True)
    frame["g"] = rng.integers(0, 60, n)
    level = 3 * frame["g"].to_numpy() + rng.integers(0, 3, n)
    frame["lev"] = {"int": level, "str": [f"L{v}" for v in level]}.get(kind, pd.Categorical(level))
    model = dmixed.MixedLM.from_formula(
        "y ~ x", groups="g", re_formula="1", vc_formula=COMPONENTS[which], data=frame
    )
    calls = []
    compiled_pairs = slots_jit.nested_pairs
    monkeypatch.setattr(slots_jit, "nested_pairs", lambda *a: calls.append(1) or compiled_pairs(*a))
    out = {}
    for choice in ("numpy", "numba"):
        monkeypatch.setenv("DMIXED_KERNELS", choice)
        stats = statistics_from_rows(model.rows)
        out[choice] = (*stats.engine.gather(), *stats.vc_slot_cols, stats.glob.xyxy)
    assert calls  # (the numbering of "lev", at least)
    for got, want in zip(out["numba"], out["numpy"], strict=True):
        np.testing.assert_array_equal(got, want)
