"""Likelihood-ratio tests refuse fits of different rows with the same row count and
response name, and warn where the larger model's likelihood is clearly the lower."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import NotNestedWarning, SpecError


def _frame(n_groups: int = 40, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), 4)
    x = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x + rng.normal(size=n_groups)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"g": [f"G{i:02d}" for i in g], "x": x, "y": y})


@pytest.fixture(scope="module")
def frame():
    return _frame()


def test_same_count_other_values_refused(frame):
    small = dmixed.mixedlm("y ~ 1", frame, groups="g").fit(reml=False)
    other = frame.assign(y=frame["y"].to_numpy()[::-1])
    big = dmixed.mixedlm("y ~ x", other, groups="g").fit(reml=False)
    assert small.nobs == big.nobs
    with pytest.raises(SpecError, match=r"different data \(other response values.*restricted"):
        dmixed.compare_lr_test(small, big)
    with pytest.raises(SpecError, match=r"different data.*model1.*model2"):
        dmixed.anova(small, big)


def test_same_count_other_rows_refused(frame):
    a = dmixed.mixedlm("y ~ 1", frame.iloc[:-8], groups="g").fit(reml=False)
    b = dmixed.mixedlm("y ~ x", frame.iloc[8:], groups="g").fit(reml=False)
    with pytest.raises(SpecError, match="other groups or group sizes"):
        dmixed.compare_lr_test(a, b)


def test_same_rows_pass_and_agree(frame):
    small = dmixed.mixedlm("y ~ 1", frame, groups="g").fit(reml=False)
    # the same rows in another frame object (a copy): the same data
    big = dmixed.mixedlm("y ~ x", frame.copy(), groups="g").fit(reml=False)
    stat, p, df = dmixed.compare_lr_test(small, big)
    assert stat == pytest.approx(2 * (big.llf - small.llf), rel=1e-12)
    assert df == 1 and 0 <= p <= 1
    assert dmixed.anova(small, big)["Chisq"].iloc[1] == pytest.approx(stat, rel=1e-12)


def _fake(llf: float, k: int):
    names = SimpleNamespace(endog_name="y", exog_names=[f"x{i}" for i in range(k)])
    return SimpleNamespace(nobs=100, llf=llf, params=np.zeros(k + 2), reml=False, names=names)


def test_negative_statistic_warned():
    restricted, full = _fake(-100.0, 1), _fake(-150.0, 2)
    with pytest.warns(NotNestedWarning, match=r"-100 < 0.*not nested or not fitted"):
        stat, p, _ = dmixed.compare_lr_test(restricted, full)
    assert stat == 0.0 and p == 1.0
    with pytest.warns(NotNestedWarning, match="model2 has the lower"):
        dmixed.anova(restricted, full, refit=False)
    # rounding of two optimizers' maxima: no warning
    dmixed.compare_lr_test(_fake(-100.0, 1), _fake(-100.0 - 1e-9, 2))


def test_loaded_results_keep_the_digest(frame, tmp_path):
    small = dmixed.mixedlm("y ~ 1", frame, groups="g").fit(reml=False)
    other = frame.assign(y=frame["y"].to_numpy()[::-1])
    big = dmixed.mixedlm("y ~ x", other, groups="g").fit(reml=False)
    big.save(tmp_path / "big")
    back = dmixed.load(tmp_path / "big")
    assert back.data_digest == big.data_digest != small.data_digest
    with pytest.raises(SpecError, match="other response values"):
        dmixed.compare_lr_test(small, back)


def test_fit_makes_no_digest(frame, monkeypatch):
    from dmixed.results import fit_record

    calls = []
    real = fit_record.data_digest
    monkeypatch.setattr(fit_record, "data_digest", lambda rows: calls.append(1) or real(rows))
    small = dmixed.mixedlm("y ~ 1", frame, groups="g").fit(reml=False)
    big = dmixed.mixedlm("y ~ x", frame, groups="g").fit(reml=False)
    small.summary()
    assert calls == []  # the fits (and their summary) never hash the rows
    dmixed.compare_lr_test(small, big)
    assert len(calls) == 2  # the test does, once per fit
    dmixed.compare_lr_test(small, big)
    assert len(calls) == 2  # and keeps it


def test_same_rows_in_another_order_pass(frame):
    small = dmixed.mixedlm("y ~ 1", frame, groups="g").fit(reml=False)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    big = dmixed.mixedlm("y ~ x", shuffled, groups="g").fit(reml=False)
    assert small.data_digest == big.data_digest
    stat, _, _ = dmixed.compare_lr_test(small, big)
    assert stat == pytest.approx(2 * (big.llf - small.llf), rel=1e-12)
    # one response value changed, in the shuffled frame: refused
    changed = shuffled.copy()
    changed.loc[7, "y"] += 1e-9
    other = dmixed.mixedlm("y ~ x", changed, groups="g").fit(reml=False)
    with pytest.raises(SpecError, match="other response values"):
        dmixed.compare_lr_test(small, other)
    # the same values moved between rows of one column (y against its key): refused
    swapped = frame.assign(y=np.roll(frame["y"].to_numpy(), 4))
    moved = dmixed.mixedlm("y ~ x", swapped, groups="g").fit(reml=False)
    with pytest.raises(SpecError, match="other response values"):
        dmixed.compare_lr_test(small, moved)


def test_arrays_in_another_order_pass(frame):
    y, x, g = frame["y"].to_numpy(), frame["x"].to_numpy(), frame["g"].to_numpy()
    order = np.random.default_rng(1).permutation(y.size)
    ones = np.ones((y.size, 1))
    small = dmixed.MixedLM(y, ones, g).fit(reml=False)
    big = dmixed.MixedLM(y[order], np.c_[ones, x[order]], g[order]).fit(reml=False)
    assert small.data_digest == big.data_digest
    dmixed.compare_lr_test(small, big)


def test_boundary_fit_with_an_extra_variance_at_zero_is_not_warned(recwarn):
    # a random slope whose variance is truly 0: the larger fit sits on the boundary,
    # its llf the smaller's up to the optimizers' rounding
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(200), 10)
    x = rng.normal(size=g.size)
    y = 1 + 2 * x + rng.normal(size=200)[g] + 3 * rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    small = dmixed.mixedlm("y ~ x", df, groups="g").fit(reml=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.errors.BoundaryWarning)
        big = dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1 + x").fit(reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotNestedWarning)
        stat, _, _ = dmixed.compare_lr_test(small, big)
        dmixed.anova(small, big)
    assert stat >= 0.0


def test_tolerance_scales_with_the_likelihood():
    # Δℓ = −1e-3 at ℓ ≈ −1e5 (1e-8 relative: rounding) is not warned; at ℓ ≈ −100 it is
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NotNestedWarning)
        dmixed.compare_lr_test(_fake(-1e5, 1), _fake(-1e5 - 1e-3, 2))
    with pytest.warns(NotNestedWarning):
        dmixed.compare_lr_test(_fake(-100.0, 1), _fake(-100.0 - 1e-3, 2))


def test_remove_data_lets_the_rows_go_and_keeps_the_digest(frame):
    """The digest's deferred maker holds the model's rows: ``remove_data`` makes the
    digest first, so the rows are freed and the results still compare."""
    import gc
    import weakref

    model = dmixed.mixedlm("y ~ x", frame.copy(), groups="g")
    rows = weakref.ref(model.rows)
    res = model.fit(reml=False)
    digest_before = dmixed.mixedlm("y ~ x", frame, groups="g").fit(reml=False).data_digest
    res.remove_data()
    del model
    gc.collect()
    assert rows() is None
    assert res.data_digest == digest_before
    small = dmixed.mixedlm("y ~ 1", frame, groups="g").fit(reml=False)
    stat, _, _ = dmixed.compare_lr_test(small, res)
    assert stat == pytest.approx(2 * (res.llf - small.llf), rel=1e-12)


def _crossed(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj, item = np.repeat(np.arange(12), 8), np.tile(np.arange(8), 12)
    x = rng.normal(size=subj.size)
    y = 5 + 0.8 * x + rng.normal(size=12)[subj] + rng.normal(0, 0.7, 8)[item]
    y = y + rng.normal(size=subj.size)
    frame = pd.DataFrame({"subj": [f"S{s:02d}" for s in subj], "item": item, "x": x, "y": y})
    return frame.assign(one=1)


def _one_group(frame: pd.DataFrame):
    vc = {"subj": "0 + C(subj)", "item": "0 + C(item)"}
    return dmixed.mixedlm("y ~ x", frame, groups="one", re_formula="0", vc_formula=vc)


def test_other_groupings_of_the_same_rows_pass(tmp_path):
    """(1|subj) written with groups="subj" against (1|subj) + (1|item) written with one
    group and variance components: one data frame, grouped by other columns."""
    frame = _crossed()
    small = dmixed.mixedlm("y ~ x", frame, groups="subj").fit(reml=False)
    big = _one_group(frame.copy()).fit(reml=False)
    assert small.data_digest != big.data_digest  # the group keys differ
    shared = small.row_digests.keys() & big.row_digests.keys()
    assert shared == {"y", "x:Intercept", "x:x"}
    assert all(small.row_digests[k] == big.row_digests[k] for k in shared)
    assert small.row_digests["g"] == big.row_digests["p:subj"]  # the same split of the rows
    stat, p, df = dmixed.compare_lr_test(small, big)
    assert stat == pytest.approx(2 * (big.llf - small.llf), rel=1e-12)
    assert df == 1 and 0 <= p <= 1
    assert dmixed.anova(small, big)["Chisq"].iloc[1] == pytest.approx(stat, rel=1e-12)
    big.save(tmp_path / "big")  # the response digest is kept by save and load
    assert dmixed.load(tmp_path / "big").row_digests == big.row_digests
    dmixed.compare_lr_test(small, dmixed.load(tmp_path / "big"))


def test_other_groupings_of_other_values_refused():
    frame = _crossed()
    changed = frame.copy()
    changed.loc[3, "y"] += 1e-9
    small = dmixed.mixedlm("y ~ x", changed, groups="subj").fit(reml=False)
    big = _one_group(frame).fit(reml=False)
    with pytest.raises(
        SpecError, match=r"other data row by row \(the response\), and the rows grouped diff"
    ):
        dmixed.compare_lr_test(small, big)
    with pytest.raises(SpecError, match=r"groups 'subj', 12 groups.*groups 'one', 1 group,"):
        dmixed.anova(small, big)
    # other rows of the same count: refused too
    fewer = dmixed.mixedlm("y ~ x", frame.iloc[8:], groups="subj").fit(reml=False)
    other = _one_group(frame.iloc[:-8]).fit(reml=False)
    with pytest.raises(SpecError, match=r"other data row by row \(the response"):
        dmixed.compare_lr_test(fewer, other)


def test_a_grouping_nested_as_a_component_of_the_other_passes():
    """lme4's (1|subj) against (1|site/subj) written with groups="site" and a subj
    component: the smaller model's groups are the larger one's component (its own
    grouping, site, is the larger model's choice), so the rows are the same."""
    frame = _crossed()
    frame["site"] = frame.subj.str[1:].astype(int) // 4  # 3 sites of 4 subjects
    small = dmixed.mixedlm("y ~ x", frame, groups="subj").fit(reml=False)
    vc = {"subj": "0 + C(subj)"}
    big = dmixed.mixedlm("y ~ x", frame, groups="site", re_formula="1", vc_formula=vc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.BoundaryWarning)  # a site variance at 0
        big = big.fit(reml=False)
    stat, p, df = dmixed.compare_lr_test(small, big)
    assert df == 1 and stat == max(0.0, 2 * (big.llf - small.llf))
    # the same nesting with the subject labels moved to other rows is other data
    moved = frame.assign(subj=np.random.default_rng(2).permutation(frame.subj.to_numpy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.BoundaryWarning)
        other = dmixed.mixedlm("y ~ x", moved, groups="site", re_formula="1", vc_formula=vc)
        other = other.fit(reml=False)
    with pytest.raises(SpecError, match="no grouping or component of"):
        dmixed.compare_lr_test(small, other)


def test_other_groupings_without_digests_refused(monkeypatch):
    """Fits whose rows are not in memory hold no digest: grouped differently, they
    cannot be compared and are refused, saying so."""
    frame = _crossed()
    small = dmixed.mixedlm("y ~ x", frame, groups="subj").fit(reml=False)
    big = _one_group(frame).fit(reml=False)
    # as results saved before it was recorded
    monkeypatch.setattr(type(big), "row_digests", property(lambda self: None))
    with pytest.raises(SpecError, match="group the rows differently and their rows cannot"):
        dmixed.compare_lr_test(small, big)


@pytest.mark.parametrize("change", ["x", "subj", "y"])
def test_other_groupings_of_rows_moved_refused(change):
    """Grouped by different columns, a covariate, a group label or a response moved to
    other rows is other data, though the set of responses and weights is the same."""
    frame = _crossed()
    moved = frame.copy()
    moved[change] = np.random.default_rng(1).permutation(frame[change].to_numpy())
    small = dmixed.mixedlm("y ~ x", frame, groups="subj").fit(reml=False)
    big = _one_group(moved).fit(reml=False)
    what = {
        "x": "column 'x'",
        "subj": "the rows that share a group of restricted are no grouping or component of "
        "full, nor the other way round",
        "y": "the response",
    }[change]
    with pytest.raises(SpecError, match=rf"other data row by row \({what}\)"):
        dmixed.compare_lr_test(small, big)
    with pytest.raises(SpecError, match="row by row"):
        dmixed.anova(big, small)


def test_other_groupings_of_a_reordered_frame_refused():
    """The same rows in another order cannot be matched to the rows of a fit grouped by
    another column: refused, saying that the row order counts."""
    frame = _crossed()
    small = dmixed.mixedlm("y ~ x", frame, groups="subj").fit(reml=False)
    big = _one_group(frame.iloc[::-1].reset_index(drop=True)).fit(reml=False)
    with pytest.raises(SpecError, match="so a reordered frame is refused too"):
        dmixed.compare_lr_test(small, big)


@pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")
def test_three_fits_compare_the_fits_grouped_alike():
    """A third fit grouped by another column keeps the row-digest check between the
    fits grouped alike (whose responses sit under other group keys)."""
    frame = _crossed()
    moved = frame.assign(y=np.random.default_rng(2).permutation(frame["y"].to_numpy()))
    a = dmixed.mixedlm("y ~ x", frame, groups="subj").fit(reml=False)
    b = dmixed.mixedlm("y ~ 1", moved, groups="subj").fit(reml=False)
    c = _one_group(frame).fit(reml=False)
    assert len(dmixed.anova(a, c)) == 2  # a and c alone: the same rows
    for fits in [(a, b), (a, c, b), (c, b, a), (b, c, a)]:
        with pytest.raises(SpecError, match="row digests"):
            dmixed.anova(*fits)


def test_array_fits_grouped_by_other_arrays_refused():
    """Fits built from arrays all name their grouping 'Group': grouped by other arrays,
    they are refused as other groups (the documented limit of the row comparison)."""
    frame = _crossed()
    exog = np.column_stack([np.ones(len(frame)), frame["x"]])
    y = frame["y"].to_numpy()
    by_subj = dmixed.MixedLM(y, exog, groups=frame["subj"].to_numpy()).fit(reml=False)
    by_item = dmixed.MixedLM(y, exog, groups=frame["item"].to_numpy()).fit(reml=False)
    with pytest.raises(SpecError, match=r"other groups or group sizes.*'Group', 12 groups"):
        dmixed.anova(by_subj, by_item)


def test_swapped_arguments_are_named_as_such():
    full, restricted = _fake(-90.0, 3), _fake(-100.0, 1)
    with pytest.raises(SpecError, match=r"arguments look swapped: the restricted fit has 2 more"):
        dmixed.compare_lr_test(full, restricted)
    with pytest.raises(SpecError, match=r"compare_lr_test\(restricted, full\)"):
        dmixed.compare_lr_test(full, restricted)
    with pytest.raises(SpecError, match="both estimate the same number"):
        dmixed.compare_lr_test(_fake(-90.0, 1), restricted)
    assert dmixed.compare_lr_test(restricted, full)[2] == 2
