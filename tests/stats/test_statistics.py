"""The checks made on the statistics alone: identifiability (lme4's nobs checks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed import DataError
from dmixed.stats import FittedStatistics, GlobalStats, Layout, check_identifiable


def _stats(sizes, q: int = 1, vc_used: list[list[int]] | None = None) -> FittedStatistics:
    """Statistics with these group sizes; ``vc_used[l][i]``: columns of component l that
    group i uses (the others of its slots are -1)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    slot_cols = []
    for used in vc_used or []:
        width = max(1, max(used))
        table = -np.ones((sizes.size, width), dtype=np.int64)
        for i, u in enumerate(used):
            table[i, :u] = np.arange(u)
        slot_cols.append(table)
    return FittedStatistics(
        engine=None,
        glob=GlobalStats(xyxy=np.eye(2), n=int(sizes.sum())),
        layout=Layout(q, tuple(t.shape[1] for t in slot_cols)),
        group_labels=np.arange(sizes.size),
        group_sizes=sizes,
        vc_slot_cols=slot_cols,
    )


def test_a_single_group_is_refused_with_lme4s_reason():
    with pytest.raises(DataError, match=r"a single group \('g' has one level\).*> 1 sampled"):
        check_identifiable(_stats([40]), "g", [])


def test_groups_of_one_row_each_are_refused():
    with pytest.raises(DataError, match=r"every group of 'g' has one row \(520 rows, 520 groups"):
        check_identifiable(_stats(np.ones(520, dtype=int)), "g", [])


def test_no_more_rows_than_random_effects_is_refused_per_term():
    # intercept and slope (q = 2) in 10 groups of 2 rows: 20 rows, 20 random effects
    with pytest.raises(DataError, match=r"observations \(20\) <= number of random effects \(20\)"):
        check_identifiable(_stats([2] * 10, q=2), "g", [])
    # a component with one column per row (confounded with the residual), named
    with pytest.raises(DataError, match=r"\(12\) of variance component 'cask'"):
        check_identifiable(_stats([3, 4, 5], vc_used=[[3, 4, 5]]), "g", ["cask"])
    # as lme4, each term on its own: 3 + 8 random effects in 12 rows pass
    check_identifiable(_stats([3, 4, 5], vc_used=[[2, 3, 3]]), "g", ["cask"])


def test_one_group_of_variance_components_only_is_statsmodels_crossed_design():
    """With no exog_re, one group holding every row is how statsmodels fits crossed
    effects: not refused while each component has fewer columns than rows."""
    check_identifiable(_stats([30], q=0, vc_used=[[5], [6]]), "g", ["a", "b"])


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    q=st.integers(0, 3),
    data=st.data(),
)
def test_refused_exactly_when_an_lme4_check_fails(sizes, q, data):
    vc_used = [
        data.draw(st.lists(st.integers(0, 4), min_size=len(sizes), max_size=len(sizes)))
        for _ in range(data.draw(st.integers(0, 2)))
    ]
    n, n_groups = sum(sizes), len(sizes)
    term_sizes = [q * n_groups] + [sum(u) for u in vc_used]
    expected = (q > 0 and (n_groups == 1 or n <= n_groups)) or any(
        0 < t and n <= t for t in term_sizes
    )
    names = [f"c{i}" for i in range(len(vc_used))]
    if expected:
        with pytest.raises(DataError, match='check_nobs="ignore"'):
            check_identifiable(_stats(sizes, q, vc_used), "g", names)
    else:
        check_identifiable(_stats(sizes, q, vc_used), "g", names)


def test_a_constant_column_is_called_constant_not_all_zero():
    """``y ~ x + k`` with k = 3.0 in every row was refused as "['k'] are all zero"."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"y": rng.normal(size=60), "x": rng.normal(size=60), "k": 3.0, "g": np.arange(60) % 6}
    )
    with pytest.raises(DataError, match=r"\['k'\] are constant"):
        dmixed.mixedlm("y ~ x + k", frame, groups="g").fit()


def test_a_rank_deficiency_of_many_columns_names_a_few_and_the_count():
    """A factor of one level per row made a message listing every column (16,673
    characters through Dask); now the first ten and the count."""
    rng = np.random.default_rng(1)
    levels = [f"l{i:02d}" for i in range(40)] * 3
    frame = pd.DataFrame({"y": rng.normal(size=120), "f": levels, "h": levels})
    frame["g"] = np.arange(120) % 6
    with pytest.raises(
        DataError, match=r"linearly dependent columns \[.*, \.\.\. \(\d+ in all\)\]"
    ) as info:
        dmixed.mixedlm("y ~ f + h", frame, groups="g").fit()
    assert str(info.value).count("[T.") == 10
