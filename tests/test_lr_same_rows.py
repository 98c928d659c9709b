"""Likelihood-ratio tests refuse fits of different rows with the same row count and
response name, and warn where the larger model's likelihood is clearly the lower."""

from __future__ import annotations

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
