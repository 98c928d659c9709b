"""dmixed.stats.group_arrays: renumbering the variance components' columns; the refusal of
statistics of lossy groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError
from dmixed.stats.group_arrays import (
    CENTRED_REMEDY,
    COLLINEAR_REMEDY,
    ROWS_KEEP,
    CentredGroupsError,
    GroupArrays,
    no_padding,
)
from dmixed.stats.layout import Layout
from dmixed.stats.statistics import GlobalStats


def _arrays() -> GroupArrays:
    zz, zxy = no_padding(3, 2)
    tables = [np.array([[0, 2], [1, -1], [-1, -1]]), np.array([[0], [0], [-1]])]
    glob = GlobalStats(np.eye(2), 10, 0.0, None)
    return GroupArrays(np.arange(3), np.array([4, 3, 3]), zz, zxy, tables, glob, Layout(0, (2, 1)))


def test_renumbered_maps_used_slots_and_keeps_unused_ones():
    arrays = _arrays()
    out = arrays.renumbered([np.array([1, 3, 4]), np.array([2])])
    np.testing.assert_array_equal(out.slot_cols[0], [[1, 4], [3, -1], [-1, -1]])
    np.testing.assert_array_equal(out.slot_cols[1], [[2], [2], [-1]])
    np.testing.assert_array_equal(arrays.slot_cols[0], [[0, 2], [1, -1], [-1, -1]])  # a copy


@pytest.mark.parametrize(
    "maps",
    [
        [np.array([0, 1, 2])],
        [np.array([2, 1, 3]), np.array([0])],
        [np.array([0, -1, 2]), np.array([0])],
    ],
)
def test_renumbered_refuses_maps_that_lose_a_column_or_its_order(maps):
    with pytest.raises(ValueError):
        _arrays().renumbered(maps)


def _lossy_model(odd_groups: int):
    """A random slope on ``t`` nearly constant (a spread of 1e-6 about ~1e3) within the
    first ``odd_groups`` of 12 groups of 2–6 rows, spread in the others."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), rng.integers(2, 7, 12))
    t = 1000.0 + 40.0 * g + np.where(g < odd_groups, 1e-6, 1.0) * rng.normal(size=g.size)
    frame = pd.DataFrame({"y": rng.normal(size=g.size), "x": rng.normal(size=g.size)})
    frame = frame.assign(t=t, g=g * 10)
    return dmixed.mixedlm("y ~ x + t", frame, groups="g", re_formula="1 + t")


@pytest.mark.parametrize(("odd", "groups"), [(2, r"\(0, 10\)"), (5, r"\(0, 10, 20 and 2 more\)")])
def test_statistics_of_lossy_groups_are_refused_naming_the_groups_and_the_column(odd, groups):
    """Groups fitted from their sums about their means (a random slope nearly constant
    within them) cannot be saved: the refusal names the first three by label, counts the
    rest, and names the column (the intercept, constant in every group, is not named)."""
    model = _lossy_model(odd)
    stats = model.statistics()
    assert stats.engine.block.centred_groups == odd
    want = rf"^{odd} group\(s\) {groups} have the random-effects column 't' nearly constant"
    with pytest.raises(DataError, match=want) as err:
        GroupArrays.from_statistics(stats, names=model.exog_re_names)
    assert str(err.value).endswith(f"{CENTRED_REMEDY}; {ROWS_KEEP}")
    # the command line words the remedy for its options: the rest, by attribute
    assert isinstance(err.value, CentredGroupsError)
    assert err.value.remedy == CENTRED_REMEDY
    assert str(err.value) == f"{err.value.problem}; {CENTRED_REMEDY}; {ROWS_KEEP}"
    assert "nearly constant" in err.value.problem and CENTRED_REMEDY not in err.value.problem
    assert "collinear" not in str(err.value) and "in process" not in str(err.value)
    with pytest.raises(DataError, match=rf"{groups} have the random-effects column 1 "):
        GroupArrays.from_statistics(stats)  # no names: the column's index


def test_a_group_of_fewer_rows_than_random_effects_is_called_so_not_constant():
    """A group of 2 rows and 3 random effects is fitted from its centred sums (its
    ``Z_i'Z_i`` is singular), though no column is constant in it: the refusal says so,
    names the slopes by name and gives advice that applies (no centring, which leaves
    the group as it is, and no fit in process, which the fit already is)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(31), [2] + [10] * 30)
    frame = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "x2": rng.normal(size=g.size)})
    frame["y"] = frame.x1 + rng.normal(size=g.size) + rng.normal(size=31)[g]
    model = dmixed.mixedlm("y ~ x1 + x2", frame, groups="g", re_formula="1 + x1 + x2")
    stats = model.statistics()
    want = (
        r"^1 group\(s\) \(0\) have fewer rows than random effects \(their random-effects "
        r"columns 'x1' and 'x2' collinear about the group's mean\)"
    )
    with pytest.raises(CentredGroupsError, match=want) as err:
        GroupArrays.from_statistics(stats, names=model.exog_re_names)
    assert err.value.remedy == COLLINEAR_REMEDY
    assert "constant" not in str(err.value) and "in process" not in str(err.value)
    # kept rather than refused where asked (the bootstrap's arrays)
    kept = GroupArrays.from_statistics(stats, centred=True).centred
    assert kept.everyone and kept.positions.size == 31
    np.testing.assert_array_equal(np.flatnonzero(kept.sums.lossy), [0])


def test_nearly_collinear_groups_of_different_columns_name_every_column_involved():
    """Groups 0-2 with ``x2`` nearly ``x1``, groups 3-4 with ``x3`` nearly ``2·x2``: the
    refusal names the columns of every group's collinear direction (one stacked
    eigendecomposition over the groups), and no other."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(40), 12)
    x1, x2, x3 = (rng.normal(size=g.size) for _ in range(3))
    x2 = np.where(g < 3, x1 + 1e-6 * rng.normal(size=g.size), x2)
    x3 = np.where((g >= 3) & (g < 5), 2 * x2 + 1e-6 * rng.normal(size=g.size), x3)
    frame = pd.DataFrame({"g": g, "x1": x1, "x2": x2, "x3": x3})
    frame["y"] = x1 + rng.normal(size=g.size) + rng.normal(size=40)[g]
    model = dmixed.mixedlm("y ~ x1", frame, groups="g", re_formula="1 + x1 + x2 + x3")
    want = (
        r"^5 group\(s\) \(0, 1, 2 and 2 more\) have the random-effects columns 'x1' and "
        r"'x2' and 'x3' nearly collinear about the group's mean"
    )
    with pytest.raises(CentredGroupsError, match=want):
        GroupArrays.from_statistics(model.statistics(), names=model.exog_re_names)
    only_first = frame[frame.g.isin([0, 1, 2]) | (frame.g >= 5)]
    model = dmixed.mixedlm("y ~ x1", only_first, groups="g", re_formula="1 + x1 + x2 + x3")
    with pytest.raises(CentredGroupsError, match=r"columns 'x1' and 'x2' nearly collinear"):
        GroupArrays.from_statistics(model.statistics(), names=model.exog_re_names)


def test_centred_arrays_concatenated_is_one_set_then_the_other():
    from dmixed.stats.group_arrays import CentredArrays

    rng = np.random.default_rng(3)

    def sums(n):
        return CentredArrays(
            rng.random(n),
            rng.random((2, n)),
            rng.random((3, n)),
            rng.random((2, 2, n)),
            rng.random((2, 3, n)),
            rng.random(n) > 0.5,
        )

    a, b = sums(4), sums(2)
    both = a.concatenated(b)
    for name in ("u", "zbar", "mean", "c", "d", "lossy"):
        whole = getattr(both, name)
        assert whole.shape[-1] == 6
        np.testing.assert_array_equal(whole[..., :4], getattr(a, name))
        np.testing.assert_array_equal(whole[..., 4:], getattr(b, name))
    np.testing.assert_array_equal(both.take(slice(4, None)).c, b.c)
