"""Warnings about the data, collected where a worker reads it, raised on the driver.

A warning raised inside a Dask task on a distributed worker (a column rounded, read
while the partitions are turned into statistics) goes to the worker's log, never to
the user.  The data pass's warnings are raised through :func:`warn_data`: as an
ordinary ``warnings.warn`` everywhere, except inside :func:`collecting` (a Dask task
of the data pass), where they are kept in a list of this thread only (warnings'
global filters are not thread-safe: a worker runs several tasks at once) for the
task to send to the driver, which raises each once
(:mod:`dmixed.engines.dask.relay`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import caller_stacklevel

__all__ = ["collecting", "warn_data"]

_local = threading.local()


def warn_data(message: str, category: type[Warning], key: str | None = None) -> None:
    """``warnings.warn(message, category)``, or, inside :func:`collecting` in this
    thread, ``(category, message, key)`` added to its list.  ``key`` names what the
    warning is about (e.g. one column), so that the driver raises one warning per key
    when partitions word it differently (each with its own range); default: the
    message.  Raised here, it points at the caller's line outside dmixed
    (:func:`~dmixed.errors.caller_stacklevel`)."""
    got = getattr(_local, "collected", None)
    if got is None:
        warnings.warn(message, category, stacklevel=caller_stacklevel())
        return
    item = (category, message, message if key is None else key)
    if all(old[0] is not category or old[2] != item[2] for old in got):
        got.append(item)


@contextmanager
def collecting() -> Iterator[list]:
    """The list of ``(category, message, key)`` that :func:`warn_data` collects in this
    thread while the context is open (nested: the outer list gets them)."""
    outer = getattr(_local, "collected", None)
    if outer is not None:
        yield outer
        return
    _local.collected = []
    try:
        yield _local.collected
    finally:
        _local.collected = None
