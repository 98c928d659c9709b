"""dmixed.engines.dask.partials: one task per partition conforms its group keys to the
collection's, as the chains do (text where the collection holds numbers refused, an
int64 partition of a float64 column cast)."""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError, DroppedRowsWarning, PrecisionWarning

MODELS = {
    "intercept": {},
    "component": {"vc_formula": {"a": "0 + C(a)"}},
}


def _data() -> pd.DataFrame:
    """1,500 rows of 30 groups drawn at random (every group in both files)."""
    rng = np.random.default_rng(3)
    g = rng.integers(0, 30, 1500)
    x1 = rng.normal(size=1500)
    y = 1 + x1 + rng.normal(size=30)[g] + rng.normal(size=1500)
    return pd.DataFrame({"y": y, "x1": x1, "g": g, "a": np.arange(1500) % 3})


def _fit(data, model: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dmixed.mixedlm("y ~ x1", data, groups="g", **MODELS[model]).fit()


def _two_files(tmp_path, df, second_keys) -> list[str]:
    half = len(df) // 2
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    df.iloc[:half].to_parquet(first)
    df.iloc[half:].assign(g=second_keys(df["g"].iloc[half:])).to_parquet(second)
    return [str(first), str(second)]


def _per_partition(files):
    """The files read, then repartitioned: Dask's own tasks, one per partition."""
    return dd.read_parquet(files).repartition(npartitions=3)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("source", ["repartitioned", "tree"])
def test_text_keys_in_one_partition_are_refused_not_made_other_groups(tmp_path, model, source):
    df = _data()
    files = _two_files(tmp_path, df, lambda g: g.astype(str))
    config = {"scheduler": "sync"}
    if source == "tree":
        config["dmixed.data_pass"] = "tree"
    ddf = _per_partition(files) if source == "repartitioned" else dd.read_parquet(files)
    with dask.config.set(config), pytest.raises(DataError, match=r"group column 'g' holds text"):
        _fit(ddf, model)


@pytest.mark.parametrize("model", list(MODELS))
def test_float_keys_of_whole_numbers_are_the_integer_groups(tmp_path, model):
    df = _data()
    files = _two_files(tmp_path, df, lambda g: g.astype(np.float64))
    ref = _fit(df, model)
    with dask.config.set(scheduler="sync"):
        got = _fit(_per_partition(files), model)
    assert len(got.random_effects) == len(ref.random_effects)
    np.testing.assert_allclose(got.llf, ref.llf, rtol=1e-12)
    np.testing.assert_allclose(got.fe_params, ref.fe_params, rtol=1e-9)


#: object group keys spelled two ways that compare (and group in pandas) as one key
SPELLINGS = {
    "numpy-int-in-tuple": lambda c, odd: (np.int64(c), "a") if odd else (c, "a"),
    "float-in-tuple": lambda c, odd: (float(c), "a") if odd else (c, "a"),
    "nested-numpy": lambda c, odd: ((np.int64(c),), np.str_("a")) if odd else ((c,), "a"),
    "numpy-int": lambda c, odd: np.int64(c) if odd else c,
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("npartitions", [2, 5])
def test_equal_object_keys_spelled_two_ways_are_one_group(spelling, npartitions):
    """Every other row spells its key another way ((np.int64(1), 'a') vs (1, 'a')): the
    partitions' partial statistics still meet by key, so the fit is pandas' grouping
    (the in-process fit) and that of one partition."""
    df = _data().iloc[:600]
    make = SPELLINGS[spelling]
    keys = [make(int(c), i % 2 == 1) for i, c in enumerate(df["g"])]
    df = df.assign(g=pd.Series(keys, index=df.index, dtype=object))
    assert df.groupby("g").ngroups == 30
    ref = _fit(df, "intercept")
    with dask.config.set(scheduler="sync"):
        one = _fit(dd.from_pandas(df, npartitions=1, sort=False), "intercept")
        many = _fit(dd.from_pandas(df, npartitions=npartitions, sort=False), "intercept")
    for got in (one, many):
        assert len(got.random_effects) == 30
        assert got.llf == pytest.approx(ref.llf, rel=1e-10)
        np.testing.assert_allclose(got.fe_params, ref.fe_params, rtol=1e-8)


def test_partitions_whose_weights_straddle_a_scale_step_give_the_in_process_fit():
    """Partitions whose weights' geometric means lie on either side of a step of the
    weights' scale (2^62 and 2^66 times ordinary weights) choose maps of weight scales
    1 and 2^128; their statistics are converted exactly (powers of two), so the fit is
    the in-process one."""
    df = _data().iloc[:600]
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(df))
    df = df.assign(w=np.where(np.arange(len(df)) < 300, w * 2.0**62, w * 2.0**66))
    ref = dmixed.mixedlm("y ~ x1", df, groups="g", weights="w").fit()
    with dask.config.set(scheduler="sync"):
        ddf = dd.from_pandas(df, npartitions=2, sort=False)
        got = dmixed.mixedlm("y ~ x1", ddf, groups="g", weights="w").fit()
    assert got.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(got.fe_params, ref.fe_params, rtol=1e-8)
    assert got.scale == pytest.approx(ref.scale, rel=1e-8)


def _raw_float_bits_hash(values, *args, **kwargs):
    """pandas' ``hash_array`` as before pandas 3: floats hashed by their raw bits."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = values.view(np.uint64)
    return _HASH_ARRAY(values, *args, **kwargs)


_HASH_ARRAY = pd.util.hash_array


def test_float_keys_zero_and_minus_zero_are_one_group_whatever_pandas_hash(monkeypatch):
    """Group keys ``-0.0`` in some rows and ``0.0`` in others are one group in process
    (pandas groups them); on Dask their partials meet in one bucket even where pandas
    hashes floats by their raw bits (as before pandas 3)."""
    df = _data().assign(g=lambda d: d["g"] - 0.5)
    zero = (df["g"] == 0.5).to_numpy()
    df.loc[zero, "g"] = np.where(np.arange(zero.sum()) % 2 == 0, 0.0, -0.0)
    assert np.signbit(df["g"]).sum() > 0 and df.groupby("g").ngroups == 30
    ref = _fit(df, "intercept")
    monkeypatch.setattr(pd.util, "hash_array", _raw_float_bits_hash)
    with dask.config.set(scheduler="sync"):
        got = _fit(dd.from_pandas(df, npartitions=4, sort=False), "intercept")
    assert len(got.random_effects) == 30
    assert got.llf == pytest.approx(ref.llf, rel=1e-10)


@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_nan_float_keys_are_missing_values_as_in_process(missing):
    """A NaN group key is a missing value on Dask as in process: refused naming the
    column, or its rows dropped (never a group of its own)."""
    df = _data().assign(g=lambda d: d["g"] + 0.5)
    df.loc[[3, 900], "g"] = [np.nan, -np.nan]
    with dask.config.set(scheduler="sync"):
        got = []
        for data in (df, dd.from_pandas(df, npartitions=3, sort=False)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = dmixed.mixedlm("y ~ x1", data, groups="g", missing=missing).fit()
                got.append((res.nobs, len(res.random_effects), res.llf))
            except DataError as err:
                assert "missing values in column 'g'" in str(err)
                got.append("refused")
    if missing == "raise":
        assert got == ["refused", "refused"]
    else:
        assert got[0][:2] == got[1][:2] == (1498, 30)
        assert got[1][2] == pytest.approx(got[0][2], rel=1e-10)


def _events(n_users: int = 400, seed: int = 1) -> pd.DataFrame:
    """Users' events at timestamps near 1.7e9 (a spread of about 100 s), a random slope
    on them, revenue near 1e6, prior weights; a fifth of the users have two events
    1 ms apart."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 12, size=n_users)
    sizes[: n_users // 5] = 2
    u = np.repeat(np.arange(n_users), sizes)
    start = 1.7e9 + rng.uniform(0, 100, size=n_users)
    ts = start[u] + rng.uniform(0, 10, size=u.size)
    pairs = np.flatnonzero(u < n_users // 5)
    ts[pairs] = start[u[pairs]] + np.tile([0.0, 1e-3], n_users // 5)
    slope = rng.normal(0, 0.03, n_users)
    y = 1e6 + rng.normal(0, 5, n_users)[u] + slope[u] * (ts - 1.7e9) + rng.normal(size=u.size)
    df = pd.DataFrame({"u": u, "ts": ts, "y": y, "w": rng.uniform(0.2, 5, u.size)})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _fit_ts(model):
    """``model.fit()`` for a random slope on ``_events``' timestamps: about 1.7e9 seconds
    with a spread of about 30, so the raw-basis ``cov_re`` cannot carry the fitted point in
    float64 (the likelihood at the reported numbers lies measurably below llf in 60
    digits), and the fit says so, in process and on Dask alike."""
    with pytest.warns(PrecisionWarning, match="random-effects column 'ts'"):
        return model.fit()


def _one_row_files_first(tmp_path, df, n_one: int = 3) -> list[str]:
    """Two runs of files, each ``n_one`` files of one row and then half the other rows:
    with two chains, each chain's first file holds one row."""
    paths = []
    rest = df.iloc[2 * n_one :]
    half = len(rest) // 2
    for run, big in enumerate((rest.iloc[:half], rest.iloc[half:])):
        for i in range(n_one):
            row = 2 * n_one - 1 - (run * n_one + i)
            paths.append(tmp_path / f"r{run}_{i}_one.parquet")
            df.iloc[[row]].to_parquet(paths[-1], index=False)
        paths.append(tmp_path / f"r{run}_{n_one}_rows.parquet")
        big.to_parquet(paths[-1], index=False)
    return [str(p) for p in paths]


@pytest.mark.parametrize("weighted", [False, True])
def test_chains_starting_with_files_of_one_row_fit_in_the_map_of_more_rows(
    tmp_path, monkeypatch, weighted
):
    """Two chains whose first files hold one row each: a map chosen from one row scales
    the timestamps by their size (2^31), not their spread, and the fit's coordinates
    were so badly scaled that the Hessian's curvature in the slope's variance looked
    like none (NaN standard errors, a warning), and the optimizer took another route.
    Each chain now chooses its map from its first file of more rows: the fit is the
    in-process fit, its standard errors too."""
    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 2)
    df = _events()
    kw = {"groups": "u", "re_formula": "1 + ts", "weights": "w" if weighted else None}
    want = _fit_ts(dmixed.mixedlm("y ~ ts", df, **kw))
    files = _one_row_files_first(tmp_path, df)
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        got = _fit_ts(dmixed.mixedlm("y ~ ts", dd.read_parquet(files), **kw))
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-9)
    assert np.isfinite(np.asarray(got.bse)).all()
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)


def test_a_file_of_one_row_read_after_its_chains_map_is_named_in_its_errors(tmp_path, monkeypatch):
    """A chain holds its leading file of one row until it has rows enough to choose its
    map from, and sums it after; an error in it still names that file."""
    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 1)
    df = _events(n_users=50)
    bad = tmp_path / "a_one.parquet"
    df.iloc[[0]].assign(w=-1.0).to_parquet(bad, index=False)
    df.iloc[1:].to_parquet(tmp_path / "b_rows.parquet", index=False)
    files = [str(bad), str(tmp_path / "b_rows.parquet")]
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        model = dmixed.mixedlm("y ~ ts", dd.read_parquet(files), groups="u", weights="w")
        with pytest.raises(DataError, match="a_one.parquet"):
            model.fit()


def _head_files(tmp_path, df, head: list[pd.DataFrame]) -> list[str]:
    """Files of the frames ``head`` (in their order) and then one of the rows of ``df``
    after theirs."""
    paths = []
    for i, frame in enumerate(head):
        paths.append(str(tmp_path / f"a{i:05d}.parquet"))
        frame.to_parquet(paths[-1], index=False)
    paths.append(str(tmp_path / "b_rest.parquet"))
    df.iloc[sum(len(f) for f in head) :].to_parquet(paths[-1], index=False)
    return paths


def _layout(df: pd.DataFrame, layout: str) -> list[pd.DataFrame]:
    """The leading files of one chain: files of one row, then (``nan``) a file of two
    rows one of which the design drops, or (``constant``) one of two rows at one
    instant; ``many``: more one-row files than a chain used to hold."""
    if layout == "many":
        return [df.iloc[[i]] for i in range(1030)]
    ones = [df.iloc[[i]] for i in range(3)]
    two = df.iloc[[3, 4]]
    if layout == "nan":
        return [*ones, two.assign(ts=[np.nan, two["ts"].iloc[1]])]
    return [*ones, two.assign(ts=two["ts"].iloc[1])]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("layout", ["nan", "constant", "many"])
def test_a_chain_chooses_its_map_from_rows_where_every_column_varies(
    tmp_path, monkeypatch, layout, weighted
):
    """One chain whose first rows the design keeps hold one timestamp: after files of
    one row, a file of two rows one of which has no timestamp (dropped), or two events
    at one instant, or over a thousand files of one row.  A map chosen from them scales
    the timestamps by their size, not their spread: NaN standard errors, a warning.
    The chain holds its rows until the timestamps vary in them: the fit is the
    in-process fit of the rows kept, its standard errors too."""
    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 1)
    df = _events()
    files = _head_files(tmp_path, df, _layout(df, layout))
    kept = pd.concat([pd.read_parquet(f) for f in files]).dropna()
    kw = {"groups": "u", "re_formula": "1 + ts", "weights": "w" if weighted else None}
    want = _fit_ts(dmixed.mixedlm("y ~ ts", kept, **kw))
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        model = dmixed.mixedlm("y ~ ts", dd.read_parquet(files), missing="drop", **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedRowsWarning)
            got = _fit_ts(model)
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-9)
    assert np.isfinite(np.asarray(got.bse)).all()
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)


def test_a_chain_of_variance_components_after_many_files_of_one_row_fits_the_optimum(
    tmp_path, monkeypatch
):
    """Variance components on one chain whose first 1,030 files hold one row: in a map
    chosen from one row the optimizer stopped short of the optimum and called it
    converged; now the fit is the in-process fit."""
    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 1)
    df = _events()
    df["c"] = np.random.default_rng(3).integers(0, 4, len(df)).astype(float)
    files = _head_files(tmp_path, df, _layout(df, "many"))
    kw = {"groups": "u", "re_formula": "1 + ts", "vc_formula": {"c": "0 + C(c)"}, "weights": "w"}
    want = _fit_ts(dmixed.mixedlm("y ~ ts", df, **kw))
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        got = _fit_ts(dmixed.mixedlm("y ~ ts", dd.read_parquet(files), **kw))
    assert got.converged
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-7)


def _intercept_and_x(y, x):
    """A partition's design: ``y`` and the columns (1, ``x``) of ``X`` and ``Z``."""
    from dmixed.design.spec import DesignMatrices

    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    exog = np.column_stack([np.ones_like(x), x])
    return DesignMatrices(y, exog, exog.copy(), [], [], np.zeros(len(y)), None, 0, None)


class _InterceptsFirst:
    """A spec whose intercepts are the first columns of ``X`` and ``Z``."""

    def intercept_columns(self):
        return 0, 0


def test_map_sample_holds_rows_until_every_column_but_the_intercepts_varies():
    """:class:`MapSample` holds partitions until ``y`` and every column of ``X`` and ``Z``
    but the intercepts vary in them (the rows the design keeps), or the sample is full;
    it yields them in their order and holds none after; a map chosen from several
    partitions is the map of their rows together."""
    from dmixed.engines.dask.partials import MapSample
    from dmixed.stats.standardize import SAMPLE_ROWS, Standardization

    dm = _intercept_and_x

    sample = MapSample([])
    parts = [dm([1.0], [5.0]), dm([2.0, 3.0], [5.0, 5.0]), dm([4.0], [6.0])]
    assert [sample.take(p, None, None, (0, 0)) for p in parts] == [False, False, True]
    got = sample.choose(_InterceptsFirst())
    rows = dm([1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 6.0])
    want = Standardization.choose(rows.endog, rows.exog, rows.exog_re, (0, 0), [], None)
    assert got == want and got.sample_rows == 4
    assert [d is p for (d, _, _), p in zip(sample.released(), parts, strict=True)] == [True] * 3
    assert sample.held == []
    full = MapSample([])
    assert full.take(dm(np.ones(SAMPLE_ROWS), np.ones(SAMPLE_ROWS)), None, None, (0, 0))
    spread = MapSample([])
    assert spread.take(dm([1.0, 2.0], [3.0, 4.0]), None, None, (0, 0))


@pytest.mark.parametrize("sizes", [[1, 1, 1], [1, 2, 1, 3]])
def test_the_partition_that_completes_a_chains_sample_is_swept(tmp_path, monkeypatch, sizes):
    """One chain whose first files hold events at one instant (of one row, or a few):
    the chain holds them until rows where the timestamps vary come, and the partition
    whose first rows complete the sample is summed by the compiled sweep, as the
    partitions after it, not the design's way; the held rows are summed first, in the
    map chosen with it.  The fit is the in-process fit."""
    from dmixed.engines.dask import partials

    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 1)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    swept: list[int] = []
    add = partials.ColumnSweep.add

    def counted(self, frame, *args, **kwargs):
        left = add(self, frame, *args, **kwargs)
        if left[0] is None:
            swept.append(len(frame["y"]))
        return left

    monkeypatch.setattr(partials.ColumnSweep, "add", counted)
    df = _events().drop(columns="w")
    n_head = sum(sizes)
    df.loc[: n_head - 1, "ts"] = df["ts"].iloc[0]
    cuts = np.cumsum([0, *sizes])
    head = [df.iloc[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    half = (len(df) - n_head) // 2
    files = _head_files(tmp_path, df, [*head, df.iloc[n_head : n_head + half]])
    kw = {"groups": "u", "re_formula": "1 + ts"}
    want = _fit_ts(dmixed.mixedlm("y ~ ts", df, **kw))
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        got = _fit_ts(dmixed.mixedlm("y ~ ts", dd.read_parquet(files), **kw))
    # in each pass over the data, both files of many rows swept and no file of the head
    big = [half, len(df) - n_head - half]
    assert swept and swept == big * (len(swept) // 2)
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)


def test_map_sample_takes_a_partitions_first_rows_only_where_they_complete_it():
    """:meth:`MapSample.completes`: rows that do not complete the sample leave it as it
    was; rows that do join the map's sample but are not among the rows released (their
    partition is summed by its caller)."""
    from dmixed.engines.dask.partials import ChainFrames, MapSample
    from dmixed.stats.standardize import Standardization

    dm = _intercept_and_x

    chain = ChainFrames.__new__(ChainFrames)  # only its place in the chain
    chain.current = "first"
    sample = MapSample(chain)
    first = dm([1.0], [5.0])
    assert not sample.take(first, None, None, (0, 0))
    chain.current = "second"
    before = (sample.rows, sample.low.copy(), sample.high.copy(), len(sample.held))
    assert not sample.completes(dm([2.0, 3.0], [5.0, 5.0]), (0, 0))
    assert (sample.rows, len(sample.held)) == (before[0], before[3])
    np.testing.assert_array_equal(sample.low, before[1])
    np.testing.assert_array_equal(sample.high, before[2])
    assert sample.completes(dm([2.0, 3.0], [5.0, 6.0]), (0, 0))
    got = sample.choose(_InterceptsFirst())
    rows = dm([1.0, 2.0, 3.0], [5.0, 5.0, 6.0])
    assert got == Standardization.choose(rows.endog, rows.exog, rows.exog_re, (0, 0), [], None)
    released = sample.released()
    assert next(released)[0] is first and chain.current == "first"
    assert list(released) == []
    assert sample.held == [] and chain.current == "second"  # the partition read last


def test_a_value_left_past_the_head_of_the_completing_partition_names_its_file(
    tmp_path, monkeypatch
):
    """The partition whose first rows complete the sample is swept once the held rows
    are summed, which moves the chain's place to the held partitions.  An infinite
    predictor past those first rows, which the sweep leaves to the design, is worded by
    the chain's place: it names the completing file (the place put back after the
    held rows), not the last held one."""
    from dmixed.stats.standardize import SAMPLE_ROWS

    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 1)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    rng = np.random.default_rng(7)
    n = SAMPLE_ROWS + 20000
    df = pd.DataFrame({"u": rng.integers(0, 3000, n), "x": rng.normal(size=n)})
    df["y"] = rng.normal(0, 1, 3000)[df["u"]] + 0.5 * df["x"] + rng.normal(size=n)
    df.loc[:2, "x"] = 0.25  # no spread in the held one-row files
    df.loc[SAMPLE_ROWS + 10000, "x"] = np.inf  # past the completing file's head
    files = _head_files(tmp_path, df, [df.iloc[[i]] for i in range(3)])
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        model = dmixed.mixedlm("y ~ x", dd.read_parquet(files), groups="u", re_formula="1 + x")
        with pytest.raises(DataError, match=r"partition 3 .*b_rest\.parquet.*infinite"):
            model.fit()


def test_an_error_in_the_partition_that_completes_a_chains_sample_names_its_file(
    tmp_path, monkeypatch
):
    """The held rows are summed before the partition that completes the sample is
    swept; a value the sweep leaves to the design (an infinite response far into that
    partition) still names that partition's file, not a held one."""
    monkeypatch.setattr("dmixed.engines.dask.data_pass.os.cpu_count", lambda: 1)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _events().drop(columns="w")
    df.loc[:2, "ts"] = df["ts"].iloc[0]
    df.loc[len(df) - 5, "y"] = np.inf
    files = _head_files(tmp_path, df, [df.iloc[[i]] for i in range(3)])
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        model = dmixed.mixedlm("y ~ ts", dd.read_parquet(files), groups="u", re_formula="1 + ts")
        with pytest.raises(DataError, match="b_rest.parquet"):
            model.fit()


def test_the_level_scan_of_a_chain_of_no_partitions_is_the_empty_summary():
    """``chain_summary`` of a chain that reads no partition is the empty summary (was an
    ``UnboundLocalError`` of the last partition's name, freed after the loop)."""
    from dmixed.engines.dask.partials import chain_summary
    from dmixed.engines.dask.pieces import Pieces

    summary = chain_summary(Pieces([]), None, None, [])
    assert (summary.n, summary.n_kept, summary.levels, summary.range) == (0, 0, {}, None)
