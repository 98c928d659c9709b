"""lme4's VarCorr: variances, standard deviations, correlations and σ̂."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.results.varcorr import VARCORR_COLUMNS, varcorr_frame

from .._synth import make_data


@pytest.fixture(scope="module")
def fit():
    df = make_data(n_groups=40, vc_sd=0.5, seed=11)
    df["x3"] = np.random.default_rng(2).normal(size=len(df))
    df["y"] += df.x3 * np.random.default_rng(3).normal(size=40)[df.g.to_numpy()]
    return dmixed.mixedlm(
        "y ~ x1", df, groups="g", re_formula="1 + x1 + x3", vc_formula={"sub": "0 + C(sub)"}
    ).fit()


def test_varcorr_frame_is_lme4s_layout(fit):
    vc = fit.varcorr()
    assert list(vc.columns) == VARCORR_COLUMNS
    names = list(fit.names.exog_re_names)
    cov = fit.cov_re.to_numpy()
    k = len(names)
    # the terms in lme4's order (decreasing levels: the component's (g, sub) pairs
    # outnumber the groups); within g's, variances then covariances (lower triangle by
    # column); σ last
    assert len(vc) == k + k * (k - 1) // 2 + fit.k_vc + 1
    # lme4 names a component's term (1 | g:sub) "g:sub"
    assert list(vc.grp) == ["g:sub"] + ["g"] * (k + k * (k - 1) // 2) + ["Residual"]
    g_rows = vc[vc.grp == "g"]
    var = g_rows.iloc[:k]
    np.testing.assert_allclose(var.vcov, np.diag(cov))
    np.testing.assert_allclose(var.sdcor, np.sqrt(np.diag(cov)))
    assert var.var2.isna().all() and list(var.var1) == names
    pairs = g_rows.iloc[k:]
    for row in pairs.itertuples():
        j, m = names.index(row.var1), names.index(row.var2)
        assert row.vcov == pytest.approx(cov[m, j])
        assert row.sdcor == pytest.approx(cov[m, j] / np.sqrt(cov[j, j] * cov[m, m]))
        assert -1 <= row.sdcor <= 1
    comp = vc[vc.grp.isin([f"g:{name}" for name in fit.names.vc_names])]
    assert len(comp) == fit.k_vc
    np.testing.assert_allclose(comp.vcov, fit.vcomp)
    last = vc.iloc[-1]
    assert last.grp == "Residual" and pd.isna(last.var1)
    assert last.vcov == pytest.approx(fit.scale) and last.sdcor == pytest.approx(np.sqrt(fit.scale))


def test_summary_prints_sds_and_correlations(fit):
    text = str(fit.summary())
    block = text.split("Random effects:\n")[1].splitlines()
    assert block[0].split() == ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    vc = fit.varcorr()
    corr_x1 = vc[(vc.var1 == "g") & (vc.var2 == "x1")].sdcor.iloc[0]
    x1_line = next(line for line in block if line.split()[0] == "x1")
    assert x1_line.split()[-1] == f"{corr_x1:.2f}"
    assert any(line.split()[0] == "g:sub" for line in block)  # lme4's print
    resid = next(line for line in block if line.startswith("Residual"))
    assert resid.split()[-1] == f"{np.sqrt(fit.scale):.4g}"
    assert "<pre>Random effects:" in fit.summary().as_html()


def test_zero_variance_has_no_correlation(fit):
    cov = np.diag([1.0, 0.0, 0.25])
    cov[2, 0] = cov[0, 2] = 0.1
    state = dataclasses.replace(fit.to_state(), cov_re=cov)
    vc = varcorr_frame(state)
    vc = vc[vc.grp == "g"]
    assert vc.sdcor.iloc[1] == 0
    assert np.isnan(vc.sdcor.iloc[3])  # (g, x1): x1's variance is 0
    assert vc.sdcor.iloc[4] == pytest.approx(0.1 / 0.5)  # (g, x3)
    assert np.isnan(vc.sdcor.iloc[5])  # (x1, x3)


def test_missing_names_are_nan_in_every_row():
    """lme4's NA: ``var1``/``var2`` held None in some frames and NaN in others,
    depending on what pandas inferred for the column."""
    df = make_data(n_groups=15, vc_sd=0.8, seed=23)
    res = dmixed.mixedlm("y ~ x1", df, groups="g", vc_formula={"sub": "0 + C(sub)"}).fit()
    frame = res.varcorr()
    for c in ("var1", "var2"):
        assert frame[c].isna().all() and not any(v is None for v in frame[c])


def _crossed(n_subj=30, n_item=5, seed=5):
    """A full crossing of subjects and items (statsmodels' idiom: one constant group)
    whose items' means are equal, so the items' variance is estimated at zero."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    y = rng.normal(size=n_subj)[subj] + rng.normal(size=subj.size)
    y -= pd.Series(y).groupby(item).transform("mean").to_numpy()  # no item effect at all
    return pd.DataFrame({"y": y, "subj": subj, "item": item, "one": 1})


def test_one_group_components_are_lme4s_crossed_terms():
    """lme4's ``(1|subj) + (1|item)``: with a single group ``one:subj`` has the levels of
    ``subj`` alone, so the terms are named ``subj`` and ``item`` (in the varcorr frame
    and the summary's block), not ``one:subj`` and ``one:item``."""
    df = _crossed()
    vcf = {"subj": "0 + C(subj)", "item": "0 + C(item)"}
    with pytest.warns(dmixed.errors.BoundaryWarning, match="zero variance: item"):
        res = dmixed.mixedlm("y ~ 1", df, groups="one", vc_formula=vcf).fit()
    vc = res.varcorr()
    # lme4's order: decreasing number of levels (30 subjects, 5 items)
    assert list(vc.grp) == ["subj", "item", "Residual"]
    np.testing.assert_allclose(vc.vcov.iloc[:2], res.vcomp[[1, 0]])  # vc_names sorted
    block = str(res.summary()).split("Random effects:\n")[1].splitlines()
    assert [line.split()[0] for line in block[1:3]] == ["subj", "item"]
    # the variance at zero by the warning's name; the positional label kept
    assert res.optimizer.boundary == ["vc:0"] and res.boundary == ["vc:0"]
    assert res.boundary_names == ["item"]


def test_one_group_with_random_effects_keeps_the_components_prefix():
    """One real group with a random slope and a component named as the group column:
    the component keeps ``g:g``, or it would print as the group's own term ``g``."""
    rng = np.random.default_rng(1)
    n = 200
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n)})
    df["c"], df["g"] = rng.integers(0, 8, n), 0
    df["y"] += rng.normal(size=8)[df.c]
    model = dmixed.mixedlm(
        "y ~ x", df, groups="g", re_formula="0 + x", vc_formula={"g": "0 + C(c)"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.errors.DmixedWarning)
        res = model.fit(check_nobs="ignore")
    # lme4's order: the component's 8 levels before the group's one
    assert list(res.varcorr().grp) == ["g:g", "g", "Residual"]
