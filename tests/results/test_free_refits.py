"""A fit with ``free`` (statsmodels' mask of held covariance parameters) is profiled and
bootstrapped as the constrained model it is: ``profile_re``, the profile intervals and
the bootstrap's replicates keep the parameters it held."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dmixed
from dmixed.errors import SpecError


def _visits(seed: int = 0, n: int = 150) -> pd.DataFrame:
    """Subjects with 1 to 5 visits, a random intercept and slope on ``time``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        trt = "active" if i % 2 else "placebo"
        b0, b1 = rng.multivariate_normal([0, 0], [[4, 0.6], [0.6, 0.5]])
        for v in sorted(rng.choice(5, rng.integers(1, 6), replace=False)):
            t = v * 2.0 + rng.uniform(-0.3, 0.3)
            y = 10 + b0 + (0.5 + b1 + (0.4 if trt == "active" else 0)) * t + rng.normal(0, 1.5)
            rows.append(dict(subj=f"S{i:03d}", trt=trt, time=t, y=y))
    return pd.DataFrame(rows)


FORMULA = "y ~ C(trt) * time"
FREE = sm.regression.mixed_linear_model.MixedLMParams.from_components(np.ones(4), np.eye(2))


@pytest.fixture(scope="module")
def visits():
    """The data, the fit holding the intercept-slope covariance at 0 and the same model
    as a variance component (``vc_formula``), both by ML."""
    df = _visits()
    held = dmixed.mixedlm(FORMULA, df, groups="subj", re_formula="1 + time")
    held = held.fit(free=FREE, reml=False)
    vc = dmixed.mixedlm(FORMULA, df, groups="subj", re_formula="1", vc_formula={"t": "0 + time"})
    vc = vc.fit(reml=False)
    assert held.llf == pytest.approx(vc.llf, rel=1e-10, abs=0)
    return df, held, vc


def test_held_is_the_fit_mask(visits):
    _, held, vc = visits
    np.testing.assert_array_equal(held.held, [False, True, False])
    assert vc.held is None


def test_profile_re_keeps_free_as_statsmodels(visits):
    df, held, vc = visits
    a = dict(dist_low=0.5, dist_high=0.5, num_low=2, num_high=2)
    got = held.profile_re(0, "re", **a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm.MixedLM.from_formula(FORMULA, df, groups="subj", re_formula="1 + time")
        want = model.fit(free=FREE, reml=False).profile_re(0, "re", **a)
    # never above the fit's maximum: the constrained model's profile
    assert got[:, 1].max() <= held.llf + 1e-6
    # statsmodels' grid is centred on its own estimates (about 1e-5 from dmixed's,
    # whose ℓ is the higher): the held values differ by that much
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-4)
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=0, atol=1e-4)
    # the same model written as a variance component: the same profile (the held
    # values times each refit's σ̂²; each point is an L-BFGS-B maximum, found to about
    # 1e-7 of ℓ far out on the grid in either form)
    for ours, theirs in [
        (got, vc.profile_re(0, "re", **a)),
        (held.profile_re("time", "re", **a), vc.profile_re("t", "vc", **a)),
    ]:
        assert ours[:, 1].max() <= held.llf + 1e-6
        np.testing.assert_allclose(ours[:, 1], theirs[:, 1], rtol=2e-7)
        np.testing.assert_allclose(ours[:, 0], theirs[:, 0], rtol=1e-5)


def test_profile_intervals_of_the_constrained_model(visits):
    _, held, vc = visits
    got = held.confint()
    want = vc.confint()
    # .sig02 is the correlation the fit held at 0: no row (not a parameter)
    assert ".sig02" not in got.index
    rows = {".sig01": ".sig01", ".sig03": ".sig02", ".sigma": ".sigma"}
    for ours, theirs in rows.items():
        np.testing.assert_allclose(got.loc[ours], want.loc[theirs], rtol=1e-6)
    fe = list(held.fe_params.index)
    np.testing.assert_allclose(got.loc[fe], want.loc[fe], rtol=1e-6)
    ci = held.profile_ci()
    np.testing.assert_allclose(ci.to_numpy(), vc.profile_ci().to_numpy(), rtol=1e-6)


def test_a_held_correlation_shows_nowhere_as_estimated(visits):
    """A user holding the correlation at 0 (lme4's ``||``, MixedModels.jl's
    ``zerocorr``) saw a ``.sig02 NaN NaN`` row in confint, with no warning, and a 0.0
    correlation row in varcorr, as if estimated.  Neither shows it now (lme4 and
    MixedModels.jl list none), in every method of confint, and the summary says it
    was held instead of printing a correlation."""
    _, held, vc = visits
    for method in ("Wald", "boot"):
        kw = dict(nsim=3, seed=1) if method == "boot" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dmixed.ProfileWarning)  # 3 replicates
            ci = held.confint(method=method, **kw)
        assert list(ci.index[:3]) == [".sig01", ".sig03", ".sigma"], method
    frame = held.varcorr()
    assert frame["var2"].isna().all()  # no correlation row
    assert list(frame.var1.iloc[:2]) == ["subj", "time"]
    np.testing.assert_allclose(frame.vcov.iloc[:2], np.diag(held.cov_re), rtol=1e-12)
    assert len(frame) == 3  # the two variances and the residual
    text = str(held.summary())
    assert "Corr" not in text.split("Random effects:")[1]
    note = "Held at 0 by free (not estimated; no standard error or correlation shown)"
    assert f"{note}: subj x time Cov" in text


def test_the_coefficient_table_gives_a_held_covariance_no_standard_error(visits):
    """The summary's coefficient table printed ``subj x time Cov 0.000 0.000``, a
    standard error of 0 as if the covariance were estimated with no uncertainty
    (statsmodels prints the same).  The row keeps its 0 with no standard error."""
    _, held, vc = visits
    table = held.summary_frame()
    assert table.loc["subj x time Cov", "Coef."] == 0.0
    assert np.isnan(table.loc["subj x time Cov", "Std.Err."])
    assert np.isfinite(table.loc[["subj Var", "time Var"], "Std.Err."]).all()
    row = held.summary().tables[1].loc["subj x time Cov"]
    assert row["Coef."] == "0.000" and row["Std.Err."] == ""
    assert np.isfinite(vc.summary_frame()["Std.Err."].iloc[held.k_fe :]).all()


@pytest.mark.parametrize("method", ["Wald", "profile", "boot"])
def test_confint_refuses_a_held_covariance_named_in_parm(visits, method):
    """``confint(parm=".sig02")`` of the held covariance returned an empty frame without
    a word, while the error for an unknown name listed ``.sig02`` as valid.  Naming it
    (or its position) is refused, and the list of valid names leaves it out."""
    _, held, _ = visits
    for parm in (".sig02", [".sig01", ".sig02"], 1):
        with pytest.raises(SpecError, match=r"'\.sig02' is a covariance held at 0 by free="):
            held.confint(parm=parm, method=method)
    with pytest.raises(SpecError, match="is not one of") as err:
        held.confint(parm=".sig09", method=method)
    assert "'.sig02'" not in str(err.value) and "'.sig03'" in str(err.value)


def test_profile_intervals_refuse_a_held_variance():
    df = _visits(n=60)
    mask = np.array([1.0, 1.0, 0.0])  # the slope's variance held at its start
    fit = dmixed.mixedlm(FORMULA, df, groups="subj", re_formula="1 + time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit.fit(free=mask, reml=False)
    with pytest.raises(SpecError, match="'time Var' is held"):
        fit.confint()


def test_bootstrap_replicates_keep_the_constraint(visits):
    _, held, _ = visits
    boot = held.bootstrap(8, seed=3)
    reps = boot.replicates
    assert reps["converged"].all()
    assert (reps["subj x time Cov (cov_re)"] == 0.0).all()
    # each replicate is at the constrained maximum: near the fit's estimates
    assert (
        reps["subj Var (cov_re)"]
        .between(0.5 * held.cov_re.iloc[0, 0], 2 * held.cov_re.iloc[0, 0])
        .all()
    )


def test_loaded_results_keep_the_held_mask(visits, tmp_path):
    df, held, _ = visits
    full = dmixed.mixedlm(FORMULA, df, groups="subj", re_formula="1 + time").fit(reml=False)
    held.save(tmp_path / "held")
    back = dmixed.load(tmp_path / "held")
    np.testing.assert_array_equal(back.held, held.held)
    assert back.freepat is None
    assert dmixed.compare_lr_test(back, full) == dmixed.compare_lr_test(held, full)
    table = dmixed.anova(back, full, refit=False)
    assert list(table["Df"].iloc[1:]) == [1.0]
    assert table["npar"].tolist() == dmixed.anova(held, full, refit=False)["npar"].tolist()
    # a fit without free saves no mask
    full.save(tmp_path / "full")
    assert dmixed.load(tmp_path / "full").held is None


def test_results_saved_without_the_mask_load(visits, tmp_path):
    """Results saved before the mask was recorded (no ``held`` in estimates.json) load,
    with no mask."""
    import json

    from dmixed.io.results_dir import ESTIMATES_SHA256, estimates_sha256

    _, held, _ = visits
    held.save(tmp_path / "old")
    path = tmp_path / "old" / "estimates.json"
    doc = json.loads(path.read_text())
    sections = [v for v in doc.values() if isinstance(v, dict) and "held" in v]
    assert sections
    for section in sections:
        del section["held"]
    doc[ESTIMATES_SHA256] = estimates_sha256(doc)  # as the older dmixed wrote it
    path.write_text(json.dumps(doc))
    back = dmixed.load(tmp_path / "old")
    assert back.held is None
    assert back.llf == held.llf
