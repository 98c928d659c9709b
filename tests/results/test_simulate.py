"""Responses drawn from a fit on its rows (``dmixed/results/simulate.py``), as lme4's
``simulate``: shapes, seeds, and the first two moments of the draws."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import MixedLM, mixedlm
from dmixed.errors import DroppedRowsWarning, SpecError

from .._synth import design, make_data

VC = dict(re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}, weights="w")


@pytest.fixture(scope="module")
def vc_fit():
    df = make_data(n_groups=12, max_size=10, vc_sd=0.7, seed=5)
    return mixedlm("y ~ x1 + x2", df, groups="g", **VC).fit()


def test_shapes_follow_lme4_and_the_input():
    df = make_data(n_groups=20, max_size=8, seed=2)
    df.loc[df.index[::7], "x2"] = np.nan
    df.index = df.index * 3 + 1
    with pytest.warns(DroppedRowsWarning):
        res = mixedlm("y ~ x1 + x2", df, groups="g", missing="drop").fit()
    kept = df.dropna().index
    one = res.simulate(seed=0)  # a DataFrame for one draw too, as lme4's data.frame
    assert isinstance(one, pd.DataFrame) and list(one.columns) == ["sim_1"]
    assert one.index.equals(kept)
    pd.testing.assert_frame_equal(one, res.simulate(1, seed=0))
    many = res.simulate(3, seed=0)
    assert list(many.columns) == ["sim_1", "sim_2", "sim_3"] and many.index.equals(kept)
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=2))
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    assert isinstance(arrays.simulate(seed=1), np.ndarray)
    assert arrays.simulate(seed=1).shape == (len(endog), 1)
    assert arrays.simulate(4, seed=1).shape == (len(endog), 4)


def test_seeds_reproduce_and_differ(vc_fit):
    a, b = vc_fit.simulate(2, seed=11), vc_fit.simulate(2, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["sim_1"], a["sim_2"])
    assert not np.allclose(a, vc_fit.simulate(2, seed=12))
    gen = np.random.default_rng(11)
    pd.testing.assert_frame_equal(a, vc_fit.simulate(2, seed=gen))


def test_draws_conditional_on_the_blups_scatter_around_the_fitted_values(vc_fit):
    """``use_re=True``: mean the fitted values, variance σ̂²/w_j row by row."""
    nsim = 3000
    sims = vc_fit.simulate(nsim, seed=3, use_re=True).to_numpy()
    fitted = np.asarray(vc_fit.fittedvalues)
    var = vc_fit.scale / vc_fit.model.rows.weights
    z = (sims.mean(axis=1) - fitted) / np.sqrt(var / nsim)
    assert np.max(np.abs(z)) < 5
    ratio = sims.var(axis=1, ddof=1) / var
    assert np.max(np.abs(ratio - 1)) < 5 * np.sqrt(2 / nsim)


def test_redrawn_random_effects_give_the_marginal_covariance(vc_fit):
    """Random effects redrawn (lme4's default): ``Cov(y*_j, y*_k)`` within a group is
    ``z_j'cov_re z_k + vcomp [same subgroup] + σ̂²/w_j [j = k]``, and 0 across groups."""
    nsim = 4000
    rows = vc_fit.model.rows
    sims = vc_fit.simulate(nsim, seed=4).to_numpy()
    resid = sims - (rows.exog @ np.asarray(vc_fit.fe_params))[:, None]
    emp = resid @ resid.T / nsim
    z = rows.exog_re
    same_group = rows.groups[:, None] == rows.groups[None, :]
    sub = rows.vc_cols[0][:, 0]
    theory = z @ np.asarray(vc_fit.cov_re) @ z.T
    theory = theory + float(vc_fit.vcomp[0]) * (sub[:, None] == sub[None, :])
    theory = np.where(same_group, theory, 0.0) + np.diag(vc_fit.scale / rows.weights)
    d = np.sqrt(np.diag(theory))
    se = np.sqrt((np.outer(d, d) ** 2 + theory**2) / nsim)
    assert np.max(np.abs(emp - theory) / se) < 5.5


@pytest.mark.parametrize("seed", [1.5, -1, "a", [1, -2]])
def test_a_seed_numpy_cannot_use_is_refused_naming_seed(vc_fit, seed):
    with pytest.raises(SpecError, match=r"^seed must be None, a non-negative integer.*; got "):
        vc_fit.simulate(2, seed=seed)


def test_a_statsmodels_rvs_rng_numpy_cannot_use_is_refused_naming_rng(vc_fit):
    from dmixed.results.simulate import as_rng

    with pytest.raises(SpecError, match=r"^rng must be None, a non-negative integer"):
        as_rng(0.5, "rng")
    assert isinstance(as_rng(np.random.SeedSequence(3)), np.random.Generator)


def test_refusals(vc_fit, tmp_path):
    with pytest.raises(SpecError, match="nsim must be a positive integer"):
        vc_fit.simulate(0)
    vc_fit.save(tmp_path / "res")
    from dmixed.results import load

    loaded = load(tmp_path / "res")
    # the hints are true: loaded results can bootstrap no more than simulate
    with pytest.raises(SpecError, match="fitted rows.*neither them nor the statistics"):
        loaded.simulate()
    with pytest.raises(SpecError, match="loaded results do not hold them: fit the model"):
        loaded.bootstrap(2)
    from_stats = MixedLM.from_statistics(vc_fit.model.statistics(), vc_fit.model.spec).fit()
    with pytest.raises(SpecError, match="fitted rows.*bootstrap\\(\\) needs only the statistics"):
        from_stats.simulate()
    assert len(from_stats.bootstrap(2, seed=0).replicates) == 2


def test_dask_draws_are_lazy_reproducible_and_share_each_groups_effects():
    """A Dask fit's draws: lazy, indexed like the kept rows, the same for a seed under
    any scheduler, and a group split between partitions gets one random effect (the
    covariance of its rows across the split is the intercept variance)."""
    df = make_data(n_groups=6, min_size=20, max_size=20, seed=4)
    df.index = df.index + 100
    ddf = dd.from_pandas(df, npartitions=4)
    res = mixedlm("y ~ x1", ddf, groups="g", weights="w").fit()
    one = res.simulate(seed=3)
    assert isinstance(one, dd.DataFrame) and list(one.columns) == ["sim_1"]
    computed = one.compute(scheduler="sync")
    assert isinstance(computed, pd.DataFrame) and computed.index.equals(df.index)
    few = res.simulate(3, seed=5)
    assert isinstance(few, dd.DataFrame) and list(few.columns) == ["sim_1", "sim_2", "sim_3"]
    pd.testing.assert_frame_equal(
        few.compute(scheduler="sync"), res.simulate(3, seed=5).compute(scheduler="threads")
    )
    nsim = 1500
    split = ddf.divisions[1]  # first row of the second partition, inside group 1
    j, k = split - 1, split
    assert df.loc[j, "g"] == df.loc[k, "g"]
    a = res.simulate(nsim, seed=6).compute(scheduler="sync").loc[[j, k]].to_numpy()
    fixed = res.fe_params["Intercept"] + res.fe_params["x1"] * df.loc[[j, k], "x1"].to_numpy()
    resid = a - fixed[:, None]
    tau = float(res.cov_re.iloc[0, 0])
    var = tau + res.scale / df.loc[[j, k], "w"].to_numpy()
    cov = float(resid[0] @ resid[1]) / nsim
    assert abs(cov - tau) < 5 * np.sqrt((var[0] * var[1] + tau**2) / nsim)


def test_get_distribution_draws_statsmodels_values():
    """``model.get_distribution(params, scale).rvs(rng=RandomState)`` consumes the
    stream in statsmodels' order: the same seed gives statsmodels' very draw."""
    import statsmodels.formula.api as smf

    df = make_data(n_groups=9, max_size=8, vc_sd=0.7, seed=6)
    kw = dict(groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"})
    ours = mixedlm("y ~ x1 + x2", df, **kw)
    theirs = smf.mixedlm("y ~ x1 + x2", df, **kw)
    params = np.array([1.0, 0.5, -0.25, 0.8, 0.1, 0.3, 0.4])
    got = ours.get_distribution(params, 1.7, None).rvs(0, rng=np.random.RandomState(4))
    want = theirs.get_distribution(params, 1.7, None).rvs(0, rng=np.random.RandomState(4))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    exog = ours.rows.exog * 2.0
    got = ours.get_distribution(params, 1.7, exog).rvs(0, rng=np.random.RandomState(4))
    want = theirs.get_distribution(params, 1.7, exog).rvs(0, rng=np.random.RandomState(4))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(SpecError, match="exog has shape"):
        ours.get_distribution(params, 1.7, exog[:, :2])


def test_draws_do_not_depend_on_the_partitioning():
    """The same seed gives the same draws for 1, 3 or 7 partitions of the same rows, and
    an in-process fit of those rows draws them too (noise by blocks of row numbers,
    random effects by group); rows dropped for missing values take no row number."""
    df = make_data(n_groups=20, min_size=300, max_size=700, vc_sd=0.5, seed=8)
    assert len(df) > 2 * 4096  # several noise blocks, split between partitions
    df.loc[df.index[::97], "x1"] = np.nan
    kw = dict(groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}, missing="drop")
    with pytest.warns(DroppedRowsWarning):
        local = mixedlm("y ~ x1 + x2", df, **kw).fit()
    want = local.simulate(2, seed=21)
    assert want.index.equals(df.dropna().index)
    for npartitions in (1, 3, 7):
        ddf = dd.from_pandas(df, npartitions=npartitions)
        with pytest.warns(DroppedRowsWarning):
            res = mixedlm("y ~ x1 + x2", ddf, **kw).fit()
        for use_re in (False, True):
            got = res.simulate(2, seed=21, use_re=use_re).compute(scheduler="sync")
            pd.testing.assert_frame_equal(
                got, local.simulate(2, seed=21, use_re=use_re), rtol=1e-9, atol=1e-9
            )


@pytest.mark.parametrize("use_re", [False, True])
@pytest.mark.parametrize("c", [1e20, 1e-100])
def test_draws_of_weights_in_any_unit(vc_fit, c, use_re):
    """Weights ``c·w`` are the same model with ``σ²`` times ``c`` (residual variance
    ``σ²/(c w)`` unchanged): the same seed draws the same responses."""
    frame = make_data(n_groups=12, max_size=10, vc_sd=0.7, seed=5)
    fit = mixedlm("y ~ x1 + x2", frame.assign(w=c * frame["w"]), groups="g", **VC).fit()
    drawn, ref = fit.simulate(3, seed=8, use_re=use_re), vc_fit.simulate(3, seed=8, use_re=use_re)
    np.testing.assert_allclose(drawn, ref, rtol=1e-6, atol=1e-6)  # the fits' tolerance


@pytest.fixture(scope="module")
def parquet_fit():
    """A Dask fit of rows with dropped rows and columns the model does not read (so
    that Dask reads the files for a few of their columns, and may fuse them), and a
    sample frame of its rows, shuffled so that groups cross any boundary."""
    df = make_data(n_groups=15, min_size=10, max_size=30, seed=12).sample(frac=1, random_state=2)
    df = df.reset_index(drop=True)
    df.loc[df.index[::11], "x1"] = np.nan
    for k in range(8):
        df[f"unused{k}"] = float(k)
    kw = dict(groups="g", re_formula="1 + x1", missing="drop")
    with pytest.warns(DroppedRowsWarning):
        res = mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), **kw).fit()
    return df, res


def _draws_over_files(res, df, bounds, directory):
    """The draws (use_re=True: the noise alone is random) on ``df`` written as one
    Parquet file per run of rows between ``bounds``, read back by Dask."""
    from dmixed.results.simulate import simulate_dask

    edges = [0, *bounds, len(df)]
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        df.iloc[lo:hi].to_parquet(f"{directory}/part-{k:03d}.parquet", index=False)
    ddf = dd.read_parquet(directory)
    model = res.fitted_model
    got = simulate_dask(
        res.predictor(), model.spec, ddf, None, res.scale, np.random.default_rng(9), 2
    )
    return got.compute(scheduler="sync").to_numpy()


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_draws_do_not_depend_on_where_files_split_the_rows(parquet_fit, data):
    """The same rows in the same order, split into files at any boundaries (Dask may
    fuse the files it reads for a few of their columns into fewer partitions), draw the
    same responses: a row's noise is that of its number among the kept rows, over
    blocks of 16 rows here."""
    import tempfile

    from dmixed.results import simulate

    df, res = parquet_fit
    bounds = data.draw(
        st.lists(st.integers(1, len(df) - 1), min_size=1, max_size=6, unique=True).map(sorted)
    )
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as one:
        patch.setattr(simulate, "NOISE_BLOCK", 16)
        want = _draws_over_files(res, df, [], one)
        with tempfile.TemporaryDirectory() as many:
            got = _draws_over_files(res, df, bounds, many)
    assert got.shape == want.shape == (int(df.x1.notna().sum()), 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # BLAS: row blocks
