"""Fixtures of the Dask engine's tests."""

from __future__ import annotations

import pytest

from dmixed.kernels.term_table import TermTable


@pytest.fixture
def swept(monkeypatch) -> list[int]:
    """The rows each :meth:`TermTable.add_columns` call summed (the chains' compiled
    sweep of raw columns), in call order."""
    calls: list[int] = []
    add_columns = TermTable.add_columns

    def counting(self, *args):
        out = add_columns(self, *args)
        calls.append(out[0])
        return out

    monkeypatch.setattr(TermTable, "add_columns", counting)
    return calls


@pytest.fixture
def tasks_only(monkeypatch) -> None:
    """The engine's round trips as tasks only (no direct calls to the workers,
    :mod:`dmixed.engines.dask.direct_calls`): for tests of what the tasks do (their
    keys, placement, gathers, scattered arguments), the path every round trip falls
    back to."""
    from dmixed.engines.dask import direct_calls

    monkeypatch.setattr(direct_calls, "ENABLED", False)
