"""dmixed.fit.model_statistics: the statistics of a model and their checks."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

import dmixed
from dmixed.errors import DataError

from .._synth import make_data


def _refusals(frame, formula, missing, where, request) -> tuple[str, str]:
    """The refusal of a fit of ``frame`` in process and on Dask (3 partitions)."""
    with warnings.catch_warnings():
        # the rows dropped with missing="drop" are the test's
        warnings.simplefilter("ignore", dmixed.DroppedRowsWarning)
        return _refused(frame, formula, missing, where, request)


def _refused(frame, formula, missing, where, request) -> tuple[str, str]:
    import dask
    import dask.dataframe as dd

    with pytest.raises(DataError) as in_process:
        dmixed.mixedlm(formula, frame, groups="g", missing=missing).fit()
    kw = {"client": request.getfixturevalue("client")} if where == "cluster" else {}
    sync = dask.config.set(scheduler="sync") if where == "sync" else contextlib.nullcontext()
    with sync, pytest.raises(DataError) as on_dask:
        ddf = dd.from_pandas(frame, npartitions=3)
        dmixed.mixedlm(formula, ddf, groups="g", missing=missing).fit(**kw)
    return str(in_process.value), str(on_dask.value)


@pytest.mark.parametrize("missing", ["raise", "drop"])
@pytest.mark.parametrize("formula", ["y ~ x1", "np.log(y) ~ x1"])
@pytest.mark.parametrize("where", ["sync", "cluster"])
def test_a_constant_response_is_refused_in_the_words_of_a_fit_in_process(
    formula, missing, where, request
):
    """A constant response on Dask with no factor (no level scan reads the response) was
    refused by the statistics' check as "constant or fitted exactly by the fixed
    effects", where a fit in process names the response and its value: the value is now
    read from the data on that error's path, one message on both (the response's formula
    applied; with ``missing="drop"`` a dropped row's other value is not counted)."""
    df = make_data(n_groups=20, seed=6).astype({"y": float})
    df["y"] = 3.0
    if missing == "drop":
        df.loc[5, ["y", "x1"]] = [7.0, np.nan]
    in_process, on_dask = _refusals(df, formula, missing, where, request)
    name, value = ("y", 3.0) if formula == "y ~ x1" else ("np.log(y)", float(np.log(3.0)))
    assert in_process == f"the response {name!r} is constant (all values {value!r})"
    assert on_dask == in_process


@pytest.mark.parametrize("where", ["sync", "cluster"])
def test_a_response_fitted_exactly_keeps_the_words_of_the_statistics(where, request):
    """A response that varies but that the fixed effects fit exactly: the statistics'
    refusal, in process and on Dask alike."""
    df = make_data(n_groups=20, seed=6)
    df["y"] = 2.0 + 3.0 * df["x1"]
    in_process, on_dask = _refusals(df, "y ~ x1", "raise", where, request)
    assert "is constant or fitted exactly by the fixed effects" in in_process
    assert on_dask == in_process


@pytest.mark.parametrize("where", ["pandas", "dask"])
def test_progress_logs_the_data_pass_summary_once(where, caplog):
    """``fit(progress=True)`` says the rows and groups of its data pass in one line,
    on Dask too (the engine's line, not it and the model's again)."""
    import logging

    import dask
    import dask.dataframe as dd

    df = make_data(n_groups=20, max_size=8, seed=3)
    data = df if where == "pandas" else dd.from_pandas(df, npartitions=3)
    caplog.set_level(logging.INFO, logger="dmixed")
    with dask.config.set(scheduler="sync"):
        dmixed.mixedlm("y ~ x1", data, groups="g").fit(progress=True)
    summaries = [
        r.getMessage()
        for r in caplog.records
        if r.name == "dmixed" and f"{len(df)} rows, 20 groups" in r.getMessage()
    ]
    assert len(summaries) == 1, summaries
    assert summaries[0].startswith("data pass")
