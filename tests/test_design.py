"""Tests of the data / formula layer (dmixed.design), pandas path.

Dask-specific tests live in tests/test_design_dask.py.
"""

from __future__ import annotations

import os
import pickle
import re
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmixed.design import DesignMatrices, ModelSpec, build_spec

# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def _results_dir() -> str:
    import statsmodels.regression.tests as t

    return os.path.join(os.path.dirname(t.__file__), "results")


@pytest.fixture(scope="module")
def dietox() -> pd.DataFrame:
    return pd.read_csv(os.path.join(_results_dir(), "dietox.csv"))


@pytest.fixture(scope="module")
def pastes() -> pd.DataFrame:
    return pd.read_csv(os.path.join(_results_dir(), "pastes.csv"))


def make_df(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.uniform(0.5, 2.0, size=n),
            "a": np.array(["lo", "mid", "hi", "top"], dtype=object)[rng.integers(0, 4, n)],
            "b": np.array(["u", "v", "w"], dtype=object)[rng.integers(0, 3, n)],
            "k": rng.integers(1, 4, n),
            "g": rng.integers(0, 15, n),
            "cls": np.array([f"c{i:02d}" for i in range(40)], dtype=object)[rng.integers(0, 40, n)],
            "w": rng.uniform(0.5, 2.0, size=n),
        }
    )


def mixedlm(formula, data, **kw):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, **kw)


def by_name(mat: np.ndarray, names: list[str], wanted: list[str]) -> np.ndarray:
    pos = {n: i for i, n in enumerate(names)}
    return mat[:, [pos[w] for w in wanted]]


def vc_dense(dm: DesignMatrices, spec: ModelSpec, l: int) -> np.ndarray:  # noqa: E741
    cols, vals = dm.vc_cols[l], dm.vc_vals[l]
    out = np.zeros((cols.shape[0], len(spec.vc_column_names[l])))
    for j in range(cols.shape[1]):
        ok = cols[:, j] >= 0
        out[np.flatnonzero(ok), cols[ok, j]] += vals[ok, j]
    return out


def assert_same(d1: DesignMatrices, d2: DesignMatrices, spec: ModelSpec) -> None:
    np.testing.assert_array_equal(d1.endog, d2.endog)
    np.testing.assert_array_equal(d1.exog, d2.exog)
    np.testing.assert_array_equal(d1.exog_re, d2.exog_re)
    assert list(d1.groups) == list(d2.groups)
    assert d1.n_dropped == d2.n_dropped
    if d1.weights is None:
        assert d2.weights is None
    else:
        np.testing.assert_array_equal(d1.weights, d2.weights)
    for l in range(len(spec.vc_names)):  # noqa: E741
        np.testing.assert_array_equal(vc_dense(d1, spec, l), vc_dense(d2, spec, l))


# ---------------------------------------------------------------------------
# agreement with statsmodels / patsy
# ---------------------------------------------------------------------------

DIETOX_CASES = [
    ("Weight ~ Time", {}),
    ("Weight ~ Time", {"re_formula": "1"}),
    ("Weight ~ Time", {"re_formula": "1 + Time"}),
    ("Weight ~ Time", {"re_formula": "0 + Time"}),
    ("Weight ~ Time + C(Evit) + C(Cu) + Time:C(Cu)", {}),
    ("Weight ~ Time * C(Cu) + I(Time**2) + np.log(Time)", {"re_formula": "1 + I(Time/10)"}),
    ("Weight ~ C(Cu, Treatment(reference=2)) + Time - 1", {}),
    ("Weight ~ 0 + C(Evit):C(Cu) + Time", {}),
    ("np.log(Weight) ~ Time + Feed", {"missing": "drop", "re_formula": "1 + Time"}),
]


@pytest.mark.parametrize(("formula", "kw"), DIETOX_CASES)
def test_dietox_matches_statsmodels(dietox, formula, kw):
    spec = build_spec(dietox, formula, groups="Pig", **kw)
    dm = spec.transform(dietox)
    mod = mixedlm(formula, dietox, groups="Pig", **kw)
    assert sorted(spec.exog_names) == sorted(mod.exog_names)
    np.testing.assert_allclose(dm.exog, by_name(mod.exog, mod.exog_names, spec.exog_names))
    np.testing.assert_allclose(dm.endog, mod.endog)
    assert spec.exog_re_names == list(mod.data.exog_re_names)
    np.testing.assert_allclose(dm.exog_re, mod.exog_re)
    np.testing.assert_array_equal(dm.groups, mod.groups)
    # one dense float64 block (column-major on the numeric fast path: the kernels sum
    # column by column)
    assert dm.exog.dtype == np.float64
    assert dm.exog.flags.c_contiguous or dm.exog.flags.f_contiguous
    assert dm.endog.shape == (mod.nobs,)
    assert spec.endog_name == mod.endog_names
    if kw.get("missing") == "drop":
        assert dm.n_dropped == len(dietox) - mod.nobs > 0


@pytest.mark.parametrize(
    ("re_formula", "vc_formula"),
    [
        ("1", {"cask": "0 + C(cask)"}),
        (None, {"cask": "0 + C(cask)"}),
        (None, {"cask": "0 + cask"}),
        ("1", {"cask": "0 + C(cask)", "slope": "0 + C(cask):xs", "lin": "0 + xs"}),
    ],
)
def test_pastes_vc_matches_statsmodels(pastes, re_formula, vc_formula):
    df = pastes.copy()
    df["xs"] = np.linspace(-1.0, 2.0, len(df))
    spec = build_spec(
        df, "strength ~ 1", groups="batch", re_formula=re_formula, vc_formula=vc_formula
    )
    dm = spec.transform(df)
    mod = mixedlm("strength ~ 1", df, groups="batch", re_formula=re_formula, vc_formula=vc_formula)
    assert spec.vc_names == list(mod.exog_vc.names) == sorted(vc_formula)
    assert spec.exog_re_names == list(mod.data.exog_re_names)
    if re_formula is None:
        assert dm.exog_re.shape == (len(df), 0)
    else:
        np.testing.assert_allclose(dm.exog_re, mod.exog_re)
    keys = sorted(df["batch"].unique())
    for l, name in enumerate(spec.vc_names):  # noqa: E741
        dense = vc_dense(dm, spec, l)
        assert dm.vc_cols[l].shape[1] == 1  # one non-zero entry per row
        for gi, key in enumerate(keys):
            rows = np.flatnonzero(dm.groups == key)
            sm_mat = np.asarray(mod.exog_vc.mats[l][gi])
            sm_names = list(mod.exog_vc.colnames[l][gi])
            ours = by_name(dense[rows], spec.vc_column_names[l], sm_names)
            np.testing.assert_allclose(ours, sm_mat, err_msg=f"{name} / {key}")
            # columns of the component not in statsmodels' group design are empty
            other = [c for c in spec.vc_column_names[l] if c not in sm_names]
            if other:
                assert not by_name(dense[rows], spec.vc_column_names[l], other).any()


def test_pastes_names_and_levels(pastes):
    spec = build_spec(pastes, "strength ~ 1", groups="batch", vc_formula={"cask": "0 + C(cask)"})
    assert spec.vc_column_names == [["C(cask)[a]", "C(cask)[b]", "C(cask)[c]"]]
    assert spec.exog_re_names == []
    assert spec.levels["cask"] == ["a", "b", "c"]
    assert spec.columns_used == ["strength", "cask", "batch"]
    dm = spec.transform(pastes)
    assert dm.groups.dtype == object and dm.groups[0] == "A"


# ---------------------------------------------------------------------------
# structure / spec properties
# ---------------------------------------------------------------------------


def test_interface_fields_and_pickle():
    df = make_df()
    spec = build_spec(
        df,
        "y ~ x1 * a + C(k) + I(x2**2)",
        groups="g",
        re_formula="1 + x1",
        vc_formula={"z": "0 + C(cls)", "b": "0 + b"},
        weights="w",
    )
    assert spec.endog_name == "y"
    assert spec.exog_names[0] == "Intercept"
    assert "a[T.lo]" in spec.exog_names and "x1:a[T.lo]" in spec.exog_names
    assert "C(k)[T.2]" in spec.exog_names and "I(x2 ** 2)" in spec.exog_names
    assert spec.exog_re_names == ["g", "x1"]
    assert spec.vc_names == ["b", "z"]  # sorted
    assert spec.vc_column_names[0] == ["b[u]", "b[v]", "b[w]"]
    assert len(spec.vc_column_names[1]) == 40
    assert spec.group_name == "g" and spec.weights_name == "w" and spec.missing == "raise"
    assert set(spec.columns_used) == {"y", "x1", "a", "k", "x2", "cls", "b", "g", "w"}
    spec2 = pickle.loads(pickle.dumps(spec))
    assert spec2 == spec
    d1, d2 = spec.transform(df), spec2.transform(df)
    assert_same(d1, d2, spec)
    np.testing.assert_array_equal(d1.weights, df["w"].to_numpy())
    np.testing.assert_array_equal(d1.groups, df["g"].to_numpy())
    assert d1.groups.dtype == np.int64
    # the spec is frozen
    with pytest.raises(AttributeError):
        spec.missing = "drop"  # type: ignore[misc]


def test_partition_with_missing_levels_keeps_all_columns():
    df = make_df(300)
    spec = build_spec(df, "y ~ a + x1:a + C(k)", groups="g", vc_formula={"c": "0 + C(cls)"})
    part = df[(df["a"] == "mid") & (df["k"] == 2)]
    full = spec.transform(df)
    dm = spec.transform(part)
    assert dm.exog.shape == (len(part), len(spec.exog_names))
    mask = ((df["a"] == "mid") & (df["k"] == 2)).to_numpy()
    np.testing.assert_array_equal(dm.exog, full.exog[mask])
    np.testing.assert_array_equal(vc_dense(dm, spec, 0), vc_dense(full, spec, 0)[mask])
    # reordered rows: same rows, same matrices
    perm = np.random.default_rng(1).permutation(len(df))
    dmp = spec.transform(df.iloc[perm])
    np.testing.assert_array_equal(dmp.exog, full.exog[perm])


def test_empty_partition():
    df = make_df()
    spec = build_spec(
        df,
        "y ~ x1 + a",
        groups="g",
        re_formula="1 + x1",
        vc_formula={"c": "0 + C(cls)"},
        weights="w",
    )
    dm = spec.transform(df.iloc[:0])
    assert dm.exog.shape == (0, len(spec.exog_names))
    assert dm.exog_re.shape == (0, 2)
    assert dm.endog.shape == (0,)
    assert dm.vc_cols[0].shape[0] == 0 and dm.weights.shape == (0,)


def test_string_pyarrow_never_reaches_formulaic_as_numbers():
    df = make_df()
    df["a"] = df["a"].astype("string[pyarrow]")
    spec = build_spec(df, "y ~ a", groups="g")
    assert spec.exog_names == ["Intercept", "a[T.lo]", "a[T.mid]", "a[T.top]"]
    dm = spec.transform(df)
    np.testing.assert_array_equal(dm.exog[:, 1], (df["a"] == "lo").to_numpy(dtype=float))


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
    assert list(ref.columns) == spec.vc_column_names[0]
    np.testing.assert_allclose(vc_dense(dm, spec, 0), ref.to_numpy(dtype=float))


def test_transform_speed_pandas():
    n = 500_000
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "a": pd.Series(np.array(list("abcde"), dtype=object)[rng.integers(0, 5, n)]),
            "g": rng.integers(0, 1000, n),
        }
    )
    spec = build_spec(df, "y ~ x1 + x2 + a", groups="g", re_formula="1 + x1")
    spec.transform(df)
    t0 = time.perf_counter()
    spec.transform(df)
    assert time.perf_counter() - t0 < 2.0


# ---------------------------------------------------------------------------
# dtype zoo
# ---------------------------------------------------------------------------


def _zoo_base(n=120, seed=2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "xi": rng.integers(-3, 4, n).astype(float),
            "xb": rng.integers(0, 2, n).astype(float),
            "s": np.array(["p", "q", "r"], dtype=object)[rng.integers(0, 3, n)],
            "g": rng.integers(0, 8, n),
            "gs": np.array([f"G{i}" for i in range(8)], dtype=object)[rng.integers(0, 8, n)],
        }
    )


STRING_DTYPES = {
    "object": lambda s: s.astype(object),
    "str": lambda s: s.astype("str"),
    "string[python]": lambda s: s.astype("string[python]"),
    "string[pyarrow]": lambda s: s.astype("string[pyarrow]"),
    "large_string": lambda s: s.astype(pd.ArrowDtype(pa.large_string())),
    "arrow-dict": lambda s: pd.Series(
        pa.array([None if pd.isna(v) else v for v in s], type=pa.string()).dictionary_encode(),
        dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())),
        index=s.index,
    ),
    "category": lambda s: s.astype("category"),
    "category-reversed": lambda s: pd.Series(
        pd.Categorical(s, categories=sorted(s.dropna().unique())[::-1]), index=s.index
    ).cat.reorder_categories(sorted(s.dropna().unique())),
}

NUMBER_DTYPES = {
    "float64": lambda s: s.astype(np.float64),
    "Float64": lambda s: s.astype("Float64"),
    "Int64": lambda s: s.astype("Int64"),
    "int64": lambda s: s.astype(np.int64),
    "arrow-int": lambda s: s.astype(pd.ArrowDtype(pa.int32())),
    "arrow-float": lambda s: s.astype(pd.ArrowDtype(pa.float32())),
}

BOOL_DTYPES = {
    "bool": lambda s: s.astype(bool),
    "boolean": lambda s: s.astype("boolean"),
    "arrow-bool": lambda s: s.astype(pd.ArrowDtype(pa.bool_())),
}


@pytest.mark.parametrize("sdt", sorted(STRING_DTYPES))
@pytest.mark.parametrize("ndt", sorted(NUMBER_DTYPES))
def test_dtype_zoo(sdt, ndt):
    base = _zoo_base()
    formula = "y ~ xi + xb + s + xi:s"
    kw = dict(groups="g", re_formula="1 + xi", vc_formula={"v": "0 + C(s)", "u": "0 + xb"})
    ref_spec = build_spec(base, formula, **kw)
    ref = ref_spec.transform(base)
    df = base.copy()
    df["s"] = STRING_DTYPES[sdt](df["s"])
    df["xi"] = NUMBER_DTYPES[ndt](df["xi"])
    for bdt in BOOL_DTYPES.values():
        df["xb"] = bdt(base["xb"])
        spec = build_spec(df, formula, **kw)
        assert spec.exog_names == ref_spec.exog_names
        assert spec.exog_re_names == ref_spec.exog_re_names
        assert spec.vc_column_names == ref_spec.vc_column_names
        assert_same(spec.transform(df), ref, spec)
        # the reference spec applied to the zoo frame gives the same too
        assert_same(ref_spec.transform(df), ref, spec)


@pytest.mark.parametrize("sdt", sorted(STRING_DTYPES))
def test_string_groups_returned_as_given(sdt):
    base = _zoo_base()
    df = base.copy()
    df["gs"] = STRING_DTYPES[sdt](df["gs"])
    spec = build_spec(df, "y ~ xi", groups="gs")
    dm = spec.transform(df)
    assert dm.groups.dtype == object
    assert list(dm.groups) == list(base["gs"])


def test_numeric_groups_dtypes():
    base = _zoo_base()
    for dt in ["Int64", pd.ArrowDtype(pa.int64()), "category"]:
        df = base.assign(g=base["g"].astype(dt))
        dm = build_spec(df, "y ~ xi", groups="g").transform(df)
        assert list(dm.groups) == list(base["g"])
        assert dm.groups.dtype == np.int64


def test_numeric_column_inside_C_keeps_integer_names():
    base = _zoo_base()
    base["k"] = np.where(base["xi"] > 0, 3, np.where(base["xi"] < 0, 1, 2))
    for dt in [np.int64, "Int64", pd.ArrowDtype(pa.int16())]:
        df = base.assign(k=base["k"].astype(dt))
        spec = build_spec(df, "y ~ C(k) + xi", groups="g", vc_formula={"kk": "0 + C(k)"})
        assert spec.exog_names == ["Intercept", "C(k)[T.2]", "C(k)[T.3]", "xi"]
        assert spec.vc_column_names == [["C(k)[1]", "C(k)[2]", "C(k)[3]"]]
        dm = spec.transform(df)
        np.testing.assert_array_equal(dm.exog[:, 2], (base["k"] == 3).to_numpy(dtype=float))
        np.testing.assert_array_equal(dm.vc_cols[0][:, 0], base["k"].to_numpy() - 1)


def test_categorical_unobserved_categories_are_not_levels():
    base = _zoo_base()
    df = base.assign(s=pd.Categorical(base["s"], categories=["r", "zz", "q", "p"]))
    spec = build_spec(df, "y ~ s", groups="g")
    assert spec.levels["s"] == ["r", "q", "p"]  # declared order, observed only
    assert spec.exog_names == ["Intercept", "s[T.q]", "s[T.p]"]
    # a partition declaring the extra category still works
    dm = spec.transform(df.iloc[:10])
    assert dm.exog.shape == (10, 3)


def test_categorical_declared_order_is_kept():
    base = _zoo_base()
    df = base.assign(s=pd.Categorical(base["s"], categories=["r", "q", "p"]))
    spec = build_spec(df, "y ~ s", groups="g")
    assert spec.levels["s"] == ["r", "q", "p"]
    assert spec.exog_names == ["Intercept", "s[T.q]", "s[T.p]"]


# ---------------------------------------------------------------------------
# missing values
# ---------------------------------------------------------------------------


def test_missing_raise_names_columns_and_counts():
    df = make_df(50)
    df.loc[[1, 2, 3], "x1"] = np.nan
    df["g"] = df["g"].astype("Int64")
    df.loc[7, "g"] = pd.NA
    df.loc[9, "a"] = None
    with pytest.raises(ValueError) as exc:
        build_spec(df, "y ~ x1 + a", groups="g")
    msg = str(exc.value)
    assert (
        msg == "missing values in column 'x1' (3 rows), column 'a' (1 row), column 'g' (1 row); "
        'pass missing="drop" to drop them'
    )


def test_missing_drop_counts_and_rows():
    df = make_df(60)
    df.loc[[1, 2], "x1"] = np.nan
    df.loc[[2, 5], "cls"] = None
    df.loc[[8], "w"] = np.nan
    df.loc[[11], "y"] = np.nan
    df.loc[[20], "x2"] = np.nan  # x2 is not used: no drop
    spec = build_spec(
        df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(cls)"}, weights="w", missing="drop"
    )
    dm = spec.transform(df)
    assert dm.n_dropped == 5
    keep = ~df.index.isin([1, 2, 5, 8, 11])
    np.testing.assert_array_equal(dm.endog, df["y"].to_numpy()[keep])
    np.testing.assert_array_equal(dm.groups, df["g"].to_numpy()[keep])
    np.testing.assert_array_equal(dm.weights, df["w"].to_numpy()[keep])
    # raise mode names every column
    with pytest.raises(
        ValueError,
        match=r"column 'y' \(1 row\), column 'x1' \(2 rows\), "
        r"column 'cls' \(2 rows\), column 'w' \(1 row\)",
    ):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(cls)"}, weights="w")


def test_missing_drop_levels_from_kept_rows(dietox):
    df = make_df(80)
    df.loc[df["a"] == "top", "x1"] = np.nan  # level 'top' only on dropped rows
    spec = build_spec(df, "y ~ x1 + a", groups="g", missing="drop")
    assert spec.levels["a"] == ["hi", "lo", "mid"]
    assert "a[T.top]" not in spec.exog_names


def test_infinite_values():
    df = make_df(30)
    df.loc[4, "x1"] = np.inf
    with pytest.raises(ValueError, match=r"infinite values in column 'x1' \(1 row\)"):
        build_spec(df, "y ~ x1", groups="g")
    with pytest.raises(ValueError, match="infinite values in column 'x1'"):
        build_spec(df, "y ~ x1", groups="g", missing="drop")


def test_non_finite_from_expression():
    df = make_df(30)
    df.loc[3, "x1"] = -1.0
    spec = build_spec(df.assign(x1=df["x1"].abs() + 1), "y ~ np.log(x1)", groups="g")
    with pytest.raises(
        ValueError, match=r"non-finite values in fixed-effects design.*np.log\(x1\)"
    ):
        spec.transform(df.assign(x1=-1.0))


@pytest.mark.parametrize(
    ("formula", "re_formula", "shared"),
    [
        ("y ~ x1 + x2", "1 + x1", True),
        ("y ~ x1 + x2", "1", True),
        ("y ~ x1 + x2", "0 + x2", True),
        ("y ~ x1 + x2", "1 + x2", False),  # not a run of the fixed-effects columns
        ("y ~ 0 + x1", "1", False),  # no intercept among the fixed effects
    ],
)
def test_random_design_shares_fixed_effect_columns(formula, re_formula, shared, monkeypatch):
    """``exog_re`` is a view of ``exog`` when its columns are a run of the fixed-effects
    columns (no copy per partition), with the same values either way."""
    df = make_df(40)
    dm = build_spec(df, formula, groups="g", re_formula=re_formula).transform(df)
    assert np.shares_memory(dm.exog_re, dm.exog) == shared
    q = dm.exog_re.shape[1]
    spec = build_spec(df, formula, groups="g", re_formula=re_formula)
    monkeypatch.setattr(type(spec), "_re_columns_of_exog", lambda self, exog: None)
    copy = spec.transform(df).exog_re  # what it is without the view
    assert not np.shares_memory(copy, dm.exog)
    np.testing.assert_array_equal(dm.exog_re, copy)
    assert dm.exog_re.shape == (len(df), q)


def test_overflowing_interaction_is_caught():
    """Finite columns whose product overflows (numeric fast path): the product column is
    named, in the fixed and the random part; plain copies are not checked twice."""
    df = make_df(30)
    spec = build_spec(df, "y ~ x1 + x1:x2", groups="g", re_formula="1 + x1:x2")
    big = df.assign(x1=1e200, x2=1e200)
    with pytest.raises(ValueError, match=r"non-finite values in fixed-effects design.*'x1:x2'"):
        spec.transform(big)
    spec_re = build_spec(df, "y ~ x1", groups="g", re_formula="1 + x1:x2")
    with pytest.raises(ValueError, match=r"non-finite values in random-effects design.*'x1:x2'"):
        spec_re.transform(big)
    dm = spec.transform(df.assign(x1=1e200))  # large but finite: no error
    assert np.isfinite(dm.exog).all()


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_error_unknown_column_lists_close_matches():
    df = make_df()
    with pytest.raises(ValueError, match=r"unknown column 'x3'; close matches: ") as exc:
        build_spec(df, "y ~ x3", groups="g")
    assert "'x1'" in str(exc.value) and "'x2'" in str(exc.value)
    with pytest.raises(ValueError, match=r"re_formula .*unknown column 'xx1'.*'x1'"):
        build_spec(df, "y ~ x1", groups="g", re_formula="1 + xx1")
    with pytest.raises(ValueError, match=r"vc_formula\['c'\].*unknown column 'clz'.*'cls'"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(clz)"})
    with pytest.raises(ValueError, match=r"unknown function foo\(\)"):
        build_spec(df, "y ~ foo(x1)", groups="g")


def test_error_groups_column():
    df = make_df()
    with pytest.raises(ValueError, match=r"groups column 'gg' not found.*'g'"):
        build_spec(df, "y ~ x1", groups="gg")
    with pytest.raises(ValueError, match="groups must be a column name"):
        build_spec(df, "y ~ x1", groups=df["g"])
    spec = build_spec(df, "y ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"not found in the data: 'g'"):
        spec.transform(df.drop(columns="g"))


def test_error_response():
    df = make_df()
    with pytest.raises(ValueError, match=r"response column 'a' is not numeric"):
        build_spec(df, "a ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"response 'y' is constant"):
        build_spec(df.assign(y=2.5), "y ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"needs a response"):
        build_spec(df, "x1 + x2", groups="g")
    with pytest.raises(ValueError, match=r"single numeric column"):
        build_spec(df, "y + x2 ~ x1", groups="g")


def test_error_single_level_factor():
    df = make_df().assign(a="only")
    with pytest.raises(ValueError, match=r"fixed-effect factor 'a' has a single level \('only'\)"):
        build_spec(df, "y ~ x1 + a", groups="g")
    with pytest.raises(ValueError, match=r"factor 'C\(k\)' has a single level \(1\)"):
        build_spec(make_df().assign(k=1), "y ~ C(k)", groups="g")


def test_error_formula_syntax():
    df = make_df()
    with pytest.raises(ValueError, match=r"invalid formula 'y ~ \(x1 \+ x2'"):
        build_spec(df, "y ~ (x1 + x2", groups="g")
    with pytest.raises(ValueError, match=r"invalid re_formula '1 \+'"):
        build_spec(df, "y ~ x1", groups="g", re_formula="1 +")
    with pytest.raises(ValueError, match=r"invalid vc_formula\['c'\] '0 \+ C\(cls'"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(cls"})
    with pytest.raises(ValueError, match="must be one-sided"):
        build_spec(df, "y ~ x1", groups="g", re_formula="y ~ x1")
    with pytest.raises(ValueError, match=r"invalid formula 'y ~ x1 \| x2': multi-part"):
        build_spec(df, "y ~ x1 | x2", groups="g")
    with pytest.raises(ValueError, match=r"invalid re_formula 'x1 \| x2': multi-part"):
        build_spec(df, "y ~ x1", groups="g", re_formula="x1 | x2")


def test_error_vc_without_columns_or_with_contrasts():
    df = make_df()
    with pytest.raises(ValueError, match=r"vc_formula\['c'\] '0' yields no columns"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0"})
    with pytest.raises(ValueError, match=r"vc_formula\['c'\].*reduced rank.*'0 \+ \.\.\.'"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "C(cls)"})
    with pytest.raises(ValueError, match="vc_formula must be a dict"):
        build_spec(df, "y ~ x1", groups="g", vc_formula="0 + C(cls)")


def test_error_weights():
    df = make_df()
    with pytest.raises(ValueError, match=r"weights column 'a' is not numeric"):
        build_spec(df, "y ~ x1", groups="g", weights="a")
    with pytest.raises(ValueError, match=r"weights column 'ww' not found.*'w'"):
        build_spec(df, "y ~ x1", groups="g", weights="ww")
    bad = df.copy()
    bad.loc[[0, 1], "w"] = 0.0
    bad.loc[5, "w"] = -1.0
    with pytest.raises(
        ValueError, match=r"weights column 'w' has 2 zero values and 1 negative value"
    ):
        build_spec(bad, "y ~ x1", groups="g", weights="w")
    miss = df.copy()
    miss.loc[3, "w"] = np.nan
    with pytest.raises(ValueError, match=r"missing values in column 'w' \(1 row\)"):
        build_spec(miss, "y ~ x1", groups="g", weights="w")
    with pytest.raises(ValueError, match=r"infinite values in column 'w'"):
        build_spec(miss.assign(w=np.inf), "y ~ x1", groups="g", weights="w")


def test_error_empty_data():
    df = make_df()
    with pytest.raises(ValueError, match=r"data is empty \(0 rows\)"):
        build_spec(df.iloc[:0], "y ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"no rows left after dropping"):
        build_spec(df.assign(x1=np.nan), "y ~ x1", groups="g", missing="drop")


def test_error_bad_arguments():
    df = make_df()
    with pytest.raises(ValueError, match=r'missing must be "raise" or "drop"'):
        build_spec(df, "y ~ x1", groups="g", missing="none")
    with pytest.raises(ValueError, match="pandas or Dask DataFrame"):
        build_spec(df.to_dict(), "y ~ x1", groups="g")


@pytest.mark.parametrize(
    "term",
    [
        "center(x1)",
        "scale(x1)",
        "standardize(x1)",
        "poly(x1, 2)",
        "bs(x1, df=3)",
        "cr(x1, df=3)",
        "lag(x1)",
        "np.mean(x1)",
        "I(x1 - x1.mean())",
        "x1.cumsum()",
    ],
)
def test_stateful_transforms_refused(term):
    df = make_df()
    with pytest.raises(ValueError, match="every partition") as exc:
        build_spec(df, f"y ~ {term}", groups="g")
    name = re.match(r"(\w+(\.\w+)?)", term).group(1)
    assert name.split(".")[-1] in str(exc.value) or "mean" in str(exc.value)


def test_derived_categorical_refused_unless_levels_given():
    df = make_df()
    with pytest.raises(ValueError, match=r"categorical factor 'C\(x1 > 0\)' is derived"):
        build_spec(df, "y ~ C(x1 > 0)", groups="g")
    spec = build_spec(df, "y ~ C(x1 > 0, levels=[False, True])", groups="g")
    assert spec.exog_names == ["Intercept", "C(x1 > 0, levels=[False, True])[T.True]"]
    with pytest.raises(ValueError, match=r"values not listed in levels="):
        build_spec(df, "y ~ C(a, levels=['lo', 'hi'])", groups="g")


def test_unseen_level_at_transform_time():
    df = make_df()
    spec = build_spec(df, "y ~ a", groups="g")
    new = df.iloc[:10].copy()
    new.loc[new.index[3], "a"] = "brand-new"
    with pytest.raises(ValueError, match=r"column 'a' has levels not seen.*'brand-new'"):
        spec.transform(new)
    with pytest.raises(ValueError, match=r"column 'a' has levels not seen.*'brand-new'"):
        spec.transform(new.assign(a=new["a"].astype("string[pyarrow]")))
    spec_k = build_spec(df, "y ~ C(k)", groups="g")
    with pytest.raises(ValueError, match=r"column 'k' has levels not seen.*: 9"):
        spec_k.transform(df.assign(k=9))


def test_elementwise_expressions_allowed():
    df = make_df()
    spec = build_spec(
        df,
        "y ~ I(x1**2) + np.log(x2) + np.exp(x1) + np.where(x1 > 0, 1, 0) + abs(x1) + `x2`:a - 1",
        groups="g",
    )
    dm = spec.transform(df)
    j = spec.exog_names.index("np.log(x2)")
    np.testing.assert_allclose(dm.exog[:, j], np.log(df["x2"]))
    assert "Intercept" not in spec.exog_names


# ---------------------------------------------------------------------------
# property test over dtypes and missing patterns
# ---------------------------------------------------------------------------


@st.composite
def zoo_frames(draw):
    n = draw(st.integers(8, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    y = rng.normal(size=n)
    x = rng.integers(-2, 3, n).astype(float)
    s = np.array(["p", "q", "r"], dtype=object)[rng.integers(0, 3, n)]
    g = rng.integers(0, 4, n)
    miss = {c: draw(st.lists(st.booleans(), min_size=n, max_size=n)) for c in ("y", "x", "s")}
    base = pd.DataFrame({"y": y, "x": x, "s": s, "g": g})
    base.loc[np.asarray(miss["y"]) & (rng.uniform(size=n) < 0.3), "y"] = np.nan
    base.loc[np.asarray(miss["x"]) & (rng.uniform(size=n) < 0.3), "x"] = np.nan
    base.loc[np.asarray(miss["s"]) & (rng.uniform(size=n) < 0.3), "s"] = None
    sdt = draw(st.sampled_from(sorted(STRING_DTYPES)))
    ndt = draw(st.sampled_from(["float64", "Float64", "Int64", "arrow-int", "arrow-float"]))
    variant = base.copy()
    variant["s"] = STRING_DTYPES[sdt](base["s"])
    variant["x"] = NUMBER_DTYPES[ndt](base["x"])
    return base, variant


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zoo_frames())
def test_property_dtypes_and_missing(frames):
    base, variant = frames
    kw = dict(groups="g", re_formula="1 + x", vc_formula={"v": "0 + C(s)"}, missing="drop")
    formula = "y ~ x + s"
    try:
        ref_spec = build_spec(base, formula, **kw)
    except ValueError as e:
        with pytest.raises(ValueError) as exc:
            build_spec(variant, formula, **kw)
        assert str(exc.value) == str(e)
        return
    spec = build_spec(variant, formula, **kw)
    assert spec.exog_names == ref_spec.exog_names
    assert spec.vc_column_names == ref_spec.vc_column_names
    ref = ref_spec.transform(base)
    out = spec.transform(variant)
    assert_same(out, ref, spec)
    expected_drop = int(base[["y", "x", "s"]].isna().any(axis=1).sum())
    assert out.n_dropped == expected_drop
    assert out.endog.shape == (len(base) - expected_drop,)
    # raise mode: same column counts in the message for both
    if expected_drop:
        kw_raise = dict(kw, missing="raise")
        with pytest.raises(ValueError) as e1:
            build_spec(base, formula, **kw_raise)
        with pytest.raises(ValueError) as e2:
            build_spec(variant, formula, **kw_raise)
        assert str(e1.value) == str(e2.value)
        assert str(e1.value).startswith("missing values in column")


def test_quoted_column_names():
    df = make_df().rename(columns={"x1": "my x", "a": "the a"})
    spec = build_spec(
        df,
        "y ~ `my x` + I(`my x` * 2) + Q('my x') + `the a`",
        groups="g",
        re_formula="0 + `my x`",
        vc_formula={"v": "0 + C(`the a`)", "u": "0 + `the a`:`my x`"},
    )
    assert spec.exog_names[:4] == ["Intercept", "my x", "I(`my x` * 2)", "Q('my x')"]
    assert spec.exog_re_names == ["my x"]
    assert spec.vc_column_names[1][0] == "C(`the a`)[hi]"
    assert spec.vc_column_names[0][0] == "the a[hi]:my x"
    assert spec.columns_used == ["y", "my x", "the a", "g"]
    dm = spec.transform(df)
    np.testing.assert_array_equal(dm.exog[:, 1], df["my x"].to_numpy())
    np.testing.assert_array_equal(dm.exog[:, 3], df["my x"].to_numpy())
    np.testing.assert_array_equal(dm.vc_vals[0][:, 0], df["my x"].to_numpy())


def test_transform_without_response_for_prediction():
    df = make_df(60)
    spec = build_spec(
        df,
        "np.log(y + 10) ~ x1 + a",
        groups="g",
        re_formula="1 + x1",
        vc_formula={"c": "0 + C(cls)"},
        weights="w",
    )
    full = spec.transform(df)
    new = df.drop(columns=["y", "w"])
    new.loc[3, "x1"] = np.nan  # missing in a used column: still handled (raise)
    with pytest.raises(ValueError, match=r"missing values in column 'x1' \(1 row\)"):
        spec.transform(new, response=False)
    dm = spec.transform(new.dropna(), response=False)
    keep = new["x1"].notna().to_numpy()
    assert np.isnan(dm.endog).all() and dm.endog.shape == (keep.sum(),)
    assert dm.weights is None
    np.testing.assert_array_equal(dm.exog, full.exog[keep])
    np.testing.assert_array_equal(dm.exog_re, full.exog_re[keep])
    np.testing.assert_array_equal(dm.vc_cols[0], full.vc_cols[0][keep])
    with pytest.raises(ValueError, match=r"not found in the data: 'y', 'w'"):
        spec.transform(new)


# --------------------------------------------------------------------------------------
# numeric formulas built with numpy: the same matrices as formulaic's
# --------------------------------------------------------------------------------------

PLAIN_CASES = [
    ("y ~ x1 + x2", "1 + x1", True),
    ("y ~ x1 * x2", "0 + x1", True),  # x1 + x2 + x1:x2
    ("y ~ 0 + x1 + x1:x2:x3", "x2", True),
    ("y ~ x2 - 1", None, True),
    ("y ~ x1 + C(c)", "1 + x1", False),  # categorical: formulaic
    ("y ~ I(x1 ** 2) + x2", "1 + np.log(x3)", False),  # transforms: formulaic
    ("np.log(x3) ~ x1", "1", False),
]


@pytest.mark.parametrize(("formula", "re_formula", "plain"), PLAIN_CASES)
@pytest.mark.parametrize("missing_rows", [False, True])
def test_numeric_formulas_match_formulaic(formula, re_formula, plain, missing_rows, monkeypatch):
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.integers(-3, 4, n),  # an integer column
            "x3": rng.uniform(0.5, 2.0, n),
            "c": rng.choice(["a", "b", "c"], n),
            "g": rng.integers(0, 20, n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )
    if missing_rows:
        df.loc[rng.choice(n, 25, replace=False), "x1"] = np.nan
    spec = build_spec(df, formula, groups="g", re_formula=re_formula, weights="w", missing="drop")
    used = {w: spec._plain_plan(w) is not None for w in ("rhs", "lhs")}
    if re_formula is not None:
        used["re"] = spec._plain_plan("re") is not None
    assert all(used.values()) == plain  # numpy only where every part is plain
    fast = spec.transform(df)
    fast_new = spec.transform(df.drop(columns=["y"]), response=False) if plain else None
    monkeypatch.setattr(ModelSpec, "_plain_plan", lambda self, which: None)
    slow = spec.transform(df)
    for name in ("endog", "exog", "exog_re", "groups", "weights"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    uses_x1 = "x1" in formula + (re_formula or "")
    assert fast.n_dropped == slow.n_dropped == (25 if missing_rows and uses_x1 else 0)
    if plain:
        slow_new = spec.transform(df.drop(columns=["y"]), response=False)
        np.testing.assert_array_equal(fast_new.exog, slow_new.exog)
