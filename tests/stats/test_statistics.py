"""The checks made on the statistics alone: identifiability (lme4's nobs checks)."""

from __future__ import annotations

import re

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


@settings(max_examples=200)
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


def _design_checks_one_by_one(stats, x_names, z_names, y_name, re_formula):
    """What check_designs refuses, checked one design after the other (a solve for the
    response), for the comparison below."""
    from dmixed.stats import check_full_rank, check_response_varies

    check_full_rank(stats.glob.xyxy[:-1, :-1], x_names)
    q = stats.layout.k_re
    if q:
        where = f" of re_formula {re_formula!r}"
        check_full_rank(stats.engine.re_gram(q), z_names, "random-effects design", where)
    check_response_varies(stats.glob.xyxy, y_name)


class _Grams:
    """An engine holding only the random design's Gram matrix."""

    def __init__(self, zz):
        self.zz = zz

    def re_gram(self, q):
        return self.zz


@pytest.mark.parametrize("seed", range(40))
def test_check_designs_refuses_as_the_checks_one_by_one(seed):
    """check_designs' one decomposition of both designs (and the response's residual
    read off it) refuses what the three checks one after the other refuse, with the
    same message: dependent or zero columns in either design, exact responses."""
    from dmixed.stats import check_designs

    rng = np.random.default_rng(seed)
    n, p, q = 20, int(rng.integers(0, 4)), int(rng.integers(0, 4))
    x, z, y = rng.normal(size=(n, p)), rng.normal(size=(n, q)), rng.normal(size=n)
    kind = seed % 8
    if kind == 1 and p >= 2:
        x[:, 1] = 2.0 * x[:, 0]
    elif kind == 2 and p:
        x[:, -1] = 0.0
    elif kind == 3 and q:
        z[:, 0] = 0.0
    elif kind == 4 and q >= 2:
        z[:, 1] = z[:, 0]
    elif kind == 5 and p:
        y = x @ rng.normal(size=p)
    elif kind == 6:
        y = np.zeros(n)
    elif kind == 7 and p >= 2 and q:
        x[:, 1], z[:, 0] = x[:, 0], 0.0
    xy = np.column_stack([x, y])
    stats = FittedStatistics(
        engine=_Grams(z.T @ z),
        glob=GlobalStats(xyxy=xy.T @ xy, n=n),
        layout=Layout(q, ()),
        group_labels=np.arange(2),
        group_sizes=np.array([10, 10]),
        vc_slot_cols=[],
    )
    args = (stats, [f"x{j}" for j in range(p)], [f"z{j}" for j in range(q)], "y", "~z")
    try:
        _design_checks_one_by_one(*args)
    except DataError as err:
        with pytest.raises(DataError, match=f"^{re.escape(str(err))}$"):
            check_designs(*args)
    else:
        check_designs(*args)


# -- the rank test in a basis the columns' offsets do not decide -------------------------


def _interaction_frame(shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(60), 8)
    df = pd.DataFrame(
        {"g": g, "x1": rng.normal(size=g.size) + shift, "c": rng.choice(list("abc"), g.size)}
    )
    df["y"] = 0.5 * (df.x1 - shift) + (df.c == "b") * 0.4 + rng.normal(size=60)[g]
    df["y"] += rng.normal(size=g.size)
    return df


@pytest.mark.parametrize("shift", [1e5, 1e6])
def test_offset_interaction_of_a_column_fits(shift):
    """``x1*C(c)`` with x1 far from zero fits (main refused it as nearly dependent): the
    design reads x1 about a centre inside the product (dmixed.design.centres), with
    the llf of ``center(x1)*C(c)``."""
    df = _interaction_frame(shift)
    res = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit()
    ref = dmixed.mixedlm("y ~ center(x1)*C(c)", df, groups="g").fit()
    assert abs(res.llf - ref.llf) <= 1e-9 * abs(ref.llf)


@pytest.mark.parametrize("shift", [1e5, 1e6])
def test_offset_interaction_of_an_expression_is_not_called_rank_deficient(shift):
    """``I(x1 + 0)*C(c)`` with x1 far from zero (an expression, which the design does
    not centre) has full rank: the refusal says the columns are independent but nearly
    dependent in the float64 sums, names the column and its offset, and suggests
    centring."""
    df = _interaction_frame(shift)
    with pytest.raises(DataError) as err:
        dmixed.mixedlm("y ~ I(x1 + 0)*C(c)", df, groups="g").fit()
    message = str(err.value)
    assert "rank deficient" not in message
    assert "has full rank (6 columns)" in message and "nearly linearly dependent" in message
    assert "'I(x1 + 0)' (values about" in message and "center(x)" in message


@pytest.mark.parametrize("shift", [0.0, 1e6, 1e8])
def test_truly_dependent_columns_keep_the_rank_deficient_message(shift):
    """An exact dependence (x2 = 2 x1 + 1) is refused as before at every offset."""
    df = _interaction_frame(shift)
    df["x2"] = 2.0 * df.x1 + 1.0
    with pytest.raises(DataError, match=re.escape("rank deficient (rank 2 < 3 columns)")):
        dmixed.mixedlm("y ~ x1 + x2", df, groups="g").fit()


def test_the_suggested_centring_fits():
    """What the message suggests, ``center(x1)*C(c)``, fits: llf and fixed effects as a
    fit on x1 minus its mean, column for column."""
    df = _interaction_frame(1e6)
    res = dmixed.mixedlm("y ~ center(x1)*C(c)", df, groups="g").fit()
    df["xc"] = df.x1 - df.x1.mean()
    ref = dmixed.mixedlm("y ~ xc*C(c)", df, groups="g").fit()
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.fe_params), np.asarray(ref.fe_params), rtol=1e-6)


def test_a_near_dependence_without_a_product_term_gets_no_centring_advice():
    """x3 = 1e-4·x1/3 + 1e5·x2 with x1 near 1e9 and x2 near 1e8 and no interaction:
    centring cannot help (with an intercept it leaves the span alone), so the refusal
    neither explains it by an interaction nor suggests center(), and keeps the "rank
    deficient" wording."""
    rng = np.random.default_rng(0)
    n, shift = 200, 1e9
    g = np.repeat(np.arange(n // 5), 5)
    df = pd.DataFrame(
        {
            "g": g,
            "x1": rng.normal(size=n) * 3.3 + shift,
            "x2": rng.normal(size=n) * 1e-3 + 0.1 * shift,
        }
    )
    df["x3"] = 1e-4 * df.x1 / 3.0 + df.x2 * 1e5
    df["y"] = rng.normal(size=n) + rng.normal(size=n // 5)[g]
    with pytest.raises(DataError, match="rank deficient") as err:
        dmixed.mixedlm("y ~ x1 + x2 + x3", df, groups="g").fit()
    assert "center(x)" not in str(err.value) and "interaction" not in str(err.value)
