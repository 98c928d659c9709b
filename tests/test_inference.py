"""Profile-likelihood intervals and likelihood-ratio tests."""

from __future__ import annotations

import decimal
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from scipy import stats as sps

import dmixed
from dmixed import MixedLM, anova, compare_lr_test
from dmixed.errors import SpecError
from dmixed.inference import ANOVA_COLUMNS, check_alpha, check_level

from ._synth import design, make_data, vc_dict


@pytest.fixture(scope="module")
def fit():
    df = make_data(n_groups=40, vc_sd=0.6, seed=21)
    endog, exog, exog_re, groups = design(df)
    model = MixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=vc_dict(df))
    return df, model.fit(reml=False)


@pytest.mark.parametrize("which", ["x_re1", "x_re2", "sub"])
def test_profile_peaks_at_the_mle_and_interval_contains_it(fit, which):
    _, res = fit
    from dmixed.inference import ProfileLikelihood

    prof = ProfileLikelihood(res, which)
    est = prof.estimate
    assert prof(est) == pytest.approx(res.llf, abs=1e-7)
    curve = prof.curve([0.7 * est, 0.9 * est, est, 1.1 * est, 1.4 * est])
    assert curve["llf"].idxmax() == 2
    assert np.all(curve["deviance"] >= -1e-7)
    lo, hi = prof.interval(0.05)
    assert lo < est < hi
    crit = sps.chi2.ppf(0.95, 1)
    assert 2 * (res.llf - prof(lo)) == pytest.approx(crit, abs=1e-5)
    assert 2 * (res.llf - prof(hi)) == pytest.approx(crit, abs=1e-5)


@pytest.mark.parametrize("alpha", [1.5, 1, 0, -0.1, float("nan"), "x", None])
def test_profile_interval_refuses_alpha_outside_zero_one_naming_it(fit, alpha):
    """``interval(1.5)`` once failed in the root finder ("the function value at x=0.0
    is NaN"), ``interval(0)`` in a Cholesky: the results methods' check, naming
    ``alpha``."""
    _, res = fit
    from dmixed.inference import ProfileLikelihood

    with pytest.raises(SpecError, match=r"alpha must be a number in \(0, 1\)"):
        ProfileLikelihood(res, "sub").interval(alpha)


def test_profile_ci_table(fit):
    _, res = fit
    table = res.profile_ci()
    # confint's order of the .sig rows (lme4's: the component's term has more levels)
    assert list(table.index) == ["sub", "x_re1", "x_re2"]
    assert np.all(table["0.025"] < table["estimate"])
    assert np.all(table["estimate"] < table["0.975"])


def test_profile_value_is_a_constrained_maximum(fit):
    """No nearby point with the same variance has a higher likelihood than the profile."""
    _, res = fit
    from dmixed.inference import ProfileLikelihood

    prof = ProfileLikelihood(res, "sub")
    v = 0.8 * prof.estimate
    best = prof(v)
    rng = np.random.default_rng(0)
    x_opt = None
    from scipy import optimize

    out = optimize.minimize(
        prof.problem.value_and_grad, prof.start, args=(v,), jac=True, method="L-BFGS-B"
    )
    x_opt = out.x
    for _ in range(20):
        trial = x_opt + 1e-3 * rng.normal(size=x_opt.size)
        assert -prof.problem.value_and_grad(trial, v)[0] <= best + 1e-9


def test_lr_test_of_a_variance_component(fit):
    df, res = fit
    endog, exog, exog_re, groups = design(df)
    restricted = MixedLM(endog, exog, groups, exog_re=exog_re).fit(reml=False)
    stat, pvalue, dof = compare_lr_test(restricted, res)
    assert dof == 1
    assert stat == pytest.approx(2 * (res.llf - restricted.llf))
    assert pvalue == pytest.approx(sps.chi2.sf(stat, 1))
    assert res.compare_lr_test(restricted) == (stat, pvalue, dof)


def test_lr_test_refuses_incomparable_fits(fit):
    df, res = fit
    endog, exog, exog_re, groups = design(df)
    reml = MixedLM(endog, exog, groups, exog_re=exog_re).fit(reml=True)
    with pytest.raises(ValueError, match="same method"):
        compare_lr_test(reml, res)
    small = MixedLM(endog, exog[:, :2], groups, exog_re=exog_re).fit(reml=True)
    big = MixedLM(endog, exog, groups, exog_re=exog_re).fit(reml=True)
    with pytest.raises(ValueError, match="not comparable"):
        compare_lr_test(small, big)
    with pytest.raises(ValueError, match="more parameters"):
        compare_lr_test(res, res)


def _anova_fits():
    df = make_data(n_groups=40, seed=31)
    return df, [
        MixedLM.from_formula("y ~ x1", df, groups="g"),
        MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="1 + x1"),
        MixedLM.from_formula("y ~ 1", df, groups="g"),
    ]


def test_anova_is_lme4s_table():
    """REML fits are refitted by ML (as lme4), sorted by npar, each tested against the
    one before; the numbers are statsmodels' ML likelihoods.  The refit was silent: a
    user saw REML fits compared by other likelihoods than theirs with no word; lme4 says
    "refitting model(s) with ML (instead of REML)", and so does a RefitWarning here."""
    df, models = _anova_fits()
    fits = [m.fit() for m in models]
    said = r"refitting model\(s\) with ML \(instead of REML\): m1, m2, m0; "
    with pytest.warns(dmixed.RefitWarning, match=said):
        table = anova(*fits, names=["m1", "m2", "m0"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.RefitWarning)  # refit=True: meant, silent
        pd.testing.assert_frame_equal(anova(*fits, names=["m1", "m2", "m0"], refit=True), table)
        ml = [m.fit(reml=False) for m in models]
        anova(*ml)  # nothing refitted: nothing said
    assert list(table.columns) == ANOVA_COLUMNS
    assert list(table.index) == ["m0", "m1", "m2"]
    assert list(table.npar) == [3, 4, 7]  # fixed effects + covariance parameters + σ
    ref = [
        sm.MixedLM.from_formula("y ~ 1", df, groups="g").fit(reml=False).llf,
        sm.MixedLM.from_formula("y ~ x1", df, groups="g").fit(reml=False).llf,
        sm.MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
        .fit(reml=False)
        .llf,
    ]
    np.testing.assert_allclose(table.logLik, ref, rtol=1e-7)
    np.testing.assert_allclose(table.deviance, -2 * table.logLik)
    np.testing.assert_allclose(table.AIC, -2 * table.logLik + 2 * table.npar)
    np.testing.assert_allclose(table.BIC, -2 * table.logLik + table.npar * np.log(len(df)))
    chisq = 2 * np.diff(table.logLik.to_numpy())
    np.testing.assert_allclose(table.Chisq.iloc[1:], np.maximum(chisq, 0))
    np.testing.assert_allclose(table.Df.iloc[1:], [1, 3])
    np.testing.assert_allclose(
        table["Pr(>Chisq)"].iloc[1:], stats.chi2.sf(table.Chisq.iloc[1:], [1, 3])
    )
    assert table.iloc[0][["Chisq", "Df", "Pr(>Chisq)"]].isna().all()


def test_anova_refusals(tmp_path):
    _, models = _anova_fits()
    a, b = models[0].fit(), models[1].fit()
    with pytest.raises(SpecError, match="two or more fits"):
        anova(a)
    with pytest.raises(SpecError, match="names has 1 entries for 2 fits"):
        anova(a, b, names=["x"])
    with pytest.raises(SpecError, match="different fixed effects are not comparable"):
        anova(a, b, refit=False)
    a.save(tmp_path / "a")
    with pytest.raises(SpecError, match="model1 was fitted by REML .*loaded results"):
        anova(dmixed.load(tmp_path / "a"), b)  # refused before any RefitWarning
    # ML fits, loaded or not, need no refit
    ml = models[0].fit(reml=False)
    ml.save(tmp_path / "ml")
    table = anova(dmixed.load(tmp_path / "ml"), models[1].fit(reml=False))
    assert table.logLik.iloc[0] == pytest.approx(ml.llf)


def test_anova_refit_leaves_the_models_criterion():
    """The ML refit of a REML fit is anova's own: the model's loglike stays REML."""
    _, models = _anova_fits()
    fits = [m.fit() for m in models[:2]]
    before = models[1].loglike(fits[1].params_object)
    anova(*fits, refit=True)
    assert models[1].reml
    assert models[1].loglike(fits[1].params_object) == before == pytest.approx(fits[1].llf)


def test_anova_refuses_what_is_not_a_fit():
    _, models = _anova_fits()
    with pytest.raises(SpecError, match="argument 2 is a str"):
        anova(models[0].fit(reml=False), "model2")


def test_anova_refit_keeps_the_fit_options():
    """A REML fit with a covariance held fixed (``free``: independent random effects)
    is refitted by ML with it held still; the held parameter is not counted."""
    df = make_data(n_groups=40, seed=31)
    opts = dict(free=[1, 0, 1], start_params=[1.0, 0.0, 1.0])
    small, big = (
        MixedLM.from_formula(f, df, groups="g", re_formula="1 + x1")
        for f in ("y ~ x1", "y ~ x1 + x2")
    )
    fits = (small.fit(**opts), big.fit(**opts), big.fit())
    table = anova(*fits, names=["s", "b", "b_cov"], refit=True)
    ml = [m.fit(reml=False, **opts).llf for m in (small, big)] + [big.fit(reml=False).llf]
    np.testing.assert_allclose(table.logLik.loc[["s", "b", "b_cov"]], ml, rtol=1e-9)
    assert table.logLik["b"] < table.logLik["b_cov"]  # the constraint held in the refit
    assert list(table.npar.loc[["s", "b", "b_cov"]]) == [5, 6, 7]
    np.testing.assert_allclose(table.Df.loc[["b", "b_cov"]], [1, 1])
    _, _, df = compare_lr_test(big.fit(**opts), big.fit())  # independent vs correlated
    assert df == 1


def test_anova_refit_of_dask_fits_reads_no_partition():
    """The ML refits use the statistics the models hold: no partition is read again."""
    dd = pytest.importorskip("dask.dataframe")
    import dask

    from .fit.test_model_methods import CountingReader

    df = make_data(n_groups=30, seed=8)[["y", "x1", "x2", "g"]]
    reader = CountingReader(df, 3)
    ddf = dd.from_map(reader, range(3), meta=df.iloc[:0], enforce_metadata=False)
    with dask.config.set(scheduler="sync"):
        fits = [dmixed.mixedlm(f, ddf, groups="g").fit() for f in ("y ~ x1", "y ~ x1 + x2")]
        reads = reader.reads
        table = anova(*fits, refit=True)
    assert reader.reads == reads
    ml = [dmixed.mixedlm(f, df, groups="g").fit(reml=False).llf for f in ("y ~ x1", "y ~ x1 + x2")]
    np.testing.assert_allclose(table.logLik, ml, rtol=1e-9)


@pytest.mark.parametrize("c", [2.0**256, 3e-150])
def test_profile_likelihood_with_weights_in_an_extreme_unit_is_the_reference(c):
    """Weights ``c·w``: the same profile likelihood of each variance (its coordinates
    relative to ``σ²/s_w``; in the model's own, ℓ was 5,000 lower at ``c = 2^256``)."""
    from dmixed.inference import ProfileLikelihood

    from ._synth import weighted_vc_fit

    def curves(factor):
        res = weighted_vc_fit(factor)
        return [[ProfileLikelihood(res, w)(v) for v in (0.2, 0.5, 1.0)] for w in ("g", "sub")]

    np.testing.assert_allclose(curves(c), curves(1.0), rtol=1e-9)


@pytest.mark.parametrize("check", [check_alpha, check_level])
@pytest.mark.parametrize(
    "value", [[0.1, [0.2]], np.complex128(0.05), np.array(0.05 + 0j), 0.05 + 0j, np.array([0.05])]
)
def test_check_alpha_and_level_refuse_what_is_not_a_real_number_naming_it(check, value):
    """A ragged list once raised numpy's bare ValueError ("inhomogeneous shape") and a
    numpy complex was taken as its real part (with numpy's ComplexWarning), where a
    Python complex is refused: each is refused naming the argument."""
    name = check.__name__.removeprefix("check_")
    with pytest.raises(SpecError, match=rf"^{name} must be a number in \(0, 1\)"):
        check(value)


@pytest.mark.parametrize("check", [check_alpha, check_level])
@pytest.mark.parametrize(
    "value",
    [np.float64(0.05), np.float32(0.25), np.array(0.05), decimal.Decimal("0.05"), Fraction(1, 3)],
)
def test_check_alpha_and_level_take_a_real_number_of_any_type(check, value):
    assert check(value) == float(value)


@pytest.mark.parametrize("refit", ["no", 0])
def test_anova_refit_must_be_a_bool(fit, refit):
    """``refit="no"`` refitted (a true string): refused, naming the argument."""
    _, res = fit
    with pytest.raises(SpecError, match=r"refit must be True or False, not .* \("):
        anova(res, res, refit=refit)


def test_compare_lr_test_refuses_what_is_not_fitted_results(fit):
    """``compare_lr_test(res, "x")`` raised AttributeError ('str' object has no
    attribute 'nobs'): refused as anova refuses it, naming the argument's position."""
    _, res = fit
    with pytest.raises(
        SpecError, match="^compare_lr_test compares fitted results; argument 2 is a str$"
    ):
        compare_lr_test(res, "x")
    with pytest.raises(SpecError, match="argument 1 is a NoneType"):
        res.compare_lr_test(None)
    with pytest.raises(SpecError, match="^anova compares fitted results; argument 2 is a str$"):
        anova(res, "x")


def _sleep_like(seed: int = 1):
    df = make_data(n_groups=18, seed=seed)
    df["y"] = 250.0 + 25.0 * df["y"]  # positive, for np.log(y)
    assert df["y"].min() > 0
    return df


def test_lr_test_of_fits_of_different_responses_is_refused():
    """``log(y)`` against ``y``: a 'likelihood ratio' of densities of different
    variables (the review found (0.0, 1.0, 1) and an anova row with Chisq 0)."""
    df = _sleep_like()
    small = dmixed.mixedlm("np.log(y) ~ 1", df, groups="g").fit(reml=False)
    big = dmixed.mixedlm("y ~ x1", df, groups="g").fit(reml=False)
    with pytest.raises(SpecError, match=r"different responses.*'np.log\(y\)'.*'y'"):
        compare_lr_test(small, big)
    with pytest.raises(SpecError, match="different responses"):
        big.compare_lr_test(small)
    with pytest.raises(SpecError, match=r"different responses \(model1: 'np.log\(y\)'"):
        anova(small, big)


def test_different_responses_are_named_before_the_parameter_counts():
    """The restricted fit with more parameters: the cause is the response, said first."""
    df = _sleep_like()
    many = dmixed.mixedlm("np.log(y) ~ x1 + x2", df, groups="g").fit(reml=False)
    few = dmixed.mixedlm("y ~ 1", df, groups="g").fit(reml=False)
    with pytest.raises(SpecError, match="different responses"):
        compare_lr_test(many, few)


def test_same_response_other_formula_still_tested():
    df = _sleep_like()
    small = dmixed.mixedlm("y ~ 1", df, groups="g").fit(reml=False)
    big = dmixed.mixedlm("y ~ x1", df, groups="g").fit(reml=False)
    stat, p, dof = compare_lr_test(small, big)
    assert dof == 1 and stat > 0 and 0 <= p <= 1


def test_anova_refits_do_not_repeat_the_reported_point_warning():
    """A random slope on a column near 1e8 (spread 1): each REML fit warns that its
    reported estimates do not carry its point, once; anova's ML refits, whose estimates
    no one is shown (it reads their exact llf), do not warn again."""
    import warnings

    import pandas as pd

    rng = np.random.default_rng(3)
    parts = []
    for g in range(20):
        n = int(rng.integers(4, 10))
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        y = 1 + 0.5 * x1 - 0.3 * x2 + rng.normal() + rng.normal(0, 0.5) * x1 + rng.normal(size=n)
        parts.append(pd.DataFrame({"g": f"g{g:02d}", "x1": x1 + 1e8, "x2": x2, "y": y}))
    df = pd.concat(parts, ignore_index=True)
    fits = []
    for formula in ("y ~ x1", "y ~ x1 + x2"):
        model = MixedLM.from_formula(formula, df, groups="g", re_formula="1 + x1")
        with pytest.warns(dmixed.PrecisionWarning, match="do not carry the fitted point"):
            fits.append(model.fit())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", dmixed.DmixedWarning)
        table = anova(*fits, refit=True)
    assert [str(w.message) for w in seen if "do not carry" in str(w.message)] == []
    assert np.isfinite(table.logLik).all()
