"""The value task that checks a persisted collection's futures when Dask builds the graph
of a result depending on it: Dask's public ``Delayed`` only."""

from __future__ import annotations

import pickle

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from dask.delayed import Delayed
from distributed import futures_of

from dmixed.design.persisted_task import checked_task
from dmixed.errors import DataError


def test_the_checked_task_is_a_public_delayed_that_pickles_plain(client):
    """Built from ``dask.delayed``'s key and graph: same key as the plain task, the
    value computed, pickled (as distributed ships it) as a plain ``Delayed``; its graph,
    read by Dask to compute a collection depending on the task once the persisted data
    are gone, refuses them with dmixed's error (the hook every lazy result's check
    relies on: a Dask that stops reading the subclass's ``dask`` fails here)."""
    frame = pd.DataFrame({"g": [0, 1, 2, 3], "x": [0.1, 0.2, 0.3, 0.4]})
    value = {"state": 1}
    plain = dask.delayed(value, pure=True, traverse=False)
    assert checked_task(value, dd.from_pandas(frame, npartitions=2)).key == plain.key
    persisted = client.persist(dd.from_pandas(frame, npartitions=2))
    task = checked_task(value, persisted)
    assert isinstance(task, Delayed) and task.key == plain.key
    assert dask.compute(task, scheduler="sync")[0] == value
    shipped = pickle.loads(pickle.dumps(task))
    assert type(shipped) is Delayed and shipped.key == plain.key
    # a collection depending on the task, as a lazy result is (built while the data are
    # held), over data of its own: only the task's check can refuse it
    dependent = dd.from_pandas(frame, npartitions=2).map_partitions(
        lambda part, state: part.assign(x=part["x"] * state["state"]), task, meta=frame[:0]
    )
    pd.testing.assert_frame_equal(dependent.compute(scheduler="sync"), frame)
    client.cancel(futures_of(persisted))
    with pytest.raises(DataError, match="persisted data of this Dask DataFrame are gone"):
        dependent.compute(scheduler="sync")
