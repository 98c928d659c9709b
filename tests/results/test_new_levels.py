"""dmixed.results.new_levels: levels of variance components that rows to predict bring
(lme4's allow.new.levels, MixedModels.jl's new_re_levels)."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError, SpecError


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
    with pytest.raises(DataError, match=r"group 0 level 'e', group 1 level 'f'.*new_levels="):
        fit.predict(NEW, include_random=True)


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
