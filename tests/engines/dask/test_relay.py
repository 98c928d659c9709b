"""Warnings of the data pass raised on the driver, once (:mod:`dmixed.engines.dask.relay`)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask.relay import raise_relayed, relay_mark, send_collected
from dmixed.errors import PrecisionWarning


def _rounded_response_frame() -> pd.DataFrame:
    """A response of nanosecond integers (the response is read as float64: rounded)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=g.size)
    noise = rng.integers(0, 10**9, g.size) + (rng.normal(size=20)[g] * 1e8).astype(np.int64)
    w = np.int64(1_700_000_000_000_000_000) + noise + (x * 1e8).astype(np.int64)
    return pd.DataFrame({"w": w, "x": x, "g": g})


def _precision_warnings(fit) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fit()
    return [w for w in got if issubclass(w.category, PrecisionWarning)]


@pytest.mark.parametrize("where", ["client", "sync"])
def test_a_workers_warning_is_raised_once_on_the_driver(request, where):
    """Four partitions each find the response rounded (each with its own range): the
    driver raises one PrecisionWarning naming the column."""
    import dask
    import dask.dataframe as dd

    ddf = dd.from_pandas(_rounded_response_frame(), npartitions=4)
    model = dmixed.mixedlm("w ~ x", ddf, groups="g")
    if where == "client":
        client = request.getfixturevalue("client")
        got = _precision_warnings(lambda: model.fit(client=client))
    else:
        with dask.config.set(scheduler="sync"):
            got = _precision_warnings(model.fit)
    assert len(got) == 1
    assert "column 'w' holds integers beyond 2**53" in str(got[0].message)


def test_warnings_sent_before_the_mark_are_not_raised_again(client):
    def send(text):
        send_collected([(PrecisionWarning, text, "k")])

    client.run(send, "old")  # on the workers, as a task of an earlier pass would
    mark = relay_mark(client)
    client.submit(send, "new", pure=False).result()
    with pytest.warns(PrecisionWarning, match="new") as got:
        raise_relayed(client, mark)
    assert [str(w.message) for w in got] == ["new"]


def test_a_swept_integer_column_is_warned_of_once_on_the_driver(tmp_path, monkeypatch, swept):
    """A random slope over Parquet files: the chains sum the partitions' columns
    themselves (the compiled sweep, integer columns as float64); the rounded response is
    still warned of once, on the driver."""
    import dask
    import dask.dataframe as dd

    df = _rounded_response_frame()
    df.iloc[:100].to_parquet(tmp_path / "a.parquet")
    df.iloc[100:].to_parquet(tmp_path / "b.parquet")
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    model = dmixed.mixedlm("w ~ x", dd.read_parquet(tmp_path), groups="g", re_formula="1 + x")
    with dask.config.set(scheduler="sync"):
        got = _precision_warnings(model.fit)
    assert swept == [100, 100]
    assert len(got) == 1
    assert "column 'w' holds integers beyond 2**53" in str(got[0].message)


def test_relayed_warnings_point_at_the_callers_line(client):
    """A worker's warning raised on the driver points at the line outside dmixed that
    called, as on the pandas path (it pointed into dmixed)."""
    mark = relay_mark(client)
    client.submit(send_collected, [(PrecisionWarning, "relayed", "k")], pure=False).result()
    with pytest.warns(PrecisionWarning, match="relayed") as got:
        raise_relayed(client, mark)
    assert got[0].filename == __file__


@pytest.mark.parametrize("lazy", [False, True])
def test_dropped_rows_on_dask_point_at_the_callers_line(lazy):
    """``DroppedRowsWarning`` of a Dask fit pointed at dmixed/model.py; it points at the
    caller's line as the pandas fit's does."""
    import dask
    import dask.dataframe as dd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": np.repeat(np.arange(20), 10), "x": rng.normal(size=200)})
    df["y"] = df.x + rng.normal(size=200) + np.repeat(rng.normal(size=20), 10)
    df.loc[3, "x"] = np.nan
    data = dd.from_pandas(df, npartitions=2) if lazy else df
    with dask.config.set(scheduler="sync"), warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        dmixed.mixedlm("y ~ x", data, groups="g", missing="drop").fit()
    dropped = [w for w in got if issubclass(w.category, dmixed.errors.DroppedRowsWarning)]
    assert len(dropped) == 1
    assert dropped[0].filename == __file__
