"""The optimizer: quasi-Newton iterations handing over to the exact Newton polish."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dmixed
from dmixed import MixedLM, optimize
from dmixed.optimize import BoundaryWarning

from ._synth import make_data
from .test_model import _dyestuff2_like


def _fit(df, **model_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **model_kw)
        return model.fit()


@pytest.mark.parametrize(
    "model_kw",
    [
        {"re_formula": "1 + x1"},
        {"re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}},
    ],
)
def test_handover_to_newton_changes_nothing(monkeypatch, model_kw):
    """BFGS stopping at a scaled gradient of HANDOVER_GTOL and the Newton polish
    finishing gives the optimum BFGS run to the end gives, to 1e-8."""
    df = make_data(n_groups=3000, vc_sd=0.5, seed=8)
    early = _fit(df, **model_kw)
    monkeypatch.setattr(optimize, "HANDOVER_GTOL", 0.0)
    full = _fit(df, **model_kw)
    assert early.converged and full.converged
    assert early.n_evals <= full.n_evals
    assert early.llf == pytest.approx(full.llf, rel=1e-12)
    for name in ("fe_params", "cov_re", "vcomp", "scale", "bse"):
        np.testing.assert_allclose(
            getattr(early, name), getattr(full, name), rtol=1e-8, atol=1e-12, err_msg=name
        )


def test_handover_stops_bfgs_early(monkeypatch):
    """With a generous hand-over threshold BFGS stops after its first iterations and the
    Newton polish alone reaches the same optimum."""
    df = make_data(n_groups=800, seed=2)
    ref = _fit(df, re_formula="1 + x1")
    monkeypatch.setattr(optimize, "HANDOVER_GTOL", 1e-3)
    early = _fit(df, re_formula="1 + x1")
    bfgs = [h for h in early.fit_history if h["method"] == "bfgs"]
    assert len(bfgs) < len([h for h in ref.fit_history if h["method"] == "bfgs"])
    np.testing.assert_allclose(early.cov_re, ref.cov_re, rtol=1e-8)
    np.testing.assert_allclose(early.fe_params, ref.fe_params, rtol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_handover_near_the_boundary(monkeypatch, seed):
    """A variance heading for zero is left to BFGS and the boundary settling, however
    generous the hand-over threshold: the fit still ends exactly on the boundary."""
    y, g = _dyestuff2_like(seed)
    monkeypatch.setattr(optimize, "HANDOVER_GTOL", 1.0)  # any gradient would qualify
    with pytest.warns(BoundaryWarning):
        res = MixedLM(y, np.ones((30, 1)), g).fit()
    assert res.converged
    assert res.cov_re.iloc[0, 0] == 0.0
    assert res.fe_params.iloc[0] == pytest.approx(y.mean(), rel=1e-10)


# --------------------------------------------------------------------------------------
# warm start from a subsample of the groups
# --------------------------------------------------------------------------------------


def _small_warm_start(monkeypatch, min_groups: int = 200, groups: int = 500) -> None:
    monkeypatch.setattr(dmixed.model, "WARM_START_MIN_GROUPS", min_groups)
    monkeypatch.setattr(dmixed.model, "WARM_START_GROUPS", groups)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    "model_kw",
    [
        {"re_formula": "1 + x1"},
        {"re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}},
    ],
)
def test_warm_start_reaches_the_same_optimum_in_fewer_evaluations(
    monkeypatch, caplog, model_kw, reml
):
    df = make_data(n_groups=2000, vc_sd=0.5, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **model_kw)
        cold = model.fit(reml=reml)
        _small_warm_start(monkeypatch)
        with caplog.at_level("DEBUG", logger="dmixed"):
            warm = model.fit(reml=reml)
    assert "warm start from 500 of 2000 groups: used" in caplog.text
    assert warm.n_evals < cold.n_evals
    assert warm.llf == pytest.approx(cold.llf, rel=1e-12)
    for name in ("fe_params", "cov_re", "vcomp", "scale", "bse"):
        np.testing.assert_allclose(
            getattr(warm, name), getattr(cold, name), rtol=1e-8, atol=1e-12, err_msg=name
        )


def test_no_warm_start_with_start_params_or_fixed_parameters(monkeypatch, caplog):
    df = make_data(n_groups=400, seed=6)
    _small_warm_start(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
        with caplog.at_level("DEBUG", logger="dmixed"):
            model.fit(start_params=[1.0, 0.0, 1.0])
            model.fit(method="lbfgs")
    assert "warm start" not in caplog.text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warm_start_declines_near_the_boundary(seed):
    """A subsample whose optimum is a zero variance gives no starting values (BFGS in the
    square-root packing would stall at zero)."""
    y, g = _dyestuff2_like(seed)
    model = MixedLM(y, np.ones((30, 1)), g)
    stats = model.statistics()
    obj = optimize.ProfiledObjective(stats.engine, stats.glob, stats.layout, True, True)
    assert optimize.warm_start(obj, np.array([1.0])) is None


def test_warm_start_gives_a_positive_definite_curvature():
    df = make_data(n_groups=300, seed=1)
    model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    stats = model.statistics()
    obj = optimize.ProfiledObjective(stats.engine, stats.glob, stats.layout, True, True)
    x, hinv = optimize.warm_start(obj, stats.layout.pack(np.eye(2), np.ones(0), True))
    assert np.linalg.eigvalsh(hinv).min() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    np.testing.assert_allclose(x, res.packed_params, rtol=1e-3, atol=1e-4)
