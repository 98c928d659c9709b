"""The data pass's warnings, raised once on the driver.

A task that reads partitions collects the warnings of the design
(:func:`~dmixed.design.warn_relay.collecting`: a column rounded, an integer column
spanning more than 2**53) and hands them to :func:`send_collected`: on a distributed
worker as structured events of the topic :data:`WARNINGS_TOPIC` (a worker's own
warnings would end in its log), on Dask's local scheduler (threads of this process)
into a list of this process.  After the pass the driver raises each distinct warning
once (:func:`raise_relayed`), whatever the number of partitions that found it.
"""

from __future__ import annotations

import threading
import warnings
import weakref

from ... import errors
from ...design.warn_relay import collecting

__all__ = ["WARNINGS_TOPIC", "raise_relayed", "read_relayed", "relay_mark", "send_collected"]

#: Topic of the events that carry a task's warnings to the driver.
WARNINGS_TOPIC = "dmixed-warnings"

_pending: list = []  # the local scheduler's: [category name, message, key]
_lock = threading.Lock()
#: per client, the time of the newest event of the topic it has read
_read_up_to: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def send_collected(collected: list) -> None:
    """Send ``[(category, message, key), ...]`` to the driver (nothing when empty)."""
    if not collected:
        return
    message = [[category.__name__, text, key] for category, text, key in collected]
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # Dask's local scheduler: this process
        with _lock:
            _pending.extend(message)
        return
    worker.log_event(WARNINGS_TOPIC, message)


def relayed(func, *args, **kwargs):
    """``func(*args, **kwargs)`` with the design's warnings collected and sent to the
    driver (:func:`send_collected`), also when it raises."""
    with collecting() as got:
        try:
            return func(*args, **kwargs)
        finally:
            send_collected(list(got))
            got.clear()


def relay_mark(client) -> float:
    """Where this pass's events begin: the time (the scheduler's clock) of the newest
    event of the topic this client has read, else on the scheduler (one look per
    client), -inf when none or no client; the local list is emptied (what a failed
    pass left)."""
    with _lock:
        _pending.clear()
    if client is None:
        return float("-inf")
    if client in _read_up_to:
        return _read_up_to[client]
    try:
        events = client.get_events(WARNINGS_TOPIC)
    except Exception:  # noqa: BLE001 - the warnings are a courtesy; the fit goes on
        return float("-inf")
    return float(events[-1][0]) if events else float("-inf")


def read_relayed(client, mark: float) -> list[tuple[str, str]]:
    """``(category name, message)`` of the warnings sent since ``mark``, in order, the
    first of each category and key."""
    pairs = []
    with _lock:
        pairs.extend(tuple(p) for p in _pending)
        _pending.clear()
    if client is not None:
        try:
            events = client.get_events(WARNINGS_TOPIC)
        except Exception:  # noqa: BLE001 - as in relay_mark
            events = ()
        for when, message in events:
            if when > mark:
                pairs.extend(tuple(p) for p in message)
        newest = float(events[-1][0]) if events else mark
        try:
            _read_up_to[client] = max(mark, newest)
        except TypeError:  # a client that cannot be weakly referenced: look each time
            pass
    first: dict = {}
    for name, text, key in pairs:
        first.setdefault((name, key), (name, text))
    return list(first.values())


def raise_relayed(client, mark: float) -> None:
    """Raise on the driver, once each, the warnings the pass's tasks sent since
    ``mark`` (:func:`relay_mark`), at the caller's line outside dmixed
    (:func:`~dmixed.errors.caller_stacklevel`); a category dmixed does not define is
    raised as :class:`~dmixed.errors.DmixedWarning`."""
    for name, text in read_relayed(client, mark):
        category = getattr(errors, name, None)
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category = errors.DmixedWarning
        warnings.warn(text, category, stacklevel=errors.caller_stacklevel())
