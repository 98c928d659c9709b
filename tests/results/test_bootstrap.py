"""Parametric bootstrap from the statistics alone (``dmixed/results/bootstrap.py``).

- The table: one row per replicate, named columns, percentile intervals, seeds.
- No data pass: a model holding only statistics bootstraps exactly as the model of the
  rows it came from, and a Dask fit's bootstrap reads no partition.
- The distribution (issue goal 3): replicates refitted to statistics drawn without the
  rows have the distribution of replicates refitted to responses simulated on the rows
  (:meth:`MixedLMResults.simulate`), for REML and ML, with weights, on a model with a
  random slope and a variance component: for each estimate and the llf, means (Welch z),
  variances (Brown–Forsythe) and whole distributions (two-sample Kolmogorov–Smirnov),
  seeded, each test at level α/(number of tests) so that a correct sampler fails the
  whole check with probability at most α = 0.01 (Bonferroni).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import warnings
from dataclasses import replace
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dmixed import MixedLM, mixedlm
from dmixed.engines.local import statistics_from_arrays
from dmixed.errors import CheckpointError, DmixedWarning, ProfileWarning, SpecError
from dmixed.results.bootstrap import BootstrapResults
from dmixed.results.replicate import ReplicateFitter
from dmixed.stats import GroupArrays

from .._synth import CountingReader, make_data

VC = dict(re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}, weights="w")
FORMULA = "y ~ x1 + x2"
#: probability that a correct sampler fails the distribution check (all its tests)
ALPHA = 0.01


def _frame(n_groups: int = 30, seed: int = 5) -> pd.DataFrame:
    return make_data(n_groups=n_groups, max_size=14, vc_sd=0.7, seed=seed)


@pytest.fixture(scope="module")
def vc_fit():
    return mixedlm(FORMULA, _frame(), groups="g", **VC).fit()


def test_a_label_means_one_number_in_params_and_the_bootstrap(vc_fit):
    """``params["g Var"]`` is Ψ/σ² (statsmodels') while the bootstrap's ``"g Var"`` was
    Ψ: a user comparing them found a bias of 670 where there was none.  The bootstrap's
    covariance columns now carry the attribute whose number they hold, and no label of
    the table is a label of ``params`` with another number."""
    boot = vc_fit.bootstrap(2, seed=1)
    est = boot.estimate
    params = vc_fit.params
    for name in set(est.index) & set(params.index):
        assert est[name] == pytest.approx(params[name], rel=1e-12), name
    k_fe = vc_fit.k_fe
    for name in params.index[k_fe : k_fe + vc_fit.k_re2]:
        got = est[f"{name} (cov_re)"]
        assert got == pytest.approx(params[name] * vc_fit.scale, rel=1e-10), name
    assert est["sub Var (vcomp)"] == pytest.approx(vc_fit.vcomp[0], rel=1e-12)
    assert "(cov_re)" in " ".join(vc_fit.bootstrap.__doc__.split())


def test_table_and_percentile_intervals(vc_fit):
    boot = vc_fit.bootstrap(12, seed=3)
    table = boot.replicates
    cov = ["g Var (cov_re)", "g x x1 Cov (cov_re)", "x1 Var (cov_re)", "sub Var (vcomp)"]
    names = [*vc_fit.fe_params.index, *cov]
    assert list(table.columns) == [*names, "scale", "llf", "converged"]
    assert len(boot) == 12 and table["converged"].dtype == bool and table["converged"].all()
    assert list(boot.estimate.index) == [*names, "scale", "llf"]
    np.testing.assert_allclose(boot.estimate[names[:3]], vc_fit.fe_params, rtol=1e-12)
    x1_var = vc_fit.cov_re.loc["x1", "x1"]
    assert boot.estimate["x1 Var (cov_re)"] == pytest.approx(x1_var, rel=1e-12)
    assert boot.estimate["sub Var (vcomp)"] == pytest.approx(vc_fit.vcomp[0], rel=1e-12)
    ci = boot.conf_int(0.2)
    # intervals of the parameters (lme4's confint of a bootMer): none for the llf
    assert list(ci.columns) == [0, 1] and list(ci.index) == [*names, "scale"]
    np.testing.assert_allclose(ci[0], table[ci.index].quantile(0.1), rtol=1e-12)
    assert (ci[0] <= ci[1]).all()
    pd.testing.assert_frame_equal(table, vc_fit.bootstrap(12, seed=3).replicates)
    assert not table.equals(vc_fit.bootstrap(12, seed=4).replicates)
    with pytest.raises(SpecError, match="alpha"):
        boot.conf_int(1.5)
    with pytest.raises(SpecError, match="n must be a positive integer"):
        vc_fit.bootstrap(0)
    # refused before any generator is made (10**12 of them would exhaust the memory)
    with pytest.raises(SpecError, match="n must be at most 1000000"):
        vc_fit.bootstrap(10**12, seed=1)


@pytest.mark.parametrize("seed", ["abc", 1.5, -1, [1, -2]])
def test_a_bad_seed_is_refused_naming_it(vc_fit, seed):
    """A seed numpy cannot take raised numpy's own TypeError or ValueError ("expected
    non-negative integer"), naming no argument; it is dmixed's SpecError naming ``seed``."""
    with pytest.raises(SpecError, match="seed must be a non-negative integer") as err:
        vc_fit.bootstrap(3, seed=seed)
    assert repr(seed) in str(err.value)


def test_bse_is_an_attribute_as_the_fits(vc_fit):
    # boot.bse["x1"] as res.bse["x1"]: a Series, not a method to call
    boot = vc_fit.bootstrap(5, seed=2)
    assert isinstance(boot.bse, pd.Series)
    pd.testing.assert_series_equal(boot.bse, boot.values.drop(columns="llf").std(ddof=1))


def test_bse_has_the_rows_of_conf_int_no_llf(vc_fit):
    """The review found an ``llf`` entry in ``bse`` after ``conf_int()`` had dropped it
    (the log-likelihood is no parameter): both have the parameters' rows alone; the
    replicates keep ``llf``."""
    boot = vc_fit.bootstrap(5, seed=2)
    assert "llf" not in boot.bse.index
    assert list(boot.bse.index) == list(boot.conf_int().index)
    assert "llf" in boot.replicates.columns


def test_save_makes_the_parent_directories(vc_fit, tmp_path):
    # as res.save("out/"): a path in a directory not yet made is written, not an
    # OSError naming the hidden temporary
    boot = vc_fit.bootstrap(2, seed=1)
    path = tmp_path / "new" / "dir" / "boot.parquet"
    boot.save(path)
    pd.testing.assert_frame_equal(BootstrapResults.load(path).replicates, boot.replicates)


def test_a_version_1_table_loads_with_this_versions_names(vc_fit, tmp_path):
    """A table written before the covariance columns were named ``"g Var (cov_re)"``
    (``format_version`` 1, statsmodels' bare names for Ψ and τ²) loaded with those
    names, the labels under which ``params`` holds Ψ/σ².  ``data/bootstrap_v1.parquet``
    is such a table, written by ``save`` of dmixed's main branch at cf63021a
    (``vc_fit``'s model and data, 3 replicates, seed 1): loaded with the results
    bootstrapped, its columns get this version's names, values as stored; without
    them (the names alone do not tell cov_re from vcomp), or with another model's, it
    is refused."""
    import pyarrow.parquet as pq

    from dmixed.results.bootstrap import METADATA_KEY

    path = Path(__file__).parents[1] / "data" / "bootstrap_v1.parquet"
    raw = pq.read_table(path)
    meta = json.loads(raw.schema.metadata[METADATA_KEY])
    assert meta["format_version"] == 1 and "g Var" in raw.column_names
    back = BootstrapResults.load(path, vc_fit)
    names = ["g Var (cov_re)", "g x x1 Cov (cov_re)", "x1 Var (cov_re)", "sub Var (vcomp)"]
    assert list(back.replicates.columns) == [
        "Intercept", "x1", "x2", *names, "scale", "llf", "converged"
    ]  # fmt: skip
    np.testing.assert_array_equal(back.replicates["g Var (cov_re)"], raw.column("g Var"))
    np.testing.assert_array_equal(back.replicates["sub Var (vcomp)"], raw.column("sub Var"))
    assert back.estimate["g Var (cov_re)"] == meta["estimate"]["g Var"]
    assert "g Var" not in back.estimate and "g Var" not in back.replicates
    with pytest.raises(CheckpointError, match=r"format version 1, .*load\(path, results\)"):
        BootstrapResults.load(path)
    other = mixedlm(FORMULA, _frame(), groups="g").fit()
    with pytest.raises(CheckpointError, match="is not a bootstrap table of these results"):
        BootstrapResults.load(path, other)
    # new tables say format_version 2 in their metadata
    vc_fit.bootstrap(2, seed=1).save(tmp_path / "new.parquet")
    meta = json.loads(pq.read_table(tmp_path / "new.parquet").schema.metadata[METADATA_KEY])
    assert meta["format_version"] == 2


@pytest.mark.parametrize("version", [3, "2", True])
def test_a_table_of_a_newer_or_odd_format_version_is_refused(vc_fit, tmp_path, version):
    """``load`` read no ``format_version``: a table of a later, unknown format loaded
    without a word.  It is refused as results directories are
    (:func:`dmixed.files.check_format_version`)."""
    import pyarrow.parquet as pq

    from dmixed.results.bootstrap import METADATA_KEY

    vc_fit.bootstrap(2, seed=1).save(tmp_path / "b.parquet")
    table = pq.read_table(tmp_path / "b.parquet")
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    meta["format_version"] = version
    blob = json.dumps(meta).encode()
    pq.write_table(
        table.replace_schema_metadata({**table.schema.metadata, METADATA_KEY: blob}),
        tmp_path / "b.parquet",
    )
    why = "written by a newer dmixed" if version == 3 else "not a whole number"
    with pytest.raises(CheckpointError, match=why):
        BootstrapResults.load(tmp_path / "b.parquet", vc_fit)


def test_progress_save_and_load(vc_fit, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dmixed"):
        boot = vc_fit.bootstrap(2, seed=1, progress=True)
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        "bootstrap: replicate 1/2",
        "bootstrap: replicate 2/2",
    ]
    assert boot.replicate_seconds.shape == (2,) and boot.seconds >= boot.replicate_seconds.sum()
    boot.save(tmp_path / "b.parquet")
    back = BootstrapResults.load(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(back.replicates, boot.replicates)
    pd.testing.assert_series_equal(back.estimate, boot.estimate)
    assert back.reml == boot.reml and np.array_equal(back.replicate_seconds, boot.replicate_seconds)
    assert os.listdir(tmp_path) == ["b.parquet"]  # no temporary left
    vc_fit.model.cached_statistics, saved = None, vc_fit.model.cached_statistics
    try:
        with pytest.raises(SpecError, match="statistics"):
            vc_fit.bootstrap(1)
    finally:
        vc_fit.model.cached_statistics = saved
    pd.DataFrame({"a": [1.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(CheckpointError, match="not a readable dmixed bootstrap table"):
        BootstrapResults.load(tmp_path / "other.parquet")


def test_a_model_of_statistics_alone_bootstraps_as_the_model_of_its_rows(vc_fit):
    """Same statistics, same seed: the same replicates, with no rows at hand."""
    model = vc_fit.model
    arrays = GroupArrays.from_statistics(model.statistics())
    alone = MixedLM.from_statistics(statistics_from_arrays(arrays), model.spec)
    assert alone.rows is None and alone.source is None
    res = alone.fit()
    for use_re in (False, True):
        ref = vc_fit.bootstrap(5, seed=8, use_re=use_re).replicates
        got = res.bootstrap(5, seed=8, use_re=use_re).replicates
        pd.testing.assert_frame_equal(got, ref, rtol=1e-7)


def test_a_pickled_fit_says_what_it_lacks_and_how_to_get_it_back(vc_fit):
    """A pickle never carries the statistics, and bootstrap reads no data: an unpickled
    fit is refused saying how to compute them again from the rows it holds (the same
    replicates then); after remove_data() it holds neither, and the refusal says that
    (it once said the results were "loaded", whatever had happened)."""
    back = pickle.loads(pickle.dumps(vc_fit))
    with pytest.raises(SpecError, match=r"model.statistics\(\) computes them again"):
        back.bootstrap(3, seed=8)
    back.model.statistics()
    pd.testing.assert_frame_equal(
        back.bootstrap(3, seed=8).replicates, vc_fit.bootstrap(3, seed=8).replicates, rtol=1e-7
    )
    removed_after = pickle.loads(pickle.dumps(vc_fit))
    removed_after.remove_data()
    removed_before = pickle.loads(pickle.dumps(vc_fit))
    removed_before.remove_data()
    removed_before = pickle.loads(pickle.dumps(removed_before))
    for res in (removed_after, removed_before):
        with pytest.raises(SpecError, match=r"data were removed \(remove_data\(\)\)") as err:
            res.bootstrap(3, seed=8)
        assert "refit it from the data" in str(err.value) and "loaded" not in str(err.value)


def test_a_dask_fit_bootstraps_without_reading_a_partition(tmp_path, vc_fit):
    df = _frame()
    reader = CountingReader(df, 4, str(tmp_path / "reads.txt"))
    ddf = dd.from_map(reader, range(4), meta=df.iloc[:0], enforce_metadata=False)
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        res = mixedlm(FORMULA, ddf, groups="g", **VC).fit()
        before = reader.reads()
        boot = res.bootstrap(4, seed=2)
    assert before > 0 and reader.reads() == before
    assert boot.replicates["converged"].all()
    # the same statistics as the in-process fit: the same replicates
    ref = vc_fit.bootstrap(4, seed=2).replicates
    pd.testing.assert_frame_equal(boot.replicates, ref, rtol=1e-6)


# --------------------------------------------------------------------------------------
# the distribution of the replicates (goal 3)
# --------------------------------------------------------------------------------------


def _refit_rows(model, y: np.ndarray, reml: bool) -> list:
    """The model refitted to response ``y`` on its own rows (a data pass over them)."""
    twin = copy.copy(model)
    twin.rows = replace(model.rows, endog=y)
    twin.cached_statistics = twin.cached_client = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = twin.fit(reml=reml, skip_hessian=True)
    q = np.tril_indices(fit.k_re)
    cov = np.asarray(fit.cov_re)
    return [*np.asarray(fit.fe_params), *cov[q], *fit.vcomp, fit.scale, fit.llf]


def _tests(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, float]:
    """p-values of the three two-sample tests of every column."""
    out = {}
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        se = np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
        out[f"{col}: mean"] = float(2 * sps.norm.sf(abs(x.mean() - y.mean()) / se))
        out[f"{col}: variance"] = float(sps.levene(x, y, center="median").pvalue)
        out[f"{col}: KS"] = float(sps.ks_2samp(x, y).pvalue)
    return out


def _compare(n_replicates: int, n_groups: int, seed: int) -> None:
    df = _frame(n_groups, seed)
    model = mixedlm(FORMULA, df, groups="g", **VC)
    pvalues = {}
    for reml in (True, False):
        fit = model.fit(reml=reml)
        drawn = fit.bootstrap(n_replicates, seed=seed + 1).values
        sims = fit.simulate(n_replicates, seed=seed + 2)
        rows = [_refit_rows(model, sims[c].to_numpy(), reml) for c in sims.columns]
        simulated = pd.DataFrame(rows, columns=drawn.columns)
        for key, p in _tests(drawn, simulated).items():
            pvalues[f"{'REML' if reml else 'ML'} {key}"] = p
    level = ALPHA / len(pvalues)
    failed = {k: p for k, p in pvalues.items() if not p > level}
    assert not failed, f"at level {level:.2g}: {failed}"


def test_replicates_from_statistics_have_the_distribution_of_refits_to_rows():
    _compare(n_replicates=50, n_groups=25, seed=11)


@pytest.mark.slow
def test_replicates_from_statistics_have_the_distribution_of_refits_to_rows_large():
    _compare(n_replicates=400, n_groups=60, seed=21)


def test_a_failed_refit_is_a_row_of_nan_not_converged(vc_fit, monkeypatch):
    from dmixed.errors import DataError

    calls = []
    fit_drawn = ReplicateFitter.fit_drawn

    def second_fails(self, drawn):
        calls.append(1)
        if len(calls) == 2:
            raise DataError("a refit that fails")
        return fit_drawn(self, drawn)

    monkeypatch.setattr(ReplicateFitter, "fit_drawn", second_fails)
    table = vc_fit.bootstrap(3, seed=5).replicates
    assert table["converged"].tolist() == [True, False, True]
    assert table.iloc[1].drop("converged").isna().all()


@pytest.mark.parametrize("c", [1e20, 1e-100])
def test_replicates_of_weights_in_any_unit(vc_fit, c):
    """Weights ``c·w`` are the same model with ``σ²`` times ``c``: the replicates drawn
    with the same seed are those of weights ``w``, mapped (``β``, the absolute
    ``cov_re`` and ``vcomp``, ℓ the same, ``scale`` times ``c``).  Refits in the
    statistics' own unit stopped short (converged=False at 1e20); drawn with the
    eigenvectors' arbitrary signs, they drew other responses."""
    frame = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = mixedlm(FORMULA, frame.assign(w=c * frame["w"]), groups="g", **VC).fit()
        boot = fit.bootstrap(4, seed=3)
    ref = vc_fit.bootstrap(4, seed=3).replicates
    table = boot.replicates
    assert table["converged"].all()
    estimates = [name for name in ref.columns if name not in ("scale", "converged")]
    np.testing.assert_allclose(table[estimates], ref[estimates], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table["scale"] / c, ref["scale"], rtol=1e-6)


# --------------------------------------------------------------------------------------
# each replicate against a fit of a response with the drawn statistics
# --------------------------------------------------------------------------------------


def _slopes_frame(sizes) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(len(sizes)), sizes)
    frame = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "x2": rng.normal(size=g.size)})
    frame["y"] = frame.x1 + rng.normal(size=g.size) + rng.normal(size=len(sizes))[g]
    return frame


def _response_of(frame: pd.DataFrame, drawn: GroupArrays, seed: int) -> np.ndarray:
    """A response on ``frame``'s rows whose statistics are ``drawn``'s (in the raw
    columns): ``W'y = v`` solved in the range of ``W = [Z̃, X]``, plus a part orthogonal
    to it of the drawn ``y'y``'s remaining square.  The likelihood reads the rows only
    through these statistics: a fit of this response is the replicate's refit."""
    cols = drawn.columns
    raw = drawn.converted_to(
        replace(
            cols.identity(cols.k_fe, cols.k_re),
            x_intercept=cols.x_intercept,
            z_intercept=cols.z_intercept,
            weight_scale=cols.weight_scale,
        )
    )
    x = np.column_stack([np.ones(len(frame)), frame.x1, frame.x2])
    z = x[:, : raw.layout.k_re]
    n_groups, r, p = raw.zz.shape[0], raw.zz.shape[1], x.shape[1]
    codes = frame.g.to_numpy()
    w = np.zeros((len(frame), n_groups * r + p))
    for i in range(n_groups):
        w[codes == i, i * r : (i + 1) * r] = z[codes == i]
    w[:, n_groups * r :] = x
    v = np.concatenate([raw.zxy[:, :, p].ravel(), raw.glob.xyxy[:p, p]])
    y0 = np.linalg.lstsq(w.T, v, rcond=None)[0]
    assert np.abs(w.T @ y0 - v).max() < 1e-8 * np.abs(v).max()  # drawn statistics consistent
    q, _ = np.linalg.qr(w)
    other = np.random.default_rng(seed).normal(size=len(frame))
    other -= q @ (q.T @ other)
    rest = raw.glob.xyxy[p, p] - y0 @ y0
    assert rest > 0
    return y0 + other * np.sqrt(rest / (other @ other))


def _check_replicates_are_refits(fit, frame, re_formula, n: int = 4) -> pd.DataFrame:
    boot = fit.bootstrap(n, seed=0)
    arrays = GroupArrays.from_statistics(fit.fitted_model.cached_statistics, centred=True)
    fitter = ReplicateFitter.of(fit, arrays)
    from dmixed.results.replicate import replicate_rngs

    for k, rng in enumerate(replicate_rngs(0, n)):
        y = _response_of(frame, fitter.draw(rng), 100 + k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DmixedWarning)
            ref = mixedlm(FORMULA, frame.assign(y=y), groups="g", re_formula=re_formula).fit()
        row = boot.replicates.iloc[k]
        assert row["converged"]
        assert row["llf"] == pytest.approx(ref.llf, rel=1e-11, abs=1e-9)
        fe = row[ref.model.exog_names].to_numpy(dtype=float)
        np.testing.assert_allclose(fe, ref.fe_params, rtol=1e-5, atol=1e-7)
    return boot.replicates


def test_a_group_of_fewer_rows_than_random_effects_bootstraps_in_process_and_on_dask():
    """A group of 2 rows and 3 random effects takes centred sums in the fit; the
    replicates draw them too (in process: every group's, about W; on Dask: that group's,
    from its sums about a shift), and each replicate is the fit of a response with the
    drawn statistics.  The base refused: ``CentredGroupsError``, "column 2 nearly
    constant" (it is not), advising a fit in process (it was one).  Two groups of one
    row (rank one through the intercept) draw with the same root in both engines,
    though only the in-process fit holds within-group sums."""
    frame = _slopes_frame([2, 1, 1] + [10] * 30)
    re_formula = "1 + x1 + x2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = mixedlm(FORMULA, frame, groups="g", re_formula=re_formula).fit()
        ddf = dd.from_pandas(frame, npartitions=3)
        with dask.config.set(scheduler="sync"):
            on_dask = mixedlm(FORMULA, ddf, groups="g", re_formula=re_formula).fit()
    assert fit.fitted_model.cached_statistics.engine.block.centred_groups == 1
    table = _check_replicates_are_refits(fit, frame, re_formula)
    with dask.config.set(scheduler="sync"):
        dask_table = _check_replicates_are_refits(on_dask, frame, re_formula)
    # the same responses drawn whichever sums the fit kept
    pd.testing.assert_frame_equal(dask_table, table, rtol=1e-9, atol=1e-9)


def test_three_random_effects_bootstrap_the_same_in_process_and_on_dask():
    """Every fixed effect is also random: ``X`` lies in the span of ``Z̃`` and the Schur
    complement ``S`` is rounding alone.  Its rank, judged against its own largest
    eigenvalue, kept some of that rounding, so that the χ²'s degrees of freedom (hence
    the draws) differed between sums in another order (a Dask fit's replicates' llf off
    the in-process ones' by up to 0.67); so did the start of the replicates of a fit
    whose Ψ* is singular (the sign of a rounded eigenvalue).  Both replicates were fits
    of their own drawn statistics; now they draw the same."""
    frame = _slopes_frame([10] * 31)
    re_formula = "1 + x1 + x2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = mixedlm(FORMULA, frame, groups="g", re_formula=re_formula).fit()
        with dask.config.set(scheduler="sync"):
            on_dask = mixedlm(
                FORMULA, dd.from_pandas(frame, npartitions=3), groups="g", re_formula=re_formula
            ).fit()
    arrays = GroupArrays.from_statistics(fit.fitted_model.cached_statistics)
    assert ReplicateFitter.of(fit, arrays).sampler.df_resid == len(frame) - 3 * 31
    table = _check_replicates_are_refits(fit, frame, re_formula)
    with dask.config.set(scheduler="sync"):
        dask_table = _check_replicates_are_refits(on_dask, frame, re_formula)
    pd.testing.assert_frame_equal(dask_table, table, rtol=1e-6, atol=1e-9)


def test_a_weighted_fit_whose_fixed_effects_are_all_random_draws_on_n_minus_rank_w():
    """Sleepstudy's ``Reaction ~ Days``, ``(1 + Days | Subject)`` with weights: ``X``
    lies in the span of ``Z̃``, so ``rank[Z̃ X] = 36`` and the residual χ² has 180 − 36
    = 144 degrees of freedom.  The base judged the Schur complement's rank against its
    own rounding and drew on 143 (so another table for the same seed)."""
    df = pd.read_csv(Path(__file__).parents[1] / "data" / "sleepstudy.csv")
    df["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(df))
    fit = mixedlm("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days", weights="w").fit()
    arrays = GroupArrays.from_statistics(fit.fitted_model.cached_statistics)
    assert ReplicateFitter.of(fit, arrays).sampler.df_resid == len(df) - 2 * 18


def _group_level_frame() -> pd.DataFrame:
    """A random slope on ``gc``, constant within each group, and one group of 2 rows."""
    rng = np.random.default_rng(1)
    sizes = [2] + [8] * 30
    g = np.repeat(np.arange(len(sizes)), sizes)
    gc = rng.normal(size=len(sizes))
    frame = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "gc": gc[g]})
    effects = rng.normal(size=len(sizes)) + rng.normal(size=len(sizes)) * gc
    frame["y"] = frame.x1 + frame.gc + rng.normal(size=g.size) + effects[g]
    return frame


def test_a_random_slope_on_a_group_level_column_draws_one_table_in_process_and_on_dask():
    """``y ~ x1 + gc``, ``re_formula="1 + gc"``: every group's ``Z̃_i'Z̃_i`` has rank
    one.  In process the fit takes them in closed form and keeps no centred sums; on
    Dask every group is lossy and keeps them (its column map, chosen from a sample,
    also scales ``gc`` otherwise).  The root is one rule of the plain sums for both
    (``√u z̄ z_e``, which scales with ``gc``): one seed, one table.  The base drew with
    the symmetric root in process and ``M C̃^{1/2}`` on Dask (llf apart by up to 1.1)."""
    frame = _group_level_frame()
    args = ("y ~ x1 + gc",)
    kw = dict(groups="g", re_formula="1 + gc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = mixedlm(*args, frame, **kw).fit()
        with dask.config.set(scheduler="sync"):
            on_dask = mixedlm(*args, dd.from_pandas(frame, npartitions=3), **kw).fit()
            dask_table = on_dask.bootstrap(6, seed=0).replicates
    assert fit.fitted_model.cached_statistics.engine.block.centred_groups == 0
    dask_arrays = GroupArrays.from_statistics(on_dask.fitted_model.cached_statistics, centred=True)
    assert dask_arrays.centred is not None and np.all(dask_arrays.centred.sums.lossy)
    table = fit.bootstrap(6, seed=0).replicates
    assert table["converged"].all()
    # to the optimizer's tolerance (the llf, flat at the optimum, closer)
    pd.testing.assert_frame_equal(dask_table, table, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dask_table["llf"], table["llf"], rtol=1e-11)


def _heavy_group_frame() -> pd.DataFrame:
    """Weighted ``1 + x1``: group 0 of weights 1e7 and ``x1`` of relative spread ~1e-7
    (not lossy), group 1 lossy (``x1`` a spread of 1e-6 about 3)."""
    rng = np.random.default_rng(3)
    n_groups, m = 31, 10
    g = np.repeat(np.arange(n_groups), m)
    x1 = rng.normal(size=g.size)
    x1[g == 0] = 5 + 5 * np.sqrt(1e-7) * rng.normal(size=m)
    x1[g == 1] = 3 + 1e-6 * rng.normal(size=m)
    w = np.where(g == 0, 1e7, 1.0)
    noise = rng.normal(size=g.size)
    b0 = rng.normal(size=n_groups)
    y = x1 + noise + b0[g] + 0.5 * rng.normal(size=n_groups)[g] * x1
    return pd.DataFrame({"g": g, "x1": x1, "y": y, "w": w})


def test_a_heavy_group_that_is_not_lossy_takes_one_root_in_process_and_on_dask():
    """The in-process fit keeps every group's centred sums (group 1 is lossy), the Dask
    fit group 1's only.  Group 0, not lossy, takes one root in both: not of rank one
    judged against its ten rows (against its weight, 1e8, it was), and a spread in
    centred sums counts for the lossy groups alone, which both engines hold.  The
    branch before took it in closed form on Dask and off it in process (llf apart by
    up to 5.4)."""
    frame = _heavy_group_frame()
    kw = dict(groups="g", re_formula="1 + x1", weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = mixedlm("y ~ x1", frame, **kw).fit()
        with dask.config.set(scheduler="sync"):
            on_dask = mixedlm("y ~ x1", dd.from_pandas(frame, npartitions=3), **kw).fit()
            dask_table = on_dask.bootstrap(4, seed=0).replicates
        table = fit.bootstrap(4, seed=0).replicates
    samplers = []
    for f in (fit, on_dask):
        arrays = GroupArrays.from_statistics(f.fitted_model.cached_statistics, centred=True)
        samplers.append(ReplicateFitter.of(f, arrays).sampler)
    local, dask_side = samplers
    np.testing.assert_array_equal(local.closed_form, dask_side.closed_form)
    np.testing.assert_allclose(local.root[0], dask_side.root[0], rtol=1e-9, atol=1e-9)
    # the tables to the two fits' own difference (cov_re 1.3e-5 in process, 0 on Dask:
    # RESULTS.md, boot-s53); some of the Dask refits stop at that boundary unconverged
    np.testing.assert_allclose(dask_table["llf"], table["llf"], rtol=1e-6)


def _wide_slopes_frame(p: int, seed: int = 3) -> pd.DataFrame:
    """``y ~ x0 + … + x{p−1}`` with a random slope on ``x1``: 30 groups of 6–14 rows."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(6, 15, 30)
    g = np.repeat(np.arange(30), sizes)
    frame = pd.DataFrame(rng.normal(size=(g.size, p)), columns=[f"x{i}" for i in range(p)])
    frame["g"] = g
    effects = rng.normal(size=(30, 2))
    frame["y"] = (
        frame.x0 + effects[g, 0] + (0.5 + 0.4 * effects[g, 1]) * frame.x1 + rng.normal(size=g.size)
    )
    return frame


@pytest.mark.parametrize("native_choice", ["auto", "numpy"])
def test_wide_replicates_are_the_refits_of_each_draw_alone(monkeypatch, native_choice):
    """A fit of more fixed effects than the extension's r = 2 sums take (k = 67, the
    numpy rows and gathered Hessian moments): its bootstrap, whose replicates share the
    design's rows (:func:`~dmixed.kernels.dense2.sharing_design`) and sum the Hessian's
    gathers in C where the extension is built, gives the table of refitting each draw
    on its own with numpy's gathers (the path before either), to 1e-10 of each entry."""
    monkeypatch.setenv("DMIXED_NATIVE", native_choice)
    frame = _wide_slopes_frame(66)
    formula = "y ~ " + " + ".join(f"x{i}" for i in range(66))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = mixedlm(formula, frame, groups="g", re_formula="1 + x1").fit()
        table = fit.bootstrap(4, seed=11)
    assert table.replicates["converged"].all()
    monkeypatch.setenv("DMIXED_NATIVE", "numpy")
    stats = fit.fitted_model.cached_statistics
    fitter = ReplicateFitter.of(fit, GroupArrays.from_statistics(stats, centred=True))
    rngs = np.random.SeedSequence(11).spawn(4)
    want = [fitter.refit(fitter.draw(np.random.default_rng(s))) for s in rngs]
    got = table.replicates.to_numpy(dtype=np.float64)
    want_arr = np.array(want, dtype=np.float64)
    np.testing.assert_allclose(got, want_arr, rtol=1e-10, atol=0.0)


def test_a_bootstrap_table_of_deeply_nested_metadata_is_a_checkpoint_error(tmp_path):
    """Its metadata of 100000 nested arrays raised a raw RecursionError; the message
    names the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dmixed.results.bootstrap import METADATA_KEY

    blob = b'{"estimate": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    table = pa.table({"a": [1.0]}).replace_schema_metadata({METADATA_KEY: blob})
    path = tmp_path / "deep.parquet"
    pq.write_table(table, path)
    with pytest.raises(CheckpointError, match="nested deeper than dmixed ever writes") as info:
        BootstrapResults.load(path)
    assert str(path) in str(info.value) and len(str(info.value)) < 1000


def test_a_covariate_named_like_a_summary_column_keeps_its_interval():
    """The summary columns are taken by position: a fixed effect named ``llf`` keeps
    its interval and standard error beside ``scale`` (dropping by name took both
    ``llf`` columns)."""
    rng = np.random.default_rng(0)
    n = 300
    g = rng.integers(0, 20, n)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=n), "llf": rng.normal(size=n)})
    df["y"] = df.x + 0.3 * df.llf + rng.normal(size=n) + rng.normal(size=20)[g]
    boot = mixedlm("y ~ x + llf", df, groups="g").fit().bootstrap(5, seed=1)
    rows = ["Intercept", "x", "llf", "g Var (cov_re)", "scale"]
    assert list(boot.conf_int().index) == rows
    assert list(boot.bse.index) == rows
    assert np.isfinite(boot.bse.to_numpy()).all()


def test_cluster_batches_run_with_the_fits_page_advice(monkeypatch):
    """The replicates' batches on the workers are sent as the fit's other functions are
    (``dmixed.kernels.pages.paged``): each a ``PagedCall`` of ``run_batch`` carrying the
    driver's ``HUGE_PAGES_IN_FITS`` at the time."""
    from dmixed.kernels import pages
    from dmixed.results import bootstrap

    class Recorder:
        def __init__(self):
            self.funcs = []

        def nthreads(self):
            return {"w0": 1, "w1": 1}

        def scatter(self, obj, broadcast, hash):
            return obj

        def map(self, func, *iterables, pure):
            self.funcs.append(func)
            return []

    for huge in (False, True):
        monkeypatch.setattr(pages, "HUGE_PAGES_IN_FITS", huge)
        client = Recorder()
        list(bootstrap.run_on_cluster(client, object(), [object()] * 4))
        (func,) = client.funcs
        assert isinstance(func, pages.PagedCall)
        assert func.func is bootstrap.run_batch and func.huge is huge


def _sdcor_by_hand(fit, boot) -> pd.DataFrame:
    """lme4's parameters of each replicate from the table's statsmodels' columns, in
    sdcor's order (Ψ's SDs and correlation by columns, the component's SD, σ, β) under
    lme4's names of that order."""
    from dmixed.results.sdcor import sdcor_names
    from dmixed.results.varcorr import term_levels

    t = boot.replicates
    var, slope, cov = t["g Var (cov_re)"], t["x1 Var (cov_re)"], t["g x x1 Cov (cov_re)"]
    columns = [
        np.sqrt(var),
        cov / np.sqrt(var * slope),
        np.sqrt(slope),
        np.sqrt(t["sub Var (vcomp)"]),
        np.sqrt(t["scale"]),
        *(t[name] for name in fit.fe_params.index),
    ]
    names, _ = sdcor_names(fit.names, term_levels(fit.to_state()))
    return pd.DataFrame(dict(zip(names, columns, strict=True)))


def test_confint_boot_gives_profile_rows_from_the_replicates(vc_fit):
    """lme4's confint(method="boot"): confint's rows, columns and scale (SDs, the
    correlation, σ), the percentiles of the replicates mapped by hand."""
    got = vc_fit.confint(method="boot", nsim=12, seed=3, level=0.5)
    by_hand = _sdcor_by_hand(vc_fit, vc_fit.bootstrap(12, seed=3))
    assert list(got.columns) == ["25 %", "75 %"]
    assert list(got.index) == list(vc_fit.confint(method="Wald").index)
    expected = pd.DataFrame({"25 %": by_hand.quantile(0.25), "75 %": by_hand.quantile(0.75)})
    pd.testing.assert_frame_equal(got, expected.loc[got.index], rtol=1e-12)
    assert (got["25 %"] <= got["75 %"]).all()


def test_confint_boot_rows_are_the_profile_rows():
    df = pd.read_csv(Path(__file__).parents[1] / "data" / "sleepstudy.csv")
    fit = mixedlm("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days").fit()
    with pytest.warns(ProfileWarning, match="extreme order statistics"):  # nsim < 40
        boot = fit.confint(method="boot", nsim=10, seed=1)
    profile = fit.confint()
    assert list(boot.index) == list(profile.index)
    assert list(boot.columns) == list(profile.columns)
    # σ's interval on σ's scale (not σ²), as the profile's
    assert boot.loc[".sigma"].between(15, 40).all() and profile.loc[".sigma"].between(15, 40).all()
    with pytest.warns(ProfileWarning, match="extreme order statistics"):
        theta = fit.confint(method="boot", nsim=10, seed=1, parm="theta_")
    pd.testing.assert_frame_equal(theta, boot.iloc[:4])


@pytest.mark.parametrize(
    ("nsim", "level", "warns"),
    [(39, 0.95, True), (40, 0.95, False), (3, 0.5, True), (4, 0.5, False)],
)
def test_confint_boot_warns_where_nsim_cannot_resolve_the_level(vc_fit, nsim, level, warns):
    """As boot.ci: where (R + 1)·(1 − level)/2 ≤ 1 the limits are the extreme
    replicates, said with a warning (R + 1 = 40 at level 0.95 is still too few)."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        ci = vc_fit.confint(method="boot", nsim=nsim, seed=3, level=level)
    ours = [w for w in got if issubclass(w.category, ProfileWarning)]
    assert len(ours) == int(warns)
    if warns:
        assert "extreme order statistics used as endpoints" in str(ours[0].message)
        assert ours[0].filename == __file__
    assert (ci.iloc[:, 0] <= ci.iloc[:, 1]).all()


def test_confint_nsim_is_for_boot_only(vc_fit):
    with pytest.raises(SpecError, match="nsim and seed are for method='boot' only"):
        vc_fit.confint(method="Wald", nsim=10)
    with pytest.raises(SpecError, match="'profile', 'Wald' or 'boot'"):
        vc_fit.confint(method="bootstrap")
