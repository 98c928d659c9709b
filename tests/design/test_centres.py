"""Products of numeric columns far from zero: read about a centre, reported raw."""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed import DataError
from dmixed.errors import DmixedWarning

EPS = np.finfo(np.float64).eps


def _frame(shift: float, n_groups: int = 40, size: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(n_groups), size)
    n = g.size
    x = rng.normal(size=n)
    c = rng.choice(list("abc"), n)
    y = 1.0 + 0.5 * x + (c == "b") * (0.3 + 0.7 * x) + rng.normal(size=n_groups)[g]
    y += rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x + shift, "c": c, "g": g})


def _interaction_map(names: list[str], mean: float, levels=("b", "c")) -> np.ndarray:
    """``T`` with ``β_raw = T β_c`` for ``x*C(c)`` fitted as ``(x − mean)*C(c)``."""
    p = len(names)
    t = np.eye(p)
    t[names.index("Intercept"), names.index("x1")] = -mean
    for level in levels:
        main = names.index(f"C(c)[T.{level}]")
        t[main, names.index(f"x1:C(c)[T.{level}]")] = -mean
    return t


def _check_mapped(raw, centred, mean: float, tol: float = 1e-9, levels=("b", "c")) -> None:
    """The raw fit's fe_params and cov_params equal the centred fit's mapped back by
    ``T``, each entry to ``tol`` of what its mapping sums (``|T||β_c|``, ``|T||C||T|'``):
    the two fits agree to about ``tol`` in the centred coordinates, and the map adds
    its rounding (a few ε of the same sums)."""
    names = list(raw.fe_params.index)
    t = _interaction_map(names, mean, levels)
    beta_c = np.asarray(centred.fe_params)
    expected = t @ beta_c
    bound = tol * (np.abs(t) @ np.abs(beta_c)) + 1e-300
    assert np.all(np.abs(np.asarray(raw.fe_params) - expected) <= bound)
    p = len(names)
    cov_c = np.asarray(centred.cov_params())[:p, :p]
    cov_expected = t @ cov_c @ t.T
    cov_bound = tol * (np.abs(t) @ np.abs(cov_c) @ np.abs(t).T)
    assert np.all(np.abs(np.asarray(raw.cov_params())[:p, :p] - cov_expected) <= cov_bound)
    bse_expected = np.sqrt(np.diag(cov_expected))
    bse_bound = tol * np.sqrt(np.diag(cov_bound) / tol)  # (the bound of a root)
    assert np.all(np.abs(np.asarray(raw.bse)[:p] - bse_expected) <= bse_bound + 1e-12)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("shift", [0.0, 1e3, 1e6, 1.7e9])
def test_offset_interaction_fits_as_its_centred_form(shift, kernels, monkeypatch):
    """``x1*C(c)`` with x1 about ``shift`` (spread 1) fits (main refused 1e6 and 1.7e9:
    "nearly linearly dependent"), with the fixed effects, their covariance and bse of
    ``center(x1)*C(c)`` mapped back by hand, and the same llf."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _frame(shift)
    raw = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit()
    centred = dmixed.mixedlm("y ~ center(x1)*C(c)", df, groups="g").fit()
    assert abs(raw.llf - centred.llf) <= 1e-9 * abs(centred.llf)
    _check_mapped(raw, centred, float(df.x1.mean()))
    assert (shift == 0.0) == (not raw.model.spec.centres)


def test_statsmodels_on_centred_data_agrees():
    """statsmodels' fit of ``xc*C(c)`` (xc = x1 − mean, where it does not lose digits)
    and dmixed's of ``x1*C(c)`` at x1 near 1e6 give the same llf, and the same fixed
    effects and bse once dmixed's are taken to the centred coordinates."""
    smf = pytest.importorskip("statsmodels.formula.api")
    df = _frame(1e6)
    mean = float(df.x1.mean())
    res = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit()
    dc = df.assign(x1=df.x1 - mean)
    sm = smf.mixedlm("y ~ x1*C(c)", dc, groups="g").fit()
    np.testing.assert_allclose(res.llf, sm.llf, rtol=1e-8)
    # statsmodels' estimates taken to the raw columns (the forward map keeps their
    # digits; the way back would cancel ~1e6 times larger entries), to its optimizer's
    # tolerance of what each entry's map sums
    _check_mapped(res, _Fit(sm.fe_params, sm.cov_params()), mean, tol=1e-5)


class _Fit:
    """fe_params and cov_params of another fit, as _check_mapped reads them."""

    def __init__(self, fe_params, cov):
        self.fe_params = fe_params
        self._cov = cov

    def cov_params(self):
        return self._cov


def test_two_numerics_far_from_zero_fit_as_their_centred_product():
    """``x1*x2`` with x1 near 1e6 and x2 near -3e5 fits: its fixed effects are those of
    ``(x1 − m1)*(x2 − m2)`` mapped back by ``x1 x2 = x1c x2c + m2 x1c + m1 x2c + m1 m2``,
    and the llf is the same."""
    rng = np.random.default_rng(5)
    df = _frame(1e6)
    x2 = rng.normal(size=len(df))
    df["y"] += x2 + 0.3 * (df.x1 - 1e6) * x2
    df["x2"] = x2 - 3e5
    raw = dmixed.mixedlm("y ~ x1*x2", df, groups="g").fit(reml=False)
    assert set(raw.model.spec.centres) == {"x1", "x2"}
    m1, m2 = float(df.x1.mean()), float(df.x2.mean())
    dc = df.assign(x1=df.x1 - m1, x2=df.x2 - m2)
    centred = dmixed.mixedlm("y ~ x1*x2", dc, groups="g").fit(reml=False)
    names = list(raw.fe_params.index)
    assert names == ["Intercept", "x1", "x2", "x1:x2"]
    # β_raw = T β_c: x1c = x1 − m1, x2c = x2 − m2
    t = np.eye(4)
    t[0, 1], t[0, 2], t[0, 3] = -m1, -m2, m1 * m2
    t[1, 3], t[2, 3] = -m2, -m1
    beta_c = np.asarray(centred.fe_params)
    bound = 1e-9 * (np.abs(t) @ np.abs(beta_c))
    assert np.all(np.abs(np.asarray(raw.fe_params) - t @ beta_c) <= bound)
    assert abs(raw.llf - centred.llf) <= 1e-9 * abs(centred.llf)
    # fitted values are X_d (D β): D β cancels terms near m1 m2 β_12 (about 3e10 here),
    # so they carry a few ε of those terms (dmixed keeps no β in the design's columns)
    d = np.linalg.inv(t)
    beta = np.asarray(raw.fe_params)
    atol = 8 * EPS * float(np.max(np.abs(d) @ np.abs(beta))) + 1e-9
    np.testing.assert_allclose(raw.fittedvalues, centred.fittedvalues, rtol=0, atol=atol)


def test_product_without_its_main_effect_stays_refused():
    """``x1:C(c)`` alone codes every level of c (x1·1[c = a], ...): centred, its span
    would hold the indicators, which the formula's does not, so x1 is not centred and
    the near dependence is refused as on main.  ``C(c) + x1:C(c)`` with C(c) in sum
    coding spans what ``x1*C(c)`` does, but its products need indicators of every
    level, which its design gives only with thirds (in treatment coding they are the
    intercept less columns, or columns: centred, tested below): not centred either."""
    df = _frame(1e6)
    for formula, cell in (
        ("y ~ x1:C(c)", r"x1:C\(c\)\[a\]"),
        ("y ~ C(c, contr.sum) + x1:C(c, contr.sum)", r"x1:C\(c, contr.sum\)\[a\]"),
    ):
        model = dmixed.mixedlm(formula, df, groups="g")
        assert model.spec.centres == {}
        with pytest.raises(DataError, match=cell):
            model.fit()


def test_raw_parametrization_downstream():
    """Predict (frame and exog=), model.exog, t tests on raw names, save and load all
    use the formula's own columns: the same predictions as a fit at offset 0."""
    df0, df = _frame(0.0), _frame(1e6)
    res0 = dmixed.mixedlm("y ~ x1*C(c)", df0, groups="g").fit()
    res = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit()
    x = np.column_stack(
        [
            np.ones(len(df)),
            df.c == "b",
            df.c == "c",
            df.x1,
            df.x1 * (df.c == "b"),
            df.x1 * (df.c == "c"),
        ]
    ).astype(float)
    np.testing.assert_array_equal(res.model.exog, x)
    np.testing.assert_allclose(res.predict(df), res0.predict(df0), rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.predict(exog=x), x @ np.asarray(res.fe_params), atol=1e-8)
    np.testing.assert_allclose(res.fittedvalues, res0.fittedvalues, rtol=0, atol=1e-8)
    tt, tt0 = res.t_test("x1:C(c)[T.b] = 0"), res0.t_test("x1:C(c)[T.b] = 0")
    np.testing.assert_allclose(np.ravel(tt.tvalue), np.ravel(tt0.tvalue), rtol=1e-7)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "res")
        res.save(path)
        loaded = dmixed.load(path)
    assert loaded.llf == res.llf
    np.testing.assert_array_equal(loaded.fe_params, res.fe_params)
    np.testing.assert_array_equal(loaded.predict(df), res.predict(df))


def test_dask_reads_the_first_partition_centre():
    """A Dask collection's centre comes from its first rows, read from as many first
    partitions as hold them: the frame's centre, and the same fit."""
    dd = pytest.importorskip("dask.dataframe")
    df = _frame(1e6)
    res = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit()
    resd = dmixed.mixedlm("y ~ x1*C(c)", dd.from_pandas(df, npartitions=3), groups="g").fit()
    assert set(res.model.spec.centres) == {"x1"}
    assert resd.model.spec.centres == res.model.spec.centres
    np.testing.assert_allclose(resd.llf, res.llf, rtol=1e-12)
    np.testing.assert_allclose(resd.fe_params, res.fe_params, rtol=1e-9)
    np.testing.assert_allclose(resd.bse, res.bse, rtol=1e-9)


def test_dask_first_partition_without_spread_reads_on():
    """A first partition of one row, or of one value of the column (data partitioned by
    it), gives no centre of its own: the next partitions are read, and the collection
    gets the frame's centre and fit (the review's one-row first partition was refused,
    a column constant in each partition fitted uncentred)."""
    dd = pytest.importorskip("dask.dataframe")
    df = _frame(1e6)
    res = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit(reml=False)
    one_row = dd.concat(
        [dd.from_pandas(df.iloc[:1], npartitions=1), dd.from_pandas(df.iloc[1:], npartitions=2)]
    )
    by_value = df.assign(x1=np.floor(df.x1 - 1e6) + 1e6).sort_values("x1", kind="stable")
    res_v = dmixed.mixedlm("y ~ x1*C(c)", by_value, groups="g").fit(reml=False)
    parts = [dd.from_pandas(p, npartitions=1) for _, p in by_value.groupby("x1", sort=True)]
    assert len(parts) > 2
    for data, ref in ((one_row, res), (dd.concat(parts), res_v)):
        resd = dmixed.mixedlm("y ~ x1*C(c)", data, groups="g").fit(reml=False)
        assert resd.model.spec.centres == ref.model.spec.centres != {}
        np.testing.assert_allclose(resd.llf, ref.llf, rtol=1e-12)
        np.testing.assert_allclose(resd.fe_params, ref.fe_params, rtol=1e-9)


def test_dask_constant_over_the_read_partitions_says_so():
    """A column constant over every partition read for its centre (more small
    partitions than are read) is not centred, and the refusal of its interaction says
    the partitions are the cause, not only how to centre a pandas DataFrame; the same
    rows as a frame are centred (the documented limit)."""
    dd = pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(4)
    step = np.concatenate([np.zeros(200), np.repeat(np.arange(1, 21), 10)])
    c = rng.choice(list("ab"), step.size)
    g = rng.integers(0, 20, step.size)
    y = 0.1 * step + (c == "b") * 0.2 * step + rng.normal(size=step.size)
    df = pd.DataFrame({"y": y, "x1": 1e6 + step, "c": c, "g": g})
    data = dd.concat(
        [
            dd.from_pandas(df.iloc[:200], npartitions=20),
            dd.from_pandas(df.iloc[200:], npartitions=2),
        ]
    )
    assert data.npartitions > 20
    assert set(dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").spec.centres) == {"x1"}
    model = dmixed.mixedlm("y ~ x1*C(c)", data, groups="g")
    assert model.spec.centres == {}
    with pytest.raises(DataError, match="first partitions") as err:
        model.fit()
    assert "repartition" in str(err.value)


def test_level_holding_a_colon_and_the_column_name():
    """A level of c that holds ``:x1:`` (``C(c)[T.b:x1:z]``) is a level, not a product
    with x1: the fixed effects and covariance are those of ``center(x1)*C(c)`` mapped
    back, and ``model.exog`` holds the formula's own columns (the review's D, built from
    the columns' names, was wrong there)."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 10)
    x = rng.normal(size=g.size)
    c = rng.choice(["a", "b:z", "b:x1:z"], g.size)
    y = 1.0 + 0.5 * x + (c == "b:z") * (0.3 + 0.7 * x) + (c == "b:x1:z") * 0.4
    y = y + rng.normal(size=40)[g] + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "x1": x + 1e6, "c": c, "g": g})
    raw = dmixed.mixedlm("y ~ x1*C(c)", df, groups="g").fit()
    centred = dmixed.mixedlm("y ~ center(x1)*C(c)", df, groups="g").fit()
    assert set(raw.model.spec.centres) == {"x1"}
    assert abs(raw.llf - centred.llf) <= 1e-9 * abs(centred.llf)
    _check_mapped(raw, centred, float(df.x1.mean()), levels=("b:x1:z", "b:z"))
    names = list(raw.fe_params.index)
    exog = raw.model.exog
    for level in ("b:x1:z", "b:z"):
        np.testing.assert_array_equal(exog[:, names.index(f"C(c)[T.{level}]")], c == level)
        np.testing.assert_array_equal(
            exog[:, names.index(f"x1:C(c)[T.{level}]")], df.x1.to_numpy() * (c == level)
        )


def test_centre_is_exact_to_subtract():
    """The centre lies near the mean, on a grid that makes ``x − m`` exact for values
    of the sample's magnitude; none near zero or for a constant column."""
    from dmixed.design.centres import centre_of

    x = 1.7e9 + np.random.default_rng(0).normal(size=1000)
    m = centre_of(x)
    assert m is not None and abs(m - x.mean()) < x.std() / 512
    d = x - m
    assert np.all(d + m == x)
    assert centre_of(x - x.mean()) is None
    assert centre_of(np.full(10, 1e6)) is None


@settings(max_examples=8, deadline=None)
@given(
    offset=st.integers(min_value=-(2**31), max_value=2**31),
    log_scale=st.integers(min_value=-8, max_value=8),
)
def test_fit_is_invariant_to_the_offset_and_scale(offset, log_scale):
    """``x1 = offset + 2^k x`` (exact in float64) spans the model of x: ML fitted values
    and llf do not depend on the offset or the scale."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(30), 8)
    n = g.size
    x = rng.integers(-512, 512, size=n) / 64.0
    c = rng.choice(list("ab"), n)
    y = x + (c == "b") * (1 + 0.5 * x) + rng.normal(size=30)[g] + rng.normal(size=n)
    base = pd.DataFrame({"y": y, "x1": x, "c": c, "g": g})
    moved = base.assign(x1=offset + 2.0**log_scale * x)
    assert np.array_equal((moved.x1 - offset) / 2.0**log_scale, x)  # exact
    ref = dmixed.mixedlm("y ~ x1*C(c)", base, groups="g").fit(reml=False)
    res = dmixed.mixedlm("y ~ x1*C(c)", moved, groups="g").fit(reml=False)
    assert abs(res.llf - ref.llf) <= 1e-9 * abs(ref.llf)
    np.testing.assert_allclose(res.fittedvalues, ref.fittedvalues, rtol=0, atol=1e-7)


def test_column_read_by_re_formula_is_refused_saying_why_it_is_not_centred():
    """A column far from zero that re_formula reads too is not centred (centring it in
    the fixed effects alone would leave the random design's column raw): the refusal
    says that re_formula is why, and how to centre it, not that dmixed centres it."""
    df = _frame(1e6)
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm("y ~ x1*C(c)", df, groups="g", re_formula="1 + x1").fit()
    message = str(info.value)
    assert "does not centre 'x1' itself because re_formula reads it too" in message
    assert "center(x1) in the formula and in re_formula" in message
    assert "dmixed reads such a column about a centre itself" not in message


def _timestamps(span: float, base: float = 1.7e9) -> pd.DataFrame:
    """Timestamps near ``base`` (1.7e9 s) over ``span`` seconds, a factor and a random
    slope."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 10)
    n = g.size
    c = rng.choice(list("abc"), n)
    t = rng.uniform(0, 1, n)
    y = 1 + (c == "b") * 0.5 + 2 * t + rng.normal(size=30)[g] + rng.normal(0, 2, 30)[g] * t
    y += rng.normal(size=n)
    return pd.DataFrame({"y": y, "g": g, "c": c, "ts": base + t * span, "tsc": t * span})


@pytest.mark.parametrize("span", [86400.0 * 30, 60.0])
@pytest.mark.parametrize("formula", ["y ~ 0 + C(c) + ts", "y ~ c*ts", "y ~ C(c) + C(c):ts"])
def test_far_column_re_formula_reads_is_refused_without_intercept_or_in_a_product(formula, span):
    """A column far from zero that re_formula reads too, without an intercept (whose
    columns give one) or inside a product: not centred and not shifted by the
    statistics, so refused saying why (at a 30-day span it used to fit with the llf
    and the slope a few digits off; at a minute it was told bare rank deficient)."""
    df = _timestamps(span)
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm(formula, df, groups="g", re_formula="1 + ts").fit(reml=False)
    message = str(info.value)
    assert "does not centre 'ts' itself because re_formula reads it too" in message
    # the example centres ts about its own value (not another column's), printed
    # exactly, and centring it in both formulas (re_formula has an intercept: the same
    # model) fits as the column centred by hand
    found = re.search(r"(I\(ts - (17\d{8}(?:\.\d*)?)\)) in the formula and in re_formula", message)
    assert found, message
    assert "rank deficient" not in message
    centre = float(found.group(2))
    assert abs(centre - df.ts.mean()) < df.ts.std() / 10
    one = dmixed.mixedlm(
        formula.replace("ts", found.group(1)),
        df,
        groups="g",
        re_formula=f"1 + {found.group(1)}",
    ).fit(reml=False)
    by_hand = df.assign(tsk=df.ts - centre)
    two = dmixed.mixedlm(
        formula.replace("ts", "tsk"), by_hand, groups="g", re_formula="1 + tsk"
    ).fit(reml=False)
    assert abs(one.llf - two.llf) <= 1e-12 * abs(two.llf)


def test_a_level_holding_the_far_columns_name_is_not_a_product():
    """``C(c) + ts`` with ``re_formula="1 + ts"`` and a level ``"a:ts:b"``: the column
    ``C(c)[T.a:ts:b]`` is one level's, not a product with ``ts`` (the ``:`` inside its
    brackets), so the model fits as with a plain level, not refused as an interaction."""
    df = _timestamps(86400.0 * 30)
    odd = df.assign(c=np.where(df.c == "b", "a:ts:b", df.c))
    plain = dmixed.mixedlm("y ~ C(c) + ts", df, groups="g", re_formula="1 + ts").fit(reml=False)
    fit = dmixed.mixedlm("y ~ C(c) + ts", odd, groups="g", re_formula="1 + ts").fit(reml=False)
    assert "C(c)[T.a:ts:b]" in fit.fe_params.index
    assert fit.llf == plain.llf


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_far_column_re_formula_reads_fits_beside_an_intercept(monkeypatch, kernels):
    """``C(c) + ts`` with ``re_formula="1 + ts"``: the statistics shift ``ts`` beside
    the intercept, so it fits as the same model on ``ts`` moved near zero by hand."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _timestamps(86400.0 * 30)
    raw = dmixed.mixedlm("y ~ C(c) + ts", df, groups="g", re_formula="1 + ts").fit(reml=False)
    ref = dmixed.mixedlm("y ~ C(c) + tsc", df, groups="g", re_formula="1 + tsc").fit(reml=False)
    assert abs(raw.llf - ref.llf) <= 1e-9 * abs(ref.llf)
    np.testing.assert_allclose(raw.fe_params["ts"], ref.fe_params["tsc"], rtol=1e-7)
    np.testing.assert_allclose(raw.fittedvalues, ref.fittedvalues, rtol=0, atol=1e-6)


def _with_classes(span: float = 86400.0 * 30, base: float = 1.7e9) -> pd.DataFrame:
    """:func:`_timestamps` with a three-level column ``cls`` for a component's levels."""
    df = _timestamps(span, base)
    return df.assign(cls=np.random.default_rng(11).choice(list("xyz"), len(df)))


def _check_fixed_only_fix(
    message: str, formula: str, df: pd.DataFrame, warns: bool = False, **kw
) -> None:
    """The refusal's fix, ``I(ts - centre)`` in the fixed-effects formula only (the
    other formulas as they were), is offered, fits, and gives the llf of the model on
    the column centred by hand in the data; the centre lies within a tenth of the
    spread of the mean, so the centred column is near zero."""
    assert "centre it in the fixed-effects formula only" in message
    assert "different model, a random slope about another origin" in message
    found = re.search(r"(I\(ts - ([-+.e\d]+)\)) there in place of ts", message)
    assert found, message
    centre = float(found.group(2))
    assert abs(centre - df.ts.mean()) < df.ts.std() / 10
    fixed = dmixed.mixedlm(formula.replace("ts", found.group(1)), df, groups="g", **kw)
    by_hand = dmixed.mixedlm(
        formula.replace("ts", "tsk"), df.assign(tsk=df.ts - centre), groups="g", **kw
    )
    fits = []
    for model in (fixed, by_hand):
        if warns:  # the model's own (a component's raw slope): precision, boundary
            with pytest.warns(DmixedWarning):
                fits.append(model.fit(reml=False))
        else:
            fits.append(model.fit(reml=False))
    assert abs(fits[0].llf - fits[1].llf) <= 1e-12 * abs(fits[1].llf)


@pytest.mark.parametrize("dask_input", [False, True])
@pytest.mark.parametrize(
    ("formula", "re_formula", "vc"),
    [
        ("y ~ 0 + C(c) + ts", None, "0 + ts"),
        ("y ~ 0 + C(c) + ts", "1", "0 + ts"),
        ("y ~ 0 + C(c) + ts", None, "0 + C(cls):ts"),
        ("y ~ C(c)*ts", None, "0 + ts"),
    ],
)
def test_far_column_a_variance_component_reads_is_refused_where_not_shifted(
    formula, re_formula, vc, dask_input
):
    """A column far from zero that a variance component reads too, read by the fixed
    effects without an intercept (whose columns give one) or inside a product: not
    centred (the component reads it raw) and not shifted by the statistics, so refused
    naming the component (it used to fit with the llf 1e-7 off the likelihood at the
    reported parameters and the slopes 1e-9 off, without a warning)."""
    df = _with_classes()
    data = df
    if dask_input:
        dd = pytest.importorskip("dask.dataframe")
        data = dd.from_pandas(df, npartitions=3)
    kw = {} if re_formula is None else {"re_formula": re_formula}
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm(formula, data, groups="g", vc_formula={"s": vc}, **kw).fit(reml=False)
    message = str(info.value)
    assert "does not centre 'ts' itself because vc_formula['s'] reads it too" in message
    # center() cannot be written in a component's formula: not suggested there
    assert "center(" not in message
    assert "rank deficient" not in message
    warns = re_formula == "1" and vc == "0 + ts"
    _check_fixed_only_fix(message, formula, df, warns, vc_formula={"s": vc}, **kw)


@pytest.mark.parametrize("formula", ["y ~ C(c) + C(c):ts", "y ~ 0 + C(c) + C(c):ts"])
@pytest.mark.parametrize("other", [{"vc_formula": {"s": "0 + ts"}}, {"re_formula": "0 + ts"}])
def test_far_column_only_in_products_read_by_another_formula_is_refused(formula, other):
    """``ts`` far from zero read by the fixed effects only inside products (its main
    effect not a column) and by a component or ``re_formula="0 + ts"``: no design holds
    the column alone, so its products tell it (their part off the columns that do not
    read ``ts``); refused naming the other formula (it used to fit 3e-7 of llf off)."""
    df = _timestamps(86400.0 * 30)
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm(formula, df, groups="g", **other).fit(reml=False)
    message = str(info.value)
    reader = "re_formula" if "re_formula" in other else "vc_formula['s']"
    assert f"does not centre 'ts' itself because {reader} reads it too" in message
    assert "read inside a product term" in message
    # the centre from the products' sums
    _check_fixed_only_fix(message, formula, df, **other)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_near_zero_column_in_products_a_component_reads_fits(monkeypatch, kernels):
    """The same models on ``ts`` moved near zero by hand are not refused, and the two
    formulas (with and without the intercept) are one model."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _timestamps(86400.0 * 30)
    vc = {"s": "0 + tsc"}
    one = dmixed.mixedlm("y ~ C(c) + C(c):tsc", df, groups="g", vc_formula=vc).fit(reml=False)
    two = dmixed.mixedlm("y ~ 0 + C(c) + C(c):tsc", df, groups="g", vc_formula=vc).fit(reml=False)
    assert abs(one.llf - two.llf) <= 1e-10 * abs(two.llf)


@pytest.mark.parametrize("dask_input", [False, True])
def test_far_column_re_formula_reads_with_no_intercept_anywhere_is_refused(dask_input):
    """``y ~ 0 + C(c) + ts`` with ``re_formula="0 + ts"``: neither design has an
    intercept, so the statistics shift nothing and the check told nothing far; the
    offset is read off the column's sums, and the model is refused saying re_formula
    is why and that the intercept in the fixed effects keeps the model."""
    df = _timestamps(86400.0 * 30)
    data = df
    if dask_input:
        dd = pytest.importorskip("dask.dataframe")
        data = dd.from_pandas(df, npartitions=3)
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm("y ~ 0 + C(c) + ts", data, groups="g", re_formula="0 + ts").fit(reml=False)
    message = str(info.value)
    assert "'ts' (values about 1.7e+09" in message
    assert "does not centre 'ts' itself because re_formula reads it too" in message
    assert "add the intercept to the fixed-effects formula" in message
    _check_fixed_only_fix(message, "y ~ 0 + C(c) + ts", df, re_formula="0 + ts")


@pytest.mark.parametrize(
    ("formula", "other"),
    [
        ("y ~ 0 + C(c) + ts", {"re_formula": "0 + ts"}),
        ("y ~ 0 + C(c) + ts", {"vc_formula": {"s": "0 + ts"}}),
        ("y ~ C(c)*ts", {"vc_formula": {"s": "0 + ts"}}),
        ("y ~ C(c) + C(c):ts", {"vc_formula": {"s": "0 + ts"}}),
    ],
)
def test_far_column_refusal_centre_is_exact_for_millisecond_timestamps(formula, other):
    """Millisecond timestamps (1.7e12) over 10 s: the refusal's centre is printed
    exactly (it used to be printed with 6 digits, 1.70123e+12, 1.5e3 spreads off the
    mean, so the fix was refused again or still far), and the fix fits."""
    df = _timestamps(10_000.0, base=1.7012345678e12)
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm(formula, df, groups="g", **other).fit(reml=False)
    _check_fixed_only_fix(str(info.value), formula, df, **other)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_far_column_a_component_reads_fits_beside_an_intercept(monkeypatch, kernels):
    """``C(c) + ts`` with a component reading ``ts`` (a slope without an intercept of
    its own) fits, the statistics shifting ``X``'s ``ts``: the same model as
    ``re_formula="0 + ts"``, which the random design reads the same way, to the last
    digits; ``0 + C(c) + ts`` with a component on another column is centred and fits
    as the same model with the intercept."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _with_classes()
    vc = dmixed.mixedlm("y ~ C(c) + ts", df, groups="g", vc_formula={"s": "0 + ts"})
    fit_vc = vc.fit(reml=False)
    fit_re = dmixed.mixedlm("y ~ C(c) + ts", df, groups="g", re_formula="0 + ts").fit(reml=False)
    assert abs(fit_vc.llf - fit_re.llf) <= 1e-12 * abs(fit_re.llf)
    np.testing.assert_allclose(fit_vc.fe_params, fit_re.fe_params, rtol=1e-8)
    cls = {"s": "0 + C(cls)"}
    raw = dmixed.mixedlm("y ~ 0 + C(c) + ts", df, groups="g", vc_formula=cls).fit(reml=False)
    ref = dmixed.mixedlm("y ~ C(c) + ts", df, groups="g", vc_formula=cls).fit(reml=False)
    assert raw.model.spec.centres
    assert abs(raw.llf - ref.llf) <= 1e-12 * abs(ref.llf)


def test_product_without_main_effect_far_from_zero_is_not_told_rank_deficient():
    """``C(c):x1`` coded without ``x1``'s main effect, ``x1`` far from zero, ``C(c)`` in
    sum coding (whose indicators the intercept and its columns give only with thirds):
    the design has full rank to the statistics' rounding, so the refusal says nearly
    dependent and how to centre the column, not rank deficient."""
    with pytest.raises(DataError, match="nearly linearly dependent") as info:
        dmixed.mixedlm("y ~ C(c, contr.sum):x1 + C(c, contr.sum)", _frame(1e6), groups="g").fit()
    message = str(info.value)
    assert "has full rank (6 columns)" in message
    assert "rank deficient" not in message
    assert "centre that column in the data" in message


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_no_intercept_cell_slopes_far_from_zero_fit_as_their_centred_form(kernels, monkeypatch):
    """``0 + C(c) + C(c):x1`` (a slope per level, every indicator in the design, no
    intercept) with x1 near 1e6 is read about a centre (main refused it as rank
    deficient): the llf and slopes are those of the fit of ``x1 − mean``, and each
    level's own intercept is that fit's minus the mean times the level's slope."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _frame(1e6)
    mean = float(df.x1.mean())
    formula = "y ~ 0 + C(c) + C(c):x1"
    raw = dmixed.mixedlm(formula, df, groups="g").fit()
    centred = dmixed.mixedlm(formula, df.assign(x1=df.x1 - mean), groups="g").fit()
    assert raw.model.spec.centres
    assert abs(raw.llf - centred.llf) <= 1e-9 * abs(centred.llf)
    names = list(raw.fe_params.index)
    for level in "abc":
        slope = names.index(f"C(c)[{level}]:x1")
        own = names.index(f"C(c)[{level}]")
        b = centred.fe_params.iloc[slope]
        np.testing.assert_allclose(raw.fe_params.iloc[slope], b, rtol=1e-7)
        expected = centred.fe_params.iloc[own] - mean * b
        bound = 1e-9 * (abs(centred.fe_params.iloc[own]) + abs(mean * b))
        assert abs(raw.fe_params.iloc[own] - expected) <= bound
        np.testing.assert_allclose(raw.bse.iloc[slope], centred.bse.iloc[slope], rtol=1e-6)


_SPANS_ONE = [
    "C(c)",
    "cr(u, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10)",
    "cc(u, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10)",
    "bs(u, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10, include_intercept=True)",
]


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("term", _SPANS_ONE)
def test_no_intercept_far_column_beside_columns_summing_to_one_fits_as_centred(
    term, kernels, monkeypatch
):
    """``0 + cr(u, ...) + x1`` (no intercept, but the spline's columns sum to one) with
    x1 near 1.7e9 fits (main refused it as rank deficient; ``0 + C(c) + x1`` it fitted
    about 1e-5 off in the llf): the llf and x1's slope are those of the fit of
    ``x1 − m``, and each other coefficient is that fit's minus m times the slope (the
    constant is the sum of the term's columns)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _frame(1.7e9)
    df["u"] = np.random.default_rng(5).uniform(0, 10, len(df))
    m = 1.7e9
    raw = dmixed.mixedlm(f"y ~ 0 + {term} + x1", df, groups="g").fit()
    centred = dmixed.mixedlm(f"y ~ 0 + {term} + x1", df.assign(x1=df.x1 - m), groups="g").fit()
    assert raw.model.spec.centres
    assert abs(raw.llf - centred.llf) <= 1e-9 * abs(centred.llf)
    b = centred.fe_params.iloc[-1]
    np.testing.assert_allclose(raw.fe_params.iloc[-1], b, rtol=1e-7)
    own = centred.fe_params.iloc[:-1].to_numpy()
    expected = own - m * b
    bound = 1e-9 * (np.abs(own) + abs(m * b))
    assert (np.abs(raw.fe_params.iloc[:-1].to_numpy() - expected) <= bound).all()
    np.testing.assert_allclose(raw.bse.iloc[-1], centred.bse.iloc[-1], rtol=1e-6)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize(
    "term", ["c", "C(c, Sum)", "C(c, Helmert)", "C(c, Poly)", "C(c, Diff)", "C(c, contr.sum)"]
)
def test_no_intercept_far_column_beside_a_factor_of_any_full_coding_fits_as_centred(
    term, kernels, monkeypatch
):
    """``0 + c + x1`` (a text column, a factor without ``C()``) and ``0 + C(c, Sum) +
    x1`` (Sum, Helmert, Poly, Diff: full rank, a constant column in the coding) with x1
    near 1.7e9 were read uncentred, about 3e-6 off in the llf: now the llf and x1's
    slope are those of the fit of ``x1 − m``, and the factor's coefficients are that
    fit's less m times the slope times the weights ``w`` that make the constant
    (``X_c w = 1``)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _frame(1.7e9)
    m = 1.7e9
    formula = f"y ~ 0 + {term} + x1"
    raw = dmixed.mixedlm(formula, df, groups="g").fit()
    centred = dmixed.mixedlm(formula, df.assign(x1=df.x1 - m), groups="g").fit()
    assert raw.model.spec.centres
    assert abs(raw.llf - centred.llf) <= 1e-12 * abs(centred.llf)
    b = centred.fe_params.iloc[-1]
    np.testing.assert_allclose(raw.fe_params.iloc[-1], b, rtol=1e-9)
    factor = np.asarray(centred.model.exog)[:, :-1]
    # (rounded: the weights are small integers or their inverses; lstsq's 1e-17 for
    # a zero weight times m would be a visible error)
    w = np.round(np.linalg.lstsq(factor, np.ones(len(factor)), rcond=None)[0], 10)
    np.testing.assert_allclose(factor @ w, 1.0, atol=1e-12)
    own = centred.fe_params.iloc[:-1].to_numpy()
    expected = own - m * b * w
    bound = 1e-9 * (np.abs(own) + np.abs(m * b * w)) + 1e-12
    assert (np.abs(raw.fe_params.iloc[:-1].to_numpy() - expected) <= bound).all()


def test_no_intercept_far_column_without_a_constant_is_left_as_it_is():
    """``0 + x1`` and ``0 + bs(u, ...) + x1`` (columns that do not sum to one) take no
    centre: the design has no constant to carry it."""
    df = _frame(1.7e9)
    df["u"] = np.random.default_rng(5).uniform(0, 10, len(df))
    for formula in ("y ~ 0 + x1", "y ~ 0 + bs(u, knots=(5,), lower_bound=0, upper_bound=10) + x1"):
        model = dmixed.mixedlm(formula, df, groups="g")
        assert not model.spec.centres


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_reduced_factor_with_its_cell_slopes_far_from_zero_fits_as_centred(kernels, monkeypatch):
    """``C(c) + C(c):x1`` (intercept, C(c) in treatment coding, a slope per level) with
    x1 near 1e6 was refused as nearly dependent: each level's indicator that the slopes
    need is the intercept less the other levels' columns (the base level) or a column
    of C(c).  The llf and slopes are those of the fit of ``x1 − m``; the intercept is
    that fit's minus m times the base level's slope, each other level's column its own
    minus m times the difference of the slopes."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _frame(1e6)
    m = 1e6
    formula = "y ~ C(c) + C(c):x1"
    raw = dmixed.mixedlm(formula, df, groups="g").fit()
    centred = dmixed.mixedlm(formula, df.assign(x1=df.x1 - m), groups="g").fit()
    assert raw.model.spec.centres
    assert abs(raw.llf - centred.llf) <= 1e-9 * abs(centred.llf)
    fe = centred.fe_params
    slope = {level: fe[f"C(c)[{level}]:x1"] for level in "abc"}
    expected = fe.copy()
    expected["Intercept"] -= m * slope["a"]
    for level in "bc":
        expected[f"C(c)[T.{level}]"] -= m * (slope[level] - slope["a"])
    bound = 1e-9 * (np.abs(fe) + m * max(abs(v) for v in slope.values()))
    assert (np.abs(raw.fe_params - expected) <= bound).all()
    np.testing.assert_allclose(
        raw.bse[[f"C(c)[{v}]:x1" for v in "abc"]],
        centred.bse[[f"C(c)[{v}]:x1" for v in "abc"]],
        rtol=1e-6,
    )
    other_base = "y ~ C(c, Treatment('b')) + C(c, Treatment('b')):x1"
    moved = dmixed.mixedlm(other_base, df, groups="g").fit()
    assert moved.model.spec.centres
    assert abs(moved.llf - raw.llf) <= 1e-9 * abs(raw.llf)  # the same model, recoded


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_text_factor_without_c_and_its_cell_slopes_far_from_zero_fits_as_centred(
    kernels, monkeypatch
):
    """``c + c:x1`` with ``c`` a text column (a factor without ``C()``) and x1 near
    1.7e9 was refused as nearly dependent though ``C(c) + C(c):x1`` is centred: the
    reduced columns of a bare factor were not found.  The llf and fitted values are
    those of the fit of ``x1 − m``, and so are the slopes."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _frame(1.7e9)
    raw = dmixed.mixedlm("y ~ c + c:x1", df, groups="g").fit()
    centred = dmixed.mixedlm("y ~ c + c:x1", df.assign(x1=df.x1 - 1.7e9), groups="g").fit()
    assert raw.model.spec.centres
    assert abs(raw.llf - centred.llf) <= 1e-12 * abs(centred.llf)
    slopes = [n for n in raw.fe_params.index if n.endswith(":x1")]
    assert len(slopes) == 3
    np.testing.assert_allclose(raw.fe_params[slopes], centred.fe_params[slopes], rtol=1e-7)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("dask_parts", [None, 3])
@pytest.mark.parametrize(
    "formula", ['y ~ C(c)*Q("ts x")', "y ~ C(c)*Q('ts x')", "y ~ C(c) + C(c):Q('ts x')"]
)
def test_far_column_quoted_with_q_is_centred_as_its_plain_name(
    formula, dask_parts, kernels, monkeypatch
):
    """A far column named ``ts x``, read through ``Q("ts x")`` inside a product and by
    no other formula, is centred as the same values named ``ts`` are (it was refused as
    nearly linearly dependent, the message saying dmixed centres such a column)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _timestamps(86400.0)
    df["ts x"] = df.ts
    data = df
    if dask_parts:
        dd = pytest.importorskip("dask.dataframe")
        data = dd.from_pandas(df, npartitions=dask_parts)
    plain = formula.replace('Q("ts x")', "ts").replace("Q('ts x')", "ts")
    ref = dmixed.mixedlm(plain, df, groups="g").fit(reml=False)
    res = dmixed.mixedlm(formula, data, groups="g").fit(reml=False)
    assert abs(res.llf - ref.llf) <= 1e-12 * abs(ref.llf)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize(
    ("others", "who"),
    [
        ({"re_formula": '1 + Q("ts x")'}, "re_formula"),
        ({"vc_formula": {"s": '0 + Q("ts x")'}}, "vc_formula['s']"),
    ],
)
def test_far_column_quoted_with_q_another_formula_reads_is_refused_saying_why(others, who):
    """``C(c)*Q("ts x")`` where re_formula or a component reads ``Q("ts x")`` too: not
    centred, and refused naming that formula, as ``C(c)*ts`` with ``ts`` there is."""
    df = _timestamps(86400.0)
    df["ts x"] = df.ts
    with pytest.raises(DataError, match="lie far from zero next to their spread") as info:
        dmixed.mixedlm('y ~ C(c)*Q("ts x")', df, groups="g", **others).fit(reml=False)
    message = str(info.value)
    assert f"""does not centre 'Q("ts x")' itself because {who} reads it too""" in message
    assert "dmixed reads such a column about a centre itself" not in message


def test_a_centre_read_through_q_needs_this_version():
    """A spec centring a column read as ``Q("ts x")`` is saved under the newer format
    (earlier versions read only a lookup as the column itself, and would map its
    estimates back without the centre); the same values named ``ts`` are not."""
    df = _timestamps(86400.0)
    df["ts x"] = df.ts
    quoted = dmixed.mixedlm('y ~ C(c)*Q("ts x")', df, groups="g").spec
    plain = dmixed.mixedlm("y ~ C(c)*ts", df, groups="g").spec
    assert quoted.centres and plain.centres
    assert quoted.centres_need_this_version()
    assert not plain.centres_need_this_version()


# -- a far response in a design without an intercept whose factors are not indicators ----


def _codings_data(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 20)
    n = g.size
    a = rng.choice(list("pqrs"), n)
    b = rng.choice(list("uvw"), n)
    c = rng.choice(list("abc"), n)
    x = rng.normal(size=n)
    y = 2 * x + (c == "b") + 0.5 * (a == "q") - 0.3 * (b == "v") + rng.normal(size=30)[g]
    return pd.DataFrame({"y0": y + rng.normal(size=n), "a": a, "b": b, "c": c, "x": x, "g": g})


_FULL_CODINGS_ONE = [
    "0 + C(c, Sum)",
    "0 + C(c, Helmert)",
    "0 + C(c, Poly)",
    "0 + C(c, Diff)",
    "0 + C(c, Treatment(reference='b'))",
    "0 + C(a, Sum) + x",
    "0 + C(a, Helmert) + C(b, Sum) + x",
]
_FULL_CODINGS_CELLS = [
    "0 + C(a, Sum):C(b)",
    "0 + C(a):C(b, Helmert)",
    "0 + C(a, Poly):C(b, Sum)",
    "0 + C(c, Helmert):C(b, Sum)",
    "0 + C(a, Diff):C(b, Poly) + x",
]


def _far_and_near(rhs: str, offset: float, parts: int | None = None, client=None):
    """The fits of ``y0 + offset`` and of the same rows less ``offset`` (exact: the
    same model), on pandas or on Dask in ``parts`` partitions, and the design."""
    df = _codings_data()
    far = df.assign(y=df.y0 + offset)
    near = far.assign(y=far.y - offset)
    fits = []
    for frame in (far, near):
        data = frame
        if parts is not None:
            dd = pytest.importorskip("dask.dataframe")
            data = dd.from_pandas(frame, npartitions=parts)
        model = dmixed.mixedlm(f"y ~ {rhs}", data, groups="g")
        fits.append(model.fit(reml=False, **({} if client is None else {"client": client})))
    exog = np.asarray(dmixed.mixedlm(f"y ~ {rhs}", near, groups="g").exog)
    return (*fits, exog)


def _check_far_is_near_mapped_back(far, near, exog, offset: float) -> None:
    from dmixed.design.centres import constant_weights

    assert abs(far.llf - near.llf) <= 1e-12 * abs(near.llf), (far.llf, near.llf)
    a = constant_weights(far.model.spec)
    assert a is not None
    np.testing.assert_array_equal(exog @ a, 1.0)
    expected = near.fe_params.to_numpy() + offset * a
    # a unit in the last place of the offset, and the optimizers' own stopping
    np.testing.assert_allclose(far.fe_params.to_numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(far.cov_re), np.asarray(near.cov_re), rtol=1e-6)
    np.testing.assert_allclose(far.scale, near.scale, rtol=1e-8)


@pytest.mark.parametrize("offset", [1e4, 1e6])
@pytest.mark.parametrize("rhs", _FULL_CODINGS_CELLS)
def test_far_response_beside_an_interaction_of_full_codings_is_the_near_fit_mapped_back(
    rhs, offset, monkeypatch
):
    """``y ~ 0 + C(a, Sum):C(b)`` and other full interactions of factors coded in full
    (Sum, Helmert, Poly, Diff, not only indicators) hold the constant (the Kronecker
    product of each coding's weights): with y near 1e4 or 1e6 the statistics shift y,
    and the fit is that of y less the offset, its coefficients moved by the offset
    times those weights (main could not start it at 1e6 and lost 1e-9 of the llf at
    1e4)."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    far, near, exog = _far_and_near(rhs, offset)
    _check_far_is_near_mapped_back(far, near, exog, offset)


def test_far_response_beside_an_interaction_of_full_codings_under_numba(monkeypatch):
    """The same with the numba kernels (one interaction of two codings that are not
    indicators, y near 1e6)."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    far, near, exog = _far_and_near("0 + C(a, Poly):C(b, Sum)", 1e6)
    _check_far_is_near_mapped_back(far, near, exog, 1e6)


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("rhs", ["0 + C(a, Sum):C(b)", "0 + C(a, Diff):C(b, Poly) + x"])
def test_far_response_beside_an_interaction_of_full_codings_on_dask(
    rhs, parts, client, monkeypatch
):
    """The same on Dask, in one partition and in three (the map chosen from the first
    rows, the partitions' statistics added in it), y near 1e6."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    far, near, exog = _far_and_near(rhs, 1e6, parts, client)
    _check_far_is_near_mapped_back(far, near, exog, 1e6)


@pytest.mark.parametrize("rhs", _FULL_CODINGS_ONE)
def test_far_response_beside_one_factor_of_a_full_coding_is_the_near_fit_mapped_back(
    rhs, monkeypatch
):
    """``y ~ 0 + C(c, Sum)`` (and Helmert, Poly, Diff, another reference, beside a
    slope or a second factor's contrasts): a constant column or the indicators carry
    the constant, so a response near 1e6 fits as the same rows less the offset."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    far, near, exog = _far_and_near(rhs, 1e6)
    _check_far_is_near_mapped_back(far, near, exog, 1e6)


def test_far_response_beside_one_factor_of_a_full_coding_on_dask(client, monkeypatch):
    """The same on Dask in three partitions (a Sum coding beside Helmert contrasts and
    a slope)."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    far, near, exog = _far_and_near("0 + C(a, Helmert) + C(b, Sum) + x", 1e6, 3, client)
    _check_far_is_near_mapped_back(far, near, exog, 1e6)


def test_coding_weights_are_exact_rationals():
    """Each coding's weights ``w`` with ``C w = 1`` exactly: indicators all ones, a
    constant column alone, any other square coding solved in rationals; none for a
    reduced or singular coding."""
    from fractions import Fraction

    from dmixed.design.centres import coding_weights
    from dmixed.design.patsy_coding import PatsyDiff, PatsyHelmert, PatsyPoly, PatsySum

    levels = list("abcde")
    for contrasts in (PatsySum(), PatsyHelmert(), PatsyPoly(), PatsyDiff()):
        full = np.asarray(contrasts.get_coding_matrix(levels, reduced_rank=False), float)
        w = coding_weights(full)
        assert w == [Fraction(1)] + [Fraction(0)] * 4
        assert coding_weights(np.asarray(contrasts.get_coding_matrix(levels), float)) is None
    assert coding_weights(np.eye(3)) == [Fraction(1)] * 3
    custom = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    w = coding_weights(custom)
    assert w == [Fraction(1, 3), Fraction(1, 3), Fraction(2, 3)]
    assert all(sum(Fraction(v) * u for v, u in zip(row, w, strict=True)) == 1 for row in custom)
    assert coding_weights(np.array([[1.0, 2.0], [2.0, 4.0]])) is None  # singular
    assert coding_weights(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])) is None  # reduced


def test_constant_weights_only_where_a_term_gives_the_constant():
    """Reduced codings give no constant by themselves: beside an intercept, a factor's
    slopes (``0 + C(a, Sum):x``), and an interaction whose products of codings'
    entries would round (more than 53 significant bits between them) take no weights."""
    from dmixed.design.centres import constant_weights

    df = _codings_data().rename(columns={"y0": "y"})
    for rhs in (
        "C(a, Sum):C(b)",
        "C(a, Sum) + C(b, Helmert)",
        "0 + C(a, Sum):x",
        "0 + x",
        "0 + C(c, [[0.1, 1, 0], [0, 1, 1], [1, 0, 1]]):C(b, [[0.3, 1, 0], [0, 1, 1], [1, 0, 1]])",
    ):
        assert constant_weights(dmixed.mixedlm(f"y ~ {rhs}", df, groups="g").spec) is None, rhs
    # the second factor reduced: the first one's columns carry the constant
    spec = dmixed.mixedlm("y ~ 0 + C(a, Sum) + C(b, Helmert)", df, groups="g").spec
    np.testing.assert_array_equal(constant_weights(spec), [1, 0, 0, 0, 0, 0])


_CODINGS = ["", ", Sum", ", Helmert", ", Poly", ", Diff", ", Treatment(reference='v')"]


@settings(max_examples=12, deadline=None)
@given(
    codings=st.lists(st.sampled_from(_CODINGS), min_size=1, max_size=3),
    levels=st.lists(st.integers(2, 4), min_size=3, max_size=3),
    slope=st.booleans(),
)
def test_constant_weights_of_full_codings_give_one_exactly(codings, levels, slope):
    """For any interaction of one to three factors, each of any coding patsy knows, the
    weights give one in every row of the design exactly (rational arithmetic on its
    float entries): the order of the Kronecker product is formulaic's order of the
    columns."""
    from fractions import Fraction

    from dmixed.design.centres import constant_weights

    rng = np.random.default_rng(len(codings) * 7 + sum(levels))
    n = 60
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": np.arange(n) % 10})
    names = []
    for i, coding in enumerate(codings):
        col = f"f{i}"
        values = ["u", "v", "w", "z"][: levels[i]]
        df[col] = np.resize(values, n)[rng.permutation(n)]
        if "reference" in coding and "v" not in values:
            coding = ""
        names.append(f"C({col}{coding})")
    rhs = "0 + " + ":".join(names) + (" + x" if slope else "")
    model = dmixed.mixedlm(f"y ~ {rhs}", df, groups="g")
    a = constant_weights(model.spec)
    assert a is not None, rhs
    x = np.asarray(model.exog)
    for row in np.unique(x, axis=0):
        exact = sum(Fraction(float(v)) * Fraction(float(w)) for v, w in zip(row, a, strict=True))
        assert exact == 1, rhs
