"""dmixed.design.patsy_coding: patsy's contrast matrices and column suffixes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import patsy.contrasts as pc
import pytest

from dmixed.design.evaluate import model_matrix
from dmixed.design.patsy_coding import (
    BOOLEAN_LEVELS,
    PATSY_TRANSFORMS,
    PatsyDiff,
    PatsyHelmert,
    PatsyPoly,
    PatsySum,
    patsy_identity,
    patsy_treatment,
)

PAIRS = [
    (PatsySum(), pc.Sum()),
    (PatsySum(omit="b"), pc.Sum(omit="b")),
    (PatsySum(omit=0), pc.Sum(omit=0)),
    (PatsyHelmert(), pc.Helmert()),
    (PatsyDiff(), pc.Diff()),
    (PatsyPoly(), pc.Poly()),
]


@pytest.mark.parametrize("n", [2, 3, 4, 6])
@pytest.mark.parametrize("reduced", [True, False], ids=["reduced", "full"])
@pytest.mark.parametrize(("mine", "theirs"), PAIRS, ids=[repr(mine) for mine, _ in PAIRS])
def test_matrices_and_suffixes_are_patsys(mine, theirs, reduced, n):
    levels = list("abcdef")[:n]
    coded = theirs.code_without_intercept(levels) if reduced else theirs.code_with_intercept(levels)
    got = mine.get_coding_matrix(levels, reduced_rank=reduced)
    np.testing.assert_allclose(np.asarray(got), coded.matrix, rtol=0, atol=1e-14)
    assert list(mine.get_coding_column_names(levels, reduced_rank=reduced)) == list(
        coded.column_suffixes
    )
    assert mine.get_drop_field(levels, reduced_rank=reduced) is None


def test_poly_scores():
    levels = ["lo", "mid", "hi"]
    coded = pc.Poly(scores=[1, 2, 5]).code_without_intercept(levels)
    got = PatsyPoly(scores=[1, 2, 5]).get_coding_matrix(levels, reduced_rank=True)
    np.testing.assert_allclose(np.asarray(got), coded.matrix, atol=1e-14)
    with pytest.raises(ValueError, match="3 levels but 2 scores"):
        PatsyPoly(scores=[1, 2]).get_coding_matrix(levels)


def test_sum_omit_unknown_level():
    with pytest.raises(ValueError, match="'z' is not one of the levels"):
        PatsySum(omit="z").get_coding_matrix(["a", "b"])


@pytest.mark.parametrize("reference", [None, "c", -1, 0, 2, -4])
@pytest.mark.parametrize("reduced", [True, False], ids=["reduced", "full"])
def test_treatment_reference_is_a_level_else_a_position_as_patsys(reference, reduced):
    levels = list("abcd")
    theirs = pc.Treatment(reference)
    coded = theirs.code_without_intercept(levels) if reduced else theirs.code_with_intercept(levels)
    mine = patsy_treatment(reference)
    got = mine.get_coding_matrix(levels, reduced_rank=reduced)
    np.testing.assert_allclose(np.asarray(got), coded.matrix, rtol=0, atol=0)
    names = mine.get_coding_column_names(levels, reduced_rank=reduced)
    prefix = "T." if reduced else ""
    assert [f"[{prefix}{name}]" for name in names] == list(coded.column_suffixes)


def test_treatment_reference_that_is_a_level_is_that_level():
    """Integer levels: a reference among them is the level, not a position."""
    levels = [1, 2, 3]
    for reference, kept in [(1, [2, 3]), (2, [1, 3]), (0, [2, 3]), (-1, [1, 2])]:
        assert list(patsy_treatment(reference).get_coding_column_names(levels)) == kept
        suffixes = pc.Treatment(reference).code_without_intercept(levels).column_suffixes
        assert suffixes == [f"[T.{level}]" for level in kept]
    with pytest.raises(ValueError, match="'z' is not one of the levels"):
        patsy_treatment("z").get_coding_matrix(["a", "b"])
    with pytest.raises(ValueError, match="5 is not one of the levels"):
        patsy_treatment(5).get_coding_matrix(["a", "b"])


def test_identity_booleans_are_a_factor():
    x = pd.Series([1.0, -1.0, 2.0])
    out = patsy_identity(x > 0)
    assert out.__formulaic_metadata__.kind.value == "categorical"
    assert patsy_identity(pd.array([True, None], dtype="boolean")).__formulaic_metadata__
    assert BOOLEAN_LEVELS == [False, True]
    same = patsy_identity(x * 2)
    assert not hasattr(same, "__formulaic_metadata__")
    np.testing.assert_array_equal(same, x * 2)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ np.logical_and(f, z > 0)",
        "y ~ f + I(f | h)",
        "y ~ np.logical_not(f):z + f",
        "y ~ I(z > 0)",
    ],
)
def test_every_boolean_factor_is_named_as_patsy_names_it(formula):
    """patsy reads any factor of booleans (a column, a call, ``I()``) as levels False
    and True (``[T.True]``); a boolean response stays one column of numbers."""
    patsy = pytest.importorskip("patsy")
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=40),
            "z": rng.normal(size=40),
            "f": rng.random(40) > 0.5,
            "h": rng.random(40) > 0.5,
        }
    )
    ours = model_matrix(formula, df, "formula", "numpy")
    theirs = patsy.dmatrices(formula, df, eval_env=patsy.EvalEnvironment([{"np": np}]))
    assert sorted(ours.rhs.model_spec.column_names) == sorted(theirs[1].design_info.column_names)
    response = model_matrix("f ~ z", df, "formula", "numpy")
    assert list(response.lhs.model_spec.column_names) == ["f"]


def test_c_of_booleans_has_both_levels_whatever_the_data():
    """patsy's ``C()`` of booleans: levels False and True even where one is absent (a
    partition); other data as formulaic's ``C()``."""
    frame = pd.DataFrame({"y": [1.0, 2.0], "z": [1.0, 2.0]})
    mm = model_matrix("y ~ C(z > 0)", frame, "formula", "numpy")
    assert list(mm.rhs.model_spec.column_names) == ["Intercept", "C(z > 0)[T.True]"]
    np.testing.assert_array_equal(mm.rhs[:, 1], [1.0, 1.0])
    text = PATSY_TRANSFORMS["C"](pd.Series(["b", "a"]))
    assert text.__formulaic_metadata__.kind.value == "categorical"


def test_text_columns_of_other_levels_compare_by_value():
    """Text columns are categoricals of their own levels; patsy compares their values."""
    df = pd.DataFrame(
        {
            "y": [1.0, 2.0, 3.0, 4.0],
            "a": pd.Categorical(["u", "v", "u", "v"]),
            "b": pd.Categorical(["u", "w", "w", "v"], categories=["u", "v", "w"]),
        }
    )
    mm = model_matrix("y ~ I(a == b) + a", df, "formula", "numpy")
    assert list(mm.rhs.model_spec.column_names) == ["Intercept", "I(a == b)[T.True]", "a[T.v]"]
    np.testing.assert_array_equal(mm.rhs[:, 1], [1.0, 0.0, 0.0, 1.0])


def _upper(v):
    """A caller's function in a formula: the text in capitals."""
    return v.str.upper()


def _levels_frame(n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "g": np.repeat(np.arange(12), n // 12),
            "s": rng.choice(["a", "b", "c"], n),
        }
    )


UNLISTED = [
    ("y ~ C(_upper(s), levels=['A', 'B'])", "'C'"),
    ("y ~ x + C(np.sign(x), levels=[1.0, 0.0])", "-1.0"),
]


def _no_warning_of_formulaic(fn):
    """Run ``fn``; formulaic warned nothing (it casts unlisted values to NaN, coded as
    the reference level, and says so only by a warning)."""
    import warnings

    from formulaic.errors import FormulaicWarning

    with warnings.catch_warnings(record=True) as got:  # (the test's own filters)
        warnings.simplefilter("always")
        fn()
    assert [w for w in got if issubclass(w.category, FormulaicWarning)] == []


@pytest.mark.parametrize(("formula", "value"), UNLISTED, ids=["caller_fn", "np_sign"])
@pytest.mark.parametrize("npartitions", [None, 3], ids=["pandas", "dask3"])
def test_a_derived_factor_with_values_outside_levels_is_refused(formula, value, npartitions):
    """``C(expr, levels=[...])`` whose expression gives a value ``levels=`` does not
    list is refused, naming the expression, the value and the fix (formulaic would
    code those rows as the reference level: a silent wrong model), on pandas and on
    Dask, where the values are known only from the data pass."""
    import dask.dataframe as dd

    import dmixed
    from dmixed.errors import SpecError

    df = _levels_frame()
    data = df if npartitions is None else dd.from_pandas(df, npartitions=npartitions)

    def fit():
        with pytest.raises(SpecError, match=r"levels= does not list") as exc:
            dmixed.mixedlm(formula, data, groups="g").fit()
        msg = str(exc.value)
        assert "C(" in msg and value in msg and "add them to levels=" in msg

    _no_warning_of_formulaic(fit)


def test_a_derived_factor_outside_levels_in_the_random_effects_is_refused():
    import dmixed
    from dmixed.errors import SpecError

    df = _levels_frame()
    with pytest.raises(SpecError, match=r"_upper\(s\).*levels= does not list: 'C'"):
        dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1 + C(_upper(s), levels=['A', 'B'])")


def test_a_derived_factor_whose_values_are_listed_fits_as_the_column():
    """The check refuses nothing the levels list: ``C(_upper(s), levels=[...])`` of
    every level fits as ``C(s)``, all rows."""
    import dmixed

    df = _levels_frame()
    derived = dmixed.mixedlm("y ~ C(_upper(s), levels=['A', 'B', 'C'])", df, groups="g").fit()
    plain = dmixed.mixedlm("y ~ C(s)", df, groups="g").fit()
    assert derived.nobs == len(df)
    np.testing.assert_allclose(derived.fe_params.to_numpy(), plain.fe_params.to_numpy())


def test_a_missing_value_from_a_derived_factor_is_refused():
    """A missing value the expression gives (its columns hold none, so ``missing=``
    drops no row) is refused as an unlisted value, whatever ``missing=``: formulaic
    would code it as the reference level."""
    import dmixed
    from dmixed.errors import SpecError

    def holes(v):
        return v.where(v != "c")

    df = _levels_frame()
    for missing in ("raise", "drop"):
        with pytest.raises(SpecError, match=r"levels= does not list: nan"):
            dmixed.mixedlm(
                "y ~ C(holes(s), levels=['a', 'b'])", df, groups="g", missing=missing
            ).fit()


def test_missing_columns_of_a_derived_factor_follow_missing():
    """Rows whose column is missing are dropped (``missing="drop"``) before the
    expression runs: the factor's check sees none of them."""
    import dmixed
    from dmixed.errors import DroppedRowsWarning

    df = _levels_frame()
    df["s"] = df["s"].where(df["s"] != "c")
    with pytest.warns(DroppedRowsWarning):
        fit = dmixed.mixedlm(
            "y ~ C(_upper(s), levels=['A', 'B'])", df, groups="g", missing="drop"
        ).fit()
    assert fit.nobs == int(df["s"].notna().sum())


def test_predict_refuses_new_rows_whose_derived_factor_is_outside_levels():
    """New rows whose expression gives a value ``levels=`` does not list are refused
    as a plain column's new level is (never predicted as the reference level)."""
    import dmixed
    from dmixed.errors import SpecError

    df = _levels_frame()
    df["x"] = np.floor(df["x"].abs() * 2)  # (0 in some rows, positive in others)
    fit = dmixed.mixedlm("y ~ C(np.sign(x), levels=[1.0, 0.0])", df, groups="g").fit()
    new = df.head(6).assign(x=[1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    with pytest.raises(SpecError, match=r"np.sign\(x\).*levels= does not list: -1.0"):
        fit.predict(new)
    assert np.isfinite(fit.predict(new.assign(x=new["x"].abs()))).all()
