"""dmixed.results.new_levels: levels of variance components that rows to predict bring
(lme4's allow.new.levels, MixedModels.jl's new_re_levels)."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError, SpecError
from dmixed.results.new_levels import REMEDY


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(0)
    n = 400
    g, c = rng.integers(0, 10, n), rng.integers(0, 4, n)
    df = pd.DataFrame({"x": rng.normal(size=n), "g": g, "cask": np.array(list("abcd"))[c]})
    df["y"] = df.x + rng.normal(size=10)[g] + rng.normal(size=(10, 4))[g, c] + rng.normal(size=n)
    return dmixed.mixedlm(
        "y ~ x", df, groups="g", re_formula="1", vc_formula={"cask": "0 + C(cask)"}
    ).fit()


NEW = pd.DataFrame({"x": [0.1, 0.2, 0.3], "g": [0, 1, 1], "cask": ["e", "a", "f"]}, index=[5, 6, 7])


def _by_hand(fit, rows: pd.DataFrame) -> np.ndarray:
    """X β̂ + the group's intercept BLUP + its cask BLUP (zero for a cask it lacks)."""
    out = []
    for _, row in rows.iterrows():
        re = fit.random_effects[row.g]
        value = fit.fe_params["Intercept"] + fit.fe_params["x"] * row.x + re["g"]
        out.append(value + re.get(f"cask[C(cask)[{row.cask}]]", 0.0))
    return np.array(out)


def test_a_new_level_in_a_fitted_group_is_refused_naming_group_and_level(fit):
    with pytest.raises(
        DataError, match=r"cask level 'e' in group 0, cask level 'f' in group 1\).*new_levels="
    ):
        fit.predict(NEW, include_random=True)


def test_the_refusal_names_the_argument_and_the_other_rule(fit):
    """An unseen level inside a seen group is refused by default while an unseen group
    is predicted at the population level: the message names the argument that
    decides (new_levels, and its default) and the other rule (new_groups)."""
    with pytest.raises(DataError, match=r"the argument new_levels \(default 'error'\)") as err:
        fit.predict(NEW, include_random=True)
    assert "new_levels='population'" in str(err.value)
    assert "unseen groups are decided by new_groups" in str(err.value)


def test_new_levels_population_predicts_them_at_zero(fit):
    """lme4's allow.new.levels=TRUE: the new level's random effect at its mean, zero;
    the group's other random effects (its intercept) stay."""
    got = fit.predict(NEW, include_random=True, new_levels="population")
    assert list(got.index) == [5, 6, 7]
    np.testing.assert_allclose(got, _by_hand(fit, NEW), rtol=1e-12)
    lazy = fit.predict(
        dd.from_pandas(NEW, npartitions=2), include_random=True, new_levels="population"
    )
    np.testing.assert_allclose(lazy.compute(), got, rtol=1e-12)


def test_new_levels_nan(fit):
    got = fit.predict(NEW, include_random=True, new_levels="nan")
    assert np.isnan(got[[5, 7]]).all()
    np.testing.assert_allclose(got[6], _by_hand(fit, NEW.loc[[6]])[0], rtol=1e-12)


def test_new_levels_is_checked(fit):
    with pytest.raises(SpecError, match="new_levels must be one of"):
        fit.predict(NEW, include_random=True, new_levels="zero")


def test_a_new_level_of_a_fixed_effect_factor_stays_an_error():
    """A level of a column the fixed effects read has no coefficient: refused whatever
    new_levels says (here ``cask``, a factor of the fixed effects and a component)."""
    rng = np.random.default_rng(2)
    n = 400
    g, c = rng.integers(0, 10, n), rng.integers(0, 3, n)
    df = pd.DataFrame({"g": g, "cask": np.array(list("abc"))[c]})
    df["y"] = rng.normal(size=10)[g] + rng.normal(size=(10, 3))[g, c] + rng.normal(size=n)
    res = dmixed.mixedlm("y ~ cask", df, groups="g", vc_formula={"v": "0 + C(cask)"}).fit()
    new = pd.DataFrame({"cask": ["z"], "g": [0]})
    with pytest.raises(DataError, match="levels not seen"):
        res.predict(new, include_random=True, new_levels="population")


@pytest.fixture(scope="module")
def nested():
    """Classes nested in schools, class labels reused: class "c3" of school A is not
    class "c3" of school B (the component's column c3 exists, school A never had it)."""
    rng = np.random.default_rng(0)
    rows = []
    schools = [("A", ["c1", "c2"]), ("B", ["c2", "c3"]), ("C", ["c1", "c3"]), ("D", ["c1"])]
    schools += [(f"E{k}", ["c1", "c2", "c3"]) for k in range(5)]
    for school, classes in schools:
        v = 2 * rng.normal()
        for cls in classes:
            u = v + rng.normal()
            for _ in range(15):
                x = rng.normal()
                rows.append((school, cls, x, 1 + x + u + 0.5 * rng.normal()))
    df = pd.DataFrame(rows, columns=["school", "cls", "x", "y"])
    vc = {"cls": "0 + C(cls)"}
    return dmixed.mixedlm("y ~ x", df, groups="school", re_formula="1", vc_formula=vc).fit()


REUSED = pd.DataFrame({"school": ["A", "A", "B"], "cls": ["c3", "c1", "c1"], "x": [0.5, 0.5, 1.0]})


def test_a_level_new_to_its_group_follows_new_levels(nested):
    """A level the fit saw in other groups only was silently predicted at zero."""
    for call in (nested.predict, nested.get_prediction):
        with pytest.raises(DataError, match=r"cls level 'c3' in group 'A'.*new_levels="):
            call(REUSED, include_random=True)
    fixed = nested.predict(REUSED)
    re = nested.random_effects
    got = nested.predict(REUSED, include_random=True, new_levels="population")
    want = fixed + np.array([re["A"]["school"], re["A"]["school"], re["B"]["school"]])
    want[1] += re["A"]["cls[C(cls)[c1]]"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    lazy = nested.predict(
        dd.from_pandas(REUSED, npartitions=2), include_random=True, new_levels="population"
    )
    np.testing.assert_allclose(lazy.compute(), got, rtol=1e-12)
    nan = nested.predict(REUSED, include_random=True, new_levels="nan")
    assert np.isnan(nan[[0, 2]]).all() and nan[1] == pytest.approx(got[1], rel=1e-12)
    frame = nested.get_prediction(REUSED, include_random=True, new_levels="nan").summary_frame()
    assert frame.loc[[0, 2]].isna().all().all() and frame.loc[1].notna().all()
    with pytest.raises(DataError, match="cls level 'c3' in group 'A'"):
        nested.predict(dd.from_pandas(REUSED, npartitions=1), include_random=True).compute()


def test_error_names_both_kinds_of_new_level(nested):
    """Rows with a level the fit never saw and rows with one seen in other groups only:
    one refusal names both (``new_levels="nan"`` makes both rows NaN), in process and
    on Dask; either alone is refused as before."""
    both = pd.DataFrame({"school": ["A", "B", "B"], "cls": ["c3", "c9", "c2"], "x": 0.5})
    want = (
        r"1 row\(s\) of groups of 'school' the fit saw hold levels of the variance "
        r"component 'cls' \(column 'cls'\) that the fit did not see \(cls level 'c9' in "
        r"group 'B'\); and 1 row\(s\) of groups of 'school' the fit saw hold levels of the "
        r"variance component 'cls' that the fit saw in other groups but not in theirs "
        r"\(cls level 'c3' in group 'A'\).*"
        r"new_levels='nan'$"
    )
    for call in (nested.predict, nested.get_prediction):
        with pytest.raises(DataError, match=want):
            call(both, include_random=True)
    with pytest.raises(DataError, match=want):
        nested.predict(dd.from_pandas(both, npartitions=1), include_random=True).compute()
    nan = nested.predict(both, include_random=True, new_levels="nan")
    assert np.isnan(nan[[0, 1]]).all() and np.isfinite(nan[2])
    with pytest.raises(DataError, match=r"\(cls level 'c9' in group 'B'\); the argument new_"):
        nested.predict(both.iloc[1:], include_random=True)


def test_refusal_of_both_kinds_does_not_run_the_prediction(nested, monkeypatch):
    """The refusal naming both kinds of new level is built from the rows' entries, not
    by running the prediction: an error the prediction would raise cannot replace it."""
    from dmixed.results.prediction import Predictor

    def broken(*args, **kwargs):
        raise RuntimeError("the prediction ran")

    monkeypatch.setattr(Predictor, "predict", broken)
    both = pd.DataFrame({"school": ["A", "B", "B"], "cls": ["c3", "c9", "c2"], "x": 0.5})
    with pytest.raises(
        DataError, match=r"level 'c9' in group 'B'\); and 1 row\(s\) of groups of 'school'"
    ):
        nested.predict(both, include_random=True)


def test_get_prediction_takes_new_levels(nested):
    """A level new to the fit and one new to the group: both at zero, both adding the
    component's variance to the observation interval (with ``new_levels="population"``)."""
    rows = pd.DataFrame({"school": ["A", "A"], "cls": ["c9", "c3"], "x": [0.5, 0.5]})
    with pytest.raises(DataError, match="cls level 'c9' in group 'A'"):
        nested.get_prediction(rows, include_random=True)
    pred = nested.get_prediction(rows, include_random=True, new_levels="population")
    np.testing.assert_allclose(
        pred.predicted_mean, nested.predict(rows, include_random=True, new_levels="population")
    )
    assert pred.predicted_mean[0] == pytest.approx(pred.predicted_mean[1], rel=1e-12)
    tau = float(np.asarray(nested.vcomp)[0])
    var_obs = np.asarray(pred.se_obs) ** 2
    var_mean = np.asarray(pred.se_mean) ** 2
    np.testing.assert_allclose(var_obs, var_mean + tau + nested.scale, rtol=1e-10)
    nan = nested.get_prediction(rows, include_random=True, new_levels="nan").summary_frame()
    assert nan.isna().all().all()
    with pytest.raises(SpecError, match="new_levels must be one of"):
        nested.get_prediction(rows, include_random=True, new_levels="zero")


@pytest.fixture(scope="module")
def numbered():
    """Integer levels: of a fixed-effects factor (``C(shift)``) and of a component
    (``C(cask)``); booleans in ``C(flag)``."""
    rng = np.random.default_rng(3)
    n = 400
    g, c, s = rng.integers(0, 10, n), rng.integers(0, 3, n), rng.integers(0, 3, n)
    df = pd.DataFrame({"g": g, "cask": c, "shift": s, "flag": rng.random(n) > 0.5})
    df["y"] = s + df.flag + rng.normal(size=10)[g] + rng.normal(size=(10, 3))[g, c]
    df["y"] += rng.normal(size=n)
    vc = {"v": "0 + C(cask)"}
    return df, dmixed.mixedlm("y ~ C(shift) + C(flag)", df, groups="g", vc_formula=vc).fit()


@pytest.mark.parametrize(
    ("column", "value"),
    [("shift", 1.5), ("shift", -0.5), ("shift", 1e30), ("flag", 2), ("flag", 0.5), ("cask", 1.5)],
)
def test_a_number_that_is_no_level_is_not_read_as_the_level_it_truncates_to(
    numbered, column, value
):
    """1.5 for levels 0, 1, 2 was read as level 1 (its integer part), 2 or 0.5 for
    booleans as True: predicted with that level's coefficient or BLUP.  It is a level
    the fit did not see; a float equal to a level (1.0 for 1) is that level."""
    df, res = numbered
    rows = df.iloc[:3]
    with pytest.raises(DataError, match="not see|not seen"):
        res.predict(rows.assign(**{column: value}), include_random=True)
    same = {"shift": 1.0, "flag": 1, "cask": 1.0}[column]
    np.testing.assert_allclose(
        res.predict(rows.assign(**{column: same}), include_random=True),
        res.predict(rows.assign(**{column: rows[column].dtype.type(same)}), include_random=True),
    )


@pytest.mark.parametrize("how", ["pandas", "dask", "loaded"])
def test_a_new_level_without_the_group_column_is_refused_as_a_missing_column(how, tmp_path):
    """New rows lacking the group column but holding a level the fit never saw get the
    same DataError as without a new level (the columns are checked before the group
    column is read), for in-process, Dask and loaded results alike."""
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"g": rng.integers(0, 20, n), "cls": rng.integers(0, 3, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = df.x + rng.normal(size=20)[df.g] + rng.normal(size=n)
    data = df if how == "pandas" else dd.from_pandas(df, npartitions=2)
    res = dmixed.mixedlm("y ~ x", data, groups="g", vc_formula={"cls": "0 + C(cls)"}).fit()
    if how == "loaded":
        res.save(tmp_path / "fit")
        res = dmixed.load(tmp_path / "fit")
    seen = pd.DataFrame({"x": [0.1, 0.2], "cls": [0, 1]})
    new = pd.DataFrame({"x": [0.1, 0.2], "cls": [0, 7]})
    with pytest.raises(DataError) as expected:
        res.predict(seen, include_random=True)
    assert "column(s) not found in the data: 'g'" in str(expected.value)
    calls = [lambda: res.predict(new, include_random=True)]
    if how != "loaded":  # loaded results refuse get_prediction with include_random
        calls.append(lambda: res.get_prediction(new, include_random=True))
    for call in calls:
        with pytest.raises(DataError) as got:
            call()
        assert str(got.value) == str(expected.value)


def test_both_kinds_of_new_level_are_named_alike():
    """A level the fit never saw was named ``group 17 level 77`` and one seen in other
    groups only ``group 17 level 'C(rater)[2]'`` (the column's name): both now name the
    component, the level as the data holds it and the group, in one style
    (:func:`dmixed.design.labels.level_in_group`), in process and on Dask."""
    rng = np.random.default_rng(5)
    rows = []
    for school in range(20):
        raters = [0, 1] if school == 17 else [0, 1, 2]
        for rater in raters:
            for _ in range(6):
                rows.append((school, rater % 2 + 10 * (school % 3), rater, rng.normal()))
    df = pd.DataFrame(rows, columns=["school", "classroom", "rater", "x"])
    cell = rng.normal(size=(20, 22))  # classroom within school
    df["y"] = (
        df.x
        + rng.normal(size=20)[df.school]
        + cell[df.school, df.classroom]
        + rng.normal(size=(20, 3))[df.school, df.rater]
        + 0.5 * rng.normal(size=len(df))
    )
    vc = {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)"}
    res = dmixed.mixedlm("y ~ x", df, groups="school", re_formula="1", vc_formula=vc).fit()
    new = pd.DataFrame({"school": [17, 17], "classroom": [77, 20], "rater": [0, 2], "x": 0.0})
    want = (
        r"\(classroom level 77 in group 17\); and 1 row\(s\) .* variance component "
        r"'rater' that the fit saw in other groups but not in theirs "
        r"\(rater level 2 in group 17\)"
    )
    with pytest.raises(DataError, match=want):
        res.predict(new, include_random=True)
    with pytest.raises(DataError, match=want):
        res.predict(dd.from_pandas(new, npartitions=1), include_random=True).compute()
    with pytest.raises(DataError, match=r"\(rater level 2 in group 17\): their"):
        res.predict(new.iloc[1:], include_random=True)


def _levels_frame(levels, seed=0, n_groups=12):
    """Groups 0..n_groups-1 with every level of ``c`` but group 3, which lacks the last."""
    rng = np.random.default_rng(seed)
    rows = [
        (g, lv, rng.normal())
        for g in range(n_groups)
        for lv in (levels[:-1] if g == 3 else levels)
        for _ in range(5)
    ]
    df = pd.DataFrame(rows, columns=["g", "c", "x"])
    df["d"] = np.where(rng.uniform(size=len(df)) < 0.5, "p", "q")
    df["y"] = df.x + rng.normal(size=len(df)) + rng.normal(size=n_groups)[df.g]
    return df


def test_two_components_on_one_column_are_named_apart():
    """The review found a made-up component ``'c1/c2'`` in the refusal of a level no
    group had, where two components read the column: each is named, with its level."""
    df = _levels_frame(["u", "v", "w"])
    vc = {"c1": "0 + C(c)", "c2": "0 + C(c):x"}
    res = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula=vc).fit()
    new = pd.DataFrame({"g": [3], "c": ["zz"], "x": [0.3]})
    with pytest.raises(DataError) as got:
        res.predict(new, include_random=True)
    msg = str(got.value)
    assert "c1/c2" not in msg
    assert "the variance components 'c1' and 'c2' (column 'c')" in msg
    assert "(c1 level 'zz' in group 3, c2 level 'zz' in group 3)" in msg


def test_an_interaction_level_is_the_combination_in_both_refusals():
    """A level of ``C(c):C(d)`` no group had was shown as one column's value (``zz``),
    one seen in other groups only as the combination (``w:p``): both are the
    combination now, each value as Python writes it."""
    df = _levels_frame(["u", "v", "w"])
    res = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula={"cd": "0 + C(c):C(d)"}).fit()
    new = pd.DataFrame({"g": [3, 3], "c": ["w", "zz"], "d": ["p", "p"], "x": [0.3, 0.3]})
    with pytest.raises(DataError) as got:
        res.predict(new, include_random=True)
    msg = str(got.value)
    assert "(cd level 'zz':'p' in group 3)" in msg
    assert "(cd level 'w':'p' in group 3)" in msg


@pytest.mark.parametrize(
    ("levels", "unseen", "never", "elsewhere"),
    [
        (["1", "2", "3"], "77", "'77'", "'3'"),
        ([1, 2, 3], 77, "77", "3"),
        ([1.5, 2.0, 3.25], 9.5, "9.5", "3.25"),
    ],
)
def test_text_levels_are_quoted_numbers_not(levels, unseen, never, elsewhere):
    """A text level ``'2'`` and a number ``2`` were both shown ``2``: each level is
    shown as Python writes it, in both refusals, in process and on Dask."""
    df = _levels_frame(levels)
    res = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula={"cc": "0 + C(c)"}).fit()
    new = pd.DataFrame({"g": [3, 3], "c": [levels[-1], unseen], "x": [0.0, 0.0]})
    want = f"(cc level {never} in group 3)"
    also = f"(cc level {elsewhere} in group 3)"
    for frame, run in ((new, lambda p: p), (dd.from_pandas(new, 1), lambda p: p.compute())):
        with pytest.raises(DataError) as got:
            run(res.predict(frame, include_random=True))
        assert want in str(got.value) and also in str(got.value)


def test_level_new_to_its_group_names_every_component_reading_the_column():
    """Two components read one column: a level the fit saw in other groups but not in
    this row's names both (as a level the fit never saw does), in process and on Dask,
    and both refusals say the same remedy."""
    rng = np.random.default_rng(0)
    rows = [
        (g, c, rng.normal())
        for g in range(12)
        for c in (["u", "v"] if g == 3 else ["u", "v", "w"])
        for _ in range(5)
    ]
    df = pd.DataFrame(rows, columns=["g", "c", "x"])
    df["y"] = df.x + rng.normal(size=len(df)) + rng.normal(size=12)[df.g]
    vc = {"c1": "0 + C(c)", "c2": "0 + C(c):x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula=vc).fit()
    elsewhere = pd.DataFrame({"g": [3], "c": ["w"], "x": [0.3]})
    want = (
        r"variance components 'c1' and 'c2' that the fit saw in other groups but not in "
        r"theirs \(c1 level 'w' in group 3, c2 level 'w' in group 3\)"
    )
    with pytest.raises(DataError, match=want) as seen_elsewhere:
        res.predict(elsewhere, include_random=True)
    with pytest.raises(DataError, match=want):
        res.predict(dd.from_pandas(elsewhere, npartitions=1), include_random=True).compute()
    with pytest.raises(DataError, match="variance components 'c1' and 'c2'") as never_seen:
        res.predict(elsewhere.assign(c="zz"), include_random=True)
    assert str(seen_elsewhere.value).endswith(REMEDY)
    assert str(never_seen.value).endswith(REMEDY)
