"""Python's cyclic garbage collector off for a test: what a reference cycle holds (a
fit's model, its futures on a cluster) stays until that collector runs, so code that
must let go of things by their last reference is tested with it off."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def collector_off():
    """The cyclic garbage collector off (after one collection of what came before), and
    as it was again after."""
    was_on = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class Held:
    """An object a test hands to a caller's frame and holds a ``weakref`` of: it is gone
    when the frame is, unless a reference cycle keeps the frame."""
