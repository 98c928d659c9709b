"""``MixedLM.n_groups`` of models without rows in memory: Dask data, statistics."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import MixedLM
from dmixed.errors import SpecError

dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n, n_groups = 900, 45
    g = rng.integers(0, n_groups, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=n_groups)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def test_dask_fit_counts_the_groups(frame):
    res = dmixed.mixedlm("y ~ x", dd.from_pandas(frame, npartitions=3), groups="g").fit()
    assert res.model.n_groups == res.n_groups == frame["g"].nunique()


def test_dask_model_counts_groups_once_its_data_pass_ran(frame):
    model = dmixed.mixedlm("y ~ x", dd.from_pandas(frame, npartitions=3), groups="g")
    with pytest.raises(SpecError, match=r"counted by its data pass.*model\.statistics\(\)"):
        model.n_groups  # noqa: B018
    model.statistics()
    assert model.n_groups == frame["g"].nunique()


def test_unpickled_dask_model_says_how_to_count_the_groups(frame):
    res = dmixed.mixedlm("y ~ x", dd.from_pandas(frame, npartitions=3), groups="g").fit()
    loaded = pickle.loads(pickle.dumps(res))
    assert loaded.n_groups == frame["g"].nunique()
    with pytest.raises(SpecError, match=r"never pickled.*n_groups of the fit's results"):
        loaded.model.n_groups  # noqa: B018


def test_model_of_statistics_and_removed_data_count_their_groups(frame):
    model = dmixed.mixedlm("y ~ x", frame, groups="g")
    stats = model.statistics()
    assert MixedLM.from_statistics(stats, model.spec).n_groups == frame["g"].nunique()
    model.remove_data()
    assert model.n_groups == frame["g"].nunique()  # its statistics stay in this process
    with pytest.raises(SpecError, match=r"data were removed.*n_groups of the fit's results"):
        pickle.loads(pickle.dumps(model)).n_groups  # noqa: B018
