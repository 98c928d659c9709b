"""The design's warnings about the data: warned, or collected for the driver."""

from __future__ import annotations

import threading

import pytest

from dmixed.design.warn_relay import collecting, warn_data
from dmixed.errors import PrecisionWarning


def test_outside_collecting_a_warning_is_warned():
    with pytest.warns(PrecisionWarning, match="rounded"):
        warn_data("rounded", PrecisionWarning)


def test_collecting_keeps_one_per_key_in_this_thread_only():
    seen_elsewhere = []

    def other_thread():
        with pytest.warns(PrecisionWarning):  # not collected: another thread
            warn_data("elsewhere", PrecisionWarning)
        seen_elsewhere.append(True)

    with collecting() as got:
        warn_data("column 'a' from 1 to 2", PrecisionWarning, key="a")
        warn_data("column 'a' from 3 to 4", PrecisionWarning, key="a")
        warn_data("column 'b'", PrecisionWarning)
        with collecting() as inner:  # nested: the outer list
            assert inner is got
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert [(c, m) for c, m, _ in got] == [
        (PrecisionWarning, "column 'a' from 1 to 2"),
        (PrecisionWarning, "column 'b'"),
    ]
    assert seen_elsewhere == [True]
    with pytest.warns(PrecisionWarning):  # closed: warned again
        warn_data("after", PrecisionWarning)
