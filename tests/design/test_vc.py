"""dmixed.design.vc: sparse variance components."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.design import build_spec
from dmixed.design.vc import column_levels
from dmixed.errors import FormulaError
from dmixed.stats.constant import constant_value

from .._synth import QUICK
from .frames import make_df, vc_dense


def test_sparse_vc_many_levels_is_cheap():
    n, levels = 200_000, 20_000
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "school": rng.integers(0, 200, n),
            "classroom": pd.Series(
                np.array([f"r{i}" for i in range(levels)], dtype=object)[rng.integers(0, levels, n)]
            ).astype("string[pyarrow]"),
        }
    )
    t0 = time.perf_counter()
    spec = build_spec(
        df,
        "y ~ x",
        groups="school",
        vc_formula={"classroom": "0 + C(classroom)", "slope": "0 + C(classroom):x"},
    )
    dm = spec.transform(df)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, elapsed
    assert [len(c) for c in spec.vc_column_names] == [levels, levels]
    for l in range(2):  # noqa: E741
        assert dm.vc_cols[l].shape == (n, 1) and dm.vc_cols[l].dtype == np.int64
        assert dm.vc_vals[l].shape == (n, 1) and dm.vc_vals[l].dtype == np.float64
    codes = pd.Index(spec.levels["classroom"]).get_indexer(df["classroom"].to_numpy(object))
    np.testing.assert_array_equal(dm.vc_cols[0][:, 0], codes)
    np.testing.assert_array_equal(dm.vc_vals[0][:, 0], 1.0)
    np.testing.assert_array_equal(dm.vc_vals[1][:, 0], df["x"].to_numpy())
    assert spec.vc_column_names[0][5] == f"C(classroom)[{spec.levels['classroom'][5]}]"


def test_vc_zero_entries_dropped_and_padding():
    df = make_df(100)
    df.loc[::3, "x1"] = 0.0
    spec = build_spec(df, "y ~ 1", groups="g", vc_formula={"v": "0 + C(b) + C(a):x1"})
    dm = spec.transform(df)
    assert dm.vc_cols[0].shape == (100, 2)
    zero_rows = df["x1"].to_numpy() == 0
    assert (dm.vc_cols[0][zero_rows, 1] == -1).all()
    assert (dm.vc_vals[0][zero_rows, 1] == 0).all()
    assert (dm.vc_cols[0][~zero_rows] >= 0).all()
    assert spec.vc_column_names[0][:3] == ["C(b)[u]", "C(b)[v]", "C(b)[w]"]
    # a partition where every x1 is zero has only the b indicators
    dm0 = spec.transform(df[zero_rows])
    assert dm0.vc_cols[0].shape[1] == 1


def test_vc_matches_formulaic_dense():
    from formulaic import model_matrix

    df = make_df(150)
    f = "0 + C(a):C(b) + x2 + C(k):x1"
    spec = build_spec(df, "y ~ 1", groups="g", vc_formula={"v": f})
    dm = spec.transform(df)
    prep = df.assign(
        a=pd.Categorical(df["a"], categories=spec.levels["a"]),
        b=pd.Categorical(df["b"], categories=spec.levels["b"]),
    )
    ref = model_matrix(f, prep, context={})
    # (the columns in statsmodels' (patsy's) order, formulaic's by degree)
    assert sorted(ref.columns) == sorted(spec.vc_column_names[0])
    assert spec.vc_column_names[0][0].startswith("C(a)[")
    assert spec.vc_column_names[0].index("x2") == len(spec.levels["a"]) * len(spec.levels["b"])
    ref = ref[spec.vc_column_names[0]]
    np.testing.assert_allclose(vc_dense(dm, spec, 0), ref.to_numpy(dtype=float))


def test_integer_levels_are_numbered_as_the_sorted_levels():
    """Integer levels in ``C()`` number as their position among the sorted levels, both
    where a look-up table by value is used (a narrow range) and where the range is too
    wide for one (a binary search); a partition holding only some levels too."""
    rng = np.random.default_rng(5)
    n = 3000
    for ids in (rng.integers(-50, 400, n), rng.choice([-(2**40), 7, 2**41, 2**50], n)):
        df = pd.DataFrame({"y": rng.normal(size=n), "g": rng.integers(0, 9, n), "id": ids})
        spec = build_spec(df, "y ~ 1", groups="g", vc_formula={"id": "0 + C(id)"})
        levels = np.asarray(spec.levels["id"])
        np.testing.assert_array_equal(levels, np.unique(ids))
        for part in (df, df[df["id"] > np.median(ids)]):
            dm = spec.transform(part)
            want = np.searchsorted(levels, part["id"].to_numpy())
            np.testing.assert_array_equal(dm.vc_cols[0][:, 0], want)
            np.testing.assert_array_equal(dm.vc_vals[0][:, 0], 1.0)


def test_plain_indicator_is_planned_as_formulaic_plans_it():
    """``0 + C(col)`` and ``0 + col`` (planned without formulaic) give the names, plan
    and entries of the same components written otherwise (``C(col) - 1``: formulaic's
    plan), for string, integer, categorical and boolean columns; also formulaic's
    column names on the data."""
    from formulaic import model_matrix

    rng = np.random.default_rng(8)
    n = 120
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "g": rng.integers(0, 5, n),
            "s": np.array(["b", "a", "c d", "é"], dtype=object)[rng.integers(0, 4, n)],
            "i": rng.integers(-3, 40, n),
            "k": pd.Categorical(rng.choice(["x", "z", "y"], n), categories=["z", "y", "x"]),
            "t": rng.integers(0, 2, n).astype(bool),
        }
    )
    cases = [("0 + C(s)", "C(s) - 1"), ("0+C(i)", "C(i) - 1"), ("0 + k", "k - 1")]
    cases += [("0 + C(k)", "C(k) - 1"), ("0 + s", "s - 1"), ("0 + C(t)", "C(t) - 1")]
    for plain, other in cases:
        spec, ref = (
            build_spec(df, "y ~ 1", groups="g", vc_formula={"v": f}) for f in (plain, other)
        )
        assert spec.vc_column_names == ref.vc_column_names
        assert spec.vc_plans[0].blocks == ref.vc_plans[0].blocks
        got, want = spec.transform(df), ref.transform(df)
        np.testing.assert_array_equal(got.vc_cols[0], want.vc_cols[0])
        np.testing.assert_array_equal(got.vc_vals[0], want.vc_vals[0])
        col = plain.split("+")[1].strip().removeprefix("C(").removesuffix(")")
        prep = df.assign(**{col: pd.Categorical(df[col], categories=spec.levels[col])})
        names = list(model_matrix(plain, prep, context={}).columns)
        assert names == spec.vc_column_names[0]


def test_level_names_are_written_on_first_use_and_equal_the_list():
    """A plain component's column names (``LevelNames``) are formulaic's names: equal to
    the list (both ways), indexable, sliceable, of the right length before they are
    written, saved as a JSON list and pickled."""
    import json
    import pickle

    from dmixed.design.vc import LevelNames
    from dmixed.files import jsonable

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"y": rng.normal(size=40), "g": rng.integers(0, 4, 40)})
    df["id"] = rng.integers(7, 30, 40)
    spec = build_spec(df, "y ~ 1", groups="g", vc_formula={"id": "0 + C(id)"})
    names = spec.vc_column_names[0]
    want = [f"C(id)[{v}]" for v in sorted(set(df["id"]))]
    assert isinstance(names, LevelNames) and len(names) == len(want)
    assert names == want and want == names and names != want[:-1]
    assert names[0] == want[0] and names[1:3] == want[1:3] and list(names) == want
    assert json.loads(json.dumps(jsonable({"n": names}))) == {"n": want}
    assert pickle.loads(pickle.dumps(names)) == want
    assert spec.to_dict()["vc_column_names"] == [want]


def test_indicator_entries_are_their_scale_held_once():
    """``0 + C(a)``'s entries are its scale on every row, held as one value broadcast
    (:mod:`dmixed.stats.constant`); a numeric factor's are written out."""
    df = make_df(40, seed=2)
    spec = build_spec(df, "y ~ 1", groups="g", vc_formula={"c1": "0 + C(a)", "c2": "0 + C(a):x1"})
    dm = spec.transform(df)
    np.testing.assert_array_equal(dm.vc_vals[0], np.ones((len(df), 1)))
    assert constant_value(dm.vc_vals[0]) == 1.0
    assert constant_value(dm.vc_vals[1]) is None


@pytest.mark.parametrize(
    ("re_formula", "vc_formula", "named"),
    [
        (None, {"a": "0 + C(sub)", "b": "0 + C(sub)"}, ["'a' and 'b'", "C(sub)[a]"]),
        (None, {"a": "0 + C(sub)", "b": "C(sub) - 1"}, ["'a' and 'b'", "C(sub)[a]"]),
        ("1 + x1", {"a": "0 + x1"}, ["component 'a'", "re_formula '1 + x1'", "(x1)"]),
        ("1", {"a": "1"}, ["component 'a'", "re_formula '1'", "(Intercept)"]),
        ("0 + C(sub)", {"a": "0 + C(sub)"}, ["component 'a'", "re_formula '0 + C(sub)'"]),
        (None, {"a": "0 + C(sub)", "b": "0 + C(sub) + 0"}, ["'a' and 'b'", "C(sub)[a]"]),
    ],
)
@pytest.mark.parametrize("dask", [False, True], ids=["pandas", "dask"])
def test_a_component_duplicating_another_or_the_random_effects_is_refused(
    re_formula, vc_formula, named, dask
):
    """Only the sum of the two variances would be identified: refused, naming both."""
    import dask.dataframe as dd

    import dmixed

    from .._synth import make_data

    df = make_data(n_groups=12, seed=5)
    data = dd.from_pandas(df, npartitions=2) if dask else df
    with pytest.raises(dmixed.SpecError) as exc:
        dmixed.mixedlm("y ~ x1", data, groups="g", re_formula=re_formula, vc_formula=vc_formula)
    for words in named:
        assert words in str(exc.value)


def test_dependent_columns_within_one_component_are_not_refused():
    import dmixed

    from .._synth import make_data

    df = make_data(n_groups=12, seed=5)
    model = dmixed.mixedlm(
        "y ~ x1",
        df,
        groups="g",
        re_formula="1 + x1",
        vc_formula={"a": "0 + x2 + I(2 * x2)", "b": "0 + x1 + x2"},
    )
    assert model.vc_names == ["a", "b"]


@settings(max_examples=200, **QUICK)
@given(
    st.text("ab[]()C", min_size=1, max_size=5),
    st.lists(st.text("ab[]", max_size=3), min_size=0, max_size=4, unique=True),
    st.one_of(
        st.tuples(
            st.text("ab[]()C", min_size=1, max_size=5),
            st.lists(st.text("ab[]", max_size=3), unique=True),
        ),
        st.lists(st.text("ab[]()C", max_size=8), max_size=4),
    ),
)
def test_names_told_apart_by_their_prefix_are_apart(expr, levels, other):
    """``LevelNames.apart``: true only where none of its names is among the other's (a
    list of names, or names written on first use) and it has names; then neither the
    same columns nor a subset of them."""
    from dmixed.design.vc import LevelNames

    names = LevelNames(expr, levels)
    other = LevelNames(*other) if isinstance(other, tuple) else other
    if names.apart(other):
        assert len(names) and not set(names) & set(other)


def test_a_c_call_with_a_coding_is_refused_naming_it():
    """``C(c, Treatment)`` in a variance-component formula failed inside formulaic with
    scipy.sparse's "does not support dtype object": it is refused before formulaic runs,
    as ``C(c + 1)`` is, naming the component, formula and factor."""
    df = pd.DataFrame({"g": np.repeat(np.arange(6), 6), "c": np.tile([1, 2, 3], 12)})
    df["x"] = np.arange(len(df)) % 5 * 0.3
    df["y"] = df.x + np.sin(np.arange(len(df)))
    for formula in ("0 + C(c, Treatment)", "0 + C(c, Treatment):x"):
        with pytest.raises(FormulaError) as got:
            build_spec(df, "y ~ x", groups="g", vc_formula={"cc": formula})
        assert str(got.value).startswith(f"vc_formula['cc'] {formula!r}: the categorical")
        assert "'C(c, Treatment)' is not supported" in str(got.value)


def test_column_levels_inverts_the_columns_numbering():
    """Each column of an interaction stands for its factors' levels, the first factor
    varying fastest, as the design numbers the columns (each level as the data holds
    it: text or number)."""
    df = pd.DataFrame(
        {
            "g": np.repeat(np.arange(4), 6),
            "a": np.tile(["1", "2", "3"], 8),
            "b": np.tile([5, 7], 12),
        }
    )
    df["y"] = np.sin(np.arange(len(df)))
    spec = build_spec(df, "y ~ 1", groups="g", vc_formula={"ab": "0 + C(a):C(b)"})
    plan, names = spec.vc_plans[0], spec.vc_column_names[0]
    got = [column_levels(plan, spec.levels, k) for k in range(len(names))]
    assert got == [("1", 5), ("2", 5), ("3", 5), ("1", 7), ("2", 7), ("3", 7)]
    assert list(names) == [f"C(a)[{a}]:C(b)[{b}]" for a, b in got]
    with pytest.raises(IndexError):
        column_levels(plan, spec.levels, len(names))
