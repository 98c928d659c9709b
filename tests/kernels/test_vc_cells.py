"""A component's per-cell sums against the dense pass over its design ``[Z, v]``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.kernels import accumulate_statistics
from dmixed.kernels.rows import plan_sums
from dmixed.kernels.vc_blocks import ragged_statistics
from dmixed.kernels.vc_cells import (
    EQUAL_CELLS_MAX,
    cell_plan_sums,
    cell_sums,
    cells_and_groups,
    equal_cells,
)
from dmixed.stats.slots import number_vc_cells
from dmixed.stats.standardize import Standardization
from tests._synth import QUICK


def _cells(seed: int, q: int, indicator: bool, shifted: bool):
    rng = np.random.default_rng(seed)
    n, n_cells = 200, 37
    cell = np.sort(rng.integers(0, n_cells, n))
    exog = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    if shifted:  # far from zero: the map shifts these columns
        exog[:, 1] += 1e6
    exog = np.asfortranarray(exog)
    exog_re = rng.standard_normal((n, q)) * 3.0
    if q:
        exog_re[:, 0] = 1.0
    if q > 1:
        exog_re[:, 1] = exog[:, 1]  # a random slope on a fixed-effect column
    endog = rng.standard_normal(n) * 50.0 + (1e5 if shifted else 0.0)
    v = np.ones(n) if indicator else rng.uniform(0.5, 2.0, n) * 2.0**-20
    return cell, n_cells, endog, exog, exog_re, v


def _dense(cell, n_cells, endog, exog, exog_re, v, weights, std):
    q = exog_re.shape[1]
    design = np.column_stack([exog_re, v])
    st_ = accumulate_statistics(cell, n_cells, endog, exog, design, weights, std, (1,))
    return st_["zz"][:, q, q], st_["zz"][:, :q, q], st_["zxy"][:, q, :]


#: seed, q, indicator entries, shifted columns, weights, map ("none" or "chosen")
CASES = (
    st.integers(0, 10**6),
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["none", "chosen"]),
)


@settings(max_examples=25, **QUICK)
@given(*CASES)
def test_cell_sums_are_the_dense_pass_bit_for_bit(seed, q, indicator, shifted, weighted, which):
    """``d``, ``b``, ``f2`` equal the dense pass's entries of ``[Z, v]``'s statistics
    exactly: the same products, added in row order, scaled by the same powers of two."""
    cell, n_cells, endog, exog, exog_re, v = _cells(seed, q, indicator, shifted)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, cell.size) if weighted else None
    std = None
    if which == "chosen":
        std = Standardization.choose(endog, exog, exog_re, None, [v[:, None]])
    got = cell_sums(cell, n_cells, endog, exog, exog_re, v, weights, std)
    assert got is not None
    want = _dense(cell, n_cells, endog, exog, exog_re, v, weights, std)
    for mine, ref in zip(got, want, strict=True):
        assert mine.shape == ref.shape
        np.testing.assert_array_equal(mine, ref)


def test_extreme_scales_are_left_to_the_dense_pass():
    """A map with a scale beyond 2^±400 (the dense pass divides such rows first): None."""
    cell, n_cells, endog, exog, exog_re, v = _cells(0, 1, True, False)
    std = Standardization.choose(endog * 1e140, exog, exog_re, None, [v[:, None]])
    assert cell_sums(cell, n_cells, endog * 1e140, exog, exog_re, v, None, std) is None
    tame = dataclasses.replace(std, y_scale=1.0)
    assert cell_sums(cell, n_cells, endog, exog, exog_re, v, None, tame) is not None


def _whole(seed: int, q: int, indicator: bool, shifted: bool):
    """Rows of 5 groups, each row in one cell (a level of its group): the cells
    partition the rows, numbered in (group, level) order; some groups have one cell."""
    rng = np.random.default_rng(seed)
    _, _, endog, exog, exog_re, v = _cells(seed, q, indicator, shifted)
    n, n_groups = endog.size, 5
    codes = rng.integers(0, n_groups, n)
    codes[:n_groups] = np.arange(n_groups)  # every group has a row
    levels = np.where(codes == 0, 0, rng.integers(0, 4, n))
    keys = codes * 4 + levels
    pairs, cell = np.unique(keys, return_inverse=True)
    return codes, n_groups, cell.reshape(-1), pairs // 4, endog, exog, exog_re, v


def _close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-300)
    assert a.shape == b.shape
    assert np.abs(a - b).max(initial=0.0) <= rtol * scale


@settings(max_examples=25, **QUICK)
@given(*CASES)
def test_groups_and_cells_in_one_pass_are_the_two_passes(
    seed, q, indicator, shifted, weighted, which
):
    """The one pass gives the cells' sums of :func:`cell_sums` bit for bit and the
    groups' statistics of the pass by group to rounding (1e-12 relative: the groups'
    sums are added up from their cells')."""
    codes, g, cell, cell_group, endog, exog, exog_re, v = _whole(seed, q, indicator, shifted)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, codes.size) if weighted else None
    std = None
    if which == "chosen":
        std = Standardization.choose(endog, exog, exog_re, None, [v[:, None]])
    got = cells_and_groups(codes, g, cell, cell_group, endog, exog, exog_re, v, weights, std)
    assert got is not None
    glob, sums = got
    want = cell_sums(cell, cell_group.size, endog, exog, exog_re, v, weights, std)
    for mine, ref in zip(sums, want, strict=True):
        np.testing.assert_array_equal(mine, ref)
    ref = accumulate_statistics(codes, g, endog, exog, exog_re, weights, std)
    if q == 0:  # no exog_re: (G, 0, k), where the pass by group says (G, 0, 0)
        ref["zxy"] = np.zeros((g, 0, exog.shape[1] + 1))
    for name in ("zz", "zxy"):
        _close(glob[name], ref[name])
    for name in ("nobs", "xyxy", "n", "sum_log_weights"):
        np.testing.assert_array_equal(glob[name], ref[name])
    assert (glob["within"] is None) == (ref["within"] is None)
    if ref["within"] is not None:
        _close(glob["within"], ref["within"])


@settings(max_examples=4, **QUICK)
@given(st.integers(0, 10**6), st.integers(1, 2), st.booleans())
def test_groups_and_cells_compiled_are_numpy_s(seed, q, weighted):
    """The compiled per-cell sums give the numpy reference's numbers (1e-12)."""
    pytest.importorskip("numba")
    codes, g, cell, cell_group, endog, exog, exog_re, v = _whole(seed, q, False, True)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, codes.size) if weighted else None
    std = Standardization.choose(endog, exog, exog_re, None, [v[:, None]])
    args = (codes, g, cell, cell_group, endog, exog, exog_re, v, weights, std)
    (glob_n, sums_n), (glob_c, sums_c) = (
        cells_and_groups(*args, compiled=c) for c in (False, True)
    )
    for mine, ref in zip(sums_c, sums_n, strict=True):
        _close(mine, ref)
    for name in ("zz", "zxy", "xyxy"):
        _close(glob_c[name], glob_n[name])


def test_groups_and_cells_leave_extreme_scales_to_the_dense_pass():
    codes, g, cell, cell_group, endog, exog, exog_re, v = _whole(0, 1, True, False)
    std = Standardization.choose(endog * 1e140, exog, exog_re, None, [v[:, None]])
    args = (codes, g, cell, cell_group, endog * 1e140, exog, exog_re, v, None, std)
    assert cells_and_groups(*args) is None


@settings(max_examples=15, **QUICK)
@given(st.integers(0, 10**6), st.integers(0, 2), st.booleans(), st.booleans())
def test_ragged_statistics_of_a_whole_component_are_the_two_passes(seed, q, indicator, weighted):
    """Every row with its one entry: :func:`ragged_statistics` with the numbering made
    (one pass) equals it with the cells found by sorting (two passes): the cells bit for
    bit, the groups' ``A``, ``F1`` to 1e-12."""
    codes, g, _, _, endog, exog, exog_re, v = _whole(seed, q, indicator, True)
    rng = np.random.default_rng(seed)
    cols = (codes * 4 + np.where(codes == 0, 0, rng.integers(0, 4, codes.size)))[:, None]
    vals = v[:, None]
    weights = rng.uniform(0.5, 2.0, codes.size) if weighted else None
    std = Standardization.choose(endog, exog, exog_re, None, [vals])
    num = number_vc_cells(codes, cols, vals, g)
    args = (codes, g, endog, exog, exog_re, [num.entry_slots()], [vals], [num.width], weights, std)
    two, base_two = ragged_statistics(*args)
    one, base_one = ragged_statistics(*args, [(num.entry_pair, num.pair_group, num.pair_slots)])
    for name in ("group", "comp", "pos", "d", "b", "f2", "offsets"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    _close(one.a, two.a)
    _close(one.f1, two.f1)
    np.testing.assert_array_equal(base_one["xyxy"], base_two["xyxy"])


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


@settings(max_examples=40, **QUICK)
@given(
    st.integers(0, 10**6),
    st.integers(1, 40),
    st.integers(1, EQUAL_CELLS_MAX + 2),
    st.sampled_from(["equal", "shuffled", "ragged", "gap"]),
)
def test_cell_plan_sums_are_bincounts_bit_for_bit(seed, n_cells, size, layout):
    """The per-cell sums of a plan, cells of equal size in row order or not, are
    :func:`plan_sums`' ``bincount`` sums bit for bit (signed zeros included)."""
    rng = np.random.default_rng(seed)
    cell = np.repeat(np.arange(n_cells), size)
    if layout == "shuffled":
        cell = rng.permutation(cell)
    elif layout == "ragged":
        cell = np.sort(rng.integers(0, n_cells, cell.size))
    elif layout == "gap":  # a cell with no row
        cell = np.where(cell == n_cells - 1, 0, cell)
    n = cell.size
    sources = [np.ones(n), rng.standard_normal(n) * 1e3, rng.standard_normal(n)]
    sources[2][rng.random(n) < 0.3] = -0.0  # cells of signed zeros only, some of them
    sources[1][rng.random(n) < 0.2] = 0.0
    terms = [("count",), ("col", 1), ("zero",), ("prod", 1, 2), ("col", 2), ("prod", 2, 2)]
    want = plan_sums(cell, sources, terms, n_cells, False)
    got = cell_plan_sums(cell, sources, terms, n_cells, False)
    in_order = np.array_equal(cell, np.repeat(np.arange(n_cells), size))
    assert equal_cells(cell, n_cells) == (size if in_order and size <= EQUAL_CELLS_MAX else 0)
    for mine, ref in zip(got, want, strict=True):
        if ref is None:
            assert mine is None
            continue
        np.testing.assert_array_equal(_bits(mine), _bits(ref))


def test_equal_cells_needs_every_cell_in_order():
    cell = np.repeat(np.arange(4), 3)
    assert equal_cells(cell, 4) == 3
    assert equal_cells(cell, 5) == 0  # a cell without rows
    assert equal_cells(cell[::-1].copy(), 4) == 0
    swapped = cell.copy()
    swapped[[2, 3]] = swapped[[3, 2]]  # every row's step of L is 1 but one
    assert equal_cells(swapped, 4) == 0
    assert equal_cells(np.zeros(0, dtype=np.int64), 0) == 0
