"""dmixed.results.fitted: predictions, fitted values and residuals of the fitted rows,
as the README tells them."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np

import dmixed
from dmixed.design import is_dask

from .._synth import make_data

README = Path(__file__).resolve().parents[2] / "README.md"


def test_predict_of_a_dask_fit_is_lazy_as_the_readme_says():
    """``predict()`` of the fitted rows: an ndarray for in-memory fits (statsmodels'),
    a lazy Dask Series of the kept rows for a Dask fit, as its ``fittedvalues``; the
    README says both (it once said an ndarray in every case)."""
    df = make_data(n_groups=12, max_size=6, seed=2)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), groups="g").fit()
        got = res.predict(include_random=True)
        assert is_dask(got)
        np.testing.assert_allclose(
            got.compute().to_numpy(), res.fittedvalues.compute().to_numpy(), rtol=1e-13
        )
    in_memory = dmixed.mixedlm("y ~ x1", df, groups="g").fit().predict()
    assert isinstance(in_memory, np.ndarray)
    readme = " ".join(README.read_text().split())
    assert "`predict()` of the fitted rows is an ndarray in both cases" in readme
    assert "a Dask fit's is a lazy Dask Series of the kept rows" in readme
