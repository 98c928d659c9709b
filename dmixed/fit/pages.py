"""The memory pages of an in-process fit's arrays.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every
array of 4 MiB or more.  Where the kernel's THP ``defrag`` setting is ``madvise`` (the
common default), a first fault on such memory may compact memory synchronously to find a
free 2 MiB page, and a fresh process's first fits over many groups spend most of their
system time there (measured in benchmarks/RESULTS.md, tiny-s59); later fits reuse the
heap's pages and pay neither.  :func:`ordinary_pages` asks numpy for ordinary pages for
the length of a call and gives back the setting it found.

numpy's setting is one per process: while a fit runs, arrays that other threads of the
process allocate get ordinary pages too.  :data:`HUGE_PAGES_IN_FITS` set to True leaves
numpy's setting (and a ``NUMPY_MADVISE_HUGEPAGE`` the user chose) alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

__all__ = ["HUGE_PAGES_IN_FITS", "advice", "advice_switch", "ordinary_pages", "with_ordinary_pages"]

#: Whether a fit leaves numpy's huge-page advice as it finds it (True) or turns it off
#: for the fit's length (False, the default; see the module).
HUGE_PAGES_IN_FITS = False

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
_depth = 0  # calls inside ordinary_pages now (nested or in other threads)
_found: bool | None = None  # numpy's setting before the outermost call


def _multiarray() -> Any:
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 / numpy 1
    return getattr(core, "multiarray", None)


def advice_switch() -> Callable[[bool], bool] | None:
    """numpy's switch of its huge-page advice.

    Returns
    -------
    callable or None
        ``numpy._core.multiarray._set_madvise_hugepage`` (``numpy.core`` on numpy 1):
        called with a bool, it sets the advice and returns the previous setting.  None
        where this numpy has none (the advice is then numpy's default, untouched).
    """
    return getattr(_multiarray(), "_set_madvise_hugepage", None)


def advice() -> bool | None:
    """numpy's huge-page advice now (True: numpy asks for huge pages on arrays of 4 MiB
    or more), or None where this numpy cannot say
    (``numpy._core.multiarray._get_madvise_hugepage``)."""
    getter = getattr(_multiarray(), "_get_madvise_hugepage", None)
    return None if getter is None else bool(getter())


@contextmanager
def ordinary_pages() -> Iterator[None]:
    """numpy's huge-page advice off inside the block.

    Nested blocks and blocks in other threads share one setting: the outermost block to
    enter turns the advice off, the last to leave gives back the setting found, also
    when the block raises.  Nothing changes where :data:`HUGE_PAGES_IN_FITS` is True or
    numpy has no such switch (:func:`advice_switch`).

    Yields
    ------
    None
    """
    global _depth, _found
    setter = advice_switch()
    if HUGE_PAGES_IN_FITS or setter is None:
        yield
        return
    entered = False
    try:
        with _lock:
            _depth += 1
            entered = True
            if _depth == 1:
                _found = bool(setter(False))
        yield
    finally:
        if entered:
            with _lock:
                _depth -= 1
                if _depth == 0 and _found is not None:
                    setter(_found)
                    _found = None


def with_ordinary_pages(func: _F) -> _F:
    """Decorator: ``func`` run inside :func:`ordinary_pages`.

    Parameters
    ----------
    func : callable
        Any function or method; its name and docstring are kept (``functools.wraps``).

    Returns
    -------
    callable
        ``func`` with numpy's huge-page advice off while it runs.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with ordinary_pages():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
