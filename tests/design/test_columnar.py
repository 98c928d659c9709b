"""dmixed.design.columnar: the design matrices of plain numeric formulas from numpy
columns are ``ModelSpec.transform``'s, bit for bit; anything the frame's rules would
change is left to ``transform``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmixed.design import build_spec
from dmixed.design.columnar import (
    column_sources,
    columns_design,
    columns_design_applies,
    design_columns,
    frame_columns,
)


def _frame(n: int = 60, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + 1e6,
            "x1": rng.normal(size=n),
            "x2": rng.integers(-5, 5, n),
            "x3": rng.normal(size=n).astype(np.float32),
            "xb": rng.integers(0, 2, n).astype(bool),
            "a": np.array(["lo", "hi"], dtype=object)[rng.integers(0, 2, n)],
            "w": rng.uniform(1, 2, n),
            "g": rng.integers(0, 7, n),
        }
    )


PLAIN = [
    ("y ~ x1 + x2 + x3", "1 + x1"),
    ("y ~ x1", None),
    ("y ~ 0 + x1 + x2", "0 + x2"),
    ("y ~ x1 + x2", "1 + x3"),
    ("y ~ x1 + x1:x2", "1 + x1"),
]


def _same(a, b) -> None:
    for name in ("endog", "exog", "exog_re", "groups"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # bit for bit
    assert a.weights is None and b.weights is None
    assert (a.n_dropped, a.keep, a.vc_cols, a.vc_vals) == (0, None, [], [])
    assert b.n_dropped == 0 and b.keep is None


@pytest.mark.parametrize(("formula", "re_formula"), PLAIN)
@pytest.mark.parametrize("group_dtype", [np.int64, np.int32, np.uint64])
def test_same_matrices_as_transform(formula, re_formula, group_dtype):
    df = _frame()
    df["g"] = df["g"].astype(group_dtype)
    spec = build_spec(df, formula, "g", re_formula=re_formula)
    assert columns_design_applies(spec)
    columns = frame_columns(df, design_columns(spec))
    assert columns is not None
    _same(columns_design(spec, columns), spec.transform(df))
    # the same from copies (as read from a file), and from no rows
    _same(columns_design(spec, {k: np.array(v) for k, v in columns.items()}), spec.transform(df))
    empty = columns_design(spec, {k: v[:0] for k, v in columns.items()})
    assert empty.endog.shape == (0,) and empty.exog.shape[0] == 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.assign(x1=d["x1"].where(d.index != 3)), "NaN: transform drops or raises"),
        (lambda d: d.assign(x2=np.where(d.index == 3, np.inf, d["x2"])), "inf: refused"),
        (lambda d: d.assign(g=d["g"].astype(float)), "float group keys"),
        (lambda d: d.assign(g=d["g"].astype(str).astype(object)), "label keys"),
        (lambda d: d.assign(x1=d["xb"]), "booleans"),
        (lambda d: d.drop(columns="x2"), "a column absent"),
    ],
)
def test_left_to_transform(change, why):
    spec = build_spec(_frame(), "y ~ x1 + x2", "g", re_formula="1 + x1")
    df = change(_frame())
    columns = {c: df[c].to_numpy() for c in design_columns(spec) if c in df.columns}
    assert columns_design(spec, columns) is None, why


def test_frame_columns_only_numpy_columns():
    df = _frame()
    assert frame_columns(df, ["y", "g"]) is not None
    assert frame_columns(df, ["y", "nope"]) is None
    assert frame_columns(df.assign(y=pd.array(df["y"], dtype="Float64")), ["y"]) is None
    twice = pd.concat([df[["y"]], df[["y"]]], axis=1)
    assert frame_columns(twice, ["y"]) is None


@pytest.mark.parametrize(
    ("formula", "kw"),
    [
        ("y ~ x1 + C(a)", {}),
        ("y ~ x1 + a", {}),
        ("y ~ x1", {"weights": "w"}),
        ("y ~ x1", {"vc_formula": {"a": "0 + C(a)"}}),
        ("y ~ np.log(w)", {}),
    ],
)
def test_applies_only_to_plain_numeric_formulas(formula, kw):
    spec = build_spec(_frame(), formula, "g", **kw)
    assert not columns_design_applies(spec)


@pytest.mark.parametrize(("formula", "re_formula"), PLAIN)
def test_column_sources_are_the_matrices_columns(formula, re_formula):
    """Where every column of ``[X y]`` and ``exog_re`` is a formula column or the
    intercept, :func:`column_sources` says which, and those are ``columns_design``'s
    matrices bit for bit; a product of columns gets None."""
    frame = _frame()
    frame["x2"] = frame["x2"].astype(np.float64)
    spec = build_spec(frame, formula, "g", re_formula=re_formula)
    sources = column_sources(spec)
    if ":" in formula:
        assert sources is None
        return
    names, x_of, z_of = sources
    assert sorted(names) == sorted(spec.formula_columns)
    dm = columns_design(spec, frame_columns(frame, design_columns(spec)))

    def column(c: int) -> np.ndarray:
        return np.ones(len(frame)) if c < 0 else frame[names[c]].to_numpy(np.float64)

    xy = np.column_stack([dm.exog, dm.endog])
    assert len(x_of) == xy.shape[1] and len(z_of) == dm.exog_re.shape[1]
    for j, c in enumerate(x_of):
        np.testing.assert_array_equal(xy[:, j], column(c))
    for a, c in enumerate(z_of):
        np.testing.assert_array_equal(dm.exog_re[:, a], column(c))


@pytest.mark.parametrize(
    ("formula", "kw"),
    [
        ("y ~ x1 + C(a)", {}),
        ("y ~ x1", {"weights": "w"}),
        ("y ~ x1", {"re_formula": "1 + x1:x2"}),
    ],
)
def test_column_sources_none_where_not_plain_columns(formula, kw):
    spec = build_spec(_frame(), formula, "g", **kw)
    assert column_sources(spec) is None


def _text_keyed(df: pd.DataFrame) -> pd.DataFrame:
    labels = np.array(["", "é", "日本", "a\0b", "u4", "u5", "u6"], dtype=object)
    return df.assign(g=pd.Series(labels[df["g"].to_numpy()], dtype=object))


@pytest.mark.parametrize(("formula", "re_formula"), PLAIN)
def test_text_keys_none_missing_same_matrices_as_transform(formula, re_formula):
    """Text keys the caller knows complete (read from Arrow with no null) take the
    columns' way: the same matrices and keys as ``transform``."""
    df = _text_keyed(_frame())
    spec = build_spec(df, formula, "g", re_formula=re_formula)
    columns = {c: df[c].to_numpy() for c in design_columns(spec)}
    assert columns_design(spec, columns) is None  # not known complete: transform's way
    got = columns_design(spec, columns, text_keys=True)
    assert got is not None
    _same(got, spec.transform(df))
    assert got.groups.dtype == object and got.groups.tolist() == df["g"].tolist()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.assign(x1=d["x1"].where(d.index != 3)), "NaN: transform drops or raises"),
        (lambda d: d.assign(x2=np.where(d.index == 3, np.inf, d["x2"])), "inf: refused"),
    ],
)
@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_text_keys_left_to_transform_where_values_are_not_finite(change, why, missing):
    spec = build_spec(
        _text_keyed(_frame()), "y ~ x1 + x2", "g", re_formula="1 + x1", missing=missing
    )
    df = change(_text_keyed(_frame()))
    columns = {c: df[c].to_numpy() for c in design_columns(spec)}
    assert columns_design(spec, columns, text_keys=True) is None, why


def test_text_keys_left_to_transform_where_the_spec_converts_object_keys():
    """An object group column of numbers (``group_native``): transform converts its
    keys; text there is not taken as it is."""
    df = _frame().assign(g=lambda d: pd.Series(d["g"].tolist(), dtype=object))
    spec = build_spec(df, "y ~ x1", "g")
    assert spec.group_native == "int"
    text = _text_keyed(_frame())
    columns = {c: text[c].to_numpy() for c in design_columns(spec)}
    assert columns_design(spec, columns, text_keys=True) is None
