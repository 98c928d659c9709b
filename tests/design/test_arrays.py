"""dmixed.design.arrays: statsmodels' array inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import MixedLM
from dmixed.design.arrays import (
    RowData,
    as_float_matrix,
    constant_columns,
    exog_names,
    handle_missing,
    ones_columns,
    random_design,
    random_intercept,
)
from dmixed.engines.local import statistics_from_rows
from dmixed.errors import BadValuesError, DataError, DroppedRowsWarning, SpecError
from dmixed.stats.standardize import Standardization

from .._synth import design, make_data


def test_two_columns_of_one_name_are_refused():
    """They failed with an AttributeError ('DataFrame' object has no attribute 'dtype')."""
    frame = pd.DataFrame(np.ones((4, 3)), columns=["a", "b", "b"])
    with pytest.raises(DataError, match="exog has more than one column named 'b'"):
        as_float_matrix(frame, "exog")
    rng = np.random.default_rng(1)
    z = pd.DataFrame(np.ones((20, 2)), columns=["i", "i"])
    with pytest.raises(DataError, match="exog_re has more than one column named 'i'"):
        MixedLM(rng.normal(size=20), np.ones((20, 1)), np.arange(20) % 4, exog_re=z)


def test_frames_give_their_values_and_series_one_column():
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.0], "c": [True, False]})
    np.testing.assert_array_equal(as_float_matrix(frame, "exog"), [[1, 0.5, 1], [2, 1, 0]])
    assert as_float_matrix(pd.Series([1.0, 2.0]), "exog").shape == (2, 1)


def _vc_model(exog_vc):
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(6), 5)
    return MixedLM(rng.normal(size=30), np.ones((30, 1)), groups, exog_vc=exog_vc)


def test_exog_vc_keys_that_match_no_group_are_refused():
    """String keys for integer groups, an unknown group, an empty component: statsmodels
    refuses them; they were skipped, fitting a model without the component."""
    mats = {g: np.ones((5, 1)) for g in range(6)}
    _vc_model({"a": mats})  # the keys are the labels: accepted
    with pytest.raises(DataError, match=r"exog_vc\['a'\] has 6 key\(s\) matching no group.*'0'"):
        _vc_model({"a": {str(g): m for g, m in mats.items()}})
    with pytest.raises(DataError, match=r"exog_vc\['b'\] has 1 key\(s\).*12345"):
        _vc_model({"a": mats, "b": {**mats, 12345: np.ones((5, 1))}})
    with pytest.raises(DataError, match=r"exog_vc\['a'\] has no matrices"):
        _vc_model({"a": {}})


@given(
    st.lists(
        st.sampled_from([0.5, -2.0, np.nan, np.inf, -np.inf, 1e308, -1e308]),
        min_size=3,
        max_size=3,
    ),
    st.integers(0, 59),
    st.integers(0, 2),
)
@settings(max_examples=40)
def test_rows_with_nan_or_inf_are_found_whatever_the_sum(values, row, column):
    """Arrays whose sum is finite skip the per-entry mask; NaN, ±inf and finite values
    whose sum overflows (1e308 + 1e308) are each found where they are."""
    rng = np.random.default_rng(3)
    n = 60
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = rng.normal(size=n)
    x[row, 1:] = values[:2]
    y[(row + 7) % n] = values[2]
    exog_re = x[:, :2].copy()
    if column == 2:  # the values in exog_re too
        exog_re[(row + 3) % n, 1] = values[0]
    table = np.column_stack([y, x, exog_re])
    finite = np.isfinite(table).all(axis=1)
    groups = np.arange(n) % 6
    if finite.all():
        model = MixedLM(y, x, groups, exog_re=exog_re)
    else:
        with pytest.raises(DataError, match="missing or infinite values"):
            MixedLM(y, x, groups, exog_re=exog_re)
        with pytest.warns(DroppedRowsWarning, match=f"dropped {n - finite.sum()} rows? with"):
            model = MixedLM(y, x, groups, exog_re=exog_re, missing="drop")
    assert model.nobs == int(finite.sum())


def test_missing_values_of_exog_vc_name_their_component():
    """They were named by the component's position among the sorted names
    (``exog_vc[0]``), not by the name the caller gave it."""
    mats = {g: np.ones((5, 1)) for g in range(6)}
    bad = {**mats, 3: np.array([[1.0], [np.nan], [1.0], [1.0], [1.0]])}
    with pytest.raises(DataError, match=r"missing or infinite values in exog_vc\['b'\] \(1 rows\)"):
        _vc_model({"a": mats, "b": bad})


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.full((5, 1), "1.5"), r"exog_vc\['a'\]\[2\] must be numeric: it holds text .* row 0"),
        (np.array([[1.0]] * 4 + [["x"]], dtype=object), r"exog_vc\['a'\]\[2\] .*text.* row 4"),
        (pd.DataFrame({"c": ["1"] * 5}), r"exog_vc\['a'\]\[2\]: column 'c' has non-numeric"),
    ],
)
def test_text_in_an_exog_vc_matrix_is_refused_naming_it(matrix, message):
    """Numbers written as text in a group's matrix are refused, as in exog: they were
    read as numbers (numpy's float conversion of text)."""
    mats = {g: np.ones((5, 1)) for g in range(6)}
    with pytest.raises(BadValuesError, match=message):
        _vc_model({"a": {**mats, 2: matrix}})


def test_numbers_held_as_objects_in_an_exog_vc_matrix_are_read():
    mats = {g: np.arange(5.0)[:, None] for g in range(6)}
    objects = {g: pd.DataFrame(m, dtype=object) for g, m in mats.items()}
    np.testing.assert_array_equal(
        _vc_model({"a": objects}).rows.vc_vals[0], _vc_model({"a": mats}).rows.vc_vals[0]
    )


@pytest.mark.parametrize("shape", [(5,), (5, 1, 1), ()])
def test_an_exog_vc_matrix_that_is_not_2d_is_refused_naming_it(shape):
    """A 1-D array (one column) raised numpy's IndexError 'tuple index out of range'."""
    mats = {g: np.ones((5, 1)) for g in range(6)}
    with pytest.raises(DataError, match=r"exog_vc\['a'\]\[2\] has shape .*must be 2-D"):
        _vc_model({"a": {**mats, 2: np.ones(shape)}})


@pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")
@given(st.sampled_from(["C", "F"]), st.integers(0, 2**31))
@settings(max_examples=6)
def test_array_input_is_held_column_major_and_fits_as_its_formula(order, seed):
    """Row-major arrays were kept as given: numpy's reductions down the rows of a narrow
    row-major array are many times slower (the 2M-row array fit took twice its formula
    twin), and the fit differed from the formula's in its last digits."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 6)
    x1, x2 = rng.normal(size=(2, g.size))
    y = 1 + x1 - x2 + 2 * rng.normal(size=30)[g] + rng.normal(size=30)[g] * x1
    y = y + rng.normal(size=g.size)
    exog = np.array(np.column_stack([np.ones_like(x1), x1, x2]), order=order)
    exog_re = np.array(exog[:, :2], order=order)
    model = MixedLM(y, exog, g, exog_re=exog_re)
    assert model.rows.exog.flags.f_contiguous and model.rows.exog_re.flags.f_contiguous
    assert as_float_matrix(exog, "exog").flags.f_contiguous
    frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})
    formula = MixedLM.from_formula("y ~ x1 + x2", frame, groups="g", re_formula="~x1")
    a, f = model.fit(), formula.fit()
    assert a.llf == f.llf
    np.testing.assert_array_equal(a.fe_params, np.asarray(f.fe_params))
    np.testing.assert_array_equal(a.cov_re, np.asarray(f.cov_re))


_VALUES = st.sampled_from([0.0, -0.0, 1.0, 2.5, -1.0, np.nan, np.inf])


@settings(max_examples=200)
@given(
    st.integers(1, 20).flatmap(
        lambda n: st.lists(
            st.one_of(
                st.lists(_VALUES, min_size=n, max_size=n),
                _VALUES.map(lambda v, n=n: [v] * n),
                st.tuples(_VALUES, st.integers(0, n - 1), _VALUES).map(
                    lambda t, n=n: [t[2] if i == t[1] else t[0] for i in range(n)]
                ),  # constant but for one row, anywhere (also past the first rows)
            ),
            min_size=1,
            max_size=4,
        )
    )
)
def test_exog_names_of_arrays_are_statsmodels_rule(columns):
    """'const' for a column whose every row equals its first, not zero; x1, x2, …
    for the others (the first rows looked at first give the same names)."""
    x = np.asfortranarray(np.array(columns, dtype=np.float64).T)
    want, j = [], 0
    for col in x.T:
        if np.all(col == col[0]) and col[0] != 0:
            want.append("const")
        else:
            j += 1
            want.append(f"x{j}")
    assert exog_names(x, x) == want


_ENTRIES = st.sampled_from([0.0, -0.0, 1.0, -2.5, 3.0])


@settings(max_examples=60)
@given(
    st.integers(1, 4).flatmap(
        lambda p: st.tuples(
            st.lists(st.lists(_ENTRIES, min_size=5, max_size=5), min_size=p, max_size=p),
            st.integers(0, p - 1),
            st.integers(1, p),
        )
    ),
    st.sampled_from(["C", "F"]),
    st.booleans(),
)
def test_random_design_shares_exog_columns_only_when_bitwise_equal(case, order, flip_zero):
    """``exog_re`` whose columns are, bit for bit, a run of ``exog``'s is held as that run
    of ``exog`` (no copy of the rows); a column that differs anywhere, even in the sign
    of a zero, keeps its own values."""
    columns, start, q = case
    q = min(q, len(columns) - start)
    x = np.asfortranarray(np.array(columns, dtype=np.float64).T)
    z = np.array(x[:, start : start + q], order=order)
    flipped = flip_zero and bool(np.any(z == 0.0))
    if flipped:
        row, col = np.argwhere(z == 0.0)[0]
        z[row, col] = -z[row, col]  # 0.0 <-> -0.0: equal, other bits
    held = random_design(z, x)
    assert held.flags.f_contiguous
    np.testing.assert_array_equal(held.view(np.int64), z.view(np.int64))
    bitwise_run = any(
        np.array_equal(z.view(np.int64), x[:, j : j + q].view(np.int64))
        for j in range(x.shape[1] - q + 1)
    )
    assert np.shares_memory(held, x) == bitwise_run


@given(st.lists(_ENTRIES, min_size=1, max_size=4), st.integers(2, 9))
@settings(max_examples=40)
def test_default_random_intercept_is_a_column_of_ones_of_exog_if_any(values, n):
    """The default random design (statsmodels: a random intercept) is ``exog``'s own
    column of ones where it has one, else new ones: the same values either way."""
    x = np.asfortranarray(np.array([[v] * n for v in values], dtype=np.float64).T)
    z = random_intercept(x)
    assert z.shape == (n, 1) and z.flags.f_contiguous
    np.testing.assert_array_equal(z.view(np.int64), np.ones((n, 1)).view(np.int64))
    assert np.shares_memory(z, x) == (1.0 in values)


@given(st.integers(0, 2**31), st.sampled_from([None, (0, 1), (1, 3), (0, 2)]))
@settings(max_examples=8)
def test_a_fit_whose_random_design_shares_exog_equals_the_fit_of_a_copy(seed, run):
    """Holding ``exog_re`` as ``exog``'s own columns changes no number of the fit: the
    same fit as with a random design that cannot share (its columns in another order,
    then reordered: the same model)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(25), rng.integers(2, 8, size=25))
    x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 2))])
    y = x @ [1.0, 0.5, -1.0] + rng.normal(size=25)[g] + rng.normal(size=g.size)
    z = None if run is None else x[:, run[0] : run[1]].copy()
    shared = MixedLM(y, x, g, exog_re=z)
    assert np.shares_memory(shared.rows.exog_re, shared.rows.exog)
    # the same values in memory of their own (a column-major copy cannot be a run)
    own = MixedLM(y, x, g, exog_re=z)
    own.rows.exog_re = np.asfortranarray(np.array(shared.rows.exog_re))
    with warnings.catch_warnings():  # the same warnings or none: the numbers are compared
        warnings.simplefilter("ignore")
        a, b = shared.fit(), own.fit()
    assert a.llf == b.llf and a.n_iter == b.n_iter
    for name in ("params", "bse", "cov_re"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
    np.testing.assert_array_equal(
        np.asarray(list(a.random_effects.values())), np.asarray(list(b.random_effects.values()))
    )


@settings(max_examples=80)
@given(
    st.integers(1, 4).flatmap(
        lambda p: st.tuples(
            st.lists(st.lists(_ENTRIES, min_size=9, max_size=9), min_size=p, max_size=p),
            st.lists(st.integers(0, p - 1), min_size=1, max_size=3),
        )
    ),
    st.booleans(),
)
def test_ones_columns_are_the_column_maps_own_finding(case, shared):
    """The intercepts found with the rows are those the statistics' column map finds by
    looking (the first column exactly 1.0 on every row), also for an ``exog_re`` that
    is ``exog``'s own columns."""
    columns, picks = case
    x = np.asfortranarray(np.array(columns, dtype=np.float64).T)
    z = random_design(x[:, picks[:1]].copy(), x) if shared else np.asfortranarray(x[:, picks])
    y = np.arange(x.shape[0], dtype=np.float64)
    looked = Standardization.choose(y, x, z)
    assert ones_columns(x, z) == (looked.x_intercept, looked.z_intercept)
    # told by the constant columns found already (as MixedLM's construction does)
    found = (looked.x_intercept, looked.z_intercept)
    assert ones_columns(x, z, constant_columns(x)) == found


@settings(max_examples=80)
@given(
    st.integers(1, 20).flatmap(
        lambda n: st.lists(
            st.lists(
                st.sampled_from([0.0, -0.0, 1.0, -2.5, np.nan, np.inf]), min_size=n, max_size=n
            ),
            min_size=1,
            max_size=4,
        )
    )
)
def test_constant_columns_are_those_of_one_non_zero_value(columns):
    """The constant columns: a non-zero first value that every row holds (compared by
    value: -0.0 is 0.0; a NaN is never equal, so never constant), whatever the count of
    rows (the first rows' look and each column's own)."""
    arr = np.array(columns, dtype=np.float64).T
    expected = [
        j
        for j in range(arr.shape[1])
        if arr[0, j] != 0 and np.array_equal(arr[:, j], np.full(arr.shape[0], arr[0, j]))
    ]
    assert constant_columns(arr) == expected


@pytest.mark.filterwarnings("ignore::dmixed.errors.DroppedRowsWarning")
@given(st.integers(0, 2**31), st.sampled_from(["raise", "drop"]), st.booleans())
@settings(max_examples=10)
def test_statistics_of_arrays_with_known_intercepts_are_those_found_by_looking(
    seed, missing, default_re
):
    """The data pass of a model of arrays takes the intercepts found with its rows
    (kept rows: a dropped row may leave a column all ones); its statistics are, bit for
    bit, those of a pass that looks for them."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), 5)
    x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 2))])
    y = x @ [1.0, 2.0, -1.0] + rng.normal(size=12)[g] + rng.normal(size=g.size)
    if missing == "drop":
        x[3, 0], y[3] = 2.0, np.nan  # the intercept column is all ones on the rows kept
    model = MixedLM(y, x, g, exog_re=None if default_re else x[:, :2].copy(), missing=missing)
    assert model.rows.intercepts == (0, 0)
    known = model.statistics()
    looked = statistics_from_rows(model.rows)
    assert known.standardization == looked.standardization
    for a, b in zip(known.engine.gather(), looked.engine.gather(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(known.glob.xyxy, looked.glob.xyxy)


@settings(max_examples=60)
@given(
    st.lists(st.tuples(st.integers(0, 11), st.integers(0, 2)), max_size=3),
    st.sampled_from([np.nan, np.inf]),
    st.sampled_from(["raise", "drop"]),
)
def test_missing_values_of_exog_re_held_as_exog_columns_are_found_as_in_a_copy(bad, value, missing):
    """A random design held as ``exog``'s own columns is not summed again once ``exog``
    is found finite; with missing values the rows dropped and the message naming the
    arrays are those of the same values in an array of their own."""
    rng = np.random.default_rng(0)
    x = np.asfortranarray(rng.normal(size=(12, 3)))
    for row, col in bad:
        x[row, col] = value
    y, g = rng.normal(size=12), np.repeat(np.arange(3), 4)

    def outcome(z):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DroppedRowsWarning)
                rows = handle_missing(RowData(y, x, z, g), missing)
        except BadValuesError as exc:
            return str(exc)
        return rows.n_dropped, rows.exog_re.tolist()

    shared = outcome(x[:, :2])
    assert np.shares_memory(x[:, :2], x)
    assert str(shared) == str(outcome(np.asfortranarray(np.array(x[:, :2]))))


def _user_arrays():
    """(endog, exog, exog_re, groups, weights) of 20 groups, as a user passes them."""
    df = make_data(n_groups=20, max_size=8, seed=1)
    endog, exog, exog_re, groups = design(df)
    return endog, exog, exog_re, groups, df["w"].to_numpy()


def _with(arrays: tuple, name: str, value) -> dict:
    """``MixedLM``'s keyword arguments of ``arrays`` with ``name`` replaced by ``value``."""
    kw = dict(zip(("endog", "exog", "exog_re", "groups", "weights"), arrays, strict=True))
    kw[name] = value(kw[name]) if callable(value) else value
    return kw


def _text(dtype):
    """The array's numbers written as text, of ``dtype`` (``"<U32"`` or object)."""
    return lambda arr: arr.astype(str).astype(dtype)


def _one_text(value: str):
    """The array's numbers in an object array, row 3 replaced by the text ``value``."""

    def make(arr):
        out = arr.astype(object)
        out[3] = value
        return out

    return make


@pytest.mark.parametrize("name", ["endog", "exog", "exog_re", "weights"])
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (_text("<U32"), r"at row 0.*: '[0-9.-]+'$"),  # numbers written as text
        (_text(object), r"at row 0.*: '[0-9.-]+'$"),
        (_one_text("abc"), r"at row 3.*: 'abc'$"),
        (_one_text("1.5"), r"at row 3.*: '1.5'$"),  # read as 1.5, silently
    ],
)
def test_text_where_numbers_are_read_is_refused_naming_the_argument(name, text, shown):
    """numpy arrays of text (``<U``, or strings in an object array): a BadValuesError
    naming the argument, the first text and its place; numbers written as text were
    read as numbers (where a formula reads such a column as a factor), and other text
    failed with a TypeError quoting numpy."""
    kw = _with(_user_arrays(), name, text)
    with pytest.raises(BadValuesError, match=rf"^{name} must be numeric: it holds text .*{shown}"):
        MixedLM(**kw)


@pytest.mark.parametrize("dtype", ["<U32", object])
def test_groups_of_text_are_labels(dtype):
    """Text is what group labels often are: the fit of the same groups as numbers (in
    another order: ``"10"`` sorts before ``"2"``)."""
    arrays = _user_arrays()
    want = MixedLM(**_with(arrays, "weights", None)).fit()
    kw = _with(arrays, "groups", _text(dtype))
    got = MixedLM(**{**kw, "weights": None}).fit()
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    np.testing.assert_allclose(got.params, want.params, rtol=1e-8)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([1.0, 2 + 1j], dtype=object), r"it holds complex values at row 1: \(2\+1j\)$"),
        (np.array([1.0, [2.0]], dtype=object), r"it holds list values at row 1: \[2.0\]$"),
        (np.array([1.0, 2.0]) + 0j, r"must be numeric \(real numbers\), got dtype complex128"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "got dtype datetime64"),
        (np.array([b"1.5"]), r"it holds text .* at row 0: b'1.5'$"),
        ([1.0, "x"], r"it holds text .* at row 1: 'x'$"),
        ([[1.0], [2.0, 3.0]], "exog must be numeric: setting an array element"),
    ],
)
def test_values_that_are_not_real_numbers_are_refused(value, message):
    with pytest.raises(BadValuesError, match=message):
        as_float_matrix(value, "exog")


def test_real_numbers_of_any_kind_in_object_arrays_are_read():
    """Decimal, Fraction, numpy scalars, bools and integers beyond int64 are numbers."""
    from decimal import Decimal
    from fractions import Fraction

    value = np.array([Decimal("1.5"), Fraction(1, 4), np.float32(2), True, 2**70], dtype=object)
    np.testing.assert_array_equal(as_float_matrix(value, "exog")[:, 0], [1.5, 0.25, 2, 1, 2.0**70])


@pytest.mark.parametrize("name", ["endog", "exog", "exog_re", "weights"])
@pytest.mark.parametrize("na", [pd.NA, None, np.nan, pd.NaT])
def test_missing_values_in_an_object_array_are_missing_values(name, na):
    """pd.NA (and NaT) in an object matrix are missing values, as None and NaN: refused
    naming the argument, or dropped with ``missing="drop"``; pd.NA failed with numpy's
    TypeError about ``float()``."""
    arrays = _user_arrays()

    def holed(arr):
        out = arr.astype(object)
        out[2] = na
        return out

    kw = _with(arrays, name, holed)
    with pytest.raises(BadValuesError, match=rf"missing or infinite values in {name} \(1 rows\)"):
        MixedLM(**kw)
    with pytest.warns(DroppedRowsWarning, match="dropped 1 row "):
        dropped = MixedLM(**kw, missing="drop")
    keep = np.arange(len(arrays[0])) != 2
    want = MixedLM(*(a[keep] for a in arrays[:2]), arrays[3][keep], arrays[2][keep],
                   weights=arrays[4][keep])  # fmt: skip
    np.testing.assert_array_equal(dropped.rows.exog, want.rows.exog)
    np.testing.assert_array_equal(dropped.rows.endog, want.rows.endog)


@pytest.mark.parametrize("name", ["endog", "exog", "exog_re", "weights"])
@pytest.mark.parametrize("na", [None, pd.NA])
def test_object_columns_of_pandas_are_read_as_object_arrays(name, na):
    """A DataFrame or Series of object dtype holding numbers (and missing values) is
    read as the object array of its values is (it was refused as "non-numeric dtype
    object" where the array itself was read); text in it is refused naming the column."""
    arrays = _user_arrays()

    def frame(arr, holed=False, text=None):
        values = arr.astype(object)
        if holed:
            values[2] = na
        if text is not None:
            values[3] = text
        return pd.DataFrame(values) if values.ndim == 2 else pd.Series(values, name="v")

    got = MixedLM(**_with(arrays, name, frame))
    want = MixedLM(**_with(arrays, name, lambda arr: arr.astype(object)))
    for field in ("endog", "exog", "exog_re", "weights"):
        np.testing.assert_array_equal(getattr(got.rows, field), getattr(want.rows, field))
    with pytest.warns(DroppedRowsWarning, match="dropped 1 row "):
        dropped = MixedLM(**_with(arrays, name, lambda a: frame(a, holed=True)), missing="drop")
    assert dropped.rows.endog.shape[0] == len(arrays[0]) - 1
    column = "'v'" if _with(arrays, name, lambda a: a)[name].ndim == 1 else "0"
    with pytest.raises(BadValuesError, match=rf"{name}: column {column} .*text.* row 3: 'x'"):
        MixedLM(**_with(arrays, name, lambda a: frame(a, text="x")))


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("weights", lambda w: np.column_stack([w, w]), DataError,
         r"weights must be one column \(one value per row\), got shape \(\d+, 2\)"),
        ("endog", lambda y: np.column_stack([y, y]), DataError,
         r"endog must be one column \(one value per row\), got shape \(\d+, 2\)"),
    ],
)  # fmt: skip
def test_a_value_per_row_is_one_column(name, value, error, message):
    """Weights of shape (n, 2) were read as their first column, silently."""
    with pytest.raises(error, match=message):
        MixedLM(**_with(_user_arrays(), name, value))


@pytest.mark.parametrize(
    ("exog_vc", "message"),
    [
        ([1, 2], r"exog_vc must be a dict .* or a VCSpec, got list"),
        (np.ones((4, 2)), r"exog_vc must be a dict .* or a VCSpec, got ndarray"),
        (pd.DataFrame({"a": [1.0]}), r"exog_vc must be a dict .* or a VCSpec, got DataFrame"),
        ({"sub": np.ones((4, 2))}, r"exog_vc\['sub'\] must be a dict \{group label: .*got ndarray"),
        ({"sub": [1, 2]}, r"exog_vc\['sub'\] must be a dict \{group label: .*got list"),
    ],
)
def test_an_exog_vc_that_is_not_a_dict_is_refused_naming_it(exog_vc, message):
    """exog_vc of the wrong kind: a SpecError (the whole was a TypeError, and a
    component's array was said to have "no matrices")."""
    endog, exog, _, groups, _ = _user_arrays()
    with pytest.raises(SpecError, match=message):
        MixedLM(endog, exog, groups, exog_vc=exog_vc)


@pytest.mark.parametrize("name", ["endog", "exog", "exog_re", "groups", "weights"])
@pytest.mark.parametrize("kind", ["frame", "array"])
def test_dask_collections_are_refused_pointing_at_the_formula(name, kind):
    """A Dask Series, DataFrame or Array as one of MixedLM's arrays: refused naming it
    and the Dask way (a formula over one Dask DataFrame); groups, exog_re and weights
    were computed into memory, whole."""
    import dask.array as da
    import dask.dataframe as dd

    arrays = _user_arrays()

    def lazy(arr):
        if kind == "array":
            return da.from_array(arr, chunks=40)
        frame = pd.DataFrame(arr) if arr.ndim == 2 else pd.Series(arr)
        return dd.from_pandas(frame, npartitions=2)

    with pytest.raises(
        SpecError, match=rf"and {name} is a Dask \w+: fit Dask data with a formula"
    ) as err:
        MixedLM(**_with(arrays, name, lazy))
    assert "dmixed.mixedlm('y ~ x1 + x2', ddf, groups='g')" in str(err.value)
    assert f"{name}.compute()" in str(err.value)
    assert ("from_dask_array" in str(err.value)) == (kind == "array")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (pd.Series(["1.5", "2"]), r"^endog has non-numeric dtype (str|object)"),
        (pd.Series(["1.5", "2"], dtype="string"), r"^endog has non-numeric dtype string"),
        (pd.Series([1.5, "x"], dtype=object), r"^endog must be numeric: it holds text .* row 1"),
        (pd.Series(["1.5", "2"], dtype="string", name="y"), r"^endog: column 'y' has non-num"),
    ],
)
def test_an_unnamed_series_is_named_by_its_argument(value, message):
    """A Series without a name is the argument itself ("endog: column 0" named a
    column the caller never made)."""
    with pytest.raises(BadValuesError, match=message):
        as_float_matrix(value, "endog")
