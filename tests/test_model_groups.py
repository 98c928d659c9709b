"""``MixedLM.n_groups``, ``group_labels`` and ``nobs`` of models without rows in memory:
Dask data, statistics."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import MixedLM
from dmixed.errors import SpecError

from ._synth import CountingReader

dd = pytest.importorskip("dask.dataframe")
dask = pytest.importorskip("dask")


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


def labelled(frame: pd.DataFrame, keys: str) -> pd.DataFrame:
    """``frame`` with group keys of the kind ``keys``: ``int``, ``str`` or ``float``."""
    g = frame["g"]
    out = frame.copy()
    out["g"] = {"int": g, "str": "s" + g.astype(str).str.zfill(2), "float": g / 4}[keys]
    return out


@pytest.mark.parametrize("keys", ["int", "str", "float"])
def test_dask_fit_gives_the_group_labels_and_nobs_of_a_pandas_fit(frame, keys):
    data = labelled(frame, keys)
    expected = dmixed.mixedlm("y ~ x", data, groups="g")
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm("y ~ x", dd.from_pandas(data, npartitions=3), groups="g").fit()
    labels = res.model.group_labels
    assert isinstance(labels, list)
    assert labels == expected.group_labels
    assert [type(v) for v in labels] == [type(v) for v in expected.group_labels]
    assert res.model.nobs == expected.nobs == len(frame)
    assert type(res.model.nobs) is int


def test_dask_fit_on_a_client_gives_group_labels_and_nobs_without_reading(frame, tmp_path):
    from distributed import Client, LocalCluster

    reader = CountingReader(frame, 3, str(tmp_path / "reads.txt"))
    data = dd.from_map(reader, range(3), meta=frame.iloc[:0], enforce_metadata=False)
    model = dmixed.mixedlm("y ~ x", data, groups="g")
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        res = model.fit(client=client)
        reader.reset()
        assert model.nobs == model.n_totobs == len(frame)
        assert reader.reads() == 0  # answered from the fit's statistics
        assert model.group_labels == sorted(frame["g"].unique().tolist())
        assert reader.reads() == 0
    assert res.model.nobs == len(frame) and reader.reads() == 0


def test_dask_model_nobs_before_a_fit_runs_its_data_pass_once(frame, tmp_path):
    reader = CountingReader(frame, 3, str(tmp_path / "reads.txt"))
    data = dd.from_map(reader, range(3), meta=frame.iloc[:0], enforce_metadata=False)
    model = dmixed.mixedlm("y ~ x", data, groups="g")
    reader.reset()
    with dask.config.set(scheduler="sync"):
        assert model.nobs == len(frame)
        assert reader.reads() == 3
        model.fit()
    assert model.nobs == len(frame) and reader.reads() == 3  # the fit reused that pass


def test_dask_model_group_labels_once_its_data_pass_ran(frame):
    model = dmixed.mixedlm("y ~ x", dd.from_pandas(frame, npartitions=3), groups="g")
    with pytest.raises(
        SpecError,
        match=r"^group_labels of a model of Dask data is counted by its data pass.*"
        r"model\.statistics\(\).*read group_labels of the fit's results$",
    ):
        model.group_labels  # noqa: B018
    model.statistics()
    assert model.group_labels == sorted(frame["g"].unique().tolist())


def test_unpickled_dask_model_says_how_to_get_the_group_labels(frame):
    res = dmixed.mixedlm("y ~ x", dd.from_pandas(frame, npartitions=3), groups="g").fit()
    loaded = pickle.loads(pickle.dumps(res))
    assert list(loaded.group_labels) == res.model.group_labels
    with pytest.raises(SpecError, match=r"never pickled.*group_labels of the fit's results"):
        loaded.model.group_labels  # noqa: B018


def test_model_of_statistics_and_removed_data_give_group_labels_and_nobs(frame):
    model = dmixed.mixedlm("y ~ x", frame, groups="g")
    expected = model.group_labels
    stats = model.statistics()
    of_stats = MixedLM.from_statistics(stats, model.spec)
    assert of_stats.group_labels == expected and of_stats.nobs == len(frame)
    model.remove_data()
    assert model.group_labels == expected and model.nobs == len(frame)
    with pytest.raises(SpecError, match=r"data were removed.*group_labels of the fit's results"):
        pickle.loads(pickle.dumps(model)).group_labels  # noqa: B018
