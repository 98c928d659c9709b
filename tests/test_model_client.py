"""The client a model of Dask data reads its data with: ``mixedlm(..., client=...)``
for the level scan of a formula with a factor, and the fit's default after it."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

FORMULA = "y ~ x1 + x2 + C(site)"


def _frame(n: int = 2400, n_groups: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    site = rng.choice(list("abcd"), n)
    b0, b1 = rng.normal(size=n_groups), rng.normal(scale=0.5, size=n_groups)
    y = 1 + 0.5 * x1 - 0.3 * x2 + (site == "b") * 0.7 + b0[g] + b1[g] * x1 + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "site": site, "g": g})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module")
def in_memory_llf(frame) -> float:
    return dmixed.mixedlm(FORMULA, frame, groups="g", re_formula="1 + x1").fit().llf


class _LocalTasks:
    """Counts the tasks Dask's local scheduler runs in this thread while entered (the
    in-process workers' own use of it, inside their tasks, in their threads, is not
    counted)."""

    def __init__(self) -> None:
        from dask.callbacks import Callback

        counter, caller = self, threading.current_thread()

        class Count(Callback):
            def _start_state(self, dsk, state) -> None:
                if threading.current_thread() is caller:
                    counter.n += len(dsk)

        self.n = 0
        self.callback = Count()

    def __enter__(self):
        self.callback.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.callback.__exit__(*exc)


def test_persisted_on_a_client_not_the_default_is_read_with_it(frame, client, in_memory_llf):
    """A client made with ``set_as_default=False`` that persisted the data: the model
    built with it reads the levels on it, and its fit runs there by default."""
    persisted = client.persist(dd.from_pandas(frame, npartitions=4))
    with _LocalTasks() as local:
        model = dmixed.mixedlm(FORMULA, persisted, groups="g", re_formula="1 + x1", client=client)
        res = model.fit()
    assert local.n == 0  # nothing ran on the local scheduler in this process
    assert model.client is client
    assert res.llf == pytest.approx(in_memory_llf, rel=1e-10)
    # fit(client=) given the same client explicitly: the same fit
    again = dmixed.mixedlm(FORMULA, persisted, groups="g", re_formula="1 + x1", client=client)
    assert again.fit(client=client).llf == pytest.approx(in_memory_llf, rel=1e-10)


def test_persisted_without_a_client_is_refused_naming_the_scheduler(frame, client):
    """Without ``client=`` (and no default client) the level scan would run on the
    local scheduler, which cannot read the persisted partitions: dmixed's error."""
    persisted = client.persist(dd.from_pandas(frame, npartitions=4))
    address = client.scheduler.address
    with pytest.raises(DataError, match=rf"persisted on the scheduler at {address}.*"
                       r"no distributed client.*mixedlm\(\.\.\., client=\.\.\.\)"):  # fmt: skip
        dmixed.mixedlm(FORMULA, persisted, groups="g", re_formula="1 + x1")
    # a formula that reads nothing before the fit is built; its fit is given the client
    plain = dmixed.mixedlm("y ~ x1 + x2", persisted, groups="g", re_formula="1 + x1")
    assert np.isfinite(plain.fit(client=client).llf)


def test_persisted_on_another_cluster_than_the_default(frame, client, in_memory_llf):
    """Data persisted on cluster A while another client is the default: the model
    built with A's client reads them on A; without it, dmixed's error names both."""
    persisted = client.persist(dd.from_pandas(frame, npartitions=4))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as other,
        distributed.Client(other) as default,
    ):
        model = dmixed.mixedlm(FORMULA, persisted, groups="g", re_formula="1 + x1", client=client)
        assert model.fit().llf == pytest.approx(in_memory_llf, rel=1e-10)
        held = (
            rf"persisted on the scheduler at {client.scheduler.address}, not on that of the "
            rf"client dmixed.mixedlm runs on \(given or the default: "
            rf"{default.scheduler.address}\).*client=\.\.\."
        )
        with pytest.raises(DataError, match=held):
            dmixed.mixedlm(FORMULA, persisted, groups="g", re_formula="1 + x1")


_READS: list[int] = []
_READS_LOCK = threading.Lock()


def _read_part(i: int, frame: pd.DataFrame, n_parts: int) -> pd.DataFrame:
    with _READS_LOCK:
        _READS.append(i)
    return frame.iloc[i::n_parts].reset_index(drop=True)


def test_data_read_once_to_build_and_once_to_fit_on_the_client(frame, client, in_memory_llf):
    """Data read from a source (``dd.from_map``): building the model reads each
    partition once, on the client given, the fit once more there, a second fit never;
    the local scheduler in this process runs nothing."""
    n_parts = 4
    source = dd.from_map(_read_part, range(n_parts), frame=frame, n_parts=n_parts)
    _READS.clear()
    with _LocalTasks() as local:
        model = dmixed.mixedlm(FORMULA, source, groups="g", re_formula="1 + x1", client=client)
        built = sorted(_READS)
        res = model.fit()
        fitted = sorted(_READS)
        model.fit()
    assert local.n == 0
    assert built == list(range(n_parts))
    assert fitted == sorted(2 * list(range(n_parts)))
    assert sorted(_READS) == fitted  # the second fit reuses the statistics
    # rows in another order than the pandas frame's: the same likelihood
    assert res.llf == pytest.approx(in_memory_llf, rel=1e-10)


def test_a_closed_built_client_leaves_the_default(frame):
    """The client a model was built with, once closed, is not used: the fit runs on
    the current client (here none: Dask's local scheduler)."""
    ddf = dd.from_pandas(frame, npartitions=3)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        model = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula="1 + x1", client=c)
    assert model.built_client() is None
    assert np.isfinite(model.fit().llf)


def test_bad_client_is_refused_when_building():
    with pytest.raises(dmixed.errors.SpecError, match="client must be a distributed.Client"):
        dmixed.mixedlm(FORMULA, _frame(200, 10), groups="g", client="tcp://host:8786")


def test_model_pickles_without_its_client(frame, client):
    import pickle

    ddf = dd.from_pandas(frame, npartitions=3)
    model = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula="1 + x1", client=client)
    assert pickle.loads(pickle.dumps(model)).client is None
