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
from dmixed.errors import DataError

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
    want = dmixed.mixedlm("y ~ ts", df, **kw).fit()
    files = _one_row_files_first(tmp_path, df)
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"}):
        got = dmixed.mixedlm("y ~ ts", dd.read_parquet(files), **kw).fit()
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-9)
    assert np.isfinite(np.asarray(got.bse)).all()
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)


def test_a_file_of_one_row_read_after_its_chains_map_is_named_in_its_errors(tmp_path, monkeypatch):
    """A chain reads its leading files of one row after the first file of more rows;
    an error in one of them still names that file."""
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


def test_map_rows_first_moves_the_first_partition_of_more_rows_before_those_of_one():
    """Leading partitions of one row wait for the first of more rows; partitions without
    rows stay where they are; the rest keep their order; frames or dicts of columns."""
    from dmixed.engines.dask.partials import MapRowsFirst

    def frame(n, tag):
        return pd.DataFrame({"y": np.full(n, float(tag))})

    def columns(n, tag):
        return {"y": np.full(n, float(tag))}

    for make in (frame, columns):
        parts = [make(1, 0), make(0, 1), make(1, 2), make(3, 3), make(1, 4), make(2, 5)]
        order = [int(p["y"][0]) if len(p["y"]) else 1 for p in MapRowsFirst(parts)]
        assert order == [1, 3, 0, 2, 4, 5]
        ones = [make(1, i) for i in range(3)]
        assert [int(p["y"][0]) for p in MapRowsFirst(ones)] == [0, 1, 2]
