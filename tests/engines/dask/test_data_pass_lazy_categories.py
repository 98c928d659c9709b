"""dmixed.engines.dask.data_pass: a group column of unknown categories (Dask's lazy
``astype("category")``) keyed by its values as the pass reads them, its key kind settled
after the pass (``stats.keys.LEARNED_KEYS``), in the one read of the data."""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError


def _frame(kind: str = "int", n_groups: int = 80, n: int = 2400, seed: int = 0) -> pd.DataFrame:
    """Groups of sparse integer ids (or halves of them, or text), a random intercept
    and slope on x."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_groups, n)
    u = rng.normal(size=(n_groups, 2))
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + u[ids, 0] + 0.3 * u[ids, 1] * x + rng.normal(size=n)
    g: object = ids * 7 + 3
    if kind == "float":
        g = (ids * 7 + 3) / 2.0
    elif kind == "text":
        g = np.array([f"s{v:03d}" for v in ids * 7 + 3], dtype=object)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _lazy(ddf):
    ddf = ddf.copy()
    ddf["g"] = ddf["g"].astype("category")
    assert not ddf["g"].cat.known
    return ddf


def _fit(data, re_formula="1 + x", client=None, **kw):
    fit_kw = {} if client is None else {"client": client}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a boundary fit's warning, alike in both fits)
        model = dmixed.mixedlm("y ~ x", data, groups="g", re_formula=re_formula, **kw)
        return model.fit(**fit_kw)


def _same_fit(got, want) -> None:
    """The two fits bit for bit, with the same group labels of the same types."""
    assert got.llf == want.llf
    np.testing.assert_array_equal(got.fe_params.to_numpy(), want.fe_params.to_numpy())
    np.testing.assert_array_equal(got.bse.to_numpy(), want.bse.to_numpy())
    assert list(got.random_effects) == list(want.random_effects)
    assert [type(k) for k in got.random_effects] == [type(k) for k in want.random_effects]
    for key, effects in want.random_effects.items():
        np.testing.assert_array_equal(got.random_effects[key].to_numpy(), effects.to_numpy())


def _parts(*frames: pd.DataFrame):
    """A collection of these partitions as they are (their own dtypes)."""
    delayed = [dask.delayed(lambda f=f: f)() for f in frames]
    return dd.from_delayed(delayed, meta=frames[0].iloc[:0], verify_meta=False)


@pytest.mark.parametrize("kind", ["int", "float", "text"])
def test_a_lazy_categorical_fits_as_its_values_on_the_sync_scheduler(kind):
    """The fit of the column left as it is, bit for bit, labels of the values' type
    (int, float, str as pandas groups a categorical of them); each partition's own
    categories (its codes mean nothing in another)."""
    df = _frame(kind)
    with dask.config.set(scheduler="sync"):
        lazy = _fit(_lazy(dd.from_pandas(df, npartitions=4)))
        plain = _fit(dd.from_pandas(df, npartitions=4))
    _same_fit(lazy, plain)
    want = {"int": (int, np.integer), "float": (float,), "text": (str,)}[kind]
    assert all(isinstance(k, want) for k in lazy.random_effects)
    pandas_labels = df.assign(g=df["g"].astype("category")).groupby("g", observed=True).groups
    assert list(lazy.random_effects) == list(pandas_labels)


@pytest.mark.parametrize("kind", ["int", "float", "text"])
@pytest.mark.parametrize("exchange", ["rows", "partials"])
def test_a_lazy_categorical_fits_as_its_values_on_a_cluster(client, kind, exchange):
    """On two workers, with either exchange form (rows routed by key, partials by
    group): the fit of the column left as it is, bit for bit; with variance
    components too."""
    df = _frame(kind).assign(c=lambda d: np.arange(len(d)) % 3)
    with dask.config.set({"dmixed.exchange": exchange}):
        lazy = _fit(_lazy(dd.from_pandas(df, npartitions=4)), client=client)
        plain = _fit(dd.from_pandas(df, npartitions=4), client=client)
        _same_fit(lazy, plain)
        vc = {"vc_formula": {"c": "0 + C(c)"}, "re_formula": None, "client": client}
        plain_vc = _fit(dd.from_pandas(df, npartitions=4), **vc)
        _same_fit(_fit(_lazy(dd.from_pandas(df, npartitions=4)), **vc), plain_vc)


def test_a_lazy_categorical_agrees_with_statsmodels():
    """ℓ, fixed effects and their standard errors within 1e-8 of statsmodels' fit of the
    pandas categorical (a random intercept; BFGS to a tight gradient, where its default
    stops ~1e-6 short in the fixed effects)."""
    sm = pytest.importorskip("statsmodels.formula.api")
    df = _frame("int", n_groups=60, n=1800, seed=4)
    with dask.config.set(scheduler="sync"):
        ours = _fit(_lazy(dd.from_pandas(df, npartitions=3)), re_formula=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (statsmodels' own convergence words)
        model = sm.mixedlm("y ~ x", df.assign(g=df["g"].astype("category")), groups="g")
        theirs = model.fit(method=["bfgs"], gtol=1e-12)
    assert abs(ours.llf - theirs.llf) <= 1e-8 * abs(theirs.llf)
    for name in ("fe_params", "bse_fe"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-8)
    assert list(ours.random_effects) == list(theirs.random_effects)


def test_missing_keys_of_a_lazy_categorical_are_dropped_or_refused_as_the_numbers():
    """Integers with missing values (floats in pandas): ``missing="drop"`` fits as the
    float column, labels floats as pandas gives them; ``"raise"`` refuses in the words
    of the float column."""
    df = _frame("int").astype({"g": float})
    df.loc[::37, "g"] = np.nan
    with dask.config.set(scheduler="sync"):
        lazy = _fit(_lazy(dd.from_pandas(df, npartitions=4)), missing="drop")
        plain = _fit(dd.from_pandas(df, npartitions=4), missing="drop")
        _same_fit(lazy, plain)
        assert all(isinstance(k, float) for k in lazy.random_effects)
        refusals = []
        for ddf in (_lazy(dd.from_pandas(df, npartitions=4)), dd.from_pandas(df, npartitions=4)):
            with pytest.raises(DataError) as refused:
                _fit(ddf, missing="raise")
            refusals.append(str(refused.value))
    assert refusals[0] == refusals[1]
    assert "missing values in column 'g'" in refusals[0]


def test_integer_and_float_partitions_are_one_key_kind(client):
    """Partitions whose categories are integers in one and floats in another (files
    written with and without missing values): a group's rows meet (3 and 3.0 one key),
    the fit equals that of the float column, the labels all of one type."""
    df = _frame("int")
    half = len(df) // 2
    mixed = _parts(df.iloc[:half], df.iloc[half:].astype({"g": float}))
    want = _fit(dd.from_pandas(df.astype({"g": float}), npartitions=2), client=client)
    for exchange in ("rows", "partials"):
        with dask.config.set({"dmixed.exchange": exchange}):
            got = _fit(_lazy(mixed), client=client)
        assert got.llf == want.llf
        np.testing.assert_array_equal(got.fe_params.to_numpy(), want.fe_params.to_numpy())
        assert [float(k) for k in got.random_effects] == list(want.random_effects)
        assert len({type(k) for k in got.random_effects}) == 1
    # a fractional float among them: the labels are floats
    frac = df.astype({"g": float})
    frac.loc[frac.index[-1], "g"] = 0.5
    got = _fit(_lazy(_parts(frac.iloc[:half], frac.iloc[half:])), client=client)
    assert all(isinstance(k, float) for k in got.random_effects)
    assert 0.5 in got.random_effects


def test_text_and_number_categories_in_one_collection_are_refused():
    """Numbers in some partitions and text in others: one key of two types would be two
    groups, or two groups one (as in process); not pointed to ``categorize()``, which
    would not help."""
    df = _frame("int")
    half = len(df) // 2
    text = df.iloc[half:].assign(g=lambda d: [f"s{v}" for v in d["g"]])
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as refused:
        _fit(_lazy(_parts(df.iloc[:half], text)))
    message = str(refused.value)
    assert "the group column 'g' holds numbers (int64) in some partitions and text in" in message
    assert "categorize" not in message


def test_booleans_in_a_lazy_categorical_still_point_to_categorize():
    """Categories that are neither numbers nor text are not keyed by their values:
    refused as before, with the way to make the categories known."""
    df = _frame("int").assign(g=lambda d: d["g"] % 2 == 0)
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as refused:
        _fit(_lazy(dd.from_pandas(df, npartitions=2)), re_formula=None)
    assert str(refused.value).endswith(
        "`ddf.categorize(columns=['g'])`, or keep the column numeric"
    )


def test_known_categories_fit_as_before(client):
    """``categorize()`` (categories known before the pass): keyed by the declared
    categories' type, as the base; the same fit as the lazy column and the numbers."""
    df = _frame("int")
    known = _lazy(dd.from_pandas(df, npartitions=4)).categorize(columns=["g"])
    assert known["g"].cat.known
    plain = _fit(dd.from_pandas(df, npartitions=4), client=client)
    _same_fit(_fit(known, client=client), plain)
    _same_fit(_fit(_lazy(dd.from_pandas(df, npartitions=4)), client=client), plain)


def test_a_pandas_categorical_group_in_process_fits_as_its_values():
    """In process, a pandas categorical of numbers: the fit of the numbers, labels of
    their type (as statsmodels groups it)."""
    df = _frame("int")
    _same_fit(_fit(df.assign(g=df["g"].astype("category"))), _fit(df))


def test_parquet_of_a_pandas_categorical_fits_as_the_plain_files(client, tmp_path):
    """Parquet written from a pandas categorical (a dictionary column, read by Dask as a
    categorical of unknown categories): the fit of the same files written plain."""
    df = _frame("int", n=3000)
    for name, frame in {"dict": df.astype({"g": "category"}), "plain": df}.items():
        (tmp_path / name).mkdir()
        for i in range(3):
            frame.iloc[i * 1000 : (i + 1) * 1000].to_parquet(tmp_path / name / f"{i}.parquet")
    read = dd.read_parquet(tmp_path / "dict")
    assert isinstance(read.dtypes["g"], pd.CategoricalDtype) and not read["g"].cat.known
    _same_fit(_fit(read, client=client), _fit(dd.read_parquet(tmp_path / "plain"), client=client))


def test_a_lazy_int_categorical_of_many_groups_fits_as_the_numbers_bit_for_bit(client):
    """50,000 groups of 2–3 rows over 6 partitions on a cluster: each chain keys its rows
    by the categories' int64 values, as the numeric column's, so the fit is the numeric
    column's bit for bit (ℓ, fe_params, bse, every BLUP), labels int64, in both
    exchange forms."""
    rng = np.random.default_rng(7)
    g = np.repeat(rng.permutation(50_000), rng.integers(2, 4, size=50_000))
    n = g.size
    x = rng.normal(size=n)
    u = rng.normal(size=50_000)
    df = pd.DataFrame({"y": 1.0 + 0.5 * x + u[g] + rng.normal(size=n), "x": x, "g": g})
    for exchange in ("rows", "partials"):
        with dask.config.set({"dmixed.exchange": exchange}):
            plain = _fit(dd.from_pandas(df, npartitions=6), re_formula=None, client=client)
            lazy = _fit(_lazy(dd.from_pandas(df, npartitions=6)), re_formula=None, client=client)
        assert lazy.llf == plain.llf
        np.testing.assert_array_equal(lazy.fe_params.to_numpy(), plain.fe_params.to_numpy())
        np.testing.assert_array_equal(lazy.bse.to_numpy(), plain.bse.to_numpy())
        got, want = lazy.random_effects_frame(), plain.random_effects_frame()
        assert got.index.dtype == np.int64 and len(got) == 50_000
        np.testing.assert_array_equal(got.index.to_numpy(), want.index.to_numpy())
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())


def _split_lazy(first: pd.DataFrame, second: pd.DataFrame):
    """A lazy categorical over two partitions of their own group dtypes."""
    return _lazy(_parts(first, second))


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(lambda g: g.astype(float), id="floats"),
        pytest.param(lambda g: g.astype(np.uint64), id="uint64"),
    ],
)
@pytest.mark.parametrize("exchange", ["rows", "partials"])
def test_integers_beyond_2_53_meeting_floats_or_uint64_are_refused_naming_the_column(
    client, exchange, second
):
    """int64 keys at 2**62 in one partition and the same keys as floats (or uint64) in
    another: float64, their one dtype, would not hold such integers exactly, so the
    fit is refused naming the column (not an internal error)."""
    df = _frame("int")
    df["g"] = df["g"].astype(np.int64) * 2048 + 2**62
    half = len(df) // 2
    other = df.iloc[half:].assign(g=lambda d: second(d["g"].to_numpy()))
    with dask.config.set({"dmixed.exchange": exchange}), pytest.raises(DataError) as refused:
        _fit(_split_lazy(df.iloc[:half], other), client=client)
    assert "the group column 'g' holds integers beyond ±2**53" in str(refused.value)


def test_negative_int64_and_uint64_past_2_63_are_refused_naming_the_column():
    """Negative int64 keys in one partition, uint64 keys past 2**63 in another: no
    exact dtype holds both (``astype`` would wrap)."""
    df = _frame("int")
    half = len(df) // 2
    first = df.iloc[:half].assign(g=lambda d: d["g"] - 10_000)
    other = df.iloc[half:].assign(g=lambda d: d["g"].astype(np.uint64) + np.uint64(2**63))
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as refused:
        _fit(_split_lazy(first, other))
    assert "the group column 'g' holds integers beyond ±2**53" in str(refused.value)


def test_int64_and_uint64_partitions_within_2_53_fit_as_the_float_column():
    """int64 keys in one partition and uint64 in another, all within 2**53: float64
    holds both exactly, one key per group, the fit the float column's."""
    df = _frame("int")
    half = len(df) // 2
    other = df.iloc[half:].assign(g=lambda d: d["g"].astype(np.uint64))
    with dask.config.set(scheduler="sync"):
        got = _fit(_split_lazy(df.iloc[:half], other))
        want = _fit(dd.from_pandas(df.astype({"g": float}), npartitions=2))
    assert got.llf == want.llf
    np.testing.assert_array_equal(got.fe_params.to_numpy(), want.fe_params.to_numpy())
    assert [float(k) for k in got.random_effects] == list(want.random_effects)


@pytest.mark.parametrize("exchange", ["rows", "partials"])
def test_whole_floats_at_2_62_meet_their_integers(client, exchange):
    """Whole float keys 2**62 + 2048k (past the ±2**62 the routing once took as
    integers): routed as the int64 they equal, one key per group, the fit the float
    column's."""
    df = _frame("int")
    df["g"] = (df["g"].astype(np.int64) * 2048 + 2**62).astype(float)
    half = len(df) // 2
    with dask.config.set({"dmixed.exchange": exchange}):
        got = _fit(_split_lazy(df.iloc[:half], df.iloc[half:]), client=client)
        want = _fit(dd.from_pandas(df, npartitions=2), client=client)
    _same_fit(got, want)


def test_ints_and_text_in_one_partition_are_refused_as_the_plain_column():
    """A lazy categorical whose partition holds ``1`` and ``"1"`` (Dask left to keep
    objects as they are): refused as the plain column is, with its words, not merged."""
    df = _frame("int")
    df["g"] = np.array([v if v % 2 else str(v) for v in df["g"]], dtype=object)
    with dask.config.set({"scheduler": "sync", "dataframe.convert-string": False}):
        messages = []
        for data in (dd.from_pandas(df, npartitions=2), _lazy(dd.from_pandas(df, npartitions=2))):
            with pytest.raises(DataError) as refused:
                _fit(data)
            messages.append(str(refused.value).split(": ", 1)[-1])
    assert "column 'g' holds values of several Python types (int, str)" in messages[1]
    assert messages[0] == messages[1]
