"""dmixed.design.dtypes: every dtype of labels and numbers, with missing values."""

from __future__ import annotations

import datetime
import re
import warnings
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import build_spec
from dmixed.design.dtypes import (
    check_no_text_levels,
    comparable_keys,
    key_class,
    native_values_exact,
    object_class,
    object_types,
    to_float,
)
from dmixed.errors import BadValuesError, DataError, NumericFactorWarning, PrecisionWarning

from .frames import assert_same


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
    # booleans are a factor (patsy's reading), whatever their dtype
    base["xb"] = base["xb"].astype(bool)
    ref_spec = build_spec(base, formula, **kw)
    ref = ref_spec.transform(base)
    assert "xb[T.True]" in ref_spec.exog_names
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


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
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


# -- one reading of a column whatever the engine (issue: same data, same model) --------


def _obj(values) -> pd.Series:
    return pd.Series(values, dtype=object)


@pytest.mark.parametrize(
    "values, types, cls",
    [
        (["a", None, "b"], {"str"}, "string"),
        ([1, np.nan, 3.5], {"int", "float"}, "float"),
        ([np.int64(1), 2], {"int"}, "int"),
        ([Decimal("9.99"), None, Decimal("NaN")], {"Decimal"}, "float"),
        ([Decimal("1.5"), 2], {"Decimal", "int"}, "float"),
        ([True, False, None], {"bool"}, "bool"),
        ([pd.Timestamp(0), pd.Timestamp(1)], {"Timestamp"}, "string"),
        ([None, np.nan], set(), None),
    ],
)
def test_object_columns_are_read_by_the_types_of_their_values(values, types, cls):
    assert object_types(_obj(values)) == types
    assert object_class(types, "c") == cls


@pytest.mark.parametrize(
    "values, shown",
    [([5, "5"], "int, str"), ([True, 1], "bool, int"), (["a", 1.5, b"x"], "bytes, float, str")],
)
def test_object_columns_of_several_kinds_are_refused(values, shown):
    types = object_types(_obj(values))
    with pytest.raises(
        DataError, match=rf"column 'c' holds values of several Python types \({shown}\)"
    ):
        object_class(types, "c")


@settings(max_examples=40)
@given(
    st.lists(
        st.one_of(
            st.none(), st.integers(-5, 5), st.floats(-2, 2), st.text(max_size=2), st.booleans()
        ),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.integers(0, 30), max_size=4),
)
def test_object_types_of_a_column_are_the_union_over_any_split(values, cuts):
    s = _obj(values)
    bounds = [0, *sorted(cuts), len(values)]
    parts = [s.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert set().union(*(object_types(p) for p in parts)) == object_types(s)


def test_object_numbers_are_numbers_and_inside_C_numeric_levels():
    base = _zoo_base()
    df = base.assign(p=_obj([(9, 14.5, 19, 24.5)[i % 4] for i in range(len(base))]))
    spec = build_spec(df, "y ~ p", groups="g")
    assert spec.exog_names == ["Intercept", "p"]
    np.testing.assert_array_equal(spec.transform(df).exog[:, 1], df["p"].astype(float))
    # an object response of numbers is a numeric response
    df = base.assign(y=_obj(list(base["y"])))
    assert build_spec(df, "y ~ xi", groups="g").endog_name == "y"


DECIMAL_PRICES = [Decimal("9.99"), Decimal("14.99"), Decimal("19.99"), Decimal("24.99")]


@pytest.mark.parametrize(
    ("formula", "kw"),
    [
        ("y ~ p", {}),
        ("y ~ I(2 * p)", {}),
        ("y ~ xi", {"re_formula": "1 + p"}),
        ("y ~ xi", {"vc_formula": {"v": "0 + p"}}),
        # read inside C() somewhere and outside it elsewhere: judged per factor
        ("y ~ C(p):xi + p", {}),
        ("y ~ C(p) + np.log(Q('p'))", {}),
        ("y ~ xi + p", {"re_formula": "~C(p)"}),
        ("y ~ C(p)", {"vc_formula": {"v": "0 + p"}}),
        ("y ~ xi", {"re_formula": "~p", "vc_formula": {"v": "0 + C(p)"}}),
    ],
)
def test_object_decimals_read_by_a_term_are_refused_saying_how_to_convert(formula, kw):
    """statsmodels (patsy) makes a factor of an object column of Decimals (pd.read_parquet
    gives one for a Parquet decimal column); read as numbers it is another model."""
    base = _zoo_base()
    df = base.assign(p=_obj([DECIMAL_PRICES[i % 4] for i in range(len(base))]))
    with pytest.raises(BadValuesError, match=r"column 'p' holds decimal numbers") as info:
        build_spec(df, formula, groups="g", **kw)
    assert "data['p'] = data['p'].astype(float)" in str(info.value)
    assert "C(p)" in str(info.value)


def test_object_decimals_as_response_group_or_in_C_are_read():
    base = _zoo_base()
    df = base.assign(p=_obj([DECIMAL_PRICES[i % 4] for i in range(len(base))]))
    spec = build_spec(df, "y ~ C(p)", groups="g")
    assert spec.exog_names == ["Intercept", "C(p)[T.14.99]", "C(p)[T.19.99]", "C(p)[T.24.99]"]
    # a response of Decimals: numbers (statsmodels fits no model of it at all)
    df = base.assign(y=_obj([Decimal(repr(v)) for v in base["y"]]))
    assert build_spec(df, "y ~ xi", groups="g").endog_name == "y"
    # a group column of Decimals: labels, as statsmodels groups them
    df = base.assign(g=_obj([Decimal(int(v)) for v in pd.factorize(base["g"])[0]]))
    build_spec(df, "y ~ xi", groups="g")


def test_arrow_decimals_read_by_a_term_are_refused_as_object_ones():
    base = _zoo_base()
    prices = [DECIMAL_PRICES[i % 4] for i in range(len(base))]
    df = base.assign(p=pd.array(prices, dtype=pd.ArrowDtype(pa.decimal128(6, 2))))
    for formula, kw in [
        ("y ~ p", {}),
        ("y ~ C(p):xi + p", {}),
        ("y ~ xi + p", {"re_formula": "~C(p)"}),
    ]:
        with pytest.raises(BadValuesError, match=r"column 'p' holds decimal numbers"):
            build_spec(df, formula, groups="g", **kw)
    spec = build_spec(df, "y ~ C(p)", groups="g")
    assert spec.exog_names == ["Intercept", "C(p)[T.14.99]", "C(p)[T.19.99]", "C(p)[T.24.99]"]


@pytest.mark.parametrize(
    ("formula", "kw", "include_random"),
    [
        ("y ~ p", {}, True),
        ("y ~ I(2 * p) + xi", {}, False),
        ("y ~ xi", {"re_formula": "1 + p"}, True),
        ("y ~ C(p):xi + p", {}, False),  # p read as levels and as numbers: the spec says so
    ],
)
@pytest.mark.parametrize("arrow", [False, True])
@pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")  # (a slope's variance)
def test_decimals_in_new_rows_read_by_a_term_are_refused_as_a_fit_refuses_them(
    formula, kw, include_random, arrow
):
    """``predict`` (new rows read for a fitted model) refuses ``Decimal`` values (an
    ``object`` column or an Arrow decimal dtype) that a term reads outside ``C()``, as
    a fit of them does, naming the column: read as numbers they are another model than
    statsmodels' factor of them."""
    base = _zoo_base()
    base["y"] += np.sin(3.0 * base["g"])  # a group effect: a fit off the boundary
    prices = [DECIMAL_PRICES[i % 4] for i in range(len(base))]
    res = dmixed.mixedlm(formula, base.assign(p=[float(v) for v in prices]), groups="g", **kw)
    res = res.fit()
    decimals = pd.array(prices, dtype=pd.ArrowDtype(pa.decimal128(6, 2))) if arrow else _obj(prices)
    new = base.assign(p=decimals)
    with pytest.raises(BadValuesError, match=r"^column 'p' holds decimal numbers") as info:
        res.predict(new, include_random=include_random)
    assert "data['p'] = data['p'].astype(float)" in str(info.value)
    # the same values as floats predict; a response of Decimals is not read
    floats = base.assign(p=[float(v) for v in prices])
    expected = res.predict(floats, include_random=include_random)
    y = pd.array([Decimal(repr(v)) for v in base["y"]], dtype=object)
    got = res.predict(floats.assign(y=y), include_random=include_random)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")  # (a slope's variance)
def test_decimals_in_new_rows_of_a_factor_also_read_as_numbers_are_refused_on_dask():
    """``C(p):xi + p`` reads ``p`` as levels and as numbers: new rows of Arrow
    decimals in a Dask collection are refused as the fit refuses them (the spec records
    the columns a term reads outside ``C()``); in ``C()`` alone they are read."""
    import dask.dataframe as dd

    base = _zoo_base()
    base["y"] += np.sin(3.0 * base["g"])
    prices = [DECIMAL_PRICES[i % 4] for i in range(len(base))]
    floats = base.assign(p=[float(v) for v in prices])
    decimals = pd.array(prices, dtype=pd.ArrowDtype(pa.decimal128(6, 2)))
    ddf = dd.from_pandas(base.assign(p=decimals), npartitions=2)
    res = dmixed.mixedlm("y ~ C(p):xi + p", floats, groups="g").fit()
    assert res.model.spec.value_columns == ["p", "xi"]
    with pytest.raises(BadValuesError, match=r"column 'p' holds decimal numbers"):
        res.predict(ddf).compute()
    only_c = dmixed.mixedlm("y ~ C(p):xi", floats, groups="g").fit()
    np.testing.assert_allclose(
        np.asarray(only_c.predict(ddf).compute()), np.asarray(only_c.predict(floats)), rtol=1e-12
    )


def test_object_groups_mixing_5_and_text_5_are_refused():
    base = _zoo_base()
    df = base.assign(g=_obj([v if i % 2 else str(v) for i, v in enumerate(base["g"])]))
    with pytest.raises(DataError, match=r"column 'g' holds values of several Python types"):
        build_spec(df, "y ~ xi", groups="g")


@pytest.mark.parametrize("source", ["pandas", "dask"])
@pytest.mark.parametrize(
    ("formula", "groups", "column", "nested"),
    [
        ("y ~ xi + s", "g", "s", "dict: a struct column"),
        ("y ~ C(s)", "g", "s", "dict: a struct column"),
        ("y ~ xi", "s", "s", "dict: a struct column"),
        ("y ~ xi + v", "g", "v", "ndarray: a list column"),
    ],
)
def test_nested_parquet_columns_are_refused_naming_the_column(
    tmp_path, source, formula, groups, column, nested
):
    """A Parquet struct column (read as dicts) raised "unhashable type: 'dict'", naming
    no column; a list column (arrays) likewise."""
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    base = _zoo_base()[["y", "xi", "g"]]
    n = len(base)
    table = pa.Table.from_pandas(base, preserve_index=False)
    table = table.append_column(
        "s", pa.StructArray.from_arrays([pa.array(base["xi"]), pa.array(base["y"])], ["a", "b"])
    ).append_column("v", pa.array([[1.0, float(i)] for i in range(n)]))
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path)
    data = pd.read_parquet(path) if source == "pandas" else dd.read_parquet(path)
    with pytest.raises(DataError, match=rf"column '{column}' holds nested values \({nested}"):
        build_spec(data, formula, groups=groups)


def test_unordered_categorical_of_numbers_has_numeric_levels_and_warns_in_a_plain_term():
    base = _zoo_base()
    dose = np.array([5, 15, 25, 35])[np.arange(len(base)) % 4]
    text_order = pd.CategoricalDtype([15, 25, 35, 5])  # as pd.read_parquet declares hive keys
    df = base.assign(dose=pd.Series(dose).astype(text_order))
    with pytest.warns(NumericFactorWarning, match=r"column 'dose' is a categorical of numbers"):
        spec = build_spec(df, "y ~ dose", groups="g")
    assert spec.levels["dose"] == [5, 15, 25, 35]
    assert spec.exog_names == ["Intercept", "dose[T.15]", "dose[T.25]", "dose[T.35]"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = build_spec(df, "y ~ C(dose)", groups="g")
    assert spec.exog_names[1] == "C(dose)[T.15]"
    ordered = pd.CategoricalDtype([15, 25, 35, 5], ordered=True)
    with pytest.warns(NumericFactorWarning):
        spec = build_spec(df.assign(dose=df["dose"].astype(ordered)), "y ~ Q('dose')", groups="g")
    assert spec.levels["dose"] == [15, 25, 35, 5]  # an ordered categorical keeps its order


def test_numbers_written_as_text_in_a_plain_term_warn():
    base = _zoo_base()
    df = base.assign(p=base["xi"].map(lambda v: f"{v:.2f}").astype("str"))
    with pytest.warns(NumericFactorWarning, match=r"column 'p' holds numbers written as text"):
        spec = build_spec(df, "y ~ p", groups="g")
    assert spec.levels["p"] == sorted(spec.levels["p"])  # text order, as statsmodels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_spec(df, "y ~ C(p)", groups="g")
        build_spec(df.assign(p=base["s"]), "y ~ p", groups="g")  # labels: no warning


@pytest.mark.parametrize("dt", [np.uint64, "UInt64", pd.ArrowDtype(pa.uint64())])
def test_integer_levels_past_2_63_are_exact(dt):
    base = _zoo_base()
    big = np.array([2**63, 2**63 + 1, 2**64 - 1], dtype=np.uint64)
    df = base.assign(h=pd.Series(big[np.arange(len(base)) % 3]).astype(dt))
    spec = build_spec(df, "y ~ C(h)", groups="g", vc_formula={"v": "0 + C(h)"})
    assert spec.exog_names == [
        "Intercept",
        "C(h)[T.9223372036854775809]",
        "C(h)[T.18446744073709551615]",
    ]
    dm = spec.transform(df)
    np.testing.assert_array_equal(dm.exog[:, 1], (np.arange(len(base)) % 3 == 1).astype(float))
    np.testing.assert_array_equal(dm.vc_cols[0][:, 0], np.arange(len(base)) % 3)
    # 2**63 + 2 has the float64 value of a level, but is not one
    new = df.iloc[:3].assign(h=pd.Series(np.array([2**63 + 2] * 3, dtype=np.uint64)).astype(dt))
    with pytest.raises(DataError, match="levels not seen"):
        spec.transform(new)


def test_object_integers_past_int64_and_decimal_snan():
    base = _zoo_base()
    i = np.arange(len(base)) % 3
    big = [2**64 - 1, 2**63, 0]
    df = base.assign(h=_obj([big[k] for k in i]))
    spec = build_spec(df, "y ~ C(h)", groups="g")
    assert spec.exog_names == ["Intercept", f"C(h)[T.{2**63}]", f"C(h)[T.{2**64 - 1}]"]
    with pytest.raises(DataError, match=r"column 'h' holds integers outside the 64-bit range"):
        build_spec(df.assign(h=_obj([[2**64 - 1, -1, 3][k] for k in i])), "y ~ C(h)", groups="g")
    with pytest.raises(DataError, match=r"group column 'h' holds integers outside the int64"):
        build_spec(df, "y ~ xi", groups="h").transform(df)
    snan = _obj([Decimal("sNaN")] + [Decimal(1)] * (len(base) - 1))
    with pytest.raises(DataError, match=r"column 'y' holds a value that does not convert"):
        build_spec(base.assign(y=snan), "y ~ xi", groups="g").transform(base.assign(y=snan))


def test_numeric_factor_warning_names_a_declared_order():
    base = _zoo_base()
    dose = pd.Series(np.array([10, 9, 2])[np.arange(len(base)) % 3])
    df = base.assign(d=dose.astype(pd.CategoricalDtype([10, 9, 2], ordered=True)))
    with pytest.warns(
        NumericFactorWarning, match=r"levels in declared order \(reference level 10\)"
    ):
        build_spec(df, "y ~ d", groups="g")
    df = base.assign(d=dose.astype(str).astype(pd.CategoricalDtype(["9", "10", "2"])))
    with pytest.warns(
        NumericFactorWarning, match=r"levels in declared order \(reference level '9'\)"
    ):
        build_spec(df, "y ~ d", groups="g")


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["1", "2.5"]),
        pd.Series(["1", None], dtype="string"),
        pd.Series([1, 2.0, "3"], dtype=object),
        pd.Series([Decimal("1"), b"2"], dtype=object),
    ],
)
def test_text_where_numbers_are_read_is_refused(values):
    """numpy parses '3' as 3.0: text read as numbers (new rows to predict, a partition
    unlike its collection's meta) used to pass silently, where text is a factor."""
    with pytest.raises(DataError, match="column 'x' holds text .* pd.to_numeric"):
        to_float(values, "x")


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        (pd.Series(["0.25", "2.4991628422014975", "1,5", "x"]), "'1,5'"),
        (pd.Series(["7", None, "n/a"], dtype="string"), "'n/a'"),
        (pd.Series([1.5, "2", b"?"], dtype=object), "b'?'"),
        (pd.Series(["1", "2.5"]), "'1'"),  # all read as numbers: the first is shown
    ],
)
def test_the_text_shown_is_the_first_that_is_not_a_number(values, shown):
    """One '1,5' in a CSV column of numbers makes the column text: the refusal showed
    its first value, a number ('2.4991628422014975'), not the text at fault."""
    with pytest.raises(DataError, match=re.escape(f"holds text (such as {shown})")):
        to_float(values, "x")


def test_numbers_of_any_storage_still_convert():
    cases = [
        (pd.Series([1, 2.5, None], dtype=object), [1.0, 2.5, np.nan]),
        (pd.Series([Decimal("1"), 2.5], dtype=object), [1.0, 2.5]),
        (pd.Series([1, None], dtype="Int64"), [1.0, np.nan]),
        (pd.Series(pd.Categorical([1.0, 2.0])), [1.0, 2.0]),
    ]
    for values, expected in cases:
        np.testing.assert_array_equal(to_float(values, "x"), expected)


# -- integer columns beyond float64's exact integers -----------------------------------


def _offset_frame(offset: int, dtype) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A covariate ``offset + 0..999`` of ``dtype`` and the same shifted by hand."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 10)
    small = rng.integers(0, 1000, g.size)
    y = 0.01 * small + rng.normal(size=40)[g] + rng.normal(size=g.size)
    big = (np.array(offset, dtype=dtype) + small.astype(dtype)).astype(dtype)
    return pd.DataFrame({"y": y, "c": big, "g": g}), pd.DataFrame({"y": y, "c": small, "g": g})


def _fit(df: pd.DataFrame, dask_partitions: int):
    import dask
    import dask.dataframe as dd

    from dmixed import mixedlm

    if not dask_partitions:
        return mixedlm("y ~ c", df, groups="g").fit()
    with dask.config.set(scheduler="sync"):
        ddf = dd.from_pandas(df, npartitions=dask_partitions)
        return mixedlm("y ~ c", ddf, groups="g").fit()


@settings(max_examples=6)
@given(
    offset=st.integers(-(2**53) + 1000, 2**53 - 1000),
    dask_partitions=st.sampled_from([0, 3]),
)
def test_integer_offsets_within_float64s_integers_fit_as_shifted_by_hand(offset, dask_partitions):
    """The statistics' shift makes a column's offset irrelevant while float64 holds its
    values: the fit is that of the column shifted by hand, without a warning."""
    big, small = _offset_frame(offset, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, ref = _fit(big, dask_partitions), _fit(small, dask_partitions)
    assert got.fe_params["c"] == pytest.approx(ref.fe_params["c"], rel=1e-10)
    assert got.scale == pytest.approx(ref.scale, rel=1e-10)
    assert got.llf == pytest.approx(ref.llf, rel=1e-10)


def test_integers_beyond_2_to_53_used_otherwise_warn_that_they_are_rounded():
    """Read as a term of its own the column is exact (:mod:`dmixed.design.references`,
    tests/design/test_references.py); inside a function float64 rounds it (to 1024 at
    2^62), and the fit says so, naming it, instead of a silently wrong slope."""
    big, _ = _offset_frame(2**62, np.int64)
    big["u"] = big["c"]
    with pytest.warns(PrecisionWarning, match="column 'u' holds integers beyond 2\\*\\*53"):
        build_spec(big, "y ~ c + np.log(u)", groups="g").transform(big)


@pytest.mark.parametrize("dtype", ["int64", "uint64", "Int64", "UInt64", "arrow-uint64"])
def test_numeric_columns_warn_for_integers_they_round(dtype):
    """Numbers as numbers; numbers as levels (``C(h)``) are read exactly, no warning."""
    dt = pd.ArrowDtype(pa.uint64()) if dtype == "arrow-uint64" else dtype
    base = _zoo_base()
    i = np.arange(len(base)) % 3
    exact = base.assign(h=pd.Series(np.array([2**53, 3, 7])[i]).astype(dt))
    big = base.assign(h=pd.Series(np.array([2**53 + 1, 3, 7], dtype=np.uint64)[i]).astype(dt))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_spec(exact, "y ~ h", groups="g").transform(exact)
        build_spec(big, "y ~ C(h)", groups="g").transform(big)
    spec = build_spec(exact, "y ~ h", groups="g")
    with pytest.warns(PrecisionWarning, match="column 'h'"):
        spec.transform(big)


def test_array_designs_warn_for_integers_they_round():
    from dmixed import MixedLM

    big, _ = _offset_frame(2**60, np.int64)
    exog = np.column_stack([np.ones(len(big), dtype=np.int64), big["c"].to_numpy()])
    with pytest.warns(PrecisionWarning, match="column 'exog'"):
        model = MixedLM(big["y"].to_numpy(), exog, big["g"].to_numpy())
    assert model.exog_names == ["const", "x1"]


_NATIVE_RANGES = {"int": (-(2.0**63), 2.0**63), "uint": (0.0, 2.0**64), "bool": (0.0, 2.0)}


@given(
    st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False)), max_size=20),
    st.sampled_from(["int", "uint", "bool"]),
)
def test_native_values_exact_flags_the_values_that_are_not_of_the_native_dtype(values, native):
    """Converted to the levels' dtype, a value is the same number, or it is flagged (it
    would be read as another level: 2.5 as 2, -1 as 2**64 - 1, 2 as True)."""
    s = pd.Series(np.array(values, dtype=np.float64))
    out, inexact = native_values_exact(s, native)
    low, high = _NATIVE_RANGES[native]
    for v, o, flagged in zip(s, out, inexact, strict=True):
        exact = float(v).is_integer() and low <= v < high
        assert flagged == (not exact)
        if exact:
            assert float(o) == v


@pytest.mark.parametrize(
    ("values", "native", "flagged"),
    [
        (np.array([1, 2**63 + 5], dtype=np.uint64), "int", [False, True]),
        (np.array([-1, 3], dtype=np.int64), "uint", [True, False]),
        (np.array([0, 1, 2], dtype=np.int8), "bool", [False, False, True]),
    ],
)
def test_native_values_exact_of_integers_of_another_kind(values, native, flagged):
    out, inexact = native_values_exact(pd.Series(values), native)
    np.testing.assert_array_equal(inexact, flagged)
    np.testing.assert_array_equal(out[~inexact], values[~inexact].astype(out.dtype))


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_tuples_are_a_key_class_of_their_own():
    """Tuples and text were one class ("label"), so the text ``'(3, 3)'`` and the tuple
    ``(3, 3)`` met as keys of one class and found no group, silently.  Tuples of any
    parts are their own class; text, numbers and booleans keep theirs."""
    tuples = _objects([(3, 3), (1, "a"), (2.5,), ()])
    assert key_class(tuples, "g") == "tuple"
    assert key_class(_objects(["(3, 3)", "a"]), "g") == "label"
    assert key_class(np.array([1, 2]), "g") == "number"
    assert key_class(_objects([None, None]), "g") is None
    with pytest.raises(DataError, match=r"column 'g' holds values of several .*str, tuple"):
        key_class(_objects([(3, 3), "a"]), "g")
    np.testing.assert_array_equal(comparable_keys(tuples[:2], tuples, "g"), tuples[:2])
    text = _objects(["(3, 3)", "(1, 'a')"])
    with pytest.raises(
        DataError,
        match=r"^group column 'g' holds text keys \(such as '\(3, 3\)'\) but the model was "
        r"fitted with tuple keys \(such as \(3, 3\)\); .*pd.Series\(list_of_tuples",
    ):
        comparable_keys(text, tuples, "g")
    with pytest.raises(
        DataError,
        match=r"^group column 'g' holds tuple keys \(such as \(3, 3\)\) but the model was "
        r"fitted with text keys \(such as '\(3, 3\)'\); .*data\['g'\].astype\(str\)$",
    ):
        comparable_keys(tuples, text, "g")


def test_text_in_a_factor_of_numeric_levels_is_refused_as_a_factor():
    """``'0'`` in ``cls`` of ``C(cls)`` fitted on integers was refused as text "where
    the model reads numbers": the message now says the column is a factor of numeric
    levels, showing a text value and a level."""
    check_no_text_levels(pd.Series([0, 1]), "cls", np.array([0, 1]))
    check_no_text_levels(pd.Series([0.0, np.nan]), "cls", np.array([0, 1]))
    with pytest.raises(BadValuesError) as got:
        check_no_text_levels(pd.Series(["0", 1], dtype=object), "cls", np.array([0, 1]))
    assert str(got.value) == (
        "column 'cls' is read as a factor whose levels are numbers (such as 0), but it "
        "holds text (such as '0'): text is another level under dmixed's column rules, so "
        "no row would find its level; convert it first, e.g. pd.to_numeric(data['cls'])"
    )
    assert got.value.example == "0"


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (pd.date_range("2026-01-01", periods=120, freq="h"), "timestamps"),
        (pd.date_range("2026-01-01", periods=120, freq="h", tz="UTC"), "timestamps"),
        (
            pd.array(pd.date_range("2026-01-01", periods=120), dtype="timestamp[us][pyarrow]"),
            "timestamps",
        ),
        (
            pd.Series(pd.date_range("2026-01-01", periods=120).date, dtype="date32[day][pyarrow]"),
            "dates",
        ),
        (pd.to_timedelta(np.arange(120), unit="s"), "durations"),
    ],
)
def test_a_time_column_in_a_formula_says_how_to_convert_it(values, words):
    """A timestamp, date or duration in a formula gave "unsupported dtype ... for a model
    formula", a DataError the command line exits 2 for, and no remedy: it is bad data
    (exit 3, :class:`BadValuesError`) and the message says to convert it to a number of
    a unit and origin the caller chooses, or to text for a factor (not read as numbers:
    the fit would depend on the unit)."""
    df = _zoo_base()
    df["t"] = pd.Series(values).array if isinstance(values, pd.Index) else values
    with pytest.raises(BadValuesError, match=f"column 't' holds {words} \\(") as info:
        build_spec(df, "y ~ t", groups="g")
    assert "convert the column to a number first" in str(info.value)
    assert "convert it to text and write C(t)" in str(info.value)
    # inside C() the message does not tell the caller to write C(t), which they wrote
    with pytest.raises(BadValuesError, match=f"column 't' holds {words} \\(") as info:
        build_spec(df, "y ~ xi + C(t)", groups="g")
    assert f"C(t) does not read {words} as a factor" in str(info.value)
    assert "write C(t)" not in str(info.value)
    # as the groups, a label
    build_spec(df, "y ~ xi", groups="t")


@pytest.mark.parametrize("kind", ["datetime64", "arrow timestamp", "arrow date32", "timedelta64"])
def test_the_text_conversion_a_c_of_a_time_column_gives_runs_and_fits(kind):
    """``C(date)`` of a timestamp column told the caller to "write C(date)"; the message
    now gives the conversion to text, which, executed as written, makes a factor."""
    df = _zoo_base()
    df["t"] = _TIME_VALUES[kind].set_axis(df.index)
    with pytest.raises(BadValuesError, match=r"C\(t\) does not read") as info:
        build_spec(df, "y ~ xi + C(t)", groups="g")
    code = re.search(
        r"convert the column to text first, data\['t'\] = (.*?), and C", str(info.value)
    )
    df["t"] = eval(code.group(1), {"data": df})  # noqa: S307 - the message's own code
    spec = build_spec(df, "y ~ xi + C(t)", groups="g")
    assert sum(name.startswith("C(t)[T.") for name in spec.exog_names) == df["t"].nunique() - 1


_TIME_VALUES = {
    "datetime64": pd.Series(pd.date_range("2026-01-01", periods=120, freq="h")),
    "datetime64 UTC": pd.Series(pd.date_range("2026-01-01", periods=120, freq="h", tz="UTC")),
    "arrow timestamp": pd.Series(
        pd.date_range("2026-01-01", periods=120, freq="h"), dtype="timestamp[us][pyarrow]"
    ),
    "arrow date32": pd.Series(
        pd.date_range("2026-01-01", periods=120).date, dtype="date32[day][pyarrow]"
    ),
    "object date": pd.Series(pd.date_range("2026-01-01", periods=120).date, dtype=object),
    "object datetime": pd.Series(
        list(pd.date_range("2026-01-01", periods=120, freq="h").to_pydatetime()), dtype=object
    ),
    "timedelta64": pd.Series(pd.to_timedelta(np.arange(120), unit="s")),
    "arrow duration": pd.Series(
        pd.to_timedelta(np.arange(120), unit="s"), dtype="duration[s][pyarrow]"
    ),
    "object timedelta": pd.Series(
        list(pd.to_timedelta(np.arange(120), unit="s").to_pytimedelta()), dtype=object
    ),
    "object time": pd.Series([datetime.time(k % 24, k % 60) for k in range(120)], dtype=object),
}


@pytest.mark.parametrize("kind", [k for k in _TIME_VALUES if not k.startswith("object")])
def test_the_conversion_a_time_column_message_gives_runs_and_fits(kind):
    """The message's conversion, executed as written (``origin`` a ``pd.Timestamp`` of
    the column's time zone), gives a column of numbers that the formula reads: the
    review found the one hint for timestamps raising for a duration column."""
    df = _zoo_base()
    df["t"] = _TIME_VALUES[kind].set_axis(df.index)
    with pytest.raises(BadValuesError, match="convert the column to a number first") as info:
        build_spec(df, "y ~ xi + t", groups="g")
    code = re.search(r"data\['t'\] = (.*?); or,", str(info.value)).group(1)
    tz = "UTC" if kind.endswith("UTC") else None
    namespace = {"pd": pd, "data": df, "origin": pd.Timestamp("2025-12-31", tz=tz)}
    df["t"] = eval(code, namespace)  # noqa: S307 - the message's own code
    assert pd.api.types.is_float_dtype(df["t"].dtype), df["t"].dtype
    assert np.isfinite(df["t"].to_numpy(dtype=float)).all()
    build_spec(df, "y ~ xi + t", groups="g")


@pytest.mark.parametrize("kind", [k for k in _TIME_VALUES if k.startswith("object")])
def test_an_object_column_of_dates_is_a_factor_as_statsmodels_reads_it(kind):
    """pandas reads a Parquet ``date32`` column as ``datetime.date`` objects; statsmodels
    (patsy) reads such an ``object`` column as a factor, and so does dmixed, with or
    without ``C()``: no unit is read, so no fit depends on one.  Refusing it would refuse
    what statsmodels fits."""
    df = _zoo_base()
    df["t"] = _TIME_VALUES[kind].set_axis(df.index)
    bare = build_spec(df, "y ~ xi + t", groups="g")
    wrapped = build_spec(df, "y ~ xi + C(t)", groups="g")
    assert len(bare.exog_names) == len(wrapped.exog_names) > 2
    build_spec(df, "y ~ xi", groups="t")  # as the groups, a label


def test_another_unsupported_dtype_in_a_formula_says_what_a_formula_reads():
    df = _zoo_base()
    df["c"] = pd.Series([1 + 2j] * len(df))
    with pytest.raises(
        BadValuesError,
        match="column 'c' has an unsupported dtype .* reads numbers, booleans and labels",
    ):
        build_spec(df, "y ~ c", groups="g")


_NEW_ROW_TIMES = [k for k in _TIME_VALUES if not k.startswith("object")]


@pytest.fixture(scope="module")
def fitted_on_times():
    """A model of ``t`` read as numbers (and one of ``C(t)`` of integers), fitted on the
    numbers the time columns of ``_TIME_VALUES`` would be in seconds."""
    df = _zoo_base()
    df["t"] = np.arange(len(df), dtype=float) % 7
    df["y"] += 0.3 * df["t"] + np.sin(3.0 * df["g"])  # a group effect: off the boundary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.errors.BoundaryWarning)
        numbers = dmixed.mixedlm("y ~ xi + t", df, groups="g").fit()
        levels = dmixed.mixedlm("y ~ xi + C(t)", df.assign(t=df["t"].astype(int)), groups="g")
        levels = levels.fit()
    return df, numbers, levels


def _fit_message(df, formula) -> str:
    with pytest.raises(BadValuesError) as info:
        build_spec(df, formula, groups="g")
    return str(info.value)


_ORIGIN = pd.Timestamp("2026-01-01")


def _times_of(kind: str, t: pd.Series) -> pd.Series:
    """The numbers ``t`` as the time column ``kind``: timestamps ``t`` days after
    :data:`_ORIGIN` (its time zone where ``kind`` has one), durations of ``t`` seconds;
    held as they are, or as the categories of a categorical or an Arrow dictionary."""
    stamps = _ORIGIN + pd.to_timedelta(t, unit="D")
    seconds = pd.to_timedelta(t, unit="s")
    if kind == "datetime64":
        return stamps
    if kind == "datetime64 UTC":
        return stamps.dt.tz_localize("UTC")
    if kind == "arrow timestamp":
        return stamps.astype("timestamp[us][pyarrow]")
    if kind == "arrow date32":
        return pd.Series(stamps.dt.date, index=t.index, dtype="date32[day][pyarrow]")
    if kind == "timedelta64":
        return seconds
    if kind == "arrow duration":
        return seconds.astype("duration[s][pyarrow]")
    values = stamps if "timestamps" in kind else seconds
    if kind.startswith("category"):
        return values.astype("category")
    encoded = pa.array(values.to_numpy()).dictionary_encode()
    return pd.Series(pd.arrays.ArrowExtensionArray(encoded), index=t.index)


_NEW_TIMES = [
    *_NEW_ROW_TIMES,
    "category of timestamps",
    "category of durations",
    "arrow dictionary of timestamps",
    "arrow dictionary of durations",
]


def _follow(message: str, new: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The new rows with the message's conversion executed as written (``origin``:
    :data:`_ORIGIN`, in the column's time zone)."""
    code = re.search(r"data\['t'\] = (.*)$", message).group(1)
    tz = "UTC" if kind.endswith("UTC") else None
    namespace = {"pd": pd, "data": new, "origin": _ORIGIN.tz_localize(tz)}
    return new.assign(t=eval(code, namespace))  # noqa: S307 - the message's own code


@pytest.mark.parametrize("kind", _NEW_TIMES)
def test_time_columns_in_new_rows_are_refused_with_a_conversion_of_the_new_rows(
    fitted_on_times, kind, tmp_path
):
    """A fit refuses a timestamp, date or duration column read in a formula, but the new
    rows of ``predict`` read such a column as its storage (microseconds since 1970...)
    and returned values of order 1e10 silently, the categories of a categorical or an
    Arrow dictionary of such values too.  Every prediction path now raises one error:
    pandas rows (fixed part, with the random part, ``get_prediction``), a dict of
    columns, results saved and loaded, and Dask rows (refused by their declared dtype
    when ``predict`` is called).  Its advice works on the new rows, the formula being
    fitted: following it predicts what the fit's numbers predict."""
    import dask.dataframe as dd

    df, res, _ = fitted_on_times
    new = df.assign(t=_times_of(kind, df["t"]))
    res.save(tmp_path / "res")
    loaded = dmixed.load(tmp_path / "res")
    calls = {
        "predict": lambda: res.predict(new),
        "include_random": lambda: res.predict(new, include_random=True),
        "get_prediction": lambda: res.get_prediction(new),
        "dict of columns": lambda: res.predict({c: new[c].array for c in new.columns}),
        "loaded": lambda: loaded.predict(new, include_random=True),
        "dask": lambda: res.predict(dd.from_pandas(new, npartitions=2)),
        "dask get_prediction": lambda: res.get_prediction(dd.from_pandas(new, npartitions=2)),
    }
    messages = {}
    for path, call in calls.items():
        with pytest.raises(BadValuesError) as info:
            call()
        messages[path] = str(info.value)
    assert len(set(messages.values())) == 1, messages
    message = messages["predict"]
    words = "durations" if "duration" in kind or "timedelta" in kind else "timestamps"
    words = "dates" if "date32" in kind else words
    assert message.startswith(f"column 't' holds {words} ("), message
    assert "the model was fitted on numbers in this column" in message
    assert "C(t)" not in message and "write" not in message  # the formula is fitted
    followed = _follow(message, new, kind)
    for random in (False, True):
        np.testing.assert_array_equal(
            np.asarray(res.predict(followed, include_random=random)),
            np.asarray(res.predict(df, include_random=random)),
        )


def test_a_dask_partition_of_durations_under_a_meta_of_numbers_is_refused(fitted_on_times):
    """A partition whose column is of another dtype than the collection declares
    (``map_partitions`` with the meta of numbers) is refused where it is read, in the
    words of pandas rows, with the partition's number."""
    import dask.dataframe as dd

    df, res, _ = fitted_on_times
    ddf = dd.from_pandas(df, npartitions=2)
    odd = ddf.map_partitions(lambda p: p.assign(t=pd.to_timedelta(p["t"], unit="s")), meta=ddf)
    with pytest.raises(BadValuesError) as rows:
        res.predict(df.assign(t=pd.to_timedelta(df["t"], unit="s")))
    with pytest.raises(BadValuesError) as info:
        res.predict(odd).compute()
    assert str(info.value).endswith(str(rows.value))
    assert "partition" in str(info.value)


@pytest.mark.parametrize(
    "kind",
    [
        "timedelta64",
        "datetime64 UTC",
        "arrow timestamp",
        "category of durations",
        "category of timestamps",
        "arrow dictionary of durations",
    ],
)
def test_time_columns_in_new_rows_of_a_C_factor_of_numbers_are_refused(fitted_on_times, kind):
    """``C(t)`` fitted on integers: new rows of timestamps or durations were looked up
    among the levels by their storage (a duration of 2 µs found the level 2), a
    categorical or an Arrow dictionary of them too; refused with the words for a time
    column inside ``C()``, and the conversion it gives of the new rows predicts what
    the fit's integers predict."""
    import dask.dataframe as dd

    df, _, res = fitted_on_times
    new = df.assign(t=_times_of(kind, df["t"]))
    with pytest.raises(BadValuesError) as info:
        res.predict(new)
    message = str(info.value)
    assert "C(t) does not read" in message
    assert "the model was fitted on C(t) of numbers" in message
    with pytest.raises(BadValuesError, match="C\\(t\\) does not read"):
        res.predict(dd.from_pandas(new, npartitions=2))
    np.testing.assert_array_equal(
        np.asarray(res.predict(_follow(message, new, kind))),
        np.asarray(res.predict(df.assign(t=df["t"].astype(int)))),
    )


def test_the_C_words_for_a_time_column_are_chosen_by_one_rule_in_fit_and_predict(
    fitted_on_times,
):
    """A column read both inside and outside ``C()`` (``C(t) + xi:t``) got the ``C()``
    words in a fit and the words for numbers in predict: one rule chooses them for
    both (``only_in_c``: the ``C()`` words where every term reads the column inside
    ``C()``)."""
    df, _, _ = fitted_on_times
    durations = df.assign(t=pd.to_timedelta(df["t"], unit="s"))
    integers = df.assign(t=df["t"].astype(int))
    for formula, in_c in [("y ~ xi + C(t) + xi:t", False), ("y ~ xi + C(t)", True)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dmixed.errors.BoundaryWarning)
            res = dmixed.mixedlm(formula, integers, groups="g").fit()
        with pytest.raises(BadValuesError) as predicted:
            res.predict(durations)
        for message in (_fit_message(durations, formula), str(predicted.value)):
            assert ("C(t) does not read durations" in message) == in_c, (formula, message)
            assert ("does not read as numbers" in message) != in_c, (formula, message)


def test_a_text_factor_given_timestamps_says_levels_not_seen(fitted_on_times):
    """A factor fitted on text given timestamps in new rows: the levels are not seen
    (the formula is fitted: advice to convert them to numbers or to write ``C(s)``
    cannot be followed)."""
    df, _, _ = fitted_on_times
    new = df.assign(s=_times_of("datetime64", df["t"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.errors.BoundaryWarning)
        res = dmixed.mixedlm("y ~ xi + t + s", df, groups="g").fit()
    with pytest.raises(DataError, match="column 's' has levels not seen .*Timestamp"):
        res.predict(new)


def test_new_rows_of_missing_timestamps_are_refused_an_arrow_null_column_is_missing(
    fitted_on_times,
):
    """A column of ``NaT`` only predicted about -2e18 (NaT's storage); refused as every
    timestamp column is.  A column of Arrow's null type holds no value to misread: its
    rows are missing and predicted NaN, as before."""
    df, res, _ = fitted_on_times
    nat = df.assign(t=pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]"))
    with pytest.raises(BadValuesError, match=r"^column 't' holds timestamps \(datetime64\[ns\]\)"):
        res.predict(nat)
    null = df.assign(t=pd.Series([None] * len(df), index=df.index, dtype="null[pyarrow]"))
    assert np.isnan(np.asarray(res.predict(null))).all()


@pytest.mark.parametrize("which", ["numbers", "levels"])
@pytest.mark.parametrize("dtype", ["category", "dictionary<values=string, indices=int32>[pyarrow]"])
def test_categorical_text_in_new_rows_read_as_numbers_is_refused_as_str_is(
    fitted_on_times, which, dtype
):
    """A categorical (or Arrow dictionary) of text ``'0'``, ``'1'`` in a column read as
    numbers (or as ``C()`` of integers) was parsed as numbers, while the same text as
    ``str`` is refused (text is a factor under the column rules): it is refused with
    the ``str`` column's words."""
    df, numbers, levels = fitted_on_times
    res = numbers if which == "numbers" else levels
    text = df["t"].astype(int).astype(str)
    if dtype == "category":
        labels = text.astype("category")
    else:
        labels = text.astype(pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())))
    with pytest.raises(BadValuesError) as as_str:
        res.predict(df.assign(t=text))
    with pytest.raises(BadValuesError) as as_labels:
        res.predict(df.assign(t=labels))
    assert str(as_labels.value) == str(as_str.value)


def test_a_categorical_whose_unused_labels_are_text_predicts_its_numbers(fitted_on_times):
    """A categorical of numbers with a text label no row takes is read as its numbers;
    a row taking the text label is refused as ``str`` text is (only the labels rows
    use are looked at)."""
    df, numbers, _ = fitted_on_times
    labels = pd.Categorical(df["t"].astype(object), categories=[*range(7), "none"])
    expected = np.asarray(numbers.predict(df))
    np.testing.assert_array_equal(np.asarray(numbers.predict(df.assign(t=labels))), expected)
    labels[0] = "none"
    with pytest.raises(BadValuesError, match="column 't' holds text"):
        numbers.predict(df.assign(t=labels))


@pytest.mark.parametrize(
    "convert",
    [
        lambda t: t.astype(int),
        lambda t: t.astype("Int64"),
        lambda t: t.astype("float32"),
        lambda t: t.astype("category"),  # a category of numbers: its numbers, as patsy
        lambda t: t.astype("double[pyarrow]"),
    ],
    ids=["int64", "Int64", "float32", "category of numbers", "arrow double"],
)
def test_new_rows_of_numbers_of_another_dtype_predict_as_floats(fitted_on_times, convert):
    """What the kind check keeps: numbers of any dtype, a category of numbers included,
    predict what the float column predicts, read as numbers or as ``C()`` levels."""
    df, numbers, levels = fitted_on_times
    for res in (numbers, levels):
        expected = np.asarray(res.predict(df, include_random=True))
        got = np.asarray(res.predict(df.assign(t=convert(df["t"])), include_random=True))
        np.testing.assert_array_equal(got, expected)


def test_new_rows_of_labels_of_another_text_dtype_predict_as_str():
    """A factor fitted on ``str`` labels predicts the same from a categorical, Arrow
    string or Arrow dictionary column of those labels (lossless: the same levels)."""
    df = _zoo_base()
    df["y"] += np.sin(3.0 * df["g"])
    res = dmixed.mixedlm("y ~ xi + s", df, groups="g").fit()
    expected = np.asarray(res.predict(df))
    dict_type = pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))
    for dtype in ["category", "string[pyarrow]", dict_type]:
        got = np.asarray(res.predict(df.assign(s=df["s"].astype(dtype))))
        np.testing.assert_array_equal(got, expected)


def test_object_decimals_in_C_fit_the_factor_statsmodels_fits_of_them():
    """What the refusal offers, C(p), is the model statsmodels fits of plain ``p``."""
    import statsmodels.formula.api as smf

    import dmixed

    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"g": np.repeat(np.arange(12), 10), "x": rng.normal(size=n)})
    df["p"] = _obj([DECIMAL_PRICES[k] for k in rng.integers(0, 3, n)])
    df["y"] = df["x"] + rng.normal(size=n) + np.repeat(rng.normal(size=12), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("y ~ x + p", df, groups="g").fit()
    ours = dmixed.MixedLM.from_formula("y ~ x + C(p)", df, groups="g").fit()
    assert len(theirs.fe_params) == len(ours.fe_params) == 4
    np.testing.assert_allclose(ours.fe_params.to_numpy(), theirs.fe_params.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.llf, theirs.llf, rtol=1e-8)


def test_a_response_with_a_stray_string_is_named_with_a_hint_that_works():
    """An ``object`` response of numbers and one ``'n/a'`` got the hint
    ``.astype(str)`` "for labels" (a response is never labels) or
    ``pd.to_numeric(df['y'])`` (which refuses ``'n/a'`` itself), naming no row.  The
    message names the column, the value and its row; its hint, followed, fits."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"g": np.repeat(np.arange(10), 6), "x": rng.normal(size=60), "y": rng.normal(size=60)},
        index=np.arange(100, 160),
    )
    df["y"] += np.repeat(rng.normal(0, 2, 10), 6)  # a group effect: no boundary fit
    df["y"] = df["y"].astype(object)
    df.loc[104, "y"] = "n/a"
    with pytest.raises(BadValuesError) as err:
        dmixed.mixedlm("y ~ x", df, groups="g")
    msg = str(err.value)
    assert "response column 'y'" in msg and "'n/a' in the row with index 104" in msg
    assert "(1 such value in 60 rows)" in msg and "for labels" not in msg
    assert "pd.to_numeric(df['y'], errors='coerce')" in msg and "missing='drop'" in msg
    df["y"] = pd.to_numeric(df["y"], errors="coerce")  # the hint, followed
    with pytest.warns(dmixed.DroppedRowsWarning):
        res = dmixed.mixedlm("y ~ x", df, groups="g", missing="drop").fit()
    assert res.nobs == 59
    # a factor column of several types keeps the labels hint, now with a working numbers one
    df["c"] = pd.Series([1.5, "a"] * 30, index=df.index, dtype=object)
    with pytest.raises(BadValuesError, match=r"astype\(str\) for labels .*errors='coerce'"):
        dmixed.mixedlm("y ~ C(c)", df, groups="g", missing="drop")


def _stray_string_frame(index=None):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"g": np.repeat(np.arange(10), 6), "x": rng.normal(size=60), "y": rng.normal(size=60)}
    )
    df["y"] = df["y"].astype(object)
    df.loc[4, "y"] = "n/a"
    if index is not None:
        df.index = index
    return df


@pytest.mark.parametrize(
    ("index", "row"),
    [
        (pd.Index(["r"] * 60), "'r'"),
        (
            pd.MultiIndex.from_arrays([np.repeat(np.arange(10), 6), np.tile(np.arange(6), 10)]),
            "(0, 4)",
        ),
    ],
)
def test_a_response_refusal_names_one_value_whatever_the_index(index, row):
    """With a repeated index label, ``values[label]`` is a Series: the message held the
    whole column (60 lines here, the Series' repr on a large frame); a MultiIndex label
    read ``(np.int64(0), np.int64(4))``.  The value is found by position."""
    with pytest.raises(BadValuesError) as err:
        dmixed.mixedlm("y ~ x", _stray_string_frame(index), groups="g")
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    assert f"'n/a' in the row with index {row} (1 such value in 60 rows)" in msg


@pytest.mark.parametrize("source", ["dask", "dask parquet", "pandas parquet", "pandas text"])
def test_every_refusal_of_a_response_of_text_says_response_with_a_hint_that_works(tmp_path, source):
    """On Dask the refusal of an ``object`` response was the general one (labels hint
    first, no word of the response); a text response (Parquet, a text dtype) got
    ``pd.to_numeric(data['y'])``, which refuses the ``'n/a'`` it names, or no hint.
    Every storage now says it is the response, names a value where one is at hand, and
    hints ``errors='coerce'`` with ``missing='drop'``."""
    import dask.dataframe as dd

    df = _stray_string_frame()
    text = df.assign(y=df["y"].astype(str))
    path = tmp_path / "t.parquet"
    text.to_parquet(path)
    data = {
        "dask": lambda: dd.from_pandas(df, npartitions=3),
        "dask parquet": lambda: dd.read_parquet(path),
        "pandas parquet": lambda: pd.read_parquet(path),
        "pandas text": lambda: text.astype({"y": "string"}),
    }[source]()
    with pytest.raises(BadValuesError) as err:
        dmixed.mixedlm("y ~ x", data, groups="g")
    msg = str(err.value)
    assert "the response column 'y' holds values that are not numbers" in msg
    assert "'n/a'" in msg and "for labels" not in msg
    assert "pd.to_numeric(df['y'], errors='coerce')" in msg and "missing='drop'" in msg
    fixed = pd.to_numeric(text["y"], errors="coerce")  # the hint, followed
    assert int(fixed.isna().sum()) == 1


def test_dask_text_response_names_a_value_that_is_not_a_number():
    """A Dask response of number-like text with one 'n/a': the refusal names 'n/a', not
    number-like text such as '1.243' that pandas reads as a number."""
    import dask.dataframe as dd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": rng.integers(0, 20, 200).astype(str), "x": rng.normal(size=200)})
    df["y"] = (df.x + rng.normal(size=200)).round(3).astype(str)
    df.loc[17, "y"] = "n/a"
    with pytest.raises(DataError, match="not numbers") as info:
        dmixed.mixedlm("y ~ x", dd.from_pandas(df, npartitions=3), groups="g").fit()
    named = re.search(r"\(such as '([^']*)'\)", str(info.value))
    # a value named is one pandas cannot read as a number; else the column's dtype
    assert named is None or named.group(1) == "n/a", str(info.value)
