"""Moment starting values (MIVQUE0) and the Newton steps that start from them."""

from __future__ import annotations

import warnings
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed import MixedLM, kernels
from dmixed.errors import BoundaryWarning, DataError
from dmixed.fit import start as start_module
from dmixed.fit.coordinates import weight_factor
from dmixed.fit.profiled import ProfiledObjective
from dmixed.fit.start import (
    START_FLOOR,
    moment_gram,
    moment_start,
    moment_start_packed,
    start_value,
    weighted_moment_start,
)

from .._synth import design, make_data

SLOPE = {"re_formula": "1 + x1"}
VC = {"re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}}


def _model(df, model_kw, weights=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dmixed.mixedlm("y ~ x1 + x2", df, groups="g", weights=weights, **model_kw)


def _moment_estimate(model):
    stats = model.statistics()
    # the moment sums come in the engine's coordinates: the layout the optimizer uses
    return moment_start(stats.engine.moments(), stats.glob, stats.fit_layout)


@pytest.mark.parametrize(
    ("model_kw", "sds"),
    [(SLOPE, {"intercept_sd": 1.0, "slope_sd": 0.5}), (VC, {"slope_sd": 0.0, "vc_sd": 0.7})],
)
def test_moment_estimates_are_close_to_the_mle(model_kw, sds):
    """On 4000 groups the moment estimates are within sampling error of the REML
    estimates (their standard errors are a few percent here)."""
    df = make_data(n_groups=4000, min_size=5, max_size=30, seed=3, **sds)
    model = _model(df, model_kw)
    psi, tau = _moment_estimate(model)
    res = model.fit()
    ref_psi = res.cov_re.to_numpy() / res.scale
    np.testing.assert_allclose(np.diag(psi), np.diag(ref_psi), rtol=0.1)
    assert abs(psi[0, -1] - ref_psi[0, -1]) < 0.05
    if tau.size:
        np.testing.assert_allclose(tau, res.vcomp / res.scale, rtol=0.1)


def test_negative_estimates_are_raised_to_the_floor():
    """A slope variance that is truly zero is estimated about zero, sometimes below: the
    start is moved strictly inside the parameter space."""
    df = make_data(n_groups=500, seed=5, slope_sd=0.0, intercept_sd=2.0)
    psi, _ = _moment_estimate(_model(df, SLOPE))
    eig = np.linalg.eigvalsh(psi)
    assert eig.min() >= START_FLOOR * max(1.0, eig.max()) * (1 - 1e-9)
    assert psi[0, 0] > 1.0  # the intercept variance (4 / σ² = 4) is still seen


def test_no_variance_gives_no_moment_start():
    """No group effect at all and estimates ≤ 0: no moment start (the default is used)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(200), 10)
    y = rng.normal(size=g.size)
    y -= (np.bincount(g, y) / 10)[g]  # group means exactly zero: between-variance < 0
    model = MixedLM(y, np.ones((g.size, 1)), g)
    assert _moment_estimate(model) is None


def test_estimates_do_not_depend_on_the_scale_of_y():
    df = make_data(n_groups=300, seed=7)
    a = _moment_estimate(_model(df, SLOPE))
    df2 = df.assign(y=1000.0 * df["y"])
    b = _moment_estimate(_model(df2, SLOPE))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-8)


@pytest.mark.parametrize("model_kw", [SLOPE, VC])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weights", [None, "w"])
def test_the_start_changes_nothing_but_the_cost(monkeypatch, model_kw, reml, weights):
    """From the moment start (Newton steps) and from the default start (BFGS), the fit
    reaches the same optimum, to 1e-8, in fewer evaluations."""
    df = make_data(n_groups=1500, vc_sd=0.5, seed=11)
    model = _model(df, model_kw, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = model.fit(reml=reml)
        monkeypatch.setattr(MixedLM, "start_from_moments", staticmethod(lambda stats, layout: None))
        slow = model.fit(reml=reml)
    assert fast.optimizer_methods == ["newton"]
    assert "bfgs" in slow.optimizer_methods
    assert fast.converged and slow.converged
    assert fast.n_evals < slow.n_evals
    assert fast.llf == pytest.approx(slow.llf, rel=1e-12)
    for name in ("fe_params", "cov_re", "vcomp", "scale", "bse"):
        # to 1e-8 of each array's scale: a covariance 2,000 times smaller than the
        # variances beside it is resolved to the optimum's precision, not to 1e-8 of itself
        want = np.asarray(getattr(slow, name))
        np.testing.assert_allclose(
            getattr(fast, name),
            want,
            rtol=1e-8,
            atol=1e-8 * np.max(np.abs(want), initial=1e-4),
            err_msg=name,
        )
    assert [h["method"] for h in fast.fit_history][:-1] == ["newton"] * (len(fast.fit_history) - 1)


def test_explicit_start_params_and_free_skip_the_moment_start(monkeypatch):
    calls = []
    original = MixedLM.start_from_moments

    def spy(stats, layout):
        calls.append(1)
        return original(stats, layout)

    monkeypatch.setattr(MixedLM, "start_from_moments", staticmethod(spy))
    df = make_data(n_groups=200, seed=1)
    model = _model(df, SLOPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(start_params=[1.0, 0.0, 1.0])
        model.fit(free=np.ones(6))
        assert calls == []
        model.fit()
    assert calls == [1]


def test_wide_random_designs_keep_the_default_start(monkeypatch):
    monkeypatch.setattr(kernels, "MOMENT_MAX_R", 1)
    df = make_data(n_groups=200, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _model(df, SLOPE).fit()
    assert "newton" not in res.optimizer_methods


def test_boundary_optimum_from_a_moment_start():
    """A slope variance whose optimum is almost zero: the Newton steps stop (linear, not
    quadratic, convergence) and BFGS takes over."""
    df = make_data(n_groups=2000, min_size=10, max_size=30, seed=4, slope_sd=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _model(df, SLOPE).fit()
    assert res.converged
    assert res.cov_re.iloc[1, 1] < 1e-3 * res.scale
    newton = [h for h in res.fit_history if h["method"] == "newton"]
    assert len(newton) < 3


def test_three_correlated_random_effects(monkeypatch):
    """A start whose first Newton step is slow (the gradient only halves) before the
    quadratic phase: one slow step is allowed, and the Newton steps finish the fit."""
    rng = np.random.default_rng(5)
    n_groups = 500
    g = np.repeat(np.arange(n_groups), 12)
    x1, x2 = rng.normal(size=(2, g.size))
    factor = np.array([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.5, 0.3, 0.2]])
    b = rng.normal(size=(n_groups, 3)) @ factor.T
    z = np.column_stack([np.ones(g.size), x1, x2])
    y = (z * b[g]).sum(axis=1) + x1 + rng.normal(size=g.size)
    model = MixedLM(y, z, g, exog_re=z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = model.fit()
        monkeypatch.setattr(MixedLM, "start_from_moments", staticmethod(lambda stats, layout: None))
        slow = model.fit()
    assert fast.optimizer_methods == ["newton"]
    assert fast.n_evals < slow.n_evals
    assert fast.llf == pytest.approx(slow.llf, rel=1e-12)
    np.testing.assert_allclose(fast.cov_re, slow.cov_re, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fast.fe_params, slow.fe_params, rtol=1e-8)


def _weighted_reference(psi0, stats, layout):
    """The weighted moment equations of :func:`weighted_moment_start` group by group
    (its docstring's formulas, each group's ``M_i = (I + A_i Ψ*₀)⁻¹`` by ``inv``)."""
    glob = stats.glob
    p = glob.k_fe
    w = np.append(-np.linalg.solve(glob.xyxy[:p, :p], glob.xyxy[:p, p]), 1.0)
    zz, zxy = stats.engine.block.dense()  # (G, r, r), (G, r, k)
    basis = layout.basis()
    m = basis.shape[0]
    lhs, rhs = np.zeros((m + 1, m + 1)), np.zeros(m + 1)
    for a, f in zip(zz, zxy, strict=True):
        mi = np.linalg.inv(np.eye(layout.r) + a @ psi0)
        s = mi @ a
        u = mi @ (f @ w)
        for j in range(m):
            for k in range(m):
                lhs[j, k] += np.trace(basis[j] @ s @ basis[k] @ s)
            lhs[j, m] += np.trace(basis[j] @ (s - s @ psi0 @ s))
            rhs[j] += u @ basis[j] @ u
            lhs[m, j] += np.trace(basis[j] @ a)
    lhs[m, m] = glob.n - p
    rhs[m] = w @ glob.xyxy @ w
    sol = np.linalg.solve(lhs, rhs)
    theta = sol[:m] / sol[m]
    rows, cols = layout.tril()
    psi = np.zeros((layout.r, layout.r))
    psi[rows, cols] = theta
    psi[cols, rows] = theta
    return psi


@pytest.mark.parametrize("q", [2, 3])
def test_weighted_moment_estimates_are_the_equations_group_by_group(q):
    """The weighted moment step (the closed form of two coordinates; batched solves for
    three) solves the equations of its docstring as written group by group."""
    rng = np.random.default_rng(q)
    g = np.repeat(np.arange(120), rng.integers(2, 15, 120))
    x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 3))])
    b = rng.normal(size=(120, q)) * [1.0, 0.6, 0.4][:q]
    y = x @ [1.0, 2.0, 3.0, 4.0] + (b[g] * x[:, :q]).sum(axis=1) + rng.normal(size=g.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = MixedLM(y, x, g, exog_re=x[:, :q]).statistics()
    layout = stats.fit_layout
    mom = stats.engine.moments()
    psi0, _ = moment_start(mom, stats.glob, layout)
    chunks = list(stats.engine.block.chunks())
    psi, tau = weighted_moment_start(psi0, chunks, mom, stats.glob, layout)
    assert tau.size == 0
    np.testing.assert_allclose(psi, _weighted_reference(psi0, stats, layout), rtol=1e-10)


def test_weighted_moment_estimates_are_closer_to_the_optimum():
    """On groups of 2 to 40 rows the weighted estimates are nearer the REML estimate
    of Ψ* than the unweighted ones (which weight the large groups too much)."""
    df = make_data(n_groups=1000, min_size=2, max_size=40, seed=8, slope_sd=0.7)
    model = _model(df, SLOPE)
    stats = model.statistics()
    layout = stats.fit_layout
    mom = stats.engine.moments()
    psi0, _ = moment_start(mom, stats.glob, layout)
    psi, _ = weighted_moment_start(psi0, list(stats.engine.block.chunks()), mom, stats.glob, layout)
    res = model.fit()
    # the REML estimate in the statistics' coordinates (Ψ̃* = A Ψ* A'), the start's
    a = stats.columns.psi_matrix()
    ref = a @ (res.cov_re.to_numpy() / res.scale) @ a.T
    assert np.linalg.norm(psi - ref) < 0.5 * np.linalg.norm(psi0 - ref)


def test_the_weighted_start_saves_newton_steps(monkeypatch):
    """The model of benchmarks/bench_core.py (groups of 10, random intercept and slope):
    from the weighted estimates the Newton steps reach the same optimum in one step
    fewer than from the unweighted ones."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(200), 10)
    x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 2))])
    b = rng.normal(size=(200, 2)) * [1.0, 0.5]
    y = x @ [1.0, 2.0, 3.0] + b[g, 0] + b[g, 1] * x[:, 1] + rng.normal(size=g.size)
    model = MixedLM(y, x, g, exog_re=x[:, :2].copy())
    weighted = model.fit()
    monkeypatch.setattr(start_module, "WEIGHTED_MIN_Q", 99)
    plain = model.fit()
    assert weighted.optimizer_methods == plain.optimizer_methods == ["newton"]
    assert weighted.n_evals == plain.n_evals - 1
    assert weighted.llf >= plain.llf - 1e-12 * abs(plain.llf)
    np.testing.assert_allclose(weighted.params, plain.params, rtol=1e-8)
    np.testing.assert_allclose(weighted.bse, plain.bse, rtol=1e-7)


def test_a_random_intercept_and_a_cluster_keep_the_unweighted_estimates():
    """A random intercept alone, and moment sums that come without the per-group
    statistics (a cluster's engine), keep the estimates of :func:`moment_start`."""
    df = make_data(n_groups=300, seed=2)
    for model_kw in ({"re_formula": "1"}, SLOPE):
        stats = _model(df, model_kw).statistics()
        layout = stats.fit_layout
        mom = stats.engine.moments()
        psi, tau = moment_start(mom, stats.glob, layout)
        plain = layout.pack(psi, tau, use_sqrt=True)
        sums_only = moment_start_packed(lambda mom=mom: mom, stats.glob, layout)
        np.testing.assert_array_equal(sums_only, plain)
        held = moment_start_packed(stats.engine.moments, stats.glob, layout, stats.engine.block)
        assert np.array_equal(held, plain) == (layout.k_re == 1)
        # the per-group statistics not handed on: the estimates are not weighted
        unheld = moment_start_packed(stats.engine.moments, stats.glob, layout)
        np.testing.assert_array_equal(unheld, plain)


@pytest.mark.parametrize(
    "model_kw",
    [{"re_formula": "1"}, SLOPE, {"re_formula": "1 + x1 + x2"}, VC],
    ids=["q1", "q2", "q3", "vc"],
)
def test_the_packed_start_is_the_two_estimates_made_apart_bit_for_bit(model_kw):
    """:func:`moment_start_packed` (one OLS solve and one weights' unit for both
    estimates, the square-root packing's factor without ``np.linalg``'s wrapper) gives
    the bits of :func:`moment_start`, then :func:`weighted_moment_start` from it where
    the groups are weighted, each making its own, packed by ``Layout.pack``."""
    df = make_data(n_groups=150, seed=5)
    df.loc[df.index[::7], "y"] *= -1.0  # not a design the estimates find exactly
    stats = _model(df, model_kw).statistics()
    layout = stats.fit_layout
    mom = stats.engine.moments()
    block = getattr(stats.engine, "block", None)
    estimate = moment_start(mom, stats.glob, layout)
    assert estimate is not None
    if layout.k_re >= 2 and not layout.k_vc:
        chunks = list(block.chunks())
        estimate = weighted_moment_start(estimate[0], chunks, mom, stats.glob, layout)
    expected = layout.pack(*estimate, use_sqrt=True)
    got = moment_start_packed(stats.engine.moments, stats.glob, layout, block)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_start_value_is_the_evaluation_s_llf(reml, use_sqrt):
    """ℓ alone (the in-process engine's value round trip) is the full evaluation's ℓ bit
    for bit, −inf where that is (outside the parameter space), counted as an evaluation
    and not cached."""
    df = make_data(n_groups=40, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1").statistics()
    rng = np.random.default_rng(3)
    points = [rng.normal(size=3) for _ in range(6)] + [np.array([1.0, 0.0, 1.0])]
    if not use_sqrt:
        points.append(np.array([-1.0, 0.0, 1.0]))  # Ψ* indefinite: outside the space
    for packed in points:
        obj = ProfiledObjective(stats.engine, stats.glob, stats.layout, reml, use_sqrt)
        got = start_value(obj, packed)
        first = obj.n_evals
        want = obj.evaluate(packed).llf
        assert got == want
        assert obj.n_evals == 2 * first  # counted as evaluate counts; not cached


def _crossed_frame(seed: int = 0, n: int = 3000) -> pd.DataFrame:
    """20 groups, each holding most of 12 levels of ``s`` (wide enough that the
    components are held crossed, one slot each)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"g": rng.integers(0, 20, n), "s": rng.integers(0, 12, n), "x": rng.normal(size=n)}
    )
    df["y"] = df["x"] + rng.normal(size=n) + rng.normal(size=12)[df["s"]]
    return df


@pytest.mark.parametrize("source", ["pandas", "dask"])
@pytest.mark.parametrize("crossed", [False, True])
@pytest.mark.parametrize("relabel", [False, True])
def test_components_equal_in_value_under_other_names_are_refused(source, crossed, relabel):
    """One factor under two names (or relabelled in another order) makes two components
    whose variances trade at one likelihood: refused before the optimizer, naming both,
    whether the components are held padded or crossed, from pandas or Dask."""
    if crossed:
        df = _crossed_frame()
    else:
        df = make_data(n_groups=30, max_size=20, vc_sd=0.7, seed=4).rename(
            columns={"sub": "s", "x1": "x"}
        )
    df["s2"] = (df["s"].astype(str) + "z").map(lambda v: v[::-1]) if relabel else df["s"]
    data = df
    if source == "dask":
        dd = pytest.importorskip("dask.dataframe")
        data = dd.from_pandas(df, npartitions=3)
    vc = {"a": "0 + C(s)", "b": "0 + C(s2)"}
    model = dmixed.mixedlm("y ~ x", data, groups="g", vc_formula=vc)
    assert model.statistics().fit_layout.r <= kernels.MOMENT_MAX_R
    with pytest.raises(DataError, match="variance components 'a' and 'b' have equal"):
        model.fit()


def _padded_frame(seed: int, s2) -> pd.DataFrame:
    """40 groups holding five levels of ``s`` each, and ``s2 = s2(s, rng)``."""
    rng = np.random.default_rng(seed)
    n = 2000
    df = pd.DataFrame({"g": rng.integers(0, 40, n), "s": rng.integers(0, 5, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = df["x"] + rng.normal(size=n) + rng.normal(size=5)[df["s"]]
    df["s2"] = s2(df["s"], rng)
    return df


def _padded_model(df: pd.DataFrame, source: str, client):
    """The two components of ``s`` and ``s2`` held padded (ten columns: too wide for
    the moment sums, too narrow to be held crossed), in this process or on ``client``'s
    workers; ``(model, fit arguments)``."""
    vc = {"a": "0 + C(s)", "b": "0 + C(s2)"}
    if source == "pandas":
        model, kw, engine = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula=vc), {}, "Local"
    else:
        dd = pytest.importorskip("dask.dataframe")
        data = dd.from_pandas(df, npartitions=3)
        model = dmixed.mixedlm("y ~ x", data, groups="g", vc_formula=vc)
        kw, engine = {"client": client, "engine": "distributed"}, "Dask"
    stats = model.statistics(**kw)
    assert type(stats.engine).__name__ == f"{engine}Engine"
    assert not getattr(stats.engine, "collapsed_vc", False)
    assert stats.fit_layout.r > kernels.MOMENT_MAX_R
    return model, kw


@pytest.mark.parametrize("source", ["pandas", "dask"])
def test_components_equal_in_value_held_padded_wider_than_the_moment_sums_are_refused(
    source, request
):
    """Ten padded columns: the padded statistics decide, in this process or where they
    are held on a cluster (one map over the blocks there), with the same message."""
    df = _padded_frame(3, lambda s, rng: (s * 3) % 5)
    client = request.getfixturevalue("client") if source == "dask" else None
    model, kw = _padded_model(df, source, client)
    with pytest.raises(DataError, match="variance components 'a' and 'b' have equal"):
        model.fit(**kw)


def test_components_distinct_held_padded_on_a_cluster_are_fitted_as_in_process(client):
    """Two distinct components held padded on a cluster pass the check (one map over
    the blocks) and fit as the same statistics do in this process."""
    df = _padded_frame(5, lambda s, rng: rng.integers(0, 5, len(s)))
    fits = []
    for source in ("pandas", "dask"):
        model, kw = _padded_model(df, source, client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BoundaryWarning)  # one of them may end at zero
            fits.append(model.fit(**kw))
    local, dask = fits
    assert np.isfinite(dask.llf) and len(dask.vcomp) == 2
    # both start from the moment estimates of one slot per component (one map over the
    # blocks on the cluster), not from statsmodels' Ψ* = I, τ* = 1
    assert not np.allclose(local.optimizer.initial, 1.0)
    np.testing.assert_allclose(dask.optimizer.initial, local.optimizer.initial, rtol=1e-10)
    np.testing.assert_allclose(dask.llf, local.llf, rtol=1e-10)
    np.testing.assert_allclose(dask.vcomp, local.vcomp, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("source", ["pandas", "dask"])
def test_a_component_of_one_level_per_group_is_refused_beside_the_random_intercept(source):
    """A component of one level per group is the random intercept under another name
    (``M_i = 1 1'``): refused before the optimizer, naming both, as two equal
    components are; with other random effects too (a slope, another component)."""
    df = _crossed_frame(seed=3)
    df["c"] = "c" + df["g"].astype(str)
    data = df
    if source == "dask":
        dd = pytest.importorskip("dask.dataframe")
        data = dd.from_pandas(df, npartitions=3)
    for re_formula, vc in [
        ("1", {"c": "0 + C(c)"}),
        ("1 + x", {"c": "0 + C(c)", "s": "0 + C(s)"}),
    ]:
        model = dmixed.mixedlm("y ~ x", data, groups="g", re_formula=re_formula, vc_formula=vc)
        with pytest.raises(DataError, match="component 'c' has.*the random intercept 'g'"):
            model.fit()


def test_a_component_equal_to_the_intercept_held_padded_wider_than_the_moment_sums():
    """Ten padded columns and a component of one level per group: the padded
    statistics in this process decide, as for two equal components."""
    rng = np.random.default_rng(4)
    n = 2000
    df = pd.DataFrame({"g": rng.integers(0, 40, n), "s": rng.integers(0, 5, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = df["x"] + rng.normal(size=n) + rng.normal(size=40)[df["g"]]
    df["s2"] = rng.integers(0, 5, n)
    df["c"] = df["g"] * 10
    vc = {"a": "0 + C(s)", "b": "0 + C(s2)", "c": "0 + C(c)"}
    model = dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1", vc_formula=vc)
    stats = model.statistics()
    assert type(stats.engine).__name__ == "LocalEngine"
    assert stats.fit_layout.r > kernels.MOMENT_MAX_R
    with pytest.raises(DataError, match="component 'c' has.*the random intercept 'g'"):
        model.fit()


@pytest.mark.parametrize("scale", [1.0, -2.0])
def test_a_component_equal_to_a_random_slope_is_refused_naming_the_slope(scale):
    """A component of one column equal (or proportional, of either sign) to the random
    slope ``x`` in every group trades its variance with ``Ψ_xx`` (``M_i = c x_i x_i'``):
    refused, naming the slope, beside a random intercept the component is not."""
    df = _crossed_frame(seed=5)
    df["w"] = scale * df["x"]
    vc = {"c": "0 + w"}
    model = dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1 + x", vc_formula=vc)
    with pytest.raises(
        DataError, match=r"component 'c' has.*the random effect 'x' \(or a multiple of it\)"
    ):
        model.fit()


def test_a_component_equal_to_the_intercept_in_only_some_groups_is_fitted():
    """A component of one level in half the groups and two in the others is not the
    random intercept under another name: the model is identified and fitted."""
    df = _crossed_frame(seed=6)
    split = np.where(df["g"] < 10, 0, df["s"] % 2)
    df["c"] = df["g"].astype(str) + "-" + pd.Series(split, index=df.index).astype(str)
    rng = np.random.default_rng(6)
    effects = dict(zip(sorted(df["c"].unique()), rng.normal(size=df["c"].nunique()), strict=True))
    df["y"] += df["c"].map(effects) + rng.normal(size=20)[df["g"]]
    model = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula={"c": "0 + C(c)"})
    assert model.fit().vcomp.shape == (1,)


def test_exog_vc_matrices_proportional_across_groups_are_refused():
    """statsmodels' exog_vc: the same indicator columns in another order, scaled by 2."""
    df = _crossed_frame(seed=1)
    g = df["g"].to_numpy()
    eye = np.eye(12)
    a = {k: eye[df["s"][g == k]] for k in np.unique(g)}
    b = {k: 2.0 * eye[(df["s"][g == k] * 7) % 12] for k in np.unique(g)}
    exog = np.column_stack([np.ones(len(df)), df["x"]])
    model = MixedLM(df["y"].to_numpy(), exog, g, exog_vc={"a": a, "b": b})
    with pytest.raises(DataError, match="'a' and 'b' have equal"):
        model.fit()


def test_components_differing_in_one_row_are_fitted():
    """One row apart the two variances are identified (weakly): no refusal."""
    df = _crossed_frame(seed=2)
    df["s2"] = df["s"]
    df.loc[0, "s2"] = (df.loc[0, "s"] + 1) % 12
    vc = {"a": "0 + C(s)", "b": "0 + C(s2)"}
    model = dmixed.mixedlm("y ~ x", df, groups="g", vc_formula=vc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)  # one of them may end at zero
        res = model.fit()
    assert np.isfinite(res.llf) and len(res.vcomp) == 2


def test_the_check_and_the_start_share_one_moment_pass(monkeypatch):
    """Two components held padded: the moment sums (G r⁴) are made once per fit."""
    calls = []
    original = kernels.moment_contributions

    def spy(block):
        calls.append(1)
        return original(block)

    monkeypatch.setattr(kernels, "moment_contributions", spy)
    df = make_data(n_groups=60, max_size=20, vc_sd=0.7, seed=5)
    df["sub2"] = df["sub"].where(df["x2"] > 0, "d")
    vc = {"a": "0 + C(sub)", "b": "0 + C(sub2)"}
    model = dmixed.mixedlm("y ~ x1", df, groups="g", vc_formula=vc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        model.fit()
    assert type(model.statistics().engine).__name__ == "LocalEngine"
    assert calls == [1]


@pytest.mark.parametrize("re_formula", ["1", "1 + x1"])
def test_a_single_component_of_two_levels_in_a_group_makes_no_moment_pass(re_formula):
    """A single component holding two levels in some group cannot equal a random-effects
    column (its block has rank two there): with ``start_params`` the check made the
    fit's only moment-sums pass (a round trip on a cluster); now none, and the fit is
    the same."""
    df = make_data(n_groups=30, max_size=14, vc_sd=0.7, seed=5)
    model = dmixed.mixedlm(
        "y ~ x1", df, groups="g", re_formula=re_formula, vc_formula={"sub": "0 + C(sub)"}
    )
    ref = model.fit()
    engine = model.statistics().engine
    calls = []
    moments = engine.moments

    def spy():
        calls.append(1)
        return moments()

    object.__setattr__(engine, "moments", spy)
    res = model.fit(start_params=ref.params.to_numpy())
    assert calls == []
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-10)
    np.testing.assert_allclose(res.vcomp, ref.vcomp, rtol=1e-5)


@pytest.mark.parametrize("source", ["exog_vc", "formula"])
def test_a_single_component_of_two_equal_columns_is_refused(source):
    """Two slots of one component in a group need not be of rank two: two proportional
    columns (``exog_vc`` given as arrays, or a formula's ``0 + x + w`` with ``w = 2x``)
    make ``M_i = c z_i z_i'`` of the random effect they equal; refused as one column
    is, not fitted with only a warning."""
    df = _crossed_frame(seed=7, n=600)
    df["w"] = 2.0 * df["x"]
    if source == "formula":
        model = dmixed.mixedlm(
            "y ~ x", df, groups="g", re_formula="1 + x", vc_formula={"c": "0 + x + w"}
        )
        match = r"component 'c' has.*the random effect 'x' \(or a multiple of it\)"
    else:
        g = df["g"].to_numpy()
        ones = {
            k: np.column_stack([np.ones(np.sum(g == k)), 3.0 * np.ones(np.sum(g == k))])
            for k in np.unique(g)
        }
        exog = np.column_stack([np.ones(len(df)), df["x"]])
        model = MixedLM(
            df["y"].to_numpy(), exog, g, exog_re=np.ones((len(df), 1)), exog_vc={"c": ones}
        )
        match = r"component 'c' has.*the random effect"
    assert model.statistics().vc_slot_cols[0].shape[1] == 2
    with pytest.raises(DataError, match=match):
        model.fit()


def _reference_moment_start(mom, glob, layout):
    """The moment estimates with every step made as written first: ``Layout.unpack``,
    and the floor from ``np.linalg.eigvalsh``'s largest eigenvalue in every case."""
    p = glob.k_fe
    beta = np.linalg.solve(glob.xyxy[:p, :p], glob.xyxy[:p, p])
    w = np.append(-beta, 1.0)
    basis = layout.basis()
    m = basis.shape[0]
    tr_a = np.einsum("jab,ba->j", basis, mom.zz)
    lhs = np.zeros((m + 1, m + 1))
    lhs[:m, :m] = moment_gram(mom, basis)
    lhs[:m, m] = lhs[m, :m] = tr_a
    lhs[m, m] = glob.n - p
    cc = np.einsum("axby,x,y->ab", mom.zxy_zxy, w, w)
    rhs = np.append(np.einsum("jab,ba->j", basis, cc), float(w @ glob.xyxy @ w))
    sol = np.linalg.solve(lhs, rhs)
    psi, tau = layout.unpack(sol[:m] / sol[m], use_sqrt=False)
    estimates = np.concatenate([np.linalg.eigvalsh(psi), tau])
    floor = START_FLOOR * max(1.0 / weight_factor(glob), float(estimates.max()))
    vals, vecs = np.linalg.eigh(psi)
    out = (vecs * np.maximum(vals, floor)) @ vecs.T
    return 0.5 * (out + out.T), np.maximum(tau, floor)


@pytest.mark.parametrize(("slope_sd", "vc"), [(0.5, False), (0.0, False), (0.5, True), (0.0, True)])
def test_the_floor_is_made_only_where_it_is_read(slope_sd, vc):
    """The moment estimates are those floored by ``eigvalsh``'s largest eigenvalue, bit
    for bit, whether every estimate is clearly above the floor (then it is not made) or
    one is raised to it (a slope variance truly zero)."""
    # seed 3 with no slope: its slope variance is estimated below the floor
    df = make_data(n_groups=500, seed=3, slope_sd=slope_sd, intercept_sd=2.0, vc_sd=0.7)
    kw = {**SLOPE, "vc_formula": VC["vc_formula"]} if vc else SLOPE
    stats = _model(df, kw).statistics()
    mom, layout = stats.engine.moments(), stats.fit_layout
    psi, tau = moment_start(mom, stats.glob, layout)
    ref_psi, ref_tau = _reference_moment_start(mom, stats.glob, layout)
    assert psi.tobytes() == ref_psi.tobytes() and tau.tobytes() == ref_tau.tobytes()
    floored = np.linalg.eigvalsh(psi).min() <= START_FLOOR * np.linalg.eigvalsh(psi).max() * 1.01
    assert floored == (slope_sd == 0.0)  # both cases met


@pytest.mark.parametrize(
    ("start_params", "message"),
    [
        ([1.0], "start_params has 1 values; expected 3 covariance parameters"),
        (np.ones(5), "start_params has 5 values; expected 3 covariance parameters"),
        (["a", "b", "c"], r"start_params must be numbers, got values of dtype <U1: \['a'"),
        (["1", "0", "1"], r"start_params must be numbers, got values of dtype <U1: \['1'"),
        ("abc", "start_params must be numbers"),
        ([True, False, True], "start_params must be numbers, got values of dtype bool"),
        ([1.0, None, 1.0], "start_params must be numbers, got values of dtype object"),
        (np.ones((3, 1)), r"start_params must be one value per parameter \(1-D\), got shape"),
        ([np.nan, 0.0, 1.0], r"not finite \(\[0\] = nan\)"),
        ([0.0, 0.0, 0.0, 1.0, np.inf, 1.0], r"not finite \(\[4\] = inf\)"),
    ],
)
def test_a_bad_start_is_refused_naming_what_is_wrong(start_params, message):
    """start_params of the wrong length, text (numpy read ``"1"`` as 1.0 and failed on
    ``"a"`` with its own ValueError), booleans, 2-D or not finite: a SpecError."""
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=1))
    with pytest.raises(dmixed.SpecError, match=message):
        MixedLM(endog, exog, groups, exog_re=exog_re).fit(start_params=start_params)


@pytest.mark.parametrize(
    "given",
    [
        lambda v: np.array(v, dtype=object),
        lambda v: [Decimal(repr(x)) for x in v],
        lambda v: pd.Series(v, dtype=object),
    ],
)
def test_numbers_held_as_objects_are_a_start(given):
    """An object array of numbers (a Series of object dtype, Decimals) is the start its
    floats are, as statsmodels reads it and as MixedLM reads such arrays of data: it was
    refused as "not numbers" with the numbers shown."""
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=1))
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    start = [0.5, 0.1, 0.25]
    want = model.fit(start_params=start)
    got = model.fit(start_params=given(start))
    np.testing.assert_array_equal(got.params, want.params)


def _school_frame(n_schools: int = 60, seed: int = 7) -> pd.DataFrame:
    """Pupils in ten classrooms per school, each rated by one of three raters (crossed
    with the classrooms within the school): two components held padded, 1 + 10 + 3
    slots (too wide for the moment sums, too narrow to be held crossed)."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), 100)
    classroom = np.tile(np.repeat(np.arange(10), 10), n_schools)
    x = rng.normal(size=school.size)
    y = (
        1.0
        + 0.5 * x
        + rng.normal(size=n_schools)[school]
        + 0.7 * rng.normal(size=(n_schools, 10))[school, classroom]
        + rng.normal(size=school.size)
    )
    rater = rng.integers(0, 3, school.size)
    y += 0.3 * rng.normal(size=(n_schools, 3))[school, rater]  # an interior optimum
    return pd.DataFrame({"school": school, "classroom": classroom, "rater": rater, "x": x, "y": y})


def _vc_stats(df, vc, re_formula="1", group="school"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x", df, groups=group, re_formula=re_formula, vc_formula=vc)
        return model, model.statistics()


@pytest.mark.parametrize(
    ("vc", "re_formula"),
    [
        ({"a": "0 + C(s)", "b": "0 + C(s2)"}, "1"),
        ({"a": "0 + C(s)", "b": "0 + C(s2)"}, "1 + x"),
        ({"a": "0 + C(s)", "n": "0 + x + z"}, "1"),
    ],
    ids=["crossed", "crossed-slope", "numeric"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapsed_moment_sums_give_the_padded_moment_estimates(vc, re_formula, seed):
    """Where the padded design is narrow enough for the ``r⁴`` moment sums, the sums of
    one slot per component (``G r²``) give the same moment estimates: the same
    equations, a component's direction the projection on its slots."""
    rng = np.random.default_rng(seed)
    n = 1500
    df = pd.DataFrame({"g": rng.integers(0, 40, n), "s": rng.integers(0, 3, n)})
    df["s2"] = rng.integers(0, 2, n)
    df["x"], df["z"] = rng.normal(size=(2, n))
    df["y"] = (
        df["x"] + rng.normal(size=n) + rng.normal(size=3)[df["s"]] + rng.normal(size=40)[df["g"]]
    )
    _, stats = _vc_stats(df, vc, re_formula, group="g")
    layout = stats.layout
    assert type(stats.engine).__name__ == "LocalEngine"
    assert layout.r <= kernels.MOMENT_MAX_R
    narrow = start_module.collapsed_layout(layout)
    assert narrow is not None and narrow.n_params == layout.n_params
    collapsed = stats.engine.collapsed_moments(layout.k_re, layout.slot_component)
    want = moment_start(stats.engine.moments(), stats.glob, layout)
    got = moment_start(collapsed, stats.glob, narrow)
    assert want is not None and got is not None
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)
    # packed: the full sums where the padded design is narrow enough, else these
    full = moment_start_packed(stats.engine.moments, stats.glob, layout)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "MOMENT_MAX_R", layout.r - 1)

        def no_full_sums():
            raise AssertionError("the r⁴ moment sums were made")

        packed = moment_start_packed(
            no_full_sums, stats.glob, layout, collapsed=stats.engine.collapsed_moments
        )
        assert moment_start_packed(no_full_sums, stats.glob, layout) is None
    np.testing.assert_allclose(packed, full, rtol=1e-9, atol=1e-12)


VC_SHAPES = {
    "crossed": {"a": "0 + C(s)", "b": "0 + C(s2)"},
    "numeric": {"a": "0 + C(s)", "n": "0 + zs"},
    "three": {"a": "0 + C(s)", "b": "0 + C(s2)", "n": "0 + zs"},
}


def _close_rel(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    """``got`` equal to ``want`` to ``rtol`` relative, entry by entry (an entry that is
    zero in one is below 1e-15 of ``want``'s largest in the other)."""
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-15 * scale)


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**16),
    shape=st.sampled_from(sorted(VC_SHAPES)),
    re_formula=st.sampled_from(["1", "1 + x"]),
    weighted=st.booleans(),
    one_row=st.booleans(),
    absent=st.booleans(),
    y_offset=st.sampled_from([0.0, 1.7e9]),
    z_scale=st.sampled_from([1.0, 1e6]),
)
def test_collapsed_moment_start_equals_the_full_sums_start(
    seed, shape, re_formula, weighted, one_row, absent, y_offset, z_scale
):
    """The moment start from the sums of one slot per component equals the one from the
    full ``r⁴`` sums to 1e-9 relative, over weights, one-row groups, components absent
    from some groups (a level of ``s2`` missing, the numeric column zero there), the
    response offset by 1.7e9 and a component's column scaled by 1e6."""
    rng = np.random.default_rng(seed)
    n_groups, n = 30, 600
    g = rng.integers(0, n_groups, n)
    if one_row:  # every fifth group holds one row
        g = np.concatenate([g[np.isin(g % 5, [1, 2, 3, 4])], np.arange(0, n_groups, 5)])
    n = g.size
    df = pd.DataFrame({"g": g, "s": rng.integers(0, 3, n), "s2": rng.integers(0, 2, n)})
    df["x"], df["z"] = rng.normal(size=(2, n))
    if absent:  # the second component's second level, and the numeric one, not there
        gone = df["g"] % 3 == 0
        df.loc[gone, "s2"] = 0
        df.loc[gone, "z"] = 0.0
    df["zs"] = df["z"] * z_scale
    df["y"] = (
        y_offset
        + df["x"]
        + rng.normal(size=n)
        + rng.normal(size=3)[df["s"]]
        + rng.normal(size=n_groups)[df["g"]]
        + 0.5 * df["z"]
    )
    df["w"] = rng.uniform(0.2, 3.0, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm(
            "y ~ x",
            df,
            groups="g",
            re_formula=re_formula,
            vc_formula=VC_SHAPES[shape],
            weights="w" if weighted else None,
        )
        stats = model.statistics()
    layout = stats.fit_layout
    assert type(stats.engine).__name__ == "LocalEngine"
    assert layout.r <= kernels.MOMENT_MAX_R
    narrow = start_module.collapsed_layout(layout)
    assert narrow is not None
    want = moment_start(stats.engine.moments(), stats.glob, layout)
    got = moment_start(
        stats.engine.collapsed_moments(layout.k_re, layout.slot_component), stats.glob, narrow
    )
    assert (want is None) == (got is None)
    if want is not None:
        for a, b in zip(got, want, strict=True):
            _close_rel(a, b, 1e-9)


def test_collapsed_moment_sums_are_kept_with_the_engine():
    """The collapsed sums are made once per engine and layout, as the full moment sums
    are: a second fit of the same statistics makes them no more."""
    df = _school_frame()
    model, stats = _vc_stats(df, {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)"})
    layout = stats.fit_layout
    engine = stats.engine
    first = engine.collapsed_moments(layout.k_re, layout.slot_component)
    again = engine.collapsed_moments(layout.k_re, list(layout.slot_component))
    assert again is first
    made = []
    real = kernels.collapsed_moment_contributions
    with pytest.MonkeyPatch.context() as patch:

        def counted(*args, **kwargs):
            made.append(1)
            return real(*args, **kwargs)

        patch.setattr(kernels, "collapsed_moment_contributions", counted)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit()
            model.fit()
    assert made == []


@pytest.mark.parametrize(
    "vc",
    [
        {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)"},
        {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)", "r2": "0 + C(r2)"},
    ],
    ids=["one-crossed", "two-crossed"],
)
def test_crossed_components_held_padded_start_from_moments(vc, monkeypatch):
    """Components held padded wider than the moment sums (a nested classroom and a
    crossed rater): the fit starts from the moment estimates (per-component sums, no
    ``r⁴`` sums) and finishes with Newton steps, at the likelihood the quasi-Newton
    methods reach from the default start."""
    df = _school_frame()
    rng = np.random.default_rng(1)
    df["r2"] = rng.integers(0, 2, len(df))
    df["y"] += 0.3 * rng.normal(size=(60, 2))[df["school"], df["r2"]]
    model, stats = _vc_stats(df, vc)
    assert type(stats.engine).__name__ == "LocalEngine"
    assert stats.fit_layout.r > kernels.MOMENT_MAX_R

    def no_full_sums():
        raise AssertionError("the r⁴ moment sums were made")

    monkeypatch.setattr(stats.engine, "moments", no_full_sums)
    starts = []
    original = MixedLM.start_from_moments

    def spy(stats, layout):
        starts.append(original(stats, layout))
        return starts[-1]

    monkeypatch.setattr(MixedLM, "start_from_moments", staticmethod(spy))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        fast = model.fit()
        monkeypatch.setattr(MixedLM, "start_from_moments", staticmethod(lambda stats, layout: None))
        slow = model.fit()
    assert starts[0] is not None
    assert fast.optimizer_methods[0] == "newton"
    assert fast.fit_history[0]["method"] == "newton"
    assert "newton" not in slow.optimizer_methods
    # the recorded start is the moment estimate, not statsmodels' Ψ* = I, τ* = 1
    assert not np.allclose(fast.optimizer.initial, slow.optimizer.initial)
    assert fast.optimizer.initial_llf > slow.optimizer.initial_llf
    assert fast.converged and slow.converged
    assert fast.llf >= slow.llf - 1e-11 * abs(slow.llf)
    np.testing.assert_allclose(fast.params, slow.params, rtol=1e-5, atol=1e-7)
