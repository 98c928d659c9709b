"""The memory pages of an in-process fit's arrays.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every
array of 4 MiB or more.  Where the kernel's THP ``defrag`` setting is ``madvise`` (the
common default), a fault on such memory compacts memory to find a free 2 MiB page
before it returns: a fresh process's first fits of a million rows in 500,000 groups
spent 2-3 s of system time there, against about 0.3 s with ordinary pages
(benchmarks/RESULTS.md, tiny-s59).  Later fits reuse the heap's pages and pay neither.
:func:`ordinary_pages` asks numpy for ordinary pages for the length of a call and gives
back the setting it found.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

__all__ = ["HUGE_PAGES_IN_FITS", "ordinary_pages", "with_ordinary_pages"]

#: Whether a fit leaves numpy's huge-page advice as it finds it (True) or turns it off
#: for the fit's length (False, the default; see the module).
HUGE_PAGES_IN_FITS = False

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
_depth = 0  # calls inside ordinary_pages now (nested or in other threads)
_found: bool | None = None  # numpy's setting before the outermost call


def _setter() -> Callable[[bool], bool] | None:
    """numpy's ``_set_madvise_hugepage`` (returns the previous setting), or None where
    this numpy has none."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    return getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)


@contextmanager
def ordinary_pages() -> Iterator[None]:
    """numpy's huge-page advice off inside the block, as it was after the outermost
    block ends (nested blocks and blocks in other threads share one setting); nothing
    where :data:`HUGE_PAGES_IN_FITS` is True or numpy has no such setting."""
    global _depth, _found
    setter = _setter()
    if HUGE_PAGES_IN_FITS or setter is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _found = bool(setter(False))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _found is not None:
                setter(_found)
                _found = None


def with_ordinary_pages(func: _F) -> _F:
    """``func`` run inside :func:`ordinary_pages`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with ordinary_pages():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
