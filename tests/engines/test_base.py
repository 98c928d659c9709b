"""Both engines are an :class:`~dmixed.engines.Engine`."""

from __future__ import annotations

import numpy as np

from dmixed.engines import Engine, LocalEngine
from dmixed.engines.dask import DaskEngine


def test_engines_satisfy_the_protocol():
    local = LocalEngine(np.eye(2)[None], np.ones((1, 2, 3)))
    assert isinstance(local, Engine)
    detached = DaskEngine(None, [], [], np.arange(0))
    assert isinstance(detached, Engine)
    assert {local.name, detached.name} == {"local", "dask"}
